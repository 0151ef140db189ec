//! The store's one error type, typed wherever a caller branches on it. What an error means to a
//! command (its exit code) is decided in one place, `cli::exit`, not here.

use std::path::{Path, PathBuf};

use crate::id::{InvalidId, JobId};
use crate::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no job {0} in {1}; `tether status` lists the jobs")]
    NotFound(JobId, PathBuf),
    #[error("job {0} already exists in {1}")]
    Exists(JobId, PathBuf),
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("id prefix {prefix:?} is ambiguous: it matches {}; give more characters", shown(.matches))]
    Ambiguous { prefix: String, matches: Vec<JobId> },
    #[error("{path}: {err}")]
    Record { path: PathBuf, err: RecordError },
    #[error("{path}: {}", why.describe(path))]
    Dir { path: PathBuf, why: DirProblem },
    #[error("state directory {0} is read-only; the verdict is shown but not recorded")]
    ReadOnly(PathBuf),
    #[error(
        "{0}: no space left on device; free space on its file system (`tether gc --older-than 7d` removes old finished jobs) and retry"
    )]
    NoSpace(PathBuf),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// `run --unique KEY` on a cluster store, whose create transaction claims the key itself
    /// (protocol.md 11.8); worded as `unique::ClaimError::Held`.
    #[error(
        "--unique {key}: job {holder} holds this key and is still {status}; wait for it (`tether status --wait {holder}`), cancel it, or use another key"
    )]
    UniqueHeld {
        key: String,
        holder: String,
        status: String,
    },
}

/// The first ten of an ambiguous prefix's matches, and how many more.
fn shown(matches: &[JobId]) -> String {
    let first: Vec<&str> = matches.iter().take(10).map(|i| i.as_str()).collect();
    let mut s = first.join(", ");
    if matches.len() > 10 {
        s.push_str(&format!(" and {} more", matches.len() - 10));
    }
    s
}

/// Why a state directory (or `jobs/`, or a lock file) cannot be used (protocol.md section 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirProblem {
    /// No `--dir`, `TETHER_DIR`, `XDG_STATE_HOME` or `HOME` to find it by.
    NoLocation,
    /// It (or a directory on the way to it) does not exist.
    Missing,
    Symlink,
    NotDir,
    Owner {
        uid: u32,
        me: u32,
    },
    OpenToOthers {
        mode: u32,
    },
    /// A symbolic link on the way sits in a directory someone else can write: they could point it
    /// elsewhere at any moment (issue 14, item 6).
    UntrustedLink {
        link: PathBuf,
        uid: u32,
        mode: u32,
    },
    /// A job's lock file is a symbolic link.
    SymlinkedLock,
    /// Another backend's reason, said whole (an etcd that cannot be reached, a bad URL).
    Backend(String),
}

impl DirProblem {
    /// The sentence after "PATH: ", saying what is wrong and what to do.
    pub fn describe(&self, path: &Path) -> String {
        match self {
            DirProblem::NoLocation => {
                "cannot find the state directory: set TETHER_DIR or HOME, or pass --dir".into()
            }
            DirProblem::Missing => {
                "state directory does not exist; run `tether run` to create it, or pass --dir"
                    .into()
            }
            DirProblem::Symlink => {
                "is a symbolic link; point --dir or TETHER_DIR at the real directory".into()
            }
            DirProblem::NotDir => "is not a directory".into(),
            DirProblem::Owner { uid, me } => format!(
                "is owned by uid {uid}, not by you (uid {me}); use your own state directory"
            ),
            DirProblem::OpenToOthers { mode } => format!(
                "is writable by others (mode {:o}); run `chmod 700 {}`",
                mode & 0o777,
                path.display()
            ),
            DirProblem::UntrustedLink { link, uid, mode } => {
                let who = if mode & 0o002 != 0 {
                    "every user".to_string()
                } else if mode & 0o020 != 0 {
                    "its group".to_string()
                } else {
                    format!("uid {uid}")
                };
                format!(
                    "{} is a symbolic link in a directory {who} can write, who could point it elsewhere at any moment; use the real path (`realpath` prints it) or a state directory outside that directory",
                    link.display()
                )
            }
            DirProblem::SymlinkedLock => "lock file is a symbolic link; remove it".into(),
            DirProblem::Backend(why) => why.clone(),
        }
    }
}
