//! Jobs the figures run: detached wrappers started through the real CLI, their records, and the
//! cleanup of what a measurement left.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tether::id::JobId;
use tether::record::{Record, Status};
use tether::store::{FileStore, StateDir, Store};

pub use crate::common::BIN;
/// Sends a signal to a pid, ignoring one that is already gone.
pub use crate::common::proc::signal as kill;

/// Starts `tether run --detach --json`; returns (id, wrapper pid).
pub fn detach(dir: &Path, opts: &[&str], cmd: &[&str]) -> (String, u32) {
    let out = crate::common::env::tether(dir)
        .args(["run", "--detach", "--json"])
        .args(opts)
        .arg("--")
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .expect("tether run --detach");
    assert!(
        out.status.success(),
        "tether run --detach failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    crate::common::env::detached(&out.stdout)
}

pub fn wait_cmd(dir: &Path, id: &str) -> Child {
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
pub fn load(dir: &Path, id: &str) -> Record {
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

/// Kills what a finished measurement left: the job's child and its group, if the record names a
/// child that is still the same process (pid and start time), with a bounded wait.
pub fn cleanup_job(dir: &Path, id: &str) {
    if let Ok(bytes) = fs::read(dir.join("jobs").join(format!("{id}.json"))) {
        if let Ok(rec) = Record::parse(&bytes, Some(id)) {
            if let Some(c) = rec.child {
                crate::common::proc::kill_proven(c.pid, &c.start, true);
            }
        }
    }
}

pub fn fake_record(id: &JobId, status: Status) -> Record {
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
pub fn fabricate(dir: &Path, n: usize) {
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
