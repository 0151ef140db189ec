//! Where a test's `tether` runs: the binary cargo built for this test, a temporary state directory
//! of the test's own, and an environment without the job variables the test itself may carry.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::cleanup::Scratch;

/// The `tether` binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A temporary directory (removed on drop, or when the test process is interrupted) and the state
/// directory `state` inside it, which tether creates on first use.
pub fn state_dir() -> (Scratch, PathBuf) {
    let tmp = Scratch::new();
    let dir = tmp.path().join("state");
    (tmp, dir)
}

/// `tether --dir DIR`, without `NOTIFY_SOCKET`, `TETHER_HEARTBEAT_FILE` and `TETHER_DIR`: a test
/// run under a service manager or inside a tether job must not hand them on.
pub fn tether(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--dir").arg(dir);
    c.env_remove("NOTIFY_SOCKET")
        .env_remove("TETHER_HEARTBEAT_FILE")
        .env_remove("TETHER_DIR");
    c
}

/// (id, wrapper pid) from what `tether run --detach --json` printed.
pub fn detached(stdout: &[u8]) -> (String, u32) {
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "run --detach --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    let id = v["id"].as_str().unwrap().to_string();
    let pid = v["pid"].as_u64().unwrap() as u32;
    (id, pid)
}
