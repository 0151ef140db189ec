//! `--detach`: the launcher re-executes this binary as a background wrapper in its own session and
//! waits on a pipe for one line: the job is durably `running`, or why it could not start it.

use std::io::Write as _;
use std::time::Duration;

use super::error::{Error, Kind};
use super::{Mode, OnStall, Options};

/// Name of the hidden flag that makes `tether run` the background half of `--detach`.
pub const BACKGROUND_FLAG: &str = "--background-wrapper";

/// Where a background wrapper reports that the job is running (or why it is not).
pub struct Ready {
    pipe: std::fs::File,
}

impl Ready {
    /// The background wrapper's stdout is the pipe its launcher reads.
    pub fn from_stdout() -> Option<Ready> {
        // CLOEXEC: the job must not inherit the pipe, or the launcher would wait on the job.
        let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3).ok()?;
        Some(Ready {
            pipe: std::fs::File::from(fd),
        })
    }

    /// The job is recorded running.
    pub fn running(self, id: &str, pid: u32, log: &std::path::Path) {
        self.send(serde_json::json!({"id": id, "pid": pid, "log": log}));
    }

    /// The job could not be started; the launcher exits with this error's code.
    pub fn failed(self, e: &Error) {
        self.send(serde_json::json!({"error": e.message, "kind": e.kind}));
    }

    fn send(mut self, line: serde_json::Value) {
        let _ = writeln!(self.pipe, "{line}");
        // The launcher waits for EOF too: point our stdout away from the pipe and close our copy.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
    }
}

/// The arguments that make the background wrapper run the same job.
fn background_args(opts: &Options) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(d) = &opts.dir {
        args.push("--dir".into());
        args.push(d.clone().into_os_string());
    }
    args.push("run".into());
    if let Some(id) = &opts.id {
        args.extend(["--id".into(), id.into()]);
    }
    if let Some(n) = &opts.name {
        args.extend(["--name".into(), n.into()]);
    }
    if let Some(k) = &opts.unique {
        args.extend(["--unique".into(), k.into()]);
        if opts.unique_wait {
            args.push("--unique-wait".into());
        }
    }
    if !opts.meta.is_empty() {
        let json = serde_json::to_string(&opts.meta).unwrap_or_default();
        args.extend(["--meta-json".into(), json.into()]);
    }
    let dur = |d: Duration| humantime::format_duration(d).to_string().into();
    args.extend(["--interval".into(), dur(opts.interval)]);
    args.extend(["--ttl".into(), dur(opts.ttl)]);
    args.extend(["--grace".into(), dur(opts.grace)]);
    let mode = match opts.heartbeat {
        Mode::None => "none",
        Mode::Notify => "notify",
        Mode::File => "file",
        Mode::Output => "output",
    };
    args.extend(["--heartbeat".into(), mode.into()]);
    let stall = match opts.on_stall {
        OnStall::Kill => "kill",
        OnStall::Keep => "keep",
    };
    let p = &opts.probe;
    if let Some(spec) = &p.spec {
        args.extend(["--probe".into(), spec.into()]);
        if let Some(e) = p.every {
            args.extend(["--probe-every".into(), dur(e)]);
        }
        args.extend(["--probe-timeout".into(), dur(p.timeout)]);
        args.extend(["--probe-failures".into(), p.failures.to_string().into()]);
        args.extend(["--probe-grace".into(), dur(p.grace)]);
    }
    args.extend([
        "--on-stall".into(),
        stall.into(),
        BACKGROUND_FLAG.into(),
        "--".into(),
    ]);
    args.extend(opts.command.iter().map(Into::into));
    args
}

/// Starts the background wrapper and returns once it reports the job durably `running` (or why
/// it could not start it). Returns the launcher's exit code.
pub fn detach(opts: &Options) -> Result<i32, Error> {
    super::setup::check(opts)?;
    super::setup::check_probe(opts)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::io(format!("cannot find the tether executable to re-run: {e}")))?;
    let (rd, wr) = crate::platform::pipe(false)
        .map_err(|e| Error::io(format!("cannot create a pipe: {e}")))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(background_args(opts))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(wr))
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is a raw, async-signal-safe syscall. A new session: no controlling terminal, so
    // closing the terminal (SIGHUP) or Ctrl-C there does not reach the job.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let mut bg = cmd
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {}: {e}", exe.display())))?;
    drop(cmd); // closes our copy of the pipe's write end, so EOF means the wrapper let go of it
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(rd)),
        &mut line,
    );
    let msg: Option<serde_json::Value> = serde_json::from_str(line.trim()).ok();
    match msg {
        Some(v) if v.get("id").is_some() => {
            if opts.json {
                println!("{v}");
            } else {
                println!("{}", v["id"].as_str().unwrap_or_default());
            }
            Ok(crate::cli::exit::OK)
        }
        Some(v) => Err(Error::new(
            serde_json::from_value::<Kind>(v["kind"].clone()).unwrap_or(Kind::Io),
            v["error"]
                .as_str()
                .unwrap_or("the background wrapper failed")
                .to_string(),
        )),
        None => {
            let st = bg.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(Error::io(format!(
                "the background wrapper ended ({st}) before the job was recorded running"
            )))
        }
    }
}
