//! Races end to end, one job at a time: 16 `tether status ID` reapers in a loop, the wrapper
//! finishing, and a `tether cancel`, all at the same moment; in a third of the rounds the wrapper
//! is also SIGKILLed right when its child exits, so the reapers race its finish write.
//!
//! The child blocks on a FIFO, so the test decides the instant it exits: the reapers are already
//! looping, the cancel is launched a few ms before or after, and the kill lands within a few ms.
//! What must hold, per job: exactly one terminal transition (a watcher never sees a terminal
//! status, reason, exit or finish time change), the final status is one of succeeded, failed,
//! cancelled, lost, and when the wrapper completed but lost the race to a reaper or the canceller
//! its child's exit is kept in `late`.
//!
//! CI: 20 rounds. `scripts/soak e2e-races` runs more (`TETHER_TORTURE_RACE_ROUNDS`).

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::torture::*;
use rustix::process::Signal;
use serde_json::json;

const REAPERS: usize = 16;

/// Opens the FIFO without blocking and writes a line: the child's `read` returns and it exits.
/// Gives up when the wrapper has ended (a cancel got there first) or after 20 s.
fn release(fifo: &std::path::Path, wrapper: u32) -> bool {
    let t0 = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(fifo)
        {
            Ok(mut f) => return f.write_all(b"go\n").is_ok(),
            // ENXIO: no reader yet (the child is not at its `read`), or it is gone.
            Err(_) if t0.elapsed() < Duration::from_secs(20) && ended(wrapper).is_none() => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => return false,
        }
    }
}

#[test]
fn sixteen_reapers_a_canceller_and_the_finish_make_exactly_one_terminal_transition() {
    let rounds = knob("TETHER_TORTURE_RACE_ROUNDS", 20);
    let e = Env::new();
    let o = e.tether(&["run", "--id", "warmup", "--", "true"]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    let watcher = Watcher::start(e.jobs());
    let mut rng = Rng::new("torture_races");
    let mut failures = Vec::new();
    let mut winners: BTreeMap<String, u64> = BTreeMap::new();
    let (mut killed, mut late_kept, mut status_runs) = (0u64, 0u64, 0u64);
    let t_all = Instant::now();
    for round in 0..rounds {
        let id = format!("r{round}");
        let fifo = e.tmp.path().join(format!("go.{round}"));
        let mk = e.run(
            {
                let mut c = std::process::Command::new("mkfifo");
                c.arg(&fifo);
                c
            },
            Duration::from_secs(10),
        );
        assert_eq!(mk.code(), 0, "mkfifo: {}", mk.stderr);
        let mut c = e.cmd();
        c.args([
            "run",
            "--id",
            &id,
            "--interval",
            "20ms",
            "--ttl",
            "100ms",
            "--grace",
            "300ms",
        ])
        .args(["--", "sh", "-c", "read x < \"$0\"; exit 7"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let wrapper = spawn(&mut c);
        assert!(
            wait_for(Duration::from_secs(20), || e
                .record(&id)
                .is_some_and(|r| r["status"] != "starting")),
            "{id} never ran"
        );
        let done = AtomicBool::new(false);
        let runs = AtomicU64::new(0);
        let kill_wrapper = rng.chance(33);
        let kill_at = rng.range(0, 8);
        let cancel_at = rng.range(0, 40);
        let release_at = 20u64;
        let mut cancel_pid = None;
        std::thread::scope(|s| {
            for _ in 0..REAPERS {
                s.spawn(|| {
                    let mut extra = 2;
                    while extra > 0 {
                        if done.load(Ordering::Relaxed) {
                            extra -= 1;
                        }
                        let mut r = e.cmd();
                        r.args(["status", &id])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null());
                        let pid = spawn(&mut r);
                        runs.fetch_add(1, Ordering::Relaxed);
                        match wait(pid, Duration::from_secs(30)) {
                            Some(Ended::Code(0)) => {}
                            x => panic!("tether status {id} ended {x:?}"),
                        }
                    }
                });
            }
            // The moments, in ms from now: cancel at 0..40, the child's exit at 20, the kill
            // of the wrapper 0..8 ms after the child's exit.
            let t0 = Instant::now();
            let at = |ms: u64| {
                if let Some(d) =
                    (t0 + Duration::from_millis(ms)).checked_duration_since(Instant::now())
                {
                    std::thread::sleep(d)
                }
            };
            let mut steps = vec![(cancel_at, 0), (release_at, 1)];
            if kill_wrapper {
                steps.push((release_at + kill_at, 2));
            }
            steps.sort();
            for (ms, what) in steps {
                at(ms);
                match what {
                    0 => {
                        let mut k = e.cmd();
                        k.args(["cancel", "--grace", "300ms", &id])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null());
                        cancel_pid = Some(spawn(&mut k));
                    }
                    1 => {
                        release(&fifo, wrapper);
                    }
                    _ => killed += u64::from(kill(wrapper, Signal::KILL)),
                }
            }
            // The reapers stop two runs after the job is over for everyone.
            wait_for(Duration::from_secs(30), || {
                ended(wrapper).is_some()
                    && cancel_pid.is_none_or(|p| ended(p).is_some())
                    && e.record(&id).and_then(|r| Final::of(&r)).is_some()
            });
            done.store(true, Ordering::Relaxed);
        });
        status_runs += runs.load(Ordering::Relaxed);
        let w_end = wait(wrapper, Duration::from_secs(10));
        if w_end.is_none() {
            kill(wrapper, Signal::KILL);
            failures.push(format!("{id}: wrapper did not end"));
            continue;
        }
        let w_end = w_end.unwrap();
        if let Some(p) = cancel_pid {
            match wait(p, Duration::from_secs(10)) {
                Some(Ended::Code(0 | 11)) => {}
                x => failures.push(format!("{id}: cancel ended {x:?}")),
            }
        }
        let rec = e.record(&id).unwrap();
        let Some(f) = Final::of(&rec) else {
            failures.push(format!("{id}: not terminal at the end: {rec}"));
            continue;
        };
        let late_exit = rec["late"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| !x["exit"].is_null()));
        late_kept += u64::from(late_exit);
        let winner = match (f.status.as_str(), f.reason.as_str()) {
            ("failed", Some("exited")) if f.exit == json!({"code": 7}) => {
                "wrapper (failed, exit 7)"
            }
            ("failed", Some("holder-signaled")) => "wrapper (holder-signaled)",
            ("cancelled", _) => "canceller",
            ("lost", Some(r)) => match r {
                "worker-exited" => "reaper (worker-exited)",
                "lease-expired" => "reaper (lease-expired)",
                _ => "lost (other)",
            },
            _ => "unexpected",
        };
        *winners.entry(winner.to_owned()).or_default() += 1;
        let ok = match w_end {
            Ended::Signal(9) if kill_wrapper => {
                // Killed: whatever it wrote before dying stands; nothing else is required.
                winner != "unexpected"
            }
            Ended::Code(7) => f.status == "failed" && f.exit == json!({"code": 7}),
            Ended::Code(3) => f.status == "lost" && late_exit,
            Ended::Code(4) => f.status == "cancelled" && late_exit,
            Ended::Code(c) if c > 128 => has_exit(&rec, &json!({"signal": c - 128})),
            _ => false,
        };
        if !ok {
            failures.push(format!("{id}: wrapper ended {w_end:?}, record {rec}"));
        }
    }
    let took = t_all.elapsed();
    let rep = watcher.finish();
    eprintln!(
        "torture_races: {rounds} rounds in {:.1}s: {REAPERS} reapers looping ({status_runs} \
         `tether status` runs in all) + a cancel + the finish per job, wrapper SIGKILLed at the \
         child's exit in {killed}; terminal state decided by {winners:?}; {late_kept} records kept \
         the child's exit in `late`; {} record reads, {} unparseable, {} terminal states changed, {} failures",
        took.as_secs_f64(),
        rep.reads,
        rep.unparseable.len(),
        rep.overwritten.len(),
        failures.len()
    );
    assert!(rep.unparseable.is_empty(), "{:?}", rep.unparseable);
    assert!(rep.overwritten.is_empty(), "{:?}", rep.overwritten);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!winners.contains_key("unexpected"), "{winners:?}");
}
