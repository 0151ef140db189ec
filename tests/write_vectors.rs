//! Runs every writing-side vector in `tests/vectors/write/` (protocol.md sections 5, 6 and 10.2).
//!
//! Each vector runs twice: through the pure `transition::apply` (after folding the lease file, as
//! the store does under the lock) and through a real `FileStore` in a temporary state directory,
//! where the record file left on disk is what is compared. Like the reading runner, it rejects
//! unknown keys so a misspelt expectation fails instead of testing nothing.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::record::{Child, Exit, Progress, Reason, Record, Status};
use tether::store::{self, FileStore, Renew, StateDir, Store, StoreError};
use tether::transition::{Refused, Write, apply};

mod common;

/// Section 10.2 asks for at least 40; fewer means vectors went missing.
const MIN_VECTORS: usize = 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    #[serde(deserialize_with = "nullable")]
    current: Option<Value>,
    #[serde(default)]
    lease_file: Option<String>,
    write: WriteSpec,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum WriteSpec {
    Create {
        record: Value,
    },
    Renew {
        epoch: u64,
        at: String,
        mono_ms: u64,
        #[serde(default)]
        running: bool,
        #[serde(default)]
        child: Option<Child>,
        #[serde(default)]
        progress: Option<Progress>,
    },
    Acquire {
        epoch: u64,
        at: String,
        mono_ms: u64,
    },
    Finish {
        epoch: u64,
        at: String,
        status: Status,
        reason: Reason,
        #[serde(deserialize_with = "nullable")]
        exit: Option<Exit>,
        #[serde(default)]
        progress: Option<Progress>,
    },
    Reap {
        at: String,
        reason: Reason,
    },
    Cancel {
        at: String,
    },
    /// A routine renewal written to the lease file (6.5) instead of the record.
    Lease {
        epoch: u64,
        at: String,
        mono_ms: u64,
        beats: u64,
        #[serde(deserialize_with = "nullable")]
        beat_at: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    result: String,
    record: Value,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    epoch: Option<u64>,
    /// Absent for `written`; for `refused`, the late element appended, or null for none.
    #[serde(default, deserialize_with = "present")]
    late: Option<Option<Value>>,
    /// The lease file after the write, byte for byte; absent: not checked.
    #[serde(default)]
    lease_file: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(Some)
}

/// A required key whose value may be null: `deserialize_with` stops serde reading "absent" as null.
fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Whether this runner takes `text` as a well-formed writing vector (without running it): the
/// rules `tests/vectors/schema/vectors.schema.json` states for the format's own objects.
fn accepts(text: &str) -> Result<(), String> {
    let v: Vector = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let e = &v.expect;
    match (e.result.as_str(), e.status, e.epoch, &e.late) {
        ("written", None, None, None) | ("refused", Some(_), Some(_), Some(_)) => Ok(()),
        _ => Err("expect: written has only record; refused has record, status, epoch, late".into()),
    }
}

#[test]
fn schema_agrees_with_this_runner() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/write");
    common::schema::schema_agrees(&dir, &["", "write", "expect"], accepts);
}

/// What happened to a write, in the vocabulary of section 10.2.
#[derive(Debug, PartialEq)]
enum Outcome {
    Written(Record),
    Refused {
        status: Status,
        epoch: u64,
        stored: Record,
    },
}

fn ts(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s)
}

/// A record as section 4 reads it; `note`s of late elements are for people, so not compared.
fn record_of(v: &Value, what: &str) -> Result<Record, String> {
    let r = Record::parse(&serde_json::to_vec(v).unwrap(), None)
        .map_err(|e| format!("{what} is not a valid record: {e}"))?;
    Ok(without_notes(r))
}

fn write_of(w: &WriteSpec) -> Result<Option<Write>, String> {
    Ok(Some(match w {
        WriteSpec::Create { .. } => return Ok(None),
        // The check a lease-file renewal makes under the lock is a record renewal's (6.5).
        WriteSpec::Lease {
            epoch, at, mono_ms, ..
        } => Write::Renew {
            epoch: *epoch,
            at: ts(at)?,
            mono_ms: *mono_ms,
            running: false,
            child: None,
            progress: None,
        },
        WriteSpec::Renew {
            epoch,
            at,
            mono_ms,
            running,
            child,
            progress,
        } => Write::Renew {
            epoch: *epoch,
            at: ts(at)?,
            mono_ms: *mono_ms,
            running: *running,
            child: child.clone(),
            progress: progress.clone(),
        },
        WriteSpec::Acquire { epoch, at, mono_ms } => Write::Acquire {
            epoch: *epoch,
            at: ts(at)?,
            mono_ms: *mono_ms,
        },
        WriteSpec::Finish {
            epoch,
            at,
            status,
            reason,
            exit,
            progress,
        } => Write::Finish {
            epoch: *epoch,
            at: ts(at)?,
            status: *status,
            reason: *reason,
            exit: *exit,
            progress: progress.clone(),
        },
        WriteSpec::Reap { at, reason } => Write::Reap {
            at: ts(at)?,
            reason: *reason,
        },
        WriteSpec::Cancel { at } => Write::Cancel { at: ts(at)? },
    }))
}

/// `given` is the record file before the write: a refusal that keeps no late result writes
/// nothing, so the file stays as given, its lease file not folded in (10.2).
fn refused(given: &Record, r: &Refused) -> Outcome {
    Outcome::Refused {
        status: r.current,
        epoch: r.current_epoch,
        stored: without_notes(r.late.as_deref().unwrap_or(given).clone()),
    }
}

/// The current record as a write sees it under the lock: its lease file folded in (6.5).
fn folded(v: &Vector, mut c: Record) -> Record {
    if let (Some(lf), true) = (&v.lease_file, c.status.is_active()) {
        tether::lease_file::merge(&mut c, lf.as_bytes());
    }
    c
}

fn without_notes(mut r: Record) -> Record {
    for l in &mut r.late {
        l.note.clear();
    }
    r
}

/// The pure path: fold the lease file into the current record, then `transition::apply`.
fn pure(v: &Vector) -> Result<Outcome, String> {
    let cur = v
        .current
        .as_ref()
        .map(|c| record_of(c, "current"))
        .transpose()?;
    match (&v.write, cur) {
        (WriteSpec::Create { record }, None) => {
            Ok(Outcome::Written(record_of(record, "write.record")?))
        }
        (WriteSpec::Create { .. }, Some(c)) => Ok(Outcome::Refused {
            status: c.status,
            epoch: c.lease.epoch,
            stored: c,
        }),
        (_, None) => Err("only a create may have no current record".into()),
        (w, Some(c)) => {
            let w = write_of(w)?.expect("not a create");
            Ok(match apply(&folded(v, c.clone()), &w) {
                Ok(_) if matches!(v.write, WriteSpec::Lease { .. }) => Outcome::Written(c),
                Ok(next) => Outcome::Written(without_notes(next)),
                Err(r) => refused(&c, &r),
            })
        }
    }
}

/// The record file on disk, parsed without folding the lease file.
fn on_disk(dir: &Path) -> Result<Record, String> {
    let bytes = std::fs::read(dir.join("jobs/job-1.json")).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    record_of(&v, "the stored record")
}

/// The real path: a `FileStore` in a temporary directory, the lease file on disk, `store::commit`.
/// The lease file after a write by the pure path: a lease write the record accepts starts from
/// the file as it is (256 bytes of empty slots if shorter) and writes the next `SEQ`'s slot.
fn pure_lease_file(v: &Vector) -> Result<Option<Vec<u8>>, String> {
    let given = v.lease_file.as_ref().map(|l| l.as_bytes().to_vec());
    let WriteSpec::Lease {
        epoch,
        at,
        mono_ms,
        beats,
        beat_at,
    } = &v.write
    else {
        return Ok(given);
    };
    if !matches!(pure(v)?, Outcome::Written(_)) {
        return Ok(given);
    }
    let mut file = given.unwrap_or_default();
    if file.len() < tether::lease_file::FILE_LEN {
        file = tether::lease_file::empty_file().to_vec();
    }
    let stamp = tether::lease_file::Stamp {
        seq: tether::lease_file::newest(&file).map_or(0, |s| s.seq) + 1,
        epoch: *epoch,
        renewed_mono_ms: *mono_ms,
        renewed_at: ts(at)?,
        beats: *beats,
        beat_at: beat_at.as_deref().map(ts).transpose()?,
    };
    let o = stamp.offset() as usize;
    file[o..o + tether::lease_file::SLOT_LEN].copy_from_slice(&stamp.encode());
    Ok(Some(file))
}

/// `real`, and the lease file it left (None: there is none).
fn real_with_lease_file(v: &Vector) -> Result<(Outcome, Option<Vec<u8>>), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = real(v, tmp.path())?;
    Ok((
        out,
        std::fs::read(tmp.path().join("state/jobs/job-1.lease")).ok(),
    ))
}

fn real(v: &Vector, tmp: &Path) -> Result<Outcome, String> {
    let root = tmp.join("state");
    let st = FileStore::open(StateDir { root: root.clone() }, true).map_err(|e| e.to_string())?;
    let id = JobId::parse("job-1").unwrap();
    if let Some(c) = &v.current {
        st.create(&record_of(c, "current")?)
            .map_err(|e| e.to_string())?;
    }
    if let Some(lf) = &v.lease_file {
        std::fs::write(root.join("jobs/job-1.lease"), lf).map_err(|e| e.to_string())?;
    }
    if let WriteSpec::Create { record } = &v.write {
        return match st.create(&record_of(record, "write.record")?) {
            Ok(()) => Ok(Outcome::Written(on_disk(&root)?)),
            Err(StoreError::Exists(..)) => {
                let stored = on_disk(&root)?;
                Ok(Outcome::Refused {
                    status: stored.status,
                    epoch: stored.lease.epoch,
                    stored,
                })
            }
            Err(e) => Err(e.to_string()),
        };
    }
    if let WriteSpec::Lease {
        epoch,
        at,
        mono_ms,
        beats,
        beat_at,
    } = &v.write
    {
        let progress = Progress {
            message: None,
            at: beat_at.as_deref().map(ts).transpose()?,
            count: *beats,
            ..Progress::default()
        };
        let mut renewer = st.renewer(&id).map_err(|e| e.to_string())?;
        let res = renewer.renew(*epoch, ts(at)?, *mono_ms, &progress);
        return match res.map_err(|e| e.to_string())? {
            Ok(()) => Ok(Outcome::Written(on_disk(&root)?)),
            Err(r) => Ok(Outcome::Refused {
                status: r.current,
                epoch: r.current_epoch,
                stored: on_disk(&root)?,
            }),
        };
    }
    let w = write_of(&v.write)?.expect("not a create");
    match store::commit(&st, &id, &w, w.durable()).map_err(|e| e.to_string())? {
        Ok(_) => Ok(Outcome::Written(on_disk(&root)?)),
        Err(r) => Ok(Outcome::Refused {
            status: r.current,
            epoch: r.current_epoch,
            stored: on_disk(&root)?,
        }),
    }
}

fn expected(v: &Vector) -> Result<Outcome, String> {
    let e = &v.expect;
    let rec = record_of(&e.record, "expect.record")?;
    match (e.result.as_str(), e.status, e.epoch, &e.late) {
        ("written", None, None, None) => Ok(Outcome::Written(rec)),
        ("refused", Some(status), Some(epoch), Some(late)) => {
            let cur = v
                .current
                .as_ref()
                .map(|c| record_of(c, "current"))
                .transpose()?;
            let cur = cur.ok_or("a refused write has a current record")?;
            // `late` must be exactly what `record` gained: the rule of 6.4, stated twice. A kept
            // late result is a record write, so it carries the folded lease (6.5).
            let mut want = if late.is_some() {
                folded(v, cur.clone())
            } else {
                cur.clone()
            };
            if let Some(l) = late {
                let mut l = serde_json::from_value::<tether::record::LateResult>(l.clone())
                    .map_err(|e| format!("expect.late: {e}"))?;
                l.note.clear();
                want.push_late(l);
            }
            if want != rec {
                return Err("expect.record is not current plus expect.late".into());
            }
            Ok(Outcome::Refused {
                status,
                epoch,
                stored: rec,
            })
        }
        ("written", ..) => Err("a written vector has no status, epoch or late".into()),
        ("refused", ..) => Err("a refused vector gives status, epoch and late".into()),
        (r, ..) => Err(format!("expect.result {r:?} is not written or refused")),
    }
}

fn check(v: &Vector) -> Result<(), String> {
    let want = expected(v)?;
    let want_lease = v.expect.lease_file.as_ref().map(|l| l.as_bytes().to_vec());
    let mut diffs = Vec::new();
    let pure = pure(v).and_then(|o| Ok((o, pure_lease_file(v)?)));
    for (how, got) in [
        ("transition::apply", pure),
        ("FileStore", real_with_lease_file(v)),
    ] {
        match got {
            Ok((got, _)) if got != want => {
                diffs.push(format!("{how}: want {want:?}\n      got {got:?}"))
            }
            Ok((_, lease)) if want_lease.is_some() && lease != want_lease => diffs.push(format!(
                "{how}: lease file: want {:?}\n      got {:?}",
                want_lease.as_deref().map(String::from_utf8_lossy),
                lease.as_deref().map(String::from_utf8_lossy)
            )),
            Ok(_) => {}
            Err(e) => diffs.push(format!("{how}: {e}")),
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n    "))
    }
}

#[test]
fn write_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/write");
    let files = common::schema::vector_files(&dir);
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let v: Vector = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}: not a write vector: {e}"));
                continue;
            }
        };
        if !names.insert(v.name.clone()) {
            failures.push(format!("{file} ({}): duplicate vector name", v.name));
        }
        if let Err(e) = check(&v) {
            failures.push(format!("{file} ({}):\n    {e}", v.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} write vectors failed:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
    assert!(
        files.len() >= MIN_VECTORS,
        "only {} write vectors in {}; expected at least {MIN_VECTORS}",
        files.len(),
        dir.display()
    );
}
