//! `tether gc`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Remove finished jobs that finished longer ago than this
    #[arg(long, default_value = "7d", value_parser = super::parse_duration)]
    pub older_than: std::time::Duration,
    /// Only list what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

pub fn gc(_dir: Option<PathBuf>, _a: GcArgs) -> CliResult {
    Err(CliError::new(super::exit::IO, "tether gc is not built yet"))
}
