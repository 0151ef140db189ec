//! The README's worked example, run as written: a worker that beats only after each completed turn,
//! against a broker that answers three turns and then goes silent with the connection open. The pid
//! stays alive; only the missing beats show the hang.
//!
//! The commands are read from the README block after `<!-- example: hung-worker -->`, so the README
//! cannot drift from what is tested. Only the broker's socket path is made private to the test.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::launch::*;

const MARK: &str = "<!-- example: hung-worker -->";

fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find(MARK).expect("README lost the example marker") + MARK.len()..];
    let start = after.find("```sh\n").expect("no sh block after the marker") + "```sh\n".len();
    let body = &after[start..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn hung_worker_is_recorded_lost_with_its_last_progress() {
    if !common::need_tool("python3", "python3") {
        return;
    }
    let env = Env::new();
    let sock = env.tmp.path().join("broker.sock");
    let block = readme_block();
    assert!(block.contains("/tmp/broker.sock"), "{block}");
    // The broker exits by itself once the worker's connection closes; the kill is a backstop.
    let script = block.replace("/tmp/broker.sock", path_str(&sock)) + "kill $! 2>/dev/null\n";
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_path = env.tmp.path().join("out");
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("TETHER_DIR", &env.dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("TETHER_HEARTBEAT_FILE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(env.tmp.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sh.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = sh.kill();
            let _ = sh.wait();
            panic!("the README example did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(env.tmp.path().join("err")).unwrap();
    let all = format!("{out}\n--- stderr ---\n{err}");
    assert!(out.contains("turn 3: ok"), "{all}");
    assert!(!out.contains("turn 4"), "{all}");
    assert!(out.contains("tether run exited 3"), "{all}");
    assert!(out.contains("job hung: lost (heartbeat-timeout)"), "{all}");
    assert!(out.contains("turn 3 done"), "{all}");
    assert!(out.contains("tether result exited 3"), "{all}");
    assert!(err.contains("recorded lost (heartbeat-timeout)"), "{all}");

    let r = env.record("hung");
    assert_eq!(r["status"], "lost", "{r}");
    assert_eq!(r["reason"], "heartbeat-timeout", "{r}");
    assert_eq!(r["progress"]["message"], "turn 3 done", "{r}");
    assert_eq!(r["progress"]["count"], 3, "{r}");
    let pgid = r["child"]["pgid"].as_u64().unwrap() as u32;
    assert!(
        wait_for(Duration::from_secs(10), || group_gone(pgid)),
        "the worker's process group {pgid} is still alive"
    );
}
