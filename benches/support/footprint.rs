//! One idle wrapper's footprint: peak RSS and CPU. Many idle wrappers at once: `idle.rs`.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::jobs::kill;
use crate::procfs::{cpu_ns, peak_rss_kib};
use crate::table::Row;

pub fn rows(quick: bool, idle: (u32, u64, Instant), rows: &mut Vec<Row>) {
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
}
