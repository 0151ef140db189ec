//! The `tether` binary.
//!
//! `no_main`: the C `main` below replaces std's runtime start, which on Linux reads
//! `/proc/self/maps` (glibc's `pthread_getattr_np`) and maps a signal stack for the main thread
//! only to print "has overflowed its stack" if it ever does: 15 system calls and about 100 µs of
//! every command's 1 ms (a Rust program exiting at once: 0.82 ms with std's start, 0.72 ms
//! without, 2,000 alternated runs), and 420 kB of a wrapper's peak RSS (the libc code that parses
//! the maps, scanf's, mapped in 64 KiB windows; VmHWM of `run --detach -- sleep` 4000 -> 3556 kB,
//! medians of 5 alternated runs). What else std's start does that tether relies on is done here:
//! standard streams that were closed are opened on /dev/null (so a file tether opens never becomes
//! its stdout), SIGPIPE is ignored (a closed pipe is an EPIPE error, reported, not a silent death;
//! children get it back at its default, as std's spawn resets it), and a panic ends the process
//! with 101 after its message. A stack overflow is then a plain SIGSEGV, without std's message.
//! (`cargo test` builds this file with its own harness `main`: the start below is left out then.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::os::raw::{c_char, c_int};

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    reopen_closed_stdio();
    // SAFETY: called before any other thread exists; SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // The arguments: std reads them from the C runtime itself (glibc passes them to its
    // initialisers; macOS keeps them for `_NSGetArgv`), as when std starts the program.
    let code = std::panic::catch_unwind(tether::cli_main).unwrap_or(101);
    std::process::exit(code)
}

/// Opens /dev/null on each of fds 0, 1 and 2 that is closed, lowest first, as std's start does.
#[cfg(not(test))]
fn reopen_closed_stdio() {
    use rustix::fd::BorrowedFd;
    for raw in 0..3 {
        // SAFETY: only asks the kernel about the number; nothing is read or closed through it.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        if rustix::io::fcntl_getfd(fd) == Err(rustix::io::Errno::BADF) {
            // `open` takes the lowest free number: this one. Kept open for the process's life.
            if let Ok(null) = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR,
                rustix::fs::Mode::empty(),
            ) {
                let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
            }
        }
    }
}
