//! What the bench reads about processes from `/proc` and the clocks.

use std::fs;
use std::io::Read;

/// Nanoseconds a process has run on a CPU (`/proc/PID/schedstat`, first field).
pub fn cpu_ns(pid: u32) -> u64 {
    let mut s = String::new();
    if fs::File::open(format!("/proc/{pid}/schedstat"))
        .and_then(|mut f| f.read_to_string(&mut s))
        .is_err()
    {
        return 0;
    }
    s.split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

pub fn self_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

pub fn mono_ms_f64() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// CPU a whole process has used in ns: all its threads, those that already exited included (its
/// CPU-time clock). `/proc/PID/schedstat` counts one thread only, which would miss the CPU of a
/// multi-threaded process's other threads. None once it is gone. Read by the platform module
/// (`clock_getcpuclockid` on Linux), so the bench also type-checks for macOS.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    tether::testing::platform::process_cpu_ns(pid)
}

/// The number in a `Key:   123 kB` line of a `/proc` file.
fn field(path: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.split(':').next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Proportional set size in kB (`/proc/PID/smaps_rollup`): private pages in full, shared pages
/// (the binary's text, libc) divided among the processes that map them.
pub fn pss_kb(pid: u32) -> Option<u64> {
    field(&format!("/proc/{pid}/smaps_rollup"), "Pss")
}

/// Private dirty memory in kB (`/proc/PID/smaps_rollup`): what the process alone costs, however
/// many others share its binary (PSS shrinks as more processes map the same pages).
pub fn private_dirty_kb(pid: u32) -> Option<u64> {
    field(&format!("/proc/{pid}/smaps_rollup"), "Private_Dirty")
}

pub fn threads(pid: u32) -> Option<u64> {
    field(&format!("/proc/{pid}/status"), "Threads")
}

/// The process's threads: (tid, name, CPU ns from the thread's own `schedstat`).
pub fn thread_cpu(pid: u32) -> Vec<(u32, String, u64)> {
    let mut v = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = format!("/proc/{pid}/task/{tid}");
        let name = fs::read_to_string(format!("{base}/comm")).unwrap_or_default();
        let ns = fs::read_to_string(format!("{base}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        v.push((tid, name.trim().to_owned(), ns));
    }
    v.sort();
    v
}

/// Voluntary context switches of all the process's live threads: each is a sleep, so each is
/// followed by a wake-up. (`/proc/PID/status` alone counts the main thread only.)
pub fn wakeups(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| {
            let p = e.path().join("status");
            field(p.to_str()?, "voluntary_ctxt_switches")
        })
        .sum()
}
