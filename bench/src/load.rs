//! Closed-loop load: a fixed number of workers, each sending its next request as soon as the
//! previous one returns, for a warm-up period and then a measured window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hdrhistogram::Histogram;

use crate::proc_stats;

/// One request of an async workload. It gets the worker number and the worker's request
/// number, and returns an error text on failure.
pub type AsyncOp = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// One request of a blocking workload, owned by one worker thread.
pub type BlockingOp = Box<dyn FnMut(u64) -> Result<(), String> + Send>;

/// Warm-up and measured time of one run.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Requests that started and finished inside the measured window.
    pub requests: u64,
    /// Failed requests in the whole run, warm-up included.
    pub errors: u64,
    pub first_error: Option<String>,
    pub measured: Duration,
    /// Latency in microseconds of the requests counted in `requests`.
    pub latency: Histogram<u64>,
    /// CPU time of the watched process during the measured window.
    pub cpu: Duration,
    /// Peak resident size of the watched process during the run, warm-up included, in bytes.
    pub peak_resident: u64,
}

impl Measurement {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.measured.as_secs_f64()
    }

    /// Returns the CPU time per request, in microseconds.
    pub fn cpu_micros_per_request(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        self.cpu.as_secs_f64() * 1e6 / self.requests as f64
    }

    /// Returns the latency at `quantile` (0 to 1) in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Per-worker tally, merged at the end.
struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            errors: 0,
            first_error: None,
            latency: new_histogram(),
        }
    }

    /// Counts one request that ran from `started` to `finished`.
    fn count(
        &mut self,
        result: Result<(), String>,
        started: Instant,
        finished: Instant,
        window: (Instant, Instant),
    ) {
        if let Err(error) = result {
            self.errors += 1;
            self.first_error.get_or_insert(error);
            return;
        }
        if started >= window.0 && finished <= window.1 {
            self.requests += 1;
            let micros = u64::try_from(finished.duration_since(started).as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            self.latency.saturating_record(micros);
        }
    }
}

/// Returns a histogram of 1 µs to 10 min with three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `op` on `workers` tokio tasks and measures the window, reading the CPU time and peak
/// memory of process `watched`.
pub async fn run_async(
    workers: usize,
    window: Window,
    op: AsyncOp,
    watched: u32,
) -> anyhow::Result<Measurement> {
    proc_stats::reset_peak_resident(watched)?;
    let start = Instant::now();
    let bounds = (
        start + window.warmup,
        start + window.warmup + window.measure,
    );
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut sequence = 0;
            loop {
                let started = Instant::now();
                if started >= bounds.1 {
                    break;
                }
                let result = op(worker, sequence).await;
                sequence += 1;
                tally.count(result, started, Instant::now(), bounds);
            }
            tally
        }));
    }

    tokio::time::sleep_until(bounds.0.into()).await;
    let cpu_before = proc_stats::cpu_time(watched)?;
    tokio::time::sleep_until(bounds.1.into()).await;
    let cpu_after = proc_stats::cpu_time(watched)?;

    let mut tallies = Vec::with_capacity(workers);
    for task in tasks {
        tallies.push(task.await?);
    }
    merge(
        tallies,
        window,
        cpu_after.saturating_sub(cpu_before),
        watched,
    )
}

/// Runs one blocking workload per thread, `make(worker)` building each, and measures the window
/// like [`run_async`].
pub fn run_threads(
    workers: usize,
    window: Window,
    make: impl Fn(usize) -> anyhow::Result<BlockingOp>,
    watched: u32,
) -> anyhow::Result<Measurement> {
    let mut ops = Vec::with_capacity(workers);
    for worker in 0..workers {
        ops.push(make(worker)?);
    }
    proc_stats::reset_peak_resident(watched)?;
    let start = Instant::now();
    let bounds = (
        start + window.warmup,
        start + window.warmup + window.measure,
    );
    let threads: Vec<_> = ops
        .into_iter()
        .map(|mut op| {
            std::thread::spawn(move || {
                let mut tally = Tally::new();
                let mut sequence = 0;
                loop {
                    let started = Instant::now();
                    if started >= bounds.1 {
                        break;
                    }
                    let result = op(sequence);
                    sequence += 1;
                    tally.count(result, started, Instant::now(), bounds);
                }
                tally
            })
        })
        .collect();

    std::thread::sleep(bounds.0.saturating_duration_since(Instant::now()));
    let cpu_before = proc_stats::cpu_time(watched)?;
    std::thread::sleep(bounds.1.saturating_duration_since(Instant::now()));
    let cpu_after = proc_stats::cpu_time(watched)?;

    let mut tallies = Vec::with_capacity(workers);
    for thread in threads {
        tallies.push(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))?,
        );
    }
    merge(
        tallies,
        window,
        cpu_after.saturating_sub(cpu_before),
        watched,
    )
}

fn merge(
    tallies: Vec<Tally>,
    window: Window,
    cpu: Duration,
    watched: u32,
) -> anyhow::Result<Measurement> {
    let mut latency = new_histogram();
    let mut requests = 0;
    let mut errors = 0;
    let mut first_error = None;
    for tally in tallies {
        requests += tally.requests;
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
        latency.add(&tally.latency)?;
    }
    Ok(Measurement {
        requests,
        errors,
        first_error,
        measured: window.measure,
        latency,
        cpu,
        peak_resident: proc_stats::peak_resident_bytes(watched)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_run_counts_requests_and_errors() {
        let op: AsyncOp = Arc::new(|worker, sequence| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if worker == 0 && sequence == 0 {
                    Err("first request fails".to_string())
                } else {
                    Ok(())
                }
            })
        });
        let window = Window {
            warmup: Duration::from_millis(20),
            measure: Duration::from_millis(200),
        };

        let result = run_async(4, window, op, std::process::id()).await.unwrap();

        assert_eq!(result.errors, 1);
        assert_eq!(result.first_error.as_deref(), Some("first request fails"));
        assert!(result.requests > 100, "{} requests", result.requests);
        assert!(result.requests < 500, "{} requests", result.requests);
        assert!(
            result.latency_ms(0.5) >= 2.0,
            "p50 {} ms",
            result.latency_ms(0.5)
        );
    }

    #[test]
    fn thread_run_measures_window() {
        let window = Window {
            warmup: Duration::from_millis(10),
            measure: Duration::from_millis(100),
        };
        let make = |_worker| -> anyhow::Result<BlockingOp> {
            Ok(Box::new(|_| {
                std::thread::sleep(Duration::from_millis(1));
                Ok(())
            }))
        };

        let result = run_threads(2, window, make, std::process::id()).unwrap();

        assert_eq!(result.errors, 0);
        assert!(result.requests > 50, "{} requests", result.requests);
        assert!(
            result.per_second() > 500.0,
            "{} per second",
            result.per_second()
        );
    }
}
