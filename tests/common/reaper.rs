//! The torture tests' subreaper: the test process becomes a child subreaper, and one thread reaps
//! every child that ends (including orphans: the children of SIGKILLed wrappers and the detached
//! wrappers whose launcher exited). PID 1 on this machine never reaps orphans, so without this a
//! soak run would leave thousands of zombies behind. Because that thread owns `wait`, processes
//! are started with [`spawn`] and waited for with [`wait`], never with `std`'s `Child::wait`; only
//! the test binaries that call into this module become subreapers.
//!
//! Reaping happens only under the table's lock, so "not in the table" proves the pid is still ours
//! (alive or a zombie): [`kill`] checks that under the same lock, so it can never hit a reused pid.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitIdOptions, WaitOptions};

use super::cleanup::Registered;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

impl Ended {
    pub fn code(self) -> Option<i32> {
        match self {
            Ended::Code(c) => Some(c),
            Ended::Signal(_) => None,
        }
    }
}

struct Table {
    ended: Mutex<HashMap<u32, Ended>>,
    cv: Condvar,
    /// Children not reaped yet, registered for the interrupt handler (`cleanup`).
    live: Mutex<HashMap<u32, Registered>>,
}

/// Makes this test process the subreaper, with its reaping thread, before it starts anything.
pub fn start() {
    table();
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        tether::testing::platform::become_subreaper().expect("PR_SET_CHILD_SUBREAPER");
        std::thread::spawn(reaper);
        Table {
            ended: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            live: Mutex::new(HashMap::new()),
        }
    })
}

fn reaper() {
    let t = table();
    loop {
        // Block until some child has ended, without reaping it...
        match rustix::process::waitid(
            rustix::process::WaitId::All,
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        // ...then reap under the lock, so `kill` never races a reap.
        let mut m = t.ended.lock().unwrap();
        while let Ok(Some((pid, st))) = rustix::process::wait(WaitOptions::NOHANG) {
            let e = match (st.exit_status(), st.terminating_signal()) {
                (Some(c), _) => Ended::Code(c),
                (None, Some(s)) => Ended::Signal(s),
                _ => continue,
            };
            let pid = pid.as_raw_nonzero().get() as u32;
            m.insert(pid, e);
            t.live.lock().unwrap().remove(&pid);
        }
        drop(m);
        t.cv.notify_all();
    }
}

/// Starts `cmd` and returns its pid. Its end is collected by the reaper thread.
pub fn spawn(cmd: &mut Command) -> u32 {
    let t = table();
    let mut m = t.ended.lock().unwrap();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    // A stale entry from an earlier process with the same pid: it ended before this one existed.
    m.remove(&pid);
    // Under the lock the reaper cannot have reaped it yet: the start token read now is its own.
    if let Some(r) = Registered::child(pid) {
        t.live.lock().unwrap().insert(pid, r);
    }
    drop(m);
    drop(child); // std does not wait on drop; the reaper thread does
    pid
}

/// Waits up to `limit` for a process started by [`spawn`] to end.
pub fn wait(pid: u32, limit: Duration) -> Option<Ended> {
    let t = table();
    let deadline = Instant::now() + limit;
    let mut m = t.ended.lock().unwrap();
    loop {
        if let Some(e) = m.get(&pid) {
            return Some(*e);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        m = t.cv.wait_timeout(m, deadline - now).unwrap().0;
    }
}

/// Has a process started by [`spawn`] ended (and been reaped)?
pub fn ended(pid: u32) -> Option<Ended> {
    table().ended.lock().unwrap().get(&pid).copied()
}

/// Signals a process started by [`spawn`] if it has not been reaped yet (so the pid is still it).
pub fn kill(pid: u32, sig: Signal) -> bool {
    let m = table().ended.lock().unwrap();
    if m.contains_key(&pid) {
        return false;
    }
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), sig).is_ok()
}

/// Signals the process group led by a process started by [`spawn`] (in its own group), while the
/// leader is unreaped.
pub fn kill_group(pgid: u32, sig: Signal) {
    let m = table().ended.lock().unwrap();
    if m.contains_key(&pgid) {
        return;
    }
    let _ = rustix::process::kill_process_group(Pid::from_raw(pgid as i32).unwrap(), sig);
}
