//! The job's log: child output appended to `jobs/<id>.log`, rotated once to `<id>.log.1` at a cap so
//! a chatty job that runs for weeks uses bounded disk (at most two segments).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// One segment's size cap: a job keeps at most two segments, so about 128 MiB in all.
pub const LOG_CAP: u64 = 64 << 20;

pub struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

/// Opens (creating it, mode 0600) a file to append to, never through a symlink.
pub fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

impl Log {
    pub fn open(path: PathBuf, cap: u64) -> io::Result<Log> {
        let file = open(&path).map_err(|e| annotate(&path, e))?;
        let size = file.metadata()?.len();
        let log = Log {
            path,
            file,
            size,
            cap,
        };
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old).map_err(|e| annotate(&self.path, e))?;
        self.file = open(&self.path).map_err(|e| annotate(&self.path, e))?;
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
        let p = d.path().join("j.log");
        let mut log = Log::open(p.clone(), 10).unwrap();
        log.write(b"0123456").unwrap();
        log.write(b"789").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"0123456789");
        log.write(b"abc").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        assert_eq!(
            std::fs::read(d.path().join("j.log.1")).unwrap(),
            b"0123456789"
        );
        log.write(b"defghijk").unwrap();
        log.write(b"z").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"defghijkz");
        assert_eq!(std::fs::read(d.path().join("j.log.1")).unwrap(), b"abc");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }
}
