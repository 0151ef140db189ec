//! `--store URL` / `TETHER_STORE` (protocol.md 11.1): which store a command talks to.
//!
//! Parsed without the etcd feature too, so a build without it can say precisely why an `etcd://`
//! URL cannot be used instead of calling it malformed.

use std::path::PathBuf;

/// The prefix used when an `etcd://` URL names none.
pub const DEFAULT_PREFIX: &str = "tether";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:PATH`: the state directory of protocol.md section 2.
    File(PathBuf),
    Etcd(EtcdUrl),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `HOST:PORT` of each member, in the order given.
    pub endpoints: Vec<String>,
    /// Key prefix, without leading or trailing `/` (`tether` by default).
    pub prefix: String,
}

impl std::fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}/{}", self.endpoints.join(","), self.prefix)
    }
}

impl StoreUrl {
    /// Parses a store URL; the error says what is wrong and shows the accepted forms.
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        const FORMS: &str = "use file:PATH or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]";
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("store URL {s:?} has no path; {FORMS}"));
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("etcd://") else {
            return Err(format!(
                "store URL {s:?} is neither file: nor etcd://; {FORMS}"
            ));
        };
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for ep in hosts.split(',') {
            endpoints.push(parse_endpoint(ep).map_err(|why| format!("store URL {s:?}: {why}"))?);
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX.to_owned()
        } else {
            check_prefix(prefix).map_err(|why| format!("store URL {s:?}: {why}"))?;
            prefix.to_owned()
        };
        Ok(StoreUrl::Etcd(EtcdUrl { endpoints, prefix }))
    }
}

fn parse_endpoint(ep: &str) -> Result<String, String> {
    let (host, port) = ep
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {ep:?} has no :PORT"))?;
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !(bracketed || plain) {
        return Err(format!("endpoint {ep:?} has no valid host name or address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{host}:{p}")),
        _ => Err(format!("endpoint {ep:?} has no valid port (1-65535)")),
    }
}

/// Segments of letters, digits, `.`, `_`, `-`, joined by single `/`; no `.` or `..` segment, so a
/// prefix can neither escape nor alias another one.
fn check_prefix(p: &str) -> Result<(), String> {
    for seg in p.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "prefix {p:?} must be segments of letters, digits, '.', '_' or '-' separated by '/'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(s: &str) -> EtcdUrl {
        match StoreUrl::parse(s).unwrap() {
            StoreUrl::Etcd(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            StoreUrl::parse("file:/var/tmp/t").unwrap(),
            StoreUrl::File("/var/tmp/t".into())
        );
        let e = etcd("etcd://127.0.0.1:2379");
        assert_eq!(e.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(e.prefix, "tether");
        let e = etcd("etcd://a:1,b.example:2,[::1]:3/team/ci/");
        assert_eq!(e.endpoints, ["a:1", "b.example:2", "[::1]:3"]);
        assert_eq!(e.prefix, "team/ci");
        assert_eq!(e.to_string(), "etcd://a:1,b.example:2,[::1]:3/team/ci");
    }

    #[test]
    fn rejects_with_a_reason() {
        for (bad, says) in [
            ("", "neither"),
            ("file:", "no path"),
            ("http://a:1", "neither"),
            ("etcd://", "no :PORT"),
            ("etcd://a", "no :PORT"),
            ("etcd://a:0", "valid port"),
            ("etcd://a:99999", "valid port"),
            ("etcd://:1", "host"),
            ("etcd://a b:1", "host"),
            ("etcd://a:1,", "no :PORT"),
            ("etcd://a:1/x/../y", "prefix"),
            ("etcd://a:1/x//y", "prefix"),
            ("etcd://a:1/x y", "prefix"),
        ] {
            let e = StoreUrl::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
