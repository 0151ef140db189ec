//! `tether gc`: removes old finished jobs, never an active one.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::survivors;
use super::view::{self, UnsavedNote};
use super::{CliError, CliResult, Errors, exit, open_store};
use crate::clock::{Timestamp, short_duration};
use crate::id::JobId;
use crate::reader::settle::settle_all;
use crate::record::{Reason, Record, Status};
use crate::store::{Store, StoreError};

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Remove finished jobs that finished longer ago than this
    #[arg(long, default_value = "7d", value_parser = crate::clock::parse_age)]
    pub older_than: std::time::Duration,
    /// Only list what would be removed
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove lost jobs whose processes still run, stopping those processes first
    #[arg(long)]
    pub force: bool,
    /// With --force: time between SIGTERM and SIGKILL for a lost job's surviving processes
    #[arg(long, default_value = "5s", value_parser = crate::clock::parse_grace)]
    pub grace: std::time::Duration,
    /// Print JSON: an array with one object per job or file acted on
    #[arg(long)]
    pub json: bool,
}

/// What gc did to one job or file.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Action {
    Removed,
    WouldRemove,
    /// A lost job whose processes still run, kept (no `--force`, or they would not die).
    Kept,
    /// `--force`: a lost job's surviving processes were stopped (then the job was removed).
    Stopped,
    /// `--force --dry-run`: they would be stopped.
    WouldStop,
}

/// One line of `gc`'s report; `gc --json` prints them as an array (protocol.md 9.1).
#[derive(Serialize)]
struct Item {
    action: Action,
    /// The job, or None for a temp file left by a writer that died mid-write.
    id: Option<String>,
    /// The temp file, for those.
    path: Option<String>,
    status: Option<Status>,
    reason: Option<Reason>,
    /// How long ago the job finished.
    finished_ago_ms: Option<i64>,
    /// Processes of a lost job's group still running (kept) or stopped.
    pids: Vec<u32>,
}

/// Where gc's report goes: lines as they happen, or one JSON array at the end.
struct Report {
    json: bool,
    items: Vec<Item>,
}

impl Report {
    fn say(&mut self, item: Item, text: String) {
        if self.json {
            self.items.push(item);
        } else {
            view::out(text);
        }
    }
}

fn job_item(
    action: Action,
    j: &crate::reader::settle::Judged,
    age: Option<i64>,
    pids: Vec<u32>,
) -> Item {
    Item {
        action,
        id: Some(j.record.id.clone()),
        path: None,
        status: Some(j.status()),
        reason: j.verdict.reason(),
        finished_ago_ms: age,
        pids,
    }
}

/// For a lost job whose process group still has members proven to be the job's: whether gc may go
/// on and remove it. Without `--force` it is kept (its record is the only trace of those processes);
/// with it they are stopped first, and the job is kept if they would not die.
fn survivors_allow_removal(
    j: &crate::reader::settle::Judged,
    a: &GcArgs,
    out: &mut Report,
) -> bool {
    if j.status() != Status::Lost {
        return true;
    }
    let id = &j.record.id;
    let found = survivors::find(&j.record, &[]);
    if found.proven.is_empty() {
        return true;
    }
    let pids: Vec<u32> = found.proven.iter().map(|(m, _)| m.pid).collect();
    let what = format!(
        "{}, but its process group {} still runs {}",
        view::describe(j),
        found.pgid,
        survivors::pid_list(&pids)
    );
    drop(found);
    if !a.force {
        let them = if pids.len() == 1 { "it" } else { "them" };
        let text = format!(
            "kept {id}: {what}; `tether cancel {id}` stops {them}, or `tether gc --force` stops {them} and removes the job"
        );
        out.say(job_item(Action::Kept, j, None, pids), text);
        return false;
    }
    if a.dry_run {
        let text = format!("would stop and remove {id}: {what}");
        out.say(job_item(Action::WouldStop, j, None, pids), text);
        return false;
    }
    match survivors::stop(&j.record, a.grace) {
        Some(s) if !s.ended => {
            view::err_line(format!(
                "tether: kept {id}: {} of its process group {} STILL RUNNING after SIGKILL",
                survivors::pid_list(&s.pids),
                s.pgid
            ));
            false
        }
        Some(s) => {
            let text = format!(
                "stopped {} of lost job {id} (process group {}; {})",
                survivors::pid_list(&s.pids),
                s.pgid,
                s.signals.join(", then ")
            );
            out.say(job_item(Action::Stopped, j, None, s.pids.clone()), text);
            true
        }
        None => true,
    }
}

/// Age of a terminal record by when it finished (created, if it never recorded that); None for an
/// active record, which is never collectable.
fn finished_age_ms(r: &Record, now: Timestamp) -> Option<i64> {
    r.status.is_terminal().then(|| {
        now.ms()
            .saturating_sub(r.finished_at.unwrap_or(r.created_at).ms())
    })
}

pub fn gc(dir: Option<PathBuf>, a: GcArgs) -> CliResult {
    let store = open_store(&dir)?;
    let min_age = a.older_than.as_millis().min(i64::MAX as u128) as i64;
    let mut errors = Errors::new(a.json);
    let mut out = Report {
        json: a.json,
        items: Vec::new(),
    };
    let mut note = UnsavedNote::default();
    let mut n = 0usize;
    let mut report = |e: CliError| errors.report(e);
    // Settle first: a dead job is recorded lost now, and so is not old enough until later.
    for j in settle_all(&store)? {
        let j = match j {
            Ok(j) => j,
            Err(StoreError::NotFound(..)) => continue,
            Err(e) => {
                report(e.into());
                continue;
            }
        };
        note.note(&j);
        // The listing parsed every id already; a record is never removed by a name it lacks.
        let id = match JobId::parse(&j.record.id) {
            Ok(id) => id,
            Err(e) => {
                report(e.into());
                continue;
            }
        };
        let now = Timestamp::now();
        let Some(age) = finished_age_ms(&j.record, now) else {
            continue;
        };
        if age <= min_age || !survivors_allow_removal(&j, &a, &mut out) {
            continue;
        }
        if a.dry_run {
            let text = format!(
                "would remove {id}: {}, finished {} ago",
                view::describe(&j),
                short_duration(age)
            );
            out.say(job_item(Action::WouldRemove, &j, Some(age), vec![]), text);
            n += 1;
            continue;
        }
        // Re-checked under the lock: nothing may turn an old terminal record active, but the
        // check costs nothing and keeps gc honest if that ever changes.
        let mut still_old =
            |r: &Record| finished_age_ms(r, Timestamp::now()).is_some_and(|age| age > min_age);
        match store.remove(&id, &mut still_old) {
            Ok(true) => {
                let text = format!(
                    "removed {id}: {}, finished {} ago",
                    view::describe(&j),
                    short_duration(age)
                );
                out.say(job_item(Action::Removed, &j, Some(age), vec![]), text);
                n += 1;
            }
            Ok(false) | Err(StoreError::NotFound(..)) => {}
            Err(e) => report(e.into()),
        }
    }
    // Writers SIGKILLed mid-write leave temp files; they are litter whatever the jobs' ages.
    match store.sweep_temp_files(a.dry_run) {
        Ok(swept) => {
            for p in &swept {
                let (verb, action) = match a.dry_run {
                    true => ("would remove", Action::WouldRemove),
                    false => ("removed", Action::Removed),
                };
                let item = Item {
                    action,
                    id: None,
                    path: Some(p.display().to_string()),
                    status: None,
                    reason: None,
                    finished_ago_ms: None,
                    pids: vec![],
                };
                let text = format!(
                    "{verb} {} (left by a writer that died mid-write)",
                    p.display()
                );
                out.say(item, text);
            }
        }
        Err(e) => report(e.into()),
    }
    if a.json {
        view::print_json_array(out.items.iter());
        return Ok(errors.code(exit::OK));
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    view::err_line(format!(
        "tether: {verb} {n} job{} finished more than {} ago",
        if n == 1 { "" } else { "s" },
        humantime::format_duration(a.older_than)
    ));
    Ok(errors.code(exit::OK))
}
