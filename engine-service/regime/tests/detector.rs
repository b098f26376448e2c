//! Detector behaviour: labelling, readiness, retraining, degenerate input, determinism, and
//! the offline analysis, on the committed synthetic candles in `reference/candles.csv`.

#![allow(clippy::unwrap_used, clippy::panic)]

use herd_regime::detector::{BIAS_MIN_CONFIDENCE, TrainedModel};
use herd_regime::features::{EMA_SPREAD, WARMUP};
use herd_regime::hmm::FitConfig;
use herd_regime::{
    Candle, Regime, RegimeError, TimeframeConfig, TimeframeDetector, TimeframeReading,
    analyze_candles, consensus, parse_candles_csv,
};

const HOUR_MS: i64 = 3_600_000;
const NOW: i64 = 1_700_100_000_000;

fn reference_candles() -> Vec<Candle> {
    let path = format!("{}/reference/candles.csv", env!("CARGO_MANIFEST_DIR"));
    parse_candles_csv(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat_candles(n: usize, price: f64, volume: f64) -> Vec<Candle> {
    (0..n)
        .map(|i| Candle {
            open_time_ms: i as i64 * 60_000,
            open: price,
            high: price,
            low: price,
            close: price,
            volume,
        })
        .collect()
}

fn assert_finite(r: &TimeframeReading) {
    let p = r.probs;
    for v in [
        r.confidence,
        r.bias,
        r.entropy,
        r.p_switch,
        p.bearish,
        p.ranging,
        p.bullish,
    ] {
        assert!(v.is_finite(), "{r:?}");
    }
    assert!((0.0..=1.0).contains(&r.confidence));
    assert!((-1.0..=1.0).contains(&r.bias));
    assert!((0.0..=1.0).contains(&r.p_switch));
    assert!(r.entropy >= 0.0 && r.entropy <= 3f64.ln() + 1e-12);
    assert!((p.bearish + p.ranging + p.bullish - 1.0).abs() < 1e-9);
}

#[test]
fn states_are_labelled_by_mean_ema_spread() {
    let model = TrainedModel::train(&reference_candles(), &FitConfig::default()).unwrap();
    let means = &model.hmm().params().means;
    let mut by_spread: Vec<usize> = (0..3).collect();
    by_spread.sort_by(|&a, &b| means[a][EMA_SPREAD].total_cmp(&means[b][EMA_SPREAD]));
    for (state, label) in
        by_spread
            .into_iter()
            .zip([Regime::Bearish, Regime::Ranging, Regime::Bullish])
    {
        let mut one_hot = vec![0.0; 3];
        one_hot[state] = 1.0;
        let s = model.summarize(&one_hot).unwrap();
        assert_eq!(s.regime, label);
        assert_eq!(s.confidence, 1.0);
        assert_eq!(s.entropy, 0.0);
        let want_bias = match label {
            Regime::Bearish => -1.0,
            Regime::Bullish => 1.0,
            _ => 0.0,
        };
        assert_eq!(s.bias, want_bias);
    }
}

#[test]
fn summary_rules() {
    let model = TrainedModel::train(&reference_candles(), &FitConfig::default()).unwrap();
    let a = &model.hmm().params().transmat;
    let uniform = model.summarize(&[1.0 / 3.0; 3]).unwrap();
    assert!(uniform.confidence.abs() < 1e-12);
    assert_eq!(
        uniform.bias, 0.0,
        "bias is 0 below {BIAS_MIN_CONFIDENCE} confidence"
    );
    assert!((uniform.entropy - 3f64.ln()).abs() < 1e-12);
    let want_switch = 1.0 - (a[0][0] + a[1][1] + a[2][2]) / 3.0;
    assert!((uniform.p_switch - want_switch).abs() < 1e-12);
    assert!(model.summarize(&[0.5, 0.5]).is_err());
}

#[test]
fn readiness_and_retraining_follow_the_clock_the_caller_passes() {
    let candles = reference_candles();
    let mut det = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    assert!(!det.infer(&candles).unwrap().ready);

    // Below min_train_candles (500): not ready, not an error.
    let r = det.update(&candles[..499], NOW).unwrap();
    assert!(!r.ready);
    assert_eq!(r.regime, Regime::Unknown);
    assert!(matches!(
        det.train(&candles[..499], NOW),
        Err(RegimeError::TooFew {
            have: 499,
            need: 500,
            ..
        })
    ));

    let r = det.update(&candles[..500], NOW).unwrap();
    assert!(r.ready);
    assert_eq!(r.training_depth, 500);
    assert_eq!(r.last_train_ms, Some(NOW));
    assert_finite(&r);

    // Within 24 h: no retrain even with more data.
    let r = det.update(&candles, NOW + 23 * HOUR_MS).unwrap();
    assert_eq!((r.training_depth, r.last_train_ms), (500, Some(NOW)));
    assert!(!det.needs_retrain(NOW + 24 * HOUR_MS - 1));
    assert!(det.needs_retrain(NOW + 24 * HOUR_MS));

    let r = det.update(&candles, NOW + 24 * HOUR_MS).unwrap();
    assert_eq!(
        (r.training_depth, r.last_train_ms),
        (1000, Some(NOW + 24 * HOUR_MS))
    );
}

#[test]
fn training_uses_at_most_train_candles() {
    let config = TimeframeConfig {
        train_candles: 600,
        ..TimeframeConfig::one_minute()
    };
    let mut det = TimeframeDetector::new(config).unwrap();
    assert_eq!(
        det.update(&reference_candles(), NOW)
            .unwrap()
            .training_depth,
        600
    );
}

#[test]
fn invalid_configs_are_rejected() {
    for config in [
        TimeframeConfig {
            min_train_candles: 10,
            ..TimeframeConfig::one_hour()
        },
        TimeframeConfig {
            train_candles: 100,
            ..TimeframeConfig::one_hour()
        },
        TimeframeConfig {
            window: 0,
            ..TimeframeConfig::one_hour()
        },
        TimeframeConfig {
            fit: FitConfig {
                n_states: 2,
                ..FitConfig::default()
            },
            ..TimeframeConfig::one_hour()
        },
    ] {
        assert!(matches!(
            TimeframeDetector::new(config),
            Err(RegimeError::Invalid { .. })
        ));
    }
}

#[test]
fn degenerate_candles_give_finite_readings() {
    for (price, volume) in [(0.1, 0.0), (0.1, 5.0), (1e-8, 0.0), (65_000.0, 1e-9)] {
        let candles = flat_candles(600, price, volume);
        let mut det = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
        let r = det.update(&candles, NOW).unwrap();
        assert!(r.ready);
        assert_finite(&r);
        let run = analyze_candles(&candles, &TimeframeConfig::one_minute()).unwrap();
        for row in &run.rows {
            assert!(row.summary.confidence.is_finite() && row.summary.entropy.is_finite());
        }
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut candles = reference_candles();
    candles[700].volume = -1.0;
    let mut det = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    assert!(matches!(
        det.update(&candles, NOW),
        Err(RegimeError::InvalidCandle { index: 700, .. })
    ));
    assert!(matches!(
        analyze_candles(&candles[..100], &TimeframeConfig::one_minute()),
        Err(RegimeError::TooFew {
            have: 100,
            need: 500,
            ..
        })
    ));
}

#[test]
fn training_is_deterministic_from_the_seed() {
    let candles = reference_candles();
    let a = TrainedModel::train(&candles, &FitConfig::default()).unwrap();
    let b = TrainedModel::train(&candles, &FitConfig::default()).unwrap();
    assert_eq!(a, b);
    for seed in [1, 2, 3] {
        let fit = FitConfig {
            seed,
            ..FitConfig::default()
        };
        let c = TrainedModel::train(&candles, &fit).unwrap();
        assert_eq!(c, TrainedModel::train(&candles, &fit).unwrap());
        assert!(
            c.hmm()
                .params()
                .means
                .iter()
                .flatten()
                .all(|v| v.is_finite())
        );
    }
}

#[test]
fn analysis_rows_cover_every_candle_after_warmup_and_end_at_the_live_reading() {
    let candles = reference_candles();
    let config = TimeframeConfig::one_minute();
    let run = analyze_candles(&candles, &config).unwrap();
    assert_eq!(run.rows.len(), candles.len() - WARMUP);
    assert_eq!(run.rows[0].open_time_ms, candles[WARMUP].open_time_ms);
    assert_eq!(run.training_depth, candles.len());
    let mut det = TimeframeDetector::new(config).unwrap();
    let live = det.update(&candles, NOW).unwrap();
    let last = run.rows.last().unwrap().summary;
    assert_eq!(
        (last.regime, last.confidence, last.bias),
        (live.regime, live.confidence, live.bias)
    );
    // The synthetic series has long trending segments: all three regimes show up.
    for regime in [Regime::Bearish, Regime::Ranging, Regime::Bullish] {
        assert!(
            run.rows.iter().any(|r| r.summary.regime == regime),
            "{regime} never seen"
        );
    }
}

#[test]
fn a_strong_uptrend_reads_bullish() {
    let mut candles = reference_candles();
    let mut price = candles.last().unwrap().close;
    let t0 = candles.last().unwrap().open_time_ms;
    for i in 1..=60 {
        let open = price;
        price *= 1.002;
        candles.push(Candle {
            open_time_ms: t0 + i * 60_000,
            open,
            high: price,
            low: open,
            close: price,
            volume: 1500.0,
        });
    }
    let mut det = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let r = det.update(&candles, NOW).unwrap();
    assert_eq!(r.regime, Regime::Bullish, "{r:?}");
    assert!(r.bias > 0.0);
}

#[test]
fn consensus_of_live_detectors_is_ready_only_when_both_are() {
    let candles = reference_candles();
    let mut m1 = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let mut m15 = TimeframeDetector::new(TimeframeConfig::fifteen_minutes()).unwrap();
    let r1 = m1.update(&candles, NOW).unwrap();
    let not_yet = m15.update(&candles[..150], NOW).unwrap();
    let c = consensus(&r1, &not_yet);
    assert!(!c.ready && !c.is_ranging());
    let r15 = m15.update(&candles, NOW).unwrap();
    let c = consensus(&r1, &r15);
    assert!(c.ready);
    assert_ne!(c.regime, Regime::Unknown);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["per_timeframe"][0]["timeframe"], "1m");
}
