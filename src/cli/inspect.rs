//! `tether inspect`: the evidence behind a verdict, for a person working out why a job is judged
//! the way it is.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::view::{self};
use super::{CliResult, exit, settle_arg};
use crate::clock::short_duration;
use crate::process;
use crate::verdict::{ClockRule, Probe, expires_at, lease_age, pid_visible};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Job id or unique prefix
    pub id: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
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

fn same(a: &str, b: &str) -> &'static str {
    if a == b { "same" } else { "DIFFERENT" }
}

pub fn inspect(dir: Option<PathBuf>, a: InspectArgs) -> CliResult {
    // settle, not a bare judgment: a lost verdict found here is recorded like everywhere else.
    let (_store, _id, j) = settle_arg(&dir, &a.id)?;
    let reader = process::reader();
    let r = &j.record;
    // The probe in `j` is skipped for terminal records; the evidence shows the pid as it is now,
    // where that number means the holder's process at all (R2, R3a).
    let visible = pid_visible(&r.holder, &reader);
    let probe_now = |pid| match visible {
        true => process::probe(pid),
        false => Probe::Unseen,
    };
    let holder_now = probe_now(r.holder.pid);
    let child_now = r.child.as_ref().map(|c| probe_now(c.pid));
    let age = lease_age(r, &reader);
    let v = &j.verdict;
    let reaped_by = view::reaped_by_rule(r, &reader);
    let mut explanation = v.rule.explain().to_owned();
    if let Some(rule) = reaped_by {
        explanation.push_str(&format!(
            "; it was recorded lost by a reader under {}",
            rule.explain()
        ));
    }
    let verdict_word = match v.outcome {
        crate::verdict::Outcome::Active => "active",
        crate::verdict::Outcome::Terminal { .. } => "terminal",
        crate::verdict::Outcome::Lost { .. } => "lost",
    };
    if a.json {
        let mut o = view::job_json(&j, &reader);
        o["holder"]["start_now"] = json!(match &holder_now {
            Probe::Alive { start } => start.clone(),
            Probe::Gone | Probe::Unseen => None,
        });
        o["holder"]["probe"] = json!(holder_now);
        o["holder"]["pid_visible"] = json!(visible);
        o["probe"] = json!(j.probe);
        if let (Some(c), Some(p)) = (r.child.as_ref(), child_now.as_ref()) {
            o["child"]["alive"] = json!(matches!(p, Probe::Alive { .. }));
            o["child"]["start_now"] = json!(match p {
                Probe::Alive { start } => start.clone(),
                Probe::Gone | Probe::Unseen => None,
            });
            o["child"]["start_matches"] =
                json!(matches!(p, Probe::Alive { start: Some(s) } if *s == c.start));
        }
        o["reader"] = json!({
            "boot_id": reader.boot_id,
            "host": reader.host,
            "time_ns": reader.time_ns,
            "pid_ns": reader.pid_ns,
            "now": reader.now.wall,
            "now_mono_ms": reader.now.mono_ms,
        });
        o["lease"]["renewed_mono_ms"] = json!(r.lease.renewed_mono_ms);
        o["lease"]["clock"] = json!(age.clock);
        o["lease"]["age_ms"] = json!(age.age_ms);
        o["lease"]["expires_in_ms"] = json!(age.expires_in_ms);
        o["verdict"] = json!({
            "verdict": verdict_word,
            "status": j.status(),
            "reason": v.reason(),
            "rule": v.rule,
            "reaped_by_rule": reaped_by,
            "explanation": explanation,
        });
        o["recorded_status"] = json!(r.status);
        view::print_json(&o);
        return Ok(exit::OK);
    }
    let out = |s: String| view::out(s);
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" ({})", view::clean(n)))
        .unwrap_or_default();
    out(format!("job        {}{name}", r.id));
    out(format!("command    {}", view::command_line(&r.argv)));
    if !r.meta.is_empty() {
        let pairs: Vec<String> = r.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out(format!(
            "meta       {}",
            view::one_line(&view::clean(&pairs.join(" ")), 200)
        ));
    }
    out(format!(
        "verdict    {} {}, rule {:?}{}",
        verdict_word,
        view::describe(&j),
        v.rule,
        if j.reaped { " (recorded now)" } else { "" }
    ));
    out(format!("           {explanation}"));
    out(format!(
        "recorded   status {}, created {}, finished {}",
        r.status,
        r.created_at,
        r.finished_at
            .map(|f| f.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    out(format!("holder     pid {}", r.holder.pid));
    out(format!(
        "  start    recorded {}; now {}",
        view::clean(&r.holder.start),
        probe_text(&holder_now, &r.holder.start)
    ));
    out(format!(
        "  host     recorded {}, this machine {} ({})",
        view::clean(&r.holder.host),
        reader.host,
        same(&r.holder.host, &reader.host)
    ));
    out(format!(
        "  boot id  recorded {}, this machine {} ({})",
        view::clean(&r.holder.boot_id),
        reader.boot_id,
        same(&r.holder.boot_id, &reader.boot_id)
    ));
    let ns = |n: &Option<String>| {
        n.as_deref()
            .map(|n| view::clean(n).into_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    out(format!(
        "  time ns  recorded {}, this process {} ({})",
        ns(&r.holder.time_ns),
        ns(&reader.time_ns),
        if r.holder.time_ns == reader.time_ns {
            "same"
        } else {
            "DIFFERENT"
        }
    ));
    out(format!(
        "  pid ns   recorded {}, this process {} ({})",
        ns(&r.holder.pid_ns),
        ns(&reader.pid_ns),
        if visible {
            "same"
        } else if r.holder.host != reader.host || r.holder.boot_id != reader.boot_id {
            "pids not probed: another host or boot"
        } else {
            "DIFFERENT or unknown: pids not probed, the job is judged by its lease alone"
        }
    ));
    match (&r.child, &child_now) {
        (Some(c), Some(p)) => out(format!(
            "child      pid {}, pgid {}, start {}; now {}",
            c.pid,
            c.pgid,
            view::clean(&c.start),
            probe_text(p, &c.start)
        )),
        _ => out("child      none recorded".into()),
    }
    out(format!(
        "lease      epoch {}, interval {}, ttl {}",
        r.lease.epoch,
        short_duration(r.lease.interval_ms as i64),
        short_duration(r.lease.ttl_ms as i64)
    ));
    let clock = match age.clock {
        ClockRule::Monotonic => "monotonic clock",
        ClockRule::Wall => "wall clock, 30 s skew allowance",
        ClockRule::Cluster => "etcd cluster's lease",
    };
    out(format!(
        "  renewed  {} ({} ago by the {clock})",
        r.lease.renewed_at,
        short_duration(age.age_ms)
    ));
    if age.expires_in_ms >= 0 {
        out(format!(
            "  expires  in {} ({})",
            short_duration(age.expires_in_ms),
            expires_at(&age, &reader.now)
        ));
    } else {
        out(format!(
            "  expired  {} ago ({})",
            short_duration(-age.expires_in_ms),
            expires_at(&age, &reader.now)
        ));
    }
    let at = r
        .progress
        .at
        .map(|t| {
            format!(
                "{t} ({} ago)",
                short_duration(reader.now.wall.ms() - t.ms())
            )
        })
        .unwrap_or_else(|| "never".into());
    out(format!(
        "progress   {}, last {at}: {}",
        view::beats(r.progress.count),
        r.progress
            .message
            .as_deref()
            .map(|m| view::one_line(m, 100))
            .unwrap_or_else(|| "-".into())
    ));
    if r.progress.rejected > 0 {
        out(format!(
            "  refused  {} refused beats from other users (notify datagrams not sent by the job's uid)",
            r.progress.rejected
        ));
    }
    if r.exit.is_some() {
        out(format!(
            "exit       {}",
            r.exit.map(|e| e.to_string()).unwrap_or_default()
        ));
    }
    if r.late.is_empty() {
        out("late       none".into());
    }
    for l in &r.late {
        out(format!(
            "late       at {} (epoch {}): {} {} {} - {}",
            l.at,
            l.epoch,
            l.status.map(|s| s.to_string()).unwrap_or_default(),
            l.reason.map(|s| s.to_string()).unwrap_or_default(),
            l.exit.map(|s| s.to_string()).unwrap_or_default(),
            view::clean(&l.note)
        ));
    }
    Ok(exit::OK)
}
