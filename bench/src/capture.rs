//! Records the SQL that Ally sends for each scenario: on MariaDB from the general query log of a
//! server that the benchmark starts for this alone, on SQLite from diesel's instrumentation
//! hook in a server run inside this process.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mysql_async::prelude::Queryable;
use tempfile::TempDir;

use tonic::transport::Channel;

use crate::child::ChildServer;
use crate::fixture::{self, Fixture};
use crate::raw::{self, Backend};
use crate::service::{self, Scenario};
use crate::{scaling, sql};

/// A MariaDB server of the benchmark's own, with the general query log on, stopped when dropped.
struct LoggingMariadb {
    dir: TempDir,
    port: u16,
    child: Child,
}

impl LoggingMariadb {
    fn start() -> anyhow::Result<LoggingMariadb> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--user=root")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running mariadb-install-db (Debian package mariadb-server)")?;
        if !status.success() {
            bail!("mariadb-install-db failed with {status}");
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--performance-schema=OFF")
            .arg("--general-log=1")
            .arg(format!(
                "--general-log-file={}",
                dir.path().join("general.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mariadbd")?;
        Ok(LoggingMariadb { dir, port, child })
    }

    fn admin_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("general.log")
    }

    async fn connect(&self) -> anyhow::Result<mysql_async::Conn> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match mysql_async::Conn::from_url(self.admin_url()).await {
                Ok(conn) => return Ok(conn),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(error) => return Err(error).context("connecting to the private MariaDB"),
            }
        }
    }
}

impl Drop for LoggingMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A call whose SQL is recorded: a scenario, or one of the scaling queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Scenario(Scenario),
    /// ListMessages after a page token, the form of every page but the first.
    ListMessagesNextPage,
    /// ListAuditEntries, newest first.
    ListAudit,
    /// ListAuditEntries of one event type.
    ListAuditByEvent,
}

impl Probe {
    pub fn all() -> Vec<Probe> {
        let mut probes: Vec<Probe> = Scenario::ALL.into_iter().map(Probe::Scenario).collect();
        probes.extend([
            Probe::ListMessagesNextPage,
            Probe::ListAudit,
            Probe::ListAuditByEvent,
        ]);
        probes
    }

    pub fn name(self) -> &'static str {
        match self {
            Probe::Scenario(scenario) => scenario.name(),
            Probe::ListMessagesNextPage => "ListMessages (next page)",
            Probe::ListAudit => "ListAuditEntries",
            Probe::ListAuditByEvent => "ListAuditEntries (one event type)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Probe::Scenario(scenario) => scenario.key(),
            Probe::ListMessagesNextPage => "list-messages-next-page",
            Probe::ListAudit => "list-audit",
            Probe::ListAuditByEvent => "list-audit-by-event",
        }
    }

    /// Makes the call once.
    async fn call(self, fixture: &Fixture, channel: &Channel) -> anyhow::Result<()> {
        let bearer = fixture.bearer().1;
        match self {
            Probe::Scenario(scenario) => {
                service::shape(scenario, fixture, channel).await?;
            }
            Probe::ListMessagesNextPage => {
                let first =
                    scaling::list_messages(channel, &bearer, &fixture.read_session, "").await?;
                scaling::list_messages(
                    channel,
                    &bearer,
                    &fixture.read_session,
                    &first.next_page_token,
                )
                .await?;
            }
            Probe::ListAudit => {
                scaling::list_audit(channel, &bearer, None).await?;
            }
            Probe::ListAuditByEvent => {
                scaling::list_audit(channel, &bearer, Some(scaling::RARE_EVENT)).await?;
            }
        }
        Ok(())
    }

    /// Returns the statements the benchmark's raw-driver baseline sends for this call.
    pub fn baseline_sql(self, backend: Backend, fixture: &Fixture) -> Vec<&'static str> {
        match self {
            Probe::Scenario(scenario) => raw::statements(scenario, backend, fixture, 0)
                .iter()
                .map(|statement| statement.sql)
                .collect(),
            Probe::ListMessagesNextPage => vec![
                sql::SESSION_BY_ID,
                sql::LIST_MESSAGES,
                sql::SESSION_BY_ID,
                sql::LIST_MESSAGES_AFTER,
            ],
            Probe::ListAudit => vec![sql::LIST_AUDIT],
            Probe::ListAuditByEvent => vec![sql::LIST_AUDIT_BY_EVENT],
        }
    }
}

/// The statements one probe sent, in order, with literal values replaced by `?`.
pub struct Captured {
    pub probe: Probe,
    pub statements: Vec<String>,
}

impl Captured {
    /// Returns the statements without the connection checks of the pool (`SELECT 1`).
    pub fn without_pool_checks(&self) -> Vec<&str> {
        self.statements
            .iter()
            .map(String::as_str)
            .filter(|statement| *statement != "SELECT ?" && *statement != "SELECT 1")
            .collect()
    }

    /// Returns how many connection checks of the pool the call caused.
    pub fn pool_checks(&self) -> usize {
        self.statements.len() - self.without_pool_checks().len()
    }

    /// Returns the differences between what Ally sent and the baseline's statements, as lines
    /// to print; empty when they agree.
    pub fn compare(&self, backend: Backend, fixture: &Fixture) -> Vec<String> {
        let sent: Vec<String> = self
            .without_pool_checks()
            .into_iter()
            .map(normalize)
            .collect();
        let baseline: Vec<String> = self
            .probe
            .baseline_sql(backend, fixture)
            .into_iter()
            .map(normalize)
            .collect();
        if sent == baseline {
            return Vec::new();
        }
        let mut lines = vec![format!(
            "{} on {}: Ally sent {} statements, the baseline sends {}",
            self.probe.name(),
            backend.name(),
            sent.len(),
            baseline.len()
        )];
        for (index, statement) in sent.iter().enumerate() {
            if baseline.get(index) != Some(statement) {
                lines.push(format!("  Ally #{}: {statement}", index + 1));
                lines.push(format!(
                    "  baseline #{}: {}",
                    index + 1,
                    baseline.get(index).map_or("(none)", String::as_str)
                ));
            }
        }
        lines
    }
}

/// Runs every scenario once against `ally` on a private MariaDB with the general query log on,
/// and returns the statements each one sent.
pub async fn capture_mariadb(
    ally: &Path,
    probes: &[Probe],
) -> anyhow::Result<(Fixture, Vec<Captured>)> {
    let server = LoggingMariadb::start()?;
    let mut admin = server.connect().await?;
    admin
        .query_drop("CREATE DATABASE ally CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        .await?;
    let work = tempfile::tempdir()?;
    let ally = ChildServer::start_ally(
        ally,
        &format!("{}/ally", server.admin_url()),
        work.path(),
        2,
        &[],
    )?;
    let channels = fixture::connect(ally.address, 1).await?;
    let fixture = fixture::create(&channels[0], 1).await?;
    // One call first, so that each connection's prepared statements and the caches are warm
    // and the recorded call shows the steady state.
    for probe in probes {
        probe.call(&fixture, &channels[0]).await?;
    }
    // The API key use counts are written every 5 seconds; wait for that write to pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for probe in probes {
        admin
            .query_drop(format!("SELECT 'ally-bench begin {}'", probe.key()))
            .await?;
        probe.call(&fixture, &channels[0]).await?;
        admin
            .query_drop(format!("SELECT 'ally-bench end {}'", probe.key()))
            .await?;
    }
    drop(channels);
    ally.stop()?;
    admin.disconnect().await?;

    let log = std::fs::read_to_string(server.log_path())?;
    let entries = parse_log(&log);
    let mut captured = Vec::new();
    for probe in probes {
        let begin = format!("SELECT 'ally-bench begin {}'", probe.key());
        let end = format!("SELECT 'ally-bench end {}'", probe.key());
        let start = entries
            .iter()
            .position(|entry| entry.argument == begin)
            .with_context(|| format!("no begin mark for {} in the log", probe.key()))?;
        let stop = entries
            .iter()
            .position(|entry| entry.argument == end)
            .with_context(|| format!("no end mark for {} in the log", probe.key()))?;
        let statements = entries[start + 1..stop]
            .iter()
            .filter(|entry| entry.command == "Query" || entry.command == "Execute")
            .map(|entry| normalize(&entry.argument))
            .collect();
        captured.push(Captured {
            probe: *probe,
            statements,
        });
    }
    Ok((fixture, captured))
}

/// Statements that SQLite connections started, in order, while [`capture_sqlite`] runs.
static SQLITE_STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_sqlite_statements() -> Option<Box<dyn diesel::connection::Instrumentation>> {
    Some(Box::new(
        |event: diesel::connection::InstrumentationEvent<'_>| {
            if let diesel::connection::InstrumentationEvent::StartQuery { query, .. } = event {
                // The text ends with ` -- binds: [...]`, the bound values.
                let text = query.to_string();
                let sql = text.split(" -- binds: ").next().unwrap_or_default();
                if let Ok(mut statements) = SQLITE_STATEMENTS.lock() {
                    statements.push(sql.trim().to_string());
                }
            }
        },
    ))
}

/// Runs every scenario once against an Ally server inside this process on a new SQLite
/// database, and returns the statements each one sent.
pub async fn capture_sqlite(probes: &[Probe]) -> anyhow::Result<(Fixture, Vec<Captured>)> {
    diesel::connection::set_default_instrumentation(record_sqlite_statements)?;
    let work = tempfile::tempdir()?;
    let mut settings = ally::config::Settings {
        environment: ally::config::Environment::Testing,
        ..Default::default()
    };
    settings.server.listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.server.data_dir = work.path().to_path_buf();
    settings.database.url = format!("sqlite://{}", work.path().join("ally.db").display()).into();
    settings.database.max_connections = 2;
    settings.auth.jwt_secret = Some(crate::child::JWT_SECRET.to_string().into());
    let server = ally::server::start(settings).await?;
    let channels = fixture::connect(server.local_addr(), 1).await?;
    let fixture = fixture::create(&channels[0], 1).await?;
    for probe in probes {
        probe.call(&fixture, &channels[0]).await?;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;

    let recorded = || {
        SQLITE_STATEMENTS
            .lock()
            .map_err(|_| anyhow::anyhow!("a thread panicked while recording SQL"))
    };
    let mut captured = Vec::new();
    for probe in probes {
        let start = recorded()?.len();
        probe.call(&fixture, &channels[0]).await?;
        let statements = recorded()?[start..].to_vec();
        captured.push(Captured {
            probe: *probe,
            statements,
        });
    }
    drop(channels);
    server.shutdown().await?;
    Ok((fixture, captured))
}

/// One entry of the general query log.
#[derive(Debug, PartialEq)]
struct LogEntry {
    thread: u64,
    command: String,
    argument: String,
}

/// Parses MariaDB's general query log: `[time]\t<thread id> <command>\t<argument>`, where an
/// argument may continue on the following lines.
fn parse_log(log: &str) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    for line in log.lines() {
        match parse_entry(line) {
            Some(entry) => entries.push(entry),
            None => {
                if let Some(last) = entries.last_mut() {
                    last.argument.push('\n');
                    last.argument.push_str(line);
                }
            }
        }
    }
    entries
}

fn parse_entry(line: &str) -> Option<LogEntry> {
    let (_time, rest) = line.split_once('\t')?;
    let rest = rest.trim_start();
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let thread = rest[..digits].parse().ok()?;
    let rest = rest[digits..].strip_prefix(' ')?;
    let (command, argument) = rest.split_once('\t').unwrap_or((rest, ""));
    if command.is_empty() || !command.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
        return None;
    }
    Some(LogEntry {
        thread,
        command: command.to_string(),
        argument: argument.to_string(),
    })
}

/// Replaces string and number literals with `?`, so that a logged `Execute` (which shows the
/// bound values) reads like the prepared statement.
pub fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut previous: Option<char> = None;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A typed literal such as TIMESTAMP'2026-01-01 00:00:00' is one value.
                if out.ends_with("TIMESTAMP") {
                    out.truncate(out.len() - "TIMESTAMP".len());
                }
                while let Some(next) = chars.next() {
                    match next {
                        '\\' => {
                            chars.next();
                        }
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        '\'' => break,
                        _ => {}
                    }
                }
                out.push('?');
            }
            '`' => {
                out.push(c);
                for next in chars.by_ref() {
                    out.push(next);
                    if next == '`' {
                        break;
                    }
                }
            }
            c if c.is_ascii_digit()
                && !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_') =>
            {
                while chars
                    .peek()
                    .is_some_and(|next| next.is_ascii_digit() || *next == '.')
                {
                    chars.next();
                }
                out.push('?');
            }
            c => out.push(c),
        }
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_and_continuations() {
        let log = "Time\t\t    Id Command\tArgument\n\
                   261204 20:43:02\t     3 Connect\troot@127.0.0.1 on  using TCP/IP\n\
                   \t\t     3 Execute\tSELECT 1\n\
                   FROM dual\n\
                   \t\t    12 Quit\t\n";

        let entries = parse_log(log);

        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(entries[0].command, "Connect");
        assert_eq!(entries[1].thread, 3);
        assert_eq!(entries[1].argument, "SELECT 1\nFROM dual");
        assert_eq!(entries[2].thread, 12);
        assert_eq!(entries[2].command, "Quit");
    }

    #[test]
    fn literals_become_placeholders() {
        let sql =
            "SELECT `t`.`a1` FROM `t` WHERE (`t`.`id` = 'it''s \\' x') AND `n` > 12.5 LIMIT 1";

        assert_eq!(
            normalize(sql),
            "SELECT `t`.`a1` FROM `t` WHERE (`t`.`id` = ?) AND `n` > ? LIMIT ?"
        );
    }
}
