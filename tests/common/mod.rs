//! The test kit shared by the integration-test crates (`mod common;` in a test file): skipping
//! honestly ([`skip`]), the binary and a test's own state directory ([`env`]), the one record
//! builder ([`record`]), the one random generator ([`Rng`]), mounts ([`Mount`]), and what tests
//! read of `/proc` and how they kill what they started ([`proc`]), through the library's own code.
//!
//! Each test file is its own crate and uses a part of the kit, hence `dead_code` and
//! `unused_imports` (of the re-exports below) allowed here.
#![allow(dead_code, unused_imports)]

pub mod env;
pub mod mount;
pub mod proc;
pub mod record;
pub mod rng;
pub mod skip;

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
