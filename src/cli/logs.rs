//! `tether logs`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Keep printing as the log grows, until the job ends
    #[arg(long, short)]
    pub follow: bool,
}

pub fn logs(_dir: Option<PathBuf>, _a: LogsArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether logs is not built yet",
    ))
}
