//! `tether run` and `tether beat`: the CLI face of the wrapper (src/wrapper).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult};
use crate::wrapper::{self, Mode, Options};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job id [default: generated, sortable by time]
    #[arg(long)]
    pub id: Option<String>,
    /// A label for people
    #[arg(long)]
    pub name: Option<String>,
    /// Metadata stored in the record before the job starts, shown by status and filtered on by
    /// `status --meta` (repeatable; at most 32 keys, values up to 1024 bytes)
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Metadata as a JSON object of strings, merged with --meta
    #[arg(long = "meta-json", value_name = "JSON")]
    pub meta_json: Option<String>,
    /// At most one active job per KEY: refused (exit 12, naming the holder) while another job with
    /// this key is active; a dead or expired holder is recorded lost and does not block
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
    /// With --unique: while another job holds the key, wait for it to end, then start (queued)
    #[arg(long, requires = "unique")]
    pub unique_wait: bool,
    /// How often the lease is renewed [default: a third of --ttl]
    #[arg(long, value_parser = crate::clock::parse_interval)]
    pub interval: Option<Duration>,
    /// How long a renewal stays valid (at least twice the interval)
    #[arg(long, default_value = "10s", value_parser = crate::clock::parse_ttl)]
    pub ttl: Duration,
    /// What counts as the job being healthy
    #[arg(long, value_enum, default_value = "none")]
    pub heartbeat: HeartbeatMode,
    /// What to do when a required beat is missing for ttl
    #[arg(long, value_enum, default_value = "kill")]
    pub on_stall: OnStall,
    /// Time between SIGTERM and SIGKILL when the job is stopped
    #[arg(long, default_value = "5s", value_parser = crate::clock::parse_grace)]
    pub grace: Duration,
    /// Liveness probe: `tcp:HOST:PORT`, `unix:PATH`, `http://HOST[:PORT]/PATH` (2xx/3xx), or a
    /// shell command (exit 0). --probe-failures failures in a row: the job is recorded
    /// lost (probe-failed) and, with --on-stall kill, stopped
    #[arg(long, value_name = "SPEC")]
    pub probe: Option<String>,
    /// Time between probes [default: --interval]
    #[arg(long, value_parser = crate::clock::parse_interval, requires = "probe")]
    pub probe_every: Option<Duration>,
    /// A probe that takes longer fails (an exec probe's process group is killed)
    #[arg(long, default_value = "1s", value_parser = crate::clock::parse_grace)]
    pub probe_timeout: Duration,
    /// Failures in a row that make the job unhealthy
    #[arg(long, default_value = "3")]
    pub probe_failures: u32,
    /// No probe before this much time has passed (slow starts)
    #[arg(long, default_value = "0s", value_parser = crate::clock::parse_ttl)]
    pub probe_grace: Duration,
    /// Run in the background; print the id once the job is recorded as running
    #[arg(long)]
    pub detach: bool,
    /// Print JSON: with --detach the id and pid; in the foreground, after the job's own output, its
    /// final record as the last line of stdout
    #[arg(long)]
    pub json: bool,
    /// Internal: this process is the background half of --detach
    #[arg(long = "background-wrapper", hide = true)]
    pub background: bool,
    /// The command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatMode {
    /// Healthy while the child is alive
    None,
    /// The systemd notification protocol (NOTIFY_SOCKET, WATCHDOG=1)
    Notify,
    /// Touching $TETHER_HEARTBEAT_FILE is a beat
    File,
    /// Every line of output is a beat
    Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStall {
    Kill,
    Keep,
}

#[derive(Args, Debug)]
pub struct BeatArgs {
    /// Progress message to record with the beat
    #[arg(long, alias = "message")]
    pub status: Option<String>,
    /// Declare a silence: the next beat is due this long from now instead of within the beat
    /// timeout (at most 1d); the lease itself keeps being renewed
    #[arg(long, value_name = "DURATION", value_parser = parse_extend)]
    pub extend: Option<Duration>,
}

fn parse_extend(s: &str) -> Result<Duration, String> {
    crate::clock::parse_duration_at_most(s, crate::wrapper::MAX_EXTEND)
}

impl From<HeartbeatMode> for Mode {
    fn from(m: HeartbeatMode) -> Mode {
        match m {
            HeartbeatMode::None => Mode::None,
            HeartbeatMode::Notify => Mode::Notify,
            HeartbeatMode::File => Mode::File,
            HeartbeatMode::Output => Mode::Output,
        }
    }
}

fn failure(e: wrapper::Error) -> CliError {
    CliError::new(e.kind, e.message)
}

pub fn run(dir: Option<PathBuf>, a: RunArgs) -> CliResult {
    let meta = crate::meta::build(&a.meta, a.meta_json.as_deref())
        .map_err(|e| CliError::usage(format!("bad --meta: {e}")))?;
    if let Some(k) = &a.unique {
        crate::unique::check_key(k).map_err(|e| CliError::usage(e.to_string()))?;
    }
    let opts = Options {
        meta,
        unique: a.unique,
        unique_wait: a.unique_wait,
        dir,
        id: a.id,
        name: a.name,
        interval: a.interval.unwrap_or(wrapper::default_interval(a.ttl)),
        ttl: a.ttl,
        heartbeat: a.heartbeat.into(),
        on_stall: match a.on_stall {
            OnStall::Kill => wrapper::OnStall::Kill,
            OnStall::Keep => wrapper::OnStall::Keep,
        },
        grace: a.grace,
        json: a.json,
        command: a.command,
        probe: wrapper::ProbeOptions {
            spec: a.probe,
            every: a.probe_every,
            timeout: a.probe_timeout,
            failures: a.probe_failures,
            grace: a.probe_grace,
        },
    };
    if a.background {
        return wrapper::run(opts, wrapper::Ready::from_stdout()).map_err(failure);
    }
    if a.detach {
        return wrapper::detach(&opts).map_err(failure);
    }
    let (json, dir) = (opts.json, opts.dir.clone());
    let (id, res) = wrapper::run_job(opts, None);
    let code = res.map_err(failure)?;
    if let (true, Some(id)) = (json, id) {
        print_final(&dir, &id)?;
    }
    Ok(code)
}

/// Foreground `run --json`: the job's final record as the last line of stdout, after everything
/// the job printed there (protocol.md 9.1), so a script learns the id and the outcome together.
fn print_final(dir: &Option<PathBuf>, id: &crate::id::JobId) -> Result<(), CliError> {
    let store = super::open_store(dir)?;
    let j = crate::reader::settle::settle(&store, id)?;
    let reader = crate::process::reader();
    let line = serde_json::to_string(&super::view::job_view(&j, &reader)).unwrap_or_default();
    super::view::out(line);
    Ok(())
}

pub fn beat(a: BeatArgs) -> CliResult {
    wrapper::beat(a.status.as_deref(), a.extend).map_err(failure)?;
    Ok(super::exit::OK)
}
