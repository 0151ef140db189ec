//! Linux: identity from `/proc`, pidfds, inotify, timerfd, `PR_SET_PDEATHSIG`, `SO_PASSCRED`.
//! Under the `portable` feature the process handle, file events, timer and pipe come from
//! `posix.rs` instead, as on macOS.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::Stat;

#[cfg(feature = "portable")]
pub use super::posix::{
    ChildHandle, DirEvents, Pin, periodic_timer, pipe, read_signal, signal_fd, unblock_signals,
};
#[cfg(not(feature = "portable"))]
pub use native::{ChildHandle, DirEvents, Pin, periodic_timer, pipe};
#[cfg(not(feature = "portable"))]
pub use signals::{read_signal, signal_fd, unblock_signals};

// The signalfd half, in its own file so this one stays under the size limit.
#[cfg(not(feature = "portable"))]
#[path = "linux_signals.rs"]
mod signals;

// The renewal timer's tick, pause and resume (the idle wait's), likewise.
#[path = "linux_timer.rs"]
mod timer;
pub use timer::{pause_timer, resume_timer, take_tick};

/// Parses a `/proc/<pid>/stat` line, the one parser of it in tether: fields are counted after the
/// last `)`, so a command name with spaces or parentheses cannot shift them. Field 3 is the state,
/// 4 the parent, 5 the process group, 22 the start time in clock ticks since boot.
pub fn parse_stat(line: &str) -> Option<Stat> {
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

/// CPU time a whole process has used, in ns: all its threads, exited ones included (its CPU-time
/// clock from `clock_getcpuclockid`; `/proc/PID/schedstat` would count one thread). None once it
/// is gone. For the benchmark's idle-cost rows.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the call only writes the clock id through the pointer it is given.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the call only writes the time through the pointer it is given.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return None;
    }
    Some(u64::try_from(t.tv_sec).ok()? * 1_000_000_000 + u64::try_from(t.tv_nsec).ok()?)
}

/// How a directory is opened only to go through it or to name it: `O_PATH` needs no read
/// permission.
pub const OPEN_THROUGH: rustix::fs::OFlags = rustix::fs::OFlags::PATH;

/// Opens the directory `path` readable in one call, or None when any component of it is a
/// symbolic link (or anything else goes wrong): `openat2` with `RESOLVE_NO_SYMLINKS` (Linux
/// 5.6). What it opens is exactly what a walk one component at a time without following links
/// would reach, so a caller that walks only on None decides the same as the walk alone, without
/// its two calls per component.
pub fn open_dir_without_links(path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .ok()
}

/// Every name in the directory `dir` but `.` and `..`, read through a descriptor of its own (the
/// caller's offset is untouched) into a 64 KiB buffer: a 1,000-job `jobs/` in one `getdents64`
/// and the one that ends it, where `rustix::fs::Dir`'s growing buffer took seven calls.
pub fn dir_names(dir: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use rustix::fs::{Mode, OFlags, RawDir};
    use std::os::unix::ffi::OsStrExt;
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buf = Vec::<u8>::with_capacity(64 * 1024);
    let mut entries = RawDir::new(&fd, buf.spare_capacity_mut());
    let mut out = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// A path that names the open file `fd` itself, whatever has been renamed since (for APIs that
/// only take paths, such as inotify's).
pub fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A short path to `name` in the directory `dir` that resolves through the descriptor (so not
/// through a component swapped since `dir` was opened); None without `/proc`.
pub fn path_at(dir: std::os::fd::BorrowedFd<'_>, name: &str) -> Option<std::path::PathBuf> {
    let p = fd_path(dir);
    p.is_dir().then(|| p.join(name))
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&read_proc(&format!("/proc/{pid}/stat"), 1024)?)
}

/// This process's own entry: `/proc/self` names it whatever pid namespace `/proc` belongs to.
pub fn stat_self() -> Option<Stat> {
    parse_stat(&read_proc("/proc/self/stat", 1024)?)
}

/// Reads a small `/proc` text file whole: open, one `read`, close. `std::fs::read_to_string`
/// sees a size of 0 there and reads in growing steps (a `statx` and six `read`s for one `stat`
/// line, on every probe of a holder). These files are produced whole by the first read and end in
/// a newline; a read that fills `cap` bytes or does not end in one goes on to the end.
fn read_proc(path: &str, cap: usize) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; cap];
    let n = f.read(&mut buf).ok()?;
    buf.truncate(n);
    if n == cap || !buf.ends_with(b"\n") {
        f.read_to_end(&mut buf).ok()?;
    }
    String::from_utf8(buf).ok()
}

/// The pids that may be in process group `pgid`, for the caller to check one by one with
/// [`stat`]: here every pid in `/proc` (this pid namespace's view), as `/proc` has no index by
/// group. None when `/proc` cannot be listed.
pub fn group_candidates(_pgid: u32) -> Option<Vec<u32>> {
    let rd = std::fs::read_dir("/proc").ok()?;
    Some(
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// A process's environment as it was at exec (NUL-separated), if readable.
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// `/proc/self/ns/pid` (`pid:[INODE]`), but only when `/proc` itself belongs to that namespace:
/// `unshare --pid --fork` without `--mount-proc` leaves the parent's `/proc`, where pid numbers
/// are the parent namespace's. `NSpid` lists this process's pid from the namespace of the `/proc`
/// mount down to its own: one entry, equal to `getpid()`, means they are the same namespace.
pub fn pid_ns() -> Option<String> {
    let status = read_proc("/proc/self/status", 4096)?;
    let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Vec<&str> = nspid.split_ascii_whitespace().collect();
    if ids != [std::process::id().to_string()] {
        return None;
    }
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?;
    (link.starts_with("pid:[") && link.ends_with(']')).then(|| link.to_owned())
}

pub fn boot_id() -> Option<String> {
    let s = read_proc("/proc/sys/kernel/random/boot_id", 64)?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

pub fn time_ns() -> Option<String> {
    std::fs::read_link("/proc/self/ns/time")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// In a child between fork and exec: SIGKILL it when the spawning *thread* exits, so a killed
/// wrapper takes its child along. Only raw syscalls: async-signal-safe.
pub fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    Ok(())
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), as the
/// test harness does so no zombie outlives a test. Returns whether the platform can.
pub fn become_subreaper() -> io::Result<bool> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(true)
}

/// Asks the kernel to attach each datagram's sender credentials (SO_PASSCRED).
pub fn enable_sender_uids(sock: impl AsFd) -> io::Result<()> {
    rustix::net::sockopt::set_socket_passcred(sock, true)?;
    Ok(())
}

/// Reads one datagram without blocking; returns its length and its sender's uid (None when the
/// kernel attached no credentials).
pub fn recv_with_uid(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(&sock, &mut iov, &mut control, RecvFlags::DONTWAIT)?;
    let mut sender = None;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(c) = m {
            sender = Some(c.uid.as_raw());
        }
    }
    Ok((msg.bytes.min(buf.len()), sender))
}

/// Sends a datagram to a socket in the abstract namespace (`@name` in `NOTIFY_SOCKET`).
pub fn send_to_abstract(
    sock: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    msg: &[u8],
) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr)?;
    Ok(())
}

#[cfg(not(feature = "portable"))]
mod native {
    use std::ffi::CStr;
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, WaitIdStatus};

    use crate::platform::{FileEvent, Interest};

    fn pidfd(pid: u32) -> io::Result<OwnedFd> {
        let p = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::other(format!("{pid} is not a process id")))?;
        Ok(rustix::process::pidfd_open(p, PidfdFlags::empty())?)
    }

    /// A process held by a pidfd: a signal through it can never reach a reused pid.
    pub struct Pin(OwnedFd);

    impl Pin {
        pub fn open(pid: u32) -> io::Result<Pin> {
            Ok(Pin(pidfd(pid)?))
        }

        pub fn signal(&self, sig: Signal) -> io::Result<()> {
            match rustix::process::pidfd_send_signal(&self.0, sig) {
                Ok(()) => Ok(()),
                Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        /// Sleeps in `poll` on the pidfd (readable once the process exits), up to `timeout`.
        pub fn wait_exit(&self, timeout: Duration) -> bool {
            use rustix::event::{PollFd, PollFlags, poll};
            let deadline = Instant::now() + timeout;
            loop {
                let ts =
                    crate::platform::timespec(deadline.saturating_duration_since(Instant::now()));
                let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
                match poll(&mut fds, Some(&ts)) {
                    Ok(n) if n > 0 => return true,
                    Ok(_) => return false,
                    Err(e) if e == rustix::io::Errno::INTR => continue,
                    Err(_) => return false,
                }
            }
        }

        /// The pidfd, for callers that poll it alongside other events.
        pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
            Some(self.0.as_fd())
        }
    }

    /// The wrapper's own child, held by a pidfd and waited for through it.
    pub struct ChildHandle(OwnedFd);

    impl ChildHandle {
        pub fn open(pid: u32) -> io::Result<ChildHandle> {
            Ok(ChildHandle(pidfd(pid)?))
        }

        pub fn try_clone(&self) -> io::Result<ChildHandle> {
            Ok(ChildHandle(self.0.try_clone()?))
        }

        /// The pidfd, readable once the child has exited, for an event loop to wait on.
        pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
            Some(self.0.as_fd())
        }

        /// `waitid(P_PIDFD)`: blocks until the child changes state as `opts` asks.
        pub fn wait(&self, opts: WaitIdOptions) -> io::Result<Option<WaitIdStatus>> {
            Ok(rustix::process::waitid(
                WaitId::PidFd(self.0.as_fd()),
                opts,
            )?)
        }
    }

    /// An inotify watch on one directory. The directory is kept by path for `resume`.
    pub struct DirEvents {
        fd: OwnedFd,
        dir: std::path::PathBuf,
        flags: WatchFlags,
        /// The watch descriptor; None while paused.
        wd: Option<i32>,
    }

    impl DirEvents {
        pub fn new(dir: &Path, interest: Interest) -> io::Result<DirEvents> {
            let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
            let flags = match interest {
                Interest::Records => {
                    WatchFlags::MOVED_TO
                        | WatchFlags::CLOSE_WRITE
                        | WatchFlags::DELETE
                        | WatchFlags::DELETE_SELF
                        | WatchFlags::MOVE_SELF
                }
                Interest::Writes => {
                    WatchFlags::CLOSE_WRITE
                        | WatchFlags::ATTRIB
                        | WatchFlags::MODIFY
                        | WatchFlags::MOVED_TO
                        | WatchFlags::CREATE
                }
            };
            let wd = inotify::add_watch(&fd, dir, flags)?;
            Ok(DirEvents {
                fd,
                dir: dir.to_owned(),
                flags,
                wd: Some(wd),
            })
        }

        /// Removes the watch, keeping the instance. Closing an inotify instance that still
        /// watches something waits for the kernel to free the watch (an SRCU grace period:
        /// about a millisecond idle, 10 ms and more on a busy machine), and a process's exit
        /// waits for that close. Removed first, the freeing runs meanwhile and the close is cheap.
        pub fn pause(&mut self) {
            if let Some(wd) = self.wd.take() {
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }

        /// Watches again after `pause`. Events queued meanwhile (the removal's own among them)
        /// are dropped: the caller looks at the directory again after this anyway.
        pub fn resume(&mut self) -> io::Result<()> {
            if self.wd.is_none() {
                self.read(&mut |_, _, _| {});
                self.wd = Some(inotify::add_watch(&self.fd, &self.dir, self.flags)?);
            }
            Ok(())
        }

        pub fn fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }

        pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        }

        /// Reads every queued event without waiting: `each(name, event, overflowed)`, where
        /// `name` is None for the directory itself and `overflowed` says events were lost.
        pub fn read(&self, each: &mut dyn FnMut(Option<&CStr>, FileEvent, bool)) {
            let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
            let mut r = inotify::Reader::new(&self.fd, &mut buf);
            loop {
                match r.next() {
                    Ok(ev) => {
                        let e = ev.events();
                        let kind = if e.intersects(ReadFlags::CLOSE_WRITE | ReadFlags::MOVED_TO) {
                            FileEvent::Written
                        } else if e.contains(ReadFlags::ATTRIB) {
                            FileEvent::Attrib
                        } else if e.intersects(ReadFlags::MODIFY | ReadFlags::CREATE) {
                            FileEvent::Modified
                        } else {
                            FileEvent::Other
                        };
                        each(ev.file_name(), kind, e.contains(ReadFlags::QUEUE_OVERFLOW));
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
            }
        }
    }

    /// A periodic timerfd on the monotonic clock: one wakeup per tick, ticks missed while the
    /// process was stopped collapse into one. Read 8 bytes from it per tick. Its ticks fall on
    /// whole multiples of `every` ([`crate::clock::next_multiple`]), so holders with the same
    /// interval wake together.
    pub fn periodic_timer(every: Duration) -> io::Result<Option<OwnedFd>> {
        use rustix::time::{
            Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create,
            timerfd_settime,
        };
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let first = crate::clock::next_multiple(crate::clock::mono(), every);
        let spec = Itimerspec {
            it_interval: crate::platform::timespec(every),
            it_value: crate::platform::timespec(first),
        };
        timerfd_settime(&fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        Ok(Some(fd))
    }

    /// `pipe2(O_CLOEXEC)`, atomically (and `O_NONBLOCK` if asked).
    pub fn pipe(nonblock: bool) -> io::Result<(OwnedFd, OwnedFd)> {
        use rustix::pipe::PipeFlags;
        let mut flags = PipeFlags::CLOEXEC;
        if nonblock {
            flags |= PipeFlags::NONBLOCK;
        }
        Ok(rustix::pipe::pipe_with(flags)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_read_whole_in_one_read_or_in_several() {
        let std = std::fs::read_to_string("/proc/self/status").unwrap();
        let ours = read_proc("/proc/self/status", 4096).unwrap();
        // Same lines up to the values that change as we run (memory, switches).
        assert_eq!(std.lines().next(), ours.lines().next());
        assert_eq!(std.lines().count(), ours.lines().count());
        // A buffer too small for the file goes on to its end.
        let small = read_proc("/proc/self/status", 16).unwrap();
        assert_eq!(small.lines().count(), std.lines().count());
        assert!(small.ends_with('\n'));
        assert!(read_proc("/proc/self/no-such-file", 64).is_none());
        assert_eq!(
            stat_self().unwrap().start,
            stat(std::process::id()).unwrap().start
        );
    }

    #[cfg(not(feature = "portable"))]
    #[test]
    fn the_renewal_timer_ticks_on_whole_multiples_of_its_period() {
        use std::time::Duration;
        let every = Duration::from_millis(200);
        let fd = periodic_timer(every).unwrap().unwrap();
        let now = crate::clock::mono();
        let left = rustix::time::timerfd_gettime(&fd).unwrap();
        let left = Duration::new(left.it_value.tv_sec as u64, left.it_value.tv_nsec as u32);
        assert!(left > Duration::ZERO && left <= every, "{left:?}");
        // The timer was read just after `now`, so its expiry is at most that much earlier.
        let due = (now + left).as_nanos();
        let off = (due % every.as_nanos()).min(every.as_nanos() - due % every.as_nanos());
        assert!(
            off < 5_000_000,
            "the tick is {off} ns off a multiple of 200 ms"
        );
        let per = rustix::time::timerfd_gettime(&fd).unwrap().it_interval;
        assert_eq!((per.tv_sec, per.tv_nsec), (0, 200_000_000));
    }

    #[test]
    fn dir_names_lists_more_than_one_buffer_holds() {
        let tmp = tempfile::tempdir().unwrap();
        // Long names: more than the 64 KiB buffer, so more than one getdents64 with entries.
        let want: std::collections::BTreeSet<String> =
            (0..1500).map(|i| format!("{i:0>60}.json")).collect();
        for n in &want {
            std::fs::write(tmp.path().join(n), b"").unwrap();
        }
        let dir = std::fs::File::open(tmp.path()).unwrap();
        let got: std::collections::BTreeSet<String> = dir_names(dir.as_fd())
            .unwrap()
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        assert_eq!(got, want);
        // Read through a descriptor of its own: a second listing sees the same.
        assert_eq!(dir_names(dir.as_fd()).unwrap().len(), want.len());
    }

    #[test]
    fn opens_a_path_in_one_call_only_without_links() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        assert!(open_dir_without_links(&real.join("sub")).is_some());
        assert!(open_dir_without_links(&tmp.path().join("link/sub")).is_none());
        assert!(open_dir_without_links(&tmp.path().join("link")).is_none());
        assert!(open_dir_without_links(&tmp.path().join("missing")).is_none());
    }

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line =
            "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.start, "linux:98765");
        assert_eq!((st.ppid, st.pgrp), (1, 123));
        assert!(!st.zombie);
        let z = "9 (x) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
        assert!(parse_stat(z).unwrap().zombie);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn process_cpu_time_grows_while_running_and_ends_with_the_process() {
        let me = std::process::id();
        let before = process_cpu_ns(me).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_ns(me).unwrap() > before);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(
            process_cpu_ns(pid),
            None,
            "a reaped process has no CPU clock"
        );
    }
}
