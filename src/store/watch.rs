//! The file store's `Watch`: an inotify watch on `jobs/` (Linux). Every record write ends in a
//! rename of `<id>.json` (protocol.md 6.1), so a `MOVED_TO` of that name is every change; a removal
//! of the name or of the directory itself wakes the waiter too.
//!
//! inotify comes from rustix (already a dependency) rather than the `notify` crate: the waiter
//! needs the raw fd inside its own `poll` set next to the holder's pidfd, which `notify`'s callback
//! thread would hide behind a channel.

use super::dir::Dir;
use crate::id::JobId;

#[cfg(target_os = "linux")]
pub struct FileWatch {
    fd: std::os::fd::OwnedFd,
    name: String,
}

#[cfg(target_os = "linux")]
impl FileWatch {
    pub(super) fn new(jobs: &Dir, id: &JobId) -> Option<FileWatch> {
        use rustix::fs::inotify;
        let fd =
            inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).ok()?;
        let w = inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::CLOSE_WRITE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::DELETE_SELF
            | inotify::WatchFlags::MOVE_SELF;
        // Through the descriptor the store opened, not by name: the watch is on the directory
        // that was checked, whatever has been renamed since.
        inotify::add_watch(&fd, jobs.proc_path(), w).ok()?;
        Some(FileWatch {
            fd,
            name: format!("{id}.json"),
        })
    }
}

#[cfg(target_os = "linux")]
impl super::Watch for FileWatch {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn changed(&mut self) -> bool {
        use rustix::fs::inotify;
        use std::mem::MaybeUninit;
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut r = inotify::Reader::new(&self.fd, &mut buf);
        let mut relevant = false;
        loop {
            match r.next() {
                Ok(ev) => {
                    let ours = match ev.file_name() {
                        Some(n) => n.to_bytes() == self.name.as_bytes(),
                        None => true, // the directory itself moved or went away
                    };
                    if ours || ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                        relevant = true;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        relevant
    }
}

/// Without inotify the file store cannot notify: `watch` returns none and the waiter polls.
#[cfg(not(target_os = "linux"))]
pub enum FileWatch {}

#[cfg(not(target_os = "linux"))]
impl FileWatch {
    pub(super) fn new(_jobs: &Dir, _id: &JobId) -> Option<FileWatch> {
        None
    }
}

#[cfg(not(target_os = "linux"))]
impl super::Watch for FileWatch {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match *self {}
    }
    fn changed(&mut self) -> bool {
        match *self {}
    }
}
