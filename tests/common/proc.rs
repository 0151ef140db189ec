//! What the tests read about processes. `/proc/<pid>/stat` is parsed in one place, the library's
//! (`tether::process`), so a test and the code it tests cannot disagree on what "alive" means.

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
