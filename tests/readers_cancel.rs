//! `cancel`: only a process proven to be the job's is signalled, and the whole group dies.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::holders::*;
use rustix::process::{Pid, Signal, WaitOptions};
use tether::process;
use tether::record::{Child as RecChild, Status};
use tether::store::Store;

/// (pid, is a zombie) of every process in group `pgid`.
fn members(pgid: u32) -> Vec<(u32, bool)> {
    common::proc::group(pgid)
        .into_iter()
        .map(|(pid, st)| (pid, st.zombie))
        .collect()
}

/// Kills a group we started if the test fails before cancel did it.
struct GroupGuard(u32);
impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process_group(
            Pid::from_raw(self.0 as i32).unwrap(),
            Signal::KILL,
        );
    }
}

fn cancel_tree(script: &str, grace: &str) -> (String, Duration) {
    // Orphaned grandchildren become ours, so we can reap them; pid 1 here never does.
    tether::testing::platform::become_subreaper().unwrap();
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "tree", 1000, 10_000);
    let _r = Renewer::start(&e, "tree", Duration::from_millis(300));
    let sh = Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = kids.push(sh);
    let _g = GroupGuard(pgid);
    let start = process::start_token(pgid).unwrap();
    with_child(
        &e,
        "tree",
        RecChild {
            pid: pgid,
            start,
            pgid,
            extra: Default::default(),
        },
    );
    let t0 = Instant::now();
    while members(pgid).len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(10), "tree never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let o = tether(&e, &["cancel", "--grace", grace, "tree"]);
    let took = t.elapsed();
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let rec = load(&e, "tree");
    assert_eq!(rec.status, Status::Cancelled);
    let left = members(pgid);
    assert!(
        left.iter().all(|(_, zombie)| *zombie),
        "still running: {left:?}"
    );
    kids.0.last_mut().unwrap().wait().unwrap();
    for (pid, _) in members(pgid) {
        let _ = rustix::process::waitpid(
            Some(Pid::from_raw(pid as i32).unwrap()),
            WaitOptions::empty(),
        );
    }
    let r = rustix::process::test_kill_process_group(Pid::from_raw(pgid as i32).unwrap());
    assert_eq!(r, Err(rustix::io::Errno::SRCH));
    (stdout(&o), took)
}

#[test]
fn cancel_kills_the_whole_process_group() {
    let (out, _) = cancel_tree("sleep 100 & sleep 100 & wait", "5s");
    assert!(out.contains("within the 5s grace"), "{out}");
}

#[test]
fn cancel_escalates_to_sigkill_after_the_grace() {
    let (out, took) = cancel_tree("trap '' TERM; sleep 100 & sleep 100 & wait", "500ms");
    assert!(out.contains("SIGKILL"), "{out}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
}

#[test]
fn cancel_leaves_a_finished_job_as_is() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "done", 1000, 10_000);
    finish(&e, "done", Status::Succeeded, 0);
    let o = tether(&e, &["cancel", "done"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("already succeeded"), "{}", stdout(&o));
    assert!(stdout(&o).contains("left as is"));
    assert_eq!(load(&e, "done").status, Status::Succeeded);
    // The holder was never signalled.
    assert!(kids.0[0].try_wait().unwrap().is_none());
}

#[test]
fn a_reused_holder_pid_is_judged_lost_and_never_signalled() {
    let e = env();
    let mut kids = Kids::default();
    let pid = kids.sleep(120);
    e.store
        .create(&record("reused", pid, "linux:1", 1000, 10_000))
        .unwrap();
    let v = json1(&tether(&e, &["status", "--json", "reused"]));
    assert_eq!(v["status"], "lost");
    assert_eq!(v["reason"], "pid-reused");
    let o = tether(&e, &["cancel", "reused"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("already lost"), "{}", stdout(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        kids.0[0].try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
}

#[test]
fn cancel_refuses_a_child_it_cannot_prove() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "strange", 1000, 10_000);
    let _r = Renewer::start(&e, "strange", Duration::from_millis(300));
    let other = kids.sleep(120);
    with_child(
        &e,
        "strange",
        RecChild {
            pid: other,
            start: "linux:1".into(),
            pgid: other,
            extra: Default::default(),
        },
    );
    let before = load(&e, "strange");
    let o = tether(&e, &["cancel", "strange"]);
    assert_eq!(code(&o), 11, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("refusing"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
    let after = load(&e, "strange");
    assert_eq!(after.status, before.status);
    assert_eq!(after.reason, None);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        kids.0[1].try_wait().unwrap().is_none(),
        "the unproven child was signalled"
    );
    assert!(
        kids.0[0].try_wait().unwrap().is_none(),
        "the holder was signalled"
    );
}
