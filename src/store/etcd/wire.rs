//! The bytes of the direct keepalive (direct.rs): the few HTTP/2 frames (RFC 9113) and HPACK
//! literals (RFC 7541) it sends, and the gRPC messages of etcd's `LeaseKeepAlive` and `Watch`
//! calls, encoded and read field by field (protobuf's wire format). Pure: no I/O here.

/// The client connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;

pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

pub const KEEPALIVE_PATH: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
pub const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// A frame header (RFC 9113 4.1).
#[derive(Debug, PartialEq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The header at the start of `b`, once its 9 bytes are there.
pub fn head(b: &[u8]) -> Option<Head> {
    let h: &[u8; 9] = b.get(..9)?.try_into().ok()?;
    Some(Head {
        len: (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize,
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let n = payload.len();
    out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    let mut p = Vec::with_capacity(entries.len() * 6);
    for (id, v) in entries {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(out, SETTINGS, 0, 0, &p);
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// A gRPC call's request headers: every field a literal without indexing, so the peer's table is
/// never touched and nothing of it need be kept.
pub fn request_headers(authority: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(128 + authority.len());
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        b.push(0x00);
        hpack_str(&mut b, name);
        hpack_str(&mut b, value);
    }
    b
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An HPACK integer with an N-bit prefix (RFC 7541 5.1).
pub fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One gRPC message (uncompressed) in a DATA frame of `stream`.
pub fn grpc_data(out: &mut Vec<u8>, stream: u32, msg: &[u8]) {
    let mut p = Vec::with_capacity(5 + msg.len());
    p.push(0);
    p.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    p.extend_from_slice(msg);
    frame(out, DATA, 0, stream, &p);
}

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `LeaseKeepAliveRequest { ID }`.
pub fn keepalive_request(lease: i64) -> Vec<u8> {
    let mut m = vec![0x08];
    varint(&mut m, lease as u64);
    m
}

/// `WatchRequest { create_request: WatchCreateRequest { key, start_revision } }`.
pub fn watch_create(key: &[u8], start_revision: i64) -> Vec<u8> {
    let mut inner = vec![0x0a];
    varint(&mut inner, key.len() as u64);
    inner.extend_from_slice(key);
    inner.push(0x18);
    varint(&mut inner, start_revision as u64);
    let mut m = vec![0x0a];
    varint(&mut m, inner.len() as u64);
    m.extend_from_slice(&inner);
    m
}

/// A protobuf field's value, as far as these messages need it.
#[derive(Debug, PartialEq)]
pub enum Val<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, in order; an error ends them.
pub struct Fields<'a>(&'a [u8]);

pub fn fields(msg: &[u8]) -> Fields<'_> {
    Fields(msg)
}

fn read_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Val<'a>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = (|| {
            let key = read_varint(&mut self.0)?;
            let val = match key & 7 {
                0 => Val::Int(read_varint(&mut self.0)?),
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    self.0 = self.0.get(n..)?;
                    Val::Fixed
                }
                2 => {
                    let n = usize::try_from(read_varint(&mut self.0)?).ok()?;
                    let (v, rest) = (self.0.get(..n)?, self.0.get(n..)?);
                    self.0 = rest;
                    Val::Bytes(v)
                }
                _ => return None,
            };
            Some((key >> 3, val))
        })();
        if r.is_none() {
            self.0 = &[];
        }
        Some(r.ok_or(()))
    }
}

/// `LeaseKeepAliveResponse`: the lease id and the ttl left (0 or less: the lease is gone).
pub fn keepalive_answer(msg: &[u8]) -> Result<(i64, i64), String> {
    let (mut id, mut ttl) = (0, 0);
    for f in fields(msg) {
        match f.map_err(|()| "a malformed LeaseKeepAliveResponse".to_string())? {
            (2, Val::Int(v)) => id = v as i64,
            (3, Val::Int(v)) => ttl = v as i64,
            _ => {}
        }
    }
    Ok((id, ttl))
}

/// What a `WatchResponse` says: the watch exists, etcd cancelled it, a key was put.
#[derive(Debug, Default, PartialEq)]
pub struct WatchNews {
    pub created: bool,
    pub canceled: bool,
    pub put: bool,
}

pub fn watch_news(msg: &[u8]) -> Result<WatchNews, String> {
    let bad = |()| "a malformed WatchResponse".to_string();
    let mut n = WatchNews::default();
    for f in fields(msg) {
        match f.map_err(bad)? {
            (3, Val::Int(v)) => n.created = v != 0,
            (4, Val::Int(v)) => n.canceled = v != 0,
            (11, Val::Bytes(event)) => {
                // `Event.type`: PUT is 0, the default, so an event without the field is a put.
                let mut put = true;
                for g in fields(event) {
                    if let (1, Val::Int(t)) = g.map_err(bad)? {
                        put = t == 0;
                    }
                }
                n.put |= put;
            }
            _ => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_match_rfc_7541_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at 8 bits.
        let mut b = Vec::new();
        hpack_int(&mut b, 0, 5, 10);
        assert_eq!(b, [0x0a]);
        b.clear();
        hpack_int(&mut b, 0, 5, 1337);
        assert_eq!(b, [0x1f, 0x9a, 0x0a]);
        b.clear();
        hpack_int(&mut b, 0, 8, 42);
        assert_eq!(b, [0x2a]);
        b.clear();
        hpack_int(&mut b, 0, 7, 127);
        assert_eq!(b, [0x7f, 0x00]);
    }

    #[test]
    fn frames_round_trip_through_their_header() {
        let mut b = Vec::new();
        window_update(&mut b, 3, 70_000);
        assert_eq!(
            head(&b),
            Some(Head {
                len: 4,
                kind: WINDOW_UPDATE,
                flags: 0,
                stream: 3
            })
        );
        assert_eq!(&b[9..], 70_000u32.to_be_bytes());
        assert_eq!(head(&b[..8]), None);
    }

    #[test]
    fn a_keepalive_request_is_the_id_as_field_one() {
        // etcdctl's lease ids are 64-bit and usually have the top bits set.
        let id = 0x2040_a214_c980_7a0d_i64;
        let m = keepalive_request(id);
        let got: Vec<_> = fields(&m).map(Result::unwrap).collect();
        assert_eq!(got, [(1, Val::Int(id as u64))]);
    }

    #[test]
    fn keepalive_answers_are_read_and_a_missing_ttl_is_zero() {
        // header { cluster_id: 1, revision: 7 }, ID, TTL.
        let mut m = vec![0x0a, 4, 0x08, 1, 0x18, 7, 0x10];
        varint(&mut m, 77);
        m.push(0x18);
        varint(&mut m, 9);
        assert_eq!(keepalive_answer(&m), Ok((77, 9)));
        assert_eq!(keepalive_answer(&m[..8]), Ok((77, 0)));
        assert!(keepalive_answer(&[0x0a, 9, 1]).is_err());
        assert!(keepalive_answer(&[0x0f]).is_err());
    }

    #[test]
    fn watch_news_sees_creation_cancellation_and_puts_only() {
        assert_eq!(
            watch_news(&[0x18, 1]).unwrap(),
            WatchNews {
                created: true,
                ..Default::default()
            }
        );
        assert!(watch_news(&[0x20, 1]).unwrap().canceled);
        // An event with no type field is a PUT; type 1 is a DELETE.
        assert!(watch_news(&[0x5a, 2, 0x12, 0]).unwrap().put);
        assert!(!watch_news(&[0x5a, 2, 0x08, 1]).unwrap().put);
        assert!(watch_news(&[0x5a, 5]).is_err());
    }

    #[test]
    fn a_watch_create_request_carries_the_key_and_start() {
        let m = watch_create(b"p/cancel/x", 42);
        let mut f = fields(&m);
        let Some(Ok((1, Val::Bytes(inner)))) = f.next() else {
            panic!("no create_request in {m:?}");
        };
        let got: Vec<_> = fields(inner).map(Result::unwrap).collect();
        assert_eq!(got, [(1, Val::Bytes(b"p/cancel/x")), (3, Val::Int(42))]);
    }

    #[test]
    fn request_headers_are_literals_a_decoder_reads_back() {
        let b = request_headers("127.0.0.1:2379", KEEPALIVE_PATH);
        // Each field: 0x00, name length, name, value length, value.
        let mut rest = &b[..];
        let mut got = Vec::new();
        while let Some((&0, r)) = rest.split_first() {
            let (n, r) = (r[0] as usize, &r[1..]);
            let (name, r) = r.split_at(n);
            let (v, r) = (r[0] as usize, &r[1..]);
            let (value, r) = r.split_at(v);
            got.push((name.to_vec(), value.to_vec()));
            rest = r;
        }
        assert!(rest.is_empty());
        assert_eq!(
            got[2],
            (b":path".to_vec(), KEEPALIVE_PATH.as_bytes().to_vec())
        );
        assert_eq!(got.len(), 6);
    }
}
