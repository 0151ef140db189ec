//! `tether run --unique KEY` on etcd (protocol.md 11.8), against a real etcd started by the test:
//! of 16 concurrent starts with one key exactly one wins and the others are refused naming it
//! (exit 12); a SIGKILLed holder is judged lost and does not block the next start; `--unique-wait`
//! queues behind a live holder. Every process the test starts is stopped by pid.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::proc::{alive, signal};
use etcd_common::Etcd;
use etcd_common::cli::{Env, wait_for};
use rustix::process::Signal;
use serde_json::Value;

const UNIQUE_HELD: i32 = 12;

/// Starts `n` detached runs with `key` at once; returns (exit code, stdout, stderr) of each.
fn race(env: &Env, key: &str, n: usize) -> Vec<(i32, String, String)> {
    let children: Vec<Child> = (0..n)
        .map(|_| {
            env.cmd()
                .args([
                    "run", "--detach", "--json", "--ttl", "5s", "--unique", key, "--", "sleep",
                    "60",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

/// Exactly one start won and every other was refused naming the winner: (id, wrapper pid).
fn one_winner(env: &mut Env, results: &[(i32, String, String)]) -> (String, u32) {
    let won: Vec<_> = results.iter().filter(|r| r.0 == 0).collect();
    assert_eq!(won.len(), 1, "exactly one start must win: {results:#?}");
    let v: Value = serde_json::from_str(won[0].1.trim()).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let (pid, _) = env.adopt(&id);
    for (code, _, err) in results.iter().filter(|r| r.0 != 0) {
        assert_eq!(*code, UNIQUE_HELD, "a refused start: {err}");
        assert!(err.contains(&format!("job {id} holds this key")), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    (id, pid)
}

/// The jobs recorded with `key`, as `status --json` judges them.
fn with_key(env: &Env, key: &str) -> Vec<Value> {
    let all = env.json(&["status", "--json"]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["unique"] == key)
        .cloned()
        .collect()
}

#[test]
fn sixteen_concurrent_starts_with_one_key_exactly_one_wins_and_a_killed_holder_never_blocks() {
    let Some(e) = Etcd::start("etcd_unique_sixteen") else {
        return;
    };
    let mut env = Env::new(&e, "uniq");
    for round in 0..2 {
        let results = race(&env, "session-1", 16);
        let (id, pid) = one_winner(&mut env, &results);
        let active: Vec<Value> = with_key(&env, "session-1")
            .into_iter()
            .filter(|j| j["status"] == "running" || j["status"] == "starting")
            .collect();
        assert_eq!(active.len(), 1, "round {round}: {active:#?}");
        assert_eq!(active[0]["id"], id.as_str());
        // The holder dies (its lease would hold the key for its ttl): the next round's starts
        // judge it lost through the pid on this host and take the key at once.
        signal(pid, Signal::KILL);
        assert!(wait_for(Duration::from_secs(5), || !alive(pid)).is_some());
    }
    let lost: Vec<Value> = with_key(&env, "session-1")
        .into_iter()
        .filter(|j| j["status"] == "lost")
        .collect();
    assert_eq!(
        lost.len(),
        2,
        "each killed holder is recorded lost: {lost:#?}"
    );
    for j in &lost {
        assert_eq!(j["reason"], "worker-exited", "{j}");
    }
}

#[test]
fn unique_wait_queues_behind_a_live_holder_on_etcd() {
    let Some(e) = Etcd::start("etcd_unique_wait") else {
        return;
    };
    let mut env = Env::new(&e, "uniq");
    env.detach(&["--id", "first", "--unique", "q", "--", "sleep", "2"]);
    // Without waiting: refused, naming the holder.
    let o = env.out(&["run", "--detach", "--unique", "q", "--", "true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(UNIQUE_HELD), "{err}");
    assert!(err.contains("job first holds this key"), "{err}");
    // Queued: the launcher returns only once the second job runs, after the first ended.
    let (id, _, _) = env.detach(&[
        "--id",
        "second",
        "--unique",
        "q",
        "--unique-wait",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(id, "second");
    let first = env.status("first");
    let second = env.status("second");
    assert_eq!(first["status"], "succeeded", "{first:#}");
    assert_eq!(second["status"], "running", "{second:#}");
    let ended = first["finished_at"].as_str().unwrap();
    let created = second["created_at"].as_str().unwrap();
    assert!(
        created >= ended,
        "second created at {created}, before first ended at {ended}"
    );
}
