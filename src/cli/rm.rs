//! `tether rm ID...`: removes jobs that have ended (record, lock, lease file, logs), so their ids
//! can be used again. An active job is refused unless `--force`, which cancels it first; so is a
//! lost job whose processes still run (`--force` stops them, as `cancel` does). `gc` removes by age.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::cancel::{self, Report};
use super::survivors;
use super::view;
use super::{CliError, CliResult, Errors, exit, settle_arg};
use crate::record::{Reason, Record, Status};
use crate::store::{Store, StoreError};

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Job ids or unique prefixes
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Cancel an active job first (and stop what still runs of a lost one)
    #[arg(long, short)]
    pub force: bool,
    /// With --force: time between SIGTERM and SIGKILL
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub grace: Duration,
    /// Print JSON: an array with one object per job removed
    #[arg(long)]
    pub json: bool,
}

/// One removed job, as `rm --json` prints it (protocol.md 9.1).
#[derive(Serialize)]
struct Removed {
    id: String,
    /// The status the job had when it was removed.
    status: Status,
    reason: Option<Reason>,
    /// With --force on a job that was active (or lost with processes running): what cancel did.
    cancel: Option<Report>,
}

pub fn rm(dir: Option<PathBuf>, a: RmArgs) -> CliResult {
    let mut errors = Errors::new(a.json);
    let mut removed = Vec::new();
    for arg in &a.ids {
        match rm_one(&dir, arg, &a) {
            Ok(r) => {
                if !a.json {
                    if let Some(c) = &r.cancel {
                        c.print(false);
                    }
                    view::out(format!("removed job {} ({})", r.id, r.status));
                }
                removed.push(r);
            }
            Err(e) => errors.report(e),
        }
    }
    if a.json {
        view::print_json_array(removed.iter());
    }
    Ok(errors.code(exit::OK))
}

fn rm_one(dir: &Option<PathBuf>, arg: &str, a: &RmArgs) -> Result<Removed, CliError> {
    let (store, id, j) = settle_arg(dir, arg)?;
    let active = j.status().is_active();
    let survivors =
        j.status() == Status::Lost && !survivors::find(&j.record, &[]).proven.is_empty();
    let mut cancel = None;
    if active || survivors {
        if !a.force {
            let what = if active {
                format!("job {id} is still {}", j.status())
            } else {
                format!("job {id} is lost, but processes of its group still run")
            };
            return Err(CliError::new(
                exit::Kind::Active,
                format!(
                    "{what}; `tether cancel {id}` stops it, or `tether rm --force {id}` stops and removes it"
                ),
            ));
        }
        let report = cancel::cancel_job(dir, id.as_str(), a.grace)?;
        cancel = Some(report);
    }
    // Under the job's lock: only an ended record is removed, whatever happened since we looked.
    let mut ended = |r: &Record| r.status.is_terminal();
    match store.remove(&id, &mut ended) {
        Ok(true) => {}
        Ok(false) => {
            return Err(CliError::new(
                exit::Kind::Active,
                format!("job {id} became active again while being removed; it was kept"),
            ));
        }
        Err(StoreError::NotFound(..)) => {} // removed meanwhile (gc): the outcome asked for
        Err(e) => return Err(e.into()),
    }
    let (status, reason) = match &cancel {
        Some(c) => (c.status, c.reason),
        None => (j.status(), j.verdict.reason()),
    };
    Ok(Removed {
        id: id.to_string(),
        status,
        reason,
        cancel,
    })
}
