//! What the tests read about processes. `/proc/<pid>/stat` is parsed in one place, the library's
//! (`tether::process`), so a test and the code it tests cannot disagree on what "alive" means.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tether::verdict::Probe;

/// The process exists and is not a zombie (protocol.md 8), as `tether::process::probe` sees it.
pub fn alive(pid: u32) -> bool {
    matches!(tether::process::probe(pid), Probe::Alive { .. })
}

/// `kill(-pgid, 0)` fails with ESRCH: no process is left in the group.
pub fn group_gone(pgid: u32) -> bool {
    let p = Pid::from_raw(pgid as i32).unwrap();
    rustix::process::test_kill_process_group(p) == Err(rustix::io::Errno::SRCH)
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, sig: Signal) {
    let p = Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(p, sig);
}

/// Kills a process that is not (necessarily) our child, but only if its start time is still
/// `start` (a detached wrapper, its child): continued, killed (with its group when `group`), and
/// waited for up to 5 s. A pid reused by another process is left alone.
pub fn kill_proven(pid: u32, start: &str, group: bool) {
    kill_proven_within(pid, start, group, Duration::from_secs(5));
}

/// [`kill_proven`], waiting up to `limit` for the process to go.
pub fn kill_proven_within(pid: u32, start: &str, group: bool, limit: Duration) {
    let ns = tether::process::pid_ns();
    if let Ok(p) = tether::process::Pinned::open(pid, start, ns.as_deref()) {
        let _ = p.signal(Signal::CONT);
        if group {
            let _ = p.signal_group(pid, Signal::KILL);
        }
        let _ = p.signal(Signal::KILL);
        p.wait_exit(limit);
    }
}

/// Stops our own child: SIGTERM, then SIGKILL if it has not exited within `grace`; always reaped.
/// Not yet reaped, the child's pid cannot have been reused, so signalling it is safe.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child.id(), Signal::TERM);
    let gone = crate::common::poll(grace, Duration::from_millis(20), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !gone {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits up to `limit` for our own child, its stdout and stderr piped, to end; returns its output
/// and when it ended. Past the bound it is killed (by identity) and the test fails, naming `what`
/// and showing what it wrote to stderr. A thread reads the pipes, so a chatty child cannot block.
pub fn finish_within(child: Child, limit: Duration, what: &str) -> (Output, Instant) {
    let pid = child.id();
    let start = tether::process::start_token(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let o = child.wait_with_output();
        let _ = tx.send((o, Instant::now()));
    });
    match rx.recv_timeout(limit) {
        Ok((o, at)) => (o.unwrap(), at),
        Err(_) => {
            if let Some(start) = start {
                kill_proven(pid, &start, false);
            }
            let (o, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            panic!(
                "{what} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&o.unwrap().stderr)
            );
        }
    }
}

/// Every process in group `pgid` (zombies included), each as the library's `/proc/<pid>/stat`
/// parser reads it. Listed here from `/proc`, not through `tether::process::group_members`, so a
/// test of the code that lists groups does not trust that listing.
pub fn group(pgid: u32) -> Vec<(u32, tether::testing::platform::Stat)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        match tether::testing::platform::stat(pid) {
            Some(st) if st.pgrp == pgid => v.push((pid, st)),
            _ => {}
        }
    }
    v
}
