//! The controlling terminal in the foreground: the child runs in its own process group (so the
//! wrapper can signal exactly the job), which would make it a background job on the terminal, stopped
//! by SIGTTIN as soon as it reads. So the terminal's foreground group is handed to the child's group,
//! as a shell does for the job it runs, and taken back when the child ends.

/// The wrapper's hold on a terminal it gave to the child; gives it back on drop.
pub struct Terminal {
    own_pgrp: libc::pid_t,
}

impl Terminal {
    /// Some when stdin is a terminal whose foreground group is the wrapper's own: a wrapper started
    /// in the background (`tether run ... &`) or without a terminal changes nothing.
    pub fn foreground() -> Option<Terminal> {
        // SAFETY: plain syscalls on fd 0 and the calling process.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let own_pgrp = libc::getpgrp();
            if libc::tcgetpgrp(0) != own_pgrp {
                return None;
            }
            // Blocked for the wrapper's life on this thread (the one that writes the child's output
            // to the terminal): otherwise, once the child has the terminal, `tcsetpgrp` and, with
            // `stty tostop`, every write would stop the wrapper with SIGTTOU.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Some(Terminal { own_pgrp })
        }
    }

    /// From the parent too (the child does it in `pre_exec`): whichever runs first wins the race
    /// against the child's first read, as shells do.
    pub fn give(&self, pgid: u32) {
        // SAFETY: SIGTTOU is blocked on this thread, so the call cannot stop us.
        unsafe {
            libc::tcsetpgrp(0, pgid as libc::pid_t);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // SAFETY: as in `give`.
        unsafe {
            libc::tcsetpgrp(0, self.own_pgrp);
        }
    }
}

/// Runs in the child between fork and exec (only async-signal-safe calls): makes the child's new
/// process group the terminal's foreground group. The child is still in the background when it
/// asks, so SIGTTOU is blocked around the call; the mask std cleared stays cleared for the program.
/// A failure is not the job's: the parent's `give` is the second chance.
pub fn take_in_child() {
    // SAFETY: sigemptyset/sigaddset/sigprocmask/tcsetpgrp/getpgrp are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        libc::tcsetpgrp(0, libc::getpgrp());
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}
