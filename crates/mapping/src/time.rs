//! HL7 v2 TS/DTM/DT values to FHIR `date`, `dateTime` and `instant`.
//!
//! Time-zone mistakes are a known failure of public converters, so the rules are strict: an
//! offset written in the message is kept as written; a value without one gets the sender
//! profile's IANA zone (from a bundled tz database, so the server's `TZ` never matters), and
//! only when no profile names a zone the configured fallback — reported, never silent.
//! Precision is kept: `2024` stays a year, `202401011230` becomes `…T12:30:00` (FHIR needs
//! seconds once a time is given), and the original string is kept by the caller's report.

use jiff::civil;
use jiff::tz::TimeZone;

/// How precise the source value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Fraction,
}

/// Where the offset of a converted value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    /// Written in the message.
    Message,
    /// The sender profile's time zone.
    Profile,
    /// The configured fallback zone: no profile named one (reported as a warning).
    Fallback,
    /// A date without time needs no zone.
    NotNeeded,
}

/// A converted time value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirTime {
    /// FHIR `date` or `dateTime` text.
    pub value: String,
    pub precision: Precision,
    pub zone: ZoneSource,
}

impl FhirTime {
    /// The FHIR `date` part (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
    pub fn date(&self) -> &str {
        &self.value[..self.value.len().min(10)]
    }

    /// Whether the value is precise enough for a FHIR `instant` (seconds and an offset).
    pub fn is_instant(&self) -> bool {
        self.precision >= Precision::Minute
    }
}

/// Why a value is not an HL7 v2 date/time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not a date/time: {0}")]
    Syntax(&'static str),
    #[error("date/time out of range: {0}")]
    Range(&'static str),
    #[error("time zone {0:?} is not a known IANA zone")]
    UnknownZone(String),
}

/// The zone to apply to values without an offset, and where it comes from.
#[derive(Debug, Clone)]
pub struct ZoneRule {
    pub zone: TimeZone,
    pub source: ZoneSource,
}

impl ZoneRule {
    /// A named IANA zone.
    pub fn named(name: &str, source: ZoneSource) -> Result<ZoneRule, TimeError> {
        let zone = TimeZone::get(name).map_err(|_| TimeError::UnknownZone(name.to_string()))?;
        Ok(ZoneRule { zone, source })
    }

    pub fn utc_fallback() -> ZoneRule {
        ZoneRule { zone: TimeZone::UTC, source: ZoneSource::Fallback }
    }
}

/// Appends `n` as at least `width` decimal digits (zero-padded): the values are small
/// calendar numbers, and this runs several times per time value (no formatting machinery).
fn push_num(out: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut i = buf.len();
    let mut v = n;
    while v > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0')))
}

/// Converts a v2 date/time (`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`, the first component
/// of a TS) to FHIR. `zone` is applied when the value has a time but no offset.
pub fn convert(raw: &str, zone: &ZoneRule) -> Result<FhirTime, TimeError> {
    let s = raw.trim();
    let (body, off) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, frac) = match body.find('.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let b = digits.as_bytes();
    if !matches!(b.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err(TimeError::Syntax("expected YYYY[MM[DD[HH[MM[SS]]]]] digits"));
    }
    if frac.is_some() && b.len() != 14 {
        return Err(TimeError::Syntax("fractional seconds need full seconds"));
    }
    let frac = match frac {
        Some(f) if f.is_empty() || f.len() > 9 || !f.bytes().all(|c| c.is_ascii_digit()) => {
            return Err(TimeError::Syntax("bad fractional seconds"));
        }
        f => f,
    };
    let field = |i: usize| num(&b[i..i + 2]);
    let year = num(&b[..4]).ok_or(TimeError::Syntax("year must be digits"))?;
    if year == 0 {
        return Err(TimeError::Range("year 0000"));
    }
    let month = if b.len() >= 6 { Some(field(4).ok_or(TimeError::Syntax("month must be digits"))?) } else { None };
    let day = if b.len() >= 8 { Some(field(6).ok_or(TimeError::Syntax("day must be digits"))?) } else { None };
    let hour = if b.len() >= 10 { Some(field(8).ok_or(TimeError::Syntax("hour must be digits"))?) } else { None };
    let minute = if b.len() >= 12 { Some(field(10).ok_or(TimeError::Syntax("minute must be digits"))?) } else { None };
    let second = if b.len() >= 14 { Some(field(12).ok_or(TimeError::Syntax("second must be digits"))?) } else { None };
    if month.is_some_and(|m| !(1..=12).contains(&m)) {
        return Err(TimeError::Range("month"));
    }
    if let (Some(m), Some(d)) = (month, day) {
        let date = civil::Date::new(year as i16, m as i8, 1).map_err(|_| TimeError::Range("year"))?;
        if d == 0 || d > u32::from(date.days_in_month() as u8) {
            return Err(TimeError::Range("day"));
        }
    }
    if hour.is_some_and(|h| h > 23) || minute.is_some_and(|m| m > 59) || second.is_some_and(|s| s > 59) {
        return Err(TimeError::Range("time of day"));
    }
    let precision = match (month, day, hour, minute, second, frac) {
        (None, ..) => Precision::Year,
        (_, None, ..) => Precision::Month,
        (_, _, None, ..) => Precision::Day,
        (_, _, _, None, ..) => Precision::Hour,
        (_, _, _, _, None, _) => Precision::Minute,
        (.., None) => Precision::Second,
        _ => Precision::Fraction,
    };
    let offset_min = match off {
        None => None,
        Some(o) => {
            let ob = o.as_bytes();
            if ob.len() != 5 {
                return Err(TimeError::Syntax("offset must be +HHMM or -HHMM"));
            }
            let h = num(&ob[1..3]).ok_or(TimeError::Syntax("offset hours"))?;
            let m = num(&ob[3..5]).ok_or(TimeError::Syntax("offset minutes"))?;
            if h > 14 || m > 59 || (h == 14 && m > 0) {
                return Err(TimeError::Range("offset"));
            }
            let sign = if ob[0] == b'-' { -1 } else { 1 };
            Some(sign * (h as i32 * 60 + m as i32))
        }
    };
    let mut out = String::with_capacity(29);
    push_num(&mut out, year, 4);
    if let Some(m) = month {
        out.push('-');
        push_num(&mut out, m, 2);
    }
    if let Some(d) = day {
        out.push('-');
        push_num(&mut out, d, 2);
    }
    let Some(h) = hour else {
        // A date carries no zone; an offset on a bare date has nothing to apply to.
        return Ok(FhirTime { value: out, precision, zone: ZoneSource::NotNeeded });
    };
    let (mi, se) = (minute.unwrap_or(0), second.unwrap_or(0));
    let (offset_min, source) = match offset_min {
        Some(o) => {
            push_time(&mut out, h, mi, se);
            (o, ZoneSource::Message)
        }
        None => {
            let nanos = frac.map_or(0, |f| {
                let mut n: i32 = f.bytes().fold(0, |a, c| a * 10 + i32::from(c - b'0'));
                for _ in f.len()..9 {
                    n *= 10;
                }
                n
            });
            let dt = civil::DateTime::new(
                year as i16,
                month.unwrap_or(1) as i8,
                day.unwrap_or(1) as i8,
                h as i8,
                mi as i8,
                se as i8,
                nanos,
            )
            .map_err(|_| TimeError::Range("date/time"))?;
            // "compatible": a time in a DST gap moves forward, an ambiguous one takes the
            // earlier offset — the same choice RFC 5545 and java.time make.
            let zoned =
                zone.zone.to_ambiguous_zoned(dt).compatible().map_err(|_| TimeError::Range("date/time in zone"))?;
            // Written from the zoned value: a local time in a DST gap moved forward must be
            // written as the moved time, or the instant would be wrong by the gap.
            let z = zoned.datetime();
            out.truncate(0);
            push_num(&mut out, z.year() as u32, 4);
            if month.is_some() {
                out.push('-');
                push_num(&mut out, z.month() as u32, 2);
            }
            if day.is_some() {
                out.push('-');
                push_num(&mut out, z.day() as u32, 2);
            }
            push_time(&mut out, z.hour() as u32, z.minute() as u32, z.second() as u32);
            (zoned.offset().seconds() / 60, zone.source)
        }
    };
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    let sign = if offset_min < 0 { '-' } else { '+' };
    let a = offset_min.unsigned_abs();
    out.push(sign);
    push_num(&mut out, a / 60, 2);
    out.push(':');
    push_num(&mut out, a % 60, 2);
    Ok(FhirTime { value: out, precision, zone: source })
}

/// `THH:MM:SS`.
fn push_time(out: &mut String, h: u32, m: u32, s: u32) {
    out.push('T');
    push_num(out, h, 2);
    out.push(':');
    push_num(out, m, 2);
    out.push(':');
    push_num(out, s, 2);
}

/// Whether FHIR date/time `a` is strictly after `b` (instants compared when both have a
/// time; otherwise by their common date prefix, which cannot order equal dates).
pub fn is_after(a: &str, b: &str) -> bool {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => {
            let n = a.len().min(b.len()).min(10);
            a[..n] > b[..n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> ZoneRule {
        ZoneRule::named("America/New_York", ZoneSource::Profile).unwrap()
    }

    #[test]
    fn keeps_message_offset() {
        let t = convert("20240115083000-0500", &ny()).unwrap();
        assert_eq!(t.value, "2024-01-15T08:30:00-05:00");
        assert_eq!(t.zone, ZoneSource::Message);
        let t = convert("20240715083000+0930", &ny()).unwrap();
        assert_eq!(t.value, "2024-07-15T08:30:00+09:30");
    }

    #[test]
    fn applies_profile_zone_with_dst() {
        assert_eq!(convert("202401150830", &ny()).unwrap().value, "2024-01-15T08:30:00-05:00");
        assert_eq!(convert("202407150830", &ny()).unwrap().value, "2024-07-15T08:30:00-04:00");
        let t = convert("20240715083000.1234", &ny()).unwrap();
        assert_eq!(t.value, "2024-07-15T08:30:00.1234-04:00");
        assert_eq!(t.precision, Precision::Fraction);
        assert_eq!(t.zone, ZoneSource::Profile);
        // In the spring-forward gap: moved forward, never an invalid local time.
        assert_eq!(convert("202403100230", &ny()).unwrap().value, "2024-03-10T03:30:00-04:00");
    }

    #[test]
    fn partial_precision() {
        let z = ZoneRule::utc_fallback();
        assert_eq!(convert("2024", &z).unwrap().value, "2024");
        assert_eq!(convert("202402", &z).unwrap().value, "2024-02");
        let d = convert("20240229", &z).unwrap();
        assert_eq!((d.value.as_str(), d.zone), ("2024-02-29", ZoneSource::NotNeeded));
        assert_eq!(convert("2024022913", &ny()).unwrap().value, "2024-02-29T13:00:00-05:00");
        assert_eq!(convert("2024022913", &ny()).unwrap().precision, Precision::Hour);
    }

    #[test]
    fn rejects_bad_values() {
        let z = ZoneRule::utc_fallback();
        for bad in [
            "",
            "2024013",
            "20240230",
            "20241301",
            "202401012500",
            "2024010112+05",
            "abcd",
            "20240101120000+1500",
            "2024.5",
            "20240101120000.",
            "0000",
        ] {
            assert!(convert(bad, &z).is_err(), "{bad}");
        }
        assert!(ZoneRule::named("Mars/Olympus", ZoneSource::Profile).is_err());
    }
}
