//! Linux: the wrapper's forwarded signals through a signalfd (see `signal_fd` for why), and undoing
//! their blocking in a child.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::process::Signal;

/// The set of `signals`. Async-signal-safe (sigemptyset and sigaddset only), for `pre_exec`.
fn sigset(signals: &[Signal]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set` before sigaddset or the read use it; sigemptyset
    // cannot fail on a valid pointer, nor sigaddset for rustix's valid signal numbers.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for s in signals {
            libc::sigaddset(set.as_mut_ptr(), s.as_raw());
        }
        set.assume_init()
    }
}

/// The wrapper's forwarded signals as a descriptor (`signalfd`), so the idle wait can sleep on
/// them with everything else in one `poll` (tokio's handlers note a signal in memory the wait
/// cannot see). They are blocked in the calling thread, and so in every thread it starts
/// later: call it before any other thread exists, or a signal could go to one that does not
/// block it and take its default action. A child std starts with `posix_spawn` gets an empty
/// mask; one started through fork (a `pre_exec` hook) keeps ours and must
/// [`unblock_signals`].
pub fn signal_fd(signals: &[Signal]) -> io::Result<Option<OwnedFd>> {
    use std::os::fd::FromRawFd as _;
    let set = sigset(signals);
    // SAFETY: `set` is a valid set, and the descriptor signalfd returns is ours to own.
    unsafe {
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // The descriptor first: if blocking failed, the handlers would be installed instead.
        let fd = OwnedFd::from_raw_fd(fd);
        let e = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if e != 0 {
            return Err(io::Error::from_raw_os_error(e));
        }
        Ok(Some(fd))
    }
}

/// Undoes [`signal_fd`]'s blocking in a child between fork and exec (std's fork path keeps the
/// parent's mask), so the job gets the signals it is sent. Async-signal-safe.
pub fn unblock_signals(signals: &[Signal]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is a valid set; pthread_sigmask is async-signal-safe and allocates nothing.
    match unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Takes one pending signal off a [`signal_fd`]; `AGAIN` when none is.
pub fn read_signal(fd: BorrowedFd<'_>) -> rustix::io::Result<Signal> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    loop {
        match rustix::io::read(fd, &mut info) {
            Ok(n) if n == info.len() => {
                // ssi_signo is the first field, a u32 in native byte order.
                let no = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                if let Some(s) = Signal::from_named_raw(no as i32) {
                    return Ok(s);
                }
            }
            Ok(_) => return Err(rustix::io::Errno::IO),
            Err(e) => return Err(e),
        }
    }
}
