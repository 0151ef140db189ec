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
