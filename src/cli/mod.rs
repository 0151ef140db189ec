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
use crate::store::{AnyStore, Store, StoreError};

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
    /// Where jobs live: file:PATH or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] [env: TETHER_STORE]
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// etcd: CA certificate (PEM) to verify the cluster with; turns on TLS [env: ETCDCTL_CACERT]
    #[arg(long = "etcd-cacert", global = true, value_name = "FILE")]
    pub etcd_cacert: Option<PathBuf>,
    /// etcd: client certificate (PEM) [env: ETCDCTL_CERT]
    #[arg(long = "etcd-cert", global = true, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// etcd: client certificate's key (PEM) [env: ETCDCTL_KEY]
    #[arg(long = "etcd-key", global = true, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd: user as NAME:PASSWORD [env: ETCDCTL_USER]
    #[arg(long = "etcd-user", global = true, value_name = "NAME:PASSWORD")]
    pub etcd_user: Option<String>,
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

/// Hands `--store` and `--etcd-*` to the store through the environment (see `store::AnyStore`), so
/// the background half of `run --detach` and the job's own `tether` calls use the same store.
/// A malformed URL is a usage error before anything starts.
fn export_store_options(cli: &Cli) -> Result<(), CliError> {
    let url = cli
        .store
        .clone()
        .or_else(|| std::env::var("TETHER_STORE").ok().filter(|s| !s.is_empty()));
    if let Some(u) = &url {
        crate::store::etcd_url::StoreUrl::parse(u)
            .map_err(|e| CliError::usage(format!("bad --store/TETHER_STORE: {e}")))?;
    }
    let pairs: [(&str, Option<std::ffi::OsString>); 5] = [
        ("TETHER_STORE", cli.store.clone().map(Into::into)),
        ("ETCDCTL_CACERT", cli.etcd_cacert.clone().map(Into::into)),
        ("ETCDCTL_CERT", cli.etcd_cert.clone().map(Into::into)),
        ("ETCDCTL_KEY", cli.etcd_key.clone().map(Into::into)),
        ("ETCDCTL_USER", cli.etcd_user.clone().map(Into::into)),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            // SAFETY: called from `main` right after parsing, before this process starts any
            // thread, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(k, v) };
        }
    }
    Ok(())
}

fn dispatch(cli: Cli) -> CliResult {
    export_store_options(&cli)?;
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
pub fn open_store(dir: &Option<PathBuf>) -> Result<AnyStore, CliError> {
    Ok(AnyStore::open(dir.as_deref(), false)?)
}

/// What `inspect`, `result` and `cancel` start from: the store, the job named by the user's
/// argument, and its verdict through `settle` (so these commands agree with `status`), with the
/// read-only note already given.
pub fn settle_arg(
    dir: &Option<PathBuf>,
    arg: &str,
) -> Result<(AnyStore, JobId, crate::judge::Judged), CliError> {
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
