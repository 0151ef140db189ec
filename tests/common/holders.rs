//! The reader tests' fixture (`tests/readers_*.rs`): real records whose holder is a real process
//! the test spawned, because the wrapper (`tether run`) is built elsewhere and the readers must not
//! depend on it; and the reading commands' outputs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::process;
use tether::record::{Child as RecChild, Record, Status};
use tether::store::{Change, FileStore, StateDir, Store};
use tether::transition::{Write, apply};

use super::cleanup::Registered;

pub struct Env {
    pub tmp: super::cleanup::Scratch,
    pub root: PathBuf,
    pub store: FileStore,
}

pub fn env() -> Env {
    let (tmp, root) = crate::common::env::state_dir();
    let store = FileStore::open(StateDir { root: root.clone() }, true).unwrap();
    Env { tmp, root, store }
}

/// Spawned processes, killed and reaped when the test ends, however it ends (also when the test
/// process is interrupted: each is registered with `cleanup`).
#[derive(Default)]
pub struct Kids(pub Vec<Child>, Vec<Option<Registered>>);

impl Kids {
    pub fn sleep(&mut self, secs: u32) -> u32 {
        let c = Command::new("sleep")
            .arg(secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.push(c)
    }
    pub fn push(&mut self, c: Child) -> u32 {
        let pid = c.id();
        self.0.push(c);
        self.1.push(Registered::child(pid));
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

/// A fresh running record naming `pid` as holder, renewed now, on this machine, with progress.
pub fn record(id: &str, pid: u32, start: &str, interval_ms: u64, ttl_ms: u64) -> Record {
    let mut r = crate::common::record(id)
        .pid(pid, start)
        .lease(interval_ms, ttl_ms)
        .name("test job")
        .argv(&["sleep", "60"])
        .progress("warming up", 1)
        .build();
    r.cwd = Some("/".into());
    r
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
    let (o, _) = crate::common::proc::finish_within(child, bound, "tether");
    (o, t0.elapsed())
}

pub fn load(e: &Env, id: &str) -> Record {
    e.store.load(&jid(id)).unwrap()
}
