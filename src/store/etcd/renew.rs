//! The holder's renewal on etcd (protocol.md 11.3): one keepalive on the job's lease per renewal,
//! over a stream opened once, and a write of the liveness key only when the beat count moved.
//!
//! Two ways in: `Renew::renew` answers at once, from any thread, through the store's runtime;
//! `send` (the wrapper's way, at each tick) gives its answer later. A keepalive with nothing to
//! write goes on the direct connection (direct.rs), whose answers the next tick's `collect` reads
//! and `ready` gives; the rest (a beat's liveness write, a cancel, any renewal while no direct
//! connection is open) runs on the caller's runtime (session.rs) and `answer` gives it, as an
//! event of the caller's loop. A direct connection is opened on a thread of its own, so the loop
//! never waits for it, and one that fails is dropped: the session renews until another is open.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TxnOp};
use tokio::sync::Mutex;

use super::EtcdStore;
use super::cancel::CancelWatch;
use super::direct::{Answer, Direct};
use super::session::{Ask, Outcome, Session, Target};
use crate::clock::Timestamp;
use crate::id::JobId;
use crate::record::{Progress, Status};
use crate::store::etcd_rules::LiveValue;
use crate::store::{Renew, StoreError};
use crate::transition::Refused;

type Stream = Arc<Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>>;
/// Where the thread opening a direct connection leaves it.
type Opened = std::sync::mpsc::Receiver<Result<Direct, String>>;

pub struct EtcdRenewer {
    store: EtcdStore,
    id: JobId,
    lease: i64,
    stream: Stream,
    /// The beat count last written to the liveness key.
    pub(super) written_beats: Option<u64>,
    /// A renewal that takes longer fails, so a partitioned holder learns it within this bound.
    pub timeout: Duration,
    /// Cancel requests from other hosts (11.9), seen through a watch opened at the first
    /// `renew`: no request per renewal. (A session keeps its own.)
    cancel: Option<CancelWatch>,
    /// Renewals on the caller's runtime, once `send` was used.
    session: Option<Session>,
    /// The renewals `send` started and `answer` has not given yet (at most two: an overdue one
    /// being abandoned, and its retry): epoch, the monotonic time it was sent, and whether it is a
    /// cancel request to record instead of a keepalive.
    in_flight: VecDeque<(u64, u64, bool)>,
    /// The direct connection, once open.
    direct: Option<Direct>,
    /// The thread opening one: its answer, when it started (monotonic ms), and whether its own
    /// keepalive stood for a tick's renewal.
    opening: Option<(Opened, u64, bool)>,
    /// The last opening failed: the next tick renews through the session while another opens.
    open_failed: bool,
    /// The epoch of the renewals sent (on etcd it never changes, 11.3).
    epoch: u64,
    /// Direct answers read by `collect`, for `ready`; and a buffer `collect` reuses.
    ready: VecDeque<(u64, crate::store::Renewal)>,
    answers: VecDeque<Answer>,
}

enum Kept {
    /// The cluster renewed the lease; this many seconds are left.
    Ttl(i64),
    Failed(String),
}

impl EtcdRenewer {
    pub(super) fn start(
        store: EtcdStore,
        id: JobId,
        lease: i64,
    ) -> Result<EtcdRenewer, StoreError> {
        Ok(EtcdRenewer {
            cancel: None,
            session: None,
            in_flight: VecDeque::new(),
            direct: None,
            opening: None,
            open_failed: false,
            epoch: 0,
            ready: VecDeque::new(),
            answers: VecDeque::new(),
            store,
            id,
            lease,
            stream: Arc::default(),
            written_beats: None,
            timeout: super::REQUEST_TIMEOUT,
        })
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }
}

impl Renew for EtcdRenewer {
    /// Renews the lease for `epoch`. `Ok(Err(_))`: the cluster no longer holds the lease (it
    /// expired or was revoked) or the job is no longer ours; `Err(_)`: etcd did not answer.
    fn renew(
        &mut self,
        epoch: u64,
        _at: Timestamp,
        _mono_ms: u64,
        progress: &Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError> {
        let cancel = self
            .cancel
            .get_or_insert_with(|| CancelWatch::start(&self.store, &self.id));
        if cancel.requested() {
            return self.cancel_requested();
        }
        let (lease, slot, timeout) = (self.lease, self.stream.clone(), self.timeout);
        let kept = self
            .store
            .call(move |c| async move {
                let r = tokio::time::timeout(timeout, keep_alive(c, lease, &slot)).await;
                Ok(match r {
                    Ok(k) => k,
                    Err(_) => {
                        *slot.lock().await = None;
                        Kept::Failed(format!("no keepalive answer within {timeout:?}"))
                    }
                })
            })
            .map_err(|e| self.store.io(self.id.as_str(), e))?;
        match kept {
            Kept::Failed(why) => return Err(self.failed(why)),
            Kept::Ttl(ttl) if ttl <= 0 => {
                return Ok(Err(self.refused(epoch, "expired or was revoked")));
            }
            Kept::Ttl(_) => {}
        }
        if self.written_beats != Some(progress.count) {
            if !self.write_beats(epoch, progress)? {
                return Ok(Err(self.refused(epoch, "no longer holds the liveness key")));
            }
            self.written_beats = Some(progress.count);
        }
        Ok(Ok(()))
    }
}

impl EtcdRenewer {
    /// Starts a renewal whose answer comes later: from `ready` after a later `collect` when it went
    /// on the direct connection, else from `answer`. None outside a tokio runtime: use `renew`
    /// there. A renewal still unanswered after `timeout` is abandoned (its answer is a failure)
    /// and this one is sent behind it; one unanswered for less stands for this tick.
    pub fn send(
        &mut self,
        epoch: u64,
        mono_ms: u64,
        progress: &Progress,
    ) -> Option<Result<(), StoreError>> {
        tokio::runtime::Handle::try_current().ok()?;
        self.epoch = epoch;
        if let Some(&(_, sent, _)) = self.in_flight.back() {
            let overdue = mono_ms.saturating_sub(sent) >= self.timeout.as_millis() as u64;
            if !overdue || self.in_flight.len() > 1 {
                return Some(Ok(()));
            }
            if let Some(s) = &self.session {
                s.abandon();
            }
        }
        let cancel = self.direct.as_ref().is_some_and(|d| d.cancel)
            || self.session.as_ref().is_some_and(Session::cancel_requested);
        if cancel {
            self.in_flight.push_back((epoch, mono_ms, true));
            return Some(Ok(()));
        }
        let quiet = self.written_beats == Some(progress.count) && self.in_flight.is_empty();
        if quiet && (self.send_direct(mono_ms) || self.opening_stands(mono_ms)) {
            return Some(Ok(()));
        }
        let s = self.session.get_or_insert_with(|| {
            let (endpoints, opts) = (*self.store.session).clone();
            Session::start(Target {
                endpoints,
                opts,
                lease: self.lease,
                live_key: self.store.keys.live(self.id.as_str()),
                cancel_key: self.store.keys.cancel(self.id.as_str()),
                setup_timeout: super::REQUEST_TIMEOUT,
            })
        });
        let live = (self.written_beats != Some(progress.count))
            .then(|| (progress.count, live_value(epoch, progress)));
        if !s.ask(Ask { live }) {
            return Some(Err(self.failed("the renewal task is busy".into())));
        }
        self.in_flight.push_back((epoch, mono_ms, false));
        Some(Ok(()))
    }

    /// Sends a keepalive on the direct connection, or lets the one unanswered stand for this
    /// tick (`collect` failed it if overdue). False when there is no usable direct connection.
    fn send_direct(&mut self, mono_ms: u64) -> bool {
        let Some(d) = self.direct.as_mut() else {
            return false;
        };
        let r = if d.unanswered().is_some() {
            d.flush()
        } else {
            d.send(mono_ms)
        };
        if r.is_err() {
            self.direct = None;
        }
        r.is_ok()
    }

    /// Whether a direct connection being opened renews for this tick: its first keepalive is a
    /// renewal, so an opening younger than the renewal timeout stands for the tick, and a job
    /// that stays quiet never needs the session. One is started here when none is under way; after
    /// a failed one, the session renews this tick while the next opens.
    fn opening_stands(&mut self, mono_ms: u64) -> bool {
        if let Some((_, started, stood)) = &mut self.opening {
            let young = mono_ms.saturating_sub(*started) < self.timeout.as_millis() as u64;
            *stood |= young;
            return young;
        }
        let failed = std::mem::take(&mut self.open_failed);
        self.start_opening(mono_ms) && !failed && self.opening_stands(mono_ms)
    }

    /// Opens a direct connection on a thread of its own, if this store allows one; `collect`
    /// takes it once open. False if none was started.
    fn start_opening(&mut self, mono_ms: u64) -> bool {
        let Some(endpoints) = self.store.direct.clone() else {
            return false;
        };
        let (store, id, lease, timeout) = (
            self.store.clone(),
            self.id.clone(),
            self.lease,
            super::REQUEST_TIMEOUT,
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let opener = move || {
            let ck = store.keys.cancel(id.as_str());
            let r = store.cancel_state(&ck).and_then(|(requested, rev)| {
                let mut d = Direct::open(&endpoints, lease, &ck, rev + 1, timeout)?;
                d.cancel |= requested;
                Ok(d)
            });
            let _ = tx.send(r);
        };
        let spawned = std::thread::Builder::new()
            .name("tether-direct".into())
            .spawn(opener);
        if spawned.is_ok() {
            self.opening = Some((rx, mono_ms, false));
        }
        spawned.is_ok()
    }

    /// Takes in a direct connection just opened, and the answers on the open one so far, without
    /// waiting; `ready` gives them. A connection that failed, or whose keepalive is overdue, is
    /// dropped (the session renews until another is open).
    pub fn collect(&mut self, mono_ms: u64) {
        self.take_opened();
        let Some(d) = self.direct.as_mut() else {
            return;
        };
        let mut answers = std::mem::take(&mut self.answers);
        let mut broken = d.read(&mut answers, false).err();
        let unanswered = d.unanswered();
        if broken.is_none() {
            if let Some(sent) = unanswered {
                if mono_ms.saturating_sub(sent) >= self.timeout.as_millis() as u64 {
                    broken = Some(format!("no keepalive answer within {:?}", self.timeout));
                }
            }
        }
        for Answer { sent, ttl } in answers.drain(..) {
            let r = if ttl > 0 {
                Ok(Ok(()))
            } else {
                Ok(Err(self.refused(self.epoch, "expired or was revoked")))
            };
            self.ready.push_back((sent, r));
        }
        self.answers = answers;
        if let Some(why) = broken {
            self.direct = None;
            if let Some(sent) = unanswered {
                self.ready.push_back((sent, Err(self.failed(why))));
            }
        }
    }

    /// The opening thread's connection, if it has finished. Its first keepalive was answered, so
    /// the lease was renewed after the opening started; a failure counts as a failed renewal only
    /// if the opening stood for a tick's.
    fn take_opened(&mut self) {
        use std::sync::mpsc::TryRecvError;
        let Some((rx, started, stood)) = &self.opening else {
            return;
        };
        let (started, stood) = (*started, *stood);
        let opened = match rx.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(r) => r,
            Err(TryRecvError::Disconnected) => Err("the thread opening it stopped".into()),
        };
        self.opening = None;
        match opened {
            Ok(d) => {
                self.direct = Some(d);
                self.ready.push_back((started, Ok(Ok(()))));
            }
            Err(why) => {
                self.open_failed = true;
                if stood {
                    let why = format!("could not open a keepalive connection: {why}");
                    self.ready.push_back((started, Err(self.failed(why))));
                }
            }
        }
    }

    /// The next answer `collect` read, with when its keepalive was sent.
    pub fn ready(&mut self) -> Option<(u64, crate::store::Renewal)> {
        self.ready.pop_front()
    }

    /// Whether renewals need nothing from the caller's runtime until the next tick: they go on
    /// the direct connection and none waits on the session.
    pub fn runs_alone(&self) -> bool {
        self.direct.is_some() && self.in_flight.is_empty()
    }

    /// The answer to the renewal `send` started, with the monotonic time it was sent (a renewed
    /// lease runs from then at the latest). Pending while none is under way; cancel-safe.
    pub async fn answer(&mut self) -> (u64, Result<Result<(), Box<Refused>>, StoreError>) {
        let Some(&(epoch, sent, cancel)) = self.in_flight.front() else {
            return std::future::pending().await;
        };
        let out = match (cancel, self.session.as_mut()) {
            (true, _) => None,
            (false, Some(s)) => Some(s.outcome().await),
            (false, None) => Some(Outcome::Failed("the renewal task is gone".into())),
        };
        self.in_flight.pop_front();
        let r = match out {
            None => self.cancel_requested(),
            Some(Outcome::Kept { wrote }) => {
                if wrote.is_some() {
                    self.written_beats = wrote;
                }
                Ok(Ok(()))
            }
            Some(Outcome::Expired) => Ok(Err(self.refused(epoch, "expired or was revoked"))),
            Some(Outcome::Unattached) => {
                Ok(Err(self.refused(epoch, "no longer holds the liveness key")))
            }
            Some(Outcome::Failed(why)) => Err(self.failed(why)),
        };
        (sent, r)
    }

    fn failed(&self, why: String) -> StoreError {
        StoreError::Io {
            path: self.store.where_(self.id.as_str()),
            err: std::io::Error::other(why),
        }
    }

    /// Puts the beat count into the liveness key, only while it is still attached to our lease.
    fn write_beats(&self, epoch: u64, progress: &Progress) -> Result<bool, StoreError> {
        let lk = self.store.keys.live(self.id.as_str());
        let value = live_value(epoch, progress);
        let txn = etcd_client::Txn::new()
            .when(vec![Compare::lease(
                lk.clone(),
                CompareOp::Equal,
                self.lease,
            )])
            .and_then(vec![TxnOp::put(
                lk,
                value,
                Some(PutOptions::new().with_lease(self.lease)),
            )]);
        let resp = self
            .store
            .call(move |mut c| async move { c.txn(txn).await })
            .map_err(|e| self.store.io(self.id.as_str(), e))?;
        Ok(resp.succeeded())
    }

    /// A canceller on another host asked (11.9): record `cancelled` on its behalf while this
    /// holder's lease still holds the liveness key, then refuse the renewal, so the wrapper stops
    /// the group and its result goes to `late`, as after a local cancel.
    fn cancel_requested(&self) -> Result<Result<(), Box<Refused>>, StoreError> {
        let w = crate::transition::Write::Cancel {
            at: Timestamp::now(),
        };
        let current = match crate::store::commit(&self.store, &self.id, &w, true)? {
            Ok(rec) => (rec.status, rec.lease.epoch),
            Err(refused) => (refused.current, refused.current_epoch),
        };
        Ok(Err(Box::new(Refused {
            why: crate::transition::Why::Store(format!(
                "job {} was cancelled from another host",
                self.id
            )),
            current: current.0,
            current_epoch: current.1,
            late: None,
        })))
    }

    fn refused(&self, epoch: u64, what: &str) -> Box<Refused> {
        // The cluster let the lease go: record `lost` now (11.5), so the holder learns the job is
        // over and stops its child instead of running on unrenewed.
        let current = crate::reader::settle::settle(&self.store, &self.id)
            .map(|j| (j.status(), j.record.lease.epoch))
            .unwrap_or((Status::Lost, epoch));
        Box::new(Refused {
            why: crate::transition::Why::Store(format!(
                "the job's etcd lease {:x} {what}",
                self.lease
            )),
            current: current.0,
            current_epoch: current.1,
            late: None,
        })
    }
}

fn live_value(epoch: u64, progress: &Progress) -> Vec<u8> {
    serde_json::to_vec(&LiveValue {
        epoch,
        beats: progress.count,
        beat_at: progress.at,
    })
    .expect("a live value serializes")
}

/// One keepalive round trip on the (re)opened stream.
async fn keep_alive(
    mut c: etcd_client::Client,
    lease: i64,
    slot: &Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>,
) -> Kept {
    let mut g = slot.lock().await;
    if g.is_none() {
        match c.lease_keep_alive(lease).await {
            Ok(pair) => *g = Some(pair),
            Err(e) => return Kept::Failed(e.to_string()),
        }
    }
    let (keeper, stream) = g.as_mut().expect("opened above");
    if let Err(e) = keeper.keep_alive().await {
        *g = None;
        return Kept::Failed(e.to_string());
    }
    match stream.message().await {
        Ok(Some(resp)) => Kept::Ttl(resp.ttl()),
        Ok(None) => {
            *g = None;
            Kept::Failed("the keepalive stream ended".into())
        }
        Err(e) => {
            *g = None;
            Kept::Failed(e.to_string())
        }
    }
}
