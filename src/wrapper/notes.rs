//! tether's own diagnostics ("no beat for 3000ms: ... recorded lost"), kept apart from the job's
//! output: they go to `jobs/<id>.notes`, never to the job's log, so nothing the job prints can pass
//! for them and `result` can show them as what they are. In the foreground they are said on stderr
//! as well.

use std::fs::File;
use std::io::Write as _;
use std::sync::OnceLock;

use crate::clock::Timestamp;

struct Notes {
    file: File,
    /// Also on stderr (the foreground; detached, stderr is the notes file itself).
    to_stderr: bool,
}

static NOTES: OnceLock<Notes> = OnceLock::new();

/// From now on diagnostics are kept in `file`. Detached, stderr goes there too, so that even a
/// panic message lands beside the notes rather than in the job's log or nowhere.
pub fn keep_in(file: File, detached: bool) {
    if detached {
        let _ = rustix::stdio::dup2_stderr(&file);
    }
    let _ = NOTES.set(Notes {
        file,
        to_stderr: !detached,
    });
}

/// One line of the wrapper's own: `tether: ...` on stderr, timestamped in the notes file.
pub fn say(args: std::fmt::Arguments<'_>) {
    let line = format!("tether: {args}\n");
    match NOTES.get() {
        Some(n) => {
            let _ = (&n.file).write_all(format!("{} {line}", Timestamp::now()).as_bytes());
            if n.to_stderr {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// A line for the notes file only: what the caller reports elsewhere itself (a start failure,
/// which `run` returns as its error).
pub fn keep(args: std::fmt::Arguments<'_>) {
    if let Some(n) = NOTES.get() {
        let line = format!("{} tether: {args}\n", Timestamp::now());
        let _ = (&n.file).write_all(line.as_bytes());
    }
}
