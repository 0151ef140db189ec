//! The CLI contract scripts rely on (issue 15): one JSON shape per command, validated against
//! schema/cli-output.schema.json by a Python script that uses nothing but `--json` and exit
//! codes; one exit-code table in every `--help`; errors as JSON in `--json` mode; closed pipes.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::launch::*;

/// The Python driver (tests/cli_contract.py). python3 and its `jsonschema` package are required
/// (.ci/run installs python3-jsonschema): a missing tool fails the test, it never skips it.
#[test]
fn a_python_script_drives_tether_through_json_and_exit_codes_alone() {
    let root = env!("CARGO_MANIFEST_DIR");
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .expect("python3 is required (Debian: python3)");
    assert!(
        probe.status.success(),
        "the Python package jsonschema is required (Debian: python3-jsonschema): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let o = Command::new("python3")
        .arg(format!("{root}/tests/cli_contract.py"))
        .arg(BIN)
        .arg(format!("{root}/schema/cli-output.schema.json"))
        .env_remove("TETHER_DIR")
        .env_remove("TETHER_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_commands_help_lists_the_exit_codes() {
    for cmd in [
        "run",
        "beat",
        "status",
        "inspect",
        "result",
        "cancel",
        "logs",
        "rm",
        "gc",
        "watch",
        "completions",
    ] {
        let o = Command::new(BIN).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{cmd} --help");
        for line in [
            "  9    the job id is already taken",
            "  11   refused to signal",
        ] {
            assert!(help.contains(line), "{cmd} --help lacks {line:?}:\n{help}");
        }
    }
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    for args in [&["completions", "fish"][..], &["status", "--help"][..]] {
        let mut c = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(c.stdout.take()); // as `| true` does: the reader is gone before tether writes
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = c.wait().unwrap();
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn run_takes_the_command_without_a_double_dash_and_rm_frees_the_id() {
    let mut env = Env::new();
    let (code, out, err) = env.run_fg(&["--id", "plain", "echo", "-n", "--json"], LIMIT);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "--json", "the command's own flags belong to it");
    let (code, _, err) = env.run_fg(&["--id", "plain", "--", "true"], LIMIT);
    assert_eq!(code, 9, "{err}");
    assert!(
        err.contains("tether rm plain"),
        "the id-taken error points at rm: {err}"
    );
    let o = env.cmd().args(["remove", "plain"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (code, _, err) = env.run_fg(&["--id", "plain", "--", "true"], LIMIT);
    assert_eq!(code, 0, "rm did not free the id: {err}");
}

#[test]
fn rm_refuses_an_active_job_unless_forced() {
    let mut env = Env::new();
    let (id, _) = env.detach(&["--", "sleep", "60"]);
    let child = child_pid(&env.record(&id));
    let o = env.cmd().args(["rm", &id]).output().unwrap();
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(alive(child));
    let o = env
        .cmd()
        .args(["rm", "--force", "--grace", "2s", &id])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(wait_for(Duration::from_secs(5), || !alive(child)));
    assert!(!env.dir.join("jobs").join(format!("{id}.json")).exists());
}

#[test]
fn last_beat_is_the_last_heartbeat_not_the_renewal() {
    let mut env = Env::new();
    // `none` mode never beats: LAST BEAT is "-" although the lease is renewed every 100 ms.
    let (id, _) = env.detach(&["--interval", "100ms", "--ttl", "1s", "--", "sleep", "60"]);
    std::thread::sleep(Duration::from_millis(400));
    let o = env.cmd().args(["status", &id]).output().unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    let row = table.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[4], "-", "LAST BEAT of a job that never beat: {table}");
}

#[test]
fn status_wait_waits_for_all_and_any_returns_at_the_first() {
    let mut env = Env::new();
    let (quick, _) = env.detach(&["--", "sh", "-c", "sleep 0.3; exit 3"]);
    let (slow, _) = env.detach(&["--", "sleep", "60"]);
    let o = env
        .cmd()
        .args(["status", "--wait", "--any", "--json", &slow, &quick])
        .output()
        .unwrap();
    // The first to end decides: it failed (1).
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["id"], slow.as_str());
    assert_eq!(v[0]["wait"], "not-waited");
    assert_eq!(v[1]["wait"], "ended");
    // All: the slow one does not end within the timeout: 124, and each is named.
    let o = env
        .cmd()
        .args([
            "status",
            "--wait",
            "--timeout",
            "1s",
            "--json",
            &quick,
            &slow,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(124));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["wait"], "ended");
    assert_eq!(v[1]["wait"], "timed-out");
}

const LIMIT: Duration = Duration::from_secs(30);
