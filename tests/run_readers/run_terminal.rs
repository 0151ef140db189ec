//! `tether run` in the foreground of a real terminal: a pseudo-terminal made by `script` (util-linux).
//! The child is in its own process group, so unless the wrapper hands it the terminal its first read
//! stops it with SIGTTIN and the job hangs; and unless the wrapper takes the terminal back, the shell
//! that started it cannot read afterwards.

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::launch::*;

fn script_available() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `sh -c CMD` on a fresh pseudo-terminal fed with `input`; returns what the terminal showed.
fn on_a_terminal(cmd: &str, input: &str, limit: Duration) -> String {
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            // Closing the terminal's master side hangs up everything on it, stopped jobs included.
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hung on the terminal (the child was not given it?): {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn child_reads_the_terminal_and_the_shell_gets_it_back() {
    if !script_available() {
        common::skip("`script` on PATH", "apt-get install bsdutils");
        return;
    }
    let env = Env::new();
    // `stty tostop`: the wrapper, in the background while the child has the terminal, must still be
    // able to write the child's output to it.
    let cmd = format!(
        "stty tostop; {BIN} --dir '{}' run --id t -- sh -c 'read l; echo got:$l; echo err:$l >&2'; echo code:$?; read x; echo after:$x",
        env.dir.display()
    );
    let out = on_a_terminal(&cmd, "hello\nworld\n", Duration::from_secs(30));
    assert!(out.contains("got:hello"), "{out}");
    assert!(out.contains("err:hello"), "{out}");
    assert!(out.contains("code:0"), "{out}");
    assert!(out.contains("after:world"), "{out}");
    let r = env.record("t");
    assert_eq!(r["status"], "succeeded", "{r}");
}

/// Issue 15 item 6: a foreground job on a terminal is named on stderr, so it can be reached from
/// another shell; with stderr captured by a script, the job's stderr stays untouched.
#[test]
fn foreground_job_is_named_on_a_terminal_only() {
    if !script_available() {
        common::skip("`script` on PATH", "apt-get install bsdutils");
        return;
    }
    let env = Env::new();
    let cmd = format!(
        "{BIN} --dir '{}' run --id named -- sh -c 'echo out'",
        env.dir.display()
    );
    let out = on_a_terminal(&cmd, "", Duration::from_secs(30));
    assert!(
        out.contains("tether: job named started; `tether status named` from another shell"),
        "{out}"
    );
    assert!(out.contains("out"), "{out}");

    let piped = Command::new(BIN)
        .args([
            "--dir",
            env.dir.to_str().unwrap(),
            "run",
            "--id",
            "quiet",
            "--",
        ])
        .args(["sh", "-c", "echo err >&2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&piped.stderr), "err\n");
}
