//! Cancel across hosts (protocol.md 11.9): a canceller on another host cannot signal the job, so it
//! puts a request under `P/cancel/ID`; the holder learns of it through a watch opened once with its
//! renewer (no request per renewal), records `cancelled` itself at its next renewal while it still
//! holds the lease, and stops the group. A holder that never answers keeps the job active only until
//! its lease expires: then readers judge it lost, as for any unreachable holder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use serde::{Deserialize, Serialize};

use super::EtcdStore;
use crate::clock::Timestamp;
use crate::id::JobId;
use crate::store::StoreError;

/// The value of `P/cancel/ID`: who asked, and when (for people; the key's presence is the request).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CancelRequest {
    pub at: Timestamp,
    pub host: String,
}

impl EtcdStore {
    /// Puts a cancel request for job `id` (11.9).
    pub fn request_cancel(&self, id: &JobId) -> Result<(), StoreError> {
        let ck = self.keys.cancel(id.as_str());
        let value = serde_json::to_vec(&CancelRequest {
            at: Timestamp::now(),
            host: crate::process::host(),
        })
        .expect("a cancel request serializes");
        self.call(move |mut c| async move { c.put(ck, value, None).await })
            .map(|_| ())
            .map_err(|e| self.io(id.as_str(), e))
    }
}

impl EtcdStore {
    /// [`cancel_state`], from any thread.
    pub(super) fn cancel_state(&self, key: &str) -> Result<(bool, i64), String> {
        let key = key.to_owned();
        self.call(move |mut c| async move { cancel_state(&mut c, &key).await })
            .map_err(|e| e.to_string())
    }
}

/// Whether a cancel request is under `key` now, and the revision it was read at: a watch from the
/// next one sees every later request.
pub(super) async fn cancel_state(
    c: &mut etcd_client::Client,
    key: &str,
) -> Result<(bool, i64), etcd_client::Error> {
    let g = c
        .get(key, Some(GetOptions::new().with_count_only()))
        .await?;
    Ok((g.count() > 0, g.header().map_or(0, |h| h.revision())))
}

/// The holder's view of `P/cancel/ID`: a flag set by a watch task on the store's runtime.
pub struct CancelWatch {
    requested: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CancelWatch {
    /// Watches the job's cancel key from now on, and reads it once the watch exists, so a request
    /// put before the watch started is seen too. A broken watch is opened again (and the key read
    /// again) after a pause.
    pub fn start(store: &EtcdStore, id: &JobId) -> CancelWatch {
        let requested = Arc::new(AtomicBool::new(false));
        let (flag, ck, client) = (
            requested.clone(),
            store.keys.cancel(id.as_str()),
            store.client.clone(),
        );
        let task = store.rt.spawn(async move {
            loop {
                let mut c = client.clone();
                if let Ok(mut stream) = c.watch(ck.clone(), Some(WatchOptions::new())).await {
                    while let Ok(Some(resp)) = stream.message().await {
                        if resp.created() {
                            if let Ok((true, _)) = cancel_state(&mut c, &ck).await {
                                flag.store(true, Ordering::Release);
                            }
                        }
                        if resp
                            .events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Put)
                        {
                            flag.store(true, Ordering::Release);
                        }
                        if resp.canceled() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        CancelWatch { requested, task }
    }

    /// Whether a canceller asked to cancel the job.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}
