//! The etcd store against a real etcd started by the test (protocol.md section 11): records,
//! transactions, the liveness key, expiry judged by the cluster, late results, hostile keys.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::time::{Duration, Instant};

use etcd_common::Etcd;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::reader::settle::settle;
use tether::reader::wait::{Options, Waited, wait};
use tether::record::{Reason, Record, Status};
use tether::store::etcd_url::{EtcdUrl, StoreUrl};
use tether::store::{Auth, EtcdStore, Renew, Store, StoreError, commit};
use tether::transition::Write;
use tether::verdict::{Outcome, Rule};

fn url(e: &Etcd, prefix: &str) -> EtcdUrl {
    match StoreUrl::parse(&e.url(prefix)).unwrap() {
        StoreUrl::Etcd(u) => u,
        other => panic!("{other:?}"),
    }
}

fn open(e: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::open(&url(e, prefix), &Auth::default()).expect("open the etcd store")
}

/// A record whose holder is this test process, or (`host` given) a holder on another host, whose
/// pid a reader here must not probe: only the cluster's lease then decides.
fn record(id: &str, ttl_ms: u64, host: Option<&str>) -> Record {
    let mut b = common::record(id)
        .argv(&["sleep", "60"])
        .lease(500, ttl_ms)
        .status(Status::Starting);
    if let Some(h) = host {
        b = b.host(h);
    }
    b.build()
}

/// Raw access for hostile keys, through the same client crate.
fn raw_put(e: &Etcd, key: &str, value: &[u8]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([format!("http://{}", e.endpoint())], None)
            .await
            .unwrap();
        c.put(key, value, None).await.unwrap();
    });
}

fn raw_get(e: &Etcd, key: &str) -> Option<Vec<u8>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([format!("http://{}", e.endpoint())], None)
            .await
            .unwrap();
        let r = c.get(key, None).await.unwrap();
        r.kvs().first().map(|kv| kv.value().to_vec())
    })
}

#[test]
fn create_load_list_update_remove() {
    let Some(e) = Etcd::start("create_load_list_update_remove") else {
        return;
    };
    let s = open(&e, "t1");
    let rec = record("job-1", 3000, None);
    s.create(&rec).unwrap();
    let id = JobId::parse("job-1").unwrap();
    assert!(matches!(s.create(&rec), Err(StoreError::Exists(..))));
    let got = s.load(&id).unwrap();
    assert_eq!(got.argv, rec.argv);
    assert_eq!(got.lease.ttl_ms, 3000, "etcd granted the rounded ttl");
    assert!(EtcdStore::lease_of(&got).is_some(), "{:?}", got.extra);
    assert!(
        raw_get(&e, "t1/live/job-1").is_some(),
        "liveness key exists"
    );
    assert_eq!(s.ids().unwrap(), vec![id.clone()]);
    assert_eq!(s.list().unwrap().len(), 1);
    let j = settle(&s, &id).unwrap();
    assert!(j.verdict.is_active(), "{:?}", j.verdict);

    // The holder's final write through the shared rule: succeeds, and takes the liveness key.
    let fin = Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status: Status::Succeeded,
        reason: Reason::Exited,
        exit: Some(tether::record::Exit::Code(0)),
        progress: None,
    };
    let after = commit(&s, &id, &fin, true).unwrap().unwrap();
    assert_eq!(after.status, Status::Succeeded);
    assert_eq!(s.load(&id).unwrap().status, Status::Succeeded);
    assert!(raw_get(&e, "t1/live/job-1").is_none());
    // A second finish is refused and its result kept in `late`.
    let again = commit(&s, &id, &fin, true).unwrap();
    assert!(again.is_err());
    assert_eq!(s.load(&id).unwrap().late.len(), 1);

    // Another prefix is another namespace.
    let other = open(&e, "t2");
    assert!(matches!(other.load(&id), Err(StoreError::NotFound(..))));

    assert!(s.remove(&id, &mut |r| r.status.is_terminal()).unwrap());
    assert!(matches!(s.load(&id), Err(StoreError::NotFound(..))));
}

#[test]
fn expiry_is_judged_by_the_cluster_and_refuses_the_late_holder() {
    let Some(e) = Etcd::start("expiry_is_judged_by_the_cluster") else {
        return;
    };
    let s = open(&e, "tether");
    // A holder on another host: its pid is not probed, its clock not read; only the lease counts.
    let rec = record("far", 2000, Some("elsewhere"));
    s.create(&rec).unwrap();
    let id = JobId::parse("far").unwrap();
    let j = settle(&s, &id).unwrap();
    assert_eq!(
        (j.verdict.outcome, j.verdict.rule),
        (Outcome::Active, Rule::R2)
    );

    // Nobody renews: etcd expires the 2 s lease (its expiry runs on the leader's clock, checked
    // every 500 ms), and a reader then finds the job lost without any clock of its own.
    let start = Instant::now();
    let lost = loop {
        let j = settle(&s, &id).unwrap();
        if !j.verdict.is_active() {
            break j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still active after 10 s: {:?}",
            j.verdict
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        lost.verdict.outcome,
        Outcome::Lost {
            reason: Reason::LeaseExpired
        }
    );
    assert!(lost.reaped, "the reader recorded the verdict");
    assert_eq!(s.load(&id).unwrap().status, Status::Lost);

    // The holder wakes up and reports success: refused, kept in `late`, status stays lost.
    let fin = Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status: Status::Succeeded,
        reason: Reason::Exited,
        exit: Some(tether::record::Exit::Code(0)),
        progress: None,
    };
    assert!(commit(&s, &id, &fin, true).unwrap().is_err());
    let r = s.load(&id).unwrap();
    assert_eq!(r.status, Status::Lost);
    assert_eq!(r.late.len(), 1);
    assert_eq!(r.late[0].status, Some(Status::Succeeded));
}

#[test]
fn renewals_keep_the_lease_and_stopping_them_loses_it() {
    let Some(e) = Etcd::start("renewals_keep_the_lease") else {
        return;
    };
    let s = open(&e, "tether");
    let rec = record("kept", 2000, Some("elsewhere"));
    s.create(&rec).unwrap();
    let id = JobId::parse("kept").unwrap();
    let mut r = s.renewer(&id).unwrap();
    let mut progress = rec.progress.clone();
    // Twice the ttl of renewals every 500 ms: never judged lost.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        progress.count += 1;
        progress.at = Some(Timestamp::now());
        r.renew(1, Timestamp::now(), 0, &progress).unwrap().unwrap();
        let j = settle(&s, &id).unwrap();
        assert!(j.verdict.is_active(), "{:?}", j.verdict);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Readers on other hosts see the beats through the liveness key.
    assert_eq!(s.load(&id).unwrap().progress.count, progress.count);
    // Renewals stop: lost within the ttl plus etcd's expiry check and a generous margin.
    let stopped = Instant::now();
    loop {
        if !settle(&s, &id).unwrap().verdict.is_active() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(8),
            "not lost 8 s after the last renewal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stopped.elapsed() >= Duration::from_millis(1000),
        "lost too early"
    );
    // The renewer now learns that its lease is gone: refused, not an I/O error.
    assert!(r.renew(1, Timestamp::now(), 0, &progress).unwrap().is_err());
}

#[test]
fn hostile_keys_and_newer_records_are_named_and_left_alone() {
    let Some(e) = Etcd::start("hostile_keys") else {
        return;
    };
    let s = open(&e, "tether");
    s.create(&record("good", 3000, None)).unwrap();
    raw_put(&e, "tether/jobs/not a job id", b"hello");
    let mut newer: serde_json::Value =
        serde_json::from_slice(&record("future", 3000, None).to_json()).unwrap();
    newer["protocol"] = 2.into();
    let newer = serde_json::to_vec(&newer).unwrap();
    raw_put(&e, "tether/jobs/future", &newer);
    raw_put(&e, "tether/jobs/broken", b"{\"protocol\":1,");
    raw_put(&e, "tether/unrelated", b"someone else's key");

    let listed = s.list().unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let ok: Vec<_> = listed.iter().filter_map(|l| l.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].id, "good");
    let errs: Vec<String> = listed
        .iter()
        .filter_map(|l| l.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        errs.iter()
            .any(|m| m.contains("not a job id") && m.contains("not a tether job id")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|m| m.contains("jobs/future") && m.contains("version 2")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|m| m.contains("jobs/broken")), "{errs:?}");

    // Writes refuse them too, and nothing is rewritten or deleted.
    let future = JobId::parse("future").unwrap();
    let err = commit(
        &s,
        &future,
        &Write::Cancel {
            at: Timestamp::now(),
        },
        true,
    )
    .unwrap_err();
    assert_eq!(
        tether::testing::exit::Kind::of_store(&err).exit_code(),
        7,
        "{err}"
    );
    assert!(!s.remove(&future, &mut |_| true).is_ok_and(|r| r));
    assert_eq!(raw_get(&e, "tether/jobs/future").unwrap(), newer);
    assert_eq!(raw_get(&e, "tether/jobs/not a job id").unwrap(), b"hello");
    assert_eq!(
        raw_get(&e, "tether/jobs/broken").unwrap(),
        b"{\"protocol\":1,"
    );
    assert_eq!(
        raw_get(&e, "tether/unrelated").unwrap(),
        b"someone else's key"
    );
}

#[test]
fn unreachable_etcd_is_one_clear_error_fast() {
    // A port nothing listens on (bound and released a moment ago).
    let port = etcd_common::free_port("127.0.0.1");
    let u = match StoreUrl::parse(&format!("etcd://127.0.0.1:{port}/x")).unwrap() {
        StoreUrl::Etcd(u) => u,
        other => panic!("{other:?}"),
    };
    // Opening connects lazily; the first request is what meets the dead port, and its failure
    // names the whole store (exit 8), not one job.
    let start = Instant::now();
    let err = EtcdStore::open(&u, &Auth::default())
        .and_then(|s| s.list())
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        tether::testing::exit::Kind::of_store(&err).exit_code(),
        8,
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn wait_sleeps_on_an_etcd_watch_until_the_end_or_the_expiry() {
    let Some(e) = Etcd::start("wait_sleeps_on_an_etcd_watch") else {
        return;
    };
    let s = open(&e, "tether");
    assert!(
        s.watch(&JobId::parse("none-yet").unwrap()).is_some(),
        "a watch opens"
    );

    // A clean end from "another host" (another thread writing through its own connection):
    // the waiter wakes on the watch event, long before any lease expiry (ttl 30 s).
    s.create(&record("ends", 30_000, Some("elsewhere")))
        .unwrap();
    let id = JobId::parse("ends").unwrap();
    let writer = open(&e, "tether");
    let wid = id.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let fin = Write::Finish {
            epoch: 1,
            at: Timestamp::now(),
            status: Status::Succeeded,
            reason: Reason::Exited,
            exit: Some(tether::record::Exit::Code(0)),
            progress: None,
        };
        commit(&writer, &wid, &fin, true).unwrap().unwrap();
        Instant::now()
    });
    let w = wait(&s, &id, Options::default()).unwrap();
    let woke = Instant::now();
    let wrote = t.join().unwrap();
    match w {
        Waited::Ended(j) => assert_eq!(j.record.status, Status::Succeeded),
        other => panic!("{other:?}"),
    }
    // Generous for a loaded machine; the benchmark measures the real latency.
    assert!(
        woke.duration_since(wrote) < Duration::from_secs(2),
        "woke {:?} after the final write",
        woke.duration_since(wrote)
    );

    // Nobody renews a 2 s lease: the expiry deletes the liveness key, which wakes the waiter.
    s.create(&record("dies", 2000, Some("elsewhere"))).unwrap();
    let id = JobId::parse("dies").unwrap();
    let start = Instant::now();
    match wait(&s, &id, Options::default()).unwrap() {
        Waited::Ended(j) => assert_eq!(j.status(), Status::Lost, "{:?}", j.verdict),
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

/// A listing larger than the client's 4 MiB message limit (records near the 1 MiB limit) is read
/// in pages at one revision, not refused: every record comes back, with its liveness key.
#[test]
fn a_listing_over_the_message_limit_is_read_in_pages() {
    let Some(e) = Etcd::start("listing_in_pages") else {
        return;
    };
    let s = open(&e, "big");
    let mut ids = Vec::new();
    for i in 0..7 {
        let id = format!("job-{i}");
        let mut rec = record(&id, 30_000, None);
        if i < 6 {
            rec.progress.message = Some("x".repeat(900_000));
        }
        s.create(&rec).unwrap();
        ids.push(id);
    }
    let listed = s.list().expect("a listing of about 5.4 MB");
    let mut got: Vec<String> = listed
        .into_iter()
        .map(|r| r.expect("every record reads").id)
        .collect();
    got.sort();
    assert_eq!(got, ids);
    for id in &ids {
        let j = settle(&s, &JobId::parse(id).unwrap()).unwrap();
        assert!(j.status().is_active(), "{id}: {:?}", j.verdict);
    }
}
