//! Signals sent to the wrapper itself, as one receiver (the shape of cargo-nextest's
//! `SignalHandler`): the event loop waits on `recv` and learns which signal came, so adding one is a
//! line here, not a branch in the loop.

use rustix::process::Signal;
use tokio::signal::unix::{SignalKind, signal};

/// TERM, INT and HUP: each is forwarded to the job's process group.
pub struct Signals {
    streams: Vec<(tokio::signal::unix::Signal, Signal)>,
}

impl Signals {
    /// Installs the handlers; needs a tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        let mut streams = Vec::new();
        for (kind, sig) in [
            (SignalKind::terminate(), Signal::TERM),
            (SignalKind::interrupt(), Signal::INT),
            (SignalKind::hangup(), Signal::HUP),
        ] {
            streams.push((signal(kind)?, sig));
        }
        Ok(Signals { streams })
    }

    /// The next signal received (in no particular order when several are pending).
    pub async fn recv(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (s, sig) in &mut self.streams {
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
