//! Everything before the event loop: options checked, the heartbeat channel, signal handlers, the
//! record, the log and the child. It returns one error, which `run` reports once; anything that
//! fails after the record exists is recorded as the job's start failure first.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::Error;
use super::signals::Signals;
use super::streams::Streams;
use super::{Options, child, heartbeat, log, note, notes, probe, terminal, tick};
use crate::clock::Timestamp;
use crate::id::JobId;
use crate::record::{self, Exit, Reason, Record, Status};
use crate::store::{AnyStore, Store, StoreError};
use crate::transition::{Refused, Write};
use crate::unique::ClaimError;

/// The job's record in its store.
pub struct Job {
    pub store: AnyStore,
    pub id: JobId,
}

impl Job {
    /// Applies `w` under the lock; a refused write that carries a result is stored in `late`.
    pub fn write(
        &self,
        w: &Write,
        durable: bool,
    ) -> Result<Result<Record, Box<Refused>>, StoreError> {
        crate::store::commit(&self.store, &self.id, w, durable)
    }
}

/// What the event loop starts from.
pub struct Setup {
    pub held: Held,
    pub exit_rx: oneshot::Receiver<std::io::Result<Exit>>,
    pub ticker: tick::Ticker,
    pub signals: Signals,
    pub terminal: Option<terminal::Terminal>,
    /// The liveness probe and the environment an exec probe runs in (the job's).
    pub probe: Option<(probe::Config, child::ChildEnv)>,
}

/// The parts `State` keeps for the job's life.
pub struct Held {
    pub job: Job,
    pub spawned: child::Spawned,
    pub channel: heartbeat::Channel,
    pub streams: Streams,
    pub log_path: PathBuf,
    pub ttl_ms: u64,
}

/// Checks the probe options; a command that does not exist is refused here, before anything runs.
pub fn check_probe(opts: &Options) -> Result<Option<probe::Config>, Error> {
    let p = &opts.probe;
    let Some(spec) = &p.spec else {
        return Ok(None);
    };
    let every = p.every.unwrap_or(opts.interval);
    if every.is_zero() || p.timeout.is_zero() || p.failures == 0 {
        return Err(Error::usage(
            "--probe-every and --probe-timeout must be above 0, --probe-failures at least 1",
        ));
    }
    Ok(Some(probe::Config {
        spec: probe::parse(spec)?,
        every,
        timeout: p.timeout,
        failures: p.failures,
        grace: p.grace,
    }))
}

/// Checks the options that need no I/O; returns (interval_ms, ttl_ms, id).
pub fn check(opts: &Options) -> Result<(u64, u64, Option<JobId>), Error> {
    let interval_ms = opts.interval.as_millis().min(u64::MAX as u128) as u64;
    let ttl_ms = opts.ttl.as_millis().min(u64::MAX as u128) as u64;
    record::check_lease_config(interval_ms, ttl_ms)
        .map_err(|e| Error::usage(format!("bad --interval/--ttl: {e}")))?;
    let id = match &opts.id {
        Some(s) => Some(JobId::parse(s).map_err(|e| Error::usage(e.to_string()))?),
        None => None,
    };
    if opts.command.is_empty() {
        return Err(Error::usage("no command given; put it after `--`"));
    }
    Ok((interval_ms, ttl_ms, id))
}

/// Needs the tokio runtime (the channel, the signals and the ticker register with it).
pub async fn setup(
    opts: &Options,
    detached: bool,
    sigfd: Option<std::os::fd::OwnedFd>,
) -> Result<Setup, Error> {
    let (interval_ms, ttl_ms, id) = check(opts)?;
    let probe_cfg = check_probe(opts)?;
    let store = AnyStore::open(opts.dir.as_deref(), true)?;
    let abs_dir =
        std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    // The channel, the handlers and the timer first: if they cannot be set up, nothing has been
    // recorded yet.
    // Made through the state directory opened and checked above, never by path (issue 14.6).
    let local = store.local()?;
    let channel = heartbeat::Channel::open(opts.heartbeat, local.root_fd(), &abs_dir)
        .map_err(|e| Error::io(format!("cannot set up the heartbeat channel: {e}")))?;
    let signals = Signals::install(sigfd)
        .map_err(|e| Error::io(format!("cannot install signal handlers: {e}")))?;
    let ticker = tick::Ticker::new(Duration::from_millis(interval_ms))
        .map_err(|e| Error::io(format!("cannot start the renewal timer: {e}")))?;
    let job = create_record(store, opts, interval_ms, ttl_ms, id)?;
    // Both through the state directory opened and checked once (issue 14.6), never by path.
    let files = job
        .store
        .log_files(&job.id)
        .map_err(|e| std::io::Error::other(e.to_string()));
    let notes_path = job.store.notes_path(&job.id);
    match files
        .as_ref()
        .map_err(clone_err)
        .and_then(|f| f.open_notes())
    {
        Ok(f) => notes::keep_in(f, detached),
        Err(e) => note!("cannot open {}: {e}", notes_path.display()),
    }
    let log_path = job.store.log_path(&job.id);
    let log = files.and_then(|files| log::Log::open(log_path.clone(), files, log::LOG_CAP));
    let log = match log {
        Ok(l) => Some(l),
        Err(e) => {
            note!(
                "cannot open the job log {}: {e}; output is not kept",
                log_path.display()
            );
            None
        }
    };
    // The job gets its id and its beat channel, nothing of tether's own: TETHER_DIR would point
    // nested tether commands at this state directory without the job asking for it.
    let (mut set, mut remove) = channel.env(ttl_ms);
    set.push(("TETHER_JOB_ID".into(), job.id.as_str().into()));
    remove.push("TETHER_DIR");
    let env = child::ChildEnv { set, remove };
    let probe = probe_cfg.map(|c| (c, env.clone()));
    let terminal = if detached {
        None
    } else {
        terminal::Terminal::foreground()
    };
    let mut spawned = match child::spawn(&opts.command, &env, true, terminal.is_some()) {
        Ok(s) => s,
        Err(e) => return Err(start_failed(&job, e)),
    };
    if let Some(t) = &terminal {
        t.give(spawned.pid);
    }
    let exit_rx = match spawned.watch_exit() {
        Ok(rx) => rx,
        Err(e) => {
            spawned.signal_group(rustix::process::Signal::KILL);
            let _ = spawned.reap();
            let e = Error::io(format!("cannot watch the child process: {e}"));
            return Err(start_failed(&job, e));
        }
    };
    let streams = Streams::new(spawned.stdout.take(), spawned.stderr.take(), log, !detached);
    Ok(Setup {
        held: Held {
            job,
            spawned,
            channel,
            streams,
            log_path,
            ttl_ms,
        },
        exit_rx,
        ticker,
        signals,
        terminal,
        probe,
    })
}

/// Records that the job failed to start (and says why in its notes), then returns `e`.
fn start_failed(job: &Job, e: Error) -> Error {
    let w = Write::Finish {
        epoch: 1,
        at: Timestamp::now(),
        status: Status::Failed,
        reason: Reason::StartFailed,
        exit: None,
        progress: None,
    };
    if let Err(se) = job.write(&w, true) {
        note!("could not record that the job failed to start: {se}");
    }
    notes::keep(format_args!("{}", e.message));
    e
}

fn create_record(
    store: AnyStore,
    opts: &Options,
    interval_ms: u64,
    ttl_ms: u64,
    id: Option<JobId>,
) -> Result<Job, Error> {
    let me = crate::process::current()
        .map_err(|e| Error::io(format!("cannot identify the wrapper process: {e}")))?;
    // A cluster store claims the key in its create transaction; with --unique-wait, a starter that
    // lost the key to another waiter begins again.
    loop {
        match create_once(&store, opts, interval_ms, ttl_ms, &id, &me) {
            Err(ClaimError::Store(StoreError::UniqueHeld { .. })) if opts.unique_wait => continue,
            Err(e) => return Err(e.into()),
            Ok(Some(id)) => return Ok(Job { store, id }),
            Ok(None) => {
                return Err(Error::io(
                    "could not generate an unused job id after 64 tries; pass --id",
                ));
            }
        }
    }
}

/// One claim of the unique key (if any) and creation of the record. `Ok(None)`: no free id found.
fn create_once(
    store: &AnyStore,
    opts: &Options,
    interval_ms: u64,
    ttl_ms: u64,
    id: &Option<JobId>,
    me: &crate::process::Identity,
) -> Result<Option<JobId>, ClaimError> {
    // Held until the record exists: checking the key and creating the record are one step. Taken
    // before the record is begun, so a --unique-wait that queued starts with fresh times and lease.
    let _claim = match &opts.unique {
        Some(key) => crate::unique::claim_on(store, key, opts.unique_wait)?,
        None => None,
    };
    let mut rec = Record::begin(
        "",
        opts.command.clone(),
        me.clone().holder(),
        interval_ms,
        ttl_ms,
    );
    rec.name = opts.name.clone();
    rec.meta = opts.meta.clone();
    rec.unique = opts.unique.clone();
    rec.cwd = std::env::current_dir()
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let given = id.is_some();
    for salt in 0..64u32 {
        let id = id.clone().unwrap_or_else(|| JobId::generate(salt));
        rec.id = id.to_string();
        match store.create(&rec) {
            Ok(()) => return Ok(Some(id)),
            // Exit 9 (id taken), with the way out (`tether rm`): cli::exit says both.
            Err(e @ StoreError::Exists(..)) if given => return Err(e.into()),
            Err(StoreError::Exists(..)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}
