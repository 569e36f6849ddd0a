//! `ally chat purge` deletes sessions soft-deleted longer ago than the retention, with their
//! messages, and keeps the rest.

use std::process::{Command, Output};

use ally::models::{ChatSession, new_id, now};
use ally::schema::chat_sessions;
use chrono::TimeDelta;
use diesel::QueryDsl;
use diesel_async::RunQueryDsl;

use crate::backend_tests;
use crate::common::{TestBackend, TestDatabase, test_settings};

backend_tests!(purge_command);

fn ally(database: &TestDatabase, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(args)
        .current_dir(database.dir())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "error")
        .output()
        .expect("run ally");
    assert!(
        output.status.success(),
        "ally {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn field(output: &Output, label: &str) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(label).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no `{label}` line"))
}

async fn purge_command(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    ally(&database, &["migrate", "run"]);
    let created = ally(
        &database,
        &["bootstrap", "--owner-email", "owner@purge.example"],
    );
    let tenant_id = field(&created, "tenant id:");
    let owner_id = field(&created, "owner id:");

    let settings = test_settings(&database.url, database.dir());
    let db = ally::db::Database::connect(
        settings.database_url().unwrap(),
        &ally::db::PoolOptions::from(&settings.database),
    )
    .await
    .expect("database");
    let session = |deleted_days_ago: i64| {
        let time = now() - TimeDelta::days(deleted_days_ago);
        ChatSession {
            tenant_id: tenant_id.clone(),
            id: new_id(),
            user_id: owner_id.clone(),
            title: format!("deleted {deleted_days_ago} days ago"),
            status: "active".into(),
            is_shared: false,
            share_token: None,
            share_expires_at: None,
            message_count: 0,
            last_message_at: None,
            metadata: "{}".into(),
            created_at: time,
            updated_at: time,
            deleted_at: Some(time),
        }
    };
    {
        let mut conn = db.write().await.expect("connection");
        for row in [session(40), session(1)] {
            diesel::insert_into(chat_sessions::table)
                .values(&row)
                .execute(&mut *conn)
                .await
                .expect("insert session");
        }
    }

    let dry = ally(&database, &["chat", "purge", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would delete 1 "),
        "{dry:?}"
    );
    let purged = ally(&database, &["chat", "purge"]);
    assert!(
        String::from_utf8_lossy(&purged.stdout).contains("deleted 1 "),
        "{purged:?}"
    );

    let mut conn = db.read().await.expect("connection");
    let left: Vec<String> = chat_sessions::table
        .select(chat_sessions::title)
        .load(&mut *conn)
        .await
        .expect("sessions");
    assert_eq!(left, ["deleted 1 days ago"]);
}
