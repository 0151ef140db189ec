//! macOS: identity from `proc_pidinfo(PROC_PIDTBSDINFO)` and `kern.bootsessionuuid`; waits,
//! signals, pipes and timers from `posix.rs`. Compiled and linted in CI for both darwin targets;
//! the calls below are not run there (see README, Platforms).

use std::io;
use std::os::fd::AsFd;

use super::Stat;

pub use super::posix::{ChildHandle, DirEvents, Pin, periodic_timer, pipe};

/// No `O_PATH` on macOS: directories are opened for reading to go through them.
pub const OPEN_THROUGH: rustix::fs::OFlags = rustix::fs::OFlags::RDONLY;

/// A path that names the open file `fd` itself (fdescfs).
pub fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/dev/fd/{}", fd.as_raw_fd()))
}

/// No process listing yet (`proc_listpids` with `PROC_PGRP_ONLY` would give one): group members
/// are not found one by one, and `kill(-pgid, 0)` decides whether a group lives.
pub const CAN_LIST: bool = false;

pub fn stat(pid: u32) -> Option<Stat> {
    let pid = i32::try_from(pid).ok()?;
    // SAFETY: `proc_bsdinfo` is plain old data (integers and byte arrays), so all-zero is valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as i32;
    // SAFETY: `info` is a live, writable `proc_bsdinfo` and `size` is its exact size, so the kernel
    // writes at most that many bytes into it.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast::<libc::c_void>(),
            size,
        )
    };
    if n != size {
        return None;
    }
    Some(Stat {
        ppid: info.pbi_ppid,
        pgrp: info.pbi_pgid,
        zombie: info.pbi_status == libc::SZOMB,
        start: format!(
            "macos:{}.{:06}",
            info.pbi_start_tvsec, info.pbi_start_tvusec
        ),
    })
}

pub fn stat_self() -> Option<Stat> {
    stat(std::process::id())
}

/// Not listed on macOS yet (see `CAN_LIST`).
pub fn all_pids() -> Vec<u32> {
    Vec::new()
}

/// Not read on macOS yet (`sysctl KERN_PROCARGS2` holds it): no process is tied to a job by its
/// environment there.
pub fn environ(_pid: u32) -> Option<Vec<u8>> {
    None
}

/// macOS has no pid namespaces: every process of a boot sees the same pids.
pub fn pid_ns() -> Option<String> {
    Some("global".to_owned())
}

pub fn boot_id() -> Option<String> {
    let mut buf = [0u8; 64];
    let mut len = buf.len();
    // SAFETY: the name is a NUL-terminated C string; `buf` is writable for `len` bytes and `len`
    // is updated by the kernel to the bytes written; no new value is set (null, 0).
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.bootsessionuuid".as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || len == 0 {
        return None;
    }
    let s = String::from_utf8_lossy(&buf[..len.min(buf.len())])
        .trim_end_matches('\0')
        .trim()
        .to_owned();
    (!s.is_empty()).then_some(s)
}

/// No time namespaces on macOS.
pub fn time_ns() -> Option<String> {
    None
}

/// macOS cannot tell a child that its parent died: a SIGKILLed wrapper leaves its child running.
/// Readers then judge the job lost when its lease expires, and `tether cancel` stops the
/// recorded process group by identity.
pub fn die_with_parent() -> io::Result<()> {
    Ok(())
}

/// macOS has no subreapers: orphans go to launchd.
pub fn become_subreaper() -> io::Result<bool> {
    Ok(false)
}

/// No per-datagram credentials on macOS: the socket's private (0700) directory keeps other users
/// out instead.
pub fn enable_sender_uids(_sock: impl AsFd) -> io::Result<()> {
    Ok(())
}

/// Reads one datagram without blocking; the sender's uid is unknown here, so this process's own
/// uid is reported (only it, or root, can reach the socket's private directory).
pub fn recv_with_uid(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    let len = buf.len();
    let n = rustix::net::recv(sock, buf, rustix::net::RecvFlags::DONTWAIT)?.0;
    Ok((n.min(len), Some(rustix::process::geteuid().as_raw())))
}

/// The abstract socket namespace is Linux's; a `NOTIFY_SOCKET=@name` cannot be reached here.
pub fn send_to_abstract(
    _sock: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    _msg: &[u8],
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "NOTIFY_SOCKET @{} is in Linux's abstract namespace, which macOS does not have",
            String::from_utf8_lossy(name)
        ),
    ))
}
