//! The wrapper's tests (`run_*`) and the readers' tests that need no subreaper, in one test binary:
//! one link instead of twelve. `readers_cancel` stays a binary of its own: it makes its process a
//! child subreaper, which would change what the others see of orphaned wrappers.

#[path = "../common/mod.rs"]
mod common;

mod readers_misc;
mod readers_status;
mod readers_survivors;
mod readers_wait;
mod run_detach;
mod run_example;
mod run_exit;
mod run_faults;
mod run_heartbeat;
mod run_meta;
mod run_terminal;
mod run_unique;
