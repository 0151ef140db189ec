//! The job's log: child output appended to `jobs/<id>.log`, rotated once to `<id>.log.1` at a cap so
//! a chatty job that runs for weeks uses bounded disk (at most two segments).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::store::LogFiles;

/// One segment's size cap: a job keeps at most two segments, so about 128 MiB in all.
pub const LOG_CAP: u64 = 64 << 20;

pub struct Log {
    /// For messages only.
    path: PathBuf,
    /// Opened and rotated relative to the `jobs/` directory the store checked, never by a path
    /// whose components someone could swap for a symbolic link while the job runs (issue 14.6).
    segments: LogFiles,
    file: File,
    size: u64,
    cap: u64,
}

impl Log {
    pub fn open(path: PathBuf, segments: LogFiles, cap: u64) -> io::Result<Log> {
        let file = segments.open().map_err(|e| annotate(&path, e))?;
        let size = file.metadata()?.len();
        let log = Log {
            path,
            segments,
            file,
            size,
            cap,
        };
        Ok(log)
    }

    /// Appends `bytes`, rotating first when they would push the segment past the cap.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.cap {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.segments
            .rotate()
            .map_err(|e| annotate(&self.path, e))?;
        self.file = self.segments.open().map_err(|e| annotate(&self.path, e))?;
        self.size = 0;
        Ok(())
    }
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn rotates_once_at_the_cap_and_keeps_two_segments() {
        let d = tempfile::tempdir().unwrap();
        let store = crate::store::FileStore::open(
            crate::store::StateDir {
                root: d.path().join("state"),
            },
            true,
        )
        .unwrap();
        let id = crate::id::JobId::parse("j").unwrap();
        let p = store.log_path(&id);
        let mut log = Log::open(p.clone(), store.log_files(&id), 10).unwrap();
        log.write(b"0123456").unwrap();
        log.write(b"789").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        log.write(b"abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        assert_eq!(
            std::fs::read(d.path().join("state/jobs/j.log.1")).unwrap(),
            b"0123456789"
        );
        log.write(b"defghijk").unwrap();
        log.write(b"z").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"defghijkz");
        assert_eq!(
            std::fs::read(d.path().join("state/jobs/j.log.1")).unwrap(),
            b"abc"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }
}
