//! Torture tests of the wrapper (`tether run`) itself: its beat channel under hostile umasks and
//! senders, escaped daemons holding the job's output, and a record that disappears or is judged
//! lost under a wrapper that was stopped. Real processes, real sockets, real users (uid 65534).

mod torture_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use torture_support::*;

/// Under CI=true a missing tool fails the test; elsewhere the test says it was skipped.
fn need(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is needed for this test (CI=true)"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

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
    if !need("setpriv") || !need("systemd-notify") {
        return;
    }
    let env = Env::new();
    let (id, sock) = detach_with_umask(&env, 0o022, "notify", "NOTIFY_SOCKET");
    // The directories keep other users out; open the path up (as a mistake or a hostile root
    // would) so that only the credential check stands between uid 65534 and the job.
    let state = std::fs::canonicalize(&env.dir).unwrap();
    for d in [
        env.tmp.path(),
        &state,
        &state.join("run"),
        sock.parent().unwrap(),
    ] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
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
    let rejected = |env: &Env| env.record(&id).unwrap()["progress"]["rejected"].as_u64();
    assert!(
        wait_for(Duration::from_secs(20), || rejected(&env) == Some(3)),
        "rejected count not recorded: {}",
        env.record(&id).unwrap()
    );
    let rec = env.record(&id).unwrap();
    assert_eq!(rec["progress"]["count"], 0, "{rec}");
    assert!(rec["progress"]["message"].is_null(), "{rec}");
    let out = env.tether(&["inspect", &id]);
    assert!(
        out.stdout.contains("3 refused"),
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
    assert_eq!(rejected(&env), Some(3));
}
