//! A lost job whose processes still run (issue 14 item 5): `cancel` stops what is provably the
//! job's, `gc` keeps the record while they run, and nothing unproven is ever signalled.

use crate::common;

use std::process::Output;
use std::time::Duration;

use common::launch::*;
use rustix::process::Signal;
use serde_json::Value;

/// (pid, start token) of every live (not zombie) process in group `pgid`, read from /proc here so
/// the test does not trust the listing it tests.
fn members(pgid: u32) -> Vec<(u32, String)> {
    common::proc::group(pgid)
        .into_iter()
        .filter(|(_, st)| !st.zombie)
        .map(|(pid, st)| (pid, st.start))
        .collect()
}

fn tether(e: &Env, args: &[&str]) -> Output {
    e.cmd().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status_of(e: &Env, id: &str) -> Value {
    let o = tether(e, &["status", "--json", id]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    // One object per job, whether status prints an array or a single object.
    match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    }
}

/// A detached job running `script` in `sh`, whose wrapper is then SIGKILLed: PR_SET_PDEATHSIG
/// kills `sh`, and the `sleep` it started lives on in the job's process group. Returns (id, pgid,
/// the sleep's pid); the sleep is registered for cleanup.
fn orphaned(e: &mut Env, argv: &[&str]) -> (String, u32, u32) {
    let mut args = vec!["--interval", "200ms", "--ttl", "1s", "--"];
    args.extend_from_slice(argv);
    let (id, wrapper) = e.detach(&args);
    let sh = child_pid(&e.record(&id));
    assert!(
        wait_for(Duration::from_secs(10), || members(sh).len() >= 2),
        "the sleep never started: {:?}",
        members(sh)
    );
    let (sleep, start) = members(sh).into_iter().find(|(p, _)| *p != sh).unwrap();
    e.adopt(sleep, &start, false);
    signal(wrapper, Signal::KILL);
    assert!(
        wait_for(Duration::from_secs(10), || !alive(sh)),
        "sh outlived its wrapper"
    );
    assert!(alive(sleep));
    let v = status_of(e, &id);
    assert_eq!(v["status"], "lost", "{v}");
    (id, sh, sleep)
}

#[test]
fn cancel_stops_what_survives_of_a_lost_jobs_group() {
    let mut e = Env::new();
    let (id, pgid, sleep) = orphaned(&mut e, &["sh", "-c", "sleep 300; true"]);
    let o = tether(&e, &["cancel", "--grace", "2s", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("process group {pgid}")), "{out}");
    assert!(out.contains(&format!("process {sleep}")), "{out}");
    assert!(out.contains("the record stays lost"), "{out}");
    assert!(
        wait_for(Duration::from_secs(5), || !alive(sleep)),
        "the surviving sleep still runs after cancel"
    );
    assert_eq!(status_of(&e, &id)["status"], "lost");
    // Nothing is left: a second cancel says so and signals nothing.
    let o = tether(&e, &["cancel", "--json", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "already-ended", "{v}");
}

#[test]
fn cancel_json_names_the_stopped_survivors() {
    let mut e = Env::new();
    let (id, pgid, sleep) = orphaned(&mut e, &["sh", "-c", "sleep 300; true"]);
    let o = tether(&e, &["cancel", "--json", "--grace", "2s", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"], "stopped-survivors", "{v}");
    assert_eq!(v["status"], "lost");
    assert_eq!(v["survivors"]["pgid"], pgid);
    assert_eq!(v["survivors"]["pids"], serde_json::json!([sleep]));
    assert_eq!(v["survivors"]["ended"], true);
    assert!(!alive(sleep));
}

#[test]
fn gc_keeps_a_lost_job_whose_processes_run_and_force_stops_them() {
    let mut e = Env::new();
    let (id, pgid, sleep) = orphaned(&mut e, &["sh", "-c", "sleep 300; true"]);
    let record = e.dir.join("jobs").join(format!("{id}.json"));
    let o = tether(&e, &["gc", "--older-than", "0s"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("kept {id}")), "{out}");
    assert!(out.contains(&format!("process group {pgid}")), "{out}");
    assert!(record.exists(), "gc removed a lost job whose processes run");
    assert!(alive(sleep), "gc without --force signalled the job");
    let o = tether(
        &e,
        &["gc", "--older-than", "0s", "--force", "--grace", "2s"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        wait_for(Duration::from_secs(5), || !alive(sleep)),
        "gc --force left the survivor running"
    );
    assert!(!record.exists(), "gc --force kept the job: {}", text(&o));
}

#[test]
fn cancel_stops_the_group_of_a_wrapper_stopped_past_its_ttl() {
    let mut e = Env::new();
    let (id, wrapper) = e.detach(&["--interval", "200ms", "--ttl", "1s", "--", "sleep", "300"]);
    let child = child_pid(&e.record(&id));
    signal(wrapper, Signal::STOP);
    assert!(
        wait_for(Duration::from_secs(10), || status_of(&e, &id)["status"]
            == "lost"),
        "a stopped wrapper was never judged lost"
    );
    assert!(alive(child));
    let o = tether(&e, &["cancel", "--grace", "2s", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("process {child}")), "{out}");
    assert!(
        wait_for(Duration::from_secs(5), || !alive(child)),
        "the stopped wrapper's child still runs after cancel"
    );
    signal(wrapper, Signal::CONT);
}

#[test]
fn a_group_member_that_cannot_be_tied_to_the_job_is_never_signalled() {
    let mut e = Env::new();
    // `env -u` drops the job id from the sleep's environment; once sh is dead nothing ties the
    // sleep to the job, so the group number alone must not get it signalled.
    let (id, pgid, sleep) = orphaned(
        &mut e,
        &["sh", "-c", "env -u TETHER_JOB_ID sleep 300; true"],
    );
    let o = tether(&e, &["cancel", "--grace", "500ms", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("left as is"), "{out}");
    assert!(out.contains(&format!("process {sleep}")), "{out}");
    assert!(out.contains(&format!("process group {pgid}")), "{out}");
    assert!(out.contains("could not be proven"), "{out}");
    std::thread::sleep(Duration::from_millis(700));
    assert!(alive(sleep), "an unproven process was signalled");
}
