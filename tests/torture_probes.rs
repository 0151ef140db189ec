//! Liveness probes (`run --probe`, issue 16): a broker that accepts and never answers is caught,
//! a healthy broker keeps a silent job alive, an exec probe that hangs is killed with its group,
//! and a probe that could never run is refused before anything starts. Real sockets, real processes.

mod common;

use std::time::Duration;

use common::broker::fixed as broker;
use common::torture::*;

fn child_pid(env: &Env, id: &str) -> u32 {
    env.record(id).unwrap()["child"]["pid"].as_u64().unwrap() as u32
}

#[test]
fn a_broker_that_accepts_and_never_answers_is_caught_and_the_group_stopped() {
    let env = Env::new();
    let port = broker(false);
    let url = format!("http://127.0.0.1:{port}/health");
    let (id, wrapper) = env.detach(&[
        "--probe",
        &url,
        "--probe-every",
        "200ms",
        "--probe-timeout",
        "300ms",
        "--probe-failures",
        "3",
        "--grace",
        "1s",
        "--",
        "sleep",
        "300",
    ]);
    let child = child_pid(&env, &id);
    let done = wait_for(Duration::from_secs(30), || {
        env.record(&id).unwrap()["status"] != "running"
    });
    let rec = env.record(&id).unwrap();
    assert!(done, "still running: {rec}");
    assert_eq!(rec["status"], "lost", "{rec}");
    assert_eq!(rec["reason"], "probe-failed", "{rec}");
    let probe = &rec["progress"]["probe"];
    assert_eq!(probe["ok"], false, "{rec}");
    assert!(probe["failures"].as_u64().unwrap() >= 3, "{rec}");
    assert!(
        probe["detail"].as_str().unwrap().contains("timed out"),
        "{rec}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || !alive(child)),
        "the job's process {child} outlived its failed probes"
    );
    assert!(wait_for(Duration::from_secs(20), || !alive(wrapper)));
    let o = env.tether(&["inspect", &id]);
    assert!(o.stdout.contains("probe      failed"), "{}", o.stdout);
}

#[test]
fn a_healthy_broker_keeps_a_silent_job_running_far_past_its_ttl() {
    let env = Env::new();
    let port = broker(true);
    let tcp = format!("tcp:127.0.0.1:{port}");
    let http = format!("http://127.0.0.1:{port}/");
    let mut jobs = Vec::new();
    for spec in [&tcp, &http] {
        // notify mode with a 5 s beat timeout would kill a silent job; probes alone do not.
        let (id, _) = env.detach(&[
            "--interval",
            "100ms",
            "--ttl",
            "500ms",
            "--probe",
            spec,
            "--probe-every",
            "100ms",
            "--",
            "sleep",
            "300",
        ]);
        jobs.push(id);
    }
    // Silent for 10 x the ttl.
    std::thread::sleep(Duration::from_secs(5));
    for id in &jobs {
        let _ = env.tether(&["status", id]);
        let rec = env.record(id).unwrap();
        assert_eq!(rec["status"], "running", "{rec}");
        assert_eq!(rec["progress"]["probe"]["ok"], true, "{rec}");
        assert!(alive(child_pid(&env, id)));
    }
}

#[test]
fn an_exec_probe_that_hangs_is_killed_with_its_group_and_fails() {
    let env = Env::new();
    let pids = env.tmp.path().join("probe-pids");
    let flag = env.tmp.path().join("healthy");
    std::fs::write(&flag, "").unwrap();
    // Healthy while the flag exists; then each probe hangs (and records its shell's pid).
    let spec = format!(
        "test -e {f} || {{ echo $$ >> {p}; sleep 30; }}",
        f = flag.display(),
        p = pids.display()
    );
    let (id, _) = env.detach(&[
        "--probe",
        &spec,
        "--probe-every",
        "200ms",
        "--probe-timeout",
        "300ms",
        "--probe-failures",
        "2",
        "--grace",
        "1s",
        "--",
        "sleep",
        "300",
    ]);
    assert!(wait_for(Duration::from_secs(20), || {
        env.record(&id).unwrap()["progress"]["probe"]["ok"] == true
    }));
    std::fs::remove_file(&flag).unwrap();
    assert!(
        wait_for(
            Duration::from_secs(30),
            || env.record(&id).unwrap()["reason"] == "probe-failed"
        ),
        "{}",
        env.record(&id).unwrap()
    );
    let rec = env.record(&id).unwrap();
    assert!(
        rec["progress"]["probe"]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{rec}"
    );
    // Every hung probe shell was killed at its timeout, not left to sleep 30 s.
    let started: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(!started.is_empty());
    for pid in started {
        assert!(
            wait_for(Duration::from_secs(10), || !alive(pid)),
            "probe shell {pid} outlived its timeout"
        );
    }
}

#[test]
fn a_probe_that_could_never_run_is_refused_before_anything_starts() {
    let env = Env::new();
    let flag = env.tmp.path().join("ran");
    for detach in [false, true] {
        let mut c = env.cmd();
        c.arg("run");
        if detach {
            c.arg("--detach");
        }
        c.args([
            "--probe",
            "no-such-command-for-tether --check",
            "--",
            "touch",
        ])
        .arg(&flag);
        let o = env.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 2, "detach={detach}: {}", o.stderr);
        assert!(
            o.stderr.contains("--probe") && o.stderr.contains("no-such-command-for-tether"),
            "{}",
            o.stderr
        );
        assert!(!flag.exists(), "the job ran");
        let jobs = std::fs::read_dir(env.jobs())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(jobs, 0, "a record was written");
    }
}

/// `tether` as the job sees it: this build, on the job's PATH.
fn path_with_tether() -> String {
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap())
}

#[test]
fn a_declared_silence_past_the_ttl_ends_succeeded() {
    let env = Env::new();
    for (mode, first) in [
        ("notify", "tether beat --extend 3s --message 'long step'"),
        ("file", "tether beat --extend 3s --message 'long step'"),
        (
            "file",
            r#"printf '{"message": "long step", "extend": "3s"}' > "$TETHER_HEARTBEAT_FILE""#,
        ),
    ] {
        // Silent for 2.5 s with a beat timeout of 1 s: only the declared silence keeps it alive.
        let script = format!("{first}; sleep 2.5; tether beat; exit 0");
        let mut c = env.cmd();
        c.env("PATH", path_with_tether()).args([
            "run",
            "--json",
            "--heartbeat",
            mode,
            "--interval",
            "200ms",
            "--ttl",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let o = env.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 0, "{mode} {first}: {}", o.stderr);
        let store = env.store();
        let mut recs: Vec<_> = tether::store::Store::list(&store)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        recs.sort_by_key(|r| r.created_at);
        let r = recs.last().unwrap();
        assert_eq!(r.status.as_str(), "succeeded", "{mode} {first}: {r:?}");
        assert_eq!(r.progress.message.as_deref(), Some("long step"), "{r:?}");
        assert!(r.progress.extended_until.is_some(), "{r:?}");
    }
}

#[test]
fn a_file_beats_message_shows_in_status_and_a_silence_in_inspect() {
    let env = Env::new();
    let script = r#"printf '{"message": "indexing 3 of 7", "extend": "1m"}' > "$TETHER_HEARTBEAT_FILE"; sleep 30"#;
    let (id, _) = env.detach(&["--heartbeat", "file", "--", "sh", "-c", script]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            env.tether(&["status", &id])
                .stdout
                .contains("indexing 3 of 7")
        }),
        "{}",
        env.tether(&["status", &id]).stdout
    );
    let o = env.tether(&["inspect", &id]);
    assert!(
        o.stdout.contains("silence  declared by the job until"),
        "{}",
        o.stdout
    );
}
