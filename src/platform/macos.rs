//! macOS: identity from `proc_pidinfo(PROC_PIDTBSDINFO)` and `kern.bootsessionuuid`; a group's
//! pids from `proc_listpids(PROC_PGRP_ONLY)` and a process's environment from `sysctl
//! KERN_PROCARGS2` (parsed in `procargs.rs`, which is unit-tested everywhere); waiting for
//! a process to exit (`EVFILT_PROC` `NOTE_EXIT`) and for files to change (`EVFILT_VNODE`) with
//! kqueue, and the renewal timer too (`EVFILT_TIMER`); the wrapper's child and pipes from
//! `posix.rs`. Compiled and linted in CI for
//! both darwin targets; the calls below are not run there (see README, Platforms).

use std::io;
use std::os::fd::AsFd;

use super::Stat;

pub use super::posix::{ChildHandle, pipe};
pub use kq::{DirEvents, Pin, periodic_timer, take_tick};

/// No `O_PATH` on macOS: directories are opened for reading to go through them.
pub const OPEN_THROUGH: rustix::fs::OFlags = rustix::fs::OFlags::RDONLY;

/// Every name in the directory `dir` but `.` and `..`.
pub fn dir_names(dir: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// No single call opens a path without following any link here: always None, and the caller
/// walks it one component at a time.
pub fn open_dir_without_links(_path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    None
}

/// A path that names the open file `fd` itself (fdescfs).
pub fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/dev/fd/{}", fd.as_raw_fd()))
}

/// None: `/dev/fd/N` of a directory cannot be walked into on macOS, so callers use the name.
pub fn path_at(_dir: std::os::fd::BorrowedFd<'_>, _name: &str) -> Option<std::path::PathBuf> {
    None
}

/// What `proc_pidinfo(PROC_PIDTBSDINFO)` says of `pid`. Its `arg` is 1 so that zombies are found
/// too (xnu looks them up only when `arg` is non-zero): as on Linux, an exited but unreaped
/// process shows as a zombie with its start time, which is what lets the wrapper, holding its
/// exited child unreaped, still prove the group is the child's before signalling it. macOS answers
/// only for processes of the caller's uid (root: any): another user's process has no `Stat` here,
/// so it is never proven to be a job's, nor counted as a survivor.
pub fn stat(pid: u32) -> Option<Stat> {
    let pid = i32::try_from(pid).ok()?;
    // SAFETY: `proc_bsdinfo` is plain old data (integers and byte arrays), so all-zero is valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
    // SAFETY: `info` is a live, writable `proc_bsdinfo` and `size` is its exact size, so the kernel
    // writes at most that many bytes into it.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            1,
            (&mut info as *mut libc::proc_bsdinfo).cast::<libc::c_void>(),
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

/// CPU time a whole process has used, in ns: user and system time of all its threads, exited
/// ones included (`proc_pidinfo(PROC_PIDTASKINFO)`), which macOS counts in Mach absolute-time
/// units (nanoseconds on Intel, not on Apple silicon), so converted by the timebase. Own uid
/// only (root: any); None otherwise or once it is gone. For the benchmark's idle-cost rows.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    // SAFETY: `proc_taskinfo` is plain old data (integers), so all-zero is valid.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as i32;
    // SAFETY: `info` is a live, writable `proc_taskinfo` and `size` is its exact size, so the
    // kernel writes at most that many bytes into it.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast::<libc::c_void>(),
            size,
        )
    };
    if n != size {
        return None;
    }
    let (numer, denom) = timebase()?;
    let ticks = u128::from(info.pti_total_user) + u128::from(info.pti_total_system);
    u64::try_from(ticks * u128::from(numer) / u128::from(denom)).ok()
}

/// The ratio from Mach absolute-time units to nanoseconds. The `libc` crate marks the call
/// deprecated in favour of the `mach2` crate; one call does not warrant a new dependency.
#[allow(deprecated)]
fn timebase() -> Option<(u32, u32)> {
    let mut tb = libc::mach_timebase_info { numer: 0, denom: 0 };
    // SAFETY: the call only writes the struct it is given.
    let rc = unsafe { libc::mach_timebase_info(&mut tb) };
    (rc == 0 && tb.denom != 0).then_some((tb.numer, tb.denom))
}

pub fn stat_self() -> Option<Stat> {
    stat(std::process::id())
}

/// `PROC_PGRP_ONLY` from `<sys/proc_info.h>` (not in the `libc` crate): list one group's pids.
const PROC_PGRP_ONLY: u32 = 2;

/// The pids the kernel lists in process group `pgid` (`proc_listpids(PROC_PGRP_ONLY)`); the
/// caller still checks each with [`stat`], as a pid can leave the group or exit meanwhile. None
/// when the call fails.
pub fn group_candidates(pgid: u32) -> Option<Vec<u32>> {
    i32::try_from(pgid).ok()?; // a pid_t, passed as the call's u32 `typeinfo`
    let int = std::mem::size_of::<libc::c_int>();
    // The group can grow between the sizing and the listing: a listing that fills the buffer
    // may have been cut short, so it is taken again with four times the room.
    let mut room = 256usize;
    while room <= 1 << 20 {
        let mut pids: Vec<libc::c_int> = vec![0; room];
        let bytes = libc::c_int::try_from(room * int).ok()?;
        // `proc_listpids` returns 0 both for an empty group and on failure (errno set): errno is
        // cleared first to tell them apart.
        // SAFETY: `__error` returns this thread's errno location, valid for the thread's life.
        unsafe { *libc::__error() = 0 };
        // SAFETY: `pids` is a live, writable buffer of exactly `bytes` bytes, and the kernel
        // writes at most `bytes` bytes of pids into it.
        let n = unsafe {
            libc::proc_listpids(
                PROC_PGRP_ONLY,
                pgid,
                pids.as_mut_ptr().cast::<libc::c_void>(),
                bytes,
            )
        };
        let n = usize::try_from(n).ok()?;
        if n == 0 && io::Error::last_os_error().raw_os_error() != Some(0) {
            return None;
        }
        if n < room * int {
            pids.truncate(n / int);
            return Some(
                pids.into_iter()
                    .filter_map(|p| u32::try_from(p).ok().filter(|p| *p > 0))
                    .collect(),
            );
        }
        room *= 4;
    }
    None
}

/// A process's environment (NUL-separated) as its `KERN_PROCARGS2` holds it: the strings the
/// process was exec'd with, as still laid out in its memory. macOS returns it only for processes
/// of the caller's own uid (root: any): for another user's process this is None, and that process
/// cannot be tied to a job by its environment.
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    let buf = procargs2(pid)?;
    let args = super::procargs::parse(&buf)?;
    Some(args.env.join(&0u8))
}

/// The raw `sysctl {CTL_KERN, KERN_PROCARGS2, pid}` buffer, sized by `KERN_ARGMAX` (the most a
/// process's arguments and environment can take).
fn procargs2(pid: u32) -> Option<Vec<u8>> {
    let pid = libc::c_int::try_from(pid).ok()?;
    let mut argmax: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    let mut mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
    // SAFETY: `mib` holds the 2 names passed; `argmax` is a writable c_int and `len` its exact
    // size, which the kernel does not exceed; nothing is set (null, 0).
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            2,
            (&mut argmax as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || argmax <= 0 {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(argmax).ok()?];
    let mut len = buf.len();
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    // SAFETY: `mib` holds the 3 names passed; `buf` is writable for `len` bytes, and the kernel
    // writes at most that many and stores the count in `len`; nothing is set (null, 0).
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    Some(buf)
}

/// macOS has no pid namespaces: every process of a boot sees the same pids.
pub fn pid_ns() -> Option<String> {
    Some("global".to_owned())
}

pub fn boot_id() -> Option<String> {
    let mut buf = [0u8; 64];
    let mut len = buf.len();
    // SAFETY: the name is a NUL-terminated C string; `buf` is writable for `len` bytes and `len`
    // is updated by the kernel to the bytes written; no new value is set (null, 0).
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.bootsessionuuid".as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || len == 0 {
        return None;
    }
    let s = String::from_utf8_lossy(&buf[..len.min(buf.len())])
        .trim_end_matches('\0')
        .trim()
        .to_owned();
    (!s.is_empty()).then_some(s)
}

/// No time namespaces on macOS.
pub fn time_ns() -> Option<String> {
    None
}

/// macOS cannot tell a child that its parent died: a SIGKILLed wrapper leaves its child running.
/// Readers then judge the job lost when its lease expires, and `tether cancel` stops the
/// recorded process group by identity.
pub fn die_with_parent() -> io::Result<()> {
    Ok(())
}

/// macOS has no subreapers: orphans go to launchd.
pub fn become_subreaper() -> io::Result<bool> {
    Ok(false)
}

/// No per-datagram credentials on macOS: the socket's private (0700) directory keeps other users
/// out instead.
pub fn enable_sender_uids(_sock: impl AsFd) -> io::Result<()> {
    Ok(())
}

/// Reads one datagram without blocking; the sender's uid is unknown here, so this process's own
/// uid is reported (only it, or root, can reach the socket's private directory).
pub fn recv_with_uid(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    let len = buf.len();
    let n = rustix::net::recv(sock, buf, rustix::net::RecvFlags::DONTWAIT)?.0;
    Ok((n.min(len), Some(rustix::process::geteuid().as_raw())))
}

/// The abstract socket namespace is Linux's; a `NOTIFY_SOCKET=@name` cannot be reached here.
pub fn send_to_abstract(
    _sock: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    _msg: &[u8],
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "NOTIFY_SOCKET @{} is in Linux's abstract namespace, which macOS does not have",
            String::from_utf8_lossy(name)
        ),
    ))
}

mod kq {
    use std::ffi::{CStr, CString};
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use rustix::buffer::spare_capacity;
    use rustix::event::kqueue::{
        Event, EventFilter, EventFlags, ProcessEvents, VnodeEvents, kevent, kqueue,
    };
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    use rustix::process::{Pid, Signal};

    use super::stat;
    use crate::platform::{FileEvent, Interest};

    fn gone() -> io::Error {
        io::Error::from_raw_os_error(Errno::SRCH.raw_os_error())
    }

    /// Applies `changes` without collecting events (an empty event list returns at once and
    /// reports a failed registration as the call's error).
    fn register(kq: &OwnedFd, changes: &[Event]) -> io::Result<()> {
        let mut none: Vec<Event> = Vec::new();
        // SAFETY: every `Vnode` change names a descriptor its `DirEvents` owns for as long as
        // the kqueue (closing one removes its registration); `Proc` and `Timer` changes name no
        // descriptor.
        unsafe { kevent(kq, changes, spare_capacity(&mut none), None) }?;
        Ok(())
    }

    /// A process held by a kqueue with `EVFILT_PROC` `NOTE_EXIT` on it: the queue turns readable
    /// when the process exits, as a pidfd does. A signal still goes by pid after the start time
    /// is read again (macOS has no process handle to signal through).
    pub struct Pin {
        pid: u32,
        start: String,
        kq: OwnedFd,
    }

    impl Pin {
        pub fn open(pid: u32) -> io::Result<Pin> {
            let p = i32::try_from(pid)
                .ok()
                .and_then(Pid::from_raw)
                .ok_or_else(|| io::Error::other(format!("{pid} is not a process id")))?;
            let start = stat(pid).ok_or_else(gone)?.start;
            let kq = kqueue()?;
            let exit = EventFilter::Proc {
                pid: p,
                flags: ProcessEvents::EXIT,
            };
            // ESRCH when it already exited (zombies included): that is `Gone`.
            register(
                &kq,
                &[Event::new(exit, EventFlags::ADD, std::ptr::null_mut())],
            )?;
            // Checked again after registering: if the pid was reused between the first look and
            // the registration, the queue watches another process, and this one is gone. A
            // zombie has exited too, whether or not the kernel queued `NOTE_EXIT` for it.
            match stat(pid) {
                Some(now) if !now.zombie && now.start == start => {}
                _ => return Err(gone()),
            }
            Ok(Pin { pid, start, kq })
        }

        /// Signals the process if it is still the one pinned (a no-op once it is gone).
        pub fn signal(&self, sig: Signal) -> io::Result<()> {
            if stat(self.pid).map(|s| s.start).as_ref() != Some(&self.start) {
                return Ok(()); // it exited; the pid is no longer the one we proved
            }
            let p = Pid::from_raw(self.pid as i32).ok_or_else(gone)?;
            match rustix::process::kill_process(p, sig) {
                Ok(()) => Ok(()),
                Err(e) if e == Errno::SRCH => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        /// Sleeps in `poll` on the queue (readable once `NOTE_EXIT` is queued), up to `timeout`.
        /// The event is never taken off the queue, so it stays readable for every later wait.
        pub fn wait_exit(&self, timeout: Duration) -> bool {
            use rustix::event::{PollFd, PollFlags, poll};
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(&self.kq, PollFlags::IN)];
                match poll(&mut fds, Some(&ts)) {
                    Ok(n) if n > 0 => return true,
                    Ok(_) => return false,
                    Err(Errno::INTR) => continue,
                    Err(_) => return false,
                }
            }
        }

        /// The queue, for callers that poll it alongside other events.
        pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
            Some(self.kq.as_fd())
        }
    }

    /// A kqueue with a periodic `EVFILT_TIMER` on it (on the clock `mach_absolute_time` reads,
    /// which stops during sleep, like Linux's monotonic timerfd): the queue turns readable once per
    /// period, and periods missed while the process was stopped collapse into the one pending
    /// event, so the wrapper never renews in a burst. rustix passes a period with no millisecond
    /// part in whole seconds, dropping a sub-millisecond rest (a renewal at most 1 ms early).
    pub fn periodic_timer(every: Duration) -> io::Result<Option<OwnedFd>> {
        let kq = kqueue()?;
        let timer = EventFilter::Timer {
            ident: 0,
            timer: Some(every),
        };
        register(
            &kq,
            &[Event::new(timer, EventFlags::ADD, std::ptr::null_mut())],
        )?;
        Ok(Some(kq))
    }

    /// Takes the pending tick off a [`periodic_timer`]'s queue, however many periods it counts
    /// (taking the event resets its count; the timer keeps running); `AGAIN` when none is pending.
    pub fn take_tick(timer: impl AsFd) -> rustix::io::Result<()> {
        let mut evs: Vec<Event> = Vec::with_capacity(1);
        // SAFETY: no changes are passed, so no descriptor is named.
        let n = unsafe { kevent(timer, &[], spare_capacity(&mut evs), Some(Duration::ZERO)) }?;
        if n == 0 { Err(Errno::AGAIN) } else { Ok(()) }
    }

    const VNODE: VnodeEvents = VnodeEvents::WRITE
        .union(VnodeEvents::EXTEND)
        .union(VnodeEvents::ATTRIBUTES)
        .union(VnodeEvents::RENAME)
        .union(VnodeEvents::DELETE);

    fn watch(kq: &OwnedFd, fd: &OwnedFd) -> io::Result<()> {
        let filter = EventFilter::Vnode {
            vnode: fd.as_raw_fd(),
            flags: VNODE,
        };
        let flags = EventFlags::ADD | EventFlags::CLEAR;
        register(kq, &[Event::new(filter, flags, std::ptr::null_mut())])
    }

    /// One file of a `Writes` watch, open so its own changes are seen (kqueue watches
    /// descriptors, not names).
    struct Watched {
        name: CString,
        ino: (u64, u64),
        fd: OwnedFd,
    }

    /// A kqueue with `EVFILT_VNODE` on one directory and, for `Interest::Writes`, on each regular
    /// file in it. A directory event carries no name: for `Records` it is reported as a change
    /// of the directory itself (the waiter looks again); for `Writes` the directory is listed
    /// again and a file that appeared or was replaced (renamed into place) counts as `Written`.
    /// kqueue has no close-after-write event, so a write shows as `Modified` and is counted by
    /// the caller's open-change flush.
    pub struct DirEvents {
        // Declared first so it is closed before the descriptors registered on it.
        kq: OwnedFd,
        dir: OwnedFd,
        path: PathBuf,
        interest: Interest,
        files: Mutex<Vec<Watched>>,
    }

    impl DirEvents {
        pub fn new(dir: &Path, interest: Interest) -> io::Result<DirEvents> {
            let kq = kqueue()?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let dir_fd = rustix::fs::open(dir, flags, Mode::empty())?;
            watch(&kq, &dir_fd)?;
            let ev = DirEvents {
                kq,
                dir: dir_fd,
                path: dir.to_owned(),
                interest,
                files: Mutex::new(Vec::new()),
            };
            if interest == Interest::Writes {
                ev.rescan(&mut |_, _, _| {});
            }
            Ok(ev)
        }

        pub fn fd(&self) -> BorrowedFd<'_> {
            self.kq.as_fd()
        }

        pub fn as_raw_fd(&self) -> RawFd {
            self.kq.as_raw_fd()
        }

        /// Lists the directory again: watches new files, replaces replaced ones (reported as
        /// `Written`) and forgets removed ones (reported as `Other`).
        fn rescan(&self, each: &mut dyn FnMut(Option<&CStr>, FileEvent, bool)) {
            let Ok(rd) = std::fs::read_dir(&self.path) else {
                return;
            };
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = Vec::new();
            for e in rd.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let Ok(name) = CString::new(e.file_name().into_encoded_bytes()) else {
                    continue;
                };
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let Ok(fd) = rustix::fs::openat(&self.dir, &*name, flags, Mode::empty()) else {
                    continue;
                };
                let Ok(st) = rustix::fs::fstat(&fd) else {
                    continue;
                };
                let ino = (st.st_dev as u64, st.st_ino);
                seen.push(name.clone());
                match files.iter().position(|w| w.name == name) {
                    Some(i) if files[i].ino == ino => {}
                    old => {
                        if watch(&self.kq, &fd).is_err() {
                            continue;
                        }
                        if let Some(i) = old {
                            files.remove(i); // closing it removes its registration
                        }
                        each(Some(&name), FileEvent::Written, false);
                        files.push(Watched { name, ino, fd });
                    }
                }
            }
            files.retain(|w| {
                let keep = seen.contains(&w.name);
                if !keep {
                    each(Some(&w.name), FileEvent::Other, false);
                }
                keep
            });
        }

        /// Takes every queued event without waiting: `each(name, event, overflowed)`, where
        /// `name` is None for the directory itself; kqueue does not overflow.
        pub fn read(&self, each: &mut dyn FnMut(Option<&CStr>, FileEvent, bool)) {
            let mut evs: Vec<Event> = Vec::with_capacity(32);
            let mut dir_changed = false;
            loop {
                evs.clear();
                // SAFETY: no changes are passed; the registered descriptors are owned by `self`
                // (see `register`).
                let got = unsafe {
                    kevent(
                        &self.kq,
                        &[],
                        spare_capacity(&mut evs),
                        Some(Duration::ZERO),
                    )
                };
                match got {
                    Ok(_) => {}
                    Err(Errno::INTR) => continue,
                    Err(_) => break,
                }
                let full = evs.len() == evs.capacity();
                for ev in &evs {
                    if ev.flags().contains(EventFlags::ERROR) {
                        continue;
                    }
                    let EventFilter::Vnode { vnode, flags } = ev.filter() else {
                        continue;
                    };
                    if vnode == self.dir.as_raw_fd() {
                        dir_changed = true;
                        if self.interest == Interest::Records
                            || flags.intersects(VnodeEvents::DELETE | VnodeEvents::RENAME)
                        {
                            each(None, FileEvent::Other, false);
                        }
                        continue;
                    }
                    let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(w) = files.iter().find(|w| w.fd.as_raw_fd() == vnode) else {
                        continue; // replaced since the event was queued
                    };
                    if flags.contains(VnodeEvents::ATTRIBUTES) {
                        each(Some(&w.name), FileEvent::Attrib, false);
                    }
                    if flags.intersects(VnodeEvents::WRITE | VnodeEvents::EXTEND) {
                        each(Some(&w.name), FileEvent::Modified, false);
                    }
                    if flags.intersects(VnodeEvents::DELETE | VnodeEvents::RENAME) {
                        each(Some(&w.name), FileEvent::Other, false);
                    }
                }
                if !full {
                    break;
                }
            }
            if dir_changed && self.interest == Interest::Writes {
                self.rescan(each);
            }
        }
    }
}
