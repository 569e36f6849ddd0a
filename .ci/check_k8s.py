#!/usr/bin/env python3
"""Validate a kustomize folder of Kubernetes manifests without running kustomize.

Usage: check_k8s.py K8S_DIR VERSION [VERSION ...]

Each file that kustomization.yaml lists is validated on its own, in strict mode, against the
Kubernetes JSON schemas bundled in the kubernetes-validate package, once per given Kubernetes
version. The ConfigMap that the configMapGenerator builds from its env file is validated too.
A resource whose kind has no schema is an error, where the kubernetes-validate command line
only warns.

Then the references between resources are checked. Selectors must match the pod labels, and
ports and probes must name container ports. Every ConfigMap, Secret and ServiceAccount
reference must name what the folder provides. The pods must carry the security settings of
the "restricted" Pod Security Standard that this folder relies on. The script prints every
problem and exits 1 if there was one.
"""

import sys
from pathlib import Path

import yaml
from kubernetes_validate import utils as kv

# Keys of the operator-created Secret that the manifests may reference.
SECRET_NAME = "ally-secrets"
SECRET_KEYS = {"database-url", "redis-url", "jwt-secret"}
# Settings that contain credentials and so must never be in the generated ConfigMap.
SECRET_SETTINGS = {
    "DATABASE_URL",
    "REDIS_URL",
    "ALLY_DATABASE__URL",
    "ALLY_REDIS__URL",
    "ALLY_AUTH__JWT_SECRET",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")


class Report:
    def __init__(self):
        self.problems = []

    def add(self, where, message):
        self.problems.append(f"{where}: {message}")


def load_documents(path, report):
    """Return the non-empty YAML documents of a file, or an empty list after a parse error."""
    try:
        with open(path, encoding="utf-8") as file:
            return [doc for doc in yaml.safe_load_all(file) if doc]
    except (OSError, yaml.YAMLError) as error:
        report.add(path, f"cannot be read as YAML: {error}")
        return []


def read_env_file(path, report):
    """Parse KEY=value lines as kustomize's `envs` does, rejecting duplicates and secrets."""
    data = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        report.add(path, f"cannot be read: {error}")
        return data
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, separator, value = stripped.partition("=")
        where = f"{path}:{number}"
        if not separator or not key:
            report.add(where, "expected KEY=value")
            continue
        if key in data:
            report.add(where, f"{key} is set twice")
        upper = key.upper()
        if upper in SECRET_SETTINGS or any(word in upper for word in SECRET_WORDS):
            report.add(where, f"{key} contains a credential; take it from the Secret instead")
        data[key] = value
    return data


def validate_schema(resource, where, versions, report):
    for version in versions:
        try:
            kv.validate(resource, version, strict=True)
        except kv.ValidationError as error:
            path = ".".join(str(item) for item in error.path) or "(top level)"
            report.add(where, f"Kubernetes {version}: {path}: {error.message}")
        except kv.SchemaNotFoundError as error:
            report.add(where, f"Kubernetes {version}: {error.message}")
        except kv.VersionNotSupportedError as error:
            report.add(where, error.message)
        except (KeyError, TypeError) as error:
            report.add(where, f"not a Kubernetes resource (missing {error})")


def name_of(resource):
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def selects(selector_labels, pod_labels):
    return bool(selector_labels) and all(
        pod_labels.get(key) == value for key, value in selector_labels.items()
    )


def pod_spec(resource):
    return resource["spec"]["template"]["spec"]


def pod_labels(resource):
    return resource["spec"]["template"]["metadata"].get("labels", {})


def container_ports(resource):
    ports = {}
    for container in pod_spec(resource)["containers"]:
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port.get("name")
    return ports


def check_workload(resource, config_maps, service_accounts, report):
    where = name_of(resource)
    spec = pod_spec(resource)
    account = spec.get("serviceAccountName", "default")
    if account not in service_accounts:
        report.add(where, f"serviceAccountName {account} is not defined in the folder")

    pod_security = spec.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        report.add(where, "pod securityContext.runAsNonRoot must be true")
    if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        report.add(where, "pod seccompProfile must be RuntimeDefault")

    port_numbers = container_ports(resource)
    for container in spec["containers"]:
        location = f"{where} container {container['name']}"
        security = container.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False:
            report.add(location, "allowPrivilegeEscalation must be false")
        if security.get("readOnlyRootFilesystem") is not True:
            report.add(location, "readOnlyRootFilesystem must be true")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            report.add(location, "capabilities must drop ALL")

        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref and ref.get("name") not in config_maps:
                message = f"envFrom names ConfigMap {ref.get('name')}, which is not generated"
                report.add(location, message)
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if ref.get("name") != SECRET_NAME or ref.get("key") not in SECRET_KEYS:
                report.add(
                    location,
                    f"{variable['name']} reads Secret {ref.get('name')} key {ref.get('key')}; "
                    f"expected {SECRET_NAME} with one of {sorted(SECRET_KEYS)}",
                )

        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if probe and "grpc" in probe and probe["grpc"]["port"] not in port_numbers:
                port = probe["grpc"]["port"]
                report.add(location, f"{probe_name} uses port {port}, not a container port")


def check_references(resources, config_maps, namespace, report):
    by_kind = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], []).append(resource)
    deployments = by_kind.get("Deployment", [])
    workloads = deployments + by_kind.get("Job", [])
    service_accounts = {item["metadata"]["name"] for item in by_kind.get("ServiceAccount", [])}

    for item in by_kind.get("Secret", []):
        report.add(name_of(item), "commit no Secret; the operator creates it")
    namespaces = [item["metadata"]["name"] for item in by_kind.get("Namespace", [])]
    if namespace and namespaces and namespace not in namespaces:
        report.add("kustomization.yaml", f"namespace {namespace} is not the Namespace defined")

    for workload in workloads:
        check_workload(workload, config_maps, service_accounts, report)

    for deployment in deployments:
        if "replicas" in deployment["spec"] and by_kind.get("HorizontalPodAutoscaler"):
            report.add(name_of(deployment), "sets replicas, which undoes the autoscaler on apply")

    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector", {})
        targets = [d for d in deployments if selects(selector, pod_labels(d))]
        if not targets:
            report.add(name_of(service), f"selector {selector} matches no Deployment's pods")
        for target in targets:
            ports = container_ports(target)
            for port in service["spec"].get("ports", []):
                target_port = port.get("targetPort", port["port"])
                if target_port not in ports and target_port not in ports.values():
                    report.add(
                        name_of(service),
                        f"targetPort {target_port} is not a port of {name_of(target)}",
                    )

    for budget in by_kind.get("PodDisruptionBudget", []):
        selector = budget["spec"]["selector"].get("matchLabels", {})
        if not any(selects(selector, pod_labels(d)) for d in deployments):
            report.add(name_of(budget), f"selector {selector} matches no Deployment's pods")

    for autoscaler in by_kind.get("HorizontalPodAutoscaler", []):
        target = autoscaler["spec"]["scaleTargetRef"]
        names = {d["metadata"]["name"] for d in deployments}
        if target.get("kind") != "Deployment" or target.get("name") not in names:
            report.add(name_of(autoscaler), f"scaleTargetRef {target} is not a Deployment here")

    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        for workload in workloads:
            if not selects(selector, pod_labels(workload)):
                report.add(name_of(policy), f"does not select the pods of {name_of(workload)}")
        for deployment in deployments:
            numbers = set(container_ports(deployment))
            for rule in policy["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    if port.get("port") not in numbers:
                        message = f"ingress port {port.get('port')} is not a port of "
                        report.add(name_of(policy), message + name_of(deployment))


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    folder = Path(argv[1])
    versions = argv[2:]
    report = Report()

    kustomization_path = folder / "kustomization.yaml"
    documents = load_documents(kustomization_path, report)
    kustomization = documents[0] if documents else {}
    if kustomization.get("kind") != "Kustomization":
        report.add(kustomization_path, "is not a Kustomization")

    listed = kustomization.get("resources", [])
    present = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in sorted(set(present) - set(listed)):
        report.add(kustomization_path, f"{name} is in the folder but not in resources")
    for name in listed:
        if not (folder / name).is_file():
            report.add(kustomization_path, f"resources names {name}, which does not exist")

    resources = []
    for name in listed:
        path = folder / name
        if not path.is_file():
            continue
        for document in load_documents(path, report):
            validate_schema(document, f"{path} {name_of(document)}", versions, report)
            resources.append(document)

    config_maps = set()
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for env_name in generator.get("envs", []):
            data.update(read_env_file(folder / env_name, report))
        labels = generator.get("options", {}).get("labels", {})
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": generator["name"], "labels": labels},
            "data": data,
        }
        validate_schema(config_map, f"generated {name_of(config_map)}", versions, report)
        config_maps.add(generator["name"])

    if not report.problems:
        check_references(resources, config_maps, kustomization.get("namespace"), report)

    for problem in report.problems:
        print(f"error: {problem}")
    if report.problems:
        return 1
    print(f"{len(resources)} resources and {len(config_maps)} generated ConfigMap(s) in {folder} "
          f"are valid for Kubernetes {', '.join(versions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
