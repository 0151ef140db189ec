//! Process identity and signals by identity (protocol.md section 8): what the verdict and
//! `cancel` need to know about a pid, built on the OS-specific pieces in `platform`.
//!
//! A process is only signalled through a `Pinned` handle, proven by its start time (and pid
//! namespace) to be the one a record names, so a signal can never hit a pid reused after the check.

use std::io;
use std::time::Duration;

use crate::platform;
use crate::verdict::{Probe, Reader};

/// What identifies the current process as a lease holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    pub start: String,
    pub boot_id: String,
    pub host: String,
    pub time_ns: Option<String>,
    pub pid_ns: Option<String>,
}

impl Identity {
    /// This identity as the record's lease holder.
    pub fn holder(self) -> crate::record::Holder {
        crate::record::Holder {
            pid: self.pid,
            start: self.start,
            boot_id: self.boot_id,
            host: self.host,
            time_ns: self.time_ns,
            pid_ns: self.pid_ns,
            extra: Default::default(),
        }
    }
}

/// Identity of the calling process.
pub fn current() -> io::Result<Identity> {
    let pid = std::process::id();
    // Our own entry, not `/proc/<pid>`: under a `/proc` mounted for another pid namespace that
    // number names some other process.
    let start = platform::stat_self()
        .map(|st| st.start)
        .ok_or_else(|| io::Error::other("cannot read this process's own start time"))?;
    Ok(Identity {
        pid,
        start,
        boot_id: boot_id(),
        host: host(),
        time_ns: time_ns(),
        pid_ns: pid_ns(),
    })
}

/// The reader's side of the verdict: machine identity plus both clocks, read now.
///
/// The machine identity is read once per process: the boot id cannot change under a running
/// process, and re-reading three files per record made listing 10,000 jobs measurably slower.
pub fn reader() -> Reader {
    Reader {
        pid_ns: pid_ns(),
        ..reader_without_pid_ns()
    }
}

/// `reader()` with the pid namespace left unread (None, which the verdict treats as unknown).
/// Telling it costs a read of `/proc/self/status` and a readlink, and only a record the reader
/// may probe needs it (`reader::settle` fills it in there); output that shows only ages and
/// expiries never looks at it.
pub fn reader_without_pid_ns() -> Reader {
    static MACHINE: std::sync::OnceLock<(String, String, Option<String>)> =
        std::sync::OnceLock::new();
    let (boot_id, host, time_ns) = MACHINE
        .get_or_init(|| (boot_id(), host(), time_ns()))
        .clone();
    Reader {
        boot_id,
        host,
        time_ns,
        pid_ns: None,
        now: crate::clock::Now::read(),
    }
}

/// Whether `pid` exists, and its start token (protocol.md 8: a zombie counts as gone).
pub fn probe(pid: u32) -> Probe {
    if pid == 0 || pid > i32::MAX as u32 {
        return Probe::Gone;
    }
    match platform::stat(pid) {
        Some(st) if st.zombie => Probe::Gone,
        Some(st) => Probe::Alive {
            start: Some(st.start),
        },
        None => match exists_by_signal(pid) {
            true => Probe::Alive { start: None },
            false => Probe::Gone,
        },
    }
}

/// The start-time token of a live, non-zombie `pid`.
pub fn start_token(pid: u32) -> Option<String> {
    match probe(pid) {
        Probe::Alive { start } => start,
        Probe::Gone | Probe::Unseen => None,
    }
}

/// The start-time token of `pid` even if it is already a zombie: the wrapper reads its own child's
/// token right after spawning, when a short command may have exited (but cannot be reaped yet).
pub fn start_token_any(pid: u32) -> Option<String> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    platform::stat(pid).map(|st| st.start)
}

/// `kill(pid, 0)`: ESRCH means gone, EPERM means alive but not ours.
fn exists_by_signal(pid: u32) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

pub fn boot_id() -> String {
    platform::boot_id().unwrap_or_else(|| "unknown".to_owned())
}

pub fn host() -> String {
    let u = rustix::system::uname();
    u.nodename().to_string_lossy().into_owned()
}

pub fn time_ns() -> Option<String> {
    platform::time_ns()
}

/// The pid namespace this process sees pids in, or None when that cannot be told (protocol.md 8):
/// only a reader whose pids mean the same as the holder's may probe the holder's pid.
pub fn pid_ns() -> Option<String> {
    static PID_NS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PID_NS.get_or_init(platform::pid_ns).clone()
}

/// Why a process could not be proven to be the one a record names.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("pid {0} is not a process tether will ever signal")]
    Forbidden(u32),
    #[error("process {0} no longer exists")]
    Gone(u32),
    #[error(
        "process {pid} started at {found}, not at {expected} as recorded: it is not the job's process"
    )]
    Mismatch {
        pid: u32,
        expected: String,
        found: String,
    },
    #[error("cannot read the start time of process {0}, so it cannot be proven to be the job's")]
    Unknown(u32),
    #[error(
        "process {pid} is numbered in pid namespace {}, and this process's is {}: that pid may be any process here",
        .recorded.as_deref().unwrap_or("unknown (recorded by an older tether)"),
        .ours.as_deref().unwrap_or("unknown")
    )]
    OtherNamespace {
        pid: u32,
        recorded: Option<String>,
        ours: Option<String>,
    },
    #[error("cannot signal process {pid}: {err}")]
    Io { pid: u32, err: io::Error },
}

/// A process proven (by start time) to be the one a record names, pinned so its pid cannot be reused
/// while we hold it (Linux: a pidfd opened before the start time was checked).
pub struct Pinned {
    pid: u32,
    start: String,
    inner: platform::Pin,
}

impl Pinned {
    /// Pins `pid` if it is provably the process a record names: numbered in `pid_ns` (the
    /// record's `holder.pid_ns`, which also numbers its child), which must be known and be ours,
    /// and started at `expected_start`.
    pub fn open(
        pid: u32,
        expected_start: &str,
        pid_ns: Option<&str>,
    ) -> Result<Pinned, IdentityError> {
        if pid < 2 || pid > i32::MAX as u32 {
            return Err(IdentityError::Forbidden(pid));
        }
        let ours = self::pid_ns();
        if pid_ns.is_none() || pid_ns != ours.as_deref() {
            return Err(IdentityError::OtherNamespace {
                pid,
                recorded: pid_ns.map(String::from),
                ours,
            });
        }
        let inner = platform::Pin::open(pid).map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::SRCH.raw_os_error() => {
                IdentityError::Gone(pid)
            }
            _ => IdentityError::Io { pid, err: e },
        })?;
        // Checked after pinning: if the pid was reused before the pin, the token differs; after it,
        // the pid cannot be reused while `inner` lives.
        match probe(pid) {
            Probe::Gone => Err(IdentityError::Gone(pid)),
            Probe::Alive { start: None } | Probe::Unseen => Err(IdentityError::Unknown(pid)),
            Probe::Alive { start: Some(found) } if found != expected_start => {
                Err(IdentityError::Mismatch {
                    pid,
                    expected: expected_start.to_owned(),
                    found,
                })
            }
            Probe::Alive { .. } => Ok(Pinned {
                pid,
                start: expected_start.to_owned(),
                inner,
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn signal(&self, sig: rustix::process::Signal) -> io::Result<()> {
        self.inner.signal(sig)
    }

    /// Signals the process group this pinned process leads.
    ///
    /// A pidfd does not reserve a pid number once its process is reaped, so the group id is only
    /// trusted while the leader still holds it: its `/proc` entry (alive or zombie) must show the
    /// recorded start time right before the signal. A leader that was already reaped gets no group
    /// signal from here; its parent (the wrapper, which keeps it unreaped with `WNOWAIT` while it
    /// signals the group) is the one process that can still do so safely.
    pub fn signal_group(&self, pgid: u32, sig: rustix::process::Signal) -> io::Result<()> {
        if pgid != self.pid {
            return Err(io::Error::other(format!(
                "process group {pgid} is not led by pinned process {}; refusing to signal it",
                self.pid
            )));
        }
        match platform::stat(pgid) {
            Some(st) if st.start == self.start => {}
            _ => return Ok(()), // the leader is reaped: the number may be someone else's now
        }
        let p = rustix::process::Pid::from_raw(pgid as i32)
            .ok_or_else(|| io::Error::other("bad pgid"))?;
        match rustix::process::kill_process_group(p, sig) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the process has exited (became a zombie or was reaped), up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        self.inner.wait_exit(timeout)
    }

    /// A descriptor that becomes readable when the process exits (a pidfd), for callers that
    /// poll it alongside other events; None where the platform has none (they poll instead).
    pub fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.poll_fd()
    }
}

/// Whether any live process is in group `pgid`. Where the group can be listed, zombies do not
/// count; where the listing fails (no `/proc`), `kill(-pgid, 0)` decides, which counts them.
pub fn group_alive(pgid: u32) -> bool {
    if let Some(members) = list_group(pgid) {
        return !members.is_empty();
    }
    let Some(p) = rustix::process::Pid::from_raw(pgid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process_group(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// A live (not zombie) process found in a process group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: u32,
    pub ppid: u32,
    pub start: String,
}

/// Every live member of process group `pgid`. Zombies are left out: they are dead, and whether they
/// are reaped is up to their parent (in a container, pid 1 may never reap them).
pub fn group_members(pgid: u32) -> Vec<Member> {
    list_group(pgid).unwrap_or_default()
}

/// The live members of group `pgid`; None when the platform's listing failed.
fn list_group(pgid: u32) -> Option<Vec<Member>> {
    if pgid < 2 || pgid > i32::MAX as u32 {
        return Some(Vec::new());
    }
    let members = platform::group_candidates(pgid)?
        .into_iter()
        .filter_map(|pid| {
            let st = platform::stat(pid)?;
            (st.pgrp == pgid && !st.zombie).then_some(Member {
                pid,
                ppid: st.ppid,
                start: st.start,
            })
        })
        .collect();
    Some(members)
}

/// Whether `pid`'s environment (as it was at exec) holds the entry `KEY=VALUE` exactly; None when it
/// cannot be read (another user's process, gone, or a platform without the facility).
pub fn environ_has(pid: u32, entry: &str) -> Option<bool> {
    let env = platform::environ(pid)?;
    Some(env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_self_and_a_dead_child() {
        let me = current().unwrap();
        assert_eq!(
            probe(me.pid),
            Probe::Alive {
                start: Some(me.start.clone())
            }
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie, which must count as gone.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(probe(pid), Probe::Gone);
        child.wait().unwrap();
        assert_eq!(probe(pid), Probe::Gone);
        assert_eq!(probe(0), Probe::Gone);
        assert_eq!(probe(u32::MAX), Probe::Gone);
    }

    #[test]
    fn pin_refuses_wrong_start_and_low_pids() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_token(pid).unwrap();
        let ours = pid_ns();
        let ns = ours.as_deref();
        assert!(matches!(
            Pinned::open(pid, "linux:1", ns),
            Err(IdentityError::Mismatch { .. })
        ));
        assert!(matches!(
            Pinned::open(1, "linux:1", ns),
            Err(IdentityError::Forbidden(1))
        ));
        assert!(matches!(
            Pinned::open(0, "x", ns),
            Err(IdentityError::Forbidden(0))
        ));
        assert!(matches!(
            Pinned::open(pid, &start, None),
            Err(IdentityError::OtherNamespace { .. })
        ));
        assert!(matches!(
            Pinned::open(pid, &start, Some("pid:[1]")),
            Err(IdentityError::OtherNamespace { .. })
        ));
        let pin = Pinned::open(pid, &start, ns).unwrap();
        pin.signal(rustix::process::Signal::KILL).unwrap();
        assert!(pin.wait_exit(Duration::from_secs(10)));
        child.wait().unwrap();
    }
}
