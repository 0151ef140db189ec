//! Signals sent to the wrapper itself, as one receiver (the shape of cargo-nextest's
//! `SignalHandler`): the event loop waits on `recv` and learns which signal came, so adding one is a
//! line here, not a branch in the loop.
//!
//! Where the platform has a signal descriptor (`platform::signal_fd`: Linux's signalfd), the
//! signals wait in it, so the idle wait (`idle.rs`) can sleep on them beside the timer and the
//! child; elsewhere tokio's handlers catch them.

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use rustix::process::Signal;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

/// TERM, INT and HUP: each is forwarded to the job's process group.
pub const FORWARDED: [Signal; 3] = [Signal::TERM, Signal::INT, Signal::HUP];

pub enum Signals {
    Fd(AsyncFd<OwnedFd>),
    Handlers(Vec<(tokio::signal::unix::Signal, Signal)>),
}

impl Signals {
    /// Waits on `fd` (from `platform::signal_fd(&FORWARDED)`) or, without one, installs handlers.
    /// Needs a tokio runtime.
    pub fn install(fd: Option<OwnedFd>) -> std::io::Result<Signals> {
        if let Some(fd) = fd {
            // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for its lifetime.
            let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
            return Ok(Signals::Fd(afd));
        }
        let mut streams = Vec::new();
        for sig in FORWARDED {
            streams.push((signal(SignalKind::from_raw(sig.as_raw()))?, sig));
        }
        Ok(Signals::Handlers(streams))
    }

    /// The descriptor the signals wait in, when they do.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Signals::Fd(afd) => Some(afd.get_ref().as_fd()),
            Signals::Handlers(_) => None,
        }
    }

    /// The next signal received (in no particular order when several are pending).
    pub async fn recv(&mut self) -> Signal {
        let streams = match self {
            Signals::Fd(afd) => return next_from_fd(afd).await,
            Signals::Handlers(streams) => streams,
        };
        std::future::poll_fn(|cx| {
            for (s, sig) in streams.iter_mut() {
                // `None` (the handler gone) never happens in practice; it is no signal either.
                if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

async fn next_from_fd(afd: &AsyncFd<OwnedFd>) -> Signal {
    loop {
        let Ok(mut ready) = afd.readable().await else {
            return std::future::pending().await;
        };
        match crate::platform::read_signal(afd.get_ref().as_fd()) {
            Ok(s) => return s,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => ready.clear_ready(),
            Err(_) => return std::future::pending().await,
        }
    }
}
