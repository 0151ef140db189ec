//! Crash consistency with real CLI processes: `tether run` wrappers renewing every 20 ms, `tether
//! status` reapers and `tether cancel` cancellers are SIGKILLed at random moments, many jobs at a
//! time. A watcher thread reads every record in a loop meanwhile. What must hold:
//!
//! - every read of every record parses (no torn or half-written record is ever visible);
//! - no terminal result is lost: a wrapper that was not killed and exited with its child's code has
//!   that exit in the record; one that exited 3 (lost) or 4 (cancelled) has its child's exit in
//!   `late`;
//! - no terminal state is overwritten: once seen terminal, status, reason, exit and finished_at
//!   never change.
//!
//! CI runs a few hundred jobs; `scripts/soak crash` runs thousands (`TETHER_TORTURE_CRASH_JOBS`).

mod common;

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::torture::*;
use rustix::process::Signal;
use serde_json::{Value, json};

#[derive(Default, Debug)]
struct Tally {
    jobs: u64,
    wrappers_killed: u64,
    wrappers_killed_by_cancel: u64,
    wrappers_completed: u64,
    reapers: u64,
    reapers_killed: u64,
    cancels: u64,
    cancels_killed: u64,
    late_kept: u64,
    statuses: std::collections::BTreeMap<String, u64>,
    failures: Vec<String>,
}

enum Act {
    KillWrapper,
    Reaper { kill_after: Option<u64> },
    Cancel { kill_after: Option<u64> },
}

fn one_job(e: &Env, rng: &mut Rng, id: &str, t: &Mutex<Tally>) {
    let code = [0u64, 1, 2, 42][rng.range(0, 4) as usize];
    let dur = rng.range(0, 120);
    let mut c = e.cmd();
    c.args([
        "run",
        "--id",
        id,
        "--interval",
        "20ms",
        "--ttl",
        "100ms",
        "--grace",
        "200ms",
        "--",
        "sh",
        "-c",
        &format!("sleep {}.{:03}; exit {code}", dur / 1000, dur % 1000),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let t0 = Instant::now();
    let wrapper = spawn(&mut c);

    let mut plan: Vec<(u64, Act)> = Vec::new();
    if rng.chance(40) {
        plan.push((rng.range(0, dur + 60), Act::KillWrapper));
    }
    for _ in 0..2 {
        let kill_after = rng.chance(30).then(|| rng.range(0, 30));
        plan.push((rng.range(0, dur + 80), Act::Reaper { kill_after }));
    }
    if rng.chance(25) {
        let kill_after = rng.chance(30).then(|| rng.range(0, 40));
        plan.push((rng.range(0, dur + 60), Act::Cancel { kill_after }));
    }
    plan.sort_by_key(|p| p.0);

    let mut killed_wrapper = false;
    let mut others: Vec<(u32, Option<Instant>, &'static str)> = Vec::new();
    for (at, act) in plan {
        let when = t0 + Duration::from_millis(at);
        if let Some(d) = when.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        // Kill the helpers whose moment has come.
        let now = Instant::now();
        for o in &mut others {
            if o.1.is_some_and(|k| k <= now) && kill(o.0, Signal::KILL) {
                o.1 = None;
                o.2 = if o.2 == "reaper" {
                    "reaper-killed"
                } else {
                    "cancel-killed"
                };
            }
        }
        match act {
            Act::KillWrapper => killed_wrapper |= kill(wrapper, Signal::KILL),
            Act::Reaper { kill_after } => {
                let mut r = e.cmd();
                r.args(["status", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let pid = spawn(&mut r);
                others.push((
                    pid,
                    kill_after.map(|k| now + Duration::from_millis(k)),
                    "reaper",
                ));
            }
            Act::Cancel { kill_after } => {
                let mut r = e.cmd();
                let report = e.tmp.path().join(format!("cancel-{id}.json"));
                r.args(["cancel", "--json", "--grace", "200ms", id])
                    .stdout(std::fs::File::create(&report).expect("cancel report file"))
                    .stderr(Stdio::null());
                let pid = spawn(&mut r);
                others.push((
                    pid,
                    kill_after.map(|k| now + Duration::from_millis(k)),
                    "cancel",
                ));
            }
        }
    }
    // Remaining planned kills of helpers.
    for o in &mut others {
        if let Some(k) = o.1 {
            if let Some(d) = k.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            if kill(o.0, Signal::KILL) {
                o.2 = if o.2 == "reaper" {
                    "reaper-killed"
                } else {
                    "cancel-killed"
                };
            }
        }
    }

    let mut fail = Vec::new();
    let w_end = wait(wrapper, Duration::from_secs(30));
    let cancel_killed_wrapper = cancel_sigkilled(e, id, wrapper);
    let Some(w_end) = w_end else {
        kill(wrapper, Signal::KILL);
        t.lock()
            .unwrap()
            .failures
            .push(format!("{id}: wrapper did not end within 30s"));
        return;
    };
    for (pid, _, kind) in &others {
        match wait(*pid, Duration::from_secs(30)) {
            None => {
                kill(*pid, Signal::KILL);
                fail.push(format!("{id}: {kind} {pid} did not end within 30s"));
            }
            Some(Ended::Signal(9)) if kind.ends_with("-killed") => {}
            // status: 0, or 6 before the wrapper created the record; cancel: 0, or 11 when it
            // refused (for example, the child changed while it was cancelling).
            Some(Ended::Code(0 | 6 | 11)) => {}
            Some(x) => fail.push(format!("{id}: {kind} ended {x:?}")),
        }
    }
    // Settle the job: a killed wrapper leaves an active record that this reader reaps.
    let o = e.tether(&["status", "--json", id]);
    let rec = e.record(id);
    let mut tl = t.lock().unwrap();
    tl.jobs += 1;
    for (_, _, kind) in &others {
        match *kind {
            "reaper" => tl.reapers += 1,
            "reaper-killed" => {
                tl.reapers += 1;
                tl.reapers_killed += 1
            }
            "cancel" => tl.cancels += 1,
            _ => {
                tl.cancels += 1;
                tl.cancels_killed += 1
            }
        }
    }
    let Some(rec) = rec else {
        // Killed before it created the record: nothing to check, nothing can be lost.
        if !(killed_wrapper && w_end == Ended::Signal(9)) {
            fail.push(format!("{id}: no record, wrapper ended {w_end:?}"));
        }
        tl.failures.extend(fail);
        return;
    };
    if o.code() != 0 {
        fail.push(format!("{id}: status exit {}: {}", o.code(), o.stderr));
    }
    let status = rec["status"].as_str().unwrap_or("?").to_owned();
    if matches!(status.as_str(), "starting" | "running") {
        fail.push(format!(
            "{id}: still {status} after its wrapper ended ({w_end:?})"
        ));
    }
    *tl.statuses.entry(status.clone()).or_default() += 1;
    if !rec["late"].as_array().is_none_or(|l| l.is_empty()) {
        tl.late_kept += 1;
    }
    let has_late_exit = rec["late"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| !x["exit"].is_null()));
    match w_end {
        Ended::Signal(9) if killed_wrapper => tl.wrappers_killed += 1,
        // The child had exited, so cancel aimed at the holder, which had not ended within the
        // 200 ms grace (a loaded machine): cancel's own SIGKILL, after it recorded `cancelled`.
        Ended::Signal(9) if cancel_killed_wrapper => {
            tl.wrappers_killed_by_cancel += 1;
            if status != "cancelled" {
                fail.push(format!(
                    "{id}: cancel SIGKILLed the holder, but the record is not cancelled: {rec}"
                ));
            }
        }
        Ended::Code(c) => {
            tl.wrappers_completed += 1;
            let ok = match c {
                c if c as u64 == code => {
                    has_exit(&rec, &json!({ "code": code }))
                        && rec["exit"] == json!({ "code": code })
                        && status == if code == 0 { "succeeded" } else { "failed" }
                }
                3 => status == "lost" && has_late_exit,
                4 => status == "cancelled" && has_late_exit,
                c if c > 128 => has_exit(&rec, &json!({ "signal": c - 128 })),
                _ => false,
            };
            if !ok {
                fail.push(format!(
                    "{id}: wrapper exited {c} (child exits {code}) but the record does not keep that result: {rec}"
                ));
            }
        }
        x => fail.push(format!("{id}: wrapper ended {x:?} without our kill")),
    }
    tl.failures.extend(fail);
}

/// Whether the job's one cancel (not itself SIGKILLed: then its report is empty) says it sent
/// SIGKILL to the holder `wrapper`: `cancel --json`'s `target` and `signals`.
fn cancel_sigkilled(e: &Env, id: &str, wrapper: u32) -> bool {
    let Ok(text) = std::fs::read(e.tmp.path().join(format!("cancel-{id}.json"))) else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&text) else {
        return false;
    };
    v["target"]["kind"] == "holder"
        && v["target"]["pid"] == json!(wrapper)
        && v["signals"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "SIGKILL"))
}

#[test]
fn sigkilled_wrappers_reapers_and_cancellers_never_corrupt_lose_or_overwrite() {
    let jobs = knob("TETHER_TORTURE_CRASH_JOBS", 240);
    let lanes = knob("TETHER_TORTURE_CRASH_LANES", 6).max(1);
    let e = Env::new();
    let o = e.tether(&["run", "--id", "warmup", "--", "true"]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    let watcher = Watcher::start(e.jobs());
    let tally = Mutex::new(Tally::default());
    let mut rng = Rng::new("torture_crash");
    let seeds: Vec<u64> = (0..lanes).map(|_| rng.next()).collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (lane, seed) in seeds.into_iter().enumerate() {
            let (e, tally) = (&e, &tally);
            let n = jobs / lanes + u64::from((lane as u64) < jobs % lanes);
            s.spawn(move || {
                let mut rng = Rng::seeded(seed);
                for i in 0..n {
                    one_job(e, &mut rng, &format!("c{lane}-{i}"), tally);
                }
            });
        }
    });
    let took = t0.elapsed();
    // A last look at everything through the CLI: every record lists, none is corrupt.
    let all = e.tether(&["status", "--json"]);
    assert_eq!(all.code(), 0, "{}", all.stderr);
    let listed = all.json().as_array().unwrap().len();
    let rep = watcher.finish();
    let t = tally.into_inner().unwrap();
    let temps = std::fs::read_dir(e.jobs())
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains(".tmp."))
        .count();
    eprintln!(
        "torture_crash: {} jobs in {:.1}s, {} terminal transitions watched over {} record reads; \
         wrappers: {} completed, {} SIGKILLed, {} SIGKILLed by a cancel; reapers: {} ({} SIGKILLed); cancels: {} ({} SIGKILLed); \
         final statuses {:?}; {} records with late results; {} temp files left by killed writers; \
         0 unparseable reads required, {} seen; 0 overwritten terminal states required, {} seen; {} failures",
        t.jobs,
        took.as_secs_f64(),
        rep.finals.len(),
        rep.reads,
        t.wrappers_completed,
        t.wrappers_killed,
        t.wrappers_killed_by_cancel,
        t.reapers,
        t.reapers_killed,
        t.cancels,
        t.cancels_killed,
        t.statuses,
        t.late_kept,
        temps,
        rep.unparseable.len(),
        rep.overwritten.len(),
        t.failures.len(),
    );
    assert!(
        rep.unparseable.is_empty(),
        "unparseable: {:?}",
        rep.unparseable
    );
    assert!(
        rep.overwritten.is_empty(),
        "overwritten: {:?}",
        rep.overwritten
    );
    assert!(
        t.failures.is_empty(),
        "failures:\n{}",
        t.failures.join("\n")
    );
    assert_eq!(listed as u64, rep.finals.len() as u64);
    // Every final state the watcher saw is the one the record holds now.
    for (id, f) in &rep.finals {
        let v: Value = e.record(id).unwrap();
        assert_eq!(Final::of(&v).as_ref(), Some(f), "{id}");
    }
}
