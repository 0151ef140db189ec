//! `tether logs`: a job's log, and `--follow` until the job ends.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::view::{self, UnsavedNote};
use super::{CliError, CliResult, exit, open_store, resolve_id};
use crate::reader::settle::settle;
use crate::store::Store;

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
    /// Print JSON: one object per chunk of the log, one per line (JSON lines), then with --follow
    /// a last one with the job's end
    #[arg(long)]
    pub json: bool,
}

/// One line of `logs --json` (protocol.md 9.1): a chunk of the log, or (`--follow`) the job's end.
#[derive(serde::Serialize)]
struct Chunk<'a> {
    id: &'a str,
    /// The log's bytes as text (invalid UTF-8 replaced); absent on the last line of --follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// --follow's last line: how the job ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<crate::record::Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<crate::record::Reason>,
}

fn json_line(v: &Chunk<'_>) {
    view::out(serde_json::to_string(v).unwrap_or_default());
}

/// Copies the log from byte `pos` on; returns the new position. A log shorter than `pos` was rotated
/// (the old one became `.log.1`), so it is read again from the start.
fn copy_from(path: &Path, pos: u64, json_id: Option<&str>) -> Result<u64, CliError> {
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
    if let Some(id) = json_id {
        let mut buf = Vec::new();
        let n = (&mut f)
            .take(len - start)
            .read_to_end(&mut buf)
            .unwrap_or(0) as u64;
        if n > 0 {
            let text = Some(String::from_utf8_lossy(&buf).into_owned());
            json_line(&Chunk {
                id,
                text,
                status: None,
                reason: None,
            });
        }
        return Ok(start + n);
    }
    let mut out = std::io::stdout().lock();
    let n = std::io::copy(&mut (&mut f).take(len - start), &mut out).unwrap_or(0);
    let _ = out.flush();
    Ok(start + n)
}

pub fn logs(dir: Option<PathBuf>, a: LogsArgs) -> CliResult {
    let store = open_store(&dir)?;
    let id = resolve_id(&store, &a.id)?;
    let path = store.log_path(&id);
    let json_id = a.json.then_some(id.as_str());
    if !a.follow {
        if !path.exists() {
            // The job ran on another host: show the tail its final record carries, and say where
            // the whole log is (protocol.md 11.3).
            let kept = store
                .load(&id)
                .ok()
                .and_then(|r| crate::store::etcd_rules::OutputTail::get(&r));
            match kept {
                Some(t) => {
                    view::err_line(format!(
                        "tether: job {id}'s log is on host {}: {}; its last {} bytes, kept in the record{}:",
                        view::clean(&t.host),
                        view::clean(&t.log),
                        t.text.len(),
                        if t.truncated {
                            " (earlier output left out)"
                        } else {
                            ""
                        }
                    ));
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(t.text.as_bytes());
                    let _ = out.flush();
                }
                None => view::err_line(format!("tether: job {id} has no log ({})", path.display())),
            }
            return Ok(exit::OK);
        }
        copy_from(&path, 0, json_id)?;
        return Ok(exit::OK);
    }
    let mut pos = 0;
    let mut note = UnsavedNote::default();
    loop {
        // Judge first, then drain: output written before the job ended is never cut off.
        let j = settle(&store, &id)?;
        note.note(&j);
        pos = copy_from(&path, pos, json_id)?;
        if !j.status().is_active() {
            if let Some(id) = json_id {
                let end = Chunk {
                    id,
                    text: None,
                    status: Some(j.status()),
                    reason: j.verdict.reason(),
                };
                json_line(&end);
            }
            view::err_line(format!("tether: job {id} {}", view::describe(&j)));
            return Ok(exit::of_status(j.status()));
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}
