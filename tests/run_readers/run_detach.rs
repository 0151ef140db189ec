//! `tether run --detach`, and what readers see when the wrapper is killed or stopped.

use crate::common;

use std::time::{Duration, Instant};

use common::launch::*;
use rustix::process::Signal;
use tether::verdict::Outcome;

#[test]
fn detach_returns_once_running_is_durable() {
    let mut env = Env::new();
    let (id, pid) = env.detach(&["--id", "d", "--", "sleep", "30"]);
    assert_eq!(id, "d");
    // Read straight after the launcher returned: no polling.
    let r = env.record("d");
    assert_eq!(r["status"], "running");
    assert_eq!(r["holder"]["pid"], pid);
    assert!(alive(child_pid(&r)));
    assert_eq!(r["child"]["pgid"], r["child"]["pid"]);
    assert!(matches!(env.settle("d").verdict.outcome, Outcome::Active));
}

#[test]
fn detach_reports_start_failure() {
    let env = Env::new();
    let out = env
        .cmd()
        .args(["run", "--detach", "--id", "x", "--", "no-such-command-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command-xyz"));
    assert_eq!(env.record("x")["reason"], "start-failed");
}

#[test]
fn sigkill_of_the_wrapper_takes_the_child_and_readers_see_worker_exited() {
    let mut env = Env::new();
    let (id, pid) = env.detach(&["--", "sleep", "30"]);
    let child = child_pid(&env.record(&id));
    signal(pid, Signal::KILL);
    assert!(
        wait_for(Duration::from_secs(1), || !alive(child)),
        "child {child} outlived its wrapper"
    );
    assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
    let j = env.settle(&id);
    assert!(j.reaped);
    assert_eq!(j.record.status.as_str(), "lost");
    assert_eq!(j.record.reason.unwrap().as_str(), "worker-exited");
    assert_eq!(env.record(&id)["status"], "lost");
}

#[test]
fn stopped_wrapper_expires_after_ttl_not_before_and_then_stops_its_child() {
    let mut env = Env::new();
    let (id, pid) = env.detach(&[
        "--interval",
        "500ms",
        "--ttl",
        "3s",
        "--grace",
        "1s",
        "--",
        "sleep",
        "60",
    ]);
    let child = child_pid(&env.record(&id));
    signal(pid, Signal::STOP);
    let stopped = Instant::now();
    assert!(matches!(env.settle(&id).verdict.outcome, Outcome::Active));
    // The last renewal was at most one interval before the stop, so the lease holds for at least
    // ttl - interval = 2.5 s after it.
    std::thread::sleep(Duration::from_millis(1500));
    if stopped.elapsed() < Duration::from_millis(2400) {
        assert!(
            matches!(env.settle(&id).verdict.outcome, Outcome::Active),
            "judged lost before the ttl ran out"
        );
    }
    assert!(wait_for(Duration::from_secs(15), || env.settle(&id).reaped
        || env.record(&id)["status"] == "lost"));
    assert!(stopped.elapsed() >= Duration::from_millis(2400));
    let r = env.record(&id);
    assert_eq!(r["reason"], "lease-expired");
    // Woken up, the wrapper finds its job declared lost and stops the child.
    signal(pid, Signal::CONT);
    assert!(
        wait_for(Duration::from_secs(15), || !alive(child)),
        "the woken wrapper left its child running"
    );
    assert!(wait_for(Duration::from_secs(10), || !alive(pid)));
    let r = env.record(&id);
    assert_eq!(r["status"], "lost");
    assert_eq!(r["late"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn wrapper_stopped_past_its_ttl_reacquires_with_a_new_epoch() {
    let mut env = Env::new();
    let (id, pid) = env.detach(&["--interval", "250ms", "--ttl", "1s", "--", "sleep", "30"]);
    assert_eq!(env.record(&id)["lease"]["epoch"], 1);
    signal(pid, Signal::STOP);
    std::thread::sleep(Duration::from_millis(2000));
    // No reader judged it meanwhile, so the wrapper may take its lease again (protocol.md 6.3).
    signal(pid, Signal::CONT);
    assert!(
        wait_for(
            Duration::from_secs(10),
            || env.record(&id)["lease"]["epoch"] == 2
        ),
        "{}",
        env.log(&id)
    );
    let r = env.record(&id);
    assert_eq!(r["status"], "running");
    assert!(alive(child_pid(&r)));
    assert!(matches!(env.settle(&id).verdict.outcome, Outcome::Active));
}

#[test]
fn cancel_by_someone_else_stops_the_group_and_keeps_the_result_late() {
    use tether::store::{Change, FileStore, StateDir, Store};
    use tether::transition::{Write, apply};
    let mut env = Env::new();
    let (id, pid) = env.detach(&[
        "--interval",
        "250ms",
        "--ttl",
        "1s",
        "--grace",
        "1s",
        "--",
        "sleep",
        "30",
    ]);
    let child = child_pid(&env.record(&id));
    let store = FileStore::open(
        StateDir {
            root: env.dir.clone(),
        },
        false,
    )
    .unwrap();
    let jid = tether::id::JobId::parse(&id).unwrap();
    store
        .update(&jid, &mut |cur| Change::Write {
            record: apply(
                cur,
                &Write::Cancel {
                    at: tether::clock::Timestamp::now(),
                },
            )
            .unwrap(),
            durable: true,
            value: (),
        })
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || group_gone(child)),
        "the wrapper did not stop a cancelled job"
    );
    assert!(wait_for(Duration::from_secs(10), || !alive(pid)));
    let r = env.record(&id);
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["late"][0]["exit"]["signal"], 15, "{r}");
}
