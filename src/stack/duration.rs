//! Durations as stack files write them: `2s`, `500ms`, `1.5s`, `1m`, `1h`, or a bare number of
//! seconds. Parsing is strict (no spaces, no mixed units) so a typo is an error, not a surprise.
//! Serialized as a number of seconds, which is what keepalived and haproxy templates want.
//!
//! This is the one duration parser in the tree: stack keys deserialize through it and every
//! command-line duration (`--lock-wait`, `--interval`, `--probe-soak`, `--wait-timeout`, …)
//! uses [`arg`], so a flag and a key accept the same text. It is hand-written because the
//! maintained crates do not fit the format: `humantime` has no fractions (`1.5s`, `0.1`, which
//! keepalived's sub-second `advert_int` and check intervals need) nor bare seconds, and accepts
//! spaces and mixed units (`1h 30m`, `2 sec`); `jiff`'s friendly format has fractions but also
//! accepts ISO 8601 (`PT2S`) and words (`2 seconds`), so a stack could mean the same thing in
//! several spellings. Twenty lines of strict parsing, tested below, cost less than either.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration from a stack file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub fn as_secs_f64(&self) -> f64 {
        self.0.as_secs_f64()
    }
    pub fn as_millis(&self) -> u128 {
        self.0.as_millis()
    }
    /// True when the duration is a whole number of seconds.
    pub fn is_whole_seconds(&self) -> bool {
        self.0.subsec_nanos() == 0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurError {
    #[error("`{0}` is not a duration: expected a number with a unit (`ms`, `s`, `m`, `h`), e.g. `2s` or `500ms`")]
    Syntax(String),
    #[error("`{0}` is negative: durations must be zero or more")]
    Negative(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `2s`, `500ms`, `1.5s`, `3m`, `1h`, or a bare number of seconds.
pub fn parse(text: &str) -> Result<Dur, DurError> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(DurError::Negative(text.into()));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 || num.ends_with('.') {
        return Err(DurError::Syntax(text.into()));
    }
    let factor_ms: f64 = match unit {
        "" | "s" => 1000.0,
        "ms" => 1.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err(DurError::Syntax(text.into())),
    };
    let value: f64 = num.parse().map_err(|_| DurError::Syntax(text.into()))?;
    let ms = value * factor_ms;
    if !ms.is_finite() || ms > 1e12 {
        return Err(DurError::TooLarge(text.into()));
    }
    // Round to whole microseconds: `0.1s` must be exactly 100 ms, not 99.999… ms.
    let micros = (ms * 1000.0).round() as u64;
    Ok(Dur(Duration::from_micros(micros)))
}

/// The same grammar for command-line arguments (`--lock-wait 30s`, `--interval 500ms`,
/// `--wait-timeout 5m`): clap's `value_parser` for every duration flag, so a flag and a stack
/// key accept exactly the same text.
pub fn arg(text: &str) -> Result<Duration, DurError> {
    parse(text).map(|d| d.0)
}

impl std::str::FromStr for Dur {
    type Err = DurError;
    fn from_str(s: &str) -> Result<Dur, DurError> {
        parse(s)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `2s` or `500ms`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_secs_f64())
    }
}

/// In the JSON Schema: a string with a unit (`2s`, `500ms`, `1.5s`, `1m`, `1h`) or a number
/// of seconds. Named `Duration`, which `stack::schema::string_fields` knows to leave out (the
/// string is parsed, never written out as given).
impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: a number with a unit (`ms`, `s`, `m`, `h`), e.g. `2s` or `500ms`, or a number of seconds.",
            "anyOf": [
                { "type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$" },
                { "type": "number", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("2s").unwrap(), Dur::from_secs(2));
        assert_eq!(parse("500ms").unwrap(), Dur::from_millis(500));
        assert_eq!(parse("0.1").unwrap(), Dur::from_millis(100));
        assert_eq!(parse("1.5s").unwrap(), Dur::from_millis(1500));
        assert_eq!(parse("3m").unwrap(), Dur::from_secs(180));
        assert_eq!(parse("1h").unwrap(), Dur::from_secs(3600));
    }

    /// Flags and stack keys share the grammar: what one accepts the other does.
    #[test]
    fn flags_parse_like_stack_keys() {
        assert_eq!(arg("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(arg("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(arg("30"), Ok(Duration::from_secs(30)));
        assert_eq!("250ms".parse::<Dur>(), Ok(Dur::from_millis(250)));
        for bad in ["2 s", "1h30m", "2sec", "-1s"] {
            assert_eq!(arg(bad).map_err(|_| ()), Err(()), "{bad}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "s", "2 s", "2x", "1..2s", "-1s", "2sec", "1e3"] {
            assert!(parse(bad).is_err(), "{bad} should fail");
        }
    }
}
