//! When to try a webhook request again, and how long to wait first. Pure functions, so the
//! policy is tested without a network: connection failures, timeouts, 408, 429 and 5xx are
//! worth retrying (the receiver may recover); any other 4xx (and 3xx, as redirects are not
//! followed) will fail the same way every time, so retrying would only delay the dead letter.

use crate::webhook::config::Backoff;
use std::time::{Duration, SystemTime};

/// Why one attempt did not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered with this status.
    Status(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection could not be opened (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke while sending or receiving.
    Transport,
}

impl Failure {
    /// Whether another attempt may succeed.
    pub fn is_retriable(self) -> bool {
        match self {
            Failure::Status(s) => retriable_status(s),
            Failure::Timeout | Failure::Connect | Failure::Transport => true,
        }
    }

    /// A description without PHI (a status code, never the response body), for logs and the
    /// dead letter's detail.
    pub fn describe(self) -> String {
        match self {
            Failure::Status(s) => format!("HTTP {s}"),
            Failure::Timeout => "timed out".into(),
            Failure::Connect => "connection failed".into(),
            Failure::Transport => "connection broke during the exchange".into(),
        }
    }
}

/// 408 Request Timeout, 429 Too Many Requests and every 5xx.
pub fn retriable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// 2xx.
pub fn delivered_status(status: u16) -> bool {
    (200..=299).contains(&status)
}

impl Backoff {
    /// The delay before retry `retry` (1 = after the first failed attempt) without jitter:
    /// `initial_ms × multiplier^(retry-1)`, capped at `max_ms`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let ms = (self.initial_ms as f64) * self.multiplier.powi(exp);
        Duration::from_millis(if ms.is_finite() { ms.min(self.max_ms as f64) as u64 } else { self.max_ms })
    }

    /// The delay before retry `retry` with jitter: `unit` (uniform in [0, 1)) picks a point in
    /// ±`jitter` of the base delay; the result never exceeds `max_ms`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry).as_millis() as f64;
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        Duration::from_millis((base * factor).min(self.max_ms as f64).max(0.0) as u64)
    }

    /// What to wait before retry `retry` when the receiver may have said `Retry-After`: never
    /// less than it asked (it knows its load), never more than `max_ms` (a receiver cannot
    /// park a delivery for hours).
    pub fn wait(&self, retry: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let d = self.delay(retry, unit);
        match retry_after {
            Some(ra) => d.max(ra).min(Duration::from_millis(self.max_ms)),
            None => d,
        }
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (relative to `now`; a past date
/// means no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX).min(86_400)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(v).ok()?;
    let now = jiff::Timestamp::try_from(now).ok()?;
    let secs = at.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// A number uniform in [0, 1) for jitter. std's `RandomState` is randomly keyed per process
/// and per instance, which is all jitter needs (no cryptographic strength).
pub fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: f64) -> Backoff {
        Backoff { initial_ms: 500, max_ms: 10_000, multiplier: 2.0, jitter }
    }

    #[test]
    fn schedule_grows_by_the_multiplier_up_to_the_cap() {
        let b = backoff(0.0);
        let ms: Vec<u128> = (1..=7).map(|r| b.base_delay(r).as_millis()).collect();
        assert_eq!(ms, vec![500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(b.base_delay(10_000), Duration::from_millis(10_000), "huge retry counts stay capped");
        let slow = Backoff { multiplier: 1.5, ..backoff(0.0) };
        assert_eq!(slow.base_delay(3).as_millis(), 1_125);
        assert_eq!(Backoff { multiplier: 1.0, ..backoff(0.0) }.base_delay(9).as_millis(), 500, "constant");
        assert_eq!(b.delay(3, 0.7), b.base_delay(3), "no jitter configured: exact");
    }

    #[test]
    fn jitter_spreads_within_its_band_and_never_past_the_cap() {
        let b = backoff(0.2);
        assert_eq!(b.delay(2, 0.0).as_millis(), 800);
        assert_eq!(b.delay(2, 0.5).as_millis(), 1_000);
        assert_eq!(b.delay(2, 0.999_999).as_millis(), 1_199);
        assert_eq!(b.delay(20, 0.999).as_millis(), 10_000, "the cap holds with jitter");
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_the_longest_delay() {
        let b = backoff(0.0);
        assert_eq!(b.wait(1, 0.5, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.wait(1, 0.5, Some(Duration::from_secs(0))), Duration::from_millis(500), "never below backoff");
        assert_eq!(b.wait(1, 0.5, Some(Duration::from_secs(3600))), Duration::from_secs(10), "capped at max_ms");
        assert_eq!(b.wait(2, 0.5, None), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "past date");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn only_failures_a_retry_can_fix_are_retried() {
        for s in [500, 502, 503, 504, 599, 429, 408] {
            assert!(Failure::Status(s).is_retriable(), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 301, 308] {
            assert!(!Failure::Status(s).is_retriable(), "{s}");
        }
        assert!(
            Failure::Timeout.is_retriable() && Failure::Connect.is_retriable() && Failure::Transport.is_retriable()
        );
        assert!(delivered_status(200) && delivered_status(201) && delivered_status(204));
        assert!(!delivered_status(199) && !delivered_status(300));
        assert_eq!(Failure::Status(503).describe(), "HTTP 503");
    }
}
