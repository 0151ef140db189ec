//! `tether cancel`: stops a job, signalling only a process proven to be the job's.
//!
//! The order matters. The target is pinned (pidfd, then start time) before anything is written, so
//! a job whose process cannot be proven ours is left untouched. The record becomes `cancelled`
//! before the first signal, so the holder's "my child died" write that follows is refused and kept
//! as a late result instead of turning a cancel into a failure. The pin is held until the end, so
//! the SIGKILL after the grace period cannot reach a process that reused the pid.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use rustix::process::Signal;
use serde::Serialize;

use super::survivors::{self, KILL_WAIT, Stopped};

/// What a holder on another host is allowed beyond two renewal intervals to answer a cancel
/// request (a loaded machine, a slow cluster) before cancel calls it unreachable.
const ACK_MARGIN: Duration = Duration::from_secs(3);
use super::view::{self};
use super::{CliError, CliResult, exit, settle_arg};
use crate::clock::Timestamp;
use crate::process::{IdentityError, Pinned};
use crate::record::{Exit, Reason, Record, Status};
use crate::store::{Change, Store};
use crate::transition::{Write, apply, describe};

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Time between SIGTERM and SIGKILL
    #[arg(long, default_value = "5s", value_parser = crate::clock::parse_grace)]
    pub grace: std::time::Duration,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// What will be signalled: a pinned process, and its group when it leads one.
struct Target {
    pin: Pinned,
    group: Option<u32>,
    what: &'static str,
}

impl Target {
    fn send(&self, sig: Signal) -> std::io::Result<()> {
        match self.group {
            Some(g) => self.pin.signal_group(g, sig),
            None => self.pin.signal(sig),
        }
    }

    /// Waits until the pinned process has exited and no live member of its group remains.
    fn wait_dead(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        if !self.pin.wait_exit(within) {
            return false;
        }
        let Some(g) = self.group else {
            return true;
        };
        // No pidfd exists for a group: look, briefly and boundedly, for members still running.
        loop {
            if !crate::process::group_alive(g) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn refuse(id: &str, e: IdentityError) -> CliError {
    let hint = match e {
        IdentityError::OtherNamespace { .. } => {
            "; run `tether cancel` from inside the pid namespace the job runs in"
        }
        _ => "",
    };
    CliError::new(
        exit::Kind::Refused,
        format!(
            "refusing to cancel job {id}: {e}; nothing was signalled and the record is unchanged{hint}"
        ),
    )
}

/// Pins the child (leader of its group), or the holder when there is no child, or the child has
/// already exited and only the holder is left to stop.
fn pin_target(r: &Record) -> Result<Target, CliError> {
    // The child is numbered in its holder's pid namespace: the holder spawned it.
    let ns = r.holder.pid_ns.as_deref();
    if let Some(c) = &r.child {
        match Pinned::open(c.pid, &c.start, ns) {
            Ok(pin) => {
                return Ok(Target {
                    group: (c.pgid == c.pid).then_some(c.pgid),
                    pin,
                    what: "child",
                });
            }
            Err(IdentityError::Gone(_)) => {}
            Err(e) => return Err(refuse(&r.id, e)),
        }
    }
    match Pinned::open(r.holder.pid, &r.holder.start, ns) {
        Ok(pin) => Ok(Target {
            pin,
            group: None,
            what: "holder",
        }),
        Err(e) => Err(refuse(&r.id, e)),
    }
}

/// What a cancel came to, for scripts (`outcome` in `cancel --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    /// The job was active; it is now recorded `cancelled` and its processes were signalled.
    Cancelled,
    /// The job had already ended; nothing of it was running, nothing was signalled.
    AlreadyEnded,
    /// The job was already `lost`, but processes of its group still ran; they were stopped.
    StoppedSurvivors,
}

/// The process `cancel` aimed at for an active job.
#[derive(Debug, Serialize)]
struct TargetView {
    kind: &'static str,
    pid: u32,
    pgid: Option<u32>,
}

/// `cancel --json` (protocol.md 9.1).
#[derive(Serialize)]
pub struct Report {
    id: String,
    outcome: Outcome,
    /// True when this call recorded the job `cancelled`.
    cancelled: bool,
    pub(super) status: Status,
    pub(super) reason: Option<Reason>,
    exit: Option<Exit>,
    /// The same sentence the text output prints.
    message: String,
    target: Option<TargetView>,
    signals: Vec<&'static str>,
    /// Whether every process signalled had ended when cancel returned.
    ended: bool,
    /// For a lost job: what survived of its process group, and what was done about it.
    survivors: Option<Stopped>,
    errors: Vec<String>,
}

impl Report {
    /// The job ended (by itself or another writer) before cancel's write: that outcome stands.
    fn already_ended(id: &crate::id::JobId, stored: &Record) -> Report {
        Report {
            id: id.to_string(),
            outcome: Outcome::AlreadyEnded,
            cancelled: false,
            status: stored.status,
            reason: stored.reason,
            exit: stored.exit,
            message: format!("job {id} already {}; left as is", describe(stored)),
            target: None,
            signals: Vec::new(),
            ended: true,
            survivors: None,
            errors: Vec::new(),
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            view::print_json(self);
        } else {
            view::out(&self.message);
        }
        for e in &self.errors {
            view::err_line(format!("tether: signalling job {}: {e}", self.id));
        }
    }
}

/// The sentence for a lost job after looking for survivors of its group.
fn survivors_message(id: &str, desc: &str, grace: Duration, s: Option<&Stopped>) -> String {
    let Some(s) = s else {
        return format!("job {id} already {desc}; nothing of it is running; left as is");
    };
    let unproven = if s.unproven.is_empty() {
        String::new()
    } else {
        format!(
            "; {} in its process group {} could not be proven to be the job's and {} left alone",
            survivors::pid_list(&s.unproven),
            s.pgid,
            if s.unproven.len() == 1 { "was" } else { "were" }
        )
    };
    if s.pids.is_empty() {
        return format!("job {id} already {desc}; left as is{unproven}");
    }
    let grace = humantime::format_duration(grace);
    let how = match (s.signals.len(), s.ended) {
        (1, true) => format!("it ended within the {grace} grace period"),
        (_, true) => format!("still running after {grace}, it got SIGKILL and ended"),
        (_, false) => "it is STILL RUNNING after SIGKILL (stuck in the kernel?)".to_owned(),
    };
    format!(
        "job {id} was already {desc}, but its process group {} still ran: sent SIGTERM to {}; {how}; the record stays {}{unproven}",
        s.pgid,
        survivors::pid_list(&s.pids),
        desc.split(' ').next().unwrap_or(desc),
    )
}

pub fn cancel(dir: Option<PathBuf>, a: CancelArgs) -> CliResult {
    let report = cancel_job(&dir, &a.id, a.grace)?;
    report.print(a.json);
    Ok(exit::OK)
}

/// Cancels the job named by `arg` (see the module doc) and says what was done; `rm --force` uses
/// it too.
pub fn cancel_job(dir: &Option<PathBuf>, arg: &str, grace: Duration) -> Result<Report, CliError> {
    let (store, id, j) = settle_arg(dir, arg)?;
    if !j.status().is_active() {
        return Ok(cancel_ended(&j, grace));
    }
    if j.record.holder.host != crate::process::host() && store.self_fences() {
        return cancel_remote(&store, &id, &j.record, grace);
    }
    if j.record.holder.host != crate::process::host() {
        return Err(CliError::new(
            exit::Kind::Refused,
            format!(
                "refusing to cancel job {id}: it runs on host {}, and a pid from another host cannot be signalled from here",
                j.record.holder.host
            ),
        ));
    }
    let target = pin_target(&j.record)?;
    let pinned_child = j.record.child.clone();
    let (outcome, stored) = store.update(&id, &mut |cur: &Record| {
        if cur.status.is_active() && cur.child != pinned_child {
            // The holder attached or replaced its child after we pinned: what we hold is stale.
            return Change::Keep(Some(Err(())));
        }
        match apply(
            cur,
            &Write::Cancel {
                at: Timestamp::now(),
            },
        ) {
            Ok(next) => Change::Write {
                record: next,
                durable: true,
                value: None,
            },
            Err(_) => Change::Keep(Some(Ok(()))),
        }
    })?;
    match outcome {
        Some(Ok(())) => {
            // It ended between our look and the lock: that outcome stands.
            return Ok(Report::already_ended(&id, &stored));
        }
        Some(Err(())) => {
            return Err(CliError::new(
                exit::Kind::Refused,
                format!(
                    "job {id} changed its child while being cancelled; nothing was signalled; run cancel again"
                ),
            ));
        }
        None => {}
    }
    let (signals, ended, errors) = signal_target(&target, grace);
    let pid = target.pin.pid();
    let aim = match target.group {
        Some(g) => format!("process group {g} (the job's {})", target.what),
        None => format!("process {pid} (the job's {})", target.what),
    };
    let grace = humantime::format_duration(grace);
    let how = match (signals.len(), ended) {
        (1, true) => format!("it ended within the {grace} grace period"),
        (_, true) => format!("it was still running after {grace}, so it got SIGKILL and ended"),
        (_, false) => "it is STILL RUNNING after SIGKILL (stuck in the kernel?)".to_owned(),
    };
    let report = Report {
        id: id.to_string(),
        outcome: Outcome::Cancelled,
        cancelled: true,
        status: stored.status,
        reason: stored.reason,
        exit: stored.exit,
        message: format!("cancelled job {id}: sent SIGTERM to {aim}; {how}"),
        target: Some(TargetView {
            kind: target.what,
            pid,
            pgid: target.group,
        }),
        signals,
        ended,
        survivors: None,
        errors,
    };
    drop(target);
    Ok(report)
}

/// Cancel of a job that has already ended: its outcome stands, but a lost job's surviving
/// processes are stopped (see `survivors`).
fn cancel_ended(j: &crate::reader::settle::Judged, grace: Duration) -> Report {
    let r = &j.record;
    // A lost job's processes may outlive its holder: stop what is provably the job's.
    let stopped = (j.status() == Status::Lost)
        .then(|| survivors::stop(r, grace))
        .flatten();
    let did_stop = stopped.as_ref().is_some_and(|s| !s.pids.is_empty());
    let report = Report {
        id: r.id.clone(),
        outcome: if did_stop {
            Outcome::StoppedSurvivors
        } else {
            Outcome::AlreadyEnded
        },
        cancelled: false,
        status: j.status(),
        reason: j.verdict.reason(),
        exit: r.exit,
        message: survivors_message(&r.id, &view::describe(j), grace, stopped.as_ref()),
        target: None,
        signals: stopped
            .as_ref()
            .map(|s| s.signals.clone())
            .unwrap_or_default(),
        ended: stopped.as_ref().is_none_or(|s| s.ended),
        errors: stopped
            .as_ref()
            .map(|s| s.errors.clone())
            .unwrap_or_default(),
        survivors: None,
    };
    Report {
        survivors: stopped,
        ..report
    }
}

/// SIGTERM, the grace period, SIGKILL if needed: (signals sent, whether it ended, errors).
fn signal_target(target: &Target, grace: Duration) -> (Vec<&'static str>, bool, Vec<String>) {
    let mut signals = vec!["SIGTERM"];
    let mut errors = Vec::new();
    if let Err(e) = target.send(Signal::TERM) {
        errors.push(format!("SIGTERM: {e}"));
    }
    let mut ended = target.wait_dead(grace);
    if !ended {
        signals.push("SIGKILL");
        if let Err(e) = target.send(Signal::KILL) {
            errors.push(format!("SIGKILL: {e}"));
        }
        ended = target.wait_dead(KILL_WAIT);
    }
    (signals, ended, errors)
}

/// Cancel across hosts through a cluster store (protocol.md 11.9): the pid is not ours to signal,
/// so cancel puts a request the holder watches. The holder records `cancelled` at its next renewal
/// and stops its group; its result then lands in `late`, which this waits for (the grace period
/// plus the ttl) so the report says whether the job ended. A holder that has not answered within
/// two renewal intervals (and a margin for a loaded machine) is unreachable (stopped, or cut off
/// from the cluster): cancel says so (exit 13) and leaves the request, and the job turns lost when
/// its lease expires, unless the holder comes back first and cancels it then.
fn cancel_remote(
    store: &crate::store::AnyStore,
    id: &crate::id::JobId,
    seen: &Record,
    grace: Duration,
) -> Result<Report, CliError> {
    store.request_cancel(id)?;
    let host = &seen.holder.host;
    let answer = Duration::from_millis(seen.lease.interval_ms.min(60_000)) * 2 + ACK_MARGIN;
    let start = Instant::now();
    let stored = loop {
        let j = crate::reader::settle::settle(store, id)?;
        match j.status() {
            Status::Cancelled => break j.record,
            s if s.is_active() && start.elapsed() < answer => {
                std::thread::sleep(Duration::from_millis(100));
            }
            s if s.is_active() => {
                return Err(CliError::new(
                    exit::Kind::HolderUnreachable,
                    format!(
                        "job {id}: its holder on host {host} did not answer the cancel request within {} (stopped, or cut off from etcd?); the request stands: the job is cancelled if the holder comes back while its lease holds, else it turns lost when the lease expires (ttl {})",
                        humantime::format_duration(answer),
                        humantime::format_duration(Duration::from_millis(seen.lease.ttl_ms)),
                    ),
                ));
            }
            Status::Lost if j.record.reason == Some(Reason::LeaseExpired) => {
                return Err(CliError::new(
                    exit::Kind::HolderUnreachable,
                    format!(
                        "job {id}: its holder on host {host} did not answer the cancel request, and its lease has expired: the job is lost"
                    ),
                ));
            }
            _ => return Ok(Report::already_ended(id, &j.record)),
        }
    };
    // Counted on the record as seen before the request: the holder's result may already be in.
    let before = seen.late.len();
    let limit = grace + Duration::from_millis(stored.lease.ttl_ms.min(600_000));
    let mut ended = false;
    let waited = Instant::now();
    while waited.elapsed() < limit {
        if store.load(id).is_ok_and(|r| r.late.len() > before) {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let message = if ended {
        format!(
            "cancelled job {id}: its holder on host {host} recorded it cancelled, stopped the job, and its result is kept in late"
        )
    } else {
        format!(
            "cancelled job {id}: its holder on host {host} recorded it cancelled and is stopping the job, which had not ended within {}",
            humantime::format_duration(limit)
        )
    };
    Ok(Report {
        id: id.to_string(),
        outcome: Outcome::Cancelled,
        cancelled: true,
        status: stored.status,
        reason: stored.reason,
        exit: stored.exit,
        message,
        target: None,
        signals: Vec::new(),
        ended,
        survivors: None,
        errors: Vec::new(),
    })
}
