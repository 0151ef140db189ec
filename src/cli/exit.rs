//! Exit codes: the one place they are defined (protocol.md section 9). Each code means one thing
//! across every command, so a script can branch on it without knowing which command it ran; every
//! error in the program is a `Kind`, and `Kind` alone decides the code.

use serde::{Deserialize, Serialize};

use crate::record::Status;
use crate::store::StoreError;

/// Success; for `result`, `status --wait`, `logs --follow` and `run`: the job succeeded.
pub const OK: i32 = 0;
/// The job failed.
pub const FAILED: i32 = 1;
/// Bad usage: unknown option, malformed id, duration or argument.
pub const USAGE: i32 = 2;
/// The job is lost.
pub const LOST: i32 = 3;
/// The job was cancelled.
pub const CANCELLED: i32 = 4;
/// The job is still active (`result`, `rm` without `--force`).
pub const ACTIVE: i32 = 5;
/// No such job, or an ambiguous id prefix.
pub const NO_SUCH_JOB: i32 = 6;
/// A record is corrupt or of an unsupported protocol version.
pub const CORRUPT: i32 = 7;
/// The state directory cannot be used.
pub const STATE_DIR: i32 = 8;
/// The job id is already taken (`run --id`).
pub const ID_TAKEN: i32 = 9;
/// An I/O error not covered above.
pub const IO: i32 = 10;
/// Refused to signal: a process could not be proven to be the job's (`cancel`, `rm --force`).
pub const REFUSED: i32 = 11;
/// `run --unique KEY`: another active job holds the key (protocol.md 6.6).
pub const UNIQUE_HELD: i32 = 12;
/// `cancel` on another host: the job's holder did not answer the cancel request (protocol.md 11.9).
pub const HOLDER_UNREACHABLE: i32 = 13;
/// `status --wait` gave up at its `--timeout`.
pub const TIMEOUT: i32 = 124;
/// `run`: the command exists but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// `run`: the command was not found.
pub const NOT_FOUND: i32 = 127;
/// `run`: the child was killed by signal N, exit `SIGNALED + N` (as shells report it).
pub const SIGNALED: i32 = 128;

/// The table every command's `--help` ends with.
pub const HELP: &str = "\
Exit codes (the same for every command; protocol.md section 9):
  0    success; the job succeeded (result, status --wait, logs --follow, run)
  1    the job failed
  2    bad usage: unknown option, malformed id, duration or argument
  3    the job is lost
  4    the job was cancelled
  5    the job is still active (result; rm without --force)
  6    no such job, or an ambiguous id prefix
  7    a record is corrupt or of an unsupported protocol version
  8    the state directory cannot be used
  9    the job id is already taken (run --id)
  10   an I/O error not covered above
  11   refused to signal a process not proven to be the job's (cancel, rm --force)
  12   run --unique KEY: another active job holds the key
  13   cancel: the job's holder on another host did not answer (it turns lost at expiry)
  124  status --wait timed out
  126  run: the command cannot be executed; 127: not found; 128+N: killed by signal N
With --json, an error is one JSON object on stderr: {\"error\": KIND, \"code\": N, \"message\": TEXT}.";

/// What went wrong: one variant per error exit code. Scripts see its name as `error` in `--json`
/// mode; the wrapper and the commands build their errors from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Bad options, a bad id or duration.
    Usage,
    /// The job is still active.
    Active,
    /// The job's record does not exist, or a prefix matches several.
    NoSuchJob,
    /// A record is corrupt or of a newer protocol version.
    Corrupt,
    /// The state directory cannot be used.
    StateDir,
    /// The id is already taken.
    IdTaken,
    /// Any other I/O failure, including a result that could not be recorded.
    Io,
    /// A process could not be proven to be the job's, so it was not signalled.
    Refused,
    /// `run --unique KEY`: another active job holds the key.
    UniqueHeld,
    /// `cancel` across hosts: the holder did not answer the request.
    HolderUnreachable,
    /// A wait gave up.
    Timeout,
    /// The command exists but cannot be executed.
    NotExecutable,
    /// The command was not found.
    NotFound,
}

impl Kind {
    /// The exit code protocol.md section 9 gives this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => USAGE,
            Kind::Active => ACTIVE,
            Kind::NoSuchJob => NO_SUCH_JOB,
            Kind::Corrupt => CORRUPT,
            Kind::StateDir => STATE_DIR,
            Kind::IdTaken => ID_TAKEN,
            Kind::Io => IO,
            Kind::Refused => REFUSED,
            Kind::UniqueHeld => UNIQUE_HELD,
            Kind::HolderUnreachable => HOLDER_UNREACHABLE,
            Kind::Timeout => TIMEOUT,
            Kind::NotExecutable => NOT_EXECUTABLE,
            Kind::NotFound => NOT_FOUND,
        }
    }

    /// The kind of a store error: the store says what happened, this says what it means to a caller.
    pub fn of_store(e: &StoreError) -> Kind {
        match e {
            StoreError::NotFound(..) | StoreError::Ambiguous { .. } => Kind::NoSuchJob,
            StoreError::Exists(..) => Kind::IdTaken,
            StoreError::InvalidId(..) => Kind::Usage,
            StoreError::Record { .. } => Kind::Corrupt,
            StoreError::Dir { .. } | StoreError::ReadOnly(..) => Kind::StateDir,
            StoreError::Io { .. } | StoreError::NoSpace(..) => Kind::Io,
            StoreError::UniqueHeld { .. } => Kind::UniqueHeld,
        }
    }

    /// A store error as one line for people, with what to do where there is something to do.
    pub fn store_message(e: &StoreError) -> String {
        match e {
            StoreError::Exists(id, _) => format!(
                "{e}; `tether rm {id}` removes it (`--force` if it is still active), or choose another --id"
            ),
            _ => e.to_string(),
        }
    }

    /// Which of two errors decides a command's exit code when it reports several (a listing with
    /// a missing and a corrupt record): the one that needs a person's attention most.
    pub fn weight(self) -> u8 {
        match self {
            Kind::Corrupt => 3,
            Kind::StateDir | Kind::Io => 2,
            _ => 1,
        }
    }
}

/// The exit code a job's status gives `result`, `status --wait` and `logs --follow`.
pub fn of_status(s: Status) -> i32 {
    match s {
        Status::Succeeded => OK,
        Status::Failed => FAILED,
        Status::Lost => LOST,
        Status::Cancelled => CANCELLED,
        Status::Starting | Status::Running => ACTIVE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// protocol.md section 9 and this module must agree: every code in the table is documented
    /// there with the same number.
    #[test]
    fn protocol_table_matches() {
        let spec = include_str!("../../protocol.md");
        let section = &spec[spec.find("## 9. Exit codes").expect("section 9")..];
        for code in [
            OK,
            FAILED,
            USAGE,
            LOST,
            CANCELLED,
            ACTIVE,
            NO_SUCH_JOB,
            CORRUPT,
            STATE_DIR,
            ID_TAKEN,
            IO,
            REFUSED,
            UNIQUE_HELD,
            HOLDER_UNREACHABLE,
            TIMEOUT,
            NOT_EXECUTABLE,
            NOT_FOUND,
        ] {
            assert!(
                section.contains(&format!("| {code} |"))
                    || section.contains(&format!("| {code}, "))
                    || section.contains(&format!(", {code} |")),
                "exit code {code} is missing from protocol.md section 9"
            );
            assert!(
                HELP.contains(&format!("  {code} ")) || HELP.contains(&format!("{code}:")),
                "exit code {code} is missing from the --help table"
            );
        }
    }
}
