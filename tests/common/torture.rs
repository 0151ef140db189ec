//! The end-to-end torture tests' fixture (`tests/torture_*.rs`): real `tether` processes, each test
//! in its own temporary state directory, bounded waits, and no process left behind. Every process
//! is started and waited for through the subreaper ([`super::reaper`]), which an [`Env`] starts:
//! every test binary that uses this module becomes a child subreaper.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use serde_json::Value;

use super::cleanup::Adopted;
#[allow(unused_imports)] // re-exported for the test files that use it
pub use super::reaper::{Ended, ended, kill, kill_group, spawn, wait};
#[allow(unused_imports)] // re-exported for the test files that use it
pub use crate::common::BIN;

/// Kills a process that is not (necessarily) our child, but only if its start time is still the
/// recorded one: the detached wrappers and their children.
pub fn kill_proven(pid: u32, start: &str) {
    crate::common::proc::kill_proven(pid, start, false);
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Out {
    pub ended: Ended,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.ended.code().unwrap_or(-1)
    }
    /// The one job of `status --json ID` (always an array, protocol.md 9.1).
    pub fn json1(&self) -> Value {
        let v = self.json();
        let a = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
        assert_eq!(a.len(), 1, "{v}");
        a[0].clone()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

/// A temporary state directory and a scratch area for command output.
pub struct Env {
    /// Processes that are not our children, killed when the test ends: first, so before the
    /// state directory goes (fields drop in order).
    adopted: Adopted,
    pub tmp: super::cleanup::Scratch,
    pub dir: PathBuf,
    seq: std::sync::atomic::AtomicU64,
}

impl Env {
    pub fn new() -> Env {
        super::reaper::start();
        let (tmp, dir) = crate::common::env::state_dir();
        Env {
            adopted: Adopted::default(),
            tmp,
            dir,
            seq: Default::default(),
        }
    }

    /// `tether --dir DIR`, with a clean environment for the job-related variables.
    pub fn cmd(&self) -> Command {
        let mut c = crate::common::env::tether(&self.dir);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a command to its end, bounded; output captured through files.
    pub fn run(&self, c: Command, limit: Duration) -> Out {
        let shown = format!("{c:?}");
        self.try_run(c, limit)
            .unwrap_or_else(|| panic!("{shown} did not finish within {limit:?}"))
    }

    /// Like [`Env::run`], but a command still running at `limit` is killed and gives None.
    pub fn try_run(&self, mut c: Command, limit: Duration) -> Option<Out> {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (o, e) = (
            self.tmp.path().join(format!("out.{n}")),
            self.tmp.path().join(format!("err.{n}")),
        );
        c.stdout(std::fs::File::create(&o).unwrap())
            .stderr(std::fs::File::create(&e).unwrap());
        let pid = spawn(&mut c);
        let ended = match wait(pid, limit) {
            Some(x) => x,
            None => {
                kill(pid, Signal::KILL);
                let _ = wait(pid, Duration::from_secs(10));
                return None;
            }
        };
        let out = Out {
            ended,
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(o);
        let _ = std::fs::remove_file(e);
        Some(out)
    }

    /// `tether ARGS` to its end, within 60 s.
    pub fn tether(&self, args: &[&str]) -> Out {
        let mut c = self.cmd();
        c.args(args);
        self.run(c, Duration::from_secs(60))
    }

    /// `tether run --detach --json ARGS`: returns (id, wrapper pid). The wrapper and the child are
    /// killed (after their start time is checked) when the Env is dropped.
    pub fn detach(&self, args: &[&str]) -> (String, u32) {
        let mut c = self.cmd();
        c.args(["run", "--detach", "--json"]).args(args);
        let o = self.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 0, "detach failed: {}", o.stderr);
        let (id, pid) = crate::common::env::detached(o.stdout.as_bytes());
        let rec = self.record(&id).expect("record of a detached job");
        self.adopted.job(&rec);
        (id, pid)
    }

    /// Kills `pid` (not its group) when the test ends, if its start time is still `start`.
    pub fn adopt(&self, pid: u32, start: &str) {
        self.adopted.adopt(pid, start, false);
    }

    pub fn jobs(&self) -> PathBuf {
        self.dir.join("jobs")
    }

    pub fn record_path(&self, id: &str) -> PathBuf {
        self.jobs().join(format!("{id}.json"))
    }

    /// The record as JSON, or None if missing.
    /// As readers see it: with the lease file folded in (protocol.md 6.5). A record tether cannot
    /// load (a hostile one) comes back as the file's raw JSON.
    pub fn record(&self, id: &str) -> Option<Value> {
        use tether::store::Store;
        let b = std::fs::read(self.record_path(id)).ok()?;
        let loaded = tether::id::JobId::parse(id)
            .ok()
            .and_then(|jid| self.store().load(&jid).ok());
        match loaded {
            Some(rec) => Some(serde_json::to_value(rec).unwrap()),
            None => Some(serde_json::from_slice(&b).unwrap()),
        }
    }

    pub fn store(&self) -> tether::store::FileStore {
        tether::store::FileStore::open(
            tether::store::StateDir {
                root: self.dir.clone(),
            },
            true,
        )
        .unwrap()
    }
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
pub fn wait_for(limit: Duration, f: impl FnMut() -> bool) -> bool {
    crate::common::poll(limit, Duration::from_millis(20), f)
}

#[allow(unused_imports)] // re-exported for the test files that use it
pub use crate::common::Rng;
#[allow(unused_imports)] // re-exported for the test files that use it
pub use crate::common::proc::alive;

/// A number from the environment, or the default.
pub fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// Every `*.json` record in a jobs directory: (id, bytes).
pub fn read_records(jobs: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(jobs) else {
        return v;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if id.starts_with('.') {
            continue;
        }
        if let Ok(b) = std::fs::read(e.path()) {
            v.push((id.to_owned(), b));
        }
    }
    v
}

/// What a terminal record must keep forever (protocol.md 5).
#[derive(Clone, Debug, PartialEq)]
pub struct Final {
    pub status: String,
    pub reason: Value,
    pub exit: Value,
    pub finished_at: Value,
}

impl Final {
    pub fn of(v: &Value) -> Option<Final> {
        let status = v["status"].as_str()?.to_owned();
        if matches!(status.as_str(), "starting" | "running") {
            return None;
        }
        Some(Final {
            status,
            reason: v["reason"].clone(),
            exit: v["exit"].clone(),
            finished_at: v["finished_at"].clone(),
        })
    }
}

/// Reads every record of a state directory in a loop, from a thread: each read must parse, and a
/// record once seen terminal must never change its status, reason, exit or finish time.
pub struct Watcher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    h: Option<std::thread::JoinHandle<WatchReport>>,
}

#[derive(Debug, Default)]
pub struct WatchReport {
    pub reads: u64,
    pub unparseable: Vec<String>,
    pub overwritten: Vec<String>,
    pub finals: HashMap<String, Final>,
}

impl Watcher {
    pub fn start(jobs: PathBuf) -> Watcher {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            let mut r = WatchReport::default();
            loop {
                let last = s2.load(std::sync::atomic::Ordering::Relaxed);
                for (id, bytes) in read_records(&jobs) {
                    r.reads += 1;
                    if let Err(e) = tether::record::Record::parse(&bytes, Some(&id)) {
                        r.unparseable.push(format!("{id}: {e}"));
                        continue;
                    }
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    if let Some(f) = Final::of(&v) {
                        match r.finals.get(&id) {
                            None => {
                                r.finals.insert(id, f);
                            }
                            Some(old) if *old != f => {
                                r.overwritten.push(format!("{id}: {old:?} became {f:?}"))
                            }
                            Some(_) => {}
                        }
                    }
                }
                if last {
                    return r;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher { stop, h: Some(h) }
    }

    /// Stops after one more full pass and returns what was seen.
    pub fn finish(mut self) -> WatchReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.h.take().unwrap().join().unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Does the record hold this exit (`{"code": N}` / `{"signal": N}`), as its own or as a late result?
pub fn has_exit(rec: &Value, exit: &Value) -> bool {
    rec["exit"] == *exit
        || rec["late"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["exit"] == *exit))
}
