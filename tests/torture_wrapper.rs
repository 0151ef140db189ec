//! Torture tests of the wrapper (`tether run`) itself: its beat channel under hostile umasks and
//! senders, escaped daemons holding the job's output, and a record that disappears or is judged
//! lost under a wrapper that was stopped. Real processes, real sockets, real users (uid 65534).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::torture::*;

/// The environment variable `key` of a running process.
fn environ(pid: u32, key: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{key}=")).map(str::to_owned)
    })
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o777
}

fn child_of(env: &Env, id: &str) -> u32 {
    env.record(id).unwrap()["child"]["pid"].as_u64().unwrap() as u32
}

/// Starts a detached job with the given umask; returns (id, path of its beat channel).
fn detach_with_umask(env: &Env, umask: u32, heartbeat: &str, var: &str) -> (String, PathBuf) {
    let mut c = env.cmd();
    c.args([
        "run",
        "--detach",
        "--json",
        "--ttl",
        "30s",
        "--heartbeat",
        heartbeat,
    ])
    .args(["--", "sleep", "30"]);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    let o = env.run(c, Duration::from_secs(60));
    assert_eq!(o.code(), 0, "detach failed: {}", o.stderr);
    let v = o.json();
    let id = v["id"].as_str().unwrap().to_string();
    let rec = env.record(&id).unwrap();
    env.adopt(
        v["pid"].as_u64().unwrap() as u32,
        rec["holder"]["start"].as_str().unwrap(),
    );
    let c = &rec["child"];
    env.adopt(
        c["pid"].as_u64().unwrap() as u32,
        c["start"].as_str().unwrap(),
    );
    let path = environ(child_of(env, &id), var).expect("the child has its beat channel");
    (id, PathBuf::from(path))
}

#[test]
fn beat_channel_is_private_under_any_umask_and_in_the_state_directory() {
    for umask in [0o000, 0o022, 0o077] {
        let env = Env::new();
        for (mode_name, var, want) in [
            ("notify", "NOTIFY_SOCKET", 0o600),
            ("file", "TETHER_HEARTBEAT_FILE", 0o600),
        ] {
            let (_, p) = detach_with_umask(&env, umask, mode_name, var);
            let dir = p.parent().unwrap();
            let state = std::fs::canonicalize(&env.dir).unwrap();
            assert_eq!(
                dir.parent().unwrap(),
                state.join("run"),
                "umask {umask:o}: {mode_name} channel {} is not in the state directory",
                p.display()
            );
            assert_eq!(mode(&state.join("run")), 0o700, "umask {umask:o}: run/");
            assert_eq!(mode(dir), 0o700, "umask {umask:o}: {}", dir.display());
            assert_eq!(mode(&p), want, "umask {umask:o}: {}", p.display());
            let md = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
        }
    }
}

#[test]
fn notify_socket_longer_than_sun_path_falls_back_to_a_private_directory() {
    let env = Env::new();
    // A state directory whose socket path cannot fit in sun_path (108 bytes).
    let deep = env.tmp.path().join("d".repeat(100)).join("state");
    let mut c = Command::new(BIN);
    c.arg("--dir").arg(&deep).env_remove("NOTIFY_SOCKET");
    c.args([
        "run",
        "--detach",
        "--json",
        "--ttl",
        "30s",
        "--heartbeat",
        "notify",
    ])
    .args(["--", "sleep", "30"]);
    let o = env.run(c, Duration::from_secs(60));
    assert_eq!(o.code(), 0, "detach failed: {}", o.stderr);
    let v = o.json();
    let pid = v["pid"].as_u64().unwrap() as u32;
    let id = v["id"].as_str().unwrap();
    let store =
        tether::store::FileStore::open(tether::store::StateDir { root: deep }, false).unwrap();
    let rec = tether::store::Store::load(&store, &tether::id::JobId::parse(id).unwrap()).unwrap();
    env.adopt(pid, &rec.holder.start);
    let child = rec.child.unwrap();
    env.adopt(child.pid, &child.start);
    let p = PathBuf::from(environ(child.pid, "NOTIFY_SOCKET").unwrap());
    assert!(p.as_os_str().len() <= 107, "{}", p.display());
    assert_eq!(mode(p.parent().unwrap()), 0o700);
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn notify_socket_refuses_datagrams_from_another_user_and_counts_them() {
    if !common::need_tool("setpriv", "util-linux")
        || !common::need_tool("systemd-notify", "systemd")
    {
        return;
    }
    let env = Env::new();
    let (id, sock) = detach_with_umask(&env, 0o022, "notify", "NOTIFY_SOCKET");
    // The directories keep other users out; open the path up (as a mistake or a hostile root
    // would) so that only the credential check stands between uid 65534 and the job.
    let mut d = sock.parent();
    while let Some(dir) = d {
        let m = mode(dir);
        if m & 0o001 == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m | 0o011)).unwrap();
        }
        d = dir.parent();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let send = |as_nobody: bool, msg: &str| {
        let mut c = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "systemd-notify",
            ]);
            c
        } else {
            Command::new("systemd-notify")
        };
        c.args(["WATCHDOG=1", msg]).env("NOTIFY_SOCKET", &sock);
        let o = env.run(c, Duration::from_secs(30));
        assert_eq!(o.code(), 0, "systemd-notify failed: {}", o.stderr);
    };
    for _ in 0..3 {
        send(true, "STATUS=forged by uid 65534");
    }
    // systemd-notify sends `BARRIER=1` after the message, so at least 3 datagrams were refused.
    let rejected = |env: &Env| env.record(&id).unwrap()["progress"]["rejected"].as_u64();
    assert!(
        wait_for(Duration::from_secs(20), || rejected(&env) >= Some(3)),
        "rejected count not recorded: {}",
        env.record(&id).unwrap()
    );
    let rec = env.record(&id).unwrap();
    assert_eq!(rec["progress"]["count"], 0, "{rec}");
    assert!(rec["progress"]["message"].is_null(), "{rec}");
    let out = env.tether(&["inspect", &id]);
    let n = rejected(&env).unwrap();
    assert!(
        out.stdout.contains(&format!("{n} refused")),
        "inspect does not show the refusals:\n{}",
        out.stdout
    );
    // The job's own user still beats.
    send(false, "STATUS=from the job's user");
    assert!(
        wait_for(
            Duration::from_secs(20),
            || env.record(&id).unwrap()["progress"]["message"] == "from the job's user"
        ),
        "{}",
        env.record(&id).unwrap()
    );
    assert_eq!(rejected(&env), Some(n));
}

fn start_of(pid: u32) -> Option<String> {
    tether::process::start_token_any(pid)
}

/// Polls the job the way readers do (`tether status`, which judges and writes `lost`) until its
/// record is terminal; returns the record.
fn read_until_terminal(env: &Env, id: &str, limit: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = wait_for(limit, || {
        let _ = env.tether(&["status", id]);
        last = env.record(id).unwrap();
        !matches!(last["status"].as_str(), Some("starting" | "running"))
    });
    assert!(done, "job {id} still active after {limit:?}: {last}");
    last
}

#[test]
fn escaped_daemons_holding_the_output_do_not_starve_renewals() {
    let env = Env::new();
    let pids = env.tmp.path().join("escaped");
    let script = format!(
        "setsid sleep 20 & echo $! > {p}; setsid sleep 20 >&2 & echo $! >> {p}; echo done; exit 0",
        p = pids.display()
    );
    let (id, _) = env.detach(&[
        "--interval",
        "200ms",
        "--ttl",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&pids).is_ok_and(|s| s.lines().count() == 2)
    }));
    for line in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: u32 = line.trim().parse().unwrap();
        if let Some(start) = start_of(pid) {
            env.adopt(pid, &start);
        }
    }
    let rec = read_until_terminal(&env, &id, Duration::from_secs(20));
    assert_eq!(rec["status"], "succeeded", "{rec}");
    assert_eq!(rec["reason"], "exited", "{rec}");
    assert_eq!(rec["exit"]["code"], 0, "{rec}");
    assert_eq!(rec["late"].as_array().map(Vec::len), Some(0), "{rec}");
    let log = std::fs::read_to_string(env.jobs().join(format!("{id}.log"))).unwrap();
    assert!(log.contains("done"), "{log}");
}

#[test]
fn output_printed_just_before_exit_counts_as_beats() {
    let env = Env::new();
    for _ in 0..3 {
        let o = env.tether(&[
            "run",
            "--heartbeat",
            "output",
            "--",
            "sh",
            "-c",
            "sleep 0.2; echo a; echo b",
        ]);
        assert_eq!(o.code(), 0, "{}", o.stderr);
    }
    let store = env.store();
    for rec in tether::store::Store::list(&store).unwrap() {
        let rec = rec.unwrap();
        assert_eq!(rec.progress.count, 2, "{rec:?}");
    }
}

#[test]
fn a_wrapper_whose_record_is_removed_stops_its_child() {
    use rustix::process::Signal;
    for stopped in [false, true] {
        let env = Env::new();
        let (id, wrapper) = env.detach(&[
            "--interval",
            "100ms",
            "--ttl",
            "500ms",
            "--grace",
            "1s",
            "--",
            "sleep",
            "300",
        ]);
        let child = child_of(&env, &id);
        let sig = |s| {
            let p = rustix::process::Pid::from_raw(wrapper as i32).unwrap();
            rustix::process::kill_process(p, s).unwrap();
        };
        if stopped {
            // Stopped past its ttl, judged lost by a reader, then removed (as `gc` removes lost
            // jobs), and only then continued.
            sig(Signal::STOP);
            std::thread::sleep(Duration::from_millis(1500));
            let _ = env.tether(&["status", &id]);
            assert_eq!(env.record(&id).unwrap()["status"], "lost");
        }
        for ext in ["json", "lease", "log"] {
            let _ = std::fs::remove_file(env.jobs().join(format!("{id}.{ext}")));
        }
        if stopped {
            sig(Signal::CONT);
        }
        assert!(
            wait_for(Duration::from_secs(20), || !alive(child)),
            "stopped={stopped}: the child {child} runs on after its record was removed"
        );
        assert!(
            wait_for(Duration::from_secs(20), || !alive(wrapper)),
            "stopped={stopped}: the wrapper {wrapper} runs on"
        );
    }
}

#[test]
fn the_job_gets_its_id_and_beat_channel_and_nothing_of_tethers_own() {
    let env = Env::new();
    for (mode, channel) in [
        ("none", None),
        ("notify", Some("NOTIFY_SOCKET")),
        ("file", Some("TETHER_HEARTBEAT_FILE")),
    ] {
        // The wrapper finds its state directory through TETHER_DIR, as a user's shell would set it.
        let mut c = Command::new(BIN);
        c.env("TETHER_DIR", &env.dir)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("TETHER_HEARTBEAT_FILE")
            .args(["run", "--id", mode, "--heartbeat", mode, "--", "env"]);
        let o = env.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 0, "{}", o.stderr);
        let vars: Vec<&str> = o
            .stdout
            .lines()
            .filter_map(|l| l.split('=').next())
            .collect();
        assert!(vars.contains(&"TETHER_JOB_ID"), "{mode}: {vars:?}");
        assert!(!vars.contains(&"TETHER_DIR"), "{mode}: TETHER_DIR leaked");
        for v in ["NOTIFY_SOCKET", "TETHER_HEARTBEAT_FILE", "WATCHDOG_USEC"] {
            let want = channel == Some(v) || (v == "WATCHDOG_USEC" && mode == "notify");
            assert_eq!(vars.contains(&v), want, "{mode}: {v} in {vars:?}");
        }
    }
}

#[test]
fn every_change_of_the_heartbeat_file_is_a_beat() {
    let env = Env::new();
    // Counting every write needs file events (inotify); without them the count is per tick.
    let file_events = tether::testing::platform::DirEvents::new(
        env.tmp.path(),
        tether::testing::platform::Interest::Writes,
    )
    .is_ok();
    for (name, step) in [
        ("touch", "touch \"$TETHER_HEARTBEAT_FILE\""),
        ("write", "echo \"step $i\" > \"$TETHER_HEARTBEAT_FILE\""),
        ("beat", "tether beat --status \"step $i\""),
    ] {
        let script = format!("for i in 1 2 3 4 5 6 7 8; do {step}; sleep 0.05; done");
        let mut c = env.cmd();
        // `tether` in the job is this build.
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        c.env("PATH", path).args([
            "run",
            "--id",
            name,
            "--heartbeat",
            "file",
            "--interval",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let o = env.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 0, "{name}: {}", o.stderr);
        let rec = env.record(name).unwrap();
        if file_events {
            assert_eq!(rec["progress"]["count"], 8, "{name}: {rec}");
        } else {
            // The fallback (macOS, `--features portable`) compares the file's stamp once per tick
            // and at the end: a run under two 1 s intervals counts one or two beats.
            let n = rec["progress"]["count"].as_u64().unwrap_or(0);
            assert!((1..=2).contains(&n), "{name}: {rec}");
        }
        if name != "touch" {
            assert_eq!(rec["progress"]["message"], "step 8", "{name}: {rec}");
        }
    }
}

#[test]
fn tethers_diagnostics_stay_out_of_the_jobs_log() {
    let env = Env::new();
    let forged = "tether: no beat for 1ms: job forged recorded lost (heartbeat-timeout)";
    let (id, _) = env.detach(&[
        "--heartbeat",
        "notify",
        "--interval",
        "100ms",
        "--ttl",
        "500ms",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        &format!("echo '{forged}'; sleep 30"),
    ]);
    let rec = read_until_terminal(&env, &id, Duration::from_secs(20));
    assert_eq!(rec["reason"], "heartbeat-timeout", "{rec}");
    let real = "no beat for 500ms";
    let notes_path = env.jobs().join(format!("{id}.notes"));
    assert!(
        wait_for(Duration::from_secs(20), || std::fs::read_to_string(
            &notes_path
        )
        .is_ok_and(|n| n.contains("the child then ended"))),
        "{:?}",
        std::fs::read_to_string(&notes_path)
    );
    let log = std::fs::read_to_string(env.jobs().join(format!("{id}.log"))).unwrap();
    assert!(log.contains(forged), "{log}");
    assert!(
        !log.contains(real),
        "tether's own line is in the job's log: {log}"
    );
    let o = env.tether(&["result", &id, "--json"]);
    let v = o.json();
    let tail: Vec<&str> = v["log_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(tail, [forged], "{v}");
    let notes = v["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains(real)),
        "{v}"
    );
    assert!(
        !notes.iter().any(|n| n.as_str().unwrap().contains("forged")),
        "{v}"
    );
}

#[test]
fn channel_directories_of_killed_wrappers_are_swept_and_live_ones_kept() {
    use rustix::process::Signal;
    let env = Env::new();
    let (dead_id, dead_sock) = detach_with_umask(&env, 0o022, "notify", "NOTIFY_SOCKET");
    let (_, live_sock) = detach_with_umask(&env, 0o022, "notify", "NOTIFY_SOCKET");
    let dead_wrapper = env.record(&dead_id).unwrap()["holder"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let p = rustix::process::Pid::from_raw(dead_wrapper as i32).unwrap();
    rustix::process::kill_process(p, Signal::KILL).unwrap();
    assert!(wait_for(Duration::from_secs(20), || !alive(dead_wrapper)));
    // SIGKILL leaves the directory behind; the next wrapper that sets up a channel removes it.
    assert!(dead_sock.parent().unwrap().exists());
    let (_, new_sock) = detach_with_umask(&env, 0o022, "file", "TETHER_HEARTBEAT_FILE");
    assert!(
        !dead_sock.parent().unwrap().exists(),
        "{} left behind",
        dead_sock.display()
    );
    assert!(live_sock.exists(), "a live job's channel was removed");
    assert!(new_sock.exists());
}
