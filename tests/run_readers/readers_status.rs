//! `status`, `--wait`, `result`, `inspect` and the error paths, against real processes and files.

use crate::common;

use std::time::{Duration, Instant};

use common::holders::*;
use tether::record::Status;

#[test]
fn wait_returns_lost_when_the_holder_is_killed() {
    let e = env();
    let mut kids = Kids::default();
    let holder = job(&e, &mut kids, "killme", 1000, 10_000);
    let _r = Renewer::start(&e, "killme", Duration::from_millis(300));
    let waiter = std::thread::spawn({
        let root = e.root.clone();
        move || {
            run_bounded(
                tether_cmd(&root, &["status", "--wait", "killme"]),
                Duration::from_secs(30),
            )
        }
    });
    // Let the waiter reach its poll; the bound below does not depend on this being exact.
    std::thread::sleep(Duration::from_millis(700));
    let killed_at = Instant::now();
    kids.0[0].kill().unwrap();
    let (o, _) = waiter.join().unwrap();
    let took = killed_at.elapsed();
    eprintln!("status --wait returned {took:?} after the holder was killed");
    assert_eq!(code(&o), 3, "{}{}", stdout(&o), stderr(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(stdout(&o).contains("worker-exited"), "{}", stdout(&o));
    let _ = holder;
    let r = tether(&e, &["result", "killme", "--json"]);
    assert_eq!(code(&r), 3);
    let v = json(&r);
    assert_eq!(v["status"], "lost");
    assert_eq!(v["reason"], "worker-exited");
    assert_eq!(load(&e, "killme").status, Status::Lost);
}

#[test]
fn wait_returns_lease_expired_not_before_ttl_and_inspect_names_r6() {
    let e = env();
    let mut kids = Kids::default();
    let created = Instant::now();
    job(&e, &mut kids, "stalled", 500, 2000);
    // No renewer: the holder is alive but never renews, like a SIGSTOPped wrapper.
    let (o, _) = run_bounded(
        tether_cmd(&e.root, &["status", "--wait", "--json", "stalled"]),
        Duration::from_secs(30),
    );
    let since = created.elapsed();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let v = json1(&o);
    assert_eq!(v["status"], "lost");
    assert_eq!(v["reason"], "lease-expired");
    assert!(
        since >= Duration::from_millis(2000),
        "returned after {since:?}"
    );
    let i = tether(&e, &["inspect", "stalled"]);
    assert_eq!(code(&i), 0);
    let text = stdout(&i);
    assert!(text.contains("R6"), "{text}");
    assert!(
        text.contains("not renewed its lease within the ttl"),
        "{text}"
    );
    let ij = json(&tether(&e, &["inspect", "--json", "stalled"]));
    assert_eq!(ij["verdict"]["reaped_by_rule"], "R6");
    assert_eq!(ij["holder"]["pid"], kids.0[0].id());
}

#[test]
fn inspect_reaps_and_names_the_rule_itself() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "gone", 1000, 10_000);
    kids.0[0].kill().unwrap();
    kids.0[0].wait().unwrap();
    let v = json(&tether(&e, &["inspect", "--json", "gone"]));
    assert_eq!(v["verdict"]["verdict"], "lost");
    assert_eq!(v["verdict"]["rule"], "R4");
    assert_eq!(v["verdict"]["reason"], "worker-exited");
    assert!(
        v["verdict"]["explanation"]
            .as_str()
            .unwrap()
            .starts_with("R4")
    );
    assert_eq!(v["probe"]["holder"], "gone");
    assert_eq!(load(&e, "gone").status, Status::Lost);
}

#[test]
fn result_says_running_then_agrees_with_status() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "build-7", 1000, 10_000);
    let _r = Renewer::start(&e, "build-7", Duration::from_millis(300));
    let o = tether(&e, &["result", "build-7"]);
    assert_eq!(code(&o), 5);
    assert!(
        stdout(&o).contains("job build-7 is still running"),
        "{}",
        stdout(&o)
    );
    finish(&e, "build-7", Status::Failed, 2);
    let s = tether(&e, &["status", "--json", "build-7"]);
    let r = tether(&e, &["result", "--json", "build-7"]);
    assert_eq!(code(&s), 0);
    assert_eq!(code(&r), 1);
    let (s, r) = (json1(&s), json(&r));
    for k in ["status", "reason", "exit"] {
        assert_eq!(s[k], r[k], "{k}");
    }
    assert_eq!(s["status"], "failed");
    assert_eq!(s["exit"]["code"], 2);
    assert!(s["lease"]["expires_at"].is_string());
}

#[test]
fn wait_times_out_on_a_healthy_job() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "healthy", 300, 1000);
    let _r = Renewer::start(&e, "healthy", Duration::from_millis(200));
    let (o, took) = run_bounded(
        tether_cmd(&e.root, &["status", "--wait", "--timeout", "1s", "healthy"]),
        Duration::from_secs(30),
    );
    assert_eq!(code(&o), 124, "{}{}", stdout(&o), stderr(&o));
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(stdout(&o).contains("running"));
}

#[test]
fn listing_orders_active_first_and_survives_corrupt_records() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "a-old-done", 1000, 10_000);
    finish(&e, "a-old-done", Status::Succeeded, 0);
    std::thread::sleep(Duration::from_millis(20));
    job(&e, &mut kids, "b-live", 1000, 10_000);
    std::thread::sleep(Duration::from_millis(20));
    job(&e, &mut kids, "c-new-done", 1000, 10_000);
    finish(&e, "c-new-done", Status::Succeeded, 0);
    std::fs::write(e.root.join("jobs/broken.json"), b"{\"protocol\": 1,").unwrap();
    let o = tether(&e, &["status"]);
    assert_eq!(code(&o), 7);
    let err = stderr(&o);
    assert!(err.contains("broken.json"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert!(lines[0].starts_with("ID"), "{lines:?}");
    let order: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(order, ["b-live", "c-new-done", "a-old-done"]);
    let v = json(&tether(&e, &["status", "--json"]));
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert!(e.root.join("jobs/broken.json").exists());
}

#[test]
fn bad_ids_and_bad_records_get_their_exit_codes() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "twin-1", 1000, 10_000);
    job(&e, &mut kids, "twin-2", 1000, 10_000);
    let o = tether(&e, &["status", "nope"]);
    assert_eq!(code(&o), 6);
    assert!(stderr(&o).contains("nope"));
    let o = tether(&e, &["result", "twin"]);
    assert_eq!(code(&o), 6);
    assert!(
        stderr(&o).contains("twin-1") && stderr(&o).contains("twin-2"),
        "{}",
        stderr(&o)
    );
    for cmd in ["status", "result", "inspect", "cancel", "logs"] {
        let o = tether(&e, &[cmd, "../x"]);
        assert_eq!(code(&o), 2, "{cmd}: {}", stderr(&o));
    }
    // One bad id does not hide the good one.
    let o = tether(&e, &["status", "nope", "twin-1"]);
    assert_eq!(code(&o), 6);
    assert!(stdout(&o).contains("twin-1"));
    let mut v = serde_json::to_value(load(&e, "twin-1")).unwrap();
    v["protocol"] = 2.into();
    v["id"] = "future".into();
    std::fs::write(
        e.root.join("jobs/future.json"),
        serde_json::to_vec(&v).unwrap(),
    )
    .unwrap();
    let o = tether(&e, &["inspect", "future"]);
    assert_eq!(code(&o), 7);
    assert!(stderr(&o).contains("protocol version 2"), "{}", stderr(&o));
    // A fresh machine (no state directory yet): `status` lists nothing and succeeds (issue 15.3);
    // an id there is simply not found; commands about one job still name the missing directory.
    let missing = e.tmp.path().join("missing");
    let o = tether_cmd(&missing, &["status"]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = tether_cmd(&missing, &["status", "--json"])
        .output()
        .unwrap();
    assert_eq!((code(&o), json(&o)), (0, serde_json::json!([])));
    let o = tether_cmd(&missing, &["status", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 8, "{}", stderr(&o));
    let o = tether_cmd(&missing, &["inspect", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 8);
    assert!(stderr(&o).contains("does not exist"));
    assert!(!missing.exists(), "a reader created the state directory");
    let o = tether(&e, &["status", "--wait"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn status_json_is_an_array_one_object_per_job_however_many_ids() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "one", 1000, 10_000);
    job(&e, &mut kids, "two", 1000, 10_000);
    let v = json1(&tether(&e, &["status", "--json", "one"]));
    assert_eq!(v["id"], "one");
    for k in ["epoch", "renewed_at", "expires_at", "interval_ms", "ttl_ms"] {
        assert!(!v["lease"][k].is_null(), "lease.{k}");
    }
    assert_eq!(v["holder"]["pid"], kids.0[0].id());
    assert!(v["late"].is_array());
    let v = json(&tether(&e, &["status", "--json", "one", "tw"]));
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["id"], "two");
}
