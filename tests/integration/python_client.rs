//! The Python client in clients/python: stubs generated from proto/ with grpcio-tools, and
//! lifecycle.py, which runs a tenant's whole life against a real server and checks each step.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::backend_tests;
use crate::common::tools::{self, repository_root};
use crate::common::{TEST_JWT_SECRET, TestBackend, TestDatabase, test_settings};

backend_tests!(python_lifecycle);

/// Time that generate.py or lifecycle.py may take before the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `python script args..` in `dir` with the database settings that `ally bootstrap`
/// reads, and returns its output. Panics when it does not finish within SCRIPT_TIMEOUT.
///
/// Inherited `ALLY_` variables are removed, because `ally` reads them as settings and
/// `ALLY_DATABASE__URL` would take precedence over the test's `DATABASE_URL`.
async fn run_python(
    python: &Path,
    script: &str,
    args: &[String],
    database_url: &str,
    dir: &Path,
) -> Output {
    let mut command = Command::new(python);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ALLY_") {
            command.env_remove(name);
        }
    }
    command
        .arg(repository_root().join("clients/python").join(script))
        .args(args)
        .current_dir(dir)
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", database_url)
        .env("ALLY_AUTH__JWT_SECRET", TEST_JWT_SECRET)
        .env("RUST_LOG", "error")
        .kill_on_drop(true);
    tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("{script} could not be started: {error}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Generates the stubs into `dir`/stubs with generate.py and returns that folder.
async fn generate_stubs(python: &Path, database: &TestDatabase) -> PathBuf {
    let stubs = database.dir().join("stubs");
    let args = ["--out".to_string(), stubs.display().to_string()];
    let output = run_python(python, "generate.py", &args, &database.url, database.dir()).await;
    assert!(
        output.status.success(),
        "generate.py failed: {}",
        describe(&output)
    );
    assert!(
        stubs.join("ally/v1/chat_pb2_grpc.py").is_file(),
        "generate.py wrote no chat stubs"
    );
    stubs
}

/// Arguments of lifecycle.py for a server on `addr`, bootstrapping with the ally binary.
fn lifecycle_args(addr: std::net::SocketAddr, stubs: &Path) -> Vec<String> {
    // lifecycle.py splits --ally like a shell, so quote the path.
    let ally = env!("CARGO_BIN_EXE_ally").replace('\'', r"'\''");
    vec![
        "--addr".into(),
        addr.to_string(),
        "--ally".into(),
        format!("'{ally}'"),
        "--stubs".into(),
        stubs.display().to_string(),
    ]
}

async fn python_lifecycle(backend: TestBackend) {
    let python = tools::python();
    let database = TestDatabase::create(backend).await;
    let settings = test_settings(&database.url, database.dir());
    let server = ally::server::start(settings).await.expect("server starts");
    let stubs = generate_stubs(&python, &database).await;

    let args = lifecycle_args(server.local_addr(), &stubs);
    let output = run_python(
        &python,
        "lifecycle.py",
        &args,
        &database.url,
        database.dir(),
    )
    .await;
    assert!(
        output.status.success(),
        "lifecycle.py failed: {}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("lifecycle passed"),
        "lifecycle.py exited 0 without its closing line: {}",
        describe(&output)
    );
    assert!(
        stdout.contains("revoked key with UNAUTHENTICATED"),
        "lifecycle.py did not reach its last step: {}",
        describe(&output)
    );
    server.shutdown().await.expect("clean shutdown");
}

/// A tenant bootstrapped into another database than the server's is unknown to the server, so
/// the program must stop at the first call with its key and name that step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lifecycle_reports_failed_step() {
    let python = tools::python();
    let database = TestDatabase::create(TestBackend::Sqlite).await;
    let settings = test_settings(&database.url, database.dir());
    let server = ally::server::start(settings).await.expect("server starts");
    let stubs = generate_stubs(&python, &database).await;

    let other = TestDatabase::create(TestBackend::Sqlite).await;
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(["migrate", "run"])
        .current_dir(other.dir())
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &other.url)
        .output()
        .expect("run ally migrate");
    assert!(migrated.status.success(), "{}", describe(&migrated));

    let args = lifecycle_args(server.local_addr(), &stubs);
    let output = run_python(&python, "lifecycle.py", &args, &other.url, other.dir()).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FAILED step 2 (read the tenant with the owner's API key)"),
        "the failure does not name step 2: {}",
        describe(&output)
    );
    assert!(
        stderr.contains("UNAUTHENTICATED"),
        "the failure does not name the status code: {}",
        describe(&output)
    );
    server.shutdown().await.expect("clean shutdown");
}

#[test]
fn python_check_names_install_command() {
    let message = tools::check_python(Path::new("/nonexistent/python3")).unwrap_err();
    assert!(
        message.contains(tools::INSTALL_COMMAND),
        "the message lacks the install command: {message}"
    );
    assert!(
        message.contains("/nonexistent/python3"),
        "the message lacks the interpreter's path: {message}"
    );
}
