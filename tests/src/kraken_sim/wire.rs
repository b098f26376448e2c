//! Kraken's wire spellings: form bodies, the `{"error":[],"result":{}}`
//! envelope, fixed-decimal strings, and the three time formats Kraken uses
//! (fractional Unix seconds, RFC 3339, RFC 1123).

use std::collections::BTreeMap;
use std::str::FromStr;

use herd_venue::calendar::{civil_from_days, days_from_civil};
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// A decoded form body or query string. A repeated field keeps its last value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form(pub BTreeMap<String, String>);

impl Form {
    pub fn parse(raw: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `true` / `1` as Kraken's boolean flags accept them.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn decimal(&self, key: &str) -> Result<Option<Decimal>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => Decimal::from_str(s).map(Some).map_err(|_| invalid(key)),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => s.parse::<i64>().map(Some).map_err(|_| invalid(key)),
        }
    }
}

/// `EGeneral:Invalid arguments:<field>`.
pub fn invalid(field: &str) -> String {
    format!("EGeneral:Invalid arguments:{field}")
}

/// A success envelope.
pub fn ok(result: Value) -> Value {
    json!({ "error": [], "result": result })
}

/// A failure envelope.
pub fn err(error: &str) -> Value {
    json!({ "error": [error] })
}

/// `d` with exactly `dp` decimals, as Kraken prints volumes and prices.
pub fn fixed(d: Decimal, dp: u32) -> String {
    let mut r = d.round_dp(dp);
    r.rescale(dp);
    r.to_string()
}

/// Fractional Unix seconds (`1688666559.8974`) of a time in ms, as a JSON number.
pub fn unix_secs(ms: i64) -> Value {
    let d = Decimal::new(ms, 3).round_dp(4).normalize();
    serde_json::from_str(&d.to_string()).unwrap_or(Value::Null)
}

/// `2024-05-09T12:00:30Z`.
pub fn rfc3339(unix_s: i64) -> String {
    let (y, m, d) = civil_from_days(unix_s.div_euclid(86_400));
    let s = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// Parses RFC 3339 (`2024-05-09T12:00:30Z`, fractions and `+hh:mm` offsets
/// allowed) into Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0;
    if let Some(f) = rest.strip_prefix('.') {
        let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{digits:0<3}");
        frac_ms = padded.get(..3)?.parse::<i64>().ok()?;
        rest = &f[digits.len()..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let oh = o.get(1..3)?.parse::<i64>().ok()?;
            let om = o.get(4..6)?.parse::<i64>().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// `Fri, 24 Mar 23 17:41:56 +0000`, the `rfc1123` field of Time.
pub fn rfc1123(unix_s: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_s.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let s = unix_s.rem_euclid(86_400);
    let wd = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let mon = MONTHS[usize::try_from(m - 1).unwrap_or(0).min(11)];
    format!(
        "{wd}, {d:02} {mon} {:02} {:02}:{:02}:{:02} +0000",
        y % 100,
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let cases = [
            ("2024-05-09T12:00:30Z", Some(1_715_256_030_000)),
            ("2024-05-09T12:00:30.25Z", Some(1_715_256_030_250)),
            ("2024-05-09T14:00:30+02:00", Some(1_715_256_030_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-13-09T12:00:30Z", None),
            ("yesterday", None),
            ("2024-05-09T12:00:30", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), want, "{text}");
        }
        assert_eq!(rfc3339(1_715_256_030), "2024-05-09T12:00:30Z");
        assert_eq!(rfc1123(1_679_679_716), "Fri, 24 Mar 23 17:41:56 +0000");
    }

    #[test]
    fn numbers() {
        assert_eq!(fixed(Decimal::new(125, 2), 8), "1.25000000");
        assert_eq!(fixed(Decimal::new(123_456, 6), 4), "0.1235");
        assert_eq!(unix_secs(1_688_666_559_897).to_string(), "1688666559.897");
        let f = Form::parse(b"nonce=1&pair=XDGUSD&deadline=2024-01-01T00%3A00%3A30Z&validate=true");
        assert_eq!(f.get("deadline"), Some("2024-01-01T00:00:30Z"));
        assert!(f.flag("validate"));
        assert_eq!(f.int("nonce").unwrap(), Some(1));
        assert!(f.decimal("pair").is_err());
    }
}
