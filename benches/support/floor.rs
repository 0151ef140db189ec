//! For scale beside the idle fleets: what any process costs that wakes once per interval and
//! writes 256 bytes in place, and does nothing else (`nanosleep`, `pwrite`). An idle wrapper
//! does that plus its checks; the difference between the two rows is tether's own share, the
//! rest is the price of waking a process at all on this machine (scheduler, context switch,
//! cold caches), which no wrapper can go below. Two kinds: *aligned* processes wake on whole
//! multiples of the interval, as wrappers do (`clock::next_multiple`), so all of them together;
//! *apart* ones each at their own phase, as wrappers did before. The pair shows what waking
//! together saves by itself.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tether::clock::{mono, next_multiple};

/// The bench binary re-run as one floor process: `--idle-floor MS FILE aligned|apart`.
pub fn serve(interval_ms: u64, file: &Path, aligned: bool) -> ! {
    let f = std::fs::File::create(file).expect("floor file");
    let slot = [0u8; 256];
    let every = Duration::from_millis(interval_ms);
    loop {
        let pause = if aligned {
            let now = mono();
            next_multiple(now, every) - now
        } else {
            every
        };
        std::thread::sleep(pause);
        // Errors are not expected in a private temp dir; a failing write would only be cheaper.
        let _ = f.write_at(&slot, 0);
    }
}

/// `n` floor processes; dropping it (also on a panic) kills and reaps them: they are our own
/// unreaped children, so their pids cannot have been reused.
pub struct Floor {
    children: Vec<Child>,
}

impl Floor {
    pub fn start(dir: &Path, n: usize, interval_ms: u64, aligned: bool) -> Floor {
        std::fs::create_dir_all(dir).expect("floor dir");
        let exe = std::env::current_exe().expect("the bench binary");
        let mut floor = Floor {
            children: Vec::with_capacity(n),
        };
        for i in 0..n {
            let child = Command::new(&exe)
                .arg("--idle-floor")
                .arg(interval_ms.to_string())
                .arg(dir.join(format!("slot-{i}")))
                .arg(if aligned { "aligned" } else { "apart" })
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn a floor process");
            floor.children.push(child);
        }
        floor
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}
