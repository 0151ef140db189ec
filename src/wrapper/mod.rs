//! `tether run`: the wrapper that holds a job's lease while its child is healthy.
//!
//! One thread does the supervising (a current-thread tokio runtime on the main thread): the child is
//! spawned from it, so PR_SET_PDEATHSIG ties the child to the wrapper's whole life, and every record
//! write happens in one place, in order. A second, tiny thread only blocks in `waitid(WNOWAIT)`.
//!
//! Reading order: `setup` (options, channel, record, child; one error), `event` (the loop: one
//! `Event` at a time, handled by `State`), `state` (the lease and the beats), `end` (recording the
//! end), `streams` (the child's output), `signals`, `detach` (the background half), `beat`
//! (`tether beat`). The Linux-only calls (pidfd, PR_SET_PDEATHSIG, timerfd, pipe2) are in `child`,
//! `tick` and `detach` only.

mod beat;
pub mod child;
mod detach;
mod end;
mod error;
mod event;
pub mod heartbeat;
mod idle;
pub mod log;
mod notes;
mod private;
mod probe;
mod sd_notify;
mod setup;
mod signals;
mod state;
mod streams;
pub mod terminal;
mod tick;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

pub use beat::beat;
pub use detach::{Ready, detach};
pub use error::Error;
pub use heartbeat::Mode;

/// The longest silence a job may declare (`tether beat --extend`, `EXTEND_TIMEOUT_USEC=`, the
/// heartbeat file's `extend`); longer requests are cut to it.
pub const MAX_EXTEND: &str = "1d";
/// `MAX_EXTEND` in milliseconds.
pub const MAX_EXTEND_MS: u64 = 86_400_000;

/// The renewal interval when `--interval` is not given: a third of the ttl, as etcd's clients
/// keep a lease alive (Kubernetes' kubelet renews at a quarter, systemd's watchdog asks for a
/// half). A crash is seen at once through the pidfd, whatever the interval; the interval only says
/// how many renewals may be missed before a wedged or stopped wrapper's lease expires (two here),
/// and each renewal is an idle job's only wake-up. protocol.md 4.1 and README "Defaults" say more.
pub fn default_interval(ttl: Duration) -> Duration {
    Duration::from_millis((ttl.as_millis() / 3).clamp(1, u64::MAX as u128) as u64)
}

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
    /// Labels stored in the record before the child starts (`--meta`).
    pub meta: crate::meta::Meta,
    /// At most one active job per key (`--unique`).
    pub unique: Option<String>,
    /// With `unique`: wait for an active holder to end instead of refusing (`--unique-wait`).
    pub unique_wait: bool,
    pub command: Vec<String>,
    pub probe: ProbeOptions,
}

/// `--probe SPEC` and its settings (see `probe`).
#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    pub spec: Option<String>,
    /// Default: the renewal interval.
    pub every: Option<Duration>,
    pub timeout: Duration,
    pub failures: u32,
    pub grace: Duration,
}

/// Diagnostics of the wrapper itself (see `notes`): never in the job's log.
macro_rules! note {
    ($($t:tt)*) => {{
        $crate::wrapper::notes::say(format_args!($($t)*));
    }};
}
pub(crate) use note;

/// Runs the job in the foreground (or as the background half of `--detach` when `ready` is set) and
/// returns the wrapper's exit code. A failure before the job runs is reported once: to the launcher
/// waiting on `ready`, and as the returned error.
pub fn run(opts: Options, ready: Option<Ready>) -> Result<i32, Error> {
    run_job(opts, ready).1
}

/// `run`, also naming the job it ran (None when setup failed before the job had an id), so the
/// foreground `run --json` can print the job's final record (issue 15 item 6).
pub fn run_job(
    opts: Options,
    ready: Option<Ready>,
) -> (Option<crate::id::JobId>, Result<i32, Error>) {
    // Before the runtime, the store or anything else can start a thread (`signal_fd` says why).
    // Without a descriptor the handlers are installed instead; a signal arriving before either
    // exists takes its default action, as it always did.
    let sigfd = crate::platform::signal_fd(&signals::FORWARDED).unwrap_or(None);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = Error::io(format!("cannot start the event loop: {e}"));
            return (None, Err(failed(ready, e)));
        }
    };
    rt.block_on(async {
        match setup::setup(&opts, ready.is_some(), sigfd).await {
            Ok(s) => {
                let id = s.held.job.id.clone();
                announce(&id, &opts, ready.is_some());
                trim_heap();
                (Some(id), Ok(event::supervise(s, &opts, ready).await))
            }
            Err(e) => (None, Err(failed(ready, e))),
        }
    })
}

/// Names a foreground job on a terminal, as `systemd-run` does, so a person can reach it from
/// another shell (issue 15 item 6). Only on a terminal: a script capturing stderr gets the job's
/// stderr untouched and reads the id from `--json`'s final record instead.
fn announce(id: &crate::id::JobId, opts: &Options, background: bool) {
    use std::io::IsTerminal as _;
    if !background && !opts.json && std::io::stderr().is_terminal() {
        eprintln!("tether: job {id} started; `tether status {id}` from another shell");
    }
}

/// Gives the heap pages that startup used and freed (argument parsing, the record's JSON) back to
/// the kernel: glibc keeps them, dirty, for reuse that never comes in an idle wrapper, and with a
/// thousand wrappers that is most of their private memory (issue 13 item 4: the heap was 176 kB of
/// an idle wrapper's 396 kB private dirty).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn failed(ready: Option<Ready>, e: Error) -> Error {
    if let Some(r) = ready {
        r.failed(&e);
    }
    e
}
