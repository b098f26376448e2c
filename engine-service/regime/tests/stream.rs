//! Incremental inference (features advanced one candle at a time, a filter over the last
//! `window` rows) equals the batch detector's reading within 1e-9, before and after the
//! history outgrows the training depth, and across a retrain.

#![allow(clippy::unwrap_used, clippy::panic)]

use herd_regime::features::{Observations, compute_features};
use herd_regime::stream::{FeatureStream, StreamingInference};
use herd_regime::{Candle, TimeframeConfig, TimeframeDetector, TimeframeReading};

mod common;

fn candles(n: usize) -> Vec<Candle> {
    common::walk(n)
}

fn close_enough(a: &TimeframeReading, b: &TimeframeReading, at: usize) {
    assert_eq!(a.ready, b.ready, "at {at}");
    assert_eq!(a.regime, b.regime, "at {at}");
    for (x, y, what) in [
        (a.confidence, b.confidence, "confidence"),
        (a.bias, b.bias, "bias"),
        (a.entropy, b.entropy, "entropy"),
        (a.p_switch, b.p_switch, "p_switch"),
        (a.probs.bearish, b.probs.bearish, "p_bearish"),
        (a.probs.ranging, b.probs.ranging, "p_ranging"),
        (a.probs.bullish, b.probs.bullish, "p_bullish"),
    ] {
        assert!(
            (x - y).abs() <= 1e-9,
            "{what} at candle {at}: batch {x} stream {y}"
        );
    }
}

#[test]
fn feature_rows_equal_the_batch_computation_bit_for_bit() {
    let c = candles(600);
    let batch = compute_features(&c).unwrap();
    let mut stream = FeatureStream::new();
    let rows: Vec<[f64; 4]> = c.iter().filter_map(|x| stream.push(x).unwrap()).collect();
    assert_eq!(rows.len(), batch.len());
    for (r, b) in rows.iter().zip(batch.rows()) {
        assert_eq!(r.as_slice(), b);
    }
}

#[test]
fn incremental_reading_equals_batch_within_1e9() {
    let c = candles(4700);
    let mut detector = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let mut stream = StreamingInference::new(&detector);
    let checkpoints = [560, 1000, 2500, 3999, 4000, 4001, 4350, 4700];
    let mut compared = 0;
    for (i, candle) in c.iter().enumerate() {
        stream.push(candle).unwrap();
        let n = i + 1;
        // Retrain on the live schedule's shape: first at 550 candles, again at 4200.
        if n == 550 || n == 4200 {
            let start = n.saturating_sub(detector.config().train_candles);
            detector.train(&c[start..n], n as i64 * 60_000).unwrap();
        }
        if checkpoints.contains(&n) {
            let batch = detector.infer(&c[..n]).unwrap();
            let inc = stream.reading(&detector).unwrap();
            assert!(batch.ready);
            close_enough(&batch, &inc, n);
            compared += 1;
        }
    }
    assert_eq!(compared, checkpoints.len());
}

/// The per-row emission cache changes no number: a reading at every candle, across a
/// retrain, equals `infer_rows` over the same raw rows exactly.
#[test]
fn cached_emissions_give_exactly_the_uncached_reading() {
    let c = candles(1300);
    let mut detector = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let window = detector.config().window;
    let mut stream = StreamingInference::new(&detector);
    let mut features = FeatureStream::new();
    let mut raw: Vec<[f64; 4]> = Vec::new();
    let mut compared = 0;
    for (i, candle) in c.iter().enumerate() {
        stream.push(candle).unwrap();
        raw.extend(features.push(candle).unwrap());
        let n = i + 1;
        if n == 550 || n == 900 {
            detector.train(&c[..n], n as i64 * 60_000).unwrap();
        }
        if n >= 550 {
            let tail = &raw[raw.len().saturating_sub(window)..];
            let obs = Observations::new(4, tail.concat()).unwrap();
            let uncached = detector.infer_rows(&obs).unwrap();
            assert_eq!(stream.reading(&detector).unwrap(), uncached, "candle {n}");
            compared += 1;
        }
    }
    assert_eq!(compared, 751);
}

#[test]
fn untrained_and_too_short_are_not_ready() {
    let detector = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let mut stream = StreamingInference::new(&detector);
    assert!(!stream.reading(&detector).unwrap().ready);
    for c in candles(10) {
        stream.push(&c).unwrap();
    }
    assert!(!stream.reading(&detector).unwrap().ready);
    let bad = Candle {
        close: f64::NAN,
        ..candles(1)[0]
    };
    assert!(stream.push(&bad).is_err());
}

/// The kept reading (returned again until a new row or a new model) is exactly the uncached
/// one: readings repeated without a new candle, a retrain between two readings of the same
/// candle, and candles that add no row (a refused candle) all give `infer_rows`' answer.
#[test]
fn kept_reading_equals_the_uncached_reading() {
    let c = candles(1200);
    let mut detector = TimeframeDetector::new(TimeframeConfig::one_minute()).unwrap();
    let window = detector.config().window;
    let mut stream = StreamingInference::new(&detector);
    let mut features = FeatureStream::new();
    let mut raw: Vec<[f64; 4]> = Vec::new();
    let bad = Candle {
        volume: -1.0,
        ..c[0]
    };
    let mut compared = 0;
    let mut changed = 0;
    let mut previous: Option<TimeframeReading> = None;
    for (i, candle) in c.iter().enumerate() {
        stream.push(candle).unwrap();
        raw.extend(features.push(candle).unwrap());
        let n = i + 1;
        if n == 560 {
            detector.train(&c[..n], 0).unwrap();
        }
        if n < 560 || n % 7 != 0 {
            continue;
        }
        let uncached = |d: &TimeframeDetector| {
            let tail = &raw[raw.len().saturating_sub(window)..];
            d.infer_rows(&Observations::new(4, tail.concat()).unwrap())
                .unwrap()
        };
        let first = stream.reading(&detector).unwrap();
        assert_eq!(first, uncached(&detector), "candle {n}");
        // Again, and after a refused candle: nothing changed, the same reading.
        assert_eq!(stream.reading(&detector).unwrap(), first, "candle {n}");
        assert!(stream.push(&bad).is_err());
        assert_eq!(stream.reading(&detector).unwrap(), first, "candle {n}");
        if n % 91 == 0 {
            // A retrain between two readings of the same candle: a new reading.
            detector.train(&c[n - 600..n], n as i64).unwrap();
            let after = stream.reading(&detector).unwrap();
            assert_eq!(after, uncached(&detector), "candle {n}");
            assert_ne!(after.last_train_ms, first.last_train_ms);
        }
        if previous.as_ref().is_some_and(|p| *p != first) {
            changed += 1;
        }
        previous = Some(first);
        compared += 1;
    }
    assert_eq!(compared, 92);
    assert!(changed > 80, "{changed}");
}
