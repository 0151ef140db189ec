//! Where records live. The `Store` trait is the whole contract the commands and the wrapper rely
//! on (reading, writing under a lock, renewing, waiting, resolving ids), so a second backend (etcd)
//! can replace the file store without touching the verdict, the CLI or the wrapper.
//!
//! A backend that is chosen at run time implements `Store` on an enum of backends by delegation:
//! `update` is generic, so the trait is not object-safe on purpose (no boxing on the write path).

mod any;
mod dir;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_rules;
pub mod etcd_url;
mod file;
mod logs;
mod renew;
#[cfg(test)]
mod tests;
mod watch;

use std::os::fd::BorrowedFd;

pub use any::{AnyRenewer, AnyStore, AnyWatch, Renewal};
pub use dir::StateDir;
pub use error::{DirProblem, StoreError};
pub use file::FileStore;
pub use logs::LogFiles;
pub use renew::FileRenewer;
pub use watch::FileWatch;

#[cfg(feature = "etcd")]
pub use etcd::{Auth, EtcdRenewer, EtcdStore, EtcdWatch};

use crate::clock::Timestamp;
use crate::id::JobId;
use crate::record::{Progress, Record};
use crate::transition::Refused;

/// What an update closure decides after seeing the record read under the lock.
#[allow(clippy::large_enum_variant)] // built once per write and consumed at once
pub enum Change<T> {
    /// Leave the record as it is and return this.
    Keep(T),
    /// Replace the record; `durable` asks for fsync of the file and the directory.
    Write {
        record: Record,
        durable: bool,
        value: T,
    },
}

/// Applies a write under the job's lock (protocol.md 6.1-6.4). `Ok(Ok(record))`: it took effect.
/// `Ok(Err(refusal))`: it was refused; if it carried a result, that result is stored in `late`
/// (always durably) before this returns, so a refused result is never lost by a caller that forgot.
pub fn commit<S: Store>(
    store: &S,
    id: &JobId,
    w: &crate::transition::Write,
    durable: bool,
) -> Result<Result<Record, Box<crate::transition::Refused>>, StoreError> {
    commit_edit(store, id, w, durable, &|_| {})
}

/// `commit`, with `edit` applied to the new record when the write is accepted (the etcd store's
/// final record carries the output's tail, protocol.md 11.3).
pub fn commit_edit<S: Store>(
    store: &S,
    id: &JobId,
    w: &crate::transition::Write,
    durable: bool,
    edit: &dyn Fn(&mut Record),
) -> Result<Result<Record, Box<crate::transition::Refused>>, StoreError> {
    let (res, _) = store.update(id, &mut |cur| match crate::transition::apply(cur, w) {
        Ok(mut next) => {
            edit(&mut next);
            Change::Write {
                record: next.clone(),
                durable,
                value: Ok(next),
            }
        }
        Err(refused) => match refused.late.clone() {
            Some(late) => Change::Write {
                record: *late,
                durable: true,
                value: Err(refused),
            },
            None => Change::Keep(Err(refused)),
        },
    })?;
    Ok(res)
}

/// One entry of a listing: a record, or the error for that file alone.
pub type Listed = Result<Record, StoreError>;

/// The contract of a store. Every backend must give these guarantees, because the verdict, the
/// fencing of a stale holder and the "exactly one terminal transition" promise rest on them:
///
/// - **Atomic records.** A reader sees a whole record, old or new, never a mix (`load`, `list`).
/// - **Serialized writes.** `update` and `remove` run their closure on the current record with every
///   other writer of that job excluded until the new record is stored (a compare-and-swap: the file
///   store holds an exclusive lock; a transactional store conditions the write on the revision it
///   read and retries the closure if it changed). Nothing written outside this discipline may change
///   a record, except a renewal's lease fields (`Renew`).
/// - **Durable terminal writes.** A write with `durable: true`, and every `create`, is on stable
///   storage before the call returns; a renewal need not be.
/// - **Refusals are decided above the store.** Who may write what is `transition::apply`, run
///   inside `update`'s closure (`commit`); the backend only makes the read-decide-write atomic. A
///   refused write changes nothing but `late` (protocol.md 6.4), and that record is stored like any
///   other write, durably. A backend's own refusal of a renewal (the etcd store: its lease is gone)
///   is a `Refused` with `Why::Store`, and means the same to the holder: stop renewing.
/// - **Nothing lost, nothing deleted behind the user's back.** A record that cannot be parsed is
///   reported (`StoreError::Record`) and left as it is; only `remove` deletes, and only what its
///   closure accepts.
pub trait Store {
    /// The holder's renewal handle; see `Renew`.
    type Renewer: Renew;
    /// A waiter's change notification; see `Watch`.
    type Watch: Watch;

    /// Creates a new record; fails with `Exists` if the id is taken, even against a concurrent
    /// creator. Always durable.
    fn create(&self, rec: &Record) -> Result<(), StoreError>;
    /// Reads a record without taking the lock, with the latest renewal folded in (a record is
    /// never torn). `NotFound` when there is no such job.
    fn load(&self, id: &JobId) -> Result<Record, StoreError>;
    /// Every job: one entry per record, a corrupt one as its own error so it hides no other job.
    fn list(&self) -> Result<Vec<Listed>, StoreError>;
    /// `list`, handing over one entry at a time, so a listing of 10,000 jobs never holds every
    /// record twice (read, then judged). The default reads the whole listing first (etcd: one
    /// snapshot at one revision); the file store reads each record as it is handed over.
    fn list_each(&self, f: &mut dyn FnMut(Listed)) -> Result<(), StoreError> {
        for item in self.list()? {
            f(item);
        }
        Ok(())
    }
    /// Ids of every record, sorted (cheap: no parsing), for prefix lookup and gc.
    fn ids(&self) -> Result<Vec<JobId>, StoreError>;
    /// Whether a record exists under this exact id (cheap: no parsing).
    fn contains(&self, id: &JobId) -> Result<bool, StoreError>;
    /// Compare-and-swap: reads the record with every other writer of the job excluded, lets `f`
    /// decide, and stores atomically what it returns. `f` may run more than once in a backend
    /// that retries on conflict, so it must not have side effects beyond its return value.
    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError>;
    /// Removes a job's record, renewal state and logs (gc) if `only_if` accepts the record read
    /// under the same exclusion as `update`. Returns whether it removed anything.
    fn remove(
        &self,
        id: &JobId,
        only_if: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<bool, StoreError>;
    /// The holder's fast path for routine renewals (protocol.md 6.2, 6.5). Called once the record
    /// is `running`; opening it reserves what later renewals need (so they keep working when the
    /// disk fills up).
    fn renewer(&self, id: &JobId) -> Result<Self::Renewer, StoreError>;
    /// Something a waiter can sleep on until job `id`'s record may have changed. `None` when the
    /// backend cannot notify here: the waiter then polls.
    fn watch(&self, id: &JobId) -> Option<Self::Watch>;

    /// Resolves a user's argument: an exact id, else the unique id it is a prefix of.
    fn resolve(&self, arg: &str) -> Result<JobId, StoreError> {
        let id = JobId::parse(arg)?;
        if self.contains(&id)? {
            return Ok(id);
        }
        let mut matches: Vec<JobId> = self
            .ids()?
            .into_iter()
            .filter(|i| i.as_str().starts_with(arg))
            .collect();
        match matches.len() {
            0 => Err(self.not_found(id)),
            1 => Ok(matches.remove(0)),
            _ => Err(StoreError::Ambiguous {
                prefix: arg.to_owned(),
                matches,
            }),
        }
    }

    /// The `NotFound` error for `id`, naming where this store looked.
    fn not_found(&self, id: JobId) -> StoreError;

    /// The verdict on a record this store returned (protocol.md 7.4). A store that keeps leases
    /// itself judges with what it read beside the record (etcd: the liveness key, section 11.4).
    fn verdict(
        &self,
        rec: &Record,
        probe: &crate::verdict::Probe,
        reader: &crate::verdict::Reader,
    ) -> crate::verdict::Verdict {
        crate::verdict::verdict(rec, probe, reader)
    }
}

/// The holder's renewal handle for one job.
pub trait Renew {
    /// Renews the lease for `epoch`: the record's `lease.renewed_at`/`renewed_mono_ms` and the beat
    /// count as later reads see them (protocol.md 6.2). It must be refused, exactly as
    /// `transition::apply` refuses a `Write::Renew`, when the stored record is terminal or carries
    /// another epoch: then `Ok(Err(refused))` (a renewal carries no result, so nothing goes to
    /// `late`) and the holder stops renewing. `Err(_)` is a failure to reach the store: the holder
    /// retries, and readers judge the lease by its last successful renewal.
    fn renew(
        &mut self,
        epoch: u64,
        at: Timestamp,
        mono_ms: u64,
        progress: &Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError>;
}

/// A waiter's view of one job's changes (`tether status --wait`, src/reader/wait.rs).
pub trait Watch {
    /// Becomes readable whenever the record may have changed: any write, replace or removal of
    /// it, and whenever the watch itself may have missed one (then it must wake, not stay quiet).
    /// The waiter polls it together with the holder's pidfd, so it must be a real descriptor.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Consumes what made `fd` readable. True if it may concern this job (or events were lost);
    /// false only when it surely does not. A true wake only costs the waiter one more judgment.
    fn changed(&mut self) -> bool;
    /// May stop watching until `resume`, for what is likely the waiter's last judgment, so that
    /// dropping the watch at the end costs nothing (inotify's close waits for the kernel).
    fn pause(&mut self) {}
    /// Watches again after `pause`. False if it cannot: the waiter then polls. Changes made
    /// while paused may be missed, so the waiter judges again after this.
    fn resume(&mut self) -> bool {
        true
    }
}
