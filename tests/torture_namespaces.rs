//! PID namespaces, for real (issue 14 item 1): a reader whose pids are numbered differently from
//! the holder's must never conclude anything from the holder's pid number, nor signal by it.
//!
//! Both directions run under `unshare --pid --fork --mount-proc` (needs root): a job on the host
//! judged from inside a new pid namespace, and a job run inside one (its holder is pid 1 there)
//! judged from the host. Before the fix the first was recorded `lost`/`worker-exited` and the
//! second `lost`/`pid-reused` on the first look. Under `CI=true` a machine that cannot make a pid
//! namespace fails these tests instead of skipping them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::torture::*;
use rustix::process::Signal;
use serde_json::Value;

/// Whether `unshare --pid --fork --mount-proc` works here; under CI its absence is a failure.
fn namespaces_available() -> bool {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let installed = common::need_tool("unshare", "util-linux");
    // Through the support's reaper, which owns `wait` in this binary (std's `status` would race it).
    let ok = installed && wait(spawn(&mut c), Duration::from_secs(30)) == Some(Ended::Code(0));
    if installed && !ok {
        common::skip(
            "root to make a pid namespace (`unshare --pid --fork --mount-proc true` failed)",
            "run the tests as root, as CI does",
        );
    }
    ok
}

/// `unshare --pid --fork --mount-proc [--kill-child] tether --dir DIR ARGS`.
fn in_namespace(dir: &Path, kill_child: bool, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"]);
    if kill_child {
        c.arg("--kill-child");
    }
    c.arg(BIN).arg("--dir").arg(dir).args(args);
    c.env_remove("NOTIFY_SOCKET")
        .env_remove("TETHER_HEARTBEAT_FILE")
        .env_remove("TETHER_DIR")
        .stdin(Stdio::null());
    c
}

fn status_of(v: &Value) -> (String, Value) {
    // `status --json` prints an array, one object per job (protocol.md 9.1).
    let v = v.as_array().map_or(v, |a| &a[0]);
    (
        v["status"].as_str().unwrap_or("?").to_owned(),
        v["reason"].clone(),
    )
}

/// The record on disk, as the file says (no judgment).
fn on_disk(e: &Env, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(e.record_path(id)).unwrap()).unwrap()
}

#[test]
fn host_job_is_not_judged_dead_from_another_pid_namespace() {
    if !namespaces_available() {
        return;
    }
    let e = Env::new();
    let (id, wrapper) = e.detach(&[
        "--id",
        "host-job",
        "--interval",
        "300ms",
        "--ttl",
        "3s",
        "--",
        "sleep",
        "100",
    ]);
    let rec = e.record(&id).unwrap();
    let child = rec["child"]["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        rec["holder"]["pid_ns"].as_str(),
        tether::process::pid_ns().as_deref()
    );

    // Every reader, from inside a new pid namespace, where the wrapper's pid is unknown or another
    // process: the job stays running and nothing is written.
    let lim = Duration::from_secs(60);
    let o = e.run(in_namespace(&e.dir, false, &["status", "--json", &id]), lim);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    assert_eq!(status_of(&o.json()), ("running".into(), Value::Null));
    let o = e.run(
        in_namespace(&e.dir, false, &["inspect", "--json", &id]),
        lim,
    );
    assert_eq!(o.code(), 0, "{}", o.stderr);
    let v = o.json();
    assert_eq!(v["verdict"]["rule"], "R3a", "{v}");
    assert_eq!(v["holder"]["pid_visible"], false, "{v}");
    assert_eq!(v["holder"]["probe"]["holder"], "unseen", "{v}");
    assert_ne!(v["reader"]["pid_ns"], rec["holder"]["pid_ns"], "{v}");
    let o = e.run(in_namespace(&e.dir, false, &["inspect", &id]), lim);
    assert!(o.stdout.contains("pids not probed"), "{}", o.stdout);
    let o = e.run(
        in_namespace(&e.dir, false, &["status", "--wait", "--timeout", "1s", &id]),
        lim,
    );
    assert_eq!(
        o.code(),
        124,
        "wait from the namespace: {}{}",
        o.stdout,
        o.stderr
    );
    let o = e.run(in_namespace(&e.dir, false, &["result", &id]), lim);
    assert_eq!(
        o.code(),
        tether::testing::exit::ACTIVE,
        "result: {}{}",
        o.stdout,
        o.stderr
    );

    // cancel from there refuses: the recorded numbers are not that namespace's processes.
    let o = e.run(
        in_namespace(&e.dir, false, &["cancel", "--grace", "1s", &id]),
        lim,
    );
    assert_eq!(
        o.code(),
        tether::testing::exit::REFUSED,
        "cancel: {}{}",
        o.stdout,
        o.stderr
    );
    assert!(o.stderr.contains("pid namespace"), "{}", o.stderr);
    assert_eq!(status_of(&on_disk(&e, &id)).0, "running");

    // Past several renewals (the wrapper reads its record at each), the job is still healthy.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        alive(wrapper) && alive(child),
        "wrapper or child was stopped"
    );
    let o = e.tether(&["status", "--json", &id]);
    assert_eq!(status_of(&o.json()), ("running".into(), Value::Null));

    // The lease still catches a real death, seen from the namespace: after the ttl, not before.
    let start = rec["holder"]["start"].as_str().unwrap();
    kill_proven(wrapper, start);
    let o = e.run(in_namespace(&e.dir, false, &["status", "--json", &id]), lim);
    let (st, _) = status_of(&o.json());
    assert!(st == "running" || st == "lost", "{st}");
    assert!(
        wait_for(Duration::from_secs(30), || {
            let o = e.run(in_namespace(&e.dir, false, &["status", "--json", &id]), lim);
            status_of(&o.json()) == ("lost".into(), "lease-expired".into())
        }),
        "a dead holder was never judged lost from the namespace"
    );
}

#[test]
fn namespaced_job_is_not_judged_dead_from_the_host() {
    if !namespaces_available() {
        return;
    }
    let e = Env::new();
    let id = "ns-job";
    let mut c = in_namespace(
        &e.dir,
        true,
        &[
            "run",
            "--id",
            id,
            "--interval",
            "300ms",
            "--ttl",
            "3s",
            "--",
            "sleep",
            "100",
        ],
    );
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let outer = spawn(&mut c);
    let running = wait_for(Duration::from_secs(30), || {
        e.record_path(id).exists() && status_of(&on_disk(&e, id)).0 == "running"
    });
    assert!(running, "the namespaced job never ran");
    let rec = on_disk(&e, id);
    assert_eq!(rec["holder"]["pid"], 1, "{rec}");
    let ns = rec["holder"]["pid_ns"].as_str().expect("pid_ns recorded");
    assert_ne!(Some(ns), tether::process::pid_ns().as_deref());

    // Pid 1 here is init, with another start time: before the fix, `pid-reused` on the first look.
    let o = e.tether(&["status", "--json", id]);
    assert_eq!(
        status_of(&o.json()),
        ("running".into(), Value::Null),
        "{}",
        o.stderr
    );
    let v = e.tether(&["inspect", "--json", id]).json();
    assert_eq!(v["verdict"]["rule"], "R3a", "{v}");
    assert_eq!(v["holder"]["probe"]["holder"], "unseen", "{v}");
    let o = e.tether(&["status", "--wait", "--timeout", "1s", id]);
    assert_eq!(o.code(), 124, "{}{}", o.stdout, o.stderr);
    let o = e.tether(&["cancel", "--grace", "1s", id]);
    assert_eq!(
        o.code(),
        tether::testing::exit::REFUSED,
        "cancel: {}{}",
        o.stdout,
        o.stderr
    );
    assert!(o.stderr.contains("pid namespace"), "{}", o.stderr);
    assert_eq!(status_of(&on_disk(&e, id)).0, "running");
    assert!(ended(outer).is_none(), "the namespaced job ended");

    // Its renewals go on (the wrapper was not told it was lost).
    std::thread::sleep(Duration::from_millis(1500));
    let v = e.tether(&["status", "--json", id]).json();
    assert_eq!(status_of(&v), ("running".into(), Value::Null), "{v}");
    assert!(ended(outer).is_none(), "the namespaced job ended");

    // Killing the namespace (unshare --kill-child) kills the holder: the host sees it by the lease.
    kill(outer, Signal::KILL);
    assert!(wait(outer, Duration::from_secs(30)).is_some());
    assert!(
        wait_for(Duration::from_secs(30), || {
            let v = e.tether(&["status", "--json", id]).json();
            status_of(&v) == ("lost".into(), "lease-expired".into())
        }),
        "a dead namespaced holder was never judged lost"
    );
}
