//! Reading venue JSON that is less regular than its documentation.
//!
//! Venues document some integer fields as numbers (Kraken `userref`,
//! `count`, OHLC `last`; Bybit `retCode`, `time`) and then send some of them
//! as numeric strings, depending on endpoint or day. [`int_field`] reads
//! either; anything else (a fraction, junk text, an object, a value out of
//! the field's range) is an error that names the field. Adapters wrap it in
//! one small function per field for serde's `deserialize_with`.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Visitor};

struct IntVisitor {
    field: &'static str,
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "field {}: an integer, as a number or a numeric string",
            self.field
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "field {}: {v} is not an integer",
            self.field
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.trim()
            .parse::<i128>()
            .map(Some)
            .map_err(|_| E::custom(format!("field {}: {v:?} is not an integer", self.field)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "field {}: {v} is not an integer",
            self.field
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn in_range<T: TryFrom<i128>, E: de::Error>(field: &'static str, v: i128) -> Result<T, E> {
    T::try_from(v).map_err(|_| E::custom(format!("field {field}: {v} is out of range")))
}

/// An integer that may arrive as a JSON number or a numeric string; `null`
/// is an error naming `field`.
pub fn int_field<'de, D, T>(d: D, field: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    match d.deserialize_any(IntVisitor { field })? {
        Some(v) => in_range(field, v),
        None => Err(de::Error::custom(format!(
            "field {field}: null is not an integer"
        ))),
    }
}

/// [`int_field`] for an optional field: `null` is `None`.
pub fn opt_int_field<'de, D, T>(d: D, field: &'static str) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    d.deserialize_any(IntVisitor { field })?
        .map(|v| in_range(field, v))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Row {
        #[serde(deserialize_with = "count")]
        count: u32,
        #[serde(default, deserialize_with = "userref")]
        userref: Option<i32>,
    }

    fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        int_field(d, "count")
    }

    fn userref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        opt_int_field(d, "userref")
    }

    #[test]
    fn numbers_and_numeric_strings_read_alike() {
        struct Case {
            json: &'static str,
            want: Result<(u32, Option<i32>), &'static str>,
        }
        let cases = [
            Case {
                json: r#"{"count": 3, "userref": 7}"#,
                want: Ok((3, Some(7))),
            },
            Case {
                json: r#"{"count": "3", "userref": "-7"}"#,
                want: Ok((3, Some(-7))),
            },
            Case {
                json: r#"{"count": " 12 ", "userref": null}"#,
                want: Ok((12, None)),
            },
            Case {
                json: r#"{"count": 0}"#,
                want: Ok((0, None)),
            },
            Case {
                json: r#"{"count": "three"}"#,
                want: Err("field count: \"three\" is not an integer"),
            },
            Case {
                json: r#"{"count": 1.5}"#,
                want: Err("field count: 1.5 is not an integer"),
            },
            Case {
                json: r#"{"count": -1}"#,
                want: Err("field count: -1 is out of range"),
            },
            Case {
                json: r#"{"count": null}"#,
                want: Err("field count: null is not an integer"),
            },
            Case {
                json: r#"{"count": true}"#,
                want: Err("field count: true is not an integer"),
            },
            Case {
                json: r#"{"count": 1, "userref": "12abc"}"#,
                want: Err("field userref: \"12abc\" is not an integer"),
            },
            Case {
                json: r#"{"count": 1, "userref": 2147483648}"#,
                want: Err("field userref: 2147483648 is out of range"),
            },
            Case {
                json: r#"{"count": 1, "userref": {}}"#,
                want: Err("field userref: an integer"),
            },
        ];
        for c in cases {
            let got = serde_json::from_str::<Row>(c.json);
            match (got, c.want) {
                (Ok(r), Ok(want)) => assert_eq!((r.count, r.userref), want, "{}", c.json),
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{}: {e}", c.json)
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.json),
            }
        }
    }
}
