//! A state directory under a directory another user can write (issue 14, item 6; protocol.md 2).
//!
//! Checking the state directory's path and then using it by name let that user swap a component
//! for a symbolic link after the check: a root wrapper then created `<id>.lease`, `<id>.lock` and
//! its log wherever the link pointed. These tests make the swap for real, as uid 65534 (through
//! `setpriv`, the tests run as root), once between opening the store and using it and once racing
//! real `tether run` wrappers, and check that nothing appears where the link points.
//!
//! Linux: needs root and `setpriv` (util-linux). Under CI=true a missing one fails the test; elsewhere
//! it says so and returns (tests/common).

#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether::clock::{Timestamp, mono_ms};
use tether::id::JobId;

use tether::record::{Progress, Record, Status};
use tether::store::{DirProblem, FileStore, Renew, StateDir, Store, StoreError, commit};
use tether::transition::Write;

const NOBODY: u32 = 65534;

/// Whether the test can run here (root, to be two users; `setpriv`, to be the other one); under
/// CI=true it must.
fn can_run() -> bool {
    common::need_root("to act as uid 65534 and as root")
        && common::need_tool("setpriv", "util-linux")
}

/// Runs a shell script as uid/gid 65534 in `dir`.
fn as_nobody(dir: &Path, script: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
        script,
    ])
    .current_dir(dir);
    c
}

/// `t/` (root, 0755) holding `shared/` (uid 65534's, 0755) holding `sub/` (uid 65534's): the state
/// directory is `t/shared/sub/state`. `t/elsewhere/state/jobs` (root's, 0700) is where a swapped
/// `sub` will point: a directory root can write that the other user must not be able to fill.
struct Layout {
    t: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let shared = t.path().join("shared");
        fs::create_dir_all(shared.join("sub")).unwrap();
        for d in [&shared, &shared.join("sub")] {
            chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let target = t.path().join("elsewhere/state/jobs");
        fs::create_dir_all(&target).unwrap();
        for d in ["elsewhere", "elsewhere/state", "elsewhere/state/jobs"] {
            fs::set_permissions(t.path().join(d), fs::Permissions::from_mode(0o700)).unwrap();
        }
        Layout { t }
    }
    fn state(&self) -> PathBuf {
        self.t.path().join("shared/sub/state")
    }
    fn shared(&self) -> PathBuf {
        self.t.path().join("shared")
    }
    /// What the other user must never get root to create.
    fn elsewhere(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.t.path().join("elsewhere/state/jobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn record(id: &str) -> Record {
    common::record(id).build()
}

/// Swaps `shared/sub` for a link to `../elsewhere`, as uid 65534.
const SWAP: &str = "mv sub sub.real && ln -s ../elsewhere sub";

#[test]
fn a_component_swapped_for_a_symlink_after_opening_redirects_nothing() {
    if !can_run() {
        return;
    }
    let l = Layout::new();
    let store = FileStore::open(StateDir { root: l.state() }, true).unwrap();
    let id = JobId::parse("job").unwrap();
    store.create(&record("job")).unwrap();

    let st = as_nobody(&l.shared(), SWAP).status().unwrap();
    assert!(st.success(), "the swap as uid 65534 failed: {st}");
    assert!(
        fs::symlink_metadata(l.shared().join("sub"))
            .unwrap()
            .is_symlink()
    );

    // Everything a wrapper, a reader and gc do after the swap.
    let mut renewer = store.renewer(&id).unwrap();
    renewer
        .renew(1, Timestamp::now(), mono_ms(), &Progress::default())
        .unwrap()
        .unwrap();
    let w = Write::Renew {
        epoch: 1,
        at: Timestamp::now(),
        mono_ms: mono_ms(),
        running: true,
        child: None,
        progress: None,
    };
    commit(&store, &id, &w, true).unwrap().unwrap();
    let mut log = store.log_files(&id).open().unwrap();
    std::io::Write::write_all(&mut log, b"output\n").unwrap();
    store.log_files(&id).rotate().unwrap();
    store.create(&record("second")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(store.load(&id).unwrap().status, Status::Running);
    store.sweep_temp_files(false).unwrap();
    let second = JobId::parse("second").unwrap();
    assert!(store.remove(&second, &mut |_| true).unwrap());

    assert_eq!(
        l.elsewhere(),
        Vec::<String>::new(),
        "root wrote where the link points"
    );
    let mut real: Vec<String> = fs::read_dir(l.shared().join("sub.real/state/jobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    real.sort();
    assert_eq!(real, ["job.json", "job.lease", "job.lock", "job.log.1"]);

    // Opened afresh, the swapped path is refused, naming the link and who can move it.
    for create in [false, true] {
        let e = FileStore::open(StateDir { root: l.state() }, create).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, StoreError::Dir { why: DirProblem::UntrustedLink { uid, .. }, .. } if *uid == NOBODY),
            "{e:?}"
        );
        assert!(
            msg.contains("shared/sub") && msg.contains("uid 65534"),
            "{msg}"
        );
        assert_eq!(tether::testing::exit::Kind::of_store(&e).exit_code(), 8);
    }
    assert_eq!(l.elsewhere(), Vec::<String>::new());
}

/// A link on the way that only root or we could have placed is followed as before (`/tmp` on
/// some systems, a symlinked home): only links another user controls are refused.
#[test]
fn a_link_only_root_could_place_is_still_followed() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("real")).unwrap();
    symlink("real", t.path().join("link")).unwrap();
    let store = FileStore::open(
        StateDir {
            root: t.path().join("link/state"),
        },
        true,
    )
    .unwrap();
    store.create(&record("job")).unwrap();
    assert!(t.path().join("real/state/jobs/job.json").exists());
    // The state directory itself must not be a link, whoever placed it (protocol.md 2).
    symlink("real/state", t.path().join("state-link")).unwrap();
    let e = FileStore::open(
        StateDir {
            root: t.path().join("state-link"),
        },
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Dir {
                why: DirProblem::Symlink,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A child killed and reaped by pid when dropped, so a failing assertion never leaves it running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SIGKILL cannot be ignored: the wait is bounded.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The racing swapper, run by `a_racing_swapper_...` in a copy of this test binary as uid 65534:
/// exchanges `sub` (a directory) and `sub.link` (a link to `../elsewhere`) atomically
/// (renameat2 RENAME_EXCHANGE), so the path always exists and is now the real directory, now the
/// link. Does nothing in a normal test run. Bounded, in case its parent dies without killing it.
#[test]
fn swapper_process() {
    let Some(dir) = std::env::var_os("TETHER_TEST_SWAP_IN") else {
        return;
    };
    let dir = rustix::fs::open(
        Path::new(&dir),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end {
        rustix::fs::renameat_with(
            &dir,
            "sub",
            &dir,
            "sub.link",
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .unwrap();
    }
}

/// Makes `sub.link` (uid 65534's link to `../elsewhere`) and starts the racing swapper as uid
/// 65534, once the state directory exists while `sub` is real.
fn start_swapper(l: &Layout) -> Reaped {
    FileStore::open(StateDir { root: l.state() }, true).unwrap();
    let link = l.shared().join("sub.link");
    symlink("../elsewhere", &link).unwrap();
    rustix::fs::chownat(
        rustix::fs::CWD,
        &link,
        Some(rustix::process::Uid::from_raw(NOBODY)),
        Some(rustix::process::Gid::from_raw(NOBODY)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    // uid 65534 runs a copy of this binary (the original may sit where it cannot read it).
    let exe = l.t.path().join("swapper");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    Reaped(
        as_nobody(
            &l.shared(),
            r#"exec "$0" --exact swapper_process --nocapture --test-threads=1"#,
        )
        .arg(&exe)
        .env("TETHER_TEST_SWAP_IN", l.shared())
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    )
}

#[test]
fn a_racing_swapper_never_gets_a_wrapper_to_write_elsewhere() {
    if !can_run() {
        return;
    }
    let l = Layout::new();
    let mut swapper = start_swapper(&l);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ran, mut refused, mut rounds) = (0, 0, 0);
    let mut odd = Vec::new();
    // Wrappers renewing every 20 ms for 300 ms each, logging, and readers listing.
    while (rounds < 12 || ran < 6) && rounds < 60 && Instant::now() < deadline {
        rounds += 1;
        let out = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--dir")
            .arg(l.state())
            .args(["run", "--interval", "20ms", "--ttl", "200ms", "--"])
            .args([
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.05; done",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => ran += 1,
            // Opened while `sub` was the link: refused, nothing run.
            Some(8) if String::from_utf8_lossy(&out.stderr).contains("symbolic link") => {
                refused += 1
            }
            c => odd.push(format!(
                "exit {c:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--dir")
            .arg(l.state())
            .args(["status", "--json"])
            .output()
            .unwrap();
    }
    let early = swapper.0.try_wait().unwrap();
    drop(swapper);
    eprintln!("{rounds} rounds: {ran} wrappers ran, {refused} refused at open, odd: {odd:?}");
    assert_eq!(
        l.elsewhere(),
        Vec::<String>::new(),
        "root wrote where the link points"
    );
    assert_eq!(early, None, "the swapper stopped early");
    assert_eq!(odd, Vec::<String>::new(), "wrappers failed in another way");
    assert!(ran > 0, "no wrapper ever ran ({refused} refused)");
}

/// The heartbeat channel (`run/`, `tether-XXXXXX/`, the notify socket, the heartbeat file) is made
/// through the opened state directory too: wrappers racing the swapper never make any of it where
/// the link points (before, `run/` was made by path: `elsewhere/state/run/tether-*` appeared).
#[test]
fn a_racing_swapper_never_gets_a_wrapper_to_make_its_channel_elsewhere() {
    if !can_run() {
        return;
    }
    let l = Layout::new();
    let mut swapper = start_swapper(&l);
    let elsewhere = l.t.path().join("elsewhere/state");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ran, mut rounds) = (0, 0);
    let mut odd = Vec::new();
    while (rounds < 16 || ran < 8) && rounds < 60 && Instant::now() < deadline {
        rounds += 1;
        let mode = if rounds % 2 == 0 { "notify" } else { "file" };
        let out = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--dir")
            .arg(l.state())
            .args([
                "run",
                "--heartbeat",
                mode,
                "--interval",
                "20ms",
                "--ttl",
                "5s",
            ])
            .args(["--", "sh", "-c", "sleep 0.1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => ran += 1,
            Some(8) if String::from_utf8_lossy(&out.stderr).contains("symbolic link") => {}
            c => odd.push(format!(
                "{mode}: exit {c:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
    let early = swapper.0.try_wait().unwrap();
    drop(swapper);
    let mut made: Vec<String> = fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    eprintln!("{rounds} rounds: {ran} wrappers ran, odd: {odd:?}");
    assert_eq!(
        made,
        ["jobs"],
        "root made its channel where the link points"
    );
    assert_eq!(l.elsewhere(), Vec::<String>::new());
    assert_eq!(early, None, "the swapper stopped early");
    assert_eq!(odd, Vec::<String>::new(), "wrappers failed in another way");
    assert!(ran > 0, "no wrapper ever ran");
    // Each wrapper removed its own channel directory from the real `run/`.
    let real = ["sub", "sub.link"]
        .iter()
        .map(|n| l.shared().join(n).join("state/run"))
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .expect("the real state directory has a run/");
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0, "left in {real:?}");
}
