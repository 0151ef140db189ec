//! Process identity and signals: the platform module (protocol.md section 8).
//!
//! Everything that differs between Linux and macOS lives here, behind a few functions: whether a pid
//! exists, its start-time token, the boot id, the host name, and a handle that pins a process so a
//! signal can never hit a pid reused after we checked it. Linux is tested; the macOS half follows the
//! same contract and is compiled only there.

use std::io;
use std::time::Duration;

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
    let start = sys::stat_self()
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
    static MACHINE: std::sync::OnceLock<(String, String, Option<String>)> =
        std::sync::OnceLock::new();
    let (boot_id, host, time_ns) = MACHINE
        .get_or_init(|| (boot_id(), host(), time_ns()))
        .clone();
    Reader {
        boot_id,
        host,
        time_ns,
        pid_ns: pid_ns(),
        now: crate::clock::Now::read(),
    }
}

/// Whether `pid` exists, and its start token (protocol.md 8: a zombie counts as gone).
pub fn probe(pid: u32) -> Probe {
    if pid == 0 || pid > i32::MAX as u32 {
        return Probe::Gone;
    }
    match sys::stat(pid) {
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
    sys::stat(pid).map(|st| st.start)
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
    sys::boot_id().unwrap_or_else(|| "unknown".to_owned())
}

pub fn host() -> String {
    let u = rustix::system::uname();
    u.nodename().to_string_lossy().into_owned()
}

pub fn time_ns() -> Option<String> {
    sys::time_ns()
}

/// The pid namespace this process sees pids in, or None when that cannot be told (protocol.md 8):
/// only a reader whose pids mean the same as the holder's may probe the holder's pid.
pub fn pid_ns() -> Option<String> {
    static PID_NS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PID_NS.get_or_init(sys::pid_ns).clone()
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
    inner: sys::Pin,
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
        let inner = sys::Pin::open(pid).map_err(|e| match e.raw_os_error() {
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
        match sys::stat(pgid) {
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
        self.inner.wait_exit(self.pid, timeout)
    }

    /// The pidfd, for callers that poll it alongside other events (Linux only).
    #[cfg(target_os = "linux")]
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inner.0.as_fd()
    }
}

/// Whether any live process is in group `pgid`. Where processes can be listed (Linux), zombies do
/// not count; elsewhere `kill(-pgid, 0)` decides, which counts them.
pub fn group_alive(pgid: u32) -> bool {
    if sys::CAN_LIST {
        return !group_members(pgid).is_empty();
    }
    let Some(p) = rustix::process::Pid::from_raw(pgid as i32) else {
        return false;
    };
    match rustix::process::test_kill_process_group(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

struct Stat {
    zombie: bool,
    start: String,
    ppid: u32,
    pgrp: u32,
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
    if pgid < 2 || pgid > i32::MAX as u32 {
        return Vec::new();
    }
    sys::all_pids()
        .into_iter()
        .filter_map(|pid| {
            let st = sys::stat(pid)?;
            (st.pgrp == pgid && !st.zombie).then_some(Member {
                pid,
                ppid: st.ppid,
                start: st.start,
            })
        })
        .collect()
}

/// Whether `pid`'s environment (as it was at exec) holds the entry `KEY=VALUE` exactly; None when it
/// cannot be read (another user's process, gone, or a platform without the facility).
pub fn environ_has(pid: u32, entry: &str) -> Option<bool> {
    let env = sys::environ(pid)?;
    Some(env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
}

#[cfg(target_os = "linux")]
mod sys {
    use super::Stat;
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    /// Parses `/proc/<pid>/stat`: fields after the last `)`, so a command name with spaces or
    /// parentheses cannot shift them. Field 3 is the state, field 22 the start time in ticks.
    pub(super) fn parse_stat(line: &str) -> Option<Stat> {
        let rest = &line[line.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let state = *fields.first()?;
        let start: u64 = fields.get(19)?.parse().ok()?;
        Some(Stat {
            zombie: matches!(state, "Z" | "X" | "x"),
            start: format!("linux:{start}"),
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
        })
    }

    pub(super) const CAN_LIST: bool = true;

    /// Every pid in `/proc` (this pid namespace's view).
    pub(super) fn all_pids() -> Vec<u32> {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    pub(super) fn environ(pid: u32) -> Option<Vec<u8>> {
        std::fs::read(format!("/proc/{pid}/environ")).ok()
    }

    pub(super) fn stat(pid: u32) -> Option<Stat> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&s)
    }

    pub(super) fn stat_self() -> Option<Stat> {
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// `/proc/self/ns/pid` (`pid:[INODE]`), but only when `/proc` itself belongs to that namespace:
    /// `unshare --pid --fork` without `--mount-proc` leaves the parent's `/proc`, where pid numbers
    /// are the parent namespace's. `NSpid` lists this process's pid from the namespace of the `/proc`
    /// mount down to its own: one entry, equal to `getpid()`, means they are the same namespace.
    pub(super) fn pid_ns() -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
        let ids: Vec<&str> = nspid.split_ascii_whitespace().collect();
        if ids != [std::process::id().to_string()] {
            return None;
        }
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let link = link.to_str()?;
        (link.starts_with("pid:[") && link.ends_with(']')).then(|| link.to_owned())
    }

    pub(super) fn boot_id() -> Option<String> {
        let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_owned())
    }

    pub(super) fn time_ns() -> Option<String> {
        std::fs::read_link("/proc/self/ns/time")
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    pub(super) struct Pin(pub(super) OwnedFd);

    impl Pin {
        pub(super) fn open(pid: u32) -> io::Result<Pin> {
            let p = rustix::process::Pid::from_raw(pid as i32)
                .ok_or_else(|| io::Error::other("bad pid"))?;
            Ok(Pin(rustix::process::pidfd_open(
                p,
                rustix::process::PidfdFlags::empty(),
            )?))
        }

        pub(super) fn signal(&self, sig: rustix::process::Signal) -> io::Result<()> {
            match rustix::process::pidfd_send_signal(&self.0, sig) {
                Ok(()) => Ok(()),
                Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        pub(super) fn wait_exit(&self, _pid: u32, timeout: Duration) -> bool {
            use rustix::event::{PollFd, PollFlags, poll};
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                };
                let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
                match poll(&mut fds, Some(&ts)) {
                    Ok(n) if n > 0 => return true,
                    Ok(_) => return false,
                    Err(e) if e == rustix::io::Errno::INTR => continue,
                    Err(_) => return false,
                }
            }
        }
    }
}

#[cfg(target_os = "macos")]
mod sys {
    //! macOS: start time from `proc_pidinfo(PROC_PIDTBSDINFO)`, boot session from sysctl. There are no
    //! pidfds; the pin re-checks the start time immediately before each signal, which narrows but does
    //! not close the reuse window. Not exercised by CI (Linux only).
    use super::Stat;
    use std::io;
    use std::time::Duration;

    pub(super) fn stat(pid: u32) -> Option<Stat> {
        let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
        let n = unsafe {
            libc::proc_pidinfo(
                pid as i32,
                libc::PROC_PIDTBSDINFO,
                0,
                &mut info as *mut _ as *mut libc::c_void,
                size,
            )
        };
        if n != size {
            return None;
        }
        Some(Stat {
            ppid: info.pbi_ppid,
            pgrp: info.pbi_pgid,
            zombie: info.pbi_status == libc::SZOMB,
            start: format!(
                "macos:{}.{:06}",
                info.pbi_start_tvsec, info.pbi_start_tvusec
            ),
        })
    }

    pub(super) fn boot_id() -> Option<String> {
        let mut buf = [0u8; 64];
        let mut len = buf.len();
        let name = c"kern.bootsessionuuid";
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                buf.as_mut_ptr() as *mut _,
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 || len == 0 {
            return None;
        }
        let s = String::from_utf8_lossy(&buf[..len])
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        (!s.is_empty()).then_some(s)
    }

    pub(super) fn time_ns() -> Option<String> {
        None
    }

    pub(super) fn stat_self() -> Option<Stat> {
        stat(std::process::id())
    }

    /// macOS has no pid namespaces: every process of a boot sees the same pids.
    pub(super) fn pid_ns() -> Option<String> {
        Some("global".to_owned())
    }

    pub(super) const CAN_LIST: bool = false;

    /// Not implemented on macOS yet (`proc_listpids` with `PROC_PGRP_ONLY` would list a group):
    /// without a listing, `cancel` of a lost job finds no survivors there and says so.
    pub(super) fn all_pids() -> Vec<u32> {
        Vec::new()
    }

    /// Not implemented on macOS yet (`sysctl KERN_PROCARGS2` holds it): no member can be tied to a
    /// job by its environment there.
    pub(super) fn environ(_pid: u32) -> Option<Vec<u8>> {
        None
    }

    pub(super) struct Pin {
        pid: u32,
        start: Option<String>,
    }

    impl Pin {
        pub(super) fn open(pid: u32) -> io::Result<Pin> {
            Ok(Pin {
                pid,
                start: stat(pid).map(|s| s.start),
            })
        }

        pub(super) fn signal(&self, sig: rustix::process::Signal) -> io::Result<()> {
            if stat(self.pid).map(|s| s.start) != self.start {
                return Ok(()); // it exited; the pid is no longer the one we proved
            }
            let p = rustix::process::Pid::from_raw(self.pid as i32)
                .ok_or_else(|| io::Error::other("bad pid"))?;
            rustix::process::kill_process(p, sig).map_err(Into::into)
        }

        pub(super) fn wait_exit(&self, pid: u32, timeout: Duration) -> bool {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                if !matches!(stat(pid), Some(s) if !s.zombie && Some(&s.start) == self.start.as_ref())
                {
                    return true;
                }
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn stat_parsing_survives_odd_names() {
        let line =
            "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let st = sys::parse_stat(line).unwrap();
        assert_eq!(st.start, "linux:98765");
        assert!(!st.zombie);
        let z = "9 (x) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
        assert!(sys::parse_stat(z).unwrap().zombie);
        assert!(sys::parse_stat("garbage").is_none());
    }

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
