//! `tether run --unique KEY`: of concurrent starts with one key exactly one wins; a live holder
//! refuses the others (exit 12, naming it); a dead or expired holder is recorded lost and never
//! blocks. Real wrappers, real SIGKILL and SIGSTOP.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::launch::*;
use rustix::process::Signal;
use serde_json::Value;

const UNIQUE_HELD: i32 = 12;

/// Starts `n` detached runs with `key` at once; returns (exit code, stdout, stderr) of each.
fn race(env: &Env, key: &str, n: usize) -> Vec<(i32, String, String)> {
    let children: Vec<Child> = (0..n)
        .map(|_| {
            env.cmd()
                .args([
                    "run", "--detach", "--json", "--unique", key, "--", "sleep", "60",
                ])
                .stdin(Stdio::null())
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

/// The winner of a race: exactly one start succeeded, every other was refused naming it.
fn one_winner(env: &mut Env, results: &[(i32, String, String)]) -> (String, u32) {
    let won: Vec<&(i32, String, String)> = results.iter().filter(|r| r.0 == 0).collect();
    assert_eq!(won.len(), 1, "exactly one start must win: {results:#?}");
    let v: Value = serde_json::from_str(won[0].1.trim()).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let pid = v["pid"].as_u64().unwrap() as u32;
    let rec = env.record(&id);
    env.adopt(pid, rec["holder"]["start"].as_str().unwrap(), false);
    let c = &rec["child"];
    env.adopt(
        c["pid"].as_u64().unwrap() as u32,
        c["start"].as_str().unwrap(),
        true,
    );
    for (code, _, err) in results.iter().filter(|r| r.0 != 0) {
        assert_eq!(*code, UNIQUE_HELD, "a refused start: {err}");
        assert!(err.contains(&format!("job {id} holds this key")), "{err}");
    }
    (id, pid)
}

fn jobs_with_key(env: &Env, key: &str) -> Vec<Value> {
    let out = env.cmd().args(["status", "--json"]).output().unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|j| env.record(j["id"].as_str().unwrap())["unique"] == key)
        .cloned()
        .collect()
}

#[test]
fn sixteen_concurrent_starts_with_one_key_exactly_one_wins() {
    let mut env = Env::new();
    for round in 0..3 {
        let results = race(&env, "session-1", 16);
        let (id, pid) = one_winner(&mut env, &results);
        let active: Vec<Value> = jobs_with_key(&env, "session-1")
            .into_iter()
            .filter(|j| j["status"] == "running" || j["status"] == "starting")
            .collect();
        assert_eq!(active.len(), 1, "round {round}: {active:#?}");
        assert_eq!(active[0]["id"], id.as_str());
        // The holder dies: the next round must not be blocked by it.
        signal(pid, Signal::KILL);
        assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
    }
    // Every earlier winner is recorded lost (worker-exited), by the starts that judged it.
    let lost = jobs_with_key(&env, "session-1")
        .into_iter()
        .filter(|j| j["status"] == "lost")
        .count();
    assert_eq!(lost, 3, "each dead holder is recorded lost");
}

#[test]
fn another_key_is_independent_and_an_ended_holder_does_not_block() {
    let mut env = Env::new();
    env.detach(&["--id", "a", "--unique", "k1", "--", "sleep", "60"]);
    env.detach(&["--id", "b", "--unique", "k2", "--", "sleep", "60"]);
    let out = env
        .cmd()
        .args(["run", "--unique", "k3", "--id", "quick", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // "quick" succeeded and ended: k3 is free again.
    env.detach(&["--id", "c", "--unique", "k3", "--", "sleep", "60"]);
    assert_eq!(env.record("c")["unique"], "k3");
    // A bad key is a usage error, before anything is touched.
    let out = env
        .cmd()
        .args(["run", "--unique", "../x", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unique \"../x\""));
}

#[test]
fn a_wedged_holder_blocks_until_its_lease_expires_then_is_recorded_lost() {
    let mut env = Env::new();
    let (id, pid) = env.detach(&[
        "--unique",
        "w",
        "--interval",
        "200ms",
        "--ttl",
        "1s",
        "--",
        "sleep",
        "60",
    ]);
    signal(pid, Signal::STOP);
    let refused = race(&env, "w", 1);
    assert_eq!(
        refused[0].0, UNIQUE_HELD,
        "a fresh lease still holds the key: {refused:?}"
    );
    // After the ttl (generous slack for a loaded machine) the stopped holder is judged lost.
    let mut won = None;
    assert!(wait_for(Duration::from_secs(20), || {
        let r = race(&env, "w", 1);
        if r[0].0 == 0 {
            won = Some(r);
            true
        } else {
            false
        }
    }));
    one_winner(&mut env, &won.unwrap());
    let old = env.record(&id);
    assert_eq!(old["status"], "lost");
    assert_eq!(old["reason"], "lease-expired");
    signal(pid, Signal::CONT);
}

#[test]
fn unique_wait_queues_behind_the_holder_and_starts_when_it_ends() {
    let mut env = Env::new();
    env.detach(&["--id", "first", "--unique", "q", "--", "sleep", "1"]);
    // Queued: the launcher returns only once the second job is running, after the first ended.
    let (id, _) = env.detach(&[
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
    let first = env.record("first");
    let second = env.record("second");
    assert_eq!(first["status"], "succeeded", "{first:#}");
    assert_eq!(second["status"], "running");
    let ended = first["finished_at"].as_str().unwrap();
    let created = second["created_at"].as_str().unwrap();
    assert!(
        created >= ended,
        "second created at {created}, before first ended at {ended}"
    );

    // A holder that dies while others wait frees the key for one of them at once.
    let waiters: Vec<std::process::Child> = (0..3)
        .map(|_| {
            env.cmd()
                .args([
                    "run",
                    "--detach",
                    "--json",
                    "--unique",
                    "q",
                    "--unique-wait",
                    "--",
                    "sleep",
                    "60",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let holder = env.record("second")["holder"]["pid"].as_u64().unwrap() as u32;
    signal(holder, Signal::KILL);
    // One waiter starts; kill each new holder in turn, so every waiter gets the key once.
    let mut waiters: Vec<Option<std::process::Child>> = waiters.into_iter().map(Some).collect();
    let mut outs = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while outs.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "waiters still queued: {}",
            outs.len()
        );
        std::thread::sleep(Duration::from_millis(20));
        for slot in waiters.iter_mut() {
            let done = slot
                .as_mut()
                .is_some_and(|w| w.try_wait().unwrap().is_some());
            if !done {
                continue;
            }
            let out = slot.take().unwrap().wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let pid = v["pid"].as_u64().unwrap() as u32;
            let rec = env.record(v["id"].as_str().unwrap());
            env.adopt(pid, rec["holder"]["start"].as_str().unwrap(), false);
            let c = &rec["child"];
            env.adopt(
                c["pid"].as_u64().unwrap() as u32,
                c["start"].as_str().unwrap(),
                true,
            );
            let active = jobs_with_key(&env, "q")
                .into_iter()
                .filter(|j| j["status"] == "running" || j["status"] == "starting")
                .count();
            assert_eq!(active, 1, "one holder at a time");
            outs.push(v);
            signal(pid, Signal::KILL);
            assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
        }
    }
    assert_eq!(outs.len(), 3);
    assert_eq!(env.record("second")["status"], "lost");
}
