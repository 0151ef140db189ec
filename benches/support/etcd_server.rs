//! The benchmark's own etcd (`support/etcd.rs`): one member on loopback on free ports, its data
//! under the bench's temp dir, stopped by pid when dropped; and the two things read from it
//! besides tether's answers: its renewal counter and bulk-written records.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// How long etcd may take to serve after its start on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The benchmark's etcd: one member on loopback, stopped by pid (SIGTERM, then SIGKILL after a
/// bounded wait) when dropped.
pub struct Server {
    child: Child,
    client_port: u16,
}

impl Server {
    pub fn start(bin: &Path, dir: &Path) -> Result<Server, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..3 {
            let (client_port, peer_port) = (free_port(), free_port());
            let log = dir.join(format!("etcd-{attempt}.log"));
            let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let child = Command::new(bin)
                .args(["--name", "bench", "--data-dir"])
                .arg(dir.join(format!("data-{attempt}")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("bench={peer}")])
                .env_remove("ETCD_NAME")
                .env_remove("ETCD_DATA_DIR")
                .stdin(Stdio::null())
                .stdout(logf.try_clone().map_err(|e| e.to_string())?)
                .stderr(logf)
                .spawn()
                .map_err(|e| format!("{}: {e}", bin.display()))?;
            let mut s = Server { child, client_port };
            match s.wait_ready(&log) {
                Ok(()) => return Ok(s),
                Err(why) => last = why, // dropped: stopped by pid
            }
        }
        Err(last)
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("etcd exited with {st}; its log: {}", log.display()));
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("ready to serve client requests")
                && TcpStream::connect(("127.0.0.1", self.client_port)).is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > READY_WITHIN {
                return Err(format!(
                    "not ready within {READY_WITHIN:?}; its log: {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://127.0.0.1:{}/{prefix}", self.client_port)
    }

    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// A lease of `ttl` seconds, for a client of the bench's own.
    pub fn grant(&self, ttl: i64) -> Option<i64> {
        let ep = format!("http://127.0.0.1:{}", self.client_port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut c = etcd_client::Client::connect([ep], None).await.ok()?;
            c.lease_grant(ttl, None).await.ok().map(|r| r.id())
        })
    }

    /// Lease keepalives etcd has served since it started, from its metrics endpoint.
    pub fn renewals(&self) -> Option<u64> {
        let mut c = TcpStream::connect(("127.0.0.1", self.client_port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        c.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_lease_renewed_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// Writes `n` copies of `P/jobs/ID`'s record as `job-00000000`... straight into etcd, in
    /// transactions of 100 puts.
    pub fn copy_record(&self, prefix: &str, id: &str, n: usize) {
        let ep = format!("http://127.0.0.1:{}", self.client_port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut c = etcd_client::Client::connect([ep], None)
                .await
                .expect("etcd");
            let r = c
                .get(format!("{prefix}/jobs/{id}"), None)
                .await
                .expect("get");
            let seed: serde_json::Value =
                serde_json::from_slice(r.kvs()[0].value()).expect("the seed record");
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                let ops: Vec<etcd_client::TxnOp> = chunk
                    .iter()
                    .map(|i| {
                        let jid = format!("job-{i:08}");
                        let mut rec = seed.clone();
                        rec["id"] = jid.clone().into();
                        let bytes = serde_json::to_vec(&rec).unwrap();
                        etcd_client::TxnOp::put(format!("{prefix}/jobs/{jid}"), bytes, None)
                    })
                    .collect();
                c.txn(etcd_client::Txn::new().and_then(ops))
                    .await
                    .expect("txn");
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, not yet reaped: its pid is still its own.
        if let Some(p) = Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(p, Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `name`'s path if it is on PATH (the tests' kit's).
pub use crate::common::on_path;
