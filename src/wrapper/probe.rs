//! Liveness probes (`run --probe SPEC`): asking the thing the job waits on, as Kubernetes does,
//! tells a wedge (the broker accepts and never answers) from a silence (a long quiet phase) where
//! beats cannot. Each probe either succeeds within its timeout or fails; `--probe-failures` failures
//! in a row make the job unhealthy exactly as a missing beat does.
//!
//! SPEC is `tcp:HOST:PORT` or `unix:PATH` (the connection is accepted), `http://HOST[:PORT]/PATH`
//! (plain HTTP/1.0, a 2xx or 3xx status line), or else a shell command (`sh -c SPEC`, exit 0), run in
//! the job's working directory and environment, in its own process group, killed at the timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::child::ChildEnv;
use super::error::Error;
use crate::clock::Timestamp;
use crate::record::ProbeOutcome;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Tcp(String),
    Unix(PathBuf),
    Http {
        addr: String,
        host: String,
        path: String,
    },
    Exec(String),
}

/// How a probe is run.
#[derive(Clone, Debug)]
pub struct Config {
    pub spec: Spec,
    pub every: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub grace: Duration,
}

/// Parses SPEC and checks what can be checked before the job starts: an address's form, and that a
/// command's program exists. A probe that could never run is a usage error, not a failing job.
pub fn parse(spec: &str) -> Result<Spec, Error> {
    let bad = |why: &str| Error::usage(format!("bad --probe {spec:?}: {why}"));
    if let Some(rest) = spec.strip_prefix("tcp:") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected tcp:HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad("expected tcp:HOST:PORT with a port from 0 to 65535"));
        }
        return Ok(Spec::Tcp(rest.to_string()));
    }
    if let Some(p) = spec.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(bad("expected unix:PATH"));
        }
        return Ok(Spec::Unix(PathBuf::from(p)));
    }
    if let Some(rest) = spec.strip_prefix("http://") {
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if hostport.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("expected http://HOST[:PORT]/PATH"));
        }
        let addr = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => hostport.to_string(),
            Some(_) => return Err(bad("the port must be a number from 0 to 65535")),
            None => format!("{hostport}:80"),
        };
        return Ok(Spec::Http {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
        });
    }
    if spec.starts_with("https://") {
        return Err(bad(
            "https is not supported; probe with an exec command such as `curl -fsS URL`",
        ));
    }
    let program = spec.split_whitespace().next().ok_or_else(|| bad("empty"))?;
    if !is_builtin(program) && !on_path(program) {
        return Err(bad(&format!(
            "no such command {program:?} (not a file, not in $PATH)"
        )));
    }
    Ok(Spec::Exec(spec.to_string()))
}

/// Words `sh` runs itself, which need no file.
fn is_builtin(word: &str) -> bool {
    matches!(
        word,
        "test" | "[" | "true" | "false" | "exit" | "echo" | "printf" | "read" | "!" | "cd" | "."
    ) || word.contains('=')
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return exec(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| exec(&d.join(program))))
}

/// Runs one probe; never longer than `timeout` (plus the kill of an exec probe's group).
pub async fn check(spec: &Spec, timeout: Duration, env: &ChildEnv) -> ProbeOutcome {
    let started = Instant::now();
    let at = Timestamp::now();
    let result = tokio::time::timeout(timeout, attempt(spec, env)).await;
    let (ok, detail) = match result {
        Ok(Ok(line)) => (true, line),
        Ok(Err(why)) => (false, why),
        Err(_) => (
            false,
            format!("timed out after {}", humantime::format_duration(timeout)),
        ),
    };
    ProbeOutcome {
        at,
        ok,
        failures: 0,
        detail: detail.chars().take(200).collect(),
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// Ok with the first line of what answered, or Err with why it failed.
async fn attempt(spec: &Spec, env: &ChildEnv) -> Result<String, String> {
    match spec {
        Spec::Tcp(addr) => tokio::net::TcpStream::connect(addr)
            .await
            .map(|_| String::new())
            .map_err(|e| format!("cannot connect to {addr}: {e}")),
        Spec::Unix(p) => tokio::net::UnixStream::connect(p)
            .await
            .map(|_| String::new())
            .map_err(|e| format!("cannot connect to {}: {e}", p.display())),
        Spec::Http { addr, host, path } => http(addr, host, path).await,
        Spec::Exec(cmd) => exec(cmd, env).await,
    }
}

async fn http(addr: &str, host: &str, path: &str) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut buf = vec![0u8; 256];
    let mut n = 0;
    while n < buf.len() && !buf[..n].contains(&b'\n') {
        match s.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("cannot read from {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    match line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(code) if (200..400).contains(&code) => Ok(line),
        Some(_) => Err(line),
        None if n == 0 => Err(format!("{addr} closed the connection without answering")),
        None => Err(format!("not an HTTP status line: {line:?}")),
    }
}

async fn exec(cmd: &str, env: &ChildEnv) -> Result<String, String> {
    let mut c = tokio::process::Command::new("sh");
    c.args(["-c", cmd])
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for k in &env.remove {
        c.env_remove(k);
    }
    for (k, v) in &env.set {
        c.env(k, v);
    }
    let child = c.spawn().map_err(|e| format!("cannot start sh: {e}"))?;
    // At the timeout this future is dropped: the group goes with it (sh and what it started).
    let guard = GroupKill(child.id());
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("cannot wait for the probe: {e}"))?;
    std::mem::forget(guard);
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    match out.status.code() {
        Some(0) => Ok(line),
        Some(c) => Err(format!("exit code {c}{}", sep(&line))),
        None => Err(format!("killed by a signal{}", sep(&line))),
    }
}

fn sep(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// Kills a probe's whole process group if the probe is abandoned (its timeout).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(p) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
    }
}

/// Probes forever on its own task: `grace` first, then one probe at once and one per period, each
/// outcome sent to the event loop. The period is the renewal tick's when `ticks` is given (the
/// event loop notifies it on each tick: `--probe-every` left at the interval), so an idle wrapper
/// still wakes once per interval; else the probe keeps a timer of its own.
pub async fn run(
    cfg: Config,
    env: ChildEnv,
    tx: tokio::sync::mpsc::Sender<ProbeOutcome>,
    ticks: Option<std::sync::Arc<tokio::sync::Notify>>,
) {
    if !cfg.grace.is_zero() {
        tokio::time::sleep(cfg.grace).await;
    }
    let mut own = match ticks {
        Some(_) => None,
        None => {
            let mut t = tokio::time::interval(cfg.every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t.tick().await; // the first tick is now
            Some(t)
        }
    };
    loop {
        let o = check(&cfg.spec, cfg.timeout, &env).await;
        if tx.send(o).await.is_err() {
            return;
        }
        match (&mut own, &ticks) {
            (Some(t), _) => {
                t.tick().await;
            }
            // A tick during a probe leaves a permit: the next probe follows at once, as the
            // interval's Delay behaviour did.
            (None, Some(n)) => n.notified().await,
            (None, None) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_or_say_why() {
        assert_eq!(
            parse("tcp:localhost:80").unwrap(),
            Spec::Tcp("localhost:80".into())
        );
        assert_eq!(
            parse("unix:/run/b.sock").unwrap(),
            Spec::Unix("/run/b.sock".into())
        );
        assert_eq!(
            parse("http://127.0.0.1:8080/healthz").unwrap(),
            Spec::Http {
                addr: "127.0.0.1:8080".into(),
                host: "127.0.0.1:8080".into(),
                path: "/healthz".into()
            }
        );
        assert!(matches!(parse("http://h").unwrap(), Spec::Http { addr, .. } if addr == "h:80"));
        assert!(matches!(parse("sh -c true").unwrap(), Spec::Exec(_)));
        assert!(matches!(parse("test -e /").unwrap(), Spec::Exec(_)));
        for bad in [
            "tcp:nohost",
            "tcp:h:notaport",
            "unix:",
            "http://",
            "http://h:x/",
            "https://h/",
            "no-such-command-here --flag",
            "",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, super::super::error::Kind::Usage, "{bad}");
            assert!(e.message.contains("--probe"), "{}", e.message);
        }
    }
}
