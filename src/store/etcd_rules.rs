//! The etcd mapping's pure rules (protocol.md section 11): key layout, the lease's ttl, the
//! liveness value, and the verdict on what a reader saw in the cluster. No I/O, so the conformance
//! vectors in `tests/etcd_vectors/` can check them without an etcd.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::record::Record;
use crate::verdict::{ClockRule, LeaseAge, Probe, Reader, Rule, Verdict, verdict_with_age};

/// The smallest ttl etcd 3.4 grants with its default tick (100 ms) and election timeout (1 s):
/// `ceil(1.5 × election timeout)`. A cluster tuned otherwise grants its own minimum; the store
/// records whatever ttl etcd granted.
pub const MIN_TTL_S: i64 = 2;

/// etcd refuses a lease ttl above this many seconds (`MaxLeaseTTL`, about 285 years).
pub const MAX_TTL_S: i64 = 9_000_000_000;

/// The etcd lease ttl asked for a job's `--ttl` (11.3): whole seconds, rounded up, at least
/// `MIN_TTL_S`, at most `MAX_TTL_S`.
pub fn lease_ttl_s(ttl_ms: u64) -> i64 {
    (ttl_ms.div_ceil(1000).min(MAX_TTL_S as u64) as i64).max(MIN_TTL_S)
}

/// Where a job's keys live under a prefix (11.2).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }
    /// `PREFIX/jobs/`: every record, one key per job.
    pub fn jobs(&self) -> String {
        format!("{}/jobs/", self.prefix)
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}/jobs/{id}", self.prefix)
    }
    /// `PREFIX/live/ID`: exists exactly while the job's etcd lease does.
    pub fn live(&self, id: &str) -> String {
        format!("{}/live/{id}", self.prefix)
    }
    /// `PREFIX/cancel/ID`: a cancel request for the holder, from any host.
    pub fn cancel(&self, id: &str) -> String {
        format!("{}/cancel/{id}", self.prefix)
    }
    /// `PREFIX/unique/KEY`: the id of the job holding a `--unique` key, attached to that job's
    /// etcd lease, so a holder whose lease ends gives the key up with it.
    pub fn unique(&self, key: &str) -> String {
        format!("{}/unique/{key}", self.prefix)
    }
    /// The id in a key under `jobs()`, as written (it may not be a valid id: 11.2 says what then).
    pub fn id_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.jobs().as_str())
    }
}

/// The liveness key's value: the holder's beat count, so readers on other hosts see progress
/// without the record being rewritten per beat (the etcd counterpart of the lease file, 6.5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveValue {
    pub epoch: u64,
    pub beats: u64,
    #[serde(default)]
    pub beat_at: Option<Timestamp>,
}

/// How much of the job's output the final record keeps on a cluster store (11.3).
pub const TAIL_BYTES: usize = 4096;

/// The end of the job's output, kept in the final record's `output_tail` field so `result` and
/// `logs` can show it on hosts that do not have the log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTail {
    /// The last bytes of the log (at most `TAIL_BYTES`, cut at a line start when one is near),
    /// lossily decoded as UTF-8.
    pub text: String,
    /// Whether earlier output was left out.
    pub truncated: bool,
    /// The host that has the whole log, and where.
    pub host: String,
    pub log: String,
}

impl OutputTail {
    /// The tail of `log`, or None when the log cannot be read.
    pub fn of(bytes: &[u8], host: &str, log: &str) -> OutputTail {
        let mut start = bytes.len().saturating_sub(TAIL_BYTES);
        let truncated = start > 0;
        if truncated {
            if let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
                if nl + 1 < bytes.len() - start {
                    start += nl + 1;
                }
            }
        }
        OutputTail {
            text: String::from_utf8_lossy(&bytes[start..]).into_owned(),
            truncated,
            host: host.to_owned(),
            log: log.to_owned(),
        }
    }

    pub fn put(&self, rec: &mut Record) {
        rec.extra.insert(
            "output_tail".into(),
            serde_json::to_value(self).expect("a tail serializes"),
        );
    }

    pub fn get(rec: &Record) -> Option<OutputTail> {
        serde_json::from_value(rec.extra.get("output_tail")?.clone()).ok()
    }
}

/// What a reader saw of a job's lease in the cluster, read in the same transaction as the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The liveness key exists: the cluster holds the lease as unexpired.
    pub live: bool,
    /// The lease's remaining ttl in ms, when the reader asked for it.
    pub remaining_ms: Option<i64>,
}

/// Folds a liveness value into an active record (11.4): beats only move forward, and a value of
/// another epoch is ignored.
pub fn fold(rec: &mut Record, v: &LiveValue) {
    if rec.status.is_active() && v.epoch == rec.lease.epoch && v.beats > rec.progress.count {
        rec.progress.count = v.beats;
        if v.beat_at.is_some() {
            rec.progress.at = v.beat_at;
        }
    }
}

/// The lease as the cluster judges it: live with up to its ttl left, or expired.
pub fn cluster_age(rec: &Record, obs: &Observed) -> LeaseAge {
    let ttl = rec.lease.ttl_ms.min(i64::MAX as u64 / 2) as i64;
    if obs.live {
        // Without the remaining ttl the only bound is a full ttl: a keepalive resets it to that.
        let left = obs.remaining_ms.unwrap_or(ttl).clamp(0, ttl);
        LeaseAge {
            clock: ClockRule::Cluster,
            age_ms: ttl - left,
            expires_in_ms: left,
        }
    } else {
        LeaseAge {
            clock: ClockRule::Cluster,
            age_ms: ttl + 1,
            expires_in_ms: -1,
        }
    }
}

/// The verdict on etcd (11.4): the table of 7.4 with "the lease is expired" meaning "the liveness
/// key is gone", so on another host no clock enters, and on the holder's host the pid rules still
/// see a crash at once.
pub fn verdict(rec: &Record, obs: &Observed, probe: &Probe, reader: &Reader) -> Verdict {
    verdict_with_age(rec, probe, reader, || cluster_age(rec, obs))
}

/// What `inspect` shows of a job's lease on a cluster store (11.4): the cluster's own answer, read
/// at one revision, not any host's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterEvidence {
    /// The store (`etcd://...`) that judged it.
    pub store: String,
    /// The liveness key, and whether it existed at `revision`.
    pub live_key: String,
    pub live: bool,
    /// The etcd lease recorded in the record (lowercase hex), if any.
    pub lease: Option<String>,
    /// The lease's remaining and granted ttl in seconds, as the cluster reported them
    /// (LeaseTimeToLive); None when the cluster no longer holds the lease.
    pub remaining_ttl_s: Option<i64>,
    pub granted_ttl_s: Option<i64>,
    /// The cluster revision the record and the liveness key were read at.
    pub revision: i64,
    /// The revision of the record's last write.
    pub record_mod_revision: i64,
}

impl ClusterEvidence {
    /// What the cluster says, in the terms of the verdict (11.4).
    pub fn observed(&self) -> Observed {
        Observed {
            live: self.live,
            // etcd reports whole seconds: the lease expires in under `TTL + 1` s (an upper bound,
            // capped at the job's ttl by `cluster_age`).
            remaining_ms: self
                .remaining_ttl_s
                .map(|s| s.saturating_add(1).saturating_mul(1000)),
        }
    }

    /// The rule's explanation on a cluster store: the lease rules name the cluster instead of a
    /// clock, then what the cluster was seen to hold.
    pub fn explain(&self, rule: Rule) -> String {
        let head = match rule {
            Rule::R2 => {
                "R2: the holder runs on another host, so only its lease is judged, by the etcd cluster: no clock of this host or the holder's enters, and no skew allowance"
            }
            Rule::R3a => {
                "R3a: the holder's pid is numbered in another pid namespace (or one that cannot be told), so it is not probed and only its lease is judged, by the etcd cluster"
            }
            Rule::R6 => {
                "R6: the holder process exists but the etcd cluster let its lease expire (its liveness key is gone): it is wedged, stopped or cut off"
            }
            Rule::R7 => "R7: the holder is alive and the etcd cluster still holds its lease",
            other => other.explain(),
        };
        format!(
            "{head}; the cluster at revision {}: liveness key {} {}{}",
            self.revision,
            self.live_key,
            if self.live { "present" } else { "absent" },
            match (&self.lease, self.remaining_ttl_s, self.granted_ttl_s) {
                (Some(l), Some(left), Some(g)) =>
                    format!(", lease {l} with {left} s of {g} s left"),
                (Some(l), _, _) => format!(", lease {l} no longer held"),
                _ => String::new(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    #[test]
    fn ttl_rounds_up_to_whole_seconds_and_the_minimum() {
        assert_eq!(lease_ttl_s(1), 2);
        assert_eq!(lease_ttl_s(2000), 2);
        assert_eq!(lease_ttl_s(2001), 3);
        assert_eq!(lease_ttl_s(10_000), 10);
        assert_eq!(lease_ttl_s(u64::MAX), MAX_TTL_S);
    }

    #[test]
    fn tail_keeps_the_last_bytes_from_a_line_start() {
        let t = OutputTail::of(b"one\ntwo\n", "h", "/l");
        assert_eq!((t.text.as_str(), t.truncated), ("one\ntwo\n", false));
        let mut big = vec![b'x'; 5000];
        big.extend_from_slice(b"\nlast line\n");
        let t = OutputTail::of(&big, "h", "/l");
        assert!(t.truncated);
        assert!(t.text.len() <= TAIL_BYTES);
        assert_eq!(t.text, "last line\n");
        let mut r = sample();
        t.put(&mut r);
        assert_eq!(OutputTail::get(&r), Some(t));
    }

    #[test]
    fn keys() {
        let k = Keys::new("team/ci");
        assert_eq!(k.job("j1"), "team/ci/jobs/j1");
        assert_eq!(k.live("j1"), "team/ci/live/j1");
        assert_eq!(k.id_of("team/ci/jobs/j1"), Some("j1"));
        assert_eq!(k.id_of("team/ci/live/j1"), None);
    }

    #[test]
    fn fold_moves_beats_forward_for_the_same_epoch_only() {
        let mut r = sample();
        r.progress.count = 5;
        let epoch = r.lease.epoch;
        let at = Some(Timestamp(1_000));
        fold(
            &mut r,
            &LiveValue {
                epoch: epoch + 1,
                beats: 9,
                beat_at: at,
            },
        );
        assert_eq!(r.progress.count, 5);
        fold(
            &mut r,
            &LiveValue {
                epoch,
                beats: 4,
                beat_at: at,
            },
        );
        assert_eq!(r.progress.count, 5);
        fold(
            &mut r,
            &LiveValue {
                epoch,
                beats: 9,
                beat_at: at,
            },
        );
        assert_eq!((r.progress.count, r.progress.at), (9, at));
    }
}
