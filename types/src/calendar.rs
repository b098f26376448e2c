//! UTC calendar arithmetic without a date library: Howard Hinnant's
//! civil-date algorithms, the one `YYYY-MM-DDTHH:MM:SSZ` format venues,
//! simulators and reports print, and a parser for the dates venues and
//! CSV files write. The one copy of this arithmetic in the workspace.

/// `YYYY-MM-DD`, optionally followed by ` ` or `T` and `HH:MM[:SS[.fff]]`,
/// optionally ending in `Z` or `+00:00`; UTC milliseconds.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or(text);
    let (date, time) = match text.find([' ', 'T']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(y, m, day) * 86_400_000;
    if let Some(time) = time {
        let mut t = time.split(':');
        let h: i64 = t.next()?.parse().ok()?;
        let min: i64 = t.next()?.parse().ok()?;
        let sec: f64 = t.next().map_or(Some(0.0), |s| s.parse().ok())?;
        if t.next().is_some()
            || !(0..24).contains(&h)
            || !(0..60).contains(&min)
            || !(0.0..61.0).contains(&sec)
        {
            return None;
        }
        ms += h * 3_600_000 + min * 60_000 + (sec * 1000.0).round() as i64;
    }
    Some(ms)
}

pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_string(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for t in [0, 951_782_400_000, 1_700_000_000_000, 4_102_444_800_000] {
            let s = utc_string(t);
            assert_eq!(parse_utc(&s), Some(t), "{s}");
        }
        assert_eq!(utc_string(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_utc("2024-02-30"), None);
        assert_eq!(parse_utc("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_utc("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
        assert_eq!(parse_utc("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("yesterday"), None);
        for days in [-1, 0, 59, 365, 11_016, 19_675] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
