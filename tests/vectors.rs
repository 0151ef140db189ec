//! Runs every conformance vector in `tests/vectors/` (protocol.md section 10).
//!
//! The vectors are the contract other implementations are held to, so this runner is deliberately
//! strict about their shape (unknown keys are errors, not ignored): a typo in a vector must fail here
//! rather than silently test nothing. Every failing vector is reported by name before the test fails,
//! so one wrong expectation does not hide the next.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tether::clock::{Now, Timestamp};
use tether::record::{Record, RecordError};
use tether::verdict::{Outcome, Probe, Reader, verdict};

mod common;

/// Below this the suite has lost vectors (a bad glob, a deleted directory), not gained confidence.
const MIN_VECTORS: usize = 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    /// Exactly one of `record` and `record_base64` (protocol.md section 10).
    #[serde(default)]
    record: Option<Value>,
    #[serde(default)]
    record_base64: Option<String>,
    probe: ProbeSpec,
    reader: ReaderSpec,
    expect: Expect,
    /// The lease file's text (protocol.md 6.5), folded into an active record before judging.
    #[serde(default)]
    lease_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSpec {
    holder: String,
    /// Absent (with "gone") differs from null (with "alive": start time unknown).
    #[serde(default, deserialize_with = "present")]
    start: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReaderSpec {
    boot_id: String,
    host: String,
    #[serde(deserialize_with = "nullable")]
    time_ns: Option<String>,
    /// Required like the others, though null when the reader cannot tell (section 10).
    #[serde(deserialize_with = "nullable")]
    pid_ns: Option<String>,
    now_wall: String,
    now_mono_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    verdict: String,
    #[serde(default)]
    status: Option<String>,
    /// Absent means "not checked"; present and null means "the recorded reason is null".
    #[serde(default, deserialize_with = "present")]
    reason: Option<Option<String>>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    expires_in_ms: Option<i64>,
    /// The lease and progress after the lease file's fold (6.5), for active verdicts.
    #[serde(default)]
    lease: Option<ExpectLease>,
    #[serde(default)]
    progress: Option<ExpectProgress>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectLease {
    renewed_at: String,
    renewed_mono_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectProgress {
    count: u64,
    #[serde(deserialize_with = "nullable")]
    at: Option<String>,
}

/// Distinguishes `"reason": null` from a missing `reason`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A required key whose value may be null: `deserialize_with` stops serde reading "absent" as null.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// The reasons of protocol.md 7.2; a vector naming anything else is itself wrong.
const REASONS: &[&str] = &[
    "exited",
    "signaled",
    "start-failed",
    "heartbeat-timeout",
    "probe-failed",
    "holder-signaled",
    "cancelled",
    "worker-exited",
    "pid-reused",
    "lease-expired",
    "host-rebooted",
];
const READER_REASONS: &[&str] = &[
    "worker-exited",
    "pid-reused",
    "lease-expired",
    "host-rebooted",
];

/// What an implementation concluded, in the vocabulary of section 10.
#[derive(Debug, Default, PartialEq)]
struct Got {
    verdict: String,
    status: Option<String>,
    reason: Option<String>,
    rule: Option<String>,
    expires_in_ms: Option<i64>,
    /// `(renewed_at, renewed_mono_ms)` and `(progress.count, progress.at)` as judged.
    lease: Option<(Timestamp, u64)>,
    progress: Option<(u64, Option<Timestamp>)>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn probe_of(p: &ProbeSpec) -> Result<Probe, String> {
    match (p.holder.as_str(), &p.start) {
        ("gone", None) => Ok(Probe::Gone),
        ("gone", Some(_)) => Err("probe.start is only meaningful with holder \"alive\"".into()),
        ("alive", Some(start)) => Ok(Probe::Alive {
            start: start.clone(),
        }),
        ("alive", None) => {
            Err("probe.start is required with holder \"alive\" (null: unknown)".into())
        }
        (other, _) => Err(format!(
            "probe.holder {other:?} is not \"gone\" or \"alive\""
        )),
    }
}

fn reader_of(r: &ReaderSpec) -> Result<Reader, String> {
    Ok(Reader {
        boot_id: r.boot_id.clone(),
        host: r.host.clone(),
        time_ns: r.time_ns.clone(),
        pid_ns: r.pid_ns.clone(),
        now: Now {
            wall: Timestamp::parse(&r.now_wall).map_err(|e| format!("reader.now_wall: {e}"))?,
            mono_ms: r.now_mono_ms,
        },
    })
}

/// Section 10: `record` is an object (serialized compactly) or a string holding the file's text;
/// `record_base64` holds bytes a JSON string cannot (invalid UTF-8). Vectors carry no file name,
/// so the id-matches-file-name check of 4.4 is not exercised here.
fn record_bytes(v: &Vector) -> Result<Vec<u8>, String> {
    match (&v.record, &v.record_base64) {
        (Some(Value::String(s)), None) => Ok(s.as_bytes().to_vec()),
        (Some(o @ Value::Object(_)), None) => Ok(serde_json::to_vec(o).unwrap()),
        (Some(_), None) => {
            Err("record must be a JSON object or a string of raw record text".into())
        }
        (None, Some(b)) => base64(b),
        _ => Err("a vector has exactly one of record and record_base64".into()),
    }
}

/// Standard base64 (RFC 4648, with padding): a dozen lines beat a dependency for test data.
fn base64(s: &str) -> Result<Vec<u8>, String> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let body = s.trim_end_matches('=');
    if s.len() % 4 != 0 || s.len() - body.len() > 2 {
        return Err("record_base64 is not padded base64".into());
    }
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let d = ABC
            .iter()
            .position(|&a| a == c)
            .ok_or("record_base64 has a non-base64 byte")?;
        bits = (bits << 6) | d as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Ok(out)
}

fn evaluate(v: &Vector) -> Result<Got, String> {
    let bytes = record_bytes(v)?;
    let probe = probe_of(&v.probe)?;
    let reader = reader_of(&v.reader)?;
    let rec = match Record::parse(&bytes, None) {
        Ok(mut r) => {
            if let Some(lf) = &v.lease_file {
                if r.status.is_active() {
                    tether::lease_file::merge(&mut r, lf.as_bytes());
                }
            }
            r
        }
        Err(RecordError::Unsupported(_)) => {
            return Ok(Got {
                verdict: "unsupported".into(),
                rule: Some("R0".into()),
                ..Got::default()
            });
        }
        Err(RecordError::Corrupt(_)) => {
            return Ok(Got {
                verdict: "corrupt".into(),
                ..Got::default()
            });
        }
    };
    let vd = verdict(&rec, &probe, &reader);
    let (name, status, reason) = match vd.outcome {
        Outcome::Active => ("active", rec.status, None),
        Outcome::Terminal { status, reason } => ("terminal", status, reason),
        Outcome::Lost { reason } => ("lost", vd.status(&rec), Some(reason)),
    };
    Ok(Got {
        verdict: name.into(),
        status: Some(status.as_str().into()),
        reason: reason.map(|r| r.as_str().into()),
        rule: Some(format!("{:?}", vd.rule)),
        expires_in_ms: vd.lease.map(|l| l.expires_in_ms),
        lease: Some((rec.lease.renewed_at, rec.lease.renewed_mono_ms)),
        progress: Some((rec.progress.count, rec.progress.at)),
    })
}

/// Checks the vector against the section 10.1 rules before trusting its expectation. These are
/// the rules `tests/vectors/schema/vectors.schema.json` states; `schema_agrees_with_this_runner`
/// keeps the two in step.
fn lint(v: &Vector) -> Result<(), String> {
    let e = &v.expect;
    const STATUSES: &[&str] = &[
        "starting",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "lost",
    ];
    const RULES: &[&str] = &["R0", "R1", "R2", "R3", "R3a", "R4", "R5", "R6", "R7"];
    if let Some(s) = &e.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(format!("expect.status {s:?} is not a status"));
        }
    }
    if let Some(r) = &e.rule {
        if !RULES.contains(&r.as_str()) {
            return Err(format!("expect.rule {r:?} is not a rule of 7.4"));
        }
    }
    if let Some(Some(r)) = &e.reason {
        if !REASONS.contains(&r.as_str()) {
            return Err(format!(
                "expect.reason {r:?} is not a reason of protocol.md 7.2"
            ));
        }
    }
    let judged = e.status.is_some()
        || e.reason.is_some()
        || e.expires_in_ms.is_some()
        || e.lease.is_some()
        || e.progress.is_some();
    let (status, reason, rule) = (e.status.as_deref(), &e.reason, e.rule.as_deref());
    match e.verdict.as_str() {
        "corrupt" if judged || rule.is_some() => {
            Err("a corrupt vector gives only the verdict".into())
        }
        "unsupported" if judged || rule != Some("R0") => {
            Err("an unsupported vector gives only the verdict and rule R0".into())
        }
        "terminal" if status.is_none() || reason.is_none() || rule != Some("R1") => {
            Err("a terminal vector names the recorded status and reason, and rule R1".into())
        }
        "lost"
            if !matches!(reason, Some(Some(r)) if READER_REASONS.contains(&r.as_str()))
                || rule.is_none()
                || status.is_some_and(|s| s != "lost") =>
        {
            Err("a lost vector names a reader reason and its rule; its status is lost".into())
        }
        "active"
            if reason.is_some()
                || rule.is_none()
                || status.is_some_and(|s| !["starting", "running"].contains(&s)) =>
        {
            Err("an active vector names its rule, no reason, and an active status".into())
        }
        "terminal" | "lost" if e.expires_in_ms.is_some() => {
            Err("expires_in_ms is only defined for active verdicts".into())
        }
        "corrupt" | "unsupported" | "terminal" | "lost" | "active" => Ok(()),
        other => Err(format!(
            "expect.verdict {other:?} is not a verdict of section 10.1"
        )),
    }
}

/// Whether this runner takes `text` as a well-formed reading vector (without judging it).
fn accepts(text: &str) -> Result<(), String> {
    let v: Vector = serde_json::from_str(text).map_err(|e| e.to_string())?;
    lint(&v)?;
    probe_of(&v.probe)?;
    reader_of(&v.reader)?;
    record_bytes(&v).map(|_| ())
}

fn check(v: &Vector) -> Result<(), String> {
    lint(v)?;
    let got = evaluate(v)?;
    let e = &v.expect;
    let mut diffs = Vec::new();
    if got.verdict != e.verdict {
        diffs.push(format!("verdict: want {}, got {}", e.verdict, got.verdict));
    }
    if e.status.is_some() && got.status != e.status {
        diffs.push(format!("status: want {:?}, got {:?}", e.status, got.status));
    }
    if let Some(want) = &e.reason {
        if got.reason != *want {
            diffs.push(format!("reason: want {want:?}, got {:?}", got.reason));
        }
    }
    if got.rule != e.rule {
        diffs.push(format!("rule: want {:?}, got {:?}", e.rule, got.rule));
    }
    if let Some(want) = e.expires_in_ms {
        if got.expires_in_ms != Some(want) {
            diffs.push(format!(
                "expires_in_ms: want {want}, got {:?}",
                got.expires_in_ms
            ));
        }
    }
    if let Some(want) = &e.lease {
        let at = Timestamp::parse(&want.renewed_at).map_err(|e| format!("expect.lease: {e}"))?;
        if got.lease != Some((at, want.renewed_mono_ms)) {
            diffs.push(format!(
                "lease: want ({at}, {}), got {:?}",
                want.renewed_mono_ms, got.lease
            ));
        }
    }
    if let Some(want) = &e.progress {
        let at = want.at.as_deref().map(Timestamp::parse).transpose();
        let at = at.map_err(|e| format!("expect.progress: {e}"))?;
        if got.progress != Some((want.count, at)) {
            diffs.push(format!(
                "progress: want ({}, {at:?}), got {:?}",
                want.count, got.progress
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

#[test]
fn schema_agrees_with_this_runner() {
    let objects = [
        "",
        "probe",
        "reader",
        "expect",
        "expect.lease",
        "expect.progress",
    ];
    common::schema::schema_agrees(&vectors_dir(), &objects, accepts);
}

#[test]
fn conformance_vectors() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let v: Vector = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}: not a vector: {e}"));
                continue;
            }
        };
        if !names.insert(v.name.clone()) {
            failures.push(format!("{file} ({}): duplicate vector name", v.name));
        }
        if let Err(e) = check(&v) {
            failures.push(format!("{file} ({}): {e}", v.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
    assert!(
        files.len() >= MIN_VECTORS,
        "only {} vectors in {}; expected at least {MIN_VECTORS}",
        files.len(),
        dir.display()
    );
}

/// Section 10.1 shows one vector in full; it must stay the file it names (issue 17 found the
/// example had drifted from the vector).
#[test]
fn protocol_md_example_is_the_real_vector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let md = std::fs::read_to_string(root.join("protocol.md")).unwrap();
    let intro = "This is `tests/vectors/";
    let at = md
        .find(intro)
        .expect("protocol.md 10.1 names its example vector")
        + intro.len();
    let file = &md[at..at + md[at..].find('`').unwrap()];
    let block = &md[at..];
    let start = block.find("```json\n").unwrap() + "```json\n".len();
    let end = start + block[start..].find("\n```").unwrap();
    let shown: Value = serde_json::from_str(&block[start..end]).expect("the example is JSON");
    let real: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(file)).unwrap()).unwrap();
    assert_eq!(
        shown, real,
        "protocol.md 10.1 shows {file}, but not as it is"
    );
}
