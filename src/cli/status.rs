//! `tether status`: every job as the verdict sees it, filtered; `--wait` (src/cli/waiting.rs) for
//! jobs to end.

use std::path::PathBuf;

use clap::Args;

use super::view::{self, UnsavedNote};
use super::{CliResult, Errors, exit, open_store, settle_named};
use crate::process;
use crate::reader::settle::{Judged, settle_each};
use crate::record::Status;
use crate::store::{StateDir, StoreError};
use crate::verdict::Reader;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Job ids or unique prefixes [default: every job]
    pub ids: Vec<String>,
    /// Block until every job named is terminal or judged lost (with --any: the first)
    #[arg(long)]
    pub wait: bool,
    /// With --wait: return as soon as any one of the jobs ends
    #[arg(long, requires = "wait")]
    pub any: bool,
    /// With --wait: give up after this long (0 = no limit)
    #[arg(long, default_value = "240s", value_parser = crate::clock::parse_timeout)]
    pub timeout: std::time::Duration,
    /// Print JSON: an array with one object per job, always
    #[arg(long)]
    pub json: bool,
    /// Only jobs whose metadata has KEY=VALUE (repeatable: all must match)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = crate::meta::parse_pair)]
    pub meta: Vec<(String, String)>,
    /// Only jobs in these states (comma-separated: starting,running,succeeded,failed,lost,cancelled)
    #[arg(long, value_name = "STATE,...", value_delimiter = ',', value_parser = parse_status)]
    pub state: Vec<Status>,
    /// Only active jobs (starting or running)
    #[arg(long)]
    pub active: bool,
}

/// A state name as the record spells it, for `--state`.
pub fn parse_status(s: &str) -> Result<Status, String> {
    use Status::*;
    [Starting, Running, Succeeded, Failed, Lost, Cancelled]
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown state {s:?}; one of starting, running, succeeded, failed, lost, cancelled"
            )
        })
}

/// Whether a judged job passes the listing's filters.
pub fn wanted(j: &Judged, a: &StatusArgs) -> bool {
    let s = j.status();
    (!a.active || s.is_active())
        && (a.state.is_empty() || a.state.contains(&s))
        && crate::meta::matches(&j.record.meta, &a.meta)
}

/// True when the state directory tether would use does not exist yet: on a fresh machine there
/// are simply no jobs (only for the file store; another store answers for itself).
fn no_state_dir(dir: &Option<PathBuf>) -> bool {
    if std::env::var_os("TETHER_STORE").is_some_and(|s| !s.is_empty()) {
        return false;
    }
    match StateDir::resolve(dir.as_deref()) {
        Ok(sd) => {
            matches!(sd.root.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        }
        Err(_) => false,
    }
}

pub fn status(dir: Option<PathBuf>, a: StatusArgs) -> CliResult {
    if a.wait {
        return super::waiting::wait_for(dir, a);
    }
    let mut errors = Errors::new(a.json);
    // Only ages and expiries are shown: the pid namespace is read where a verdict needs it.
    let reader = process::reader_without_pid_ns();
    // A listing on a fresh machine lists nothing; a job asked for by id there still gets the
    // error naming the missing directory (a mistyped --dir looks just like a fresh machine).
    if a.ids.is_empty() && no_state_dir(&dir) {
        print_jobs(&[], &a, &reader);
        return Ok(exit::OK);
    }
    let store = open_store(&dir)?;
    if a.ids.is_empty() && a.json {
        list_json(&store, &a, &reader, &mut errors)?;
        return Ok(errors.code(exit::OK));
    }
    let mut jobs = Vec::new();
    if a.ids.is_empty() {
        // One listing read (etcd: one snapshot, not a read per job), each job judged as it is
        // read: the file store never holds a second copy of 10,000 records.
        settle_each(&store, |j| match j {
            Ok(j) => jobs.push(j),
            // Removed (gc) between listing and reading: it is simply no longer a job.
            Err(StoreError::NotFound(..)) => {}
            Err(e) => errors.report(e.into()),
        })?;
    } else {
        for arg in &a.ids {
            match settle_named(&store, arg) {
                Ok((_, j)) => jobs.push(j),
                Err(e) => errors.report(e),
            }
        }
    }
    // Ids given and none of them readable: the errors are the whole answer, stdout stays empty.
    if !a.ids.is_empty() && jobs.is_empty() {
        return Ok(errors.code(exit::OK));
    }
    // Filtered and sorted by reference: a judged job is most of a kilobyte, and sorting 10,000 of
    // them moved them about in a scratch copy as large as the list.
    let mut shown: Vec<&Judged> = jobs.iter().filter(|j| wanted(j, &a)).collect();
    if a.ids.is_empty() {
        // Active first, then newest: what a person looking at a list wants to see on top.
        shown.sort_by(|x, y| {
            y.status()
                .is_active()
                .cmp(&x.status().is_active())
                .then(y.record.created_at.cmp(&x.record.created_at))
                .then(x.record.id.cmp(&y.record.id))
        });
    }
    let mut note = UnsavedNote::default();
    for j in &shown {
        note.note(j);
    }
    print_jobs(&shown, &a, &reader);
    Ok(errors.code(exit::OK))
}

/// A job of `status --json`'s listing, written out as soon as it was judged: where it sorts, and
/// its object's bytes in the output.
struct Rendered {
    active: bool,
    created_at: crate::clock::Timestamp,
    id: String,
    text: std::ops::Range<usize>,
    unsaved: Option<String>,
}

/// `status --json` over every job: each job is judged, filtered and rendered as it is read, and
/// only its text is kept for the sort. Holding 10,000 judged records (most of a kilobyte each,
/// and ten allocations) until the end cost more than the records' parsing; dropped at once, each
/// record's memory is reused, still in the cache, by the next.
fn list_json<S: crate::store::Store>(
    store: &S,
    a: &StatusArgs,
    reader: &Reader,
    errors: &mut Errors,
) -> Result<(), super::CliError> {
    let mut text = Vec::new();
    let mut jobs = Vec::new();
    settle_each(store, |j| match j {
        Ok(mut j) if wanted(&j, a) => {
            let start = text.len();
            let _ = serde_json::to_writer(&mut text, &view::job_view(&j, reader));
            jobs.push(Rendered {
                active: j.status().is_active(),
                created_at: j.record.created_at,
                id: std::mem::take(&mut j.record.id),
                text: start..text.len(),
                unsaved: j.unsaved.take(),
            });
        }
        Ok(_) => {}
        // Removed (gc) between listing and reading: it is simply no longer a job.
        Err(StoreError::NotFound(..)) => {}
        Err(e) => errors.report(e.into()),
    })?;
    // The order of the table: active first, then newest.
    jobs.sort_by(|x, y| {
        y.active
            .cmp(&x.active)
            .then(y.created_at.cmp(&x.created_at))
            .then(x.id.cmp(&y.id))
    });
    let mut note = UnsavedNote::default();
    for j in &jobs {
        note.note_unsaved(&j.unsaved);
    }
    view::print_rendered_array(jobs.iter().map(|j| &text[j.text.clone()]));
    Ok(())
}

/// The listing: a JSON array (one object per job, however many ids were given), or the table.
fn print_jobs(jobs: &[&Judged], a: &StatusArgs, reader: &Reader) {
    if a.json {
        view::print_json_array(jobs.iter().map(|j| view::job_view(j, reader)));
    } else if !jobs.is_empty() || a.ids.is_empty() {
        view::out(render_table(jobs.iter().copied(), reader).join("\n"));
    }
}

/// The aligned table `tether status` prints. LAST BEAT is the last heartbeat, `-` for a job that
/// never beat (every job in `none` mode); the lease renewal is in `inspect`.
pub fn render_table<'a>(
    jobs: impl IntoIterator<Item = &'a Judged>,
    reader: &Reader,
) -> Vec<String> {
    let rows: Vec<Vec<String>> = jobs
        .into_iter()
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
                view::short_age(view::last_beat_ms(r, reader)),
                view::one_line(r.progress.message.as_deref().unwrap_or(""), 60),
            ]
        })
        .collect();
    view::table(
        &["ID", "STATUS", "REASON", "AGE", "LAST BEAT", "PROGRESS"],
        &rows,
    )
}
