//! The idle-fleet section (issue 13 item 5): N idle jobs under tether (at the defaults and at
//! `--interval 1s`) and N idle tasks under pueue's daemon, one after the other in the same run;
//! then where one idle wrapper's renewal goes. `cargo bench --bench tether -- --fleet` runs only
//! this section.
//!
//! Each tether job's figure is its wrapper alone: the job's own process (`sleep`) is not counted,
//! and neither are pueued's task processes on its side.

use std::path::Path;
use std::time::Duration;

use crate::fleet::{Cost, Fleet, measure};
use crate::floor::Floor;
use crate::profile;
use crate::pueue::{Daemon, on_path};
use crate::table::{Row, median};

/// How a fleet's wrappers run, and the CPU target per idle job for it (issue 13, Targets).
struct Config {
    label: &'static str,
    opts: &'static [&'static str],
    target_us: f64,
}

const CONFIGS: [Config; 2] = [
    Config {
        label: "defaults",
        opts: &[],
        target_us: 10.0,
    },
    Config {
        label: "--interval 1s",
        opts: &["--interval", "1s"],
        target_us: 30.0,
    },
];

const PSS_TARGET_KB: f64 = 400.0;

struct Timing {
    warmup: Duration,
    window: Duration,
    profile: Duration,
}

/// Runs the section; returns the lines to print under the table (the profile, what was missing).
pub fn rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) -> Vec<String> {
    let sizes: [usize; 2] = if quick { [10, 50] } else { [100, 1000] };
    let t = if quick {
        Timing {
            warmup: Duration::from_secs(2),
            window: Duration::from_secs(5),
            profile: Duration::from_secs(3),
        }
    } else {
        Timing {
            warmup: Duration::from_secs(10),
            window: Duration::from_secs(30),
            profile: Duration::from_secs(10),
        }
    };
    let mut notes = vec![format!(
        "idle fleets: {} s warm-up, then a {} s window; CPU from each process's CPU-time clock \
         (all threads), wake-ups = voluntary context switches of all threads, PSS from \
         /proc/PID/smaps_rollup (shared pages split among their users, so PSS per wrapper falls \
         as N grows; private dirty does not); jobs' own processes not counted",
        t.warmup.as_secs(),
        t.window.as_secs()
    )];
    if on_path("pueued").is_none() {
        notes.push("pueued not on PATH: no pueue rows (cargo install pueue --locked)".into());
    }
    for n in sizes {
        let mut tether_total = Vec::new();
        for c in &CONFIGS {
            let dir = tmp.join(format!("fleet-{n}-{}", tether_total.len()));
            let fleet = Fleet::start(&dir, n, c.opts);
            std::thread::sleep(t.warmup);
            let cost = measure(&fleet.pids(), t.window);
            let deaths = fleet.false_deaths();
            tether_rows(
                &format!("idle fleet, {n} jobs, {}", c.label),
                n,
                c,
                &cost,
                deaths,
                rows,
            );
            if n == sizes[0] {
                notes.extend(profile_lines(&fleet, c, &cost, &dir, t.profile));
            }
            tether_total.push((cost.total_pct, cost.pss_kb.iter().sum::<f64>()));
            let interval_ms = fleet.interval_ms;
            drop(fleet);
            floor_row(
                &tmp.join(format!("floor-{n}-{interval_ms}")),
                n,
                interval_ms,
                &t,
                rows,
            );
        }
        if let Some(d) = Daemon::start(&tmp.join(format!("pueue-{n}")), n) {
            std::thread::sleep(t.warmup);
            let cost = measure(&[d.pid()], t.window);
            let not_running = n.saturating_sub(d.running());
            pueue_rows(n, &cost, not_running, rows);
            drop(d);
            for (c, (cpu, pss)) in CONFIGS.iter().zip(&tether_total) {
                compare_rows(n, c.label, (*cpu, *pss), &cost, rows);
            }
        }
    }
    notes
}

fn tether_rows(label: &str, n: usize, c: &Config, cost: &Cost, deaths: usize, rows: &mut Vec<Row>) {
    let t = c.target_us;
    rows.push(Row::new(
        &format!("{label}: CPU per job per second"),
        "us",
        cost.cpu_us_per_s.clone(),
        &format!("median <= {t} us"),
        |s| s.median <= t,
    ));
    let total_target = n as f64 * t / 1e4;
    rows.push(Row::single(
        &format!("{label}: all {n} wrappers' CPU"),
        "% core",
        cost.total_pct,
        &format!("<= {total_target} % ({n} x {t} us/s)"),
        cost.total_pct <= total_target,
    ));
    rows.push(Row::new(
        &format!("{label}: wake-ups per job per second"),
        "/s",
        cost.wakeups_per_s.clone(),
        "-",
        |_| true,
    ));
    rows.push(Row::new(
        &format!("{label}: PSS per wrapper"),
        "kB",
        cost.pss_kb.clone(),
        &format!("median <= {PSS_TARGET_KB} kB"),
        |s| s.median <= PSS_TARGET_KB,
    ));
    rows.push(Row::new(
        &format!("{label}: private dirty memory per wrapper"),
        "kB",
        cost.private_kb.clone(),
        "-",
        |_| true,
    ));
    rows.push(Row::new(
        &format!("{label}: threads per wrapper"),
        "threads",
        cost.threads.clone(),
        "1 when idle (issue 13 item 2)",
        |s| s.median <= 1.0,
    ));
    rows.push(Row::single(
        &format!("{label}: false deaths (not running after the window)"),
        "jobs",
        deaths as f64,
        "0",
        deaths == 0,
    ));
}

/// The same number of processes that only wake at the same interval (floor.rs), aligned as the
/// wrappers are and then apart, right after the fleet, so the rows are side by side in one run.
fn floor_row(dir: &Path, n: usize, interval_ms: u64, t: &Timing, rows: &mut Vec<Row>) {
    for aligned in [true, false] {
        let kind = if aligned { "aligned" } else { "apart" };
        let floor = Floor::start(&dir.join(kind), n, interval_ms, aligned);
        std::thread::sleep(t.warmup);
        let cost = measure(&floor.pids(), t.window);
        drop(floor);
        rows.push(Row::new(
            &format!(
                "floor, {n} processes that only wake every {} s ({kind}) and pwrite 256 B: CPU per process per second",
                interval_ms as f64 / 1e3
            ),
            "us",
            cost.cpu_us_per_s,
            "- (for scale)",
            |_| true,
        ));
    }
}

fn pueue_rows(n: usize, cost: &Cost, not_running: usize, rows: &mut Vec<Row>) {
    let label = format!("pueued, {n} idle tasks");
    let per_task = cost.cpu_us_per_s.first().copied().unwrap_or(f64::NAN) / n as f64;
    let one = |v: &[f64]| v.first().copied().unwrap_or(f64::NAN);
    let pss = one(&cost.pss_kb);
    let list = [
        ("daemon CPU per task per second", "us", per_task),
        ("daemon CPU", "% core", cost.total_pct),
        ("daemon wake-ups per second", "/s", one(&cost.wakeups_per_s)),
        ("daemon PSS (task processes not counted)", "kB", pss),
        ("daemon PSS per task", "kB", pss / n as f64),
        ("daemon private dirty memory", "kB", one(&cost.private_kb)),
        ("daemon threads", "threads", one(&cost.threads)),
    ];
    for (what, unit, v) in list {
        rows.push(Row::single(&format!("{label}: {what}"), unit, v, "-", true));
    }
    rows.push(Row::single(
        &format!("{label}: tasks not Running after the window"),
        "tasks",
        not_running as f64,
        "0",
        not_running == 0,
    ));
}

/// tether's wrappers against pueued's daemon for the same number of idle jobs, in the same run.
fn compare_rows(n: usize, label: &str, tether: (f64, f64), pueue: &Cost, rows: &mut Vec<Row>) {
    let cpu = tether.0 / pueue.total_pct;
    rows.push(Row::single(
        &format!("{n} idle jobs, {label}: tether's CPU / pueued's"),
        "x",
        cpu,
        "< 1 (tether cheaper)",
        cpu < 1.0,
    ));
    let pss = tether.1 / pueue.pss_kb.first().copied().unwrap_or(f64::NAN);
    rows.push(Row::single(
        &format!("{n} idle jobs, {label}: tether's PSS (all wrappers) / pueued's"),
        "x",
        pss,
        "-",
        true,
    ));
}

/// Where one wrapper of the fleet spends an idle renewal: threads, system calls, CPU.
fn profile_lines(fleet: &Fleet, c: &Config, cost: &Cost, dir: &Path, win: Duration) -> Vec<String> {
    let pid = fleet.pids()[0];
    let interval_s = fleet.interval_ms as f64 / 1e3;
    let cpu = median(&cost.cpu_us_per_s) * interval_s;
    let wake = median(&cost.wakeups_per_s) * interval_s;
    let mut v = vec![format!(
        "profile, one idle wrapper at {} (interval {interval_s} s): {cpu:.1} us CPU and {wake:.1} \
         wake-ups per renewal (fleet medians); per thread: {}",
        c.label,
        profile::threads(pid, win)
    )];
    match profile::strace(pid, win, &dir.join("strace.txt")) {
        Some(s) => {
            let renewals = s.secs / interval_s;
            v.push(format!(
                "profile, {} under `strace -c -f -p PID`: {}",
                c.label,
                profile::per_renewal(&s, renewals)
            ));
        }
        None => v.push(format!(
            "profile, {}: no syscall counts (strace missing or failed)",
            c.label
        )),
    }
    v
}
