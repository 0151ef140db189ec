//! Where the job beats: a directory only the job's user can enter, holding the notify socket or the
//! heartbeat file, and the credential check on every datagram.
//!
//! Modes are set explicitly, never left to the umask: under umask 000 a directory made with the
//! default mode is 0777, and another user could then send `WATCHDOG=1` (keeping a hung job
//! "running"), write the heartbeat file, or swap the socket and get a healthy job killed. The
//! directory lives in the state directory (`<dir>/run/`), which is already checked to be the
//! user's own and private (protocol.md 2). A Unix socket path must fit in `sun_path` (108 bytes with
//! the NUL): when `<dir>/run/tether-XXXXXX/notify.sock` does not, the directory goes to
//! `$XDG_RUNTIME_DIR`, else `/tmp`, still mode 0700 and owned by the user. `run/`, the channel
//! directory and what is in it are made through descriptors (issue 14.6), as the store's files.
//!
//! Linux only: SO_PASSCRED / SCM_CREDENTIALS (the kernel stamps each datagram with the sender's
//! uid) is how a datagram from another user is told apart and refused.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Longest socket path `sun_path` takes (108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 107;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// One job's channel directory, opened: everything in it is made through `fd`, never by path, so
/// a component of `path` swapped for a symbolic link after the checks (issue 14.6) cannot send a
/// root wrapper's socket or file elsewhere. Removed (through `base`) when dropped.
pub struct ChanDir {
    fd: OwnedFd,
    base: OwnedFd,
    name: String,
    /// Where the job finds it (its `NOTIFY_SOCKET` / `TETHER_HEARTBEAT_FILE`), and for messages.
    path: PathBuf,
}

impl ChanDir {
    /// A path to `name` in this very directory for APIs that only take paths (`bind`): through
    /// the descriptor where the platform has such paths, else by name.
    fn through(&self, name: &str) -> PathBuf {
        crate::platform::path_at(self.fd.as_fd(), name).unwrap_or_else(|| self.path.join(name))
    }
}

impl Drop for ChanDir {
    fn drop(&mut self) {
        remove_flat(&self.base, &self.name);
    }
}

/// Checks an opened directory is ours and makes its mode exactly 0700 (the umask can only have
/// narrowed it; an older tether may have left it wider).
fn own_private(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| annotate(path, e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory
        || st.st_uid != rustix::process::geteuid().as_raw()
    {
        return Err(not_ours(path));
    }
    #[allow(clippy::unnecessary_cast)] // `st_mode` is u16 on some platforms
    if st.st_mode as u32 & 0o7777 != 0o700 {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(0o700)).map_err(|e| annotate(path, e.into()))?;
    }
    Ok(())
}

fn not_ours(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: not a directory owned by this user; remove it",
            path.display()
        ),
    )
}

/// Opens `<state>/run` through the opened state directory, making it (0700) if missing.
fn open_run(state: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let fd = match rustix::fs::openat(state, "run", DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(state, "run", Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(annotate(path, e.into())),
            }
            rustix::fs::openat(state, "run", DIR_FLAGS, Mode::empty())
        }
        other => other,
    };
    let fd = fd.map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => not_ours(path),
        e => annotate(path, e.into()),
    })?;
    own_private(&fd, path)?;
    Ok(fd)
}

/// A fresh private directory for one job's channel: in `<state>/run/` (reached through `state`,
/// the state directory opened and checked once), or where a socket path fits.
pub fn dir(state: BorrowedFd<'_>, state_path: &Path) -> io::Result<ChanDir> {
    // "tether-" and 6 random characters.
    let fits = |base: &Path| {
        let longest = base.join("tether-XXXXXX").join("notify.sock");
        longest.as_os_str().len() <= SUN_PATH_MAX
    };
    let mut last = io::Error::other("no usable directory for the heartbeat channel");
    let run_path = state_path.join("run");
    if fits(&run_path) {
        match open_run(state, &run_path) {
            Ok(run) => {
                sweep(&run);
                match make_in(run, &run_path, true) {
                    Ok(d) => return Ok(d),
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
    }
    let mut bases = Vec::new();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        bases.push(PathBuf::from(x));
    }
    bases.push(PathBuf::from("/tmp"));
    for base in bases.into_iter().filter(|b| fits(b)) {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(&base, flags, Mode::empty()) {
            Ok(fd) => match make_in(fd, &base, false) {
                Ok(d) => return Ok(d),
                Err(e) => last = e,
            },
            Err(e) => last = annotate(&base, e.into()),
        }
    }
    Err(last)
}

/// Makes `tether-XXXXXX` (mode 0700) in the opened `base` and opens it, never through a link.
fn make_in(base: OwnedFd, base_path: &Path, owner: bool) -> io::Result<ChanDir> {
    for attempt in 0u32..100 {
        let name = format!("tether-{}", random_suffix(attempt));
        let path = base_path.join(&name);
        match rustix::fs::mkdirat(&base, name.as_str(), Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(annotate(base_path, e.into())),
        }
        let fd = rustix::fs::openat(&base, name.as_str(), DIR_FLAGS, Mode::empty())
            .map_err(|e| annotate(&path, e.into()))?;
        own_private(&fd, &path)?;
        let d = ChanDir {
            fd,
            base,
            name,
            path,
        };
        if owner {
            write_owner(&d);
        }
        return Ok(d);
    }
    Err(annotate(
        base_path,
        io::Error::other("no free name for a channel directory"),
    ))
}

/// Six characters from `[a-z0-9]`, different on each call (a name clash is retried anyway).
fn random_suffix(attempt: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(attempt);
    let mut n = h.finish();
    (0..6)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(n % 36) as usize];
            n /= 36;
            c as char
        })
        .collect()
}

/// Who made a channel directory: `PID_NS PID START` of its wrapper, so a later wrapper can tell a
/// directory left by a SIGKILLed one (nothing else removes it) from one in use.
const OWNER: &str = "owner";

fn write_owner(dir: &ChanDir) {
    let me = std::process::id();
    if let (Some(ns), Some(start)) = (
        crate::process::pid_ns(),
        crate::process::start_token_any(me),
    ) {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        if let Ok(fd) = rustix::fs::openat(&dir.fd, OWNER, flags | OFlags::CLOEXEC, mode600()) {
            let _ = std::fs::File::from(fd).write_all(format!("{ns} {me} {start}\n").as_bytes());
        }
    }
}

fn mode600() -> Mode {
    Mode::from_raw_mode(0o600)
}

/// Removes the channel directory `name` in `base` and the files in it (it holds no
/// subdirectories), never following a link.
fn remove_flat(base: &OwnedFd, name: &str) {
    if let Ok(fd) = rustix::fs::openat(base, name, DIR_FLAGS, Mode::empty()) {
        if let Ok(entries) = rustix::fs::Dir::read_from(&fd) {
            for e in entries.flatten() {
                let n = e.file_name();
                if n.to_bytes() != b"." && n.to_bytes() != b".." {
                    let _ = rustix::fs::unlinkat(&fd, n, AtFlags::empty());
                }
            }
        }
    }
    let _ = rustix::fs::unlinkat(base, name, AtFlags::REMOVEDIR);
}

/// Reads a channel directory's owner file, through the opened `run`.
fn read_owner(run: &OwnedFd, name: &str) -> Option<String> {
    let d = rustix::fs::openat(run, name, DIR_FLAGS, Mode::empty()).ok()?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let f = rustix::fs::openat(&d, OWNER, flags, Mode::empty()).ok()?;
    let mut s = String::new();
    std::fs::File::from(f)
        .take(256)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Removes the channel directories in `run` whose wrapper is provably gone: same pid namespace as
/// ours, and its pid names no process or one with another start time. Anything unsure (another pid
/// namespace, an unreadable owner, a directory still being set up) is left alone, so a live job's
/// channel is never taken away.
fn sweep(run: &OwnedFd) {
    let Ok(entries) = rustix::fs::Dir::read_from(run) else {
        return;
    };
    let Some(our_ns) = crate::process::pid_ns() else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().to_str() else {
            continue;
        };
        if !name.starts_with("tether-") {
            continue;
        }
        let Some(owner) = read_owner(run, name) else {
            continue;
        };
        let mut f = owner.split_whitespace();
        let (Some(ns), Some(pid), Some(start)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let gone = ns == our_ns
            && match crate::process::probe(pid) {
                crate::verdict::Probe::Gone => true,
                crate::verdict::Probe::Alive { start: Some(s) } => s != start,
                _ => false,
            };
        if gone {
            remove_flat(run, name);
        }
    }
}

/// Binds the notify socket `name` in `dir` (through the descriptor, mode 0600) with SO_PASSCRED
/// on, so each datagram carries its sender's credentials. Returns the socket and the path the
/// job sends to.
pub fn bind(dir: &ChanDir, name: &str) -> io::Result<(tokio::net::UnixDatagram, PathBuf)> {
    let path = dir.path.join(name);
    let s = tokio::net::UnixDatagram::bind(dir.through(name)).map_err(|e| annotate(&path, e))?;
    rustix::fs::chmodat(&dir.fd, name, mode600(), AtFlags::empty())
        .map_err(|e| annotate(&path, e.into()))?;
    crate::platform::enable_sender_uids(&s).map_err(|e| annotate(&path, e))?;
    Ok((s, path))
}

/// Creates the empty heartbeat file `name` in `dir`, mode 0600, never through a link. Returns the
/// path the job writes to.
pub fn create_file(dir: &ChanDir, name: &str) -> io::Result<PathBuf> {
    let path = dir.path.join(name);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir.fd, name, flags, mode600())
        .map_err(|e| annotate(&path, e.into()))?;
    rustix::fs::fchmod(&fd, mode600()).map_err(|e| annotate(&path, e.into()))?;
    Ok(path)
}

/// One datagram read without waiting.
pub enum Received {
    /// From the job's user: this many bytes in the buffer.
    Accepted(usize),
    /// From another user (its uid; None when the kernel gave no credentials): dropped.
    Rejected(Option<u32>),
}

/// Reads one datagram without blocking (`WouldBlock` when none is queued) and checks that its
/// sender's uid is `uid`.
pub fn recv(sock: impl AsFd, buf: &mut [u8], uid: u32) -> io::Result<Received> {
    let (n, sender) = crate::platform::recv_with_uid(sock, buf)?;
    Ok(match sender {
        Some(u) if u == uid => Received::Accepted(n),
        other => Received::Rejected(other),
    })
}

fn annotate(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
