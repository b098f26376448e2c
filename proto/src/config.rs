//! What both services' configs share: the error type and reading the TOML
//! file (each service then applies its environment overrides and validates).

use std::path::Path;

use serde::de::DeserializeOwned;

/// A configuration problem, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `cause` is in the message and deliberately not the error's source,
    /// so a printed chain says it once.
    #[error("cannot read config file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("config file {path}: {message}")]
    InvalidIn { path: String, message: String },
}

impl ConfigError {
    /// Says which file a validation problem was found in (the values may
    /// have come from environment overrides of it).
    pub fn in_file(self, path: Option<&Path>) -> ConfigError {
        match (self, path) {
            (ConfigError::Invalid(message), Some(p)) => ConfigError::InvalidIn {
                path: p.display().to_string(),
                message,
            },
            (e, _) => e,
        }
    }
}

/// The config in `path`, or the defaults when there is no file.
pub fn read_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(p) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(p).map_err(|cause| ConfigError::Read {
        path: p.display().to_string(),
        cause,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: p.display().to_string(),
        message: explain(&text, &e),
    })
}

/// toml's error, led by what to do about an unknown key (every config table
/// denies unknown fields) or an unknown value of an enum: where it is and,
/// when a known name is close, "did you mean".
fn explain(text: &str, e: &toml::de::Error) -> String {
    let rendered = e.to_string();
    let Some((what, name, known)) = unknown_name(e.message()) else {
        return rendered;
    };
    let place = match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(1, |before| before.matches('\n').count() + 1);
            format!(" {} (line {line})", table_at(text, span.start))
        }
        None => String::new(),
    };
    let hint = match closest(&name, &known) {
        Some(k) => format!("; did you mean `{k}`?"),
        None if known.is_empty() => String::new(),
        None => format!(
            "; known: {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("unknown {what} `{name}`{place}{hint}\n{rendered}")
}

/// ("key" | "value", the unknown name, the known ones) from serde's
/// "unknown field `x`, expected one of `a`, `b`" or "unknown variant ...".
fn unknown_name(message: &str) -> Option<(&'static str, String, Vec<String>)> {
    let what = if message.starts_with("unknown field `") {
        "key"
    } else if message.starts_with("unknown variant `") {
        "value"
    } else {
        return None;
    };
    // The text between backticks: the unknown name first, then the known.
    let mut quoted = message.split('`').skip(1).step_by(2).map(str::to_string);
    let name = quoted.next()?;
    Some((what, name, quoted.collect()))
}

/// Which table the byte offset `at` is in, as the file spells it: the
/// nearest `[header]` above (or, for a header line itself, the table it
/// opens inside), "at the top level" when there is none.
fn table_at(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let this_line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or("");
    let header = |l: &str| {
        let t = l.trim();
        t.starts_with('[').then(|| {
            t.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    let table = match header(this_line) {
        // An unknown table: it sits in its parent.
        Some(h) => h.rsplit_once('.').map(|(parent, _)| parent.to_string()),
        None => text
            .get(..line_start)
            .unwrap_or("")
            .lines()
            .rev()
            .find_map(header),
    };
    match table {
        Some(t) if !t.is_empty() => format!("in [{t}]"),
        _ => "at the top level".to_string(),
    }
}

/// The known name closest to `name`, if it is close: an edit distance of at
/// most 2 (3 for names of 10 characters or more), case and `-`/`_` aside.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let n = norm(name);
    let limit = if name.chars().count() >= 10 { 3 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(&n, &norm(k)), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance (characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One case of an unknown-key table test: the config text, the key the
/// error must name, where it must say the key is (e.g. "in [funding]"), and
/// the "did you mean" it must suggest (`None`: no suggestion).
pub type UnknownKeyCase<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// Runs an unknown-key table test for a service's config loader: writes
/// each case to its own file under `dir`, loads it, and checks that the
/// error names the file, the key and its place, and suggests what the case
/// expects. Returns every case that did not hold (the tests of both
/// services assert it is empty).
pub fn unknown_key_failures<T, E: std::fmt::Display>(
    dir: &Path,
    cases: &[UnknownKeyCase<'_>],
    load: impl Fn(&Path) -> Result<T, E>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (text, key, place, hint)) in cases.iter().enumerate() {
        let path = dir.join(format!("config-{i}.toml"));
        if let Err(e) = std::fs::write(&path, text) {
            failures.push(format!("{text}: cannot write {}: {e}", path.display()));
            continue;
        }
        let e = match load(&path) {
            Ok(_) => {
                failures.push(format!("{text}: loaded without an error"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        let file = path.display().to_string();
        if !e.contains(&file) {
            failures.push(format!("{text}: {e} should name {file}"));
        }
        if !e.contains(&format!("`{key}` {place}")) {
            failures.push(format!("{text}: {e} should name `{key}` {place}"));
        }
        let suggests = e.contains("did you mean");
        match hint {
            Some(h) if !e.contains(&format!("did you mean `{h}`?")) => {
                failures.push(format!("{text}: {e} should suggest {h}"));
            }
            None if suggests => failures.push(format!("{text}: {e} suggests nothing right")),
            _ => {}
        }
    }
    failures
}

/// An address from the environment variable `name`; empty means "not served".
pub fn optional_addr_env(
    name: &'static str,
    v: &str,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    crate::admin_http::parse_optional_addr(v).map_err(|message| ConfigError::Env { name, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Small {
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn missing_and_bad_files_say_which_file() {
        assert_eq!(read_toml::<Small>(None).unwrap(), Small::default());
        let dir = std::env::temp_dir().join(format!("herd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let missing = dir.join("missing.toml");
        let e = read_toml::<Small>(Some(&missing)).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }) && e.to_string().contains("missing.toml"));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "port = \"x\"\n").unwrap_or_default();
        let e = read_toml::<Small>(Some(&bad)).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("bad.toml"),
            "{e}"
        );
        let good = dir.join("good.toml");
        std::fs::write(&good, "port = 7\n").unwrap_or_default();
        assert_eq!(read_toml::<Small>(Some(&good)).unwrap(), Small { port: 7 });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_names_are_placed_and_matched() {
        let known: Vec<String> = ["rangers", "grid", "funding", "tick_ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cases = [
            ("rangerz", Some("rangers")),
            ("RANGERS", Some("rangers")),
            ("tick-ms", Some("tick_ms")),
            ("grd", Some("grid")),
            ("zzz", None),
            ("fundingfundingx", None),
        ];
        for (name, want) in cases {
            assert_eq!(closest(name, &known), want, "{name}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let text = "a = 1\n[x]\nb = 2\n[[y.z]]\nc = 3\n[y.q]\n";
        let at = |s: &str| text.find(s).unwrap();
        assert_eq!(table_at(text, at("a =")), "at the top level");
        assert_eq!(table_at(text, at("b =")), "in [x]");
        assert_eq!(table_at(text, at("c =")), "in [y.z]");
        assert_eq!(table_at(text, at("q]")), "in [y]");
        assert_eq!(
            unknown_name("unknown field `rangerz`, expected one of `rangers`, `grid`"),
            Some((
                "key",
                "rangerz".into(),
                vec!["rangers".into(), "grid".into()]
            ))
        );
        assert_eq!(
            unknown_name("unknown variant `krakn`, expected `paper` or `kraken`"),
            Some((
                "value",
                "krakn".into(),
                vec!["paper".into(), "kraken".into()]
            ))
        );
        assert_eq!(unknown_name("invalid type: string"), None);
    }
}
