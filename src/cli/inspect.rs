//! `tether inspect`.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(_dir: Option<PathBuf>, _a: InspectArgs) -> CliResult {
    Err(CliError::new(
        super::exit::IO,
        "tether inspect is not built yet",
    ))
}
