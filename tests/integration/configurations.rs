//! ConfigurationService through the generated client, on both backends, and its cache across
//! two server processes that share one database and one private Redis.

use std::time::Duration;

use ally::proto::ally::v1 as pb;
use ally::proto::ally::v1::configuration_service_client::ConfigurationServiceClient;
use pb::update_configuration_request::ValueSource;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use redis::AsyncCommands;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, api_keys, audit, create_tenant};
use crate::common::private_redis::PrivateRedis;
use crate::common::server_process::ServerProcess;
use crate::common::{TestBackend, TestDatabase, TestServer, wait_until};

backend_tests!(
    update_get_and_list,
    json_errors_name_field_and_position,
    stale_etag_aborted,
    rollback_copies_revision,
    delete_then_update_undeletes,
    tenants_isolated,
    update_visible_at_once,
    api_key_scopes_apply,
    two_servers_read_each_other,
    redis_outage_keeps_serving,
);

fn configurations(channel: &Channel, credential: Credential) -> ConfigurationServiceClient<Authed> {
    ConfigurationServiceClient::with_interceptor(channel.clone(), credential)
}

/// A tenant with its owner's credential and id.
struct Owner {
    tenant_id: String,
    user_id: String,
    credential: Credential,
}

async fn owner_of_new_tenant(channel: &Channel, name: &str) -> Owner {
    let created = create_tenant(channel, name, &name.to_lowercase()).await;
    let tenant_id = created.tenant.expect("tenant").id;
    let user_id = created.owner.expect("owner").id;
    Owner {
        credential: Credential::user(&tenant_id, &user_id, "owner"),
        tenant_id,
        user_id,
    }
}

fn number(value: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(value)),
    }
}

fn text(value: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.to_string())),
    }
}

/// Builds a Struct from `(key, value)` pairs.
fn object(fields: &[(&str, Value)]) -> Struct {
    Struct {
        fields: fields
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect(),
    }
}

fn field<'a>(configuration: &'a pb::Configuration, key: &str) -> Option<&'a Kind> {
    configuration
        .value
        .as_ref()
        .and_then(|value| value.fields.get(key))
        .and_then(|value| value.kind.as_ref())
}

fn update_json(config_type: &str, json: &str) -> pb::UpdateConfigurationRequest {
    pb::UpdateConfigurationRequest {
        config_type: config_type.to_string(),
        value_source: Some(ValueSource::ValueJson(json.to_string())),
        ..Default::default()
    }
}

async fn put(
    client: &mut ConfigurationServiceClient<Authed>,
    config_type: &str,
    json: &str,
) -> pb::Configuration {
    client
        .update_configuration(update_json(config_type, json))
        .await
        .expect("update")
        .into_inner()
        .configuration
        .expect("configuration")
}

async fn get(
    client: &mut ConfigurationServiceClient<Authed>,
    config_type: &str,
) -> Result<pb::Configuration, tonic::Status> {
    client
        .get_configuration(pb::GetConfigurationRequest {
            config_type: config_type.to_string(),
        })
        .await
        .map(|response| response.into_inner().configuration.expect("configuration"))
}

/// Returns the field and description of the first BadRequest violation.
fn violation(status: &tonic::Status) -> (String, String) {
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail in {status:?}"));
    let violation = &bad_request.field_violations[0];
    (violation.field.clone(), violation.description.clone())
}

fn reason(status: &tonic::Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

async fn update_get_and_list(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Acme").await;
    let mut client = configurations(&test.channel, owner.credential.clone());

    let first = client
        .update_configuration(pb::UpdateConfigurationRequest {
            config_type: "llm.defaults".into(),
            value_source: Some(ValueSource::Value(object(&[
                ("model", text("small")),
                ("temperature", number(0.5)),
            ]))),
            description: "first".into(),
            ..Default::default()
        })
        .await
        .expect("update with a Struct")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(first.version, 1);
    assert_eq!(first.config_type, "llm.defaults");
    assert_eq!(first.description, "first");
    assert_eq!(first.created_by, owner.user_id);
    assert!(!first.etag.is_empty());
    assert!(first.create_time.is_some());
    assert!(first.delete_time.is_none());

    let fetched = get(&mut client, "llm.defaults").await.expect("get");
    assert_eq!(fetched, first);
    assert_eq!(
        field(&fetched, "model"),
        Some(&Kind::StringValue("small".into()))
    );

    let second = put(
        &mut client,
        "llm.defaults",
        r#"{"model": "large", "nested": {"list": [1, true, null]}}"#,
    )
    .await;
    assert_eq!(second.version, 2);
    assert_ne!(second.etag, first.etag);
    assert_eq!(
        field(&second, "model"),
        Some(&Kind::StringValue("large".into()))
    );
    assert!(matches!(
        field(&second, "nested"),
        Some(Kind::StructValue(_))
    ));
    assert_eq!(field(&second, "temperature"), None);
    let fetched = get(&mut client, "llm.defaults").await.expect("get");
    assert_eq!(fetched.version, 2);

    put(&mut client, "llm.defaults", r#"{"model": "third"}"#).await;
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
                config_type: "llm.defaults".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("list revisions")
            .into_inner();
        assert!(page.revisions.len() <= 2);
        versions.extend(page.revisions.iter().map(|r| r.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(versions, vec![3, 2, 1]);

    let never_written = client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "never.written".into(),
            ..Default::default()
        })
        .await
        .expect("list revisions of an unknown type")
        .into_inner();
    assert!(never_written.revisions.is_empty());
    assert!(never_written.next_page_token.is_empty());

    let first_page = client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "llm.defaults".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let other_filter = client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "other.type".into(),
            page_size: 1,
            page_token: first_page.next_page_token,
        })
        .await
        .expect_err("a token of another type");
    assert_eq!(other_filter.code(), Code::InvalidArgument);

    let missing = get(&mut client, "no.such.type").await.expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);

    let entries = audit(&test.channel, owner.credential.clone())
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: Some(pb::AuditEntryFilter {
                event_type: "configuration.updated".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("list audit entries")
        .into_inner()
        .audit_entries;
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.actor_id == owner.user_id));
    assert!(entries.iter().all(|e| e.tenant_id == owner.tenant_id));
    test.stop().await;
}

async fn json_errors_name_field_and_position(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Json").await;
    let mut client = configurations(&test.channel, owner.credential.clone());

    let broken = client
        .update_configuration(update_json(
            "llm.defaults",
            "{\n  \"model\": \"m\",\n  oops\n}",
        ))
        .await
        .expect_err("invalid JSON");
    assert_eq!(broken.code(), Code::InvalidArgument);
    let (name, description) = violation(&broken);
    assert_eq!(name, "value_json");
    assert!(
        description.contains("line 3 column 3"),
        "description: {description}"
    );

    let truncated = client
        .update_configuration(update_json("llm.defaults", "{\"model\": "))
        .await
        .expect_err("truncated JSON");
    let (name, description) = violation(&truncated);
    assert_eq!(name, "value_json");
    assert!(description.contains("line 1 column"), "{description}");

    for (json, kind) in [
        ("[1, 2]", "an array"),
        ("\"text\"", "a string"),
        ("42", "a number"),
        ("null", "null"),
    ] {
        let status = client
            .update_configuration(update_json("llm.defaults", json))
            .await
            .expect_err("not an object");
        assert_eq!(status.code(), Code::InvalidArgument, "{json}");
        let (name, description) = violation(&status);
        assert_eq!(name, "value_json", "{json}");
        assert!(description.contains(kind), "{json}: {description}");
    }

    let large = format!("{{\"blob\":\"{}\"}}", "x".repeat(256 * 1024));
    let status = client
        .update_configuration(update_json("llm.defaults", &large))
        .await
        .expect_err("too large");
    assert_eq!(violation(&status).0, "value_json");

    let large_struct = client
        .update_configuration(pb::UpdateConfigurationRequest {
            config_type: "llm.defaults".into(),
            value_source: Some(ValueSource::Value(object(&[(
                "blob",
                text(&"x".repeat(256 * 1024)),
            )]))),
            ..Default::default()
        })
        .await
        .expect_err("too large as a Struct");
    assert_eq!(violation(&large_struct).0, "value");

    let no_value = client
        .update_configuration(pb::UpdateConfigurationRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect_err("no value");
    assert_eq!(violation(&no_value).0, "value");

    for bad_type in ["", "LLM.Defaults", "llm defaults", "llm:defaults"] {
        let status = client
            .update_configuration(update_json(bad_type, "{}"))
            .await
            .expect_err("invalid type");
        assert_eq!(violation(&status).0, "config_type", "{bad_type:?}");
    }
    let long_type = "a".repeat(101);
    let status = get(&mut client, &long_type).await.expect_err("long type");
    assert_eq!(violation(&status).0, "config_type");

    let long_description = client
        .update_configuration(pb::UpdateConfigurationRequest {
            description: "d".repeat(501),
            ..update_json("llm.defaults", "{}")
        })
        .await
        .expect_err("long description");
    assert_eq!(violation(&long_description).0, "description");

    let status = get(&mut client, "llm.defaults")
        .await
        .expect_err("nothing was written");
    assert_eq!(status.code(), Code::NotFound);
    test.stop().await;
}

async fn stale_etag_aborted(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Etag").await;
    let mut client = configurations(&test.channel, owner.credential.clone());

    let created = client
        .update_configuration(pb::UpdateConfigurationRequest {
            expected_version: Some(0),
            ..update_json("llm.defaults", r#"{"v": 1}"#)
        })
        .await
        .expect("create with expected_version 0")
        .into_inner()
        .configuration
        .expect("configuration");
    let second = client
        .update_configuration(pb::UpdateConfigurationRequest {
            etag: created.etag.clone(),
            ..update_json("llm.defaults", r#"{"v": 2}"#)
        })
        .await
        .expect("update with the current etag")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(second.version, 2);

    let stale = client
        .update_configuration(pb::UpdateConfigurationRequest {
            etag: created.etag.clone(),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale).as_deref(), Some("VERSION_MISMATCH"));

    let stale_version = client
        .update_configuration(pb::UpdateConfigurationRequest {
            expected_version: Some(1),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect_err("stale expected_version");
    assert_eq!(stale_version.code(), Code::Aborted);
    assert_eq!(reason(&stale_version).as_deref(), Some("VERSION_MISMATCH"));

    let exists = client
        .update_configuration(pb::UpdateConfigurationRequest {
            expected_version: Some(0),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect_err("expected no version");
    assert_eq!(exists.code(), Code::Aborted);

    let both = client
        .update_configuration(pb::UpdateConfigurationRequest {
            etag: second.etag.clone(),
            expected_version: Some(2),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect_err("etag and expected_version");
    assert_eq!(both.code(), Code::InvalidArgument);

    let third = client
        .update_configuration(pb::UpdateConfigurationRequest {
            expected_version: Some(2),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect("update with the current version")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(third.version, 3);

    let stale_delete = client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "llm.defaults".into(),
            etag: second.etag.clone(),
        })
        .await
        .expect_err("delete with a stale etag");
    assert_eq!(stale_delete.code(), Code::Aborted);
    assert_eq!(get(&mut client, "llm.defaults").await.unwrap().version, 3);
    test.stop().await;
}

async fn rollback_copies_revision(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Roll").await;
    let mut client = configurations(&test.channel, owner.credential.clone());
    let first = client
        .update_configuration(pb::UpdateConfigurationRequest {
            description: "known good".into(),
            ..update_json("llm.defaults", r#"{"model": "good"}"#)
        })
        .await
        .expect("update")
        .into_inner()
        .configuration
        .expect("configuration");
    let second = put(&mut client, "llm.defaults", r#"{"model": "bad"}"#).await;

    let stale = client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "llm.defaults".into(),
            version: 1,
            etag: first.etag.clone(),
        })
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(reason(&stale).as_deref(), Some("VERSION_MISMATCH"));

    let rolled = client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "llm.defaults".into(),
            version: 1,
            etag: second.etag.clone(),
        })
        .await
        .expect("rollback")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(rolled.version, 3);
    assert_eq!(rolled.value, first.value);
    assert_eq!(rolled.description, "known good");
    assert_eq!(get(&mut client, "llm.defaults").await.unwrap(), rolled);

    let revisions = client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .revisions;
    let versions: Vec<i32> = revisions.iter().map(|r| r.version).collect();
    assert_eq!(versions, vec![3, 2, 1]);
    assert_eq!(revisions[1].value, second.value);

    let missing = client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "llm.defaults".into(),
            version: 99,
            ..Default::default()
        })
        .await
        .expect_err("no such version");
    assert_eq!(missing.code(), Code::NotFound);
    let invalid = client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "llm.defaults".into(),
            version: 0,
            ..Default::default()
        })
        .await
        .expect_err("version 0");
    assert_eq!(violation(&invalid).0, "version");

    let entries = audit(&test.channel, owner.credential.clone())
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: Some(pb::AuditEntryFilter {
                event_type: "configuration.rolled_back".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("list audit entries")
        .into_inner()
        .audit_entries;
    assert_eq!(entries.len(), 1);
    test.stop().await;
}

async fn delete_then_update_undeletes(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Del").await;
    let mut client = configurations(&test.channel, owner.credential.clone());
    put(&mut client, "llm.defaults", r#"{"v": 1}"#).await;
    put(&mut client, "llm.defaults", r#"{"v": 2}"#).await;
    get(&mut client, "llm.defaults")
        .await
        .expect("cached before the delete");

    let deleted = client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(deleted.version, 2);
    assert!(deleted.delete_time.is_some());

    let status = get(&mut client, "llm.defaults").await.expect_err("deleted");
    assert_eq!(status.code(), Code::NotFound);
    let again = client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect_err("deleted twice");
    assert_eq!(again.code(), Code::NotFound);
    let stale = client
        .update_configuration(pb::UpdateConfigurationRequest {
            etag: deleted.etag.clone(),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect_err("etag of the deleted version");
    assert_eq!(stale.code(), Code::Aborted);

    let revisions = client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .revisions;
    assert_eq!(revisions.len(), 2);
    assert!(revisions[0].delete_time.is_some());
    assert!(revisions[1].delete_time.is_none());

    let undeleted = client
        .update_configuration(pb::UpdateConfigurationRequest {
            expected_version: Some(0),
            ..update_json("llm.defaults", r#"{"v": 3}"#)
        })
        .await
        .expect("update after the delete")
        .into_inner()
        .configuration
        .expect("configuration");
    assert_eq!(undeleted.version, 3);
    assert!(undeleted.delete_time.is_none());
    assert_eq!(get(&mut client, "llm.defaults").await.unwrap(), undeleted);

    let missing = client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "never.written".into(),
            ..Default::default()
        })
        .await
        .expect_err("never written");
    assert_eq!(missing.code(), Code::NotFound);

    let entries = audit(&test.channel, owner.credential.clone())
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: Some(pb::AuditEntryFilter {
                event_type: "configuration.deleted".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("list audit entries")
        .into_inner()
        .audit_entries;
    assert_eq!(entries.len(), 1);
    test.stop().await;
}

async fn tenants_isolated(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let alpha = owner_of_new_tenant(&test.channel, "Alpha").await;
    let beta = owner_of_new_tenant(&test.channel, "Beta").await;
    let mut alpha_client = configurations(&test.channel, alpha.credential.clone());
    let mut beta_client = configurations(&test.channel, beta.credential.clone());

    put(&mut beta_client, "beta.only", r#"{"secret": true}"#).await;
    put(&mut beta_client, "shared.name", r#"{"owner": "beta"}"#).await;
    put(
        &mut beta_client,
        "shared.name",
        r#"{"owner": "beta", "v": 2}"#,
    )
    .await;

    let hidden = get(&mut alpha_client, "beta.only")
        .await
        .expect_err("another tenant's type");
    assert_eq!(hidden.code(), Code::NotFound);
    let listed = alpha_client
        .list_configuration_revisions(pb::ListConfigurationRevisionsRequest {
            config_type: "beta.only".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.revisions.is_empty());
    let delete = alpha_client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "beta.only".into(),
            ..Default::default()
        })
        .await
        .expect_err("delete another tenant's type");
    assert_eq!(delete.code(), Code::NotFound);
    let rollback = alpha_client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "beta.only".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .expect_err("roll back another tenant's type");
    assert_eq!(rollback.code(), Code::NotFound);

    let alpha_shared = put(&mut alpha_client, "shared.name", r#"{"owner": "alpha"}"#).await;
    assert_eq!(alpha_shared.version, 1);
    let beta_shared = get(&mut beta_client, "shared.name").await.expect("get");
    assert_eq!(beta_shared.version, 2);
    assert_eq!(
        field(&beta_shared, "owner"),
        Some(&Kind::StringValue("beta".into()))
    );
    let alpha_read = get(&mut alpha_client, "shared.name").await.expect("get");
    assert_eq!(
        field(&alpha_read, "owner"),
        Some(&Kind::StringValue("alpha".into()))
    );

    alpha_client
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "shared.name".into(),
            ..Default::default()
        })
        .await
        .expect("delete alpha's type");
    assert_eq!(
        get(&mut beta_client, "shared.name").await.unwrap().version,
        2
    );
    assert_eq!(get(&mut beta_client, "beta.only").await.unwrap().version, 1);
    test.stop().await;
}

async fn update_visible_at_once(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Fresh").await;
    let mut client = configurations(&test.channel, owner.credential.clone());

    let missing = get(&mut client, "llm.defaults").await.expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    for version in 1..=3 {
        put(
            &mut client,
            "llm.defaults",
            &format!("{{\"v\": {version}}}"),
        )
        .await;
        for _ in 0..2 {
            let fetched = get(&mut client, "llm.defaults").await.expect("get");
            assert_eq!(fetched.version, version);
        }
    }
    client
        .rollback_configuration(pb::RollbackConfigurationRequest {
            config_type: "llm.defaults".into(),
            version: 1,
            ..Default::default()
        })
        .await
        .expect("rollback");
    let fetched = get(&mut client, "llm.defaults").await.expect("get");
    assert_eq!(fetched.version, 4);
    assert_eq!(field(&fetched, "v"), Some(&Kind::NumberValue(1.0)));
    test.stop().await;
}

async fn api_key_scopes_apply(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let owner = owner_of_new_tenant(&test.channel, "Scoped").await;
    let mut client = configurations(&test.channel, owner.credential.clone());
    put(&mut client, "llm.defaults", r#"{"v": 1}"#).await;

    let mut keys = api_keys(&test.channel, owner.credential.clone());
    let read_key = keys
        .create_api_key(pb::CreateApiKeyRequest {
            name: "reader".into(),
            scopes: vec!["configurations.read".into()],
            ..Default::default()
        })
        .await
        .expect("create a key with configurations.read")
        .into_inner();

    let mut reader = configurations(&test.channel, Credential::api_key(&read_key.secret));
    assert_eq!(get(&mut reader, "llm.defaults").await.unwrap().version, 1);
    let denied = reader
        .update_configuration(update_json("llm.defaults", "{}"))
        .await
        .expect_err("a read-only key writes");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // The free plan allows two live keys, and the owner's key is one of them.
    keys.revoke_api_key(pb::RevokeApiKeyRequest {
        id: read_key.api_key.expect("key").id,
    })
    .await
    .expect("revoke the reader key");
    let write_key = keys
        .create_api_key(pb::CreateApiKeyRequest {
            name: "writer".into(),
            scopes: vec!["configurations.write".into()],
            ..Default::default()
        })
        .await
        .expect("create a key with configurations.write")
        .into_inner();
    let mut writer = configurations(&test.channel, Credential::api_key(&write_key.secret));
    let written = put(&mut writer, "llm.defaults", r#"{"v": 2}"#).await;
    assert_eq!(written.created_by, write_key.api_key.expect("key").id);
    let denied = get(&mut writer, "llm.defaults")
        .await
        .expect_err("a write-only key reads");
    assert_eq!(denied.code(), Code::PermissionDenied);
    test.stop().await;
}

/// Two server processes on one database and one private Redis.
struct Replicas {
    first: ServerProcess,
    second: ServerProcess,
    first_channel: Channel,
    second_channel: Channel,
    redis: PrivateRedis,
    _database: TestDatabase,
}

impl Replicas {
    async fn start(backend: TestBackend) -> Replicas {
        let redis = PrivateRedis::start();
        let database = TestDatabase::create(backend).await;
        let redis_url = redis.url();
        let extra = [
            ("REDIS_URL", redis_url.as_str()),
            ("ALLY_CACHE__TTL", "300s"),
        ];
        // One after the other, so that only the first applies the migrations.
        let first = ServerProcess::start(&database, &extra);
        let second = ServerProcess::start(&database, &extra);
        let first_channel = first.channel().await;
        let second_channel = second.channel().await;
        Replicas {
            first,
            second,
            first_channel,
            second_channel,
            redis,
            _database: database,
        }
    }

    async fn stop(self) {
        self.first.stop().await;
        self.second.stop().await;
    }
}

async fn two_servers_read_each_other(backend: TestBackend) {
    let replicas = Replicas::start(backend).await;
    let owner = owner_of_new_tenant(&replicas.first_channel, "Pair").await;
    let mut writer = configurations(&replicas.first_channel, owner.credential.clone());
    let mut reader = configurations(&replicas.second_channel, owner.credential.clone());
    let key = ally::cache::redis_key(&owner.tenant_id, "llm.defaults");
    let mut redis = replicas.redis.connection().await;

    put(&mut writer, "llm.defaults", r#"{"v": 1}"#).await;
    for _ in 0..3 {
        assert_eq!(get(&mut reader, "llm.defaults").await.unwrap().version, 1);
    }
    let stored: Option<String> = redis.get(&key).await.expect("Redis GET");
    assert!(
        stored
            .as_deref()
            .is_some_and(|s| s.contains("\"version\":1")),
        "Redis holds the row the second server read: {stored:?}"
    );
    let ttl_ms: i64 = redis.pttl(&key).await.expect("Redis PTTL");
    assert!(ttl_ms > 0, "TTL {ttl_ms} ms");
    assert!(ttl_ms <= 300_000, "TTL {ttl_ms} ms");

    for version in 2..=4 {
        put(
            &mut writer,
            "llm.defaults",
            &format!("{{\"v\": {version}}}"),
        )
        .await;
        let read = get(&mut reader, "llm.defaults").await.expect("read");
        assert_eq!(
            read.version, version,
            "the second server read a superseded version"
        );
        let read_again = get(&mut reader, "llm.defaults").await.expect("read");
        assert_eq!(read_again.version, version);
    }

    reader
        .delete_configuration(pb::DeleteConfigurationRequest {
            config_type: "llm.defaults".into(),
            ..Default::default()
        })
        .await
        .expect("delete through the second server");
    let deleted = get(&mut writer, "llm.defaults")
        .await
        .expect_err("the first server still serves the deleted type");
    assert_eq!(deleted.code(), Code::NotFound);
    replicas.stop().await;
}

async fn redis_outage_keeps_serving(backend: TestBackend) {
    let mut replicas = Replicas::start(backend).await;
    let owner = owner_of_new_tenant(&replicas.first_channel, "Outage").await;
    let mut first = configurations(&replicas.first_channel, owner.credential.clone());
    let mut second = configurations(&replicas.second_channel, owner.credential.clone());
    put(&mut first, "llm.defaults", r#"{"v": 1}"#).await;
    assert_eq!(get(&mut second, "llm.defaults").await.unwrap().version, 1);

    replicas.redis.stop();
    let written = put(&mut first, "llm.defaults", r#"{"v": 2}"#).await;
    assert_eq!(written.version, 2);
    assert_eq!(get(&mut first, "llm.defaults").await.unwrap().version, 2);
    assert_eq!(get(&mut second, "llm.defaults").await.unwrap().version, 2);
    let written = put(&mut second, "llm.defaults", r#"{"v": 3}"#).await;
    assert_eq!(written.version, 3);
    assert_eq!(get(&mut second, "llm.defaults").await.unwrap().version, 3);
    assert_eq!(get(&mut first, "llm.defaults").await.unwrap().version, 3);

    replicas.redis.restart();
    // The first command after the restart may fail while a connection is reopened, so each
    // attempt reads a type that Redis does not hold yet, until both servers fill it again.
    let redis = replicas.redis.connection().await;
    for (name, client) in [("first", &first), ("second", &second)] {
        let mut attempt = 0;
        let filled = wait_until(Duration::from_secs(5), || {
            attempt += 1;
            let config_type = format!("probe.{name}.{attempt}");
            let key = ally::cache::redis_key(&owner.tenant_id, &config_type);
            let mut client = client.clone();
            let mut redis = redis.clone();
            async move {
                let _ = get(&mut client, &config_type).await;
                redis.exists::<_, bool>(&key).await.unwrap_or(false)
            }
        })
        .await;
        assert!(filled, "reads through the {name} server fill Redis again");
    }
    assert_eq!(get(&mut second, "llm.defaults").await.unwrap().version, 3);
    put(&mut first, "llm.defaults", r#"{"v": 4}"#).await;
    assert_eq!(get(&mut second, "llm.defaults").await.unwrap().version, 4);
    replicas.stop().await;
}
