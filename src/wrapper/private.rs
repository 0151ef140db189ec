//! Where the job beats: a directory only the job's user can enter, holding the notify socket or the
//! heartbeat file, and the credential check on every datagram.
//!
//! Modes are set explicitly, never left to the umask: under umask 000 a directory made with the
//! default mode is 0777, and another user could then send `WATCHDOG=1` (keeping a hung job
//! "running"), write the heartbeat file, or swap the socket and get a healthy job killed. The
//! directory lives in the state directory (`<dir>/run/`), which is already checked to be the
//! user's own and private (protocol.md 2). A Unix socket path must fit in `sun_path` (108 bytes with
//! the NUL): when `<dir>/run/tether-XXXXXX/notify.sock` does not, the directory goes to
//! `$XDG_RUNTIME_DIR`, else `/tmp`, still mode 0700 and owned by the user.
//!
//! Linux only: SO_PASSCRED / SCM_CREDENTIALS (the kernel stamps each datagram with the sender's
//! uid) is how a datagram from another user is told apart and refused.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest socket path `sun_path` takes (108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 107;

/// Makes `path` a directory of ours with mode exactly 0700 (created if missing). Refuses a symlink,
/// a non-directory, or a directory of another user.
fn own_private_dir(path: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(annotate(path, e)),
    }
    let md = std::fs::symlink_metadata(path).map_err(|e| annotate(path, e))?;
    if !md.is_dir() || md.uid() != rustix::process::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: not a directory owned by this user; remove it",
                path.display()
            ),
        ));
    }
    if md.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| annotate(path, e))?;
    }
    Ok(())
}

/// A fresh private directory for one job's channel: in `<state>/run/`, or where a socket path fits.
pub fn dir(state_root: &Path) -> io::Result<tempfile::TempDir> {
    let mut bases = vec![state_root.join("run")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        bases.push(PathBuf::from(x));
    }
    bases.push(PathBuf::from("/tmp"));
    let mut last = io::Error::other("no usable directory for the heartbeat channel");
    for (i, base) in bases.iter().enumerate() {
        // "tether-" and 6 random characters, as tempfile makes them.
        let longest = base.join("tether-XXXXXX").join("notify.sock");
        if longest.as_os_str().len() > SUN_PATH_MAX {
            continue;
        }
        if i == 0 {
            if let Err(e) = own_private_dir(base) {
                last = e;
                continue;
            }
            sweep(base);
        }
        let made = tempfile::Builder::new()
            .prefix("tether-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base);
        match made {
            Ok(d) => {
                // The umask can only have narrowed 0700; make it exact.
                std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| annotate(d.path(), e))?;
                if i == 0 {
                    write_owner(d.path());
                }
                return Ok(d);
            }
            Err(e) => last = annotate(base, e),
        }
    }
    Err(last)
}

/// Who made a channel directory: `PID_NS PID START` of its wrapper, so a later wrapper can tell a
/// directory left by a SIGKILLed one (nothing else removes it) from one in use.
const OWNER: &str = "owner";

fn write_owner(dir: &Path) {
    let me = std::process::id();
    if let (Some(ns), Some(start)) = (
        crate::process::pid_ns(),
        crate::process::start_token_any(me),
    ) {
        let _ = std::fs::write(dir.join(OWNER), format!("{ns} {me} {start}\n"));
    }
}

/// Removes the channel directories in `run` whose wrapper is provably gone: same pid namespace as
/// ours, and its pid names no process or one with another start time. Anything unsure (another pid
/// namespace, an unreadable owner, a directory still being set up) is left alone, so a live job's
/// channel is never taken away.
fn sweep(run: &Path) {
    let Ok(entries) = std::fs::read_dir(run) else {
        return;
    };
    let Some(our_ns) = crate::process::pid_ns() else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_ours = e.file_name().to_string_lossy().starts_with("tether-")
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !is_ours {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join(OWNER)) else {
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
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Binds the notify socket at `path` (mode 0600) with SO_PASSCRED on, so each datagram carries
/// its sender's credentials.
pub fn bind(path: &Path) -> io::Result<tokio::net::UnixDatagram> {
    let s = tokio::net::UnixDatagram::bind(path).map_err(|e| annotate(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| annotate(path, e))?;
    crate::platform::enable_sender_uids(&s).map_err(|e| annotate(path, e))?;
    Ok(s)
}

/// Creates the empty heartbeat file at `path`, mode 0600.
pub fn create_file(path: &Path) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| annotate(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| annotate(path, e))
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
