//! A fleet of idle jobs under tether wrappers, and what a set of processes costs while idle: CPU,
//! wake-ups, PSS, threads (issue 13 item 5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tether::process::Pinned;

use crate::jobs::{BIN, detach, load};
use crate::procfs::{private_dirty_kb, process_cpu_ns, pss_kb, threads, wakeups};

/// What the fleets run: a job that only sleeps, for longer than any run of the bench.
pub const IDLE_JOB: &[&str] = &["sleep", "100000"];

struct Job {
    id: String,
    pid: u32,
    start: String,
    /// The child's pid, start and process group, as the record names them.
    child: Option<(u32, String, u32)>,
}

/// `n` detached wrappers of an idle job in their own state directory. Dropping it (also on a
/// panic) kills every job it started, proven by start time, with a bounded wait.
pub struct Fleet {
    dir: PathBuf,
    jobs: Vec<Job>,
    /// The renewal interval the wrappers run with, as their records say.
    pub interval_ms: u64,
}

impl Fleet {
    pub fn start(dir: &Path, n: usize, opts: &[&str]) -> Fleet {
        let mut fleet = Fleet {
            dir: dir.to_path_buf(),
            jobs: Vec::with_capacity(n),
            interval_ms: 0,
        };
        for _ in 0..n {
            let (id, pid) = detach(dir, opts, IDLE_JOB);
            let rec = load(dir, &id);
            assert_eq!(rec.holder.pid, pid, "the record names the wrapper");
            fleet.interval_ms = rec.lease.interval_ms;
            fleet.jobs.push(Job {
                id,
                pid,
                start: rec.holder.start,
                child: rec.child.map(|c| (c.pid, c.start, c.pgid)),
            });
        }
        fleet
    }

    pub fn pids(&self) -> Vec<u32> {
        self.jobs.iter().map(|j| j.pid).collect()
    }

    /// Jobs that `tether status --json` does not show as `running`, or whose wrapper is gone:
    /// each is a false death, since none of the jobs ends by itself.
    pub fn false_deaths(&self) -> usize {
        let out = Command::new(BIN)
            .args(["--dir", self.dir.to_str().unwrap(), "status", "--json"])
            .output()
            .expect("tether status --json");
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let running: std::collections::HashSet<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["status"] == "running")
            .filter_map(|j| j["id"].as_str())
            .collect();
        self.jobs
            .iter()
            .filter(|j| {
                !running.contains(j.id.as_str())
                    || tether::process::start_token(j.pid).as_deref() != Some(j.start.as_str())
            })
            .count()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let ns = tether::process::pid_ns();
        let deadline = Instant::now() + Duration::from_secs(30);
        for j in &self.jobs {
            let child = j.child.as_ref().and_then(|(pid, start, pgid)| {
                let p = Pinned::open(*pid, start, ns.as_deref()).ok()?;
                let _ = p.signal_group(*pgid, Signal::KILL);
                let _ = p.signal(Signal::KILL);
                Some(p)
            });
            let wrapper = Pinned::open(j.pid, &j.start, ns.as_deref()).ok();
            if let Some(w) = &wrapper {
                let _ = w.signal(Signal::KILL);
            }
            for p in child.iter().chain(wrapper.iter()) {
                p.wait_exit(deadline.saturating_duration_since(Instant::now()));
            }
        }
    }
}

/// What a set of processes cost over a window, each process counted alone (its children not).
pub struct Cost {
    /// CPU per process per second of the window (µs), one value per process.
    pub cpu_us_per_s: Vec<f64>,
    /// All the processes together, % of one core.
    pub total_pct: f64,
    /// Voluntary context switches per process per second: how often each sleeps and wakes.
    pub wakeups_per_s: Vec<f64>,
    /// PSS and private dirty memory (kB) and thread count per process, read after the window.
    pub pss_kb: Vec<f64>,
    pub private_kb: Vec<f64>,
    pub threads: Vec<f64>,
}

/// Samples `pids`' CPU clocks and context switches, sleeps `window`, samples again.
pub fn measure(pids: &[u32], window: Duration) -> Cost {
    let sample = || -> Vec<(Option<u64>, u64)> {
        pids.iter()
            .map(|&p| (process_cpu_ns(p), wakeups(p)))
            .collect()
    };
    let (t0, s0) = (Instant::now(), sample());
    std::thread::sleep(window);
    let (t1, s1) = (Instant::now(), sample());
    let secs = (t1 - t0).as_secs_f64();
    let mut cost = Cost {
        cpu_us_per_s: Vec::new(),
        total_pct: 0.0,
        wakeups_per_s: Vec::new(),
        pss_kb: Vec::new(),
        private_kb: Vec::new(),
        threads: Vec::new(),
    };
    let mut total_ns = 0u64;
    for (((c0, w0), (c1, w1)), &pid) in s0.iter().zip(&s1).zip(pids) {
        if let (Some(c0), Some(c1)) = (c0, c1) {
            let ns = c1.saturating_sub(*c0);
            total_ns += ns;
            cost.cpu_us_per_s.push(ns as f64 / 1e3 / secs);
        }
        cost.wakeups_per_s
            .push(w1.saturating_sub(*w0) as f64 / secs);
        if let Some(kb) = pss_kb(pid) {
            cost.pss_kb.push(kb as f64);
        }
        if let Some(kb) = private_dirty_kb(pid) {
            cost.private_kb.push(kb as f64);
        }
        if let Some(t) = threads(pid) {
            cost.threads.push(t as f64);
        }
    }
    cost.total_pct = 100.0 * total_ns as f64 / 1e9 / secs;
    cost
}
