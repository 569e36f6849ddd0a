//! The report, printed as Markdown so it can go into `docs/benchmarks.md` unchanged.

use std::fmt::Write as _;

use crate::capture::Captured;
use crate::fixture::Fixture;
use crate::load::{Measurement, new_histogram};
use crate::options::Options;
use crate::raw::Backend;
use crate::run::{BackendReport, ScenarioRuns, display_path, mebibytes};
use crate::scaling::{Pair, ScalingReport};
use crate::service::Scenario;

/// Facts about the machine, read from `/proc`.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub load_at_start: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            load_at_start: load_average(),
        }
    }
}

/// Returns the 1, 5 and 15 minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// All runs of one kind of one scenario, added up.
struct Totals {
    requests: u64,
    seconds: f64,
    cpu_seconds: f64,
    latency: hdrhistogram::Histogram<u64>,
}

impl Totals {
    fn of(runs: &[Measurement]) -> Totals {
        let mut latency = new_histogram();
        for run in runs {
            latency
                .add(&run.latency)
                .expect("histograms of the same bounds");
        }
        Totals {
            requests: runs.iter().map(|run| run.requests).sum(),
            seconds: runs.iter().map(|run| run.measured.as_secs_f64()).sum(),
            cpu_seconds: runs.iter().map(|run| run.cpu.as_secs_f64()).sum(),
            latency,
        }
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn cpu_micros(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        self.cpu_seconds * 1e6 / self.requests as f64
    }

    fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Returns the service/raw throughput ratio over all rounds, and the lowest and highest of the
/// rounds.
fn ratio(runs: &ScenarioRuns, baseline: &[Measurement]) -> (f64, f64, f64) {
    let total = Totals::of(&runs.service).per_second() / Totals::of(baseline).per_second();
    let rounds: Vec<f64> = runs
        .service
        .iter()
        .zip(baseline)
        .map(|(service, base)| service.per_second() / base.per_second())
        .collect();
    let low = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let high = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (total, low, high)
}

/// Returns the throughput of a server that spends the time of both baselines on each request:
/// the gRPC work of the no-op server and the SQL of the raw driver, one after the other.
fn both_baselines(raw_per_second: f64, noop_per_second: f64) -> f64 {
    1.0 / (1.0 / raw_per_second + 1.0 / noop_per_second)
}

/// Formats `value` with `decimals` decimals, or `n/a` when no request was measured.
fn figure(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".to_string()
    }
}

fn format_ratio((total, low, high): (f64, f64, f64)) -> String {
    if !total.is_finite() {
        return "n/a".to_string();
    }
    if (high - low).abs() < 0.005 {
        format!("{total:.2}")
    } else {
        format!("{total:.2} ({low:.2}–{high:.2})")
    }
}

/// Writes a table row for one target: the figure, the limit and whether it was met.
fn write_target(out: &mut String, what: &str, value: f64, limit: f64, at_least: bool, unit: &str) {
    let met = if at_least {
        value >= limit
    } else {
        value < limit
    };
    let verdict = if met {
        "met".to_string()
    } else if at_least {
        format!("MISSED by {:.0}%", (1.0 - value / limit) * 100.0)
    } else {
        format!("MISSED by {:.0}%", (value / limit - 1.0) * 100.0)
    };
    let relation = if at_least { "at least" } else { "under" };
    let _ = writeln!(
        out,
        "| {what} | {value:.2}{unit} | {relation} {limit}{unit} | {verdict} |"
    );
}

/// Renders the whole report.
pub fn render(
    options: &Options,
    machine: &Machine,
    reports: &[BackendReport],
    captured: &[(Backend, Fixture, Vec<Captured>)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Ally benchmark report\n");
    let _ = writeln!(
        out,
        "- taken: {} UTC",
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        out,
        "- machine: {}, {} cores, {:.1} GiB memory; load average {} at the start, {} at the end",
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.load_at_start,
        load_average()
    );
    let _ = writeln!(
        out,
        "- server: `{}`, database pool of {} connections",
        display_path(&options.ally),
        options.pool_size
    );
    let _ = writeln!(
        out,
        "- load: {} connections, {} requests in flight, {} round(s) of {:.1} s after {:.1} s of \
         warm-up per run",
        options.connections, options.streams, options.rounds, options.seconds, options.warmup
    );
    if options.smoke {
        let _ = writeln!(
            out,
            "- smoke mode: the figures show only that every path works"
        );
    }
    for report in reports {
        render_backend(&mut out, options, report);
    }
    if !captured.is_empty() {
        render_captured(&mut out, captured);
    }
    out
}

fn render_backend(out: &mut String, options: &Options, report: &BackendReport) {
    let _ = writeln!(out, "\n## {}\n", report.backend.name());
    let raw_workers: Vec<String> = report
        .scenarios
        .iter()
        .map(|runs| match runs.raw_workers {
            0 => format!("{} none, as it sends no SQL", runs.scenario.name()),
            workers => format!("{} {workers}", runs.scenario.name()),
        })
        .collect();
    let _ = writeln!(
        out,
        "Throughput in requests per second, latency of the service in milliseconds, CPU time in \
         microseconds per request. The no-op and service runs keep {} requests in flight ({} for \
         Login); the raw runs use as many workers as the pool has connections, except one on \
         SQLite for RPCs that write, as Ally writes through one connection there (workers: {}).\n",
        options.streams,
        Scenario::Login.workers(options.streams),
        raw_workers.join(", ")
    );
    let _ = writeln!(
        out,
        "| RPC | service/s | p50 | p99 | p99.9 | service CPU | raw/s | raw CPU | no-op/s | \
         no-op CPU | service/raw | service/no-op | service/both | bytes in/out | peak MiB |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for runs in &report.scenarios {
        let service = Totals::of(&runs.service);
        let raw = Totals::of(&runs.raw);
        let noop = Totals::of(&runs.noop);
        let sends_sql = !runs.raw.is_empty();
        // Without SQL the service needs only what the no-op server does.
        let both = if sends_sql {
            both_baselines(raw.per_second(), noop.per_second())
        } else {
            noop.per_second()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {:.0} |",
            runs.scenario.name(),
            figure(service.per_second(), 0),
            figure(service.latency_ms(0.5), 2),
            figure(service.latency_ms(0.99), 2),
            figure(service.latency_ms(0.999), 2),
            figure(service.cpu_micros(), 0),
            if sends_sql {
                figure(raw.per_second(), 0)
            } else {
                "no SQL".to_string()
            },
            if sends_sql {
                figure(raw.cpu_micros(), 0)
            } else {
                "-".to_string()
            },
            figure(noop.per_second(), 0),
            figure(noop.cpu_micros(), 0),
            if sends_sql {
                format_ratio(ratio(runs, &runs.raw))
            } else {
                "-".to_string()
            },
            format_ratio(ratio(runs, &runs.noop)),
            figure(service.per_second() / both, 2),
            runs.shape.request_bytes,
            runs.shape.response_bytes,
            runs.service
                .iter()
                .map(|run| mebibytes(run.peak_resident))
                .fold(0.0, f64::max),
        );
    }
    let _ = writeln!(
        out,
        "\nRaw CPU is the benchmark process's own time while it drives the database (on SQLite \
         this includes executing the SQL); service and no-op CPU are the server process's. \
         Service/both divides by the throughput of a server that spent the time of the raw and \
         the no-op request one after the other, or by the no-op server's alone for an RPC that \
         sends no SQL. \
         Brackets show the lowest and highest round. Peak MiB is the server's highest resident \
         size during the RPC's runs.\n"
    );

    let find = |scenario| {
        report
            .scenarios
            .iter()
            .find(|runs| runs.scenario == scenario)
    };
    let _ = writeln!(out, "| target | measured | limit | result |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for (scenario, limit) in [
        (Scenario::AddMessage, 0.8),
        (Scenario::ListMessages, 0.6),
        (Scenario::GetConfiguration, 0.6),
        (Scenario::GetTenantApiKey, 0.6),
    ] {
        if let Some(runs) = find(scenario) {
            let (baseline, name) = if runs.raw.is_empty() {
                (&runs.noop, "no-op gRPC, as it sends no SQL")
            } else {
                (&runs.raw, "raw driver")
            };
            let (value, _, _) = ratio(runs, baseline);
            write_target(
                out,
                &format!("{} throughput / {name}", scenario.name()),
                value,
                limit,
                true,
                "",
            );
        }
    }
    if let (Some(key), Some(token)) = (
        find(Scenario::GetTenantApiKey),
        find(Scenario::GetTenantToken),
    ) {
        let key_cpu = Totals::of(&key.service).cpu_micros();
        let token_cpu = Totals::of(&token.service).cpu_micros();
        write_target(
            out,
            "API key CPU per request over an access token's",
            (key_cpu / token_cpu - 1.0) * 100.0,
            10.0,
            false,
            "%",
        );
    }
    if let Some(scaling) = &report.scaling {
        scaling_targets(out, scaling);
    }
    if let Some(memory) = &report.memory {
        write_target(
            out,
            &format!("server peak memory at {} streams", memory.streams),
            mebibytes(memory.service.peak_resident),
            100.0,
            false,
            " MiB",
        );
    }

    if let Some(argon2) = &report.argon2 {
        let _ = writeln!(
            out,
            "\nLogin verifies an argon2id hash (19 MiB, 2 passes). Verifying with Ally's code on \
             {} tasks in the benchmark process managed {:.0}/s at {:.0} µs of CPU each, the \
             ceiling for Login on this machine.",
            Scenario::Login.workers(options.streams),
            argon2.per_second(),
            argon2.cpu_micros_per_request()
        );
    }
    let _ = writeln!(
        out,
        "\nVerifying an access token (HS256) in the benchmark process takes {:.1} µs the first \
         time and {:.2} µs once the token is in Ally's memory of verified tokens.",
        report.token_verify.new_micros, report.token_verify.known_micros
    );
    if let Some(memory) = &report.memory {
        let _ = writeln!(
            out,
            "\nMemory: {} with {} requests in flight over {} connections: {:.0}/s, p99 {:.1} ms; \
             server peak resident {:.1} MiB (no-op server at the same load: {:.1} MiB). Server \
             peak over the whole run: {:.1} MiB.",
            memory.scenario.name(),
            memory.streams,
            memory.connections,
            memory.service.per_second(),
            memory.service.latency_ms(0.99),
            mebibytes(memory.service.peak_resident),
            mebibytes(memory.noop.peak_resident),
            mebibytes(report.server_peak_resident),
        );
    }
    if let Some(scaling) = &report.scaling {
        render_scaling(out, scaling);
    }
}

fn scaling_targets(out: &mut String, scaling: &ScalingReport) {
    let (Some(small), Some(large)) = (scaling.sizes.first(), scaling.sizes.last()) else {
        return;
    };
    if small.size == large.size {
        return;
    }
    write_target(
        out,
        &format!(
            "deep-page p50 at {} rows / at {} rows",
            large.size, small.size
        ),
        large.messages_deep.service.latency_ms(0.5) / small.messages_deep.service.latency_ms(0.5),
        1.5,
        false,
        "",
    );
}

/// Selects one query's runs from the runs at one size.
type PickPair = fn(&crate::scaling::SizeRuns) -> &Pair;

fn render_scaling(out: &mut String, scaling: &ScalingReport) {
    let _ = writeln!(
        out,
        "\n### Scaling\n\nOne session with N messages and one tenant with N audit entries (one in \
         100 of the filtered type), 4 workers. Latency p50 / p99 in milliseconds.\n"
    );
    render_scaling_table(out, scaling);

    let _ = write!(out, "\nRows were added at");
    for size in &scaling.sizes {
        let _ = write!(out, " N={}: {:.1} s;", size.size, size.populate_seconds);
    }
    let _ = writeln!(out, " messages and audit entries together.");

    for size in &scaling.sizes {
        let _ = writeln!(out, "\nQuery plans at N={}:\n\n```", size.size);
        for plan in &size.plans {
            let _ = writeln!(out, "{}:", plan.query);
            for line in &plan.lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(out, "```");
    }
}

fn render_scaling_table(out: &mut String, scaling: &ScalingReport) {
    let _ = write!(out, "| query |");
    for size in &scaling.sizes {
        let _ = write!(out, " service N={} | raw N={} |", size.size, size.size);
    }
    if scaling.sizes.len() > 1 {
        let _ = write!(out, " service p50 ratio |");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "|---|{}{}",
        "---:|---:|".repeat(scaling.sizes.len()),
        if scaling.sizes.len() > 1 { "---:|" } else { "" }
    );
    let rows: [(&str, PickPair); 4] = [
        ("ListMessages, first page", |size| &size.messages_first),
        ("ListMessages, deep page", |size| &size.messages_deep),
        ("ListAuditEntries, newest first", |size| &size.audit_newest),
        ("ListAuditEntries, one event type", |size| {
            &size.audit_by_event
        }),
    ];
    for (name, pick) in rows {
        let _ = write!(out, "| {name} |");
        for size in &scaling.sizes {
            let pair = pick(size);
            let _ = write!(
                out,
                " {:.2} / {:.2} | {:.2} / {:.2} |",
                pair.service.latency_ms(0.5),
                pair.service.latency_ms(0.99),
                pair.raw.latency_ms(0.5),
                pair.raw.latency_ms(0.99)
            );
        }
        if let (Some(first), Some(last)) = (scaling.sizes.first(), scaling.sizes.last())
            && scaling.sizes.len() > 1
        {
            let _ = write!(
                out,
                " {:.2} |",
                pick(last).service.latency_ms(0.5) / pick(first).service.latency_ms(0.5)
            );
        }
        let _ = writeln!(out);
    }
}

fn render_captured(out: &mut String, captured: &[(Backend, Fixture, Vec<Captured>)]) {
    let _ = writeln!(
        out,
        "\n## SQL sent by Ally\n\nRecorded from one call of each RPC after a warm-up call. The \
         raw-driver baseline sends the same statements without the pool's checks.\n"
    );
    let _ = writeln!(
        out,
        "| RPC | backend | statements | pool checks (`SELECT 1`) | baseline |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|");
    for (backend, fixture, entries) in captured {
        for entry in entries {
            let differences = entry.compare(*backend, fixture);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                entry.probe.name(),
                backend.name(),
                entry.without_pool_checks().len(),
                entry.pool_checks(),
                if differences.is_empty() {
                    "same SQL"
                } else {
                    "DIFFERS"
                }
            );
        }
    }
}
