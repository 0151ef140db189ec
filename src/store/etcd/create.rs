//! Creating a job on etcd (protocol.md 11.3): the record, its liveness key and, for `--unique KEY`,
//! the key's claim, all in one transaction on a lease granted for the job. Of any number of
//! concurrent creators with one key, the cluster lets exactly one transaction succeed; the others
//! read the winner and judge it like any holder (11.8).

use std::path::PathBuf;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{EtcdStore, MAX_CAS_ATTEMPTS};
use crate::id::JobId;
use crate::record::Record;
use crate::store::StoreError;
use crate::store::etcd_rules::{self, LiveValue};

/// What a creator found under `P/unique/KEY` before its transaction.
enum Claim {
    /// Nobody holds the key: the transaction requires it still absent.
    Free,
    /// A job that is no longer active (or no job at all) left the key behind: the transaction
    /// requires it unchanged since this revision, and takes it over.
    Stale(i64),
}

impl EtcdStore {
    /// Creates a job's record together with its etcd lease and liveness key (11.3), in one
    /// transaction that fails if the id is taken (or, with `rec.unique`, if an active job holds
    /// the key: `UniqueHeld`). Returns the lease id and the ttl etcd granted, which replaces
    /// `lease.ttl_ms` in the stored record.
    pub fn create_leased(&self, rec: &Record) -> Result<(i64, i64), StoreError> {
        let id = self.must_id(rec)?;
        let want = etcd_rules::lease_ttl_s(rec.lease.ttl_ms);
        let granted = self
            .call(move |mut c| async move { c.lease_grant(want, None).await })
            .map_err(|e| self.io(id.as_str(), e))?;
        let (lease, ttl_s) = (granted.id(), granted.ttl());
        let mut stored = rec.clone();
        stored.lease.ttl_ms = (ttl_s.max(0) as u64).saturating_mul(1000);
        stored.extra.insert(
            "etcd".into(),
            serde_json::json!({ "lease": format!("{lease:x}"), "ttl_s": ttl_s }),
        );
        let made = self.create_txn(&id, &stored, lease);
        if !matches!(made, Ok(true)) {
            // Nothing of ours was stored: give the lease back rather than let it run out.
            let _ = self.call(move |mut c| async move { c.lease_revoke(lease).await });
        }
        match made? {
            true => Ok((lease, ttl_s)),
            false => Err(StoreError::Exists(id, PathBuf::from(self.url.to_string()))),
        }
    }

    /// The creating transaction, retried while a stale claim on the unique key changes under it.
    /// `Ok(false)`: the id is taken.
    fn create_txn(&self, id: &JobId, stored: &Record, lease: i64) -> Result<bool, StoreError> {
        let live = serde_json::to_vec(&LiveValue {
            epoch: stored.lease.epoch,
            beats: stored.progress.count,
            beat_at: stored.progress.at,
        })
        .expect("a live value serializes");
        let (jk, lk) = (self.keys.job(id.as_str()), self.keys.live(id.as_str()));
        for _ in 0..MAX_CAS_ATTEMPTS {
            let mut when = vec![Compare::create_revision(jk.clone(), CompareOp::Equal, 0)];
            let mut ops = vec![
                TxnOp::put(jk.clone(), stored.to_json(), None),
                TxnOp::put(
                    lk.clone(),
                    live.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
            ];
            let check = vec![TxnOp::get(jk.clone(), None)];
            if let Some(key) = &stored.unique {
                let uk = self.keys.unique(key);
                when.push(match self.unique_claim(key, id)? {
                    Claim::Free => Compare::create_revision(uk.clone(), CompareOp::Equal, 0),
                    Claim::Stale(rev) => Compare::mod_revision(uk.clone(), CompareOp::Equal, rev),
                });
                ops.push(TxnOp::put(
                    uk,
                    id.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                ));
            }
            let txn = Txn::new().when(when).and_then(ops).or_else(check);
            let resp = self
                .call(move |mut c| async move { c.txn(txn).await })
                .map_err(|e| self.io(id.as_str(), e))?;
            if resp.succeeded() {
                return Ok(true);
            }
            let taken = resp.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if taken {
                return Ok(false);
            }
            // Another creator claimed the key between our look and our transaction: look again.
        }
        Err(StoreError::Io {
            path: self.where_(id.as_str()),
            err: std::io::Error::other(format!(
                "the unique key kept changing: {MAX_CAS_ATTEMPTS} attempts to create the job failed"
            )),
        })
    }

    /// Reads who holds `key` and judges that job by the verdict (11.8), recording it `lost` if it
    /// is: an active holder refuses the creation (`UniqueHeld`); a dead, ended, missing or corrupt
    /// one leaves a stale claim to take over.
    fn unique_claim(&self, key: &str, me: &JobId) -> Result<Claim, StoreError> {
        let uk = self.keys.unique(key);
        let resp = self
            .call(move |mut c| async move { c.get(uk, None).await })
            .map_err(|e| self.io(me.as_str(), e))?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(Claim::Free);
        };
        let stale = Claim::Stale(kv.mod_revision());
        let Ok(holder) = JobId::parse(&String::from_utf8_lossy(kv.value())) else {
            return Ok(stale);
        };
        let judged = match crate::reader::settle::settle(self, &holder) {
            Ok(j) => j,
            Err(StoreError::Record { .. } | StoreError::NotFound(..)) => return Ok(stale),
            Err(e) => return Err(e),
        };
        let status = judged.status();
        if judged.record.unique.as_deref() != Some(key) || !status.is_active() {
            return Ok(stale);
        }
        Err(StoreError::UniqueHeld {
            key: key.to_owned(),
            holder: holder.to_string(),
            status: status.to_string(),
        })
    }

    /// The job that holds `key` and is active by the verdict, if any (for `--unique-wait`).
    pub fn unique_holder(&self, key: &str) -> Result<Option<JobId>, StoreError> {
        let probe = JobId::parse(key)?;
        match self.unique_claim(key, &probe) {
            Ok(_) => Ok(None),
            Err(StoreError::UniqueHeld { holder, .. }) => Ok(JobId::parse(&holder).ok()),
            Err(e) => Err(e),
        }
    }
}
