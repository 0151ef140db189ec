//! Judging a stored job: load, probe, verdict, and persist a `lost` verdict (protocol.md 7.5).
//!
//! Every reader goes through `settle`, so `status`, `result`, `wait`, `inspect` and `cancel` can never
//! disagree about a job: the first that finds it dead writes that down, and the rest read it.

use std::borrow::Cow;

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

/// The reader, with its pid namespace read where the verdict can look at it: an active record of
/// this host and boot that names its own namespace (`pid_visible`). R1 to R3 decide every other
/// record first, and R3a holds for a record without a namespace whatever the reader's is, so
/// elsewhere the namespace (a read of `/proc/self/status` and a readlink) is left unread, and the
/// reader is borrowed as it is (a listing copied its three strings for every record).
fn for_record<'r>(reader: &'r Reader, rec: &Record) -> Cow<'r, Reader> {
    let h = &rec.holder;
    if reader.pid_ns.is_none()
        && !rec.status.is_terminal()
        && h.pid_ns.is_some()
        && h.host == reader.host
        && h.boot_id == reader.boot_id
    {
        return Cow::Owned(Reader {
            pid_ns: process::pid_ns(),
            ..reader.clone()
        });
    }
    Cow::Borrowed(reader)
}

/// Judges a record already in hand, without persisting anything.
pub fn judge_record(rec: Record) -> Judged {
    let reader = process::reader_without_pid_ns();
    let reader = for_record(&reader, &rec);
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
fn judge_at<S: Store>(store: &S, rec: Record, reader: &Reader) -> Judged {
    let reader = for_record(reader, &rec);
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
    let reader = process::reader_without_pid_ns();
    let rec = store.load(id)?;
    settle_loaded(store, Some(id), rec, &reader)
}

/// Every job in the store, settled, handed to `f` one at a time: one listing read (on etcd a
/// snapshot at one revision, in a few round trips, not one read per job; the file store reads
/// each record as it goes, so 10,000 records are not held twice), then `settle` for each record
/// in hand. The reader is read before the listing, so a slow listing only makes leases look
/// younger. A record the listing could not read is its own error (a corrupt record, a key that is
/// not a job id).
pub fn settle_each<S: Store>(
    store: &S,
    mut f: impl FnMut(Result<Judged, StoreError>),
) -> Result<(), StoreError> {
    let reader = process::reader_without_pid_ns();
    store.list_each(&mut |item| f(item.and_then(|rec| settle_loaded(store, None, rec, &reader))))
}

/// `settle_each`, collected.
pub fn settle_all<S: Store>(store: &S) -> Result<Vec<Result<Judged, StoreError>>, StoreError> {
    let mut out = Vec::new();
    settle_each(store, |j| out.push(j))?;
    Ok(out)
}

/// `settle` for a record already read (after `reader` was). `id` is the record's own when the
/// caller has none: a parsed record's id is valid (`Record::validate`), and it is needed only to
/// persist a `lost` verdict, so a listing does not make one for every record.
fn settle_loaded<S: Store>(
    store: &S,
    id: Option<&JobId>,
    rec: Record,
    reader: &Reader,
) -> Result<Judged, StoreError> {
    let first = judge_at(store, rec, reader);
    if !matches!(first.verdict.outcome, Outcome::Lost { .. }) {
        return Ok(first);
    }
    let own;
    let id = match id {
        Some(id) => id,
        None => {
            own = JobId::parse(&first.record.id)?;
            &own
        }
    };
    // Read before the lock is taken: neither the wait for the lock nor a stall while holding it
    // (when the holder cannot renew) is charged to the lease.
    let reader = process::reader_without_pid_ns();
    let res = store.update(id, &mut |cur: &Record| {
        let again = judge_at(store, cur.clone(), &reader);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::verdict::Rule;

    fn held_by_me() -> Record {
        let me = process::current().unwrap();
        Record::begin(
            "20260101-000000-abcdef",
            vec!["true".into()],
            me.holder(),
            1000,
            10_000,
        )
    }

    /// The namespace is left unread only where the verdict cannot look at it: a record this
    /// process holds is still probed (R7), not judged by its lease alone (R3a).
    #[test]
    fn pid_namespace_is_read_exactly_where_the_holder_can_be_probed() {
        let ours = process::pid_ns();
        let rec = held_by_me();
        let unread = process::reader_without_pid_ns();
        assert_eq!(for_record(&unread, &rec).pid_ns, ours);
        let j = judge_record(rec.clone());
        if ours.is_some() {
            assert_eq!(j.verdict.rule, Rule::R7, "{j:?}");
            assert!(matches!(j.probe, Probe::Alive { start: Some(_) }), "{j:?}");
        } else {
            assert_eq!(j.verdict.rule, Rule::R3a, "{j:?}");
        }

        let mut done = rec.clone();
        done.status = Status::Succeeded;
        assert_eq!(for_record(&unread, &done).pid_ns, None);
        let mut elsewhere = rec.clone();
        elsewhere.holder.host = format!("{}-other", elsewhere.holder.host);
        assert_eq!(for_record(&unread, &elsewhere).pid_ns, None);
        assert_eq!(judge_record(elsewhere).verdict.rule, Rule::R2);
        let mut old_writer = rec;
        old_writer.holder.pid_ns = None;
        assert_eq!(for_record(&unread, &old_writer).pid_ns, None);
        assert_eq!(judge_record(old_writer).verdict.rule, Rule::R3a);
    }
}
