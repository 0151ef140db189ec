//! macOS's kqueue, for what Linux does with pidfds, inotify and timerfd: waiting for a process
//! to exit (`EVFILT_PROC` `NOTE_EXIT`), for a directory's files to change (`EVFILT_VNODE`), and
//! the wrapper's periodic renewal timer (`EVFILT_TIMER`). A file of its own only to keep
//! macos.rs within a reader's reach; compiled and linted in CI for both darwin targets, not run.

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
            let ts = crate::platform::timespec(left);
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

/// The idle wait that pauses the timer is Linux's (wrapper/idle.rs): not supported here.
pub fn pause_timer(_timer: impl AsFd) -> rustix::io::Result<Duration> {
    Err(Errno::NOTSUP)
}

/// See [`pause_timer`].
pub fn resume_timer(_timer: impl AsFd, _at: Duration, _every: Duration) -> rustix::io::Result<()> {
    Err(Errno::NOTSUP)
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

    /// Nothing to do: closing a kqueue does not wait for the kernel (Linux's inotify does).
    pub fn pause(&mut self) {}

    pub fn resume(&mut self) -> io::Result<()> {
        Ok(())
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
