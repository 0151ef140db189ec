//! The holder's renewals on etcd, run on the holder's own runtime thread (protocol.md 11.3, 11.9).
//!
//! The store's requests run on its own runtime thread, which a caller blocks on. For the one
//! request a holder repeats all its life, the keepalive, that hand-off was most of the cost: the
//! holder's thread woke the store's thread and slept, the store's thread woke again for the answer
//! and woke the holder (four wake-ups and two context switches per renewal, `perf`: 17 % of the
//! samples in `finish_task_switch`). A session is a task on the caller's own (current-thread)
//! runtime with its own connection: the holder asks, the session's keepalive and its answer are
//! handled on the same thread, and the answer comes back to the holder's event loop as an event.
//! An idle renewal is then one wake-up for the tick and one for the answer.
//!
//! The connection has no HTTP/2 keepalive pings: each renewal proves it, and one that gets no
//! answer within the renewal timeout (about an interval) is abandoned at the next tick, its
//! connection dropped and made again, so a dead connection is noticed within an interval, before
//! the renew deadline.
//! (Pings every 2 s also broke the connection: etcd allows a client one ping per 5 s while nothing
//! else is sent, and answers more with a GOAWAY, so at intervals over about 6 s every other renewal
//! failed on a closed stream.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, TxnOp, WatchOptions, WatchStream,
};
use tokio::sync::mpsc;

/// Where a session connects and what it keeps alive.
pub(super) struct Target {
    pub endpoints: Vec<String>,
    pub opts: ConnectOptions,
    pub lease: i64,
    pub live_key: String,
    pub cancel_key: String,
    /// The bound on making a connection and opening its streams. A keepalive on a working
    /// connection has none here: the holder abandons it at a tick (`Session::abandon`), because a
    /// timer armed per renewal costs the idle thread an extra wake-up write each time.
    pub setup_timeout: Duration,
}

/// One renewal: a keepalive, and the liveness value to put after it when the beat count moved.
pub(super) struct Ask {
    pub live: Option<(u64, Vec<u8>)>,
}

pub(super) enum Outcome {
    /// The cluster renewed the lease (and took the liveness value of this beat count).
    Kept { wrote: Option<u64> },
    /// The cluster no longer holds the lease.
    Expired,
    /// The liveness key is no longer attached to the lease.
    Unattached,
    /// No answer in time, or the connection failed: the next renewal makes a new connection.
    Failed(String),
}

pub(super) struct Session {
    asks: mpsc::Sender<Ask>,
    outcomes: mpsc::Receiver<Outcome>,
    cancel: Arc<AtomicBool>,
    abandon: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Starts the session on the current runtime (the caller must be inside one) and connects.
    pub fn start(t: Target) -> Session {
        let (asks, ask_rx) = mpsc::channel(1);
        let (out_tx, outcomes) = mpsc::channel(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(run(t, ask_rx, out_tx, cancel.clone(), abandon.clone()));
        Session {
            asks,
            outcomes,
            cancel,
            abandon,
            task,
        }
    }

    /// Gives up the keepalive under way, if any: it fails, and the connection is made anew. (A
    /// renewal already answered is not touched.)
    pub fn abandon(&self) {
        self.abandon.notify_waiters();
    }

    /// Starts a renewal; false if one is still under way.
    pub fn ask(&self, ask: Ask) -> bool {
        self.asks.try_send(ask).is_ok()
    }

    /// The outcome of the renewal asked for (cancel-safe: nothing is lost if dropped unfinished).
    pub async fn outcome(&mut self) -> Outcome {
        match self.outcomes.recv().await {
            Some(o) => o,
            None => Outcome::Failed("the renewal task stopped".into()),
        }
    }

    /// Whether a canceller on another host asked to cancel the job (11.9).
    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// The connection and the two streams kept open on it.
struct Conn {
    client: Client,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    watch: Option<WatchStream>,
}

async fn run(
    t: Target,
    mut asks: mpsc::Receiver<Ask>,
    outcomes: mpsc::Sender<Outcome>,
    cancel: Arc<AtomicBool>,
    abandon: Arc<tokio::sync::Notify>,
) {
    // Connected now, so the first renewal is only its keepalive.
    let mut conn = tokio::time::timeout(t.setup_timeout, connect(&t, &cancel))
        .await
        .ok()
        .and_then(Result::ok);
    loop {
        let ask = tokio::select! {
            a = asks.recv() => match a {
                Some(a) => a,
                None => return,
            },
            put = watched(&mut conn) => {
                if put {
                    cancel.store(true, Ordering::Release);
                }
                continue;
            }
        };
        let out = if conn.is_some() {
            let abandoned = abandon.notified();
            tokio::select! {
                o = renew(&t, &mut conn, &ask, &cancel) => o,
                _ = abandoned => Outcome::Failed("no keepalive answer within the renewal timeout".into()),
            }
        } else {
            let bound = t.setup_timeout;
            match tokio::time::timeout(bound, renew(&t, &mut conn, &ask, &cancel)).await {
                Ok(o) => o,
                Err(_) => Outcome::Failed(format!("could not reach etcd within {bound:?}")),
            }
        };
        if let Outcome::Failed(_) = out {
            // It may be dead without knowing it (no pings): the next renewal connects anew.
            conn = None;
        }
        if outcomes.send(out).await.is_err() {
            return;
        }
    }
}

/// A connection with the cancel watch open: the key is read first, and watched from the next
/// revision on, so a request put at any time is seen once.
async fn connect(t: &Target, cancel: &AtomicBool) -> Result<Conn, String> {
    let mut client = Client::connect(t.endpoints.clone(), Some(t.opts.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let watch = open_watch(&mut client, &t.cancel_key, cancel).await?;
    Ok(Conn {
        client,
        keeper: None,
        watch: Some(watch),
    })
}

async fn open_watch(
    client: &mut Client,
    key: &str,
    cancel: &AtomicBool,
) -> Result<WatchStream, String> {
    let (requested, rev) = super::cancel::cancel_state(client, key)
        .await
        .map_err(|e| e.to_string())?;
    if requested {
        cancel.store(true, Ordering::Release);
    }
    client
        .watch(key, Some(WatchOptions::new().with_start_revision(rev + 1)))
        .await
        .map_err(|e| e.to_string())
}

/// The cancel watch's next message: true if it shows a request. A broken watch is dropped and
/// opened again at the next renewal; with none open this never returns.
async fn watched(conn: &mut Option<Conn>) -> bool {
    let Some(c) = conn.as_mut() else {
        return std::future::pending().await;
    };
    let Some(w) = c.watch.as_mut() else {
        return std::future::pending().await;
    };
    match w.message().await {
        Ok(Some(resp)) => {
            if resp.canceled() {
                c.watch = None;
            }
            resp.events()
                .iter()
                .any(|e| e.event_type() == EventType::Put)
        }
        _ => {
            c.watch = None;
            false
        }
    }
}

async fn renew(t: &Target, conn: &mut Option<Conn>, ask: &Ask, cancel: &AtomicBool) -> Outcome {
    if conn.is_none() {
        match connect(t, cancel).await {
            Ok(c) => *conn = Some(c),
            Err(e) => return Outcome::Failed(e),
        }
    }
    let c = conn.as_mut().expect("connected above");
    if c.watch.is_none() {
        match open_watch(&mut c.client, &t.cancel_key, cancel).await {
            Ok(w) => c.watch = Some(w),
            Err(e) => return Outcome::Failed(e),
        }
    }
    match keep_alive(c, t.lease).await {
        Ok(ttl) if ttl <= 0 => return Outcome::Expired,
        Ok(_) => {}
        Err(e) => return Outcome::Failed(e),
    }
    let Some((beats, value)) = &ask.live else {
        return Outcome::Kept { wrote: None };
    };
    let txn = etcd_client::Txn::new()
        .when(vec![Compare::lease(
            t.live_key.clone(),
            CompareOp::Equal,
            t.lease,
        )])
        .and_then(vec![TxnOp::put(
            t.live_key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(t.lease)),
        )]);
    match c.client.txn(txn).await {
        Ok(r) if r.succeeded() => Outcome::Kept {
            wrote: Some(*beats),
        },
        Ok(_) => Outcome::Unattached,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// One keepalive on the stream opened once; the remaining ttl. A stream etcd closed meanwhile is
/// opened again, and opening it is itself the keepalive.
async fn keep_alive(c: &mut Conn, lease: i64) -> Result<i64, String> {
    if let Some((keeper, stream)) = c.keeper.as_mut() {
        if keeper.keep_alive().await.is_ok() {
            match stream.message().await {
                Ok(Some(resp)) => return Ok(resp.ttl()),
                Ok(None) => {}
                Err(e) => {
                    c.keeper = None;
                    return Err(e.to_string());
                }
            }
        }
        c.keeper = None;
    }
    match c.client.lease_keep_alive(lease).await {
        Ok(pair) => {
            c.keeper = Some(pair);
            // The client checked the first answer: the lease was renewed.
            Ok(1)
        }
        Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}
