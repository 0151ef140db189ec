//! `tether result`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct ResultArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn result(_dir: Option<PathBuf>, _a: ResultArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether result is not built yet",
    ))
}
