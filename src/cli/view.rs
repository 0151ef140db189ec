//! Rendering shared by the reader commands, so `status`, `result`, `inspect` and `wait` describe a
//! job with the same words, the same JSON shape and the same exit code.

use crate::clock::short_duration;
use crate::reader::settle::Judged;
use crate::record::{Reason, Record, Status};
use crate::verdict::{Reader, Rule, expires_at, lease_age, pid_visible};

/// Milliseconds since the job's last heartbeat; None when it never beat (every job in `none`
/// mode). Not the lease renewal: the wrapper renews a wedged job too, so a renewal age next to
/// "no beat for 3000ms" said the opposite of the verdict. `inspect` shows the renewal.
pub fn last_beat_ms(rec: &Record, reader: &Reader) -> Option<i64> {
    rec.progress
        .at
        .map(|at| reader.now.wall.ms().saturating_sub(at.ms()))
}

/// "170ms ago", or "never" for a job that has not beaten.
pub fn last_beat_text(rec: &Record, reader: &Reader) -> String {
    match last_beat_ms(rec, reader) {
        Some(ms) => format!("{} ago", short_age(Some(ms))),
        None => "never".into(),
    }
}

pub fn age_since_created_ms(rec: &Record, reader: &Reader) -> i64 {
    reader.now.wall.ms().saturating_sub(rec.created_at.ms())
}

/// The rule that produced a reader-written `lost`, so a reaped job still names its evidence after
/// the record became terminal (and R1 alone would explain nothing).
pub fn reaped_by_rule(rec: &Record, reader: &Reader) -> Option<Rule> {
    if rec.status != Status::Lost {
        return None;
    }
    match rec.reason? {
        Reason::WorkerExited => Some(Rule::R4),
        Reason::PidReused => Some(Rule::R5),
        Reason::HostRebooted => Some(Rule::R3),
        Reason::LeaseExpired if rec.holder.host != reader.host => Some(Rule::R2),
        Reason::LeaseExpired if !pid_visible(&rec.holder, reader) => Some(Rule::R3a),
        Reason::LeaseExpired => Some(Rule::R6),
        _ => None,
    }
}

/// "succeeded (exited, exit code 0)": the status every command prints for a judged job.
pub fn describe(j: &Judged) -> String {
    let mut s = j.status().to_string();
    let reason = j.verdict.reason();
    let exit = j.record.exit;
    match (reason, exit) {
        (Some(r), Some(e)) => s.push_str(&format!(" ({r}, {e})")),
        (Some(r), None) => s.push_str(&format!(" ({r})")),
        (None, Some(e)) => s.push_str(&format!(" ({e})")),
        (None, None) => {}
    }
    s
}

/// A job as `status --json` shows it (protocol.md 9.1), borrowed from the judged record so a
/// listing serializes straight to the output without building a map per job.
#[derive(serde::Serialize)]
pub struct JobView<'a> {
    id: &'a str,
    name: &'a Option<String>,
    status: crate::record::Status,
    reason: Option<crate::record::Reason>,
    exit: &'a Option<crate::record::Exit>,
    argv: &'a [String],
    created_at: crate::clock::Timestamp,
    finished_at: Option<crate::clock::Timestamp>,
    progress: &'a crate::record::Progress,
    pub lease: LeaseView,
    holder: &'a crate::record::Holder,
    child: &'a Option<crate::record::Child>,
    late: &'a [crate::record::LateResult],
    meta: &'a crate::meta::Meta,
    unique: &'a Option<String>,
    rule: crate::verdict::Rule,
    reaped: bool,
    unsaved: &'a Option<String>,
    /// `status --wait` only: how the wait for this job came out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitOutcome>,
}

/// How `status --wait` came out for one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitOutcome {
    /// The job ended (terminal, or judged lost) while waited for, or had already ended.
    Ended,
    /// `--timeout` passed first; the job is still active.
    TimedOut,
    /// `--any`: another job ended first; this one was not waited for to the end.
    NotWaited,
}

#[derive(serde::Serialize)]
pub struct LeaseView {
    pub epoch: u64,
    pub renewed_at: crate::clock::Timestamp,
    pub expires_at: crate::clock::Timestamp,
    pub interval_ms: u64,
    pub ttl_ms: u64,
}

pub fn job_view<'a>(j: &'a Judged, reader: &Reader) -> JobView<'a> {
    let r = &j.record;
    let age = lease_age(r, reader);
    JobView {
        id: &r.id,
        name: &r.name,
        status: j.status(),
        reason: j.verdict.reason(),
        exit: &r.exit,
        argv: &r.argv,
        created_at: r.created_at,
        finished_at: r.finished_at,
        progress: &r.progress,
        lease: LeaseView {
            epoch: r.lease.epoch,
            renewed_at: r.lease.renewed_at,
            expires_at: expires_at(&age, &reader.now),
            interval_ms: r.lease.interval_ms,
            ttl_ms: r.lease.ttl_ms,
        },
        holder: &r.holder,
        child: &r.child,
        late: &r.late,
        meta: &r.meta,
        unique: &r.unique,
        rule: j.verdict.rule,
        reaped: j.reaped,
        unsaved: &j.unsaved,
        wait: None,
    }
}

/// Prints JSON to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) {
    use std::io::Write;
    // Rendered first, written once: stdout is line-buffered, and a 10,000-job listing written
    // line by line measured 430,000 write calls.
    let mut text = serde_json::to_vec_pretty(v).unwrap_or_default();
    text.push(b'\n');
    let _ = std::io::stdout().lock().write_all(&text);
}

/// Prints a JSON array element by element through one buffer, one object per line: a 10,000-job
/// listing never holds all its objects in memory at once.
pub fn print_json_array<T: serde::Serialize>(items: impl Iterator<Item = T>) {
    write_array(items, |out, v| {
        // One compact object per line: as valid as pretty JSON, line-oriented for `grep`, and a
        // third cheaper to write for 10,000 jobs.
        let _ = serde_json::to_writer(out, &v);
    });
}

/// `print_json_array` of objects already rendered (compact JSON, one per item).
pub fn print_rendered_array<'a>(items: impl Iterator<Item = &'a [u8]>) {
    use std::io::Write;
    write_array(items, |out, text| {
        let _ = out.write_all(text);
    });
}

fn write_array<T>(
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(&mut std::io::BufWriter<std::io::StdoutLock<'static>>, T),
) {
    use std::io::Write;
    // 128 KiB: a listing's objects grew with the protocol's fields; 64 KiB wrote 1,000 jobs in
    // 21 `write` calls.
    let mut out = std::io::BufWriter::with_capacity(1 << 17, std::io::stdout().lock());
    let mut first = true;
    let _ = out.write_all(b"[");
    for v in items {
        let _ = out.write_all(if first { b"\n" } else { b",\n" });
        first = false;
        write(&mut out, v);
    }
    let _ = out.write_all(if first { b"]\n" } else { b"\n]\n" });
    let _ = out.flush();
}

/// Prints a line to stderr, ignoring a closed pipe instead of panicking like `eprintln!`.
pub fn err_line(line: impl AsRef<str>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{}", line.as_ref());
}

/// Prints a line to stdout, ignoring a closed pipe instead of panicking like `println!`.
pub fn out(line: impl AsRef<str>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{}", line.as_ref());
}

/// Tells the user once per command that a verdict could not be recorded.
#[derive(Default)]
pub struct UnsavedNote(bool);

impl UnsavedNote {
    pub fn note(&mut self, j: &Judged) {
        self.note_unsaved(&j.unsaved);
    }

    /// `note` for a job's `unsaved` alone.
    pub fn note_unsaved(&mut self, unsaved: &Option<String>) {
        if let (false, Some(why)) = (self.0, unsaved) {
            err_line(format!("tether: note: {why}"));
            self.0 = true;
        }
    }
}

/// Ages for tables: "-" for nothing, else a short duration.
pub fn short_age(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => short_duration(ms.max(0)),
        None => "-".into(),
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let n = header.len();
    let mut width = vec![0usize; n];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for row in rows {
        for (i, c) in row.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                let pad = width[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![fmt(header.to_vec())];
    for row in rows {
        lines.push(fmt(row.iter().map(String::as_str).collect()));
    }
    lines
}

/// Whether a character could change the terminal or the text's direction instead of being shown:
/// C0 and C1 controls (ESC starts ANSI and OSC sequences, CSI is U+009B) and the bidirectional
/// overrides and isolates (a name could otherwise reverse the rest of the line).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A record string (a name, an argument, a host, a note) made safe to print: every control or
/// direction character becomes a space. A record is input, and whoever wrote it must not be able to
/// drive the reader's terminal.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(unsafe_char) {
        s.chars()
            .map(|c| if unsafe_char(c) { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// The command line of a record, each argument cleaned.
pub fn command_line(argv: &[String]) -> String {
    let parts: Vec<std::borrow::Cow<'_, str>> = argv.iter().map(|a| clean(a)).collect();
    parts.join(" ")
}

/// Keeps a user-supplied progress message on one table line.
pub fn one_line(s: &str, max: usize) -> String {
    let flat = clean(s);
    if flat.chars().count() > max {
        let mut t: String = flat.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    } else {
        flat.into_owned()
    }
}

/// "1 beat", "2 beats": a count with its noun.
pub fn beats(n: u64) -> String {
    if n == 1 {
        "1 beat".to_string()
    } else {
        format!("{n} beats")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "running".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(t[0], "ID       STATUS");
        assert_eq!(t[1], "a        running");
        assert_eq!(t[2], "long-id  x");
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdefghij", 5), "ab...");
    }

    #[test]
    fn clean_defuses_terminal_sequences() {
        assert_eq!(clean("a\x1b]0;owned\x07b"), "a ]0;owned b");
        assert_eq!(clean("x\u{9b}31my"), "x 31my");
        assert_eq!(clean("l\u{202e}r"), "l r");
        assert_eq!(clean("plain é"), "plain é");
    }
}
