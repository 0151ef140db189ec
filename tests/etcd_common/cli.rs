//! The `tether` command against a test's etcd: a private local directory, the store URL, and every
//! process a test started (wrapper and child, pinned by pid and start time) stopped when it ends.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::Value;

use super::Etcd;
use crate::common::BIN;

pub struct Env {
    pub url: String,
    tmp: tempfile::TempDir,
    /// (pid, start token, group leader) to kill when the test ends.
    reap: Vec<(u32, String, bool)>,
}

impl Env {
    pub fn new(e: &Etcd, prefix: &str) -> Env {
        Env {
            url: e.url(prefix),
            tmp: tempfile::tempdir().unwrap(),
            reap: vec![],
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("local")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--store").arg(&self.url).arg("--dir").arg(self.dir());
        c.env_remove("NOTIFY_SOCKET")
            .env_remove("TETHER_HEARTBEAT_FILE")
            .env_remove("TETHER_DIR")
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
        self.reap
            .push((pid, st["holder"]["start"].as_str().unwrap().into(), false));
        let child = st["child"]["pid"].as_u64().unwrap() as u32;
        self.reap
            .push((child, st["child"]["start"].as_str().unwrap().into(), true));
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
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let (pid, child) = self.adopt(&id);
        (id, pid, child)
    }

    /// The one job of `status --json ID` (always an array, protocol.md 9.1).
    pub fn status(&self, id: &str) -> Value {
        self.json(&["status", id, "--json"])[0].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (pid, start, leader) in self.reap.drain(..).rev() {
            if let Ok(p) = tether::process::Pinned::open(pid, &start, None) {
                let _ = p.signal(Signal::CONT);
                if leader {
                    let _ = p.signal_group(pid, Signal::KILL);
                }
                let _ = p.signal(Signal::KILL);
                p.wait_exit(Duration::from_secs(5));
            }
        }
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
