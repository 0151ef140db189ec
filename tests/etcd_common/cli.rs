//! The `tether` command against a test's etcd: a private local directory, the store URL, and every
//! process a test started (wrapper and child, pinned by pid and start time) stopped when it ends.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Etcd;
use crate::common::cleanup::Adopted;

pub struct Env {
    /// What the test started, killed when it ends: first, so before the directory goes.
    adopted: Adopted,
    pub url: String,
    tmp: tempfile::TempDir,
}

impl Env {
    pub fn new(e: &Etcd, prefix: &str) -> Env {
        Env {
            adopted: Adopted::default(),
            url: e.url(prefix),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("local")
    }

    /// `tether --dir DIR --store URL`, without the job variables (`common::env::tether`) and
    /// without `TETHER_STORE`.
    pub fn cmd(&self) -> Command {
        let mut c = crate::common::env::tether(&self.dir());
        c.arg("--store")
            .arg(&self.url)
            .env_remove("TETHER_STORE")
            .stdin(Stdio::null());
        c
    }

    pub fn out(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let o = self.out(args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: {e}: {} / {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// Registers job `id`'s wrapper and child for cleanup; returns (wrapper pid, child pid).
    pub fn adopt(&mut self, id: &str) -> (u32, u32) {
        let st = self.status(id);
        let pid = st["holder"]["pid"].as_u64().unwrap() as u32;
        let child = st["child"]["pid"].as_u64().unwrap() as u32;
        self.adopted.job(&st);
        (pid, child)
    }

    /// `run --detach --json ARGS`: (id, wrapper pid, child pid), all registered for cleanup.
    pub fn detach(&mut self, args: &[&str]) -> (String, u32, u32) {
        let o = self
            .cmd()
            .args(["run", "--detach", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "detach failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (id, _) = crate::common::env::detached(&o.stdout);
        let (pid, child) = self.adopt(&id);
        (id, pid, child)
    }

    /// The one job of `status --json ID` (always an array, protocol.md 9.1).
    pub fn status(&self, id: &str) -> Value {
        self.json(&["status", id, "--json"])[0].clone()
    }
}

/// Polls `f` every 50 ms until it holds (how long that took) or `limit` passes (None).
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
