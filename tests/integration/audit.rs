//! AuditService through the generated client, and `ally audit prune` through the binary, on
//! both backends.

use std::collections::HashSet;
use std::process::Command;

use ally::models::{AuditLog, new_id, now};
use ally::proto::ally::v1 as pb;
use chrono::{Duration, NaiveDateTime};
use diesel_async::AsyncConnection;
use prost_types::Timestamp;
use prost_types::value::Kind;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, api_keys, audit, tenants};
use crate::common::{TestBackend, TestDatabase, TestServer, test_settings};

backend_tests!(
    list_filters_match_exactly,
    list_limited_to_own_tenant,
    list_rejects_invalid_filter,
    list_pages_through_every_entry,
    export_streams_every_entry,
    export_stops_when_client_leaves,
    delete_before_in_batches,
    prune_cli,
);

type Client = pb::audit_service_client::AuditServiceClient<Authed>;

/// Entries that creating a tenant writes: tenant.created, user.created and api_key.created.
const TENANT_CREATION_ENTRIES: usize = 3;

/// A tenant created through the API on the enterprise plan, which has no key quota.
struct TestTenant {
    id: String,
    owner_id: String,
}

impl TestTenant {
    fn owner(&self) -> Credential {
        Credential::user(&self.id, &self.owner_id, "owner")
    }
}

async fn create_tenant(channel: &Channel, subdomain: &str) -> TestTenant {
    let created = tenants(channel, Credential::operator())
        .create_tenant(pb::CreateTenantRequest {
            name: subdomain.to_string(),
            subdomain: subdomain.to_string(),
            plan: pb::Plan::Enterprise.into(),
            owner: Some(pb::InitialOwner {
                email: format!("owner@{subdomain}.example"),
                display_name: "Owner".into(),
                password: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("create tenant")
        .into_inner();
    TestTenant {
        id: created.tenant.expect("tenant").id,
        owner_id: created.owner.expect("owner").id,
    }
}

/// Creates an API key as the tenant's owner and returns it, which writes "api_key.created".
async fn create_key(channel: &Channel, tenant: &TestTenant, name: &str) -> pb::ApiKey {
    api_keys(channel, tenant.owner())
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.to_string(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .api_key
        .expect("api_key")
}

/// Builds an entry of `tenant_id` created at `created_at`, for inserting straight into the table.
fn entry_at(tenant_id: &str, event_type: &str, created_at: NaiveDateTime) -> AuditLog {
    AuditLog {
        tenant_id: tenant_id.to_string(),
        id: new_id(),
        actor_type: "system".into(),
        actor_id: None,
        event_type: event_type.to_string(),
        resource_type: None,
        resource_id: None,
        severity: "info".into(),
        request_id: None,
        ip_address: None,
        metadata: "{}".into(),
        created_at,
    }
}

async fn insert_entries(database: &ally::db::Database, entries: &[AuditLog]) {
    let mut conn = database.write().await.expect("connection");
    conn.transaction(async |conn| {
        for entry in entries {
            ally::repo::audit::insert(conn, entry).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .expect("insert audit entries");
}

fn filter() -> pb::AuditEntryFilter {
    pb::AuditEntryFilter::default()
}

/// Lists every entry that matches `filter` on one page.
async fn list(
    client: &mut Client,
    tenant_id: &str,
    filter: pb::AuditEntryFilter,
) -> Result<Vec<pb::AuditEntry>, tonic::Status> {
    let page = client
        .list_audit_entries(pb::ListAuditEntriesRequest {
            tenant_id: tenant_id.to_string(),
            page_size: 1000,
            page_token: String::new(),
            filter: Some(filter),
        })
        .await?
        .into_inner();
    assert!(page.next_page_token.is_empty(), "more than one page");
    Ok(page.audit_entries)
}

/// Returns `(seconds, nanos)` of a timestamp, which orders like the time.
fn instant(time: &Option<Timestamp>) -> (i64, i32) {
    let time = time.as_ref().expect("create_time");
    (time.seconds, time.nanos)
}

async fn list_filters_match_exactly(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    let first = create_key(&test.channel, &tenant, "first").await;
    create_key(&test.channel, &tenant, "second").await;
    let third = create_key(&test.channel, &tenant, "third").await;
    let revoked = api_keys(&test.channel, tenant.owner())
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: first.id.clone(),
        })
        .await
        .expect("revoke")
        .into_inner()
        .api_key
        .expect("api_key");
    let mut owner = audit(&test.channel, tenant.owner());

    let everything = list(&mut owner, "", filter()).await.expect("list");
    assert_eq!(everything.len(), TENANT_CREATION_ENTRIES + 4);
    assert_eq!(everything[0].event_type, "api_key.revoked", "newest first");
    assert!(everything.iter().all(|entry| entry.tenant_id == tenant.id));

    let created = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            event_type: "api_key.created".into(),
            ..filter()
        },
    )
    .await
    .expect("by event type");
    assert_eq!(created.len(), 4, "three keys and the owner key");
    let newest = &created[0];
    assert_eq!(newest.resource_type, "api_key");
    assert_eq!(newest.resource_id, third.id);
    assert_eq!(newest.actor_type(), pb::ActorType::User);
    assert_eq!(newest.actor_id, tenant.owner_id);
    assert_eq!(newest.severity(), pb::AuditSeverity::Info);
    let metadata = newest.metadata.as_ref().expect("metadata");
    assert_eq!(
        metadata
            .fields
            .get("key_id")
            .and_then(|value| value.kind.clone()),
        Some(Kind::StringValue(third.key_id.clone()))
    );
    assert_eq!(created[3].actor_type(), pb::ActorType::Operator);

    let warnings = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            min_severity: pb::AuditSeverity::Warning.into(),
            ..filter()
        },
    )
    .await
    .expect("by severity");
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].event_type, "api_key.revoked");
    assert_eq!(warnings[0].severity(), pb::AuditSeverity::Warning);
    let critical = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            min_severity: pb::AuditSeverity::Critical.into(),
            ..filter()
        },
    )
    .await
    .expect("by severity");
    assert!(critical.is_empty());

    let by_actor = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            actor_id: tenant.owner_id.clone(),
            ..filter()
        },
    )
    .await
    .expect("by actor");
    assert_eq!(by_actor.len(), 4, "three creations and one revocation");

    let by_type = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            resource_type: "api_key".into(),
            ..filter()
        },
    )
    .await
    .expect("by resource type");
    assert_eq!(by_type.len(), 5);

    let by_resource = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            resource_type: "api_key".into(),
            resource_id: first.id.clone(),
            ..filter()
        },
    )
    .await
    .expect("by resource");
    let events: Vec<&str> = by_resource.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(events, ["api_key.revoked", "api_key.created"]);

    // Each entry is written after the row it describes, so the window from the third key's
    // creation up to the revocation contains exactly the third key's entry.
    let window = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            start_time: third.create_time,
            end_time: revoked.revoke_time,
            ..filter()
        },
    )
    .await
    .expect("by time");
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].resource_id, third.id);
    let from_revocation = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            start_time: revoked.revoke_time,
            ..filter()
        },
    )
    .await
    .expect("by start time");
    assert_eq!(from_revocation.len(), 1);
    assert_eq!(from_revocation[0].event_type, "api_key.revoked");

    let none = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            event_type: "api_key.created".into(),
            actor_id: "someone else".into(),
            ..filter()
        },
    )
    .await
    .expect("combined");
    assert!(none.is_empty());
    test.stop().await;
}

async fn list_limited_to_own_tenant(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = create_tenant(&test.channel, "acme").await;
    let other = create_tenant(&test.channel, "other").await;
    create_key(&test.channel, &acme, "acme key").await;
    create_key(&test.channel, &other, "other key").await;
    create_key(&test.channel, &other, "other key 2").await;
    let mut acme_owner = audit(&test.channel, acme.owner());
    let mut operator = audit(&test.channel, Credential::operator());

    let own = list(&mut acme_owner, "", filter()).await.expect("list");
    assert_eq!(own.len(), TENANT_CREATION_ENTRIES + 1);
    assert!(own.iter().all(|entry| entry.tenant_id == acme.id));
    let named = list(&mut acme_owner, &acme.id, filter())
        .await
        .expect("own id");
    assert_eq!(named, own);

    let status = list(&mut acme_owner, &other.id, filter())
        .await
        .expect_err("another tenant's id");
    assert_eq!(status.code(), Code::NotFound);
    let status = acme_owner
        .export_audit_entries(pb::ExportAuditEntriesRequest {
            tenant_id: other.id.clone(),
            filter: None,
        })
        .await
        .expect_err("another tenant's id");
    assert_eq!(status.code(), Code::NotFound);

    let status = list(&mut operator, "", filter())
        .await
        .expect_err("an operator without tenant_id");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = status.get_details_bad_request().expect("BadRequest");
    assert_eq!(violations.field_violations[0].field, "tenant_id");
    let status = list(&mut operator, &new_id(), filter())
        .await
        .expect_err("an unknown tenant");
    assert_eq!(status.code(), Code::NotFound);
    let others = list(&mut operator, &other.id, filter())
        .await
        .expect("an operator names a tenant");
    assert_eq!(others.len(), TENANT_CREATION_ENTRIES + 2);
    assert!(others.iter().all(|entry| entry.tenant_id == other.id));

    let member = Credential::user(&acme.id, &acme.owner_id, "member");
    let status = list(&mut audit(&test.channel, member), "", filter())
        .await
        .expect_err("a member");
    assert_eq!(status.code(), Code::PermissionDenied);
    test.stop().await;
}

async fn list_rejects_invalid_filter(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    let mut owner = audit(&test.channel, tenant.owner());
    let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
    let cases = [
        (
            "filter.end_time",
            pb::AuditEntryFilter {
                start_time: at(2_000_000_000),
                end_time: at(1_000_000_000),
                ..filter()
            },
        ),
        (
            "filter.min_severity",
            pb::AuditEntryFilter {
                min_severity: 9,
                ..filter()
            },
        ),
        (
            "filter.start_time",
            pb::AuditEntryFilter {
                start_time: Some(Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..filter()
            },
        ),
    ];
    for (field, request) in cases {
        let status = list(&mut owner, "", request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(violations.field_violations[0].field, field);
    }
    let status = owner
        .list_audit_entries(pb::ListAuditEntriesRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .expect_err("a negative page size");
    assert_eq!(status.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn list_pages_through_every_entry(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    // Groups of entries that share a creation time, so pages also break inside a group.
    let base = now() - Duration::hours(1);
    let mut inserted = Vec::new();
    for group in 0..5 {
        for _ in 0..5 {
            let kind = if group % 2 == 0 {
                "test.even"
            } else {
                "test.odd"
            };
            inserted.push(entry_at(&tenant.id, kind, base + Duration::seconds(group)));
        }
    }
    insert_entries(test.server.database(), &inserted).await;
    let mut owner = audit(&test.channel, tenant.owner());

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = owner
            .list_audit_entries(pb::ListAuditEntriesRequest {
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.audit_entries.len() <= 4);
        seen.extend(page.audit_entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let total = inserted.len() + TENANT_CREATION_ENTRIES;
    assert_eq!(seen.len(), total);
    assert_eq!(pages, total.div_ceil(4));
    let ids: HashSet<&str> = seen.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(ids.len(), total, "an entry appeared twice");
    for pair in seen.windows(2) {
        let order = (instant(&pair[0].create_time), &pair[0].id);
        let next = (instant(&pair[1].create_time), &pair[1].id);
        assert!(order > next, "not newest first: {order:?} before {next:?}");
    }

    let mut odd = Vec::new();
    let mut token = String::new();
    loop {
        let page = owner
            .list_audit_entries(pb::ListAuditEntriesRequest {
                page_size: 3,
                page_token: token.clone(),
                filter: Some(pb::AuditEntryFilter {
                    event_type: "test.odd".into(),
                    ..filter()
                }),
                ..Default::default()
            })
            .await
            .expect("list filtered")
            .into_inner();
        odd.extend(page.audit_entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(odd.len(), 10);
    assert!(odd.iter().all(|entry| entry.event_type == "test.odd"));

    let first = owner
        .list_audit_entries(pb::ListAuditEntriesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let status = owner
        .list_audit_entries(pb::ListAuditEntriesRequest {
            page_size: 2,
            page_token: first.next_page_token,
            filter: Some(pb::AuditEntryFilter {
                event_type: "test.odd".into(),
                ..filter()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a token with another filter");
    assert_eq!(status.code(), Code::InvalidArgument);
    test.stop().await;
}

/// Collects an export: every batch's entries, and the size of each batch.
async fn export(
    client: &mut Client,
    tenant_id: &str,
    filter: pb::AuditEntryFilter,
) -> (Vec<pb::AuditEntry>, Vec<usize>) {
    let mut stream = client
        .export_audit_entries(pb::ExportAuditEntriesRequest {
            tenant_id: tenant_id.to_string(),
            filter: Some(filter),
        })
        .await
        .expect("export")
        .into_inner();
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("batch");
        sizes.push(batch.entries.len());
        entries.extend(batch.entries);
    }
    (entries, sizes)
}

async fn export_streams_every_entry(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    let other = create_tenant(&test.channel, "other").await;
    let base = now() - Duration::hours(2);
    let mut inserted = Vec::new();
    for index in 0..1_200 {
        let kind = if index % 3 == 0 {
            "test.third"
        } else {
            "test.rest"
        };
        // Pairs of entries share a time, so batches also break between equal times.
        let time = base + Duration::milliseconds(index / 2);
        inserted.push(entry_at(&tenant.id, kind, time));
    }
    inserted.push(entry_at(&other.id, "test.third", base));
    // Entries created after the export started are not part of it.
    inserted.push(entry_at(
        &tenant.id,
        "test.future",
        now() + Duration::hours(1),
    ));
    insert_entries(test.server.database(), &inserted).await;
    let mut owner = audit(&test.channel, tenant.owner());

    let (entries, sizes) = export(&mut owner, "", filter()).await;
    assert_eq!(entries.len(), 1_200 + TENANT_CREATION_ENTRIES);
    assert!(sizes.len() >= 2, "one batch for {} entries", entries.len());
    assert!(
        sizes.iter().all(|size| (1..=1000).contains(size)),
        "{sizes:?}"
    );
    let ids: HashSet<&str> = entries.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(ids.len(), entries.len(), "an entry appeared twice");
    assert!(entries.iter().all(|entry| entry.tenant_id == tenant.id));
    assert!(
        entries
            .iter()
            .all(|entry| entry.event_type != "test.future")
    );
    for pair in entries.windows(2) {
        let order = (instant(&pair[0].create_time), &pair[0].id);
        let next = (instant(&pair[1].create_time), &pair[1].id);
        assert!(order < next, "not oldest first: {order:?} before {next:?}");
    }

    let (thirds, _) = export(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            event_type: "test.third".into(),
            ..filter()
        },
    )
    .await;
    assert_eq!(thirds.len(), 400);

    let mut operator = audit(&test.channel, Credential::operator());
    let (others, _) = export(&mut operator, &other.id, filter()).await;
    assert_eq!(others.len(), TENANT_CREATION_ENTRIES + 1);
    let (empty, sizes) = export(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            event_type: "test.none".into(),
            ..filter()
        },
    )
    .await;
    assert!(empty.is_empty());
    assert!(sizes.is_empty(), "an export without matches sent {sizes:?}");
    test.stop().await;
}

async fn export_stops_when_client_leaves(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    let base = now() - Duration::hours(1);
    let inserted: Vec<AuditLog> = (0..3_000)
        .map(|index| {
            entry_at(
                &tenant.id,
                "test.bulk",
                base + Duration::microseconds(index),
            )
        })
        .collect();
    insert_entries(test.server.database(), &inserted).await;
    let mut owner = audit(&test.channel, tenant.owner());

    let mut stream = owner
        .export_audit_entries(pb::ExportAuditEntriesRequest::default())
        .await
        .expect("export")
        .into_inner();
    let first = stream.next().await.expect("a batch").expect("batch");
    assert!(!first.entries.is_empty());
    drop(stream);

    let listed = list(
        &mut owner,
        "",
        pb::AuditEntryFilter {
            event_type: "tenant.created".into(),
            ..filter()
        },
    )
    .await
    .expect("the server still serves calls");
    assert_eq!(listed.len(), 1);
    test.stop().await;
}

async fn delete_before_in_batches(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "acme").await;
    let other = create_tenant(&test.channel, "other").await;
    let cutoff = now() - Duration::days(30);
    let mut inserted = Vec::new();
    for index in 0..5 {
        let tenant_id = if index % 2 == 0 {
            &tenant.id
        } else {
            &other.id
        };
        inserted.push(entry_at(
            tenant_id,
            "test.old",
            cutoff - Duration::days(index + 1),
        ));
    }
    inserted.push(entry_at(&tenant.id, "test.recent", cutoff));
    insert_entries(test.server.database(), &inserted).await;
    let mut conn = test.server.database().write().await.expect("connection");

    let count = ally::repo::audit::count_before(&mut conn, cutoff).await;
    assert_eq!(count.expect("count"), 5);
    let first = ally::repo::audit::delete_before(&mut conn, cutoff, 3).await;
    assert_eq!(first.expect("first batch"), 3);
    let second = ally::repo::audit::delete_before(&mut conn, cutoff, 3).await;
    assert_eq!(second.expect("second batch"), 2);
    let third = ally::repo::audit::delete_before(&mut conn, cutoff, 3).await;
    assert_eq!(third.expect("third batch"), 0);
    drop(conn);

    let mut operator = audit(&test.channel, Credential::operator());
    let remaining = list(&mut operator, &tenant.id, filter())
        .await
        .expect("list");
    assert_eq!(remaining.len(), TENANT_CREATION_ENTRIES + 1);
    assert!(
        remaining
            .iter()
            .any(|entry| entry.event_type == "test.recent")
    );
    test.stop().await;
}

/// Runs the `ally` binary against `database` and returns whether it succeeded, and its output.
fn ally(database: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(args)
        .current_dir(database.dir())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .expect("run ally");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn prune_cli(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let settings = test_settings(&database.url, database.dir());
    let server = ally::server::start(settings).await.expect("server starts");
    let channel = crate::common::connect(server.local_addr()).await;
    let tenant = create_tenant(&channel, "acme").await;
    let time = now();
    let inserted = [
        entry_at(&tenant.id, "test.ancient", time - Duration::days(800)),
        entry_at(&tenant.id, "test.ancient", time - Duration::days(400)),
        entry_at(&tenant.id, "test.month", time - Duration::days(30)),
        entry_at(&tenant.id, "test.week", time - Duration::days(7)),
    ];
    insert_entries(server.database(), &inserted).await;
    let mut operator = audit(&channel, Credential::operator());
    let count = async |operator: &mut Client| {
        list(operator, &tenant.id, filter())
            .await
            .expect("list")
            .len()
    };
    let total = inserted.len() + TENANT_CREATION_ENTRIES;
    assert_eq!(count(&mut operator).await, total);

    let (ok, output) = ally(&database, &["audit", "prune", "--dry-run"], &[]);
    assert!(ok, "{output}");
    assert!(output.contains("would delete 2 audit entries"), "{output}");
    assert_eq!(
        count(&mut operator).await,
        total,
        "a dry run deleted entries"
    );

    let (ok, output) = ally(
        &database,
        &["audit", "prune"],
        &[("ALLY_AUDIT__RETENTION", "0s")],
    );
    assert!(ok, "{output}");
    assert!(output.contains("nothing to do"), "{output}");
    assert_eq!(count(&mut operator).await, total);

    let (ok, output) = ally(&database, &["audit", "prune"], &[]);
    assert!(ok, "{output}");
    assert!(output.contains("deleted 2 audit entries"), "{output}");
    assert_eq!(count(&mut operator).await, total - 2);

    let (ok, output) = ally(
        &database,
        &["audit", "prune"],
        &[("ALLY_AUDIT__RETENTION", "20days")],
    );
    assert!(ok, "{output}");
    assert!(output.contains("deleted 1 audit entry"), "{output}");
    assert_eq!(count(&mut operator).await, total - 3);

    let before = (time - Duration::days(1)).and_utc().to_rfc3339();
    let (ok, output) = ally(&database, &["audit", "prune", "--before", &before], &[]);
    assert!(ok, "{output}");
    assert!(output.contains("deleted 1 audit entry"), "{output}");
    let left = list(&mut operator, &tenant.id, filter())
        .await
        .expect("list");
    assert_eq!(left.len(), TENANT_CREATION_ENTRIES);
    assert!(
        left.iter()
            .all(|entry| !entry.event_type.starts_with("test."))
    );

    let (ok, output) = ally(&database, &["audit", "prune", "--before", "yesterday"], &[]);
    assert!(!ok, "an invalid time was accepted: {output}");
    assert!(output.contains("RFC 3339"), "{output}");
    server.shutdown().await.expect("clean shutdown");
}
