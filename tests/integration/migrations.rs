//! Migrations run, revert and run again on both backends, through the library and through
//! `ally migrate`; `serve` refuses an outdated schema when it may not migrate.

use std::process::Command;

use ally::db::migrations::{self, Command as Migrate};
use ally::db::{Database, PoolOptions};
use ally::server::ServeError;

use crate::backend_tests;
use crate::common::{TestBackend, TestDatabase, test_settings};

backend_tests!(
    run_revert_run,
    redo_last,
    migrate_cli,
    serve_refuses_outdated_schema
);

const MIGRATION_COUNT: usize = 12;

async fn open(database: &TestDatabase) -> Database {
    let settings = test_settings(&database.url, database.dir());
    Database::connect(
        settings.database_url().expect("valid url"),
        &PoolOptions::from(&settings.database),
    )
    .await
    .expect("database connects")
}

async fn applied_count(database: &Database) -> usize {
    let mut conn = database.read().await.expect("connection");
    let status = migrations::status(&mut conn).await.expect("status");
    assert!(
        status.unknown.is_empty(),
        "unknown versions: {:?}",
        status.unknown
    );
    status.migrations.iter().filter(|m| m.applied).count()
}

async fn run_revert_run(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = open(&test_db).await;
    assert_eq!(applied_count(&database).await, 0);

    let applied = migrations::execute(&database, Migrate::Run)
        .await
        .expect("run");
    assert_eq!(applied.len(), MIGRATION_COUNT);
    assert_eq!(applied_count(&database).await, MIGRATION_COUNT);

    let reverted = migrations::execute(&database, Migrate::RevertAll)
        .await
        .expect("revert all");
    assert_eq!(reverted.len(), MIGRATION_COUNT);
    assert_eq!(applied_count(&database).await, 0);

    let again = migrations::execute(&database, Migrate::Run)
        .await
        .expect("run again");
    assert_eq!(again, applied);
    assert_eq!(applied_count(&database).await, MIGRATION_COUNT);
}

async fn redo_last(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = open(&test_db).await;
    let applied = migrations::execute(&database, Migrate::Run)
        .await
        .expect("run");

    let redone = migrations::execute(&database, Migrate::Redo)
        .await
        .expect("redo");
    assert_eq!(
        redone,
        vec![applied.last().cloned().expect("one migration")]
    );
    assert_eq!(applied_count(&database).await, MIGRATION_COUNT);

    let reverted = migrations::execute(&database, Migrate::Revert)
        .await
        .expect("revert");
    assert_eq!(reverted.len(), 1);
    assert_eq!(applied_count(&database).await, MIGRATION_COUNT - 1);
}

fn ally(database: &TestDatabase, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(args)
        .current_dir(database.dir())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "error")
        .output()
        .expect("run ally");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn migrate_cli(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let run_cli = |args: &[&str]| ally(&database, args);

    let (ok, status) = run_cli(&["migrate", "status"]);
    assert!(ok, "{status}");
    assert_eq!(
        status.matches("pending").count(),
        MIGRATION_COUNT,
        "{status}"
    );

    let (ok, output) = run_cli(&["migrate", "run"]);
    assert!(ok, "{output}");
    assert_eq!(
        output.matches("applied").count(),
        MIGRATION_COUNT,
        "{output}"
    );

    let (ok, output) = run_cli(&["migrate", "redo"]);
    assert!(ok, "{output}");
    assert!(output.contains("redone"), "{output}");

    let (ok, output) = run_cli(&["migrate", "revert"]);
    assert!(ok, "{output}");
    assert!(output.contains("reverted"), "{output}");

    let (ok, status) = run_cli(&["migrate", "status"]);
    assert!(ok, "{status}");
    assert_eq!(status.matches("pending").count(), 1, "{status}");

    let (ok, output) = run_cli(&["migrate", "revert", "--all"]);
    assert!(ok, "{output}");
    let (ok, output) = run_cli(&["migrate", "revert"]);
    assert!(!ok, "reverting an empty schema succeeded: {output}");
    assert!(output.contains("nothing to revert"), "{output}");
}

async fn serve_refuses_outdated_schema(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let mut settings = test_settings(&database.url, database.dir());
    settings.database.migrate_on_start = Some(false);

    let error = match ally::server::start(settings).await {
        Ok(_) => panic!("the server started on an empty schema"),
        Err(error) => error,
    };

    assert!(
        matches!(error, ServeError::SchemaOutdated { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("create_tenants"), "{error}");
}
