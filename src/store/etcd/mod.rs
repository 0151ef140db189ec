//! The etcd store (protocol.md section 11): records, liveness keys and leases in an etcd v3
//! cluster, so a holder on one host and readers on others agree, judged by the cluster's lease
//! expiry instead of anyone's clock.
//!
//! The `Store` trait is synchronous (the file store blocks on `flock`), while the etcd client is
//! async. The store owns a one-worker tokio runtime and blocks the calling thread on a channel for
//! each request, which works the same from plain threads and from inside the wrapper's runtime
//! (where `block_on` would panic).

mod cancel;
mod create;
mod direct;
mod evidence;
mod list;
mod renew;
mod session;
mod watch;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, TxnOp, TxnOpResponse,
};

pub use renew::EtcdRenewer;
pub use watch::EtcdWatch;

use super::etcd_rules::{self, Keys, LiveValue, Observed};
use super::etcd_url::EtcdUrl;
use super::{Change, DirProblem, Listed, Store, StoreError};
use crate::id::JobId;
use crate::record::{MAX_RECORD_BYTES, Record, RecordError, Status};
use crate::verdict::{Probe, Reader, Verdict};

/// A request that takes longer than this fails (and a command says the store is unreachable).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Compare-and-swap attempts before an update gives up: each failed one means another writer
/// changed the job in between, so this many in a row is not contention but a bug or an attack.
const MAX_CAS_ATTEMPTS: usize = 64;

/// TLS and authentication, as `etcdctl` takes them (`--cacert`, `--cert`, `--key`, `--user`).
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `NAME:PASSWORD`.
    pub user: Option<String>,
}

#[derive(Clone)]
pub struct EtcdStore {
    url: EtcdUrl,
    keys: Keys,
    client: Client,
    /// The endpoints and options the client was made with, for a holder's own connection
    /// (session.rs), without HTTP/2 pings.
    session: Arc<(Vec<String>, ConnectOptions)>,
    /// The endpoints (`host:port`) a holder may keep its lease alive on by hand (direct.rs):
    /// only plain connections without a password, which etcd-client handles instead.
    direct: Option<Arc<Vec<String>>>,
    rt: Arc<Rt>,
    /// What the last read of each job saw of its lease, for `verdict` (11.4).
    observed: Arc<Mutex<HashMap<String, Observed>>>,
    /// Whether the cluster has answered a request yet. Until it has, a failed request means the
    /// store cannot be used at all (exit 8, as an unusable state directory), not that one job's
    /// read failed: the command's first request doubles as the check that etcd answers.
    answered: Arc<AtomicBool>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdStore({})", self.url)
    }
}

/// The store's runtime. Dropped without waiting for its tasks: the last store handle may go away
/// inside the wrapper's own runtime, where a blocking drop would panic.
struct Rt(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Rt {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until drop")
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One job as read in one transaction: the record's bytes and revision, and its liveness key.
struct Snapshot {
    record: Option<KeyValue>,
    live: Option<KeyValue>,
}

impl EtcdStore {
    /// Connects and checks that the cluster answers, so a command fails before starting anything
    /// when etcd cannot be reached (exit 8, like an unusable state directory).
    pub fn open(url: &EtcdUrl, auth: &Auth) -> Result<EtcdStore, StoreError> {
        let rt = Rt(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tether-etcd")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Io {
                    path: PathBuf::from(url.to_string()),
                    err: e,
                })?,
        ));
        let opts = connect_options(url, auth)?;
        let scheme = if auth.cacert.is_some() || auth.cert.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoints: Vec<String> = url
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let session = Arc::new((endpoints.clone(), opts.clone()));
        let direct =
            (scheme == "http" && auth.user.is_none()).then(|| Arc::new(url.endpoints.clone()));
        // Pings only while a request or stream is open: they find a connection that died under
        // one. Idle, there is nothing to find (and etcd answers pings sent more often than every
        // 5 s with nothing else on the connection by closing it).
        let opts = opts
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(false);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(Client::connect(endpoints, Some(opts)).await);
        });
        let client = rx
            .recv()
            .map_err(|e| unreachable(url, &e.to_string()))?
            .map_err(|e| unreachable(url, &e.to_string()))?;
        // The client connects lazily, and no request is spent here only to prove that the
        // cluster answers: a one-shot reader's first read does that (`answered`, `io`).
        Ok(EtcdStore {
            keys: Keys::new(&url.prefix),
            url: url.clone(),
            client,
            session,
            direct,
            rt: Arc::new(rt),
            observed: Arc::default(),
            answered: Arc::default(),
        })
    }

    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs one request on the store's runtime and waits for it from any thread.
    fn call<F, Fut, T>(&self, f: F) -> Result<T, etcd_client::Error>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let fut = f(self.client.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let res = rx
            .recv()
            .unwrap_or_else(|_| Err(etcd_client::Error::InvalidArgs("runtime stopped".into())));
        if res.is_ok() && !self.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
        res
    }

    fn where_(&self, id: &str) -> PathBuf {
        PathBuf::from(format!("{}/jobs/{id}", self.url))
    }

    /// A failed request: the store as a whole when the cluster never answered this process
    /// (exit 8, naming the URL), else the job being read or written.
    fn io(&self, id: &str, e: etcd_client::Error) -> StoreError {
        if !self.answered.load(Ordering::Relaxed) {
            return unreachable(&self.url, &e.to_string());
        }
        StoreError::Io {
            path: self.where_(id),
            err: std::io::Error::other(e.to_string()),
        }
    }

    /// The record and the liveness key of one job, at one revision.
    fn snapshot(&self, id: &str) -> Result<Snapshot, StoreError> {
        let (jk, lk) = (self.keys.job(id), self.keys.live(id));
        let resp = self
            .call(move |mut c| async move {
                c.txn(
                    etcd_client::Txn::new()
                        .and_then(vec![TxnOp::get(jk, None), TxnOp::get(lk, None)]),
                )
                .await
            })
            .map_err(|e| self.io(id, e))?;
        let mut got = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        });
        Ok(Snapshot {
            record: got.next().flatten(),
            live: got.next().flatten(),
        })
    }

    /// Parses a record read from etcd and folds in its liveness key (11.4); remembers what was
    /// seen of the lease for `verdict`.
    fn parse(
        &self,
        id: &str,
        kv: &KeyValue,
        live: Option<&KeyValue>,
    ) -> Result<Record, StoreError> {
        let err = |err| StoreError::Record {
            path: self.where_(id),
            err,
        };
        if kv.value().len() as u64 > MAX_RECORD_BYTES {
            return Err(err(RecordError::Corrupt(format!(
                "record is {} bytes, over the 1 MiB limit",
                kv.value().len()
            ))));
        }
        let mut rec = Record::parse(kv.value(), Some(id)).map_err(err)?;
        if let Some(v) = live.and_then(|l| serde_json::from_slice::<LiveValue>(l.value()).ok()) {
            etcd_rules::fold(&mut rec, &v);
        }
        self.observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.to_owned(),
                Observed {
                    live: live.is_some(),
                    remaining_ms: None,
                },
            );
        Ok(rec)
    }

    fn must_id(&self, rec: &Record) -> Result<JobId, StoreError> {
        Ok(JobId::parse(&rec.id)?)
    }

    /// Gives up a job's lease (after its final write): its liveness key goes with it.
    pub fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        self.call(move |mut c| async move { c.lease_revoke(lease).await })
            .map(|_| ())
            .map_err(|e| self.io("-", e))
    }

    /// The etcd lease id recorded in a record, if any.
    pub fn lease_of(rec: &Record) -> Option<i64> {
        let hex = rec.extra.get("etcd")?.get("lease")?.as_str()?;
        i64::from_str_radix(hex, 16).ok()
    }
}

/// The store cannot be used: etcd did not answer, or refused us (TLS, authentication).
fn unreachable(url: &EtcdUrl, e: &str) -> StoreError {
    StoreError::Dir {
        path: PathBuf::from(url.to_string()),
        why: DirProblem::Backend(format!(
            "cannot use etcd: {e}; check that etcd runs there and the --store URL"
        )),
    }
}

/// Timeouts, credentials and TLS. No HTTP/2 keepalive: `open` adds it for the store's client, and
/// a holder's own connection goes without (session.rs).
fn connect_options(url: &EtcdUrl, auth: &Auth) -> Result<ConnectOptions, StoreError> {
    let bad = |why: String| StoreError::Dir {
        path: PathBuf::from(url.to_string()),
        why: DirProblem::Backend(why),
    };
    let mut o = ConnectOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
    if let Some(u) = &auth.user {
        let (name, pass) = u
            .split_once(':')
            .ok_or_else(|| bad("the etcd user must be given as NAME:PASSWORD".into()))?;
        o = o.with_user(name, pass);
    }
    if auth.cacert.is_some() || auth.cert.is_some() || auth.key.is_some() {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &auth.cacert {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        match (&auth.cert, &auth.key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "an etcd client certificate needs both --cert and --key".into(),
                ));
            }
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

impl Store for EtcdStore {
    type Renewer = EtcdRenewer;
    type Watch = EtcdWatch;

    /// Keepalives on the job's etcd lease (11.3).
    fn renewer(&self, id: &JobId) -> Result<EtcdRenewer, StoreError> {
        let s = self.snapshot(id.as_str())?;
        let Some(kv) = &s.record else {
            return Err(self.not_found(id.clone()));
        };
        let rec = self.parse(id.as_str(), kv, s.live.as_ref())?;
        let lease = EtcdStore::lease_of(&rec).ok_or_else(|| StoreError::Record {
            path: self.where_(id.as_str()),
            err: RecordError::Corrupt("record has no etcd lease id (etcd.lease)".into()),
        })?;
        let mut r = EtcdRenewer::start(self.clone(), id.clone(), lease)?;
        // The beat count the liveness key holds now need not be written again: a quiet job's
        // first renewal is then a keepalive alone.
        r.written_beats = s
            .live
            .as_ref()
            .and_then(|l| serde_json::from_slice::<LiveValue>(l.value()).ok())
            .filter(|v| v.epoch == rec.lease.epoch)
            .map(|v| v.beats);
        // A renewal must fail within about one interval, or a partitioned holder would notice
        // its ttl had passed only after a whole request timeout more.
        r.timeout = Duration::from_millis(rec.lease.interval_ms.clamp(200, 5_000));
        Ok(r)
    }

    fn watch(&self, id: &JobId) -> Option<EtcdWatch> {
        EtcdWatch::new(self, id)
    }

    fn contains(&self, id: &JobId) -> Result<bool, StoreError> {
        let jk = self.keys.job(id.as_str());
        let resp =
            self.call(move |mut c| async move {
                c.get(jk, Some(GetOptions::new().with_count_only())).await
            })
            .map_err(|e| self.io(id.as_str(), e))?;
        Ok(resp.count() > 0)
    }

    fn not_found(&self, id: JobId) -> StoreError {
        StoreError::NotFound(id, PathBuf::from(self.url.to_string()))
    }

    /// Creates the record with a fresh lease; the lease id is recorded in the record (11.3).
    fn create(&self, rec: &Record) -> Result<(), StoreError> {
        self.create_leased(rec).map(|_| ())
    }

    fn load(&self, id: &JobId) -> Result<Record, StoreError> {
        let s = self.snapshot(id.as_str())?;
        match &s.record {
            Some(kv) => self.parse(id.as_str(), kv, s.live.as_ref()),
            None => Err(self.not_found(id.clone())),
        }
    }

    /// One snapshot of the store at one revision, in pages (list.rs).
    fn list(&self) -> Result<Vec<Listed>, StoreError> {
        self.list_at_one_revision()
    }

    fn ids(&self) -> Result<Vec<JobId>, StoreError> {
        let jobs = self.keys.jobs();
        let resp = self
            .call(move |mut c| async move {
                c.get(jobs, Some(GetOptions::new().with_prefix().with_keys_only()))
                    .await
            })
            .map_err(|e| self.io("*", e))?;
        let mut ids: Vec<JobId> = resp
            .kvs()
            .iter()
            .filter_map(|kv| JobId::parse(self.keys.id_of(kv.key_str().ok()?)?).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let s = self.snapshot(id.as_str())?;
            let Some(kv) = &s.record else {
                return Err(self.not_found(id.clone()));
            };
            let cur = self.parse(id.as_str(), kv, s.live.as_ref())?;
            let live = s.live.as_ref().map(|l| l.lease());
            match f(&cur) {
                Change::Keep(v) => return Ok((v, cur)),
                // 11.5: on an active record whose lease the cluster let expire, the only write
                // that lands is the `lost` verdict. Any other (a holder's renewal or result, a
                // cancel) first records `lost`, then is offered the terminal record, where it is
                // refused and its result kept in `late`.
                Change::Write { record, .. }
                    if cur.status.is_active()
                        && live.is_none()
                        && record.status != Status::Lost =>
                {
                    let lost = crate::transition::apply(
                        &cur,
                        &crate::transition::Write::Reap {
                            at: crate::clock::Timestamp::now(),
                            reason: crate::record::Reason::LeaseExpired,
                        },
                    )
                    .map_err(|r| StoreError::Io {
                        path: self.where_(id.as_str()),
                        err: std::io::Error::other(r.why.to_string()),
                    })?;
                    self.cas(id.as_str(), kv.mod_revision(), None, &lost)?;
                }
                Change::Write { record, value, .. } => {
                    if self.cas(id.as_str(), kv.mod_revision(), live, &record)? {
                        return Ok((value, record));
                    }
                }
            }
        }
        Err(StoreError::Io {
            path: self.where_(id.as_str()),
            err: std::io::Error::other(format!(
                "the record kept changing: {MAX_CAS_ATTEMPTS} compare-and-swap attempts failed"
            )),
        })
    }

    fn remove(
        &self,
        id: &JobId,
        only_if: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<bool, StoreError> {
        let s = self.snapshot(id.as_str())?;
        let Some(kv) = &s.record else {
            return Err(self.not_found(id.clone()));
        };
        let rec = self.parse(id.as_str(), kv, s.live.as_ref())?;
        if !only_if(&rec) {
            return Ok(false);
        }
        let (jk, ck, rev) = (
            self.keys.job(id.as_str()),
            self.keys.cancel(id.as_str()),
            kv.mod_revision(),
        );
        let txn = etcd_client::Txn::new()
            .when(vec![Compare::mod_revision(
                jk.clone(),
                CompareOp::Equal,
                rev,
            )])
            .and_then(vec![TxnOp::delete(jk, None), TxnOp::delete(ck, None)]);
        let resp = self
            .call(move |mut c| async move { c.txn(txn).await })
            .map_err(|e| self.io(id.as_str(), e))?;
        Ok(resp.succeeded())
    }

    fn verdict(&self, rec: &Record, probe: &Probe, reader: &Reader) -> Verdict {
        let obs = self
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rec.id)
            .cloned()
            // Never read from etcd by this store: judge it as the cluster would a lease we
            // cannot see, which is not at all; the caller's record then decides (R1) or is lost.
            .unwrap_or(Observed {
                live: false,
                remaining_ms: None,
            });
        etcd_rules::verdict(rec, &obs, probe, reader)
    }
}

impl EtcdStore {
    /// One entry of a listing: a record, or the error for that key alone (a key under `jobs/`
    /// that is not a job id is reported and left alone, 11.2).
    fn listed(&self, kv: &KeyValue, live: &HashMap<&str, &KeyValue>) -> Listed {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let id = self.keys.id_of(&key).unwrap_or(&key);
        if JobId::parse(id).is_err() {
            return Err(StoreError::Record {
                path: PathBuf::from(format!("{}/jobs/{id}", self.url)),
                err: RecordError::Corrupt(
                    "key under the jobs prefix is not a tether job id; left untouched".into(),
                ),
            });
        }
        self.parse(id, kv, live.get(id).copied())
    }

    /// Writes `rec` if the record is still at `rev` and the liveness key is as seen (`Some(lease)`
    /// attached to that lease, `None` absent). A terminal record takes the liveness key with it.
    fn cas(&self, id: &str, rev: i64, live: Option<i64>, rec: &Record) -> Result<bool, StoreError> {
        let (jk, lk) = (self.keys.job(id), self.keys.live(id));
        let mut when = vec![Compare::mod_revision(jk.clone(), CompareOp::Equal, rev)];
        when.push(match live {
            Some(l) => Compare::lease(lk.clone(), CompareOp::Equal, l),
            None => Compare::version(lk.clone(), CompareOp::Equal, 0),
        });
        let mut ops = vec![TxnOp::put(jk, rec.to_json(), None)];
        if rec.status.is_terminal() && live.is_some() {
            ops.push(TxnOp::delete(lk, None));
        }
        let txn = etcd_client::Txn::new().when(when).and_then(ops);
        let resp = self
            .call(move |mut c| async move { c.txn(txn).await })
            .map_err(|e| self.io(id, e))?;
        if let (true, true, Some(lease)) = (resp.succeeded(), rec.status.is_terminal(), live) {
            // The job is over: give its lease back now (11.3) rather than let it run out. Best
            // effort: the liveness key is already gone with the write, and the ttl ends it anyway.
            let _ = self.revoke(lease);
        }
        Ok(resp.succeeded())
    }
}
