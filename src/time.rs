//! Times as the records and the command line spell them: RFC 3339 in UTC
//! with nanoseconds, formatted without a time zone database; durations
//! (`500ms`, `2s`, `1h`, `2d`) and points in time as flags take them.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats a Unix time (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let mut s = String::with_capacity(30);
    let _ = write_rfc3339(&mut s, secs, nanos);
    s
}

/// [`rfc3339`] into any writer, with no allocation (a signal handler
/// formats its log line with it).
pub fn write_rfc3339(w: &mut impl std::fmt::Write, secs: i64, nanos: u32) -> std::fmt::Result {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    write!(
        w,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A duration or a point in time that does not read as one.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("invalid duration {0:?}: use e.g. 500ms, 2s, 1m, 1h or 2d")]
    Duration(String),
    #[error("invalid duration {0:?}: must be positive")]
    NotPositive(String),
    #[error(
        "{input:?} is neither a duration (90s, 30m, 1h, 2d) nor an RFC 3339 time (2026-11-30T18:00:00Z): {source}"
    )]
    When {
        input: String,
        #[source]
        source: ::time::error::Parse,
    },
}

/// A point in time as `events` compares it (RFC 3339 UTC with ns, as
/// records are written): a duration ago, or an RFC 3339 time.
pub fn parse_when(s: &str) -> Result<String, TimeError> {
    if let Ok(d) = parse_duration(s) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let t = now.saturating_sub(d);
        return Ok(rfc3339(t.as_secs() as i64, t.subsec_nanos()));
    }
    let t =
        ::time::OffsetDateTime::parse(s.trim(), &::time::format_description::well_known::Rfc3339)
            .map_err(|source| TimeError::When {
            input: s.to_string(),
            source,
        })?;
    let ns = t.unix_timestamp_nanos();
    Ok(rfc3339(
        ns.div_euclid(1_000_000_000) as i64,
        ns.rem_euclid(1_000_000_000) as u32,
    ))
}

/// A duration for a reader: `45 s`, `12 min`, `3.5 h`, `2.0 d`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{:.1} h", secs as f64 / 3600.0),
        _ => format!("{:.1} d", secs as f64 / 86400.0),
    }
}

/// Parses `500ms`, `2s`, `1m`, `1h`, `2d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, TimeError> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400_000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| TimeError::Duration(s.to_string()))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(TimeError::NotPositive(s.to_string()));
    }
    Ok(std::time::Duration::from_micros(
        (v * mult_ms * 1000.0) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_795_392_000, 123),
            "2026-11-23T00:00:00.000000123Z"
        );
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59.000000000Z");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("2s").ok(),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(
            parse_duration("1m").ok(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration("3").ok(),
            Some(std::time::Duration::from_secs(3))
        );
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(
            parse_duration("1h").ok(),
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            parse_duration("2d").ok(),
            Some(std::time::Duration::from_secs(172_800))
        );
        assert_eq!(
            parse_when("2026-11-30T19:00:00+01:00").unwrap(),
            "2026-11-30T18:00:00.000000000Z"
        );
        assert_eq!(
            parse_when("2026-11-30T18:00:00.5Z").unwrap(),
            "2026-11-30T18:00:00.500000000Z"
        );
        let e = parse_when("yesterday").unwrap_err().to_string();
        assert!(e.contains("neither a duration"), "{e}");
        assert!(parse_when("1h").unwrap() < now_rfc3339());
    }
}
