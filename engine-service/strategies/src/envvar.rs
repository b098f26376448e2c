//! Parsing the strategies' environment overrides (`GRID_*`, `RANGER_*`,
//! `FUNDING_*`, ...): one set of rules for every section.

/// A bad environment value: (variable, message).
pub type EnvError = (&'static str, String);

/// `v` parsed as `T`, or an error naming the variable and the value.
pub fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, EnvError>
where
    T::Err: std::fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e: T::Err| (name, format!("{v:?} is not valid ({e})")))
}

/// `v` as a decimal of herd-types' strict grammar (digits, at most one
/// point, a leading minus), or an error naming the variable and the value.
/// Surrounding spaces are trimmed as for every variable.
pub fn parse_decimal(name: &'static str, v: &str) -> Result<rust_decimal::Decimal, EnvError> {
    herd_types::decimal::parse_decimal(v.trim(), herd_types::decimal::Sign::Signed)
        .map_err(|e| (name, e.to_string()))
}

/// 1/true/yes/on or 0/false/no/off (any case); empty is false.
pub fn parse_bool(name: &'static str, v: &str) -> Result<bool, EnvError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err((name, format!("{v:?} is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_errors() {
        assert_eq!(parse::<u32>("X", " 7 "), Ok(7));
        let (name, msg) = parse::<u32>("X", "seven").unwrap_err();
        assert_eq!(name, "X");
        assert!(msg.contains("\"seven\" is not valid"), "{msg}");
        assert_eq!(parse_bool("B", "ON"), Ok(true));
        assert_eq!(parse_bool("B", ""), Ok(false));
        assert!(
            parse_bool("B", "maybe")
                .unwrap_err()
                .1
                .contains("not true or false")
        );
    }
}
