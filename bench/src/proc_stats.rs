//! CPU time and memory of a process, read from Linux's `/proc`.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

/// Returns the user plus system CPU time that process `pid` has used so far, from fields 14
/// (`utime`) and 15 (`stime`) of `/proc/<pid>/stat`. The kernel counts them in clock ticks,
/// usually 10 ms each, so a short run has a coarse figure.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may contain spaces, so the fields are
    // counted from the last `)`. The first field after it is field 3 (`state`).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("{path} has no command name field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |number: usize| -> anyhow::Result<u64> {
        fields
            .get(number - 3)
            .ok_or_else(|| anyhow!("{path} has no field {number}"))?
            .parse::<u64>()
            .with_context(|| format!("field {number} of {path} is not a number"))
    };
    let ticks = field(14)? + field(15)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second()? as f64,
    ))
}

/// Returns the peak resident set size of process `pid` in bytes (`VmHWM` in
/// `/proc/<pid>/status`).
pub fn peak_resident_bytes(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Resets the peak resident set size of process `pid` to its current size, by writing 5 to
/// `/proc/<pid>/clear_refs` (Linux 4.0 and later), so the next reading shows the peak of what
/// followed.
pub fn reset_peak_resident(pid: u32) -> anyhow::Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("writing 5 to {path}"))
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(key))
        .ok_or_else(|| anyhow!("{path} has no {key} line"))?;
    let value = line[key.len()..].trim().trim_end_matches("kB").trim();
    value
        .parse()
        .with_context(|| format!("{key} in {path} is not a number of kB: {line}"))
}

/// Returns the kernel's clock ticks per second (`getconf CLK_TCK`), the unit of the CPU times
/// in `/proc/<pid>/stat`.
fn clock_ticks_per_second() -> anyhow::Result<u64> {
    static TICKS: OnceLock<Result<u64, String>> = OnceLock::new();
    TICKS
        .get_or_init(|| {
            let output = std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .map_err(|error| format!("running `getconf CLK_TCK` failed: {error}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            match text.trim().parse::<u64>() {
                Ok(ticks) if ticks > 0 => Ok(ticks),
                _ => Err(format!(
                    "`getconf CLK_TCK` printed {text:?}, not a tick rate"
                )),
            }
        })
        .clone()
        .map_err(|message| anyhow!(message))
}

/// Checks that `/proc` can be read for this process, so a run fails at the start rather than
/// after its first measurement.
pub fn check_available() -> anyhow::Result<()> {
    let pid = std::process::id();
    cpu_time(pid)?;
    if peak_resident_bytes(pid)? == 0 {
        bail!("/proc/{pid}/status reports a peak resident size of 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0_u64;
        while started.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);

        assert!(cpu_time(pid).unwrap() > before);
    }

    #[test]
    fn peak_memory_resets() {
        let pid = std::process::id();
        let block = vec![1_u8; 64 * 1024 * 1024];
        std::hint::black_box(&block);
        let with_block = peak_resident_bytes(pid).unwrap();
        drop(block);

        reset_peak_resident(pid).unwrap();

        let after = peak_resident_bytes(pid).unwrap();
        assert!(
            after + 32 * 1024 * 1024 < with_block,
            "peak {after} bytes after the reset, {with_block} before"
        );
    }

    #[test]
    fn own_peak_memory_is_plausible() {
        let peak = peak_resident_bytes(std::process::id()).unwrap();

        assert!(peak > 1024 * 1024, "peak resident size {peak} bytes");
    }
}
