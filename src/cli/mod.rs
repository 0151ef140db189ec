//! The `tether` command line. Each subcommand lives in its own file; this module parses arguments,
//! resolves the state directory and ids, and maps every error to one line and a documented exit code
//! (protocol.md section 9).

mod args;
mod cancel;
pub mod exit;
mod gc;
mod inspect;
mod logs;
mod result;
mod rm;
mod run;
mod status;
mod survivors;
mod view;
mod waiting;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use crate::id::JobId;
use crate::store::{AnyStore, Store, StoreError};
use args::{Cli, Command};

/// The application's one error: what went wrong (its kind alone decides the exit code, through
/// `exit`) and one line for people.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub kind: exit::Kind,
    pub message: String,
}

impl CliError {
    pub fn new(kind: exit::Kind, message: impl Into<String>) -> CliError {
        CliError {
            kind,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(exit::Kind::Usage, message)
    }

    pub fn code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// Reports the error on stderr: one line, or in `--json` mode one JSON object, so a script
    /// never has to parse prose.
    pub fn report(&self, json: bool) {
        // Messages quote record contents (a start token, a parse error's text): defused.
        let message = view::clean(&self.message);
        if json {
            #[derive(serde::Serialize)]
            struct JsonError<'a> {
                error: exit::Kind,
                code: i32,
                message: &'a str,
            }
            let e = JsonError {
                error: self.kind,
                code: self.code(),
                message: &message,
            };
            view::err_line(serde_json::to_string(&e).unwrap_or_default());
        } else {
            view::err_line(format!("tether: {message}"));
        }
    }
}

/// Errors a command reports one by one while it goes on (a listing with a corrupt record): each is
/// printed at once, and the weightiest decides the exit code.
pub struct Errors {
    worst: Option<exit::Kind>,
    json: bool,
}

impl Errors {
    pub fn new(json: bool) -> Errors {
        Errors { worst: None, json }
    }

    pub fn report(&mut self, e: CliError) {
        e.report(self.json);
        if self.worst.is_none_or(|w| e.kind.weight() > w.weight()) {
            self.worst = Some(e.kind);
        }
    }

    /// `ok` when nothing was reported, else the weightiest error's code.
    pub fn code(&self, ok: i32) -> i32 {
        self.worst.map_or(ok, |k| k.exit_code())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError::new(exit::Kind::of_store(&e), exit::Kind::store_message(&e))
    }
}

impl From<crate::id::InvalidId> for CliError {
    fn from(e: crate::id::InvalidId) -> CliError {
        CliError::usage(e.to_string())
    }
}

pub type CliResult = Result<i32, CliError>;

/// Parses a humantime duration ("500ms", "10s", "2m") for clap.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match args::parse() {
        Ok(c) => c,
        // --help and --version: printed to stdout (a closed pipe is no error).
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return exit::OK;
        }
        Err(e) if json_requested() => {
            let text = e.kind().as_str().unwrap_or("bad usage").to_owned();
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or(&text)
                .trim_start_matches("error: ");
            CliError::usage(first).report(true);
            return exit::USAGE;
        }
        Err(e) => {
            let _ = e.print();
            return exit::USAGE;
        }
    };
    let json = cli.command.json();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            e.report(json);
            e.code()
        }
    }
}

/// Whether `--json` was asked for, for errors found before the arguments could be parsed. Only
/// tether's own arguments count: those before a `--`.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

impl Command {
    /// Whether this command was asked for JSON output (and so reports errors as JSON too).
    fn json(&self) -> bool {
        match self {
            Command::Run(a) => a.json,
            Command::Status(a) => a.json,
            Command::Inspect(a) => a.json,
            Command::Result(a) => a.json,
            Command::Cancel(a) => a.json,
            Command::Rm(a) => a.json,
            Command::Watch(a) => a.json,
            Command::Logs(a) => a.json,
            Command::Gc(a) => a.json,
            Command::Beat(_) | Command::Completions { .. } => false,
        }
    }
}

/// Hands `--store` and `--etcd-*` to the store through the environment (see `store::AnyStore`), so
/// the background half of `run --detach` and the job's own `tether` calls use the same store.
/// A malformed URL is a usage error before anything starts.
fn export_store_options(cli: &args::Options) -> Result<(), CliError> {
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
    export_store_options(&cli.options)?;
    let dir = cli.options.dir;
    match cli.command {
        Command::Run(a) => run::run(dir, *a),
        Command::Beat(a) => run::beat(a),
        Command::Status(a) => status::status(dir, a),
        Command::Inspect(a) => inspect::inspect(dir, a),
        Command::Result(a) => result::result(dir, a),
        Command::Cancel(a) => cancel::cancel(dir, a),
        Command::Logs(a) => logs::logs(dir, a),
        Command::Gc(a) => gc::gc(dir, a),
        Command::Rm(a) => rm::rm(dir, a),
        Command::Watch(a) => watch::watch(dir, a),
        // `--dir` is global for every command that touches jobs; completions touch none.
        Command::Completions { .. } if dir.is_some() => Err(CliError::usage(
            "completions take no --dir: they are the same for every state directory",
        )),
        Command::Completions { shell } => {
            // Rendered first, then written once: clap_complete panics on a write error, and
            // `tether completions fish | true` closes the pipe early.
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut args::command(), "tether", &mut text);
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&text);
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
) -> Result<(AnyStore, JobId, crate::reader::settle::Judged), CliError> {
    let store = open_store(dir)?;
    let (id, j) = settle_named(&store, arg)?;
    view::UnsavedNote::default().note(&j);
    Ok((store, id, j))
}

/// The job a user's argument names, judged (`settle`). An exact id is read at once: one open of
/// its record, where resolving first (`resolve_id`) looked it up before reading it. Only an
/// argument that names no record is resolved as a prefix.
pub fn settle_named<S: Store>(
    store: &S,
    arg: &str,
) -> Result<(JobId, crate::reader::settle::Judged), CliError> {
    if let Ok(id) = JobId::parse(arg) {
        match crate::reader::settle::settle(store, &id) {
            Err(StoreError::NotFound(..)) => {}
            res => return Ok((id, res?)),
        }
    }
    let id = resolve_id(store, arg)?;
    let j = crate::reader::settle::settle(store, &id)?;
    Ok((id, j))
}

/// Resolves a user's id argument: an exact id, or a unique prefix of one (`Store::resolve`).
pub fn resolve_id<S: Store>(store: &S, arg: &str) -> Result<JobId, CliError> {
    Ok(store.resolve(arg)?)
}
