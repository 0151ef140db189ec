//! The holder's direct keepalive: one plain HTTP/2 connection to etcd, carrying the job's
//! `LeaseKeepAlive` stream and the watch of its cancel key, read and written by the wrapper's own
//! tick, without tokio (protocol.md 11.3).
//!
//! Why by hand (issue 10: a renewal within 100 µs of wrapper CPU): through tonic, hyper and h2 an
//! idle renewal cost 225 µs. Most of it was waking up: once for the tick, again for etcd's answer
//! and for the ping its gRPC server sends with each answer, and each wake ran the whole client
//! stack cold. Side by side on one etcd, 200 ms apart (`/tmp` prototypes, see the closing note):
//! a C client that wrote a keepalive and read answers the same way cost 60 µs a renewal; h2
//! driven by hand with the same single read and write, 109 µs. So the steady state is these few
//! frames, and everything else (making the stream, a beat's transaction, TLS, passwords) stays
//! with etcd-client (session.rs).
//!
//! The connection is read only at ticks. The answer to one tick's keepalive, etcd's pings and its
//! window updates are taken at the next tick, and the pong, any window update of ours and the
//! next keepalive go out in one write: one wake-up, one read, one write per renewal. The answer
//! comes an interval late, but the renewal happened when etcd answered it, and the holder counts
//! it from when it was sent (`State::answered`), as before; a keepalive still unanswered at the
//! next tick counts as failed once it is overdue (`EtcdRenewer::timeout`).
//!
//! What is spoken: the client preface; SETTINGS (no push, a small stream window so our window
//! updates are exercised often); two requests whose headers are HPACK literals; keepalives and
//! one watch-create as DATA; pongs, SETTINGS acks and window updates. What is read: every frame,
//! of which DATA (gRPC messages), PING, SETTINGS and WINDOW_UPDATE matter. Header blocks from etcd
//! are skipped undecoded: they carry nothing needed, and a trailer or any reset, GOAWAY or ended
//! stream makes the connection unusable, so the renewal falls back to etcd-client, which reads
//! the error properly.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::wire;

const KEEPALIVE: u32 = 1;
const WATCH: u32 = 3;
/// Our receive window per stream: an answer is 43 bytes, a watch event a few hundred. Small, so
/// our window updates go out every dozen answers (in a write that goes anyway) and a mistake in
/// them shows within seconds, not after thousands of renewals.
const RECV_WINDOW: u32 = 1024;
/// Larger frames than the default maximum (RFC 9113 4.2) are an error: we never raise it.
const MAX_FRAME: usize = 16_384;
/// The largest gRPC message accepted from etcd on these two streams.
const MAX_MESSAGE: usize = 64 * 1024;

/// One stream's flow control and the part of a gRPC message read so far.
struct Stream {
    id: u32,
    send_window: i64,
    unacked: u32,
    msg: Vec<u8>,
}

impl Stream {
    fn new(id: u32) -> Stream {
        Stream {
            id,
            send_window: 65_535,
            unacked: 0,
            msg: Vec::new(),
        }
    }
}

/// An answer to a keepalive: when it was sent, and the ttl etcd gave (0 or less: lease gone).
pub(super) struct Answer {
    pub sent: u64,
    pub ttl: i64,
}

pub(super) struct Direct {
    sock: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    lease: i64,
    /// The framed keepalive, made once.
    keepalive: Vec<u8>,
    conn_send: i64,
    conn_unacked: u32,
    peer_initial: i64,
    streams: [Stream; 2],
    /// The stream whose header block goes on in CONTINUATION frames.
    in_headers: Option<u32>,
    /// When each unanswered keepalive was sent (monotonic ms), oldest first.
    sent: VecDeque<u64>,
    watch_created: bool,
    /// A put of the cancel key was seen (11.9).
    pub cancel: bool,
}

impl Direct {
    /// Connects to the first endpoint that answers, opens both streams, renews once and waits
    /// for that answer and the watch's creation, all within `timeout`. The watch starts at
    /// `watch_from` (the revision after the cancel key was last read). Blocking: run it off the
    /// wrapper's loop (renew.rs does, on a thread of its own).
    pub fn open(
        endpoints: &[String],
        lease: i64,
        cancel_key: &str,
        watch_from: i64,
        timeout: Duration,
    ) -> Result<Direct, String> {
        let deadline = Instant::now() + timeout;
        let (sock, authority) = connect(endpoints, deadline)?;
        let _ = sock.set_nodelay(true);
        let mut keepalive = Vec::new();
        wire::grpc_data(&mut keepalive, KEEPALIVE, &wire::keepalive_request(lease));
        let mut d = Direct {
            sock,
            inbuf: Vec::with_capacity(4096),
            out: Vec::with_capacity(256),
            lease,
            keepalive,
            conn_send: 65_535,
            conn_unacked: 0,
            peer_initial: 65_535,
            streams: [Stream::new(KEEPALIVE), Stream::new(WATCH)],
            in_headers: None,
            sent: VecDeque::with_capacity(4),
            watch_created: false,
            cancel: false,
        };
        d.out.extend_from_slice(wire::PREFACE);
        wire::settings(
            &mut d.out,
            &[
                (wire::SETTINGS_ENABLE_PUSH, 0),
                (wire::SETTINGS_INITIAL_WINDOW_SIZE, RECV_WINDOW),
            ],
        );
        for (id, path) in [(KEEPALIVE, wire::KEEPALIVE_PATH), (WATCH, wire::WATCH_PATH)] {
            let block = wire::request_headers(&authority, path);
            wire::frame(&mut d.out, wire::HEADERS, wire::END_HEADERS, id, &block);
        }
        let create = wire::watch_create(cancel_key.as_bytes(), watch_from);
        let mut frame = Vec::new();
        wire::grpc_data(&mut frame, WATCH, &create);
        d.queue_data(1, &frame)?;
        d.send(0)?;
        let mut answers = VecDeque::new();
        while answers.is_empty() || !d.watch_created {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no answer from etcd at {authority} within {timeout:?}"
                ));
            }
            d.sock.set_read_timeout(Some(left)).map_err(io_err)?;
            d.read(&mut answers, true)?;
            d.write_out()?;
        }
        if let Some(a) = answers.front() {
            if a.ttl <= 0 {
                return Err(format!("etcd lease {lease:x} expired or was revoked"));
            }
        }
        d.sock.set_nonblocking(true).map_err(io_err)?;
        Ok(d)
    }

    /// When the oldest keepalive still unanswered was sent.
    pub fn unanswered(&self) -> Option<u64> {
        self.sent.front().copied()
    }

    /// Takes in what etcd sent since the last call, without waiting (the first read of a call
    /// may wait where `open` set a timeout): answers go to `answers`, oldest first. What must be
    /// answered (pings, settings, our window) is queued for the next write. Err: the connection
    /// can no longer be used.
    pub fn read(&mut self, answers: &mut VecDeque<Answer>, wait: bool) -> Result<(), String> {
        use rustix::io::Errno;
        let mut first = true;
        loop {
            // Straight into the buffer's spare room: nothing zeroed or copied on the way.
            if self.inbuf.capacity() - self.inbuf.len() < 1024 {
                self.inbuf.reserve(8192);
            }
            let room = self.inbuf.capacity() - self.inbuf.len();
            let got = rustix::net::recv(
                &self.sock,
                rustix::buffer::spare_capacity(&mut self.inbuf),
                rustix::net::RecvFlags::empty(),
            );
            match got {
                Ok((0, _)) => return Err("etcd closed the connection".into()),
                Ok((n, _)) if n < room || self.inbuf.len() > 4 * MAX_FRAME => break,
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) if !(wait && first) => break,
                Err(Errno::AGAIN) => return Err("no answer from etcd in time".into()),
                Err(e) => return Err(e.to_string()),
            }
            first = false;
        }
        let inbuf = std::mem::take(&mut self.inbuf);
        let r = self.frames(&inbuf, answers);
        self.inbuf = inbuf;
        let used = r?;
        self.inbuf.drain(..used);
        self.give_window();
        Ok(())
    }

    /// Sends one keepalive, behind whatever is queued, in one write. `mono` is now.
    pub fn send(&mut self, mono: u64) -> Result<(), String> {
        let frame = std::mem::take(&mut self.keepalive);
        let r = self.queue_data(0, &frame);
        self.keepalive = frame;
        r?;
        self.write_out()?;
        self.sent.push_back(mono);
        Ok(())
    }

    /// Writes what is queued (acks, window updates) when no keepalive goes out this tick.
    pub fn flush(&mut self) -> Result<(), String> {
        self.write_out()
    }

    /// Queues a DATA frame of `streams[i]` within both send windows.
    fn queue_data(&mut self, i: usize, frame: &[u8]) -> Result<(), String> {
        let n = (frame.len() - 9) as i64;
        let s = &mut self.streams[i];
        if self.conn_send < n || s.send_window < n {
            return Err("etcd gave no flow-control window for the keepalive".into());
        }
        self.conn_send -= n;
        s.send_window -= n;
        self.out.extend_from_slice(frame);
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = (&self.sock).write(&self.out);
        let all = self.out.len();
        self.out.clear();
        match r {
            Ok(n) if n == all => Ok(()),
            Ok(_) => Err("etcd is not reading (the connection's send buffer is full)".into()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Window updates for what we were sent, once half a stream's window is used: etcd then
    /// always has room for the next answer.
    fn give_window(&mut self) {
        let mut conn = 0;
        for s in &mut self.streams {
            if s.unacked >= RECV_WINDOW / 2 {
                wire::window_update(&mut self.out, s.id, s.unacked);
                s.unacked = 0;
                conn = self.conn_unacked;
            }
        }
        if conn > 0 {
            wire::window_update(&mut self.out, 0, conn);
            self.conn_unacked = 0;
        }
    }

    /// Handles every whole frame at the start of `b`; returns how many bytes they took.
    fn frames(&mut self, b: &[u8], answers: &mut VecDeque<Answer>) -> Result<usize, String> {
        let mut at = 0;
        while let Some(h) = wire::head(&b[at..]) {
            if h.len > MAX_FRAME {
                return Err(format!("etcd sent a {}-byte frame", h.len));
            }
            let Some(p) = b.get(at + 9..at + 9 + h.len) else {
                break;
            };
            at += 9 + h.len;
            if let Some(s) = self.in_headers {
                if h.kind != wire::CONTINUATION || h.stream != s {
                    return Err("etcd broke off a header block".into());
                }
            }
            self.frame(&h, p, answers)?;
        }
        Ok(at)
    }

    fn frame(
        &mut self,
        h: &wire::Head,
        p: &[u8],
        answers: &mut VecDeque<Answer>,
    ) -> Result<(), String> {
        match h.kind {
            wire::DATA => self.data(h, p, answers),
            wire::HEADERS | wire::CONTINUATION => {
                self.stream(h.stream)?;
                if h.flags & wire::END_STREAM != 0 {
                    return Err(format!("etcd ended stream {} (see its status)", h.stream));
                }
                self.in_headers = (h.flags & wire::END_HEADERS == 0).then_some(h.stream);
                Ok(())
            }
            wire::RST_STREAM => Err(format!("etcd reset stream {}", h.stream)),
            wire::GOAWAY => Err("etcd is closing the connection (GOAWAY)".into()),
            wire::PUSH_PROMISE => Err("etcd pushed a stream, which we disabled".into()),
            wire::SETTINGS if h.flags & wire::ACK == 0 => self.settings(p),
            wire::PING if h.flags & wire::ACK == 0 => {
                wire::frame(&mut self.out, wire::PING, wire::ACK, 0, p);
                Ok(())
            }
            wire::WINDOW_UPDATE => {
                let inc = p
                    .try_into()
                    .map(|b: [u8; 4]| i64::from(u32::from_be_bytes(b) & 0x7fff_ffff))
                    .map_err(|_| "etcd sent a malformed WINDOW_UPDATE".to_string())?;
                match h.stream {
                    0 => self.conn_send += inc,
                    id => self.stream(id)?.send_window += inc,
                }
                Ok(())
            }
            // Acks, PRIORITY and unknown kinds (which RFC 9113 says to ignore).
            _ => Ok(()),
        }
    }

    fn stream(&mut self, id: u32) -> Result<&mut Stream, String> {
        let i = self.index(id)?;
        Ok(&mut self.streams[i])
    }

    fn index(&self, id: u32) -> Result<usize, String> {
        self.streams
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| format!("etcd sent a frame on stream {id}, which we never opened"))
    }

    fn settings(&mut self, p: &[u8]) -> Result<(), String> {
        if p.len() % 6 != 0 {
            return Err("etcd sent malformed SETTINGS".into());
        }
        for e in p.chunks(6) {
            let (id, v) = (
                u16::from_be_bytes([e[0], e[1]]),
                i64::from(u32::from_be_bytes([e[2], e[3], e[4], e[5]])),
            );
            if id == wire::SETTINGS_INITIAL_WINDOW_SIZE {
                for s in &mut self.streams {
                    s.send_window += v - self.peer_initial;
                }
                self.peer_initial = v;
            }
        }
        wire::frame(&mut self.out, wire::SETTINGS, wire::ACK, 0, &[]);
        Ok(())
    }

    fn data(
        &mut self,
        h: &wire::Head,
        p: &[u8],
        answers: &mut VecDeque<Answer>,
    ) -> Result<(), String> {
        let i = self.index(h.stream)?;
        let s = &mut self.streams[i];
        s.unacked += h.len as u32;
        let body = if h.flags & wire::PADDED != 0 {
            let pad = *p.first().ok_or("etcd sent a malformed DATA frame")? as usize;
            p.get(1..p.len().saturating_sub(pad).max(1))
                .ok_or("etcd sent a malformed DATA frame")?
        } else {
            p
        };
        s.msg.extend_from_slice(body);
        self.conn_unacked += h.len as u32;
        if h.flags & wire::END_STREAM != 0 {
            return Err(format!("etcd ended stream {}", h.stream));
        }
        let msg = std::mem::take(&mut self.streams[i].msg);
        let r = self.messages(i, &msg, answers);
        self.streams[i].msg = msg;
        let used = r?;
        self.streams[i].msg.drain(..used);
        Ok(())
    }

    /// Handles every whole gRPC message at the start of `b`; returns how many bytes they took.
    fn messages(
        &mut self,
        i: usize,
        b: &[u8],
        answers: &mut VecDeque<Answer>,
    ) -> Result<usize, String> {
        let mut at = 0;
        while let Some(h) = b.get(at..at + 5) {
            if h[0] != 0 {
                return Err("etcd sent a compressed message, which we never asked for".into());
            }
            let n = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if n > MAX_MESSAGE {
                return Err(format!("etcd sent a {n}-byte message"));
            }
            let Some(m) = b.get(at + 5..at + 5 + n) else {
                break;
            };
            at += 5 + n;
            if i == 0 {
                let (id, ttl) = wire::keepalive_answer(m)?;
                if id != self.lease {
                    return Err(format!(
                        "etcd answered for lease {id:x}, not {:x}",
                        self.lease
                    ));
                }
                let sent = self
                    .sent
                    .pop_front()
                    .ok_or("etcd answered a keepalive that was never sent")?;
                answers.push_back(Answer { sent, ttl });
            } else {
                let news = wire::watch_news(m)?;
                self.watch_created |= news.created;
                self.cancel |= news.put;
                if news.canceled {
                    return Err("etcd cancelled the watch of the cancel key".into());
                }
            }
        }
        Ok(at)
    }
}

/// The first endpoint that takes a connection before `deadline`, and its `host:port`.
fn connect(endpoints: &[String], deadline: Instant) -> Result<(TcpStream, String), String> {
    let mut last = String::from("no endpoints");
    for ep in endpoints {
        let addrs: Vec<SocketAddr> = match ep.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                last = format!("{ep}: {e}");
                continue;
            }
        };
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => return Ok((s, ep.clone())),
                Err(e) => last = format!("{ep}: {e}"),
            }
        }
    }
    Err(last)
}

fn io_err(e: std::io::Error) -> String {
    e.to_string()
}
