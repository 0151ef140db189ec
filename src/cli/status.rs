//! `tether status`: every job as the verdict sees it, and `--wait` for one job to end.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::view::{self, UnsavedNote};
use super::{CliError, CliResult, Errors, exit, open_store, resolve_id};
use crate::judge::{Judged, settle};
use crate::process;
use crate::store::{Store, StoreError};
use crate::verdict::Reader;
use crate::wait::{self, Waited};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Job ids or unique prefixes [default: every job]
    pub ids: Vec<String>,
    /// Block until the job is terminal or judged lost
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (0 = no limit)
    #[arg(long, default_value = "240s", value_parser = crate::clock::parse_timeout)]
    pub timeout: std::time::Duration,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Only jobs whose metadata has KEY=VALUE (repeatable: all must match)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = crate::meta::parse_pair)]
    pub meta: Vec<(String, String)>,
}

pub fn status(dir: Option<PathBuf>, a: StatusArgs) -> CliResult {
    if a.wait {
        return wait_for(dir, a);
    }
    let store = open_store(&dir)?;
    let mut jobs = Vec::new();
    let mut errors = Errors::new(a.json);
    let mut fail = |e: CliError| errors.report(e);
    if a.ids.is_empty() {
        for id in store.ids()? {
            match settle(&store, &id) {
                Ok(j) => jobs.push(j),
                // Removed (gc) between listing and reading: it is simply no longer a job.
                Err(StoreError::NotFound(..)) => {}
                Err(e) => fail(e.into()),
            }
        }
        // Active first, then newest: what a person looking at a list wants to see on top.
        jobs.sort_by(|x, y| {
            y.status()
                .is_active()
                .cmp(&x.status().is_active())
                .then(y.record.created_at.cmp(&x.record.created_at))
                .then(x.record.id.cmp(&y.record.id))
        });
    } else {
        for arg in &a.ids {
            match resolve_id(&store, arg).and_then(|id| Ok(settle(&store, &id)?)) {
                Ok(j) => jobs.push(j),
                Err(e) => fail(e),
            }
        }
    }
    jobs.retain(|j| crate::meta::matches(&j.record.meta, &a.meta));
    let mut note = UnsavedNote::default();
    for j in &jobs {
        note.note(j);
    }
    let reader = process::reader();
    if a.json {
        if a.ids.len() == 1 {
            if let Some(one) = jobs.first() {
                view::print_json(&view::job_view(one, &reader));
            }
        } else {
            view::print_json_array(jobs.iter().map(|j| view::job_view(j, &reader)));
        }
    } else if !jobs.is_empty() || a.ids.is_empty() {
        view::out(render_table(&jobs, &reader).join("\n"));
    }
    Ok(errors.code(exit::OK))
}

/// The aligned table `tether status` prints.
pub fn render_table(jobs: &[Judged], reader: &Reader) -> Vec<String> {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let r = &j.record;
            vec![
                r.id.clone(),
                j.status().to_string(),
                j.verdict
                    .reason()
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "-".into()),
                view::short_age(Some(view::age_since_created_ms(r, reader))),
                view::short_age(Some(view::last_beat_ms(r, reader))),
                view::one_line(r.progress.message.as_deref().unwrap_or(""), 60),
            ]
        })
        .collect();
    view::table(
        &["ID", "STATUS", "REASON", "AGE", "LAST BEAT", "PROGRESS"],
        &rows,
    )
}

/// `status --wait ID`: blocks on the holder's pidfd, the record's directory and the lease expiry.
fn wait_for(dir: Option<PathBuf>, a: StatusArgs) -> CliResult {
    let [arg] = a.ids.as_slice() else {
        return Err(CliError::usage(
            "--wait takes exactly one job id (or unique prefix)",
        ));
    };
    let store = open_store(&dir)?;
    let id = resolve_id(&store, arg)?;
    let timeout = (!a.timeout.is_zero()).then_some(a.timeout);
    let started = Instant::now();
    let live = std::io::stderr().is_terminal();
    let mut shown = false;
    let mut tick = |j: &Judged| {
        let reader = process::reader();
        let msg = j.record.progress.message.as_deref().unwrap_or("");
        let line = format!(
            "waiting for {}: {} elapsed, last beat {} ago{}{}",
            j.record.id,
            crate::clock::short_duration(started.elapsed().as_millis() as i64),
            view::short_age(Some(view::last_beat_ms(&j.record, &reader))),
            if msg.is_empty() { "" } else { ", " },
            view::one_line(msg, 60)
        );
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[2K{line}");
        let _ = e.flush();
        shown = true;
    };
    let opts = wait::Options {
        timeout,
        tick: if live { Some(&mut tick) } else { None },
    };
    let res = wait::wait(&store, &id, opts);
    if shown {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
    let (j, timed_out) = match res? {
        Waited::Ended(j) => (*j, false),
        Waited::TimedOut(j) => (*j, true),
    };
    UnsavedNote::default().note(&j);
    let reader = process::reader();
    if a.json {
        view::print_json(&view::job_view(&j, &reader));
    } else {
        for line in render_table(std::slice::from_ref(&j), &reader) {
            view::out(line);
        }
    }
    if timed_out {
        view::err_line(format!(
            "tether: job {} still {} after {}",
            j.record.id,
            j.status(),
            humantime::format_duration(Duration::from_millis(a.timeout.as_millis() as u64))
        ));
        return Ok(exit::TIMEOUT);
    }
    Ok(exit::of_status(j.status()))
}
