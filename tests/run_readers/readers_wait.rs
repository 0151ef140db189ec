//! The library's wait machinery, as a benchmark would drive it.

use crate::common;

use std::time::{Duration, Instant};

use common::holders::*;
use tether::reader::wait::{Options, Waited, wait};

#[test]
fn wait_ticks_while_active_and_times_out() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "ticking", 200, 1000);
    let _r = Renewer::start(&e, "ticking", Duration::from_millis(100));
    let mut ticks = 0;
    let mut tick = |j: &tether::reader::settle::Judged| {
        assert!(j.verdict.is_active());
        ticks += 1;
    };
    let t0 = Instant::now();
    let res = wait(
        &e.store,
        &jid("ticking"),
        Options {
            timeout: Some(Duration::from_millis(2500)),
            tick: Some(&mut tick),
        },
    )
    .unwrap();
    assert!(matches!(res, Waited::TimedOut(_)), "{res:?}");
    assert!(t0.elapsed() >= Duration::from_millis(2500));
    assert!(ticks >= 1, "no tick in 2.5s");
}

#[test]
fn wait_ends_when_the_holder_finishes_its_record() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "finishing", 1000, 10_000);
    let _r = Renewer::start(&e, "finishing", Duration::from_millis(300));
    let store = e.store.clone();
    let h = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = wait(&store, &jid("finishing"), Options::default()).unwrap();
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    finish(&e, "finishing", tether::record::Status::Succeeded, 0);
    let (r, took) = h.join().unwrap();
    let Waited::Ended(j) = r else { panic!("{r:?}") };
    assert_eq!(j.status(), tether::record::Status::Succeeded);
    // Woken by the record's rename, not by the lease timer (10 s away).
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Rewrites the record as it is (a rename of `<id>.json`, as every record write is).
fn rewrite(e: &Env, id: &str) {
    use tether::store::Store;
    let (_, _) = e
        .store
        .update(&jid(id), &mut |r: &tether::record::Record| {
            tether::store::Change::Write {
                record: r.clone(),
                durable: false,
                value: (),
            }
        })
        .unwrap();
}

fn readable(fd: std::os::fd::BorrowedFd<'_>, within: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let ts = rustix::time::Timespec {
        tv_sec: within.as_secs() as i64,
        tv_nsec: within.subsec_nanos() as i64,
    };
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    poll(&mut fds, Some(&ts)).unwrap() > 0
}

/// The waiter pauses the record watch before what is likely its last judgment (so that closing
/// it at exit does not wait for the kernel) and resumes it when the job lives on: after `resume`,
/// a write is seen again, and what happened while paused is dropped (the waiter judges again).
#[test]
fn a_paused_record_watch_resumes() {
    use tether::store::{Store, Watch};
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "paused", 1000, 10_000);
    let Some(mut w) = e.store.watch(&jid("paused")) else {
        // The portable build has no file events: its waiter polls (src/platform/posix.rs).
        #[cfg(not(feature = "portable"))]
        panic!("the file store watches records");
        #[cfg(feature = "portable")]
        return;
    };
    rewrite(&e, "paused");
    assert!(
        readable(w.fd(), Duration::from_secs(5)),
        "a write wakes the watch"
    );
    assert!(w.changed());
    w.pause();
    rewrite(&e, "paused");
    assert!(w.resume(), "the watch resumes");
    assert!(
        !w.changed(),
        "what came while paused is dropped: the caller judges again"
    );
    rewrite(&e, "paused");
    assert!(
        readable(w.fd(), Duration::from_secs(5)),
        "a write after resume wakes the watch"
    );
    assert!(w.changed());
}

/// Each record write wakes the waiter, which pauses its watch, judges, and resumes: the job's end
/// after many such wakes is still seen through the watch, long before the lease timer (10 s).
#[test]
fn wait_sees_the_end_after_many_wakes_that_did_not_end_it() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "busy", 1000, 10_000);
    let r = Renewer::start(&e, "busy", Duration::from_millis(50));
    let store = e.store.clone();
    let h = std::thread::spawn(move || {
        let opts = Options {
            timeout: Some(Duration::from_secs(60)),
            tick: None,
        };
        let r = wait(&store, &jid("busy"), opts).unwrap();
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(r);
    let ended = Instant::now();
    finish(&e, "busy", tether::record::Status::Succeeded, 0);
    let (r, seen) = h.join().unwrap();
    let Waited::Ended(j) = r else { panic!("{r:?}") };
    assert_eq!(j.status(), tether::record::Status::Succeeded);
    let took = seen.saturating_duration_since(ended);
    assert!(took < Duration::from_secs(5), "{took:?}");
}
