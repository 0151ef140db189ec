//! `tether run` on a state directory that really fills up: a small tmpfs, filled to ENOSPC while the
//! job runs. The kernel decides which write fails, not a fake. Mounting needs root (CI runs as root);
//! where it is refused the test fails under CI=true and says what it needs elsewhere.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Mount;
use common::launch::*;
use common::mount::fill;

/// One at a time: a child forked by another test holds a copy of the filler's descriptor until it
/// execs, which frees the space a moment later than this test expects (see tests/store_faults.rs).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn free(filler: fs::File, path: &Path, mnt: &Path) {
    drop(filler);
    fs::remove_file(path).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || rustix::fs::statvfs(mnt)
            .unwrap()
            .f_bavail
            >= 32),
        "space never came back"
    );
}

/// A foreground `tether run` whose stderr goes to a file outside the full disk (detached, the
/// wrapper's diagnostics would go to the job log, on the full disk itself).
struct Fg {
    child: Child,
    err: PathBuf,
}

impl Fg {
    fn start(env: &mut Env, id: &str, flag: &Path) -> Fg {
        let err = env.tmp.path().join(format!("{id}.err"));
        let script = format!("while [ ! -e '{}' ]; do sleep 0.1; done", flag.display());
        let child = env
            .cmd()
            .args(["run", "--id", id, "--interval", "200ms", "--ttl", "2s"])
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        assert!(
            wait_for(Duration::from_secs(10), || {
                fs::read(env.dir.join("jobs").join(format!("{id}.json")))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|r| r["status"] == "running")
            }),
            "job never ran"
        );
        let r = env.record(id);
        env.adopt(child.id(), r["holder"]["start"].as_str().unwrap(), false);
        env.adopt(child_pid(&r), r["child"]["start"].as_str().unwrap(), true);
        Fg { child, err }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "wrapper did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The record on disk still parses with tether's own parser.
fn parsed(env: &Env, id: &str) -> tether::record::Record {
    let b = fs::read(env.dir.join("jobs").join(format!("{id}.json"))).unwrap();
    tether::record::Record::parse(&b, Some(id)).unwrap()
}

/// The lease as readers see it: the record with its lease file folded in (protocol.md 6.5).
fn renewed_at(env: &Env, id: &str) -> tether::clock::Timestamp {
    use tether::store::{FileStore, StateDir, Store};
    let store = FileStore::open(
        StateDir {
            root: env.dir.clone(),
        },
        false,
    )
    .unwrap();
    let id = tether::id::JobId::parse(id).unwrap();
    store.load(&id).unwrap().lease.renewed_at
}

#[test]
fn full_disk_pauses_renewals_and_they_resume_when_space_returns() {
    let _s = serial();
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    let Some(_m) = Mount::tmpfs("256k", &mnt) else {
        common::skip("root to mount a tmpfs", "run the tests as root, as CI does");
        return;
    };
    let mut env = Env::new();
    env.dir = mnt.clone();
    let flag = env.tmp.path().join("done");
    let mut fg = Fg::start(&mut env, "f", &flag);
    let lease = mnt.join("jobs/f.lease");
    assert!(
        wait_for(Duration::from_secs(10), || fs::metadata(&lease)
            .is_ok_and(|m| m.len() == 256)),
        "the lease file was not preallocated"
    );

    // A full disk does not stop renewals: they overwrite the lease file's preallocated slots.
    let filler_path = mnt.join("filler");
    let filler = fill(&filler_path);
    let t0 = renewed_at(&env, "f");
    assert!(
        wait_for(Duration::from_secs(10), || renewed_at(&env, "f") > t0),
        "renewals stopped on a full disk: {}",
        fg.stderr()
    );
    assert!(!fg.stderr().contains("cannot renew"), "{}", fg.stderr());

    // With the lease file gone as well, no renewal can be written: the failure is reported,
    // retried each tick, and the last good record is kept.
    fs::remove_file(&lease).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || fg
            .stderr()
            .contains("cannot renew the lease of job f (will retry)")),
        "no renewal failure reported: {}",
        fg.stderr()
    );
    let before = parsed(&env, "f");
    std::thread::sleep(Duration::from_millis(1000));
    let after = parsed(&env, "f");
    assert_eq!(before, after);
    assert_eq!(after.status.as_str(), "running");
    // Said once, not on every failed tick.
    assert_eq!(
        fg.stderr().matches("cannot renew").count(),
        1,
        "{}",
        fg.stderr()
    );
    let stuck = renewed_at(&env, "f");

    free(filler, &filler_path, &mnt);
    assert!(
        wait_for(Duration::from_secs(10), || renewed_at(&env, "f") > stuck),
        "renewals did not resume: {}",
        fg.stderr()
    );
    fs::write(&flag, b"").unwrap();
    assert_eq!(fg.wait(Duration::from_secs(30)), 0, "{}", fg.stderr());
    let r = env.record("f");
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["reason"], "exited");
}

#[test]
fn full_disk_at_the_end_exits_10_and_says_the_result() {
    let _s = serial();
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    let Some(_m) = Mount::tmpfs("256k", &mnt) else {
        common::skip("root to mount a tmpfs", "run the tests as root, as CI does");
        return;
    };
    let mut env = Env::new();
    env.dir = mnt.clone();
    let flag = env.tmp.path().join("done");
    let mut fg = Fg::start(&mut env, "e", &flag);

    let filler_path = mnt.join("filler");
    let filler = fill(&filler_path);
    let t = Instant::now();
    fs::write(&flag, b"").unwrap();
    // Retried for the ttl (2 s here), then a clear error: never the child's 0 for an unrecorded end.
    assert_eq!(fg.wait(Duration::from_secs(30)), 10, "{}", fg.stderr());
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "gave up too soon"
    );
    let err = fg.stderr();
    assert!(
        err.contains("cannot record that job e ended with exit code 0"),
        "{err}"
    );
    assert_eq!(parsed(&env, "e").status.as_str(), "running");

    free(filler, &filler_path, &mnt);
    // With its wrapper gone the job is judged lost, as the message said.
    let j = env.settle("e");
    assert_eq!(j.record.status.as_str(), "lost");
}
