//! Judging a stored job: load, probe, verdict, and persist a `lost` verdict (protocol.md 7.5).
//!
//! Every reader goes through `settle`, so `status`, `result`, `wait`, `inspect` and `cancel` can never
//! disagree about a job: the first that finds it dead writes that down, and the rest read it.

use serde::Serialize;

use crate::id::JobId;
use crate::process;
use crate::record::Record;
use crate::store::{Change, Store, StoreError};
use crate::transition::{Write, apply};
use crate::verdict::{Outcome, Probe, Reader, Verdict, pid_visible, verdict};

/// A record with the evidence and the verdict drawn from it.
#[derive(Clone, Debug, Serialize)]
pub struct Judged {
    pub record: Record,
    pub probe: Probe,
    pub verdict: Verdict,
    /// True when this call wrote the `lost` verdict into the record.
    pub reaped: bool,
    /// Set when the verdict could not be persisted (read-only directory, I/O error).
    pub unsaved: Option<String>,
}

/// Probes the holder named by a record. On another host, boot or pid namespace the number names
/// some other process (or none), so it is not probed at all (protocol.md 7.4, R2 to R3a).
pub fn probe_holder(rec: &Record, reader: &Reader) -> Probe {
    if rec.status.is_terminal() || !pid_visible(&rec.holder, reader) {
        return Probe::Unseen;
    }
    process::probe(rec.holder.pid)
}

/// Judges a record already in hand, without persisting anything.
pub fn judge_record(rec: Record) -> Judged {
    let reader = process::reader();
    let probe = probe_holder(&rec, &reader);
    let verdict = verdict(&rec, &probe, &reader);
    Judged {
        record: rec,
        probe,
        verdict,
        reaped: false,
        unsaved: None,
    }
}

/// Judges a record against a reader (clocks) read *before* the record was. A reader delayed between
/// reading the record and reading its clock (descheduled under load, or slow while it holds the
/// lock the holder is waiting on) would otherwise count its own delay against the holder's lease
/// and reap a healthy job. Read first, the clock can only make the lease look younger, never older.
/// The store judges (`Store::verdict`): etcd's lease evidence is not in the record.
fn judge_at<S: Store>(store: &S, rec: Record, reader: Reader) -> Judged {
    let probe = probe_holder(&rec, &reader);
    let verdict = store.verdict(&rec, &probe, &reader);
    Judged {
        record: rec,
        probe,
        verdict,
        reaped: false,
        unsaved: None,
    }
}

/// Loads, judges, and if the job is lost, records it under the lock, re-judging there so a job that
/// finished or renewed meanwhile is never overwritten.
pub fn settle<S: Store>(store: &S, id: &JobId) -> Result<Judged, StoreError> {
    let reader = process::reader();
    let first = judge_at(store, store.load(id)?, reader);
    if !matches!(first.verdict.outcome, Outcome::Lost { .. }) {
        return Ok(first);
    }
    // Read before the lock is taken: neither the wait for the lock nor a stall while holding it
    // (when the holder cannot renew) is charged to the lease.
    let reader = process::reader();
    let res = store.update(id, &mut |cur: &Record| {
        let again = judge_at(store, cur.clone(), reader.clone());
        match again.verdict.outcome {
            Outcome::Lost { reason } => {
                let at = crate::clock::Timestamp::now();
                match apply(cur, &Write::Reap { at, reason }) {
                    Ok(next) => Change::Write {
                        record: next,
                        durable: true,
                        value: (again, true),
                    },
                    Err(_) => Change::Keep((again, false)),
                }
            }
            _ => Change::Keep((again, false)),
        }
    });
    match res {
        Ok(((mut j, wrote), stored)) => {
            if wrote {
                j.record = stored;
                j.reaped = true;
            }
            Ok(j)
        }
        Err(e @ (StoreError::ReadOnly(_) | StoreError::NoSpace(_) | StoreError::Io { .. })) => {
            Ok(Judged {
                unsaved: Some(e.to_string()),
                ..first
            })
        }
        Err(e) => Err(e),
    }
}

impl Judged {
    /// The status every command reports for this job.
    pub fn status(&self) -> crate::record::Status {
        self.verdict.status(&self.record)
    }
}
