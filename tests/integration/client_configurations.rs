//! ClientConfigurationService through the generated client, and `ally legacy import`, on both
//! backends.

use std::process::{Command, Output};

use ally::models::{AuditLog, ClientConfiguration, Configuration};
use ally::proto::ally::v1 as pb;
use ally::schema::{audit_logs, client_configurations, configurations};
use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use prost_types::value::Kind;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, create_tenant, users};
use crate::common::{TEST_JWT_SECRET, TestBackend, TestDatabase, TestServer, test_settings};

backend_tests!(
    import_each_format,
    reimport_idempotent_and_conflicting,
    malformed_document_stores_nothing,
    dry_run_writes_nothing,
    migrate_writes_configuration_versions,
    secrets_never_stored,
    failed_migration_records_reason,
    list_filters_and_pagination,
    documents_isolated_between_tenants,
    original_text_for_admins_only,
    cli_imports_folder,
);

type Client = pb::client_configuration_service_client::ClientConfigurationServiceClient<Authed>;

fn client(test: &TestServer, credential: Credential) -> Client {
    pb::client_configuration_service_client::ClientConfigurationServiceClient::with_interceptor(
        test.channel.clone(),
        credential,
    )
}

/// A tenant with an owner client.
struct Tenant {
    id: String,
    owner_id: String,
    owner: Client,
}

async fn tenant(test: &TestServer, subdomain: &str) -> Tenant {
    let created = create_tenant(&test.channel, subdomain, subdomain).await;
    let id = created.tenant.expect("tenant").id;
    let owner_id = created.owner.expect("owner").id;
    let owner = client(test, Credential::api_key(&created.owner_api_key));
    Tenant {
        id,
        owner_id,
        owner,
    }
}

fn import_request(
    client_id: &str,
    version: &str,
    format: pb::LegacyFormat,
    document: &str,
) -> pb::ImportClientConfigurationRequest {
    pb::ImportClientConfigurationRequest {
        client_id: client_id.into(),
        legacy_version: version.into(),
        format: format.into(),
        document: document.into(),
    }
}

async fn import(
    client: &mut Client,
    client_id: &str,
    version: &str,
    format: pb::LegacyFormat,
    document: &str,
) -> pb::ClientConfiguration {
    client
        .import_client_configuration(import_request(client_id, version, format, document))
        .await
        .expect("import")
        .into_inner()
        .client_configuration
        .expect("document")
}

async fn migrate(
    client: &mut Client,
    id: &str,
    dry_run: bool,
) -> pb::MigrateClientConfigurationResponse {
    client
        .migrate_client_configuration(pb::MigrateClientConfigurationRequest {
            id: id.into(),
            dry_run,
        })
        .await
        .expect("migrate")
        .into_inner()
}

/// Every configuration version of a tenant, oldest first.
async fn configuration_rows(test: &TestServer, tenant_id: &str) -> Vec<Configuration> {
    let mut conn = test.server.database().read().await.expect("connection");
    configurations::table
        .filter(configurations::tenant_id.eq(tenant_id))
        .order((
            configurations::config_type.asc(),
            configurations::version.asc(),
        ))
        .select(Configuration::as_select())
        .load(&mut *conn)
        .await
        .expect("configurations")
}

async fn audit_rows(test: &TestServer, tenant_id: &str, event_type: &str) -> Vec<AuditLog> {
    let mut conn = test.server.database().read().await.expect("connection");
    audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .filter(audit_logs::event_type.eq(event_type))
        .select(AuditLog::as_select())
        .load(&mut *conn)
        .await
        .expect("audit entries")
}

async fn document_rows(test: &TestServer, tenant_id: &str) -> Vec<ClientConfiguration> {
    let mut conn = test.server.database().read().await.expect("connection");
    client_configurations::table
        .filter(client_configurations::tenant_id.eq(tenant_id))
        .select(ClientConfiguration::as_select())
        .load(&mut *conn)
        .await
        .expect("documents")
}

fn active_value(rows: &[Configuration], config_type: &str) -> Value {
    let row = rows
        .iter()
        .find(|row| row.config_type == config_type && row.is_active)
        .unwrap_or_else(|| panic!("no active {config_type}"));
    serde_json::from_str(&row.value).expect("JSON value")
}

fn string_value(value: &Option<prost_types::Value>) -> Option<String> {
    match value.as_ref()?.kind.as_ref()? {
        Kind::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

const ENV_DOCUMENT: &str = "# chat client\r\nexport OPENAI_API_MODEL=gpt-4o\r\nOPENAI_TEMPERATURE=\"0.7\"\r\nMAX_TOKENS=512 # cap\r\nSYSTEM_PROMPT='Answer briefly 🦀'\r\nENABLE_STREAMING=true\r\nUI_THEME=dark\r\nRATE_LIMIT_PER_MINUTE=60\r\nFANCY_FLAG=on\r\nOPENAI_API_KEY=sk-test-0123456789abcdefghijkl\r\n";

const INI_DOCUMENT: &str = "; legacy settings\n[llm]\nmodel = gpt-4o-mini\ntemperature: 0.2\n\n# branding\n[ui]\nprimary_color = #1f2937\n";

const JSON_DOCUMENT: &str = r#"{
  "llm": {"model": "gpt-4o", "max_tokens": 256},
  "chat": {"system_prompt": "Hi 𝄞", "streaming": false},
  "limits": {"requests_per_minute": 30}
}"#;

async fn import_each_format(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;

    let cases = [
        ("env-client", pb::LegacyFormat::Env, ENV_DOCUMENT),
        ("ini-client", pb::LegacyFormat::Ini, INI_DOCUMENT),
        ("json-client", pb::LegacyFormat::Json, JSON_DOCUMENT),
    ];
    for (client_id, format, document) in cases {
        let response = acme
            .owner
            .import_client_configuration(import_request(client_id, "1", format, document))
            .await
            .expect("import")
            .into_inner();
        let stored = response.client_configuration.expect("document");

        assert!(response.created, "{client_id}");
        assert_eq!(stored.client_id, client_id);
        assert_eq!(stored.legacy_version, "1");
        assert_eq!(stored.format(), format);
        assert_eq!(stored.original_text, document, "{client_id}");
        assert_eq!(
            stored.migration_status(),
            pb::LegacyMigrationStatus::Pending
        );
        assert!(stored.migrate_time.is_none());
    }

    // Without a format, the first significant line decides it.
    for (client_id, document, expected) in [
        ("detected-env", ENV_DOCUMENT, pb::LegacyFormat::Env),
        ("detected-ini", INI_DOCUMENT, pb::LegacyFormat::Ini),
        ("detected-json", JSON_DOCUMENT, pb::LegacyFormat::Json),
    ] {
        let stored = import(
            &mut acme.owner,
            client_id,
            "1",
            pb::LegacyFormat::Unspecified,
            document,
        )
        .await;
        assert_eq!(stored.format(), expected, "{client_id}");
    }

    let rows = document_rows(&test, &acme.id).await;
    assert_eq!(rows.len(), 6);
    let env_row = rows.iter().find(|r| r.client_id == "env-client").unwrap();
    assert_eq!(env_row.original_text.as_bytes(), ENV_DOCUMENT.as_bytes());
    assert_eq!(env_row.source_format, "env");
    let audits = audit_rows(&test, &acme.id, "client_configuration.imported").await;
    assert_eq!(audits.len(), 6);
    assert_eq!(audits[0].actor_type, "api_key");
    test.stop().await;
}

async fn reimport_idempotent_and_conflicting(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let first = import(
        &mut acme.owner,
        "web",
        "3",
        pb::LegacyFormat::Env,
        ENV_DOCUMENT,
    )
    .await;

    let again = acme
        .owner
        .import_client_configuration(import_request(
            "web",
            "3",
            pb::LegacyFormat::Unspecified,
            ENV_DOCUMENT,
        ))
        .await
        .expect("same import again")
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.client_configuration.as_ref(), Some(&first));

    let changed = ENV_DOCUMENT.replace("dark", "light");
    let status = acme
        .owner
        .import_client_configuration(import_request("web", "3", pb::LegacyFormat::Env, &changed))
        .await
        .expect_err("a different text under the same version");
    assert_eq!(status.code(), Code::AlreadyExists);
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some("legacy_version")
    );

    let next = import(&mut acme.owner, "web", "4", pb::LegacyFormat::Env, &changed).await;
    assert_ne!(next.id, first.id);

    let rows = document_rows(&test, &acme.id).await;
    assert_eq!(rows.len(), 2);
    let audits = audit_rows(&test, &acme.id, "client_configuration.imported").await;
    assert_eq!(audits.len(), 2);
    test.stop().await;
}

async fn malformed_document_stores_nothing(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;

    let cases = [
        (
            pb::LegacyFormat::Json,
            "{\n  \"llm\": {\"model\" \"x\"}\n}",
            "line 2, column 19",
        ),
        (
            pb::LegacyFormat::Ini,
            "[llm]\nmodel = x\nnot a pair\n",
            "line 3, column 1",
        ),
        (
            pb::LegacyFormat::Env,
            "A=1\nB=\"never closed\n",
            "line 2, column 3",
        ),
        (
            pb::LegacyFormat::Unspecified,
            "{\"🦀\": }",
            "line 1, column 7",
        ),
    ];
    for (format, document, position) in cases {
        let status = acme
            .owner
            .import_client_configuration(import_request("bad", "1", format, document))
            .await
            .expect_err("malformed document");
        assert_eq!(status.code(), Code::InvalidArgument, "{document:?}");
        let bad_request = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad_request.field_violations[0].field, "document");
        assert!(
            bad_request.field_violations[0]
                .description
                .contains(position),
            "{document:?}: {}",
            bad_request.field_violations[0].description
        );
    }

    let status = acme
        .owner
        .import_client_configuration(import_request(
            "big",
            "1",
            pb::LegacyFormat::Env,
            &format!("A={}", "x".repeat(1024 * 1024)),
        ))
        .await
        .expect_err("document over 1 MiB");
    assert_eq!(status.code(), Code::InvalidArgument);

    assert!(document_rows(&test, &acme.id).await.is_empty());
    assert!(
        audit_rows(&test, &acme.id, "client_configuration.imported")
            .await
            .is_empty()
    );
    test.stop().await;
}

async fn dry_run_writes_nothing(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let stored = import(
        &mut acme.owner,
        "web",
        "1",
        pb::LegacyFormat::Env,
        ENV_DOCUMENT,
    )
    .await;

    let response = migrate(&mut acme.owner, &stored.id, true).await;
    let report = response.report.expect("report");

    assert_eq!(report.status(), pb::LegacyMigrationStatus::Migrated);
    let types: Vec<&str> = report
        .configuration_types
        .iter()
        .map(|t| t.config_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "chat.defaults",
            "legacy.unmapped",
            "limits",
            "llm.defaults",
            "ui.branding"
        ]
    );
    assert!(report.configuration_types.iter().all(|t| t.version == 0));
    let llm = &report.configuration_types[3];
    assert_eq!(llm.fields_set, ["max_tokens", "model", "temperature"]);
    assert_eq!(llm.changed_fields.len(), 3);
    assert!(llm.changed_fields.iter().all(|c| c.old_value.is_none()));
    assert_eq!(report.unmapped_keys, ["FANCY_FLAG"]);
    assert_eq!(report.skipped_secrets, ["OPENAI_API_KEY"]);
    assert_eq!(response.client_configuration.as_ref(), Some(&stored));

    assert!(configuration_rows(&test, &acme.id).await.is_empty());
    let rows = document_rows(&test, &acme.id).await;
    assert_eq!(rows[0].migration_status, "pending");
    assert!(
        audit_rows(&test, &acme.id, "client_configuration.migrated")
            .await
            .is_empty()
    );
    test.stop().await;
}

async fn migrate_writes_configuration_versions(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    // An active llm.defaults that the migration merges over.
    {
        let mut conn = test.server.database().write().await.expect("connection");
        ally::repo::configurations::append_version(
            &mut conn,
            &ally::repo::configurations::NewVersion {
                tenant_id: &acme.id,
                config_type: "llm.defaults",
                value: r#"{"model": "gpt-3.5", "max_tokens": 512, "keep": 1}"#,
                description: None,
                created_by: None,
                now: ally::models::now(),
            },
        )
        .await
        .expect("first version");
    }
    let stored = import(
        &mut acme.owner,
        "web",
        "1",
        pb::LegacyFormat::Env,
        ENV_DOCUMENT,
    )
    .await;

    let response = migrate(&mut acme.owner, &stored.id, false).await;
    let report = response.report.expect("report");
    let document = response.client_configuration.expect("document");

    assert_eq!(report.status(), pb::LegacyMigrationStatus::Migrated);
    assert_eq!(
        document.migration_status(),
        pb::LegacyMigrationStatus::Migrated
    );
    assert!(document.migrate_time.is_some());
    assert_eq!(document.original_text, ENV_DOCUMENT);
    let llm = report
        .configuration_types
        .iter()
        .find(|t| t.config_type == "llm.defaults")
        .expect("llm.defaults report");
    assert_eq!(llm.version, 2);
    // max_tokens keeps its value, so only model and temperature change.
    let changed: Vec<&str> = llm
        .changed_fields
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(changed, ["model", "temperature"]);
    assert_eq!(
        string_value(&llm.changed_fields[0].old_value).as_deref(),
        Some("gpt-3.5")
    );
    assert_eq!(
        string_value(&llm.changed_fields[0].new_value).as_deref(),
        Some("gpt-4o")
    );

    let rows = configuration_rows(&test, &acme.id).await;
    assert_eq!(
        active_value(&rows, "llm.defaults"),
        json!({"model": "gpt-4o", "temperature": 0.7, "max_tokens": 512, "keep": 1})
    );
    assert_eq!(
        active_value(&rows, "chat.defaults"),
        json!({"system_prompt": "Answer briefly 🦀", "streaming": true})
    );
    assert_eq!(active_value(&rows, "ui.branding"), json!({"theme": "dark"}));
    assert_eq!(
        active_value(&rows, "limits"),
        json!({"requests_per_minute": 60})
    );
    assert_eq!(
        active_value(&rows, "legacy.unmapped"),
        json!({"FANCY_FLAG": "on"})
    );
    let written: Vec<(&str, i32)> = rows
        .iter()
        .filter(|r| r.is_active)
        .map(|r| (r.config_type.as_str(), r.version))
        .collect();
    assert_eq!(
        written,
        [
            ("chat.defaults", 1),
            ("legacy.unmapped", 1),
            ("limits", 1),
            ("llm.defaults", 2),
            ("ui.branding", 1)
        ]
    );
    let migrated_version = rows.iter().find(|r| r.is_active).unwrap();
    assert!(
        migrated_version.created_by.is_some(),
        "the calling API key is recorded"
    );
    let audits = audit_rows(&test, &acme.id, "client_configuration.migrated").await;
    assert_eq!(audits.len(), 1);
    let metadata: Value = serde_json::from_str(&audits[0].metadata).unwrap();
    assert_eq!(metadata["configuration_versions"]["llm.defaults"], json!(2));

    // A second run finds nothing to change and writes no versions.
    let again = migrate(&mut acme.owner, &stored.id, false).await;
    let again_report = again.report.expect("report");
    assert_eq!(again_report.status(), pb::LegacyMigrationStatus::Migrated);
    assert!(
        again_report
            .configuration_types
            .iter()
            .all(|t| t.version == 0)
    );
    assert!(
        again_report
            .configuration_types
            .iter()
            .all(|t| t.changed_fields.is_empty())
    );
    assert_eq!(configuration_rows(&test, &acme.id).await.len(), rows.len());
    test.stop().await;
}

async fn secrets_never_stored(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let document = "[llm]\nmodel = gpt-4o\napi_key = sk-live-secret-value-0123456789\n[database]\nurl = mysql://app:hunter2pw@db/chat\npassword = hunter3pw\n[extra]\nclient_secret = hunter4pw\n";
    let stored = import(&mut acme.owner, "web", "1", pb::LegacyFormat::Ini, document).await;

    let response = migrate(&mut acme.owner, &stored.id, false).await;
    let report = response.report.expect("report");

    assert_eq!(report.status(), pb::LegacyMigrationStatus::Migrated);
    assert_eq!(
        report.skipped_secrets,
        [
            "llm.api_key",
            "database.url",
            "database.password",
            "extra.client_secret"
        ]
    );
    let rows = configuration_rows(&test, &acme.id).await;
    assert_eq!(rows.len(), 1, "only llm.defaults has a value to write");
    let audits = audit_rows(&test, &acme.id, "client_configuration.migrated").await;
    let report_text = format!("{report:?}");
    for secret in ["sk-live-secret", "hunter2pw", "hunter3pw", "hunter4pw"] {
        for row in &rows {
            assert!(
                !row.value.contains(secret),
                "{secret} stored in {}",
                row.config_type
            );
        }
        for audit in &audits {
            assert!(
                !audit.metadata.contains(secret),
                "{secret} in the audit entry"
            );
        }
        assert!(!report_text.contains(secret), "{secret} in the report");
    }
    test.stop().await;
}

async fn failed_migration_records_reason(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let document = "OPENAI_API_MODEL=gpt-4o\nOPENAI_TEMPERATURE=hot\nMAX_TOKENS=12.5\n";
    let stored = import(&mut acme.owner, "web", "1", pb::LegacyFormat::Env, document).await;

    let dry = migrate(&mut acme.owner, &stored.id, true).await;
    assert_eq!(
        dry.report.expect("report").status(),
        pb::LegacyMigrationStatus::Failed
    );
    assert_eq!(
        dry.client_configuration
            .expect("document")
            .migration_status(),
        pb::LegacyMigrationStatus::Pending
    );

    let response = migrate(&mut acme.owner, &stored.id, false).await;
    let report = response.report.expect("report");
    let failed = response.client_configuration.expect("document");

    assert_eq!(report.status(), pb::LegacyMigrationStatus::Failed);
    let errors: Vec<(&str, &str)> = report
        .errors
        .iter()
        .map(|e| (e.key.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            ("OPENAI_TEMPERATURE", "`hot` is not a number"),
            ("MAX_TOKENS", "`12.5` is not a whole number")
        ]
    );
    assert_eq!(failed.migration_status(), pb::LegacyMigrationStatus::Failed);
    assert!(
        failed
            .migration_error
            .starts_with("OPENAI_TEMPERATURE: `hot` is not a number"),
        "{}",
        failed.migration_error
    );
    assert!(failed.migrate_time.is_none());
    assert_eq!(failed.original_text, document);

    assert!(configuration_rows(&test, &acme.id).await.is_empty());
    let rows = document_rows(&test, &acme.id).await;
    assert_eq!(rows[0].migration_status, "failed");
    assert_eq!(rows[0].original_text, document);
    let fetched = acme
        .owner
        .get_client_configuration(pb::GetClientConfigurationRequest {
            id: stored.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .client_configuration
        .expect("document");
    assert_eq!(fetched.migration_error, failed.migration_error);
    assert_eq!(
        audit_rows(&test, &acme.id, "client_configuration.migration_failed")
            .await
            .len(),
        1
    );
    assert!(
        audit_rows(&test, &acme.id, "client_configuration.migrated")
            .await
            .is_empty()
    );
    test.stop().await;
}

async fn list_filters_and_pagination(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let mut ids = Vec::new();
    for (client_id, version) in [
        ("web", "1"),
        ("web", "2"),
        ("app", "1"),
        ("web", "3"),
        ("app", "2"),
    ] {
        let document = format!("OPENAI_API_MODEL=model-{client_id}-{version}\n");
        let stored = import(
            &mut acme.owner,
            client_id,
            version,
            pb::LegacyFormat::Env,
            &document,
        )
        .await;
        ids.push(stored.id);
    }
    migrate(&mut acme.owner, &ids[2], false).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = acme
            .owner
            .list_client_configurations(pb::ListClientConfigurationsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.client_configurations.len() <= 2);
        seen.extend(page.client_configurations.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every document once, oldest first");

    let web = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest {
            client_id: "web".into(),
            ..Default::default()
        })
        .await
        .expect("list web")
        .into_inner();
    let web_versions: Vec<&str> = web
        .client_configurations
        .iter()
        .map(|c| c.legacy_version.as_str())
        .collect();
    assert_eq!(web_versions, ["1", "2", "3"]);

    let migrated = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest {
            migration_status: pb::LegacyMigrationStatus::Migrated.into(),
            ..Default::default()
        })
        .await
        .expect("list migrated")
        .into_inner();
    assert_eq!(migrated.client_configurations.len(), 1);
    assert_eq!(migrated.client_configurations[0].id, ids[2]);

    let pending_app = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest {
            migration_status: pb::LegacyMigrationStatus::Pending.into(),
            client_id: "app".into(),
            ..Default::default()
        })
        .await
        .expect("list pending app")
        .into_inner();
    assert_eq!(pending_app.client_configurations.len(), 1);
    assert_eq!(pending_app.client_configurations[0].id, ids[4]);

    let first = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let status = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            client_id: "web".into(),
            ..Default::default()
        })
        .await
        .expect_err("token with other filters");
    assert_eq!(status.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn documents_isolated_between_tenants(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let mut globex = tenant(&test, "globex").await;
    let theirs = import(
        &mut globex.owner,
        "web",
        "1",
        pb::LegacyFormat::Env,
        ENV_DOCUMENT,
    )
    .await;

    let status = acme
        .owner
        .get_client_configuration(pb::GetClientConfigurationRequest {
            id: theirs.id.clone(),
        })
        .await
        .expect_err("another tenant's document");
    assert_eq!(status.code(), Code::NotFound);
    let status = acme
        .owner
        .migrate_client_configuration(pb::MigrateClientConfigurationRequest {
            id: theirs.id.clone(),
            dry_run: false,
        })
        .await
        .expect_err("migrating another tenant's document");
    assert_eq!(status.code(), Code::NotFound);
    let listed = acme
        .owner
        .list_client_configurations(pb::ListClientConfigurationsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.client_configurations.is_empty());

    // The same client id and version in another tenant is a separate document.
    let ours = import(&mut acme.owner, "web", "1", pb::LegacyFormat::Env, "A=1\n").await;
    assert_ne!(ours.id, theirs.id);
    assert!(configuration_rows(&test, &acme.id).await.is_empty());
    assert_eq!(
        document_rows(&test, &globex.id).await[0].migration_status,
        "pending"
    );
    test.stop().await;
}

async fn original_text_for_admins_only(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut acme = tenant(&test, "acme").await;
    let stored = import(
        &mut acme.owner,
        "web",
        "1",
        pb::LegacyFormat::Env,
        ENV_DOCUMENT,
    )
    .await;
    let owner_token = Credential::user(&acme.id, &acme.owner_id, "owner");
    let viewer = users(&test.channel, owner_token)
        .create_user(pb::CreateUserRequest {
            email: "viewer@acme.example".into(),
            display_name: "Viewer".into(),
            role: pb::Role::Viewer.into(),
            ..Default::default()
        })
        .await
        .expect("create viewer")
        .into_inner()
        .user
        .expect("user");
    let mut as_viewer = client(&test, Credential::user(&acme.id, &viewer.id, "viewer"));

    let seen = as_viewer
        .get_client_configuration(pb::GetClientConfigurationRequest {
            id: stored.id.clone(),
        })
        .await
        .expect("viewers may read")
        .into_inner()
        .client_configuration
        .expect("document");
    assert_eq!(seen.original_text, "");
    assert_eq!(seen.client_id, "web");
    let listed = as_viewer
        .list_client_configurations(pb::ListClientConfigurationsRequest::default())
        .await
        .expect("viewers may list")
        .into_inner();
    assert_eq!(listed.client_configurations[0].original_text, "");

    let status = as_viewer
        .import_client_configuration(import_request("web", "2", pb::LegacyFormat::Env, "A=1"))
        .await
        .expect_err("viewers may not import");
    assert_eq!(status.code(), Code::PermissionDenied);
    test.stop().await;
}

fn ally(database: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(args)
        .current_dir(database.dir())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &database.url)
        .env("ALLY_AUTH__JWT_SECRET", TEST_JWT_SECRET)
        .env("RUST_LOG", "error")
        .output()
        .expect("run ally")
}

async fn cli_imports_folder(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let migrated = ally(&database, &["migrate", "run"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let bootstrapped = ally(
        &database,
        &[
            "bootstrap",
            "--subdomain",
            "acme",
            "--owner-email",
            "owner@acme.example",
        ],
    );
    assert!(
        bootstrapped.status.success(),
        "{}",
        String::from_utf8_lossy(&bootstrapped.stderr)
    );
    let tenant_id = String::from_utf8_lossy(&bootstrapped.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("tenant id:"))
        .expect("tenant id printed")
        .trim()
        .to_string();

    let folder = database.dir().join("legacy");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("web@2.env"), ENV_DOCUMENT).unwrap();
    std::fs::write(folder.join("mobile.ini"), INI_DOCUMENT).unwrap();
    std::fs::write(folder.join("broken@1.json"), "{\"llm\": [1,\n").unwrap();
    std::fs::write(folder.join("README.md"), "not a legacy file").unwrap();
    let folder_arg = folder.to_str().unwrap();

    let output = ally(
        &database,
        &[
            "legacy",
            "import",
            folder_arg,
            "--tenant",
            &tenant_id,
            "--migrate",
        ],
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !output.status.success(),
        "a bad file must fail the run:\n{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("failed    broken@1.json: "), "{text}");
    assert!(lines[0].contains("line 2"), "{text}");
    assert!(
        lines[1].starts_with("imported  mobile.ini: client mobile, version 1"),
        "{text}"
    );
    assert!(lines[2].starts_with("migrated  mobile.ini: "), "{text}");
    assert!(
        lines[3].starts_with("imported  web@2.env: client web, version 2"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("migrated  web@2.env: 5 configuration types"),
        "{text}"
    );
    assert_eq!(
        lines[5],
        "3 files: 2 imported, 0 unchanged, 2 migrated, 1 failed"
    );

    std::fs::remove_file(folder.join("broken@1.json")).unwrap();
    let again = ally(
        &database,
        &["legacy", "import", folder_arg, "--tenant", &tenant_id],
    );
    let again_text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success(),
        "{again_text}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again_text.contains("unchanged mobile.ini"), "{again_text}");
    assert!(
        again_text.ends_with("2 files: 0 imported, 2 unchanged, 0 migrated, 0 failed\n"),
        "{again_text}"
    );

    let unknown = ally(
        &database,
        &[
            "legacy",
            "import",
            folder_arg,
            "--tenant",
            "0193a0a0-0000-7000-8000-000000000001",
        ],
    );
    assert!(!unknown.status.success());

    let server = ally::server::start(test_settings(&database.url, database.dir()))
        .await
        .expect("server starts");
    let mut conn = server.database().read().await.expect("connection");
    let documents: Vec<ClientConfiguration> = client_configurations::table
        .filter(client_configurations::tenant_id.eq(&tenant_id))
        .select(ClientConfiguration::as_select())
        .load(&mut *conn)
        .await
        .expect("documents");
    assert_eq!(documents.len(), 2);
    assert!(documents.iter().all(|d| d.migration_status == "migrated"));
    let web = documents.iter().find(|d| d.client_id == "web").unwrap();
    assert_eq!(web.original_text, ENV_DOCUMENT);
    let versions: Vec<Configuration> = configurations::table
        .filter(configurations::tenant_id.eq(&tenant_id))
        .filter(configurations::config_type.eq("llm.defaults"))
        .select(Configuration::as_select())
        .load(&mut *conn)
        .await
        .expect("versions");
    // mobile.ini and web@2.env both set llm.defaults, sorted by file name.
    assert_eq!(versions.len(), 2);
    let audits: Vec<AuditLog> = audit_logs::table
        .filter(audit_logs::tenant_id.eq(&tenant_id))
        .filter(audit_logs::event_type.eq("client_configuration.imported"))
        .select(AuditLog::as_select())
        .load(&mut *conn)
        .await
        .expect("audit entries");
    assert_eq!(audits.len(), 2);
    assert_eq!(audits[0].actor_type, "system");
    assert_eq!(audits[0].actor_id.as_deref(), Some("legacy import"));
    drop(conn);
    server.shutdown().await.expect("clean shutdown");
}
