//! Probe rows (issue 16): what one liveness check costs the wrapper, and how soon a broker that
//! stops answering is caught against the bound `--probe-failures x (--probe-every + --probe-timeout)`.
//! `cargo bench --bench tether -- --probes` runs these rows alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::common::broker::broker;
use super::{Row, Signal, cleanup_job, detach, kill, load, mono_ms_f64};

/// CPU of a process in ns: its own from `/proc/PID/schedstat` (ns precision), plus what its reaped
/// children used (`cutime` + `cstime` of `/proc/PID/stat`, in clock ticks): an exec probe's shell.
fn cpu_with_children_ns(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After ")": state is [0]; cutime and cstime are fields 16-17 of the line: [13..15].
    let ticks: f64 = f.get(13..15).map(|v| v.iter().sum()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    super::cpu_ns(pid) as f64 + ticks / hz * 1e9
}

/// Wrapper CPU per probe (µs): a job probing every 50 ms against one without a probe, over `secs`.
fn cost_per_check(dir: &Path, spec: &str, secs: u64) -> f64 {
    let every = 50u64;
    let (id_p, w_p) = detach(
        dir,
        &["--probe", spec, "--probe-every", "50ms"],
        &["sleep", "600"],
    );
    let (id_0, w_0) = detach(dir, &[], &["sleep", "600"]);
    let (p0, z0) = (cpu_with_children_ns(w_p), cpu_with_children_ns(w_0));
    std::thread::sleep(Duration::from_secs(secs));
    let (p1, z1) = (cpu_with_children_ns(w_p), cpu_with_children_ns(w_0));
    // The outcome reaches the record with the next renewal: up to one interval (3.3 s at the
    // defaults) after the probe, which a quick run's window may not span.
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let rec = loop {
        let rec = load(dir, &id_p);
        if rec.progress.probe.is_some() || std::time::Instant::now() > end {
            break rec;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        rec.progress.probe.as_ref().is_some_and(|p| p.ok),
        "the probe {spec} must succeed: {:?}",
        rec.progress.probe
    );
    for (id, w) in [(id_p, w_p), (id_0, w_0)] {
        kill(w, Signal::KILL);
        cleanup_job(dir, &id);
    }
    let probes = (secs * 1000 / every) as f64;
    ((p1 - p0) - (z1 - z0)).max(0.0) / probes / 1e3
}

/// The broker stops answering; time from then to the `lost`/`probe-failed` record (ms).
fn detection(dir: &Path, runs: usize) -> Vec<f64> {
    let healthy = Arc::new(AtomicBool::new(true));
    let port = broker(healthy.clone());
    let url = format!("http://127.0.0.1:{port}/health");
    let mut out = Vec::new();
    for _ in 0..runs {
        healthy.store(true, Ordering::SeqCst);
        let (id, w) = detach(
            dir,
            &[
                "--probe",
                &url,
                "--probe-every",
                "200ms",
                "--probe-timeout",
                "300ms",
                "--probe-failures",
                "3",
                "--grace",
                "200ms",
            ],
            &["sleep", "600"],
        );
        std::thread::sleep(Duration::from_millis(500));
        healthy.store(false, Ordering::SeqCst);
        let t0 = mono_ms_f64();
        loop {
            let rec = load(dir, &id);
            if rec.status.is_terminal() {
                assert_eq!(
                    rec.reason.map(|r| r.as_str()),
                    Some("probe-failed"),
                    "{rec:?}"
                );
                break;
            }
            assert!(mono_ms_f64() - t0 < 30_000.0, "not caught within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        out.push(mono_ms_f64() - t0);
        kill(w, Signal::KILL);
        cleanup_job(dir, &id);
    }
    out
}

pub fn rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) {
    let secs = if quick { 3 } else { 10 };
    let port = broker(Arc::new(AtomicBool::new(true)));
    let tcp = cost_per_check(
        &tmp.join("probe-tcp"),
        &format!("tcp:127.0.0.1:{port}"),
        secs,
    );
    rows.push(Row::single(
        "probe cost per check, tcp (wrapper CPU)",
        "us",
        tcp,
        "-",
        true,
    ));
    let exec = cost_per_check(&tmp.join("probe-exec"), "true", secs);
    rows.push(Row::single(
        "probe cost per check, exec `true` (wrapper + sh CPU)",
        "us",
        exec,
        "-",
        true,
    ));
    let det = detection(&tmp.join("probe-detect"), if quick { 3 } else { 10 });
    rows.push(Row::new(
        "probe detection (broker stops answering -> lost record)",
        "ms",
        det,
        "<= 1500 ms (3 x (200 + 300) ms)",
        |s| s.median <= 1500.0,
    ));
}
