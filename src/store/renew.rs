//! The holder's renewal fast path through the lease file (protocol.md 6.5): check the record is
//! still ours (an `fstatat`, and a parse only when it changed since we last looked), then overwrite
//! one lease slot in place.
//!
//! No lock is taken. The lease file has one writer, the holder; every other writer of the record
//! only ever makes it terminal, and readers ignore the lease file of a terminal record and a slot
//! of another epoch. So a slot written just after someone else's write is never folded in, and the
//! holder sees that write at its next renewal, as it would have with the lock. The lock bought
//! nothing but two `flock` calls per renewal, and a renewal that waited on whoever held the lock.
//!
//! What one idle renewal costs (issue 13; `scripts/idle-cost`, strace -c -f): one wake-up of the
//! one thread (`ppoll` returns for the timerfd, `wrapper/idle.rs`), one `read` of the timerfd, one `statx` of the
//! record, one `fstat` of the lease file (deleted under us?), one `pwrite` of a 128-byte slot.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::dir::{io_err, open_private_rw};
use super::file::{FileStore, name};
use super::{Renew, StoreError};
use crate::clock::Timestamp;
use crate::id::JobId;
use crate::lease_file::{self, Stamp};
use crate::record::Progress;
use crate::transition::{Refused, Write};

pub struct FileRenewer {
    store: FileStore,
    id: JobId,
    /// `<id>.json`, made once.
    record_name: String,
    lease: File,
    seq: u64,
    /// Identity (inode, size, mtime) of the record last seen active with our epoch.
    seen: Option<(u64, u64, i64, i64, u64)>,
}

impl FileRenewer {
    pub(super) fn open(store: &FileStore, id: &JobId) -> Result<FileRenewer, StoreError> {
        let (lease, existing) = Self::open_lease(store, id)?;
        let seq = lease_file::newest(&existing).map_or(0, |s| s.seq) + 1;
        Ok(FileRenewer {
            store: store.clone(),
            id: id.clone(),
            record_name: name(id, "json"),
            lease,
            seq,
            seen: None,
        })
    }

    /// Opens (creating) the lease file and returns it with the bytes it held.
    fn open_lease(store: &FileStore, id: &JobId) -> Result<(File, Vec<u8>), StoreError> {
        let path = store.lease_path(id);
        let jobs = store.jobs(id)?;
        let lease = open_private_rw(jobs, &name(id, "lease")).map_err(io_err(&path))?;
        let existing = store.read_lease(jobs, id);
        if existing.len() < lease_file::FILE_LEN {
            // Claim both slots' space now, while the job starts: later renewals then only
            // overwrite, and keep working on a disk that has since filled up.
            lease
                .write_all_at(&lease_file::empty_file(), 0)
                .map_err(io_err(&path))?;
        }
        Ok((lease, existing))
    }
}

impl Renew for FileRenewer {
    #[allow(clippy::unnecessary_cast)] // `stat` field types differ by platform
    fn renew(
        &mut self,
        epoch: u64,
        at: Timestamp,
        mono_ms: u64,
        progress: &Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError> {
        let jobs = self.store.jobs(&self.id)?;
        // Nothing is allocated on the way unless it fails: this runs on every idle wake-up.
        let st = match jobs.stat(&self.record_name) {
            Ok(st) => st,
            Err(e) => return Err(io_err(&self.store.record_path(&self.id))(e)),
        };
        let ident = (
            st.st_ino as u64,
            st.st_size as u64,
            st.st_mtime as i64,
            st.st_mtime_nsec as i64,
            epoch,
        );
        if self.seen != Some(ident) {
            let cur = self.store.read_record(&self.id)?;
            // The same rule as every other write (section 5): only the checking is done here, the
            // lease fields go to the lease file below instead of a new record.
            let w = Write::Renew {
                epoch,
                at,
                mono_ms,
                running: false,
                child: None,
                progress: None,
            };
            if let Err(refused) = crate::transition::apply(&cur, &w) {
                self.seen = None;
                return Ok(Err(refused));
            }
            self.seen = Some(ident);
        }
        let stamp = Stamp {
            seq: self.seq,
            epoch,
            renewed_mono_ms: mono_ms,
            renewed_at: at,
            beats: progress.count,
            beat_at: progress.at,
        };
        let lease_path = || self.store.lease_path(&self.id);
        // A lease file deleted under us would swallow renewals into an orphaned inode while
        // readers see none: reopen (and so recreate) it when our descriptor is no longer linked.
        // rustix rather than std's `metadata` and `write_all_at`: the same system calls through
        // less code, which an idle wrapper's renewal fetches cache-cold every time.
        let links = rustix::fs::fstat(&self.lease)
            .map_err(|e| io_err(&lease_path())(e.into()))?
            .st_nlink;
        if links == 0 {
            self.lease = Self::open_lease(&self.store, &self.id)?.0;
        }
        let slot = stamp.encode();
        match rustix::io::pwrite(&self.lease, &slot, stamp.offset()) {
            Ok(n) if n == slot.len() => {}
            // A short write of 128 bytes at an offset already allocated does not happen on a
            // local file system; finish it the long way if it ever does.
            Ok(_) | Err(rustix::io::Errno::INTR) => self
                .lease
                .write_all_at(&slot, stamp.offset())
                .map_err(|e| io_err(&lease_path())(e))?,
            Err(e) => return Err(io_err(&lease_path())(e.into())),
        }
        self.seq += 1;
        Ok(Ok(()))
    }
}
