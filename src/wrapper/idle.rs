//! The idle wait: a wrapper whose job is quiet sleeps in one `poll` on everything that can wake
//! it, and a tick that comes alone is handled without going through tokio.
//!
//! Why (issue 13): an idle renewal is one wake-up, and on this machine what a wake-up costs is
//! mostly how much memory and code it touches after seconds asleep, caches cold. Through tokio it
//! is the driver's turn, the task's wake, and every branch of the loop's `select!` polled again:
//! about twice what the same five system calls cost from a plain loop (the bench's profile and
//! floor rows). So while nothing but the timer fires, the loop waits here: the timer, the child's
//! exit, its two pipes, the notify socket and the forwarded signals (a signalfd) in one `poll`,
//! with the stall and kill deadlines as its timeout. Anything else that is ready, or a deadline,
//! sends the loop back to its `select!`, which finds the same readiness (level-triggered here,
//! pending in tokio's epoll there) and handles it as before.
//!
//! It is used only where every source has a descriptor (Linux without `portable`: timerfd,
//! pidfd, signalfd), when no task must run meanwhile (no probes; on etcd, only while renewals go
//! on the direct connection, which the tick itself reads and writes, store/etcd/direct.rs), and
//! when the channel is none, output or notify (a heartbeat file's watch keeps state of its own).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use super::signals::Signals;
use super::state::State;
use super::tick::Ticker;

/// At most: timer, child exit, signals, notify socket, stdout, stderr.
const MAX_FDS: usize = 6;

/// Waits while nothing but the renewal timer fires. True: the timer fired alone and its tick is
/// taken (renew now). False: something else is ready, a deadline is due, or this wait does not
/// apply; the caller waits through tokio instead.
pub fn tick(ticker: &Ticker, signals: &Signals, probes: bool, st: &State) -> bool {
    if probes || !st.renewing || !st.renews_alone() {
        return false;
    }
    let (Some(timer), Some(exit), Some(sig), Some(chan)) = (
        ticker.fd(),
        st.spawned.exit_fd(),
        signals.fd(),
        st.channel.idle_fd(),
    ) else {
        return false;
    };
    let Some(timeout) = timeout(st) else {
        return false;
    };
    // The timer first; unused places repeat it and are left out of the poll.
    let mut fds = [timer; MAX_FDS];
    let mut n = 0;
    for fd in [Some(timer), Some(exit), Some(sig), chan]
        .into_iter()
        .flatten()
        .chain(st.streams.fds())
    {
        fds[n] = fd;
        n += 1;
    }
    poll_alone(&fds[..n], timeout) && crate::platform::take_tick(timer).is_ok()
}

/// How long the wait may last: until the next kill or stall deadline, or forever. None when one is
/// already due.
fn timeout(st: &State) -> Option<Option<Duration>> {
    let now = tokio::time::Instant::now();
    let due = [st.kill_at, st.stall_check_at()]
        .into_iter()
        .flatten()
        .min();
    match due {
        None => Some(None),
        Some(at) if at > now => Some(Some(at - now)),
        Some(_) => None,
    }
}

/// Polls `fds` (the first is the timer); true when the timer alone is readable.
fn poll_alone(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> bool {
    let mut set: [PollFd<'_>; MAX_FDS] =
        std::array::from_fn(|i| PollFd::from_borrowed_fd(fds[i.min(fds.len() - 1)], PollFlags::IN));
    let set = &mut set[..fds.len()];
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    match rustix::event::poll(set, ts.as_ref()) {
        Ok(n) if n > 0 => {
            !set[0].revents().is_empty() && set[1..].iter().all(|p| p.revents().is_empty())
        }
        _ => false,
    }
}
