//! The tether benchmark: detection latency, heartbeat cost and scale, side by side with the usual
//! "poll the record every 2 s and check kill(pid, 0)" approach. Prints one table.
//!
//! Run: `cargo bench --bench tether` (about 8 minutes on 2 cores). `-- --quick` runs a few
//! iterations of each figure, for a smoke test. `-- --store` runs only the store's figures (renewal
//! cost, record write, status and listing), to compare a change to the store before and after.
//!
//! Every figure is measured on real processes: detached `tether run` wrappers, real `status --wait`
//! waiters, SIGKILL and SIGSTOP. Medians with the 10th-90th percentile spread.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tether::clock::{Timestamp, mono_ms};
use tether::id::JobId;
use tether::record::{Progress, Record, Status};
use tether::store::{FileStore, Renew, StateDir, Store};
use tether::transition::Write;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

#[path = "support/probes.rs"]
mod probes;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-waiter") {
        std::process::exit(baseline_waiter(Path::new(&args[i + 1]), &args[i + 2]));
    }
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--probes") {
        let tmp = tempfile::Builder::new()
            .prefix("tether-bench-")
            .tempdir()
            .expect("tempdir");
        let mut rows = Vec::new();
        probes::rows(tmp.path(), quick, &mut rows);
        print_table(&rows);
        return;
    }
    let store_only = args.iter().any(|a| a == "--store");
    let n = |full: usize, q: usize| if quick { q } else { full };
    let tmp = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir()
        .expect("tempdir");
    let mut rows: Vec<Row> = Vec::new();
    eprintln!(
        "tether bench: {} mode, state under {}",
        if quick { "quick" } else { "full" },
        tmp.path().display()
    );

    let idle = (!store_only).then(|| detection_rows(tmp.path(), quick, &mut rows));
    let renew = renewal_cost(&tmp.path().join("renew"), n(10_000, 1_000));
    rows.push(Row::new(
        "renewal cost (CPU per renewal)",
        "us",
        renew,
        "<= 50 us",
        |s| s.median <= 50.0,
    ));
    let full = record_write_cost(&tmp.path().join("record-write"), n(5_000, 1_000));
    rows.push(Row::new(
        "for contrast: whole-record write (rename)",
        "us",
        full,
        "-",
        |_| true,
    ));

    let (st10, st10k, list10k) = status_latency(
        &tmp.path().join("status"),
        n(30, 5),
        n(10, 3),
        n(10_000, 1_000),
    );
    rows.push(Row::new(
        "status ID, 10 records",
        "ms",
        st10,
        "<= 3 ms",
        |s| s.median <= 3.0,
    ));
    rows.push(Row::new(
        &format!("status ID, {} records", n(10_000, 1_000)),
        "ms",
        st10k,
        "<= 3 ms",
        |s| s.median <= 3.0,
    ));
    rows.push(Row::new(
        &format!("status --json, {} records", n(10_000, 1_000)),
        "ms",
        list10k,
        "<= 150 ms",
        |s| s.median <= 150.0,
    ));

    if !store_only {
        probes::rows(tmp.path(), quick, &mut rows);
    }
    if let Some((idle_pid, idle_cpu0, idle_t0)) = idle {
        idle_and_scale_rows(tmp.path(), quick, (idle_pid, idle_cpu0, idle_t0), &mut rows);
    }
    print_table(&rows);
}

/// Starts the idle wrapper (measured in the background until `idle_and_scale_rows`), then measures
/// detection against the baseline poller.
fn detection_rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) -> (u32, u64, Instant) {
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
        "stall detection (ttl end -> lost record)",
        "ms",
        stall,
        "median <= 200 ms (1 interval)",
        |s| s.median <= 200.0,
    ));

    (idle_pid, idle_cpu0, idle_t0)
}

fn idle_and_scale_rows(tmp: &Path, quick: bool, idle: (u32, u64, Instant), rows: &mut Vec<Row>) {
    let (idle_pid, idle_cpu0, idle_t0) = idle;
    let idle_secs = if quick { 5 } else { 60 };
    // Back to the idle wrapper.
    let left = Duration::from_secs(idle_secs).saturating_sub(idle_t0.elapsed());
    std::thread::sleep(left);
    let idle_cpu = cpu_ns(idle_pid).saturating_sub(idle_cpu0) as f64;
    let idle_wall = idle_t0.elapsed().as_nanos() as f64;
    let rss = peak_rss_kib(idle_pid) as f64 / 1024.0;
    kill(idle_pid, Signal::KILL);
    rows.push(Row::single(
        "wrapper peak RSS (tether run -- sleep)",
        "MiB",
        rss,
        "<= 4 MiB",
        rss <= 4.0,
    ));
    let pct = 100.0 * idle_cpu / idle_wall;
    rows.push(Row::single(
        &format!("wrapper idle CPU over {idle_secs} s, 1 s interval"),
        "% core",
        pct,
        "<= 0.1 %",
        pct <= 0.1,
    ));

    let (jobs, secs) = if quick { (50, 10) } else { (1000, 60) };
    let (many_pct, false_deaths) = many_jobs(&tmp.join("many"), jobs, secs);
    rows.push(Row::single(
        &format!("{jobs} wrappers x {secs} s, 1 s interval: total CPU"),
        "% core",
        many_pct,
        "<= 5 %",
        many_pct <= 5.0,
    ));
    rows.push(Row::single(
        &format!("{jobs} wrappers x {secs} s: false deaths"),
        "jobs",
        false_deaths as f64,
        "0",
        false_deaths == 0,
    ));
}

// ---------------------------------------------------------------------------------------------
// Figures

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

/// notify mode: SIGSTOP the beating child; time from (stop + ttl) to the `lost` record, as seen by a
/// `status --wait` waiter woken by the record's change. The last beat is at or before the stop, so
/// this errs on the slow side by at most one beat period (100 ms).
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
        let stopped = mono_ms_f64();
        let code = waiter.wait().expect("waiter");
        out.push(mono_ms_f64() - (stopped + 1000.0));
        assert_eq!(code.code(), Some(3), "a stalled job must be recorded lost");
        kill(wrapper, Signal::KILL);
        cleanup_job(dir, &id);
    }
    out
}

/// CPU time (user + system, this process) per lease renewal through the file store, in µs, in
/// batches of 1,000 so the spread means something.
fn renewal_cost(dir: &Path, total: usize) -> Vec<f64> {
    let store = FileStore::open(
        StateDir {
            root: dir.to_path_buf(),
        },
        true,
    )
    .expect("store");
    let id = JobId::parse("renew-bench").unwrap();
    store
        .create(&fake_record(&id, Status::Running))
        .expect("create");
    let mut per = Vec::new();
    let batch = 1000;
    // The path the wrapper takes on every tick: the in-place lease file (protocol.md 6.5).
    let mut renewer = store.renewer(&id).expect("renewer");
    let progress = Progress::default();
    for _ in 0..total / batch {
        let c0 = self_cpu_ns();
        for _ in 0..batch {
            renewer
                .renew(1, Timestamp::now(), mono_ms(), &progress)
                .expect("renew")
                .expect("not refused");
        }
        per.push((self_cpu_ns() - c0) as f64 / batch as f64 / 1e3);
    }
    per
}

/// The same renewal written as a whole record (temp file, rename): the write a status change
/// takes, and what every renewal cost before the lease file.
fn record_write_cost(dir: &Path, total: usize) -> Vec<f64> {
    let store = FileStore::open(
        StateDir {
            root: dir.to_path_buf(),
        },
        true,
    )
    .expect("store");
    let id = JobId::parse("record-bench").unwrap();
    store
        .create(&fake_record(&id, Status::Running))
        .expect("create");
    let mut per = Vec::new();
    let batch = 500;
    for _ in 0..total / batch {
        let c0 = self_cpu_ns();
        for _ in 0..batch {
            let w = Write::Renew {
                epoch: 1,
                at: Timestamp::now(),
                mono_ms: mono_ms(),
                running: false,
                child: None,
                progress: None,
            };
            tether::store::commit(&store, &id, &w, w.durable())
                .expect("renew")
                .expect("not refused");
        }
        per.push((self_cpu_ns() - c0) as f64 / batch as f64 / 1e3);
    }
    per
}

/// `tether status ID` as a whole process with 10 and with `big` records present, and
/// `tether status --json` over `big` records.
fn status_latency(
    dir: &Path,
    runs: usize,
    list_runs: usize,
    big: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let small = dir.join("small");
    let large = dir.join("large");
    fabricate(&small, 10);
    fabricate(&large, big);
    let one = |d: &Path| {
        time_runs(runs, || {
            Command::new(BIN)
                .args(["--dir", d.to_str().unwrap(), "status", "job-00000005"])
                .stdout(Stdio::null())
                .status()
        })
    };
    let s10 = one(&small);
    let s_big = one(&large);
    let list = time_runs(list_runs, || {
        Command::new(BIN)
            .args(["--dir", large.to_str().unwrap(), "status", "--json"])
            .stdout(Stdio::null())
            .status()
    });
    (s10, s_big, list)
}

/// `jobs` detached wrappers for `secs`: total CPU of all wrappers, and how many were judged lost.
fn many_jobs(dir: &Path, jobs: usize, secs: u64) -> (f64, usize) {
    let mut wrappers = Vec::new();
    for _ in 0..jobs {
        wrappers.push(detach(
            dir,
            &["--interval", "1s"],
            &["sleep", &(secs + 120).to_string()],
        ));
    }
    let c0: u64 = wrappers.iter().map(|(_, p)| cpu_ns(*p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let c1: u64 = wrappers.iter().map(|(_, p)| cpu_ns(*p)).sum();
    let wall = t0.elapsed().as_nanos() as f64;
    let out = Command::new(BIN)
        .args(["--dir", dir.to_str().unwrap(), "status", "--json"])
        .output()
        .expect("status");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let lost = v
        .as_array()
        .map(|a| a.iter().filter(|j| j["status"] == "lost").count())
        .unwrap_or(usize::MAX);
    for (_, p) in &wrappers {
        kill(*p, Signal::KILL);
    }
    (100.0 * c1.saturating_sub(c0) as f64 / wall, lost)
}

// ---------------------------------------------------------------------------------------------
// The reference approach: the seed report's suggested fix, as a waiter.

/// Polls the record every 2 s; the job is over when the record is terminal or `kill(pid, 0)` says
/// the pid is gone. Exit 3 for dead, 0 for terminal.
fn baseline_waiter(dir: &Path, id: &str) -> i32 {
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

// ---------------------------------------------------------------------------------------------
// Helpers

/// Starts `tether run --detach --json`; returns (id, wrapper pid) once the record says running.
fn detach(dir: &Path, opts: &[&str], cmd: &[&str]) -> (String, u32) {
    let mut args = vec!["--dir", dir.to_str().unwrap(), "run", "--detach", "--json"];
    args.extend_from_slice(opts);
    args.push("--");
    args.extend_from_slice(cmd);
    let out = Command::new(BIN)
        .args(&args)
        .stderr(Stdio::inherit())
        .output()
        .expect("tether run --detach");
    assert!(
        out.status.success(),
        "tether run --detach failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["pid"].as_u64().expect("pid") as u32,
    )
}

fn wait_cmd(dir: &Path, id: &str) -> Child {
    Command::new(BIN)
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "status",
            "--wait",
            "--timeout",
            "120s",
            id,
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("status --wait")
}

/// The record as readers see it: with the lease file folded in (protocol.md 6.5).
fn load(dir: &Path, id: &str) -> Record {
    let store = FileStore::open(
        StateDir {
            root: dir.to_path_buf(),
        },
        false,
    )
    .expect("store");
    store
        .load(&JobId::parse(id).unwrap())
        .expect("record parses")
}

/// Kills what a finished measurement left: the child's group, if the record names one.
fn cleanup_job(dir: &Path, id: &str) {
    if let Ok(bytes) = fs::read(dir.join("jobs").join(format!("{id}.json"))) {
        if let Ok(rec) = Record::parse(&bytes, Some(id)) {
            if let Some(c) = rec.child {
                if tether::process::start_token(c.pid).as_deref() == Some(c.start.as_str()) {
                    if let Some(p) = Pid::from_raw(c.pgid as i32) {
                        let _ = rustix::process::kill_process_group(p, Signal::KILL);
                    }
                }
            }
        }
    }
}

fn fake_record(id: &JobId, status: Status) -> Record {
    let me = tether::process::current().expect("identity");
    let mut r = Record::begin(id.as_str(), vec!["true".into()], me.holder(), 1000, 10_000);
    r.status = status;
    if status.is_terminal() {
        r.reason = Some(tether::record::Reason::Exited);
        r.exit = Some(tether::record::Exit::Code(0));
        r.finished_at = Some(r.created_at);
    }
    r
}

/// Writes `n` finished records directly (the benchmark measures reading, not creating).
fn fabricate(dir: &Path, n: usize) {
    let store = FileStore::open(
        StateDir {
            root: dir.to_path_buf(),
        },
        true,
    )
    .expect("store");
    drop(store);
    for i in 0..n {
        let id = JobId::parse(&format!("job-{i:08}")).unwrap();
        fs::write(
            dir.join("jobs").join(format!("{id}.json")),
            fake_record(&id, Status::Succeeded).to_json(),
        )
        .expect("write");
    }
}

fn time_runs(
    runs: usize,
    mut f: impl FnMut() -> std::io::Result<std::process::ExitStatus>,
) -> Vec<f64> {
    let _ = f(); // warm the page cache
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let st = f().expect("run");
            assert!(st.success(), "command failed: {st}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn kill(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = kill_process(p, sig);
    }
}

/// Nanoseconds a process has run on a CPU (`/proc/PID/schedstat`, first field).
fn cpu_ns(pid: u32) -> u64 {
    let mut s = String::new();
    if fs::File::open(format!("/proc/{pid}/schedstat"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .is_err()
    {
        return 0;
    }
    s.split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

fn self_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn peak_rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

fn mono_ms_f64() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// A spread of kill moments without a random crate: run index and clock nanoseconds, mixed.
fn jitter_ms(i: usize, max: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (n ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % max
}

// ---------------------------------------------------------------------------------------------
// The table

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((s.len() - 1) as f64 * p).round() as usize;
    s[idx]
}

struct Summary {
    median: f64,
}

struct Row {
    name: String,
    unit: String,
    median: f64,
    spread: String,
    n: usize,
    target: String,
    met: bool,
}

impl Row {
    fn new(
        name: &str,
        unit: &str,
        v: Vec<f64>,
        target: &str,
        ok: impl Fn(&Summary) -> bool,
    ) -> Row {
        let m = median(&v);
        Row {
            name: name.into(),
            unit: unit.into(),
            median: m,
            spread: format!("{:.2}-{:.2}", percentile(&v, 0.1), percentile(&v, 0.9)),
            n: v.len(),
            target: target.into(),
            met: ok(&Summary { median: m }),
        }
    }
    fn single(name: &str, unit: &str, value: f64, target: &str, met: bool) -> Row {
        Row {
            name: name.into(),
            unit: unit.into(),
            median: value,
            spread: "-".into(),
            n: 1,
            target: target.into(),
            met,
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| figure | median | p10-p90 | unit | n | target | met |");
    println!("| --- | ---: | ---: | --- | ---: | --- | --- |");
    for r in rows {
        println!(
            "| {} | {:.2} | {} | {} | {} | {} | {} |",
            r.name,
            r.median,
            r.spread,
            r.unit,
            r.n,
            r.target,
            if r.met { "yes" } else { "NO" }
        );
    }
}
