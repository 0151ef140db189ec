//! Properties of the pure core that must hold for every input, not just the vectors' examples.
//!
//! Readers parse files any process (or a disk error) may have written, and judge them with clocks
//! that can say anything, so "never panics" is a real requirement: a panic in `status` would hide
//! every other job. The value ranges below are deliberately extreme (u64::MAX, i64::MIN) because
//! overflow is where a lease computation would break. `PROPTEST_CASES` raises the case count.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tether::clock::{Now, Timestamp};
use tether::record::{Child, Exit, Holder, Lease, Progress, Reason, Record, Status};
use tether::transition::{Write, apply};
use tether::verdict::{Outcome, Probe, Reader, Rule, verdict};

const STATUSES: [Status; 6] = [
    Status::Starting,
    Status::Running,
    Status::Succeeded,
    Status::Failed,
    Status::Cancelled,
    Status::Lost,
];
const REASONS: [Reason; 10] = [
    Reason::Exited,
    Reason::Signaled,
    Reason::StartFailed,
    Reason::HeartbeatTimeout,
    Reason::HolderSignaled,
    Reason::Cancelled,
    Reason::WorkerExited,
    Reason::PidReused,
    Reason::LeaseExpired,
    Reason::HostRebooted,
];

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(&STATUSES[..])
}
fn reason() -> impl Strategy<Value = Reason> {
    proptest::sample::select(&REASONS[..])
}
fn exit() -> impl Strategy<Value = Option<Exit>> {
    prop_oneof![
        Just(None),
        any::<i32>().prop_map(|c| Some(Exit::Code(c))),
        any::<i32>().prop_map(|s| Some(Exit::Signal(s))),
    ]
}
/// Few distinct values, so equal and different identities both come up often.
fn ident(choices: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(choices).prop_map(String::from)
}
fn time_ns() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), ident(&["time:[1]", "time:[2]"]).prop_map(Some)]
}
fn pid_ns() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), ident(&["pid:[1]", "pid:[2]"]).prop_map(Some)]
}
/// Mostly plausible instants, sometimes the extremes.
fn wall() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1_700_000_000_000i64..1_800_000_000_000,
        1 => any::<i64>(),
    ]
}
fn progress() -> impl Strategy<Value = Progress> {
    (proptest::option::of("[a-z ]{0,8}"), any::<u64>()).prop_map(|(message, count)| Progress {
        message,
        at: None,
        count,
        ..Default::default()
    })
}

/// Any record `Record::parse` would accept (ttl ≥ 2 × interval, pids ≥ 1).
fn record() -> impl Strategy<Value = Record> {
    let holder = (
        1u32..=i32::MAX as u32,
        ident(&["linux:1", "linux:2"]),
        ident(&["B1", "B2"]),
        ident(&["h1", "h2"]),
        time_ns(),
        pid_ns(),
    )
        .prop_map(|(pid, start, boot_id, host, time_ns, pid_ns)| Holder {
            pid,
            start,
            boot_id,
            host,
            time_ns,
            pid_ns,
            extra: Default::default(),
        });
    let lease = (
        1u64..=u64::MAX,
        prop_oneof![1u64..=10_000, 1u64..=u64::MAX / 2],
        prop_oneof![0u64..=100_000, any::<u64>()],
        wall(),
        prop_oneof![0u64..=10_000_000, any::<u64>()],
    )
        .prop_map(|(epoch, interval_ms, extra, at, mono)| Lease {
            epoch,
            interval_ms,
            ttl_ms: (interval_ms * 2).saturating_add(extra),
            renewed_at: Timestamp(at),
            renewed_mono_ms: mono,
            extra: Default::default(),
        });
    (
        status(),
        proptest::option::of(reason()),
        holder,
        lease,
        exit(),
        proptest::option::of(wall()),
        proptest::collection::vec(late(), 0..3),
    )
        .prop_map(|(status, reason, holder, lease, exit, fin, late)| Record {
            protocol: 1,
            id: "job-1".into(),
            name: None,
            argv: vec!["true".into()],
            cwd: None,
            created_at: Timestamp(1_700_000_000_000),
            status,
            reason,
            holder,
            child: Some(Child {
                pid: 7,
                start: "linux:7".into(),
                pgid: 7,
                extra: Default::default(),
            }),
            lease,
            progress: Progress::default(),
            exit,
            finished_at: fin.map(Timestamp),
            late,
            meta: Default::default(),
            unique: None,
            extra: Map::new(),
        })
}

fn late() -> impl Strategy<Value = tether::record::LateResult> {
    (any::<u64>(), proptest::option::of(status()), exit()).prop_map(|(epoch, status, exit)| {
        tether::record::LateResult {
            at: Timestamp(1_700_000_000_000),
            epoch,
            status,
            reason: None,
            exit,
            progress: None,
            note: "late".into(),
            extra: Default::default(),
        }
    })
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        Just(Probe::Gone),
        Just(Probe::Alive { start: None }),
        ident(&["linux:1", "linux:2"]).prop_map(|s| Probe::Alive { start: Some(s) }),
    ]
}

/// A reader near the record's renewal (where the boundaries are), or anywhere at all.
fn reader_for(rec: &Record) -> impl Strategy<Value = Reader> + use<> {
    let (at, mono) = (rec.lease.renewed_at.0, rec.lease.renewed_mono_ms);
    (
        ident(&["B1", "B2"]),
        ident(&["h1", "h2"]),
        (time_ns(), pid_ns()),
        prop_oneof![
            (-100_000i64..100_000).prop_map(move |d| at.saturating_add(d)),
            any::<i64>()
        ],
        prop_oneof![
            (-100_000i64..100_000).prop_map(move |d| mono.saturating_add_signed(d)),
            any::<u64>()
        ],
    )
        .prop_map(|(boot_id, host, (time_ns, pid_ns), wall, mono_ms)| Reader {
            boot_id,
            host,
            time_ns,
            pid_ns,
            now: Now {
                wall: Timestamp(wall),
                mono_ms,
            },
        })
}

fn write() -> impl Strategy<Value = Write> {
    let epoch = || prop_oneof![0u64..=3, any::<u64>()];
    let at = || wall().prop_map(Timestamp);
    prop_oneof![
        (
            epoch(),
            at(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(progress())
        )
            .prop_map(|(epoch, at, mono_ms, running, progress)| Write::Renew {
                epoch,
                at,
                mono_ms,
                running,
                child: None,
                progress,
            }),
        (epoch(), at(), any::<u64>())
            .prop_map(|(epoch, at, mono_ms)| { Write::Acquire { epoch, at, mono_ms } }),
        (
            epoch(),
            at(),
            status(),
            reason(),
            exit(),
            proptest::option::of(progress())
        )
            .prop_map(
                |(epoch, at, status, reason, exit, progress)| Write::Finish {
                    epoch,
                    at,
                    status,
                    reason,
                    exit,
                    progress,
                }
            ),
        (at(), reason()).prop_map(|(at, reason)| Write::Reap { at, reason }),
        at().prop_map(|at| Write::Cancel { at }),
    ]
}

// ---------------------------------------------------------------------------------------------
// (a) The parser.

/// Values chosen to break a careless parser: wrong types, extremes, near-miss timestamps.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        Just(json!("")),
        Just(json!("running")),
        Just(json!("lost")),
        Just(json!("2026-11-24T10:00:00.000Z")),
        Just(json!("2026-11-24T10:00:00.000")),
        Just(json!("1969-12-31T23:59:59.999Z")),
        Just(json!("9999-12-31T23:59:59.999999999Z")),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"code": 1, "signal": 2})),
        Just(json!([{"at": "2026-11-24T10:00:00Z", "epoch": 1}])),
        ".{0,12}".prop_map(Value::from),
    ]
}

const PATHS: &[&str] = &[
    "protocol",
    "id",
    "name",
    "argv",
    "cwd",
    "created_at",
    "status",
    "reason",
    "holder",
    "holder.pid",
    "holder.start",
    "holder.boot_id",
    "holder.host",
    "holder.time_ns",
    "holder.pid_ns",
    "child",
    "child.pid",
    "child.pgid",
    "lease",
    "lease.epoch",
    "lease.interval_ms",
    "lease.ttl_ms",
    "lease.renewed_at",
    "lease.renewed_mono_ms",
    "progress",
    "progress.count",
    "progress.at",
    "exit",
    "finished_at",
    "late",
    "unknown",
];

/// Removes (None) or replaces the value at `path`, if its parent is still an object.
fn mutate(v: &mut Value, path: &str, to: Option<Value>) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cur = v;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(obj) = cur.as_object_mut() {
        match to {
            Some(x) => {
                obj.insert(last.into(), x);
            }
            None => {
                obj.remove(last);
            }
        }
    }
}

/// Whatever parses must be a record this implementation can write back and read again unchanged.
fn check_parsed(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(r) = Record::parse(bytes, None) {
        prop_assert_eq!(r.protocol, 1);
        prop_assert!(r.validate(None).is_ok());
        let again = Record::parse(&r.to_json(), None);
        prop_assert_eq!(again.as_ref(), Ok(&r), "a parsed record must round-trip");
    }
    Ok(())
}

fn base_json() -> Value {
    let mut v = serde_json::to_value(Record {
        protocol: 1,
        id: "job-1".into(),
        name: Some("n".into()),
        argv: vec!["true".into()],
        cwd: Some("/".into()),
        created_at: Timestamp(1_700_000_000_000),
        status: Status::Running,
        reason: None,
        holder: Holder {
            pid: 10,
            start: "linux:1".into(),
            boot_id: "B1".into(),
            host: "h1".into(),
            time_ns: None,
            pid_ns: Some("pid:[1]".into()),
            extra: Default::default(),
        },
        child: Some(Child {
            pid: 11,
            start: "linux:2".into(),
            pgid: 11,
            extra: Default::default(),
        }),
        lease: Lease {
            epoch: 1,
            interval_ms: 1000,
            ttl_ms: 10_000,
            renewed_at: Timestamp(1_700_000_000_000),
            renewed_mono_ms: 5,
            extra: Default::default(),
        },
        progress: Progress::default(),
        exit: None,
        finished_at: None,
        late: vec![],
        meta: Default::default(),
        unique: None,
        extra: Map::new(),
    })
    .unwrap();
    v["late"] = json!([{"at": "2026-11-24T10:00:00Z", "epoch": 1, "status": "failed",
                        "reason": "exited", "exit": {"code": 3}, "progress": null, "note": "x"}]);
    v
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_parsed(&bytes)?;
    }

    #[test]
    fn parse_never_panics_on_json_like_text(text in r#"[{}\[\]":,0-9a-z\-. ]{0,200}"#) {
        check_parsed(text.as_bytes())?;
    }

    #[test]
    fn parse_never_panics_on_mutated_records(
        muts in proptest::collection::vec(
            (proptest::sample::select(PATHS), proptest::option::of(json_value())), 1..5),
        cut in proptest::option::of(0usize..600),
    ) {
        let mut v = base_json();
        for (path, to) in muts {
            mutate(&mut v, path, to);
        }
        let mut bytes = serde_json::to_vec(&v).unwrap();
        if let Some(n) = cut {
            bytes.truncate(n);
        }
        check_parsed(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// (b) The verdict.

proptest! {
    #[test]
    fn verdict_is_total_and_keeps_terminal_states(
        (rec, rd) in record().prop_flat_map(|r| { let s = reader_for(&r); (Just(r), s) }),
        pr in probe(),
    ) {
        let v = verdict(&rec, &pr, &rd);
        if rec.status.is_terminal() {
            prop_assert_eq!(
                v.outcome,
                Outcome::Terminal { status: rec.status, reason: rec.reason }
            );
            prop_assert_eq!(v.rule, Rule::R1);
        }
        match v.outcome {
            Outcome::Lost { reason } => {
                prop_assert!(reason.is_reader_reason(), "lost with {reason}");
                prop_assert!(rec.status.is_active());
            }
            Outcome::Active => {
                prop_assert!(rec.status.is_active());
                let lease = v.lease.expect("an active verdict has a lease age");
                prop_assert!(lease.expires_in_ms >= 0, "active but expired: {lease:?}");
            }
            Outcome::Terminal { .. } => prop_assert!(rec.status.is_terminal()),
        }
        if rec.status.is_active() && rec.holder.host != rd.host {
            // On another host the pid means nothing (R2): any probe gives the same answer.
            prop_assert_eq!(v.rule, Rule::R2);
            prop_assert_eq!(v, verdict(&rec, &Probe::Gone, &rd));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Transitions.

fn finals(r: &Record) -> (Status, Option<Reason>, Option<Exit>, Option<Timestamp>) {
    (r.status, r.reason, r.exit, r.finished_at)
}

proptest! {
    #[test]
    fn terminal_records_never_change_and_refused_finishes_stay_late(
        rec in record(),
        writes in proptest::collection::vec(write(), 1..6),
    ) {
        let mut cur = rec;
        for w in &writes {
            let before = cur.clone();
            match apply(&cur, w) {
                Ok(next) => {
                    prop_assert!(before.status.is_active(), "{w:?} changed a terminal record");
                    prop_assert_eq!(&next.late, &before.late);
                    if next.status.is_terminal() {
                        prop_assert!(next.finished_at.is_some());
                    }
                    cur = next;
                }
                Err(refused) => {
                    prop_assert_eq!(refused.current, before.status);
                    prop_assert!(!refused.why.to_string().is_empty());
                    match (w, refused.late) {
                        (Write::Finish { exit, status, .. }, Some(late)) => {
                            prop_assert_eq!(finals(&late), finals(&before));
                            prop_assert_eq!(late.lease.epoch, before.lease.epoch);
                            let last = late.late.last().expect("the finish is kept");
                            prop_assert_eq!(last.exit, *exit);
                            prop_assert_eq!(last.status, Some(*status));
                            prop_assert!(late.late.len() <= tether::record::MAX_LATE);
                            cur = *late;
                        }
                        (Write::Finish { .. }, None) => {
                            prop_assert!(false, "a refused finish lost its result");
                        }
                        (_, Some(_)) => prop_assert!(false, "{w:?} has no result to keep"),
                        (_, None) => {}
                    }
                }
            }
            if before.status.is_terminal() {
                prop_assert_eq!(finals(&cur), finals(&before));
            }
        }
    }
}
