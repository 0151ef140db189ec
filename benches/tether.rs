//! The tether benchmark: detection latency, heartbeat cost and scale, side by side with the usual
//! "poll the record every 2 s and check kill(pid, 0)" approach. Prints one table.
//!
//! Run: `cargo bench --bench tether` (about 15 minutes on 2 cores, 7 of them the idle fleets). `-- --quick` runs a few
//! iterations of each figure, for a smoke test. `-- --store` runs only the store's figures (renewal
//! cost, record write, status and listing), to compare a change to the store before and after.
//! `-- --probes` runs only the probe rows, `-- --fleet` only the idle fleets (tether beside pueued).
//! Built with `--features etcd` and with `etcd` on PATH, the full run and `--store` also run the
//! etcd store's rows (`support/etcd.rs`); `-- --etcd` runs those alone.
//!
//! Every figure is measured on real processes: detached `tether run` wrappers, real `status --wait`
//! waiters, SIGKILL and SIGSTOP. Medians with the 10th-90th percentile spread. One file per idea
//! under `benches/support/`.

use std::path::Path;

use rustix::process::Signal;

/// The tests' kit: the binary, `detach`'s output, signalling and killing by identity, the broker.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/detection.rs"]
mod detection;
#[cfg(feature = "etcd")]
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/floor.rs"]
mod floor;
#[path = "support/footprint.rs"]
mod footprint;
#[path = "support/idle.rs"]
mod idle;
#[path = "support/jobs.rs"]
mod jobs;
#[path = "support/probes.rs"]
mod probes;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "support/profile.rs"]
mod profile;
#[path = "support/pueue.rs"]
mod pueue;
#[path = "support/store_cost.rs"]
mod store_cost;
#[path = "support/table.rs"]
mod table;

// The names `support/probes.rs` reaches through `super::`.
use jobs::{cleanup_job, detach, kill, load};
use procfs::{cpu_ns, mono_ms_f64};
use table::{Row, print_table};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-waiter") {
        std::process::exit(detection::baseline_waiter(
            Path::new(&args[i + 1]),
            &args[i + 2],
        ));
    }
    if let Some(i) = args.iter().position(|a| a == "--idle-floor") {
        let ms = args[i + 1]
            .parse()
            .expect("--idle-floor MS FILE aligned|apart");
        floor::serve(
            ms,
            Path::new(&args[i + 2]),
            args.get(i + 3).is_some_and(|a| a == "aligned"),
        );
    }
    let quick = args.iter().any(|a| a == "--quick");
    let tmp = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir()
        .expect("tempdir");
    let mut rows: Vec<Row> = Vec::new();
    let only = |flag: &str| args.iter().any(|a| a == flag);
    if only("--probes") {
        probes::rows(tmp.path(), quick, &mut rows);
        finish(&rows, &[], &args);
        return;
    }
    eprintln!(
        "tether bench: {} mode, state under {}",
        if quick { "quick" } else { "full" },
        tmp.path().display()
    );
    if only("--fleet") {
        let notes = idle::rows(tmp.path(), quick, &mut rows);
        finish(&rows, &notes, &args);
        return;
    }
    if only("--etcd") {
        #[cfg(feature = "etcd")]
        etcd::rows(tmp.path(), quick, &mut rows);
        #[cfg(not(feature = "etcd"))]
        eprintln!("tether bench: --etcd needs a build with `--features etcd`");
        finish(&rows, &[], &args);
        return;
    }
    let store_only = only("--store");
    let idle = (!store_only).then(|| detection::rows(tmp.path(), quick, &mut rows));
    store_cost::rows(tmp.path(), quick, &mut rows);
    #[cfg(feature = "etcd")]
    etcd::rows(tmp.path(), quick, &mut rows);
    let mut notes = Vec::new();
    if !store_only {
        probes::rows(tmp.path(), quick, &mut rows);
    }
    if let Some(idle) = idle {
        footprint::rows(quick, idle, &mut rows);
        notes = idle::rows(tmp.path(), quick, &mut rows);
    }
    finish(&rows, &notes, &args);
}

/// The table, the notes under it, and the command that reproduces it (cargo adds `--bench` to a
/// bench's arguments; it is not ours).
fn finish(rows: &[Row], notes: &[String], args: &[String]) {
    print_table(rows);
    println!();
    for n in notes {
        println!("{n}");
    }
    let ours: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let sep = if ours.is_empty() { "" } else { " -- " };
    println!(
        "reproduce: cargo bench{} --bench tether{sep}{} (machine: {} cores, load average {})",
        if cfg!(feature = "etcd") {
            " --features etcd"
        } else {
            ""
        },
        ours.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
