//! Recording how the job ended, and the wrapper's exit code that follows from it.

use std::time::Duration;

use super::state::State;
use super::{child, note};
use crate::cli::exit;
use crate::clock::Timestamp;
use crate::record::{Exit, Reason, Status};
use crate::store::{Store, StoreError};
use crate::transition::{Write, describe};

impl State {
    /// The end of the job's log, with this host's name and the log's path (protocol.md 11.3).
    fn output_tail(&self) -> crate::store::etcd_rules::OutputTail {
        use std::io::{Read, Seek, SeekFrom};
        let keep = crate::store::etcd_rules::TAIL_BYTES as u64 + 1024;
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(keep)));
            let _ = f.take(keep).read_to_end(&mut bytes);
        }
        crate::store::etcd_rules::OutputTail::of(
            &bytes,
            &crate::process::host(),
            &self.log_path.to_string_lossy(),
        )
    }

    /// A holder that fenced itself (protocol.md 11.3) records the job lost before its result: the
    /// cluster's lease, rounded up to whole seconds, may still hold, but the holder gave up the
    /// job on its own ttl clock, so its result must arrive late, never as the outcome. Written
    /// only over an active record (a reader may have recorded `lost` first).
    fn record_fenced(&mut self, give_up: std::time::Instant) {
        let w = Write::Finish {
            epoch: self.epoch,
            at: Timestamp::now(),
            status: Status::Lost,
            reason: Reason::LeaseExpired,
            exit: None,
            progress: self.progress(),
        };
        loop {
            let done =
                self.job
                    .store
                    .update(
                        &self.job.id,
                        &mut |cur| match crate::transition::apply(cur, &w) {
                            Ok(next) if cur.status.is_active() => crate::store::Change::Write {
                                record: next,
                                durable: true,
                                value: true,
                            },
                            _ => crate::store::Change::Keep(false),
                        },
                    );
            match done {
                Ok((true, _)) => {
                    self.stalled = Some(Reason::LeaseExpired);
                    return;
                }
                Ok((false, _)) | Err(StoreError::NotFound(..)) => return,
                Err(e) if std::time::Instant::now() < give_up => {
                    self.fault("record the job lost", &e);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => return,
            }
        }
    }

    /// Records how the job ended and returns the wrapper's exit code.
    pub fn finish(&mut self, exit: Exit) -> i32 {
        let (status, reason) = match exit {
            _ if self.holder_signal.is_some() => (Status::Failed, Reason::HolderSignaled),
            Exit::Code(0) => (Status::Succeeded, Reason::Exited),
            Exit::Code(_) => (Status::Failed, Reason::Exited),
            Exit::Signal(_) => (Status::Failed, Reason::Signaled),
        };
        let w = Write::Finish {
            epoch: self.epoch,
            at: Timestamp::now(),
            status,
            reason,
            exit: Some(exit),
            progress: self.progress(),
        };
        // A full or failing disk may recover soon, so the end is retried; past the ttl readers judge
        // the job lost anyway, so waiting longer only hides the failure from whoever started us.
        let patience = Duration::from_millis(self.ttl_ms).max(Duration::from_secs(2));
        let give_up = std::time::Instant::now() + patience;
        if self.fenced {
            self.record_fenced(give_up);
        }
        // On a cluster store other hosts have no log file: the final record carries its tail.
        let tail = self.job.store.self_fences().then(|| self.output_tail());
        loop {
            let written =
                crate::store::commit_edit(&self.job.store, &self.job.id, &w, true, &|r| {
                    if let Some(t) = &tail {
                        t.put(r);
                    }
                });
            match written {
                Ok(Ok(_)) => return child::exit_code(exit),
                Ok(Err(refused)) => {
                    let shown = refused
                        .late
                        .as_ref()
                        .map(|r| describe(r))
                        .unwrap_or_else(|| refused.current.to_string());
                    let id = &self.job.id;
                    if let (Some(why), None) = (self.stalled, self.ended_by_other) {
                        note!(
                            "job {id} was recorded lost ({why}); the child then ended with {exit}, kept in the record's `late` list"
                        );
                    } else {
                        note!(
                            "job {id} was already {shown} when the child ended with {exit}; that result arrived late and is kept in the record's `late` list"
                        );
                    }
                    return match refused.current {
                        Status::Cancelled => exit::CANCELLED,
                        _ => exit::LOST,
                    };
                }
                Err(StoreError::NotFound(..)) => {
                    note!(
                        "job {} ended with {exit}, but its record had been removed; nothing was recorded",
                        self.job.id
                    );
                    return exit::NO_SUCH_JOB;
                }
                Err(e) if std::time::Instant::now() < give_up => {
                    self.fault("record the end", &e);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    // Exit 10, not the child's code: a caller must not take a success that was never
                    // recorded for a recorded one. The result itself is at least said here.
                    note!(
                        "cannot record that job {} ended with {exit}: {e}; gave up after retrying for {}; the record keeps its last renewal, so readers will judge the job lost once its lease runs out",
                        self.job.id,
                        humantime::format_duration(patience)
                    );
                    return exit::IO;
                }
            }
        }
    }
}
