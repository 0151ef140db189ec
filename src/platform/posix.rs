//! The POSIX fallbacks: what macOS uses, and Linux too under the `portable` feature (so CI runs
//! them). No process handle and no file events: identity is re-checked by start time right before
//! each signal, and waits poll.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, WaitIdStatus};

use super::{FileEvent, Interest, stat};

/// How often a poll looks again: short enough for a waiter, cheap enough for a long wait.
const POLL: Duration = Duration::from_millis(10);

fn pid_of(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::other(format!("{pid} is not a process id")))
}

/// A process held by its start time: without a kernel handle, a signal goes by pid after the
/// start time is read again, so the pid can only be reused in the microseconds between the two.
pub struct Pin {
    pid: u32,
    start: Option<String>,
}

impl Pin {
    pub fn open(pid: u32) -> io::Result<Pin> {
        pid_of(pid)?;
        match stat(pid) {
            Some(st) => Ok(Pin {
                pid,
                start: Some(st.start),
            }),
            None => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::SRCH.raw_os_error(),
            )),
        }
    }

    /// Signals the process if it is still the one pinned (a no-op once it is gone).
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        if stat(self.pid).map(|s| s.start) != self.start {
            return Ok(()); // it exited; the pid is no longer the one we proved
        }
        match rustix::process::kill_process(pid_of(self.pid)?, sig) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Polls until the pinned process has exited (a zombie or gone), up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let running = matches!(stat(self.pid),
                Some(s) if !s.zombie && Some(&s.start) == self.start.as_ref());
            if !running {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL.min(deadline - Instant::now()));
        }
    }

    /// No descriptor to poll here: the caller polls (`wait_exit`, or its own timer).
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// The wrapper's own child, waited for by pid (it cannot be reused while the child is unreaped).
pub struct ChildHandle(u32);

impl ChildHandle {
    pub fn open(pid: u32) -> io::Result<ChildHandle> {
        pid_of(pid)?;
        Ok(ChildHandle(pid))
    }

    pub fn try_clone(&self) -> io::Result<ChildHandle> {
        Ok(ChildHandle(self.0))
    }

    /// No descriptor to wait on here: the caller blocks in `wait` on a thread of its own.
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// `waitid` on the child: blocks until it changes state as `opts` asks.
    pub fn wait(&self, opts: WaitIdOptions) -> io::Result<Option<WaitIdStatus>> {
        Ok(rustix::process::waitid(WaitId::Pid(pid_of(self.0)?), opts)?)
    }
}

/// No file events without inotify or kqueue: `new` always fails and callers fall back to polling.
pub enum DirEvents {}

impl DirEvents {
    pub fn new(_dir: &Path, _interest: Interest) -> io::Result<DirEvents> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "file events are not available in this build",
        ))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match *self {}
    }

    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match *self {}
    }

    pub fn read(&self, _each: &mut dyn FnMut(Option<&std::ffi::CStr>, FileEvent, bool)) {
        match *self {}
    }

    pub fn pause(&mut self) {
        match *self {}
    }

    pub fn resume(&mut self) -> io::Result<()> {
        match *self {}
    }
}

/// No signal descriptor here: the caller installs handlers (tokio's) instead.
pub fn signal_fd(_signals: &[Signal]) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

/// Nothing was blocked without a [`signal_fd`].
pub fn unblock_signals(_signals: &[Signal]) -> io::Result<()> {
    Ok(())
}

/// Never called without a [`signal_fd`].
pub fn read_signal(_fd: BorrowedFd<'_>) -> rustix::io::Result<Signal> {
    Err(rustix::io::Errno::NOSYS)
}

/// No kernel timer here: the caller uses tokio's interval.
pub fn periodic_timer(_every: Duration) -> io::Result<Option<OwnedFd>> {
    Ok(None)
}

/// `pipe` then `FD_CLOEXEC` (and `O_NONBLOCK`) on both ends. Not atomic: a fork on another thread
/// between the two could inherit the ends; tether forks only from threads that made the pipe.
pub fn pipe(nonblock: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe()?;
    for fd in [&r, &w] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        if nonblock {
            let fl = rustix::fs::fcntl_getfl(fd)?;
            rustix::fs::fcntl_setfl(fd, fl | rustix::fs::OFlags::NONBLOCK)?;
        }
    }
    Ok((r, w))
}
