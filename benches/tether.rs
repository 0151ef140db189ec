//! The tether benchmark: detection latency, heartbeat cost and scale, side by side with the usual
//! "poll the record every 2 s and check kill(pid, 0)" approach. Prints one table.
//!
//! Run: `cargo bench --bench tether` (about 8 minutes on 2 cores). `-- --quick` runs a few
//! iterations of each figure, for a smoke test. `-- --store` runs only the store's figures (renewal
//! cost, record write, status and listing), to compare a change to the store before and after.
//!
//! Every figure is measured on real processes: detached `tether run` wrappers, real `status --wait`
//! waiters, SIGKILL and SIGSTOP. Medians with the 10th-90th percentile spread. One file per idea
//! under `benches/support/`.

use std::path::Path;

use rustix::process::Signal;

#[path = "support/detection.rs"]
mod detection;
#[path = "support/footprint.rs"]
mod footprint;
#[path = "support/jobs.rs"]
mod jobs;
#[path = "support/probes.rs"]
mod probes;
#[path = "support/procfs.rs"]
mod procfs;
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
    let quick = args.iter().any(|a| a == "--quick");
    let tmp = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir()
        .expect("tempdir");
    let mut rows: Vec<Row> = Vec::new();
    if args.iter().any(|a| a == "--probes") {
        probes::rows(tmp.path(), quick, &mut rows);
        print_table(&rows);
        return;
    }
    let store_only = args.iter().any(|a| a == "--store");
    eprintln!(
        "tether bench: {} mode, state under {}",
        if quick { "quick" } else { "full" },
        tmp.path().display()
    );

    let idle = (!store_only).then(|| detection::rows(tmp.path(), quick, &mut rows));
    store_cost::rows(tmp.path(), quick, &mut rows);
    if !store_only {
        probes::rows(tmp.path(), quick, &mut rows);
    }
    if let Some(idle) = idle {
        footprint::rows(tmp.path(), quick, idle, &mut rows);
    }
    print_table(&rows);
}
