//! The one decimal grammar of Herd's boundaries (gRPC fields, config files,
//! environment overrides): ASCII digits, at most one `.` with digits on both
//! sides, and a leading `-` only where the field allows negatives. Nothing
//! else: no `+`, no `_`, no spaces, no exponent, no NaN or infinities.
//!
//! `rust_decimal`'s own `from_str` is lenient (it takes `1_000`, `+100`,
//! `1.`), and it rounds digits it cannot hold; here a number too large or
//! too precise for a `Decimal` is "out of range", never silently changed.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};

/// Whether a field takes negative numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// A leading `-` is allowed.
    Signed,
    /// A leading `-` is refused ([`DecimalError::Negative`]), `-0` too.
    Unsigned,
}

/// Why a text is not a decimal of the strict grammar. Its `Display` reads
/// after a field name: `price: "1_000" is not a decimal number ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("is required")]
    Empty,
    #[error("{0:?} is not a decimal number (digits with at most one '.', e.g. 12.5)")]
    NotADecimal(String),
    #[error("{0:?} must not be negative")]
    Negative(String),
    #[error(
        "{0:?} is out of range (a decimal holds at most 28 digits after the point and about 28 in all)"
    )]
    OutOfRange(String),
}

/// `text` as a decimal of the strict grammar.
pub fn parse_decimal(text: &str, sign: Sign) -> Result<Decimal, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let not_a_decimal = || DecimalError::NotADecimal(text.to_string());
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(not_a_decimal());
    }
    if negative && sign == Sign::Unsigned {
        return Err(DecimalError::Negative(text.to_string()));
    }
    // The grammar is checked, so the only refusal left is a number the
    // 96-bit mantissa or the 28-digit scale cannot hold exactly.
    Decimal::from_str_exact(text).map_err(|_| DecimalError::OutOfRange(text.to_string()))
}

/// Config files: a `Decimal` field as `#[serde(deserialize_with =
/// "herd_types::decimal::deserialize")]`. A TOML string must follow the
/// strict grammar; a TOML integer or float (TOML's own grammar) is taken as
/// written, as before.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(StrictVisitor)
}

/// [`deserialize`] for an `Option<Decimal>` field (give it `#[serde(default)]`).
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    d.deserialize_option(OptVisitor)
}

struct StrictVisitor;

impl Visitor<'_> for StrictVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number as a string, e.g. \"12.5\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v, Sign::Signed).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        // f64's Display is the shortest text that reads back as the same
        // float, never in exponent form: `0.15` stays 0.15.
        if !v.is_finite() {
            return Err(E::custom(format!("{v} is not a decimal number")));
        }
        parse_decimal(&v.to_string(), Sign::Signed).map_err(E::custom)
    }
}

struct OptVisitor;

impl<'de> Visitor<'de> for OptVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number as a string, e.g. \"12.5\"")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Decimal>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Decimal>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Decimal>, D::Error> {
        deserialize(d).map(Some)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Decimal>, E> {
        StrictVisitor.visit_str(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<Decimal>, E> {
        StrictVisitor.visit_i64(v).map(Some)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<Decimal>, E> {
        StrictVisitor.visit_u64(v).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<Decimal>, E> {
        StrictVisitor.visit_f64(v).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use super::*;

    #[test]
    fn grammar_table() {
        use DecimalError as E;
        use Sign::{Signed, Unsigned};
        let ok = |s: &str| Ok(Decimal::from_str(s).unwrap());
        let nad = |s: &str| Err(E::NotADecimal(s.to_string()));
        let cases: Vec<(&str, Sign, Result<Decimal, DecimalError>)> = vec![
            ("0", Unsigned, ok("0")),
            ("100", Unsigned, ok("100")),
            ("0.05", Unsigned, ok("0.05")),
            ("007.50", Unsigned, ok("7.50")),
            ("-1.5", Signed, ok("-1.5")),
            ("-0", Signed, ok("0")),
            ("-1.5", Unsigned, Err(E::Negative("-1.5".into()))),
            ("-0", Unsigned, Err(E::Negative("-0".into()))),
            ("", Signed, Err(E::Empty)),
            ("1_000", Signed, nad("1_000")),
            ("0.0_5", Signed, nad("0.0_5")),
            ("+100", Signed, nad("+100")),
            (" 100 ", Signed, nad(" 100 ")),
            ("100 ", Signed, nad("100 ")),
            ("1.", Signed, nad("1.")),
            (".5", Signed, nad(".5")),
            ("1.2.3", Signed, nad("1.2.3")),
            ("-", Signed, nad("-")),
            ("--1", Signed, nad("--1")),
            ("-abc", Unsigned, nad("-abc")),
            ("1e5", Signed, nad("1e5")),
            ("1E-5", Signed, nad("1E-5")),
            ("NaN", Signed, nad("NaN")),
            ("inf", Signed, nad("inf")),
            ("0x10", Signed, nad("0x10")),
            ("1,5", Signed, nad("1,5")),
            ("١٢", Signed, nad("١٢")),
            (
                "79228162514264337593543950335",
                Unsigned,
                ok("79228162514264337593543950335"),
            ),
            (
                "123456789012345678901234567890",
                Unsigned,
                Err(E::OutOfRange("123456789012345678901234567890".into())),
            ),
            (
                "79228162514264337593543950336",
                Unsigned,
                Err(E::OutOfRange("79228162514264337593543950336".into())),
            ),
            (
                "0.00000000000000000000000000001",
                Unsigned,
                Err(E::OutOfRange("0.00000000000000000000000000001".into())),
            ),
        ];
        for (text, sign, want) in cases {
            assert_eq!(parse_decimal(text, sign), want, "{text:?} {sign:?}");
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let e = parse_decimal("123456789012345678901234567890", Sign::Unsigned).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = parse_decimal("1_000", Sign::Unsigned).unwrap_err();
        assert!(e.to_string().contains("not a decimal number"), "{e}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Cfg {
        #[serde(deserialize_with = "deserialize")]
        a: Decimal,
        #[serde(default, deserialize_with = "deserialize_opt")]
        b: Option<Decimal>,
    }

    #[test]
    fn config_values() {
        let de = |s: &str| toml::from_str::<Cfg>(s);
        let c = de("a = \"2.50\"\nb = \"-0.1\"").unwrap();
        assert_eq!(c.a.to_string(), "2.50");
        assert_eq!(c.b.map(|b| b.to_string()), Some("-0.1".into()));
        let c = de("a = 0.15").unwrap();
        assert_eq!((c.a.to_string(), c.b), ("0.15".into(), None));
        assert_eq!(de("a = 100").unwrap().a, Decimal::from(100));
        for bad in [
            "a = \"1_000\"",
            "a = \" 1\"",
            "a = \"+1\"",
            "a = \"1\"\nb = \"1e3\"",
        ] {
            let e = de(bad).unwrap_err().to_string();
            assert!(e.contains("not a decimal number"), "{bad}: {e}");
        }
        let e = de("a = \"123456789012345678901234567890\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
    }
}
