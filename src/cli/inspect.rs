//! `tether inspect`: the evidence behind a verdict, for a person working out why a job is judged
//! the way it is. The evidence is gathered once into a typed view (`Evidence`), which `--json`
//! serializes as it is and the text printer lays out; the two can never show different facts.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::view::{self, LeaseView};
use super::{CliResult, exit, settle_arg};
use crate::clock::{Timestamp, short_duration};
use crate::process;
use crate::reader::settle::Judged;
use crate::record::{Child, Exit, Holder, LateResult, Progress, Reason, Status};
use crate::store::etcd_rules::ClusterEvidence;
use crate::verdict::{ClockRule, LeaseAge, Outcome, Probe, Reader, Rule, lease_age, pid_visible};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `inspect --json` (protocol.md 9.1): the job as `status --json` shows it, each recorded process
/// with what is found under its pid now, the reader's side, and the verdict with its rule.
#[derive(Serialize)]
struct Evidence<'a> {
    id: &'a str,
    name: &'a Option<String>,
    status: Status,
    reason: Option<Reason>,
    exit: &'a Option<Exit>,
    argv: &'a [String],
    meta: &'a crate::meta::Meta,
    unique: &'a Option<String>,
    created_at: Timestamp,
    finished_at: Option<Timestamp>,
    progress: &'a Progress,
    lease: LeaseEvidence,
    holder: HolderEvidence<'a>,
    child: Option<ChildEvidence<'a>>,
    late: &'a [LateResult],
    rule: Rule,
    reaped: bool,
    unsaved: &'a Option<String>,
    /// The probe the verdict used (skipped, so `gone`, for a terminal record).
    probe: &'a Probe,
    reader: ReaderView<'a>,
    verdict: VerdictView,
    /// The status in the record, before this reader's verdict.
    recorded_status: Status,
    /// On a cluster store: what the cluster holds of the lease, which alone judges its expiry
    /// (protocol.md 11.4). Absent on the file store.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a ClusterEvidence>,
}

#[derive(Serialize)]
struct LeaseEvidence {
    #[serde(flatten)]
    base: LeaseView,
    renewed_mono_ms: u64,
    clock: ClockRule,
    age_ms: i64,
    expires_in_ms: i64,
}

#[derive(Serialize)]
struct HolderEvidence<'a> {
    #[serde(flatten)]
    recorded: &'a Holder,
    /// The start token of the process under the holder's pid now, if any.
    start_now: Option<String>,
    probe: Probe,
    /// Whether this reader can see the holder's pids at all (same host, boot and pid namespace:
    /// rules R2, R3a); when not, nothing is probed.
    pid_visible: bool,
}

#[derive(Serialize)]
struct ChildEvidence<'a> {
    #[serde(flatten)]
    recorded: &'a Child,
    alive: bool,
    start_now: Option<String>,
    start_matches: bool,
    #[serde(skip)]
    probe: Probe,
}

#[derive(Serialize)]
struct ReaderView<'a> {
    boot_id: &'a str,
    host: &'a str,
    time_ns: &'a Option<String>,
    pid_ns: &'a Option<String>,
    now: Timestamp,
    now_mono_ms: u64,
}

#[derive(Serialize)]
struct VerdictView {
    verdict: &'static str,
    status: Status,
    reason: Option<Reason>,
    rule: Rule,
    reaped_by_rule: Option<Rule>,
    explanation: String,
}

fn start_of(p: &Probe) -> Option<String> {
    match p {
        Probe::Alive { start } => start.clone(),
        Probe::Gone | Probe::Unseen => None,
    }
}

/// Gathers the evidence: the verdict already settled, and each recorded pid probed again now
/// (the verdict skips the probe for a terminal record; the evidence shows the pid as it is).
fn gather<'a>(
    j: &'a Judged,
    reader: &'a Reader,
    cluster: Option<&'a ClusterEvidence>,
) -> Evidence<'a> {
    let r = &j.record;
    // Where the holder's pid numbers mean its processes at all (R2, R3a); elsewhere not probed.
    let visible = pid_visible(&r.holder, reader);
    let probe_now = |pid| match visible {
        true => process::probe(pid),
        false => Probe::Unseen,
    };
    let holder_now = probe_now(r.holder.pid);
    let child = r.child.as_ref().map(|c| {
        let now = probe_now(c.pid);
        ChildEvidence {
            recorded: c,
            alive: matches!(now, Probe::Alive { .. }),
            start_now: start_of(&now),
            start_matches: matches!(&now, Probe::Alive { start: Some(s) } if *s == c.start),
            probe: now,
        }
    });
    let v = &j.verdict;
    let mut job = view::job_view(j, reader);
    // On etcd the cluster's lease decides, not the record's renewal times and a clock.
    let age: LeaseAge = match cluster {
        Some(c) => {
            let a = crate::store::etcd_rules::cluster_age(r, &c.observed());
            job.lease.expires_at = Timestamp(reader.now.wall.ms().saturating_add(a.expires_in_ms));
            a
        }
        None => lease_age(r, reader),
    };
    let reaped_by = view::reaped_by_rule(r, reader);
    let mut explanation = match cluster {
        Some(c) => c.explain(v.rule),
        None => v.rule.explain().to_owned(),
    };
    if let Some(rule) = reaped_by {
        explanation.push_str(&format!(
            "; it was recorded lost by a reader under {}",
            rule.explain()
        ));
    }
    Evidence {
        id: &r.id,
        name: &r.name,
        status: j.status(),
        reason: v.reason(),
        exit: &r.exit,
        argv: &r.argv,
        meta: &r.meta,
        unique: &r.unique,
        created_at: r.created_at,
        finished_at: r.finished_at,
        progress: &r.progress,
        lease: LeaseEvidence {
            base: job.lease,
            renewed_mono_ms: r.lease.renewed_mono_ms,
            clock: age.clock,
            age_ms: age.age_ms,
            expires_in_ms: age.expires_in_ms,
        },
        holder: HolderEvidence {
            recorded: &r.holder,
            start_now: start_of(&holder_now),
            probe: holder_now,
            pid_visible: visible,
        },
        child,
        late: &r.late,
        rule: v.rule,
        reaped: j.reaped,
        unsaved: &j.unsaved,
        probe: &j.probe,
        reader: ReaderView {
            boot_id: &reader.boot_id,
            host: &reader.host,
            time_ns: &reader.time_ns,
            pid_ns: &reader.pid_ns,
            now: reader.now.wall,
            now_mono_ms: reader.now.mono_ms,
        },
        verdict: VerdictView {
            verdict: match v.outcome {
                Outcome::Active => "active",
                Outcome::Terminal { .. } => "terminal",
                Outcome::Lost { .. } => "lost",
            },
            status: j.status(),
            reason: v.reason(),
            rule: v.rule,
            reaped_by_rule: reaped_by,
            explanation,
        },
        recorded_status: r.status,
        cluster,
    }
}

pub fn inspect(dir: Option<PathBuf>, a: InspectArgs) -> CliResult {
    // settle, not a bare judgment: a lost verdict found here is recorded like everywhere else.
    let (store, id, j) = settle_arg(&dir, &a.id)?;
    let cluster = store.cluster_evidence(&id, &j.record).transpose()?;
    let reader = process::reader();
    let ev = gather(&j, &reader, cluster.as_ref());
    if a.json {
        view::print_json(&ev);
    } else {
        let mut out = Vec::new();
        print_text(&ev, &j, &mut out);
        view::out(out.join("\n"));
    }
    Ok(exit::OK)
}

fn probe_text(p: &Probe, recorded: &str) -> String {
    match p {
        Probe::Gone => "gone (no such process, or a zombie)".into(),
        Probe::Alive { start: None } => "alive, start time unreadable".into(),
        Probe::Alive { start: Some(s) } if s == recorded => format!("alive, started {s} (matches)"),
        Probe::Alive { start: Some(s) } => {
            format!("alive, started {s} (DIFFERS: another process)")
        }
        Probe::Unseen => {
            "not probed: the pid is numbered on another host or in another pid namespace".into()
        }
    }
}

fn same<T: PartialEq>(a: T, b: T) -> &'static str {
    if a == b { "same" } else { "DIFFERENT" }
}

/// An optional record string, cleaned for the terminal, or "unknown".
fn or_unknown(s: &Option<String>) -> String {
    s.as_deref()
        .map(|s| view::clean(s).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The text layout: one fact per line, record strings cleaned (a record is input).
fn print_text(ev: &Evidence<'_>, j: &Judged, out: &mut Vec<String>) {
    let name = ev
        .name
        .as_deref()
        .map(|n| format!(" ({})", view::clean(n)))
        .unwrap_or_default();
    out.push(format!("job        {}{name}", ev.id));
    out.push(format!("command    {}", view::command_line(ev.argv)));
    if !ev.meta.is_empty() {
        let pairs: Vec<String> = ev.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!(
            "meta       {}",
            view::one_line(&view::clean(&pairs.join(" ")), 200)
        ));
    }
    out.push(format!(
        "verdict    {} {}, rule {:?}{}",
        ev.verdict.verdict,
        view::describe(j),
        ev.rule,
        if ev.reaped { " (recorded now)" } else { "" }
    ));
    out.push(format!("           {}", ev.verdict.explanation));
    out.push(format!(
        "recorded   status {}, created {}, finished {}",
        ev.recorded_status,
        ev.created_at,
        ev.finished_at
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    print_processes(ev, out);
    print_lease(ev, out);
    let p = ev.progress;
    let at =
        p.at.map(|t| {
            let ago = short_duration(ev.reader.now.ms().saturating_sub(t.ms()));
            format!("{t} ({ago} ago)")
        })
        .unwrap_or_else(|| "never".into());
    let msg = p.message.as_deref().map(|m| view::one_line(m, 100));
    out.push(format!(
        "progress   {}, last {at}: {}",
        view::beats(p.count),
        msg.as_deref().unwrap_or("-")
    ));
    if p.rejected > 0 {
        out.push(format!(
            "  refused  {} refused beats from other users (notify datagrams not sent by the job's uid)",
            p.rejected
        ));
    }
    if let Some(t) = p.extended_until {
        out.push(format!(
            "  silence  declared by the job until {t} (`tether beat --extend`): no beat due before then"
        ));
    }
    if let Some(o) = &p.probe {
        let state = if o.ok {
            "ok".to_string()
        } else {
            format!("failed ({} in a row)", o.failures)
        };
        out.push(format!(
            "probe      {state} at {} in {}ms: {}",
            o.at,
            o.duration_ms,
            view::one_line(if o.detail.is_empty() { "-" } else { &o.detail }, 100)
        ));
    }
    if let Some(e) = ev.exit {
        out.push(format!("exit       {e}"));
    }
    if ev.late.is_empty() {
        out.push("late       none".into());
    }
    let opt = |x: Option<String>| x.unwrap_or_default();
    for l in ev.late {
        out.push(format!(
            "late       at {} (epoch {}): {} {} {} - {}",
            l.at,
            l.epoch,
            opt(l.status.map(|s| s.to_string())),
            opt(l.reason.map(|s| s.to_string())),
            opt(l.exit.map(|s| s.to_string())),
            view::clean(&l.note)
        ));
    }
}

fn print_processes(ev: &Evidence<'_>, out: &mut Vec<String>) {
    let h = ev.holder.recorded;
    let rd = &ev.reader;
    out.push(format!("holder     pid {}", h.pid));
    out.push(format!(
        "  start    recorded {}; now {}",
        view::clean(&h.start),
        probe_text(&ev.holder.probe, &h.start)
    ));
    out.push(format!(
        "  host     recorded {}, this machine {} ({})",
        view::clean(&h.host),
        rd.host,
        same(&h.host[..], rd.host)
    ));
    out.push(format!(
        "  boot id  recorded {}, this machine {} ({})",
        view::clean(&h.boot_id),
        rd.boot_id,
        same(&h.boot_id[..], rd.boot_id)
    ));
    out.push(format!(
        "  time ns  recorded {}, this process {} ({})",
        or_unknown(&h.time_ns),
        or_unknown(rd.time_ns),
        same(&h.time_ns, rd.time_ns)
    ));
    out.push(format!(
        "  pid ns   recorded {}, this process {} ({})",
        or_unknown(&h.pid_ns),
        or_unknown(rd.pid_ns),
        if ev.holder.pid_visible {
            "same"
        } else if h.host != rd.host || h.boot_id != rd.boot_id {
            "pids not probed: another host or boot"
        } else {
            "DIFFERENT or unknown: pids not probed, the job is judged by its lease alone"
        }
    ));
    match &ev.child {
        Some(c) => {
            let r = c.recorded;
            let now = format!("; now {}", probe_text(&c.probe, &r.start));
            out.push(format!(
                "child      pid {}, pgid {}, start {}{now}",
                r.pid,
                r.pgid,
                view::clean(&r.start)
            ));
        }
        None => out.push("child      none recorded".into()),
    }
}

fn print_lease(ev: &Evidence<'_>, out: &mut Vec<String>) {
    let l = &ev.lease;
    out.push(format!(
        "lease      epoch {}, interval {}, ttl {}",
        l.base.epoch,
        short_duration(l.base.interval_ms as i64),
        short_duration(l.base.ttl_ms as i64)
    ));
    if let Some(c) = ev.cluster {
        return print_cluster_lease(ev, c, out);
    }
    let clock = match l.clock {
        ClockRule::Monotonic => "monotonic clock",
        ClockRule::Wall => "wall clock, 30 s skew allowance",
        ClockRule::Cluster => "etcd cluster's lease",
    };
    out.push(format!(
        "  renewed  {} ({} ago by the {clock})",
        l.base.renewed_at.human(),
        short_duration(l.age_ms)
    ));
    if l.expires_in_ms >= 0 {
        out.push(format!(
            "  expires  in {} ({})",
            short_duration(l.expires_in_ms),
            l.base.expires_at.human()
        ));
    } else {
        out.push(format!(
            "  expired  {} ago ({})",
            short_duration(-l.expires_in_ms),
            l.base.expires_at.human()
        ));
    }
}

/// The lease on a cluster store: what the cluster holds, which alone judges expiry (11.4).
fn print_cluster_lease(ev: &Evidence<'_>, c: &ClusterEvidence, out: &mut Vec<String>) {
    let l = &ev.lease;
    out.push(format!(
        "  judged   by the etcd cluster at {}: no clock of this host or the holder's, no skew allowance",
        c.store
    ));
    out.push(format!(
        "  live key {} {} at revision {} (the record last written at revision {})",
        c.live_key,
        if c.live { "present" } else { "absent" },
        c.revision,
        c.record_mod_revision
    ));
    match (&c.lease, c.remaining_ttl_s, c.granted_ttl_s) {
        (Some(id), Some(left), Some(g)) => out.push(format!(
            "  etcd     lease {id}: under {} s of {g} s left (LeaseTimeToLive, whole seconds); renewals are keepalives on it, not record writes",
            left + 1
        )),
        (Some(id), _, _) => out.push(format!("  etcd     lease {id}: no longer held by the cluster")),
        (None, _, _) => out.push("  etcd     no lease recorded".into()),
    }
    if l.expires_in_ms >= 0 {
        out.push(format!(
            "  expires  in at most {} ({})",
            short_duration(l.expires_in_ms),
            l.base.expires_at.human()
        ));
    } else {
        out.push("  expired  the cluster no longer holds the lease".into());
    }
}
