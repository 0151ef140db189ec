//! What the wrapper knows and decides while the child runs: the lease it holds (renewing through the
//! lease file, re-acquiring after a pause, stopping when refused), the beats, and stopping the
//! child's group. The event loop (`event.rs`) feeds it; how the job ended is recorded by `end.rs`.

use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;

use super::detach::Ready;
use super::setup::{Held, Job};
use super::streams::Streams;
use super::{Mode, OnStall, Options, child, heartbeat, note};
use crate::clock::{Timestamp, mono_ms};
use crate::record::{Progress, Reason, Status};
use crate::store::{AnyStore, Renew, Store, StoreError};
use crate::transition::{Refused, Write};

pub struct State {
    pub job: Job,
    pub spawned: child::Spawned,
    pub channel: heartbeat::Channel,
    pub streams: Streams,
    ready: Option<Ready>,
    pub epoch: u64,
    last_ok_mono: u64,
    pub beats: heartbeat::Beats,
    pub renewing: bool,
    running_durable: bool,
    /// Why this wrapper recorded the job lost itself (a missing beat, failed probes).
    pub stalled: Option<Reason>,
    pub ended_by_other: Option<Status>,
    /// This holder passed its renew deadline on a cluster store and gave the job up (11.3).
    pub fenced: bool,
    pub holder_signal: Option<Signal>,
    pub kill_at: Option<tokio::time::Instant>,
    pub ttl_ms: u64,
    child: crate::record::Child,
    pub(super) log_path: PathBuf,
    /// The last write error reported, so a full disk is said once per kind, not every tick.
    last_fault: Option<String>,
    on_stall: OnStall,
    grace: Duration,
    interval_ms: u64,
    /// The in-place lease writer (protocol.md 6.5); None until first needed or after it failed.
    /// The event loop awaits its answers (`answered`) when it renews asynchronously (etcd).
    pub renewer: Option<<AnyStore as Store>::Renewer>,
    /// The progress message and refusal count last written into the record: a change of either
    /// needs a record write, a beat alone only the lease file.
    written: Written,
}

impl State {
    pub fn new(s: Held, opts: &Options, ready: Option<Ready>) -> State {
        let child = s.spawned.record();
        State {
            job: s.job,
            spawned: s.spawned,
            channel: s.channel,
            streams: s.streams,
            ready,
            epoch: 1,
            last_ok_mono: mono_ms(),
            beats: heartbeat::Beats::new(s.ttl_ms, mono_ms()),
            renewing: true,
            running_durable: false,
            stalled: None,
            ended_by_other: None,
            fenced: false,
            holder_signal: None,
            kill_at: None,
            ttl_ms: s.ttl_ms,
            child,
            log_path: s.log_path,
            last_fault: None,
            on_stall: opts.on_stall,
            grace: opts.grace,
            interval_ms: opts.interval.as_millis().min(u64::MAX as u128) as u64,
            renewer: None,
            written: Written::default(),
        }
    }

    pub fn progress(&self) -> Option<Progress> {
        let p = &self.beats.progress;
        (*p != Progress::default()).then(|| p.clone())
    }

    /// One tick: take in beats, then renew, re-acquire (protocol.md 6.3), or declare the stall.
    pub fn renew(&mut self, judge_beats: bool) {
        self.channel.poll(&mut self.beats, false);
        // Answers read only at ticks (etcd's direct keepalive) count before the renew deadline
        // is judged.
        self.take_answers();
        if !self.renewing {
            return;
        }
        let now = mono_ms();
        if judge_beats
            && self.running_durable
            && self.channel.mode != Mode::None
            && self.beats.stalled(now)
        {
            self.stall();
            return;
        }
        let at = Timestamp::now();
        if self.must_self_fence(now) {
            return self.self_fence();
        }
        // On a cluster store a job's lease is never taken again (protocol.md 11.3): a holder past
        // its ttl has fenced itself above.
        let reacquire = self.running_durable
            && !self.job.store.self_fences()
            && now.saturating_sub(self.last_ok_mono) > self.ttl_ms;
        let unwritten = !self.written.matches(&self.beats.progress);
        if self.running_durable && !reacquire && !unwritten {
            // On etcd the keepalive is sent now and its answer handled when it comes (`answered`).
            match self.send_renewal(now) {
                Some(Ok(())) => {
                    self.beats.dirty = false;
                    return;
                }
                Some(Err(e)) => {
                    self.fault("renew the lease", &e);
                    if self.must_self_fence(now) {
                        self.self_fence();
                    }
                    return;
                }
                None => {}
            }
            match self.fast_renew(at, now) {
                Some(Ok(())) => {
                    self.last_ok_mono = now;
                    self.last_fault = None;
                    self.beats.dirty = false;
                    return;
                }
                Some(Err(refused)) => return self.refused(&refused),
                // On a cluster store the renewal is the keepalive alone, retried next tick: a
                // record write would only block on the same unreachable cluster.
                // Checked again after the failed attempt, which took up to an interval.
                None if self.job.store.self_fences() => {
                    if self.must_self_fence(mono_ms()) {
                        self.self_fence();
                    }
                    return;
                }
                None => {} // the fast path is unavailable: fall through to a record write
            }
        }
        let (w, durable) = if reacquire {
            let w = Write::Acquire {
                epoch: self.epoch,
                at,
                mono_ms: now,
            };
            (w, true)
        } else {
            let w = Write::Renew {
                epoch: self.epoch,
                at,
                mono_ms: now,
                running: true,
                child: Some(self.child.clone()),
                progress: self.beats.dirty.then(|| self.beats.progress.clone()),
            };
            // Until `running` is durable the launcher of a detached job is still waiting on it.
            (w, !self.running_durable)
        };
        match self.job.write(&w, durable) {
            Ok(Ok(rec)) => self.renewed(rec.lease.epoch, now, reacquire),
            Ok(Err(refused)) => self.refused(&refused),
            Err(StoreError::NotFound(..)) => self.gone(),
            Err(e) => {
                self.fault("renew the lease", &e);
                if self.must_self_fence(now) {
                    return self.self_fence();
                }
                // The record could not take a new progress message (a full disk, say); the lease
                // file may still take the renewal, and a healthy job must not expire over a message.
                if self.running_durable && !reacquire {
                    if let Some(Ok(())) = self.fast_renew(at, now) {
                        self.last_ok_mono = now;
                    }
                }
            }
        }
    }

    /// When the beat deadline passes before the next tick, the moment just after it, so a stall
    /// is judged when it happens, not up to an interval later. None otherwise: a job that beats in
    /// time, or needs no beats, costs no wake-up besides the tick.
    pub fn stall_check_at(&self) -> Option<tokio::time::Instant> {
        if !self.renewing || !self.running_durable || self.channel.mode == Mode::None {
            return None;
        }
        let left = (self.beats.deadline_ms + 1).saturating_sub(mono_ms());
        (left < self.interval_ms).then(|| tokio::time::Instant::now() + Duration::from_millis(left))
    }

    /// The beat deadline has passed (`stall_check_at`): take in waiting beats, then judge.
    pub fn check_stall(&mut self) {
        self.channel.poll(&mut self.beats, false);
        if self.stall_check_at().is_some() && self.beats.stalled(mono_ms()) {
            self.stall();
        }
    }

    /// A record write renewed (or re-acquired) the lease.
    fn renewed(&mut self, epoch: u64, now: u64, reacquire: bool) {
        self.epoch = epoch;
        self.last_ok_mono = now;
        self.last_fault = None;
        if reacquire {
            note!(
                "the lease had expired on this wrapper's own clock (was it stopped?); took it again as epoch {}",
                self.epoch
            );
        } else {
            self.beats.dirty = false;
            self.written = Written::of(&self.beats.progress);
        }
        if !self.running_durable {
            self.running_durable = true;
            // Opened now, while the disk has room for its slots (see `Renewer`).
            self.renewer = self.job.store.renewer(&self.job.id).ok();
            if let Some(r) = self.ready.take() {
                r.running(self.job.id.as_str(), std::process::id(), &self.log_path);
            }
        }
    }

    /// Starts a renewal whose answer comes as an event (etcd, store/etcd/session.rs). None when
    /// the store renews at once (`fast_renew`).
    fn send_renewal(&mut self, now: u64) -> Option<Result<(), StoreError>> {
        if !self.job.store.self_fences() {
            return None;
        }
        if self.renewer.is_none() {
            self.renewer = self.job.store.renewer(&self.job.id).ok();
        }
        self.renewer
            .as_mut()?
            .send(self.epoch, now, &self.beats.progress)
    }

    /// Applies the answers the renewer read without waiting (store/etcd/direct.rs).
    fn take_answers(&mut self) {
        let Some(r) = self.renewer.as_mut() else {
            return;
        };
        r.collect(mono_ms());
        while let Some((sent, res)) = self.renewer.as_mut().and_then(|r| r.ready()) {
            self.answered(sent, res);
        }
    }

    /// Whether the idle wait may be used: renewals need nothing from the runtime between ticks.
    pub fn renews_alone(&self) -> bool {
        match &self.renewer {
            Some(r) => r.runs_alone(),
            None => !self.job.store.self_fences(),
        }
    }

    /// The answer to a renewal `send_renewal` started, `sent` being when it was sent.
    pub fn answered(&mut self, sent: u64, r: crate::store::Renewal) {
        if !self.renewing {
            return;
        }
        match r {
            Ok(Ok(())) => {
                self.last_ok_mono = self.last_ok_mono.max(sent);
                self.last_fault = None;
            }
            Ok(Err(refused)) => self.refused(&refused),
            Err(e) => {
                self.fault("renew the lease", &e);
                if self.must_self_fence(mono_ms()) {
                    self.self_fence();
                }
            }
        }
    }

    /// Renews through the lease file. None when it cannot be used (then the record write runs,
    /// and reports the error if that fails too).
    fn fast_renew(&mut self, at: Timestamp, now: u64) -> Option<Result<(), Box<Refused>>> {
        if self.renewer.is_none() {
            self.renewer = self.job.store.renewer(&self.job.id).ok();
        }
        match self
            .renewer
            .as_mut()?
            .renew(self.epoch, at, now, &self.beats.progress)
        {
            Ok(r) => Some(r),
            Err(e) => {
                self.fault("renew the lease", &e);
                // An etcd renewer reopens its own stream; rebuilding it would need the cluster.
                if !self.job.store.self_fences() {
                    self.renewer = None;
                }
                None
            }
        }
    }

    /// On a store whose cluster judges expiry (etcd, protocol.md 11.3), a holder that has not
    /// renewed by its renew deadline, one interval short of its ttl, must assume readers elsewhere
    /// judge the job lost by the time its group has stopped.
    fn must_self_fence(&self, now: u64) -> bool {
        self.renewing
            && self.running_durable
            && self.job.store.self_fences()
            && now.saturating_sub(self.last_ok_mono) > self.ttl_ms.saturating_sub(self.interval_ms)
    }

    /// Like Kubernetes leader election's renew deadline: stop the child's group before anyone
    /// else could start a replacement (unless `--on-stall keep` says to keep it running).
    fn self_fence(&mut self) {
        self.renewing = false;
        self.fenced = true;
        note!(
            "could not renew job {}'s lease for its ttl ({}ms): readers judge it lost; {}",
            self.job.id,
            self.ttl_ms,
            if self.on_stall == OnStall::Kill {
                "stopping its process group"
            } else {
                "keeping the child running (--on-stall keep)"
            }
        );
        if self.on_stall == OnStall::Kill {
            self.terminate();
        }
    }

    /// Someone else ended the job, or fenced us out: stop renewing, and stop the child if the
    /// job is over.
    fn refused(&mut self, refused: &Refused) {
        self.renewing = false;
        if refused.current.is_terminal() {
            note!(
                "job {} is already {}: stopping its process group",
                self.job.id,
                refused.current
            );
            self.ended_by_other = Some(refused.current);
            self.terminate();
        } else {
            note!("lease renewal refused: {}; no longer renewing", refused.why);
        }
    }

    /// The record was removed (by hand, or by `gc` after a reader judged the job lost while this
    /// wrapper was stopped): no command can see or stop the job any more, so it must not run on.
    fn gone(&mut self) {
        self.renewing = false;
        if self.kill_at.is_none() {
            note!(
                "the record of job {} was removed: nobody can see or stop the job now, so its process group is stopped",
                self.job.id
            );
            self.terminate();
        }
    }

    pub fn fault(&mut self, what: &str, e: &StoreError) {
        let msg = e.to_string();
        if self.last_fault.as_deref() != Some(msg.as_str()) {
            note!("cannot {what} of job {} (will retry): {msg}", self.job.id);
        }
        self.last_fault = Some(msg);
    }

    /// A required beat is missing: the job is over as far as anyone should believe. Record that
    /// first, then (by default) stop the child.
    pub fn stall(&mut self) {
        let why = if self.beats.triggered {
            "the job reported its own failure (WATCHDOG=trigger)".to_string()
        } else {
            format!("no beat for {}ms", self.beats.timeout_ms)
        };
        self.unhealthy(Reason::HeartbeatTimeout, &why);
    }

    /// A probe's outcome: `--probe-failures` failures in a row make the job unhealthy, as a
    /// missing beat does.
    pub fn probed(&mut self, mut o: crate::record::ProbeOutcome, threshold: u32) {
        let before = self.beats.progress.probe.as_ref().map_or(0, |p| p.failures);
        o.failures = if o.ok { 0 } else { before.saturating_add(1) };
        let failed = !o.ok && o.failures >= threshold;
        let why = format!(
            "{} probe failures in a row (last: {}, after {}ms)",
            o.failures, o.detail, o.duration_ms
        );
        self.beats.probe(o);
        if failed && self.renewing {
            self.unhealthy(Reason::ProbeFailed, &why);
        }
    }

    /// Records the job lost for `reason`, then (by default) stops the child.
    fn unhealthy(&mut self, reason: Reason, why: &str) {
        self.renewing = false;
        self.stalled = Some(reason);
        let w = Write::Finish {
            epoch: self.epoch,
            at: Timestamp::now(),
            status: Status::Lost,
            reason,
            exit: None,
            progress: self.progress(),
        };
        let id = &self.job.id;
        match self.job.write(&w, true) {
            Ok(Ok(_)) => note!("{why}: job {id} recorded lost ({reason})"),
            Ok(Err(refused)) => {
                note!("{why}, but job {id} was already {}", refused.current);
                self.ended_by_other = Some(refused.current);
            }
            // The lease is no longer renewed, so readers will find it expired anyway.
            Err(e) => note!("{why}; cannot record it for job {id}: {e}"),
        }
        if self.on_stall == OnStall::Kill || self.ended_by_other.is_some() {
            self.terminate();
        }
    }

    /// SIGTERM (and SIGCONT, so a stopped group sees it), then SIGKILL after the grace period.
    pub fn terminate(&mut self) {
        self.spawned.signal_group(Signal::TERM);
        self.spawned.signal_group(Signal::CONT);
        if self.kill_at.is_none() {
            self.kill_at = Some(tokio::time::Instant::now() + self.grace);
        }
    }

    /// A job that ignores the forwarded signal must not outlive the wrapper's order to stop, so
    /// SIGKILL follows after the grace period, as for a stall.
    pub fn forward(&mut self, sig: Signal) {
        note!(
            "received {sig:?}; forwarding it to the job's process group (SIGKILL in {})",
            humantime::format_duration(self.grace)
        );
        self.spawned.signal_group(sig);
        self.holder_signal = Some(sig);
        if self.kill_at.is_none() {
            self.kill_at = Some(tokio::time::Instant::now() + self.grace);
        }
    }
}

/// What of the progress needs a record write when it changes (a beat alone goes to the lease file).
#[derive(Default, PartialEq, Eq)]
struct Written {
    message: Option<String>,
    rejected: u64,
    /// A probe's outcome, not its time: a healthy probe every second writes nothing.
    probe: Option<(bool, u32, String)>,
    extended_until: Option<crate::clock::Timestamp>,
}

impl Written {
    /// `*self == Written::of(p)`, without copying the strings (asked on every renewal).
    fn matches(&self, p: &Progress) -> bool {
        self.message == p.message
            && self.rejected == p.rejected
            && self.extended_until == p.extended_until
            && match (&self.probe, &p.probe) {
                (None, None) => true,
                (Some((ok, failures, detail)), Some(o)) => {
                    (*ok, *failures, detail.as_str()) == (o.ok, o.failures, o.detail.as_str())
                }
                _ => false,
            }
    }

    fn of(p: &Progress) -> Written {
        Written {
            message: p.message.clone(),
            rejected: p.rejected,
            probe: p
                .probe
                .as_ref()
                .map(|o| (o.ok, o.failures, o.detail.clone())),
            extended_until: p.extended_until,
        }
    }
}
