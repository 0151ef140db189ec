//! Real mounts for the fault tests (a tmpfs that fills up, a read-only remount, a loop-mounted
//! image): the kernel decides which call fails, not a fake. Mounting needs root; a caller that gets
//! None hands the reason to [`crate::common::skip`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted filesystem, unmounted on drop (lazily if something still holds it), so a failing
/// assertion never leaves a mount behind.
pub struct Mount(pub PathBuf);

impl Mount {
    /// `mount ARGS AT`, creating `at`; None (after printing mount's own error) where it fails.
    pub fn new(args: &[&str], at: &Path) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        match Command::new("mount").args(args).arg(at).output() {
            Ok(o) if o.status.success() => Some(Mount(at.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "mount {args:?} {} failed: {}",
                    at.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("cannot run mount: {e}");
                None
            }
        }
    }

    /// A private tmpfs of `size` (`256k`, `1m`) at `at`.
    pub fn tmpfs(size: &str, at: &Path) -> Option<Mount> {
        let opts = format!("size={size},mode=0700");
        Mount::new(&["-t", "tmpfs", "-o", &opts, "tmpfs"], at)
    }

    /// `src` seen read-only at `at` (a bind mount, then remounted read-only).
    pub fn bind_ro(src: &Path, at: &Path) -> Option<Mount> {
        let m = Mount::new(&["--bind", src.to_str()?], at)?;
        let ro = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ro.then_some(m)
    }

    /// Makes this mount read-only, as a disk that went bad does.
    pub fn remount_ro(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount read-only failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Writes a file at `path` until the filesystem refuses with ENOSPC (any other error fails the
/// test), and keeps it open: the full-disk tests fill a small tmpfs [`Mount`] this way.
pub fn fill(path: &Path) -> std::fs::File {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    for _ in 0..100_000 {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::NOSPC.raw_os_error()),
                "filling {}: {e}",
                path.display()
            );
            return f;
        }
    }
    panic!("{} never filled up", path.display());
}
