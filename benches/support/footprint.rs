//! One idle wrapper's footprint (peak RSS, CPU) and many wrappers at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::jobs::{BIN, detach, kill};
use crate::procfs::{cpu_ns, peak_rss_kib};
use crate::table::Row;

pub fn rows(tmp: &Path, quick: bool, idle: (u32, u64, Instant), rows: &mut Vec<Row>) {
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
