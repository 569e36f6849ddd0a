//! `ally bootstrap`, `ally operator-token`, and the default tenant of a first development start.

use std::process::{Command, Output};

use ally::bootstrap::KEY_FILE;
use ally::config::Environment;
use ally::proto::ally::v1 as pb;

use crate::backend_tests;
use crate::common::clients::{Credential, tenants};
use crate::common::{TEST_JWT_SECRET, TestBackend, TestDatabase, connect, test_settings};

backend_tests!(bootstrap_command, operator_token_command);

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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn bootstrap_command(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let migrated = ally(&database, &["migrate", "run"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let output = ally(
        &database,
        &[
            "bootstrap",
            "--tenant-name",
            "Acme",
            "--subdomain",
            "acme",
            "--owner-email",
            "Ada@Acme.example",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let key = text
        .lines()
        .find_map(|line| line.strip_prefix("owner API key: "))
        .expect("the key is printed")
        .trim()
        .to_string();

    let settings = test_settings(&database.url, database.dir());
    let server = ally::server::start(settings).await.expect("server starts");
    let channel = connect(server.local_addr()).await;
    let own = tenants(&channel, Credential::api_key(&key))
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("the printed key works")
        .into_inner();
    assert_eq!(own.tenant.map(|t| t.subdomain).as_deref(), Some("acme"));

    let again = ally(
        &database,
        &[
            "bootstrap",
            "--tenant-name",
            "Acme",
            "--subdomain",
            "acme",
            "--owner-email",
            "b@acme.example",
        ],
    );
    assert!(
        !again.status.success(),
        "a second tenant with the same subdomain was created"
    );
    server.shutdown().await.expect("clean shutdown");
}

async fn operator_token_command(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    let output = ally(&database, &["operator-token", "--name", "alice"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = stdout(&output).trim().to_string();

    let settings = test_settings(&database.url, database.dir());
    let server = ally::server::start(settings).await.expect("server starts");
    let channel = connect(server.local_addr()).await;
    tenants(&channel, Credential::bearer(&token))
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("the operator token works");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_development_start() {
    let database = TestDatabase::create(TestBackend::Sqlite).await;
    let mut settings = test_settings(&database.url, database.dir());
    settings.environment = Environment::Development;
    let data_dir = database.dir().join("data");
    settings.server.data_dir = data_dir.clone();

    let server = ally::server::start(settings.clone())
        .await
        .expect("server starts");
    let key_file = data_dir.join(KEY_FILE);
    let key = std::fs::read_to_string(&key_file).expect("key file written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is readable by others");
    }
    let channel = connect(server.local_addr()).await;
    tenants(&channel, Credential::api_key(key.trim()))
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("the written key works");
    server.shutdown().await.expect("clean shutdown");

    std::fs::remove_file(&key_file).expect("remove key file");
    let again = ally::server::start(settings).await.expect("second start");
    assert!(!key_file.exists(), "a second start bootstrapped again");
    again.shutdown().await.expect("clean shutdown");
}
