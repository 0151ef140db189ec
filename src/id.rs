//! Job ids: the only user input that becomes part of a path, so it is checked before anything
//! touches the disk (protocol.md section 3).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A validated job id. Holding one proves the string cannot escape `jobs/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

/// Why a string is not a job id; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid job id {shown}: {why}; ids are 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
)]
pub struct InvalidId {
    shown: String,
    why: &'static str,
}

pub const MAX_ID_LEN: usize = 128;

impl JobId {
    pub fn parse(s: &str) -> Result<JobId, InvalidId> {
        JobId::check(s)?;
        Ok(JobId(s.to_owned()))
    }

    /// What `parse` checks, without keeping a copy (every record read checks its own id).
    pub fn check(s: &str) -> Result<(), InvalidId> {
        let bad = |why| InvalidId {
            shown: shorten(s),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_ID_LEN {
            return Err(bad("it is too long"));
        }
        let first = s.as_bytes()[0];
        if !first.is_ascii_alphanumeric() {
            return Err(bad("it must start with a letter or digit"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidId {
                shown: shorten(s),
                why: if c == '/' {
                    "it contains '/'"
                } else if c == '\0' {
                    "it contains a NUL byte"
                } else {
                    "it contains a character outside A-Z a-z 0-9 . _ -"
                },
            });
        }
        Ok(())
    }

    /// A fresh id that sorts by creation time: `YYYYMMDD-HHMMSS-xxxxxx` (UTC). `salt` lets a caller
    /// retry after a collision with a different suffix.
    pub fn generate(salt: u32) -> JobId {
        let now = SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(now).to_string(); // 2026-11-24T19:36:19Z
        let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mix = nanos ^ std::process::id().rotate_left(20) ^ salt.wrapping_mul(0x9E37_79B9);
        JobId(format!(
            "{}-{}-{:06x}",
            &digits[..8],
            &digits[8..14],
            mix & 0xff_ffff
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Error messages quote the id; a 10,000-character or binary id must not flood the terminal.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["a", "0", "job-1", "A.b_c-d", &"x".repeat(128)] {
            assert!(JobId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_escapes_and_junk() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            ".hidden",
            "a\0b",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        let long = "y".repeat(10_000);
        let msg = JobId::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn generated_ids_are_valid_and_sortable() {
        let a = JobId::generate(0);
        let b = JobId::generate(1);
        assert!(JobId::parse(a.as_str()).is_ok());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "20261124-193619-4f2a1c".len());
    }
}
