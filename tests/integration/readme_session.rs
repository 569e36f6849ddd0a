//! The `buf curl` session in README.md, run command by command against a test server.
//!
//! The session is the block between `<!-- readme-session: begin -->` and
//! `<!-- readme-session: end -->`. In it:
//! - a line starting with `$ ` is a command, continued by lines ending in `\` and, when it
//!   opens a here-document (`<<EOF`), by the lines up to the closing delimiter;
//! - the lines after a command, up to a blank line or the next command, are its expected
//!   output. Each expected line must match an output line, in order, after trimming spaces
//!   and a trailing comma. `...` in a line matches any text, and a line of only `...` matches
//!   any number of lines;
//! - `export ADDR=..` and `export KEY=..` are skipped, because the test sets both
//!   variables to its own server's address and owner key. A command of the form
//!   `NAME=$(..)` keeps its value for the commands after it, and the value must not be empty.
//!
//! Every command runs in `bash -euo pipefail` with the tested buf first on PATH, and must exit
//! 0. When the expected output starts with `{`, the output must also parse as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ally::bootstrap::KEY_FILE;
use ally::config::Environment;
use tokio::process::Command;

use crate::backend_tests;
use crate::common::tools::{self, INSTALL_COMMAND, repository_root};
use crate::common::{TestBackend, TestDatabase, test_settings};

backend_tests!(readme_session);

const BEGIN_MARKER: &str = "<!-- readme-session: begin -->";
const END_MARKER: &str = "<!-- readme-session: end -->";

/// Variables that the README sets for its own server and the test sets for the test server.
const PROVIDED_VARIABLES: [&str; 2] = ["ADDR", "KEY"];

/// Time one command of the session may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One command of the session with the output the README shows for it.
#[derive(Debug)]
struct SessionCommand {
    /// Line number in README.md where the command starts.
    line: usize,
    /// The command as bash reads it, continuation lines and here-document included.
    script: String,
    /// Variable that the command assigns, for `NAME=..` and `export NAME=..`.
    assigns: Option<String>,
    expected: Vec<String>,
}

/// Extracts the commands of the marked session from the README's text.
fn parse_session(readme: &str) -> Result<Vec<SessionCommand>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let begin = lines
        .iter()
        .position(|line| line.trim() == BEGIN_MARKER)
        .ok_or_else(|| format!("README.md has no line {BEGIN_MARKER}"))?;
    let end = lines[begin..]
        .iter()
        .position(|line| line.trim() == END_MARKER)
        .map(|offset| begin + offset)
        .ok_or_else(|| format!("README.md has no line {END_MARKER} after {BEGIN_MARKER}"))?;

    let mut commands = Vec::new();
    let mut index = begin + 1;
    while index < end {
        let line = lines[index];
        if line.trim().is_empty() || line.starts_with("```") {
            index += 1;
            continue;
        }
        let Some(first) = line.strip_prefix("$ ") else {
            return Err(format!(
                "README.md line {}: expected a command starting with `$ `, found {line:?}",
                index + 1
            ));
        };
        let start = index;
        let mut script = first.to_string();
        while script.ends_with('\\') && index + 1 < end {
            index += 1;
            script.push('\n');
            script.push_str(lines[index]);
        }
        if let Some(delimiter) = here_document_delimiter(&script) {
            loop {
                index += 1;
                if index >= end {
                    return Err(format!(
                        "README.md line {}: the here-document is not closed by {delimiter}",
                        start + 1
                    ));
                }
                script.push('\n');
                script.push_str(lines[index]);
                if lines[index].trim() == delimiter {
                    break;
                }
            }
        }
        index += 1;

        let mut expected = Vec::new();
        while index < end
            && !lines[index].trim().is_empty()
            && !lines[index].starts_with("$ ")
            && !lines[index].starts_with("```")
        {
            expected.push(lines[index].to_string());
            index += 1;
        }
        commands.push(SessionCommand {
            line: start + 1,
            assigns: assigned_variable(first),
            script,
            expected,
        });
    }
    Ok(commands)
}

/// Returns the delimiter of a here-document that `script` opens, such as `EOF` in `<<EOF`.
fn here_document_delimiter(script: &str) -> Option<String> {
    let (_, after) = script.split_once("<<")?;
    let word = after.trim_start_matches('-').trim_start();
    let word: String = word
        .chars()
        .take_while(|c| !c.is_whitespace())
        .filter(|c| *c != '\'' && *c != '"')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Returns NAME when `command` starts with `NAME=` or `export NAME=`.
fn assigned_variable(command: &str) -> Option<String> {
    let command = command.strip_prefix("export ").unwrap_or(command);
    let (name, _) = command.split_once('=')?;
    let is_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then(|| name.to_string())
}

/// Trims spaces and a trailing comma, so JSON lines compare whatever their position.
fn normalize(line: &str) -> &str {
    let line = line.trim();
    line.strip_suffix(',').unwrap_or(line)
}

/// Returns whether `line` matches `pattern`, in which `...` matches any text.
fn matches_pattern(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == line;
    };
    if middle.is_empty() && parts.len() == 1 {
        return pattern == line;
    }
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Checks that every expected line matches a line of `actual`, in order.
fn check_output(expected: &[String], actual: &str) -> Result<(), String> {
    let mut actual_lines = actual.lines().map(normalize);
    for pattern in expected.iter().map(|line| normalize(line)) {
        if pattern == "..." {
            continue;
        }
        if !actual_lines.any(|line| matches_pattern(pattern, line)) {
            return Err(format!(
                "no output line matches {pattern:?} (after the lines matched before it)"
            ));
        }
    }
    Ok(())
}

/// Runs one command with `variables` in its environment and `tool_dir` first on PATH.
async fn run(
    command: &SessionCommand,
    variables: &BTreeMap<String, String>,
    tool_dir: &Path,
) -> std::process::Output {
    let mut script = command.script.clone();
    if let Some(name) = &command.assigns {
        script.push_str(&format!("\nprintf '%s' \"${name}\""));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let mut process = Command::new("bash");
    process
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(tool_dir)
        .env("PATH", format!("{}:{path}", tool_dir.display()))
        .envs(variables)
        .kill_on_drop(true);
    tokio::time::timeout(COMMAND_TIMEOUT, process.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "README.md line {}: the command did not finish within {COMMAND_TIMEOUT:?}",
                command.line
            )
        })
        .expect("bash starts")
}

fn require_jq() {
    let runs = std::process::Command::new("jq")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        runs,
        "jq is missing, and the README session uses it; install it with `{INSTALL_COMMAND}` \
         or `apt-get install jq`"
    );
}

fn read_readme() -> String {
    std::fs::read_to_string(repository_root().join("README.md")).expect("read README.md")
}

async fn readme_session(backend: TestBackend) {
    let buf = tools::buf();
    require_jq();
    let commands = parse_session(&read_readme()).unwrap_or_else(|error| panic!("{error}"));

    // A development server bootstraps the Default tenant and writes its key, as in the README.
    let database = TestDatabase::create(backend).await;
    let mut settings = test_settings(&database.url, database.dir());
    settings.environment = Environment::Development;
    let data_dir = database.dir().join("data");
    settings.server.data_dir = data_dir.clone();
    let server = ally::server::start(settings).await.expect("server starts");
    let key = std::fs::read_to_string(data_dir.join(KEY_FILE)).expect("key file written");

    let tool_dir = database.dir().join("bin");
    std::fs::create_dir_all(&tool_dir).expect("create tool folder");
    std::os::unix::fs::symlink(&buf, tool_dir.join("buf")).expect("link buf");

    let mut variables = BTreeMap::from([
        (
            "ADDR".to_string(),
            format!("http://{}", server.local_addr()),
        ),
        ("KEY".to_string(), key.trim().to_string()),
    ]);
    let mut ran = 0;
    for command in &commands {
        let at = format!("README.md line {}", command.line);
        if let Some(name) = &command.assigns
            && PROVIDED_VARIABLES.contains(&name.as_str())
        {
            continue;
        }
        let output = run(command, &variables, &tool_dir).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{at}: `{}` exited with {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            command.script,
            output.status
        );
        ran += 1;

        if let Some(name) = &command.assigns {
            let value = stdout.trim();
            assert!(
                !value.is_empty() && value != "null",
                "{at}: `{}` set {name} to {value:?}; stderr: {stderr}",
                command.script
            );
            variables.insert(name.clone(), value.to_string());
            continue;
        }
        if command
            .expected
            .first()
            .is_some_and(|line| line.starts_with('{'))
        {
            let parsed = serde_json::from_str::<serde_json::Value>(&stdout);
            assert!(parsed.is_ok(), "{at}: the output is not JSON:\n{stdout}");
        }
        if let Err(mismatch) = check_output(&command.expected, &stdout) {
            panic!("{at}: {mismatch}\n--- output ---\n{stdout}");
        }
    }
    assert!(ran >= 6, "only {ran} commands of the README session ran");
    server.shutdown().await.expect("clean shutdown");
}

/// The session shows a newcomer the calls they need first.
#[test]
fn readme_session_covers_first_calls() {
    let commands = parse_session(&read_readme()).expect("the README session parses");
    for call in [
        "--list-services",
        "/grpc.health.v1.Health/Check",
        "/ally.v1.TenantService/GetTenant",
        "/ally.v1.UserService/CreateUser",
        "/ally.v1.AuthService/Login",
        "/ally.v1.ChatService/CreateSession",
        "/ally.v1.ChatService/AddMessage",
        "/ally.v1.ChatService/ListMessages",
    ] {
        assert!(
            commands.iter().any(|command| command.script.contains(call)),
            "the README session has no command with {call}"
        );
    }
}

#[test]
fn session_parser_reads_commands() {
    let readme = "intro\n<!-- readme-session: begin -->\n```sh\n\
        $ export KEY=secret\n\
        $ buf curl \\\n    --list-services $ADDR\nsvc.A\nsvc.B\n\n\
        $ ID=$(echo 1)\n\
        $ cat <<EOF\n{\"id\": \"$ID\"}\nEOF\n{\"id\": \"1\"}\n\
        ```\n<!-- readme-session: end -->\n$ not a session command\n";
    let commands = parse_session(readme).expect("parses");
    assert_eq!(commands.len(), 4);
    assert_eq!(commands[0].assigns.as_deref(), Some("KEY"));
    assert_eq!(commands[1].script, "buf curl \\\n    --list-services $ADDR");
    assert_eq!(commands[1].expected, ["svc.A", "svc.B"]);
    assert_eq!(commands[1].line, 5);
    assert_eq!(commands[2].assigns.as_deref(), Some("ID"));
    assert!(commands[2].expected.is_empty());
    assert_eq!(commands[3].script, "cat <<EOF\n{\"id\": \"$ID\"}\nEOF");
    assert_eq!(commands[3].expected, ["{\"id\": \"1\"}"]);
    assert_eq!(commands[3].assigns, None);
}

#[test]
fn session_parser_rejects_missing_markers() {
    let error = parse_session("no session here").unwrap_err();
    assert!(error.contains(BEGIN_MARKER), "{error}");
    let error = parse_session("<!-- readme-session: begin -->\n$ true\n").unwrap_err();
    assert!(error.contains(END_MARKER), "{error}");
}

#[test]
fn output_patterns_match() {
    assert!(matches_pattern("\"id\": \"...\"", "\"id\": \"01a2-42\""));
    assert!(matches_pattern("a...b...c", "a-x-b-y-c"));
    assert!(matches_pattern(
        "\"name\": \"Default\"",
        "\"name\": \"Default\""
    ));
    assert!(!matches_pattern(
        "\"name\": \"Default\"",
        "\"name\": \"Other\""
    ));
    assert!(!matches_pattern(
        "\"id\": \"...\"",
        "\"tenantId\": \"01a2\""
    ));
    assert!(!matches_pattern("ab...ba", "aba"));
}

#[test]
fn output_check_follows_order() {
    let expected = [
        "{".to_string(),
        "...".into(),
        "\"b\": 2,".into(),
        "}".into(),
    ];
    assert!(check_output(&expected, "{\n  \"a\": 1,\n  \"b\": 2\n}").is_ok());
    let reversed = ["\"b\": 2".to_string(), "\"a\": 1".into()];
    assert!(check_output(&reversed, "{\n  \"a\": 1,\n  \"b\": 2\n}").is_err());
    let missing = ["\"c\": 3".to_string()];
    assert!(check_output(&missing, "{\n  \"a\": 1\n}").is_err());
}
