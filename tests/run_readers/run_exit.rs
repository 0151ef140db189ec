//! `tether run` in the foreground: exit codes, records, the log and the child's environment.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::launch::*;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn true_succeeds() {
    let mut env = Env::new();
    let (code, _, err) = env.run_fg(&["--id", "ok", "--", "true"], LIMIT);
    assert_eq!(code, 0, "{err}");
    let r = env.record("ok");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["reason"], "exited");
    assert_eq!(r["exit"]["code"], 0);
    assert!(r["child"]["pid"].as_u64().unwrap() > 1);
    assert!(r["finished_at"].is_string());
}

#[test]
fn exit_code_is_passed_through_and_output_is_logged() {
    let mut env = Env::new();
    let (code, out, err) = env.run_fg(
        &[
            "--id",
            "three",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; echo \"$TETHER_JOB_ID [${TETHER_DIR-unset}]\"; exit 3",
        ],
        LIMIT,
    );
    assert_eq!(code, 3, "{err}");
    assert!(out.contains("to-out"), "{out}");
    assert!(err.contains("to-err"), "{err}");
    let r = env.record("three");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["reason"], "exited");
    assert_eq!(r["exit"]["code"], 3);
    let log = env.log("three");
    assert!(log.contains("to-out") && log.contains("to-err"), "{log}");
    assert!(log.contains("three [unset]"), "{log}");
    let mode = std::fs::metadata(env.dir.join("jobs/three.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn killed_child_gives_128_plus_signal() {
    let mut env = Env::new();
    let (code, _, err) = env.run_fg(&["--id", "k", "--", "sh", "-c", "kill -9 $$"], LIMIT);
    assert_eq!(code, 137, "{err}");
    let r = env.record("k");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["reason"], "signaled");
    assert_eq!(r["exit"]["signal"], 9);
}

#[test]
fn missing_command_is_127_and_start_failed() {
    let mut env = Env::new();
    let (code, _, err) = env.run_fg(&["--id", "m", "--", "no-such-command-xyz"], LIMIT);
    assert_eq!(code, 127);
    assert!(err.contains("no-such-command-xyz"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let r = env.record("m");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["reason"], "start-failed");
}

#[test]
fn non_executable_is_126() {
    let mut env = Env::new();
    let f = env.tmp.path().join("script");
    std::fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = env.run_fg(&["--id", "n", "--", path_str(&f)], LIMIT);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("script"), "{err}");
    assert_eq!(env.record("n")["reason"], "start-failed");
}

#[test]
fn bad_usage_is_2_before_anything_is_written() {
    let mut env = Env::new();
    let (code, _, err) = env.run_fg(&["--id", "../x", "--", "true"], LIMIT);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = env.run_fg(&["--interval", "1s", "--ttl", "1s", "--", "true"], LIMIT);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("twice"), "{err}");
    assert!(
        !env.dir.join("jobs").exists() || env.dir.join("jobs").read_dir().unwrap().count() == 0
    );
    let (code, _, _) = env.run_fg(&["--id", "dup", "--", "true"], LIMIT);
    assert_eq!(code, 0);
    let (code, _, err) = env.run_fg(&["--id", "dup", "--", "true"], LIMIT);
    assert_eq!(code, 9, "an id taken has its own exit code: {err}");
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn generated_ids_are_used() {
    let mut env = Env::new();
    let (code, _, err) = env.run_fg(&["--", "true"], LIMIT);
    assert_eq!(code, 0, "{err}");
    let id = env.only_id();
    assert_eq!(env.record(&id)["status"], "succeeded");
}

#[test]
fn sigterm_to_the_wrapper_is_forwarded_and_recorded() {
    let mut env = Env::new();
    let mut c = env.cmd();
    c.args(["run", "--id", "t", "--", "sleep", "30"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut wrapper = c.spawn().unwrap();
    let wp = wrapper.id();
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read(env.dir.join("jobs/t.json"))
            .map(|_| env.record("t")["status"] == "running")
            .unwrap_or(false)
    }));
    let rec = env.record("t");
    env.adopt(
        child_pid(&rec),
        rec["child"]["start"].as_str().unwrap(),
        true,
    );
    signal(wp, rustix::process::Signal::TERM);
    let st = wrapper.wait().unwrap();
    assert_eq!(st.code(), Some(128 + 15));
    let r = env.record("t");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["reason"], "holder-signaled");
    assert_eq!(r["exit"]["signal"], 15);
    assert!(!alive(child_pid(&r)));
}

/// An idle wrapper sleeps in its own `poll` (src/wrapper/idle.rs) with the forwarded signals
/// waiting in a signalfd: a SIGTERM that came while it slept there must still reach the job, and
/// the job itself must start with none of those signals blocked.
#[test]
fn an_idle_wrapper_still_forwards_sigterm_and_the_job_blocks_nothing() {
    let mut env = Env::new();
    let (id, w) = env.detach(&["--interval", "300ms", "--ttl", "30s", "--", "sleep", "100"]);
    let child = child_pid(&env.record(&id));
    let blocked = std::fs::read_to_string(format!("/proc/{child}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_eq!(
        blocked, "0000000000000000",
        "the job starts with signals blocked"
    );
    // Several ticks, so the wrapper has gone quiet and waits in the idle poll.
    std::thread::sleep(Duration::from_millis(1500));
    signal(w, rustix::process::Signal::TERM);
    assert!(
        wait_for(Duration::from_secs(15), || !alive(w)),
        "the wrapper did not act on SIGTERM while idle"
    );
    let r = env.record(&id);
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["reason"], "holder-signaled", "{r}");
    assert_eq!(r["exit"]["signal"], 15, "{r}");
    assert!(!alive(child));
}

/// Exec probes are spawned without a pre-exec hook (std then uses posix_spawn, far cheaper than
/// fork for the wrapper), and std's posix_spawn clears the signal mask: the probe's shell must not
/// inherit the wrapper's blocked TERM, INT and HUP.
#[test]
fn exec_probes_start_with_no_signal_blocked() {
    let mut env = Env::new();
    let out = env.dir.join("sigblk");
    let probe = format!("grep SigBlk /proc/self/status >> {}", out.display());
    let (code, _, err) = env.run_fg(
        &[
            "--probe",
            &probe,
            "--probe-every",
            "200ms",
            "--",
            "sleep",
            "1.5",
        ],
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(lines.lines().count() >= 1, "no probe ran");
    for l in lines.lines() {
        assert_eq!(
            l.split_whitespace().nth(1),
            Some("0000000000000000"),
            "{lines}"
        );
    }
}

#[test]
fn beat_outside_a_job_is_a_usage_error() {
    let env = Env::new();
    let out = env.cmd().args(["beat", "--status", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--heartbeat notify"), "{err}");
}

/// A job that ignores the forwarded SIGTERM is SIGKILLed after `--grace`: the wrapper was told to
/// stop, and the group must not outlive it.
#[test]
fn forwarded_sigterm_escalates_to_sigkill_after_grace() {
    let mut env = Env::new();
    let (id, w) = env.detach(&["--grace", "1s", "--", "sh", "-c", "trap '' TERM; sleep 100"]);
    let child = child_pid(&env.record(&id));
    // Give the shell time to install its trap before the signal comes.
    std::thread::sleep(Duration::from_millis(300));
    signal(w, rustix::process::Signal::TERM);
    assert!(
        wait_for(Duration::from_secs(15), || group_gone(child)),
        "process group {child} outlived the grace period: {}",
        env.log(&id)
    );
    assert!(wait_for(Duration::from_secs(10), || !alive(w)));
    let r = env.record(&id);
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["reason"], "holder-signaled", "{r}");
    assert_eq!(r["exit"]["signal"], 9, "{r}");
}

/// The idle wait keeps time with its own timeout while the timer is paused, and starts the timer
/// again whenever it hands back to tokio (src/wrapper/idle.rs). A job that writes a line every
/// 0.45 s sends the wrapper back and forth between the two every few ticks: no tick may be lost
/// or doubled on the way. Counted from the lease file's sequence number, one per renewal, with
/// room for a loaded machine.
#[test]
fn renewals_keep_their_pace_across_the_idle_wait_and_output() {
    let mut env = Env::new();
    let script = "while :; do echo x; sleep 0.45; done";
    let (id, w) = env.detach(&[
        "--interval",
        "200ms",
        "--ttl",
        "30s",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let lease = env.dir.join(format!("jobs/{id}.lease"));
    let seq = || {
        let bytes = std::fs::read(&lease).unwrap_or_default();
        tether::lease_file::newest(&bytes).map_or(0, |s| s.seq)
    };
    std::thread::sleep(Duration::from_secs(1));
    let (s0, t0) = (seq(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (s1, ticks) = (seq(), t0.elapsed().as_millis() as u64 / 200);
    let renewals = s1 - s0;
    assert!(
        renewals >= ticks * 6 / 10 && renewals <= ticks + 3,
        "{renewals} renewals in {ticks} ticks"
    );
    assert_eq!(env.record(&id)["status"], "running");
    signal(w, rustix::process::Signal::TERM);
    assert!(wait_for(Duration::from_secs(15), || !alive(w)));
}
