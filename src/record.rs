//! The job record (protocol.md section 4) and its parser.
//!
//! Parsing is strict about what the protocol requires and lenient about what it does not know:
//! unknown fields survive a rewrite, and a newer major version is refused rather than guessed at.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::Timestamp;
use crate::id::JobId;

pub const PROTOCOL: u64 = 1;
/// Records larger than this are corrupt: a record is a few hundred bytes, so 1 MiB is junk or an attack.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// At most this many late results are kept; the oldest goes first.
pub const MAX_LATE: usize = 16;
pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_TTL_MS: u64 = 10_000;
/// The largest integer a record may hold (protocol.md 4.1): 2^53 - 1, the largest integer every
/// JSON implementation reads exactly (JavaScript's numbers are doubles; RFC 7493 says the same).
pub const MAX_INT: u64 = (1 << 53) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Starting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        !self.is_active()
    }
    pub fn is_active(self) -> bool {
        matches!(self, Status::Starting | Status::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Lost => "lost",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record reached its status (protocol.md 7.2). Readers may only write the last four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Exited,
    Signaled,
    StartFailed,
    HeartbeatTimeout,
    ProbeFailed,
    HolderSignaled,
    Cancelled,
    WorkerExited,
    PidReused,
    LeaseExpired,
    HostRebooted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exited => "exited",
            Reason::Signaled => "signaled",
            Reason::StartFailed => "start-failed",
            Reason::HeartbeatTimeout => "heartbeat-timeout",
            Reason::ProbeFailed => "probe-failed",
            Reason::HolderSignaled => "holder-signaled",
            Reason::Cancelled => "cancelled",
            Reason::WorkerExited => "worker-exited",
            Reason::PidReused => "pid-reused",
            Reason::LeaseExpired => "lease-expired",
            Reason::HostRebooted => "host-rebooted",
        }
    }
    /// Reasons a reader may write when it reaps (protocol.md 7.2).
    pub fn is_reader_reason(self) -> bool {
        matches!(
            self,
            Reason::WorkerExited | Reason::PidReused | Reason::LeaseExpired | Reason::HostRebooted
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub start: String,
    pub boot_id: String,
    pub host: String,
    #[serde(default)]
    pub time_ns: Option<String>,
    /// The holder's pid namespace (protocol.md 4.1, 7.4 R3a): a reader in another pid namespace,
    /// or one that cannot tell (null, written by an older tether), must not probe `pid`.
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// Members from a newer minor revision or another tool (protocol.md 4.3): kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub pid: u32,
    pub start: String,
    pub pgid: u32,
    /// Members from a newer minor revision or another tool (protocol.md 4.3): kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub epoch: u64,
    pub interval_ms: u64,
    pub ttl_ms: u64,
    pub renewed_at: Timestamp,
    pub renewed_mono_ms: u64,
    /// Members from a newer minor revision or another tool (protocol.md 4.3): kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub at: Option<Timestamp>,
    #[serde(default)]
    pub count: u64,
    /// Beats refused because another user sent them (protocol.md 4.1); written only when not 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// The last liveness probe's outcome (`run --probe`, protocol.md 4.1), as of its last change.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_probe"
    )]
    pub probe: Option<ProbeOutcome>,
    /// Until when the job declared a silence (`tether beat --extend`, protocol.md 4.1): no beat is
    /// due before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_until: Option<Timestamp>,
    /// Members from a newer minor revision or another tool (protocol.md 4.3): kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `progress.probe` is information for people, never an input of the verdict: one not of the
/// expected form is ignored (protocol.md 4.1), not a reason to call the record corrupt.
fn lenient_probe<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ProbeOutcome>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// When the probe that gave this outcome ran.
    pub at: Timestamp,
    pub ok: bool,
    /// Failures in a row, this one included (0 when ok).
    pub failures: u32,
    /// What answered (its first line), or why it failed.
    pub detail: String,
    pub duration_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How the child ended: exactly one of the two is set in a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A result that arrived after the record was terminal or its writer was fenced out (protocol.md 4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateResult {
    pub at: Timestamp,
    pub epoch: u64,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub exit: Option<Exit>,
    #[serde(default, deserialize_with = "crate::ijson::nullable_object")]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub note: String,
    /// Members from a newer minor revision or another tool (protocol.md 4.3): kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub protocol: u64,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    pub created_at: Timestamp,
    pub status: Status,
    /// Required though nullable (4.4): `deserialize_with` stops serde from reading "missing" as null.
    #[serde(deserialize_with = "required_nullable")]
    pub reason: Option<Reason>,
    // Objects only (4.4): serde's derive would also read a struct from an array of its fields.
    #[serde(deserialize_with = "crate::ijson::object")]
    pub holder: Holder,
    #[serde(default, deserialize_with = "crate::ijson::nullable_object")]
    pub child: Option<Child>,
    #[serde(deserialize_with = "crate::ijson::object")]
    pub lease: Lease,
    #[serde(default, deserialize_with = "crate::ijson::object")]
    pub progress: Progress,
    #[serde(default)]
    pub exit: Option<Exit>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    #[serde(default, deserialize_with = "crate::ijson::objects")]
    pub late: Vec<LateResult>,
    /// Labels given at `tether run --meta` (src/meta.rs); absent in the file when empty.
    #[serde(default, skip_serializing_if = "crate::meta::Meta::is_empty")]
    pub meta: crate::meta::Meta,
    /// The key of `tether run --unique` (src/unique.rs); absent in the file when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<String>,
    /// Fields from a newer minor revision or another tool: kept verbatim on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Reason>, D::Error> {
    Option::<Reason>::deserialize(d)
}

/// Why bytes are not a usable record. `Unsupported` is not corruption: the file is fine, we are old.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "record uses protocol version {0}, newer than this tether understands (1); upgrade tether"
    )]
    Unsupported(u64),
    #[error("{0}")]
    Corrupt(String),
}

impl Record {
    /// Parses and validates a record's bytes. `expected_id` is the file name's id, when known.
    pub fn parse(bytes: &[u8], expected_id: Option<&str>) -> Result<Record, RecordError> {
        let corrupt = |m: String| RecordError::Corrupt(m);
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(corrupt(format!(
                "record is {} bytes, over the 1 MiB limit",
                bytes.len()
            )));
        }
        if bytes.is_empty() {
            return Err(corrupt("record is empty".into()));
        }
        // Fast path: straight into the struct, and only a failure pays for the I-JSON scan and the
        // generic parse below, which tell a newer version from corruption and name the problem.
        // The rules of 4.4 step 3 need no pass of their own here (`ijson::decoded_is_checked`):
        // decoding a `Record` decodes every value, unknown members too, and serde_json refuses a
        // lone surrogate or an infinite number in whatever it decodes, so only nesting could get
        // past it, and text with at most 64 brackets cannot nest deeper than 64.
        // UTF-8 is checked once for the whole text, not string by string.
        if let (Ok(text), true) = (std::str::from_utf8(bytes), crate::ijson::shallow(bytes)) {
            if let Ok(rec) = serde_json::from_str::<Record>(text) {
                match rec.protocol {
                    p if p > MAX_INT => {
                        return Err(corrupt(format!("record has protocol {p}, over 2^53-1")));
                    }
                    PROTOCOL => {
                        rec.validate(expected_id).map_err(corrupt)?;
                        return Ok(rec);
                    }
                    p if p > PROTOCOL => return Err(RecordError::Unsupported(p)),
                    p => return Err(corrupt(format!("record has protocol {p}, expected 1"))),
                }
            }
        }
        // Rules serde_json enforces only in the values it decodes (4.4 step 3), checked on the
        // whole text before anything else can name a lesser problem.
        if let Some(why) = crate::ijson::text_problem(bytes) {
            return Err(corrupt(format!("record is not valid I-JSON text: {why}")));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| corrupt("record is not UTF-8 text".into()))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| corrupt(format!("record is not valid JSON: {e}")))?;
        let Value::Object(obj) = &value else {
            return Err(corrupt("record is not a JSON object".into()));
        };
        match obj.get("protocol") {
            None => return Err(corrupt("record has no \"protocol\" field".into())),
            Some(v) => match v.as_u64() {
                Some(p) if p > PROTOCOL && p <= MAX_INT => return Err(RecordError::Unsupported(p)),
                Some(PROTOCOL) => {}
                _ => return Err(corrupt(format!("record has protocol {v}, expected 1"))),
            },
        }
        // serde treats a missing `Option` field as null; `reason` is required all the same (4.4),
        // so a writer that forgets it is caught here rather than by another implementation.
        if !obj.contains_key("reason") {
            return Err(corrupt("record has no \"reason\" field".into()));
        }
        let rec: Record = serde_json::from_value(value)
            .map_err(|e| corrupt(format!("record has a bad field: {e}")))?;
        rec.validate(expected_id).map_err(corrupt)?;
        Ok(rec)
    }

    /// Checks the rules serde cannot express (protocol.md 4.1 and 4.4).
    pub fn validate(&self, expected_id: Option<&str>) -> Result<(), String> {
        JobId::check(&self.id).map_err(|e| format!("record id: {e}"))?;
        if let Some(exp) = expected_id {
            if exp != self.id {
                return Err(format!(
                    "record id {:?} does not match its file name {:?}",
                    self.id, exp
                ));
            }
        }
        if self.holder.pid < 1 || self.holder.pid > i32::MAX as u32 {
            return Err(format!(
                "holder.pid {} is not a valid process id",
                self.holder.pid
            ));
        }
        if let Some(c) = &self.child {
            if c.pid < 1 || c.pgid < 1 || c.pid > i32::MAX as u32 || c.pgid > i32::MAX as u32 {
                return Err(format!(
                    "child pid {} / pgid {} is not a valid process id",
                    c.pid, c.pgid
                ));
            }
        }
        let ints = [
            ("lease.epoch", self.lease.epoch),
            ("lease.interval_ms", self.lease.interval_ms),
            ("lease.ttl_ms", self.lease.ttl_ms),
            ("lease.renewed_mono_ms", self.lease.renewed_mono_ms),
            ("progress.count", self.progress.count),
            ("progress.rejected", self.progress.rejected),
            ("progress.rejected", self.progress.rejected),
        ];
        let late = self.late.iter().flat_map(|l| {
            let count = l.progress.as_ref().map(|p| p.count);
            [
                ("late[].epoch", Some(l.epoch)),
                ("late[].progress.count", count),
            ]
        });
        let late = late.filter_map(|(name, v)| v.map(|v| (name, v)));
        if let Some((name, v)) = ints.into_iter().chain(late).find(|(_, v)| *v > MAX_INT) {
            return Err(format!(
                "{name} {v} is over 2^53-1, the largest integer a record may hold"
            ));
        }
        if self.lease.epoch < 1 {
            return Err("lease.epoch must be at least 1".into());
        }
        if self.lease.interval_ms < 1 {
            return Err("lease.interval_ms must be at least 1".into());
        }
        if self.lease.ttl_ms < self.lease.interval_ms.saturating_mul(2) {
            return Err(format!(
                "lease.ttl_ms {} is less than twice lease.interval_ms {}",
                self.lease.ttl_ms, self.lease.interval_ms
            ));
        }
        Ok(())
    }

    /// A new job whose `holder` has just taken its lease: `starting`, epoch 1, renewed now. What
    /// `tether run` creates; tests and benchmarks start from it too.
    pub fn begin(
        id: &str,
        argv: Vec<String>,
        holder: Holder,
        interval_ms: u64,
        ttl_ms: u64,
    ) -> Record {
        let now = Timestamp::now();
        Record {
            protocol: PROTOCOL,
            id: id.to_owned(),
            name: None,
            argv,
            cwd: None,
            created_at: now,
            status: Status::Starting,
            reason: None,
            holder,
            child: None,
            lease: Lease {
                epoch: 1,
                interval_ms,
                ttl_ms,
                renewed_at: now,
                renewed_mono_ms: crate::clock::mono_ms(),
                extra: Default::default(),
            },
            progress: Progress::default(),
            exit: None,
            finished_at: None,
            late: vec![],
            meta: Default::default(),
            unique: None,
            extra: Map::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a record always serializes");
        v.push(b'\n');
        v
    }

    /// Appends a late result, keeping only the newest `MAX_LATE`.
    pub fn push_late(&mut self, late: LateResult) {
        self.late.push(late);
        if self.late.len() > MAX_LATE {
            let drop = self.late.len() - MAX_LATE;
            self.late.drain(..drop);
        }
    }
}

/// Checks a lease configuration the way a writer must (protocol.md 4.1).
pub fn check_lease_config(interval_ms: u64, ttl_ms: u64) -> Result<(), String> {
    if interval_ms < 1 {
        return Err("the interval must be at least 1ms".into());
    }
    if ttl_ms < interval_ms.saturating_mul(2) {
        return Err(format!(
            "the ttl ({ttl_ms}ms) must be at least twice the interval ({interval_ms}ms), so one late renewal never expires a lease"
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
