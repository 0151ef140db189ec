//! The supervised child: spawning it in its own process group, tied to the wrapper's life, and
//! observing its exit without reaping it, so its process group can be signalled safely to the end.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::process::{Pid, Signal, WaitIdOptions, WaitIdStatus};

use super::error::{Error, Kind};
use crate::platform::{self, ChildHandle};
use crate::record::{Child, Exit};

/// What the child's environment gets beyond the wrapper's own.
#[derive(Clone, Debug)]
pub struct ChildEnv {
    pub set: Vec<(String, OsString)>,
    pub remove: Vec<&'static str>,
}

/// A spawned child that has not been reaped yet. While it is unreaped its pid, and so its process
/// group id, cannot be handed to another process: signalling the group is safe.
pub struct Spawned {
    pub pid: u32,
    pub start: String,
    handle: ChildHandle,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    reaped: bool,
}

/// Spawns `argv` in a new process group, told to die with the wrapper where the platform can
/// (`platform::die_with_parent`: PR_SET_PDEATHSIG=SIGKILL on Linux). Must run on a thread that
/// lives as long as the wrapper: the kernel sends the death signal when the *spawning thread* exits.
/// With `take_terminal` the child makes its group the foreground group of the terminal on stdin.
pub fn spawn(
    argv: &[String],
    env: &ChildEnv,
    pipe_output: bool,
    take_terminal: bool,
) -> Result<Spawned, Error> {
    let Some(program) = argv.first() else {
        return Err(Error::usage("no command given; put it after `--`"));
    };
    let parent = rustix::process::getpid();
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]).process_group(0);
    for k in &env.remove {
        cmd.env_remove(k);
    }
    for (k, v) in &env.set {
        cmd.env(k, v);
    }
    if pipe_output {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // SAFETY: the closure only makes raw syscalls (sigprocmask, prctl, getppid, and the
    // terminal's), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            platform::unblock_signals(&super::signals::FORWARDED)?;
            platform::die_with_parent()?;
            // The wrapper may have died between fork and prctl; then no death signal will come.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc_errno::SRCH));
            }
            // std has already put the child in its own group (setpgid runs before pre_exec).
            if take_terminal {
                super::terminal::take_in_child();
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
    let pid = child.id();
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    // Dropping a std Child neither kills nor reaps it; from here on we manage it by pid and pidfd.
    drop(child);
    let handle = ChildHandle::open(pid).map_err(|e| {
        Error::io(format!(
            "cannot hold on to {program} (pid {pid}) to wait for it: {e}"
        ))
    })?;
    let start = crate::process::start_token_any(pid).unwrap_or_else(|| "unknown".into());
    Ok(Spawned {
        pid,
        start,
        handle,
        stdout,
        stderr,
        reaped: false,
    })
}

mod libc_errno {
    pub const SRCH: i32 = rustix::io::Errno::SRCH.raw_os_error();
}

/// Why the command could not start, with the shell's kinds (not found, not executable).
fn spawn_error(program: &str, e: io::Error) -> Error {
    use rustix::io::Errno;
    let raw = e.raw_os_error().unwrap_or(0);
    let not_found = [Errno::NOENT, Errno::NOTDIR]
        .iter()
        .any(|x| x.raw_os_error() == raw);
    if not_found {
        Error::new(
            Kind::NotFound,
            format!("{program}: command not found; check the name and $PATH"),
        )
    } else {
        Error::new(
            Kind::NotExecutable,
            format!("{program}: cannot execute: {e}; check that it is an executable file"),
        )
    }
}

impl Spawned {
    pub fn record(&self) -> Child {
        Child {
            pid: self.pid,
            start: self.start.clone(),
            pgid: self.pid,
            extra: Default::default(),
        }
    }

    /// Signals the child's whole process group; a no-op once it is reaped (the group id may then
    /// belong to someone else).
    pub fn signal_group(&self, sig: Signal) {
        if self.reaped {
            return;
        }
        if let Some(p) = Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process_group(p, sig);
        }
    }

    /// A descriptor that turns readable when the child exits, where the platform has one.
    pub fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.handle.poll_fd()
    }

    /// Watches for the child's exit without reaping it (WNOWAIT) and reports how. Where the child
    /// is held by a pidfd, the event loop itself waits on it (readable once the child has exited):
    /// an idle wrapper is then one thread, and the exit is still seen the moment it happens. Else
    /// a thread blocks in `waitid`. Needs a tokio runtime.
    pub fn watch_exit(&self) -> io::Result<tokio::sync::oneshot::Receiver<io::Result<Exit>>> {
        let fd = self.handle.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(poll) = fd.poll_fd() {
            let poll = poll.try_clone_to_owned()?;
            // SAFETY: the AsyncFd owns `poll`, so it stays open and the same for its lifetime.
            let afd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    poll,
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| e.into_parts().1)?;
            tokio::spawn(async move {
                let r = match afd.readable().await {
                    // Readable: the child has exited, so this waitid does not block.
                    Ok(_) => wait(&fd, WaitIdOptions::EXITED | WaitIdOptions::NOWAIT),
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
            });
            return Ok(rx);
        }
        std::thread::Builder::new()
            .name("tether-child-exit".into())
            .spawn(move || {
                let _ = tx.send(wait(&fd, WaitIdOptions::EXITED | WaitIdOptions::NOWAIT));
            })?;
        Ok(rx)
    }

    /// Reaps the child (it must have exited). After this the group is never signalled again.
    pub fn reap(&mut self) -> io::Result<Exit> {
        let r = wait(&self.handle, WaitIdOptions::EXITED);
        self.reaped = true;
        r
    }
}

fn wait(child: &ChildHandle, opts: WaitIdOptions) -> io::Result<Exit> {
    loop {
        match child.wait(opts) {
            Ok(Some(st)) => return Ok(to_exit(&st)),
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn to_exit(st: &WaitIdStatus) -> Exit {
    if st.exited() {
        Exit::Code(st.exit_status().unwrap_or(0))
    } else {
        Exit::Signal(st.terminating_signal().unwrap_or(0))
    }
}

/// The wrapper's exit code for a child outcome, as a shell reports it.
pub fn exit_code(e: Exit) -> i32 {
    match e {
        Exit::Code(c) => c,
        Exit::Signal(s) => crate::cli::exit::SIGNALED + s,
    }
}
