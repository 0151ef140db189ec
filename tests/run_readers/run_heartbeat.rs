//! Heartbeat modes: a beating job stays alive past several ttls; a stopped one is recorded
//! `lost`/`heartbeat-timeout` and its process group is stopped.

use crate::common;

use std::time::{Duration, Instant};

use common::launch::*;
use rustix::process::Signal;
use tether::verdict::Outcome;

const LEASE: [&str; 6] = ["--interval", "250ms", "--ttl", "1s", "--grace", "1s"];

fn beating(env: &mut Env, mode: &str, script: &str) -> (String, u32) {
    let mut args: Vec<&str> = LEASE.to_vec();
    args.extend(["--heartbeat", mode, "--", "sh", "-c", script]);
    env.detach(&args)
}

/// Alive past several ttls with the expected progress; then stop the beating shell and expect the
/// stall to be recorded and the group to be gone.
fn check_alive_then_stall(env: &mut Env, id: &str, wrapper: u32, message: Option<&str>) {
    std::thread::sleep(Duration::from_millis(3500));
    let r = env.record(id);
    assert_eq!(r["status"], "running", "{r}\n{}", env.log(id));
    if let Some(m) = message {
        assert_eq!(r["progress"]["message"], m, "{r}");
    }
    assert!(r["progress"]["count"].as_u64().unwrap() >= 3, "{r}");
    assert!(matches!(env.settle(id).verdict.outcome, Outcome::Active));

    let child = child_pid(&r);
    signal(child, Signal::STOP);
    let t = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || env.record(id)["status"]
            == "lost"),
        "no stall recorded: {}",
        env.log(id)
    );
    // ttl + 2 intervals is the design bound; allow a loaded machine much more.
    assert!(t.elapsed() < Duration::from_secs(8));
    let r = env.record(id);
    assert_eq!(r["reason"], "heartbeat-timeout");
    if let Some(m) = message {
        assert_eq!(r["progress"]["message"], m, "{r}");
    }
    assert!(
        wait_for(Duration::from_secs(10), || group_gone(child)),
        "process group {child} still alive"
    );
    assert!(wait_for(Duration::from_secs(10), || !alive(wrapper)));
    // The child's end arrived after the stall was recorded: kept as a late result.
    let r = env.record(id);
    assert_eq!(r["status"], "lost");
    assert_eq!(r["late"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn notify_mode_with_systemd_notify() {
    if !common::need_tool("systemd-notify", "systemd") {
        return;
    }
    let mut env = Env::new();
    let (id, w) = beating(
        &mut env,
        "notify",
        "while :; do systemd-notify WATCHDOG=1 STATUS=working; sleep 0.2; done",
    );
    check_alive_then_stall(&mut env, &id, w, Some("working"));
}

#[test]
fn notify_mode_with_tether_beat() {
    let mut env = Env::new();
    let script = format!("while :; do {BIN} beat --status x; sleep 0.2; done");
    let (id, w) = beating(&mut env, "notify", &script);
    check_alive_then_stall(&mut env, &id, w, Some("x"));
}

#[test]
fn file_mode_with_tether_beat() {
    let mut env = Env::new();
    let script = format!("while :; do {BIN} beat --status x; sleep 0.2; done");
    let (id, w) = beating(&mut env, "file", &script);
    check_alive_then_stall(&mut env, &id, w, Some("x"));
}

#[test]
fn file_mode_with_touch() {
    let mut env = Env::new();
    let (id, w) = beating(
        &mut env,
        "file",
        "while :; do touch \"$TETHER_HEARTBEAT_FILE\"; sleep 0.2; done",
    );
    check_alive_then_stall(&mut env, &id, w, None);
}

#[test]
fn output_mode() {
    let mut env = Env::new();
    let (id, w) = beating(&mut env, "output", "while :; do echo tick; sleep 0.2; done");
    check_alive_then_stall(&mut env, &id, w, None);
    assert!(env.log(&id).contains("tick"));
}

#[test]
fn silent_job_stalls_and_keep_leaves_it_running() {
    let mut env = Env::new();
    let mut args: Vec<&str> = LEASE.to_vec();
    args.extend([
        "--heartbeat",
        "notify",
        "--on-stall",
        "keep",
        "--",
        "sleep",
        "30",
    ]);
    let (id, _w) = env.detach(&args);
    let child = child_pid(&env.record(&id));
    assert!(wait_for(
        Duration::from_secs(10),
        || env.record(&id)["status"] == "lost"
    ));
    assert_eq!(env.record(&id)["reason"], "heartbeat-timeout");
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(child), "--on-stall keep killed the child");
}

#[test]
fn watchdog_trigger_is_a_stall() {
    let mut env = Env::new();
    let mut args: Vec<&str> = vec!["--interval", "250ms", "--grace", "1s"];
    args.extend([
        "--ttl",
        "10s",
        "--heartbeat",
        "notify",
        "--",
        "sh",
        "-c",
        "sleep 0.5; systemd-notify WATCHDOG=trigger 2>/dev/null || python3 -c 'import os,socket; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b\"WATCHDOG=trigger\", os.environ[\"NOTIFY_SOCKET\"])'; sleep 30",
    ]);
    let (id, _w) = env.detach(&args);
    assert!(wait_for(
        Duration::from_secs(8),
        || env.record(&id)["status"] == "lost"
    ));
    assert_eq!(env.record(&id)["reason"], "heartbeat-timeout");
}

/// The child kept printing while the wrapper was stopped: those lines are beats that were given, so
/// waking up must not declare a stall (the lease itself may be re-taken with a new epoch).
#[test]
fn output_written_while_the_wrapper_was_stopped_counts() {
    let mut env = Env::new();
    let (id, w) = beating(&mut env, "output", "while :; do echo tick; sleep 0.1; done");
    let child = child_pid(&env.record(&id));
    for _ in 0..3 {
        signal(w, Signal::STOP);
        // Past the 1 s ttl; no reader judges meanwhile, so nobody else declares the job lost.
        std::thread::sleep(Duration::from_millis(2500));
        signal(w, Signal::CONT);
        std::thread::sleep(Duration::from_millis(1500));
        let r = env.record(&id);
        assert_eq!(r["status"], "running", "{r}\n{}", env.log(&id));
    }
    assert!(alive(child));
    assert!(matches!(env.settle(&id).verdict.outcome, Outcome::Active));
}
