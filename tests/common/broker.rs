//! The seed's live hang, made real: a broker on 127.0.0.1 that accepts connections and, once told
//! to, never says a word, while it stays alive. Probes (`run --probe`) must catch it; the tests and
//! the benchmark's probe rows use this one broker.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A broker on 127.0.0.1 that answers `200 OK` while `healthy` is set, and otherwise accepts and
/// holds the connection open without answering. Returns its port; the thread ends with the process.
pub fn broker(healthy: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the broker");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut c in l.incoming().flatten() {
            if healthy.load(Ordering::SeqCst) {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nok\n");
            } else {
                held.push(c);
            }
        }
    });
    port
}

/// A broker that always answers (`answer`) or never does.
pub fn fixed(answer: bool) -> u16 {
    broker(Arc::new(AtomicBool::new(answer)))
}
