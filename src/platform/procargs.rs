//! The buffer macOS's `sysctl {CTL_KERN, KERN_PROCARGS2, pid}` returns, taken apart.
//!
//! Why a pure function of its own: the sysctl only exists on macOS, but its buffer is a plain byte
//! layout, so the parsing, where an off-by-one would tie the wrong process to a job, is tested
//! on Linux with buffers laid out as the kernel writes them. The layout (xnu `sysctl_procargsx`,
//! read the same way by `ps` and psutil):
//!
//! ```text
//! argc            a native-endian 32-bit int
//! exec path       NUL-terminated
//! padding         NULs, up to where argv[0] begins
//! argv[0..argc]   each NUL-terminated
//! env strings     each NUL-terminated, up to an empty string (or the end of the buffer)
//! ```
//!
//! After the environment come the kernel's `apple[]` strings (or NULs where the kernel hid them),
//! which are not part of the environment and are not returned. The padding cannot be told apart
//! from an empty `argv[0]`: such a process's argv reads one string late, so its first environment
//! entry is taken for an argument and missed. That errs on the side of proving less (a survivor
//! left unproven is reported, never signalled), never of reading an argument as environment.

/// A process's exec path, arguments and environment, borrowed from the sysctl's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcArgs<'a> {
    pub exec_path: &'a [u8],
    pub argv: Vec<&'a [u8]>,
    pub env: Vec<&'a [u8]>,
}

/// Takes a `KERN_PROCARGS2` buffer apart; None when it is too short for the `argc` it announces,
/// or announces a negative one.
pub fn parse(buf: &[u8]) -> Option<ProcArgs<'_>> {
    let argc = i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = &buf[4..];
    let path_end = rest.iter().position(|b| *b == 0)?;
    let exec_path = &rest[..path_end];
    let mut at = path_end;
    while rest.get(at) == Some(&0) {
        at += 1;
    }
    let mut argv = Vec::with_capacity(argc.min(1024));
    for _ in 0..argc {
        let (s, next) = string_at(rest, at)?;
        argv.push(s);
        at = next;
    }
    let mut env = Vec::new();
    while let Some((s, next)) = string_at(rest, at) {
        if s.is_empty() {
            break;
        }
        env.push(s);
        at = next;
    }
    Some(ProcArgs {
        exec_path,
        argv,
        env,
    })
}

/// The NUL-terminated string starting at `at`, and where the next one starts; None past the end
/// or for a string the buffer cuts off.
fn string_at(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let tail = buf.get(at..)?;
    let len = tail.iter().position(|b| *b == 0)?;
    Some((&tail[..len], at + len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer as the kernel lays it out: argc, the exec path, NULs up to the next 8-byte
    /// boundary of the string area, argv, env, then the apple strings after an empty one.
    fn buffer(path: &str, argv: &[&str], env: &[&str], apple: &[&str]) -> Vec<u8> {
        let mut b = (argv.len() as i32).to_ne_bytes().to_vec();
        b.extend_from_slice(path.as_bytes());
        b.push(0);
        while (b.len() - 4) % 8 != 0 {
            b.push(0);
        }
        for s in argv.iter().chain(env) {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b.push(0);
        for s in apple {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b
    }

    fn strs(v: &[&[u8]]) -> Vec<String> {
        v.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn splits_path_argv_and_env_and_drops_the_apple_strings() {
        let b = buffer(
            "/bin/sleep",
            &["sleep", "300"],
            &["HOME=/Users/a", "TETHER_JOB_ID=build"],
            &["executable_path=/bin/sleep", "ptr_munge="],
        );
        let p = parse(&b).unwrap();
        assert_eq!(p.exec_path, b"/bin/sleep");
        assert_eq!(strs(&p.argv), ["sleep", "300"]);
        assert_eq!(strs(&p.env), ["HOME=/Users/a", "TETHER_JOB_ID=build"]);
    }

    #[test]
    fn padding_of_any_length_is_skipped() {
        // Path lengths 1 to 16 leave every padding from 0 to 7 NULs, twice.
        for len in 1..=16 {
            let path = format!("/{}", "p".repeat(len - 1));
            let b = buffer(&path, &["x", "y"], &["K=V"], &[]);
            let p = parse(&b).unwrap();
            assert_eq!(p.exec_path, path.as_bytes());
            assert_eq!(strs(&p.argv), ["x", "y"], "path {path}");
            assert_eq!(strs(&p.env), ["K=V"], "path {path}");
        }
    }

    #[test]
    fn an_argument_shaped_like_an_entry_is_not_environment() {
        let b = buffer("/bin/sh", &["sh", "TETHER_JOB_ID=x"], &["PATH=/bin"], &[]);
        let p = parse(&b).unwrap();
        assert_eq!(strs(&p.env), ["PATH=/bin"]);
    }

    #[test]
    fn empty_environment_and_a_buffer_that_ends_without_the_empty_string() {
        let b = buffer("/bin/true", &["true"], &[], &[]);
        assert!(parse(&b).unwrap().env.is_empty());
        let mut cut = buffer("/bin/env", &["env"], &["A=1", "B=2"], &[]);
        cut.pop(); // no empty string after the environment: the buffer's end closes it
        assert_eq!(strs(&parse(&cut).unwrap().env), ["A=1", "B=2"]);
        // A last string without its NUL is cut off, not read past the end.
        cut.pop();
        assert_eq!(strs(&parse(&cut).unwrap().env), ["A=1"]);
    }

    #[test]
    fn nuls_after_the_environment_end_it() {
        let mut b = buffer("/bin/cat", &["cat"], &["A=1"], &[]);
        b.extend_from_slice(&[0; 40]); // NULs where the apple strings would be
        assert_eq!(strs(&parse(&b).unwrap().env), ["A=1"]);
    }

    #[test]
    fn truncated_or_nonsense_buffers_are_refused() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[1, 0]), None);
        assert_eq!(parse(&(-1i32).to_ne_bytes()), None);
        let mut no_path_end = 1i32.to_ne_bytes().to_vec();
        no_path_end.extend_from_slice(b"/bin/sleep");
        assert_eq!(parse(&no_path_end), None);
        // argc says three arguments; the buffer holds two.
        let mut short = buffer("/bin/sleep", &["sleep", "1"], &[], &[]);
        short[..4].copy_from_slice(&3i32.to_ne_bytes());
        short.truncate(short.len() - 1);
        assert_eq!(parse(&short), None);
    }

    #[test]
    fn zero_arguments_go_straight_to_the_environment() {
        let b = buffer("/bin/odd", &[], &["A=1"], &[]);
        let p = parse(&b).unwrap();
        assert!(p.argv.is_empty());
        assert_eq!(strs(&p.env), ["A=1"]);
    }
}
