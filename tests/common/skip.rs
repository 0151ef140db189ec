//! Skipping a test honestly: under `CI=true` a missing requirement fails the test (CI installs
//! everything and runs as root, so a skip there would hide a broken setup); elsewhere the test
//! prints one line naming what to install and returns, so `cargo test` works on a laptop.

use std::path::PathBuf;

/// Whether this run must not skip anything (`CI=true`, as CI sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The running test's name: libtest names each test's thread after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned()
}

/// The test cannot run here: it `needs` something this machine lacks, and `install` says how to get
/// it. Under `CI=true` this panics (the test fails); elsewhere it prints a one-line notice and
/// returns, and the caller returns too (or leaves out the one case that needed it).
#[track_caller]
pub fn skip(needs: &str, install: &str) {
    let test = test_name();
    if in_ci() {
        panic!("{test} needs {needs}, and CI=true forbids skipping it: {install}");
    }
    eprintln!("SKIPPED {test}: needs {needs}; {install}");
}

/// `tool` as found on PATH, the way a command spawned by the test finds it.
pub fn on_path(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether `tool` is on PATH; if not, [`skip`] naming the Debian `package` that has it.
#[track_caller]
pub fn need_tool(tool: &str, package: &str) -> bool {
    let found = on_path(tool).is_some();
    if !found {
        skip(
            &format!("`{tool}` on PATH"),
            &format!("apt-get install {package}"),
        );
    }
    found
}

/// Whether the test runs as root; if not, [`skip`] saying what root is needed for.
#[track_caller]
pub fn need_root(for_what: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        skip(
            &format!("root ({for_what})"),
            "run the tests as root, as CI does",
        );
    }
    root
}
