//! `tether run` and `tether beat`: the CLI face of the wrapper (src/wrapper).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult, parse_duration};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job id [default: generated, sortable by time]
    #[arg(long)]
    pub id: Option<String>,
    /// A label for people
    #[arg(long)]
    pub name: Option<String>,
    /// How often the lease is renewed
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long a renewal stays valid (at least twice the interval)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// What counts as the job being healthy
    #[arg(long, value_enum, default_value = "none")]
    pub heartbeat: HeartbeatMode,
    /// What to do when a required beat is missing for ttl
    #[arg(long, value_enum, default_value = "kill")]
    pub on_stall: OnStall,
    /// Time between SIGTERM and SIGKILL when the job is stopped
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Run in the background; print the id once the job is recorded as running
    #[arg(long)]
    pub detach: bool,
    /// Print machine-readable output
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
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
    #[arg(long)]
    pub status: Option<String>,
}

pub fn run(_dir: Option<PathBuf>, _a: RunArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether run is not built yet",
    ))
}

pub fn beat(_a: BeatArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether beat is not built yet",
    ))
}
