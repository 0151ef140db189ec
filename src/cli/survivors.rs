//! What still runs of a lost job, and stopping it.
//!
//! A job is recorded `lost` when its holder died or wedged, but its child's process group can live
//! on: PR_SET_PDEATHSIG stops only the child the wrapper spawned (`sh` in `sh -c 'sleep 300'`), not
//! what that child started, and a SIGSTOPped wrapper stops nothing at all. No wrapper watches those
//! processes any more, so `cancel` stops them and `gc` keeps the record while they run.
//!
//! The members come from the platform (`/proc` on Linux; on macOS `proc_listpids`, then
//! `proc_pidinfo` and `KERN_PROCARGS2`, which answer only for this user's processes, so another
//! user's are not even seen there). A process is signalled only when it is proven to be the job's (protocol.md 8), and
//! always through a pin (a pidfd on Linux; on macOS its start time is read again right before the
//! signal), never by a group number:
//! - the recorded child, the group's leader, by its pid and start time;
//! - any member of the group while that leader lives: the group's number is the leader's pid, so
//!   while the leader lives no other group can have it;
//! - once the leader is gone, a member that started no earlier than it and whose environment
//!   carries the job's `TETHER_JOB_ID`, or whose parent was already proven.
//!
//! Members that match none of these are reported and left alone: the group number may have been
//! reused by an unrelated group after the job's emptied.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde::Serialize;

use crate::process::{self, Member, Pinned};
use crate::record::Record;

/// How long to wait for the survivors to die after SIGKILL: it cannot be ignored, so this only
/// bounds a process stuck in the kernel (uninterruptible I/O).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often the group is looked at again while waiting: there is no pidfd for a group, and new
/// members forked meanwhile must be found and stopped too.
const RESCAN: Duration = Duration::from_millis(20);

/// The running members of a job's group, split by whether they can be proven to be the job's.
pub struct Found {
    pub pgid: u32,
    pub proven: Vec<(Member, Pinned)>,
    pub unproven: Vec<u32>,
}

/// What `stop` did, as `cancel --json` and `gc --json` report it.
#[derive(Debug, Default, Serialize)]
pub struct Stopped {
    /// The job's process group.
    pub pgid: u32,
    /// Every process signalled, in the order found.
    pub pids: Vec<u32>,
    /// "SIGTERM", then "SIGKILL" if some were still running after the grace period.
    pub signals: Vec<&'static str>,
    /// Whether every proven process had ended when `stop` returned.
    pub ended: bool,
    /// Members of the group that could not be proven to be the job's; never signalled.
    pub unproven: Vec<u32>,
    /// Signals that could not be delivered.
    pub errors: Vec<String>,
}

/// Orders two start tokens of the same platform; None when they cannot be compared.
fn start_order(a: &str, b: &str) -> Option<Ordering> {
    let (pa, va) = a.split_once(':')?;
    let (pb, vb) = b.split_once(':')?;
    if pa != pb {
        return None;
    }
    let num = |v: &str| -> Option<(u64, u64)> {
        match v.split_once('.') {
            Some((s, f)) => Some((s.parse().ok()?, f.parse().ok()?)),
            None => Some((v.parse().ok()?, 0)),
        }
    };
    Some(num(va)?.cmp(&num(vb)?))
}

/// The running members of the job's group, proven or not; `known` are pids already proven (and
/// pinned) by an earlier look, whose children are the job's too. Empty when the record names no
/// child, or names one on another machine or boot, where its pids mean nothing here.
pub fn find(rec: &Record, known: &[u32]) -> Found {
    let mut found = Found {
        pgid: 0,
        proven: Vec::new(),
        unproven: Vec::new(),
    };
    let Some(child) = &rec.child else {
        return found;
    };
    found.pgid = child.pgid;
    let reader = process::reader();
    // Pids name processes only on the machine, boot and pid namespace that numbered them; an
    // unrecorded or unknown namespace proves nothing (protocol.md 7.4, R3a).
    if !crate::verdict::pid_visible(&rec.holder, &reader) {
        return found;
    }
    let mut members = process::group_members(child.pgid);
    // Oldest first, so a parent is proven before its children are looked at.
    members.sort_by(|a, b| start_order(&a.start, &b.start).unwrap_or(Ordering::Equal));
    let leader_alive = members
        .iter()
        .any(|m| m.pid == child.pgid && child.pid == child.pgid && m.start == child.start);
    let env_entry = format!("TETHER_JOB_ID={}", rec.id);
    let mut proven_pids: Vec<u32> = known.to_vec();
    for m in members {
        if known.contains(&m.pid) {
            continue;
        }
        let not_older = start_order(&m.start, &child.start).is_some_and(|o| o != Ordering::Less);
        let tied = (m.pid == child.pid && m.start == child.start)
            || leader_alive
            || (not_older && process::environ_has(m.pid, &env_entry) == Some(true))
            || (not_older && proven_pids.contains(&m.ppid));
        // Pinned, then checked again by start time: a pid reused since the listing is refused.
        match tied.then(|| Pinned::open(m.pid, &m.start, rec.holder.pid_ns.as_deref())) {
            Some(Ok(pin)) => {
                proven_pids.push(m.pid);
                found.proven.push((m, pin));
            }
            Some(Err(_)) => {} // gone meanwhile
            None => found.unproven.push(m.pid),
        }
    }
    found
}

/// Stops every proven survivor: SIGTERM, then SIGKILL to those still running after `grace`,
/// looking again for new members all along. Returns None when nothing proven was running.
pub fn stop(rec: &Record, grace: Duration) -> Option<Stopped> {
    let first = find(rec, &[]);
    if first.proven.is_empty() {
        return (!first.unproven.is_empty()).then(|| Stopped {
            pgid: first.pgid,
            ended: true,
            unproven: first.unproven,
            ..Stopped::default()
        });
    }
    let mut s = Stopped {
        pgid: first.pgid,
        signals: vec!["SIGTERM"],
        unproven: first.unproven.clone(),
        ..Stopped::default()
    };
    let mut pins: BTreeMap<u32, Pinned> = BTreeMap::new();
    adopt(first, &mut s, &mut pins, Signal::TERM);
    s.ended = wait_ended(rec, grace, &mut pins, &mut s, Signal::TERM);
    if !s.ended {
        s.signals.push("SIGKILL");
        for pin in pins.values() {
            send(pin, Signal::KILL, &mut s.errors);
        }
        s.ended = wait_ended(rec, KILL_WAIT, &mut pins, &mut s, Signal::KILL);
    }
    Some(s)
}

/// Signals newly proven members with `sig` and keeps their pins; notes unproven ones once.
fn adopt(found: Found, s: &mut Stopped, pins: &mut BTreeMap<u32, Pinned>, sig: Signal) {
    for (m, pin) in found.proven {
        send(&pin, sig, &mut s.errors);
        s.pids.push(m.pid);
        pins.insert(m.pid, pin);
    }
    for p in found.unproven {
        if !s.unproven.contains(&p) {
            s.unproven.push(p);
        }
    }
}

/// Waits up to `within` for every pinned process to end, signalling members that appear meanwhile
/// with `sig`. True when none is left.
fn wait_ended(
    rec: &Record,
    within: Duration,
    pins: &mut BTreeMap<u32, Pinned>,
    s: &mut Stopped,
    sig: Signal,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        pins.retain(|_, pin| !pin.wait_exit(Duration::ZERO));
        let known: Vec<u32> = pins.keys().copied().collect();
        let more = find(rec, &known);
        let none_new = more.proven.is_empty();
        adopt(more, s, pins, sig);
        if pins.is_empty() && none_new {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(RESCAN);
    }
}

fn send(pin: &Pinned, sig: Signal, errors: &mut Vec<String>) {
    if let Err(e) = pin.signal(sig) {
        errors.push(format!("{sig:?} to process {}: {e}", pin.pid()));
    }
}

/// "process 123" or "processes 123, 456": for messages.
pub fn pid_list(pids: &[u32]) -> String {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    match pids.len() {
        1 => format!("process {}", list[0]),
        _ => format!("processes {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_tokens_order_numerically_within_a_platform() {
        assert_eq!(start_order("linux:9", "linux:10"), Some(Ordering::Less));
        assert_eq!(start_order("linux:10", "linux:10"), Some(Ordering::Equal));
        assert_eq!(
            start_order("macos:5.000010", "macos:5.000002"),
            Some(Ordering::Greater)
        );
        assert_eq!(start_order("linux:1", "macos:1.0"), None);
        assert_eq!(start_order("garbage", "linux:1"), None);
    }
}
