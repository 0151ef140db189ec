//! The etcd store's `Watch` (protocol.md 11.6): an etcd watch on the job's record and liveness
//! keys, turned into a readable pipe so the waiter can poll it beside the holder's pidfd. A lease
//! expiry deletes the liveness key, which is an event too: a waiter on another host wakes when the
//! cluster judges the job dead, without polling.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::EtcdStore;
use crate::id::JobId;

pub struct EtcdWatch {
    read: OwnedFd,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes the pipe readable; a full pipe is readable already, so a failed write loses nothing.
fn poke(w: &OwnedFd) {
    let _ = rustix::io::write(w, b"!");
}

impl EtcdWatch {
    pub(super) fn new(store: &EtcdStore, id: &JobId) -> Option<EtcdWatch> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )
        .ok()?;
        let (jk, lk) = (store.keys.job(id.as_str()), store.keys.live(id.as_str()));
        let client = store.client.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let task = store.rt.spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                // Both keys in one watch stream; a broken stream wakes the waiter (it may have
                // missed an event) and is opened again.
                let opened = async {
                    let mut c = client.clone();
                    let mut w = c.watch(jk.clone(), None).await?;
                    w.watch(lk.clone(), Some(WatchOptions::new())).await?;
                    Ok::<_, etcd_client::Error>(w)
                }
                .await;
                if let Ok(mut stream) = opened {
                    let mut created = 0;
                    while let Ok(Some(resp)) = stream.message().await {
                        if resp.created() {
                            created += 1;
                            // Both watches exist: from here on no change goes unseen.
                            if created == 2 {
                                if let Some(tx) = ready.take() {
                                    let _ = tx.send(true);
                                }
                            }
                        }
                        if resp.canceled()
                            || resp.events().iter().any(|e| {
                                matches!(e.event_type(), EventType::Put | EventType::Delete)
                            })
                        {
                            poke(&write);
                        }
                    }
                }
                if let Some(tx) = ready.take() {
                    let _ = tx.send(false);
                }
                poke(&write);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        // The watch must be in place before the waiter's first judgment, or a change between
        // that judgment and the watch's start would be missed.
        match ready_rx.recv_timeout(super::REQUEST_TIMEOUT) {
            Ok(true) => Some(EtcdWatch { read, task }),
            _ => {
                task.abort();
                None
            }
        }
    }
}

impl crate::store::Watch for EtcdWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    fn changed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = rustix::io::read(&self.read, &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}
