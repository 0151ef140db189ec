//! Hostile CLI input, and signal safety, through the real `tether` binary.
//!
//! Every hostile input gets one line on stderr naming the thing, the exit code of protocol.md 9,
//! nothing on stdout (unless said), and no change on disk: bad ids for every command, `--dir`
//! pointing at a symlink, a file, a mode-0777 directory, a directory owned by someone else, a
//! missing directory; records naming pid 0, -1, 1, pids above pid_max; corrupt records next to good
//! ones; a record of a newer protocol version.
//!
//! Signal safety: `cancel` never signals a process whose start time does not match the record,
//! even when the pid is live (a reused pid is simulated by recording a live unrelated process with
//! another start time), for the child and for the holder, with a real wrapper too. What is not
//! covered: a pid reused between `cancel`'s check and its signal (it cannot be forced from outside;
//! `cancel` pins the process with a pidfd before checking its start time, see src/process.rs), and
//! the wrapper's own stall kill, which only signals its own child, kept unreaped (`WNOWAIT`) until
//! the group has been signalled, so its pid cannot be reused meanwhile.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::torture::*;
use serde_json::{Value, json};
use tether::clock::{Timestamp, mono_ms};
use tether::process;
use tether::store::Store;

/// Path -> (mode, uid, size, mtime ns, content) of everything under `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u64, i128, Vec<u8>)> {
    let mut m = BTreeMap::new();
    fn walk(p: &Path, m: &mut BTreeMap<PathBuf, (u32, u32, u64, i128, Vec<u8>)>) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        let content = if md.is_file() {
            std::fs::read(p).unwrap_or_default()
        } else {
            vec![]
        };
        let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        // A directory's mtime changes when a file is added or removed: that is a change too.
        m.insert(
            p.to_path_buf(),
            (md.mode(), md.uid(), md.len(), mtime, content),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), m);
            }
        }
    }
    walk(root, &mut m);
    m
}

/// Exit code, exactly one line on stderr containing `names`, and empty stdout.
fn one_line(o: &Out, code: i32, names: &str, what: &str) {
    assert_eq!(
        o.code(),
        code,
        "{what}: stdout {:?} stderr {:?}",
        o.stdout,
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{what}: {:?}", o.stderr);
    if o.stderr.starts_with('{') {
        // --json: the error is one JSON object with the same code (protocol.md 9).
        let v: Value = serde_json::from_str(&o.stderr).expect("a JSON error object");
        assert_eq!(v["code"], code, "{what}: {:?}", o.stderr);
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "{what}: {v}"
        );
    } else {
        assert!(o.stderr.starts_with("tether: "), "{what}: {:?}", o.stderr);
    }
    assert!(
        o.stderr.contains(names),
        "{what}: {:?} does not name {names:?}",
        o.stderr
    );
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", o.stdout);
}

/// A running record on this machine, renewed now, valid for 10 minutes.
fn record(id: &str, holder: Value, start: &str, child: Option<(Value, &str)>) -> Value {
    let me = process::current().unwrap();
    json!({
        "protocol": 1, "id": id, "name": null, "argv": ["sleep", "600"], "cwd": "/",
        "created_at": Timestamp::now(), "status": "running", "reason": null,
        "holder": {"pid": holder, "start": start, "boot_id": me.boot_id, "host": me.host,
                   "time_ns": me.time_ns, "pid_ns": me.pid_ns},
        "child": child.map(|(pid, start)| json!({"pid": pid, "start": start, "pgid": pid})),
        "lease": {"epoch": 1, "interval_ms": 1000, "ttl_ms": 600000,
                  "renewed_at": Timestamp::now(), "renewed_mono_ms": mono_ms()},
        "progress": {"message": null, "at": null, "count": 0},
        "exit": null, "finished_at": null, "late": []
    })
}

fn put(e: &Env, id: &str, v: &Value) {
    let p = e.record_path(id);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A state directory holding one finished job, `ok`.
fn env_with_a_job() -> Env {
    let e = Env::new();
    let o = e.tether(&["run", "--id", "ok", "--", "true"]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    e
}

/// A `sleep` of ours, in its own process group, and its start token.
fn sleeper() -> (u32, String) {
    let mut c = Command::new("sleep");
    c.arg("600").stdin(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let pid = spawn(&mut c);
    let start = process::start_token(pid).unwrap();
    (pid, start)
}

struct Sleepers(Vec<u32>);
impl Drop for Sleepers {
    fn drop(&mut self) {
        for &p in &self.0 {
            kill(p, rustix::process::Signal::KILL);
            let _ = wait(p, Duration::from_secs(10));
        }
    }
}

#[test]
fn hostile_ids_are_refused_by_every_command_before_anything_is_touched() {
    let e = env_with_a_job();
    let marker = e.tmp.path().join("ran");
    let long = "a".repeat(10_000);
    let ids: Vec<(&str, &str)> = vec![
        ("a/b", "a/b"),
        ("..", ".."),
        ("../ok", "../ok"),
        ("../../etc/passwd", "../../etc/passwd"),
        (".ok", ".ok"),
        ("ok/../ok", "ok/../ok"),
        ("a b", "a b"),
        ("é", "é"),
        ("", "empty"),
        (&long, "too long"),
    ];
    let before = snapshot(&e.dir);
    let mut n = 0;
    for (id, names) in &ids {
        let touch = marker.to_str().unwrap();
        let cmds: Vec<Vec<&str>> = vec![
            vec!["status", id],
            vec!["status", "--json", id],
            vec!["status", "--wait", "--timeout", "1s", id],
            vec!["inspect", id],
            vec!["result", id],
            vec!["cancel", id],
            vec!["logs", id],
            vec!["run", "--id", id, "--", "touch", touch],
            vec!["run", "--detach", "--id", id, "--", "touch", touch],
        ];
        for args in cmds {
            let o = e.tether(&args);
            let what = format!(
                "tether {:?}",
                args.iter()
                    .map(|a| &a[..a.len().min(20)])
                    .collect::<Vec<_>>()
            );
            one_line(&o, 2, names, &what);
            assert!(
                o.stderr.len() < 400,
                "{what}: a 10,000-character id is echoed in full"
            );
            n += 1;
        }
    }
    assert!(!marker.exists(), "a command ran under a hostile id");
    assert_eq!(snapshot(&e.dir), before, "the state directory changed");
    // NUL cannot cross argv (execve takes C strings); the parser refuses it all the same.
    assert!(Command::new(BIN).arg("a\0b").spawn().is_err());
    assert!(tether::id::JobId::parse("a\0b").is_err());
    eprintln!(
        "hostile: {} bad ids x 9 commands = {n} runs: exit 2, one line, nothing touched",
        ids.len()
    );
}

#[test]
fn hostile_state_directories_are_refused_with_exit_8_and_left_as_they_are() {
    let e = env_with_a_job();
    let base = e.tmp.path();
    // A symlink to a good state directory.
    let link = base.join("link");
    std::os::unix::fs::symlink(&e.dir, &link).unwrap();
    // A file.
    let file = base.join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    // A world-writable copy of a state directory.
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::create_dir(open.join("jobs")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A private directory owned by nobody (uid 65534); the tests run as root.
    let theirs = base.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    let chowned = std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok();
    if !chowned {
        common::skip(
            "root to chown a directory to uid 65534 (the foreign-owner case)",
            "run the tests as root, as CI does",
        );
    }
    let missing = base.join("missing");
    let marker = base.join("ran");
    let touch = marker.to_str().unwrap().to_owned();
    let mut cases: Vec<(&str, &Path)> =
        vec![("symlink", &link), ("file", &file), ("mode 0777", &open)];
    if chowned {
        cases.push(("owned by 65534", &theirs));
    }
    cases.push(("missing", &missing));
    // Our own scratch files live in `base` too, so each directory is compared on its own.
    let watched = [&e.dir, &link, &file, &open, &theirs];
    let snap_all = || watched.map(|p| snapshot(p));
    let before = snap_all();
    let mut n = 0;
    for (what, dir) in &cases {
        let mut cmds: Vec<Vec<&str>> = vec![
            vec!["status"],
            vec!["status", "--json"],
            vec!["status", "ok"],
            vec!["status", "--wait", "--timeout", "1s", "ok"],
            vec!["inspect", "ok"],
            vec!["result", "ok"],
            vec!["cancel", "ok"],
            vec!["logs", "ok"],
            vec!["gc", "--older-than", "0s"],
        ];
        if *what != "missing" {
            // A missing directory is created by `run` (mode 0700): that is its job.
            cmds.push(vec!["run", "--id", "new", "--", "touch", &touch]);
            cmds.push(vec![
                "run", "--detach", "--id", "new", "--", "touch", &touch,
            ]);
        }
        for args in cmds {
            let mut c = Command::new(BIN);
            c.arg("--dir").arg(dir).args(&args).stdin(Stdio::null());
            let o = e.run(c, Duration::from_secs(60));
            if *what == "missing" && (args == ["status"] || args == ["status", "--json"]) {
                // A fresh machine: the listing is empty, not an error (issue 15.3).
                assert_eq!(o.code(), 0, "--dir missing: {args:?}: {}", o.stderr);
                assert!(o.stderr.is_empty(), "{}", o.stderr);
                n += 1;
                continue;
            }
            one_line(
                &o,
                8,
                dir.to_str().unwrap(),
                &format!("--dir {what}: {args:?}"),
            );
            n += 1;
        }
    }
    assert!(!marker.exists(), "a job ran in a refused state directory");
    // The chmod hint names the fix for the open directory.
    let mut c = Command::new(BIN);
    c.arg("--dir").arg(&open).arg("status");
    let o = e.run(c, Duration::from_secs(60));
    assert!(o.stderr.contains("chmod"), "{}", o.stderr);
    assert!(
        snap_all() == before,
        "a refused state directory was changed"
    );
    assert!(
        !missing.exists(),
        "a reader created the missing state directory"
    );
    eprintln!(
        "hostile: {} kinds of bad --dir, {n} runs: exit 8, one line naming the path, nothing changed",
        cases.len()
    );
}

#[test]
fn strange_holder_pids_never_crash_status_and_never_get_a_signal() {
    let e = env_with_a_job();
    let mut kids = Sleepers(vec![]);
    let pid1_start = process::start_token(1).expect("pid 1's start time");
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Corrupt: pid 0, -1, beyond u32.
    for (id, pid) in [
        ("pid0", json!(0)),
        ("pidneg", json!(-1)),
        ("pidhuge", json!(1u64 << 33)),
        // Above i32::MAX: not a pid any kernel hands out.
        ("pidbig", json!(1u64 << 31)),
    ] {
        put(&e, id, &record(id, pid, "linux:1", None));
        let before = snapshot(&e.record_path(id));
        for args in [
            vec!["status", id],
            vec!["cancel", id],
            vec!["inspect", id],
            vec!["result", id],
        ] {
            let o = e.tether(&args);
            one_line(&o, 7, id, &format!("{args:?}"));
        }
        assert_eq!(snapshot(&e.record_path(id)), before, "{id} was rewritten");
    }
    // Beyond pid_max, and beyond i32: no such process, so the job is lost and nothing is signalled.
    for (id, pid) in [("pidmax", pid_max + 1), ("pidmax2", 4_194_305)] {
        put(&e, id, &record(id, json!(pid), "linux:1", None));
        let o = e.tether(&["status", "--json", id]);
        assert_eq!(o.code(), 0, "{}", o.stderr);
        assert_eq!(o.json1()["status"], "lost");
        assert_eq!(o.json1()["reason"], "worker-exited");
        let o = e.tether(&["cancel", id]);
        assert_eq!(o.code(), 0, "{}", o.stderr);
        assert!(o.stdout.contains("already lost"), "{}", o.stdout);
    }
    // Pid 1 with its real start time: alive, so active; cancel refuses to signal it (exit 5).
    put(&e, "init", &record("init", json!(1), &pid1_start, None));
    let o = e.tether(&["status", "--json", "init"]);
    assert_eq!(o.json1()["status"], "running", "{}", o.stdout);
    let before = snapshot(&e.record_path("init"));
    let o = e.tether(&["cancel", "--grace", "100ms", "init"]);
    one_line(
        &o,
        11,
        "refusing to cancel job init",
        "cancel of a job held by pid 1",
    );
    assert_eq!(
        snapshot(&e.record_path("init")),
        before,
        "refused cancel changed the record"
    );
    // Pid 1 as the child, with a wrong start time, under a live holder: refused (exit 5).
    let (h, hs) = sleeper();
    kids.0.push(h);
    put(
        &e,
        "initchild",
        &record("initchild", json!(h), &hs, Some((json!(1), "linux:1"))),
    );
    let before = snapshot(&e.record_path("initchild"));
    let o = e.tether(&["cancel", "--grace", "100ms", "initchild"]);
    one_line(
        &o,
        11,
        "refusing to cancel job initchild",
        "cancel with child pid 1",
    );
    assert_eq!(snapshot(&e.record_path("initchild")), before);
    assert!(alive(h), "the holder was signalled");
    // Pid 1 as the holder with a wrong start time: that pid was reused, so the job is lost
    // (pid-reused) before cancel ever considers a signal; cancel leaves the lost job as is.
    put(
        &e,
        "initwrong",
        &record("initwrong", json!(1), "linux:1", None),
    );
    let o = e.tether(&["cancel", "initwrong"]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    assert!(o.stdout.contains("already lost"), "{}", o.stdout);
    assert_eq!(e.record("initwrong").unwrap()["reason"], "pid-reused");
    assert!(alive(1));
    // A listing still shows every good job; the corrupt ones are named on stderr, exit 7.
    let o = e.tether(&["status", "--json"]);
    assert_eq!(o.code(), 7, "{}", o.stderr);
    let listed: Vec<String> = o
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    for id in ["ok", "pidmax", "pidmax2", "init", "initchild", "initwrong"] {
        assert!(
            listed.iter().any(|l| l == id),
            "{id} missing from {listed:?}"
        );
    }
    assert_eq!(o.stderr.lines().count(), 4, "{}", o.stderr);
    for id in ["pid0.json", "pidneg.json", "pidhuge.json", "pidbig.json"] {
        assert!(o.stderr.contains(id), "{id} not named: {}", o.stderr);
    }
}

#[test]
fn a_newer_protocol_version_is_never_rewritten_reaped_or_collected() {
    let e = env_with_a_job();
    // Version 2, held by a pid that does not exist, finished long ago: every reader would reap or
    // collect a version 1 record like it.
    let mut v = record("future", json!(1u64 << 31), "linux:1", None);
    v["protocol"] = json!(2);
    v["status"] = json!("hibernating");
    v["finished_at"] = json!("2000-01-01T00:00:00Z");
    v["something_new"] = json!({"x": [1, 2, 3]});
    put(&e, "future", &v);
    let before = snapshot(&e.jobs());
    for args in [
        vec!["status", "future"],
        vec!["status", "--json", "future"],
        vec!["inspect", "future"],
        vec!["result", "future"],
        vec!["cancel", "future"],
    ] {
        let o = e.tether(&args);
        one_line(&o, 7, "future.json", &format!("{args:?}"));
        assert!(
            o.stderr.contains('2'),
            "{args:?}: version not named: {}",
            o.stderr
        );
    }
    let o = e.tether(&["status"]);
    assert_eq!(o.code(), 7, "{}", o.stderr);
    assert!(o.stdout.contains("ok"), "{}", o.stdout);
    let o = e.tether(&["gc", "--older-than", "0s"]);
    assert!(
        e.record_path("future").exists(),
        "gc removed a newer-version record: {}",
        o.stderr
    );
    // gc removed the finished job `ok` (that is its job); nothing of `future` changed.
    let after = snapshot(&e.jobs());
    for (p, s) in &before {
        if p.to_string_lossy().contains("future") {
            assert_eq!(after.get(p), Some(s), "{} changed", p.display());
        }
    }
}

#[test]
fn cancel_never_signals_a_live_process_whose_start_time_differs() {
    let e = env_with_a_job();
    let mut kids = Sleepers(vec![]);
    // The child pid is a live, unrelated process (as after a pid reuse): refused, it survives.
    let (h, hs) = sleeper();
    let (other, _) = sleeper();
    kids.0.extend([h, other]);
    put(
        &e,
        "reused-child",
        &record(
            "reused-child",
            json!(h),
            &hs,
            Some((json!(other), "linux:1")),
        ),
    );
    let before = snapshot(&e.record_path("reused-child"));
    let o = e.tether(&["cancel", "--grace", "100ms", "reused-child"]);
    one_line(
        &o,
        11,
        "refusing to cancel job reused-child",
        "reused child pid",
    );
    assert!(o.stderr.contains(&other.to_string()), "{}", o.stderr);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(other) && alive(h), "a process was signalled");
    assert_eq!(snapshot(&e.record_path("reused-child")), before);
    // The holder pid is a live, unrelated process: the job is lost (pid-reused), nothing signalled.
    let (stranger, _) = sleeper();
    kids.0.push(stranger);
    put(
        &e,
        "reused-holder",
        &record("reused-holder", json!(stranger), "linux:1", None),
    );
    let o = e.tether(&["cancel", "--grace", "100ms", "reused-holder"]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    assert!(o.stdout.contains("already lost"), "{}", o.stdout);
    assert_eq!(e.record("reused-holder").unwrap()["reason"], "pid-reused");
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(stranger), "the stranger was signalled");

    // With a real wrapper: stopped (so it does not rewrite its child), its child's start time
    // edited under the lock. cancel refuses; the child lives on.
    let (id, wrapper) = e.detach(&["--", "sleep", "600"]);
    let rec = e.record(&id).unwrap();
    let child = rec["child"]["pid"].as_u64().unwrap() as u32;
    let pin = process::Pinned::open(
        wrapper,
        rec["holder"]["start"].as_str().unwrap(),
        process::pid_ns().as_deref(),
    )
    .unwrap();
    pin.signal(rustix::process::Signal::STOP).unwrap();
    e.store()
        .update(
            &tether::id::JobId::parse(&id).unwrap(),
            &mut |r: &tether::record::Record| {
                let mut n = r.clone();
                n.child.as_mut().unwrap().start = "linux:1".into();
                tether::store::Change::Write {
                    record: n,
                    durable: true,
                    value: (),
                }
            },
        )
        .unwrap();
    let o = e.tether(&["cancel", "--grace", "100ms", &id]);
    pin.signal(rustix::process::Signal::CONT).unwrap();
    one_line(
        &o,
        11,
        "refusing to cancel job",
        "wrapper with an edited child start",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(child) && alive(wrapper), "the job was signalled");
    assert_eq!(e.record(&id).unwrap()["status"], "running");
}
