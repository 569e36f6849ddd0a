#!/usr/bin/env python3
"""Run the whole life of a tenant against a running Ally server and check every step.

The program bootstraps a new tenant with `ally bootstrap`, so it needs the settings
that lead the server to its database: the same working folder and environment. Then it
works through the API as that tenant's people would: log in, create users and an API
key, version a configuration, hold a threaded chat, share it, read the audit trail and
revoke the key. It prints one line per step and exits 1 at the first step that fails,
naming the step and the reason.

Usage:
    python clients/python/generate.py
    python clients/python/lifecycle.py [--addr 127.0.0.1:50051] [--ally "cargo run --quiet --"]

Each run creates a tenant with a new random subdomain, so runs do not collide. The
tenant is left in the database afterwards.
"""

import argparse
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STUBS = HERE / "generated"
PASSWORD = "correct horse battery staple"
CONFIG_TYPE = "llm.defaults"
# Seconds that `ally bootstrap` may take, including a build when --ally is `cargo run`.
BOOTSTRAP_TIMEOUT = 600


class StepFailed(Exception):
    """Raised when a check of the current step fails."""


def check(condition, message):
    """Raise StepFailed with `message` unless `condition` is true."""
    if not condition:
        raise StepFailed(message)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--addr",
        default="127.0.0.1:50051",
        help="server address as host:port or http://host:port (default: 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--ally",
        default="ally",
        help="command that runs the ally binary, split like a shell would, for example "
        '"target/debug/ally" or "cargo run --quiet --" (default: ally)',
    )
    parser.add_argument(
        "--stubs",
        type=Path,
        default=DEFAULT_STUBS,
        help=f"folder that generate.py wrote the stubs to (default: {DEFAULT_STUBS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="deadline of each call, in seconds (default: 10)",
    )
    return parser.parse_args()


def import_modules(stubs):
    """Import grpcio and the generated stubs, or exit with the command that provides them."""
    try:
        import grpc  # noqa: F401
        from grpc_status import rpc_status  # noqa: F401
    except ImportError as error:
        sys.exit(
            f"error: {error}; install the client's packages with "
            "`pip install -r clients/python/requirements.txt` or `.ci/install-tools`"
        )
    if not (stubs / "ally" / "v1" / "chat_pb2.py").is_file():
        sys.exit(
            f"error: no generated stubs in {stubs}; run `python clients/python/generate.py`"
        )
    sys.path.insert(0, str(stubs))


def describe_rpc_error(error):
    """Return the status code, message and google.rpc details of a failed call as one line."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    text = f"{error.code().name}: {error.details()}"
    status = rpc_status.from_call(error)
    if status is None:
        return text
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            text += f" [reason {info.reason}]"
        elif detail.Unpack(bad_request):
            for violation in bad_request.field_violations:
                text += f" [field {violation.field}: {violation.description}]"
    return text


class Lifecycle:
    """The steps of one tenant's life, sharing the ids and credentials they create."""

    def __init__(self, args):
        import grpc

        from ally.v1 import (
            api_key_pb2_grpc,
            audit_pb2_grpc,
            auth_pb2_grpc,
            chat_pb2_grpc,
            configuration_pb2_grpc,
            tenant_pb2_grpc,
            user_pb2_grpc,
        )

        address = args.addr.removeprefix("http://")
        self.ally_command = shlex.split(args.ally)
        self.timeout = args.timeout
        self.channel = grpc.insecure_channel(address)
        self.tenants = tenant_pb2_grpc.TenantServiceStub(self.channel)
        self.users = user_pb2_grpc.UserServiceStub(self.channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.api_keys = api_key_pb2_grpc.ApiKeyServiceStub(self.channel)
        self.configurations = configuration_pb2_grpc.ConfigurationServiceStub(self.channel)
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)

        suffix = secrets.token_hex(4)
        self.subdomain = f"lifecycle-{suffix}"
        self.tenant_name = f"Lifecycle {suffix}"
        self.owner_email = f"owner@{self.subdomain}.example"
        self.admin_email = f"ada@{self.subdomain}.example"
        self.viewer_email = f"grace@{self.subdomain}.example"

    def steps(self):
        return [
            ("bootstrap the tenant with `ally bootstrap`", self.bootstrap),
            ("read the tenant with the owner's API key", self.read_tenant),
            ("create an admin user", self.create_admin),
            ("log in as the admin", self.log_in_admin),
            ("create a viewer user", self.create_viewer),
            ("create an API key", self.create_api_key),
            ("write configuration version 1", self.write_configuration),
            ("write version 2 and reject a stale etag", self.version_configuration),
            ("list the configuration revisions", self.list_revisions),
            ("open a chat session", self.open_session),
            ("add a parent message with two child branches", self.add_thread),
            ("list the conversation and its branches", self.list_thread),
            ("share the session", self.share_session),
            ("read the session through the share token", self.read_shared),
            ("find every step in the audit trail", self.find_audit_entries),
            ("revoke the API key", self.revoke_api_key),
            ("reject the revoked key with UNAUTHENTICATED", self.reject_revoked_key),
        ]

    def call(self, method, request, credential):
        """Call `method` with `credential`, a (metadata key, value) pair or None."""
        metadata = [credential] if credential else []
        return method(request, metadata=metadata, timeout=self.timeout)

    @staticmethod
    def bearer(token):
        return ("authorization", f"Bearer {token}")

    @staticmethod
    def api_key(key):
        return ("x-api-key", key)

    def log_in(self, email):
        from ally.v1 import auth_pb2

        response = self.call(
            self.auth.Login,
            auth_pb2.LoginRequest(
                tenant_domain=self.subdomain, email=email, password=PASSWORD
            ),
            None,
        )
        check(response.access_token, "Login returned no access token")
        check(response.refresh_token, "Login returned no refresh token")
        check(
            response.token_type == "Bearer",
            f"token_type is {response.token_type!r}, expected 'Bearer'",
        )
        check(
            response.user.email == email,
            f"Login returned user {response.user.email!r}, expected {email!r}",
        )
        return response

    def bootstrap(self):
        command = [
            *self.ally_command,
            "bootstrap",
            "--tenant-name",
            self.tenant_name,
            "--subdomain",
            self.subdomain,
            "--owner-email",
            self.owner_email,
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=BOOTSTRAP_TIMEOUT, check=False
            )
        except FileNotFoundError:
            raise StepFailed(
                f"{self.ally_command[0]!r} was not found; pass --ally with the path of the "
                "ally binary, e.g. --ally target/debug/ally"
            ) from None
        except subprocess.TimeoutExpired:
            raise StepFailed(
                f"`{shlex.join(command)}` did not finish within {BOOTSTRAP_TIMEOUT} s"
            ) from None
        check(
            result.returncode == 0,
            f"`{shlex.join(command)}` exited with status {result.returncode}:\n"
            f"{result.stderr.strip()}",
        )
        printed = {}
        for line in result.stdout.splitlines():
            label, _, value = line.partition(":")
            printed[label.strip()] = value.strip()
        for label in ("tenant id", "owner id", "owner API key"):
            check(printed.get(label), f"`ally bootstrap` printed no {label!r} line")
        self.tenant_id = printed["tenant id"]
        self.owner_id = printed["owner id"]
        self.owner_key = self.api_key(printed["owner API key"])
        return f"tenant {self.tenant_id}, subdomain {self.subdomain}"

    def read_tenant(self):
        from ally.v1 import tenant_pb2

        tenant = self.call(
            self.tenants.GetTenant, tenant_pb2.GetTenantRequest(), self.owner_key
        ).tenant
        check(tenant.id == self.tenant_id, f"GetTenant returned tenant {tenant.id}")
        check(
            tenant.subdomain == self.subdomain,
            f"the tenant's subdomain is {tenant.subdomain!r}, expected {self.subdomain!r}",
        )
        check(
            tenant.state == tenant_pb2.TENANT_STATE_ACTIVE,
            f"the tenant's state is {tenant_pb2.TenantState.Name(tenant.state)}",
        )

    def create_admin(self):
        from ally.v1 import user_pb2

        user = self.call(
            self.users.CreateUser,
            user_pb2.CreateUserRequest(
                email=self.admin_email,
                display_name="Ada",
                role=user_pb2.ROLE_ADMIN,
                password=PASSWORD,
            ),
            self.owner_key,
        ).user
        check(user.id, "CreateUser returned no user id")
        check(user.role == user_pb2.ROLE_ADMIN, f"the role is {user_pb2.Role.Name(user.role)}")
        check(user.active, "the new user is not active")
        self.admin_id = user.id
        return f"user {user.id}"

    def log_in_admin(self):
        response = self.log_in(self.admin_email)
        check(
            response.user.id == self.admin_id,
            f"Login returned user {response.user.id}, expected {self.admin_id}",
        )
        self.admin_token = self.bearer(response.access_token)

    def create_viewer(self):
        from ally.v1 import user_pb2

        user = self.call(
            self.users.CreateUser,
            user_pb2.CreateUserRequest(
                email=self.viewer_email,
                display_name="Grace",
                role=user_pb2.ROLE_VIEWER,
                password=PASSWORD,
            ),
            self.admin_token,
        ).user
        check(user.role == user_pb2.ROLE_VIEWER, f"the role is {user_pb2.Role.Name(user.role)}")
        self.viewer_id = user.id
        return f"user {user.id}"

    def create_api_key(self):
        from ally.v1 import api_key_pb2

        response = self.call(
            self.api_keys.CreateApiKey,
            api_key_pb2.CreateApiKeyRequest(name="lifecycle"),
            self.admin_token,
        )
        check(response.secret.startswith("ally_ak"), "the key's secret has no ally_ak prefix")
        check(
            response.api_key.user_id == self.admin_id,
            f"the key belongs to user {response.api_key.user_id}, expected {self.admin_id}",
        )
        check(
            not response.api_key.HasField("revoke_time"),
            "the new key is already revoked",
        )
        self.api_key_id = response.api_key.id
        self.key = self.api_key(response.secret)
        return f"key {response.api_key.key_id}"

    def write_configuration(self):
        from ally.v1 import configuration_pb2

        request = configuration_pb2.UpdateConfigurationRequest(
            config_type=CONFIG_TYPE, description="first model"
        )
        request.value.update({"model": "small", "temperature": 0.2})
        configuration = self.call(
            self.configurations.UpdateConfiguration, request, self.key
        ).configuration
        check(configuration.version == 1, f"the version is {configuration.version}, expected 1")
        check(configuration.etag, "the configuration has no etag")
        check(
            configuration.value["model"] == "small",
            f"the stored model is {configuration.value['model']!r}",
        )
        self.first_etag = configuration.etag

    def version_configuration(self):
        import grpc

        from ally.v1 import configuration_pb2

        request = configuration_pb2.UpdateConfigurationRequest(
            config_type=CONFIG_TYPE, description="larger model", etag=self.first_etag
        )
        request.value.update({"model": "large", "temperature": 0.2})
        configuration = self.call(
            self.configurations.UpdateConfiguration, request, self.key
        ).configuration
        check(configuration.version == 2, f"the version is {configuration.version}, expected 2")

        # The first etag names version 1, which is no longer current.
        stale = configuration_pb2.UpdateConfigurationRequest(
            config_type=CONFIG_TYPE, etag=self.first_etag
        )
        stale.value.update({"model": "lost update"})
        try:
            self.call(self.configurations.UpdateConfiguration, stale, self.key)
        except grpc.RpcError as error:
            check(
                error.code() == grpc.StatusCode.ABORTED,
                f"a stale etag failed with {describe_rpc_error(error)}, expected ABORTED",
            )
            check(
                "[reason VERSION_MISMATCH]" in describe_rpc_error(error),
                f"a stale etag failed with {describe_rpc_error(error)}, "
                "expected the reason VERSION_MISMATCH",
            )
        else:
            raise StepFailed("an update with a stale etag was accepted")

    def list_revisions(self):
        from ally.v1 import configuration_pb2

        revisions = self.call(
            self.configurations.ListConfigurationRevisions,
            configuration_pb2.ListConfigurationRevisionsRequest(config_type=CONFIG_TYPE),
            self.key,
        ).revisions
        versions = sorted(revision.version for revision in revisions)
        check(versions == [1, 2], f"the revisions are versions {versions}, expected [1, 2]")
        current = self.call(
            self.configurations.GetConfiguration,
            configuration_pb2.GetConfigurationRequest(config_type=CONFIG_TYPE),
            self.key,
        ).configuration
        check(current.version == 2, f"the active version is {current.version}, expected 2")
        check(
            current.value["model"] == "large",
            f"the active model is {current.value['model']!r}, expected 'large'",
        )

    def open_session(self):
        from ally.v1 import chat_pb2

        session = self.call(
            self.chat.CreateSession,
            chat_pb2.CreateSessionRequest(title="Trip planning"),
            self.key,
        ).session
        check(session.id, "CreateSession returned no session id")
        check(
            session.status == chat_pb2.SESSION_STATUS_ACTIVE,
            f"the session's status is {chat_pb2.SessionStatus.Name(session.status)}",
        )
        check(
            session.user_id == self.admin_id,
            f"the session belongs to {session.user_id}, expected {self.admin_id}",
        )
        self.session_id = session.id
        return f"session {session.id}"

    def add_message(self, role, content, parent_id=""):
        from ally.v1 import chat_pb2

        message = self.call(
            self.chat.AddMessage,
            chat_pb2.AddMessageRequest(
                session_id=self.session_id, role=role, content=content, parent_id=parent_id
            ),
            self.key,
        ).message
        check(message.id, "AddMessage returned no message id")
        check(
            message.parent_id == parent_id,
            f"message {message.id} has parent {message.parent_id!r}, expected {parent_id!r}",
        )
        check(message.content == content, f"message {message.id} has other content")
        return message.id

    def add_thread(self):
        from ally.v1 import chat_pb2

        self.parent_id = self.add_message(chat_pb2.MESSAGE_ROLE_USER, "Where should we go?")
        self.branch_ids = [
            self.add_message(chat_pb2.MESSAGE_ROLE_ASSISTANT, "Lisbon.", self.parent_id),
            self.add_message(chat_pb2.MESSAGE_ROLE_ASSISTANT, "Kyoto.", self.parent_id),
        ]

    def list_thread(self):
        from ally.v1 import chat_pb2

        everything = self.call(
            self.chat.ListMessages,
            chat_pb2.ListMessagesRequest(session_id=self.session_id),
            self.key,
        ).messages
        expected = [self.parent_id, *self.branch_ids]
        listed = [message.id for message in everything]
        check(listed == expected, f"the session lists {listed}, expected {expected}")

        children = self.call(
            self.chat.ListMessages,
            chat_pb2.ListMessagesRequest(session_id=self.session_id, parent_id=self.parent_id),
            self.key,
        ).messages
        child_ids = [message.id for message in children]
        check(
            child_ids == self.branch_ids,
            f"the parent's children are {child_ids}, expected {self.branch_ids}",
        )

        session = self.call(
            self.chat.GetSession, chat_pb2.GetSessionRequest(id=self.session_id), self.key
        ).session
        check(
            session.message_count == 3,
            f"the session counts {session.message_count} messages, expected 3",
        )

    def share_session(self):
        from ally.v1 import chat_pb2

        response = self.call(
            self.chat.ShareSession, chat_pb2.ShareSessionRequest(id=self.session_id), self.key
        )
        check(response.share_token, "ShareSession returned no share token")
        check(response.session.shared, "the session is not marked as shared")
        self.share_token = response.share_token

    def read_shared(self):
        import grpc

        from ally.v1 import chat_pb2

        viewer = self.bearer(self.log_in(self.viewer_email).access_token)

        # The viewer may not open another user's session directly, only through the token.
        try:
            self.call(
                self.chat.GetSession, chat_pb2.GetSessionRequest(id=self.session_id), viewer
            )
        except grpc.RpcError as error:
            check(
                error.code() == grpc.StatusCode.NOT_FOUND,
                f"GetSession by the viewer failed with {describe_rpc_error(error)}, "
                "expected NOT_FOUND",
            )
        else:
            raise StepFailed("the viewer opened the admin's session without the share token")

        shared = self.call(
            self.chat.GetSharedSession,
            chat_pb2.GetSharedSessionRequest(share_token=self.share_token),
            viewer,
        )
        check(
            shared.session.id == self.session_id,
            f"the share token opened session {shared.session.id}, expected {self.session_id}",
        )
        listed = [message.id for message in shared.messages]
        expected = [self.parent_id, *self.branch_ids]
        check(listed == expected, f"the shared session lists {listed}, expected {expected}")

    def find_audit_entries(self):
        from ally.v1 import audit_pb2

        entries = []
        page_token = ""
        while True:
            response = self.call(
                self.audit.ListAuditEntries,
                audit_pb2.ListAuditEntriesRequest(page_size=100, page_token=page_token),
                self.owner_key,
            )
            entries.extend(response.audit_entries)
            page_token = response.next_page_token
            if not page_token:
                break

        found = {(entry.event_type, entry.resource_id) for entry in entries}
        expected = [
            ("user.created", self.admin_id),
            ("user.created", self.viewer_id),
            ("auth.login", self.admin_id),
            ("auth.login", self.viewer_id),
            ("api_key.created", self.api_key_id),
            ("chat_session.created", self.session_id),
            ("message.created", self.parent_id),
            ("message.created", self.branch_ids[0]),
            ("message.created", self.branch_ids[1]),
            ("chat_session.shared", self.session_id),
        ]
        missing = [pair for pair in expected if pair not in found]
        check(
            not missing,
            f"the audit trail lacks (event, resource) {missing}; it has {sorted(found)}",
        )
        foreign = [entry.id for entry in entries if entry.tenant_id != self.tenant_id]
        check(not foreign, f"the audit trail shows entries of other tenants: {foreign}")
        # A configuration entry names the revision row, so match it by its metadata.
        versions = sorted(
            entry.metadata["version"]
            for entry in entries
            if entry.event_type == "configuration.updated"
            and entry.metadata["config_type"] == CONFIG_TYPE
        )
        check(
            versions == [1, 2],
            f"configuration.updated entries name versions {versions}, expected [1, 2]",
        )
        by_key = [
            entry
            for entry in entries
            if entry.actor_type == audit_pb2.ACTOR_TYPE_API_KEY
            and entry.event_type == "chat_session.created"
        ]
        check(
            len(by_key) == 1,
            f"{len(by_key)} chat_session.created entries name the API key as actor, expected 1",
        )
        return f"{len(entries)} entries"

    def revoke_api_key(self):
        from ally.v1 import api_key_pb2

        revoked = self.call(
            self.api_keys.RevokeApiKey,
            api_key_pb2.RevokeApiKeyRequest(id=self.api_key_id),
            self.admin_token,
        ).api_key
        check(revoked.HasField("revoke_time"), "the revoked key has no revoke_time")

    def reject_revoked_key(self):
        import grpc

        from ally.v1 import configuration_pb2

        try:
            self.call(
                self.configurations.GetConfiguration,
                configuration_pb2.GetConfigurationRequest(config_type=CONFIG_TYPE),
                self.key,
            )
        except grpc.RpcError as error:
            check(
                error.code() == grpc.StatusCode.UNAUTHENTICATED,
                f"the call failed with {describe_rpc_error(error)}, expected UNAUTHENTICATED",
            )
        else:
            raise StepFailed("a call with the revoked key succeeded")


def main():
    args = parse_args()
    import_modules(args.stubs.resolve())
    import grpc

    lifecycle = Lifecycle(args)
    steps = lifecycle.steps()
    for number, (name, run) in enumerate(steps, start=1):
        try:
            outcome = run()
        except StepFailed as failure:
            print(f"FAILED step {number} ({name}): {failure}", file=sys.stderr)
            return 1
        except grpc.RpcError as error:
            print(
                f"FAILED step {number} ({name}): the call failed with "
                f"{describe_rpc_error(error)}",
                file=sys.stderr,
            )
            return 1
        suffix = f": {outcome}" if outcome else ""
        print(f"ok   step {number:2} {name}{suffix}", flush=True)
    print(f"lifecycle passed: {len(steps)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
