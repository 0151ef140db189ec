//! `tether result`: a finished job's outcome and the tail of its log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use clap::Args;

use super::view::{self};
use super::{CliResult, exit, settle_arg};
use crate::clock::short_duration;
use crate::process;

/// How much of the log `result` shows: enough to see why a job failed, not a flood.
pub const TAIL_LINES: usize = 20;
/// Only the end of the log is read, so a huge log costs nothing.
const TAIL_BYTES: u64 = 64 * 1024;

#[derive(Args, Debug)]
pub struct ResultArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `result --json` (protocol.md 9.1): the job as `status --json` shows it, how long it ran, and the
/// end of its log.
#[derive(serde::Serialize)]
struct ResultView<'a> {
    #[serde(flatten)]
    job: view::JobView<'a>,
    /// From creation to the recorded end; null while active.
    duration_ms: Option<i64>,
    /// The last lines of the log; null when there is no log.
    log_tail: Option<Vec<String>>,
    /// The last lines of tether's own diagnostics for this job (`jobs/<id>.notes`), never the
    /// job's output; empty when there are none.
    notes: Vec<String>,
}

pub fn result(dir: Option<PathBuf>, a: ResultArgs) -> CliResult {
    // Through settle, like `status`: the two commands can never disagree about this job.
    let (store, id, j) = settle_arg(&dir, &a.id)?;
    // Only ages and expiries are shown: the pid namespace is read where a verdict needs it.
    let reader = process::reader_without_pid_ns();
    let r = &j.record;
    let status = j.status();
    let local = log_tail(&store.log_path(&id), TAIL_LINES);
    // No log here (the job ran on another host, protocol.md 11.3): the tail its record carries.
    let kept = match &local {
        None => crate::store::etcd_rules::OutputTail::get(r),
        Some(_) => None,
    };
    let tail = local.or_else(|| {
        kept.as_ref().map(|t| {
            let lines: Vec<String> = t.text.lines().map(str::to_owned).collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
        })
    });
    // tether's own diagnostics, apart from the job's output (src/wrapper/notes.rs).
    let notes = log_tail(&store.notes_path(&id), TAIL_LINES).unwrap_or_default();
    if a.json {
        view::print_json(&ResultView {
            job: view::job_view(&j, &reader),
            duration_ms: r
                .finished_at
                .map(|f| f.ms().saturating_sub(r.created_at.ms())),
            log_tail: tail,
            notes,
        });
        return Ok(exit::of_status(status));
    }
    if status.is_active() {
        let msg = r.progress.message.as_deref().unwrap_or("");
        view::out(format!(
            "job {} is still {} (started {} ago, last beat {}{}{}); `tether status --wait {}` waits for it",
            r.id,
            status,
            view::short_age(Some(view::age_since_created_ms(r, &reader))),
            view::last_beat_text(r, &reader),
            if msg.is_empty() { "" } else { ", progress: " },
            view::one_line(msg, 80),
            r.id,
        ));
        return Ok(exit::ACTIVE);
    }
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" ({})", view::clean(n)))
        .unwrap_or_default();
    view::out(format!("job {}{name}: {}", r.id, view::describe(&j)));
    view::out(format!("command   {}", view::command_line(&r.argv)));
    view::out(format!("created   {}", r.created_at));
    match r.finished_at {
        Some(f) => view::out(format!(
            "finished  {f} (ran {})",
            short_duration(f.ms() - r.created_at.ms())
        )),
        None => view::out(format!(
            "finished  (not recorded: {})",
            j.unsaved
                .as_deref()
                .unwrap_or("the state directory refused the write")
        )),
    }
    if let Some(m) = &r.progress.message {
        view::out(format!(
            "progress  {} ({})",
            view::one_line(m, 100),
            view::beats(r.progress.count)
        ));
    }
    for l in &r.late {
        view::out(format!(
            "late      at {}: {} {} {}: {}",
            l.at,
            l.status.map(|s| s.to_string()).unwrap_or_default(),
            l.reason.map(|s| s.to_string()).unwrap_or_default(),
            l.exit.map(|s| s.to_string()).unwrap_or_default(),
            view::clean(&l.note)
        ));
    }
    for n in &notes {
        view::out(format!("note      {}", view::clean(n)));
    }
    match tail {
        Some(lines) if !lines.is_empty() => {
            match &kept {
                Some(t) => view::out(format!(
                    "--- last {} lines of the output, kept in the record; the whole log is {} on host {} ---",
                    lines.len(),
                    view::clean(&t.log),
                    view::clean(&t.host)
                )),
                None => view::out(format!(
                    "--- last {} lines of {} ---",
                    lines.len(),
                    store.log_path(&id).display()
                )),
            }
            for l in lines {
                view::out(l);
            }
        }
        Some(_) => view::out("(the log is empty)"),
        None => view::out("(no log)"),
    }
    Ok(exit::of_status(status))
}

/// The last `n` lines of a log; None when there is no log file. Invalid UTF-8 is shown lossily
/// rather than refused: a log is whatever the job printed.
pub fn log_tail(path: &Path, n: usize) -> Option<Vec<String>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // a cut line
    }
    let skip = lines.len().saturating_sub(n);
    Some(lines[skip..].iter().map(|s| s.to_string()).collect())
}
