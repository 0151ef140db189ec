//! The file store: one JSON file per job, a lock file beside it, atomic replace (protocol.md 6).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::watch::FileWatch;
use super::{Change, Listed, Renew, Store, StoreError};
use crate::id::JobId;
use crate::lease::{self, Stamp};
use crate::record::{MAX_RECORD_BYTES, Record};
use crate::transition::{Refused, Write};

/// The resolved state directory (protocol.md section 2).
#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// `--dir`, else `$TETHER_DIR`, else `$XDG_STATE_HOME/tether`, else `~/.local/state/tether`.
    pub fn resolve(flag: Option<&Path>) -> Result<StateDir, StoreError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let root = if let Some(d) = flag {
            d.to_path_buf()
        } else if let Some(d) = env("TETHER_DIR") {
            PathBuf::from(d)
        } else if let Some(x) = env("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
            PathBuf::from(x).join("tether")
        } else if let Some(h) = env("HOME") {
            PathBuf::from(h).join(".local/state/tether")
        } else {
            return Err(StoreError::Dir {
                path: PathBuf::from("~/.local/state/tether"),
                why: "cannot find the state directory: set TETHER_DIR or HOME, or pass --dir"
                    .into(),
            });
        };
        Ok(StateDir { root })
    }

    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }
}

/// The file-backed store.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: StateDir,
    jobs: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |err| {
        if err.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error()) {
            StoreError::ReadOnly(path.parent().unwrap_or(path).to_path_buf())
        } else {
            StoreError::Io {
                path: path.to_path_buf(),
                err,
            }
        }
    }
}

/// Refuses a directory that is a symlink, not ours, or open to others (protocol.md section 2).
fn check_private_dir(path: &Path) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::Dir {
        path: path.to_path_buf(),
        why,
    };
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad(
                "state directory does not exist; run `tether run` to create it, or pass --dir"
                    .into(),
            ));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if md.file_type().is_symlink() {
        return Err(bad(
            "is a symbolic link; point --dir or TETHER_DIR at the real directory".into(),
        ));
    }
    if !md.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    let uid = rustix::process::geteuid().as_raw();
    if md.uid() != uid {
        return Err(bad(format!(
            "is owned by uid {}, not by you (uid {uid}); use your own state directory",
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(bad(format!(
            "is writable by others (mode {:o}); run `chmod 700 {}`",
            md.mode() & 0o777,
            path.display()
        )));
    }
    Ok(())
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl FileStore {
    /// Opens the store; with `create`, makes the directories (mode 0700) first.
    pub fn open(dir: StateDir, create: bool) -> Result<FileStore, StoreError> {
        let jobs = dir.jobs();
        if create {
            if let Some(parent) = dir.root.parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(io_err(parent))?;
                }
            }
            create_private_dir(&dir.root)?;
            check_private_dir(&dir.root)?;
            create_private_dir(&jobs)?;
        } else {
            check_private_dir(&dir.root)?;
        }
        match check_private_dir(&jobs) {
            Err(StoreError::Dir { why, .. }) if !create && why.contains("does not exist") => {
                // A fresh state directory without jobs yet: an empty store, not an error.
            }
            r => r?,
        }
        Ok(FileStore { dir, jobs })
    }

    pub fn root(&self) -> &Path {
        &self.dir.root
    }
    pub fn record_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.json"))
    }
    pub fn lock_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.lock"))
    }
    pub fn log_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.log"))
    }
    /// The wrapper's own diagnostics, kept apart from the job's output (protocol.md 2).
    pub fn notes_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.notes"))
    }
    pub fn lease_path(&self, id: &JobId) -> PathBuf {
        self.jobs.join(format!("{id}.lease"))
    }

    /// The lease file's bytes, or nothing: a missing, odd or unreadable lease file only means the
    /// record's own renewal stands (it is never followed through a symlink).
    fn read_lease(&self, id: &JobId) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::NOFOLLOW | libc_flags::NONBLOCK | libc_flags::CLOEXEC)
            .open(self.lease_path(id))
        {
            if f.metadata().is_ok_and(|m| m.is_file()) {
                let _ = f.take(lease::FILE_LEN as u64).read_to_end(&mut buf);
            }
        }
        buf
    }

    /// Names in `jobs/`; none when it does not exist yet (a fresh state directory).
    fn entry_names(&self) -> Result<Vec<std::ffi::OsString>, StoreError> {
        let rd = match fs::read_dir(&self.jobs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_err(&self.jobs)(e)),
        };
        rd.map(|e| e.map(|e| e.file_name()).map_err(io_err(&self.jobs)))
            .collect()
    }

    /// Removes temp files that writers killed mid-write left behind (`.ID.json.tmp.PID`). Safe by the
    /// same rule `write_tmp` relies on: whoever holds a job's lock knows no write of that job is in
    /// flight, so every temp file of that id is stale. With `dry_run`, only counts them.
    pub fn sweep_temp_files(&self, dry_run: bool) -> Result<Vec<PathBuf>, StoreError> {
        let mut swept = Vec::new();
        for name in self.entry_names()? {
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.split_once(".json.tmp."))
                .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(id, _)| JobId::parse(id).ok())
            else {
                continue;
            };
            let path = self.jobs.join(&name);
            if dry_run {
                swept.push(path);
                continue;
            }
            // Writers take the lock (creating its file) before their temp file exists, so without
            // a lock file no write can be in flight; otherwise wait for the lock.
            let _lock = match self.lock_path(&id).symlink_metadata() {
                Ok(_) => Some(self.lock(&id)?),
                Err(_) => None,
            };
            match fs::remove_file(&path) {
                Ok(()) => swept.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(swept)
    }

    /// A renewer for one job: the holder's fast path (protocol.md 6.5).
    fn open_renewer(&self, id: &JobId) -> Result<FileRenewer, StoreError> {
        let lock = self.open_lock_file(id)?;
        let path = self.lease_path(id);
        let lease = open_private_rw(&path).map_err(io_err(&path))?;
        let existing = self.read_lease(id);
        if existing.len() < lease::FILE_LEN {
            // Claim both slots' space now, while the job starts: later renewals then only
            // overwrite, and keep working on a disk that has since filled up.
            std::os::unix::fs::FileExt::write_all_at(&lease, &lease::empty_file(), 0)
                .map_err(io_err(&path))?;
        }
        let seq = lease::newest(&existing).map_or(0, |s| s.seq) + 1;
        Ok(FileRenewer {
            store: self.clone(),
            id: id.clone(),
            lock,
            lease,
            seq,
            seen: None,
        })
    }

    fn tmp_path(&self, id: &JobId) -> PathBuf {
        self.jobs
            .join(format!(".{id}.json.tmp.{}", std::process::id()))
    }

    /// Takes the job's exclusive lock; released when the returned file is dropped (or we die).
    fn lock(&self, id: &JobId) -> Result<File, StoreError> {
        let f = self.open_lock_file(id)?;
        // fs4's trait method, named explicitly: std's inherent `File::lock` would shadow it.
        fs4::FileExt::lock(&f).map_err(io_err(&self.lock_path(id)))?;
        Ok(f)
    }

    fn open_lock_file(&self, id: &JobId) -> Result<File, StoreError> {
        let path = self.lock_path(id);
        let f = open_private_rw(&path).map_err(|e| match e.raw_os_error() {
            Some(c) if c == rustix::io::Errno::LOOP.raw_os_error() => StoreError::Dir {
                path: path.clone(),
                why: "lock file is a symbolic link; remove it".into(),
            },
            _ => io_err(&path)(e),
        })?;
        Ok(f)
    }

    /// Reads a record file: no symlinks, no FIFOs (opened non-blocking), at most 1 MiB.
    fn read_record(&self, id: &JobId) -> Result<Record, StoreError> {
        let path = self.record_path(id);
        let corrupt = |why: String| StoreError::Record {
            path: path.clone(),
            err: crate::record::RecordError::Corrupt(why),
        };
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::NOFOLLOW | libc_flags::NONBLOCK | libc_flags::CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(id.clone(), self.dir.root.clone()));
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(corrupt(
                    "record is a symbolic link; tether never follows one (left in place)".into(),
                ));
            }
            // A Unix socket cannot be opened at all; it is as much "not a record" as a FIFO is.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                return Err(corrupt(
                    "record is not a regular file (left in place)".into(),
                ));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        // Fast path: a record is immutable once renamed into place, so one read of a small buffer
        // gets all of it (open, read, close: listing 10,000 jobs is mostly these syscalls). Only
        // an empty, full or unparseable read pays for the checks and the full read below, so a
        // FIFO, a huge file or a short read is still judged on the whole file.
        let mut quick = [0u8; 8192];
        if let Ok(n) = f.read(&mut quick) {
            if n > 0 && n < quick.len() {
                if let Ok(rec) = Record::parse(&quick[..n], Some(id.as_str())) {
                    return Ok(self.with_lease(id, rec));
                }
            }
        }
        let md = f.metadata().map_err(io_err(&path))?;
        if !md.is_file() {
            return Err(corrupt(
                "record is not a regular file (left in place)".into(),
            ));
        }
        if md.len() > MAX_RECORD_BYTES {
            return Err(corrupt(format!(
                "record is {} bytes, over the 1 MiB limit (left in place)",
                md.len()
            )));
        }
        let mut buf = Vec::with_capacity(md.len() as usize + 1);
        std::io::Seek::rewind(&mut f).map_err(io_err(&path))?;
        (&mut f)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        let rec = Record::parse(&buf, Some(id.as_str())).map_err(|err| StoreError::Record {
            path: path.clone(),
            err,
        })?;
        Ok(self.with_lease(id, rec))
    }

    /// Folds the lease file into an active record (protocol.md 6.5).
    fn with_lease(&self, id: &JobId, mut rec: Record) -> Record {
        if rec.status.is_active() {
            lease::merge(&mut rec, &self.read_lease(id));
        }
        rec
    }

    /// Writes `rec` to a private temp file; the caller renames or links it into place.
    ///
    /// Errors name the record, not the temp file: the temp file is gone by the time the user reads
    /// the message, and the record is what they will look at (a full disk, say).
    fn write_tmp(&self, id: &JobId, rec: &Record, durable: bool) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp_path(id);
        let path = self.record_path(id);
        // We hold the job's lock, so a temp file of ours left here is from a dead writer.
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_flags::NOFOLLOW | libc_flags::CLOEXEC)
            .open(&tmp)
            .map_err(io_err(&path))?;
        let bytes = rec.to_json();
        let res = f
            .write_all(&bytes)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&path)(e));
        }
        Ok(tmp)
    }

    /// Fails with `NotFound` before any lock is taken when the record does not exist. Taking the
    /// lock creates the lock file, so without this a typo in `tether cancel ID` would leave a stray
    /// `ID.lock` behind, and on a read-only directory report "read-only" instead of "no such job".
    /// A record created right after this check is simply one we did not see, as with any read.
    fn must_exist(&self, id: &JobId) -> Result<(), StoreError> {
        let path = self.record_path(id);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(id.clone(), self.dir.root.clone()))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.jobs)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.jobs))
    }

    fn ensure_jobs_dir(&self) -> Result<(), StoreError> {
        if !self.jobs.exists() {
            create_private_dir(&self.jobs)?;
        }
        Ok(())
    }
}

/// The holder's renewal fast path: lock, check the record is still ours (an `fstat`, and a parse
/// only when it changed since we last looked), overwrite one lease slot in place.
pub struct FileRenewer {
    store: FileStore,
    id: JobId,
    lock: File,
    lease: File,
    seq: u64,
    /// Identity (inode, size, mtime) of the record last seen active with our epoch.
    seen: Option<(u64, u64, i64, i64, u64)>,
}

impl Renew for FileRenewer {
    fn renew(
        &mut self,
        epoch: u64,
        at: crate::clock::Timestamp,
        mono_ms: u64,
        progress: &crate::record::Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError> {
        let lock_path = self.store.lock_path(&self.id);
        fs4::FileExt::lock(&self.lock).map_err(io_err(&lock_path))?;
        let res = self.renew_locked(epoch, at, mono_ms, progress);
        let _ = fs4::FileExt::unlock(&self.lock);
        res
    }
}

impl FileRenewer {
    fn renew_locked(
        &mut self,
        epoch: u64,
        at: crate::clock::Timestamp,
        mono_ms: u64,
        progress: &crate::record::Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError> {
        let path = self.store.record_path(&self.id);
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ident = (md.ino(), md.size(), md.mtime(), md.mtime_nsec(), epoch);
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
        let lease_path = self.store.lease_path(&self.id);
        // A lease file deleted under us would swallow renewals into an orphaned inode while
        // readers see none: reopen (and so recreate) it when our descriptor is no longer linked.
        if self.lease.metadata().map_err(io_err(&lease_path))?.nlink() == 0 {
            self.lease = self.store.open_renewer(&self.id)?.lease;
        }
        std::os::unix::fs::FileExt::write_all_at(&self.lease, &stamp.encode(), stamp.offset())
            .map_err(io_err(&lease_path))?;
        self.seq += 1;
        Ok(Ok(()))
    }
}

/// Open flags std has no names for; the values come from rustix so they are right per platform.
mod libc_flags {
    use rustix::fs::OFlags;
    pub const NOFOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;
    pub const NONBLOCK: i32 = OFlags::NONBLOCK.bits() as i32;
    pub const CLOEXEC: i32 = OFlags::CLOEXEC.bits() as i32;
}

/// Opens (creating, mode 0600) a job's lock or lease file for reading and writing, never through a
/// symbolic link: both are kept open and written while the record they guard is live.
fn open_private_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc_flags::NOFOLLOW | libc_flags::CLOEXEC)
        .open(path)
}

fn id_of(name: &OsStr) -> Option<JobId> {
    let name = name.to_str()?;
    let stem = name.strip_suffix(".json")?;
    JobId::parse(stem).ok()
}

impl Store for FileStore {
    type Renewer = FileRenewer;
    type Watch = FileWatch;

    fn renewer(&self, id: &JobId) -> Result<FileRenewer, StoreError> {
        self.open_renewer(id)
    }

    fn watch(&self, id: &JobId) -> Option<FileWatch> {
        FileWatch::new(&self.jobs, id)
    }

    fn contains(&self, id: &JobId) -> Result<bool, StoreError> {
        match self.must_exist(id) {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(..)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn not_found(&self, id: JobId) -> StoreError {
        StoreError::NotFound(id, self.dir.root.clone())
    }

    fn create(&self, rec: &Record) -> Result<(), StoreError> {
        let id = JobId::parse(&rec.id).map_err(|e| StoreError::Dir {
            path: self.jobs.clone(),
            why: e.to_string(),
        })?;
        self.ensure_jobs_dir()?;
        let _lock = self.lock(&id)?;
        let path = self.record_path(&id);
        let tmp = self.write_tmp(&id, rec, true)?;
        // link() fails if the record exists: creation is exclusive even against another creator.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::Exists(id, self.dir.root.clone()))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn load(&self, id: &JobId) -> Result<Record, StoreError> {
        self.read_record(id)
    }

    fn ids(&self) -> Result<Vec<JobId>, StoreError> {
        let mut ids = Vec::new();
        for name in self.entry_names()? {
            if let Some(id) = id_of(&name) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn list(&self) -> Result<Vec<Listed>, StoreError> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| self.read_record(&id))
            .collect())
    }

    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError> {
        self.must_exist(id)?;
        let _lock = self.lock(id)?;
        let cur = self.read_record(id)?;
        match f(&cur) {
            Change::Keep(v) => Ok((v, cur)),
            Change::Write {
                record,
                durable,
                value,
            } => {
                let path = self.record_path(id);
                let tmp = self.write_tmp(id, &record, durable)?;
                if let Err(e) = fs::rename(&tmp, &path) {
                    let _ = fs::remove_file(&tmp);
                    return Err(io_err(&path)(e));
                }
                if durable {
                    self.sync_dir()?;
                }
                Ok((value, record))
            }
        }
    }

    fn remove(
        &self,
        id: &JobId,
        only_if: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<bool, StoreError> {
        self.must_exist(id)?;
        let lock = self.lock(id)?;
        let rec = self.read_record(id)?;
        if !only_if(&rec) {
            return Ok(false);
        }
        let path = self.record_path(id);
        fs::remove_file(&path).map_err(io_err(&path))?;
        for p in [
            self.log_path(id),
            self.jobs.join(format!("{id}.log.1")),
            self.lease_path(id),
            self.notes_path(id),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        let _ = fs::remove_file(self.lock_path(id));
        drop(lock);
        self.sync_dir()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{RecordError, Status};
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
    fn corrupt_records_are_reported_kept_and_do_not_hide_others() {
        let (_t, s) = store();
        s.create(&sample()).unwrap();
        let bad = s.jobs.join("broken.json");
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
        std::os::unix::fs::symlink(&target, s.jobs.join("job-1.json")).unwrap();
        let id = JobId::parse("job-1").unwrap();
        let e = s.load(&id).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            s.jobs.join("fifo.json").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
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
}
