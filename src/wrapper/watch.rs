//! Counting every change of the heartbeat file, not one per renewal: an inotify watch on the
//! file's private directory (so a file replaced by rename is still seen) wakes the wrapper on each
//! write, and the events say how many writers touched it.
//!
//! Where the platform has no file events (`platform::DirEvents`: inotify on Linux), the channel
//! falls back to comparing the file's stamp once per tick, which counts at most one beat per
//! interval.

use std::io;
use std::path::Path;

use tokio::io::unix::AsyncFd;

use crate::platform::{DirEvents, FileEvent, Interest};

pub struct FileWatch {
    fd: AsyncFd<DirEvents>,
    name: std::ffi::CString,
    tally: Tally,
}

impl FileWatch {
    /// Watches `file`, which must sit in a directory only the job's user can write.
    pub fn new(file: &Path) -> io::Result<FileWatch> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let name = file
            .file_name()
            .unwrap_or_default()
            .as_encoded_bytes()
            .to_vec();
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        let fd = DirEvents::new(dir, Interest::Writes)?;
        // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for the AsyncFd's lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(FileWatch {
            fd,
            name,
            tally: Tally::default(),
        })
    }

    /// Reads every queued event without waiting. Returns None when there was none, else the
    /// writes they finished (0 while a write is still open: the file changed, the count follows
    /// when it is closed). `flush_after`: a change open at least this long (ms) counts as
    /// finished (at a tick; 0 at the job's end).
    pub fn take(&mut self, flush_after: u64) -> Option<u64> {
        let mut seen = false;
        let (name, tally) = (self.name.as_c_str(), &mut self.tally);
        self.fd.get_ref().read(&mut |file, event, _| {
            if file == Some(name) {
                tally.add(event, crate::clock::mono_ms());
                seen = true;
            }
        });
        self.tally.flush(crate::clock::mono_ms(), flush_after);
        let n = std::mem::take(&mut self.tally.done);
        (seen || n > 0).then_some(n)
    }

    /// Waits until the file changed; returns the writes finished meanwhile (see `take`).
    pub async fn changed(&mut self) -> u64 {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            ready.clear_ready();
            if let Some(n) = self.take(u64::MAX) {
                return n;
            }
        }
    }
}

/// Turns the event stream into finished writes. `touch` is ATTRIB then CLOSE_WRITE, `echo > f`
/// MODIFY (twice) then CLOSE_WRITE, `utimes` (Node's `fs.utimesSync`) ATTRIB alone, an atomic
/// replace MOVED_TO; the two events of one write may come in different reads.
#[derive(Default)]
struct Tally {
    /// Writes finished and not yet handed out.
    done: u64,
    /// A change seen and not yet closed: since when (monotonic ms), and whether it was an ATTRIB.
    open: Option<(u64, bool)>,
}

/// A change still open this long (ms) at a tick is counted: `touch` closes within microseconds.
pub const OPEN_MAX_MS: u64 = 20;

impl Tally {
    fn add(&mut self, e: FileEvent, now: u64) {
        match e {
            FileEvent::Written => {
                self.done += 1;
                self.open = None;
            }
            FileEvent::Attrib => {
                // A second ATTRIB without a close between: the first was a `utimes` of its own.
                if let Some((_, true)) = self.open {
                    self.done += 1;
                }
                self.open = Some((now, true));
            }
            FileEvent::Modified if self.open.is_none() => self.open = Some((now, false)),
            FileEvent::Modified | FileEvent::Other => {}
        }
    }

    fn flush(&mut self, now: u64, after: u64) {
        if let Some((since, _)) = self.open {
            if now.saturating_sub(since) >= after {
                self.done += 1;
                self.open = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_write_and_utimes_count_once_each() {
        let t = |evs: &[FileEvent]| {
            let mut t = Tally::default();
            evs.iter().for_each(|e| t.add(*e, 0));
            t.flush(1000, OPEN_MAX_MS);
            t.done
        };
        let (a, w, m) = (FileEvent::Attrib, FileEvent::Written, FileEvent::Modified);
        assert_eq!(t(&[]), 0);
        assert_eq!(t(&[a, w]), 1); // touch
        assert_eq!(t(&[m, m, w]), 1); // echo x > file
        assert_eq!(t(&[a]), 1); // utimes
        assert_eq!(t(&[a, a, a]), 3); // utimes thrice
        assert_eq!(t(&[a, w, a, w, a, w]), 3);
        assert_eq!(t(&[m]), 1); // a write still open at a tick
        assert_eq!(t(&[FileEvent::Written]), 1); // an atomic replace (MOVED_TO)
        // An open change is not counted before it is closed or old enough.
        let mut t = Tally::default();
        t.add(a, 100);
        t.flush(105, OPEN_MAX_MS);
        assert_eq!(t.done, 0);
        t.add(w, 106);
        assert_eq!(t.done, 1);
    }
}
