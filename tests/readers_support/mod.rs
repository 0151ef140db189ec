//! Fixture for the reader tests: real records whose holder is a real process the test spawned,
//! because the wrapper (`tether run`) is built elsewhere and the readers must not depend on it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether::clock::{Timestamp, mono_ms};
use tether::id::JobId;
use tether::process;
use tether::record::{Child as RecChild, Record, Status};
use tether::store::{Change, FileStore, StateDir, Store};
use tether::transition::{Write, apply};

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub store: FileStore,
}

pub fn env() -> Env {
    let (tmp, root) = crate::common::env::state_dir();
    let store = FileStore::open(StateDir { root: root.clone() }, true).unwrap();
    Env { tmp, root, store }
}

/// Spawned processes, killed and reaped when the test ends, however it ends.
#[derive(Default)]
pub struct Kids(pub Vec<Child>);

impl Kids {
    pub fn sleep(&mut self, secs: u32) -> u32 {
        let c = Command::new("sleep")
            .arg(secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        self.0.push(c);
        pid
    }
    pub fn push(&mut self, c: Child) -> u32 {
        let pid = c.id();
        self.0.push(c);
        pid
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// A fresh running record naming `pid` as holder, renewed now, on this machine.
pub fn record(id: &str, pid: u32, start: &str, interval_ms: u64, ttl_ms: u64) -> Record {
    let me = process::current().unwrap();
    let v = serde_json::json!({
        "protocol": 1,
        "id": id,
        "name": "test job",
        "argv": ["sleep", "60"],
        "cwd": "/",
        "created_at": Timestamp::now(),
        "status": "running",
        "reason": null,
        "holder": {"pid": pid, "start": start, "boot_id": me.boot_id, "host": me.host, "time_ns": me.time_ns, "pid_ns": me.pid_ns},
        "lease": {"epoch": 1, "interval_ms": interval_ms, "ttl_ms": ttl_ms,
                  "renewed_at": Timestamp::now(), "renewed_mono_ms": mono_ms()},
        "progress": {"message": "warming up", "at": Timestamp::now(), "count": 1},
    });
    Record::parse(&serde_json::to_vec(&v).unwrap(), Some(id)).unwrap()
}

/// Creates a running job whose holder is a new `sleep` process.
pub fn job(e: &Env, kids: &mut Kids, id: &str, interval_ms: u64, ttl_ms: u64) -> u32 {
    let pid = kids.sleep(120);
    let start = process::start_token(pid).unwrap();
    e.store
        .create(&record(id, pid, &start, interval_ms, ttl_ms))
        .unwrap();
    pid
}

pub fn with_child(e: &Env, id: &str, child: RecChild) {
    e.store
        .update(&jid(id), &mut |r: &Record| {
            let mut n = r.clone();
            n.child = Some(child.clone());
            Change::Write {
                record: n,
                durable: true,
                value: (),
            }
        })
        .unwrap();
}

pub fn jid(s: &str) -> JobId {
    JobId::parse(s).unwrap()
}

/// A holder's renewals, from a thread, until dropped.
pub struct Renewer {
    stop: Arc<AtomicBool>,
    h: Option<JoinHandle<()>>,
}

impl Renewer {
    pub fn start(e: &Env, id: &str, every: Duration) -> Renewer {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let store = e.store.clone();
        let id = jid(id);
        let h = std::thread::spawn(move || {
            let mut n = 1u64;
            while !s2.load(Ordering::Relaxed) {
                n += 1;
                let w = crate::common::record::renewal(format!("step {n}"), n);
                let r = tether::store::commit(&store, &id, &w, false);
                if r.is_err() {
                    break;
                }
                std::thread::sleep(every);
            }
        });
        Renewer { stop, h: Some(h) }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

pub fn finish(e: &Env, id: &str, status: Status, code: i32) {
    let w = Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status,
        reason: tether::record::Reason::Exited,
        exit: Some(tether::record::Exit::Code(code)),
        progress: None,
    };
    e.store
        .update(&jid(id), &mut |r: &Record| Change::Write {
            record: apply(r, &w).unwrap(),
            durable: true,
            value: (),
        })
        .unwrap();
}

pub fn tether_cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = crate::common::env::tether(root);
    c.args(args).stdin(Stdio::null());
    c
}

pub fn tether(e: &Env, args: &[&str]) -> Output {
    tether_cmd(&e.root, args).output().unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one job of `status --json ID` (always an array, protocol.md 9.1).
pub fn json1(o: &Output) -> Value {
    let v = json(o);
    let a = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    assert_eq!(a.len(), 1, "{v}");
    a[0].clone()
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

/// Runs tether in the background and waits for it with a bound, killing it if the bound passes.
pub fn run_bounded(mut c: Command, bound: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(o) => (o.unwrap(), t0.elapsed()),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let o = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
            panic!(
                "tether did not finish within {bound:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

pub fn load(e: &Env, id: &str) -> Record {
    e.store.load(&jid(id)).unwrap()
}
