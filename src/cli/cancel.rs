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
use serde_json::json;

use super::view::{self};
use super::{CliError, CliResult, exit, settle_arg};
use crate::clock::Timestamp;
use crate::process::{IdentityError, Pinned};
use crate::record::Record;
use crate::store::{Change, Store};
use crate::transition::{Write, apply, describe};

/// How long to wait for the group to die after SIGKILL: it cannot be ignored, so this only bounds a
/// process stuck in the kernel (uninterruptible I/O).
const KILL_WAIT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Time between SIGTERM and SIGKILL
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
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
            if !group_has_live_members(g) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether any process of group `pgid` is still running. Zombies do not count: they are dead, and
/// whether they are reaped is up to their parent (in a container, pid 1 may never reap them).
fn group_has_live_members(pgid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(close) = stat.rfind(')') else {
                    continue;
                };
                let f: Vec<&str> = stat[close + 1..].split_ascii_whitespace().collect();
                let (Some(state), Some(pgrp)) = (f.first(), f.get(2)) else {
                    continue;
                };
                if pgrp.parse::<u32>().ok() == Some(pgid) && !matches!(*state, "Z" | "X" | "x") {
                    return true;
                }
            }
            return false;
        }
    }
    crate::process::group_alive(pgid)
}

fn refuse(id: &str, e: IdentityError) -> CliError {
    CliError::new(
        exit::ACTIVE_OR_REFUSED,
        format!(
            "refusing to cancel job {id}: {e}; nothing was signalled and the record is unchanged"
        ),
    )
}

/// Pins the child (leader of its group), or the holder when there is no child, or the child has
/// already exited and only the holder is left to stop.
fn pin_target(r: &Record) -> Result<Target, CliError> {
    if let Some(c) = &r.child {
        match Pinned::open(c.pid, &c.start) {
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
    match Pinned::open(r.holder.pid, &r.holder.start) {
        Ok(pin) => Ok(Target {
            pin,
            group: None,
            what: "holder",
        }),
        Err(e) => Err(refuse(&r.id, e)),
    }
}

pub fn cancel(dir: Option<PathBuf>, a: CancelArgs) -> CliResult {
    let (store, id, j) = settle_arg(&dir, &a.id)?;
    let left_as_is = |r: &Record, status_desc: String| {
        if a.json {
            view::print_json(&json!({
                "id": r.id, "cancelled": false, "status": j.status(),
                "reason": j.verdict.reason(), "exit": r.exit,
                "message": format!("job {} already {status_desc}; left as is", r.id),
            }));
        } else {
            view::out(format!("job {} already {status_desc}; left as is", r.id));
        }
        Ok(exit::OK)
    };
    if !j.status().is_active() {
        return left_as_is(&j.record, view::describe(&j));
    }
    if j.record.holder.host != crate::process::host() {
        return Err(CliError::new(
            exit::ACTIVE_OR_REFUSED,
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
        Some(Ok(())) => return left_as_is(&stored, describe(&stored)),
        Some(Err(())) => {
            return Err(CliError::new(
                exit::ACTIVE_OR_REFUSED,
                format!(
                    "job {id} changed its child while being cancelled; nothing was signalled; run cancel again"
                ),
            ));
        }
        None => {}
    }
    let pid = target.pin.pid();
    let (kind, group) = (target.what, target.group);
    let aim = match target.group {
        Some(g) => format!("process group {g} (the job's {})", target.what),
        None => format!("process {pid} (the job's {})", target.what),
    };
    let mut signals = vec!["SIGTERM"];
    let mut errors = Vec::new();
    if let Err(e) = target.send(Signal::TERM) {
        errors.push(format!("SIGTERM: {e}"));
    }
    let mut ended = target.wait_dead(a.grace);
    if !ended {
        signals.push("SIGKILL");
        if let Err(e) = target.send(Signal::KILL) {
            errors.push(format!("SIGKILL: {e}"));
        }
        ended = target.wait_dead(KILL_WAIT);
    }
    drop(target);
    let grace = humantime::format_duration(a.grace);
    if a.json {
        view::print_json(&json!({
            "id": id.as_str(), "cancelled": true, "status": stored.status, "reason": stored.reason,
            "target": {"kind": kind, "pid": pid, "pgid": group},
            "signals": signals, "ended": ended, "errors": errors,
        }));
    } else {
        let how = match (signals.len(), ended) {
            (1, true) => format!("it ended within the {grace} grace period"),
            (_, true) => format!("it was still running after {grace}, so it got SIGKILL and ended"),
            (_, false) => "it is STILL RUNNING after SIGKILL (stuck in the kernel?)".to_owned(),
        };
        view::out(format!("cancelled job {id}: sent SIGTERM to {aim}; {how}"));
    }
    for e in &errors {
        eprintln!("tether: signalling job {id}: {e}");
    }
    Ok(exit::OK)
}
