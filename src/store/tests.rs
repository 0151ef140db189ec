//! The file store against a real temporary directory.

use super::*;
use crate::record::tests::sample;
use crate::record::{RecordError, Status};
use crate::store::StateDir;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;

fn store() -> (tempfile::TempDir, FileStore) {
    let t = tempfile::tempdir().unwrap();
    let s = FileStore::open(
        StateDir {
            root: t.path().join("state"),
        },
        true,
    )
    .unwrap();
    (t, s)
}

#[test]
fn create_load_update_list() {
    let (_t, s) = store();
    let rec = sample();
    s.create(&rec).unwrap();
    assert!(matches!(s.create(&rec), Err(StoreError::Exists(..))));
    let id = JobId::parse("job-1").unwrap();
    assert_eq!(s.load(&id).unwrap(), rec);
    let (v, after) = s
        .update(&id, &mut |r| {
            let mut n = r.clone();
            n.status = Status::Lost;
            Change::Write {
                record: n,
                durable: true,
                value: 7,
            }
        })
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(after.status, Status::Lost);
    assert_eq!(s.load(&id).unwrap().status, Status::Lost);
    assert_eq!(s.list().unwrap().len(), 1);
    let mode = fs::metadata(s.root()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let mode = fs::metadata(s.record_path(&id)).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn an_empty_path_is_no_state_directory() {
    let e = FileStore::open(StateDir { root: "".into() }, true).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Dir {
                why: DirProblem::Missing,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_record_with_an_invalid_id_is_refused_as_such() {
    let (_t, s) = store();
    let mut rec = sample();
    rec.id = "../x".into();
    assert!(matches!(s.create(&rec), Err(StoreError::InvalidId(_))));
}

#[test]
fn corrupt_records_are_reported_kept_and_do_not_hide_others() {
    let (_t, s) = store();
    s.create(&sample()).unwrap();
    let bad = s.root().join("jobs").join("broken.json");
    fs::write(&bad, b"{\"protocol\":1,").unwrap();
    let listed = s.list().unwrap();
    assert_eq!(listed.len(), 2);
    let errs: Vec<_> = listed.iter().filter_map(|l| l.as_ref().err()).collect();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().contains("broken.json"), "{}", errs[0]);
    assert!(bad.exists());
    // An update on a corrupt record refuses and leaves the bytes alone.
    let id = JobId::parse("broken").unwrap();
    let r = s.update(&id, &mut |r| Change::Write {
        record: r.clone(),
        durable: true,
        value: (),
    });
    assert!(matches!(
        r,
        Err(StoreError::Record {
            err: RecordError::Corrupt(_),
            ..
        })
    ));
    assert_eq!(fs::read(&bad).unwrap(), b"{\"protocol\":1,");
}

#[test]
fn refuses_symlinks_fifos_and_open_dirs() {
    let (t, s) = store();
    let target = t.path().join("elsewhere.json");
    fs::write(&target, sample().to_json()).unwrap();
    std::os::unix::fs::symlink(&target, s.root().join("jobs").join("job-1.json")).unwrap();
    let id = JobId::parse("job-1").unwrap();
    let e = s.load(&id).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    // mkfifo(1): POSIX, where rustix's mknodat is not (macOS).
    let made = std::process::Command::new("mkfifo")
        .arg(s.root().join("jobs").join("fifo.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let e = s
        .load(&JobId::parse("fifo").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");

    fs::set_permissions(s.root(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = FileStore::open(
        StateDir {
            root: s.root().to_path_buf(),
        },
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("chmod 700"), "{e}");
    let link = t.path().join("link");
    std::os::unix::fs::symlink(s.root(), &link).unwrap();
    let e = FileStore::open(StateDir { root: link }, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("symbolic link"), "{e}");
    let e = FileStore::open(
        StateDir {
            root: t.path().join("missing"),
        },
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not exist"), "{e}");
}
