//! Hostile and broken things in the state directory (protocol.md 2, 3, 4.3, 4.4, 8).
//!
//! Another user, a crashed tool or a curious person can put anything where a record belongs. Each
//! case checks the three promises that make that harmless: the error names the file, the bad file is
//! left exactly as it was (bytes and mtime), and the good records around it are still listed. Every
//! case runs under a time bound, because the failure to fear most (a FIFO) is a hang, not an error.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tether::id::JobId;
use tether::process::{self, IdentityError, Pinned};
use tether::reader::settle::settle;
use tether::record::{Reason, Record, RecordError, Status};
use tether::store::{Change, FileStore, StateDir, Store, StoreError};
use tether::verdict::{Outcome, Probe};

/// Only a hang gets near this on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `f` on a thread and fails the test if it does not return in time.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what}: did not return within {PATIENCE:?} (hang)"))
}

fn record(id: &str, pid: u32) -> Record {
    let start = process::start_token(pid).unwrap_or_else(|| "linux:1".into());
    common::record(id).pid(pid, &start).build()
}

fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

struct Env {
    t: tempfile::TempDir,
    store: FileStore,
    good: Vec<Record>,
}

impl Env {
    /// A store with two healthy jobs that every hostile case must leave visible.
    fn new() -> Env {
        let t = tempfile::tempdir().unwrap();
        let store = FileStore::open(
            StateDir {
                root: t.path().join("state"),
            },
            true,
        )
        .unwrap();
        let good = vec![
            record("good-1", std::process::id()),
            record("good-2", std::process::id()),
        ];
        for g in &good {
            store.create(g).unwrap();
        }
        Env { t, store, good }
    }
    fn jobs(&self) -> PathBuf {
        self.store.root().join("jobs")
    }
}

/// Everything about a path that a careless reader could change, without following a symlink.
#[derive(Debug, PartialEq)]
struct Snap {
    kind: String,
    len: u64,
    mtime: (i64, i64),
    mode: u32,
    bytes: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

fn snap(p: &Path) -> Snap {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    Snap {
        kind: format!("{ft:?}"),
        len: md.len(),
        mtime: (md.mtime(), md.mtime_nsec()),
        mode: md.mode(),
        bytes: (ft.is_file() && md.len() <= 2 << 20).then(|| fs::read(p).unwrap()),
        link: ft.is_symlink().then(|| fs::read_link(p).unwrap()),
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn good_record_bytes(id: &str) -> Vec<u8> {
    record(id, dead_pid()).to_json()
}

/// Puts a hostile `bad.json` in place and checks load, list, update and settle against it.
fn check_bad_record(what: &str, make: impl FnOnce(&Path, &Path), want_unsupported: bool) {
    let env = Env::new();
    let path = env.jobs().join("bad.json");
    make(&path, env.t.path());
    let before = snap(&path);
    let listing = names(&env.jobs());
    let store = env.store.clone();
    let id = JobId::parse("bad").unwrap();
    let (load, listed, update, settled) = bounded(what, move || {
        let load = store.load(&id);
        let listed = store.list();
        let mut called = false;
        let update = store.update(&id, &mut |r| {
            called = true;
            Change::Write {
                record: r.clone(),
                durable: true,
                value: (),
            }
        });
        assert!(!called, "update let the closure see a bad record");
        let settled = settle(&store, &id).map(|j| format!("{:?}", j.verdict));
        (load, listed, update.map(|_| ()), settled)
    });

    let check = |e: &StoreError, op: &str| {
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()),
            "{what}: {op}: error must name {}: {msg}",
            path.display()
        );
        assert_eq!(
            tether::testing::exit::Kind::of_store(e).exit_code(),
            7,
            "{what}: {op}: {msg}"
        );
        match e {
            StoreError::Record {
                err: RecordError::Unsupported(2),
                ..
            } if want_unsupported => assert!(msg.contains("version 2"), "{msg}"),
            StoreError::Record {
                err: RecordError::Corrupt(_),
                ..
            } if !want_unsupported => {}
            other => panic!("{what}: {op}: unexpected {other:?}"),
        }
    };
    check(&load.expect_err("load"), "load");
    check(&update.expect_err("update"), "update");
    match settled {
        Ok(v) => panic!("{what}: settle judged a bad record: {v}"),
        Err(e) => check(&e, "settle"),
    }
    let listed = listed.expect("list");
    assert_eq!(listed.len(), 3, "{what}: {listed:?}");
    let ok: Vec<&Record> = listed.iter().filter_map(|l| l.as_ref().ok()).collect();
    assert_eq!(ok, env.good.iter().collect::<Vec<_>>(), "{what}");
    let errs: Vec<&StoreError> = listed.iter().filter_map(|l| l.as_ref().err()).collect();
    check(errs[0], "list");

    assert_eq!(snap(&path), before, "{what}: the bad file was touched");
    let mut after = names(&env.jobs());
    after.remove("bad.lock"); // taking the lock of an existing record is allowed
    assert_eq!(after, listing, "{what}: files appeared or vanished");
}

fn bad_value(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = serde_json::to_value(record("bad", dead_pid())).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn hostile_record_files_are_reported_and_left_alone() {
    let write = |bytes: Vec<u8>| move |p: &Path, _: &Path| fs::write(p, bytes).unwrap();
    check_bad_record(
        "symlink to a valid record",
        |p, t| {
            let target = t.join("elsewhere.json");
            fs::write(&target, good_record_bytes("bad")).unwrap();
            symlink(&target, p).unwrap();
        },
        false,
    );
    check_bad_record(
        "FIFO",
        |p, _| {
            // mkfifo(1): POSIX, where rustix's mknodat is not (macOS).
            let made = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap();
            assert!(made.success());
        },
        false,
    );
    check_bad_record(
        "Unix socket",
        |p, _| {
            // Kept bound for the test's life would need a handle; the socket file alone suffices.
            drop(std::os::unix::net::UnixListener::bind(p).unwrap());
        },
        false,
    );
    check_bad_record(
        "directory named bad.json",
        |p, _| fs::create_dir(p).unwrap(),
        false,
    );
    check_bad_record("empty", write(vec![]), false);
    check_bad_record(
        "truncated",
        write(good_record_bytes("bad")[..40].to_vec()),
        false,
    );
    check_bad_record(
        "binary garbage",
        write((0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
        false,
    );
    check_bad_record(
        "100 MiB sparse",
        |p, _| {
            let f = fs::File::create(p).unwrap();
            f.set_len(100 << 20).unwrap();
        },
        false,
    );
    check_bad_record(
        "100,000 nested brackets",
        write("[".repeat(100_000).into_bytes()),
        false,
    );
    check_bad_record(
        "wrong types",
        write(bad_value(|v| v["lease"]["epoch"] = json!("one"))),
        false,
    );
    check_bad_record(
        "id differs from the file name",
        write(good_record_bytes("other")),
        false,
    );
    check_bad_record(
        "holder pid 0",
        write(bad_value(|v| v["holder"]["pid"] = json!(0))),
        false,
    );
    check_bad_record(
        "holder pid -1",
        write(bad_value(|v| v["holder"]["pid"] = json!(-1))),
        false,
    );
    check_bad_record(
        "holder pid above i32::MAX",
        write(bad_value(|v| v["holder"]["pid"] = json!(u32::MAX))),
        false,
    );
    // A newer version, with a dead holder: an old reader must not reap what it cannot understand.
    check_bad_record(
        "protocol 2",
        write(bad_value(|v| v["protocol"] = json!(2))),
        true,
    );
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
    let env = Env::new();
    let id = JobId::parse("good-1").unwrap();
    let victim = env.t.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let lock = env.store.lock_path(&id);
    fs::remove_file(&lock).unwrap();
    symlink(&victim, &lock).unwrap();
    let dangling = env.t.path().join("never-created");
    let id2 = JobId::parse("good-2").unwrap();
    let lock2 = env.store.lock_path(&id2);
    fs::remove_file(&lock2).unwrap();
    symlink(&dangling, &lock2).unwrap();
    let rec_before = snap(&env.store.record_path(&id));
    let victim_before = snap(&victim);

    for (i, l) in [(&id, &lock), (&id2, &lock2)] {
        let store = env.store.clone();
        let i2 = i.clone();
        let e = bounded("update through a symlinked lock", move || {
            store
                .update(&i2, &mut |r| Change::Write {
                    record: r.clone(),
                    durable: true,
                    value: (),
                })
                .unwrap_err()
        });
        let msg = e.to_string();
        assert!(msg.contains(&l.display().to_string()), "{msg}");
        assert!(msg.contains("symbolic link"), "{msg}");
        assert_eq!(tether::testing::exit::Kind::of_store(&e).exit_code(), 8);
    }
    assert_eq!(snap(&env.store.record_path(&id)), rec_before);
    assert_eq!(snap(&victim), victim_before);
    assert!(!dangling.exists(), "a lock was created through a symlink");
    assert_eq!(env.store.list().unwrap().len(), 2);
}

fn open_err(root: &Path, create: bool) -> StoreError {
    FileStore::open(
        StateDir {
            root: root.to_path_buf(),
        },
        create,
    )
    .unwrap_err()
}

fn assert_dir_refused(root: &Path, create: bool, want: &str) {
    let e = open_err(root, create);
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Dir { .. }), "{e:?}");
    assert_eq!(
        tether::testing::exit::Kind::of_store(&e).exit_code(),
        8,
        "{msg}"
    );
    assert!(msg.contains(&root.display().to_string()), "{msg}");
    assert!(msg.contains(want), "want {want:?} in {msg}");
}

#[test]
fn unsafe_state_directories_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path();

    let missing = base.join("missing");
    assert_dir_refused(&missing, false, "does not exist");
    assert!(
        !missing.exists(),
        "opening without create made the directory"
    );

    let real = base.join("real");
    let ok = FileStore::open(StateDir { root: real.clone() }, true).unwrap();
    ok.create(&record("good-1", std::process::id())).unwrap();
    let real_names = names(&real.join("jobs"));
    let link = base.join("link");
    symlink(&real, &link).unwrap();
    for create in [false, true] {
        assert_dir_refused(&link, create, "symbolic link");
    }
    assert_eq!(names(&real.join("jobs")), real_names);

    let file = base.join("file");
    fs::write(&file, b"not a dir").unwrap();
    let file_before = snap(&file);
    for create in [false, true] {
        assert_dir_refused(&file, create, "not a directory");
    }
    assert_eq!(snap(&file), file_before);

    let open = base.join("open");
    FileStore::open(StateDir { root: open.clone() }, true).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    for create in [false, true] {
        assert_dir_refused(&open, create, "chmod 700");
    }
    assert_eq!(fs::metadata(&open).unwrap().mode() & 0o777, 0o777);

    let theirs = base.join("theirs");
    FileStore::open(
        StateDir {
            root: theirs.clone(),
        },
        true,
    )
    .unwrap();
    if common::need_root("to chown a directory to uid 65534") {
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        for create in [false, true] {
            assert_dir_refused(&theirs, create, "owned by uid 65534");
        }
    }

    // The same checks apply to jobs/ inside a good state directory.
    let inner = base.join("inner");
    FileStore::open(
        StateDir {
            root: inner.clone(),
        },
        true,
    )
    .unwrap();
    fs::set_permissions(inner.join("jobs"), fs::Permissions::from_mode(0o757)).unwrap();
    let e = open_err(&inner, false).to_string();
    assert!(e.contains("jobs") && e.contains("chmod 700"), "{e}");
    fs::remove_dir(inner.join("jobs")).unwrap();
    symlink(real.join("jobs"), inner.join("jobs")).unwrap();
    let e = open_err(&inner, true).to_string();
    assert!(e.contains("jobs") && e.contains("symbolic link"), "{e}");
}

#[test]
fn a_missing_job_is_not_found_and_creates_nothing() {
    let env = Env::new();
    let before = names(&env.jobs());
    let id = JobId::parse("nosuch").unwrap();
    let e = env
        .store
        .update(&id, &mut |_| Change::Keep(()))
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(..)), "{e:?}");
    assert_eq!(tether::testing::exit::Kind::of_store(&e).exit_code(), 6);
    assert!(settle(&env.store, &id).is_err());
    assert!(!env.store.remove(&id, &mut |_| true).unwrap_or(false));
    assert_eq!(
        names(&env.jobs()),
        before,
        "a lookup of a missing job left files"
    );

    // A fresh state directory without jobs/ yet: still "not found", not an I/O error.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    fs::DirBuilder::new().create(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    let fresh = FileStore::open(StateDir { root: root.clone() }, false).unwrap();
    let e = fresh.update(&id, &mut |_| Change::Keep(())).unwrap_err();
    assert!(matches!(e, StoreError::NotFound(..)), "{e:?}");
    assert_eq!(fresh.list().unwrap().len(), 0);
    assert!(!root.join("jobs").exists());
}

#[test]
fn hostile_job_ids_are_rejected_with_a_short_quote() {
    let long = "a".repeat(10_000);
    let long_slash = format!("{}/{}", "b".repeat(5_000), "c".repeat(5_000));
    for bad in [
        "a/b",
        "../x",
        "..",
        "/etc/passwd",
        "a\0b",
        "\0",
        &long,
        &long_slash,
    ] {
        let msg = JobId::parse(bad).unwrap_err().to_string();
        let quoted = msg
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("no quote in {msg}"));
        assert!(
            quoted.chars().count() <= 45,
            "quotes {} characters: {msg}",
            quoted.chars().count()
        );
        assert!(msg.len() < 250, "{} bytes: {msg}", msg.len());
    }
}

fn pid_max() -> u32 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}

#[test]
fn odd_holder_pids_are_judged_and_never_signalled() {
    assert!(matches!(
        Pinned::open(1, "linux:1", process::pid_ns().as_deref()),
        Err(IdentityError::Forbidden(1))
    ));
    assert!(matches!(
        Pinned::open(0, "linux:1", process::pid_ns().as_deref()),
        Err(IdentityError::Forbidden(0))
    ));
    assert!(matches!(
        Pinned::open(u32::MAX, "linux:1", process::pid_ns().as_deref()),
        Err(IdentityError::Forbidden(_))
    ));
    let beyond = pid_max() + 1;
    assert!(
        matches!(
            Pinned::open(beyond, "linux:1", process::pid_ns().as_deref()),
            Err(IdentityError::Gone(_))
        ),
        "pid {beyond} above pid_max"
    );

    let env = Env::new();
    // pid 1 exists but is not our holder: its start time tells them apart.
    let mut init = record("init", 1);
    init.holder.start = "linux:999999999999".into();
    env.store.create(&init).unwrap();
    let mut far = record("far", beyond);
    far.holder.start = "linux:1".into();
    env.store.create(&far).unwrap();

    let j = settle(&env.store, &JobId::parse("init").unwrap()).unwrap();
    assert_eq!(
        j.verdict.outcome,
        Outcome::Lost {
            reason: Reason::PidReused
        }
    );
    assert!(j.reaped);
    let j = settle(&env.store, &JobId::parse("far").unwrap()).unwrap();
    assert_eq!(
        j.verdict.outcome,
        Outcome::Lost {
            reason: Reason::WorkerExited
        }
    );
    // Judging pid 1 only looked at it: it is still there (and this process was not killed either).
    assert!(matches!(process::probe(1), Probe::Alive { .. }));
}

/// What a newer tether or another tool might add at each level of a record (protocol.md 4.3), in
/// serde_json's canonical form so that "unchanged" can be checked byte for byte.
fn unknown_members() -> Vec<(&'static str, Value)> {
    vec![
        ("", json!({"a": [1, -2, 0.25, null, true], "s": "é\n\"x\""})),
        ("/holder", json!({"z": {"deep": [{"k": u64::MAX}]}})),
        ("/child", json!(i64::MIN)),
        ("/lease", json!({"fence": "rev-7"})),
        ("/progress", json!([[], {}])),
        ("/late/0", json!("kept")),
    ]
}

/// Writes `rec` with `extra_<level>` members at every level, as another writer would.
fn with_unknown_members(rec: &Record) -> Vec<u8> {
    let mut v = serde_json::to_value(rec).unwrap();
    v["late"] = json!([{"at": rec.created_at, "epoch": 1, "note": "earlier"}]);
    for (at, val) in unknown_members() {
        let obj = v.pointer_mut(at).unwrap().as_object_mut().unwrap();
        obj.insert(format!("extra{}", at.replace('/', "_")), val);
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

fn assert_unknown_members_kept(path: &Path, what: &str) {
    let v: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    for (at, want) in unknown_members() {
        let name = format!("extra{}", at.replace('/', "_"));
        let got = v.pointer(at).and_then(|o| o.get(&name));
        assert_eq!(
            got.map(|g| serde_json::to_string(g).unwrap()),
            Some(serde_json::to_string(&want).unwrap()),
            "{what}: {at}/{name} in {}",
            path.display()
        );
    }
}

#[test]
fn unknown_members_at_every_level_survive_renewal_finish_and_reaping() {
    use tether::clock::Timestamp;
    use tether::record::{Exit, Progress};
    use tether::store::commit;
    use tether::transition::Write;
    let e = Env::new();
    let live = JobId::parse("live").unwrap();
    let dead = JobId::parse("dead").unwrap();
    let mut rec = record("live", std::process::id());
    rec.child = Some(tether::record::Child {
        pid: std::process::id(),
        start: process::start_token(std::process::id()).unwrap(),
        pgid: std::process::id(),
        extra: Default::default(),
    });
    let mut gone = record("dead", dead_pid());
    gone.child = rec.child.clone();
    fs::write(e.jobs().join("live.json"), with_unknown_members(&rec)).unwrap();
    fs::write(e.jobs().join("dead.json"), with_unknown_members(&gone)).unwrap();
    let path = e.jobs().join("live.json");

    // A renewal written to the record, carrying a new progress and the child as the wrapper does.
    let renew = Write::Renew {
        epoch: 1,
        at: Timestamp::now(),
        mono_ms: tether::clock::mono_ms(),
        running: true,
        child: rec.child.clone(),
        progress: Some(Progress {
            message: Some("half way".into()),
            at: Some(Timestamp::now()),
            count: 3,
            ..Default::default()
        }),
    };
    let r = commit(&e.store, &live, &renew, false).unwrap().unwrap();
    assert_eq!(r.progress.count, 3);
    assert_unknown_members_kept(&path, "after a record renewal");

    // A renewal through the lease file, then the finish.
    let mut renewer = e.store.renewer(&live).unwrap();
    tether::store::Renew::renew(
        &mut renewer,
        1,
        Timestamp::now(),
        tether::clock::mono_ms(),
        &Progress::default(),
    )
    .unwrap()
    .unwrap();
    let finish = Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status: Status::Succeeded,
        reason: Reason::Exited,
        exit: Some(Exit::Code(0)),
        progress: Some(Progress::default()),
    };
    let r = commit(&e.store, &live, &finish, true).unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_unknown_members_kept(&path, "after the finish");

    // A refused finish goes to `late`, and leaves the rest alone too.
    let refused = commit(&e.store, &live, &finish, true).unwrap().unwrap_err();
    assert_eq!(refused.current, Status::Succeeded);
    assert_unknown_members_kept(&path, "after a late result");

    // A reader's `lost`.
    let j = settle(&e.store, &dead).unwrap();
    assert!(j.reaped, "{:?}", j.verdict);
    assert_unknown_members_kept(&e.jobs().join("dead.json"), "after a reader's lost");
}
