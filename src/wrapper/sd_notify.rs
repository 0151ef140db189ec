//! The systemd notification protocol, as far as `tether run --heartbeat notify` speaks it.
//!
//! Kept pure and separate from the socket so the parsing rules (several `KEY=VALUE` lines per
//! datagram, unknown keys ignored, junk never fatal) can be tested without processes. Speaking the
//! systemd dialect means existing tools (`systemd-notify`, `sd_notify(3)` in any language) beat a
//! tether job without knowing tether exists.

use std::io;
use std::path::Path;

/// Longest STATUS text kept: records are capped at 1 MiB, and a progress line is for people.
pub const MAX_STATUS_CHARS: usize = 1024;

/// One thing a job told us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `WATCHDOG=1`: the job is making progress.
    Watchdog,
    /// `WATCHDOG=trigger`: the job reports its own failure; handled like a stall.
    WatchdogTrigger,
    /// `STATUS=...`: a progress message for people.
    Status(String),
    /// `READY=1`.
    Ready,
    /// `STOPPING=1`.
    Stopping,
    /// `EXTEND_TIMEOUT_USEC=N`: the job needs N µs more before its next beat.
    ExtendTimeoutUsec(u64),
    /// `WATCHDOG_USEC=N`: the job changes its own beat timeout.
    WatchdogUsec(u64),
}

/// Parses one datagram. Lines that are not `KEY=VALUE`, unknown keys and bad numbers are skipped:
/// a job's sloppy notification must never take the wrapper down, only fail to count as a beat.
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    let text = String::from_utf8_lossy(datagram);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let num = || value.trim().parse::<u64>().ok();
        let notice = match key {
            "WATCHDOG" if value == "1" => Some(Notice::Watchdog),
            "WATCHDOG" if value == "trigger" => Some(Notice::WatchdogTrigger),
            "STATUS" => Some(Notice::Status(
                value.chars().take(MAX_STATUS_CHARS).collect(),
            )),
            "READY" if value == "1" => Some(Notice::Ready),
            "STOPPING" if value == "1" => Some(Notice::Stopping),
            "EXTEND_TIMEOUT_USEC" => num().map(Notice::ExtendTimeoutUsec),
            "WATCHDOG_USEC" => num().filter(|n| *n > 0).map(Notice::WatchdogUsec),
            _ => None,
        };
        out.extend(notice);
    }
    out
}

/// Formats a beat with an optional status and extension; newlines in the status are flattened so
/// it cannot smuggle in other keys.
pub fn beat_message(status: Option<&str>, extend: Option<std::time::Duration>) -> String {
    let mut m = String::from("WATCHDOG=1");
    if let Some(d) = extend {
        m.push_str(&format!("\nEXTEND_TIMEOUT_USEC={}", d.as_micros()));
    }
    if let Some(s) = status {
        m.push_str("\nSTATUS=");
        m.extend(
            s.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    }
    m
}

/// Sends one datagram to a `NOTIFY_SOCKET` value: a path, or `@name` for the abstract namespace.
pub fn send(socket: &str, message: &str) -> io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    if let Some(name) = socket.strip_prefix('@') {
        return crate::platform::send_to_abstract(&sock, name.as_bytes(), message.as_bytes());
    }
    sock.send_to(message.as_bytes(), Path::new(socket))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_keys_per_datagram() {
        assert_eq!(
            parse(b"WATCHDOG=1\nSTATUS=step 3 of 7\nREADY=1\nSTOPPING=1\n"),
            vec![
                Notice::Watchdog,
                Notice::Status("step 3 of 7".into()),
                Notice::Ready,
                Notice::Stopping
            ]
        );
    }

    #[test]
    fn timeouts_and_trigger() {
        assert_eq!(
            parse(b"EXTEND_TIMEOUT_USEC=5000000\nWATCHDOG_USEC=2000000\nWATCHDOG=trigger"),
            vec![
                Notice::ExtendTimeoutUsec(5_000_000),
                Notice::WatchdogUsec(2_000_000),
                Notice::WatchdogTrigger
            ]
        );
    }

    #[test]
    fn junk_is_ignored_not_fatal() {
        assert!(parse(b"").is_empty());
        assert!(parse(b"hello\nWATCHDOG=0\nWATCHDOG_USEC=abc\nWATCHDOG_USEC=0\nFOO=1").is_empty());
        assert_eq!(parse(b"\xff\xfe\nWATCHDOG=1"), vec![Notice::Watchdog]);
        assert_eq!(parse(b"WATCHDOG=1\r\n"), vec![Notice::Watchdog]);
        // A status may itself contain '='.
        assert_eq!(parse(b"STATUS=a=b"), vec![Notice::Status("a=b".into())]);
        let long = format!("STATUS={}", "x".repeat(5000));
        match &parse(long.as_bytes())[0] {
            Notice::Status(s) => assert_eq!(s.chars().count(), MAX_STATUS_CHARS),
            n => panic!("{n:?}"),
        }
    }

    #[test]
    fn beat_message_cannot_inject_keys() {
        assert_eq!(beat_message(None, None), "WATCHDOG=1");
        assert_eq!(
            parse(beat_message(None, Some(std::time::Duration::from_secs(3))).as_bytes()),
            vec![Notice::Watchdog, Notice::ExtendTimeoutUsec(3_000_000)]
        );
        let m = beat_message(Some("x\nWATCHDOG=trigger"), None);
        assert_eq!(
            parse(m.as_bytes()),
            vec![
                Notice::Watchdog,
                Notice::Status("x WATCHDOG=trigger".into())
            ]
        );
    }

    #[test]
    fn send_reaches_a_bound_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        send(p.to_str().unwrap(), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
