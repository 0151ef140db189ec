//! Where records live. The `Store` trait is the whole contract the commands rely on, so a second
//! backend (etcd, later) can replace the file store without touching the verdict or the CLI.

mod file;

use std::path::PathBuf;

pub use file::{FileStore, Renewer, StateDir};

use crate::id::JobId;
use crate::record::{Record, RecordError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no job {0} in {1}; `tether status` lists the jobs")]
    NotFound(JobId, PathBuf),
    #[error("job {0} already exists in {1}")]
    Exists(JobId, PathBuf),
    #[error("{path}: {err}")]
    Record { path: PathBuf, err: RecordError },
    #[error("{path}: {why}")]
    Dir { path: PathBuf, why: String },
    #[error("state directory {0} is read-only; the verdict is shown but not recorded")]
    ReadOnly(PathBuf),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

impl StoreError {
    /// The exit code protocol.md section 9 assigns to this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            StoreError::NotFound(..) => 6,
            StoreError::Exists(..) => 2,
            StoreError::Record { .. } => 7,
            StoreError::Dir { .. } => 8,
            StoreError::ReadOnly(..) => 8,
            StoreError::Io { .. } => 10,
        }
    }
}

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
    let (res, _) = store.update(id, &mut |cur| match crate::transition::apply(cur, w) {
        Ok(next) => Change::Write {
            record: next.clone(),
            durable,
            value: Ok(next),
        },
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

pub trait Store {
    /// Creates a new record; fails with `Exists` if the id is taken. Always durable.
    fn create(&self, rec: &Record) -> Result<(), StoreError>;
    /// Reads a record without taking the lock (atomic replace means a read is never torn).
    fn load(&self, id: &JobId) -> Result<Record, StoreError>;
    /// Every job, by reading the directory: one entry per record file, errors included.
    fn list(&self) -> Result<Vec<Listed>, StoreError>;
    /// Ids of every record file (cheap: no parsing), for prefix lookup.
    fn ids(&self) -> Result<Vec<JobId>, StoreError>;
    /// Compare-and-swap: reads the record under the job's exclusive lock, lets `f` decide, and
    /// writes atomically what it returns. `f` runs while the lock is held.
    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError>;
    /// Removes a job's record, lock and logs (gc). The caller checks that it is terminal, under the lock.
    fn remove(
        &self,
        id: &JobId,
        only_if: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<bool, StoreError>;
}
