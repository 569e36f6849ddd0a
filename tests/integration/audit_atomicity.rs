//! A mutation whose audit write fails leaves no change behind, because the entry is written in
//! the same transaction as the change.

use ally::proto::ally::v1 as pb;
use ally::schema::{tenants, users};
use diesel::QueryDsl;
use diesel_async::RunQueryDsl;
use tonic::Code;

use crate::backend_tests;
use crate::common::clients::{Credential, create_tenant, tenants as tenant_client};
use crate::common::{TestBackend, TestServer};

backend_tests!(failed_audit_rolls_back);

/// Makes every insert into `audit_logs` fail by renaming the table away.
async fn break_audit_log(test: &TestServer) {
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::sql_query("ALTER TABLE audit_logs RENAME TO audit_logs_moved")
        .execute(&mut *conn)
        .await
        .expect("rename audit_logs");
}

async fn count_rows(test: &TestServer) -> (i64, i64) {
    let mut conn = test.server.database().read().await.expect("connection");
    let tenant_count = tenants::table
        .count()
        .get_result(&mut *conn)
        .await
        .expect("count");
    let user_count = users::table
        .count()
        .get_result(&mut *conn)
        .await
        .expect("count");
    (tenant_count, user_count)
}

async fn failed_audit_rolls_back(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Kept", "kept").await;
    let tenant = created.tenant.unwrap();
    let before = count_rows(&test).await;
    break_audit_log(&test).await;
    let mut operator = tenant_client(&test.channel, Credential::operator());

    let create = operator
        .create_tenant(pb::CreateTenantRequest {
            name: "Lost".into(),
            subdomain: "lost".into(),
            owner: Some(pb::InitialOwner {
                email: "o@lost.example".into(),
                display_name: "O".into(),
                password: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("creating must fail without an audit log");
    assert_eq!(create.code(), Code::Internal);
    assert_eq!(
        count_rows(&test).await,
        before,
        "a tenant or user was written"
    );

    let rename = operator
        .update_tenant(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                name: "Renamed".into(),
                ..tenant.clone()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .expect_err("updating must fail without an audit log");
    assert_eq!(rename.code(), Code::Internal);
    let current = operator
        .get_tenant(pb::GetTenantRequest { id: tenant.id })
        .await
        .expect("get")
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(current.name, "Kept");
    assert_eq!(current.etag, tenant.etag);
    test.stop().await;
}
