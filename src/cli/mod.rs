//! The `tether` command line. Each subcommand lives in its own file; this module parses arguments,
//! resolves the state directory and ids, and maps every error to one line and a documented exit code
//! (protocol.md section 9).

mod cancel;
mod gc;
mod inspect;
mod logs;
mod result;
mod run;
mod status;
mod survivors;
mod view;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use crate::id::JobId;
use crate::store::{FileStore, StateDir, Store, StoreError};

/// Exit codes (protocol.md section 9).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const LOST: i32 = 3;
    pub const CANCELLED: i32 = 4;
    /// `result` on an active job; `cancel` refused to signal an unproven process.
    pub const ACTIVE_OR_REFUSED: i32 = 5;
    pub const NO_SUCH_JOB: i32 = 6;
    pub const CORRUPT: i32 = 7;
    pub const STATE_DIR: i32 = 8;
    pub const IO: i32 = 10;
    /// `run --unique KEY`: another active job holds the key.
    pub const UNIQUE_HELD: i32 = 12;
    pub const TIMEOUT: i32 = 124;
    pub const NOT_EXECUTABLE: i32 = 126;
    pub const NOT_FOUND: i32 = 127;
    /// `tether run`: the child was killed by signal N, exit `SIGNALED + N` (as shells report it).
    pub const SIGNALED: i32 = 128;
}

/// A failed command: one line for stderr and its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(exit::USAGE, message)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError::new(e.exit_code(), e.to_string())
    }
}

impl From<crate::id::InvalidId> for CliError {
    fn from(e: crate::id::InvalidId) -> CliError {
        CliError::usage(e.to_string())
    }
}

pub type CliResult = Result<i32, CliError>;

#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    about = "Tell, reliably and fast, whether a background job is still alive and making progress"
)]
pub struct Cli {
    /// State directory [default: $TETHER_DIR, else $XDG_STATE_HOME/tether, else ~/.local/state/tether]
    #[arg(long, global = true, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command as a job, renewing its lease while it is healthy
    Run(run::RunArgs),
    /// Beat from inside a job (uses the channel `tether run --heartbeat notify|file` set up)
    Beat(run::BeatArgs),
    /// Show jobs as the verdict sees them; --wait blocks until a job ends
    Status(status::StatusArgs),
    /// Show the evidence behind a job's verdict
    Inspect(inspect::InspectArgs),
    /// Show a finished job's outcome and the tail of its log
    Result(result::ResultArgs),
    /// Stop a job: SIGTERM its process group, SIGKILL after a grace period
    Cancel(cancel::CancelArgs),
    /// Print a job's log
    Logs(logs::LogsArgs),
    /// Remove finished jobs older than an age
    Gc(gc::GcArgs),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Parses a humantime duration ("500ms", "10s", "2m") for clap.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // Messages quote record contents (a start token, a parse error's text): defused.
            eprintln!("tether: {}", view::clean(&e.message));
            e.code
        }
    }
}

fn dispatch(cli: Cli) -> CliResult {
    let dir = cli.dir;
    match cli.command {
        Command::Run(a) => run::run(dir, a),
        Command::Beat(a) => run::beat(a),
        Command::Status(a) => status::status(dir, a),
        Command::Inspect(a) => inspect::inspect(dir, a),
        Command::Result(a) => result::result(dir, a),
        Command::Cancel(a) => cancel::cancel(dir, a),
        Command::Logs(a) => logs::logs(dir, a),
        Command::Gc(a) => gc::gc(dir, a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tether", &mut std::io::stdout());
            Ok(exit::OK)
        }
    }
}

/// Opens the store for reading: a missing directory is an error naming it.
pub fn open_store(dir: &Option<PathBuf>) -> Result<FileStore, CliError> {
    let sd = StateDir::resolve(dir.as_deref())?;
    Ok(FileStore::open(sd, false)?)
}

/// What `inspect`, `result` and `cancel` start from: the store, the job named by the user's
/// argument, and its verdict through `settle` (so these commands agree with `status`), with the
/// read-only note already given.
pub fn settle_arg(
    dir: &Option<PathBuf>,
    arg: &str,
) -> Result<(FileStore, JobId, crate::judge::Judged), CliError> {
    let store = open_store(dir)?;
    let id = resolve_id(&store, arg)?;
    let j = crate::judge::settle(&store, &id)?;
    view::UnsavedNote::default().note(&j);
    Ok((store, id, j))
}

/// Resolves a user's id argument: an exact id, or a unique prefix of one (`Store::resolve`).
pub fn resolve_id<S: Store>(store: &S, arg: &str) -> Result<JobId, CliError> {
    Ok(store.resolve(arg)?)
}
