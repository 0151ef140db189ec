//! Unit tests of the record: round trips, unknown fields kept at every level, what is corrupt.

use super::*;

pub fn sample() -> Record {
    Record {
        protocol: 1,
        id: "job-1".into(),
        name: Some("demo".into()),
        argv: vec!["sleep".into(), "10".into()],
        cwd: Some("/tmp".into()),
        created_at: Timestamp(1_000),
        status: Status::Running,
        reason: None,
        holder: Holder {
            pid: 100,
            start: "linux:5".into(),
            boot_id: "B1".into(),
            host: "h1".into(),
            time_ns: None,
            pid_ns: Some("pid:[1]".into()),
            extra: Default::default(),
        },
        child: Some(Child {
            pid: 101,
            start: "linux:6".into(),
            pgid: 101,
            extra: Default::default(),
        }),
        lease: Lease {
            epoch: 1,
            interval_ms: 1000,
            ttl_ms: 10_000,
            renewed_at: Timestamp(2_000),
            renewed_mono_ms: 50_000,
            extra: Default::default(),
        },
        progress: Progress::default(),
        exit: None,
        finished_at: None,
        late: vec![],
        meta: Default::default(),
        unique: None,
        extra: Map::new(),
    }
}

#[test]
fn round_trips_and_keeps_unknown_fields() {
    let mut v = serde_json::to_value(sample()).unwrap();
    v["future_field"] = serde_json::json!({"x": 1});
    let bytes = serde_json::to_vec(&v).unwrap();
    let r = Record::parse(&bytes, Some("job-1")).unwrap();
    assert_eq!(r.extra["future_field"]["x"], 1);
    let again = Record::parse(&r.to_json(), Some("job-1")).unwrap();
    assert_eq!(again, r);
}

#[test]
fn exit_serializes_as_named_object() {
    assert_eq!(
        serde_json::to_string(&Exit::Code(3)).unwrap(),
        r#"{"code":3}"#
    );
    assert_eq!(
        serde_json::to_string(&Exit::Signal(9)).unwrap(),
        r#"{"signal":9}"#
    );
}

#[test]
fn rejects_bad_records() {
    let good = serde_json::to_value(sample()).unwrap();
    let cases: Vec<(&str, Value)> = vec![
        ("wrong type", {
            let mut v = good.clone();
            v["holder"]["pid"] = "x".into();
            v
        }),
        ("pid zero", {
            let mut v = good.clone();
            v["holder"]["pid"] = 0.into();
            v
        }),
        ("pid negative", {
            let mut v = good.clone();
            v["holder"]["pid"] = (-1).into();
            v
        }),
        ("bad status", {
            let mut v = good.clone();
            v["status"] = "zombie".into();
            v
        }),
        ("ttl too small", {
            let mut v = good.clone();
            v["lease"]["ttl_ms"] = 1500.into();
            v
        }),
        ("no protocol", {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove("protocol");
            v
        }),
    ];
    for (what, v) in cases {
        let r = Record::parse(&serde_json::to_vec(&v).unwrap(), Some("job-1"));
        assert!(matches!(r, Err(RecordError::Corrupt(_))), "{what}: {r:?}");
    }
    assert!(Record::parse(b"", None).is_err());
    assert!(Record::parse(b"{\"protocol\":1", None).is_err());
    assert!(Record::parse(&[0xff, 0xfe], None).is_err());
    let deep = "[".repeat(100_000);
    assert!(Record::parse(deep.as_bytes(), None).is_err());
    let mut v = good.clone();
    v["protocol"] = 2.into();
    assert_eq!(
        Record::parse(&serde_json::to_vec(&v).unwrap(), None),
        Err(RecordError::Unsupported(2))
    );
    let r = Record::parse(&serde_json::to_vec(&good).unwrap(), Some("other"));
    assert!(matches!(r, Err(RecordError::Corrupt(_))));
}

#[test]
fn integers_stop_at_2_pow_53_minus_1() {
    let good = serde_json::to_value(sample()).unwrap();
    let mut v = good.clone();
    v["lease"]["renewed_mono_ms"] = MAX_INT.into();
    assert!(Record::parse(&serde_json::to_vec(&v).unwrap(), None).is_ok());
    for path in [
        &["lease", "epoch"][..],
        &["lease", "renewed_mono_ms"],
        &["progress", "count"],
    ] {
        let mut v = good.clone();
        v[path[0]][path[1]] = (MAX_INT + 1).into();
        let r = Record::parse(&serde_json::to_vec(&v).unwrap(), None);
        assert!(matches!(r, Err(RecordError::Corrupt(_))), "{path:?}: {r:?}");
    }
    let mut v = good.clone();
    v["protocol"] = (MAX_INT + 1).into();
    let r = Record::parse(&serde_json::to_vec(&v).unwrap(), None);
    assert!(matches!(r, Err(RecordError::Corrupt(_))), "{r:?}");
    v.as_object_mut().unwrap().remove("lease");
    let r = Record::parse(&serde_json::to_vec(&v).unwrap(), None);
    assert!(matches!(r, Err(RecordError::Corrupt(_))), "{r:?}");
}
