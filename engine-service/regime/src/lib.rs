//! Market regime detection for Herd: a 3-state Gaussian HMM over candle features per
//! timeframe, and a consensus of the 1 m and 15 m timeframes (spec: grid-engine.md section 5).
//!
//! Pure library: no I/O, no clock, no async. Callers pass candles and `now_ms`.
//!
//! - [`features`]: MACD histogram slope, EMA spread, RSI zone, volume ratio; z-scoring.
//! - [`hmm`]: diagonal-covariance Gaussian HMM, Baum-Welch matching hmmlearn, forward filter.
//! - [`detector`]: one timeframe's detector, state labelling, readings, offline analysis.
//! - [`mod@consensus`]: the 1 m / 15 m agreement rules and the [`RegimeReading`] output.
//! - [`stream`]: incremental features and inference for long runs (the backtester).
//! - [`parse_candles_csv`]: reads `time,open,high,low,close,volume` files.

mod candle;
pub mod consensus;
pub mod detector;
mod error;
pub mod features;
mod fixed;
pub mod hmm;
mod rng;
pub mod stream;

pub use candle::{Candle, parse_candles_csv};
pub use consensus::{RegimeReading, consensus};
pub use detector::{
    Regime, RegimeProbs, RegimeRun, TimeframeConfig, TimeframeDetector, TimeframeReading,
    analyze_candles,
};
pub use error::RegimeError;
