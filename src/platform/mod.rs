//! Everything that differs between operating systems, one file per OS.
//!
//! Why one module: process identity, waiting and signalling are where Linux and macOS differ, and
//! `cfg` attributes sprinkled through the wrapper, the waiter and `cancel` hid which code ran where
//! (the macOS half had stopped compiling unnoticed). Here the file is chosen by `path` (pueue's
//! pattern), every OS file provides the same items, and no other module has a `cfg(target_os)`;
//! `cargo clippy --target aarch64-apple-darwin` checks the macOS file on Linux machines.
//!
//! What each OS file provides:
//! - process identity: [`Stat`] (start-time token, state, parent, group) of any pid and of this
//!   process, the boot id, the time and pid namespaces, the pids of a process group and a
//!   process's environment (Linux `/proc`; macOS `proc_pidinfo(PROC_PIDTBSDINFO)`,
//!   `kern.bootsessionuuid`, `proc_listpids(PROC_PGRP_ONLY)` and `sysctl KERN_PROCARGS2`, whose
//!   buffer `procargs.rs` parses);
//! - signalling by identity: [`Pin`] holds a process so a signal never reaches a reused pid
//!   (Linux: a pidfd; elsewhere the start time is checked again right before each signal, which
//!   narrows but does not close the window);
//! - waiting for a process to exit: [`Pin::wait_exit`] and the pollable [`Pin::poll_fd`], and
//!   [`ChildHandle`] for the wrapper's own child, waited for without being reaped (Linux: pidfd;
//!   macOS: a kqueue with `EVFILT_PROC` `NOTE_EXIT`; the child by `waitid` by pid; `posix.rs`:
//!   polling);
//! - waiting for a file to change: [`DirEvents`] (Linux: inotify; macOS: kqueue `EVFILT_VNODE`;
//!   `posix.rs`: unavailable, and the callers fall back to looking every interval or every
//!   200 ms);
//! - a periodic timer that wakes once per tick ([`periodic_timer`], [`take_tick`]; Linux:
//!   timerfd, ticking on whole multiples of the period so holders wake together; macOS: a kqueue
//!   with `EVFILT_TIMER`, whose periodic timer cannot start at an absolute time, so not aligned;
//!   `posix.rs`: none, tokio's interval, aligned like Linux's);
//! - the wrapper's forwarded signals as a descriptor ([`signal_fd`], [`read_signal`],
//!   [`unblock_signals`]; Linux: signalfd, so the idle wait can sleep on them; macOS and
//!   `posix.rs`: none, tokio's handlers);
//! - orphan protection: [`die_with_parent`] (Linux: `PR_SET_PDEATHSIG`). macOS cannot tell a
//!   child that its parent died: there a SIGKILLed wrapper leaves its child running; readers judge
//!   the job `lost` when its lease expires (the wrapper no longer renews it), and `tether cancel`
//!   stops the recorded process group by identity (pid and start time);
//! - sender credentials on the notify socket ([`enable_sender_uids`], [`recv_with_uid`]; Linux:
//!   `SO_PASSCRED`; macOS has none for datagrams and relies on the socket's private directory);
//! - pipes that close on exec ([`pipe`]).
//!
//! The cargo feature `portable` makes the Linux build use the POSIX fallbacks the macOS build
//! relies on (`posix.rs`: polling waits, `kill(pid, 0)` with start-time checks, no pidfd, inotify
//! or timerfd), so those paths run in Linux CI too.

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("tether supports Linux and macOS");

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(target_os = "macos", path = "macos.rs")]
mod os;
// Linux without `portable` builds the fallbacks (so a Linux clippy run checks them) but uses none;
// macOS uses all but `Pin`, `DirEvents` and `periodic_timer` (kqueue's are in `macos.rs`).
#[cfg_attr(
    any(
        target_os = "macos",
        all(target_os = "linux", not(feature = "portable"))
    ),
    allow(dead_code)
)]
pub mod posix;
// Parsed on macOS only, but built and unit-tested everywhere: it is a pure function of a buffer.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod procargs;

pub use os::*;

/// A duration as the kernel's `timespec` (for `poll`, timers), saturating at the largest.
pub fn timespec(d: std::time::Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// What the system says about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Exited but not reaped (or dead): counts as gone (protocol.md 8).
    pub zombie: bool,
    /// The start-time token (protocol.md 8): `linux:<ticks>` or `macos:<sec>.<usec>`.
    pub start: String,
    pub ppid: u32,
    pub pgrp: u32,
}

/// What a directory watch is for; each wants different events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Records replaced by rename, removed, or the directory itself moved (protocol.md 6.1).
    Records,
    /// Every kind of write to a file: contents, metadata, replacement.
    Writes,
}

/// One change seen by a [`DirEvents`], in the words its callers count in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileEvent {
    /// A write finished: closed after writing, or a file renamed into place.
    Written,
    /// Metadata changed (`touch`, `utimes`).
    Attrib,
    /// Contents changed or a file was created; the write may still be open.
    Modified,
    /// Anything else (a removal, the directory itself moved).
    Other,
}

/// So tokio's `AsyncFd` can own a watch directly.
impl std::os::fd::AsRawFd for DirEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        DirEvents::as_raw_fd(self)
    }
}
