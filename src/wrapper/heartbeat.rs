//! Heartbeat modes: what counts as the job making progress, and the channel the job beats through.
//!
//! A live pid is not progress (a worker blocked forever on a dead broker is alive). The modes let a
//! job prove progress in whatever way suits it: systemd's notify protocol, touching a file, or simply
//! printing output. `Beats` holds the deadline; the channels only feed it.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::clock::Timestamp;
use crate::notify::{self, Notice};
use crate::record::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    None,
    Notify,
    File,
    Output,
}

/// The beat deadline and the progress the job reported, on the wrapper's monotonic clock.
#[derive(Clone, Debug)]
pub struct Beats {
    pub timeout_ms: u64,
    pub deadline_ms: u64,
    pub progress: Progress,
    /// Progress changed since the last successful renewal.
    pub dirty: bool,
    /// The job reported its own failure (`WATCHDOG=trigger`).
    pub triggered: bool,
}

impl Beats {
    pub fn new(timeout_ms: u64, now_ms: u64) -> Beats {
        Beats {
            timeout_ms,
            deadline_ms: now_ms + timeout_ms,
            progress: Progress::default(),
            dirty: false,
            triggered: false,
        }
    }

    pub fn beat(&mut self, now_ms: u64, n: u64) {
        self.deadline_ms = self.deadline_ms.max(now_ms + self.timeout_ms);
        self.progress.count += n;
        self.progress.at = Some(Timestamp::now());
        self.dirty = true;
    }

    pub fn status(&mut self, msg: String) {
        if self.progress.message.as_deref() != Some(&msg) {
            self.progress.message = Some(msg);
            self.progress.at = Some(Timestamp::now());
            self.dirty = true;
        }
    }

    pub fn apply(&mut self, n: Notice, now_ms: u64) {
        match n {
            Notice::Watchdog => self.beat(now_ms, 1),
            Notice::WatchdogTrigger => self.triggered = true,
            Notice::Status(s) => self.status(s),
            Notice::Ready | Notice::Stopping => {}
            Notice::ExtendTimeoutUsec(us) => self.deadline_ms = now_ms + us / 1000,
            Notice::WatchdogUsec(us) => {
                self.timeout_ms = (us / 1000).max(1);
                self.deadline_ms = now_ms + self.timeout_ms;
            }
        }
    }

    /// A required beat is missing: the job stalled (or said it failed).
    pub fn stalled(&self, now_ms: u64) -> bool {
        self.triggered || now_ms > self.deadline_ms
    }
}

/// The private directory and the channel the job beats through.
pub struct Channel {
    pub mode: Mode,
    _dir: Option<tempfile::TempDir>,
    pub socket: Option<(tokio::net::UnixDatagram, PathBuf)>,
    file: Option<(PathBuf, Option<Stamp>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i128,
    size: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        size: m.size(),
        ino: m.ino(),
    })
}

/// Unix socket paths must fit in `sun_path` (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

fn private_dir() -> io::Result<tempfile::TempDir> {
    let mut bases = Vec::new();
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| Path::new(x).is_absolute()) {
        bases.push(PathBuf::from(x));
    }
    bases.push(PathBuf::from("/tmp"));
    let mut last = io::Error::other("no usable directory for the heartbeat channel");
    for base in bases {
        // tempfile creates the directory with mode 0700: only our user can beat.
        match tempfile::Builder::new().prefix("tether-").tempdir_in(&base) {
            Ok(d) if d.path().join("notify.sock").as_os_str().len() <= SUN_PATH_MAX => {
                return Ok(d);
            }
            Ok(_) => {}
            Err(e) => {
                last = io::Error::new(e.kind(), format!("{}: {e}", base.display()));
            }
        }
    }
    Err(last)
}

impl Channel {
    /// Sets up the channel; needs a tokio runtime (the notify socket registers with it).
    pub fn open(mode: Mode) -> io::Result<Channel> {
        let mut ch = Channel {
            mode,
            _dir: None,
            socket: None,
            file: None,
        };
        match mode {
            Mode::None | Mode::Output => {}
            Mode::Notify => {
                let d = private_dir()?;
                let p = d.path().join("notify.sock");
                let s = tokio::net::UnixDatagram::bind(&p)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
                ch.socket = Some((s, p));
                ch._dir = Some(d);
            }
            Mode::File => {
                let d = private_dir()?;
                let p = d.path().join("heartbeat");
                std::fs::write(&p, b"")
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
                ch.file = Some((p.clone(), stamp(&p)));
                ch._dir = Some(d);
            }
        }
        Ok(ch)
    }

    /// Environment for the child: its end of the channel, and nothing left over from an outer job's.
    pub fn env(&self, ttl_ms: u64) -> (Vec<(String, OsString)>, Vec<&'static str>) {
        let mut set = Vec::new();
        let mut remove = vec![
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "TETHER_HEARTBEAT_FILE",
        ];
        if let Some((_, p)) = &self.socket {
            set.push(("NOTIFY_SOCKET".into(), p.clone().into_os_string()));
            set.push(("WATCHDOG_USEC".into(), (ttl_ms * 1000).to_string().into()));
            remove.retain(|k| *k != "NOTIFY_SOCKET" && *k != "WATCHDOG_USEC");
        }
        if let Some((p, _)) = &self.file {
            set.push(("TETHER_HEARTBEAT_FILE".into(), p.clone().into_os_string()));
            remove.retain(|k| *k != "TETHER_HEARTBEAT_FILE");
        }
        (set, remove)
    }

    /// Waits for the next datagram on the notify socket (forever in the other modes).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.socket {
            Some((s, _)) => s.recv(buf).await,
            None => std::future::pending().await,
        }
    }

    /// Takes in whatever beats are waiting without blocking: queued datagrams (the wrapper may just
    /// have been stopped while the job kept beating) and a changed heartbeat file.
    pub fn poll(&mut self, beats: &mut Beats) {
        let now = crate::clock::mono_ms();
        if let Some((s, _)) = &self.socket {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.try_recv(&mut buf) {
                for notice in notify::parse(&buf[..n]) {
                    beats.apply(notice, now);
                }
            }
        }
        if let Some((p, last)) = &mut self.file {
            let cur = stamp(p);
            if cur.is_some() && cur != *last {
                *last = cur;
                beats.beat(now, 1);
                if let Some(line) = first_line(p) {
                    beats.status(line);
                }
            }
        }
    }
}

fn first_line(p: &Path) -> Option<String> {
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.chars().take(notify::MAX_STATUS_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_moves_with_beats_and_notices() {
        let mut b = Beats::new(1000, 0);
        assert!(!b.stalled(1000));
        assert!(b.stalled(1001));
        b.beat(900, 1);
        assert!(!b.stalled(1900));
        b.apply(Notice::ExtendTimeoutUsec(10_000_000), 1000);
        assert!(!b.stalled(10_999));
        b.apply(Notice::WatchdogUsec(500_000), 2000);
        assert!(b.stalled(2501));
        b.apply(Notice::Status("x".into()), 2000);
        assert_eq!(b.progress.message.as_deref(), Some("x"));
        assert_eq!(b.progress.count, 1);
        b.apply(Notice::WatchdogTrigger, 2000);
        assert!(b.stalled(2000));
    }
}
