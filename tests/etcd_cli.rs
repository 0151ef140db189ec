//! The `tether` command on the etcd store (protocol.md section 11), against a real etcd started by
//! the test: run --detach, status, status --wait, result, cancel, gc; a SIGKILLed and a SIGSTOPped
//! wrapper; an unreachable etcd at `run`. Every process the test starts is stopped by pid.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cleanup::Adopted;
use common::proc::{alive, signal};
use etcd_common::Etcd;
use rustix::process::Signal;
use serde_json::Value;

use common::BIN;

struct Env {
    /// What the test started, killed when it ends: first, so before the directory goes.
    adopted: Adopted,
    url: String,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new(e: &Etcd, prefix: &str) -> Env {
        Env {
            adopted: Adopted::default(),
            url: e.url(prefix),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("local")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--store").arg(&self.url).arg("--dir").arg(self.dir());
        c.env_remove("NOTIFY_SOCKET")
            .env_remove("TETHER_HEARTBEAT_FILE")
            .env_remove("TETHER_DIR")
            .env_remove("TETHER_STORE")
            .stdin(Stdio::null());
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let o = self.out(args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: {e}: {} / {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// `run --detach --json ARGS`: (id, wrapper pid, child pid), all registered for cleanup.
    fn detach(&mut self, args: &[&str]) -> (String, u32, u32) {
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
        let st = self.json(&["status", &id, "--json"])[0].clone();
        let pid = st["holder"]["pid"].as_u64().unwrap() as u32;
        let child = st["child"]["pid"].as_u64().unwrap() as u32;
        self.adopted.job(&st);
        (id, pid, child)
    }

    /// The one job of `status --json ID` (always an array, protocol.md 9.1).
    fn status(&self, id: &str) -> Value {
        self.json(&["status", id, "--json"])[0].clone()
    }
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
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

#[test]
fn run_status_wait_result_gc_on_etcd() {
    let Some(e) = Etcd::start("run_status_wait_result_gc_on_etcd") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, _, _) = env.detach(&[
        "--id",
        "short",
        "--ttl",
        "3s",
        "--",
        "sh",
        "-c",
        "sleep 1; echo done",
    ]);
    let st = env.status(&id);
    assert_eq!(st["status"], "running", "{st}");
    // status --wait sleeps on the etcd watch and returns with the job's end.
    let start = Instant::now();
    let o = env.out(&["status", "--wait", "--timeout", "30s", &id]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let st = env.status(&id);
    assert_eq!(
        (st["status"].as_str(), st["reason"].as_str()),
        (Some("succeeded"), Some("exited"))
    );
    // result, from the same host: the log is local.
    let o = env.out(&["result", &id]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("done"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The record lives in etcd, not in the local directory.
    assert!(!env.dir().join("jobs/short.json").exists());
    let listed = env.json(&["status", "--json"]);
    assert_eq!(listed.as_array().map(|a| a.len()), Some(1), "{listed}");
    // gc removes it from etcd.
    let o = env.out(&["gc", "--older-than", "0s"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(env.out(&["status", &id]).status.code(), Some(6));
}

#[test]
fn sigkilled_wrapper_is_lost_at_once_here() {
    let Some(e) = Etcd::start("sigkilled_wrapper_is_lost") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, wrapper, _) = env.detach(&["--ttl", "2s", "--interval", "500ms", "--", "sleep", "60"]);
    signal(wrapper, Signal::KILL);
    let took = wait_for(Duration::from_secs(10), || {
        env.status(&id)["status"] == "lost"
    });
    let st = env.status(&id);
    assert!(took.is_some(), "{st}");
    // On the holder's own host the pid probe sees it before the lease expires (R4).
    assert_eq!(st["reason"], "worker-exited", "{st}");
}

#[test]
fn sigstopped_wrapper_is_lost_by_the_cluster_and_fences_itself_on_waking() {
    let Some(e) = Etcd::start("sigstopped_wrapper") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, wrapper, child) =
        env.detach(&["--ttl", "2s", "--interval", "500ms", "--", "sleep", "60"]);
    signal(wrapper, Signal::STOP);
    let stopped = Instant::now();
    let took = wait_for(Duration::from_secs(15), || {
        env.status(&id)["status"] == "lost"
    });
    let st = env.status(&id);
    assert!(took.is_some(), "{st}");
    // The holder process is alive here, so only the cluster's expiry decided (R6).
    assert_eq!(st["reason"], "lease-expired", "{st}");
    assert!(
        stopped.elapsed() >= Duration::from_secs(1),
        "lost too early: {:?}",
        stopped.elapsed()
    );
    // Woken, the wrapper finds its lease gone, stops its child, and its result goes to `late`.
    signal(wrapper, Signal::CONT);
    assert!(
        wait_for(Duration::from_secs(20), || !alive(child)).is_some(),
        "the woken wrapper did not stop its child"
    );
    assert!(
        wait_for(Duration::from_secs(20), || !alive(wrapper)).is_some(),
        "the woken wrapper did not end"
    );
    let st = env.status(&id);
    assert_eq!(
        (st["status"].as_str(), st["reason"].as_str()),
        (Some("lost"), Some("lease-expired"))
    );
    let late = st["late"].as_array().cloned().unwrap_or_default();
    assert_eq!(late.len(), 1, "{st}");
}

#[test]
fn cancel_on_etcd_stops_the_job() {
    let Some(e) = Etcd::start("cancel_on_etcd") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, wrapper, child) = env.detach(&["--ttl", "3s", "--", "sleep", "60"]);
    let o = env.out(&["cancel", &id]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(wait_for(Duration::from_secs(15), || !alive(child) && !alive(wrapper)).is_some());
    let st = env.status(&id);
    assert_eq!(st["status"], "cancelled", "{st}");
    assert_eq!(env.out(&["result", &id]).status.code(), Some(4));
}

#[test]
fn unreachable_etcd_at_run_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let port = etcd_common::free_port("127.0.0.1");
    let o = Command::new(BIN)
        .args(["--store", &format!("etcd://127.0.0.1:{port}/x"), "--dir"])
        .arg(tmp.path().join("local"))
        .args(["run", "--", "touch"])
        .arg(&marker)
        .env_remove("TETHER_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(8), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!marker.exists(), "the command ran");

    let o = Command::new(BIN)
        .args(["--store", "etcd://nohost", "status"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
