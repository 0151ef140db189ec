//! macOS: identity from `proc_pidinfo(PROC_PIDTBSDINFO)` and `kern.bootsessionuuid`; a group's
//! pids from `proc_listpids(PROC_PGRP_ONLY)` and a process's environment from `sysctl
//! KERN_PROCARGS2` (parsed in `procargs.rs`, which is unit-tested everywhere); waiting for
//! a process to exit (`EVFILT_PROC` `NOTE_EXIT`) and for files to change (`EVFILT_VNODE`) with
//! kqueue, and the renewal timer too (`EVFILT_TIMER`); the wrapper's child and pipes from
//! `posix.rs`. Compiled and linted in CI for
//! both darwin targets; the calls below are not run there (see README, Platforms).

use std::io;
use std::os::fd::AsFd;

use super::Stat;

pub use super::posix::{ChildHandle, pipe, read_signal, signal_fd, unblock_signals};
pub use kq::{DirEvents, Pin, pause_timer, periodic_timer, resume_timer, take_tick};

/// No `O_PATH` on macOS: directories are opened for reading to go through them.
pub const OPEN_THROUGH: rustix::fs::OFlags = rustix::fs::OFlags::RDONLY;

/// Every name in the directory `dir` but `.` and `..`.
pub fn dir_names(dir: std::os::fd::BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// No single call opens a path without following any link here: always None, and the caller
/// walks it one component at a time.
pub fn open_dir_without_links(_path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    None
}

/// A path that names the open file `fd` itself (fdescfs).
pub fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    std::path::PathBuf::from(format!("/dev/fd/{}", fd.as_raw_fd()))
}

/// None: `/dev/fd/N` of a directory cannot be walked into on macOS, so callers use the name.
pub fn path_at(_dir: std::os::fd::BorrowedFd<'_>, _name: &str) -> Option<std::path::PathBuf> {
    None
}

/// What `proc_pidinfo(PROC_PIDTBSDINFO)` says of `pid`. Its `arg` is 1 so that zombies are found
/// too (xnu looks them up only when `arg` is non-zero): as on Linux, an exited but unreaped
/// process shows as a zombie with its start time, which is what lets the wrapper, holding its
/// exited child unreaped, still prove the group is the child's before signalling it. macOS answers
/// only for processes of the caller's uid (root: any): another user's process has no `Stat` here,
/// so it is never proven to be a job's, nor counted as a survivor.
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
            1,
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

/// CPU time a whole process has used, in ns: user and system time of all its threads, exited
/// ones included (`proc_pidinfo(PROC_PIDTASKINFO)`), which macOS counts in Mach absolute-time
/// units (nanoseconds on Intel, not on Apple silicon), so converted by the timebase. Own uid
/// only (root: any); None otherwise or once it is gone. For the benchmark's idle-cost rows.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    // SAFETY: `proc_taskinfo` is plain old data (integers), so all-zero is valid.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as i32;
    // SAFETY: `info` is a live, writable `proc_taskinfo` and `size` is its exact size, so the
    // kernel writes at most that many bytes into it.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast::<libc::c_void>(),
            size,
        )
    };
    if n != size {
        return None;
    }
    let (numer, denom) = timebase()?;
    let ticks = u128::from(info.pti_total_user) + u128::from(info.pti_total_system);
    u64::try_from(ticks * u128::from(numer) / u128::from(denom)).ok()
}

/// The ratio from Mach absolute-time units to nanoseconds. The `libc` crate marks the call
/// deprecated in favour of the `mach2` crate; one call does not warrant a new dependency.
#[allow(deprecated)]
fn timebase() -> Option<(u32, u32)> {
    let mut tb = libc::mach_timebase_info { numer: 0, denom: 0 };
    // SAFETY: the call only writes the struct it is given.
    let rc = unsafe { libc::mach_timebase_info(&mut tb) };
    (rc == 0 && tb.denom != 0).then_some((tb.numer, tb.denom))
}

pub fn stat_self() -> Option<Stat> {
    stat(std::process::id())
}

/// `PROC_PGRP_ONLY` from `<sys/proc_info.h>` (not in the `libc` crate): list one group's pids.
const PROC_PGRP_ONLY: u32 = 2;

/// The pids the kernel lists in process group `pgid` (`proc_listpids(PROC_PGRP_ONLY)`); the
/// caller still checks each with [`stat`], as a pid can leave the group or exit meanwhile. None
/// when the call fails.
pub fn group_candidates(pgid: u32) -> Option<Vec<u32>> {
    i32::try_from(pgid).ok()?; // a pid_t, passed as the call's u32 `typeinfo`
    let int = std::mem::size_of::<libc::c_int>();
    // The group can grow between the sizing and the listing: a listing that fills the buffer
    // may have been cut short, so it is taken again with four times the room.
    let mut room = 256usize;
    while room <= 1 << 20 {
        let mut pids: Vec<libc::c_int> = vec![0; room];
        let bytes = libc::c_int::try_from(room * int).ok()?;
        // `proc_listpids` returns 0 both for an empty group and on failure (errno set): errno is
        // cleared first to tell them apart.
        // SAFETY: `__error` returns this thread's errno location, valid for the thread's life.
        unsafe { *libc::__error() = 0 };
        // SAFETY: `pids` is a live, writable buffer of exactly `bytes` bytes, and the kernel
        // writes at most `bytes` bytes of pids into it.
        let n = unsafe {
            libc::proc_listpids(
                PROC_PGRP_ONLY,
                pgid,
                pids.as_mut_ptr().cast::<libc::c_void>(),
                bytes,
            )
        };
        let n = usize::try_from(n).ok()?;
        if n == 0 && io::Error::last_os_error().raw_os_error() != Some(0) {
            return None;
        }
        if n < room * int {
            pids.truncate(n / int);
            return Some(
                pids.into_iter()
                    .filter_map(|p| u32::try_from(p).ok().filter(|p| *p > 0))
                    .collect(),
            );
        }
        room *= 4;
    }
    None
}

/// A process's environment (NUL-separated) as its `KERN_PROCARGS2` holds it: the strings the
/// process was exec'd with, as still laid out in its memory. macOS returns it only for processes
/// of the caller's own uid (root: any): for another user's process this is None, and that process
/// cannot be tied to a job by its environment.
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    let buf = procargs2(pid)?;
    let args = super::procargs::parse(&buf)?;
    Some(args.env.join(&0u8))
}

/// The raw `sysctl {CTL_KERN, KERN_PROCARGS2, pid}` buffer, sized by `KERN_ARGMAX` (the most a
/// process's arguments and environment can take).
fn procargs2(pid: u32) -> Option<Vec<u8>> {
    let pid = libc::c_int::try_from(pid).ok()?;
    let mut argmax: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    let mut mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
    // SAFETY: `mib` holds the 2 names passed; `argmax` is a writable c_int and `len` its exact
    // size, which the kernel does not exceed; nothing is set (null, 0).
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            2,
            (&mut argmax as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || argmax <= 0 {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(argmax).ok()?];
    let mut len = buf.len();
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    // SAFETY: `mib` holds the 3 names passed; `buf` is writable for `len` bytes, and the kernel
    // writes at most that many and stores the count in `len`; nothing is set (null, 0).
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    Some(buf)
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

#[path = "macos_kqueue.rs"]
mod kq;
