//! The command line's definition (clap) and its parse.
//!
//! Building clap's tree is most of a short command's startup: the six global options are cloned
//! into every subcommand when the root is built (66 `Arg` clones, 61 KB of heap for `tether status
//! ID`, callgrind and dhat), though only one subcommand is ever used. So the parse first tries a
//! root holding only the subcommand named on the command line (`parse_one`), and the full tree
//! parses whatever that did not accept: every error, `--help`, `--version`. A command line the small
//! root accepts means the same in the full one (the root has no positional argument, so its first
//! one is the subcommand, defined identically in both), so users see no difference.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::{cancel, exit, gc, inspect, logs, result, rm, run, status, watch};

// No doc comment here: clap would print it as the long help.
#[derive(Parser, Debug)]
#[command(
    name = "tether",
    version,
    after_help = exit::HELP,
    about = "Tell, reliably and fast, whether a background job is still alive and making progress",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Options {
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
}

/// A parsed command line: tether's own options and the subcommand.
#[derive(Debug)]
pub struct Cli {
    pub options: Options,
    pub command: Command,
}

// `defer`: each subcommand's arguments are built only when it is the one invoked. A `tether
// status ID` built all eleven subcommands' definitions, with the global options copied into
// each, before parsing two words: the largest part of its startup (callgrind). No doc comment:
// clap would make it the root's about.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Run a command as a job, renewing its lease while it is healthy
    #[command(after_help = exit::HELP)]
    Run(Box<run::RunArgs>),
    /// Beat from inside a job (uses the channel `tether run --heartbeat notify|file` set up)
    #[command(after_help = exit::HELP)]
    Beat(run::BeatArgs),
    /// Show jobs as the verdict sees them; --wait blocks until a job ends
    #[command(after_help = exit::HELP)]
    Status(status::StatusArgs),
    /// Show the evidence behind a job's verdict
    #[command(after_help = exit::HELP)]
    Inspect(inspect::InspectArgs),
    /// Show a finished job's outcome and the tail of its log
    #[command(after_help = exit::HELP)]
    Result(result::ResultArgs),
    /// Stop a job: SIGTERM its process group, SIGKILL after a grace period
    #[command(after_help = exit::HELP)]
    Cancel(cancel::CancelArgs),
    /// Print a job's log
    #[command(after_help = exit::HELP)]
    Logs(logs::LogsArgs),
    /// A live view of every job: a table on a terminal, JSON lines of changes otherwise
    #[command(after_help = exit::HELP)]
    Watch(watch::WatchArgs),
    /// Remove jobs that have ended (--force: cancel an active one first)
    #[command(after_help = exit::HELP, visible_alias = "remove")]
    Rm(rm::RmArgs),
    /// Remove finished jobs older than an age
    #[command(after_help = exit::HELP)]
    Gc(gc::GcArgs),
    /// Print shell completions
    #[command(after_help = exit::HELP)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The whole command line's definition: for help, errors and completions.
pub fn command() -> clap::Command {
    Command::augment_subcommands(Options::command())
}

/// Parses this process's arguments (see the module doc).
pub fn parse() -> Result<Cli, clap::Error> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(cli) = parse_one(&args) {
        return Ok(cli);
    }
    let mut m = command().try_get_matches_from(&args)?;
    from_matches(&mut m).map_err(|e| e.format(&mut command()))
}

/// The parse with a root holding only the subcommand the first word naming one names; `None` if
/// that root does not accept the command line (a word taken for the subcommand that was an
/// option's value, any error, `--help`), for the full tree to parse.
fn parse_one(args: &[OsString]) -> Option<Cli> {
    // Unbuilt: a name and aliases each, their arguments deferred.
    let all = Command::augment_subcommands(clap::Command::new("tether"));
    let sub = args.iter().skip(1).find_map(|a| all.find_subcommand(a))?;
    let root = Options::command().subcommand(sub.clone());
    let mut m = root.try_get_matches_from(args).ok()?;
    from_matches(&mut m).ok()
}

fn from_matches(m: &mut ArgMatches) -> Result<Cli, clap::Error> {
    Ok(Cli {
        options: Options::from_arg_matches_mut(m)?,
        command: Command::from_arg_matches_mut(m)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_definition_is_valid() {
        command().debug_assert();
    }

    /// The small root parses what the full tree parses, to the same values.
    #[test]
    fn the_one_subcommand_root_agrees_with_the_full_tree() {
        for line in [
            "tether status job-1",
            "tether --dir /d status job-1 --json",
            "tether status --dir /d --store file:/x job-1 job-2",
            "tether --dir /d status --dir /e",
            "tether --dir=/d rm --force a",
            "tether remove a",
            "tether --etcd-user u:p inspect a --json",
            "tether run --id x -- status --dir y",
            "tether completions fish",
        ] {
            let args = argv(line);
            let one = parse_one(&args).unwrap_or_else(|| panic!("{line}: refused"));
            let mut m = command().try_get_matches_from(&args).unwrap();
            let full = from_matches(&mut m).unwrap();
            assert_eq!(format!("{one:?}"), format!("{full:?}"), "{line}");
        }
    }

    /// What the small root refuses goes to the full tree, which reports it.
    #[test]
    fn the_one_subcommand_root_refuses_what_it_cannot_judge() {
        for line in [
            "tether --dir status run",
            "tether --dir status gc --older-than 1d",
            "tether status --help",
            "tether --version",
            "tether help status",
            "tether stauts",
            "tether status --bogus",
            "tether",
        ] {
            assert!(parse_one(&argv(line)).is_none(), "{line}");
        }
    }
}
