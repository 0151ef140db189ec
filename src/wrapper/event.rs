//! The event loop: everything the wrapper waits for becomes one `Event`, and `State` handles it.
//! The loop ends when the child has exited; then the output is drained and the end recorded.

use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::oneshot;

use super::detach::Ready;
use super::heartbeat::Beat;
use super::setup::Setup;
use super::state::State;
use super::streams::Which;
use super::{Mode, Options, note, signals::Signals, tick::Ticker};
use crate::clock::mono_ms;
use crate::record::{Exit, ProbeOutcome};

pub enum Event {
    /// The child exited (how, or why that could not be learned).
    Exited(Result<Exit, String>),
    /// Time to renew the lease.
    Tick,
    /// A beat arrived through the channel (a datagram, or changes of the heartbeat file).
    Beat(Beat),
    /// A read on the child's stdout or stderr returned.
    Output(Which, std::io::Result<usize>),
    /// The wrapper received a signal to pass on to the job.
    Signal(Signal),
    /// The grace period after SIGTERM is over.
    KillDue,
    /// A liveness probe finished.
    Probe(crate::record::ProbeOutcome),
    /// The beat deadline passes before the next tick (see `State::stall_check_at`).
    StallDue,
    /// The answer to a renewal started at a tick (etcd): when it was sent, and what came of it.
    Renewed(u64, crate::store::Renewal),
}

/// What the loop waits on besides `State`'s own channel and streams.
struct Sources {
    exit_rx: oneshot::Receiver<std::io::Result<Exit>>,
    ticker: Ticker,
    signals: Signals,
    dgram: [u8; 4096],
    /// Outcomes from the prober task, and how many failures in a row make the job unhealthy.
    probes: Option<(tokio::sync::mpsc::Receiver<ProbeOutcome>, u32)>,
    /// Told of each tick when the prober paces itself by the renewal tick (see `probe::run`).
    probe_ticks: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The last event was a tick: the job is quiet, so the next wait may be the idle one
    /// (`idle.rs`). After anything else the loop goes through tokio until a tick comes.
    quiet: bool,
}

/// Runs the job to its end and returns the wrapper's exit code.
pub async fn supervise(setup: Setup, opts: &Options, ready: Option<Ready>) -> i32 {
    let Setup {
        held,
        exit_rx,
        ticker,
        signals,
        terminal,
        probe,
    } = setup;
    let mut src = Sources {
        exit_rx,
        ticker,
        signals,
        dgram: [0u8; 4096],
        probes: None,
        probe_ticks: None,
        quiet: false,
    };
    let mut st = State::new(held, opts, ready);
    // The first renewal records the job running; the ticker's first tick comes one interval later.
    st.renew(false);
    // Probes start once the job runs; the task ends with the runtime (or when the loop drops the
    // receiver), and an exec probe in flight takes its process group with it.
    if let Some((cfg, env)) = probe {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let threshold = cfg.failures;
        if cfg.every == opts.interval {
            src.probe_ticks = Some(Default::default());
        }
        tokio::spawn(super::probe::run(cfg, env, tx, src.probe_ticks.clone()));
        src.probes = Some((rx, threshold));
    }
    let exit = loop {
        let ev = next(&mut src, &mut st).await;
        src.quiet = matches!(ev, Event::Tick);
        match ev {
            Event::Exited(r) => break r,
            Event::Probe(o) => {
                let threshold = src.probes.as_ref().map_or(1, |p| p.1);
                st.probed(o, threshold);
            }
            Event::Tick => {
                if let Some(n) = &src.probe_ticks {
                    n.notify_one();
                }
                st.handle(Event::Tick, &src.dgram);
            }
            ev => st.handle(ev, &src.dgram),
        }
    };
    // The shell that started us gets its terminal back as soon as the job has ended.
    drop(terminal);
    // The child has exited but is not reaped: its group id is still ours to signal. Leftover members
    // would outlive the job unseen, so they go now.
    st.spawned.signal_group(Signal::KILL);
    drain(&mut src, &mut st).await;
    let reaped = st.spawned.reap();
    let exit = match (exit, reaped) {
        (Ok(e), _) | (Err(_), Ok(e)) => e,
        (Err(e), Err(e2)) => {
            note!("cannot learn how the child ended: {e}; {e2}");
            Exit::Signal(0)
        }
    };
    st.channel.poll(&mut st.beats, true);
    st.finish(exit)
}

/// The longest the output is drained after the child's exit, whatever the ttl.
const DRAIN_MAX: Duration = Duration::from_secs(1);

/// After the child's exit, what is still in the pipes is the job's output: it is read (and, in
/// output mode, counted as beats) before the end is recorded. A process that escaped the group
/// (`setsid daemon &`) may hold a pipe open forever, so both pipes share one deadline, a quarter of
/// the ttl at most, and the lease is renewed meanwhile: the job is never judged lost while it
/// drains.
async fn drain(src: &mut Sources, st: &mut State) {
    let limit = Duration::from_millis(st.ttl_ms / 4).min(DRAIN_MAX);
    let deadline = tokio::time::Instant::now() + limit;
    let output_beats = st.channel.mode == Mode::Output;
    while st.streams.open() {
        let renewing = st.renewing;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = src.ticker.tick(), if renewing => st.renew(false),
            (sent, r) = answer(&mut st.renewer) => st.answered(sent, r),
            (w, r) = st.streams.read() => {
                let lines = st.streams.take(w, r);
                if let (Some(n), true) = (lines, output_beats) {
                    st.beats.beat(mono_ms(), n);
                }
            }
        }
    }
}

async fn next(src: &mut Sources, st: &mut State) -> Event {
    if src.quiet && super::idle::tick(&mut src.ticker, &src.signals, src.probes.is_some(), st) {
        return Event::Tick;
    }
    let kill_at = st.kill_at;
    let renewing = st.renewing;
    let stall_at = st.stall_check_at();
    tokio::select! {
        r = &mut src.exit_rx => Event::Exited(match r {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the exit watcher stopped".to_string()),
        }),
        _ = src.ticker.tick(), if renewing => Event::Tick,
        b = st.channel.next(&mut src.dgram) => Event::Beat(b),
        (w, r) = st.streams.read() => Event::Output(w, r),
        s = src.signals.recv() => Event::Signal(s),
        _ = sleep_until_opt(kill_at) => Event::KillDue,
        _ = sleep_until_opt(stall_at) => Event::StallDue,
        Some(o) = recv_opt(&mut src.probes) => Event::Probe(o),
        (sent, r) = answer(&mut st.renewer) => Event::Renewed(sent, r),
    }
}

/// The answer to a renewal the store runs on this thread (etcd); pending otherwise.
async fn answer(r: &mut Option<crate::store::AnyRenewer>) -> (u64, crate::store::Renewal) {
    match r {
        Some(r) => r.answer().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(
    r: &mut Option<(tokio::sync::mpsc::Receiver<ProbeOutcome>, u32)>,
) -> Option<ProbeOutcome> {
    match r {
        Some((rx, _)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl State {
    fn handle(&mut self, ev: Event, dgram: &[u8]) {
        let output_beats = self.channel.mode == Mode::Output;
        match ev {
            Event::Exited(_) | Event::Probe(_) => {}
            Event::Tick => {
                self.take_buffered_beats();
                self.renew(true);
            }
            Event::StallDue => {
                self.take_buffered_beats();
                self.check_stall();
            }
            Event::Beat(Beat::File(n)) => self.channel.file_beats(&mut self.beats, n),
            Event::Beat(Beat::Datagram(n)) => {
                let now = mono_ms();
                for notice in super::sd_notify::parse(&dgram[..n]) {
                    self.beats.apply(notice, now);
                }
                if self.beats.triggered && self.renewing {
                    self.stall();
                }
            }
            Event::Beat(Beat::Failed(_)) => {}
            Event::Output(w, r) => {
                if let Some(lines) = self.streams.take(w, r) {
                    if output_beats {
                        self.beats.beat(mono_ms(), lines);
                    }
                }
            }
            Event::Signal(sig) => self.forward(sig),
            Event::Renewed(sent, r) => self.answered(sent, r),
            Event::KillDue => {
                self.spawned.signal_group(Signal::KILL);
                self.kill_at = None;
            }
        }
    }
}

impl State {
    /// In output mode, after a stop the output written meanwhile is beats already given: take it
    /// in before the stall is judged, as `Channel::poll` does for queued datagrams.
    fn take_buffered_beats(&mut self) {
        if self.channel.mode == Mode::Output {
            if let Some(lines) = self.streams.take_buffered() {
                self.beats.beat(mono_ms(), lines);
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
