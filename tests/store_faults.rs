//! The store on a real full, read-only, and failing disk (protocol.md 6 and 7.5).
//!
//! Faked errors would prove only that we handle the errors we thought of. A small tmpfs really fills
//! up, a remount really makes it read-only, and an ext4 image shut down with `EXT4_IOC_SHUTDOWN`
//! really returns EIO, so the kernel decides which call fails. Mounting needs root (CI runs as root);
//! where it is refused the test fails under CI=true and says what it needs elsewhere.
//!
//! Every mount is undone by a guard, so a failing assertion never leaves one behind.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::Mount;
use common::mount::fill;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::reader::settle::settle;
use tether::record::{Exit, Reason, Record, Status};
use tether::store::{Change, FileStore, StateDir, Store, StoreError};
use tether::transition::{Write, apply};
use tether::verdict::Outcome;

/// The tests of this file run one at a time. A child spawned by one test holds copies of every
/// descriptor the process has open from its fork until its exec; on a tiny tmpfs a record or filler
/// file pinned that way frees its pages a moment later than the test expects, so a "full" disk
/// suddenly had room (seen twice in ten soak runs on 2 loaded cores).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(id: &str, pid: u32) -> Record {
    common::record(id)
        .pid(pid, "linux:1")
        .lease(1000, 10_000)
        .name("faults")
        .build()
}

/// A pid that certainly names no process of ours now: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn renew(n: u64) -> Write {
    common::record::renewal(format!("beat {n}"), n)
}

fn finish() -> Write {
    Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status: Status::Succeeded,
        reason: Reason::Exited,
        exit: Some(Exit::Code(0)),
        progress: None,
    }
}

/// What a holder does: apply the write under the lock, with the durability the protocol asks.
fn write(store: &FileStore, id: &JobId, w: &Write) -> Result<Record, StoreError> {
    store
        .update(id, &mut |cur| Change::Write {
            record: apply(cur, w).expect("the write is allowed"),
            durable: w.durable(),
            value: (),
        })
        .map(|((), r)| r)
}

/// The record's bytes and mtime, to prove a failed write changed nothing.
fn snapshot(p: &Path) -> (Vec<u8>, i64, i64) {
    let md = fs::symlink_metadata(p).unwrap();
    (fs::read(p).unwrap(), md.mtime(), md.mtime_nsec())
}

fn temp_files(jobs: &Path) -> Vec<String> {
    fs::read_dir(jobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

fn open(root: &Path) -> FileStore {
    FileStore::open(
        StateDir {
            root: root.to_path_buf(),
        },
        true,
    )
    .unwrap()
}

/// Waits (bounded) until the filesystem reports the freed space: a belt to `serial`'s braces, in
/// case some other thread of this process forks while the filler is still open.
fn wait_for_space(mnt: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = rustix::fs::statvfs(mnt).unwrap();
        if st.f_bavail >= 32 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: space never came back after deleting the filler ({} blocks free)",
            mnt.display(),
            st.f_bavail
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn assert_names_record(e: &StoreError, rec_path: &Path, what: &str) {
    let msg = e.to_string();
    assert!(
        matches!(e, StoreError::NoSpace(path) if path == rec_path),
        "{what}: want a full-disk error naming {}, got {e:?}",
        rec_path.display()
    );
    // Said as what it is, with what to do: not "read-only", not a bare errno.
    assert!(msg.contains("no space left on device"), "{what}: {msg}");
    assert!(
        msg.contains("free space") && msg.contains("tether gc"),
        "{what}: {msg}"
    );
    assert!(!msg.contains("read-only"), "{what}: {msg}");
    assert_eq!(tether::testing::exit::Kind::of_store(e).exit_code(), 10);
}

#[test]
fn full_disk_refuses_writes_cleanly_and_recovers() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let Some(_m) = Mount::tmpfs("256k", &t.path().join("mnt")) else {
        common::skip("root to mount a tmpfs", "run the tests as root, as CI does");
        return;
    };
    let root = t.path().join("mnt/state");
    let store = open(&root);
    let id = JobId::parse("job-1").unwrap();
    let dead = JobId::parse("dead-1").unwrap();
    store.create(&record("job-1", std::process::id())).unwrap();
    store.create(&record("dead-1", dead_pid())).unwrap();
    let good = write(&store, &id, &renew(1)).unwrap();
    let rec_path = store.record_path(&id);
    let jobs = root.join("jobs");
    let before = snapshot(&rec_path);

    let filler_path = t.path().join("mnt/filler");
    let filler = fill(&filler_path);

    // (a) A renewal (not durable) fails, names the record, and leaves it as it was.
    let e = write(&store, &id, &renew(2)).unwrap_err();
    assert_names_record(&e, &rec_path, "renewal on a full disk");
    assert_eq!(store.load(&id).unwrap(), good);
    assert_eq!(snapshot(&rec_path), before);
    assert_eq!(temp_files(&jobs), Vec::<String>::new());

    // (b) A terminal write (durable) likewise.
    let e = write(&store, &id, &finish()).unwrap_err();
    assert_names_record(&e, &rec_path, "finish on a full disk");
    assert_eq!(store.load(&id).unwrap(), good);
    assert_eq!(snapshot(&rec_path), before);
    assert_eq!(temp_files(&jobs), Vec::<String>::new());

    // A reader still tells the truth about a dead job; it just cannot write it down.
    let dead_path = store.record_path(&dead);
    let dead_before = snapshot(&dead_path);
    let j = settle(&store, &dead).unwrap();
    assert_eq!(
        j.verdict.outcome,
        Outcome::Lost {
            reason: Reason::WorkerExited
        }
    );
    assert!(!j.reaped);
    assert!(
        j.unsaved
            .as_deref()
            .is_some_and(|u| u.contains("no space left on device")),
        "{:?}",
        j.unsaved
    );
    assert_eq!(snapshot(&dead_path), dead_before);
    // `tether result` says why the verdict was not recorded, and does not call the disk read-only.
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--dir")
        .arg(&root)
        .args(["result", "dead-1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("no space left on device"), "{text}");
    assert!(!text.contains("read-only"), "{text}");
    assert_eq!(snapshot(&dead_path), dead_before);

    // (c) Space back: the same writes succeed.
    drop(filler);
    fs::remove_file(&filler_path).unwrap();
    wait_for_space(&t.path().join("mnt"));
    let renewed = write(&store, &id, &renew(2)).unwrap();
    assert_eq!(renewed.progress.count, 2);
    let fin = write(&store, &id, &finish()).unwrap();
    assert_eq!(fin.status, Status::Succeeded);
    assert_eq!(store.load(&id).unwrap(), fin);
    assert!(settle(&store, &dead).unwrap().reaped);
    assert_eq!(temp_files(&jobs), Vec::<String>::new());
}

#[test]
fn read_only_state_dir_is_reported_and_the_verdict_still_shown() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let Some(m) = Mount::tmpfs("1m", &t.path().join("mnt")) else {
        common::skip("root to mount a tmpfs", "run the tests as root, as CI does");
        return;
    };
    let root = t.path().join("mnt/state");
    let store = open(&root);
    let id = JobId::parse("job-1").unwrap();
    let dead = JobId::parse("dead-1").unwrap();
    store.create(&record("job-1", std::process::id())).unwrap();
    store.create(&record("dead-1", dead_pid())).unwrap();
    let good = store.load(&id).unwrap();
    let before = snapshot(&store.record_path(&id));
    let dead_before = snapshot(&store.record_path(&dead));

    m.remount_ro();
    for w in [renew(1), finish()] {
        let e = write(&store, &id, &w).unwrap_err();
        assert!(matches!(e, StoreError::ReadOnly(_)), "{e:?}");
        assert_eq!(tether::testing::exit::Kind::of_store(&e).exit_code(), 8);
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    assert_eq!(store.load(&id).unwrap(), good);
    assert_eq!(snapshot(&store.record_path(&id)), before);

    let j = settle(&store, &dead).unwrap();
    assert_eq!(
        j.verdict.outcome,
        Outcome::Lost {
            reason: Reason::WorkerExited
        }
    );
    assert!(!j.reaped);
    assert!(
        j.unsaved
            .as_deref()
            .is_some_and(|u| u.contains("read-only")),
        "{:?}",
        j.unsaved
    );
    assert_eq!(snapshot(&store.record_path(&dead)), dead_before);
    // Listing and opening without creating keep working on a read-only directory.
    let reopened = FileStore::open(StateDir { root: root.clone() }, false).unwrap();
    assert_eq!(reopened.list().unwrap().len(), 2);
}

/// `EXT4_IOC_SHUTDOWN` = `_IOR('X', 125, __u32)`: afterwards every operation on the filesystem
/// fails with EIO, which is how a dying disk looks to a program.
fn ext4_shutdown(dir: &Path) -> std::io::Result<()> {
    use rustix::ioctl::{Setter, ioctl, opcode};
    const SHUTDOWN: rustix::ioctl::Opcode = opcode::read::<u32>(b'X', 125);
    // 0 = EXT4_GOING_DEFAULT: flush everything first, so what was written before is on the image.
    let d = fs::File::open(dir)?;
    // SAFETY: the opcode takes a pointer to a u32 of flags, which is what Setter passes.
    unsafe { ioctl(&d, Setter::<SHUTDOWN, u32>::new(0)) }?;
    Ok(())
}

#[test]
fn io_errors_from_a_dying_disk_are_reported_and_leave_the_last_good_record() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("disk.img");
    fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
    if !common::need_tool("mkfs.ext4", "e2fsprogs") {
        return;
    }
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .output();
    if !mkfs.as_ref().is_ok_and(|o| o.status.success()) {
        common::skip(
            &format!("a working mkfs.ext4 ({mkfs:?})"),
            "apt-get install e2fsprogs",
        );
        return;
    }
    let mnt = t.path().join("mnt");
    let img_s = img.display().to_string();
    let Some(m) = Mount::new(&["-o", "loop", &img_s], &mnt) else {
        common::skip(
            "root and a free loop device to mount an ext4 image",
            "run the tests as root, as CI does",
        );
        return;
    };
    let root = mnt.join("state");
    let store = open(&root);
    let id = JobId::parse("job-1").unwrap();
    let dead = JobId::parse("dead-1").unwrap();
    store.create(&record("job-1", std::process::id())).unwrap();
    store.create(&record("dead-1", dead_pid())).unwrap();
    let good = write(&store, &id, &renew(1)).unwrap();
    let dead_good = store.load(&dead).unwrap();
    ext4_shutdown(&root).expect("EXT4_IOC_SHUTDOWN");

    for w in [renew(2), finish()] {
        let e = write(&store, &id, &w).unwrap_err();
        assert!(
            matches!(&e, StoreError::Io { err, .. } if err.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error())),
            "{e:?}"
        );
        assert!(e.to_string().contains("job-1"), "{e}");
        assert_eq!(tether::testing::exit::Kind::of_store(&e).exit_code(), 10);
    }
    // Reading fails too, so the reader cannot judge: an error, never a guess.
    let e = settle(&store, &dead).unwrap_err();
    assert!(e.to_string().contains("dead-1"), "{e}");

    // After the "disk" comes back, both records are the last good ones, with no temp files. The
    // store holds its directories open (it never goes back to their paths), so it is closed first
    // or the old, shut-down file system could not be unmounted.
    drop(store);
    drop(m);
    let Some(_m) = Mount::new(&["-o", "loop", &img_s], &mnt) else {
        panic!("remounting the image failed");
    };
    let store = FileStore::open(StateDir { root: root.clone() }, false).unwrap();
    assert_eq!(store.load(&id).unwrap(), good);
    assert_eq!(store.load(&dead).unwrap(), dead_good);
    assert_eq!(temp_files(&root.join("jobs")), Vec::<String>::new());
}
