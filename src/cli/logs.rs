//! `tether logs`: a job's log, and `--follow` until the job ends.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::view::{self, UnsavedNote};
use super::{CliError, CliResult, exit, open_store, resolve_id};
use crate::judge::settle;

/// How often `--follow` looks for new output and re-judges the job. Logs are for people; a fifth of
/// a second is below what they notice, and the job's end is found by the same `settle` as `status`.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Keep printing as the log grows, until the job ends
    #[arg(long, short)]
    pub follow: bool,
}

/// Copies the log from byte `pos` on; returns the new position. A log shorter than `pos` was rotated
/// (the old one became `.log.1`), so it is read again from the start.
fn copy_from(path: &Path, pos: u64) -> Result<u64, CliError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pos),
        Err(e) => {
            return Err(CliError::new(
                exit::Kind::Io,
                format!("{}: {e}", path.display()),
            ));
        }
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < pos { 0 } else { pos };
    f.seek(SeekFrom::Start(start))
        .map_err(|e| CliError::new(exit::Kind::Io, format!("{}: {e}", path.display())))?;
    let mut out = std::io::stdout().lock();
    let n = std::io::copy(&mut (&mut f).take(len - start), &mut out).unwrap_or(0);
    let _ = out.flush();
    Ok(start + n)
}

pub fn logs(dir: Option<PathBuf>, a: LogsArgs) -> CliResult {
    let store = open_store(&dir)?;
    let id = resolve_id(&store, &a.id)?;
    let path = store.log_path(&id);
    if !a.follow {
        if !path.exists() {
            view::err_line(format!("tether: job {id} has no log ({})", path.display()));
            return Ok(exit::OK);
        }
        copy_from(&path, 0)?;
        return Ok(exit::OK);
    }
    let mut pos = 0;
    let mut note = UnsavedNote::default();
    loop {
        // Judge first, then drain: output written before the job ended is never cut off.
        let j = settle(&store, &id)?;
        note.note(&j);
        pos = copy_from(&path, pos)?;
        if !j.status().is_active() {
            view::err_line(format!("tether: job {id} {}", view::describe(&j)));
            return Ok(exit::of_status(j.status()));
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}
