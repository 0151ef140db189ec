//! What a test started must not outlive it. A test registers every process it is responsible for
//! by identity (pid and start time); [`Adopted`] kills its processes when dropped (a passing or a
//! panicking test), and an interrupted run (SIGINT, SIGTERM or SIGHUP to the test process, as
//! Ctrl-C or a CI timeout sends) kills every process still registered before the test process
//! exits. Detached wrappers start a session of their own, so the terminal's Ctrl-C never reaches
//! them and, without this, they ran on after the test process was gone.
//!
//! The fixtures' temporary directories ([`Scratch`]) are removed then too (a load generator's
//! scratch files are 128 MiB). A SIGKILLed test process runs no code: what it registered is left.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// A process known by pid and start time; `group`: it leads a group of its own, killed with it.
#[derive(Clone, Debug)]
struct Proven {
    pid: u32,
    start: String,
    group: bool,
}

/// What the interrupt handler removes: a process, or a directory.
#[derive(Clone, Debug)]
enum Entry {
    Process(Proven),
    Dir(PathBuf),
}

fn registry() -> &'static Mutex<BTreeMap<u64, Entry>> {
    static R: OnceLock<Mutex<BTreeMap<u64, Entry>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A process (or directory) registered for the interrupt handler, unregistered on drop. Dropping
/// it does not kill the process: whoever holds it does that (or the process ended by itself).
pub struct Registered(u64);

impl Registered {
    /// Registers `pid`, whose start token is `start`, to be killed (with its group when `group`)
    /// if the test process is interrupted.
    pub fn new(pid: u32, start: &str, group: bool) -> Registered {
        Registered::entry(Entry::Process(Proven {
            pid,
            start: start.to_owned(),
            group,
        }))
    }

    fn entry(e: Entry) -> Registered {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        kill_registered_on_interrupt();
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        registry().lock().unwrap().insert(key, e);
        Registered(key)
    }

    /// Registers our own child `pid`, not yet waited for (so the pid is still it), with its group
    /// if it leads one (a load generator's workers); None when it already ended.
    pub fn child(pid: u32) -> Option<Registered> {
        let st = tether::testing::platform::stat(pid).filter(|st| !st.zombie)?;
        Some(Registered::new(pid, &st.start, st.pgrp == pid))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().lock().unwrap().remove(&self.0);
    }
}

/// A temporary directory, removed on drop, or by the interrupt handler if the test process is
/// interrupted first.
pub struct Scratch {
    dir: tempfile::TempDir,
    _registered: Registered,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let _registered = Registered::entry(Entry::Dir(dir.path().to_owned()));
        Scratch { dir, _registered }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Processes that are not (necessarily) our children, adopted by a test: when this drops, each is
/// killed by identity, newest first (see `proc::kill_proven`); a pid reused since is left alone.
#[derive(Default)]
pub struct Adopted(Mutex<Vec<(Proven, Registered)>>);

impl Adopted {
    pub fn adopt(&self, pid: u32, start: &str, group: bool) {
        let p = Proven {
            pid,
            start: start.to_owned(),
            group,
        };
        let r = Registered::new(pid, start, group);
        self.0.lock().unwrap().push((p, r));
    }

    /// A detached job's wrapper (the record's holder) and its child (the leader of the job's
    /// group), from the record as JSON; a record without a child yet gives the wrapper alone.
    pub fn job(&self, rec: &Value) {
        let h = &rec["holder"];
        self.adopt(
            h["pid"].as_u64().expect("holder.pid") as u32,
            h["start"].as_str().expect("holder.start"),
            false,
        );
        if let Some(c) = rec["child"].as_object() {
            self.adopt(
                c["pid"].as_u64().expect("child.pid") as u32,
                c["start"].as_str().expect("child.start"),
                true,
            );
        }
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut *self.0.lock().unwrap());
        while let Some((p, r)) = all.pop() {
            super::proc::kill_proven(p.pid, &p.start, p.group);
            drop(r);
        }
    }
}

/// Installs, once per test process, the handler that kills every registered process when the
/// test process is asked to stop, then exits as the signal would have (128 + its number).
/// Registration happens here, on the caller's thread, so a process registered after this returns
/// is covered.
fn kill_registered_on_interrupt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime for the interrupt handler");
        let kinds = [
            (SignalKind::interrupt(), 2),
            (SignalKind::terminate(), 15),
            (SignalKind::hangup(), 1),
        ];
        let streams: Vec<_> = {
            let _in = rt.enter();
            kinds
                .iter()
                .map(|(k, n)| (signal(*k).expect("a signal handler"), *n))
                .collect()
        };
        std::thread::spawn(move || {
            let n = rt.block_on(async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1);
                for (mut s, n) in streams {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        s.recv().await;
                        let _ = tx.send(n).await;
                    });
                }
                rx.recv().await.unwrap_or(15)
            });
            eprintln!("test process interrupted (signal {n}): killing what it started");
            // The tests' own threads run on meanwhile and may start more: a few rounds.
            for _ in 0..5 {
                let all: Vec<Entry> = registry().lock().unwrap().values().cloned().collect();
                for e in all.iter().rev() {
                    if let Entry::Process(p) = e {
                        let limit = Duration::from_secs(1);
                        super::proc::kill_proven_within(p.pid, &p.start, p.group, limit);
                    }
                }
                let mut left = false;
                for e in &all {
                    if let Entry::Dir(d) = e {
                        left |= std::fs::remove_dir_all(d).is_err() && d.exists();
                    }
                }
                if !left {
                    break;
                }
            }
            std::process::exit(128 + n);
        });
    });
}
