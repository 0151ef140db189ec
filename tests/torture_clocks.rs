//! Clocks: a wall-clock jump, in a reader or in the wrapper, never reaps a healthy job on the same
//! boot (leases are judged on the monotonic clock there, protocol.md 7.3), and a changed boot id
//! always reaps (R3).
//!
//! Jumps are made with libfaketime (Debian `faketime`) preloaded, with
//! `FAKETIME_DONT_FAKE_MONOTONIC=1` (tokio's timers hang otherwise; tether reads the monotonic
//! clock by raw syscall anyway). Each test checks that the jump really happened (the wall times
//! tether prints or writes move by hours) so it cannot pass vacuously. Without libfaketime the
//! jump tests fail under CI=true and elsewhere print what to install and return.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::torture::*;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::record::Record;
use tether::store::{Change, Store};

const HOUR_MS: i64 = 3_600_000;

fn libfaketime() -> Option<PathBuf> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| PathBuf::from(d).join("faketime/libfaketime.so.1"))
    .find(|p| p.exists());
    if found.is_none() {
        common::skip("libfaketime.so.1", "apt-get install faketime");
    }
    found
}

fn fake(c: &mut Command, lib: &PathBuf) {
    c.env("LD_PRELOAD", lib)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env_remove("FAKETIME")
        .env_remove("FAKETIME_TIMESTAMP_FILE");
}

fn ts_ms(v: &serde_json::Value) -> i64 {
    Timestamp::parse(v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}")))
        .unwrap()
        .ms()
}

#[test]
fn a_wall_clock_jump_in_the_reader_never_reaps_a_healthy_job() {
    let Some(lib) = libfaketime() else { return };
    let e = Env::new();
    let (id, _) = e.detach(&["--interval", "200ms", "--ttl", "1s", "--", "sleep", "600"]);
    for offset in ["+5h", "-5h", "+30d", "-30d"] {
        let off_ms = {
            let (sign, rest) = offset.split_at(1);
            let n: i64 = rest[..rest.len() - 1].parse().unwrap();
            let unit = if rest.ends_with('h') {
                HOUR_MS
            } else {
                24 * HOUR_MS
            };
            if sign == "-" { -n * unit } else { n * unit }
        };
        let mut c = e.cmd();
        fake(&mut c, &lib);
        c.env("FAKETIME", offset).args(["status", "--json", &id]);
        let o = e.run(c, Duration::from_secs(30));
        assert_eq!(o.code(), 0, "{offset}: {}", o.stderr);
        let v = o.json1();
        assert_eq!(v["status"], "running", "{offset}: {v}");
        // The reader's wall clock really moved: the expiry it prints is in its own wall time.
        let shift = ts_ms(&v["lease"]["expires_at"]) - Timestamp::now().ms();
        assert!(
            (shift - off_ms).abs() < 60_000,
            "{offset}: faketime had no effect (expiry {} is {shift} ms from now)",
            v["lease"]["expires_at"]
        );
        if offset.ends_with('d') {
            continue;
        }
        // --wait sits through several ttls of the job and times out: the job never ended.
        let mut c = e.cmd();
        fake(&mut c, &lib);
        c.env("FAKETIME", offset)
            .args(["status", "--wait", "--timeout", "2s", "--json", &id]);
        let o = e.run(c, Duration::from_secs(30));
        assert_eq!(o.code(), 124, "{offset}: {} {}", o.stdout, o.stderr);
        assert_eq!(o.json1()["status"], "running", "{offset}");
        // And the record was never written lost.
        assert_eq!(e.record(&id).unwrap()["status"], "running", "{offset}");
    }
    eprintln!(
        "clocks: readers at +5h, -5h, +30d, -30d: job stayed running, and through 2 s waits (ttl 1 s) at +5h and -5h"
    );
}

#[test]
fn a_changed_boot_id_always_reaps() {
    let e = Env::new();
    let (id, wrapper) = e.detach(&["--interval", "100ms", "--ttl", "10s", "--", "sleep", "600"]);
    let store = e.store();
    let jid = JobId::parse(&id).unwrap();
    // Under the lock, as a writer would: the wrapper's renewals keep the edited holder.
    store
        .update(&jid, &mut |r: &Record| {
            let mut n = r.clone();
            n.holder.boot_id = "00000000-0000-4000-8000-000000000000".into();
            Change::Write {
                record: n,
                durable: true,
                value: (),
            }
        })
        .unwrap();
    let o = e.tether(&["status", "--json", &id]);
    assert_eq!(o.code(), 0, "{}", o.stderr);
    let v = o.json1();
    assert_eq!(v["status"], "lost", "{v}");
    assert_eq!(v["reason"], "host-rebooted", "{v}");
    let rec = e.record(&id).unwrap();
    assert_eq!(rec["status"], "lost");
    assert_eq!(rec["reason"], "host-rebooted");
    // The wrapper's next renewal is refused; it stops its child and leaves.
    assert!(
        wait_for(Duration::from_secs(20), || !alive(wrapper)),
        "the wrapper of a reaped job kept running"
    );
    assert_eq!(e.record(&id).unwrap()["status"], "lost");
}

#[test]
fn a_wall_clock_jump_in_the_wrapper_never_reaps() {
    let Some(lib) = libfaketime() else { return };
    let e = Env::new();
    let file = e.tmp.path().join("faketime");
    std::fs::write(&file, "+0\n").unwrap();
    let mut c = e.cmd();
    fake(&mut c, &lib);
    c.env("FAKETIME_TIMESTAMP_FILE", &file)
        .env("FAKETIME_NO_CACHE", "1")
        .args([
            "run",
            "--detach",
            "--json",
            "--interval",
            "100ms",
            "--ttl",
            "1s",
        ])
        .args(["--", "sleep", "600"]);
    let o = e.run(c, Duration::from_secs(60));
    assert_eq!(o.code(), 0, "{}", o.stderr);
    let id = o.json()["id"].as_str().unwrap().to_owned();
    let rec = e.record(&id).unwrap();
    e.adopt(
        rec["holder"]["pid"].as_u64().unwrap() as u32,
        rec["holder"]["start"].as_str().unwrap(),
    );
    e.adopt(
        rec["child"]["pid"].as_u64().unwrap() as u32,
        rec["child"]["start"].as_str().unwrap(),
    );
    for (offset, off_ms) in [("+5h", 5 * HOUR_MS), ("-5h", -5 * HOUR_MS), ("+0", 0)] {
        std::fs::write(&file, format!("{offset}\n")).unwrap();
        // The wrapper's wall clock jumped: its renewals carry the shifted time.
        assert!(
            wait_for(Duration::from_secs(10), || {
                let r = e.record(&id).unwrap();
                (ts_ms(&r["lease"]["renewed_at"]) - Timestamp::now().ms() - off_ms).abs() < 60_000
            }),
            "{offset}: the wrapper's renewals never showed the jump: {}",
            e.record(&id).unwrap()
        );
        // Two ttls later, with readers looking the whole time, the job is still running.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(400));
            let o = e.tether(&["status", "--json", &id]);
            assert_eq!(o.code(), 0, "{}", o.stderr);
            assert_eq!(o.json1()["status"], "running", "{offset}: {}", o.stdout);
        }
    }
    eprintln!(
        "clocks: wrapper jumped to +5h, -5h, back to +0 mid-run (ttl 1 s, 2 s each): job stayed running"
    );
}

/// A reader stalled between reading a record and reading its clock (descheduled on an overloaded
/// machine; here, strace delays its read of the boot id, which comes right before the clock) must
/// not count its own stall against the lease. Found by the load test at ttl 500 ms: 4 of 200
/// healthy jobs were reaped `lease-expired` by a `tether status` that took 39 s, and reproduced
/// this way before judge.rs read the clock first. A stopped holder is still reaped.
#[test]
fn a_stalled_reader_never_reaps_a_healthy_job_but_still_reaps_a_stopped_one() {
    if !common::need_tool("strace", "strace") {
        return;
    }
    let e = Env::new();
    let stalled = |id: &str| {
        let mut c = Command::new("strace");
        c.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-P",
            "/proc/sys/kernel/random/boot_id",
        ])
        .args(["-e", "inject=openat:delay_exit=1500000", BIN, "--dir"])
        .arg(&e.dir)
        .args(["status", "--json", id]);
        let o = e.run(c, Duration::from_secs(60));
        assert_eq!(o.code(), 0, "{}", o.stderr);
        o.json1()
    };
    let (id, _) = e.detach(&[
        "--interval",
        "100ms",
        "--ttl",
        "500ms",
        "--",
        "sleep",
        "600",
    ]);
    for _ in 0..2 {
        let v = stalled(&id);
        assert_eq!(
            v["status"], "running",
            "a 1.5 s reader stall reaped a healthy job: {v}"
        );
    }
    assert_eq!(e.record(&id).unwrap()["status"], "running");
    let (id2, w2) = e.detach(&[
        "--interval",
        "100ms",
        "--ttl",
        "500ms",
        "--",
        "sleep",
        "600",
    ]);
    let start = e.record(&id2).unwrap()["holder"]["start"]
        .as_str()
        .unwrap()
        .to_owned();
    let pin =
        tether::process::Pinned::open(w2, &start, tether::process::pid_ns().as_deref()).unwrap();
    pin.signal(rustix::process::Signal::STOP).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let v = stalled(&id2);
    pin.signal(rustix::process::Signal::CONT).unwrap();
    assert_eq!(v["status"], "lost", "{v}");
    assert_eq!(v["reason"], "lease-expired", "{v}");
}
