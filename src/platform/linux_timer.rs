//! The renewal timerfd's side of the idle wait (wrapper/idle.rs): taking a tick, and pausing the
//! timer while the wait keeps time with its own timeout, then starting it again at the tick due.
//! The timer itself is made by `periodic_timer` in linux.rs.

use std::os::fd::AsFd;
use std::time::Duration;

/// Takes the pending expirations off a [`super::periodic_timer`]'s timerfd (8 bytes: how many), however
/// many there were; `AGAIN` when none is pending. Not called under `portable`, whose timer is
/// tokio's interval.
pub fn take_tick(timer: impl AsFd) -> rustix::io::Result<()> {
    let mut expirations = [0u8; 8];
    rustix::io::read(timer, &mut expirations).map(|_| ())
}

/// Stops a [`super::periodic_timer`] while the idle wait keeps time itself (wrapper/idle.rs), and says
/// when its next tick is due on the monotonic clock (now, if one was pending).
pub fn pause_timer(timer: impl AsFd) -> rustix::io::Result<Duration> {
    use rustix::time::{Itimerspec, TimerfdTimerFlags, timerfd_settime};
    let timer = timer.as_fd();
    let pending = take_tick(timer).is_ok();
    let off = Itimerspec {
        it_interval: crate::platform::timespec(Duration::ZERO),
        it_value: crate::platform::timespec(Duration::ZERO),
    };
    let old = timerfd_settime(timer, TimerfdTimerFlags::empty(), &off)?;
    let now = crate::clock::mono();
    if pending {
        return Ok(now);
    }
    let left = Duration::new(
        u64::try_from(old.it_value.tv_sec).unwrap_or(0),
        u32::try_from(old.it_value.tv_nsec).unwrap_or(0),
    );
    Ok(now + left)
}

/// Starts a paused [`super::periodic_timer`] again: its next tick at `at` on the monotonic clock (at once
/// if that has passed), then every `every`.
pub fn resume_timer(timer: impl AsFd, at: Duration, every: Duration) -> rustix::io::Result<()> {
    use rustix::time::{Itimerspec, TimerfdTimerFlags, timerfd_settime};
    // An it_value of zero would disarm the timer instead.
    let at = at.max(Duration::from_nanos(1));
    let on = Itimerspec {
        it_interval: crate::platform::timespec(every),
        it_value: crate::platform::timespec(at),
    };
    timerfd_settime(timer, TimerfdTimerFlags::ABSTIME, &on).map(|_| ())
}
