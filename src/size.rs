//! Memory sizes as Docker reads them, and the limits built from them.
//!
//! Docker parses `--memory` with go-units' `RAMInBytes`: a decimal number,
//! an optional space, an optional unit letter (k, m, g, t, p; any case),
//! optionally followed by `i` and/or `b`. Every unit is a binary multiple,
//! so `1g`, `1G`, `1GB` and `1GiB` all mean 2^30 bytes. Users write the same
//! strings in policies, so the same grammar is accepted here.

use std::fmt;

use serde::Serialize;

/// Pages are the kernel's unit: a derived `high` is rounded down to one so
/// what is recorded is what the cgroup file reads back, and a size below
/// one is no size at all.
pub const PAGE_SIZE: u64 = 4096;

/// A memory bound: a byte count or no bound at all.
///
/// The kernel and the OCI spec spell "no bound" as `max` (v2), a huge page
/// aligned number (v1) or `-1` (OCI); keeping it a variant avoids sentinel
/// arithmetic in the decision code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

impl Limit {
    /// The byte count, or `None` when unbounded.
    pub fn bytes(self) -> Option<u64> {
        match self {
            Limit::Bytes(b) => Some(b),
            Limit::Unlimited => None,
        }
    }

    /// The OCI spelling: bytes, or -1 for no bound.
    pub fn to_oci(self) -> i64 {
        match self {
            Limit::Bytes(b) => i64::try_from(b).unwrap_or(i64::MAX),
            Limit::Unlimited => -1,
        }
    }

    /// Reads an OCI value: negative means no bound (runc treats -1 so, and
    /// no other negative value is meaningful).
    pub fn from_oci(v: i64) -> Limit {
        if v < 0 {
            Limit::Unlimited
        } else {
            Limit::Bytes(v as u64)
        }
    }

    /// Sum of two limits; anything plus unbounded is unbounded.
    pub fn saturating_add(self, other: Limit) -> Limit {
        match (self, other) {
            (Limit::Bytes(a), Limit::Bytes(b)) => Limit::Bytes(a.saturating_add(b)),
            _ => Limit::Unlimited,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(b) => f.write_str(&human(*b)),
        }
    }
}

/// Formats bytes the way users write them: exact binary units when the
/// value is a whole multiple, else the plain byte count.
pub fn human(b: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 50, "P"),
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    if b == 0 {
        return "0".into();
    }
    for (mult, unit) in UNITS {
        if b.is_multiple_of(mult) {
            return format!("{}{}", b / mult, unit);
        }
    }
    b.to_string()
}

/// Bytes for a reader, to three figures at most: `93.2M`, `1.3G`, `512K`.
pub fn human_rounded(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (mult, unit) in UNITS {
        if b >= mult {
            let v = b as f64 / mult as f64;
            return if v >= 100.0 || b.is_multiple_of(mult) {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{b}B")
}

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error(
        "invalid size {0:?}: expected a number with an optional unit (k, m, g, t, p), e.g. 512m or 1.5g"
    )]
    Invalid(String),
    #[error(
        "invalid size {input:?}: unknown unit {unit:?} (use k, m, g, t or p, optionally with i/b: 512m, 1G, 2GiB)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("invalid size {0:?}: sizes cannot be negative")]
    Negative(String),
    #[error("invalid size {0:?}: larger than 2^63 bytes")]
    TooLarge(String),
    #[error("{0:?} is not allowed here: this bound must be a size")]
    UnlimitedNotAllowed(String),
    /// A number form YAML or a programming language reads, but Docker does
    /// not: `0x10`, `0o10`, `1_000`, `1e9`.
    #[error(
        "invalid size {0:?}: sizes are decimal, as docker --memory reads them (no 0x, 0o, 0b, _ or exponent): write e.g. 512m, 1g or 1073741824"
    )]
    NumberForm(String),
}

/// Parses a size (`512m`, `1.5G`, `0`, `1024`), or `max` / `unlimited` / `-1`
/// for no bound.
pub fn parse_limit(input: &str) -> Result<Limit, SizeError> {
    let s = input.trim();
    match s.to_ascii_lowercase().as_str() {
        "max" | "unlimited" | "-1" => Ok(Limit::Unlimited),
        _ => parse_bytes(s).map(Limit::Bytes),
    }
}

/// Parses a size that must be a byte count.
pub fn parse_bytes(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    if s.starts_with('-') {
        return Err(SizeError::Negative(input.into()));
    }
    let lower = s.to_ascii_lowercase();
    let digits_then = |c: char| {
        lower.starts_with(|d: char| d.is_ascii_digit())
            && lower.contains(c)
            && lower.split(c).nth(1).is_some_and(|r| {
                r.starts_with(|d: char| d.is_ascii_digit() || d == '+' || d == '-')
            })
    };
    if ["0x", "0o", "0b"]
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > 2)
        || s.contains('_')
        || digits_then('e')
    {
        return Err(SizeError::NumberForm(input.into()));
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(SizeError::Invalid(input.into()));
    }
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    let mult = unit_multiplier(unit).ok_or_else(|| SizeError::UnknownUnit {
        input: input.into(),
        unit: unit.into(),
    })?;
    let value = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| SizeError::Invalid(input.into()))?;
        let v = f * mult as f64;
        if v >= 9.223_372_036_854_776e18 {
            return Err(SizeError::TooLarge(input.into()));
        }
        v as u64
    } else {
        let n: u64 = num.parse().map_err(|_| SizeError::TooLarge(input.into()))?;
        n.checked_mul(mult)
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| SizeError::TooLarge(input.into()))?
    };
    Ok(value)
}

/// Binary multiplier for a unit suffix: `""`, `b`, or a letter from
/// k/m/g/t/p followed by an optional `i` and an optional `b`.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    let mut chars = lower.chars();
    let Some(first) = chars.next() else {
        return Some(1);
    };
    let shift = match first {
        'b' if lower.len() == 1 => return Some(1),
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        'p' => 50,
        _ => return None,
    };
    match chars.as_str() {
        "" | "b" | "i" | "ib" => Some(1u64 << shift),
        _ => None,
    }
}

/// Records spell a bound as its byte count or `"max"`, as cgroup v2 does.
impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Bytes(b) => s.serialize_u64(*b),
            Limit::Unlimited => s.serialize_str("max"),
        }
    }
}

/// The limits a container runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory: Limit,
    /// Swap on top of memory (v2 `memory.swap.max`).
    pub swap: Limit,
    /// `memory.high` (v2) / `memory.soft_limit_in_bytes` (v1); `None` leaves it open.
    pub high: Option<Limit>,
}

impl Limits {
    /// Memory + swap: v1 `memory.memsw.limit_in_bytes`, OCI `swap`.
    pub fn memory_swap(&self) -> Limit {
        self.memory.saturating_add(self.swap)
    }

    /// `MEMORY:SWAP:HIGH` in bytes (`max` for no limit, HIGH `off`): how
    /// the runtime wrapper hands its decision to the hook it adds to a
    /// bundle ([`Limits::from_arg`] reads it back).
    pub fn to_arg(&self) -> String {
        let v = |l: Limit| match l {
            Limit::Bytes(b) => b.to_string(),
            Limit::Unlimited => "max".into(),
        };
        let high = self.high.map(v).unwrap_or_else(|| "off".into());
        format!("{}:{}:{high}", v(self.memory), v(self.swap))
    }

    pub fn from_arg(s: &str) -> Result<Limits, LimitsArgError> {
        let v = |t: &str| match t {
            "max" => Ok(Limit::Unlimited),
            t => t
                .parse::<u64>()
                .map(Limit::Bytes)
                .map_err(|_| LimitsArgError::Value(t.to_string())),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [memory, swap, high] = parts[..] else {
            return Err(LimitsArgError::Form(s.to_string()));
        };
        Ok(Limits {
            memory: v(memory)?,
            swap: v(swap)?,
            high: match high {
                "off" => None,
                h => Some(v(h)?),
            },
        })
    }
}

/// A `--decided` argument that is not `MEMORY:SWAP:HIGH`.
#[derive(Debug, thiserror::Error)]
pub enum LimitsArgError {
    #[error("{0:?}: expected MEMORY:SWAP:HIGH")]
    Form(String),
    #[error("{0:?} is not a byte count or max")]
    Value(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_spellings() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("100b"), Ok(100));
        assert_eq!(parse_bytes("16 M"), Ok(16 << 20));
        assert_eq!(parse_bytes("2t"), Ok(2 << 40));
        assert_eq!(parse_bytes("1p"), Ok(1 << 50));
    }

    #[test]
    fn unbounded_spellings() {
        for s in ["max", "MAX", "unlimited", "-1"] {
            assert_eq!(parse_limit(s), Ok(Limit::Unlimited), "{s}");
        }
        assert_eq!(parse_limit("8G"), Ok(Limit::Bytes(8 << 30)));
    }

    #[test]
    fn typos_are_rejected() {
        assert!(matches!(
            parse_bytes("512x"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_bytes("1gg"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_bytes("1mbb"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_bytes("g"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_bytes("1..5g"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_bytes(".5g"), Err(SizeError::Invalid(_))));
        assert!(matches!(parse_bytes("-5m"), Err(SizeError::Negative(_))));
        assert_eq!(parse_bytes(""), Err(SizeError::Empty));
        assert!(matches!(
            parse_bytes("99999999999999999999"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_bytes("9000000p"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_bytes("max"),
            Err(SizeError::UnknownUnit { .. }) | Err(SizeError::Invalid(_))
        ));
    }

    #[test]
    fn human_round_trips_whole_units() {
        for b in [0u64, 1, 1023, 1 << 10, 512 << 20, 3 << 29, 8 << 30, 5 << 40] {
            assert_eq!(parse_bytes(&human(b)), Ok(b), "{b}");
        }
    }

    #[test]
    fn every_integer_with_unit_parses_exactly() {
        // Property: n<unit> == n * 2^shift for all n that fit.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = x % (1 << 20);
            for (u, shift) in [("k", 10), ("M", 20), ("g", 30), ("Ti", 40)] {
                let expect = n << shift;
                assert_eq!(parse_bytes(&format!("{n}{u}")), Ok(expect));
            }
        }
    }

    #[test]
    fn oci_round_trip() {
        assert_eq!(Limit::from_oci(-1), Limit::Unlimited);
        assert_eq!(Limit::from_oci(5), Limit::Bytes(5));
        assert_eq!(Limit::Unlimited.to_oci(), -1);
        assert_eq!(Limit::Bytes(7).to_oci(), 7);
        assert_eq!(
            Limit::Bytes(1).saturating_add(Limit::Unlimited),
            Limit::Unlimited
        );
    }
}
