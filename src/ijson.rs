//! The rules of protocol.md 4.4 for a record's JSON that serde does not enforce by itself, so
//! that every implementation reads the same record from the same bytes.
//!
//! - serde_json checks lone surrogate escapes, numbers beyond an `f64` and nesting depth only in
//!   the values it decodes, and would skip unknown nested fields unread: `text_problem` scans the
//!   whole text once for all three. A record's own parse (`Record::parse`) needs the scan only
//!   when its typed decoding fails: that decoding reads every value, unknown members included
//!   (each object keeps them in `extra`), so it refuses a lone surrogate or an infinite number
//!   anywhere, and `shallow` rules out deep nesting. `decoding_a_record_checks_every_value` holds
//!   the decoding to that, at every level of a record.
//! - serde's derive reads a struct from a JSON array of its fields as readily as from an object
//!   (`"lease": [1, 1000, ...]`); no other JSON implementation would. `object` and its kin accept
//!   objects only.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A `T` that must be written as a JSON object.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Obj)
    }
}

/// For `deserialize_with`: the field is an object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Obj::deserialize(d).map(|o| o.0)
}

/// For `deserialize_with`: the field is an object or null.
pub fn nullable_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Obj<T>>::deserialize(d).map(|o| o.map(|o| o.0))
}

/// For `deserialize_with`: the field is an array of objects.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Obj<T>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
}

/// How deep arrays and objects may nest, the record itself being depth 1 (protocol.md 4.4). A
/// record needs 4; serde_json stops at 128 where it decodes and nowhere where it skips, so the
/// protocol fixes one limit, checked here, well inside what every parser handles.
pub const MAX_DEPTH: i32 = 64;

/// True when `b` holds at most `MAX_DEPTH` brackets (`[` or `{`, in strings or not), so nothing in
/// it can nest deeper than `MAX_DEPTH`. A record has about eight, and counting them is a fraction
/// of a scan that tracks strings.
pub fn shallow(b: &[u8]) -> bool {
    let most = MAX_DEPTH as usize;
    memchr::memchr2_iter(b'[', b'{', b).take(most + 1).count() <= most
}

/// What, if anything, makes `bytes` break a rule of 4.4 step 3 that serde_json checks only in the
/// values it decodes (it skips unknown nested fields unread): a `\\uXXXX` escape that is half of
/// a surrogate pair alone, a number beyond the range of an `f64` (`1e400`), or nesting deeper than
/// `MAX_DEPTH`. One pass that tracks strings; anything else malformed is left to the parser.
pub fn text_problem(b: &[u8]) -> Option<String> {
    let hex = |i: usize| -> Option<u16> {
        let h = b.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    // Runs of bytes that cannot matter are skipped in one step: inside strings all but quotes
    // and escapes (memchr), outside them whitespace, punctuation and letters (a table). Every
    // record of a listing goes through here, and a byte-by-byte state machine was a fifth of
    // `status --json`.
    const fn table() -> [bool; 256] {
        let mut t = [false; 256];
        let mut c = 0;
        while c < 256 {
            t[c] = matches!(
                c as u8,
                b'[' | b'{' | b']' | b'}' | b'"' | b'-' | b'0'..=b'9'
            );
            c += 1;
        }
        t
    }
    static MATTERS: [bool; 256] = table();
    let mut depth = 0;
    let mut i = 0;
    loop {
        i += b.get(i..)?.iter().position(|&c| MATTERS[c as usize])?;
        match b[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(format!("arrays and objects nested deeper than {MAX_DEPTH}"));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth -= 1;
                i += 1;
            }
            b'"' => {
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
                    if b[i] == b'"' {
                        i += 1;
                        break;
                    }
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    let u = hex(i + 2)?;
                    i += 6;
                    let paired = (0xD800..=0xDBFF).contains(&u)
                        && b.get(i) == Some(&b'\\')
                        && b.get(i + 1) == Some(&b'u')
                        && hex(i + 2).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
                    if paired {
                        i += 6;
                    } else if (0xD800..=0xDFFF).contains(&u) {
                        return Some(format!("a lone surrogate escape (\\u{u:04x})"));
                    }
                }
            }
            _ => {
                let start = i;
                while matches!(
                    b.get(i),
                    Some(b'+' | b'-' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    i += 1;
                }
                // Without an exponent, 308 characters cannot reach 1e308 < f64::MAX: only a
                // number that could overflow pays for a float parse.
                let n = &b[start..i];
                if n.len() > 308 || n.iter().any(|c| matches!(c, b'e' | b'E')) {
                    let n = std::str::from_utf8(n).ok()?;
                    if n.parse::<f64>().is_ok_and(|f| f.is_infinite()) {
                        return Some(format!(
                            "the number {n:.20} is beyond the range of a double"
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_rules_hold_anywhere() {
        let text = String::from_utf8(serde_json::to_vec(&crate::record::tests::sample()).unwrap())
            .unwrap();
        let with = |s: &str| text.replacen("\"boot_id\"", &format!("\"x\":\"{s}\",\"boot_id\""), 1);
        assert!(crate::record::Record::parse(with("\\ud83d\\ude00").as_bytes(), None).is_ok());
        assert!(
            crate::record::Record::parse(with("\\\\ud800").as_bytes(), None).is_ok(),
            "an escaped backslash"
        );
        for bad in ["\\ud800", "\\udc00", "\\ud800\\u0041", "a\\ud800"] {
            let r = crate::record::Record::parse(with(bad).as_bytes(), None);
            assert!(
                matches!(r, Err(crate::record::RecordError::Corrupt(_))),
                "{bad}: {r:?}"
            );
        }
        assert_eq!(super::text_problem(b"\"\\"), None);
        assert_eq!(super::text_problem(b"\"\\u"), None);
        assert_eq!(
            super::text_problem(b"\"\\\"1e400\""),
            None,
            "a number in a string"
        );
        assert!(super::text_problem(b"[1e400]").is_some());
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(super::text_problem(nest(64).as_bytes()), None);
        assert!(super::text_problem(nest(65).as_bytes()).is_some());
        assert_eq!(
            super::text_problem(b"[\"[[[[\"]"),
            None,
            "brackets in a string"
        );
        assert!(super::text_problem(b"[-1e309]").is_some());
        assert_eq!(
            super::text_problem(b"[1e308, 1e-400, 18446744073709551616]"),
            None
        );
    }

    /// The byte-by-byte scan `text_problem` replaced, kept as the reference it must agree with.
    fn reference(b: &[u8]) -> Option<String> {
        use super::MAX_DEPTH;
        let hex = |i: usize| -> Option<u16> {
            let h = b.get(i..i + 4)?;
            u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        let (mut i, mut in_string, mut depth) = (0, false, 0);
        while let Some(&c) = b.get(i) {
            match (in_string, c) {
                (false, b'[' | b'{') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(format!("arrays and objects nested deeper than {MAX_DEPTH}"));
                    }
                    i += 1;
                }
                (false, b']' | b'}') => {
                    depth -= 1;
                    i += 1;
                }
                (true, b'"') | (false, b'"') => {
                    in_string = !in_string;
                    i += 1;
                }
                (true, b'\\') if b.get(i + 1) == Some(&b'u') => {
                    let u = hex(i + 2)?;
                    i += 6;
                    let paired = (0xD800..=0xDBFF).contains(&u)
                        && b.get(i) == Some(&b'\\')
                        && b.get(i + 1) == Some(&b'u')
                        && hex(i + 2).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
                    if paired {
                        i += 6;
                    } else if (0xD800..=0xDFFF).contains(&u) {
                        return Some(format!("a lone surrogate escape (\\u{u:04x})"));
                    }
                }
                (true, b'\\') => i += 2,
                (false, b'-' | b'0'..=b'9') => {
                    let start = i;
                    while b.get(i).is_some_and(|c| b"+-.eE0123456789".contains(c)) {
                        i += 1;
                    }
                    let n = std::str::from_utf8(&b[start..i]).ok()?;
                    if n.parse::<f64>().is_ok_and(|f| f.is_infinite()) {
                        return Some(format!(
                            "the number {n:.20} is beyond the range of a double"
                        ));
                    }
                }
                _ => i += 1,
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn skipping_scan_agrees_with_the_byte_by_byte_one(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "[", "]", "{", "}", "\"", "\\", "\\u", "\\\"", "d800", "dc00", "D83D", "0041",
                "1", "9", "-", "+", ".", "e", "E", "1e400", "-1e309", "1e308", " ", ",", ":",
                "x", "null", "\n",
            ]), 0..80),
            long in 0usize..3,
        ) {
            let mut text = parts.concat();
            // Numbers around the 308-digit bound, with and without an exponent.
            if long > 0 {
                text.push_str(&"9".repeat(307 + long));
            }
            let b = text.as_bytes();
            proptest::prop_assert_eq!(super::text_problem(b), reference(b), "{:?}", text);
        }
    }

    #[test]
    fn long_plain_numbers_are_still_checked() {
        let n = |d: usize| format!("[{}]", "9".repeat(d));
        assert_eq!(super::text_problem(n(308).as_bytes()), None);
        assert!(super::text_problem(n(309).as_bytes()).is_some());
        assert_eq!(
            super::text_problem(n(309).as_bytes()),
            reference(n(309).as_bytes())
        );
    }

    /// `Record::parse` skips `text_problem` when the typed decoding succeeds on shallow text: that
    /// is sound only while the decoding refuses what the scan would, in every object of a record,
    /// in a member's value and in its name. A struct that skipped unknown members unread would
    /// fail here.
    #[test]
    fn decoding_a_record_checks_every_value() {
        use crate::record::{LateResult, ProbeOutcome, Record, RecordError, tests::sample};
        let mut rec = sample();
        rec.progress.probe = Some(ProbeOutcome {
            at: crate::clock::Timestamp(3_000),
            ok: true,
            failures: 0,
            detail: "200".into(),
            duration_ms: 1,
        });
        rec.late.push(LateResult {
            at: crate::clock::Timestamp(4_000),
            epoch: 1,
            status: None,
            reason: None,
            exit: None,
            progress: Some(Default::default()),
            note: String::new(),
            extra: Default::default(),
        });
        let base = serde_json::to_value(&rec).unwrap();
        let paths: [&[&str]; 8] = [
            &[],
            &["holder"],
            &["child"],
            &["lease"],
            &["progress"],
            &["progress", "probe"],
            &["late", "0"],
            &["late", "0", "progress"],
        ];
        let bad = [
            "1e400",
            "-1e309",
            &"9".repeat(400),
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\\ud800\\u0041\"",
            "[1, {\"k\": [1e400]}]",
            "{\"k\": \"\\udbff\"}",
        ];
        for path in paths {
            for (value, as_name) in bad.iter().map(|v| (*v, false)).chain([("1", true)]) {
                let mut v = base.clone();
                let mut at = &mut v;
                for step in path {
                    at = match step.parse::<usize>() {
                        Ok(i) => &mut at[i],
                        Err(_) => &mut at[*step],
                    };
                }
                at["zz-unknown"] = serde_json::json!("@@");
                let mut text = serde_json::to_string(&v).unwrap();
                text = if as_name {
                    text.replacen("\"zz-unknown\"", "\"\\ud800\"", 1)
                } else {
                    text.replacen("\"@@\"", value, 1)
                };
                assert!(super::shallow(text.as_bytes()), "{text}");
                assert!(super::text_problem(text.as_bytes()).is_some(), "{text}");
                assert!(
                    serde_json::from_str::<Record>(&text).is_err(),
                    "{path:?}: typed decoding accepted {text}"
                );
                let r = Record::parse(text.as_bytes(), None);
                assert!(
                    matches!(&r, Err(RecordError::Corrupt(m)) if m.contains("I-JSON")),
                    "{path:?}: {r:?}"
                );
            }
        }
        // Nesting is the one rule decoding does not hold (serde_json stops at 128): past 64
        // brackets the scan runs.
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut v = base;
        v["zz-unknown"] = serde_json::json!("@@");
        let text = serde_json::to_string(&v).unwrap();
        let deep = text.replacen("\"@@\"", &nest(60), 1);
        assert!(!super::shallow(deep.as_bytes()));
        assert!(serde_json::from_str::<Record>(&deep).is_ok());
        assert!(
            Record::parse(deep.as_bytes(), None).is_ok(),
            "64 deep at most"
        );
        let deeper = text.replacen("\"@@\"", &nest(64), 1);
        assert!(serde_json::from_str::<Record>(&deeper).is_ok());
        let r = Record::parse(deeper.as_bytes(), None);
        assert!(
            matches!(&r, Err(RecordError::Corrupt(m)) if m.contains("deeper than 64")),
            "{r:?}"
        );
        assert!(super::shallow(nest(64).as_bytes()));
        assert!(!super::shallow(nest(65).as_bytes()));
        let in_a_string = format!("[\"{}\"]", "{".repeat(64));
        assert!(
            !super::shallow(in_a_string.as_bytes()),
            "counted in strings too"
        );
    }

    #[test]
    fn structs_are_objects_never_arrays() {
        let text = String::from_utf8(serde_json::to_vec(&crate::record::tests::sample()).unwrap())
            .unwrap();
        let ok = crate::record::Record::parse(text.as_bytes(), None).unwrap();
        for (from, to) in [
            (
                "\"progress\":{\"message\":null,\"at\":null,\"count\":0}",
                "\"progress\":[]",
            ),
            (
                "\"lease\":{",
                "\"lease\":[1,1000,10000,\"1970-01-01T00:00:02Z\",50000],\"x\":{",
            ),
            ("\"late\":[]", "\"late\":[[\"1970-01-01T00:00:02Z\",1]]"),
            ("\"child\":{", "\"child\":[101,\"linux:6\",101],\"x\":{"),
        ] {
            assert!(text.contains(from), "{from}");
            let bad = text.replacen(from, to, 1);
            let r = crate::record::Record::parse(bad.as_bytes(), None);
            assert!(r.is_err(), "{to}: {r:?}");
        }
        assert_eq!(ok.progress.count, 0);
    }
}
