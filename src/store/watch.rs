//! The file store's `Watch`: a watch on `jobs/` (`platform::DirEvents`: inotify on Linux). Every record write ends in a
//! rename of `<id>.json` (protocol.md 6.1), so a `MOVED_TO` of that name is every change; a removal
//! of the name or of the directory itself wakes the waiter too.
//!
//! inotify comes from rustix (already a dependency) rather than the `notify` crate: the waiter
//! needs the raw fd inside its own `poll` set next to the holder's pidfd, which `notify`'s callback
//! thread would hide behind a channel.

use super::dir::Dir;
use crate::id::JobId;

/// A watch on `jobs/` for one record's changes; absent where the platform has no file events.
pub struct FileWatch {
    events: crate::platform::DirEvents,
    name: String,
}

impl FileWatch {
    pub(super) fn new(jobs: &Dir, id: &JobId) -> Option<FileWatch> {
        // Through the descriptor the store opened, not by name: the watch is on the directory
        // that was checked, whatever has been renamed since.
        let events =
            crate::platform::DirEvents::new(&jobs.proc_path(), crate::platform::Interest::Records)
                .ok()?;
        Some(FileWatch {
            events,
            name: format!("{id}.json"),
        })
    }
}

impl super::Watch for FileWatch {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.fd()
    }

    fn changed(&mut self) -> bool {
        let mut relevant = false;
        let name = self.name.as_bytes();
        self.events.read(&mut |file, _, overflowed| {
            // No name: the directory itself moved or went away.
            let ours = file.is_none_or(|n| n.to_bytes() == name);
            relevant |= ours || overflowed;
        });
        relevant
    }

    fn pause(&mut self) {
        self.events.pause();
    }

    fn resume(&mut self) -> bool {
        self.events.resume().is_ok()
    }
}
