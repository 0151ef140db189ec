//! The one record builder: a record as the wrapper writes it at start (`Record::begin`), running,
//! held by this process on this machine, unless a test says otherwise; and a holder's renewal.

use tether::clock::{Timestamp, mono_ms};
use tether::record::{Holder, Progress, Record, Status};
use tether::transition::Write;

/// Starts a record for `id`: running, argv `true`, interval 1 s, ttl 10 min, held by this process.
pub fn record(id: &str) -> RecordBuilder {
    RecordBuilder {
        id: id.to_owned(),
        argv: vec!["true".into()],
        holder: tether::process::current().unwrap().holder(),
        interval_ms: 1000,
        ttl_ms: 600_000,
        name: None,
        status: Status::Running,
        progress: Progress::default(),
    }
}

pub struct RecordBuilder {
    id: String,
    argv: Vec<String>,
    holder: Holder,
    interval_ms: u64,
    ttl_ms: u64,
    name: Option<String>,
    status: Status,
    progress: Progress,
}

impl RecordBuilder {
    /// Held by `pid` with start token `start`, on this machine.
    pub fn pid(mut self, pid: u32, start: &str) -> Self {
        self.holder.pid = pid;
        self.holder.start = start.to_owned();
        self
    }

    /// Held by `holder` (another machine, a made-up identity).
    pub fn holder(mut self, holder: Holder) -> Self {
        self.holder = holder;
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.holder.host = host.to_owned();
        self
    }

    pub fn lease(mut self, interval_ms: u64, ttl_ms: u64) -> Self {
        self.interval_ms = interval_ms;
        self.ttl_ms = ttl_ms;
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn argv(mut self, argv: &[&str]) -> Self {
        self.argv = argv.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Progress `message`, reported now as beat `count`.
    pub fn progress(mut self, message: &str, count: u64) -> Self {
        self.progress = Progress {
            message: Some(message.to_owned()),
            at: Some(Timestamp::now()),
            count,
            ..Default::default()
        };
        self
    }

    pub fn build(self) -> Record {
        let mut r = Record::begin(
            &self.id,
            self.argv,
            self.holder,
            self.interval_ms,
            self.ttl_ms,
        );
        r.name = self.name;
        r.status = self.status;
        r.progress = self.progress;
        r
    }
}

/// A holder's renewal of epoch 1, now, still running, reporting `message` as progress `count`.
pub fn renewal(message: String, count: u64) -> Write {
    Write::Renew {
        epoch: 1,
        at: Timestamp::now(),
        mono_ms: mono_ms(),
        running: true,
        child: None,
        progress: Some(Progress {
            message: Some(message),
            at: Some(Timestamp::now()),
            count,
            ..Default::default()
        }),
    }
}
