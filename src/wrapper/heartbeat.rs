//! Heartbeat modes: what counts as the job making progress, and the channel the job beats through.
//!
//! A live pid is not progress (a worker blocked forever on a dead broker is alive). The modes let a
//! job prove progress in whatever way suits it: systemd's notify protocol, touching a file, or simply
//! printing output. `Beats` holds the deadline; the channels only feed it.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::private::{self, Received};
use super::sd_notify::{self, Notice};
use super::watch::{self, FileWatch};
use crate::clock::Timestamp;
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

    /// The job declares a silence of `ms` (cut to `MAX_EXTEND`): the next beat is due no sooner
    /// than that. Readers see until when in `progress.extended_until`.
    pub fn extend(&mut self, ms: u64, now_ms: u64) {
        let ms = ms.min(super::MAX_EXTEND_MS);
        self.deadline_ms = self.deadline_ms.max(now_ms + ms);
        self.progress.extended_until = Some(Timestamp::now().plus_ms(ms as i64));
        self.dirty = true;
    }

    /// A probe's outcome, kept with the progress (written to the record when it changes).
    pub fn probe(&mut self, o: crate::record::ProbeOutcome) {
        self.progress.probe = Some(o);
        self.dirty = true;
    }

    /// The count of datagrams refused from other users, kept with the progress.
    pub fn rejected(&mut self, n: u64) {
        if self.progress.rejected != n {
            self.progress.rejected = n;
            self.dirty = true;
        }
    }

    pub fn apply(&mut self, n: Notice, now_ms: u64) {
        match n {
            Notice::Watchdog => self.beat(now_ms, 1),
            Notice::WatchdogTrigger => self.triggered = true,
            Notice::Status(s) => self.status(s),
            Notice::Ready | Notice::Stopping => {}
            Notice::ExtendTimeoutUsec(us) => self.extend(us / 1000, now_ms),
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
    _dir: Option<private::ChanDir>,
    pub socket: Option<(tokio::net::UnixDatagram, PathBuf)>,
    file: Option<(PathBuf, Option<Stamp>)>,
    /// Wakes the wrapper on each change of the heartbeat file; None where inotify is unavailable
    /// (then the file is compared once per tick).
    watch: Option<FileWatch>,
    /// The only uid whose datagrams count: the job's (the wrapper's real uid, which the child
    /// inherits, and which the kernel reports for a sender).
    uid: u32,
    /// Datagrams refused because another user sent them.
    pub rejected: u64,
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

impl Channel {
    /// Sets up the channel in a private directory (see `private`), under the opened state
    /// directory `state` (at `state_root`) where the socket path fits; needs a tokio runtime (the
    /// notify socket registers with it).
    pub fn open(mode: Mode, state: BorrowedFd<'_>, state_root: &Path) -> io::Result<Channel> {
        let mut ch = Channel {
            mode,
            _dir: None,
            socket: None,
            file: None,
            watch: None,
            uid: rustix::process::getuid().as_raw(),
            rejected: 0,
        };
        match mode {
            Mode::None | Mode::Output => {}
            Mode::Notify => {
                let d = private::dir(state, state_root)?;
                ch.socket = Some(private::bind(&d, "notify.sock")?);
                ch._dir = Some(d);
            }
            Mode::File => {
                let d = private::dir(state, state_root)?;
                let p = private::create_file(&d, "heartbeat")?;
                ch.watch = FileWatch::new(&p).ok();
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

    /// Waits for the next beat: a datagram from the job's user, or a change of the heartbeat file
    /// (forever in the other modes). Datagrams from anyone else are dropped and counted in
    /// `rejected`.
    /// What the idle wait (`idle.rs`) must sleep on for this channel: Some(None) when nothing,
    /// Some(fd) for the notify socket, None when a beat can also come another way (a heartbeat
    /// file, watched or compared per tick), which only the event loop proper handles.
    pub fn idle_fd(&self) -> Option<Option<std::os::fd::BorrowedFd<'_>>> {
        use std::os::fd::AsFd as _;
        match self.mode {
            Mode::None | Mode::Output => Some(None),
            Mode::Notify => self.socket.as_ref().map(|(s, _)| Some(s.as_fd())),
            Mode::File => None,
        }
    }

    pub async fn next(&mut self, buf: &mut [u8]) -> Beat {
        if let Some(w) = &mut self.watch {
            return Beat::File(w.changed().await);
        }
        let Channel {
            socket,
            uid,
            rejected,
            ..
        } = self;
        let Some((s, _)) = socket else {
            return std::future::pending().await;
        };
        loop {
            let got = s
                .async_io(tokio::io::Interest::READABLE, || {
                    private::recv(&*s, &mut *buf, *uid)
                })
                .await;
            match got {
                Ok(Received::Accepted(n)) => return Beat::Datagram(n),
                Ok(Received::Rejected(who)) => reject(rejected, who, *uid),
                Err(e) => return Beat::Failed(e),
            }
        }
    }

    /// The heartbeat file changed, finishing `n` writes: the deadline moves, the count grows by
    /// `n`, and its first line is the message.
    pub fn file_beats(&mut self, beats: &mut Beats, n: u64) {
        let Some((p, last)) = &mut self.file else {
            return;
        };
        *last = stamp(p);
        let now = crate::clock::mono_ms();
        beats.beat(now, n);
        let content = FileBeat::read(p);
        if let Some(m) = content.message {
            beats.status(m);
        }
        if let Some(ms) = content.extend_ms {
            beats.extend(ms, now);
        }
    }

    /// Takes in whatever beats are waiting without blocking: queued datagrams (the wrapper may just
    /// have been stopped while the job kept beating) and changes of the heartbeat file. `end`: the
    /// job has ended, so a change still open is finished too.
    pub fn poll(&mut self, beats: &mut Beats, end: bool) {
        let now = crate::clock::mono_ms();
        if let Some((s, _)) = &self.socket {
            let mut buf = [0u8; 4096];
            loop {
                match private::recv(s, &mut buf, self.uid) {
                    Ok(Received::Accepted(n)) => {
                        for notice in sd_notify::parse(&buf[..n]) {
                            beats.apply(notice, now);
                        }
                    }
                    Ok(Received::Rejected(who)) => reject(&mut self.rejected, who, self.uid),
                    Err(_) => break,
                }
            }
        }
        beats.rejected(self.rejected);
        let changes = match (&mut self.watch, &self.file) {
            (Some(w), _) => w.take(if end { 0 } else { watch::OPEN_MAX_MS }),
            (None, Some((p, last))) => {
                let cur = stamp(p);
                (cur.is_some() && cur != *last).then_some(1)
            }
            (None, None) => None,
        };
        if let Some(n) = changes {
            self.file_beats(beats, n);
        }
    }
}

/// What the channel brought.
pub enum Beat {
    /// A datagram of this many bytes from the job's user.
    Datagram(usize),
    /// The heartbeat file changed this many times.
    File(u64),
    /// The socket failed. The event loop does not report the error yet (it ignores this beat).
    Failed(#[allow(dead_code)] io::Error),
}

/// Counts a refused datagram; the first one is said in the wrapper's diagnostics.
fn reject(count: &mut u64, who: Option<u32>, uid: u32) {
    if *count == 0 {
        let who = who.map_or("a sender without credentials".to_string(), |u| {
            format!("uid {u}")
        });
        super::note!(
            "refused a datagram from {who} on the notify socket: only uid {uid} (the job's) may beat; further refusals are only counted (`tether inspect`)"
        );
    }
    *count += 1;
}

/// What a write to the heartbeat file says (protocol.md 6.7): a JSON object
/// `{"message": "...", "extend": "10m"}` (both optional; `extend` a duration like `10m` or a
/// number of milliseconds), or else plain text whose first line is the message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileBeat {
    pub message: Option<String>,
    pub extend_ms: Option<u64>,
}

impl FileBeat {
    fn read(p: &Path) -> FileBeat {
        let mut buf = Vec::new();
        let read = std::fs::File::open(p).and_then(|f| f.take(4096).read_to_end(&mut buf));
        match read {
            Ok(_) => FileBeat::parse(&String::from_utf8_lossy(&buf)),
            Err(_) => FileBeat::default(),
        }
    }

    pub fn parse(text: &str) -> FileBeat {
        let one_line = |s: &str| {
            let line: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(sd_notify::MAX_STATUS_CHARS)
                .collect();
            let line = line.trim().to_string();
            (!line.is_empty()).then_some(line)
        };
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(text.trim()) {
            let extend_ms = match o.get("extend") {
                Some(serde_json::Value::String(d)) => humantime::parse_duration(d)
                    .ok()
                    .map(|d| d.as_millis() as u64),
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                _ => None,
            };
            return FileBeat {
                message: o.get("message").and_then(|m| m.as_str()).and_then(one_line),
                extend_ms,
            };
        }
        FileBeat {
            message: text.lines().next().and_then(one_line),
            extend_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_beats_carry_a_message_and_an_extension() {
        let fb = |t| FileBeat::parse(t);
        assert_eq!(fb(""), FileBeat::default());
        assert_eq!(fb("step 3\nmore").message.as_deref(), Some("step 3"));
        let j = fb(r#"{"message": "long step", "extend": "10m"}"#);
        assert_eq!(j.message.as_deref(), Some("long step"));
        assert_eq!(j.extend_ms, Some(600_000));
        assert_eq!(fb(r#"{"extend": 1500}"#).extend_ms, Some(1500));
        assert_eq!(fb(r#"{"extend": "soon"}"#).extend_ms, None);
        assert_eq!(
            fb("{\"message\": \"a\\u001b[31mb\"}").message.as_deref(),
            Some("a [31mb")
        );
        // Not an object: the first line, as ever.
        assert_eq!(fb("[1]").message.as_deref(), Some("[1]"));
    }

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
