//! The test kit shared by the integration-test crates (`mod common;` in a test file) and the
//! benchmark (`#[path = "../tests/common/mod.rs"] mod common;`): skipping honestly ([`skip`]), the
//! binary and a test's own state directory ([`env`]), the one record builder ([`record`]), the one
//! random generator ([`Rng`]), mounts ([`Mount`]), what tests read of `/proc` and how they kill what
//! they started ([`proc`], [`cleanup`]), and the fixtures of each family of tests: `tether run` in
//! plain child processes ([`launch`]), records held by processes the test spawned ([`holders`]),
//! the subreaper that owns `wait` for the torture tests ([`reaper`], [`torture`]), a broker that
//! never answers ([`broker`]), and the vectors' schema check ([`schema`]).
//!
//! Each test file is its own crate and uses a part of the kit, hence `dead_code` and
//! `unused_imports` (of the re-exports below) allowed here.
#![allow(dead_code, unused_imports)]

pub mod broker;
pub mod cleanup;
pub mod env;
pub mod holders;
pub mod launch;
pub mod mount;
pub mod proc;
pub mod reaper;
pub mod record;
pub mod rng;
pub mod schema;
pub mod skip;
pub mod torture;

pub use env::BIN;
pub use mount::Mount;
pub use record::record;
pub use rng::Rng;
pub use skip::{in_ci, need_root, need_tool, on_path, skip};

use std::time::{Duration, Instant};

/// Calls `f` every `every` until it is true (true) or `limit` passes (false): the tests' bounded
/// waits, generous because the machine may be loaded.
pub fn poll(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
