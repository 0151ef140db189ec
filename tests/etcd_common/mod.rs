//! A real etcd for the etcd store's tests: started by the test on free loopback ports with its own
//! temporary data directory, stopped by pid (SIGTERM, then SIGKILL after a bounded wait) when the
//! handle drops. Under `CI=true` a missing `etcd` binary fails the test; elsewhere the test is
//! skipped with a notice on stderr (`common::skip`), so `cargo test --features etcd` works on a
//! machine without etcd.
#![allow(dead_code)]

pub mod cli;
pub mod raw;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cleanup::{Registered, Scratch};

/// How long a fresh etcd may take to answer on its client port (it takes under 1 s idle; the
/// bound is for a loaded 2-core machine).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long SIGTERM is given before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The etcd binary, or None (after `common::skip`) when the test should be skipped.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = crate::common::on_path("etcd");
    if found.is_none() {
        crate::common::skip("`etcd` on PATH", "apt-get install etcd-server");
    }
    found
}

/// A port that was free a moment ago. etcd binds it right after; a lost race shows as a start
/// failure, which `Etcd::start` retries with new ports.
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub struct Etcd {
    child: Child,
    /// etcd registered for the interrupt handler (`common::cleanup`).
    registered: Option<Registered>,
    pub name: String,
    pub ip: String,
    pub ips: Vec<String>,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<std::sync::Arc<Scratch>>,
    log: PathBuf,
    extra: Vec<String>,
}

impl Etcd {
    /// A single-member etcd on 127.0.0.1, or None when skipped (see `etcd_binary`).
    pub fn start(test: &str) -> Option<Etcd> {
        Etcd::start_with(test, "127.0.0.1", &[])
    }

    /// A single-member etcd on `ip`, with extra command-line flags (TLS, ...).
    pub fn start_with(test: &str, ip: &str, extra: &[&str]) -> Option<Etcd> {
        Etcd::start_on(test, &[ip], extra)
    }

    /// A single-member etcd serving clients on each of `ips` (the first is `endpoint()`), so
    /// "hosts" in network namespaces reach it on their link's address and the root namespace on
    /// loopback.
    pub fn start_on(test: &str, ips: &[&str], extra: &[&str]) -> Option<Etcd> {
        let bin = etcd_binary()?;
        let ip = ips[0];
        let tmp = Scratch::new();
        let mut last = String::new();
        for _attempt in 0..5 {
            let client_port = free_port("0.0.0.0");
            let peer_port = free_port(ip);
            let data_dir = tmp.path().join(format!("data-{client_port}"));
            let log = tmp.path().join(format!("etcd-{client_port}.log"));
            let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
            let child = spawn(
                &bin,
                "t0",
                &ips,
                client_port,
                peer_port,
                &data_dir,
                &log,
                &extra,
            );
            let mut e = Etcd {
                registered: Registered::child(child.id()),
                child,
                name: "t0".into(),
                ip: ip.into(),
                ips,
                client_port,
                peer_port,
                data_dir,
                _tmp: None,
                log,
                extra,
            };
            match e.wait_ready() {
                Ok(()) => {
                    e._tmp = Some(std::sync::Arc::new(tmp));
                    return Some(e);
                }
                Err(why) => {
                    last = why;
                    e.stop();
                }
            }
        }
        panic!("{test}: etcd did not start after 5 tries: {last}");
    }

    /// An `etcd://` URL on another of the addresses it serves.
    pub fn url_on(&self, ip: &str, prefix: &str) -> String {
        format!("etcd://{ip}:{}/{prefix}", self.client_port)
    }

    /// `HOST:PORT` of the client endpoint.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.ip, self.client_port)
    }

    /// An `etcd://` store URL for this etcd under `prefix` (no leading slash).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoint())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tail of etcd's own log, for a failing assertion's message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let addr: SocketAddr = self.endpoint().parse().unwrap();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Err(format!("etcd exited with {st}: {}", self.log_tail()));
            }
            // The client port accepts once etcd serves; a member of a one-node cluster is then
            // its own leader within a few hundred ms, which `ready` in the log confirms.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && log.contains("ready to serve client requests")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd not ready within {READY_WITHIN:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs etcd (a crash) and waits for it; `restart` brings it back on the same data.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again on the same ports and data directory.
    pub fn restart(&mut self) {
        let bin = etcd_binary().expect("etcd was found before");
        self.child = spawn(
            &bin,
            &self.name,
            &self.ips,
            self.client_port,
            self.peer_port,
            &self.data_dir,
            &self.log,
            &self.extra,
        );
        self.registered = Registered::child(self.child.id());
        self.wait_ready()
            .expect("etcd restarts on its data directory");
    }

    /// SIGTERM, then SIGKILL if it has not exited within `STOP_WITHIN`; always reaped.
    pub fn stop(&mut self) {
        crate::common::proc::stop_child(&mut self.child, STOP_WITHIN);
        self.registered = None;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    bin: &Path,
    name: &str,
    ips: &[String],
    client_port: u16,
    peer_port: u16,
    data_dir: &Path,
    log: &Path,
    extra: &[String],
) -> Child {
    let scheme = if extra.iter().any(|a| a.starts_with("--cert-file")) {
        "https"
    } else {
        "http"
    };
    let listen: Vec<String> = ips
        .iter()
        .map(|ip| format!("{scheme}://{ip}:{client_port}"))
        .collect();
    let client = listen[0].clone();
    let peer = format!("http://{}:{peer_port}", ips[0]);
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(bin)
        .arg("--name")
        .arg(name)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(listen.join(","))
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--initial-cluster")
        .arg(
            extra
                .iter()
                .find_map(|a| a.strip_prefix("cluster:"))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{name}={peer}")),
        )
        .args(extra.iter().filter(|a| !a.starts_with("cluster:")))
        .env_remove("ETCD_NAME")
        .env_remove("ETCD_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("spawn etcd")
}

/// A "host": a network namespace joined to the root namespace by a veth pair with link-local
/// addresses that exist only there, so a process in it reaches the root side only over that link,
/// and `cut` takes the link down. Processes run in it get their own host name (a UTS namespace).
/// Removed (with its link) when dropped. Needs root and `ip`; under CI=true their absence fails.
pub struct Host {
    pub netns: String,
    /// The root namespace's address on the link (where etcd listens for this host).
    pub root_ip: String,
    /// This host's own address.
    pub ip: String,
    veth_root: String,
}

static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn sh(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl Host {
    pub fn create(test: &str) -> Option<Host> {
        let root = rustix::process::geteuid().is_root();
        let ip_ok = sh(&["ip", "netns", "list"]).is_ok();
        if !root || !ip_ok {
            crate::common::skip(
                &format!(
                    "root and iproute2's `ip` for namespaced hosts (root: {root}, ip: {ip_ok})"
                ),
                "apt-get install iproute2 and run the tests as root, as CI does",
            );
            return None;
        }
        // Unique per process and per host, and /30 subnets that do not overlap.
        let n = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let third = (std::process::id() % 200) as u32 + 20;
        let fourth = (n % 60) * 4;
        let h = Host {
            netns: format!("tt{tag}"),
            root_ip: format!("169.254.{third}.{}", fourth + 1),
            ip: format!("169.254.{third}.{}", fourth + 2),
            veth_root: format!("vr{tag}"),
        };
        let veth_host = format!("vh{tag}");
        let steps: Vec<Vec<String>> = vec![
            vec!["ip".into(), "netns".into(), "add".into(), h.netns.clone()],
            vec![
                "ip".into(),
                "link".into(),
                "add".into(),
                h.veth_root.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                veth_host.clone(),
            ],
            vec![
                "ip".into(),
                "link".into(),
                "set".into(),
                veth_host.clone(),
                "netns".into(),
                h.netns.clone(),
            ],
            vec![
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{}/30", h.root_ip),
                "dev".into(),
                h.veth_root.clone(),
            ],
            vec![
                "ip".into(),
                "link".into(),
                "set".into(),
                h.veth_root.clone(),
                "up".into(),
            ],
            vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                h.netns.clone(),
                "ip".into(),
                "addr".into(),
                "add".into(),
                format!("{}/30", h.ip),
                "dev".into(),
                veth_host.clone(),
            ],
            vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                h.netns.clone(),
                "ip".into(),
                "link".into(),
                "set".into(),
                veth_host,
                "up".into(),
            ],
            vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                h.netns.clone(),
                "ip".into(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for s in steps {
            let args: Vec<&str> = s.iter().map(String::as_str).collect();
            if let Err(e) = sh(&args) {
                panic!("{test}: making host {}: {e}", h.netns);
            }
        }
        Some(h)
    }

    /// A command run inside this host, under the host name `name`.
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "unshare", "--uts", "sh", "-c"])
            .arg(format!("hostname {name} && exec \"$0\" \"$@\""))
            .arg(program);
        c
    }

    /// Takes the link down: the host can no longer reach etcd.
    pub fn cut(&self) {
        sh(&["ip", "link", "set", &self.veth_root, "down"]).unwrap();
    }

    pub fn mend(&self) {
        sh(&["ip", "link", "set", &self.veth_root, "up"]).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it ours.
        let _ = sh(&["ip", "netns", "del", &self.netns]);
        let _ = sh(&["ip", "link", "del", &self.veth_root]);
    }
}

/// A cluster of `n` members on 127.0.0.1, each its own process and data directory; None when
/// skipped. Members are `Etcd` handles (stopped on drop), restartable by `restart`.
pub fn start_cluster(n: usize) -> Option<Vec<Etcd>> {
    let bin = etcd_binary()?;
    let tmp = std::sync::Arc::new(Scratch::new());
    let ports: Vec<(u16, u16)> = (0..n)
        .map(|_| (free_port("127.0.0.1"), free_port("127.0.0.1")))
        .collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (i, &(client_port, peer_port)) in ports.iter().enumerate() {
        let data_dir = tmp.path().join(format!("m{i}"));
        let log = tmp.path().join(format!("m{i}.log"));
        let extra = vec![format!("cluster:{cluster}")];
        let ips = vec!["127.0.0.1".to_string()];
        let child = spawn(
            &bin,
            &format!("m{i}"),
            &ips,
            client_port,
            peer_port,
            &data_dir,
            &log,
            &extra,
        );
        members.push(Etcd {
            registered: Registered::child(child.id()),
            child,
            name: format!("m{i}"),
            ip: "127.0.0.1".into(),
            ips,
            client_port,
            peer_port,
            data_dir,
            _tmp: Some(tmp.clone()),
            log,
            extra,
        });
    }
    // A member serves clients only once a quorum has formed, so all start before any is awaited.
    for m in &mut members {
        if let Err(why) = m.wait_ready() {
            panic!("cluster member {} did not start: {why}", m.name);
        }
    }
    Some(members)
}
