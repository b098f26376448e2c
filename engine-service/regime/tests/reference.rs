//! Agreement with hmmlearn 0.3.3 on the committed reference data in `reference/`
//! (regenerate with `python3 make_reference.py` there).
//!
//! Tolerances, each |rust - python| <= ATOL + RTOL * |python|:
//! - features from candles.csv vs the Python formulas: ATOL 1e-12, RTOL 1e-9;
//! - z-scoring mean/std: RTOL 1e-12;
//! - fitted HMM params (startprob, transmat, means, vars) and log-likelihoods: ATOL 1e-9,
//!   RTOL 1e-7, same iteration count and convergence flag;
//! - filtered posteriors: ATOL 1e-9.

#![allow(clippy::unwrap_used, clippy::panic)]

use herd_regime::features::{Observations, Standardizer, compute_features};
use herd_regime::hmm::{FitConfig, GaussianHmm, HmmParams, Prior};
use herd_regime::parse_candles_csv;
use serde_json::Value;

const PARAM_ATOL: f64 = 1e-9;
const PARAM_RTOL: f64 = 1e-7;
const POSTERIOR_ATOL: f64 = 1e-9;

fn reference(name: &str) -> String {
    let path = format!("{}/reference/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn float_csv(name: &str) -> Observations {
    let rows: Vec<Vec<f64>> = reference(name)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    Observations::from_rows(&rows).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&reference("expected.json")).unwrap()
}

fn vec1(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn vec2(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(vec1).collect()
}

fn params(v: &Value) -> HmmParams {
    HmmParams {
        startprob: vec1(&v["startprob"]),
        transmat: vec2(&v["transmat"]),
        means: vec2(&v["means"]),
        vars: vec2(&v["vars"]),
    }
}

/// Largest violation ratio |a - b| / (atol + rtol |b|); <= 1 passes.
fn check(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: f64 = 0.0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ratio = (g - w).abs() / (atol + rtol * w.abs());
        assert!(ratio <= 1.0, "{what}[{i}]: rust {g} vs hmmlearn {w}");
        worst = worst.max((g - w).abs());
    }
    worst
}

fn flat(m: &[Vec<f64>]) -> Vec<f64> {
    m.concat()
}

#[test]
fn features_match_python_formulas() {
    let candles = parse_candles_csv(&reference("candles.csv")).unwrap();
    let rust = compute_features(&candles).unwrap();
    let python = float_csv("features.csv");
    assert_eq!(rust.len(), python.len());
    let got: Vec<f64> = rust.rows().flatten().copied().collect();
    let want: Vec<f64> = python.rows().flatten().copied().collect();
    check("features", &got, &want, 1e-12, 1e-9);

    let e = expected();
    let z = Standardizer::fit(&python).unwrap();
    check(
        "feature mean",
        &z.mean,
        &vec1(&e["feature_mean"]),
        0.0,
        1e-12,
    );
    check("feature std", &z.std, &vec1(&e["feature_std"]), 0.0, 1e-12);
}

#[test]
fn baum_welch_matches_hmmlearn() {
    let e = expected();
    let obs = float_csv("zfeatures.csv");
    let config = FitConfig {
        max_iter: e["hmmlearn"]["n_iter"].as_u64().unwrap() as usize,
        tol: e["hmmlearn"]["tol"].as_f64().unwrap(),
        min_covar: e["hmmlearn"]["min_covar"].as_f64().unwrap(),
        covars_prior: e["hmmlearn"]["covars_prior"].as_f64().unwrap(),
        ..FitConfig::default()
    };
    let (model, report) = GaussianHmm::fit_from(params(&e["initial"]), &obs, &config).unwrap();
    let want = params(&e["fitted"]);
    // The variance floor must not bind on this data, or the comparison would be unfair.
    assert!(
        want.vars
            .iter()
            .flatten()
            .all(|v| *v > 10.0 * config.min_covar)
    );

    assert_eq!(
        report.iterations,
        e["iterations"].as_u64().unwrap() as usize
    );
    assert_eq!(report.converged, e["converged"].as_bool().unwrap());
    let got = model.params();
    let mut worst = 0.0f64;
    worst = worst.max(check(
        "startprob",
        &got.startprob,
        &want.startprob,
        PARAM_ATOL,
        PARAM_RTOL,
    ));
    worst = worst.max(check(
        "transmat",
        &flat(&got.transmat),
        &flat(&want.transmat),
        PARAM_ATOL,
        PARAM_RTOL,
    ));
    worst = worst.max(check(
        "means",
        &flat(&got.means),
        &flat(&want.means),
        PARAM_ATOL,
        PARAM_RTOL,
    ));
    worst = worst.max(check(
        "vars",
        &flat(&got.vars),
        &flat(&want.vars),
        PARAM_ATOL,
        PARAM_RTOL,
    ));
    check(
        "log-likelihood history",
        &report.log_likelihood_history,
        &vec1(&e["log_likelihood_history"]),
        PARAM_ATOL,
        PARAM_RTOL,
    );
    check(
        "final log-likelihood",
        &[model.log_likelihood(&obs).unwrap()],
        &[e["final_log_likelihood"].as_f64().unwrap()],
        PARAM_ATOL,
        PARAM_RTOL,
    );

    let post = model.filter(&obs, Prior::StartProb).unwrap();
    let worst_post = check(
        "filtered posteriors (rust fit)",
        &flat(&post),
        &flat(&vec2(&e["filtered_posteriors"])),
        POSTERIOR_ATOL,
        0.0,
    );
    eprintln!("max abs diff: params {worst:e}, posteriors {worst_post:e}");
}

#[test]
fn forward_filter_matches_on_hmmlearn_params() {
    let e = expected();
    let obs = float_csv("zfeatures.csv");
    let model = GaussianHmm::new(params(&e["fitted"])).unwrap();
    let post = model.filter(&obs, Prior::StartProb).unwrap();
    check(
        "filtered posteriors",
        &flat(&post),
        &flat(&vec2(&e["filtered_posteriors"])),
        POSTERIOR_ATOL,
        0.0,
    );
    check(
        "stationary",
        &model.stationary(),
        &vec1(&e["stationary"]),
        1e-12,
        0.0,
    );
    let window = e["window"].as_u64().unwrap() as usize;
    let last = model
        .filter_last(&obs.tail(window), Prior::Stationary)
        .unwrap();
    check(
        "window posterior",
        &last,
        &vec1(&e["window_posterior"]),
        POSTERIOR_ATOL,
        0.0,
    );
}
