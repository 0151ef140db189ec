//! `inspect` on etcd (protocol.md 11.4): the evidence is what the cluster holds (the liveness key,
//! the lease id, the remaining ttl from LeaseTimeToLive, the revision), never the file store's clock
//! rules; the same JSON discipline (the `cluster` object beside the usual fields).
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::time::Duration;

use common::proc::signal;
use etcd_common::Etcd;
use etcd_common::cli::{Env, wait_for};
use rustix::process::Signal;

#[test]
fn inspect_on_etcd_shows_the_clusters_lease_not_clock_rules() {
    let Some(e) = Etcd::start("etcd_inspect") else {
        return;
    };
    let mut env = Env::new(&e, "insp");
    let (id, wrapper, _) = env.detach(&["--ttl", "5s", "--interval", "500ms", "--", "sleep", "60"]);
    let v = env.json(&["inspect", &id, "--json"]);
    let c = &v["cluster"];
    assert_eq!(c["live"], true, "{v:#}");
    assert_eq!(c["live_key"], format!("insp/live/{id}"), "{v:#}");
    let left = c["remaining_ttl_s"].as_i64().unwrap();
    assert_eq!(c["granted_ttl_s"], 5, "{v:#}");
    assert!((0..=5).contains(&left), "{v:#}");
    assert!(c["lease"].as_str().is_some_and(|l| !l.is_empty()), "{v:#}");
    assert!(c["revision"].as_i64().unwrap() >= c["record_mod_revision"].as_i64().unwrap());
    assert!(c["record_mod_revision"].as_i64().unwrap() > 0, "{v:#}");
    assert_eq!(v["lease"]["clock"], "cluster", "{v:#}");
    let expires = v["lease"]["expires_in_ms"].as_i64().unwrap();
    assert!((0..=5000).contains(&expires), "{v:#}");
    let text = String::from_utf8_lossy(&env.out(&["inspect", &id]).stdout).into_owned();
    assert!(text.contains("judged   by the etcd cluster"), "{text}");
    assert!(text.contains("LeaseTimeToLive"), "{text}");
    assert!(!text.contains("skew allowance ("), "{text}");
    assert!(!text.contains("wall clock"), "{text}");

    // Stopped, the wrapper stops renewing: the cluster lets the lease go, and inspect says so.
    signal(wrapper, Signal::STOP);
    assert!(
        wait_for(Duration::from_secs(30), || env.status(&id)["status"]
            == "lost")
        .is_some(),
        "not lost"
    );
    let v = env.json(&["inspect", &id, "--json"]);
    let c = &v["cluster"];
    assert_eq!(c["live"], false, "{v:#}");
    assert_eq!(c["remaining_ttl_s"], serde_json::Value::Null, "{v:#}");
    assert!(v["lease"]["expires_in_ms"].as_i64().unwrap() < 0, "{v:#}");
    let text = String::from_utf8_lossy(&env.out(&["inspect", &id]).stdout).into_owned();
    assert!(text.contains("absent at revision"), "{text}");
    assert!(text.contains("no longer held by the cluster"), "{text}");
    signal(wrapper, Signal::CONT);
}
