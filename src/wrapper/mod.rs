//! `tether run`: the wrapper that holds a job's lease while its child is healthy.
//!
//! One thread does the supervising (a current-thread tokio runtime on the main thread): the child is
//! spawned from it, so PR_SET_PDEATHSIG ties the child to the wrapper's whole life, and every record
//! write happens in one place, in order. A second, tiny thread only blocks in `waitid(WNOWAIT)`.

pub mod child;
pub mod heartbeat;
pub mod log;
pub mod terminal;
mod tick;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::clock::{Timestamp, mono_ms};
use crate::id::JobId;
use crate::record::{self, Exit, Progress, Reason, Record, Status};
use crate::store::{FileStore, StateDir, Store, StoreError};
use crate::transition::{Refused, Write, describe};

pub use heartbeat::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStall {
    Kill,
    Keep,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub dir: Option<PathBuf>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub interval: Duration,
    pub ttl: Duration,
    pub heartbeat: Mode,
    pub on_stall: OnStall,
    pub grace: Duration,
    pub json: bool,
    pub command: Vec<String>,
}

/// A wrapper failure: one line for stderr and the exit code protocol.md section 9 gives it.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::new(e.exit_code(), e.to_string())
    }
}

/// Where a background wrapper reports that the job is running (or why it is not).
pub struct Ready {
    pipe: std::fs::File,
}

impl Ready {
    /// The background wrapper's stdout is the pipe its launcher reads.
    pub fn from_stdout() -> Option<Ready> {
        // CLOEXEC: the job must not inherit the pipe, or the launcher would wait on the job.
        let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3).ok()?;
        Some(Ready {
            pipe: std::fs::File::from(fd),
        })
    }

    fn send(mut self, line: serde_json::Value) {
        let _ = writeln!(self.pipe, "{line}");
        // The launcher waits for EOF too: point our stdout away from the pipe and close our copy.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
    }
}

fn check(opts: &Options) -> Result<(u64, u64, Option<JobId>), Failure> {
    let interval_ms = opts.interval.as_millis().min(u64::MAX as u128) as u64;
    let ttl_ms = opts.ttl.as_millis().min(u64::MAX as u128) as u64;
    record::check_lease_config(interval_ms, ttl_ms)
        .map_err(|e| Failure::new(2, format!("bad --interval/--ttl: {e}")))?;
    let id = match &opts.id {
        Some(s) => Some(JobId::parse(s).map_err(|e| Failure::new(2, e.to_string()))?),
        None => None,
    };
    if opts.command.is_empty() {
        return Err(Failure::new(2, "no command given; put it after `--`"));
    }
    Ok((interval_ms, ttl_ms, id))
}

/// Runs the job in the foreground (or as the background half of `--detach` when `ready` is set) and
/// returns the wrapper's exit code.
pub fn run(opts: Options, ready: Option<Ready>) -> Result<i32, Failure> {
    let checked = match check(&opts) {
        Ok(c) => c,
        Err(f) => return Err(report(ready, f)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Err(report(
                ready,
                Failure::new(10, format!("cannot start the event loop: {e}")),
            ));
        }
    };
    rt.block_on(supervise(opts, checked, ready))
}

fn report(ready: Option<Ready>, f: Failure) -> Failure {
    if let Some(r) = ready {
        r.send(serde_json::json!({"error": f.message, "code": f.code}));
    }
    f
}

struct Job {
    store: FileStore,
    id: JobId,
}

impl Job {
    /// Applies `w` under the lock; a refused write that carries a result is stored in `late`.
    fn write(&self, w: &Write, durable: bool) -> Result<Result<Record, Box<Refused>>, StoreError> {
        crate::store::commit(&self.store, &self.id, w, durable)
    }
}

fn create_record(
    opts: &Options,
    interval_ms: u64,
    ttl_ms: u64,
    id: Option<JobId>,
) -> Result<Job, Failure> {
    let sd = StateDir::resolve(opts.dir.as_deref())?;
    let store = FileStore::open(sd, true)?;
    let me = crate::process::current()
        .map_err(|e| Failure::new(10, format!("cannot identify the wrapper process: {e}")))?;
    let mut rec = Record::begin("", opts.command.clone(), me.holder(), interval_ms, ttl_ms);
    rec.name = opts.name.clone();
    rec.cwd = std::env::current_dir()
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let given = id.is_some();
    for salt in 0..64u32 {
        let id = id.clone().unwrap_or_else(|| JobId::generate(salt));
        rec.id = id.to_string();
        match store.create(&rec) {
            Ok(()) => return Ok(Job { store, id }),
            Err(StoreError::Exists(id, dir)) if given => {
                return Err(Failure::new(
                    2,
                    format!(
                        "job {id} already exists in {}; choose another --id or remove it with `tether gc`",
                        dir.display()
                    ),
                ));
            }
            Err(StoreError::Exists(..)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new(
        10,
        "could not generate an unused job id after 64 tries; pass --id",
    ))
}

/// Diagnostics of the wrapper itself. Detached, stderr is the job log.
macro_rules! note {
    ($($t:tt)*) => {{
        eprintln!("tether: {}", format_args!($($t)*));
    }};
}

async fn supervise(
    opts: Options,
    (interval_ms, ttl_ms, id): (u64, u64, Option<JobId>),
    ready: Option<Ready>,
) -> Result<i32, Failure> {
    let detached = ready.is_some();
    // The channel first: if it cannot be set up, nothing has been recorded yet.
    let mut channel = match heartbeat::Channel::open(opts.heartbeat) {
        Ok(c) => c,
        Err(e) => {
            return Err(report(
                ready,
                Failure::new(10, format!("cannot set up the heartbeat channel: {e}")),
            ));
        }
    };
    let mut signals = Vec::new();
    for (kind, n) in [
        (SignalKind::terminate(), Signal::TERM),
        (SignalKind::interrupt(), Signal::INT),
        (SignalKind::hangup(), Signal::HUP),
    ] {
        match signal(kind) {
            Ok(s) => signals.push((s, n)),
            Err(e) => {
                return Err(report(
                    ready,
                    Failure::new(10, format!("cannot install signal handlers: {e}")),
                ));
            }
        }
    }
    let job = match create_record(&opts, interval_ms, ttl_ms, id) {
        Ok(j) => j,
        Err(f) => return Err(report(ready, f)),
    };
    let log_path = job.store.log_path(&job.id);
    let mut log = match log::Log::open(log_path.clone(), log::LOG_CAP, detached) {
        Ok(l) => Some(l),
        Err(e) => {
            note!(
                "cannot open the job log {}: {e}; output is not kept",
                log_path.display()
            );
            None
        }
    };
    let abs_dir =
        std::fs::canonicalize(job.store.root()).unwrap_or_else(|_| job.store.root().to_path_buf());

    let (mut set, remove) = channel.env(ttl_ms);
    set.push(("TETHER_JOB_ID".into(), job.id.as_str().into()));
    set.push(("TETHER_DIR".into(), abs_dir.into_os_string()));
    let env = child::ChildEnv { set, remove };
    let terminal = if detached {
        None
    } else {
        terminal::Terminal::foreground()
    };
    let mut spawned = match child::spawn(&opts.command, &env, true, terminal.is_some()) {
        Ok(s) => s,
        Err(e) => {
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
            if let Some(l) = &mut log {
                let _ = l.write(format!("tether: {}\n", e.message).as_bytes());
            }
            return Err(report(ready, Failure::new(e.code, e.message)));
        }
    };
    if let Some(t) = &terminal {
        t.give(spawned.pid);
    }
    let child_rec = spawned.record();
    let exit_rx = match spawned.watch_exit() {
        Ok(rx) => rx,
        Err(e) => {
            spawned.signal_group(Signal::KILL);
            let _ = spawned.reap();
            return Err(report(
                ready,
                Failure::new(10, format!("cannot watch the child process: {e}")),
            ));
        }
    };
    let mut stdout = spawned
        .stdout
        .take()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());
    let mut stderr = spawned
        .stderr
        .take()
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok());

    let mut st = State {
        epoch: 1,
        last_ok_mono: mono_ms(),
        beats: heartbeat::Beats::new(ttl_ms, mono_ms()),
        renewing: true,
        running_durable: false,
        stalled: false,
        ended_by_other: None,
        holder_signal: None,
        kill_at: None,
        ready,
        ttl_ms,
        child: child_rec,
        log_path: log_path.clone(),
        wrapper_pid: std::process::id(),
        id: job.id.clone(),
        last_fault: None,
        on_stall: opts.on_stall,
        grace: opts.grace,
        renewer: None,
        written_message: None,
    };
    st.renew(&job, &mut channel, &spawned, false);

    // The renewal above was the first tick; the ticker's first comes one interval later.
    let mut tick = tick::Ticker::new(Duration::from_millis(interval_ms))
        .map_err(|e| Failure::new(10, format!("cannot start the renewal timer: {e}")))?;
    let mut exit_rx = exit_rx;
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    let mut dgram = [0u8; 4096];
    let output_beats = opts.heartbeat == Mode::Output;
    let mut term_ok = [!detached, !detached];
    let (mut sig_term, mut sig_int, mut sig_hup) = {
        let mut it = signals.into_iter();
        (
            it.next().expect("term"),
            it.next().expect("int"),
            it.next().expect("hup"),
        )
    };
    let exit = loop {
        let kill_at = st.kill_at;
        tokio::select! {
            r = &mut exit_rx => {
                break match r {
                    Ok(Ok(e)) => Ok(e),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the exit watcher stopped".to_string()),
                };
            }
            _ = tick.tick(), if st.renewing => {
                if output_beats {
                    // After a stop the output written meanwhile is beats already given: take it in
                    // before the stall is judged, as `Channel::poll` does for queued datagrams.
                    // Bounded: a child that writes without pause must not starve the renewal.
                    for _ in 0..16 {
                        let Some(r) = read_now(&stdout, &mut out_buf) else { break };
                        st.output(r, &mut stdout, &out_buf, &mut log, &mut term_ok[0], false, true);
                    }
                    for _ in 0..16 {
                        let Some(r) = read_now(&stderr, &mut err_buf) else { break };
                        st.output(r, &mut stderr, &err_buf, &mut log, &mut term_ok[1], true, true);
                    }
                }
                st.renew(&job, &mut channel, &spawned, true);
            }
            r = recv_dgram(&channel, &mut dgram) => {
                if let Ok(n) = r {
                    let now = mono_ms();
                    for notice in crate::notify::parse(&dgram[..n]) {
                        st.beats.apply(notice, now);
                    }
                    if st.beats.triggered && st.renewing {
                        st.stall(&job, &spawned);
                    }
                }
            }
            r = read_opt(&mut stdout, &mut out_buf) => {
                st.output(r, &mut stdout, &out_buf, &mut log, &mut term_ok[0], false, output_beats);
            }
            r = read_opt(&mut stderr, &mut err_buf) => {
                st.output(r, &mut stderr, &err_buf, &mut log, &mut term_ok[1], true, output_beats);
            }
            _ = sig_term.0.recv() => st.forward(&spawned, sig_term.1),
            _ = sig_int.0.recv() => st.forward(&spawned, sig_int.1),
            _ = sig_hup.0.recv() => st.forward(&spawned, sig_hup.1),
            _ = sleep_until_opt(kill_at) => {
                spawned.signal_group(Signal::KILL);
                st.kill_at = None;
            }
        }
    };

    // The shell that started us gets its terminal back as soon as the job has ended.
    drop(terminal);
    // The child has exited but is not reaped: its group id is still ours to signal. Leftover members
    // would outlive the job unseen, so they go now.
    spawned.signal_group(Signal::KILL);
    drain(&mut stdout, &mut out_buf, &mut log, &mut term_ok[0], false).await;
    drain(&mut stderr, &mut err_buf, &mut log, &mut term_ok[1], true).await;
    let reaped = spawned.reap();
    let exit = match (exit, reaped) {
        (Ok(e), _) | (Err(_), Ok(e)) => e,
        (Err(e), Err(e2)) => {
            note!("cannot learn how the child ended: {e}; {e2}");
            Exit::Signal(0)
        }
    };
    channel.poll(&mut st.beats);
    Ok(st.finish(&job, exit))
}

struct State {
    epoch: u64,
    last_ok_mono: u64,
    beats: heartbeat::Beats,
    renewing: bool,
    running_durable: bool,
    stalled: bool,
    ended_by_other: Option<Status>,
    holder_signal: Option<Signal>,
    kill_at: Option<tokio::time::Instant>,
    ready: Option<Ready>,
    ttl_ms: u64,
    child: crate::record::Child,
    log_path: PathBuf,
    wrapper_pid: u32,
    id: JobId,
    /// The last write error reported, so a full disk is said once per kind, not every tick.
    last_fault: Option<String>,
    on_stall: OnStall,
    grace: Duration,
    /// The in-place lease writer (protocol.md 6.5); None until first needed or after it failed.
    renewer: Option<crate::store::Renewer>,
    /// The progress message last written into the record: a new message needs a record write,
    /// a beat alone only the lease file.
    written_message: Option<String>,
}

impl State {
    fn progress(&self) -> Option<Progress> {
        let p = &self.beats.progress;
        (p.count > 0 || p.message.is_some()).then(|| p.clone())
    }

    /// One tick: take in beats, then renew, re-acquire (protocol.md 6.3), or declare the stall.
    fn renew(
        &mut self,
        job: &Job,
        channel: &mut heartbeat::Channel,
        spawned: &child::Spawned,
        judge_beats: bool,
    ) {
        channel.poll(&mut self.beats);
        let now = mono_ms();
        if judge_beats
            && self.running_durable
            && channel.mode != Mode::None
            && self.beats.stalled(now)
        {
            self.stall(job, spawned);
            return;
        }
        let at = Timestamp::now();
        let reacquire = self.running_durable && now.saturating_sub(self.last_ok_mono) > self.ttl_ms;
        if self.running_durable && !reacquire && self.beats.progress.message == self.written_message
        {
            match self.fast_renew(job, at, now) {
                Some(Ok(())) => {
                    self.last_ok_mono = now;
                    self.last_fault = None;
                    self.beats.dirty = false;
                    return;
                }
                Some(Err(refused)) => return self.refused(&refused, spawned),
                None => {} // the fast path is unavailable: fall through to a record write
            }
        }
        let (w, durable) = if reacquire {
            let w = Write::Acquire {
                epoch: self.epoch,
                at,
                mono_ms: now,
            };
            (w, true)
        } else {
            let w = Write::Renew {
                epoch: self.epoch,
                at,
                mono_ms: now,
                running: true,
                child: Some(self.child.clone()),
                progress: self.beats.dirty.then(|| self.beats.progress.clone()),
            };
            // Until `running` is durable the launcher of a detached job is still waiting on it.
            (w, !self.running_durable)
        };
        match job.write(&w, durable) {
            Ok(Ok(rec)) => {
                self.epoch = rec.lease.epoch;
                self.last_ok_mono = now;
                self.last_fault = None;
                if reacquire {
                    note!(
                        "the lease had expired on this wrapper's own clock (was it stopped?); took it again as epoch {}",
                        self.epoch
                    );
                } else {
                    self.beats.dirty = false;
                    self.written_message = self.beats.progress.message.clone();
                }
                if !self.running_durable {
                    self.running_durable = true;
                    // Opened now, while the disk has room for its slots (see `Renewer`).
                    self.renewer = job.store.renewer(&job.id).ok();
                    if let Some(r) = self.ready.take() {
                        r.send(serde_json::json!({
                            "id": self.id.as_str(),
                            "pid": self.wrapper_pid,
                            "log": self.log_path,
                        }));
                    }
                }
            }
            Ok(Err(refused)) => self.refused(&refused, spawned),
            Err(e) => {
                self.fault("renew the lease", &e);
                // The record could not take a new progress message (a full disk, say); the lease
                // file may still take the renewal, and a healthy job must not expire over a message.
                if self.running_durable && !reacquire {
                    if let Some(Ok(())) = self.fast_renew(job, at, now) {
                        self.last_ok_mono = now;
                    }
                }
            }
        }
    }

    /// Renews through the lease file. None when it cannot be used (then the record write runs,
    /// and reports the error if that fails too).
    fn fast_renew(
        &mut self,
        job: &Job,
        at: Timestamp,
        now: u64,
    ) -> Option<Result<(), Box<Refused>>> {
        if self.renewer.is_none() {
            self.renewer = job.store.renewer(&job.id).ok();
        }
        match self
            .renewer
            .as_mut()?
            .renew(self.epoch, at, now, &self.beats.progress)
        {
            Ok(r) => Some(r),
            Err(e) => {
                self.fault("renew the lease", &e);
                self.renewer = None;
                None
            }
        }
    }

    /// Someone else ended the job, or fenced us out: stop renewing, and stop the child if the
    /// job is over.
    fn refused(&mut self, refused: &Refused, spawned: &child::Spawned) {
        self.renewing = false;
        if refused.current.is_terminal() {
            note!(
                "job {} is already {}: stopping its process group",
                self.id,
                refused.current
            );
            self.ended_by_other = Some(refused.current);
            self.terminate(spawned);
        } else {
            note!("lease renewal refused: {}; no longer renewing", refused.why);
        }
    }

    fn fault(&mut self, what: &str, e: &StoreError) {
        let msg = e.to_string();
        if self.last_fault.as_deref() != Some(msg.as_str()) {
            note!("cannot {what} of job {} (will retry): {msg}", self.id);
        }
        self.last_fault = Some(msg);
    }

    /// A required beat is missing: the job is over as far as anyone should believe. Record that
    /// first, then (by default) stop the child.
    fn stall(&mut self, job: &Job, spawned: &child::Spawned) {
        self.renewing = false;
        self.stalled = true;
        let w = Write::Finish {
            epoch: self.epoch,
            at: Timestamp::now(),
            status: Status::Lost,
            reason: Reason::HeartbeatTimeout,
            exit: None,
            progress: self.progress(),
        };
        let why = if self.beats.triggered {
            "the job reported its own failure (WATCHDOG=trigger)".to_string()
        } else {
            format!("no beat for {}ms", self.beats.timeout_ms)
        };
        match job.write(&w, true) {
            Ok(Ok(_)) => note!("{why}: job {} recorded lost (heartbeat-timeout)", self.id),
            Ok(Err(refused)) => {
                note!("{why}, but job {} was already {}", self.id, refused.current);
                self.ended_by_other = Some(refused.current);
            }
            // The lease is no longer renewed, so readers will find it expired anyway.
            Err(e) => note!("{why}; cannot record it for job {}: {e}", self.id),
        }
        if self.on_stall == OnStall::Kill || self.ended_by_other.is_some() {
            self.terminate(spawned);
        }
    }

    /// SIGTERM (and SIGCONT, so a stopped group sees it), then SIGKILL after the grace period.
    fn terminate(&mut self, spawned: &child::Spawned) {
        spawned.signal_group(Signal::TERM);
        spawned.signal_group(Signal::CONT);
        if self.kill_at.is_none() {
            self.kill_at = Some(tokio::time::Instant::now() + self.grace);
        }
    }

    /// A job that ignores the forwarded signal must not outlive the wrapper's order to stop, so
    /// SIGKILL follows after the grace period, as for a stall.
    fn forward(&mut self, spawned: &child::Spawned, sig: Signal) {
        note!(
            "received {sig:?}; forwarding it to the job's process group (SIGKILL in {})",
            humantime::format_duration(self.grace)
        );
        spawned.signal_group(sig);
        self.holder_signal = Some(sig);
        if self.kill_at.is_none() {
            self.kill_at = Some(tokio::time::Instant::now() + self.grace);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn output(
        &mut self,
        r: std::io::Result<usize>,
        stream: &mut Option<tokio::net::unix::pipe::Receiver>,
        buf: &[u8],
        log: &mut Option<log::Log>,
        term: &mut bool,
        is_err: bool,
        beats: bool,
    ) {
        let n = match r {
            Ok(0) | Err(_) => {
                *stream = None;
                return;
            }
            Ok(n) => n,
        };
        let bytes = &buf[..n];
        emit(bytes, log, term, is_err);
        if beats {
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
            self.beats.beat(mono_ms(), lines);
        }
    }

    /// Records how the job ended and returns the wrapper's exit code.
    fn finish(&mut self, job: &Job, exit: Exit) -> i32 {
        let (status, reason) = match exit {
            _ if self.holder_signal.is_some() => (Status::Failed, Reason::HolderSignaled),
            Exit::Code(0) => (Status::Succeeded, Reason::Exited),
            Exit::Code(_) => (Status::Failed, Reason::Exited),
            Exit::Signal(_) => (Status::Failed, Reason::Signaled),
        };
        let w = Write::Finish {
            epoch: self.epoch,
            at: Timestamp::now(),
            status,
            reason,
            exit: Some(exit),
            progress: self.progress(),
        };
        // A full or failing disk may recover soon, so the end is retried; past the ttl readers judge
        // the job lost anyway, so waiting longer only hides the failure from whoever started us.
        let give_up = std::time::Instant::now()
            + Duration::from_millis(self.ttl_ms).max(Duration::from_secs(2));
        loop {
            match job.write(&w, true) {
                Ok(Ok(_)) => return child::exit_code(exit),
                Ok(Err(refused)) => {
                    let shown = refused
                        .late
                        .as_ref()
                        .map(|r| describe(r))
                        .unwrap_or_else(|| refused.current.to_string());
                    if self.stalled && self.ended_by_other.is_none() {
                        note!(
                            "job {} was recorded lost (heartbeat-timeout); the child then ended with {exit}, kept in the record's `late` list",
                            self.id
                        );
                    } else {
                        note!(
                            "job {} was already {shown} when the child ended with {exit}; that result arrived late and is kept in the record's `late` list",
                            self.id
                        );
                    }
                    return match refused.current {
                        Status::Cancelled => 4,
                        _ => 3,
                    };
                }
                Err(e) if std::time::Instant::now() < give_up => {
                    self.fault("record the end", &e);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    // Exit 10, not the child's code: a caller must not take a success that was never
                    // recorded for a recorded one. The result itself is at least said here.
                    note!(
                        "cannot record that job {} ended with {exit}: {e}; gave up after retrying for {}; the record keeps its last renewal, so readers will judge the job lost once its lease runs out",
                        self.id,
                        humantime::format_duration(
                            Duration::from_millis(self.ttl_ms).max(Duration::from_secs(2))
                        )
                    );
                    return 10;
                }
            }
        }
    }
}

/// Child output goes to the log and, in the foreground, to the terminal as well.
fn emit(bytes: &[u8], log: &mut Option<log::Log>, term: &mut bool, is_err: bool) {
    if let Some(l) = log {
        if let Err(e) = l.write(bytes) {
            note!("cannot write the job log: {e}; output is no longer kept");
            *log = None;
        }
    }
    if *term {
        let ok = if is_err {
            let mut e = std::io::stderr().lock();
            e.write_all(bytes).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes).and_then(|()| o.flush())
        };
        if ok.is_err() {
            *term = false;
        }
    }
}

async fn recv_dgram(ch: &heartbeat::Channel, buf: &mut [u8]) -> std::io::Result<usize> {
    match &ch.socket {
        Some((s, _)) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn read_opt(
    r: &mut Option<tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// One read that never waits: None when nothing is buffered. It bypasses tokio's readiness cache on
/// purpose, since that cache may not yet know about output written while the wrapper was stopped.
fn read_now(
    r: &Option<tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
) -> Option<std::io::Result<usize>> {
    use std::os::fd::AsFd as _;
    let rx = r.as_ref()?;
    match rustix::io::read(rx.as_fd(), &mut *buf) {
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
        Err(e) => Some(Err(e.into())),
        Ok(n) => Some(Ok(n)),
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads what the child left in a pipe after it exited, but not forever: a process that escaped
/// the group may hold the pipe open.
async fn drain(
    r: &mut Option<tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
    log: &mut Option<log::Log>,
    term: &mut bool,
    is_err: bool,
) {
    let Some(rx) = r else { return };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match rx.read(buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => emit(&buf[..n], log, term, is_err),
            }
        }
    })
    .await;
}

/// `tether beat`: one beat through whatever channel the surrounding `tether run` set up.
pub fn beat(status: Option<&str>) -> Result<(), Failure> {
    if let Some(sock) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) {
        let sock = sock.to_string_lossy().into_owned();
        return crate::notify::send(&sock, &crate::notify::beat_message(status)).map_err(|e| {
            Failure::new(
                10,
                format!("cannot send the beat to NOTIFY_SOCKET {sock}: {e}"),
            )
        });
    }
    if let Some(p) = std::env::var_os("TETHER_HEARTBEAT_FILE").filter(|s| !s.is_empty()) {
        let p = PathBuf::from(p);
        let res = match status {
            Some(s) => {
                let line: String = s
                    .chars()
                    .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                    .collect();
                std::fs::write(&p, format!("{line}\n"))
            }
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(std::time::SystemTime::now())),
        };
        return res.map_err(|e| {
            Failure::new(
                10,
                format!("cannot touch TETHER_HEARTBEAT_FILE {}: {e}", p.display()),
            )
        });
    }
    Err(Failure::new(
        2,
        "not inside a job that takes beats: run this under `tether run --heartbeat notify` or `--heartbeat file` (neither NOTIFY_SOCKET nor TETHER_HEARTBEAT_FILE is set)",
    ))
}

/// Name of the hidden flag that makes `tether run` the background half of `--detach`.
pub const BACKGROUND_FLAG: &str = "--background-wrapper";

/// `--detach`: re-executes this binary as a background wrapper in its own session, and returns once
/// that wrapper reports the job durably `running` (or why it could not start it).
pub fn detach(opts: &Options) -> Result<i32, Failure> {
    check(opts)?;
    let exe = std::env::current_exe().map_err(|e| {
        Failure::new(
            10,
            format!("cannot find the tether executable to re-run: {e}"),
        )
    })?;
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(d) = &opts.dir {
        args.push("--dir".into());
        args.push(d.clone().into_os_string());
    }
    args.push("run".into());
    if let Some(id) = &opts.id {
        args.extend(["--id".into(), id.into()]);
    }
    if let Some(n) = &opts.name {
        args.extend(["--name".into(), n.into()]);
    }
    let dur = |d: Duration| humantime::format_duration(d).to_string().into();
    args.extend(["--interval".into(), dur(opts.interval)]);
    args.extend(["--ttl".into(), dur(opts.ttl)]);
    args.extend(["--grace".into(), dur(opts.grace)]);
    let mode = match opts.heartbeat {
        Mode::None => "none",
        Mode::Notify => "notify",
        Mode::File => "file",
        Mode::Output => "output",
    };
    args.extend(["--heartbeat".into(), mode.into()]);
    let stall = match opts.on_stall {
        OnStall::Kill => "kill",
        OnStall::Keep => "keep",
    };
    args.extend([
        "--on-stall".into(),
        stall.into(),
        BACKGROUND_FLAG.into(),
        "--".into(),
    ]);
    args.extend(opts.command.iter().map(Into::into));

    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Failure::new(10, format!("cannot create a pipe: {e}")))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(wr))
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is a raw, async-signal-safe syscall. A new session: no controlling terminal, so
    // closing the terminal (SIGHUP) or Ctrl-C there does not reach the job.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let mut bg = cmd
        .spawn()
        .map_err(|e| Failure::new(10, format!("cannot start {}: {e}", exe.display())))?;
    drop(cmd); // closes our copy of the pipe's write end, so EOF means the wrapper let go of it
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(rd)),
        &mut line,
    );
    let msg: Option<serde_json::Value> = serde_json::from_str(line.trim()).ok();
    match msg {
        Some(v) if v.get("id").is_some() => {
            if opts.json {
                println!("{v}");
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
            }
            Ok(0)
        }
        Some(v) => Err(Failure::new(
            v["code"].as_i64().unwrap_or(10) as i32,
            v["error"]
                .as_str()
                .unwrap_or("the background wrapper failed")
                .to_string(),
        )),
        None => {
            let st = bg.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(Failure::new(
                10,
                format!("the background wrapper ended ({st}) before the job was recorded running"),
            ))
        }
    }
}
