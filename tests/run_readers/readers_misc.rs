//! `logs`, `gc`, and a read-only state directory.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::holders::*;
use tether::clock::Timestamp;
use tether::record::{Record, Status};
use tether::store::{Change, Store};

#[test]
fn logs_prints_and_follows_until_the_job_ends() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "chatty", 1000, 10_000);
    let _r = Renewer::start(&e, "chatty", Duration::from_millis(300));
    let log = e.root.join("jobs/chatty.log");
    std::fs::write(&log, "line one\n").unwrap();
    let o = tether(&e, &["logs", "chatty"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "line one\n");
    let follower = std::thread::spawn({
        let root = e.root.clone();
        move || {
            run_bounded(
                tether_cmd(&root, &["logs", "-f", "chatty"]),
                Duration::from_secs(30),
            )
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "line two").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writeln!(f, "line three").unwrap();
    drop(f);
    finish(&e, "chatty", Status::Failed, 1);
    let (o, _) = follower.join().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "line one\nline two\nline three\n");
    let r = tether(&e, &["result", "chatty"]);
    assert!(stdout(&r).contains("line three"), "{}", stdout(&r));
}

fn age_finished(e: &Env, id: &str, days: i64) {
    e.store
        .update(&jid(id), &mut |r: &Record| {
            let mut n = r.clone();
            n.finished_at = Some(Timestamp::now().plus_ms(-days * 86_400_000));
            Change::Write {
                record: n,
                durable: true,
                value: (),
            }
        })
        .unwrap();
}

#[test]
fn gc_removes_only_old_finished_jobs() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "old", 1000, 10_000);
    finish(&e, "old", Status::Succeeded, 0);
    age_finished(&e, "old", 10);
    std::fs::write(e.root.join("jobs/old.log"), "x\n").unwrap();
    job(&e, &mut kids, "recent", 1000, 10_000);
    finish(&e, "recent", Status::Succeeded, 0);
    job(&e, &mut kids, "live", 1000, 10_000);
    let _r = Renewer::start(&e, "live", Duration::from_millis(300));
    // A dead job: gc records it lost now, which makes it too young to collect.
    job(&e, &mut kids, "dead", 1000, 10_000);
    kids.0[3].kill().unwrap();
    kids.0[3].wait().unwrap();
    std::fs::write(e.root.join("jobs/junk.json"), b"not json").unwrap();

    let o = tether(&e, &["gc", "--dry-run", "--older-than", "1d"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stdout(&o).contains("would remove old"), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    assert!(e.root.join("jobs/old.json").exists());

    let o = tether(&e, &["gc", "--older-than", "1d"]);
    assert_eq!(code(&o), 7);
    assert!(stderr(&o).contains("junk.json"));
    assert!(!e.root.join("jobs/old.json").exists());
    assert!(!e.root.join("jobs/old.log").exists());
    assert!(!e.root.join("jobs/old.lock").exists());
    for keep in ["recent", "live", "dead", "junk"] {
        assert!(e.root.join(format!("jobs/{keep}.json")).exists(), "{keep}");
    }
    assert_eq!(load(&e, "dead").status, Status::Lost);
    assert_eq!(load(&e, "live").status, Status::Running);
}

#[test]
fn read_only_state_dir_reports_without_writing() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "ro-dead", 1000, 10_000);
    job(&e, &mut kids, "ro-dead2", 1000, 10_000);
    kids.0[0].kill().unwrap();
    kids.0[1].kill().unwrap();
    let ro = e.tmp.path().join("ro");
    // Read-only by mount: permission bits would not stop root, a read-only mount does.
    let Some(_m) = common::Mount::bind_ro(&e.root, &ro) else {
        common::skip(
            "root to make a read-only bind mount",
            "run the tests as root, as CI does",
        );
        return;
    };
    let before = std::fs::read(e.root.join("jobs/ro-dead.json")).unwrap();
    let o = tether_cmd(&ro, &["status"]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("worker-exited"), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("read-only").count(), 1, "{err}");
    let o = tether_cmd(&ro, &["result", "ro-dead"]).output().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(e.root.join("jobs/ro-dead.json")).unwrap(),
        before
    );
    assert_eq!(load(&e, "ro-dead").status, Status::Running);
}

/// Temp files of writers SIGKILLed mid-write are litter: gc removes them, but only while it holds
/// the job's lock, so a write in flight (here: another process holding the lock) keeps its file.
#[test]
fn gc_sweeps_temp_files_of_dead_writers_but_not_of_a_write_in_flight() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "busy", 1000, 10_000);
    let jobs = e.root.join("jobs");
    let busy_tmp = jobs.join(".busy.json.tmp.999999");
    let orphan_tmp = jobs.join(".gone.json.tmp.12");
    std::fs::write(&busy_tmp, b"{\"protocol\":1").unwrap();
    std::fs::write(&orphan_tmp, b"").unwrap();

    let o = tether(&e, &["gc", "--dry-run"]);
    assert!(
        stdout(&o).contains(".busy.json.tmp.999999"),
        "{}",
        stdout(&o)
    );
    assert!(busy_tmp.exists() && orphan_tmp.exists());

    // Another process holds busy's lock: gc must wait for it before touching busy's temp file.
    let lock = jobs.join("busy.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "2"])
        .spawn()
        .unwrap();
    let held = || {
        Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .map(|s| !s.success())
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !held() {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let gc = tether_cmd(&e.root, &["gc"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    if holder.try_wait().unwrap().is_none() {
        assert!(
            busy_tmp.exists(),
            "gc removed a temp file while its job's lock was held"
        );
    }
    let out = gc.wait_with_output().unwrap();
    holder.wait().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!busy_tmp.exists() && !orphan_tmp.exists(), "{text}");
    assert!(
        text.contains("left by a writer that died mid-write"),
        "{text}"
    );
    assert_eq!(
        load(&e, "busy").status,
        Status::Running,
        "the job itself is untouched"
    );
}

/// Record strings are input: a name, an argument, a host or a late note carrying terminal escape
/// sequences (OSC to retitle the window, CSI to clear it, C1 CSI, a bidi override) must reach the
/// terminal defused, in every header `result` and `inspect` print (issue 14 item 7).
#[test]
fn escape_sequences_in_a_record_never_reach_the_terminal() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "esc", 1000, 10_000);
    let evil = "a\x1b]0;pwned\x07b\x1b[2Jc\u{9b}31md\u{202e}e";
    e.store
        .update(&jid("esc"), &mut |r: &Record| {
            let mut n = r.clone();
            n.name = Some(evil.into());
            n.argv = vec!["sh".into(), format!("-c{evil}")];
            n.holder.host = format!("host{evil}");
            Change::Write {
                record: n,
                durable: true,
                value: (),
            }
        })
        .unwrap();
    finish(&e, "esc", Status::Failed, 1);
    // A late result whose note carries the sequences too.
    e.store
        .update(&jid("esc"), &mut |r: &Record| {
            let mut n = r.clone();
            n.late.push(
                serde_json::from_value(serde_json::json!({
                    "at": Timestamp::now(), "epoch": 1, "status": "failed",
                    "reason": "exited", "exit": {"code": 2}, "note": evil,
                }))
                .unwrap(),
            );
            Change::Write {
                record: n,
                durable: true,
                value: (),
            }
        })
        .unwrap();
    for args in [["result", "esc"], ["inspect", "esc"]] {
        let o = tether(&e, &args);
        let out = stdout(&o);
        assert!(out.contains("pwned"), "{args:?} hid the name: {out}");
        for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(
                !out.contains(bad) && !stderr(&o).contains(bad),
                "{args:?} printed {bad:?} raw: {out:?}"
            );
        }
    }
}
