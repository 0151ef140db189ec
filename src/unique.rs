//! Unique jobs (`tether run --unique KEY`): at most one active job per key, the rule the seed's app
//! kept itself ("one active task per session") and where its zombie blocked every later task.
//!
//! A starter takes an exclusive lock on `<dir>/unique/<KEY>.lock`, judges every job recorded with
//! that key by the verdict (section 7), recording the dead ones `lost` as any reader does, and
//! creates its own record only if none is active, all under the lock. Every starter with the key
//! takes the same lock, so of any number of concurrent starts exactly one wins. A dead holder is
//! judged lost on the spot and never blocks; a wedged one blocks only until its lease expires.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::id::JobId;
use crate::reader::settle::settle;
use crate::store::{AnyStore, FileStore, Store, StoreError};

/// The lock that makes a key's check-then-create one step; released when dropped.
pub struct Claim {
    _lock: File,
}

/// Why a key cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "--unique {key}: job {holder} holds this key and is still {status}; wait for it (`tether status --wait {holder}`), cancel it, or use another key"
    )]
    Held {
        key: String,
        holder: String,
        status: String,
    },
    #[error("--unique {0:?} is not a valid key: {1}")]
    BadKey(String, String),
    #[error("{path}: {why}")]
    Lock { path: PathBuf, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key has the form of a job id (section 3), so it is a safe file name.
pub fn check_key(key: &str) -> Result<(), ClaimError> {
    JobId::parse(key)
        .map(|_| ())
        .map_err(|e| ClaimError::BadKey(key.to_string(), e.to_string()))
}

/// Takes the key's lock and checks that no job holding `key` is active. Keep the returned claim
/// until the new record exists.
pub fn claim(store: &FileStore, key: &str) -> Result<Claim, ClaimError> {
    check_key(key)?;
    let dir = store.root().join("unique");
    private_dir(&dir)?;
    let path = dir.join(format!("{key}.lock"));
    let lock_err = |e: io::Error| ClaimError::Lock {
        path: path.clone(),
        why: e.to_string(),
    };
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
        .open(&path)
        .map_err(lock_err)?;
    // flock(2), released by close or by the death of this process. fs4's method, named
    // explicitly: std's inherent `File::lock` would shadow it (and is newer than the MSRV).
    fs4::FileExt::lock(&lock).map_err(lock_err)?;
    for id in store.ids()? {
        if let Some((holder, status)) = active_holder(store, &id, key)? {
            return Err(ClaimError::Held {
                key: key.to_string(),
                holder,
                status,
            });
        }
    }
    Ok(Claim { _lock: lock })
}

/// `--unique-wait`: like `claim`, but while an active job holds the key it waits for that job to end
/// (the wait of `status --wait`: the holder's pidfd, the record's directory, the lease expiry; no
/// polling), then tries again. Waiters that wake together race for the key under its lock as any
/// starters do; the losers wait on the winner.
pub fn claim_waiting(store: &FileStore, key: &str) -> Result<Claim, ClaimError> {
    loop {
        match claim(store, key) {
            Err(ClaimError::Held { holder, .. }) => {
                let Ok(id) = JobId::parse(&holder) else {
                    continue;
                };
                match crate::reader::wait::wait(store, &id, Default::default()) {
                    Ok(_) | Err(StoreError::NotFound(..)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            other => return other,
        }
    }
}

/// What `run --unique KEY` takes before its record is begun, on whichever store: on the file
/// store the key's lock (protocol.md 6.6); on a cluster store nothing to hold, because the create
/// transaction claims the key itself (11.8), but `--unique-wait` first waits out an active holder
/// there too (and starts again if another starter wins the key meanwhile: `StoreError::UniqueHeld`).
pub fn claim_on(store: &AnyStore, key: &str, wait: bool) -> Result<Option<Claim>, ClaimError> {
    check_key(key)?;
    if let Some(local) = store.as_file() {
        return if wait {
            claim_waiting(local, key)
        } else {
            claim(local, key)
        }
        .map(Some);
    }
    #[cfg(feature = "etcd")]
    if let (Some(etcd), true) = (store.as_etcd(), wait) {
        while let Some(holder) = etcd.unique_holder(key)? {
            match crate::reader::wait::wait(store, &holder, Default::default()) {
                Ok(_) | Err(StoreError::NotFound(..)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}

/// `Some((id, status))` when job `id` holds `key` and the verdict says it is active. A record that
/// cannot be read is not a holder: corruption is reported by the readers, and never blocks a key.
fn active_holder(
    store: &FileStore,
    id: &JobId,
    key: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let rec = match store.load(id) {
        Ok(r) => r,
        Err(StoreError::Record { .. } | StoreError::NotFound(..)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if rec.unique.as_deref() != Some(key) || !rec.status.is_active() {
        return Ok(None);
    }
    let judged = match settle(store, id) {
        Ok(j) => j,
        Err(StoreError::Record { .. } | StoreError::NotFound(..)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let status = judged.status();
    Ok(status
        .is_active()
        .then(|| (id.to_string(), status.to_string())))
}

/// `<dir>/unique`: created mode 0700; refused if it is a symbolic link, not ours, or not private.
fn private_dir(dir: &Path) -> Result<(), ClaimError> {
    let bad = |why: String| ClaimError::Lock {
        path: dir.to_path_buf(),
        why,
    };
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    let md = fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !md.is_dir() {
        return Err(bad(
            "is not a directory (a symbolic link?); remove it".into()
        ));
    }
    if md.uid() != rustix::process::geteuid().as_raw() {
        return Err(bad("is not owned by this user; remove it".into()));
    }
    if md.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "is accessible by others (mode {:o}); run `chmod 700 {}`",
            md.mode() & 0o777,
            dir.display()
        )));
    }
    Ok(())
}
