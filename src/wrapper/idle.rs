//! The idle wait: a wrapper whose job is quiet sleeps in one `poll` on everything that can wake
//! it, and a tick that comes alone is handled without going through tokio.
//!
//! Why (issue 13): an idle renewal is one wake-up, and on this machine what a wake-up costs is
//! mostly how much memory and code it touches after seconds asleep, caches cold. Through tokio it
//! is the driver's turn, the task's wake, and every branch of the loop's `select!` polled again:
//! about twice what the same five system calls cost from a plain loop (the bench's profile and
//! floor rows). So while nothing but the timer fires, the loop waits here: the child's exit, its
//! two pipes, the notify socket and the forwarded signals (a signalfd) in one `poll`, whose timeout
//! is the next tick or the stall or kill deadline if sooner. Anything else that is ready, or a
//! deadline, sends the loop back to its `select!`, which finds the same readiness (level-triggered
//! here, pending in tokio's epoll there) and handles it as before.
//!
//! The tick is the poll's own timeout, with the timerfd paused meanwhile, not the timerfd in the
//! poll: a wake-up through the timerfd cost more (side by side, `scripts/keepalive-floor.c` with
//! `SLEEP=timerfd` against `SLEEP=timeout`, 10 windows: 91 against 63 µs per etcd renewal), and
//! its `read` was one more system call per tick.
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

/// At most: child exit, signals, notify socket, stdout, stderr.
const MAX_FDS: usize = 5;

/// Waits while nothing but the renewal tick comes. True: the tick came alone (renew now). False:
/// something else is ready, a deadline is due, or this wait does not apply; the caller waits
/// through tokio instead. While it waits, the kernel timer is paused and the wait's own timeout
/// is the tick (`Ticker::pause`); tokio's wait starts the timer again with the tick due, so it
/// gets that tick, at once if it is already due (`Ticker::tick`).
pub fn tick(ticker: &mut Ticker, signals: &Signals, probes: bool, st: &State) -> bool {
    if probes || !st.renewing || !st.renews_alone() {
        return false;
    }
    let (Some(exit), Some(sig), Some(chan)) =
        (st.spawned.exit_fd(), signals.fd(), st.channel.idle_fd())
    else {
        return false;
    };
    let Some(deadline) = timeout(st) else {
        return false;
    };
    let Some(next) = ticker.pause() else {
        return false;
    };
    // Unused places repeat the first and are left out of the poll.
    let mut fds = [exit; MAX_FDS];
    let mut n = 0;
    for fd in [Some(exit), Some(sig), chan]
        .into_iter()
        .flatten()
        .chain(st.streams.fds())
    {
        fds[n] = fd;
        n += 1;
    }
    let to_tick = next.saturating_sub(crate::clock::mono());
    if !poll_quiet(&fds[..n], deadline.map_or(to_tick, |d| d.min(to_tick))) {
        return false;
    }
    let now = crate::clock::mono();
    if now < next {
        return false; // a deadline came first
    }
    ticker.took_tick(now);
    true
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

/// Polls `fds` for up to `timeout`; true when it passed with none of them ready.
fn poll_quiet(fds: &[BorrowedFd<'_>], timeout: Duration) -> bool {
    let mut set: [PollFd<'_>; MAX_FDS] =
        std::array::from_fn(|i| PollFd::from_borrowed_fd(fds[i.min(fds.len() - 1)], PollFlags::IN));
    let set = &mut set[..fds.len()];
    let ts = crate::platform::timespec(timeout);
    matches!(rustix::event::poll(set, Some(&ts)), Ok(0))
}
