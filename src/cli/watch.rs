//! `tether watch`: a live view of every job. On a terminal, the `status` table redrawn in place;
//! otherwise (or with `--json`) one JSON line per job each time it changes, for progress UIs.
//!
//! It sleeps on events, not a polling interval: the store's watch (an inotify watch on `jobs/` for
//! the file store, which wakes on any record's change), a pidfd per active holder (its death), and
//! a timer at the earliest lease expiry (a wedge). On a terminal the table is also redrawn every
//! second, because its ages move; that is display, not detection.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::status::{StatusArgs, render_table, wanted};
use super::view::{self, UnsavedNote};
use super::{CliResult, Errors, exit, open_store};
use crate::id::JobId;
use crate::process;
use crate::reader::settle::{Judged, settle_all};
use crate::record::Status;
use crate::store::{Store, StoreError, Watch};

/// The longest sleep between looks when a store cannot notify (or an event could be missed).
const FALLBACK: Duration = Duration::from_millis(200);
/// How often a terminal's table is redrawn for its ages.
const REDRAW: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Print JSON lines of changes even on a terminal
    #[arg(long)]
    pub json: bool,
    /// Only jobs in these states (comma-separated)
    #[arg(long, value_name = "STATE,...", value_delimiter = ',', value_parser = super::status::parse_status)]
    pub state: Vec<Status>,
    /// Only active jobs
    #[arg(long)]
    pub active: bool,
    /// Only jobs whose metadata has KEY=VALUE (repeatable)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = crate::meta::parse_pair)]
    pub meta: Vec<(String, String)>,
}

/// What makes a job "changed" for `watch --json`: not its renewals (every second), but what a
/// person or a UI would want to hear about.
#[derive(PartialEq, Eq)]
struct Seen {
    status: Status,
    reason: Option<crate::record::Reason>,
    exit: Option<crate::record::Exit>,
    beats: u64,
    message: Option<String>,
    late: usize,
    child: Option<u32>,
}

impl Seen {
    fn of(j: &Judged) -> Seen {
        let r = &j.record;
        Seen {
            status: j.status(),
            reason: j.verdict.reason(),
            exit: r.exit,
            beats: r.progress.count,
            message: r.progress.message.clone(),
            late: r.late.len(),
            child: r.child.as_ref().map(|c| c.pid),
        }
    }
}

/// A job that disappeared (`rm`, `gc`), as `watch --json` reports it.
#[derive(Serialize)]
struct Removed<'a> {
    id: &'a str,
    removed: bool,
}

pub fn watch(dir: Option<PathBuf>, a: WatchArgs) -> CliResult {
    let store = open_store(&dir)?;
    let table = std::io::stdout().is_terminal() && !a.json;
    let filter = StatusArgs {
        ids: vec![],
        wait: false,
        any: false,
        timeout: Duration::ZERO,
        json: a.json,
        meta: a.meta.clone(),
        state: a.state.clone(),
        active: a.active,
    };
    // The file store's watch is on the whole `jobs/` directory: its fd wakes for every record.
    let mut watch = JobId::parse("tether-watch")
        .ok()
        .and_then(|id| store.watch(&id));
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut errors = Errors::new(a.json);
    let mut note = UnsavedNote::default();
    loop {
        let mut jobs = Vec::new();
        for j in settle_all(&store)? {
            match j {
                Ok(j) => jobs.push(j),
                Err(StoreError::NotFound(..)) => {}
                Err(e) => errors.report(e.into()),
            }
        }
        jobs.retain(|j| wanted(j, &filter));
        jobs.sort_by(|x, y| {
            (y.status().is_active(), y.record.created_at, &x.record.id).cmp(&(
                x.status().is_active(),
                x.record.created_at,
                &y.record.id,
            ))
        });
        for j in &jobs {
            note.note(j);
        }
        let reader = process::reader();
        let alive = if table {
            draw(&render_table(&jobs, &reader))
        } else {
            report_changes(&jobs, &mut seen, &reader)
        };
        if !alive {
            return Ok(errors.code(exit::OK)); // the reader of our output went away
        }
        let mut wait = next_expiry(&jobs);
        if table {
            wait = wait.min(REDRAW);
        }
        if watch.is_none() {
            wait = wait.min(FALLBACK);
        }
        sleep(&jobs, watch.as_mut(), wait);
    }
}

/// Redraws the table from the top of the screen; false once stdout is closed.
fn draw(lines: &[String]) -> bool {
    let mut out = std::io::stdout().lock();
    let now = crate::clock::Timestamp::now();
    let text = format!(
        "\x1b[H\x1b[2J{}\n\ntether watch: {now}; Ctrl-C to stop\n",
        lines.join("\n")
    );
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

/// One JSON line per job that is new or changed, and per job that went away; false once stdout
/// is closed.
fn report_changes(
    jobs: &[Judged],
    seen: &mut HashMap<String, Seen>,
    reader: &crate::verdict::Reader,
) -> bool {
    let mut text = String::new();
    let mut now: HashMap<String, Seen> = HashMap::new();
    for j in jobs {
        let s = Seen::of(j);
        if seen.get(&j.record.id) != Some(&s) {
            text.push_str(&serde_json::to_string(&view::job_view(j, reader)).unwrap_or_default());
            text.push('\n');
        }
        now.insert(j.record.id.clone(), s);
    }
    for id in seen.keys().filter(|id| !now.contains_key(*id)) {
        let r = Removed { id, removed: true };
        text.push_str(&serde_json::to_string(&r).unwrap_or_default());
        text.push('\n');
    }
    *seen = now;
    if text.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

/// Until the earliest lease expiry of an active job (its verdict flips by time alone then).
fn next_expiry(jobs: &[Judged]) -> Duration {
    jobs.iter()
        .filter_map(|j| j.verdict.lease.map(|l| l.expires_in_ms))
        .min()
        .map_or(Duration::from_secs(3600), |ms| {
            Duration::from_millis(ms.clamp(0, 3_600_000) as u64 + 1)
        })
}

/// Sleeps until the store says a record changed, an active holder dies, or `wait` passes. Where
/// the platform gives no descriptor for a holder's exit or for the store's changes (the
/// `portable` build), the sleep is cut to `FALLBACK` and a death is found by looking again.
fn sleep<W: Watch>(jobs: &[Judged], watch: Option<&mut W>, wait: Duration) {
    use rustix::event::{PollFd, PollFlags, poll};
    let reader = process::reader();
    let pins: Vec<process::Pinned> = jobs
        .iter()
        .filter(|j| j.status().is_active())
        .filter(|j| crate::verdict::pid_visible(&j.record.holder, &reader))
        .filter_map(|j| {
            let h = &j.record.holder;
            process::Pinned::open(h.pid, &h.start, h.pid_ns.as_deref()).ok()
        })
        .collect();
    let blind = watch.is_none() || pins.iter().any(|p| p.poll_fd().is_none());
    let wait = if blind { wait.min(FALLBACK) } else { wait };
    let ts = rustix::time::Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: wait.subsec_nanos() as i64,
    };
    let woke = {
        let mut fds: Vec<PollFd<'_>> = pins
            .iter()
            .filter_map(|p| p.poll_fd())
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        if let Some(w) = &watch {
            fds.push(PollFd::from_borrowed_fd(w.fd(), PollFlags::IN));
        }
        matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
    };
    if let (true, Some(w)) = (woke, watch) {
        w.changed(); // drain; every wake is worth one more look
    }
}
