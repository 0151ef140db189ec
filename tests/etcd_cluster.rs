//! No false deaths when etcd itself fails (protocol.md 11): the leader of a 3-member cluster is
//! SIGKILLed while 200 jobs renew, and a single etcd is SIGKILLed and restarted on its data
//! directory within the ttl. Every job keeps renewing (as a wrapper does: each interval, errors
//! retried next time), and a reader judges every job every round: none may be judged lost.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::time::{Duration, Instant};

use etcd_common::Etcd;
use tether::clock::Timestamp;
use tether::id::JobId;
use tether::reader::settle::settle;
use tether::record::Record;
use tether::store::etcd_url::StoreUrl;
use tether::store::{Auth, EtcdRenewer, EtcdStore, Renew, Store};

fn open(url: &str) -> EtcdStore {
    let StoreUrl::Etcd(u) = StoreUrl::parse(url).unwrap() else {
        panic!("{url}")
    };
    EtcdStore::open(&u, &Auth::default()).expect("open the etcd store")
}

/// Jobs whose holder is on another host, so only the cluster's lease decides their verdict.
fn jobs(s: &EtcdStore, n: usize, ttl_ms: u64) -> Vec<(JobId, EtcdRenewer)> {
    let holder = {
        let mut h = tether::process::current().unwrap().holder();
        h.host = "elsewhere".into();
        h
    };
    (0..n)
        .map(|i| {
            let id = format!("job-{i:03}");
            let rec = Record::begin(&id, vec!["sleep".into()], holder.clone(), 1000, ttl_ms);
            s.create(&rec).unwrap();
            let id = JobId::parse(&id).unwrap();
            let r = s.renewer(&id).unwrap();
            (id, r)
        })
        .collect()
}

/// Renews every job once per second for `secs`, calling `at(second)` at the start of each round,
/// and judges every job after each round. Returns (false deaths, renewal errors, failed reads).
fn drive(
    reader: &EtcdStore,
    jobs: &mut [(JobId, EtcdRenewer)],
    secs: u64,
    mut at: impl FnMut(u64),
) -> (Vec<String>, usize, usize) {
    let (mut dead, mut errors, mut unread) = (vec![], 0, 0);
    let mut longest = Duration::ZERO;
    let progress = tether::record::Progress::default();
    for second in 0..secs {
        let round = Instant::now();
        at(second);
        for (id, r) in jobs.iter_mut() {
            match r.renew(1, Timestamp::now(), 0, &progress) {
                Ok(Ok(())) => {}
                Ok(Err(refused)) => dead.push(format!("{id}: renewal refused: {}", refused.why)),
                Err(_) => errors += 1, // etcd busy electing: retried next round, as a wrapper does
            }
        }
        for (id, _) in jobs.iter() {
            match settle(reader, id) {
                Ok(j) if j.verdict.is_active() => {}
                Ok(j) => dead.push(format!("{id}: judged {:?} at second {second}", j.verdict)),
                Err(_) => unread += 1,
            }
        }
        longest = longest.max(round.elapsed());
        if let Some(rest) = Duration::from_secs(1).checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    eprintln!("longest round of renewals and judgments: {longest:?}");
    (dead, errors, unread)
}

#[test]
fn leader_killed_while_200_jobs_renew_no_false_deaths() {
    let Some(mut members) = etcd_common::start_cluster(3) else {
        return;
    };
    let eps: Vec<String> = members.iter().map(|m| m.endpoint()).collect();
    let url = format!("etcd://{}/cluster", eps.join(","));
    let s = open(&url);
    let reader = open(&url);
    let mut jobs = jobs(&s, 200, 5000);
    let leader = leader_of(&members);
    let (dead, errors, unread) = drive(&reader, &mut jobs, 12, |second| {
        if second == 3 {
            eprintln!("killing the leader {}", members[leader].name);
            members[leader].kill();
        }
    });
    eprintln!("renewal errors {errors}, failed reads {unread}");
    assert!(dead.is_empty(), "false deaths: {dead:#?}");
}

#[test]
fn single_etcd_killed_and_restarted_within_the_ttl_no_false_deaths() {
    let Some(mut e) = Etcd::start("single_etcd_killed_and_restarted") else {
        return;
    };
    let s = open(&e.url("restart"));
    let reader = open(&e.url("restart"));
    let mut jobs = jobs(&s, 50, 5000);
    let (dead, errors, unread) = drive(&reader, &mut jobs, 10, |second| {
        if second == 3 {
            e.kill();
            e.restart();
        }
    });
    eprintln!("renewal errors {errors}, failed reads {unread}");
    assert!(dead.is_empty(), "false deaths: {dead:#?}");
}

/// The member that is the cluster's leader, asked of each member with etcdctl's API.
fn leader_of(members: &[Etcd]) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (i, m) in members.iter().enumerate() {
            let mut c = etcd_client::Client::connect([format!("http://{}", m.endpoint())], None)
                .await
                .unwrap();
            let st = c.status().await.unwrap();
            let me = st.header().map(|h| h.member_id()).unwrap_or(0);
            if st.leader() == me {
                return i;
            }
        }
        panic!("no member says it is the leader")
    })
}
