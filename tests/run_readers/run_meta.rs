//! `tether run --meta`: labels stored in the record before the job starts, shown by `status` and
//! `inspect`, filtered on by `status --meta`, bounded, and refused with a clear error when bad.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::launch::*;
use serde_json::Value;

fn status_json(env: &Env, args: &[&str]) -> Value {
    let out = env
        .cmd()
        .args(["status", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn metadata_is_recorded_before_the_job_starts_and_filters_status() {
    let mut env = Env::new();
    // The job reads its own record as its first act: the metadata must already be there.
    let script = format!(
        "{BIN} --dir {} status --json \"$TETHER_JOB_ID\" > {}/self.json; sleep 30",
        env.dir.display(),
        env.tmp.path().display()
    );
    env.detach(&[
        "--id",
        "a",
        "--meta",
        "session=s1",
        "--meta",
        "kind=task",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    env.detach(&[
        "--id",
        "b",
        "--meta-json",
        r#"{"session": "s2"}"#,
        "--",
        "sleep",
        "30",
    ]);
    env.detach(&["--id", "c", "--", "sleep", "30"]);

    let rec = env.record("a");
    assert_eq!(
        rec["meta"],
        serde_json::json!({"kind": "task", "session": "s1"})
    );
    assert_eq!(
        env.record("b")["meta"],
        serde_json::json!({"session": "s2"})
    );
    assert!(
        env.record("c").get("meta").is_none(),
        "no metadata, no field"
    );

    let self_json = env.tmp.path().join("self.json");
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&self_json).is_ok_and(|s| s.contains("\"session\""))
    }));
    let seen: Value = serde_json::from_str(&std::fs::read_to_string(&self_json).unwrap()).unwrap();
    let seen = if seen.is_array() {
        seen[0].clone()
    } else {
        seen
    };
    assert_eq!(
        seen["meta"]["session"], "s1",
        "the job did not see its metadata"
    );

    assert_eq!(ids(&status_json(&env, &["--meta", "session=s1"])), ["a"]);
    assert_eq!(ids(&status_json(&env, &["--meta", "session=s2"])), ["b"]);
    assert_eq!(
        ids(&status_json(
            &env,
            &["--meta", "session=s1", "--meta", "kind=task"]
        )),
        ["a"]
    );
    assert!(
        ids(&status_json(
            &env,
            &["--meta", "session=s1", "--meta", "kind=x"]
        ))
        .is_empty()
    );
    assert_eq!(ids(&status_json(&env, &[])), ["a", "b", "c"]);
    assert!(
        status_json(&env, &[])[0]["meta"].is_object(),
        "every job shows meta"
    );

    let out = env.cmd().args(["inspect", "a"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("meta       kind=task session=s1"));
}

#[test]
fn bad_metadata_is_a_usage_error_and_starts_nothing() {
    let env = Env::new();
    let long = format!("k={}", "x".repeat(1025));
    for (args, says) in [
        (vec!["--meta", "a/b=1"], "\"a/b\""),
        (vec!["--meta", "novalue"], "is not KEY=VALUE"),
        (vec!["--meta", "a=1", "--meta", "a=2"], "a is given twice"),
        (
            vec!["--meta-json", r#"{"n": 1}"#],
            "value of n is not a string",
        ),
        (vec!["--meta", long.as_str()], "1025 bytes"),
    ] {
        let out = env
            .cmd()
            .arg("run")
            .args(&args)
            .args(["--id", "never", "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(
            !env.dir.join("jobs/never.json").exists(),
            "{args:?} started a job"
        );
    }
    let out = env.cmd().args(["status", "--meta", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
