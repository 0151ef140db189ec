//! Two hosts on one etcd (protocol.md section 11), made real: host A is a network namespace with its
//! own host name, joined to the root namespace (host B, the reader) by a veth pair whose link-local
//! addresses exist only there. etcd runs in the root namespace and serves A over that link and B on
//! loopback. No host name is faked in code: A's wrapper records the name its namespace has.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cleanup::Adopted;
use common::proc::{alive, signal};
use etcd_common::{Etcd, Host};
use rustix::process::Signal;
use serde_json::Value;

use common::BIN;

struct Two {
    /// What the test started, killed when it ends: first, so before etcd and host A go.
    adopted: Adopted,
    a: Host,
    etcd: Etcd,
    tmp: tempfile::TempDir,
}

impl Two {
    fn new(test: &str) -> Option<Two> {
        let a = Host::create(test)?;
        let etcd = Etcd::start_on(test, &["127.0.0.1", &a.root_ip], &[])?;
        Some(Two {
            adopted: Adopted::default(),
            a,
            etcd,
            tmp: tempfile::tempdir().unwrap(),
        })
    }

    /// `tether` on host A (reaching etcd over the link).
    fn on_a(&self, args: &[&str]) -> Command {
        let mut c = self.a.command("host-a", BIN);
        c.arg("--store")
            .arg(self.etcd.url_on(&self.a.root_ip, "two"))
            .arg("--dir")
            .arg(self.tmp.path().join("a"))
            .args(args)
            .env_remove("TETHER_STORE")
            .env_remove("TETHER_DIR")
            .stdin(Stdio::null());
        c
    }

    /// `tether` on host B (the root namespace, on loopback).
    fn on_b(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--store")
            .arg(self.etcd.url("two"))
            .arg("--dir")
            .arg(self.tmp.path().join("b"))
            .args(args)
            .env_remove("TETHER_STORE")
            .env_remove("TETHER_DIR")
            .stdin(Stdio::null());
        c
    }

    fn status_b(&self, id: &str) -> Value {
        let o = self.on_b(&["status", id, "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("status {id}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
        // `status --json` prints an array, one object per job (protocol.md 9.1).
        v[0].clone()
    }

    /// Starts a detached job on A; returns (id, wrapper pid, child pid).
    fn detach_on_a(&mut self, args: &[&str]) -> (String, u32, u32) {
        let mut all = vec!["run", "--detach", "--json"];
        all.extend_from_slice(args);
        let o = self.on_a(&all).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let st = self.status_b(&id);
        assert_eq!(st["holder"]["host"], "host-a", "{st}");
        let pid = st["holder"]["pid"].as_u64().unwrap() as u32;
        let child = st["child"]["pid"].as_u64().unwrap() as u32;
        self.adopted.job(&st);
        (id, pid, child)
    }
}

/// Waits for a `status --wait` started earlier; returns its output and when it ended.
fn finish(c: Child, limit: Duration) -> (Output, Instant) {
    common::proc::finish_within(c, limit, "status --wait")
}

/// Starts `status --wait ID` on B and gives it time to open its watch.
fn wait_on_b(t: &Two, id: &str) -> Child {
    let c = t
        .on_b(&["status", "--wait", "--timeout", "60s", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c
}

#[test]
fn sigkilled_and_sigstopped_wrappers_on_a_are_lost_on_b_within_ttl_plus_1s() {
    let Some(mut t) = Two::new("sigkilled_on_a") else {
        return;
    };
    for sig in [Signal::KILL, Signal::STOP] {
        let (id, wrapper, _) =
            t.detach_on_a(&["--ttl", "2s", "--interval", "500ms", "--", "sleep", "60"]);
        let w = wait_on_b(&t, &id);
        signal(wrapper, sig);
        let killed = Instant::now();
        let (o, at) = finish(w, Duration::from_secs(20));
        let took = at.duration_since(killed);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{sig:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let st = t.status_b(&id);
        assert_eq!(
            (st["status"].as_str(), st["reason"].as_str()),
            (Some("lost"), Some("lease-expired")),
            "{st}"
        );
        eprintln!("{sig:?}: B saw lost {took:?} after the signal (ttl 2 s)");
        assert!(
            took <= Duration::from_millis(3000),
            "{sig:?}: lost after {took:?}, over ttl + 1 s"
        );
        signal(wrapper, Signal::CONT);
    }
}

#[test]
fn clean_end_on_a_wakes_b_promptly() {
    let Some(mut t) = Two::new("clean_end_on_a") else {
        return;
    };
    let (id, _, _) = t.detach_on_a(&["--ttl", "10s", "--", "sh", "-c", "sleep 2; echo done"]);
    let w = wait_on_b(&t, &id);
    let (o, _) = finish(w, Duration::from_secs(20));
    let returned = tether::clock::Timestamp::now();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let st = t.status_b(&id);
    assert_eq!(st["status"], "succeeded", "{st}");
    // Both clocks are this machine's wall clock: from A's final write to B's return.
    let finished = tether::clock::Timestamp::parse(st["finished_at"].as_str().unwrap()).unwrap();
    let took = returned.ms() - finished.ms();
    eprintln!("B's status --wait returned {took} ms after A's finished_at");
    assert!((0..2000).contains(&took), "{took} ms");
    // B has no log file: result and logs show the tail the final record carries, and name A.
    let o = t.on_b(&["result", &id]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("kept in the record") && out.contains("on host host-a"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "done"), "{out}");
    let o = t.on_b(&["logs", &id]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "done\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("host-a"), "{err}");
}

#[test]
fn a_cut_off_is_lost_on_b_fences_itself_and_its_result_is_late() {
    let Some(mut t) = Two::new("a_cut_off") else {
        return;
    };
    let (id, wrapper, child) =
        t.detach_on_a(&["--ttl", "3s", "--interval", "500ms", "--", "sleep", "60"]);
    let w = wait_on_b(&t, &id);
    t.a.cut();
    let cut = Instant::now();
    // Watch A's child from the moment of the cut, beside B's wait.
    let watcher = std::thread::spawn(move || {
        while cut.elapsed() < Duration::from_secs(15) {
            if !alive(child) {
                return Some(cut.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    });
    let (o, at) = finish(w, Duration::from_secs(20));
    let took = at.duration_since(cut);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("cut: B saw lost {took:?} after the cut (ttl 3 s)");
    assert!(
        took <= Duration::from_millis(4000),
        "lost after {took:?}, over ttl + 1 s"
    );
    let log = || {
        std::fs::read_to_string(t.tmp.path().join(format!("a/jobs/{id}.log"))).unwrap_or_default()
    };
    let stopped = watcher.join().unwrap();
    let stopped =
        stopped.unwrap_or_else(|| panic!("A's wrapper did not stop its child: {}", log()));
    eprintln!("cut: A's child gone {stopped:?} after the cut");
    // TERM goes out at the renew deadline (ttl - interval after the last renewal, which came
    // before the cut), so A's child is stopped within the ttl.
    assert!(
        stopped <= Duration::from_millis(3000),
        "{stopped:?}: {}",
        log()
    );
    // The link comes back: A's result is kept as late, `lost` stands.
    t.a.mend();
    let start = Instant::now();
    let late = loop {
        let st = t.status_b(&id);
        assert_eq!(st["status"], "lost", "{st}");
        let late = st["late"].as_array().cloned().unwrap_or_default();
        if !late.is_empty() || !alive(wrapper) || start.elapsed() > Duration::from_secs(20) {
            break late;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(late.len(), 1, "A's result was not kept as late");
}

#[test]
fn cancel_from_b_stops_the_job_on_a_through_the_store() {
    let Some(mut t) = Two::new("cancel_from_b") else {
        return;
    };
    let (id, wrapper, child) =
        t.detach_on_a(&["--ttl", "3s", "--interval", "500ms", "--", "sleep", "60"]);
    let start = Instant::now();
    let o = t.on_b(&["cancel", &id, "--json"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cancelled"], true, "{v}");
    assert_eq!(v["ended"], true, "the holder on A did not answer: {v}");
    eprintln!("cancel from B returned after {:?}", start.elapsed());
    let mut gone = false;
    while start.elapsed() < Duration::from_secs(10) {
        if !alive(child) && !alive(wrapper) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "A's job still runs");
    let st = t.status_b(&id);
    assert_eq!(
        (st["status"].as_str(), st["reason"].as_str()),
        (Some("cancelled"), Some("cancelled")),
        "{st}"
    );
    assert_eq!(st["late"].as_array().map(|l| l.len()), Some(1), "{st}");
}

#[test]
fn cancel_from_b_of_a_stopped_holder_on_a_says_unreachable_and_the_job_turns_lost_at_expiry() {
    let Some(mut t) = Two::new("cancel_unreachable") else {
        return;
    };
    let (id, wrapper, child) =
        t.detach_on_a(&["--ttl", "10s", "--interval", "500ms", "--", "sleep", "60"]);
    signal(wrapper, Signal::STOP);
    let stopped = Instant::now();
    let o = t.on_b(&["cancel", &id, "--json"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Exit 13 (protocol.md 9, 11.9), one JSON error line naming the holder's host.
    assert_eq!(o.status.code(), Some(13), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let e: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(e["error"], "holder-unreachable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("host-a"), "{e}");
    // Nothing was recorded for the cancel: the job stays active until its lease expires.
    let st = t.status_b(&id);
    if stopped.elapsed() < Duration::from_secs(9) {
        assert_eq!(st["status"], "running", "{st}");
    }
    let w = t
        .on_b(&["status", "--wait", "--timeout", "60s", &id])
        .output()
        .unwrap();
    assert_eq!(
        w.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&w.stderr)
    );
    let st = t.status_b(&id);
    assert_eq!(
        (st["status"].as_str(), st["reason"].as_str()),
        (Some("lost"), Some("lease-expired")),
        "{st}"
    );
    assert!(
        stopped.elapsed() >= Duration::from_secs(9),
        "lost before the 10 s lease could expire: {:?}",
        stopped.elapsed()
    );
    // Woken, the holder stops its job; its result is late, the job stays lost.
    signal(wrapper, Signal::CONT);
    let start = Instant::now();
    while (alive(child) || alive(wrapper)) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(child) && !alive(wrapper), "A's job still runs");
    let st = t.status_b(&id);
    assert_eq!(st["status"], "lost", "{st}");
    assert_eq!(st["late"].as_array().map(|l| l.len()), Some(1), "{st}");
}
