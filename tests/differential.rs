//! The Rust implementation against the Python one (tests/vectors_py/check.py, written from
//! protocol.md) on random inputs: records, lease-file slots and timestamps.
//!
//! Two implementations written apart disagree where the protocol leaves a choice open; each such
//! place found so far (arrays read as structs, numbers beyond a double or nesting in skipped
//! fields, `-0`) became a sentence in protocol.md and a vector. This keeps looking: a new field
//! validated on one side only fails here. `TETHER_DIFF_SEED` and `TETHER_DIFF_COUNT` pick other
//! inputs (the default is fixed, so a failure reproduces). Needs python3, as CI has.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tether::clock::{Now, Timestamp};
use tether::lease_file::Stamp;
use tether::record::{Record, RecordError};
use tether::verdict::{Outcome, Probe, Reader, verdict};

fn rust_record(text: &str) -> Value {
    match Record::parse(text.as_bytes(), None) {
        Ok(r) => json!([
            "ok",
            r.status.as_str(),
            r.lease.epoch,
            r.lease.renewed_at.ms(),
            r.lease.renewed_mono_ms,
            r.progress.count,
            r.progress.at.map(|a| a.ms()),
            r.created_at.ms()
        ]),
        Err(RecordError::Corrupt(_)) => json!(["corrupt"]),
        Err(RecordError::Unsupported(_)) => json!(["unsupported"]),
    }
}

fn rust_slot(slot: &str) -> Value {
    Stamp::decode(slot.as_bytes()).map_or(Value::Null, |s| {
        json!([
            s.seq,
            s.epoch,
            s.renewed_mono_ms,
            s.renewed_at.ms(),
            s.beats,
            s.beat_at.map_or(-1, |t| t.ms())
        ])
    })
}

/// `[verdict, status, reason, rule, expires_in_ms]` as check.py's `verdict` gives them.
fn rust_verdict(c: &Value) -> Value {
    let rec = Record::parse(&serde_json::to_vec(&c["record"]).unwrap(), None).unwrap();
    let r = &c["reader"];
    let s = |v: &Value| v.as_str().map(String::from);
    let reader = Reader {
        boot_id: s(&r["boot_id"]).unwrap(),
        host: s(&r["host"]).unwrap(),
        time_ns: s(&r["time_ns"]),
        pid_ns: s(&r["pid_ns"]),
        now: Now {
            wall: Timestamp::parse(r["now_wall"].as_str().unwrap()).unwrap(),
            mono_ms: r["now_mono_ms"].as_u64().unwrap(),
        },
    };
    let probe = match c["probe"]["holder"].as_str() {
        Some("gone") => Probe::Gone,
        _ => Probe::Alive {
            start: s(&c["probe"]["start"]),
        },
    };
    let v = verdict(&rec, &probe, &reader);
    let left = v.lease.map(|l| l.expires_in_ms).filter(|_| v.is_active());
    let (name, status, reason) = match v.outcome {
        Outcome::Active => ("active", rec.status, None),
        Outcome::Terminal { status, reason } => ("terminal", status, reason),
        Outcome::Lost { reason } => ("lost", v.status(&rec), Some(reason)),
    };
    json!([
        name,
        status.as_str(),
        reason.map(|r| r.as_str()),
        format!("{:?}", v.rule),
        left
    ])
}

#[test]
fn rust_and_python_agree_on_random_inputs() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let (seed, count) = (
        env("TETHER_DIFF_SEED", "1"),
        env("TETHER_DIFF_COUNT", "2000"),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors_py/differential.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&seed, &count])
        .output()
        .unwrap_or_else(|e| panic!("python3 {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut disagree = Vec::new();
    for c in &cases {
        let (input, rust) = if let Some(t) = c["record"].as_str() {
            (t, rust_record(t))
        } else if let Some(s) = c["slot"].as_str() {
            (s, rust_slot(s))
        } else if c["verdict"].is_object() {
            ("(a verdict case)", rust_verdict(&c["verdict"]))
        } else {
            let t = c["timestamp"].as_str().unwrap();
            (
                t,
                Timestamp::parse(t).map_or(Value::Null, |t| t.ms().into()),
            )
        };
        if rust != c["python"] {
            disagree.push(format!("rust {rust}, python {}: {input:?}", c["python"]));
        }
    }
    assert!(
        disagree.is_empty(),
        "seed {seed}: Rust and Python disagree on {} of {} inputs; each is a place protocol.md \
         leaves open or one side gets wrong:\n  {}",
        disagree.len(),
        cases.len(),
        disagree
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(cases.len() >= 3, "no cases from {}", script.display());
}
