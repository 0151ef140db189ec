//! Listing every job (protocol.md 11.2) in a bounded number of round trips, all at one revision,
//! with no response over the client's message limit.
//!
//! Why paged: tonic refuses a response over 4 MiB, so one range over `P/jobs/` fails once the
//! records add up to that (about 4,000 typical 1 KiB records), and a record may be 1 MiB. Why
//! at one revision: a listing is a snapshot; the first page fixes the revision and every later
//! page (and the liveness keys) is read at it, so a job is never seen with another revision's
//! liveness key. A page the client refuses as too large is read again in halves, down to one
//! record (at most 1 MiB plus its key, under the limit), so every response stays under 4 MiB.

use std::collections::HashMap;

use etcd_client::{GetOptions, KeyValue};

use super::EtcdStore;
use crate::store::{Listed, StoreError};

/// Records per page. Typical records (about 1 KiB) make a page of about 2 MiB: 10,000 jobs are
/// five round trips for the records and two for the liveness keys (each under 200 bytes).
const RECORDS_PER_PAGE: i64 = 2_000;
const LIVE_PER_PAGE: i64 = 8_000;

/// tonic's `OutOfRange`: the response was over the client's decoding limit.
fn too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 11)
}

/// The first key after every key that starts with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Every key under `prefix` at `rev` (0: the current revision, which is returned).
    fn range_all(
        &self,
        prefix: &str,
        mut rev: i64,
        page: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let end = prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        let mut limit = page;
        let mut out = Vec::new();
        loop {
            let (key, range_end) = (from.clone(), end.clone());
            let opts = GetOptions::new()
                .with_range(range_end)
                .with_limit(limit)
                .with_revision(rev);
            let mut resp = match self.call(move |mut c| async move { c.get(key, Some(opts)).await })
            {
                Ok(r) => r,
                Err(e) if too_large(&e) && limit > 1 => {
                    limit = (limit / 2).max(1);
                    continue;
                }
                Err(e) => return Err(self.io("*", e)),
            };
            if rev == 0 {
                rev = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more || out.is_empty() {
                return Ok((out, rev));
            }
            limit = page;
        }
    }

    /// The whole listing: every key under `P/jobs/`, each parsed with its liveness key as both
    /// were at one revision.
    pub(super) fn list_at_one_revision(&self) -> Result<Vec<Listed>, StoreError> {
        let (recs, rev) = self.range_all(&self.keys.jobs(), 0, RECORDS_PER_PAGE)?;
        let live_prefix = format!("{}/live/", self.url.prefix);
        let lives = if recs.is_empty() {
            vec![]
        } else {
            self.range_all(&live_prefix, rev, LIVE_PER_PAGE)?.0
        };
        let live: HashMap<&str, &KeyValue> = lives
            .iter()
            .filter_map(|kv| Some((kv.key_str().ok()?.strip_prefix(live_prefix.as_str())?, kv)))
            .collect();
        Ok(recs.iter().map(|kv| self.listed(kv, &live)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn the_prefix_range_ends_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end("a/jobs/"), b"a/jobs0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
