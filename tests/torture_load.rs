//! No false deaths under load: N wrapped jobs (`tether run --detach -- sleep`) while the CPUs are
//! oversubscribed (`stress-ng --cpu 8 --io 2 --hdd 1` on this 2-core machine, or busy loops and a
//! `dd` loop when stress-ng is missing) and the disk is busy. `tether status --json` is run over
//! and over for the whole duration: no job may ever be judged anything but running.
//!
//! CI: 30 jobs for 15 s at the default interval/ttl (3.333s/10s). The soak part `load` runs 200 jobs
//! for 3 minutes, and `scripts/min-ttl` repeats it at shorter ttls to find the smallest ttl that
//! still holds. Knobs: `TETHER_TORTURE_LOAD_JOBS`, `_SECS`, `_TTL_MS`, `_INTERVAL_MS`, `_CPU`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::torture::*;
use rustix::process::Signal;
use tether::clock::Timestamp;

/// The load generator, in its own process group, stopped when dropped.
struct Load {
    pgids: Vec<u32>,
    what: String,
}

impl Load {
    fn start(e: &Env, cpu: u64, secs: u64) -> Load {
        let scratch = e.tmp.path().join("load");
        std::fs::create_dir_all(&scratch).unwrap();
        let have_stress = common::on_path("stress-ng").is_some();
        let mut pgids = Vec::new();
        let what = if have_stress {
            let mut c = Command::new("stress-ng");
            c.args(["--cpu", &cpu.to_string(), "--io", "2", "--hdd", "1"])
                .args(["--hdd-bytes", "128M", "--temp-path"])
                .arg(&scratch)
                .args(["--timeout", &format!("{secs}s"), "--quiet"])
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            pgids.push(spawn(&mut c));
            format!("stress-ng --cpu {cpu} --io 2 --hdd 1 --hdd-bytes 128M")
        } else {
            eprintln!("note: stress-ng is not installed; using busy loops and a dd loop instead");
            for _ in 0..cpu {
                let mut c = Command::new("sh");
                c.args(["-c", "while :; do :; done"])
                    .process_group(0)
                    .stdin(Stdio::null());
                pgids.push(spawn(&mut c));
            }
            let mut c = Command::new("sh");
            c.args([
                "-c",
                "while :; do dd if=/dev/zero of=\"$0/dd\" bs=1M count=128 conv=fsync 2>/dev/null; done",
            ])
            .arg(&scratch)
            .process_group(0)
            .stdin(Stdio::null());
            pgids.push(spawn(&mut c));
            format!("{cpu} busy loops and a dd loop with fsync")
        };
        Load { pgids, what }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for &g in &self.pgids {
            kill_group(g, Signal::KILL);
        }
        for &g in &self.pgids {
            let _ = wait(g, Duration::from_secs(10));
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn no_job_is_judged_lost_while_cpus_and_disk_are_overloaded() {
    let jobs = knob("TETHER_TORTURE_LOAD_JOBS", 30);
    let secs = knob("TETHER_TORTURE_LOAD_SECS", 15);
    let ttl_ms = knob("TETHER_TORTURE_LOAD_TTL_MS", 10_000);
    // The default interval: a third of the ttl (`tether run` without --interval).
    let interval_ms = knob("TETHER_TORTURE_LOAD_INTERVAL_MS", ttl_ms / 3);
    let cpu = knob("TETHER_TORTURE_LOAD_CPU", 8);
    let e = Env::new();
    // Generous: starting 200 jobs under load takes a while, and the load must outlast the checks.
    let load = Load::start(&e, cpu, secs + 60 + jobs / 2);
    std::thread::sleep(Duration::from_millis(500));
    let (interval, ttl) = (format!("{interval_ms}ms"), format!("{ttl_ms}ms"));
    let ids = Mutex::new(Vec::new());
    let t_start = Instant::now();
    std::thread::scope(|s| {
        for lane in 0..4 {
            let (e, ids, interval, ttl) = (&e, &ids, &interval, &ttl);
            s.spawn(move || {
                for i in (lane..jobs).step_by(4) {
                    let (id, _) = e.detach(&[
                        "--id",
                        &format!("j{i}"),
                        "--interval",
                        interval,
                        "--ttl",
                        ttl,
                        "--",
                        "sleep",
                        "100000",
                    ]);
                    ids.lock().unwrap().push(id);
                }
            });
        }
    });
    let started_in = t_start.elapsed();
    let n = ids.lock().unwrap().len();
    let t0 = Instant::now();
    let mut checks = 0u64;
    let mut judged = 0u64;
    let mut bad: BTreeMap<String, String> = BTreeMap::new();
    let mut min_margin_ms = i64::MAX;
    let mut slowest_check = Duration::ZERO;
    let mut loads = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        let tc = Instant::now();
        let mut c = e.cmd();
        c.args(["status", "--json"]);
        let Some(o) = e.try_run(c, Duration::from_secs(60)) else {
            eprintln!(
                "torture_load: a `tether status --json` check did not finish within 60s at {:.0}s",
                t0.elapsed().as_secs_f64()
            );
            bad.insert("(check)".into(), "status --json took over 60s".into());
            slowest_check = Duration::from_secs(60);
            break;
        };
        slowest_check = slowest_check.max(tc.elapsed());
        let now = Timestamp::now();
        assert_eq!(o.code(), 0, "{}", o.stderr);
        let v = o.json();
        let all = v.as_array().unwrap();
        assert_eq!(all.len(), n, "every job is listed");
        for j in all {
            judged += 1;
            let st = j["status"].as_str().unwrap();
            if st != "running" {
                bad.entry(j["id"].as_str().unwrap().to_owned())
                    .or_insert_with(|| {
                        eprintln!(
                            "torture_load: {} judged {st}/{} at {:.1}s",
                            j["id"],
                            j["reason"],
                            t0.elapsed().as_secs_f64()
                        );
                        format!("{st}/{}", j["reason"])
                    });
            } else if let Some(x) = j["lease"]["expires_at"].as_str() {
                let left = Timestamp::parse(x).unwrap().ms() - now.ms();
                min_margin_ms = min_margin_ms.min(left);
            }
        }
        checks += 1;
        if let Some(one) = loadavg()
            .split_whitespace()
            .next()
            .and_then(|x| x.parse::<f64>().ok())
        {
            loads.push(one);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ran = t0.elapsed();
    let what = load.what.clone();
    let td = Instant::now();
    drop(load);
    eprintln!("load stopped in {:.1}s", td.elapsed().as_secs_f64());
    eprintln!(
        "torture_load: {n} jobs at interval {interval_ms}ms ttl {ttl_ms}ms under {} for {:.0}s \
         (started in {:.1}s): {checks} `tether status --json` checks, {judged} verdicts, {} jobs \
         judged not running {:?}; smallest lease time left at the end of a check {}ms; slowest \
         check {:.2}s; 1-minute load average {:.1} to {:.1}",
        what,
        ran.as_secs_f64(),
        started_in.as_secs_f64(),
        bad.len(),
        bad,
        min_margin_ms,
        slowest_check.as_secs_f64(),
        loads.iter().copied().fold(f64::INFINITY, f64::min),
        loads.iter().copied().fold(0.0, f64::max),
    );
    eprintln!(
        "TORTURE_LOAD_RESULT ttl_ms={ttl_ms} interval_ms={interval_ms} jobs={n} secs={secs} lost={} min_margin_ms={min_margin_ms}",
        bad.len()
    );
    assert!(bad.is_empty(), "jobs judged dead under load: {bad:?}");
}
