//! The rules of protocol.md 4.4 step 3 for a record's JSON text that serde_json does not enforce
//! everywhere. A record must be I-JSON (RFC 7493) so that every implementation reads the same
//! values: serde_json rejects a lone surrogate escape only in strings it decodes, and skips unknown
//! nested fields unread, so this scan makes the rule hold wherever the escape is.

/// The 4 hex digits of the first `\\uXXXX` escape that is a surrogate without its other half.
/// Outside strings a backslash is a JSON error anyway, so escapes can be scanned without tracking
/// string boundaries; each escape is consumed whole, so `\\\\u` is not mistaken for one.
pub fn lone_surrogate(bytes: &[u8]) -> Option<String> {
    let hex = |i: usize| -> Option<u16> {
        let h = bytes.get(i..i + 4)?;
        u16::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let mut i = 0;
    while let Some(off) = bytes
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'\\'))
    {
        i += off;
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let u = hex(i + 2)?;
        i += 6;
        match u {
            0xD800..=0xDBFF => {
                let low = (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
                    .then(|| hex(i + 2))
                    .flatten();
                match low {
                    Some(0xDC00..=0xDFFF) => i += 6,
                    _ => return Some(format!("{u:04x}")),
                }
            }
            0xDC00..=0xDFFF => return Some(format!("{u:04x}")),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn lone_surrogates_anywhere_are_corrupt() {
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
        assert_eq!(super::lone_surrogate(b"\\"), None);
        assert_eq!(super::lone_surrogate(b"\\u"), None);
    }
}
