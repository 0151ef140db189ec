//! Absurd durations and extreme values (issue 14 item 3): a record is input, so every reader must
//! handle any value a valid record (and its lease file) can hold, and the CLI must refuse durations
//! it cannot honour instead of storing them.
//!
//! Before the fix `run --ttl 10000000d` was accepted, and then `status --json`, `inspect` and
//! `result --json` exited 101 ("a Display implementation returned an error"): one job hid all the
//! others from JSON consumers.

mod common;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use common::torture::*;
use serde_json::{Value, json};
use tether::clock::Timestamp;
use tether::lease_file::Stamp;

const FAR: &str = "9999-12-31T23:59:59.999Z";
const EPOCH: &str = "1970-01-01T00:00:00Z";

fn state_dir(e: &Env) {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(e.jobs())
        .unwrap();
    std::fs::set_permissions(&e.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A record held by `holder` (pid, start) on this machine, with `patch` applied on top.
fn record(id: &str, holder: (u32, &str), patch: Value) -> Value {
    let me = tether::process::current().unwrap();
    let mut v = json!({
        "protocol": 1, "id": id, "name": "extreme", "argv": ["sleep", "600"], "cwd": "/",
        "created_at": Timestamp::now(), "status": "running", "reason": null,
        "holder": {"pid": holder.0, "start": holder.1, "boot_id": me.boot_id, "host": me.host,
                   "time_ns": me.time_ns, "pid_ns": me.pid_ns},
        "child": null,
        "lease": {"epoch": 1, "interval_ms": 1000, "ttl_ms": 10000,
                  "renewed_at": Timestamp::now(), "renewed_mono_ms": tether::clock::mono_ms()},
        "progress": {"message": "m", "at": null, "count": 0},
        "exit": null, "finished_at": null, "late": []
    });
    merge(&mut v, patch);
    v
}

fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn write(e: &Env, id: &str, rec: &Value) {
    std::fs::write(e.record_path(id), serde_json::to_vec_pretty(rec).unwrap()).unwrap();
}

fn write_lease(e: &Env, id: &str, stamps: &[Stamp]) {
    let mut file = tether::lease_file::empty_file();
    for s in stamps {
        let at = s.offset() as usize;
        file[at..at + tether::lease_file::SLOT_LEN].copy_from_slice(&s.encode());
    }
    std::fs::write(e.jobs().join(format!("{id}.lease")), file).unwrap();
}

/// Every extreme a valid record can hold, active and terminal.
fn hostile_records(e: &Env, holder: (u32, &str)) -> Vec<&'static str> {
    let huge = tether::record::MAX_INT;
    let late = json!([{"at": FAR, "epoch": huge, "status": "succeeded", "reason": "exited",
                       "exit": {"code": i32::MAX}, "progress": {"message": null, "at": FAR, "count": huge},
                       "note": "n"},
                      {"at": EPOCH, "epoch": 1, "exit": {"signal": i32::MIN}, "note": ""}]);
    let cases: Vec<(&str, Value)> = vec![
        (
            "max-ttl",
            json!({"lease": {"ttl_ms": huge, "interval_ms": huge / 2}}),
        ),
        (
            "max-ttl-far",
            json!({"created_at": FAR,
            "lease": {"ttl_ms": huge, "interval_ms": 1, "epoch": huge, "renewed_at": FAR,
                      "renewed_mono_ms": huge},
            "progress": {"at": FAR, "count": huge}, "late": late}),
        ),
        (
            "max-ttl-epoch",
            json!({"created_at": EPOCH,
            "lease": {"ttl_ms": huge, "interval_ms": 1, "renewed_at": EPOCH, "renewed_mono_ms": 0},
            "progress": {"at": EPOCH}}),
        ),
        (
            "near-max-int",
            json!({"lease": {"ttl_ms": tether::record::MAX_INT - 1,
            "interval_ms": (tether::record::MAX_INT - 1) / 2}}),
        ),
        (
            "done-far",
            json!({"status": "succeeded", "reason": "exited", "created_at": EPOCH,
            "finished_at": FAR, "exit": {"code": i32::MAX}, "late": late,
            "lease": {"ttl_ms": huge, "interval_ms": 1, "epoch": huge}}),
        ),
        (
            "done-backwards",
            json!({"status": "failed", "reason": "signaled", "created_at": FAR,
            "finished_at": EPOCH, "exit": {"signal": i32::MIN},
            "progress": {"at": FAR, "count": huge}}),
        ),
        ("lease-file-max", json!({})),
        ("lease-file-min", json!({})),
    ];
    let mut ids = vec![];
    for (id, patch) in cases {
        write(e, id, &record(id, holder, patch));
        ids.push(id);
    }
    let max = tether::record::MAX_INT;
    let stamp = |seq, mono: u64, wall: i64, beat: Option<i64>| Stamp {
        seq,
        epoch: 1,
        renewed_mono_ms: mono,
        renewed_at: Timestamp(wall),
        beats: mono,
        beat_at: beat.map(Timestamp),
    };
    write_lease(
        e,
        "lease-file-max",
        &[
            stamp(max - 1, max, max as i64, Some(max as i64)),
            stamp(max, max, max as i64, None),
        ],
    );
    write_lease(
        e,
        "lease-file-min",
        &[
            stamp(2, u64::MAX, i64::MIN, Some(i64::MIN)),
            stamp(3, 1, 0, Some(0)),
        ],
    );
    ids
}

/// A reader ran to a normal end: no panic, no crash, an exit code the README lists.
fn assert_normal(what: &str, o: &Out, codes: &[i32]) {
    assert!(
        !o.stderr.contains("panicked") && matches!(o.ended, Ended::Code(_)),
        "{what}: crashed: {:?}\n{}",
        o.ended,
        o.stderr
    );
    assert!(
        codes.contains(&o.code()),
        "{what}: exit {} not in {codes:?}\nstdout: {}\nstderr: {}",
        o.code(),
        o.stdout,
        o.stderr
    );
}

#[test]
fn every_reader_survives_extreme_records() {
    let e = Env::new();
    state_dir(&e);
    let mut sleeper = Command::new("sleep");
    sleeper.arg("600");
    let pid = spawn(&mut sleeper);
    let start = tether::process::start_token(pid).unwrap();
    e.adopt(pid, &start);
    let ids = hostile_records(&e, (pid, &start));

    let o = e.tether(&["status"]);
    assert_normal("status", &o, &[0]);
    let o = e.tether(&["status", "--json"]);
    assert_normal("status --json", &o, &[0]);
    assert_eq!(
        o.json().as_array().map(Vec::len),
        Some(ids.len()),
        "{}",
        o.stdout
    );
    for id in &ids {
        let o = e.tether(&["status", id]);
        assert_normal(&format!("status {id}"), &o, &[0]);
        let o = e.tether(&["status", "--json", id]);
        assert_normal(&format!("status --json {id}"), &o, &[0]);
        assert_eq!(o.json1()["id"], *id);
        let o = e.tether(&["status", "--wait", "--timeout", "300ms", id]);
        assert_normal(&format!("status --wait {id}"), &o, &[0, 1, 3, 124]);
        for args in [
            vec!["inspect"],
            vec!["inspect", "--json"],
            vec!["result"],
            vec!["result", "--json"],
        ] {
            let mut a = args.clone();
            a.push(id);
            let o = e.tether(&a);
            assert_normal(&a.join(" "), &o, &[0, 1, 3, 5]);
            if a.contains(&"--json") {
                let _ = o.json();
            }
        }
        let o = e.tether(&["logs", id]);
        assert_normal(&format!("logs {id}"), &o, &[0, 6]);
    }
    let o = e.tether(&["gc", "--older-than", "0s", "--dry-run"]);
    assert_normal("gc --dry-run", &o, &[0]);
    let o = e.tether(&["gc", "--older-than", "36500d", "--dry-run"]);
    assert_normal("gc --older-than 36500d", &o, &[0]);
    for id in &ids {
        let o = e.tether(&["cancel", "--grace", "1s", "--json", id]);
        assert_normal(
            &format!("cancel {id}"),
            &o,
            &[0, tether::testing::exit::REFUSED],
        );
        let _ = o.json();
    }
    // Whatever the readers wrote back (reaps, cancels) is still a valid record.
    let o = e.tether(&["status", "--json"]);
    assert_normal("status --json at the end", &o, &[0]);
    assert_eq!(
        o.json().as_array().map(Vec::len),
        Some(ids.len()),
        "{}",
        o.stdout
    );
    let o = e.tether(&["gc", "--older-than", "0s"]);
    assert_normal("gc", &o, &[0]);
    kill_proven(pid, &start);
    assert!(wait(pid, Duration::from_secs(10)).is_some());
}

#[test]
fn absurd_durations_are_refused_naming_the_option() {
    let e = Env::new();
    let run = |opt: &'static str, val: &'static str| {
        let mut a = vec!["run", "--id", "x"];
        a.extend([opt, val, "--", "true"]);
        a
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (run("--ttl", "10000000d"), "--ttl"),
        (run("--ttl", "600000000y"), "--ttl"),
        (run("--interval", "10000000d"), "--interval"),
        (run("--grace", "100000d"), "--grace"),
        (
            vec![
                "run",
                "--detach",
                "--id",
                "x",
                "--ttl",
                "10000000d",
                "--",
                "true",
            ],
            "--ttl",
        ),
        (
            vec!["status", "--wait", "--timeout", "600000000y", "x"],
            "--timeout",
        ),
        (vec!["cancel", "--grace", "100000d", "x"], "--grace"),
        (vec!["gc", "--older-than", "600000000y"], "--older-than"),
    ];
    for (args, opt) in cases {
        let o = e.tether(&args);
        let what = args.join(" ");
        assert_eq!(o.code(), 2, "{what}: {}{}", o.stdout, o.stderr);
        let first = o.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(opt),
            "{what}: the error names no option: {}",
            o.stderr
        );
        assert!(
            first.contains("at most"),
            "{what}: the error names no bound: {}",
            o.stderr
        );
        assert!(o.stdout.is_empty(), "{what}: {}", o.stdout);
        assert!(!e.record_path("x").exists(), "{what}: a job was recorded");
    }
    // The bounds themselves are accepted, and at the limit a job really runs and reads back.
    let o = e.tether(&[
        "run",
        "--id",
        "edge",
        "--interval",
        "1d",
        "--ttl",
        "30d",
        "--",
        "true",
    ]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    for args in [
        vec!["status", "--json", "edge"],
        vec!["inspect", "--json", "edge"],
        vec!["result", "--json", "edge"],
    ] {
        let o = e.tether(&args);
        assert_normal(&args.join(" "), &o, &[0]);
        let _ = o.json();
    }
}
