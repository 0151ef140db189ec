//! Jobs the figures run: detached wrappers started through the real CLI, their records, and the
//! cleanup of what a measurement left.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal, kill_process};
use tether::id::JobId;
use tether::record::{Record, Status};
use tether::store::{FileStore, StateDir, Store};

pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Starts `tether run --detach --json`; returns (id, wrapper pid) once the record says running.
pub fn detach(dir: &Path, opts: &[&str], cmd: &[&str]) -> (String, u32) {
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

/// Kills what a finished measurement left: the child's group, if the record names one.
pub fn cleanup_job(dir: &Path, id: &str) {
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
pub fn kill(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = kill_process(p, sig);
    }
}
