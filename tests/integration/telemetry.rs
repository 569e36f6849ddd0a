//! Traces, metrics and log output, checked at their destinations: an OTLP/gRPC receiver on
//! 127.0.0.1:0 and a captured log writer.
//!
//! Each test installs the process-wide tracing subscriber and meter provider, so these tests
//! need one process per test, as cargo-nextest runs them. Under `cargo test` the second test
//! in the process fails with "a global tracing subscriber is already installed".

use std::sync::Arc;

use ally::proto::ally::v1 as pb;
use ally::telemetry::{Telemetry, TelemetryOptions};
use mysql_async::prelude::Queryable;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use secrecy::SecretString;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::backend_tests;
use crate::common::clients::{Credential, auth, tenants};
use crate::common::otlp::{CapturedLog, Receiver, int_attribute, string_attribute};
use crate::common::{TestBackend, TestServer, mariadb_admin_url};

backend_tests!(trace_export, metrics_export, secrets_stay_out_of_output);

/// Installs Ally's subscriber with JSON lines (the production format) into `log`, exporting to
/// `receiver`.
fn install(receiver: &Receiver, log: &CapturedLog, log_filter: &str) -> Arc<Telemetry> {
    let writer = log.clone();
    let telemetry = ally::telemetry::install(TelemetryOptions {
        environment: ally::config::Environment::Production,
        log_filter: log_filter.to_string(),
        otlp_endpoint: Some(receiver.endpoint()),
        writer: BoxMakeWriter::new(move || writer.clone()),
    })
    .expect("telemetry installs");
    assert!(telemetry.is_exporting());
    Arc::new(telemetry)
}

/// Sends buffered spans and metrics to the receiver and waits for the exports to finish.
async fn flush(telemetry: &Arc<Telemetry>) {
    let telemetry = telemetry.clone();
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .expect("flush");
}

async fn create_tenant(
    test: &TestServer,
    subdomain: &str,
    password: &str,
) -> pb::CreateTenantResponse {
    tenants(&test.channel, Credential::operator())
        .create_tenant(pb::CreateTenantRequest {
            name: format!("Tenant {subdomain}"),
            subdomain: subdomain.to_string(),
            owner: Some(pb::InitialOwner {
                email: format!("owner@{subdomain}.example"),
                display_name: "Owner".into(),
                password: password.to_string(),
            }),
            ..Default::default()
        })
        .await
        .expect("create tenant")
        .into_inner()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn trace_export(backend: TestBackend) {
    let receiver = Receiver::start().await;
    let log = CapturedLog::default();
    let telemetry = install(&receiver, &log, "info");
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test, "traced", "").await;
    let tenant_id = created.tenant.expect("tenant").id;

    let mut request = tonic::Request::new(pb::GetTenantRequest::default());
    Credential::api_key(&created.owner_api_key).apply(&mut request);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(traceparent.as_str()).unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("trace-test-1"));
    pb::tenant_service_client::TenantServiceClient::new(test.channel.clone())
        .get_tenant(request)
        .await
        .expect("get tenant");
    test.stop().await;
    flush(&telemetry).await;

    let spans = receiver.spans();
    let (resource, rpc) = spans
        .iter()
        .find(|(_, span)| string_attribute(&span.attributes, "request.id") == Some("trace-test-1"))
        .unwrap_or_else(|| {
            panic!(
                "no span with request.id trace-test-1 among {} spans",
                spans.len()
            )
        });
    assert_eq!(
        hex(&rpc.trace_id),
        TRACE_ID,
        "the RPC span joins the caller's trace"
    );
    assert_eq!(hex(&rpc.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(rpc.name, "ally.v1.TenantService/GetTenant");
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(
        string_attribute(&rpc.attributes, "rpc.system"),
        Some("grpc")
    );
    assert_eq!(
        string_attribute(&rpc.attributes, "rpc.service"),
        Some("ally.v1.TenantService")
    );
    assert_eq!(
        string_attribute(&rpc.attributes, "rpc.method"),
        Some("GetTenant")
    );
    assert_eq!(
        string_attribute(&rpc.attributes, "tenant.id"),
        Some(tenant_id.as_str())
    );
    assert_eq!(
        int_attribute(&rpc.attributes, "rpc.grpc.status_code"),
        Some(0)
    );
    assert!(
        rpc.attributes
            .iter()
            .any(|attribute| attribute.key == "duration_ms"),
        "duration_ms is recorded"
    );

    let children: Vec<&str> = spans
        .iter()
        .filter(|(_, span)| span.parent_span_id == rpc.span_id)
        .map(|(_, span)| span.name.as_str())
        .collect();
    assert!(
        children.iter().any(|name| name.starts_with("repo.")),
        "a repository call is a child of the RPC span: {children:?}"
    );

    assert_eq!(string_attribute(resource, "service.name"), Some("ally"));
    assert_eq!(
        string_attribute(resource, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(
        log.text().contains("trace-test-1"),
        "log lines carry the request id"
    );
}

/// Returns the metric named `name` from the last export that has it.
fn find_metric(exports: &[ExportMetricsServiceRequest], name: &str) -> Metric {
    exports
        .iter()
        .rev()
        .flat_map(|export| &export.resource_metrics)
        .flat_map(|resource| &resource.scope_metrics)
        .flat_map(|scope| &scope.metrics)
        .find(|metric| metric.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("metric {name} was not exported"))
}

fn matches(attributes: &[KeyValue], expected: &[(&str, &str)]) -> bool {
    expected.iter().all(|(key, value)| {
        string_attribute(attributes, key) == Some(*value)
            || int_attribute(attributes, key)
                .map(|v| v.to_string())
                .as_deref()
                == Some(*value)
    })
}

/// Returns the count of the histogram data point whose attributes match `expected`.
fn histogram_count(metric: &Metric, expected: &[(&str, &str)]) -> Option<u64> {
    let Some(metric::Data::Histogram(histogram)) = &metric.data else {
        panic!("{} is not a histogram", metric.name);
    };
    histogram
        .data_points
        .iter()
        .find(|point| matches(&point.attributes, expected))
        .map(|point| point.count)
}

/// Returns the value of the sum data point whose attributes match `expected`.
fn sum_value(metric: &Metric, expected: &[(&str, &str)]) -> Option<i64> {
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!("{} is not a sum", metric.name);
    };
    sum.data_points
        .iter()
        .find(|point| matches(&point.attributes, expected))
        .and_then(|point| match point.value {
            Some(number_data_point::Value::AsInt(value)) => Some(value),
            Some(number_data_point::Value::AsDouble(value)) => Some(value as i64),
            None => None,
        })
}

async fn metrics_export(backend: TestBackend) {
    let receiver = Receiver::start().await;
    let log = CapturedLog::default();
    let telemetry = install(&receiver, &log, "info");
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test, "metered", "").await;
    let owner = Credential::api_key(&created.owner_api_key);

    for _ in 0..3 {
        tenants(&test.channel, owner.clone())
            .get_tenant(pb::GetTenantRequest::default())
            .await
            .expect("get tenant");
    }
    let failed = tenants(&test.channel, owner.clone())
        .get_tenant(pb::GetTenantRequest {
            id: "not-a-tenant-id".into(),
        })
        .await
        .expect_err("an invalid id fails");
    let failed_code = (failed.code() as i32).to_string();
    // The cache also stores "no active version", so the second read of a missing type is a hit.
    let mut configurations =
        pb::configuration_service_client::ConfigurationServiceClient::with_interceptor(
            test.channel.clone(),
            owner.clone(),
        );
    for _ in 0..2 {
        let _ = configurations
            .get_configuration(pb::GetConfigurationRequest {
                config_type: "telemetry.test".into(),
            })
            .await;
    }
    flush(&telemetry).await;

    let exports = receiver.received.metrics.lock().unwrap().clone();
    let rpc = find_metric(&exports, "rpc.server.call.duration");
    assert_eq!(rpc.unit, "s");
    let get_tenant = [
        ("rpc.system", "grpc"),
        ("rpc.service", "ally.v1.TenantService"),
        ("rpc.method", "GetTenant"),
    ];
    let ok = [get_tenant.as_slice(), &[("rpc.grpc.status_code", "0")]].concat();
    assert_eq!(
        histogram_count(&rpc, &ok),
        Some(3),
        "three successful calls"
    );
    let failed = [
        get_tenant.as_slice(),
        &[("rpc.grpc.status_code", failed_code.as_str())],
    ]
    .concat();
    assert_eq!(histogram_count(&rpc, &failed), Some(1), "one failed call");
    let create = [
        ("rpc.method", "CreateTenant"),
        ("rpc.grpc.status_code", "0"),
    ];
    assert_eq!(histogram_count(&rpc, &create), Some(1));

    let audit = find_metric(&exports, "ally.audit.entries");
    assert_eq!(
        sum_value(
            &audit,
            &[
                ("audit.event_type", "tenant.created"),
                ("audit.severity", "info")
            ]
        ),
        Some(1)
    );

    let cache = find_metric(&exports, "ally.cache.lookups");
    for result in ["miss", "hit"] {
        assert_eq!(
            sum_value(
                &cache,
                &[
                    ("cache.name", "configuration"),
                    ("cache.tier", "memory"),
                    ("cache.result", result),
                ]
            ),
            Some(1),
            "one cache {result}"
        );
    }

    let connections = find_metric(&exports, "db.client.connection.count");
    let idle = sum_value(
        &connections,
        &[
            ("db.client.connection.pool.name", "main"),
            ("db.client.connection.state", "idle"),
        ],
    )
    .expect("idle connections of the main pool");
    let used = sum_value(
        &connections,
        &[
            ("db.client.connection.pool.name", "main"),
            ("db.client.connection.state", "used"),
        ],
    )
    .expect("used connections of the main pool");
    assert!(idle >= 1, "the pool has opened a connection: idle {idle}");
    assert!(used >= 0, "used connections are never negative: {used}");
    if backend == TestBackend::Sqlite {
        let writer = sum_value(
            &connections,
            &[
                ("db.client.connection.pool.name", "writer"),
                ("db.client.connection.state", "idle"),
            ],
        );
        assert!(writer.is_some(), "the SQLite write pool is reported");
    }
    let pending = find_metric(&exports, "db.client.connection.pending_requests");
    assert_eq!(
        sum_value(&pending, &[("db.client.connection.pool.name", "main")]),
        Some(0),
        "nothing waits for a connection once the calls are done"
    );
    test.stop().await;
}

/// A MariaDB account with a password, made for one test and dropped with it.
struct PasswordAccount {
    user: String,
    password: String,
}

impl PasswordAccount {
    async fn create() -> PasswordAccount {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let account = PasswordAccount {
            user: format!("obs_{}", &suffix[suffix.len() - 12..]),
            password: format!("DbPassword{suffix}"),
        };
        let mut conn = mysql_async::Conn::from_url(mariadb_admin_url())
            .await
            .expect("MariaDB is reachable");
        for host in ["localhost", "127.0.0.1", "%"] {
            conn.query_drop(format!(
                "CREATE USER '{}'@'{host}' IDENTIFIED BY '{}'",
                account.user, account.password
            ))
            .await
            .expect("create user");
            conn.query_drop(format!("GRANT ALL ON *.* TO '{}'@'{host}'", account.user))
                .await
                .expect("grant");
        }
        conn.disconnect().await.ok();
        account
    }

    async fn drop_account(self) {
        let mut conn = mysql_async::Conn::from_url(mariadb_admin_url())
            .await
            .expect("MariaDB is reachable");
        for host in ["localhost", "127.0.0.1", "%"] {
            let _ = conn
                .query_drop(format!("DROP USER IF EXISTS '{}'@'{host}'", self.user))
                .await;
        }
        conn.disconnect().await.ok();
    }
}

/// Runs a login, a token refresh, an API key creation and use, and a chat message with the log
/// filter at TRACE for every target, then checks that no planted secret appears in any log
/// line or exported span, while the RPCs themselves were recorded.
async fn secrets_stay_out_of_output(backend: TestBackend) {
    let receiver = Receiver::start().await;
    let log = CapturedLog::default();
    let telemetry = install(&receiver, &log, "trace");

    let marker = uuid::Uuid::now_v7().simple().to_string();
    let owner_password = format!("OwnerPassword{marker}");
    let wrong_password = format!("WrongPassword{marker}");
    let message_body = format!("Message body {marker}");
    let mut secrets: Vec<(&str, String)> = vec![
        ("owner password", owner_password.clone()),
        ("wrong password", wrong_password.clone()),
        ("message body", message_body.clone()),
    ];

    // On MariaDB the server connects as an account with a password. SQLite has no password.
    let account = match backend {
        TestBackend::Mariadb => Some(PasswordAccount::create().await),
        TestBackend::Sqlite => None,
    };
    let test = TestServer::start_with(backend, |settings| {
        if let Some(account) = &account {
            let mut url =
                url::Url::parse(secrecy::ExposeSecret::expose_secret(&settings.database.url))
                    .expect("test database URL");
            url.set_username(&account.user).expect("user");
            url.set_password(Some(&account.password)).expect("password");
            settings.database.url = SecretString::from(url.to_string());
        }
    })
    .await;
    if let Some(account) = &account {
        secrets.push(("database password", account.password.clone()));
    }

    let created = create_tenant(&test, "secretive", &owner_password).await;
    secrets.push(("owner API key", created.owner_api_key.clone()));
    let login_tenant = pb::login_request::Tenant::TenantDomain("secretive".into());
    let email = "owner@secretive.example".to_string();

    let rejected = auth(&test.channel)
        .login(pb::LoginRequest {
            tenant: Some(login_tenant.clone()),
            email: email.clone(),
            password: wrong_password.clone(),
        })
        .await
        .expect_err("a wrong password fails");
    assert_eq!(rejected.code(), Code::Unauthenticated);
    let login = auth(&test.channel)
        .login(pb::LoginRequest {
            tenant: Some(login_tenant),
            email,
            password: owner_password.clone(),
        })
        .await
        .expect("login")
        .into_inner();
    secrets.push(("access token", login.access_token.clone()));
    secrets.push(("refresh token", login.refresh_token.clone()));
    let bearer = Credential::bearer(&login.access_token);

    let refreshed = auth(&test.channel)
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner();
    secrets.push(("refreshed access token", refreshed.access_token.clone()));
    secrets.push(("refreshed refresh token", refreshed.refresh_token.clone()));

    let key = crate::common::clients::api_keys(&test.channel, bearer.clone())
        .create_api_key(pb::CreateApiKeyRequest {
            name: "telemetry".into(),
            ..Default::default()
        })
        .await
        .expect("create API key")
        .into_inner();
    secrets.push(("API key", key.secret.clone()));
    let key_secret = key.secret.rsplit('_').next().unwrap_or_default();
    secrets.push(("API key secret part", key_secret.to_string()));
    tenants(&test.channel, Credential::api_key(&key.secret))
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("the new API key works");

    let mut chat =
        pb::chat_service_client::ChatServiceClient::with_interceptor(test.channel.clone(), bearer);
    let session = chat
        .create_session(pb::CreateSessionRequest {
            title: "Telemetry".into(),
            ..Default::default()
        })
        .await
        .expect("create session")
        .into_inner()
        .session
        .expect("session");
    chat.add_message(pb::AddMessageRequest {
        session_id: session.id,
        role: pb::MessageRole::User.into(),
        content: message_body.clone(),
        ..Default::default()
    })
    .await
    .expect("add message");

    test.stop().await;
    flush(&telemetry).await;
    if let Some(account) = account {
        account.drop_account().await;
    }

    let output = log.text();
    let exported = format!("{:?}", receiver.received.traces.lock().unwrap());

    // The capture must have seen the calls, or the checks below would pass on nothing.
    for method in ["Login", "Refresh", "CreateApiKey", "AddMessage"] {
        assert!(
            output.contains(&format!("\"rpc.method\":\"{method}\"")),
            "the log has no line of {method}"
        );
        assert!(
            exported.contains(&format!("StringValue(\"{method}\")")),
            "no exported span of {method}"
        );
    }
    assert!(
        output.contains("\"level\":\"TRACE\""),
        "the capture ran at TRACE"
    );

    for (name, secret) in &secrets {
        assert!(!secret.is_empty(), "{name} is planted");
        assert!(
            !output.contains(secret.as_str()),
            "the {name} appears in the log"
        );
        assert!(
            !exported.contains(secret.as_str()),
            "the {name} appears in an exported span"
        );
    }
    // A JWT's first segment is the same for every token; its signature is the secret part.
    for (name, token) in [
        ("access token", &login.access_token),
        ("refresh token", &login.refresh_token),
    ] {
        if let Some(signature) = token.rsplit('.').next() {
            assert!(
                !output.contains(signature),
                "the {name}'s signature appears in the log"
            );
        }
    }
}
