//! The store's figures: what a renewal costs, a whole-record write for contrast, and `status` over
//! few and many records. `cargo bench --bench tether -- --store` runs only these.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use tether::clock::{Timestamp, mono_ms};
use tether::id::JobId;
use tether::record::{Progress, Status};
use tether::store::{FileStore, Renew, StateDir, Store};
use tether::transition::Write;

use crate::jobs::{BIN, fabricate, fake_record};
use crate::procfs::self_cpu_ns;
use crate::table::Row;

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

/// Wall time of `runs` runs of a command, in ms, after one unmeasured run (which warms the page
/// cache). The etcd rows time their commands with it too.
pub fn time_runs(
    runs: usize,
    mut f: impl FnMut() -> std::io::Result<std::process::ExitStatus>,
) -> Vec<f64> {
    let _ = f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let st = f().expect("run");
            assert!(st.success(), "command failed: {st}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// The store's rows: renewal cost, the whole-record write, `status` and the listing.
pub fn rows(tmp: &Path, quick: bool, rows: &mut Vec<Row>) {
    let n = |full: usize, q: usize| if quick { q } else { full };
    let renew = renewal_cost(&tmp.join("renew"), n(10_000, 1_000));
    rows.push(Row::new(
        "renewal cost (CPU per renewal)",
        "us",
        renew,
        "<= 50 us",
        |s| s.median <= 50.0,
    ));
    let full = record_write_cost(&tmp.join("record-write"), n(5_000, 1_000));
    rows.push(Row::new(
        "for contrast: whole-record write (rename)",
        "us",
        full,
        "-",
        |_| true,
    ));

    let (st10, st10k, list10k) =
        status_latency(&tmp.join("status"), n(30, 5), n(10, 3), n(10_000, 1_000));
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
}
