//! Who may change a record, and how (protocol.md sections 5 and 6.3-6.4).
//!
//! Pure: given the record read under the lock and the write a process wants, it returns the record to
//! store or a refusal. The store only adds the lock and the atomic replace around it.

use crate::clock::Timestamp;
use crate::record::{Child, Exit, LateResult, Progress, Reason, Record, Status};

#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// The holder renews its lease; may move `starting` to `running` and attach the child.
    Renew {
        epoch: u64,
        at: Timestamp,
        mono_ms: u64,
        running: bool,
        child: Option<Child>,
        progress: Option<Progress>,
    },
    /// The holder takes its lease again after finding it expired (protocol.md 6.3): epoch + 1.
    Acquire {
        epoch: u64,
        at: Timestamp,
        mono_ms: u64,
    },
    /// The holder records how the job ended.
    Finish {
        epoch: u64,
        at: Timestamp,
        status: Status,
        reason: Reason,
        exit: Option<Exit>,
        progress: Option<Progress>,
    },
    /// A reader persists a `lost` verdict. The caller has re-judged the record under the lock.
    Reap { at: Timestamp, reason: Reason },
    /// The canceller ends an active job.
    Cancel { at: Timestamp },
}

/// Why a write was refused; `late` is the record to store anyway when the write carried a result.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub why: Why,
    pub current: Status,
    pub current_epoch: u64,
    pub late: Option<Box<Record>>,
}

/// The rule a refused write broke (protocol.md section 5), for code to branch on; `Display` says it
/// in a sentence that fits after "refused: " or "arrived after ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The record was already terminal: terminal states are final.
    Terminal {
        status: Status,
        reason: Option<Reason>,
        exit: Option<Exit>,
    },
    /// The writer's epoch is not the record's: another holder took the lease (6.3).
    Fenced {
        writer: u64,
        record: u64,
        status: Status,
    },
    /// A finish that names an active status.
    FinishNotTerminal(Status),
    /// A holder's finish to `cancelled`, which only the canceller may write.
    CancelledByHolder,
    /// A reap with a reason only a holder may write (7.2).
    NotReaderReason(Reason),
    /// A backend's own refusal of a renewal (the etcd store: its lease is gone), said whole.
    Store(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Terminal {
                status,
                reason,
                exit,
            } => write!(
                f,
                "the job was already {}",
                describe_parts(*status, *reason, *exit)
            ),
            Why::Fenced {
                writer,
                record,
                status,
            } => write!(
                f,
                "the lease was fenced (writer epoch {writer}, record epoch {record}; status {status})"
            ),
            Why::FinishNotTerminal(s) => {
                write!(f, "a finish must name a terminal status, not {s}")
            }
            Why::CancelledByHolder => f.write_str("only the canceller may write cancelled"),
            Why::NotReaderReason(r) => write!(f, "a reader may not write reason {r}"),
            Why::Store(why) => f.write_str(why),
        }
    }
}

impl Write {
    fn epoch(&self) -> Option<u64> {
        match self {
            Write::Renew { epoch, .. }
            | Write::Acquire { epoch, .. }
            | Write::Finish { epoch, .. } => Some(*epoch),
            Write::Reap { .. } | Write::Cancel { .. } => None,
        }
    }

    /// A result a refused write must not lose (protocol.md 6.4).
    fn late_result(&self, epoch_held: u64, why: &Why) -> Option<LateResult> {
        match self {
            Write::Finish {
                at,
                status,
                reason,
                exit,
                progress,
                ..
            } => Some(LateResult {
                at: *at,
                epoch: epoch_held,
                status: Some(*status),
                reason: Some(*reason),
                exit: *exit,
                progress: progress.clone(),
                note: format!("the holder's final result arrived after {why}"),
                extra: Default::default(),
            }),
            _ => None,
        }
    }

    /// Whether a successful write of this kind must be durable (fsynced): all but renewals.
    pub fn durable(&self) -> bool {
        !matches!(self, Write::Renew { .. })
    }
}

/// Applies `w` to `cur` (the record read under the lock).
pub fn apply(cur: &Record, w: &Write) -> Result<Record, Box<Refused>> {
    let refuse = |why: Why| {
        let late = w.epoch().and_then(|e| w.late_result(e, &why)).map(|l| {
            let mut r = cur.clone();
            r.push_late(l);
            Box::new(r)
        });
        Err(Box::new(Refused {
            why,
            current: cur.status,
            current_epoch: cur.lease.epoch,
            late,
        }))
    };
    if cur.status.is_terminal() {
        return refuse(Why::Terminal {
            status: cur.status,
            reason: cur.reason,
            exit: cur.exit,
        });
    }
    if let Some(e) = w.epoch() {
        if e != cur.lease.epoch {
            return refuse(Why::Fenced {
                writer: e,
                record: cur.lease.epoch,
                status: cur.status,
            });
        }
    }
    let mut next = cur.clone();
    match w {
        Write::Renew {
            at,
            mono_ms,
            running,
            child,
            progress,
            ..
        } => {
            next.lease.renewed_at = *at;
            next.lease.renewed_mono_ms = *mono_ms;
            if *running {
                next.status = Status::Running;
            }
            if let Some(c) = child {
                let mut c = c.clone();
                if let Some(old) = &cur.child {
                    keep_unknown(&old.extra, &mut c.extra);
                }
                next.child = Some(c);
            }
            if let Some(p) = progress {
                next.progress = with_unknown_of(&cur.progress, p);
            }
        }
        Write::Acquire { at, mono_ms, .. } => {
            next.lease.epoch += 1;
            next.lease.renewed_at = *at;
            next.lease.renewed_mono_ms = *mono_ms;
        }
        Write::Finish {
            at,
            status,
            reason,
            exit,
            progress,
            ..
        } => {
            if status.is_active() {
                return refuse(Why::FinishNotTerminal(*status));
            }
            if *status == Status::Cancelled {
                return refuse(Why::CancelledByHolder);
            }
            next.status = *status;
            next.reason = Some(*reason);
            next.exit = *exit;
            next.finished_at = Some(*at);
            if let Some(p) = progress {
                next.progress = with_unknown_of(&cur.progress, p);
            }
        }
        Write::Reap { at, reason } => {
            if !reason.is_reader_reason() {
                return refuse(Why::NotReaderReason(*reason));
            }
            next.status = Status::Lost;
            next.reason = Some(*reason);
            next.finished_at = Some(*at);
        }
        Write::Cancel { at } => {
            next.status = Status::Cancelled;
            next.reason = Some(Reason::Cancelled);
            next.finished_at = Some(*at);
        }
    }
    Ok(next)
}

/// Members the writer does not know (protocol.md 4.3) survive its write: the writer's own object
/// never carries them, so they are taken from the stored one unless the writer set the same name.
fn keep_unknown(
    old: &serde_json::Map<String, serde_json::Value>,
    new: &mut serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in old {
        new.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn with_unknown_of(old: &Progress, new: &Progress) -> Progress {
    let mut p = new.clone();
    keep_unknown(&old.extra, &mut p.extra);
    p
}

/// "succeeded (exited, exit code 0)" and the like, for refusals and messages.
pub fn describe(r: &Record) -> String {
    describe_parts(r.status, r.reason, r.exit)
}

fn describe_parts(status: Status, reason: Option<Reason>, exit: Option<Exit>) -> String {
    let mut s = status.to_string();
    match (reason, exit) {
        (Some(reason), Some(exit)) => s.push_str(&format!(" ({reason}, {exit})")),
        (Some(reason), None) => s.push_str(&format!(" ({reason})")),
        (None, Some(exit)) => s.push_str(&format!(" ({exit})")),
        (None, None) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn finish(epoch: u64) -> Write {
        Write::Finish {
            epoch,
            at: Timestamp(9),
            status: Status::Succeeded,
            reason: Reason::Exited,
            exit: Some(Exit::Code(0)),
            progress: None,
        }
    }

    #[test]
    fn holder_finishes_with_current_epoch() {
        let r = apply(&sample(), &finish(1)).unwrap();
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(r.exit, Some(Exit::Code(0)));
        assert_eq!(r.finished_at, Some(Timestamp(9)));
    }

    #[test]
    fn stale_epoch_is_fenced_and_result_kept_late() {
        let err = apply(&sample(), &finish(0)).unwrap_err();
        let late = err.late.unwrap();
        assert_eq!(late.status, Status::Running);
        assert_eq!(late.late.len(), 1);
        assert_eq!(late.late[0].exit, Some(Exit::Code(0)));
    }

    #[test]
    fn terminal_is_final_for_everyone() {
        let lost = apply(
            &sample(),
            &Write::Reap {
                at: Timestamp(5),
                reason: Reason::WorkerExited,
            },
        )
        .unwrap();
        for w in [
            finish(1),
            Write::Cancel { at: Timestamp(6) },
            Write::Reap {
                at: Timestamp(6),
                reason: Reason::LeaseExpired,
            },
            Write::Acquire {
                epoch: 1,
                at: Timestamp(6),
                mono_ms: 1,
            },
        ] {
            let e = apply(&lost, &w).unwrap_err();
            assert_eq!(e.current, Status::Lost);
            if let Some(l) = e.late {
                assert_eq!(l.status, Status::Lost);
                assert_eq!(l.reason, Some(Reason::WorkerExited));
            }
        }
        let e = apply(&lost, &finish(1)).unwrap_err();
        assert_eq!(e.late.unwrap().late[0].status, Some(Status::Succeeded));
    }

    #[test]
    fn acquire_bumps_epoch_and_fences_old_writer() {
        let r = apply(
            &sample(),
            &Write::Acquire {
                epoch: 1,
                at: Timestamp(7),
                mono_ms: 60_000,
            },
        )
        .unwrap();
        assert_eq!(r.lease.epoch, 2);
        assert!(apply(&r, &finish(1)).is_err());
        assert!(apply(&r, &finish(2)).is_ok());
    }

    #[test]
    fn readers_only_write_reader_reasons() {
        assert!(
            apply(
                &sample(),
                &Write::Reap {
                    at: Timestamp(1),
                    reason: Reason::Exited
                }
            )
            .is_err()
        );
        let mut f = finish(1);
        if let Write::Finish { status, .. } = &mut f {
            *status = Status::Cancelled;
        }
        assert!(apply(&sample(), &f).is_err());
    }

    #[test]
    fn late_results_are_capped() {
        let mut r = apply(&sample(), &Write::Cancel { at: Timestamp(1) }).unwrap();
        for _ in 0..40 {
            r = *apply(&r, &finish(1)).unwrap_err().late.unwrap();
        }
        assert_eq!(r.late.len(), crate::record::MAX_LATE);
    }
}
