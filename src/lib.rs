//! tether: heartbeat leases that tell whether a background job is alive and making progress.
//!
//! The crate is split the way the protocol is: a pure core (`record`, `verdict`, `transition`) that
//! decides, and edges that do I/O (`store`, `process`, `clock`). See `protocol.md` for the rules and
//! `README.md` for the map.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod clock;
pub mod id;
pub mod ijson;
pub mod lease_file;
pub mod meta;
pub mod platform;
pub mod process;
pub mod reader;
pub mod record;
pub mod store;
pub mod transition;
pub mod unique;
pub mod verdict;
pub mod wrapper;
