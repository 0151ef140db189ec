//! Where one idle wrapper's time goes (issue 13 item 1): the system calls of a window under
//! `strace -c -f` (when strace is on PATH), divided by the renewals in that window, and the CPU of
//! each thread from its own schedstat.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::procfs::thread_cpu;
use crate::pueue::on_path;

/// System calls of one window: (name, calls), most frequent first, and the window's length.
pub struct Syscalls {
    pub calls: Vec<(String, u64)>,
    pub secs: f64,
}

impl Syscalls {
    pub fn total(&self) -> u64 {
        self.calls.iter().map(|c| c.1).sum()
    }
}

/// `strace -c -f -p PID` for `window`, then SIGINT (strace detaches and prints its summary).
/// None when strace is missing or its summary cannot be read.
pub fn strace(pid: u32, window: Duration, out: &Path) -> Option<Syscalls> {
    let strace = on_path("strace")?;
    let mut child = Command::new(strace)
        .args(["-c", "-f", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let secs = t0.elapsed().as_secs_f64();
    let p = Pid::from_raw(child.id() as i32)?;
    let _ = kill_process(p, Signal::INT);
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let calls = parse_summary(&std::fs::read_to_string(out).ok()?);
    (!calls.is_empty()).then_some(Syscalls { calls, secs })
}

/// strace's `-c` table: `% time  seconds  usecs/call  calls  [errors]  syscall`, the errors
/// column empty when there were none; the `total` line and the rules are skipped.
fn parse_summary(text: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !(5..=6).contains(&f.len()) || f[0].parse::<f64>().is_err() {
                return None;
            }
            let name = f[f.len() - 1];
            let calls = f[3].parse().ok()?;
            (name != "total").then(|| (name.to_owned(), calls))
        })
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// CPU per second of each of `pid`'s threads over `window`, as "name N us/s".
pub fn threads(pid: u32, window: Duration) -> String {
    let a = thread_cpu(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let b = thread_cpu(pid);
    let secs = t0.elapsed().as_secs_f64();
    b.iter()
        .map(|(tid, name, ns)| {
            let before = a.iter().find(|x| x.0 == *tid).map_or(0, |x| x.2);
            let us = ns.saturating_sub(before) as f64 / 1e3 / secs;
            format!("{name} {us:.1} us/s")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line: system calls per renewal, by name, over a window of `renewals`.
pub fn per_renewal(s: &Syscalls, renewals: f64) -> String {
    let by_name: Vec<String> = s
        .calls
        .iter()
        .map(|(n, c)| format!("{:.1} {n}", *c as f64 / renewals))
        .collect();
    format!(
        "{:.1} syscalls per renewal ({}) over {:.1} s = {renewals:.1} renewals (window / interval)",
        s.total() as f64 / renewals,
        by_name.join(", "),
        s.secs
    )
}
