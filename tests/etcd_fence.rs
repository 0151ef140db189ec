//! Self-fencing on etcd (protocol.md 11.3): a wrapper stopped past its own ttl, woken while the
//! cluster's lease (rounded up to whole seconds) still holds, gives the job up: it never takes the
//! lease again as a new epoch, records the job lost, stops its child, and keeps its result late.
#![cfg(feature = "etcd")]

mod common;
mod etcd_common;

use std::time::Duration;

use common::proc::{alive, signal};
use etcd_common::Etcd;
use etcd_common::cli::{Env, wait_for};
use rustix::process::Signal;

#[test]
fn a_wrapper_stopped_past_its_ttl_fences_itself_even_while_the_rounded_up_lease_holds() {
    let Some(e) = Etcd::start("etcd_fence_rounded_up") else {
        return;
    };
    let mut env = Env::new(&e, "fence");
    // ttl 1.1 s: etcd grants 2 s; the renew deadline is 0.8 s after the last renewal.
    let (id, wrapper, child) = env.detach(&[
        "--ttl",
        "1100ms",
        "--interval",
        "300ms",
        "--",
        "sleep",
        "60",
    ]);
    signal(wrapper, Signal::STOP);
    std::thread::sleep(Duration::from_millis(1000));
    signal(wrapper, Signal::CONT);
    assert!(
        wait_for(Duration::from_secs(20), || !alive(child) && !alive(wrapper)).is_some(),
        "the woken wrapper did not stop its child and end"
    );
    let rec = env.json(&["inspect", &id, "--json"]);
    let r = &rec;
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("lost"), Some("lease-expired")),
        "{rec:#}"
    );
    assert_eq!(r["lease"]["epoch"], 1, "a new epoch was taken: {rec:#}");
    assert_eq!(r["late"].as_array().map(|l| l.len()), Some(1), "{rec:#}");
    let notes =
        std::fs::read_to_string(env.dir().join(format!("jobs/{id}.notes"))).unwrap_or_default();
    assert!(!notes.contains("took it again"), "{notes}");
}
