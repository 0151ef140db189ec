//! A job's log files, for the wrapper that writes them: reached through the `jobs/` directory the
//! store opened and checked once, never by a path (issue 14, item 6).

use std::fs::File;
use std::io;

use rustix::fs::OFlags;

use super::file::{FileStore, name};
use crate::id::JobId;

/// A job's log, `<id>.log`, its previous segment, `<id>.log.1`, and the wrapper's notes,
/// `<id>.notes`, reached through `jobs/`.
pub struct LogFiles {
    pub(super) store: FileStore,
    pub(super) id: JobId,
}

impl LogFiles {
    /// Opens the current segment for appending, creating it private (0600), never through a link.
    pub fn open(&self) -> io::Result<File> {
        let jobs = self.store.jobs(&self.id).map_err(io::Error::other)?;
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE;
        jobs.open(&name(&self.id, "log"), flags, 0o600)
    }

    /// Opens the wrapper's diagnostics file, `<id>.notes`, for appending, as `open` does.
    pub fn open_notes(&self) -> io::Result<File> {
        let jobs = self.store.jobs(&self.id).map_err(io::Error::other)?;
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE;
        jobs.open(&name(&self.id, "notes"), flags, 0o600)
    }

    /// Makes the current segment the previous one, replacing the old previous one.
    pub fn rotate(&self) -> io::Result<()> {
        let jobs = self.store.jobs(&self.id).map_err(io::Error::other)?;
        jobs.rename(&name(&self.id, "log"), &name(&self.id, "log.1"))
    }
}
