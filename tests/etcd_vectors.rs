//! Runs the etcd mapping's conformance vectors in `tests/etcd_vectors/` (protocol.md 11.7): the
//! verdict of 11.4 on a record, what a reader saw of its liveness key, and the fold of the
//! liveness value. Pure rules, so this runs without the `etcd` feature and without an etcd.
//!
//! Strict about shape like `tests/vectors.rs`: unknown keys are errors, and every failing vector is
//! reported by name before the test fails.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tether::clock::{Now, Timestamp};
use tether::record::Record;
use tether::store::etcd_rules::{self, LiveValue, Observed};
use tether::verdict::{Outcome, Probe, Reader};

const MIN_VECTORS: usize = 14;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    record: Value,
    cluster: Cluster,
    #[serde(default)]
    live_value: Option<LiveValue>,
    probe: ProbeSpec,
    reader: ReaderSpec,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cluster {
    live: bool,
    remaining_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSpec {
    holder: String,
    #[serde(default)]
    start: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReaderSpec {
    boot_id: String,
    host: String,
    time_ns: Option<String>,
    /// The reader's pid namespace (protocol.md 7.1, R3a).
    pid_ns: Option<String>,
    now_wall: String,
    now_mono_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    verdict: String,
    rule: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    expires_in_ms: Option<i64>,
    #[serde(default)]
    progress_count: Option<u64>,
}

fn check(v: &Vector) -> Result<(), String> {
    let bytes = serde_json::to_vec(&v.record).unwrap();
    let mut rec = Record::parse(&bytes, None).map_err(|e| format!("record: {e}"))?;
    if let Some(lv) = &v.live_value {
        etcd_rules::fold(&mut rec, lv);
    }
    let probe = match (v.probe.holder.as_str(), &v.probe.start) {
        ("gone", None) => Probe::Gone,
        ("alive", start) => Probe::Alive {
            start: start.clone(),
        },
        other => return Err(format!("bad probe {other:?}")),
    };
    let reader = Reader {
        boot_id: v.reader.boot_id.clone(),
        host: v.reader.host.clone(),
        time_ns: v.reader.time_ns.clone(),
        pid_ns: v.reader.pid_ns.clone(),
        now: Now {
            wall: Timestamp::parse(&v.reader.now_wall)?,
            mono_ms: v.reader.now_mono_ms,
        },
    };
    let obs = Observed {
        live: v.cluster.live,
        remaining_ms: v.cluster.remaining_ms,
    };
    let vd = etcd_rules::verdict(&rec, &obs, &probe, &reader);
    let (verdict, reason, status) = match vd.outcome {
        Outcome::Active => ("active", None, None),
        Outcome::Terminal { status, reason } => (
            "terminal",
            reason.map(|r| r.as_str().to_owned()),
            Some(status.as_str().to_owned()),
        ),
        Outcome::Lost { reason } => ("lost", Some(reason.as_str().to_owned()), None),
    };
    let e = &v.expect;
    let mut bad = vec![];
    if verdict != e.verdict {
        bad.push(format!("verdict {verdict}, expected {}", e.verdict));
    }
    if format!("{:?}", vd.rule) != e.rule {
        bad.push(format!("rule {:?}, expected {}", vd.rule, e.rule));
    }
    if e.reason.is_some() && reason != e.reason {
        bad.push(format!("reason {reason:?}, expected {:?}", e.reason));
    }
    if e.status.is_some() && status != e.status {
        bad.push(format!("status {status:?}, expected {:?}", e.status));
    }
    if let Some(x) = e.expires_in_ms {
        let got = vd.lease.map(|l| l.expires_in_ms);
        if got != Some(x) {
            bad.push(format!("expires_in_ms {got:?}, expected {x}"));
        }
    }
    if let Some(c) = e.progress_count {
        if rec.progress.count != c {
            bad.push(format!(
                "progress.count {}, expected {c}",
                rec.progress.count
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

#[test]
fn every_etcd_vector_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/etcd_vectors");
    let mut names = std::collections::HashSet::new();
    let mut failures = vec![];
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        n += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Vector = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        assert!(names.insert(v.name.clone()), "duplicate name {:?}", v.name);
        if let Err(e) = check(&v) {
            failures.push(format!("{} ({}): {e}", v.name, path.display()));
        }
    }
    assert!(n >= MIN_VECTORS, "only {n} vectors in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
