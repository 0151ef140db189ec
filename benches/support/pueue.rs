//! pueue's daemon with N idle tasks, for the idle-fleet comparison (issue 13 item 5): the same
//! idle job, one supervisor process for all of them instead of one wrapper each. Runs only when
//! `pueued` and `pueue` are on PATH (`cargo install pueue --locked`).
//!
//! What is counted: the daemon process alone (all its threads). Its task processes (`sh -c` and
//! the job) are left out, as the job's own process is left out of each tether wrapper's figure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use tether::process::Pinned;
use tether::testing::platform::stat;

use crate::fleet::IDLE_JOB;

/// `tool`'s path if it is on PATH (the tests' kit's).
pub use crate::common::on_path;

/// A `pueued` started by the bench with its own config, state and socket under `dir`. Dropping
/// it (also on a panic) kills its tasks' process groups, proven by start time, then the daemon.
pub struct Daemon {
    child: Child,
    pueue: PathBuf,
    config: PathBuf,
    /// The daemon's task processes as last listed: pid, start time.
    tasks: Vec<(u32, String)>,
}

impl Daemon {
    /// Starts the daemon and `n` idle tasks, all allowed to run at once; returns once `n` run.
    pub fn start(dir: &Path, n: usize) -> Option<Daemon> {
        let (pueued, pueue) = (on_path("pueued")?, on_path("pueue")?);
        std::fs::create_dir_all(dir.join("run")).expect("pueue dirs");
        let config = dir.join("pueue.yml");
        std::fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {d}/data\n  runtime_directory: {d}/run\n  \
                 use_unix_socket: true\n  unix_socket_path: {d}/run/pueue.sock\n",
                d = dir.display()
            ),
        )
        .expect("pueue config");
        let log = std::fs::File::create(dir.join("pueued.log")).expect("pueued log");
        let child = Command::new(pueued)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pueued");
        let mut d = Daemon {
            child,
            pueue,
            config,
            tasks: Vec::new(),
        };
        let sock = dir.join("run/pueue.sock");
        assert!(
            poll(Duration::from_secs(20), || sock.exists()),
            "pueued did not open its socket within 20 s (see {})",
            dir.join("pueued.log").display()
        );
        d.client(&["parallel", &n.to_string()]);
        for _ in 0..n {
            let mut args = vec!["add", "--"];
            args.extend_from_slice(IDLE_JOB);
            d.client(&args);
        }
        let up = poll(Duration::from_secs(120), || d.running() == n);
        assert!(up, "pueued runs {} of {n} tasks after 120 s", d.running());
        d.tasks = d.task_processes();
        Some(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn client(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new(&self.pueue)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("pueue client");
        assert!(
            out.status.success(),
            "pueue {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Tasks `pueue status --json` shows as Running.
    pub fn running(&self) -> usize {
        let v: serde_json::Value =
            serde_json::from_slice(&self.client(&["status", "--json"])).unwrap_or_default();
        v["tasks"]
            .as_object()
            .map(|t| {
                t.values()
                    .filter(|t| t["status"].get("Running").is_some())
                    .count()
            })
            .unwrap_or(0)
    }

    /// The daemon's direct children (each task's `sh`, a process-group leader), with start times.
    fn task_processes(&self) -> Vec<(u32, String)> {
        let me = self.pid();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(st) = stat(pid) {
                if st.ppid == me && !st.zombie {
                    v.push((pid, st.start));
                }
            }
        }
        v
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Listed again right before the kill: a task that ended and was respawned since start.
        let mut tasks = self.task_processes();
        tasks.append(&mut self.tasks);
        // The tasks first, while their parent lives to reap them; then the daemon.
        let ns = tether::process::pid_ns();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (pid, start) in tasks {
            if let Ok(p) = Pinned::open(pid, &start, ns.as_deref()) {
                let _ = p.signal_group(pid, Signal::KILL);
                let _ = p.signal(Signal::KILL);
                p.wait_exit(deadline.saturating_duration_since(Instant::now()));
            }
        }
        poll(Duration::from_secs(5), || self.task_processes().is_empty());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `f` every 50 ms until it holds or `limit` passes (the tests' kit's bounded wait).
fn poll(limit: Duration, f: impl FnMut() -> bool) -> bool {
    crate::common::poll(limit, Duration::from_millis(50), f)
}
