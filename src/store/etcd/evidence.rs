//! What `inspect` shows of a job on etcd (protocol.md 11.4): the record's and the liveness key's
//! revisions, read in one transaction, and the lease's remaining ttl as the cluster reports it
//! (LeaseTimeToLive). Asked only by `inspect`: `status` judges on the liveness key alone.

use etcd_client::{TxnOp, TxnOpResponse};

use super::EtcdStore;
use crate::id::JobId;
use crate::record::Record;
use crate::store::StoreError;
use crate::store::etcd_rules::ClusterEvidence;

impl EtcdStore {
    pub fn cluster_evidence(
        &self,
        id: &JobId,
        rec: &Record,
    ) -> Result<ClusterEvidence, StoreError> {
        let (jk, lk) = (self.keys.job(id.as_str()), self.keys.live(id.as_str()));
        let live_key = lk.clone();
        let resp = self
            .call(move |mut c| async move {
                c.txn(
                    etcd_client::Txn::new()
                        .and_then(vec![TxnOp::get(jk, None), TxnOp::get(lk, None)]),
                )
                .await
            })
            .map_err(|e| self.io(id.as_str(), e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut got = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        });
        let (record, live) = (got.next().flatten(), got.next().flatten());
        let lease = EtcdStore::lease_of(rec);
        let (mut remaining, mut granted) = (None, None);
        if let Some(l) = lease {
            let ttl = self
                .call(move |mut c| async move { c.lease_time_to_live(l, None).await })
                .map_err(|e| self.io(id.as_str(), e))?;
            // etcd answers -1 for a lease it no longer holds.
            if ttl.ttl() >= 0 {
                remaining = Some(ttl.ttl());
                granted = Some(ttl.granted_ttl());
            }
        }
        Ok(ClusterEvidence {
            store: self.url.to_string(),
            live_key,
            live: live.is_some(),
            lease: lease.map(|l| format!("{l:x}")),
            remaining_ttl_s: remaining,
            granted_ttl_s: granted,
            revision,
            record_mod_revision: record.map_or(0, |kv| kv.mod_revision()),
        })
    }
}
