//! The `tether run` tests' fixture (`tests/run_*.rs` and a few readers' tests): the wrapper run in
//! plain child processes (no subreaper), foreground and detached, bounded waits, and cleanup of
//! every process a test starts (by pid, proven by start time before it is signalled).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether::id::JobId;

use super::cleanup::{Adopted, Registered};
use tether::reader::settle::{Judged, settle};
use tether::store::{FileStore, StateDir, Store};

#[allow(unused_imports)] // re-exported for the test files that use it
pub use crate::common::BIN;

pub struct Env {
    /// Processes to kill when the test ends: first, so before the state directory goes.
    adopted: Adopted,
    pub tmp: super::cleanup::Scratch,
    pub dir: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let (tmp, dir) = crate::common::env::state_dir();
        Env {
            adopted: Adopted::default(),
            tmp,
            dir,
        }
    }

    pub fn cmd(&self) -> Command {
        crate::common::env::tether(&self.dir)
    }

    /// Runs `tether run ARGS` in the foreground; returns (exit code, stdout, stderr).
    pub fn run_fg(&mut self, args: &[&str], limit: Duration) -> (i32, String, String) {
        let out = self.tmp.path().join("fg.out");
        let err = self.tmp.path().join("fg.err");
        let mut c = self.cmd();
        c.arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = c.spawn().unwrap();
        let _registered = Registered::child(child.id());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tether run {args:?} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(out).unwrap(),
            std::fs::read_to_string(err).unwrap(),
        )
    }

    /// `tether run --detach --json ARGS`: returns (id, wrapper pid); both wrapper and child are
    /// registered for cleanup.
    pub fn detach(&mut self, args: &[&str]) -> (String, u32) {
        let out = self
            .cmd()
            .args(["run", "--detach", "--json"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "detach failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (id, pid) = crate::common::env::detached(&out.stdout);
        let rec = self.record(&id);
        assert!(rec["child"].is_object(), "a detached job's child: {rec}");
        self.adopted.job(&rec);
        (id, pid)
    }

    pub fn adopt(&mut self, pid: u32, start: &str, leader: bool) {
        self.adopted.adopt(pid, start, leader);
    }

    /// The record as every reader sees it: the file, with the lease file folded in
    /// (protocol.md 6.5), without judging it.
    pub fn record(&self, id: &str) -> Value {
        let store = FileStore::open(
            StateDir {
                root: self.dir.clone(),
            },
            false,
        )
        .unwrap();
        let rec = store.load(&JobId::parse(id).unwrap()).unwrap();
        serde_json::to_value(rec).unwrap()
    }

    pub fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.join("jobs").join(format!("{id}.log"))).unwrap_or_default()
    }

    pub fn settle(&self, id: &str) -> Judged {
        let store = FileStore::open(
            StateDir {
                root: self.dir.clone(),
            },
            false,
        )
        .unwrap();
        settle(&store, &JobId::parse(id).unwrap()).unwrap()
    }

    pub fn only_id(&self) -> String {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.join("jobs"))
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.strip_suffix(".json").map(str::to_owned)
            })
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.pop().unwrap()
    }
}

/// Polls `f` every 50 ms until it is true or `limit` passes.
pub fn wait_for(limit: Duration, f: impl FnMut() -> bool) -> bool {
    crate::common::poll(limit, Duration::from_millis(50), f)
}

#[allow(unused_imports)] // re-exported for the test files that use it
pub use crate::common::proc::{alive, group_gone, signal};

pub fn child_pid(rec: &Value) -> u32 {
    rec["child"]["pid"].as_u64().unwrap() as u32
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
