//! Incremental inference for long runs (the backtester): the features advanced by one
//! candle in O(1), and the last `window` feature rows kept, so a reading costs one forward
//! filter over `window` rows however long the history is.
//!
//! [`FeatureStream`] computes exactly the recurrences of [`crate::features::compute_features`]
//! (same seeding, same operation order). The batch detector recomputes them over the most
//! recent `train_candles` candles, so once the history is longer than that its EMAs are seeded
//! at a later candle; the seed's weight after `train_candles` steps is (25/27)^n for the slowest
//! EMA and (13/14)^n for the RSI, below 1e-100 at the presets' depths, so the two agree far
//! inside 1e-9 (`tests/stream.rs` checks it against [`TimeframeDetector::infer`]).

use std::collections::VecDeque;

use crate::candle::{Candle, validate};
use crate::detector::{TimeframeDetector, TimeframeReading};
use crate::error::RegimeError;
use crate::features::{N_FEATURES, WARMUP};

const RSI_PERIOD: usize = 14;

/// One exponential moving average, seeded with its first value.
#[derive(Debug, Clone, Copy)]
struct Ema {
    alpha: f64,
    value: Option<f64>,
}

impl Ema {
    fn new(n: usize) -> Ema {
        Ema {
            alpha: 2.0 / (n as f64 + 1.0),
            value: None,
        }
    }

    fn push(&mut self, x: f64) -> f64 {
        let prev = self.value.unwrap_or(x);
        let next = self.alpha * x + (1.0 - self.alpha) * prev;
        self.value = Some(next);
        next
    }
}

/// The candle features, advanced one candle at a time.
#[derive(Debug, Clone)]
pub struct FeatureStream {
    seen: usize,
    ema9: Ema,
    ema12: Ema,
    ema21: Ema,
    ema26: Ema,
    signal: Ema,
    vol: Ema,
    prev_hist: f64,
    prev_close: f64,
    avg_gain: f64,
    avg_loss: f64,
}

impl Default for FeatureStream {
    fn default() -> Self {
        Self::new()
    }
}

impl FeatureStream {
    /// A stream that has seen no candle.
    pub fn new() -> FeatureStream {
        FeatureStream {
            seen: 0,
            ema9: Ema::new(9),
            ema12: Ema::new(12),
            ema21: Ema::new(21),
            ema26: Ema::new(26),
            signal: Ema::new(9),
            vol: Ema::new(20),
            prev_hist: 0.0,
            prev_close: 0.0,
            avg_gain: 0.0,
            avg_loss: 0.0,
        }
    }

    /// Candles pushed so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Advances by one candle; the raw feature row once past the warm-up.
    pub fn push(&mut self, c: &Candle) -> Result<Option<[f64; N_FEATURES]>, RegimeError> {
        validate(std::slice::from_ref(c))?;
        let t = self.seen;
        let close = c.close;
        let ema9 = self.ema9.push(close);
        let ema12 = self.ema12.push(close);
        let ema21 = self.ema21.push(close);
        let ema26 = self.ema26.push(close);
        let macd = ema12 - ema26;
        let signal = self.signal.push(macd);
        let hist = macd - signal;
        let vol_ema = self.vol.push(c.volume);
        // RSI as `features::rsi`: the first 14 changes summed, averaged at t = 14, then
        // Wilder smoothing.
        let p = RSI_PERIOD as f64;
        if t >= 1 {
            let d = close - self.prev_close;
            if t <= RSI_PERIOD {
                self.avg_gain += d.max(0.0);
                self.avg_loss += (-d).max(0.0);
                if t == RSI_PERIOD {
                    self.avg_gain /= p;
                    self.avg_loss /= p;
                }
            } else {
                self.avg_gain = (self.avg_gain * (p - 1.0) + d.max(0.0)) / p;
                self.avg_loss = (self.avg_loss * (p - 1.0) + (-d).max(0.0)) / p;
            }
        }
        let rsi = if t < RSI_PERIOD {
            50.0
        } else if self.avg_loss > 0.0 {
            100.0 - 100.0 / (1.0 + self.avg_gain / self.avg_loss)
        } else if self.avg_gain > 0.0 {
            100.0
        } else {
            50.0
        };
        let row = (t >= WARMUP).then(|| {
            let volume_ratio = if vol_ema > 0.0 {
                c.volume / vol_ema
            } else {
                1.0
            };
            [
                hist - self.prev_hist,
                (ema9 - ema21) / ema21,
                (rsi - 50.0) / 50.0,
                volume_ratio,
            ]
        });
        self.prev_hist = hist;
        self.prev_close = close;
        self.seen += 1;
        Ok(row)
    }
}

/// A detector's inference kept current candle by candle: the feature stream, the last
/// `window` raw rows, and each row's emissions under the detector's current model, computed
/// once per row and model (a retrain recomputes them), so a reading costs one emission row
/// and one forward pass over `window` rows of k states. A reading is also kept: until a new
/// row arrives or the model changes, the next reading is the same, and is returned as is.
///
/// Meant for one detector: the caches are keyed by its [`TimeframeDetector::generation`].
#[derive(Debug, Clone)]
pub struct StreamingInference {
    features: FeatureStream,
    rows: VecDeque<[f64; N_FEATURES]>,
    window: usize,
    /// Rows pushed so far: moves exactly when the window's rows change.
    pushed: u64,
    /// Scaled emissions, k per row, and their scales, of the oldest `maxes.len()` rows
    /// under model `emissions_of` (a prefix of `rows`, extended at the next reading).
    b: VecDeque<f64>,
    maxes: VecDeque<f64>,
    emissions_of: Option<u64>,
    /// The last reading: (`pushed`, model generation, reading).
    last: Option<(u64, u64, TimeframeReading)>,
}

impl StreamingInference {
    /// For `detector`'s window.
    pub fn new(detector: &TimeframeDetector) -> StreamingInference {
        let window = detector.config().window.max(1);
        StreamingInference {
            features: FeatureStream::new(),
            rows: VecDeque::with_capacity(window + 1),
            window,
            pushed: 0,
            b: VecDeque::with_capacity(3 * (window + 1)),
            maxes: VecDeque::with_capacity(window + 1),
            emissions_of: None,
            last: None,
        }
    }

    /// A closed candle.
    pub fn push(&mut self, c: &Candle) -> Result<(), RegimeError> {
        if let Some(row) = self.features.push(c)? {
            self.rows.push_back(row);
            self.pushed += 1;
            while self.rows.len() > self.window {
                self.rows.pop_front();
                if !self.maxes.is_empty() {
                    let k = self.b.len() / self.maxes.len();
                    self.maxes.pop_front();
                    self.b.drain(..k);
                }
            }
        }
        Ok(())
    }

    /// The reading at the last candle pushed, with `detector`'s current model (not ready
    /// when it has none or no row exists yet). Equal to [`TimeframeDetector::infer_rows`] on
    /// the kept rows: the same emissions and forward pass, with each row's emissions
    /// computed once per model, and the whole reading once per row and model.
    pub fn reading(
        &mut self,
        detector: &TimeframeDetector,
    ) -> Result<TimeframeReading, RegimeError> {
        if self.rows.is_empty() || detector.model().is_none() {
            return Ok(TimeframeReading::not_ready(&detector.config().name));
        }
        let generation = detector.generation();
        if let Some((pushed, of, reading)) = &self.last
            && *pushed == self.pushed
            && *of == generation
        {
            return Ok(reading.clone());
        }
        if self.emissions_of != Some(generation) {
            self.b.clear();
            self.maxes.clear();
            self.emissions_of = Some(generation);
        }
        for row in self.rows.iter().skip(self.maxes.len()) {
            match detector.emission_row(row)? {
                Some((e, m)) => {
                    self.b.extend(e);
                    self.maxes.push_back(m);
                }
                None => return Ok(TimeframeReading::not_ready(&detector.config().name)),
            }
        }
        let reading =
            detector.infer_emissions(self.b.make_contiguous(), self.maxes.make_contiguous())?;
        self.last = Some((self.pushed, generation, reading.clone()));
        Ok(reading)
    }
}
