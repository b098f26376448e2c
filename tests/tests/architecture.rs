//! The crate boundaries ARCHITECTURE.md promises, checked against the real
//! dependency graph: the strategies (and the types they share with the
//! venues) stay free of async runtimes, gRPC, databases and HTTP, so the
//! live engine and the backtester can run the very same reducers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::process::Command;

/// Crates that must never reach the pure layer.
const FORBIDDEN: &[&str] = &["tokio", "tonic", "sqlx", "hyper", "herd-proto", "reqwest"];

/// The normal (non-dev, non-build) dependency tree of `package`, one crate
/// name per line.
fn normal_deps(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = match Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cargo tree cannot run: {e}"),
    };
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn strategies_and_shared_types_depend_on_no_runtime_grpc_or_database() {
    // herd-backtest runs the strategies on the paper core in simulated
    // time: no runtime there either (it uses herd-paper without `venue`).
    for package in ["herd-strategies", "herd-types", "herd-backtest"] {
        let deps = normal_deps(package);
        assert!(
            deps.iter().any(|d| d == package),
            "{package} not in its own tree: {deps:?}"
        );
        let bad: Vec<&String> = deps
            .iter()
            .filter(|d| FORBIDDEN.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{package} depends on {bad:?}");
    }
}

#[test]
fn the_check_sees_a_forbidden_dependency_where_there_is_one() {
    // The engine runtime does use tokio and tonic: if this failed, the check
    // above would pass vacuously.
    let deps = normal_deps("herd-engine");
    for needed in ["tokio", "tonic", "sqlx", "herd-strategies"] {
        assert!(
            deps.iter().any(|d| d == needed),
            "herd-engine lacks {needed}"
        );
    }
}

#[test]
fn the_execution_layer_names_no_strategy_and_no_view() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine-service/src/execution.rs"
    );
    let src = match std::fs::read_to_string(root) {
        Ok(s) => s,
        Err(e) => panic!("cannot read {root}: {e}"),
    };
    for name in [
        "rangers",
        "grid::",
        "churner",
        "dashboard",
        "crate::control",
    ] {
        let hits: Vec<&str> = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| l.contains(name))
            .collect();
        assert!(hits.is_empty(), "execution.rs names {name}: {hits:?}");
    }
}
