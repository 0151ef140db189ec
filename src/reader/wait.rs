//! Waiting for a job to end, in the library so a benchmark can measure the same machinery the CLI
//! uses.
//!
//! The job this replaces re-read a file every 2 s and never looked at the pid. Here, on Linux, one
//! `poll(2)` sleeps on everything that can change the verdict: a pidfd of the holder (readable the
//! moment it exits), the store's watch (`Store::watch`: for the file store an inotify watch on
//! `jobs/`), and a timeout at the lease's expiry (the only change that comes from time alone).
//! Each wake re-judges through `settle::settle`, so the waiter reaches the same verdict as every
//! other command and persists a `lost` one. Elsewhere it polls every 200 ms.
//!
//! A wake that probably ends the wait (the holder exited, the record changed, the lease expired)
//! pauses the record watch before that judgment: closing an inotify watch waits out a kernel grace
//! period (5 to 16 ms, p10-p90, on this 2-core machine under load), and the waiter's exit would
//! wait for it after the answer. Paused, it is freed while the judgment persists the verdict. A
//! job that lives on gets the watch back, and one more judgment, before the next sleep.

use std::time::{Duration, Instant};

use crate::id::JobId;
use crate::reader::settle::{Judged, settle};
use crate::record::Record;
use crate::store::{Store, StoreError};
use crate::verdict::{ClockRule, LeaseAge};

/// Where nothing better is available (no pidfd, no inotify, unknown start time), how often to look.
pub const POLL_FALLBACK: Duration = Duration::from_millis(200);
/// The longest single sleep, so that no value read from a record can overflow an `Instant`.
const MAX_SLEEP_MS: u64 = 3_600_000;
/// How often `tick` is called while waiting, for a live status line.
pub const TICK: Duration = Duration::from_secs(1);

/// How a wait ended.
#[derive(Debug)]
pub enum Waited {
    /// The job is terminal, or was judged lost (persisted unless the directory is read-only).
    Ended(Box<Judged>),
    /// The timeout passed first; the job as last judged, still active.
    TimedOut(Box<Judged>),
}

#[derive(Default)]
pub struct Options<'a> {
    /// Give up after this long; None waits as long as the job lives.
    pub timeout: Option<Duration>,
    /// Called about every `TICK` with the latest judgment while the job is active.
    pub tick: Option<&'a mut dyn FnMut(&Judged)>,
}

/// Blocks until job `id` is no longer active, or the timeout passes.
pub fn wait<S: Store>(store: &S, id: &JobId, mut opts: Options<'_>) -> Result<Waited, StoreError> {
    let start = Instant::now();
    // A timeout too large for the clock's range is no timeout at all.
    let deadline = opts.timeout.and_then(|t| start.checked_add(t));
    let mut waker = sys::Waker::new(store.watch(id));
    let mut next_tick = start + TICK;
    loop {
        let j = settle(store, id)?;
        if !j.verdict.is_active() {
            return Ok(Waited::Ended(Box::new(j)));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Waited::TimedOut(Box::new(j)));
        }
        // That judgment ran with the watch paused (below): watch again, then judge again, so a
        // change made while it was paused is seen.
        if waker.resume() {
            continue;
        }
        let expiry = j.verdict.lease.map(|l| until_expiry(&j.record, &l));
        // Read after the clock `until_expiry` read, so the wake can only be late by the gap.
        let mut wake = Instant::now() + expiry.unwrap_or(POLL_FALLBACK);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        let likely_last = loop {
            let mut until = wake;
            if opts.tick.is_some() {
                until = until.min(next_tick);
            }
            let woke = waker.sleep(&j, until);
            if let Some(tick) = opts.tick.as_mut() {
                if Instant::now() >= next_tick {
                    tick(&j);
                    next_tick = Instant::now() + TICK;
                }
            }
            let timed = Instant::now() >= wake;
            if woke != Woke::No || timed {
                // The holder exited, the record changed, the lease expired or the timeout came:
                // the next judgment is probably the last (a fallback poll's rarely is).
                let at_expiry = expiry.is_some() || deadline.is_some_and(|d| d <= wake);
                break woke == Woke::Event || (timed && at_expiry);
            }
        };
        if likely_last {
            // A process's exit waits for its file watch to be freed (milliseconds on Linux);
            // paused now, that happens while the judgment does its I/O, not after the answer.
            waker.pause();
        }
    }
}

/// How long until the verdict can flip from time alone: when the lease expires, strictly after its
/// ttl. Capped so a record with an absurd ttl cannot overflow the clock; waking early only costs
/// one more judgment.
///
/// Judged by the monotonic clock, the lease is expired from the first instant of the millisecond
/// after `renewed_mono_ms + ttl_ms`: that instant is the wake, read off the same clock now. Counted
/// from the judgment's ms-rounded `expires_in_ms` instead, the wake came up to 1 ms late, plus the
/// time the judgment itself took (the waiter's clock is read before the record).
fn until_expiry(rec: &Record, lease: &LeaseAge) -> Duration {
    if lease.clock == ClockRule::Monotonic {
        let at_ms = rec
            .lease
            .renewed_mono_ms
            .saturating_add(rec.lease.ttl_ms)
            .saturating_add(1);
        let left = Duration::from_millis(at_ms).saturating_sub(crate::clock::mono());
        return left.min(Duration::from_millis(MAX_SLEEP_MS));
    }
    Duration::from_millis((lease.expires_in_ms.max(0) as u64).min(MAX_SLEEP_MS) + 1)
}

/// Why `Waker::sleep` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woke {
    /// Nothing that changes the verdict: the time ran out, or a signal.
    No,
    /// A fallback poll's short timeout, or a failed `poll`: look again.
    Poll,
    /// The holder exited, or the record may have changed.
    Event,
}

/// One `poll(2)` on whatever can wake the waiter: the record watch and the holder's exit, where the
/// platform gives descriptors for them; where it gives none, the sleep is cut to `POLL_FALLBACK`.
mod sys {
    use std::time::Instant;

    use rustix::event::{PollFd, PollFlags, poll};

    use super::{POLL_FALLBACK, Woke};
    use crate::process::{Pinned, reader};
    use crate::reader::settle::Judged;
    use crate::store::Watch;
    use crate::verdict::pid_visible;

    pub(super) struct Waker<W> {
        watch: Option<W>,
        /// The watch is paused (`pause`) and must be resumed before the next sleep.
        paused: bool,
        /// The holder we pinned, keyed by (pid, start) so a changed holder gets a new pin.
        pin: Option<((u32, String), Option<Pinned>)>,
    }

    impl<W: Watch> Waker<W> {
        pub(super) fn new(watch: Option<W>) -> Waker<W> {
            Waker {
                watch,
                paused: false,
                pin: None,
            }
        }

        /// Pauses the record watch before what is likely the last judgment.
        pub(super) fn pause(&mut self) {
            if let Some(w) = self.watch.as_mut() {
                w.pause();
                self.paused = true;
            }
        }

        /// Watches again after `pause`; true if it was paused, so the caller judges again (a
        /// watch that cannot resume is dropped: the waiter polls from then on).
        pub(super) fn resume(&mut self) -> bool {
            if !std::mem::take(&mut self.paused) {
                return false;
            }
            if self.watch.as_mut().is_some_and(|w| !w.resume()) {
                self.watch = None;
            }
            true
        }

        /// Pins the record's holder, once per holder identity. A failed pin means the holder is
        /// gone or not provably ours: the next judgment says so, or we fall back to polling.
        fn pin_for(&mut self, j: &Judged) -> Option<&Pinned> {
            let h = &j.record.holder;
            if !pid_visible(h, &reader()) {
                return None; // that number means nothing here (R2, R3a)
            }
            let key = (h.pid, h.start.clone());
            if self.pin.as_ref().map(|(k, _)| k) != Some(&key) {
                let p = Pinned::open(h.pid, &h.start, h.pid_ns.as_deref()).ok();
                self.pin = Some((key, p));
            }
            self.pin.as_ref().and_then(|(_, p)| p.as_ref())
        }

        /// Sleeps until something may have changed the verdict, or until `until` (`Woke::No`).
        pub(super) fn sleep(&mut self, j: &Judged, until: Instant) -> Woke {
            // On another host or in another pid namespace there is no pid to pin (R2, R3a): the
            // record and the lease expiry are all that can change the verdict, so that is not a
            // reason to poll.
            let remote = !pid_visible(&j.record.holder, &reader());
            let pinned = self.pin_for(j).is_some_and(|p| p.poll_fd().is_some());
            let degraded = self.watch.is_none() || (!remote && !pinned);
            let now = Instant::now();
            let mut until = until;
            if degraded {
                until = until.min(now + POLL_FALLBACK);
            }
            let left = until.saturating_duration_since(now);
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let pin_fd = self
                .pin
                .as_ref()
                .and_then(|(_, p)| p.as_ref())
                .and_then(|p| p.poll_fd());
            let mut fds = Vec::with_capacity(2);
            if let Some(w) = &self.watch {
                fds.push(PollFd::from_borrowed_fd(w.fd(), PollFlags::IN));
            }
            if let Some(fd) = pin_fd {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            let n = match poll(&mut fds, Some(&ts)) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => return Woke::No,
                Err(_) => {
                    // A poll that cannot work must not become a busy loop.
                    std::thread::sleep(POLL_FALLBACK.min(left));
                    return Woke::Poll;
                }
            };
            if n == 0 {
                // In degraded mode the short timeout is itself the reason to look again.
                return if degraded { Woke::Poll } else { Woke::No };
            }
            let mut i = 0;
            let mut watch_ready = false;
            if self.watch.is_some() {
                watch_ready = !fds[0].revents().is_empty();
                i = 1;
            }
            let pid_exited = fds.get(i).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            let mut fired = watch_ready && self.watch.as_mut().is_some_and(|w| w.changed());
            if pid_exited {
                // Keep the key, drop the fd: a readable pidfd stays readable, and if the judgment
                // does not change we must not spin on it.
                if let Some((_, p)) = self.pin.as_mut() {
                    *p = None;
                }
                fired = true;
            }
            if fired { Woke::Event } else { Woke::No }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::lease_age;

    /// The wake is the first instant at which the verdict's own arithmetic finds the lease expired.
    #[test]
    fn the_wake_is_the_first_millisecond_the_lease_is_expired() {
        let me = crate::process::current().unwrap();
        let id = "20260101-000000-abcdef";
        let mut rec = Record::begin(id, vec!["true".into()], me.holder(), 1000, 5000);
        rec.lease.renewed_mono_ms = crate::clock::mono_ms();
        let mut reader = crate::process::reader_without_pid_ns();
        reader.now.mono_ms = rec.lease.renewed_mono_ms;
        let lease = lease_age(&rec, &reader);
        assert_eq!(lease.clock, ClockRule::Monotonic, "{lease:?}");

        let before = crate::clock::mono();
        let left = until_expiry(&rec, &lease);
        let after = crate::clock::mono();
        let target = Duration::from_millis(rec.lease.renewed_mono_ms + 5001);
        let read_at = target - left;
        assert!(
            before <= read_at && read_at <= after,
            "{before:?} {read_at:?} {after:?}"
        );

        let just_before = (target - Duration::from_nanos(1)).as_millis() as u64;
        reader.now.mono_ms = just_before;
        assert!(
            lease_age(&rec, &reader).expires_in_ms >= 0,
            "not expired before"
        );
        reader.now.mono_ms = target.as_millis() as u64;
        assert!(
            lease_age(&rec, &reader).expires_in_ms < 0,
            "expired at the wake"
        );
    }

    /// By the wall clock or the cluster's word there is no shared clock to aim at: one millisecond
    /// after the time left, as judged.
    #[test]
    fn other_clocks_wake_a_millisecond_after_the_time_left() {
        let me = crate::process::current().unwrap();
        let id = "20260101-000000-abcdef";
        let rec = Record::begin(id, vec!["true".into()], me.holder(), 1000, 5000);
        for clock in [ClockRule::Wall, ClockRule::Cluster] {
            let lease = LeaseAge {
                clock,
                age_ms: 4750,
                expires_in_ms: 250,
            };
            assert_eq!(until_expiry(&rec, &lease), Duration::from_millis(251));
        }
        let gone = LeaseAge {
            clock: ClockRule::Monotonic,
            age_ms: 9000,
            expires_in_ms: -4000,
        };
        let mut old = rec;
        old.lease.renewed_mono_ms = 1;
        assert_eq!(until_expiry(&old, &gone), Duration::ZERO);
    }
}
