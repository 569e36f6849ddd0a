//! External programs that some tests run: a Python interpreter with grpcio, and buf.
//!
//! `.ci/install-tools` installs both under `.ci/tools`; `.ci/run` runs it and sets
//! `TEST_PYTHON` and `TEST_BUF`. A missing tool fails the test with the command that
//! installs it, never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The command that installs every tool this module looks for.
pub const INSTALL_COMMAND: &str = ".ci/install-tools";

/// Python modules that the Python client needs, from clients/python/requirements.txt.
const PYTHON_MODULES: &str = "grpc, grpc_tools, grpc_status";

/// Returns the repository's root folder.
pub fn repository_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the Python interpreter for the client tests: `$TEST_PYTHON`, else the
/// virtualenv `.ci/tools/venv` when it exists, else `python3`. Panics with the install command
/// when that interpreter cannot import grpcio.
pub fn python() -> PathBuf {
    let venv = repository_root().join(".ci/tools/venv/bin/python");
    let python = match std::env::var_os("TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None if venv.exists() => venv,
        None => PathBuf::from("python3"),
    };
    check_python(&python).unwrap_or_else(|message| panic!("{message}"));
    python
}

/// Checks that `python` runs and imports the client's modules, and returns what is missing
/// and how to install it otherwise.
pub fn check_python(python: &Path) -> Result<(), String> {
    let install = format!(
        "install them with `{INSTALL_COMMAND}` (a virtualenv in .ci/tools/venv), or set \
         TEST_PYTHON to a Python 3 that has clients/python/requirements.txt installed"
    );
    let output = Command::new(python)
        .args(["-c", &format!("import {PYTHON_MODULES}")])
        .output()
        .map_err(|error| {
            format!(
                "the Python interpreter {} could not be started ({error}); {install}",
                python.display()
            )
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} cannot import {PYTHON_MODULES}: {}; {install}",
        python.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Returns the buf binary: `$TEST_BUF`, else `.ci/tools/node_modules/.bin/buf`. Panics
/// with the install command when it is missing.
pub fn buf() -> PathBuf {
    let buf = match std::env::var_os("TEST_BUF") {
        Some(path) => PathBuf::from(path),
        None => repository_root().join(".ci/tools/node_modules/.bin/buf"),
    };
    let runs = Command::new(&buf)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        runs,
        "buf was not found at {}; install it with `{INSTALL_COMMAND}` (npm install --prefix \
         .ci/tools @bufbuild/buf), or set TEST_BUF to a buf binary",
        buf.display()
    );
    buf
}
