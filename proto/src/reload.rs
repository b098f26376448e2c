//! Configuration reload, the part both services share (docs/config.md).
//!
//! A service serializes its typed configuration to JSON (secrets as
//! [`REDACTED_MARK`] plus a keyed hash, so a change is seen without the
//! value), and this module compares two of them ([`diff`]), names each
//! difference by a dotted path (`risk.engines.e0.max_open_orders`; arrays of
//! tables with an `id` or `name` are keyed by it: `engines.e1.weight`,
//! `events.sinks.ops.url`), classifies each path live or restart-only from
//! the service's table of [`Rule`]s, tells where a running value came from
//! ([`sources`]: file, env, default), and turns the three reload triggers
//! into one channel ([`spawn_triggers`]: SIGHUP, and a change of the file's
//! content, polled).
//!
//! Why a poll of the content and not inotify (`notify`): Kubernetes updates
//! a ConfigMap mounted as a directory by swapping a `..data` symlink
//! atomically, so the file's own inode never changes and a watch on it sees
//! nothing; a watch on the directory sees the swap but also every unrelated
//! entry, and editors replace files in three steps. Reading a file of a few
//! kilobytes once a second is cheap, follows symlinks by construction, and
//! sees exactly "the content changed". A change is taken only once two reads
//! [`SETTLE_MS`] apart agree, so a half-written file is not loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// How a serialized secret starts (see [`crate::Secret`]'s `Serialize`).
pub const REDACTED_MARK: &str = "REDACTED#";

/// How often the config file's content is read for a change by default
/// (both services' `config_poll_ms`).
pub const POLL_MS: u64 = 1_000;
/// A changed content is taken once a second read this much later agrees.
pub const SETTLE_MS: u64 = 200;

/// Whether a field's new value is applied by a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Applied at once.
    Live,
    /// Reported by a reload, applied only by a restart.
    Restart,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Live => "live",
            Class::Restart => "restart-only",
        }
    }
}

/// A dotted path pattern and its class: `*` matches one segment, and a
/// pattern covers every path it is a prefix of; the longest match wins.
pub type Rule = (&'static str, Class);

/// The class of `path` by `rules`; None when no rule covers it (a field
/// nobody classified: the services' tests forbid it, and a reload treats it
/// as restart-only).
pub fn classify(path: &str, rules: &[Rule]) -> Option<Class> {
    let segs: Vec<&str> = path.split('.').collect();
    rules
        .iter()
        .filter_map(|(pattern, class)| {
            let pat: Vec<&str> = pattern.split('.').collect();
            let matches =
                pat.len() <= segs.len() && pat.iter().zip(&segs).all(|(p, s)| *p == "*" || p == s);
            matches.then_some((pat.len(), *class))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, c)| c)
}

/// The most specific rule covering `path` (for the classification tests).
pub fn covering_rule(path: &str, rules: &[Rule]) -> Option<&'static str> {
    let segs: Vec<&str> = path.split('.').collect();
    rules
        .iter()
        .filter(|(pattern, _)| {
            let pat: Vec<&str> = pattern.split('.').collect();
            pat.len() <= segs.len() && pat.iter().zip(&segs).all(|(p, s)| *p == "*" || p == s)
        })
        .max_by_key(|(pattern, _)| pattern.split('.').count())
        .map(|(p, _)| *p)
}

/// An array of tables that each carry a string `id` or `name`, by that key.
fn keyed(v: &Value) -> Option<BTreeMap<String, &Value>> {
    let items = v.as_array()?;
    let mut out = BTreeMap::new();
    for item in items {
        let obj = item.as_object()?;
        let key = obj
            .get("id")
            .or_else(|| obj.get("name"))
            .and_then(Value::as_str)?;
        out.insert(key.to_string(), item);
    }
    // An empty array is keyed only if it stays comparable with a keyed one.
    Some(out)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// One difference: the value before and after (None = absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Every difference between two serialized configurations, by path. A
/// table or keyed element present on one side only is one difference at
/// its own path (an engine added is `engines.e2`, not its fields).
pub fn diff(old: &Value, new: &Value) -> Vec<Diff> {
    let mut out = Vec::new();
    diff_into("", Some(old), Some(new), &mut out);
    out
}

fn diff_into(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Diff>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_into(&join(path, k), x.get(k), y.get(k), out);
            }
        }
        (Some(x), Some(y)) if x == y => {}
        (Some(x), Some(y)) => match (keyed(x), keyed(y)) {
            (Some(xm), Some(ym)) if !(xm.is_empty() && ym.is_empty()) => {
                let keys: std::collections::BTreeSet<&String> =
                    xm.keys().chain(ym.keys()).collect();
                for k in keys {
                    diff_into(&join(path, k), xm.get(k).copied(), ym.get(k).copied(), out);
                }
            }
            _ => out.push(Diff {
                path: path.to_string(),
                before: Some(x.clone()),
                after: Some(y.clone()),
            }),
        },
        (None, None) => {}
        (a, b) => out.push(Diff {
            path: path.to_string(),
            before: a.cloned(),
            after: b.cloned(),
        }),
    }
}

/// Every leaf of a serialized configuration by path (tables are walked,
/// keyed arrays by key, other arrays and empty tables are leaves).
pub fn flatten(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    flatten_into("", v, &mut out);
    out
}

fn flatten_into(path: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                flatten_into(&join(path, k), x, out);
            }
        }
        Value::Array(a) if !a.is_empty() => match keyed(v) {
            Some(m) => {
                for (k, x) in m {
                    flatten_into(&join(path, &k), x, out);
                }
            }
            None => {
                out.insert(path.to_string(), v.clone());
            }
        },
        _ => {
            out.insert(path.to_string(), v.clone());
        }
    }
}

/// `v` with every serialized secret shown as `REDACTED` (its hash gone).
pub fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) if s.starts_with(REDACTED_MARK) => Value::String("REDACTED".into()),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), redact(x))).collect()),
        other => other.clone(),
    }
}

/// A value as one line of JSON, secrets redacted; "" for absent.
pub fn text(v: Option<&Value>) -> String {
    v.map(|v| redact(v).to_string()).unwrap_or_default()
}

/// One difference, classified, and whether the reload applied it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    /// JSON text, secrets redacted ("" = absent).
    pub before: String,
    pub after: String,
    pub class: Class,
    pub applied: bool,
}

/// Classifies `diffs` (a path no rule covers is restart-only).
pub fn classify_all(diffs: &[Diff], rules: &[Rule]) -> Vec<Change> {
    diffs
        .iter()
        .map(|d| {
            let class = classify(&d.path, rules).unwrap_or(Class::Restart);
            Change {
                path: d.path.clone(),
                before: text(d.before.as_ref()),
                after: text(d.after.as_ref()),
                class,
                applied: false,
            }
        })
        .collect()
}

/// One line for the log: `path: before -> after (live|restart-only)`, `; `
/// between changes.
pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| {
            let what = match (c.class, c.applied) {
                (Class::Live, true) => "live, applied",
                (Class::Live, false) => "live, NOT applied",
                (Class::Restart, _) => "restart-only, not applied",
            };
            let before = if c.before.is_empty() {
                "(absent)"
            } else {
                &c.before
            };
            let after = if c.after.is_empty() {
                "(absent)"
            } else {
                &c.after
            };
            format!("{}: {before} -> {after} ({what})", c.path)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The answer's one-line summary.
pub fn summary(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes".into();
    }
    let applied: Vec<&str> = changes
        .iter()
        .filter(|c| c.applied)
        .map(|c| c.path.as_str())
        .collect();
    let pending: Vec<&str> = changes
        .iter()
        .filter(|c| c.class == Class::Restart)
        .map(|c| c.path.as_str())
        .collect();
    let mut s = format!("{} applied", applied.len());
    if !applied.is_empty() {
        s.push_str(&format!(" ({})", applied.join(", ")));
    }
    if !pending.is_empty() {
        s.push_str(&format!(
            "; {} restart-only, not applied until a restart ({})",
            pending.len(),
            pending.join(", ")
        ));
    }
    s
}

/// Where a running value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Env,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Env => "env",
            Source::Default => "default",
        }
    }
}

/// The source of every leaf of `effective`: `env` under a path in
/// `from_env` (where the config loaded with and without its environment
/// overrides differs: [`env_paths`]), `file` where the file (`file`: its
/// TOML as written) sets the path or a table above it, else `default`.
pub fn sources(
    effective: &Value,
    from_env: &[String],
    file: Option<&Value>,
) -> BTreeMap<String, (Value, Source)> {
    let in_file: Vec<String> = file.map(flatten).unwrap_or_default().into_keys().collect();
    let covers = |outer: &str, path: &str| {
        outer == path
            || path.starts_with(&format!("{outer}."))
            || outer.starts_with(&format!("{path}."))
    };
    flatten(effective)
        .into_iter()
        .map(|(path, v)| {
            let source = if from_env.iter().any(|e| covers(e, &path)) {
                Source::Env
            } else if in_file.iter().any(|f| covers(f, &path)) {
                Source::File
            } else {
                Source::Default
            };
            (path, (v, source))
        })
        .collect()
}

/// The paths where a config loaded with its environment overrides
/// (`with`) differs from the same file loaded without them (`without`).
pub fn env_paths(with: &Value, without: &Value) -> Vec<String> {
    diff(without, with).into_iter().map(|d| d.path).collect()
}

/// The file's TOML as written, as JSON (for [`sources`]); None when it
/// cannot be read (the load already said why).
pub fn file_as_json(path: Option<&std::path::Path>) -> Option<Value> {
    let text = std::fs::read_to_string(path?).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    serde_json::to_value(v).ok()
}

/// One field of the running configuration as `herdctl config show` prints
/// it (value as JSON text, secrets REDACTED).
#[derive(Debug, Clone, PartialEq)]
pub struct ShownField {
    pub path: String,
    pub value: String,
    pub source: Source,
    pub live: bool,
}

/// What `config show` answers for a service: every field of `running` with
/// its source and class, and the file's changes to restart-only fields
/// that wait for a restart. `load` reads the service's config file as its
/// start does, with the environment overrides it is given (the real ones,
/// or none: where the two loads differ, a value came from the environment).
pub fn show<C, E>(
    running: &C,
    path: Option<&std::path::Path>,
    rules: &[Rule],
    load: impl Fn(&dyn Fn(&str) -> Option<String>) -> Result<C, E>,
) -> (Vec<ShownField>, Vec<Change>)
where
    C: serde::Serialize,
{
    let json = |c: &C| serde_json::to_value(c).unwrap_or(Value::Null);
    let effective = json(running);
    let real_env = |k: &str| std::env::var(k).ok();
    let on_disk = load(&real_env);
    let from_env = match (&on_disk, load(&|_: &str| None)) {
        (Ok(with), Ok(without)) => env_paths(&json(with), &json(&without)),
        _ => Vec::new(),
    };
    let file = file_as_json(path);
    let fields = sources(&effective, &from_env, file.as_ref())
        .into_iter()
        .map(|(path, (v, source))| ShownField {
            live: classify(&path, rules) == Some(Class::Live),
            value: text(Some(&v)),
            source,
            path,
        })
        .collect();
    let pending_restart = match &on_disk {
        Ok(on_disk) => classify_all(&diff(&effective, &json(on_disk)), rules)
            .into_iter()
            .filter(|c| c.class == Class::Restart)
            .collect(),
        Err(_) => Vec::new(),
    };
    (fields, pending_restart)
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Sighup,
    FileChanged,
    Rpc,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Sighup => "sighup",
            Trigger::FileChanged => "file",
            Trigger::Rpc => "rpc",
        }
    }
}

/// SIGHUP and (with a file and `poll_ms` > 0) changes of the file's
/// content, read every `poll_ms`, as one channel.
/// Installing the SIGHUP handler replaces the default action (exit), so a
/// service that reloads no longer dies of a hangup.
pub fn spawn_triggers(path: Option<PathBuf>, poll_ms: u64) -> mpsc::UnboundedReceiver<Trigger> {
    let (tx, rx) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(Trigger::Sighup).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by RPC or file change only")
            }
        }
    }
    if let Some(path) = path.filter(|_| poll_ms > 0) {
        tokio::spawn(watch_file(path, poll_ms, tx));
    }
    rx
}

/// Checks a `config_poll_ms` setting.
pub fn check_poll_ms(ms: u64) -> Result<(), String> {
    if ms != 0 && ms < 100 {
        return Err(format!(
            "config_poll_ms: {ms} must be 0 (no watching: SIGHUP and the RPC only) or at least 100"
        ));
    }
    Ok(())
}

/// Polls `path`'s content every `poll_ms`; sends once per settled change.
async fn watch_file(path: PathBuf, poll_ms: u64, tx: mpsc::UnboundedSender<Trigger>) {
    let read = |p: &PathBuf| std::fs::read(p).ok();
    let mut last = read(&path);
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = read(&path);
        // A file briefly missing (an editor's rename, a symlink swap) is
        // not a change; the next read decides.
        if now.is_none() || now == last {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
        if read(&path) != now {
            continue;
        }
        last = now;
        if tx.send(Trigger::FileChanged).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: &[Rule] = &[
        ("listen", Class::Restart),
        ("engines.*", Class::Restart),
        ("engines.*.weight", Class::Live),
        ("risk", Class::Live),
    ];

    #[test]
    fn classify_longest_match_and_uncovered() {
        assert_eq!(classify("listen", RULES), Some(Class::Restart));
        assert_eq!(classify("engines.e0.weight", RULES), Some(Class::Live));
        assert_eq!(classify("engines.e0.token", RULES), Some(Class::Restart));
        assert_eq!(classify("engines.e9", RULES), Some(Class::Restart));
        assert_eq!(
            classify("risk.engines.e0.max_open_orders", RULES),
            Some(Class::Live)
        );
        assert_eq!(classify("venue", RULES), None);
        assert_eq!(
            covering_rule("engines.e0.weight", RULES),
            Some("engines.*.weight")
        );
    }

    #[test]
    fn diff_keys_arrays_of_tables_and_reports_whole_additions() {
        let old = json!({"listen": "a", "engines": [{"id": "e0", "weight": 1}],
                         "risk": {"account": {"max": null}}, "tags": [1, 2]});
        let new = json!({"listen": "a", "engines": [{"id": "e0", "weight": 3}, {"id": "e1", "weight": 1}],
                         "risk": {"account": {"max": "5"}}, "tags": [2]});
        let d = diff(&old, &new);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "engines.e0.weight",
                "engines.e1",
                "risk.account.max",
                "tags"
            ]
        );
        assert_eq!(d[1].before, None);
        assert!(diff(&old, &old).is_empty());
        let changes = classify_all(&d, RULES);
        assert_eq!(changes[0].class, Class::Live);
        assert_eq!(changes[1].class, Class::Restart);
        // "tags" is covered by no rule: restart-only.
        assert_eq!(changes[3].class, Class::Restart);
    }

    #[test]
    fn secrets_are_redacted_in_text_and_changes_still_seen() {
        let a = serde_json::to_value(crate::Secret::new("hunter2-secret")).unwrap();
        let b = serde_json::to_value(crate::Secret::new("other-secret")).unwrap();
        assert_ne!(a, b, "a changed secret must be seen");
        let changes = classify_all(
            &diff(&json!({"t": a}), &json!({"t": b})),
            &[("t", Class::Restart)],
        );
        assert_eq!(changes[0].before, "\"REDACTED\"");
        assert_eq!(changes[0].after, "\"REDACTED\"");
        let line = describe(&changes);
        assert!(
            !line.contains("hunter2") && !line.contains(REDACTED_MARK),
            "{line}"
        );
    }

    #[test]
    fn sources_tell_file_env_and_default() {
        let effective = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 9});
        let without_env = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        let file = json!({"b": {"c": 2}, "e": 4});
        let from_env = env_paths(&effective, &without_env);
        assert_eq!(from_env, ["e"]);
        let s = sources(&effective, &from_env, Some(&file));
        assert_eq!(s["a"].1, Source::Default);
        assert_eq!(s["b.c"].1, Source::File);
        assert_eq!(s["b.d"].1, Source::Default);
        assert_eq!(s["e"].1, Source::Env);
    }
}
