//! The file store: one JSON file per job, a lock file beside it, atomic replace (protocol.md 6).
//!
//! Every file is reached relative to the `jobs/` directory opened once by `dir::Dir` (never by a
//! path that could be re-resolved through a swapped component); paths appear only in messages.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::dir::{Dir, io_err, open_private_rw};
use super::renew::FileRenewer;
use super::watch::FileWatch;
use super::{Change, DirProblem, Listed, LogFiles, Store, StoreError};
use crate::id::JobId;
use crate::lease_file;
use crate::record::{MAX_RECORD_BYTES, Record, RecordError};

/// The file-backed store: the opened state directory and its `jobs/`.
#[derive(Clone, Debug)]
pub struct FileStore {
    inner: Arc<Opened>,
}

#[derive(Debug)]
struct Opened {
    root: Dir,
    /// Absent until the first job is created in a fresh state directory.
    jobs: OnceLock<Dir>,
}

/// The names of a job's files in `jobs/` (protocol.md section 2).
/// Joined by hand: `format!` was a visible part of reading each record of a listing.
pub(super) fn name(id: &JobId, ext: &str) -> String {
    let mut n = String::with_capacity(id.as_str().len() + 1 + ext.len());
    n.push_str(id.as_str());
    n.push('.');
    n.push_str(ext);
    n
}

fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

impl FileStore {
    /// Opens the store; with `create`, makes the directories (mode 0700) first.
    pub fn open(dir: super::StateDir, create: bool) -> Result<FileStore, StoreError> {
        let root = Dir::open_private(&dir.root, create)?;
        // A fresh state directory without jobs yet is an empty store, not an error.
        let jobs = OnceLock::new();
        if let Some(j) = root.open_sub("jobs", create)? {
            let _ = jobs.set(j);
        }
        Ok(FileStore {
            inner: Arc::new(Opened { root, jobs }),
        })
    }

    pub fn root(&self) -> &Path {
        self.inner.root.path()
    }
    /// The state directory as opened and checked, for what else is made in it (the heartbeat
    /// channel's `run/`), so nothing goes there by path.
    pub fn root_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inner.root.as_fd()
    }
    fn jobs_path(&self) -> PathBuf {
        self.root().join("jobs")
    }
    fn path_of(&self, name: &str) -> PathBuf {
        self.jobs_path().join(name)
    }
    pub fn record_path(&self, id: &JobId) -> PathBuf {
        self.path_of(&name(id, "json"))
    }
    pub fn lock_path(&self, id: &JobId) -> PathBuf {
        self.path_of(&name(id, "lock"))
    }
    pub fn log_path(&self, id: &JobId) -> PathBuf {
        self.path_of(&name(id, "log"))
    }
    /// The wrapper's own diagnostics, kept apart from the job's output (protocol.md 2).
    pub fn notes_path(&self, id: &JobId) -> PathBuf {
        self.path_of(&name(id, "notes"))
    }
    pub fn lease_path(&self, id: &JobId) -> PathBuf {
        self.path_of(&name(id, "lease"))
    }

    /// `jobs/`, or `NotFound` for `id` when the state directory has none yet.
    pub(super) fn jobs(&self, id: &JobId) -> Result<&Dir, StoreError> {
        self.inner
            .jobs
            .get()
            .ok_or_else(|| self.not_found(id.clone()))
    }

    /// `jobs/`, created if the state directory has none yet (a job is being created).
    fn jobs_made(&self) -> Result<&Dir, StoreError> {
        if let Some(j) = self.inner.jobs.get() {
            return Ok(j);
        }
        let made = self
            .inner
            .root
            .open_sub("jobs", true)?
            .ok_or_else(|| StoreError::Dir {
                path: self.jobs_path(),
                why: DirProblem::Missing,
            })?;
        // Another thread may have opened it first: either descriptor names the checked directory.
        let _ = self.inner.jobs.set(made);
        Ok(self.inner.jobs.get().expect("just set"))
    }

    /// The lease file's bytes, or nothing: a missing, odd or unreadable lease file only means the
    /// record's own renewal stands (it is never followed through a symlink).
    pub(super) fn read_lease(&self, jobs: &Dir, id: &JobId) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Ok(f) = jobs.open(&name(id, "lease"), OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            if f.metadata().is_ok_and(|m| m.is_file()) {
                let _ = f.take(lease_file::FILE_LEN as u64).read_to_end(&mut buf);
            }
        }
        buf
    }

    /// Names in `jobs/`; none when it does not exist yet (a fresh state directory).
    fn entry_names(&self) -> Result<Vec<std::ffi::OsString>, StoreError> {
        match self.inner.jobs.get() {
            None => Ok(vec![]),
            Some(j) => j.names().map_err(io_err(j.path())),
        }
    }

    /// Removes temp files that writers killed mid-write left behind (`.ID.json.tmp.PID`). Safe by the
    /// same rule `write_tmp` relies on: whoever holds a job's lock knows no write of that job is in
    /// flight, so every temp file of that id is stale. With `dry_run`, only counts them.
    pub fn sweep_temp_files(&self, dry_run: bool) -> Result<Vec<PathBuf>, StoreError> {
        let mut swept = Vec::new();
        for entry in self.entry_names()? {
            let Some((name, id)) = entry.to_str().and_then(|n| {
                let (id, pid) = n.strip_prefix('.')?.split_once(".json.tmp.")?;
                let ok = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
                Some((n, JobId::parse(id).ok().filter(|_| ok)?))
            }) else {
                continue;
            };
            let path = self.path_of(name);
            if dry_run {
                swept.push(path);
                continue;
            }
            let jobs = self.jobs(&id)?;
            // Writers take the lock (creating its file) before their temp file exists, so without
            // a lock file no write can be in flight; otherwise wait for the lock.
            let _lock = match jobs.stat(&self::name(&id, "lock")) {
                Ok(_) => Some(self.lock(&id)?),
                Err(_) => None,
            };
            match jobs.unlink(name) {
                Ok(()) => swept.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(swept)
    }

    /// The job's log segments, for the wrapper that writes them.
    pub fn log_files(&self, id: &JobId) -> LogFiles {
        LogFiles {
            store: self.clone(),
            id: id.clone(),
        }
    }

    fn tmp_name(id: &JobId) -> String {
        format!(".{id}.json.tmp.{}", std::process::id())
    }

    /// Takes the job's exclusive lock; released when the returned file is dropped (or we die).
    fn lock(&self, id: &JobId) -> Result<File, StoreError> {
        let f = self.open_lock_file(id)?;
        // fs4's trait method, named explicitly: std's inherent `File::lock` would shadow it.
        fs4::FileExt::lock(&f).map_err(io_err(&self.lock_path(id)))?;
        Ok(f)
    }

    pub(super) fn open_lock_file(&self, id: &JobId) -> Result<File, StoreError> {
        let path = self.lock_path(id);
        open_private_rw(self.jobs(id)?, &name(id, "lock")).map_err(|e| match errno(&e) {
            Some(Errno::LOOP) => StoreError::Dir {
                path: path.clone(),
                why: DirProblem::SymlinkedLock,
            },
            _ => io_err(&path)(e),
        })
    }

    /// Reads a record file: no symlinks, no FIFOs (opened non-blocking), at most 1 MiB.
    pub(super) fn read_record(&self, id: &JobId) -> Result<Record, StoreError> {
        let jobs = self.jobs(id)?;
        // The path is only for messages: made when one is needed, not for every record listed.
        let path = || self.record_path(id);
        let corrupt = |why: &str| StoreError::Record {
            path: path(),
            err: RecordError::Corrupt(format!("{why} (left in place)")),
        };
        let mut f = match jobs.open(&name(id, "json"), OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) => {
                return Err(match errno(&e) {
                    Some(Errno::NOENT) => self.not_found(id.clone()),
                    Some(Errno::LOOP) => {
                        corrupt("record is a symbolic link; tether never follows one")
                    }
                    // A Unix socket cannot be opened at all; it is as much "not a record" as a
                    // FIFO is.
                    Some(Errno::NXIO) => corrupt("record is not a regular file"),
                    _ => io_err(&path())(e),
                });
            }
        };
        // Fast path: a record is immutable once renamed into place, so one read of a small buffer
        // gets all of it (open, read, close: listing 10,000 jobs is mostly these syscalls). Only
        // an empty, full or unparseable read pays for the checks and the full read below, so a
        // FIFO, a huge file or a short read is still judged on the whole file.
        // Left uninitialised: zeroing 8 KiB for every record was a tenth of a listing's work.
        let mut quick = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        if let Ok((got, _)) = rustix::io::read(&f, &mut quick) {
            if !got.is_empty() && got.len() < 8192 {
                if let Ok(rec) = Record::parse(got, Some(id.as_str())) {
                    return Ok(self.with_lease(jobs, id, rec));
                }
            }
        }
        let at = path();
        let md = f.metadata().map_err(io_err(&at))?;
        if !md.is_file() {
            return Err(corrupt("record is not a regular file"));
        }
        if md.len() > MAX_RECORD_BYTES {
            return Err(corrupt(&format!(
                "record is {} bytes, over the 1 MiB limit",
                md.len()
            )));
        }
        let mut buf = Vec::with_capacity(md.len() as usize + 1);
        std::io::Seek::rewind(&mut f).map_err(io_err(&at))?;
        (&mut f)
            .take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&at))?;
        let rec = Record::parse(&buf, Some(id.as_str()))
            .map_err(|err| StoreError::Record { path: at, err })?;
        Ok(self.with_lease(jobs, id, rec))
    }

    /// Folds the lease file into an active record (protocol.md 6.5).
    fn with_lease(&self, jobs: &Dir, id: &JobId, mut rec: Record) -> Record {
        if rec.status.is_active() {
            lease_file::merge(&mut rec, &self.read_lease(jobs, id));
        }
        rec
    }

    /// Writes `rec` to a private temp file and returns its name; the caller renames or links it
    /// into place.
    ///
    /// Errors name the record, not the temp file: the temp file is gone by the time the user reads
    /// the message, and the record is what they will look at (a full disk, say).
    fn write_tmp(
        &self,
        jobs: &Dir,
        id: &JobId,
        rec: &Record,
        durable: bool,
    ) -> Result<String, StoreError> {
        let tmp = Self::tmp_name(id);
        let path = self.record_path(id);
        // We hold the job's lock, so a temp file of ours left here is from a dead writer.
        let _ = jobs.unlink(&tmp);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let mut f = jobs.open(&tmp, flags, 0o600).map_err(io_err(&path))?;
        let bytes = rec.to_json();
        let res = f
            .write_all(&bytes)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
        if let Err(e) = res {
            let _ = jobs.unlink(&tmp);
            return Err(io_err(&path)(e));
        }
        Ok(tmp)
    }

    /// Fails with `NotFound` before any lock is taken when the record does not exist. Taking the
    /// lock creates the lock file, so without this a typo in `tether cancel ID` would leave a stray
    /// `ID.lock` behind, and on a read-only directory report "read-only" instead of "no such job".
    /// A record created right after this check is simply one we did not see, as with any read.
    fn must_exist(&self, id: &JobId) -> Result<(), StoreError> {
        match self.jobs(id)?.stat(&name(id, "json")) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(id.clone())),
            Err(e) => Err(io_err(&self.record_path(id))(e)),
        }
    }

    fn sync_dir(&self, jobs: &Dir) -> Result<(), StoreError> {
        jobs.sync().map_err(io_err(jobs.path()))
    }
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
        FileRenewer::open(self, id)
    }

    fn watch(&self, id: &JobId) -> Option<FileWatch> {
        FileWatch::new(self.inner.jobs.get()?, id)
    }

    fn contains(&self, id: &JobId) -> Result<bool, StoreError> {
        match self.must_exist(id) {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(..)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn not_found(&self, id: JobId) -> StoreError {
        StoreError::NotFound(id, self.root().to_path_buf())
    }

    fn create(&self, rec: &Record) -> Result<(), StoreError> {
        let id = JobId::parse(&rec.id)?;
        let jobs = self.jobs_made()?;
        let _lock = self.lock(&id)?;
        let tmp = self.write_tmp(jobs, &id, rec, true)?;
        // link() fails if the record exists: creation is exclusive even against another creator.
        let linked = jobs.link(&tmp, &name(&id, "json"));
        let _ = jobs.unlink(&tmp);
        match linked {
            Ok(()) => self.sync_dir(jobs),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::Exists(id, self.root().to_path_buf()))
            }
            Err(e) => Err(io_err(&self.record_path(&id))(e)),
        }
    }

    fn load(&self, id: &JobId) -> Result<Record, StoreError> {
        self.read_record(id)
    }

    fn ids(&self) -> Result<Vec<JobId>, StoreError> {
        let mut ids: Vec<JobId> = self
            .entry_names()?
            .iter()
            .filter_map(|n| id_of(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let mut all = Vec::new();
        self.list_each(&mut |item| all.push(item))?;
        Ok(all)
    }

    fn list_each(&self, f: &mut dyn FnMut(Listed)) -> Result<(), StoreError> {
        for id in self.ids()? {
            f(self.read_record(&id));
        }
        Ok(())
    }

    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError> {
        self.must_exist(id)?;
        let jobs = self.jobs(id)?;
        let _lock = self.lock(id)?;
        let cur = self.read_record(id)?;
        match f(&cur) {
            Change::Keep(v) => Ok((v, cur)),
            Change::Write {
                record,
                durable,
                value,
            } => {
                let tmp = self.write_tmp(jobs, id, &record, durable)?;
                if let Err(e) = jobs.rename(&tmp, &name(id, "json")) {
                    let _ = jobs.unlink(&tmp);
                    return Err(io_err(&self.record_path(id))(e));
                }
                if durable {
                    self.sync_dir(jobs)?;
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
        let jobs = self.jobs(id)?;
        let lock = self.lock(id)?;
        let rec = self.read_record(id)?;
        if !only_if(&rec) {
            return Ok(false);
        }
        let record = name(id, "json");
        jobs.unlink(&record)
            .map_err(io_err(&self.path_of(&record)))?;
        for n in [
            name(id, "log"),
            name(id, "log.1"),
            name(id, "lease"),
            name(id, "notes"),
        ] {
            match jobs.unlink(&n) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&self.path_of(&n))(e)),
            }
        }
        let _ = jobs.unlink(&name(id, "lock"));
        drop(lock);
        self.sync_dir(jobs)?;
        Ok(true)
    }
}
