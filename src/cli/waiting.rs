//! `status --wait A [B ...]`: blocks until the jobs end (every one, or with `--any` the first),
//! each on its holder's pidfd, its record's change and its lease's expiry (src/reader/wait.rs).
//!
//! One job is waited for on this thread, with a live line on a terminal. Several are waited for
//! each on its own thread, so none of them is polled; a thread that outlives an `--any` answer is
//! simply abandoned when the process exits.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::status::StatusArgs;
use super::view::{self, UnsavedNote, WaitOutcome};
use super::{CliError, CliResult, Errors, exit, open_store, resolve_id};
use crate::id::JobId;
use crate::process;
use crate::reader::settle::Judged;
use crate::reader::wait::{self, Waited};

pub fn wait_for(dir: Option<PathBuf>, a: StatusArgs) -> CliResult {
    if a.ids.is_empty() {
        return Err(CliError::usage(
            "--wait needs the ids (or unique prefixes) of the jobs to wait for",
        ));
    }
    let store = open_store(&dir)?;
    let mut ids = Vec::new();
    for arg in &a.ids {
        let id = resolve_id(&store, arg)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let timeout = (!a.timeout.is_zero()).then_some(a.timeout);
    let (results, first) = if let [id] = ids.as_slice() {
        let w = outcome(wait_one(
            &store,
            id,
            timeout,
            std::io::stderr().is_terminal(),
        )?);
        let first = (w.1 == WaitOutcome::Ended).then_some(0);
        (vec![w], first)
    } else {
        wait_many(&dir, &ids, timeout, a.any)?
    };
    let mut note = UnsavedNote::default();
    for (j, _) in &results {
        note.note(j);
    }
    let reader = process::reader();
    if a.json {
        view::print_json_array(results.iter().map(|(j, w)| {
            let mut v = view::job_view(j, &reader);
            v.wait = Some(*w);
            v
        }));
    } else {
        let jobs: Vec<Judged> = results.iter().map(|(j, _)| j.clone()).collect();
        view::out(super::status::render_table(&jobs, &reader).join("\n"));
    }
    let errors = Errors::new(a.json);
    let after = humantime::format_duration(Duration::from_millis(a.timeout.as_millis() as u64));
    let mut timed_out = false;
    for (j, w) in &results {
        if *w == WaitOutcome::TimedOut {
            timed_out = true;
            view::err_line(format!(
                "tether: job {} still {} after {after}",
                j.record.id,
                j.status()
            ));
        }
    }
    let code = match (a.any, first) {
        // --any: the job that ended first decides; 124 when none did.
        (true, Some(i)) => exit::of_status(results[i].0.status()),
        (true, None) => exit::TIMEOUT,
        (false, _) => all_code(&results, timed_out),
    };
    Ok(errors.code(code))
}

/// Waiting for all: 124 if any timed out, else the first job (in argument order) that did not
/// succeed decides, else 0.
fn all_code(results: &[(Judged, WaitOutcome)], timed_out: bool) -> i32 {
    if timed_out {
        return exit::TIMEOUT;
    }
    results
        .iter()
        .map(|(j, _)| exit::of_status(j.status()))
        .find(|c| *c != exit::OK)
        .unwrap_or(exit::OK)
}

fn outcome(w: Waited) -> (Judged, WaitOutcome) {
    match w {
        Waited::Ended(j) => (*j, WaitOutcome::Ended),
        Waited::TimedOut(j) => (*j, WaitOutcome::TimedOut),
    }
}

/// One job, on this thread; on a terminal, a live line (elapsed, last beat, progress) on stderr.
fn wait_one<S: crate::store::Store>(
    store: &S,
    id: &JobId,
    timeout: Option<Duration>,
    live: bool,
) -> Result<Waited, CliError> {
    let started = Instant::now();
    let mut shown = false;
    let mut tick = |j: &Judged| {
        let reader = process::reader();
        let msg = j.record.progress.message.as_deref().unwrap_or("");
        let line = format!(
            "waiting for {}: {} elapsed, last beat {}{}{}",
            j.record.id,
            crate::clock::short_duration(started.elapsed().as_millis() as i64),
            view::last_beat_text(&j.record, &reader),
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
    let res = wait::wait(store, id, opts);
    if shown {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
    Ok(res?)
}

/// What each job came to, in argument order, and the index of the first to end.
type Many = (Vec<(Judged, WaitOutcome)>, Option<usize>);

/// Several jobs, one thread each (each with its own store handle).
fn wait_many(
    dir: &Option<PathBuf>,
    ids: &[JobId],
    timeout: Option<Duration>,
    any: bool,
) -> Result<Many, CliError> {
    let (tx, rx) = mpsc::channel();
    for (i, id) in ids.iter().enumerate() {
        let (tx, dir, id) = (tx.clone(), dir.clone(), id.clone());
        std::thread::spawn(move || {
            let res = open_store(&dir).and_then(|s| wait_one(&s, &id, timeout, false));
            let _ = tx.send((i, res));
        });
    }
    drop(tx);
    let mut done: Vec<Option<(Judged, WaitOutcome)>> = vec![None; ids.len()];
    let mut first = None;
    for (i, res) in rx.iter() {
        let (j, w) = outcome(res?);
        let ended = w == WaitOutcome::Ended;
        done[i] = Some((j, w));
        if ended && first.is_none() {
            first = Some(i);
        }
        if any && ended {
            break;
        }
    }
    // With --any, the jobs not waited for to the end are judged once more, as they are now.
    let store = open_store(dir)?;
    let mut out = Vec::with_capacity(ids.len());
    for (slot, id) in done.into_iter().zip(ids) {
        match slot {
            Some(x) => out.push(x),
            None => {
                let j = crate::reader::settle::settle(&store, id)?;
                let w = if j.verdict.is_active() {
                    WaitOutcome::NotWaited
                } else {
                    WaitOutcome::Ended
                };
                out.push((j, w));
            }
        }
    }
    Ok((out, first))
}
