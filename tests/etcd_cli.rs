//! The `tether` command on the etcd store (protocol.md section 11), against a real etcd started by
//! the test: run --detach, status, status --wait, result, cancel, gc; a SIGKILLed and a SIGSTOPped
//! wrapper; an unreachable etcd at `run`. Every process the test starts is stopped by pid.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use common::proc::{alive, signal};
use etcd_common::Etcd;
use etcd_common::cli::{Env, wait_for};
use rustix::process::Signal;

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

/// An interval longer than etcd's 5 s minimum between a client's pings: every renewal lands. The
/// wrapper's connection used to send HTTP/2 pings every 2 s, which etcd answers past two in a row
/// with nothing else sent by closing the connection (GOAWAY, too_many_pings): every other renewal
/// failed on the closed stream, and with `--ttl 25s --interval 10s` a healthy job was fenced
/// (recorded lost and killed) 30 s after its start.
#[test]
fn long_interval_renews_every_time() {
    let Some(e) = Etcd::start("long_interval") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, _, child) = env.detach(&["--ttl", "25s", "--interval", "10s", "--", "sleep", "120"]);
    std::thread::sleep(Duration::from_secs(33));
    let notes =
        std::fs::read_to_string(env.dir().join(format!("jobs/{id}.notes"))).unwrap_or_default();
    let st = env.status(&id);
    assert_eq!(st["status"], "running", "{st}\n{notes}");
    assert!(alive(child), "{notes}");
    assert!(!notes.contains("cannot renew"), "{notes}");
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

/// A quiet holder's renewals go on its direct connection (store/etcd/direct.rs): each tick reads
/// etcd's answers and sends the next keepalive without waiting, so the wrapper's thread sleeps
/// once per renewal, where through the client stack it slept again for every answer. The small
/// receive window makes the holder's window updates due every dozen answers, so a mistake in them
/// stalls the stream within this test. A cancel request from another host is seen on that
/// connection's watch, since an idle wrapper does not run its runtime's tasks.
#[test]
fn an_idle_holder_renews_with_one_wake_up_and_sees_a_remote_cancel() {
    let Some(e) = Etcd::start("direct_keepalive") else {
        return;
    };
    let mut env = Env::new(&e, "cli");
    let (id, wrapper, child) =
        env.detach(&["--ttl", "2s", "--interval", "100ms", "--", "sleep", "120"]);
    // The first ticks renew through the session while the direct connection opens.
    std::thread::sleep(Duration::from_secs(2));
    let sleeps = || {
        let s = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let (s0, t0) = (sleeps(), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (s1, ticks) = (sleeps(), t0.elapsed().as_millis() as u64 / 100);
    let notes =
        std::fs::read_to_string(env.dir().join(format!("jobs/{id}.notes"))).unwrap_or_default();
    let st = env.status(&id);
    assert_eq!(st["status"], "running", "{st}\n{notes}");
    // A stalled or broken direct connection is dropped and renewals go on through the session,
    // but each such failure leaves a note: a stream stalled on our window would leave one every
    // 2.5 s here. One is allowed, for an answer a loaded machine delayed past 200 ms.
    assert!(notes.matches("cannot renew").count() <= 1, "{notes}");
    assert!(
        s1 - s0 <= ticks + ticks / 4 + 5,
        "{} sleeps in {ticks} ticks\n{notes}",
        s1 - s0
    );
    // What `cancel` on another host puts (on this host it would signal the job itself).
    let request = br#"{"at":"2026-11-25T00:00:00Z","host":"elsewhere"}"#;
    etcd_common::raw::put(&e.endpoint(), &format!("cli/cancel/{id}"), request);
    assert!(wait_for(Duration::from_secs(15), || !alive(child) && !alive(wrapper)).is_some());
    assert_eq!(env.status(&id)["status"], "cancelled");
}
