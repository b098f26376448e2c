//! Candle features for the HMM and their z-scoring.
//!
//! Per candle: MACD(12,26,9) histogram slope, EMA spread (EMA9 - EMA21) / EMA21, RSI14 zone
//! (RSI - 50) / 50 with Wilder smoothing, and volume ratio volume / EMA20(volume).
//!
//! Exact definitions (mirrored in Python by `reference/synth.py` for the reference test):
//! - EMA(n): alpha = 2 / (n + 1), seeded with the first value (pandas `ewm(adjust=False)`).
//! - MACD = EMA12(close) - EMA26(close); signal = EMA9(MACD); hist = MACD - signal;
//!   `slope[t] = hist[t] - hist[t-1]`.
//! - RSI: Wilder averages of gains and losses seeded with the simple mean of the first 14
//!   changes, then `avg = (avg * 13 + x) / 14`.
//! - The first [`WARMUP`] candles produce no row.
//!
//! Why the output is always finite: candles are validated first (prices finite and > 0,
//! volume finite and >= 0), so EMAs of prices are > 0 and the spread's division is safe; the
//! RSI is defined as 50 when there were neither gains nor losses and 100 when there were no
//! losses; the volume ratio is 1 when EMA20(volume) is 0 (all volume zero so far); and
//! [`Standardizer`] replaces a (near-)zero standard deviation by 1, so a constant feature
//! z-scores to 0 instead of 0/0.

use crate::candle::{Candle, validate};
use crate::error::{RegimeError, invalid};

/// Number of features per row.
pub const N_FEATURES: usize = 4;
/// Column of the MACD histogram slope.
pub const MACD_SLOPE: usize = 0;
/// Column of the EMA spread; states are labelled by their mean in this column.
pub const EMA_SPREAD: usize = 1;
/// Column of the RSI zone.
pub const RSI_ZONE: usize = 2;
/// Column of the volume ratio.
pub const VOLUME_RATIO: usize = 3;
/// Candles dropped at the start: the slowest chain is EMA26 feeding the EMA9 signal line
/// (26 + 9 - 1 = 34 candles); the slope needs the previous histogram, which that covers
/// (first row is candle index 34, slope against index 33). RSI14 needs only 15.
pub const WARMUP: usize = 34;
/// A standard deviation at or below this is treated as zero (feature constant in training).
pub const STD_FLOOR: f64 = 1e-12;

const RSI_PERIOD: usize = 14;

/// A dense row-major matrix of observations (rows = time steps, columns = features).
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    cols: usize,
    data: Vec<f64>,
}

impl Observations {
    /// Builds from row-major data; `data.len()` must be a multiple of `cols` (> 0) and every
    /// value finite.
    pub fn new(cols: usize, data: Vec<f64>) -> Result<Self, RegimeError> {
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(invalid(
                "observations",
                format!("{} values do not fill rows of {cols} columns", data.len()),
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                "observations",
                format!(
                    "value at row {} column {} is not finite",
                    i / cols,
                    i % cols
                ),
            ));
        }
        Ok(Self { cols, data })
    }

    /// Builds from rows; all rows must have the same, non-zero length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self, RegimeError> {
        let cols = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != cols) {
            return Err(invalid("observations", "rows have different lengths"));
        }
        Self::new(cols, rows.concat())
    }

    /// Number of rows (time steps).
    pub fn len(&self) -> usize {
        self.data.len() / self.cols
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of columns (features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `t`; callers keep `t` below [`Observations::len`].
    pub(crate) fn row(&self, t: usize) -> &[f64] {
        &self.data[t * self.cols..(t + 1) * self.cols]
    }

    /// The values, row-major.
    pub(crate) fn data(&self) -> &[f64] {
        &self.data
    }

    /// Iterates over rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.data.chunks_exact(self.cols)
    }

    /// The last `n` rows (or all if fewer).
    pub fn tail(&self, n: usize) -> Observations {
        let start = self.len().saturating_sub(n) * self.cols;
        Observations {
            cols: self.cols,
            data: self.data[start..].to_vec(),
        }
    }

    /// Rows `start..end` (clamped to the matrix).
    pub fn slice(&self, start: usize, end: usize) -> Observations {
        let end = end.min(self.len());
        let start = start.min(end);
        Observations {
            cols: self.cols,
            data: self.data[start * self.cols..end * self.cols].to_vec(),
        }
    }
}

fn ema(xs: &[f64], n: usize) -> Vec<f64> {
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut out = Vec::with_capacity(xs.len());
    let mut prev = match xs.first() {
        Some(&x) => x,
        None => return out,
    };
    for &x in xs {
        prev = alpha * x + (1.0 - alpha) * prev;
        out.push(prev);
    }
    out
}

fn rsi(closes: &[f64]) -> Vec<f64> {
    let mut out = vec![50.0; closes.len()];
    if closes.len() <= RSI_PERIOD {
        return out;
    }
    let (mut avg_gain, mut avg_loss) = (0.0, 0.0);
    for t in 1..=RSI_PERIOD {
        let d = closes[t] - closes[t - 1];
        avg_gain += d.max(0.0);
        avg_loss += (-d).max(0.0);
    }
    avg_gain /= RSI_PERIOD as f64;
    avg_loss /= RSI_PERIOD as f64;
    let p = RSI_PERIOD as f64;
    for t in RSI_PERIOD..closes.len() {
        if t > RSI_PERIOD {
            let d = closes[t] - closes[t - 1];
            avg_gain = (avg_gain * (p - 1.0) + d.max(0.0)) / p;
            avg_loss = (avg_loss * (p - 1.0) + (-d).max(0.0)) / p;
        }
        out[t] = if avg_loss > 0.0 {
            100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
        } else if avg_gain > 0.0 {
            100.0
        } else {
            50.0
        };
    }
    out
}

/// Computes the raw (not z-scored) feature rows for `candles`: one row per candle from index
/// [`WARMUP`] on, columns in the order [`MACD_SLOPE`], [`EMA_SPREAD`], [`RSI_ZONE`],
/// [`VOLUME_RATIO`]. Errors if a candle is invalid or there are not more than `WARMUP` candles.
pub fn compute_features(candles: &[Candle]) -> Result<Observations, RegimeError> {
    validate(candles)?;
    if candles.len() <= WARMUP {
        return Err(RegimeError::TooFew {
            what: "candles for features",
            have: candles.len(),
            need: WARMUP + 1,
        });
    }
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let volumes: Vec<f64> = candles.iter().map(|c| c.volume).collect();
    let ema9 = ema(&closes, 9);
    let ema12 = ema(&closes, 12);
    let ema21 = ema(&closes, 21);
    let ema26 = ema(&closes, 26);
    let macd: Vec<f64> = ema12.iter().zip(&ema26).map(|(a, b)| a - b).collect();
    let signal = ema(&macd, 9);
    let hist: Vec<f64> = macd.iter().zip(&signal).map(|(m, s)| m - s).collect();
    let rsi = rsi(&closes);
    let vol_ema = ema(&volumes, 20);

    let mut data = Vec::with_capacity((candles.len() - WARMUP) * N_FEATURES);
    for t in WARMUP..candles.len() {
        let volume_ratio = if vol_ema[t] > 0.0 {
            volumes[t] / vol_ema[t]
        } else {
            1.0
        };
        data.extend_from_slice(&[
            hist[t] - hist[t - 1],
            (ema9[t] - ema21[t]) / ema21[t],
            (rsi[t] - 50.0) / 50.0,
            volume_ratio,
        ]);
    }
    Observations::new(N_FEATURES, data).map_err(|e| RegimeError::Numerical(e.to_string()))
}

/// Per-column mean and standard deviation from training data, applied to later rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f64>,
    /// Column population standard deviations, with values <= [`STD_FLOOR`] replaced by 1.
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits on `obs` (population std, ddof = 0). Errors on an empty matrix.
    pub fn fit(obs: &Observations) -> Result<Self, RegimeError> {
        let n = obs.len();
        if n == 0 {
            return Err(RegimeError::TooFew {
                what: "observations to standardize",
                have: 0,
                need: 1,
            });
        }
        let cols = obs.cols();
        let mut mean = vec![0.0; cols];
        for row in obs.rows() {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; cols];
        for row in obs.rows() {
            for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (x - m) * (x - m);
            }
        }
        let std = var
            .into_iter()
            .map(|v| {
                let s = (v / n as f64).sqrt();
                if s > STD_FLOOR { s } else { 1.0 }
            })
            .collect();
        Ok(Self { mean, std })
    }

    /// Returns `(x - mean) / std` for every row. Errors if the column count differs.
    pub fn transform(&self, obs: &Observations) -> Result<Observations, RegimeError> {
        if obs.cols() != self.mean.len() {
            return Err(invalid(
                "observations",
                format!(
                    "{} columns, standardizer has {}",
                    obs.cols(),
                    self.mean.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(obs.len() * obs.cols());
        for row in obs.rows() {
            for ((x, m), s) in row.iter().zip(&self.mean).zip(&self.std) {
                data.push((x - m) / s);
            }
        }
        Observations::new(obs.cols(), data).map_err(|e| RegimeError::Numerical(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn candles(closes: &[f64], volume: f64) -> Vec<Candle> {
        closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Candle {
                open_time_ms: i as i64 * 60_000,
                open: c,
                high: c,
                low: c,
                close: c,
                volume,
            })
            .collect()
    }

    #[test]
    fn constant_prices_and_zero_volume_give_finite_neutral_features() {
        let obs = compute_features(&candles(&[0.1; 200], 0.0)).unwrap();
        assert_eq!(obs.len(), 200 - WARMUP);
        for row in obs.rows() {
            assert!(row.iter().all(|v| v.is_finite()));
            assert!(row[MACD_SLOPE].abs() < 1e-15);
            assert!(row[EMA_SPREAD].abs() < 1e-15);
            assert_eq!(row[RSI_ZONE], 0.0);
            assert_eq!(row[VOLUME_RATIO], 1.0);
        }
        let z = Standardizer::fit(&obs).unwrap();
        let t = z.transform(&obs).unwrap();
        assert!(t.rows().flatten().all(|v| v.is_finite() && v.abs() < 1e-6));
    }

    #[test]
    fn rising_prices_have_positive_spread_and_full_rsi() {
        let closes: Vec<f64> = (0..100).map(|i| 100.0 + i as f64).collect();
        let obs = compute_features(&candles(&closes, 5.0)).unwrap();
        let last = obs.row(obs.len() - 1);
        assert!(last[EMA_SPREAD] > 0.0);
        assert_eq!(last[RSI_ZONE], 1.0);
        assert!((last[VOLUME_RATIO] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn too_few_candles_is_an_error() {
        let err = compute_features(&candles(&[1.0; WARMUP], 1.0)).unwrap_err();
        assert!(
            matches!(err, RegimeError::TooFew { have: WARMUP, .. }),
            "{err}"
        );
    }

    #[test]
    fn invalid_candle_is_an_error() {
        let mut c = candles(&[1.0; 50], 1.0);
        c[7].close = f64::NAN;
        assert!(matches!(
            compute_features(&c),
            Err(RegimeError::InvalidCandle { index: 7, .. })
        ));
    }

    #[test]
    fn observations_shape_checks() {
        assert!(Observations::new(0, vec![]).is_err());
        assert!(Observations::new(2, vec![1.0, 2.0, 3.0]).is_err());
        assert!(Observations::new(1, vec![f64::INFINITY]).is_err());
        assert!(Observations::from_rows(&[vec![1.0], vec![1.0, 2.0]]).is_err());
        let o = Observations::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]).unwrap();
        assert_eq!(o.tail(2).row(0), &[3.0, 4.0]);
        assert_eq!(o.slice(1, 9).len(), 2);
    }
}
