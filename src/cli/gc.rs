//! `tether gc`: removes old finished jobs, never an active one.

use std::path::PathBuf;

use clap::Args;

use super::survivors;
use super::view::{self, UnsavedNote};
use super::{CliError, CliResult, Errors, exit, open_store};
use crate::clock::{Timestamp, short_duration};
use crate::judge::settle;
use crate::record::{Record, Status};
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
}

/// For a lost job whose process group still has members proven to be the job's: whether gc may go
/// on and remove it. Without `--force` it is kept (its record is the only trace of those processes);
/// with it they are stopped first, and the job is kept if they would not die.
fn survivors_allow_removal(j: &crate::judge::Judged, a: &GcArgs) -> bool {
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
        view::out(format!(
            "kept {id}: {what}; `tether cancel {id}` stops {them}, or `tether gc --force` stops {them} and removes the job"
        ));
        return false;
    }
    if a.dry_run {
        view::out(format!("would stop and remove {id}: {what}"));
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
            view::out(format!(
                "stopped {} of lost job {id} (process group {}; {})",
                survivors::pid_list(&s.pids),
                s.pgid,
                s.signals.join(", then ")
            ));
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
    let mut errors = Errors::new(false);
    let mut note = UnsavedNote::default();
    let mut n = 0usize;
    let mut report = |e: CliError| errors.report(e);
    for id in store.ids()? {
        // Settle first: a dead job is recorded lost now, and so is not old enough until later.
        let j = match settle(&store, &id) {
            Ok(j) => j,
            Err(StoreError::NotFound(..)) => continue,
            Err(e) => {
                report(e.into());
                continue;
            }
        };
        note.note(&j);
        let now = Timestamp::now();
        let Some(age) = finished_age_ms(&j.record, now) else {
            continue;
        };
        if age <= min_age || !survivors_allow_removal(&j, &a) {
            continue;
        }
        if a.dry_run {
            view::out(format!(
                "would remove {id}: {}, finished {} ago",
                view::describe(&j),
                short_duration(age)
            ));
            n += 1;
            continue;
        }
        // Re-checked under the lock: nothing may turn an old terminal record active, but the
        // check costs nothing and keeps gc honest if that ever changes.
        let mut still_old =
            |r: &Record| finished_age_ms(r, Timestamp::now()).is_some_and(|age| age > min_age);
        match store.remove(&id, &mut still_old) {
            Ok(true) => {
                view::out(format!(
                    "removed {id}: {}, finished {} ago",
                    view::describe(&j),
                    short_duration(age)
                ));
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
                let verb = if a.dry_run { "would remove" } else { "removed" };
                view::out(format!(
                    "{verb} {} (left by a writer that died mid-write)",
                    p.display()
                ));
            }
        }
        Err(e) => report(e.into()),
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    view::err_line(format!(
        "tether: {verb} {n} job{} finished more than {} ago",
        if n == 1 { "" } else { "s" },
        humantime::format_duration(a.older_than)
    ));
    Ok(errors.code(exit::OK))
}
