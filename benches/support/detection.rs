//! Detection latency: a crashed, a wedged and a stalled job, against the seed report's suggested
//! fix (poll the record every 2 s and check `kill(pid, 0)`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::jobs::{cleanup_job, detach, kill, load, wait_cmd};
use crate::procfs::{cpu_ns, mono_ms_f64};
use crate::table::{Row, median};

/// Starts the idle wrapper (measured in the background until `idle_and_scale_rows`), then measures
/// detection against the baseline poller.
pub fn rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) -> (u32, u64, Instant) {
    let n = |full: usize, q: usize| if quick { q } else { full };
    // The idle wrapper is measured over 60 s in the background while the other figures run: its own
    // CPU counters (schedstat) and peak RSS are its alone.
    let idle_dir = tmp.join("idle");
    let (_, idle_pid) = detach(&idle_dir, &["--interval", "1s"], &["sleep", "3600"]);
    let idle_cpu0 = cpu_ns(idle_pid);
    let idle_t0 = Instant::now();

    let (crash, baseline) = crash_detection(&tmp.join("crash"), n(50, 5));
    rows.push(Row::new(
        "crash detection (kill -> waiter exit)",
        "ms",
        crash.clone(),
        "median <= 10 ms",
        |s| s.median <= 10.0,
    ));
    rows.push(Row::new(
        "baseline: poll record 2 s + kill(pid,0)",
        "ms",
        baseline.clone(),
        "-",
        |_| true,
    ));
    let ratio = median(&baseline) / median(&crash).max(1e-3);
    rows.push(Row::single(
        "baseline / tether (median ratio)",
        "x",
        ratio,
        ">= 50x",
        ratio >= 50.0,
    ));

    let wedge = wedge_detection(&tmp.join("wedge"), n(20, 3));
    rows.push(Row::new(
        "wedge detection (ttl end -> waiter exit)",
        "ms",
        wedge,
        "median <= 50 ms",
        |s| s.median <= 50.0,
    ));

    let stall = stall_detection(&tmp.join("stall"), n(15, 3));
    rows.push(Row::new(
        "stall detection (beat deadline -> lost record)",
        "ms",
        stall,
        "median <= 200 ms (1 interval)",
        |s| s.median <= 200.0,
    ));

    (idle_pid, idle_cpu0, idle_t0)
}

/// SIGKILL a detached wrapper while a `status --wait` waiter and a baseline poller both wait on it.
/// The kill comes at a random moment in the baseline's 2 s poll cycle.
fn crash_detection(dir: &Path, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let mut tether_ms = Vec::new();
    let mut base_ms = Vec::new();
    for i in 0..runs {
        let (id, wrapper) = detach(dir, &[], &["sleep", "300"]);
        let mut waiter = wait_cmd(dir, &id);
        let mut base = Command::new(std::env::current_exe().unwrap())
            .args(["--baseline-waiter", dir.to_str().unwrap(), &id])
            .stdout(Stdio::null())
            .spawn()
            .expect("baseline waiter");
        // Let both set up, then kill at a random point of the baseline's 2 s cycle.
        std::thread::sleep(Duration::from_millis(300 + jitter_ms(i, 2000)));
        let t0 = Instant::now();
        kill(wrapper, Signal::KILL);
        let code = waiter.wait().expect("waiter");
        tether_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = base.wait();
        base_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            code.code(),
            Some(3),
            "status --wait must report lost (exit 3) after a crash"
        );
        cleanup_job(dir, &id);
    }
    (tether_ms, base_ms)
}

/// SIGSTOP a wrapper; time from the lease's expiry (its last renewal + ttl, monotonic) to the
/// waiter's exit.
fn wedge_detection(dir: &Path, runs: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let (id, wrapper) = detach(
            dir,
            &["--interval", "200ms", "--ttl", "1s"],
            &["sleep", "300"],
        );
        let mut waiter = wait_cmd(dir, &id);
        std::thread::sleep(Duration::from_millis(300));
        kill(wrapper, Signal::STOP);
        std::thread::sleep(Duration::from_millis(50));
        let rec = load(dir, &id);
        let expiry = rec.lease.renewed_mono_ms as f64 + rec.lease.ttl_ms as f64;
        let code = waiter.wait().expect("waiter");
        out.push(mono_ms_f64() - expiry);
        assert_eq!(
            code.code(),
            Some(3),
            "a stopped wrapper must be judged lost"
        );
        kill(wrapper, Signal::KILL);
        kill(wrapper, Signal::CONT);
        cleanup_job(dir, &id);
    }
    out
}

/// notify mode: SIGSTOP the beating child; time from the beat deadline (the last beat, as the
/// `lost` record's `progress.at` says, plus the ttl) to the `lost` record, as seen by a `status
/// --wait` waiter woken by the record's change. Wall clock on both sides (one machine; the record
/// keeps milliseconds). Measured from the stop instead, it read up to one beat period (100 ms) too
/// fast, negative even, once the wrapper judged the stall at the deadline itself.
fn stall_detection(dir: &Path, runs: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let (id, wrapper) = detach(
            dir,
            &[
                "--interval",
                "200ms",
                "--ttl",
                "1s",
                "--heartbeat",
                "notify",
                "--grace",
                "200ms",
            ],
            &[
                "sh",
                "-c",
                "while :; do systemd-notify WATCHDOG=1; sleep 0.1; done",
            ],
        );
        let rec = load(dir, &id);
        let child = rec.child.expect("running record names its child").pid;
        let mut waiter = wait_cmd(dir, &id);
        std::thread::sleep(Duration::from_millis(500));
        kill(child, Signal::STOP);
        let code = waiter.wait().expect("waiter");
        let seen = tether::clock::Timestamp::now().ms();
        assert_eq!(code.code(), Some(3), "a stalled job must be recorded lost");
        let last_beat = load(dir, &id)
            .progress
            .at
            .expect("the lost record keeps its last beat");
        out.push((seen - (last_beat.ms() + 1000)) as f64);
        kill(wrapper, Signal::KILL);
        cleanup_job(dir, &id);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The reference approach: the seed report's suggested fix, as a waiter.

/// Polls the record every 2 s; the job is over when the record is terminal or `kill(pid, 0)` says
/// the pid is gone. Exit 3 for dead, 0 for terminal.
pub fn baseline_waiter(dir: &Path, id: &str) -> i32 {
    let path = dir.join("jobs").join(format!("{id}.json"));
    loop {
        if let Ok(bytes) = fs::read(&path) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let status = v["status"].as_str().unwrap_or("");
                if !matches!(status, "starting" | "running") {
                    return 0;
                }
                let pid = v["holder"]["pid"].as_i64().unwrap_or(0) as i32;
                let alive = Pid::from_raw(pid)
                    .map(|p| match rustix::process::test_kill_process(p) {
                        Ok(()) => true,
                        Err(e) => e == rustix::io::Errno::PERM,
                    })
                    .unwrap_or(false);
                if !alive {
                    return 3;
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A spread of kill moments without a random crate: run index and clock nanoseconds, mixed.
fn jitter_ms(i: usize, max: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (n ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % max
}
