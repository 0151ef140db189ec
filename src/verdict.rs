//! The one function that decides whether a job is alive (protocol.md section 7).
//!
//! Pure on purpose: every command, every test vector and any other implementation must reach the same
//! answer from the same record, probe facts and clocks, so nothing here reads a file or a clock.

use serde::Serialize;

use crate::clock::{Now, Timestamp};
use crate::record::{Holder, Reason, Record, Status};

/// Allowance for clock skew when a lease is judged by wall time (protocol.md 7.3).
pub const SKEW_ALLOWANCE_MS: i64 = 30_000;

/// What the reader learned about the holder's pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "holder", rename_all = "lowercase")]
pub enum Probe {
    /// No such process, or a zombie.
    Gone,
    /// It exists; `start` is its start-time token, or None if it could not be read.
    Alive { start: Option<String> },
    /// Not probed: the pid is numbered on another host or in another (or unknown) pid namespace,
    /// so a process with that number here says nothing about the holder (`pid_visible`).
    Unseen,
}

/// Where the reader stands: its machine identity and its clocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    pub boot_id: String,
    pub host: String,
    pub time_ns: Option<String>,
    /// The pid namespace the reader's pids are numbered in; None when it cannot tell.
    pub pid_ns: Option<String>,
    pub now: Now,
}

/// The rule of protocol.md 7.4 that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Rule {
    R1,
    R2,
    R3,
    /// Between R3 and R4: the pid cannot be probed from here (protocol.md 7.4).
    R3a,
    R4,
    R5,
    R6,
    R7,
}

impl Rule {
    /// One sentence naming the rule, for `tether inspect`.
    pub fn explain(self) -> &'static str {
        match self {
            Rule::R1 => "R1: the record is terminal; terminal states are final",
            Rule::R2 => {
                "R2: the holder runs on another host, so only its lease is judged, on wall time with a 30 s skew allowance"
            }
            Rule::R3 => {
                "R3: the record was written under another boot of this host; every lease of an old boot is dead"
            }
            Rule::R3a => {
                "R3a: the holder's pid is numbered in another pid namespace (or one that cannot be told), so it is not probed and only its lease is judged"
            }
            Rule::R4 => {
                "R4: the holder process no longer exists (or is a zombie) and never wrote a terminal state"
            }
            Rule::R5 => {
                "R5: a process with the holder's pid exists but started at another time: the pid was reused"
            }
            Rule::R6 => {
                "R6: the holder process exists but has not renewed its lease within the ttl: it is wedged or stopped"
            }
            Rule::R7 => "R7: the holder is alive and its lease is current",
        }
    }
}

/// Which clock measured the lease's age (protocol.md 7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockRule {
    Monotonic,
    Wall,
    /// Judged by the etcd cluster that keeps the lease (protocol.md section 11): no reader clock.
    Cluster,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseAge {
    pub clock: ClockRule,
    /// Milliseconds since the last renewal on that clock (wall rule: before the skew allowance).
    pub age_ms: i64,
    /// Milliseconds from now until the expiry of protocol.md 7.3 (wall rule: allowance included);
    /// negative once expired.
    pub expires_in_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Outcome {
    Active,
    Terminal {
        status: Status,
        reason: Option<Reason>,
    },
    Lost {
        reason: Reason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub outcome: Outcome,
    pub rule: Rule,
    /// The lease's age, where the rule looked at it or could have.
    pub lease: Option<LeaseAge>,
}

impl Verdict {
    pub fn is_active(&self) -> bool {
        matches!(self.outcome, Outcome::Active)
    }
    /// The status a reader would report: the recorded one, or `lost`.
    pub fn status(&self, rec: &Record) -> Status {
        match self.outcome {
            Outcome::Active => rec.status,
            Outcome::Terminal { status, .. } => status,
            Outcome::Lost { .. } => Status::Lost,
        }
    }
    pub fn reason(&self) -> Option<Reason> {
        match self.outcome {
            Outcome::Active => None,
            Outcome::Terminal { reason, .. } => reason,
            Outcome::Lost { reason } => Some(reason),
        }
    }
}

/// Whether the reader may probe the holder's pid (protocol.md 7.4, R2 to R3a): same host, same boot,
/// and the same pid namespace, known on both sides. A process with the holder's number seen from
/// anywhere else is some other process, and its absence proves nothing either.
pub fn pid_visible(holder: &Holder, reader: &Reader) -> bool {
    holder.host == reader.host
        && holder.boot_id == reader.boot_id
        && holder.pid_ns.is_some()
        && holder.pid_ns == reader.pid_ns
}

/// Computes the lease's age by protocol.md 7.3.
pub fn lease_age(rec: &Record, reader: &Reader) -> LeaseAge {
    let same_domain = rec.holder.boot_id == reader.boot_id
        && rec.holder.host == reader.host
        && rec.holder.time_ns == reader.time_ns
        && reader.now.mono_ms >= rec.lease.renewed_mono_ms;
    let ttl = rec.lease.ttl_ms.min(i64::MAX as u64) as i64;
    if same_domain {
        let age = (reader.now.mono_ms - rec.lease.renewed_mono_ms).min(i64::MAX as u64) as i64;
        LeaseAge {
            clock: ClockRule::Monotonic,
            age_ms: age,
            expires_in_ms: ttl - age,
        }
    } else {
        let age = reader
            .now
            .wall
            .ms()
            .saturating_sub(rec.lease.renewed_at.ms());
        // Expiry is `renewed_at + ttl + allowance` (7.3), so the time left is measured to that
        // instant: a renewal stamped in the future has more than the ttl left, not exactly the ttl.
        // Expired (negative) exactly when `age - allowance > ttl`, as the protocol states.
        LeaseAge {
            clock: ClockRule::Wall,
            age_ms: age,
            expires_in_ms: ttl.saturating_add(SKEW_ALLOWANCE_MS).saturating_sub(age),
        }
    }
}

/// The decision table of protocol.md 7.4 (R0, an unsupported version, is caught by the parser).
pub fn verdict(rec: &Record, probe: &Probe, reader: &Reader) -> Verdict {
    verdict_with_age(rec, probe, reader, || lease_age(rec, reader))
}

/// The same table with the lease's age supplied by the caller: the etcd store (protocol.md 11.4)
/// passes the cluster's judgment instead of the clocks' one, and every other rule stays as it is.
pub fn verdict_with_age(
    rec: &Record,
    probe: &Probe,
    reader: &Reader,
    age: impl FnOnce() -> LeaseAge,
) -> Verdict {
    let v = |outcome, rule, lease| Verdict {
        outcome,
        rule,
        lease,
    };
    let lost = |reason| Outcome::Lost { reason };
    if rec.status.is_terminal() {
        return v(
            Outcome::Terminal {
                status: rec.status,
                reason: rec.reason,
            },
            Rule::R1,
            None,
        );
    }
    let age = age();
    let expired = age.expires_in_ms < 0;
    if rec.holder.host != reader.host {
        let o = if expired {
            lost(Reason::LeaseExpired)
        } else {
            Outcome::Active
        };
        return v(o, Rule::R2, Some(age));
    }
    if rec.holder.boot_id != reader.boot_id {
        return v(lost(Reason::HostRebooted), Rule::R3, Some(age));
    }
    if !pid_visible(&rec.holder, reader) {
        let o = if expired {
            lost(Reason::LeaseExpired)
        } else {
            Outcome::Active
        };
        return v(o, Rule::R3a, Some(age));
    }
    match probe {
        Probe::Gone => return v(lost(Reason::WorkerExited), Rule::R4, Some(age)),
        Probe::Alive { start: Some(s) } if *s != rec.holder.start => {
            return v(lost(Reason::PidReused), Rule::R5, Some(age));
        }
        Probe::Alive { .. } | Probe::Unseen => {}
    }
    if expired {
        return v(lost(Reason::LeaseExpired), Rule::R6, Some(age));
    }
    v(Outcome::Active, Rule::R7, Some(age))
}

/// When the lease of an active record expires, as a wall-clock instant for display and JSON.
pub fn expires_at(age: &LeaseAge, now: &Now) -> Timestamp {
    now.wall.plus_ms(age.expires_in_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn reader(mono: u64) -> Reader {
        Reader {
            boot_id: "B1".into(),
            host: "h1".into(),
            time_ns: None,
            pid_ns: Some("pid:[1]".into()),
            now: Now {
                wall: Timestamp(2_000 + (mono as i64 - 50_000)),
                mono_ms: mono,
            },
        }
    }
    fn alive() -> Probe {
        Probe::Alive {
            start: Some("linux:5".into()),
        }
    }

    #[test]
    fn table() {
        let r = sample();
        let cases: Vec<(Record, Probe, Reader, Outcome, Rule)> = vec![
            (
                r.clone(),
                alive(),
                reader(50_000),
                Outcome::Active,
                Rule::R7,
            ),
            (
                r.clone(),
                alive(),
                reader(60_000),
                Outcome::Active,
                Rule::R7,
            ),
            (
                r.clone(),
                alive(),
                reader(60_001),
                Outcome::Lost {
                    reason: Reason::LeaseExpired,
                },
                Rule::R6,
            ),
            (
                r.clone(),
                Probe::Gone,
                reader(50_001),
                Outcome::Lost {
                    reason: Reason::WorkerExited,
                },
                Rule::R4,
            ),
            (
                r.clone(),
                Probe::Alive {
                    start: Some("linux:9".into()),
                },
                reader(50_001),
                Outcome::Lost {
                    reason: Reason::PidReused,
                },
                Rule::R5,
            ),
            (
                r.clone(),
                Probe::Alive { start: None },
                reader(50_001),
                Outcome::Active,
                Rule::R7,
            ),
            (
                r.clone(),
                alive(),
                Reader {
                    boot_id: "B2".into(),
                    ..reader(50_001)
                },
                Outcome::Lost {
                    reason: Reason::HostRebooted,
                },
                Rule::R3,
            ),
            (
                Record {
                    status: Status::Succeeded,
                    reason: Some(Reason::Exited),
                    ..r.clone()
                },
                Probe::Gone,
                reader(99_999_999),
                Outcome::Terminal {
                    status: Status::Succeeded,
                    reason: Some(Reason::Exited),
                },
                Rule::R1,
            ),
        ];
        for (i, (rec, probe, rd, want, rule)) in cases.into_iter().enumerate() {
            let got = verdict(&rec, &probe, &rd);
            assert_eq!((got.outcome, got.rule), (want, rule), "case {i}");
        }
    }

    /// A reader that cannot see the holder's pid never concludes anything from it (issue 14).
    #[test]
    fn unseen_pid_is_judged_by_the_lease_alone() {
        let base = sample();
        let holder_ns = |ns: Option<&str>| Record {
            holder: Holder {
                pid_ns: ns.map(String::from),
                ..base.holder.clone()
            },
            ..base.clone()
        };
        let reader_ns = |ns: Option<&str>, mono| Reader {
            pid_ns: ns.map(String::from),
            ..reader(mono)
        };
        let reused = Probe::Alive {
            start: Some("linux:9".into()),
        };
        let cases = [
            (
                holder_ns(Some("pid:[2]")),
                reader_ns(Some("pid:[1]"), 50_001),
            ),
            (holder_ns(None), reader_ns(Some("pid:[1]"), 50_001)),
            (holder_ns(Some("pid:[1]")), reader_ns(None, 50_001)),
            (holder_ns(None), reader_ns(None, 50_001)),
        ];
        for (i, (rec, rd)) in cases.iter().enumerate() {
            assert!(!pid_visible(&rec.holder, rd), "case {i}");
            for p in [Probe::Gone, reused.clone(), Probe::Unseen] {
                let got = verdict(rec, &p, rd);
                assert_eq!((got.outcome, got.rule), (Outcome::Active, Rule::R3a), "{i}");
            }
            let late = Reader {
                now: Now {
                    mono_ms: 60_001,
                    ..rd.now
                },
                ..rd.clone()
            };
            let got = verdict(rec, &Probe::Gone, &late);
            let lost = Outcome::Lost {
                reason: Reason::LeaseExpired,
            };
            assert_eq!((got.outcome, got.rule), (lost, Rule::R3a), "case {i}");
            assert_eq!(got.lease.unwrap().clock, ClockRule::Monotonic);
        }
        // A reboot is still a reboot, whatever the namespace.
        let rd = Reader {
            boot_id: "B2".into(),
            ..reader_ns(Some("pid:[1]"), 50_001)
        };
        assert_eq!(verdict(&cases[0].0, &Probe::Gone, &rd).rule, Rule::R3);
    }

    #[test]
    fn wall_jump_on_same_boot_never_reaps() {
        let r = sample();
        let mut rd = reader(51_000);
        rd.now.wall = Timestamp(r.lease.renewed_at.ms() + 10 * 3_600_000);
        assert!(verdict(&r, &alive(), &rd).is_active());
        rd.now.wall = Timestamp(r.lease.renewed_at.ms() - 10 * 3_600_000);
        assert!(verdict(&r, &alive(), &rd).is_active());
    }

    /// `expires_at` is shown to people and other tools, so on the wall rule it must be the expiry
    /// of 7.3 (renewal + ttl + allowance), not "now + ttl".
    #[test]
    fn wall_rule_expiry_includes_the_allowance() {
        let r = sample();
        let mut rd = reader(0);
        rd.host = "h2".into();
        for offset in [-3_600_000, 0, 5_000, 40_000, 40_001] {
            rd.now.wall = r.lease.renewed_at.plus_ms(offset);
            let age = lease_age(&r, &rd);
            assert_eq!(age.clock, ClockRule::Wall);
            assert_eq!(
                expires_at(&age, &rd.now),
                r.lease.renewed_at.plus_ms(10_000 + SKEW_ALLOWANCE_MS),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn other_host_uses_wall_clock_with_allowance() {
        let r = sample();
        let mut rd = reader(0);
        rd.host = "h2".into();
        rd.now.wall = Timestamp(r.lease.renewed_at.ms() + 10_000 + SKEW_ALLOWANCE_MS);
        assert_eq!(verdict(&r, &Probe::Gone, &rd).outcome, Outcome::Active);
        rd.now.wall = rd.now.wall.plus_ms(1);
        assert_eq!(
            verdict(&r, &Probe::Gone, &rd).outcome,
            Outcome::Lost {
                reason: Reason::LeaseExpired
            }
        );
    }
}
