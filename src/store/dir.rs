//! The state directory, opened once (protocol.md section 2).
//!
//! Checking a path and then using it by name is a race: between the two, anyone who can write one
//! of the path's directories can swap a component for a symbolic link, and a root wrapper would
//! then create its lease and lock files wherever the link points (O_NOFOLLOW guards only the last
//! component). So the state directory and `jobs/` are opened once, one component at a time, each
//! without following a link that someone else could have planted; the checks (a directory, ours,
//! closed to others) are made on the opened descriptors, and every file of the store is then
//! reached relative to them (`openat`, `renameat`, `linkat`, `unlinkat`, `statat`). A component
//! swapped after that changes nothing: the descriptors still name the directories that were checked.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{DirProblem, StoreError};

/// The resolved state directory (protocol.md section 2): where it is, not yet opened.
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
                why: DirProblem::NoLocation,
            });
        };
        Ok(StateDir { root })
    }

    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }
}

/// Symbolic links followed while opening one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;
/// Times one component may turn out to have been replaced between an open and a stat (someone
/// swapping it back and forth) before we give up on it.
const MAX_CHANGES: usize = 100;

/// How intermediate components are opened: only to go through them (no read permission needed
/// where the platform allows it).
const THROUGH: OFlags = crate::platform::OPEN_THROUGH;

/// An opened, checked directory of the store, and its path for messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Maps an I/O error on `path` to the store's typed errors (read-only, full, or plain I/O).
pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |err| match err.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::ROFS) => StoreError::ReadOnly(path.parent().unwrap_or(path).to_path_buf()),
        Some(Errno::NOSPC) => StoreError::NoSpace(path.to_path_buf()),
        _ => StoreError::Io {
            path: path.to_path_buf(),
            err,
        },
    }
}

/// Our effective uid, asked once: tether never changes it, and each directory check needs it.
fn me() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| rustix::process::geteuid().as_raw())
}

/// Whether only we (or root) could have put a symbolic link named in `parent` there, and only we
/// or root could replace it: the directory is ours or root's and closed to others, or it is sticky
/// (as /tmp) and the link itself is ours or root's.
#[allow(clippy::unnecessary_cast)] // `st_mode` is u16 on some platforms
fn link_is_trusted(parent: &Stat, link: &Stat) -> bool {
    let trusted = |uid: u32| uid == 0 || uid == me();
    let mode = parent.st_mode as u32;
    trusted(parent.st_uid)
        && (mode & 0o022 == 0 || (mode & Mode::SVTX.bits() as u32 != 0 && trusted(link.st_uid)))
}

impl Dir {
    /// Opens the directory at `path` component by component (creating missing ones, mode 0700,
    /// when `create`), then checks the result is a private directory of ours.
    pub fn open_private(path: &Path, create: bool) -> Result<Dir, StoreError> {
        let fd = walk(path, create)?;
        let dir = Dir {
            fd,
            path: path.to_path_buf(),
        };
        dir.check()?;
        Ok(dir)
    }

    /// Opens the subdirectory `name` (never through a symbolic link) and checks it; `None` when it
    /// does not exist and `create` is false.
    pub fn open_sub(&self, name: &str, create: bool) -> Result<Option<Dir>, StoreError> {
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut made = false;
        let mut changed = 0;
        loop {
            match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
                Ok(fd) => {
                    let dir = Dir { fd, path };
                    dir.check()?;
                    return Ok(Some(dir));
                }
                Err(Errno::NOENT) if create && !made => {
                    match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => made = true,
                        Err(e) => return Err(io_err(&path)(e.into())),
                    }
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let why = match self
                        .stat(name)
                        .map(|st| FileType::from_raw_mode(st.st_mode))
                    {
                        Ok(FileType::Directory) if changed < MAX_CHANGES => {
                            // Replaced between the open and the stat: look again.
                            changed += 1;
                            continue;
                        }
                        Ok(FileType::Symlink) => DirProblem::Symlink,
                        _ => DirProblem::NotDir,
                    };
                    return Err(StoreError::Dir { path, why });
                }
                Err(e) => return Err(io_err(&path)(e.into())),
            }
        }
    }

    /// The checks of protocol.md section 2, on the opened descriptor itself.
    fn check(&self) -> Result<(), StoreError> {
        let st = rustix::fs::fstat(&self.fd).map_err(|e| io_err(&self.path)(e.into()))?;
        let bad = |why| StoreError::Dir {
            path: self.path.clone(),
            why,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(bad(DirProblem::NotDir));
        }
        if st.st_uid != me() {
            return Err(bad(DirProblem::Owner {
                uid: st.st_uid,
                me: me(),
            }));
        }
        let mode = st.st_mode as u32 & 0o7777;
        if mode & 0o022 != 0 {
            return Err(bad(DirProblem::OpenToOthers { mode }));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn open(&self, name: &str, flags: OFlags, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as _),
        )?;
        Ok(File::from(fd))
    }

    /// `lstat` of `name`: a symbolic link is described, never followed.
    pub fn stat(&self, name: &str) -> io::Result<Stat> {
        Ok(rustix::fs::statat(
            &self.fd,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Links `from` as `to`; fails with `AlreadyExists` if `to` exists (an exclusive create).
    pub fn link(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &self.fd,
            from,
            &self.fd,
            to,
            AtFlags::empty(),
        )?)
    }

    pub fn unlink(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Every name in the directory but `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        crate::platform::dir_names(self.fd.as_fd())
    }

    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// A path naming this very directory (not its name, which may have been swapped since), for
    /// APIs that only take paths (inotify).
    pub fn proc_path(&self) -> PathBuf {
        use std::os::fd::AsFd;
        crate::platform::fd_path(self.fd.as_fd())
    }
}

/// Opens `path` one component at a time. A symbolic link is followed only where no one but us or
/// root could have planted it (`link_is_trusted`), and never as the last component.
fn walk(path: &Path, create: bool) -> Result<OwnedFd, StoreError> {
    if path.as_os_str().is_empty() {
        // Not "the current directory": an empty `--dir ""` names nothing.
        return Err(StoreError::Dir {
            path: path.to_path_buf(),
            why: DirProblem::Missing,
        });
    }
    // The common case, a path without links, in one call; the walk below decides every other
    // case (a link to check, a component to create, an error to name).
    if let Some(fd) = crate::platform::open_dir_without_links(path) {
        return Ok(fd);
    }
    let open_dir = |at: &OwnedFd, name: &OsStr, last: bool| {
        let through = if last { OFlags::RDONLY } else { THROUGH };
        rustix::fs::openat(
            at,
            name,
            through | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let start = |abs: bool| {
        let from = if abs { "/" } else { "." };
        rustix::fs::open(
            from,
            THROUGH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path)(e.into()))
    };
    let mut cur = start(path.is_absolute())?;
    // Components still to walk, in reverse so the next one is at the end.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut links = 0;
    // Where we are, for messages: the prefix of `path` opened so far (links shown as written).
    let mut here = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let mut readable = false;
    'walk: while let Some(name) = todo.pop() {
        let last = todo.is_empty();
        let at = here.join(&name);
        let mut made = false;
        let mut changed = 0;
        let fd = loop {
            match open_dir(&cur, &name, last) {
                Ok(fd) => break fd,
                Err(Errno::NOENT) if create && !made => {
                    match rustix::fs::mkdirat(&cur, name.as_os_str(), Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => made = true,
                        Err(e) => return Err(io_err(&at)(e.into())),
                    }
                }
                Err(Errno::NOENT) => {
                    return Err(StoreError::Dir {
                        path: if last { path.to_path_buf() } else { at },
                        why: DirProblem::Missing,
                    });
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let Some(target) =
                        not_a_dir(&cur, &name, &here, path, last, changed < MAX_CHANGES)?
                    else {
                        // Replaced by a directory between the open and the stat: look again.
                        changed += 1;
                        continue;
                    };
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io_err(&at)(Errno::LOOP.into()));
                    }
                    if target.is_absolute() {
                        cur = start(true)?;
                    }
                    // A relative target goes on from the link's own directory, `cur`.
                    push_components(&mut todo, &target);
                    continue 'walk;
                }
                Err(e) => return Err(io_err(&at)(e.into())),
            }
        };
        cur = fd;
        here = at;
        readable = last;
    }
    if readable {
        return Ok(cur);
    }
    // `path` was "/" or ".": reopen it readable, as a directory we list and sync.
    rustix::fs::openat(
        &cur,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(path)(e.into()))
}

/// `name` in `cur` did not open as a directory (LOOP or NOTDIR). `Ok(None)`: it is a directory
/// now, swapped in since the open, so the caller may look again (`may_retry`). `Ok(Some(target))`:
/// a symbolic link that only we or root could have planted, not the last component, so it may be
/// followed. Anything else is the error a user sees.
fn not_a_dir(
    cur: &OwnedFd,
    name: &OsStr,
    here: &Path,
    path: &Path,
    last: bool,
    may_retry: bool,
) -> Result<Option<PathBuf>, StoreError> {
    let at = here.join(name);
    let link = rustix::fs::statat(cur, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err(&at)(e.into()))?;
    let kind = FileType::from_raw_mode(link.st_mode);
    if kind == FileType::Directory && may_retry {
        return Ok(None);
    }
    let whole_or_here = if last { path.to_path_buf() } else { at.clone() };
    if kind != FileType::Symlink {
        return Err(StoreError::Dir {
            path: whole_or_here,
            why: DirProblem::NotDir,
        });
    }
    if last {
        return Err(StoreError::Dir {
            path: path.to_path_buf(),
            why: DirProblem::Symlink,
        });
    }
    let parent = rustix::fs::fstat(cur).map_err(|e| io_err(here)(e.into()))?;
    if !link_is_trusted(&parent, &link) {
        return Err(StoreError::Dir {
            path: path.to_path_buf(),
            why: DirProblem::UntrustedLink {
                link: at,
                uid: parent.st_uid,
                mode: parent.st_mode as u32 & 0o7777,
            },
        });
    }
    let target =
        rustix::fs::readlinkat(cur, name, Vec::new()).map_err(|e| io_err(&at)(e.into()))?;
    Ok(Some(PathBuf::from(OsStr::from_bytes(target.as_bytes()))))
}

/// Pushes `p`'s components onto `todo` in reverse; `/` and `.` need no step of their own.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// Opens (creating, mode 0600) a job's lock or lease file for reading and writing, never through a
/// symbolic link: both are kept open and written while the record they guard is live.
pub fn open_private_rw(dir: &Dir, name: &str) -> io::Result<File> {
    dir.open(name, OFlags::RDWR | OFlags::CREATE, 0o600)
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
