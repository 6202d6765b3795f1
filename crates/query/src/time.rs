//! FHIR dates and dateTimes as instants, so time ranges compare correctly across time zones.
//!
//! FHIR allows partial dates (`2024`, `2024-03`, `2024-03-01`) and dateTimes with an offset.
//! The store keeps one instant (microseconds since the epoch, UTC) per resource; a partial
//! date stands for its first instant in UTC. A range bound given as a partial date covers the
//! whole period: `to = 2024-03` includes all of March.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Why a date or dateTime was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or RFC 3339 with offset): {detail}")]
pub struct TimeError {
    pub value: String,
    pub detail: String,
}

enum Parsed {
    /// A partial date: its first day and the first day after the period.
    Period(Date, Date),
    Instant(Timestamp),
}

fn parse(s: &str) -> Result<Parsed, TimeError> {
    let err = |detail: String| TimeError { value: s.to_string(), detail };
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i16, TimeError> {
        s.get(r.clone())
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|p| p.parse::<i16>().ok())
            .ok_or_else(|| err(format!("expected digits at {}..{}", r.start, r.end)))
    };
    let dash = |i: usize| {
        if b.get(i) == Some(&b'-') { Ok(()) } else { Err(err(format!("expected '-' at {i}"))) }
    };
    match b.len() {
        4 => {
            let d = Date::new(num(0..4)?, 1, 1).map_err(|e| err(e.to_string()))?;
            let next = d.checked_add(1.year()).map_err(|e| err(e.to_string()))?;
            Ok(Parsed::Period(d, next))
        }
        7 => {
            dash(4)?;
            let d = Date::new(num(0..4)?, num(5..7)? as i8, 1).map_err(|e| err(e.to_string()))?;
            let next = d.checked_add(1.month()).map_err(|e| err(e.to_string()))?;
            Ok(Parsed::Period(d, next))
        }
        10 => {
            dash(4)?;
            dash(7)?;
            let d = Date::new(num(0..4)?, num(5..7)? as i8, num(8..10)? as i8).map_err(|e| err(e.to_string()))?;
            let next = d.checked_add(1.day()).map_err(|e| err(e.to_string()))?;
            Ok(Parsed::Period(d, next))
        }
        _ => match s.parse::<Timestamp>() {
            Ok(t) => Ok(Parsed::Instant(t)),
            // FHIR requires an offset with a time; older senders omit it: read those as UTC.
            Err(e) => match s.parse::<DateTime>() {
                Ok(dt) => {
                    dt.to_zoned(TimeZone::UTC).map(|z| Parsed::Instant(z.timestamp())).map_err(|e| err(e.to_string()))
                }
                Err(_) => Err(err(e.to_string())),
            },
        },
    }
}

fn micros(d: Date) -> Result<i64, TimeError> {
    d.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp().as_microsecond())
        .map_err(|e| TimeError { value: d.to_string(), detail: e.to_string() })
}

/// The first instant `s` stands for (microseconds since the epoch, UTC).
pub fn parse_start(s: &str) -> Result<i64, TimeError> {
    match parse(s)? {
        Parsed::Period(d, _) => micros(d),
        Parsed::Instant(t) => Ok(t.as_microsecond()),
    }
}

/// The first instant after what `s` covers: an exclusive upper bound for an inclusive `to`.
pub fn parse_end_exclusive(s: &str) -> Result<i64, TimeError> {
    match parse(s)? {
        Parsed::Period(_, next) => micros(next),
        Parsed::Instant(t) => Ok(t.as_microsecond().saturating_add(1)),
    }
}

/// Now, RFC 3339 in UTC (the `last_updated` of a stored resource).
pub fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn partial_dates_cover_their_period() {
        assert_eq!(parse_start("2024").unwrap(), at("2024-01-01T00:00:00Z"));
        assert_eq!(parse_end_exclusive("2024").unwrap(), at("2025-01-01T00:00:00Z"));
        assert_eq!(parse_start("2024-02").unwrap(), at("2024-02-01T00:00:00Z"));
        assert_eq!(parse_end_exclusive("2024-02").unwrap(), at("2024-03-01T00:00:00Z"));
        assert_eq!(parse_end_exclusive("2024-12-31").unwrap(), at("2025-01-01T00:00:00Z"));
    }

    #[test]
    fn instants_with_offsets_and_without() {
        assert_eq!(parse_start("2024-03-01T10:00:00+01:00").unwrap(), at("2024-03-01T09:00:00Z"));
        assert_eq!(parse_start("2024-03-01T10:00:00.5Z").unwrap(), at("2024-03-01T10:00:00.5Z"));
        assert_eq!(parse_start("2024-03-01T10:00:00").unwrap(), at("2024-03-01T10:00:00Z"));
        assert_eq!(parse_end_exclusive("2024-03-01T10:00:00Z").unwrap(), at("2024-03-01T10:00:00Z") + 1);
    }

    #[test]
    fn refuses_what_is_not_a_date() {
        for bad in ["", "2024-13", "2024-02-30", "20x4", "2024/01/01", "yesterday", "2024-01-01T25:00:00Z"] {
            let e = parse_start(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("not a FHIR date"), "{e}");
        }
    }
}
