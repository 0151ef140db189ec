//! Several OS processes writing one job at once (protocol.md section 6).
//!
//! Threads in one process would prove little: `flock` is per open file description, and the failures
//! that matter (a writer dying mid-write, a lock left behind) only happen across processes. So the test
//! binary re-executes itself: `race_worker` is an ignored test that does nothing unless
//! `TETHER_RACE_ROLE` is set, and the parent tests run it as a child with that variable.
//!
//! Nothing here asserts on timing: waits are bounded only to turn a hang into a failure, and every
//! child is killed and reaped by pid, even when an assertion fails.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Rng;
use tether::clock::{Timestamp, mono_ms};
use tether::id::JobId;
use tether::record::{Exit, Holder, Reason, Record, Status};
use tether::store::{Change, FileStore, StateDir, Store};
use tether::transition::Write;

const WORKER: &str = "race_worker";
/// Long enough for a loaded CI machine to start a process; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn record(id: &str, pid: u32) -> Record {
    let holder = Holder {
        pid,
        start: "linux:1".into(),
        boot_id: "B1".into(),
        host: "h1".into(),
        time_ns: None,
        pid_ns: Some("pid:[1]".into()),
        extra: Default::default(),
    };
    common::record(id)
        .holder(holder)
        .lease(1000, 10_000)
        .name("race")
        .build()
}

fn open_store(root: &Path) -> FileStore {
    FileStore::open(
        StateDir {
            root: root.to_path_buf(),
        },
        true,
    )
    .expect("open store")
}

/// What one write ended as, as a real holder, reaper or canceller would see it.
#[derive(Debug)]
enum Res {
    Won,
    Refused { current: Status, why: String },
}

/// Applies `w` under the lock; a refusal that carries a result still stores it in `late` (6.4).
fn write(store: &FileStore, id: &JobId, w: &Write) -> Res {
    match tether::store::commit(store, id, w, w.durable()).expect("update") {
        Ok(_) => Res::Won,
        Err(r) => Res::Refused {
            current: r.current,
            why: r.why.to_string(),
        },
    }
}

/// Kills and reaps its process on drop, so a failing assertion never leaves a writer running.
struct Kid(Child);

impl Kid {
    fn spawn(envs: &[(&str, String)]) -> Kid {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            WORKER,
            "--nocapture",
            "--ignored",
            "--test-threads=1",
            "-q",
        ]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null());
        Kid(cmd.spawn().expect("spawn worker"))
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn wait_for_file(p: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------
// The worker side.

/// The child entry point; a no-op in a normal `cargo test --ignored` run.
#[test]
#[ignore = "run by the race tests as a child process"]
fn race_worker() {
    let Ok(role) = std::env::var("TETHER_RACE_ROLE") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let store = open_store(Path::new(&var("TETHER_RACE_DIR")));
    let ready = PathBuf::from(var("TETHER_RACE_READY"));
    if role == "churn" {
        churn(&store, &ready, var("TETHER_RACE_SEED").parse().unwrap());
        return;
    }
    let id = JobId::parse(&var("TETHER_RACE_JOB")).unwrap();
    let w = terminal_write(&role);
    fs::write(&ready, b"").unwrap();
    wait_for_file(Path::new(&var("TETHER_RACE_GO")), PATIENCE);
    let line = match write(&store, &id, &w) {
        Res::Won => "won".to_string(),
        Res::Refused { current, why } => format!("refused {current} {why}"),
    };
    fs::write(var("TETHER_RACE_OUT"), line).unwrap();
}

/// `finish:N` (the holder's child exited with N), `reap`, or `cancel`.
fn terminal_write(role: &str) -> Write {
    let at = Timestamp::now();
    if let Some(code) = role.strip_prefix("finish:") {
        let code: i32 = code.parse().unwrap();
        Write::Finish {
            epoch: 1,
            at,
            status: if code == 0 {
                Status::Succeeded
            } else {
                Status::Failed
            },
            reason: Reason::Exited,
            exit: Some(Exit::Code(code)),
            progress: None,
        }
    } else if role == "reap" {
        Write::Reap {
            at,
            reason: Reason::WorkerExited,
        }
    } else if role == "cancel" {
        Write::Cancel { at }
    } else {
        panic!("unknown role {role}")
    }
}

/// A holder's life on fast-forward: create, renew, finish, and poke the previous (terminal) job, in
/// a loop, until killed. The time cap only matters if the parent died without killing us.
fn churn(store: &FileStore, ready: &Path, seed: u64) {
    let mut rng = Rng::seeded(seed);
    fs::write(ready, b"").unwrap();
    let end = Instant::now() + PATIENCE;
    let mut prev: Option<JobId> = None;
    let mut n = 0u64;
    while Instant::now() < end {
        let id = JobId::parse(&format!("w{seed:x}-{n}")).unwrap();
        n += 1;
        store
            .create(&record(id.as_str(), std::process::id()))
            .unwrap();
        for i in 0..rng.below(6) {
            let w = common::record::renewal(format!("beat {i}"), i);
            write(store, &id, &w);
        }
        let role = match rng.below(4) {
            0 => "reap".to_string(),
            1 => "cancel".to_string(),
            _ => format!("finish:{}", rng.below(3)),
        };
        write(store, &id, &terminal_write(&role));
        if let Some(p) = &prev {
            // Both refused: the job is terminal. The finish leaves its exit in `late`.
            write(store, p, &terminal_write("finish:7"));
            write(
                store,
                p,
                &Write::Renew {
                    epoch: 1,
                    at: Timestamp::now(),
                    mono_ms: mono_ms(),
                    running: true,
                    child: None,
                    progress: None,
                },
            );
        }
        prev = Some(id);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario A: many processes race to end one job.

/// What the record must say if `role` won.
fn outcome_of(role: &str) -> (Status, Reason, Option<Exit>) {
    match terminal_write(role) {
        Write::Finish {
            status,
            reason,
            exit,
            ..
        } => (status, reason, exit),
        Write::Reap { reason, .. } => (Status::Lost, reason, None),
        Write::Cancel { .. } => (Status::Cancelled, Reason::Cancelled, None),
        _ => unreachable!(),
    }
}

fn race_once(round: usize) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("state");
    let store = open_store(&root);
    let id = JobId::parse("job-1").unwrap();
    store.create(&record("job-1", 4242)).unwrap();
    let roles: Vec<String> = (0..4)
        .map(|c| format!("finish:{c}"))
        .chain((0..3).map(|_| "reap".to_string()))
        .chain(["cancel".to_string()])
        .collect();
    let go = t.path().join("go");
    let mut kids = Vec::new();
    let mut files = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let ready = t.path().join(format!("ready.{i}"));
        let out = t.path().join(format!("out.{i}"));
        kids.push(Kid::spawn(&[
            ("TETHER_RACE_ROLE", role.clone()),
            ("TETHER_RACE_DIR", root.display().to_string()),
            ("TETHER_RACE_JOB", "job-1".into()),
            ("TETHER_RACE_READY", ready.display().to_string()),
            ("TETHER_RACE_GO", go.display().to_string()),
            ("TETHER_RACE_OUT", out.display().to_string()),
        ]));
        files.push((ready, out));
    }
    for (ready, _) in &files {
        wait_for_file(ready, PATIENCE);
    }
    fs::write(&go, b"").unwrap();
    for k in &mut kids {
        let st = k.wait(PATIENCE);
        assert!(st.success(), "round {round}: a worker failed: {st}");
    }

    let results: Vec<String> = files
        .iter()
        .map(|(_, out)| fs::read_to_string(out).unwrap())
        .collect();
    let winners: Vec<usize> = (0..roles.len()).filter(|&i| results[i] == "won").collect();
    assert_eq!(
        winners.len(),
        1,
        "round {round}: exactly one terminal write must win: {roles:?} -> {results:?}"
    );
    let winner = &roles[winners[0]];
    let bytes = fs::read(store.record_path(&id)).unwrap();
    let fin = Record::parse(&bytes, Some("job-1")).expect("final record parses");
    let (status, reason, exit) = outcome_of(winner);
    assert_eq!(
        (fin.status, fin.reason, fin.exit),
        (status, Some(reason), exit),
        "round {round}: the record must hold the winner's ({winner}) result"
    );
    assert!(fin.finished_at.is_some());
    for (i, role) in roles.iter().enumerate() {
        if i == winners[0] {
            continue;
        }
        let r = &results[i];
        let rest = r
            .strip_prefix("refused ")
            .unwrap_or_else(|| panic!("round {round}: {role} neither won nor was refused: {r:?}"));
        assert!(
            rest.starts_with(status.as_str()) && rest.contains("already"),
            "round {round}: {role}'s refusal must name the terminal state: {r:?}"
        );
        if role.starts_with("finish:") {
            let (st, _, ex) = outcome_of(role);
            assert!(
                fin.late
                    .iter()
                    .any(|l| l.exit == ex && l.status == Some(st) && l.epoch == 1),
                "round {round}: losing {role} must be kept in late: {:?}",
                fin.late
            );
        }
    }
    let losing_finishes = roles
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != winners[0] && r.starts_with("finish:"))
        .count();
    assert_eq!(fin.late.len(), losing_finishes, "round {round}");
}

/// `TETHER_RACE_ROUNDS` raises the repetitions for a soak run.
#[test]
fn racing_terminal_writes_have_one_winner() {
    for round in 0..env_count("TETHER_RACE_ROUNDS", 30) {
        race_once(round);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario B: a writer SIGKILLed at random moments.

/// What may never change once a record is terminal.
type Final = (Status, Option<Reason>, Option<Exit>, Option<Timestamp>);

/// Parses every record file; returns the ids and terminal facts. Panics on any unparseable file.
fn scan(jobs: &Path, life: usize) -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for e in fs::read_dir(jobs).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let bytes = fs::read(&p).unwrap();
        match Record::parse(&bytes, Some(id)) {
            Ok(r) => out.push((id.to_string(), r)),
            Err(e) => panic!(
                "after kill {life}: {} does not parse ({e}): {:?}",
                p.display(),
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    out
}

/// Proves no lock outlived the killed writer: an update on each job returns, within a bound that
/// only a lock held forever could exceed.
fn assert_unlocked(root: &Path, ids: Vec<String>, life: usize) {
    let (tx, rx) = mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let store = open_store(&root);
        for id in ids {
            let id = JobId::parse(&id).unwrap();
            store.update(&id, &mut |_| Change::Keep(())).unwrap();
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("after kill {life}: a lock is still held by a dead writer"));
}

/// `TETHER_RACE_KILLS` raises the number of kills for a soak run.
#[test]
fn killed_writer_never_leaves_a_torn_or_rewritten_record() {
    let kills = env_count("TETHER_RACE_KILLS", 200);
    let per_dir = 20;
    let mut rng = Rng::seeded(common::rng::clock_seed());
    let mut terminals_seen = 0usize;
    let mut records_seen = 0usize;
    let mut life = 0usize;
    while life < kills {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("state");
        let jobs = open_store(&root).root().join("jobs");
        let mut finals: HashMap<String, Final> = HashMap::new();
        for _ in 0..per_dir.min(kills - life) {
            let ready = t.path().join(format!("ready.{life}"));
            let mut kid = Kid::spawn(&[
                ("TETHER_RACE_ROLE", "churn".into()),
                ("TETHER_RACE_DIR", root.display().to_string()),
                ("TETHER_RACE_READY", ready.display().to_string()),
                ("TETHER_RACE_SEED", format!("{}", rng.next() >> 16)),
            ]);
            wait_for_file(&ready, PATIENCE);
            std::thread::sleep(Duration::from_micros(rng.below(25_000)));
            kid.kill();
            let recs = scan(&jobs, life);
            records_seen += recs.len();
            for (id, r) in &recs {
                if r.status.is_terminal() {
                    let f = (r.status, r.reason, r.exit, r.finished_at);
                    match finals.get(id) {
                        Some(seen) => assert_eq!(
                            *seen, f,
                            "after kill {life}: terminal job {id} was rewritten"
                        ),
                        None => {
                            terminals_seen += 1;
                            finals.insert(id.clone(), f);
                        }
                    }
                }
            }
            for id in finals.keys() {
                assert!(
                    recs.iter().any(|(i, _)| i == id),
                    "after kill {life}: terminal job {id} disappeared"
                );
            }
            assert_unlocked(&root, recs.into_iter().map(|(id, _)| id).collect(), life);
            life += 1;
        }
    }
    eprintln!(
        "{kills} kills; {terminals_seen} terminal records watched; {records_seen} record files checked"
    );
    assert!(
        terminals_seen > 0,
        "the writer never finished a job in {kills} lives; the test proved nothing"
    );
}
