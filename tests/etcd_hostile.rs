//! Bad input on etcd through the `tether` command (issue 10 item 6; protocol.md 11.2): keys under
//! the prefix that are not tether's records, a record of a newer protocol, and a store URL with the
//! wrong prefix (one that holds nothing, one that holds another application's keys). Each is named
//! in one line or reported and skipped, nothing of it is rewritten or deleted (read back with the
//! client, beside tether), and a real job next to it runs, renews and ends unaffected.
//! `etcd_store.rs` checks the same keys through the library; this is what a user sees.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use etcd_common::cli::Env;
use etcd_common::{Etcd, raw};
use serde_json::Value;

/// A command that failed with `code` and one line on stderr containing every one of `names`.
#[track_caller]
fn one_line(o: &Output, code: i32, names: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for n in names {
        assert!(err.contains(n), "{n:?} not named: {err}");
    }
    err
}

/// Every key under `prefix/` with its value.
fn snapshot(e: &Etcd, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    raw::under(&e.endpoint(), &format!("{prefix}/"))
        .into_iter()
        .collect()
}

#[test]
fn keys_that_are_not_tethers_and_newer_records_are_named_and_left_alone() {
    let Some(e) = Etcd::start("hostile_keys_cli") else {
        return;
    };
    let ep = e.endpoint();
    let mut cli = Env::new(&e, "app");
    let (good, _, _) = cli.detach(&[
        "--id",
        "good",
        "--ttl",
        "2s",
        "--interval",
        "500ms",
        "--",
        "sh",
        "-c",
        "sleep 4; echo fine",
    ]);
    // A record of a newer protocol: good's own record, renamed, as a newer tether would write it.
    let mut newer: Value =
        serde_json::from_slice(&raw::get(&ep, "app/jobs/good").unwrap()).unwrap();
    newer["id"] = "future".into();
    newer["protocol"] = 2.into();
    raw::put(&ep, "app/jobs/future", &serde_json::to_vec(&newer).unwrap());
    raw::put(&ep, "app/jobs/not a job id", b"hello");
    raw::put(&ep, "app/jobs/broken", b"{\"protocol\":1,");
    raw::put(&ep, "app/jobs/foreign", br#"{"name": "another app's job"}"#);
    raw::put(&ep, "app/unrelated/x", b"someone else's key");
    let planted: BTreeMap<String, Vec<u8>> = snapshot(&e, "app")
        .into_iter()
        .filter(|(k, _)| !k.ends_with("/good"))
        .collect();
    assert_eq!(planted.len(), 5, "{:?}", planted.keys());

    // The listing shows the good job and names each bad record on a line of its own (exit 7).
    let o = cli.out(&["status", "--json"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(7), "{err}");
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["good"], "{listed}");
    for (what, line) in [
        ("future", "version 2"),
        ("broken", "jobs/broken"),
        ("foreign", "jobs/foreign"),
    ] {
        let hits = err.lines().filter(|l| l.contains(line)).count();
        assert_eq!(hits, 1, "{what} not named on one line: {err}");
    }
    assert!(err.lines().count() <= 4, "{err}");
    assert!(
        !err.contains("unrelated"),
        "another app's key reported: {err}"
    );

    // Commands aimed at them name them in one line and write nothing.
    for id in ["future", "broken", "foreign"] {
        one_line(&cli.out(&["status", id]), 7, &[id]);
        one_line(&cli.out(&["cancel", id]), 7, &[id]);
        one_line(&cli.out(&["result", id]), 7, &[id]);
    }
    one_line(&cli.out(&["status", "future"]), 7, &["future", "version 2"]);
    let o = cli.out(&["gc", "--older-than", "0s"]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{o:?}"
    );

    // The good job beside them renewed past its ttl twice over and ended as it should.
    let o = cli.out(&["status", "--wait", "--timeout", "60s", &good]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let st = cli.status(&good);
    assert_eq!(st["status"], "succeeded", "{st}");
    let o = cli.out(&["result", &good]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("fine"), "{o:?}");

    // gc removes the finished good job and nothing else.
    let o = cli.out(&["gc", "--older-than", "0s"]);
    let after = snapshot(&e, "app");
    assert!(
        !after.contains_key("app/jobs/good"),
        "gc left the finished job: {o:?}"
    );
    assert_eq!(after, planted, "a key tether does not own was changed");
}

#[test]
fn a_wrong_prefix_reads_nothing_and_touches_nothing() {
    let Some(e) = Etcd::start("wrong_prefix_cli") else {
        return;
    };
    let ep = e.endpoint();
    let mut team = Env::new(&e, "team/a");
    let (job, _, _) = team.detach(&[
        "--id",
        "job1",
        "--ttl",
        "2s",
        "--interval",
        "500ms",
        "--",
        "sleep",
        "60",
    ]);
    raw::put(&ep, "otherapp/config", b"mode=fast");
    raw::put(&ep, "otherapp/queue/7", br#"{"task": 7}"#);
    let other = snapshot(&e, "otherapp");
    let team_keys: Vec<String> = snapshot(&e, "team/a").into_keys().collect();

    // A prefix that holds nothing, one that holds a part of the right one, and another
    // application's: no jobs, and a job id is not found there, with the URL named.
    for prefix in ["nothing", "team", "otherapp"] {
        let wrong = Env::new(&e, prefix);
        let o = wrong.out(&["status", "--json"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{prefix}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v, serde_json::json!([]), "{prefix}: {v}");
        for cmd in ["status", "cancel", "result"] {
            let o = wrong.out(&[cmd, &job]);
            one_line(&o, 6, &[&job, &wrong.url]);
        }
        let o = wrong.out(&["gc", "--older-than", "0s"]);
        assert_eq!(o.status.code(), Some(0), "{prefix}: {o:?}");
    }
    assert_eq!(
        snapshot(&e, "otherapp"),
        other,
        "another app's keys changed"
    );
    assert_eq!(snapshot(&e, "nothing"), BTreeMap::new());

    // The job under the right prefix never noticed: still running, its lease renewed past the
    // ttl, cancelled normally.
    std::thread::sleep(Duration::from_millis(2500));
    let st = team.status(&job);
    assert_eq!(st["status"], "running", "{st}");
    let now: Vec<String> = snapshot(&e, "team/a").into_keys().collect();
    assert_eq!(now, team_keys);
    let o = team.out(&["cancel", &job]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(team.status(&job)["status"], "cancelled");
}

/// protocol.md 11.2: a key under `P/jobs/` whose last part is not a job id is reported like a
/// corrupt record, naming the key, by `status` as by the library's `list()` (`etcd_store.rs`),
/// and left untouched.
#[test]
fn the_listing_names_a_key_that_is_not_a_job_id() {
    let Some(e) = Etcd::start("listing_names_a_key_that_is_not_a_job_id") else {
        return;
    };
    let cli = Env::new(&e, "app");
    raw::put(&e.endpoint(), "app/jobs/not a job id", b"hello");
    let o = cli.out(&["status"]);
    one_line(&o, 7, &["app/jobs/not a job id"]);
    assert_eq!(
        raw::get(&e.endpoint(), "app/jobs/not a job id").as_deref(),
        Some(&b"hello"[..])
    );
}
