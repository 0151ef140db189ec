//! The renewal clock.
//!
//! tokio's `interval` reaches a 1 s deadline through its timer wheel in stages: strace showed three
//! to four wakeups per renewal, and 1,000 idle wrappers measured 12.3 % of a core. A periodic
//! `timerfd` (Linux) or a kqueue `EVFILT_TIMER` (macOS), from `platform::periodic_timer`, wakes the
//! process exactly once per tick, on the monotonic clock; ticks missed while the wrapper was
//! stopped collapse into one, so it never renews in a burst. Ticks fall on whole multiples of the
//! interval on the monotonic clock (`clock::next_multiple`), so the holders on a host with the same
//! interval wake together, which costs each of them less than waking apart.

use std::time::Duration;

/// A kernel timer where the platform has one (`platform::periodic_timer`), else tokio's interval.
pub enum Ticker {
    Fd {
        fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
        every: Duration,
        /// While the idle wait keeps time instead (wrapper/idle.rs), when the next tick is due on
        /// the monotonic clock; the kernel timer is paused meanwhile.
        paused: Option<Duration>,
    },
    Interval(tokio::time::Interval),
}

impl Ticker {
    /// Starts ticking every `every`, the first tick at the next whole multiple of it (at most one
    /// period from now).
    pub fn new(every: Duration) -> std::io::Result<Ticker> {
        let Some(fd) = crate::platform::periodic_timer(every)? else {
            let now = crate::clock::mono();
            let start =
                tokio::time::Instant::now() + (crate::clock::next_multiple(now, every) - now);
            let mut i = tokio::time::interval_at(start, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            return Ok(Ticker::Interval(i));
        };
        // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for the AsyncFd's lifetime.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(Ticker::Fd {
            fd: afd,
            every,
            paused: None,
        })
    }

    /// Pauses the kernel timer while the idle wait keeps time itself (wrapper/idle.rs), if it is
    /// not paused already; when the next tick is due on the monotonic clock. None where there is
    /// no kernel timer to pause.
    pub fn pause(&mut self) -> Option<Duration> {
        let Ticker::Fd { fd, paused, .. } = self else {
            return None;
        };
        if paused.is_none() {
            *paused = Some(crate::platform::pause_timer(fd.get_ref()).ok()?);
        }
        *paused
    }

    /// The idle wait took the tick that was due at `now`: the next is at the next whole multiple
    /// of the interval.
    pub fn took_tick(&mut self, now: Duration) {
        if let Ticker::Fd {
            every,
            paused: Some(at),
            ..
        } = self
        {
            *at = crate::clock::next_multiple(now, *every);
        }
    }

    /// Starts a paused timer again, its next tick when the paused one was due (at once if that
    /// has passed). If that fails the timer is made anew, so ticks never stop.
    fn resume(&mut self) {
        let Ticker::Fd { fd, every, paused } = self else {
            return;
        };
        let Some(at) = paused.take() else {
            return;
        };
        if crate::platform::resume_timer(fd.get_ref(), at, *every).is_err() {
            if let Ok(t) = Ticker::new(*every) {
                *self = t;
            }
        }
    }

    /// Waits for the next tick (or returns at once if ticks were missed meanwhile).
    pub async fn tick(&mut self) {
        // A timer the idle wait paused would never fire.
        self.resume();
        let fd = match self {
            Ticker::Interval(i) => {
                i.tick().await;
                return;
            }
            Ticker::Fd { fd, .. } => fd,
        };
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return std::future::pending().await;
            };
            match crate::platform::take_tick(fd.get_ref()) {
                // One take (a timerfd read; a kevent on macOS) takes every expiration, so the
                // timer is drained: say so now, or the next tick would first look again only to
                // get EAGAIN (a syscall per tick). tokio keeps an edge that arrived since
                // `readable` returned.
                Ok(()) => {
                    ready.clear_ready();
                    return;
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => ready.clear_ready(),
                Err(_) => return std::future::pending().await,
            }
        }
    }
}
