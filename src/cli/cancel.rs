//! `tether cancel`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Time between SIGTERM and SIGKILL
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub grace: std::time::Duration,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn cancel(_dir: Option<PathBuf>, _a: CancelArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether cancel is not built yet",
    ))
}
