//! The store a command was pointed at (protocol.md 11.1): the file store or, with the `etcd`
//! feature, the etcd store, behind one `Store` implementation by delegation, so the CLI and the
//! wrapper never know which one they talk to.
//!
//! The choice comes from the environment (`TETHER_STORE`, and `ETCDCTL_CACERT`, `ETCDCTL_CERT`,
//! `ETCDCTL_KEY`, `ETCDCTL_USER` as etcdctl reads them): the CLI turns its `--store` and `--etcd-*`
//! options into those variables once, so the background half of `run --detach` and any `tether`
//! the job itself runs use the same store.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use super::etcd_url::StoreUrl;
use super::{
    Change, DirProblem, FileStore, Listed, LogFiles, Renew, StateDir, Store, StoreError, Watch,
};
use crate::clock::Timestamp;
use crate::id::JobId;
use crate::record::{Progress, Record};
use crate::transition::Refused;

pub enum AnyStore {
    File(FileStore),
    #[cfg(feature = "etcd")]
    Etcd {
        store: Box<super::EtcdStore>,
        /// The local state directory: the job's log lives on the holder's host (11.2).
        local: StateDir,
    },
}

impl AnyStore {
    /// Opens the store the environment names (else the state directory `dir`, section 2).
    /// `create`: make the state directory if missing (the wrapper; for etcd, the log's home).
    pub fn open(dir: Option<&Path>, create: bool) -> Result<AnyStore, StoreError> {
        let sd = StateDir::resolve(dir)?;
        let url = std::env::var("TETHER_STORE").ok().filter(|s| !s.is_empty());
        let parsed = match &url {
            None => StoreUrl::File(sd.root.clone()),
            Some(u) => StoreUrl::parse(u).map_err(|why| StoreError::Dir {
                path: PathBuf::from("TETHER_STORE"),
                why: DirProblem::Backend(why),
            })?,
        };
        match parsed {
            StoreUrl::File(root) => {
                // `--dir` names the state directory, so it wins over a `file:` URL's path.
                let root = if dir.is_some() { sd.root } else { root };
                Ok(AnyStore::File(FileStore::open(StateDir { root }, create)?))
            }
            #[cfg(feature = "etcd")]
            StoreUrl::Etcd(u) => {
                let store = Box::new(super::EtcdStore::open(&u, &auth_from_env())?);
                if create {
                    FileStore::open(sd.clone(), true)?;
                }
                Ok(AnyStore::Etcd { store, local: sd })
            }
            #[cfg(not(feature = "etcd"))]
            StoreUrl::Etcd(u) => Err(StoreError::Dir {
                path: PathBuf::from(u.to_string()),
                why: DirProblem::Backend(
                    "this tether was built without etcd support; rebuild with `cargo build --features etcd`".into(),
                ),
            }),
        }
    }

    /// The file store, when that is what this is (for what only it can do yet, like `--unique`).
    pub fn as_file(&self) -> Option<&FileStore> {
        match self {
            AnyStore::File(s) => Some(s),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { .. } => None,
        }
    }

    /// The etcd store, when that is what this is.
    #[cfg(feature = "etcd")]
    pub fn as_etcd(&self) -> Option<&super::EtcdStore> {
        match self {
            AnyStore::Etcd { store, .. } => Some(store),
            AnyStore::File(_) => None,
        }
    }

    /// Asks a job's holder on another host to cancel it (protocol.md 11.9): only a cluster store
    /// can carry the request.
    pub fn request_cancel(&self, id: &JobId) -> Result<(), StoreError> {
        match self {
            AnyStore::File(s) => Err(StoreError::Dir {
                path: s.root().join("jobs").join(id.as_str()),
                why: DirProblem::Backend(
                    "a state directory cannot carry a cancel request to another host".into(),
                ),
            }),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { store, .. } => store.request_cancel(id),
        }
    }

    /// What the cluster holds of job `id`'s lease, for `inspect` (protocol.md 11.4); None on the
    /// file store, whose lease is judged by clocks (7.3).
    pub fn cluster_evidence(
        &self,
        id: &JobId,
        rec: &Record,
    ) -> Option<Result<super::etcd_rules::ClusterEvidence, StoreError>> {
        match self {
            AnyStore::File(_) => {
                let _ = (id, rec);
                None
            }
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { store, .. } => Some(store.cluster_evidence(id, rec)),
        }
    }

    /// Where the wrapper's own diagnostics go: beside the job's log.
    pub fn notes_path(&self, id: &JobId) -> PathBuf {
        match self {
            AnyStore::File(s) => s.notes_path(id),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { local, .. } => local.jobs().join(format!("{id}.notes")),
        }
    }

    /// Where the job's log is (on etcd: in the local state directory of the holder's host).
    pub fn log_path(&self, id: &JobId) -> PathBuf {
        match self {
            AnyStore::File(s) => s.log_path(id),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { local, .. } => local.jobs().join(format!("{id}.log")),
        }
    }

    /// The job's log files, reached through the local state directory opened and checked once
    /// (issue 14.6); on etcd the log lives on the holder's host (11.2).
    pub fn log_files(&self, id: &JobId) -> Result<LogFiles, StoreError> {
        match self {
            AnyStore::File(s) => Ok(s.log_files(id)),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { local, .. } => Ok(FileStore::open(local.clone(), true)?.log_files(id)),
        }
    }

    /// The file store of the local state directory: this one, or for etcd the log's home.
    pub fn local(&self) -> Result<FileStore, StoreError> {
        match self {
            AnyStore::File(s) => Ok(s.clone()),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { local, .. } => FileStore::open(local.clone(), true),
        }
    }

    /// The local state directory (`TETHER_DIR` for the job).
    pub fn root(&self) -> &Path {
        match self {
            AnyStore::File(s) => s.root(),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { local, .. } => &local.root,
        }
    }

    /// gc's sweep of temporary files: the etcd store writes none.
    pub fn sweep_temp_files(&self, dry_run: bool) -> Result<Vec<PathBuf>, StoreError> {
        match self {
            AnyStore::File(s) => s.sweep_temp_files(dry_run),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { .. } => Ok(vec![]),
        }
    }

    /// Whether a holder that cannot renew for its ttl must stop its child (11.3): on etcd the
    /// cluster, not this host, decides expiry, and readers elsewhere act on it.
    pub fn self_fences(&self) -> bool {
        !matches!(self, AnyStore::File(_))
    }
}

#[cfg(feature = "etcd")]
fn auth_from_env() -> super::Auth {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    super::Auth {
        cacert: var("ETCDCTL_CACERT").map(PathBuf::from),
        cert: var("ETCDCTL_CERT").map(PathBuf::from),
        key: var("ETCDCTL_KEY").map(PathBuf::from),
        user: var("ETCDCTL_USER").and_then(|v| v.into_string().ok()),
    }
}

pub enum AnyRenewer {
    File(super::FileRenewer),
    #[cfg(feature = "etcd")]
    Etcd(Box<super::EtcdRenewer>),
}

impl Renew for AnyRenewer {
    fn renew(
        &mut self,
        epoch: u64,
        at: Timestamp,
        mono_ms: u64,
        progress: &Progress,
    ) -> Result<Result<(), Box<Refused>>, StoreError> {
        match self {
            AnyRenewer::File(r) => r.renew(epoch, at, mono_ms, progress),
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.renew(epoch, at, mono_ms, progress),
        }
    }
}

/// What a renewal came to: renewed, refused (stop renewing), or the store did not answer.
pub type Renewal = Result<Result<(), Box<Refused>>, StoreError>;

impl AnyRenewer {
    /// Starts a renewal whose answer comes later, from `answer`: the etcd store's keepalive, run on
    /// the caller's own runtime thread. None for a store that renews at once through `renew`.
    pub fn send(
        &mut self,
        epoch: u64,
        mono_ms: u64,
        progress: &Progress,
    ) -> Option<Result<(), StoreError>> {
        match self {
            AnyRenewer::File(_) => {
                let _ = (epoch, mono_ms, progress);
                None
            }
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.send(epoch, mono_ms, progress),
        }
    }

    /// Takes in, without waiting, answers to renewals that `send` made on a connection read only
    /// at ticks (etcd's direct keepalive); `ready` gives them.
    pub fn collect(&mut self, mono_ms: u64) {
        match self {
            AnyRenewer::File(_) => {
                let _ = mono_ms;
            }
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.collect(mono_ms),
        }
    }

    /// The next answer `collect` took in, with the monotonic time its renewal was sent.
    pub fn ready(&mut self) -> Option<(u64, Renewal)> {
        match self {
            AnyRenewer::File(_) => None,
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.ready(),
        }
    }

    /// Whether renewals need nothing from the caller's runtime between ticks (the idle wait may
    /// then be used, wrapper/idle.rs).
    pub fn runs_alone(&self) -> bool {
        match self {
            AnyRenewer::File(_) => true,
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.runs_alone(),
        }
    }

    /// The answer to what `send` started, with the monotonic time it was sent; pending while
    /// nothing is under way. Cancel-safe.
    pub async fn answer(&mut self) -> (u64, Renewal) {
        match self {
            AnyRenewer::File(_) => std::future::pending().await,
            #[cfg(feature = "etcd")]
            AnyRenewer::Etcd(r) => r.answer().await,
        }
    }
}

pub enum AnyWatch {
    File(super::FileWatch),
    #[cfg(feature = "etcd")]
    Etcd(super::EtcdWatch),
}

impl Watch for AnyWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            AnyWatch::File(w) => w.fd(),
            #[cfg(feature = "etcd")]
            AnyWatch::Etcd(w) => w.fd(),
        }
    }
    fn changed(&mut self) -> bool {
        match self {
            AnyWatch::File(w) => w.changed(),
            #[cfg(feature = "etcd")]
            AnyWatch::Etcd(w) => w.changed(),
        }
    }
    fn pause(&mut self) {
        match self {
            AnyWatch::File(w) => w.pause(),
            #[cfg(feature = "etcd")]
            AnyWatch::Etcd(w) => w.pause(),
        }
    }
    fn resume(&mut self) -> bool {
        match self {
            AnyWatch::File(w) => w.resume(),
            #[cfg(feature = "etcd")]
            AnyWatch::Etcd(w) => w.resume(),
        }
    }
}

/// Delegates one call to whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::File($s) => $e,
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { store: $s, .. } => $e,
        }
    };
}

impl Store for AnyStore {
    type Renewer = AnyRenewer;
    type Watch = AnyWatch;

    fn create(&self, rec: &Record) -> Result<(), StoreError> {
        each!(self, s => s.create(rec))
    }
    fn load(&self, id: &JobId) -> Result<Record, StoreError> {
        each!(self, s => s.load(id))
    }
    fn list(&self) -> Result<Vec<Listed>, StoreError> {
        each!(self, s => s.list())
    }
    fn list_each(&self, f: &mut dyn FnMut(Listed)) -> Result<(), StoreError> {
        each!(self, s => s.list_each(f))
    }
    fn ids(&self) -> Result<Vec<JobId>, StoreError> {
        each!(self, s => s.ids())
    }
    fn contains(&self, id: &JobId) -> Result<bool, StoreError> {
        each!(self, s => s.contains(id))
    }
    fn update<T>(
        &self,
        id: &JobId,
        f: &mut dyn FnMut(&Record) -> Change<T>,
    ) -> Result<(T, Record), StoreError> {
        each!(self, s => s.update(id, f))
    }
    fn remove(
        &self,
        id: &JobId,
        only_if: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.remove(id, only_if))
    }
    fn renewer(&self, id: &JobId) -> Result<AnyRenewer, StoreError> {
        match self {
            AnyStore::File(s) => s.renewer(id).map(AnyRenewer::File),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { store, .. } => {
                store.renewer(id).map(|r| AnyRenewer::Etcd(Box::new(r)))
            }
        }
    }
    fn watch(&self, id: &JobId) -> Option<AnyWatch> {
        match self {
            AnyStore::File(s) => s.watch(id).map(AnyWatch::File),
            #[cfg(feature = "etcd")]
            AnyStore::Etcd { store, .. } => store.watch(id).map(AnyWatch::Etcd),
        }
    }
    fn not_found(&self, id: JobId) -> StoreError {
        each!(self, s => s.not_found(id))
    }
    fn verdict(
        &self,
        rec: &Record,
        probe: &crate::verdict::Probe,
        reader: &crate::verdict::Reader,
    ) -> crate::verdict::Verdict {
        each!(self, s => s.verdict(rec, probe, reader))
    }
}
