//! Arbitrary bytes as a record file: the parser must never panic, and whatever it accepts must be
//! judged without panicking and, once terminal, never come back active (protocol.md 5 and 7.4 R1).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::clock::{Now, Timestamp};
use tether::record::Record;
use tether::verdict::{Outcome, Probe, Reader, verdict};

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = Record::parse(data, None) else {
        return;
    };
    // Readers that agree with typical records on host and boot, so the pid and lease rules run,
    // plus one far away in time and space, so the wall rule and R2/R3 run too.
    let readers = [
        Reader {
            boot_id: rec.holder.boot_id.clone(),
            host: rec.holder.host.clone(),
            time_ns: rec.holder.time_ns.clone(),
            pid_ns: rec.holder.pid_ns.clone(),
            now: Now {
                wall: rec.lease.renewed_at.plus_ms(5_000),
                mono_ms: rec.lease.renewed_mono_ms.saturating_add(5_000),
            },
        },
        Reader {
            boot_id: "B1".into(),
            host: "h1".into(),
            time_ns: None,
            pid_ns: Some("pid:[1]".into()),
            now: Now {
                wall: Timestamp(1_800_000_000_000),
                mono_ms: 1_000_000,
            },
        },
    ];
    let probes = [
        Probe::Gone,
        Probe::Unseen,
        Probe::Alive { start: None },
        Probe::Alive {
            start: Some(rec.holder.start.clone()),
        },
        Probe::Alive {
            start: Some("linux:0".into()),
        },
    ];
    for reader in &readers {
        for probe in &probes {
            let v = verdict(&rec, probe, reader);
            if rec.status.is_terminal() {
                assert!(
                    matches!(v.outcome, Outcome::Terminal { status, reason }
                        if status == rec.status && reason == rec.reason),
                    "terminal record judged {v:?}"
                );
            }
            assert_eq!(v.is_active(), matches!(v.outcome, Outcome::Active));
        }
    }
    // What the parser accepts, the writer must write back in a form the parser accepts unchanged.
    let again = Record::parse(&rec.to_json(), None).expect("a parsed record re-parses");
    assert_eq!(again, rec, "round trip changed the record");
});
