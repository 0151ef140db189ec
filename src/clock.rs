//! Time as the protocol sees it (protocol.md sections 1 and 7.3).
//!
//! Two clocks on purpose: wall time is for people and other hosts; the monotonic clock decides lease
//! age on the same boot, because it neither jumps with NTP or a user's `date -s` nor runs while the
//! machine sleeps. The monotonic clock is read with a raw syscall (rustix), so libfaketime, which
//! tests use to jump the wall clock, cannot fake it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A wall-clock instant, in milliseconds since the Unix epoch; serialized as RFC 3339 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(d.as_millis().min(i64::MAX as u128) as i64),
            Err(e) => Timestamp(-(e.duration().as_millis().min(i64::MAX as u128) as i64)),
        }
    }

    /// Parses the one timestamp form of protocol.md 4.1: `YYYY-MM-DDTHH:MM:SS[.f]Z` with 1 to 9
    /// fractional digits, uppercase `T` and `Z`, seconds 00-59, a real date from 1970 on. Every
    /// implementation must accept exactly the same strings, so nothing looser is tolerated.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        if !s.ends_with('Z') {
            return Err(format!("timestamp {s:?} is not RFC 3339 UTC ending in Z"));
        }
        if !timestamp_shape(s.as_bytes()) {
            return Err(format!(
                "timestamp {s:?} is not of the form YYYY-MM-DDTHH:MM:SS[.fraction]Z (seconds 00-59, 1-9 fraction digits)"
            ));
        }
        let t = humantime::parse_rfc3339(s).map_err(|e| format!("timestamp {s:?}: {e}"))?;
        Ok(Timestamp::from_system(t))
    }

    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// The nearest instant a timestamp can be written as (protocol.md 7.3): times are computed on
    /// any millisecond (an expiry 2^53 ms away, a lease file's wall time), but RFC 3339 stops at
    /// year 9999.
    pub fn clamped(self) -> Timestamp {
        Timestamp(self.0.clamp(0, MAX_MS))
    }

    /// For people: the timestamp, or says plainly that it lies beyond what can be written.
    pub fn human(self) -> String {
        match self.0 {
            ms if ms > MAX_MS => format!("after {}", Timestamp(MAX_MS)),
            ms if ms < 0 => format!("before {}", Timestamp(0)),
            _ => self.to_string(),
        }
    }
}

/// The last millisecond RFC 3339 can write, `9999-12-31T23:59:59.999Z` (protocol.md 4.1).
pub const MAX_MS: i64 = 253_402_300_799_999;

/// `YYYY-MM-DDTHH:MM:SS(.D{1,9})?Z` with seconds below 60; humantime checks the calendar.
fn timestamp_shape(b: &[u8]) -> bool {
    const FORM: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let digits = |r: &[u8]| !r.is_empty() && r.iter().all(u8::is_ascii_digit);
    if b.len() < FORM.len() + 1 || b[17] > b'5' {
        return false;
    }
    let head_ok = FORM.iter().zip(b).all(|(f, c)| {
        if *f == b'd' {
            c.is_ascii_digit()
        } else {
            f == c
        }
    });
    let tail = &b[FORM.len()..b.len() - 1];
    head_ok
        && match tail.split_first() {
            None => true,
            Some((b'.', frac)) => frac.len() <= 9 && digits(frac),
            Some(_) => false,
        }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a millisecond from 0 to `MAX_MS`, made by arithmetic into a
/// buffer: a listing writes four timestamps per job, and going through `humantime` and
/// `fmt::write` was most of the time spent writing 10,000 jobs' dates. The calendar is Howard
/// Hinnant's `civil_from_days`; a test holds it to humantime's formatting.
fn rfc3339_millis(ms: i64) -> [u8; 24] {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    out
}

/// Never fails, whatever the value (a failing `Display` panics in `format!` and in serde): outside
/// 1970 to 9999 it writes the nearest end of that range.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = rfc3339_millis(self.clamped().0);
        f.write_str(std::str::from_utf8(&text).expect("ASCII digits"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = rfc3339_millis(self.clamped().0);
        s.serialize_str(std::str::from_utf8(&text).expect("ASCII digits"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        /// Reads the string where it lies (borrowed, or serde's scratch buffer for one with
        /// escapes): a listing parses four timestamps per record, and each was copied into a
        /// `String` first.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                // As `String`'s visitor says, so a record's error messages stay as they were.
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Upper bounds of the command line's duration options. Past them a value is a typo, not a plan
/// (`--ttl 10000000d` once hid every job from `status --json`), and every sum made with it (a
/// record's milliseconds, an `Instant` deadline) stays far inside its type.
pub const MAX_INTERVAL: &str = "1d";
pub const MAX_TTL: &str = "30d";
pub const MAX_GRACE: &str = "1d";
pub const MAX_TIMEOUT: &str = "365d";
pub const MAX_AGE: &str = "36500d";

/// Parses a duration option ("500ms", "10s", "2m") of at most `max`, one of the bounds above.
/// clap names the option in front of the message.
pub fn parse_duration_at_most(s: &str, max: &str) -> Result<Duration, String> {
    let limit = humantime::parse_duration(max).map_err(|e| format!("bad bound {max}: {e}"))?;
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; give a duration of at most {max}, like 500ms, 10s or 2m"))?;
    if d > limit {
        return Err(format!(
            "{s} is longer than this option allows; give at most {max}"
        ));
    }
    Ok(d)
}

/// `run --interval`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_INTERVAL)
}
/// `run --ttl`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_TTL)
}
/// `run --grace`, `cancel --grace`, `gc --grace`.
pub fn parse_grace(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_GRACE)
}
/// `status --timeout`.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_TIMEOUT)
}
/// `gc --older-than`.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_AGE)
}

/// The clock `mono_ms` counts in, to the nanosecond: for a wait that must end at a given
/// millisecond of it, not up to one later.
pub fn mono() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Milliseconds on CLOCK_MONOTONIC (stops during suspend on Linux; see protocol.md 7.4).
pub fn mono_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1000) + (t.tv_nsec as u64) / 1_000_000
}

/// The first instant after `now` that is a whole multiple of `every`, both on the monotonic clock
/// since its zero: where a renewal timer starts so that every holder on a host with the same
/// interval wakes at the same instants. Waking together is cheaper for each of them than waking
/// apart (the code and the kernel's paths are hot for all but the first, and the processor leaves
/// idle once per tick rather than once per holder); the bench's aligned and unaligned floor rows
/// show by how much. Nothing else changes: the period stays `every`, so the first renewal comes
/// sooner, never later, than a period after the start.
pub fn next_multiple(now: Duration, every: Duration) -> Duration {
    let period = every.as_nanos().max(1);
    let to_next = period - now.as_nanos() % period;
    let to_next = Duration::from_nanos(u64::try_from(to_next).unwrap_or(u64::MAX));
    now.checked_add(to_next).unwrap_or(Duration::MAX)
}

/// A reader's view of "now", bundled so the verdict can be a pure function of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: Timestamp,
    pub mono_ms: u64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            wall: Timestamp::now(),
            mono_ms: mono_ms(),
        }
    }
}

/// "3.2s", "4m05s": short ages for tables and live lines.
pub fn short_duration(ms: i64) -> String {
    let neg = ms < 0;
    let a = ms.unsigned_abs();
    let s = if a < 1000 {
        format!("{a}ms")
    } else if a < 60_000 {
        format!("{:.1}s", a as f64 / 1000.0)
    } else if a < 3_600_000 {
        format!("{}m{:02}s", a / 60_000, (a / 1000) % 60)
    } else if a < 86_400_000 {
        format!("{}h{:02}m", a / 3_600_000, (a / 60_000) % 60)
    } else {
        format!("{}d{:02}h", a / 86_400_000, (a / 3_600_000) % 24)
    };
    if neg { format!("-{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_ticks_fall_on_whole_multiples_of_the_interval() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(next_multiple(ms(1500), s(1)), s(2));
        assert_eq!(next_multiple(s(2), s(1)), s(3), "strictly after now");
        assert_eq!(next_multiple(ms(0), ms(3333)), ms(3333));
        assert_eq!(next_multiple(ms(10_000), ms(3333)), ms(13_332));
        assert_eq!(
            next_multiple(ms(5), Duration::ZERO),
            ms(5) + Duration::from_nanos(1)
        );
        let far = Duration::from_secs(u64::MAX / 2);
        assert!(next_multiple(far, s(7)) > far);
        for now in [ms(1), ms(999), ms(123_456)] {
            let t = next_multiple(now, ms(200));
            assert!(t > now && t - now <= ms(200) && t.as_millis() % 200 == 0);
        }
    }

    #[test]
    fn timestamps_round_trip_and_accept_precisions() {
        let t = Timestamp::parse("2026-11-24T19:36:19.123Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-24T19:36:19.123Z");
        assert_eq!(
            Timestamp::parse("2026-11-24T19:36:19Z").unwrap().0 + 123,
            t.0
        );
        assert_eq!(
            Timestamp::parse("2026-11-24T19:36:19.123456789Z").unwrap(),
            t
        );
        assert!(Timestamp::parse("2026-11-24T19:36:19+01:00").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
        for bad in [
            "2026-12-31T23:59:60Z",
            "2026-11-24t19:36:19Z",
            "2026-11-24T19:36:19z",
            "2026-11-24 19:36:19Z",
            "2026-11-24T19:36:19.Z",
            "2026-11-24T19:36:19.1234567890Z",
            "2026-02-30T10:00:00Z",
            "2026-11-24T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-1-24T10:00:00Z",
            "+2026-11-24T10:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        // Sub-millisecond digits are truncated, never rounded (protocol.md 4.1).
        assert_eq!(
            Timestamp::parse("2026-11-24T19:36:19.123999999Z").unwrap(),
            t
        );
    }

    /// Any millisecond formats (a failing Display made every JSON reader exit 101), and what is
    /// written parses back.
    #[test]
    fn every_instant_formats_and_parses_back() {
        for ms in [i64::MIN, -1, 0, 1, MAX_MS, MAX_MS + 1, 1 << 53, i64::MAX] {
            let shown = Timestamp(ms).to_string();
            let back = Timestamp::parse(&shown).unwrap();
            assert_eq!(back, Timestamp(ms).clamped(), "{ms}: {shown}");
        }
        assert_eq!(Timestamp(MAX_MS).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(i64::MIN).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            serde_json::to_string(&Timestamp(i64::MAX)).unwrap(),
            "\"9999-12-31T23:59:59.999Z\""
        );
    }

    proptest::proptest! {
        /// The hand-made calendar writes what humantime writes, on any millisecond it may see.
        #[test]
        fn formatting_agrees_with_humantime(ms in 0..=MAX_MS) {
            let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
            let theirs = humantime::format_rfc3339_millis(t).to_string();
            proptest::prop_assert_eq!(Timestamp(ms).to_string(), theirs);
        }
    }

    #[test]
    fn duration_bounds() {
        for max in [MAX_INTERVAL, MAX_TTL, MAX_GRACE, MAX_TIMEOUT, MAX_AGE] {
            let limit = parse_duration_at_most(max, max).unwrap();
            // Far inside what a record (2^53 - 1 ms) and an Instant can hold.
            assert!(limit.as_millis() < (1u128 << 53) / 1000, "{max}");
            let over = format!("{}ms", limit.as_millis() + 1);
            let e = parse_duration_at_most(&over, max).unwrap_err();
            assert!(e.contains(&format!("at most {max}")), "{e}");
        }
        let e = parse_duration_at_most("99999999999999999999999y", MAX_TTL).unwrap_err();
        assert!(e.contains("at most 30d"), "{e}");
        assert_eq!(
            parse_duration_at_most("1500ms", MAX_TTL),
            Ok(Duration::from_millis(1500))
        );
    }

    #[test]
    fn mono_advances() {
        let a = mono_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert!(mono_ms() >= a + 4);
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(5), "5ms");
        assert_eq!(short_duration(3200), "3.2s");
        assert_eq!(short_duration(245_000), "4m05s");
        assert_eq!(short_duration(-1500), "-1.5s");
    }
}
