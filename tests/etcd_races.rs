//! Many readers on two hosts racing the end of a job on etcd (issue 10 item 6; protocol.md 11.5 and
//! 6.4): a wrapper on host A finishes while a cancel from host B lands, 16 readers (8 on each host,
//! some polling `status`, some in `status --wait`) read and may write `lost`, and in every other
//! round the wrapper is SIGKILLed at the same moment, so the readers on A race to record
//! `worker-exited` too. Whoever wins, etcd's own log of the record (every value it held) must show
//! exactly one terminal transition, never overwritten, and a refused result of the wrapper kept in
//! `late`. Host A is a network namespace with its own host name, as in `etcd_hosts.rs`.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cleanup::Adopted;
use common::proc::{alive, finish_within, signal};
use common::{BIN, Rng};
use etcd_common::{Etcd, Host, raw};
use rustix::process::Signal;
use serde_json::Value;

const PREFIX: &str = "race";
const ROUNDS: usize = 6;
/// Readers per host: this many poll `status ID --json` in a loop, and `WAITERS` sit in
/// `status --wait`; 8 on each host, 16 in all.
const POLLERS: usize = 6;
const WAITERS: usize = 2;
/// How long the job's command runs; the cancel is aimed at its end, give or take `SPREAD_MS`.
const JOB_MS: u64 = 1500;
const SPREAD_MS: u64 = 400;
/// Bounds for a loaded 2-core machine; a cancel whose holder is dead waits grace + ttl.
const BOUND: Duration = Duration::from_secs(60);

struct Two {
    a: Host,
    etcd: Etcd,
    tmp: tempfile::TempDir,
    adopted: Adopted,
}

impl Two {
    fn new(test: &str) -> Option<Two> {
        let a = Host::create(test)?;
        let etcd = Etcd::start_on(test, &["127.0.0.1", &a.root_ip], &[])?;
        Some(Two {
            a,
            etcd,
            tmp: tempfile::tempdir().unwrap(),
            adopted: Adopted::default(),
        })
    }

    /// `program` on host A, or on B (the root namespace) when `on_a` is false.
    fn on(&self, on_a: bool, program: &str) -> Command {
        let mut c = if on_a {
            self.a.command("host-a", program)
        } else {
            Command::new(program)
        };
        c.env_remove("TETHER_STORE")
            .env_remove("TETHER_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("TETHER_HEARTBEAT_FILE")
            .stdin(Stdio::null());
        c
    }

    /// A's store URL reaches etcd over the link, B's on loopback; each host has its own --dir.
    fn store_args(&self, on_a: bool) -> [String; 4] {
        let (url, dir) = if on_a {
            (self.etcd.url_on(&self.a.root_ip, PREFIX), "a")
        } else {
            (self.etcd.url(PREFIX), "b")
        };
        let dir = self.tmp.path().join(dir).display().to_string();
        ["--store".into(), url, "--dir".into(), dir]
    }

    fn tether(&self, on_a: bool, args: &[&str]) -> Command {
        let mut c = self.on(on_a, BIN);
        c.args(self.store_args(on_a)).args(args);
        c
    }

    fn status_b(&self, id: &str) -> Value {
        let o = self
            .tether(false, &["status", id, "--json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("status {id}: {e}: {}", String::from_utf8_lossy(&o.stderr)));
        v[0].clone()
    }

    /// Starts a detached job on A; returns (id, wrapper pid), its processes adopted for cleanup.
    fn detach_on_a(&self, args: &[&str]) -> (String, u32) {
        let mut all = vec!["run", "--detach", "--json"];
        all.extend_from_slice(args);
        let o = self.tether(true, &all).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let st = self.status_b(&id);
        assert_eq!(st["holder"]["host"], "host-a", "{st}");
        self.adopted.job(&st);
        let pid = st["holder"]["pid"].as_u64().unwrap() as u32;
        (id, pid)
    }

    /// One reader: a shell loop polling `status ID --json` until `stop` exists (each output
    /// followed by a `--- EXIT` line), or one `status --wait`. Its output goes to files.
    fn reader(&self, on_a: bool, id: &str, wait: bool, stop: &PathBuf, out: &PathBuf) -> Child {
        let script = if wait {
            r#"exec "$TB" --store "$URL" --dir "$DIR" status --wait --timeout 60s --json "$ID""#
        } else {
            r#"while [ ! -e "$STOP" ]; do "$TB" --store "$URL" --dir "$DIR" status "$ID" --json; echo "--- $?"; done"#
        };
        let [_, url, _, dir] = self.store_args(on_a);
        self.on(on_a, "sh")
            .arg("-c")
            .arg(script)
            .env("TB", BIN)
            .env("URL", url)
            .env("DIR", dir)
            .env("ID", id)
            .env("STOP", stop)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
            .spawn()
            .unwrap()
    }
}

fn terminal(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "lost")
    )
}

/// What settles a record's outcome: status, reason, exit and end time.
fn outcome(v: &Value) -> Value {
    serde_json::json!([v["status"], v["reason"], v["exit"], v["finished_at"]])
}

/// Checks etcd's log of the record: exactly one terminal transition, and nothing after it changes
/// the outcome or drops a late result. Returns the number of versions.
fn check_history(round: usize, versions: &[Value]) -> usize {
    assert!(!versions.is_empty(), "round {round}: no history");
    assert!(
        !terminal(&versions[0]),
        "round {round}: created terminal: {}",
        versions[0]
    );
    let transitions = versions
        .windows(2)
        .filter(|w| outcome(&w[0]) != outcome(&w[1]) && terminal(&w[1]))
        .count();
    let statuses: Vec<&str> = versions
        .iter()
        .map(|v| v["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        transitions, 1,
        "round {round}: terminal transitions in the history: {statuses:?}"
    );
    let first = versions.iter().position(terminal).unwrap();
    for v in &versions[first..] {
        assert_eq!(
            outcome(v),
            outcome(&versions[first]),
            "round {round}: the outcome was rewritten: {statuses:?}"
        );
    }
    for w in versions.windows(2) {
        let before = w[0]["late"].as_array().cloned().unwrap_or_default();
        let after = w[1]["late"].as_array().cloned().unwrap_or_default();
        assert!(
            after.len() >= before.len() && after[..before.len()] == before[..],
            "round {round}: a late result was dropped: {} then {}",
            w[0]["late"],
            w[1]["late"]
        );
    }
    versions.len()
}

/// Every job status a reader printed: polling outputs split at their `--- EXIT` lines, a
/// waiter's one output. Fails on a panic, an unparsable output or a crashed reader.
fn seen_by(round: usize, out: &PathBuf) -> Vec<String> {
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    assert!(
        !err.contains("panicked"),
        "round {round}: a reader panicked: {err}"
    );
    let text = std::fs::read_to_string(out).unwrap();
    let mut seen = Vec::new();
    let mut chunk = String::new();
    let mut take = |chunk: &str| {
        if chunk.trim().is_empty() {
            return;
        }
        let v: Value = serde_json::from_str(chunk).unwrap_or_else(|e| {
            panic!(
                "round {round}: reader output {}: {e}: {chunk}",
                out.display()
            )
        });
        seen.push(v[0]["status"].as_str().unwrap().to_string());
    };
    for line in text.lines() {
        if let Some(code) = line.strip_prefix("--- ") {
            assert_ne!(code, "101", "round {round}: a reader crashed: {err}");
            take(&chunk);
            chunk.clear();
        } else {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    take(&chunk);
    seen
}

#[test]
fn sixteen_readers_on_two_hosts_race_the_finish_and_a_cancel() {
    let Some(t) = Two::new("readers_race_the_finish") else {
        return;
    };
    let mut rng = Rng::new("readers_race_the_finish");
    let mut outcomes = Vec::new();
    for round in 0..ROUNDS {
        let kill = round % 2 == 1;
        let dir = t.tmp.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        let stop = dir.join("stop");
        let job = format!("sleep {}", JOB_MS as f64 / 1000.0);
        let (id, wrapper) =
            t.detach_on_a(&["--ttl", "3s", "--interval", "500ms", "--", "sh", "-c", &job]);
        let started = Instant::now();
        let (mut waiters, mut pollers) = (Vec::new(), Vec::new());
        for on_a in [true, false] {
            for i in 0..POLLERS + WAITERS {
                let out = dir.join(format!("{}-{i}.out", if on_a { "a" } else { "b" }));
                let wait = i >= POLLERS;
                let c = t.reader(on_a, &id, wait, &stop, &out);
                if wait { &mut waiters } else { &mut pollers }.push((c, out));
            }
        }
        let aim = Duration::from_millis(JOB_MS - SPREAD_MS + rng.below(2 * SPREAD_MS));
        std::thread::sleep(aim.saturating_sub(started.elapsed()));
        let cancel = t
            .tether(false, &["cancel", &id, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if kill {
            signal(wrapper, Signal::KILL);
        }
        let (c, _) = finish_within(cancel, BOUND, "cancel");
        let cancel: Value = serde_json::from_slice(&c.stdout).unwrap_or_else(|e| {
            panic!(
                "round {round}: cancel --json: {e}: {}",
                String::from_utf8_lossy(&c.stderr)
            )
        });
        let gone = common::poll(BOUND, Duration::from_millis(20), || !alive(wrapper));
        assert!(gone, "round {round}: the wrapper on A did not end");
        let mut waited = Vec::new();
        for (child, out) in waiters {
            let (o, _) = finish_within(child, BOUND, "status --wait");
            assert!(o.status.code().is_some(), "round {round}: {o:?}");
            waited.extend(seen_by(round, &out));
        }
        std::fs::write(&stop, b"").unwrap();
        let mut polled = Vec::new();
        for (child, out) in pollers {
            let (o, _) = finish_within(child, BOUND, "a polling reader");
            assert!(o.status.success(), "round {round}: {o:?}");
            polled.extend(seen_by(round, &out));
        }

        let key = format!("{PREFIX}/jobs/{id}");
        let versions: Vec<Value> = raw::history(&t.etcd.endpoint(), &key)
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        let n = check_history(round, &versions);
        let last = versions.last().unwrap();
        let status = last["status"].as_str().unwrap().to_string();
        let late = last["late"].as_array().cloned().unwrap_or_default();
        // What the readers saw agrees with the one outcome: no reader saw another ending.
        assert_eq!(
            waited.len(),
            2 * WAITERS,
            "round {round}: waiters' outputs: {waited:?}"
        );
        for s in waited.iter().chain(&polled) {
            assert!(
                s == &status || !["succeeded", "failed", "cancelled", "lost"].contains(&s.as_str()),
                "round {round}: a reader saw {s}, the record ended {status}"
            );
        }
        assert!(
            waited.iter().all(|s| s == &status),
            "round {round}: {waited:?} vs {status}"
        );
        assert_eq!(
            cancel["cancelled"].as_bool(),
            Some(status == "cancelled"),
            "round {round}: {cancel}"
        );
        // The wrapper's result: the outcome itself when it won, else kept in `late` (6.4), unless
        // the SIGKILL took the wrapper before it had one.
        match status.as_str() {
            "succeeded" => assert!(late.is_empty(), "round {round}: {last}"),
            _ if !kill => {
                assert_eq!(status, "cancelled", "round {round}: {last}");
                assert_eq!(
                    late.len(),
                    1,
                    "round {round}: the result was not kept: {last}"
                );
            }
            _ => assert!(late.len() <= 1, "round {round}: {last}"),
        }
        // The wrapper's own result: its child's exit, or the TERM it sent when it found the job
        // cancelled before the child had ended.
        for l in &late {
            let ok = (l["status"] == "succeeded" && l["exit"]["code"] == 0)
                || (l["status"] == "failed" && l["reason"] == "signaled");
            assert!(ok, "round {round}: not the wrapper's result: {l}");
        }
        assert_eq!(
            raw::get(&t.etcd.endpoint(), &format!("{PREFIX}/live/{id}")),
            None,
            "round {round}: the liveness key outlived the job"
        );
        let reason = last["reason"].as_str().unwrap_or("-");
        eprintln!(
            "round {round}: {} cancel aimed at {aim:?}: {status}/{reason}, {n} versions, {} late, \
             {} polls",
            if kill { "SIGKILL +" } else { "finish vs" },
            late.len(),
            polled.len()
        );
        outcomes.push(status);
    }
    eprintln!("outcomes: {outcomes:?}");
}
