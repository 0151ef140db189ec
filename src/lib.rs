//! tether: heartbeat leases that tell whether a background job is alive and making progress.
//!
//! The crate is split the way the protocol (`protocol.md`) is: a pure core that decides and edges
//! that do I/O. A Rust program gets the same machinery the `tether` command uses:
//!
//! - the pure core: [`record`] (the job record and its parser), [`verdict`] (whether a job is alive,
//!   from a record, probe facts and clocks), [`transition`] (who may change a record and how),
//!   [`lease_file`] (the lease file's slots), with [`clock`], [`id`] and [`meta`] for their types;
//! - the edges: [`store`] (the [`Store`](store::Store) trait and its backends, with
//!   [`commit`](store::commit) to apply a [`Write`](transition::Write)), [`process`] (who the
//!   reader is, probing a pid, signalling by identity) and [`reader`] (judge a stored job and
//!   persist a `lost` verdict, [`settle`](reader::settle::settle); wait for it to end).
//!
//! The wrapper behind `tether run` and the command line itself are not part of the library: jobs
//! written in any language beat through the wrapper's channel, and readers go through the
//! functions above. `README.md` has the map of every file.
//!
//! # Example
//!
//! Record a job, then judge it as every `tether` command does:
//!
//! ```
//! use tether::id::JobId;
//! use tether::record::{Reason, Record};
//! use tether::store::{FileStore, StateDir, Store};
//! use tether::verdict::Outcome;
//!
//! let dir = tempfile::tempdir()?;
//! let store = FileStore::open(StateDir { root: dir.path().to_path_buf() }, true)?;
//! let id = JobId::parse("nightly-build")?;
//!
//! // The holder is this process: the record names its pid, start time and boot (1 s beats, 5 s ttl).
//! let me = tether::process::current()?.holder();
//! store.create(&Record::begin(id.as_str(), vec!["make".into()], me.clone(), 1_000, 5_000))?;
//!
//! // Load, probe the holder, judge: alive, so nothing is written.
//! let judged = tether::reader::settle::settle(&store, &id)?;
//! assert_eq!(judged.verdict.outcome, Outcome::Active);
//! assert!(!judged.reaped);
//!
//! // A holder whose start time differs is another process reusing the pid: the job is lost, and
//! // `settle` writes that down once for every later reader (protocol.md 7.5).
//! let mut other = me;
//! other.start = format!("{}0", other.start);
//! store.create(&Record::begin("reused", vec![], other, 1_000, 5_000))?;
//! let judged = tether::reader::settle::settle(&store, &JobId::parse("reused")?)?;
//! assert_eq!(judged.verdict.reason(), Some(Reason::PidReused));
//! assert!(judged.reaped);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod clock;
pub mod id;
pub mod lease_file;
pub mod meta;
pub mod process;
pub mod reader;
pub mod record;
pub mod store;
pub mod transition;
pub mod verdict;

mod cli;
mod ijson;
mod platform;
mod unique;
mod wrapper;

/// The `tether` command (src/main.rs); its exit code. Not library API.
#[doc(hidden)]
pub fn cli_main() -> i32 {
    cli::main()
}

/// What the integration tests and the benchmark need from the crate's inside, and nothing a
/// library user should rely on: exit codes as the CLI maps store errors, and platform helpers.
#[doc(hidden)]
pub mod testing {
    pub use crate::cli::exit;
    /// The platform helpers the tests use.
    pub mod platform {
        pub use crate::platform::{
            DirEvents, Interest, Stat, become_subreaper, process_cpu_ns, stat,
        };
    }
}
