//! `tether status`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Job ids or unique prefixes [default: every job]
    pub ids: Vec<String>,
    /// Block until the job is terminal or judged lost
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (0 = no limit)
    #[arg(long, default_value = "240s", value_parser = super::parse_duration)]
    pub timeout: std::time::Duration,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn status(_dir: Option<PathBuf>, _a: StatusArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether status is not built yet",
    ))
}
