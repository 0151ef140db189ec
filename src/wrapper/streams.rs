//! The child's stdout and stderr: both pipes, their buffers, where their bytes go (the job's log and,
//! in the foreground, the terminal), and the drain after the child has exited.

use std::io::Write as _;
use std::os::fd::{AsFd as _, OwnedFd};

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe::Receiver;

use super::log::Log;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Out,
    Err,
}

struct Pipe {
    rx: Option<Receiver>,
    buf: Vec<u8>,
    /// Copy to the terminal; turned off when the terminal stops taking writes.
    term: bool,
}

impl Pipe {
    fn new(fd: Option<OwnedFd>, term: bool) -> Pipe {
        Pipe {
            rx: fd.and_then(|fd| Receiver::from_owned_fd(fd).ok()),
            buf: vec![0u8; 16 * 1024],
            term,
        }
    }

    async fn read(&mut self) -> std::io::Result<usize> {
        match &mut self.rx {
            Some(r) => r.read(&mut self.buf).await,
            None => std::future::pending().await,
        }
    }

    /// One read that never waits: None when nothing is buffered. It bypasses tokio's readiness
    /// cache on purpose, since that cache may not yet know about output written while the wrapper
    /// was stopped.
    fn read_now(&mut self) -> Option<std::io::Result<usize>> {
        let rx = self.rx.as_ref()?;
        match rustix::io::read(rx.as_fd(), &mut self.buf[..]) {
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => None,
            Err(e) => Some(Err(e.into())),
            Ok(n) => Some(Ok(n)),
        }
    }
}

pub struct Streams {
    out: Pipe,
    err: Pipe,
    log: Option<Log>,
}

impl Streams {
    /// `to_terminal`: the foreground, where the child's output is also the wrapper's.
    pub fn new(
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
        log: Option<Log>,
        to_terminal: bool,
    ) -> Streams {
        Streams {
            out: Pipe::new(stdout, to_terminal),
            err: Pipe::new(stderr, to_terminal),
            log,
        }
    }

    fn pipe(&mut self, w: Which) -> &mut Pipe {
        match w {
            Which::Out => &mut self.out,
            Which::Err => &mut self.err,
        }
    }

    /// Waits for output on either pipe (forever once both are closed); the bytes stay in that
    /// pipe's buffer for [`Streams::take`].
    pub async fn read(&mut self) -> (Which, std::io::Result<usize>) {
        tokio::select! {
            r = self.out.read() => (Which::Out, r),
            r = self.err.read() => (Which::Err, r),
        }
    }

    /// Passes on what a read returned and returns the number of lines in it (None when nothing
    /// came); end of file or an error closes that pipe.
    pub fn take(&mut self, w: Which, r: std::io::Result<usize>) -> Option<u64> {
        let n = match r {
            Ok(0) | Err(_) => {
                self.pipe(w).rx = None;
                return None;
            }
            Ok(n) => n,
        };
        let Streams { out, err, log } = self;
        let p = if w == Which::Out { out } else { err };
        let bytes = &p.buf[..n];
        emit(bytes, log, &mut p.term, w);
        Some(bytes.iter().filter(|b| **b == b'\n').count() as u64)
    }

    /// Takes in what is already buffered in both pipes without waiting, up to 16 reads each (a
    /// child that writes without pause must not starve the caller). Returns the lines taken, None
    /// when nothing was.
    pub fn take_buffered(&mut self) -> Option<u64> {
        let mut lines = None;
        for w in [Which::Out, Which::Err] {
            for _ in 0..16 {
                let Some(r) = self.pipe(w).read_now() else {
                    break;
                };
                match self.take(w, r) {
                    Some(n) => lines = Some(lines.unwrap_or(0) + n),
                    None => break,
                }
            }
        }
        lines
    }

    /// Either pipe still open: someone (the child's group, or a process that escaped it) may
    /// still write.
    /// The pipes still open, for the idle wait (`idle.rs`) to sleep on.
    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        [&self.out, &self.err]
            .into_iter()
            .filter_map(|p| p.rx.as_ref().map(|r| r.as_fd()))
    }

    pub fn open(&self) -> bool {
        self.out.rx.is_some() || self.err.rx.is_some()
    }
}

/// Child output goes to the log and, in the foreground, to the terminal as well.
fn emit(bytes: &[u8], log: &mut Option<Log>, term: &mut bool, w: Which) {
    if let Some(l) = log {
        if let Err(e) = l.write(bytes) {
            super::note!("cannot write the job log: {e}; output is no longer kept");
            *log = None;
        }
    }
    if *term {
        let ok = if w == Which::Err {
            let mut e = std::io::stderr().lock();
            e.write_all(bytes).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes).and_then(|()| o.flush())
        };
        if ok.is_err() {
            *term = false;
        }
    }
}
