mod readers_support;

use std::time::Duration;

use readers_support::*;
use tether::record::Status;

#[test]
fn smoke_status_inspect_result() {
    let e = env();
    let mut kids = Kids::default();
    job(&e, &mut kids, "alpha-1", 1000, 10_000);
    let _r = Renewer::start(&e, "alpha-1", Duration::from_millis(500));
    let o = tether(&e, &["status"]);
    println!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(code(&o), 0);
    let o = tether(&e, &["inspect", "alpha"]);
    println!("{}{}", stdout(&o), stderr(&o));
    let o = tether(&e, &["result", "alpha"]);
    println!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(code(&o), 5);
    finish(&e, "alpha-1", Status::Succeeded, 0);
    let o = tether(&e, &["result", "alpha"]);
    println!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(code(&o), 0);
}
