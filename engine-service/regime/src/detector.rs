//! One timeframe's regime detector: trains the HMM on that timeframe's candles, labels the
//! states, and turns the filtered posterior into a regime reading.
//!
//! The detector has no clock: callers pass `now_ms`, and it retrains when its model is older
//! than [`TimeframeConfig::retrain_after_ms`].

use crate::candle::Candle;
use crate::error::{RegimeError, invalid};
use crate::features::{EMA_SPREAD, Observations, Standardizer, WARMUP, compute_features};
use crate::hmm::{FitConfig, FitReport, GaussianHmm, Prior};

/// Below this confidence a timeframe's bias is reported as 0.
pub const BIAS_MIN_CONFIDENCE: f64 = 0.15;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A market regime. State labels are only the first three; [`Regime::Unknown`] is what a
/// reading that is not ready carries, so that it can never be mistaken for `Ranging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Regime {
    /// The state with the lowest mean EMA spread.
    Bearish,
    /// The state with the middle mean EMA spread.
    Ranging,
    /// The state with the highest mean EMA spread.
    Bullish,
    /// No trained model yet (reading not ready).
    Unknown,
}

impl Regime {
    /// Upper-case name as used in status payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::Bearish => "BEARISH",
            Regime::Ranging => "RANGING",
            Regime::Bullish => "BULLISH",
            Regime::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Posterior probability of each labelled state.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RegimeProbs {
    /// P(BEARISH state).
    pub bearish: f64,
    /// P(RANGING state).
    pub ranging: f64,
    /// P(BULLISH state).
    pub bullish: f64,
}

/// Summary statistics derived from a posterior.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PosteriorSummary {
    /// Label of the most probable state.
    pub regime: Regime,
    /// Top posterior minus the second.
    pub confidence: f64,
    /// P_bull - P_bear clipped to [-1, 1]; 0 when confidence < [`BIAS_MIN_CONFIDENCE`].
    pub bias: f64,
    /// Shannon entropy of the posterior in nats (0 certain, ln 3 = 1.0986 uniform).
    pub entropy: f64,
    /// Probability of leaving the current state on the next step: 1 - sum(pi_i * A_ii).
    pub p_switch: f64,
    /// Posterior per label.
    pub probs: RegimeProbs,
}

/// Settings of one timeframe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimeframeConfig {
    /// Name shown in readings ("1m", "15m", "1h").
    pub name: String,
    /// Train on at most this many of the most recent candles.
    pub train_candles: usize,
    /// Not ready until trained on at least this many candles (must exceed the feature warm-up
    /// by at least 10).
    pub min_train_candles: usize,
    /// Observations in the inference window (forward pass length).
    pub window: usize,
    /// Retrain when the model is at least this old.
    pub retrain_after_ms: i64,
    /// HMM fitting settings.
    pub fit: FitConfig,
}

impl TimeframeConfig {
    fn preset(name: &str, train: usize, min: usize, window: usize) -> Self {
        Self {
            name: name.into(),
            train_candles: train,
            min_train_candles: min,
            window,
            retrain_after_ms: DAY_MS,
            fit: FitConfig::default(),
        }
    }

    /// Primary 1 m: train 4000, min 500, window 50, retrain daily.
    pub fn one_minute() -> Self {
        Self::preset("1m", 4000, 500, 50)
    }

    /// Secondary 15 m: train 1440, min 200, window 50, retrain daily.
    pub fn fifteen_minutes() -> Self {
        Self::preset("15m", 1440, 200, 50)
    }

    /// Optional tertiary 1 h: train 500, min 150, window 30, retrain daily.
    pub fn one_hour() -> Self {
        Self::preset("1h", 500, 150, 30)
    }

    fn validate(&self) -> Result<(), RegimeError> {
        if self.fit.n_states != 3 {
            return Err(invalid(
                "timeframe config",
                "the detector needs exactly 3 states",
            ));
        }
        if self.min_train_candles < WARMUP + 10 || self.train_candles < self.min_train_candles {
            return Err(invalid(
                "timeframe config",
                format!(
                    "need {} <= min_train_candles <= train_candles, got {} and {}",
                    WARMUP + 10,
                    self.min_train_candles,
                    self.train_candles
                ),
            ));
        }
        if self.window == 0 {
            return Err(invalid("timeframe config", "window must be > 0"));
        }
        Ok(())
    }
}

/// One timeframe's output.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimeframeReading {
    /// Timeframe name from the config.
    pub timeframe: String,
    /// False until a model is trained on at least `min_train_candles` candles.
    pub ready: bool,
    /// Most probable labelled state ([`Regime::Unknown`] when not ready).
    pub regime: Regime,
    /// Top posterior minus the second (0 when not ready).
    pub confidence: f64,
    /// See [`PosteriorSummary::bias`] (0 when not ready).
    pub bias: f64,
    /// See [`PosteriorSummary::entropy`].
    pub entropy: f64,
    /// See [`PosteriorSummary::p_switch`].
    pub p_switch: f64,
    /// Posterior per label.
    pub probs: RegimeProbs,
    /// Candles the current model was trained on (0 when untrained).
    pub training_depth: usize,
    /// When the current model was trained (caller's clock), if ever.
    pub last_train_ms: Option<i64>,
}

impl TimeframeReading {
    /// The reading of a timeframe without a model.
    pub fn not_ready(timeframe: &str) -> Self {
        Self {
            timeframe: timeframe.into(),
            ready: false,
            regime: Regime::Unknown,
            confidence: 0.0,
            bias: 0.0,
            entropy: 0.0,
            p_switch: 0.0,
            probs: RegimeProbs::default(),
            training_depth: 0,
            last_train_ms: None,
        }
    }
}

/// A trained HMM with its feature scaling and state labels.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    hmm: GaussianHmm,
    scaler: Standardizer,
    /// State index of BEARISH, RANGING, BULLISH.
    order: [usize; 3],
    training_depth: usize,
    report: FitReport,
}

impl TrainedModel {
    /// Fits on `candles` (all of them): features, z-scoring with their mean and std, HMM,
    /// labels by mean EMA spread.
    pub fn train(candles: &[Candle], fit: &FitConfig) -> Result<Self, RegimeError> {
        let raw = compute_features(candles)?;
        let scaler = Standardizer::fit(&raw)?;
        let z = scaler.transform(&raw)?;
        let (hmm, report) = GaussianHmm::fit(&z, fit)?;
        let order = label_order(&hmm)?;
        Ok(Self {
            hmm,
            scaler,
            order,
            training_depth: candles.len(),
            report,
        })
    }

    /// The fitted HMM (on z-scored features).
    pub fn hmm(&self) -> &GaussianHmm {
        &self.hmm
    }

    /// The feature scaling learnt in training.
    pub fn scaler(&self) -> &Standardizer {
        &self.scaler
    }

    /// How the EM run ended.
    pub fn report(&self) -> &FitReport {
        &self.report
    }

    /// Z-scored features of `candles` (one row per candle after the warm-up).
    pub fn observations(&self, candles: &[Candle]) -> Result<Observations, RegimeError> {
        self.scaler.transform(&compute_features(candles)?)
    }

    /// Summarises a filtered posterior over HMM states (length 3).
    pub fn summarize(&self, posterior: &[f64]) -> Result<PosteriorSummary, RegimeError> {
        if posterior.len() != 3 {
            return Err(invalid(
                "posterior",
                format!("length {}, expected 3", posterior.len()),
            ));
        }
        let [bear, range, bull] = self.order.map(|s| posterior[s]);
        let labelled = [
            (Regime::Bearish, bear),
            (Regime::Ranging, range),
            (Regime::Bullish, bull),
        ];
        let mut sorted = labelled;
        // Stable sort, descending: ties go to the earlier label (BEARISH, RANGING, BULLISH).
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        let confidence = sorted[0].1 - sorted[1].1;
        let bias = if confidence < BIAS_MIN_CONFIDENCE {
            0.0
        } else {
            (bull - bear).clamp(-1.0, 1.0)
        };
        let entropy = -posterior
            .iter()
            .filter(|p| **p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>();
        let a = &self.hmm.params().transmat;
        let stay: f64 = posterior.iter().enumerate().map(|(i, p)| p * a[i][i]).sum();
        Ok(PosteriorSummary {
            regime: sorted[0].0,
            confidence,
            bias,
            entropy: entropy.max(0.0),
            p_switch: (1.0 - stay).clamp(0.0, 1.0),
            probs: RegimeProbs {
                bearish: bear,
                ranging: range,
                bullish: bull,
            },
        })
    }
}

/// State indices ordered by mean EMA spread: [BEARISH, RANGING, BULLISH]. Ties keep state
/// order, so the result is deterministic.
fn label_order(hmm: &GaussianHmm) -> Result<[usize; 3], RegimeError> {
    let means = &hmm.params().means;
    if means.len() != 3 {
        return Err(invalid(
            "hmm",
            format!("{} states, expected 3", means.len()),
        ));
    }
    let mut idx = [0usize, 1, 2];
    idx.sort_by(|&a, &b| means[a][EMA_SPREAD].total_cmp(&means[b][EMA_SPREAD]));
    Ok(idx)
}

/// A detector for one timeframe. Feed it that timeframe's closed candles, oldest first.
#[derive(Debug, Clone)]
pub struct TimeframeDetector {
    config: TimeframeConfig,
    model: Option<TrainedModel>,
    last_train_ms: Option<i64>,
    /// Counts models: moves whenever `model` is replaced, so a cache of per-row
    /// emissions knows when it is stale.
    generation: u64,
}

impl TimeframeDetector {
    /// A detector with no model yet. Errors if the config is inconsistent.
    pub fn new(config: TimeframeConfig) -> Result<Self, RegimeError> {
        config.validate()?;
        Ok(Self {
            config,
            model: None,
            last_train_ms: None,
            generation: 0,
        })
    }

    /// Moves whenever the model is replaced (see [`crate::stream::StreamingInference`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The configuration.
    pub fn config(&self) -> &TimeframeConfig {
        &self.config
    }

    /// The current model, if trained.
    pub fn model(&self) -> Option<&TrainedModel> {
        self.model.as_ref()
    }

    /// True when there is no model or it is at least `retrain_after_ms` old at `now_ms`.
    pub fn needs_retrain(&self, now_ms: i64) -> bool {
        match self.last_train_ms {
            None => true,
            Some(t) => now_ms.saturating_sub(t) >= self.config.retrain_after_ms,
        }
    }

    /// Trains on the most recent `train_candles` of `candles`. Errors (keeping any previous
    /// model) if fewer than `min_train_candles` are given or the data is invalid.
    pub fn train(&mut self, candles: &[Candle], now_ms: i64) -> Result<(), RegimeError> {
        let c = &self.config;
        if candles.len() < c.min_train_candles {
            return Err(RegimeError::TooFew {
                what: "candles to train",
                have: candles.len(),
                need: c.min_train_candles,
            });
        }
        let start = candles.len().saturating_sub(c.train_candles);
        let model = TrainedModel::train(&candles[start..], &c.fit)?;
        self.model = Some(model);
        self.generation += 1;
        self.last_train_ms = Some(now_ms);
        Ok(())
    }

    /// Reads the regime at the last candle: features over the most recent `train_candles`
    /// candles (same span as training, so EMA seeding matches), forward filtering over the
    /// last `window` observations starting from the stationary distribution. Returns a
    /// not-ready reading when untrained.
    pub fn infer(&self, candles: &[Candle]) -> Result<TimeframeReading, RegimeError> {
        let Some(model) = &self.model else {
            return Ok(TimeframeReading::not_ready(&self.config.name));
        };
        let start = candles.len().saturating_sub(self.config.train_candles);
        let obs = model.observations(&candles[start..])?;
        let posterior = model
            .hmm
            .filter_last(&obs.tail(self.config.window), Prior::Stationary)?;
        let s = model.summarize(&posterior)?;
        Ok(self.reading(model, s))
    }

    /// Reads the regime from raw (not z-scored) feature rows, the last of them being the
    /// latest candle's: z-scored with the model's scaler, forward filtered over the last
    /// `window` rows from the stationary distribution, as [`TimeframeDetector::infer`] does.
    /// Used by [`crate::stream::StreamingInference`]. Not ready when untrained.
    pub fn infer_rows(&self, raw: &Observations) -> Result<TimeframeReading, RegimeError> {
        let Some(model) = &self.model else {
            return Ok(TimeframeReading::not_ready(&self.config.name));
        };
        let obs = model.scaler.transform(&raw.tail(self.config.window))?;
        let posterior = model.hmm.filter_last(&obs, Prior::Stationary)?;
        let s = model.summarize(&posterior)?;
        Ok(self.reading(model, s))
    }

    /// The scaled emissions of one raw (not z-scored) feature row under the current model,
    /// as [`TimeframeDetector::infer_rows`] computes them for each row; `None` when
    /// untrained. [`crate::stream::StreamingInference`] keeps them per row.
    pub fn emission_row(&self, raw: &[f64]) -> Result<Option<(Vec<f64>, f64)>, RegimeError> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        let sc = &model.scaler;
        if raw.len() != sc.mean.len() {
            return Err(invalid(
                "observations",
                format!("{} columns, standardizer has {}", raw.len(), sc.mean.len()),
            ));
        }
        let z: Vec<f64> = raw
            .iter()
            .zip(&sc.mean)
            .zip(&sc.std)
            .map(|((x, m), s)| (x - m) / s)
            .collect();
        model.hmm.emission_row(&z).map(Some)
    }

    /// The reading from emission rows made by [`TimeframeDetector::emission_row`] under the
    /// current model (the last being the latest candle's): the same reading as
    /// [`TimeframeDetector::infer_rows`] on the raw rows they came from.
    pub fn infer_emissions(
        &self,
        b: &[f64],
        maxes: &[f64],
    ) -> Result<TimeframeReading, RegimeError> {
        let Some(model) = &self.model else {
            return Ok(TimeframeReading::not_ready(&self.config.name));
        };
        let posterior = model
            .hmm
            .filter_last_emissions(b, maxes, Prior::Stationary)?;
        let s = model.summarize(&posterior)?;
        Ok(self.reading(model, s))
    }

    /// Retrains if due and enough candles are available, then infers. Too little history is
    /// not an error here: the reading is simply not ready (or uses the previous model).
    pub fn update(
        &mut self,
        candles: &[Candle],
        now_ms: i64,
    ) -> Result<TimeframeReading, RegimeError> {
        if self.needs_retrain(now_ms) && candles.len() >= self.config.min_train_candles {
            self.train(candles, now_ms)?;
        }
        self.infer(candles)
    }

    fn reading(&self, model: &TrainedModel, s: PosteriorSummary) -> TimeframeReading {
        TimeframeReading {
            timeframe: self.config.name.clone(),
            ready: true,
            regime: s.regime,
            confidence: s.confidence,
            bias: s.bias,
            entropy: s.entropy,
            p_switch: s.p_switch,
            probs: s.probs,
            training_depth: model.training_depth,
            last_train_ms: self.last_train_ms,
        }
    }
}

/// One row of [`analyze_candles`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegimeRow {
    /// Open time of the candle this row describes.
    pub open_time_ms: i64,
    /// Regime, confidence, bias, entropy, p_switch and posteriors at this candle.
    #[serde(flatten)]
    pub summary: PosteriorSummary,
}

/// Result of [`analyze_candles`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegimeRun {
    /// Candles the model was trained on (the most recent `train_candles`).
    pub training_depth: usize,
    /// EM iterations used and whether they converged.
    pub fit: FitReport,
    /// One row per candle after the warm-up, oldest first.
    pub rows: Vec<RegimeRow>,
}

/// Offline analysis of a candle history (what `herdctl regime --candles FILE.csv` prints):
/// trains once on the most recent `config.train_candles` candles, exactly as a live detector
/// given this history would, then computes features over the whole history and for every
/// candle after the warm-up filters the `window` observations ending at it. Rows before the end are therefore judged by a model that has
/// seen later data; this is a diagnostic view, not a backtest.
pub fn analyze_candles(
    candles: &[Candle],
    config: &TimeframeConfig,
) -> Result<RegimeRun, RegimeError> {
    config.validate()?;
    if candles.len() < config.min_train_candles {
        return Err(RegimeError::TooFew {
            what: "candles to train",
            have: candles.len(),
            need: config.min_train_candles,
        });
    }
    let start = candles.len().saturating_sub(config.train_candles);
    let model = TrainedModel::train(&candles[start..], &config.fit)?;
    let obs = model.observations(candles)?;
    let mut rows = Vec::with_capacity(obs.len());
    for (t, candle) in candles.iter().skip(WARMUP).enumerate() {
        let window = obs.slice((t + 1).saturating_sub(config.window), t + 1);
        let posterior = model.hmm.filter_last(&window, Prior::Stationary)?;
        rows.push(RegimeRow {
            open_time_ms: candle.open_time_ms,
            summary: model.summarize(&posterior)?,
        });
    }
    Ok(RegimeRun {
        training_depth: model.training_depth,
        fit: model.report.clone(),
        rows,
    })
}
