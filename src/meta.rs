//! Job metadata: a few string labels (`tether run --meta session=abc`) that the tool starting a job
//! keeps in tether's record instead of in a record of its own, so there is one record per job to
//! believe, and filters on (`tether status --meta session=abc`). Bounded, so a record stays small
//! and a listing stays fast.

use std::collections::BTreeMap;

/// Keys to values, sorted (so the JSON is stable).
pub type Meta = BTreeMap<String, String>;

pub const MAX_KEYS: usize = 32;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_VALUE_BYTES: usize = 1024;
/// Keys and values together, in bytes.
pub const MAX_TOTAL_BYTES: usize = 8192;

/// A key is 1 to 64 ASCII characters from `[A-Za-z0-9._-]`, the first one alphanumeric (like a job id).
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_CHARS
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "metadata key {key:?} is not 1 to {MAX_KEY_CHARS} characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
        ))
    }
}

/// The bounds above, checked on a whole map.
pub fn check(meta: &Meta) -> Result<(), String> {
    if meta.len() > MAX_KEYS {
        return Err(format!(
            "{} metadata keys given; at most {MAX_KEYS} are kept",
            meta.len()
        ));
    }
    let mut total = 0;
    for (k, v) in meta {
        check_key(k)?;
        if v.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "metadata value of {k} is {} bytes; at most {MAX_VALUE_BYTES} are kept",
                v.len()
            ));
        }
        total += k.len() + v.len();
    }
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "metadata is {total} bytes in all; at most {MAX_TOTAL_BYTES} are kept"
        ));
    }
    Ok(())
}

/// `KEY=VALUE` (the value may be empty and may contain `=`).
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("metadata {s:?} is not KEY=VALUE"))?;
    check_key(k)?;
    Ok((k.to_string(), v.to_string()))
}

/// The metadata of `--meta KEY=VALUE...` and `--meta-json '{"KEY": "VALUE"}'`. A key given twice is
/// an error: silently keeping one of two values would store something the caller did not mean.
pub fn build(pairs: &[String], json: Option<&str>) -> Result<Meta, String> {
    let mut meta = Meta::new();
    let mut put = |k: String, v: String| match meta.insert(k.clone(), v) {
        Some(_) => Err(format!("metadata key {k} is given twice")),
        None => Ok(()),
    };
    if let Some(text) = json {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("--meta-json is not valid JSON: {e}"))?;
        let serde_json::Value::Object(obj) = value else {
            return Err("--meta-json is not a JSON object of strings".into());
        };
        for (k, v) in obj {
            let serde_json::Value::String(v) = v else {
                return Err(format!(
                    "--meta-json: the value of {k} is not a string (metadata values are strings)"
                ));
            };
            put(k, v)?;
        }
    }
    for p in pairs {
        let (k, v) = parse_pair(p)?;
        put(k, v)?;
    }
    check(&meta)?;
    Ok(meta)
}

/// Whether `meta` has every `KEY=VALUE` of `filter`.
pub fn matches(meta: &Meta, filter: &[(String, String)]) -> bool {
    filter.iter().all(|(k, v)| meta.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_json_merge_and_bounds_hold() {
        let m = build(
            &["session=abc".into(), "eq=a=b".into(), "empty=".into()],
            Some(r#"{"kind": "review"}"#),
        )
        .unwrap();
        assert_eq!(m["session"], "abc");
        assert_eq!(m["eq"], "a=b");
        assert_eq!(m["empty"], "");
        assert_eq!(m["kind"], "review");
        assert!(matches(&m, &[("session".into(), "abc".into())]));
        assert!(!matches(&m, &[("session".into(), "abd".into())]));
        assert!(!matches(&m, &[("absent".into(), "".into())]));
    }

    #[test]
    fn bad_metadata_is_refused_with_the_thing_at_fault() {
        let bad = |pairs: &[&str], json: Option<&str>| {
            let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
            build(&pairs, json).unwrap_err()
        };
        assert!(bad(&["nokey"], None).contains("\"nokey\" is not KEY=VALUE"));
        assert!(bad(&["=v"], None).contains("key \"\""));
        assert!(bad(&["a/b=v"], None).contains("\"a/b\""));
        assert!(bad(&[".a=v"], None).contains("\".a\""));
        assert!(bad(&["a=1", "a=2"], None).contains("a is given twice"));
        assert!(bad(&["a=1"], Some(r#"{"a": "2"}"#)).contains("a is given twice"));
        assert!(bad(&[], Some(r#"{"n": 5}"#)).contains("value of n is not a string"));
        assert!(bad(&[], Some("[1]")).contains("not a JSON object"));
        assert!(bad(&[], Some("{")).contains("not valid JSON"));
        let long = format!("k={}", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(bad(&[&long], None).contains("1025 bytes"));
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}=v")).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        assert!(bad(&many, None).contains("33 metadata keys"));
        let big: Vec<String> = (0..9)
            .map(|i| format!("k{i}={}", "x".repeat(1000)))
            .collect();
        let big: Vec<&str> = big.iter().map(|s| s.as_str()).collect();
        assert!(bad(&big, None).contains("bytes in all"));
        assert!(build(&[format!("{}=v", "k".repeat(64))], None).is_ok());
        assert!(bad(&[&format!("{}=v", "k".repeat(65))], None).contains("not 1 to 64"));
    }
}
