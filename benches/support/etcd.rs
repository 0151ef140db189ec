//! etcd rows (issue 10 item 7): the same figures on the etcd store, against an etcd the benchmark
//! starts on loopback (free ports, a data directory under the bench's temp dir, stopped by pid at
//! the end). Built only with `--features etcd`; skipped with a notice when `etcd` is not on PATH.
//! `cargo bench --features etcd --bench tether -- --etcd` runs these rows alone.
//!
//! CPU is read from `/proc/PID/task/*/schedstat` (ns, every thread: etcd and the etcd-enabled
//! wrapper are multi-threaded, and `/proc/PID/schedstat` counts the main thread only). Renewals are
//! counted by etcd itself (`etcd_debugging_lease_renewed_total` on its metrics endpoint).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tether::clock::Timestamp;

// Only the table's row type comes from the bench's main module: the rest is here, so this file
// does not depend on how the others are split.
use super::Row;

#[path = "etcd_server.rs"]
mod server;
use server::{Server, on_path};

use crate::common::BIN;
use crate::store_cost::time_runs;

/// Bound on any one waiter or command the rows wait for.
const BOUND: Duration = Duration::from_secs(120);

pub fn rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) {
    let n = |full: usize, q: usize| if quick { q } else { full };
    let Some(bin) = on_path("etcd") else {
        eprintln!(
            "tether bench: etcd rows skipped: no `etcd` on PATH (Debian: apt-get install etcd-server)"
        );
        return;
    };
    let etcd = match Server::start(&bin, &tmp.join("etcd")) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("tether bench: etcd rows skipped: etcd did not start: {why}");
            return;
        }
    };
    let local = tmp.join("etcd-local");
    let (per_renewal, floor, counted) = renewal_cpu(&etcd, &local, n(5, 2), n(4, 2) as u64);
    let ratios: Vec<f64> = per_renewal.iter().zip(&floor).map(|(w, f)| w / f).collect();
    rows.push(Row::new(
        &format!("etcd: wrapper CPU per renewal (200 ms interval, {counted})"),
        "us",
        per_renewal,
        "<= 100 us",
        |s| s.median <= 100.0,
    ));
    if !floor.is_empty() {
        rows.push(Row::new(
            "etcd: the same exchange in C, same windows (scripts/keepalive-floor.c)",
            "us",
            floor,
            "-",
            |_| true,
        ));
        rows.push(Row::new(
            "etcd: wrapper / C, per window",
            "x",
            ratios,
            "-",
            |_| true,
        ));
    }

    let big = n(10_000, 1_000);
    let (status, list) = status_and_listing(&etcd, &local, big, n(30, 5), n(10, 3));
    rows.push(Row::new(
        &format!("etcd: status ID, {big} records"),
        "ms",
        status,
        "<= 5 ms",
        |s| s.median <= 5.0,
    ));
    rows.push(Row::new(
        &format!("etcd: status --json, {big} records"),
        "ms",
        list,
        "<= 400 ms",
        |s| s.median <= 400.0,
    ));

    let other = other_host_available();
    let (here, there) = kill_detection(&etcd, &local, n(10, 3), other);
    let ttl_plus = "median <= ttl + 1 s (3000 ms)";
    rows.push(Row::new(
        "etcd: SIGKILL -> lost, reader on the holder's host (ttl 2 s)",
        "ms",
        here,
        ttl_plus,
        |s| s.median <= 3000.0,
    ));
    if other {
        rows.push(Row::new(
            "etcd: SIGKILL -> lost, reader on another host (UTS ns, ttl 2 s)",
            "ms",
            there,
            ttl_plus,
            |s| s.median <= 3000.0,
        ));
    }
    let (here, there) = clean_end(&etcd, &local, n(10, 3), other);
    rows.push(Row::new(
        "etcd: clean end (finished_at) -> status --wait returns, same host",
        "ms",
        here,
        "median <= 50 ms",
        |s| s.median <= 50.0,
    ));
    if other {
        rows.push(Row::new(
            "etcd: clean end -> status --wait returns, another host (UTS ns)",
            "ms",
            there,
            "median <= 50 ms",
            |s| s.median <= 50.0,
        ));
    }

    let jobs = n(1000, 50);
    let secs = n(60, 10) as u64;
    let (server, wrappers, lost) = many_jobs(&etcd, &local, jobs, secs);
    rows.push(Row::single(
        &format!("etcd: server CPU, {jobs} jobs renewing every 1 s, {secs} s"),
        "% core",
        server,
        "-",
        true,
    ));
    rows.push(Row::single(
        &format!("etcd: {jobs} wrappers' total CPU over the same window"),
        "% core",
        wrappers,
        "-",
        true,
    ));
    rows.push(Row::single(
        &format!("etcd: {jobs} jobs x {secs} s: false deaths"),
        "jobs",
        lost as f64,
        "0",
        lost == 0,
    ));
}

// ---------------------------------------------------------------------------------------------
// Figures

/// One idle job renewing every 200 ms: its wrapper's CPU (every thread) over `windows` windows of
/// `secs` s, each divided by the renewals etcd counted in it. Beside it, in the same windows, the
/// floor of the exchange on this machine: a minimal C client renewing a lease of its own the way
/// the direct keepalive does (`floor_client`). Both tick on the same aligned 200 ms boundaries, so
/// each made half the renewals etcd counted. Returns the per-window figures of both (the floor's
/// empty when it could not run) and how renewals were counted.
fn renewal_cpu(
    etcd: &Server,
    dir: &Path,
    windows: usize,
    secs: u64,
) -> (Vec<f64>, Vec<f64>, &'static str) {
    let url = etcd.url("bench-renew");
    let job = detach(
        &url,
        dir,
        &["--interval", "200ms", "--ttl", "2s"],
        &["sleep", "3600"],
    );
    let mut floor = floor_client(etcd, dir);
    std::thread::sleep(Duration::from_secs(1));
    let (mut out, mut below) = (Vec::new(), Vec::new());
    let mut counted = "renewals counted by etcd";
    let cpu_of = |c: &Option<Child>| c.as_ref().map_or(0, |c| task_cpu_ns(c.id()));
    for _ in 0..windows {
        if floor
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
        {
            eprintln!("tether bench: the C keepalive floor stopped; renewals are not halved");
            floor = None;
        }
        let (c0, f0, r0) = (task_cpu_ns(job.pid), cpu_of(&floor), etcd.renewals());
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, f1, r1) = (task_cpu_ns(job.pid), cpu_of(&floor), etcd.renewals());
        let clients = if floor.is_some() { 2 } else { 1 };
        let renewals = match (r0, r1) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / clients as f64,
            _ => {
                counted = "renewals counted from the interval";
                (t0.elapsed().as_millis() / 200) as f64
            }
        };
        let cpu_us = c1.saturating_sub(c0) as f64 / 1e3;
        let floor_us = f1.saturating_sub(f0) as f64 / 1e3;
        eprintln!(
            "tether bench: etcd renewal window: {cpu_us:.0} us of wrapper CPU, {floor_us:.0} us of the C client's, {renewals} renewals each"
        );
        out.push(cpu_us / renewals);
        if floor.is_some() {
            below.push(floor_us / renewals);
        }
    }
    if let Some(c) = floor.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let st = status_json(&url, dir);
    assert_eq!(st[0]["status"], "running", "the renewing job: {st}");
    cleanup(&url, dir, &[job]);
    (out, below, counted)
}

/// scripts/keepalive-floor.c, built with `cc` and renewing a lease of its own every 200 ms (mode
/// 2: one read and one write per aligned tick, as the wrapper's direct keepalive). None, with a
/// notice, when it cannot be built or started.
fn floor_client(etcd: &Server, dir: &Path) -> Option<Child> {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/keepalive-floor.c");
    let exe = dir.join("keepalive-floor");
    let _ = std::fs::create_dir_all(dir);
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .is_ok_and(|s| s.success());
    let lease = built.then(|| etcd.grant(600)).flatten();
    let child = lease.and_then(|l| {
        Command::new(&exe)
            .args([
                etcd.port().to_string(),
                format!("{l:x}"),
                "2".into(),
                "200".into(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    });
    if child.is_none() {
        eprintln!("tether bench: the C keepalive floor did not run (no `cc`, or no lease)");
    }
    child
}

/// `status ID` and `status --json` over `big` finished records, written straight into etcd as
/// copies of a real one (the figure is reading, not creating).
fn status_and_listing(
    etcd: &Server,
    dir: &Path,
    big: usize,
    runs: usize,
    list_runs: usize,
) -> (Vec<f64>, Vec<f64>) {
    let prefix = "bench-list";
    let url = etcd.url(prefix);
    let o = tether(&url, dir)
        .args(["run", "--id", "seed", "--", "true"])
        .output()
        .expect("tether run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    etcd.copy_record(prefix, "seed", big);
    let one = time_runs(runs, || {
        tether(&url, dir)
            .args(["status", "job-00000005"])
            .stdout(Stdio::null())
            .status()
    });
    let all = time_runs(list_runs, || {
        tether(&url, dir)
            .args(["status", "--json"])
            .stdout(Stdio::null())
            .status()
    });
    (one, all)
}

/// SIGKILL a wrapper (ttl 2 s, interval 500 ms) while one `status --wait` waits on it: on the
/// holder's host, or (with `other`, in alternate runs) from another host, a UTS namespace with its
/// own host name, where the reader cannot probe the pid and the cluster's expiry decides. One
/// waiter per kill: a reader on the holder's host records `lost` at once, which would wake the
/// other. Kill -> waiter exit, in ms.
fn kill_detection(etcd: &Server, dir: &Path, runs: usize, other: bool) -> (Vec<f64>, Vec<f64>) {
    let url = etcd.url("bench-kill");
    let (mut here, mut there) = (Vec::new(), Vec::new());
    let mut jobs = Vec::new();
    for i in 0..runs {
        for far in [false, true] {
            if far && !other {
                continue;
            }
            let job = detach(
                &url,
                dir,
                &["--ttl", "2s", "--interval", "500ms"],
                &["sleep", "300"],
            );
            let w = waiters(&url, dir, &job.id, !far, far);
            // After the waiter has opened its watch, at a random point of a renewal interval.
            std::thread::sleep(Duration::from_millis(700 + jitter_ms(i, 500)));
            let t0 = Instant::now();
            kill(job.pid, Signal::KILL);
            let (st, at, _) = wait_all(w)[0];
            assert_eq!(st.code(), Some(3), "status --wait after a SIGKILL: {st}");
            let ms = at.duration_since(t0).as_secs_f64() * 1e3;
            if far { &mut there } else { &mut here }.push(ms);
            jobs.push(job);
        }
    }
    cleanup(&url, dir, &jobs);
    (here, there)
}

/// A job that ends by itself after 1 s; from its record's `finished_at` to each waiter's return,
/// on this machine's one wall clock, in ms.
fn clean_end(etcd: &Server, dir: &Path, runs: usize, other: bool) -> (Vec<f64>, Vec<f64>) {
    let url = etcd.url("bench-end");
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let job = detach(&url, dir, &["--ttl", "10s"], &["sleep", "1"]);
        let ended = wait_all(waiters(&url, dir, &job.id, true, other));
        let st = status_json(&url, dir);
        let rec = st
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == job.id.as_str()))
            .expect("the job's record");
        assert_eq!(rec["status"], "succeeded", "{rec}");
        let fin = Timestamp::parse(rec["finished_at"].as_str().unwrap()).unwrap();
        for (k, (code, _, wall)) in ended.iter().enumerate() {
            assert_eq!(code.code(), Some(0), "status --wait after a clean end");
            let ms = (wall.ms() - fin.ms()) as f64;
            if k == 0 { &mut here } else { &mut there }.push(ms);
        }
    }
    (here, there)
}

/// `jobs` wrappers renewing every second: etcd's CPU and the wrappers' over `secs`, as % of a
/// core, and how many jobs were judged lost at the end.
fn many_jobs(etcd: &Server, dir: &Path, jobs: usize, secs: u64) -> (f64, f64, usize) {
    let url = etcd.url("bench-many");
    let sleep = (secs + 600).to_string();
    let started: Vec<Job> = (0..jobs)
        .map(|_| {
            detach(
                &url,
                dir,
                &["--interval", "1s", "--ttl", "5s"],
                &["sleep", &sleep],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let wrappers = |v: &[Job]| v.iter().map(|j| task_cpu_ns(j.pid)).sum::<u64>();
    let (e0, w0) = (task_cpu_ns(etcd.pid()), wrappers(&started));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (e1, w1) = (task_cpu_ns(etcd.pid()), wrappers(&started));
    let wall = t0.elapsed().as_nanos() as f64;
    let st = status_json(&url, dir);
    // A job missing from the listing counts as a death too.
    let running = st
        .as_array()
        .map(|a| a.iter().filter(|j| j["status"] == "running").count())
        .unwrap_or(0);
    let lost = jobs - running.min(jobs);
    cleanup(&url, dir, &started);
    (
        100.0 * e1.saturating_sub(e0) as f64 / wall,
        100.0 * w1.saturating_sub(w0) as f64 / wall,
        lost,
    )
}

// ---------------------------------------------------------------------------------------------
// etcd, jobs and waiters

/// A detached job: its id, and its wrapper's pid with the start time that proves it ours.
struct Job {
    id: String,
    pid: u32,
    start: Option<String>,
}

/// `tether --dir DIR --store URL`, without the job variables (the tests' kit's command) and
/// without `TETHER_STORE`.
fn tether(url: &str, dir: &Path) -> Command {
    let mut c = crate::common::env::tether(dir);
    c.arg("--store")
        .arg(url)
        .env_remove("TETHER_STORE")
        .stdin(Stdio::null());
    c
}

fn detach(url: &str, dir: &Path, opts: &[&str], cmd: &[&str]) -> Job {
    let o = tether(url, dir)
        .args(["run", "--detach", "--json"])
        .args(opts)
        .arg("--")
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .expect("tether run --detach");
    assert!(o.status.success(), "tether run --detach on etcd failed");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json output");
    let pid = v["pid"].as_u64().expect("pid") as u32;
    Job {
        id: v["id"].as_str().expect("id").to_owned(),
        pid,
        start: tether::process::start_token(pid),
    }
}

fn status_json(url: &str, dir: &Path) -> serde_json::Value {
    let o = tether(url, dir)
        .args(["status", "--json"])
        .output()
        .expect("status");
    serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
}

/// Stops what the jobs left: each child's group and each wrapper, only while the pid still has
/// the start time the record (or `detach`) saw.
fn cleanup(url: &str, dir: &Path, jobs: &[Job]) {
    let proven = |pid: u64, start: &serde_json::Value| {
        tether::process::start_token(pid as u32).as_deref() == start.as_str()
    };
    for rec in status_json(url, dir).as_array().into_iter().flatten() {
        let c = &rec["child"];
        if let (Some(pid), Some(pgid)) = (c["pid"].as_u64(), c["pgid"].as_u64()) {
            if proven(pid, &c["start"]) {
                if let Some(g) = Pid::from_raw(pgid as i32) {
                    let _ = rustix::process::kill_process_group(g, Signal::KILL);
                }
            }
        }
    }
    for j in jobs {
        if j.start.is_some() && tether::process::start_token(j.pid) == j.start {
            kill(j.pid, Signal::KILL);
        }
    }
}

/// Whether a reader can be put on "another host": root and `unshare` (a UTS namespace with its
/// own host name; the machine and its clock stay the same).
fn other_host_available() -> bool {
    let ok = rustix::process::geteuid().is_root()
        && Command::new("unshare")
            .args(["--uts", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("tether bench: no root or unshare: etcd's other-host rows are left out");
    }
    ok
}

/// `status --wait ID` on this host (with `here`) and under another host name (with `other`), in
/// that order; returns once they have had time to open their watches.
fn waiters(url: &str, dir: &Path, id: &str, here: bool, other: bool) -> Vec<Child> {
    let args = ["status", "--wait", "--timeout", "120s", id];
    let mut v = Vec::new();
    if here {
        let c = tether(url, dir).args(args).stdout(Stdio::null()).spawn();
        v.push(c.expect("waiter"));
    }
    if other {
        let c = Command::new("unshare")
            .args([
                "--uts",
                "sh",
                "-c",
                "hostname bench-reader && exec \"$0\" \"$@\"",
                BIN,
            ])
            .args(["--store", url, "--dir"])
            .arg(dir.with_extension("other"))
            .args(args)
            .env_remove("TETHER_STORE")
            .env_remove("TETHER_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("waiter on another host");
        v.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    v
}

/// Waits for every child (polling every 1 ms, bounded); each one's exit status, the moment it was
/// seen, and the wall clock then.
fn wait_all(mut children: Vec<Child>) -> Vec<(ExitStatus, Instant, Timestamp)> {
    let start = Instant::now();
    let mut done: Vec<Option<(ExitStatus, Instant, Timestamp)>> = vec![None; children.len()];
    while done.iter().any(Option::is_none) {
        for (c, d) in children.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                if let Ok(Some(st)) = c.try_wait() {
                    *d = Some((st, Instant::now(), Timestamp::now()));
                }
            }
        }
        if start.elapsed() > BOUND {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            panic!("a status --wait did not return within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    done.into_iter().map(Option::unwrap).collect()
}

/// CPU ns of every thread of `pid` (`/proc/PID/task/*/schedstat`, first field).
fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn kill(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
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
