//! Gaussian hidden Markov model with diagonal covariances: Baum-Welch fitting and forward
//! filtering.
//!
//! The EM loop follows hmmlearn's `GaussianHMM(covariance_type="diag")` step for step so the
//! two agree to rounding (see `tests/reference.rs`):
//! - E-step: scaled forward-backward. Emission densities are evaluated in log space, shifted
//!   by their per-step maximum before exponentiating, and floored at 1e-300 so a step can never
//!   have zero total mass; the log-likelihood is `sum(ln c_t + max_t)`.
//! - M-step with hmmlearn's default priors: start and transition probabilities are the
//!   normalised expected counts; `mean = sum(g x) / sum(g)`;
//!   `var = (covars_prior + sum(g x^2) - 2 mean sum(g x) + mean^2 sum(g)) / max(sum(g), 1e-5)`.
//! - Loop: `for _ in 0..max_iter { E; M; record lnL of the E-step; stop if lnL - prev < tol }`.
//!
//! Two deliberate additions, which never bind on healthy data: after each M-step variances
//! are floored at `min_covar` (hmmlearn uses `min_covar` only at initialisation), and a state
//! whose expected count is exactly zero keeps its previous mean, variance and transition row
//! instead of becoming 0/0.

use crate::error::{RegimeError, invalid};
use crate::features::Observations;
use crate::fixed;
use crate::rng::SplitMix64;

pub(crate) const EMISSION_FLOOR: f64 = 1e-300;
const SUM_TOL: f64 = 1e-6;
const KMEANS_RESTARTS: usize = 10;
const KMEANS_MAX_ITER: usize = 50;

/// Parameters of a Gaussian HMM with `k` states over `d` features.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HmmParams {
    /// Initial state distribution, length `k`.
    pub startprob: Vec<f64>,
    /// Row-stochastic transition matrix, `k` rows of `k`: `transmat[i][j] = P(j | i)`.
    pub transmat: Vec<Vec<f64>>,
    /// State means, `k` rows of `d`.
    pub means: Vec<Vec<f64>>,
    /// State variances (diagonal covariances), `k` rows of `d`, all > 0.
    pub vars: Vec<Vec<f64>>,
}

/// Settings for [`GaussianHmm::fit`] and [`GaussianHmm::fit_from`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitConfig {
    /// Number of hidden states (3 for the regime detector).
    pub n_states: usize,
    /// Maximum EM iterations.
    pub max_iter: usize,
    /// Stop when the log-likelihood gains less than this over one iteration.
    pub tol: f64,
    /// Variance floor, also added to the initial variances (hmmlearn's `min_covar`).
    pub min_covar: f64,
    /// Added to the numerator of every variance update (hmmlearn's `covars_prior`).
    pub covars_prior: f64,
    /// Seed for the initialisation in [`GaussianHmm::fit`].
    pub seed: u64,
}

impl Default for FitConfig {
    /// 3 states, 100 iterations, hmmlearn's defaults `tol = 1e-2`, `min_covar = 1e-3`,
    /// `covars_prior = 1e-2`, seed 42.
    fn default() -> Self {
        Self {
            n_states: 3,
            max_iter: 100,
            tol: 1e-2,
            min_covar: 1e-3,
            covars_prior: 1e-2,
            seed: 42,
        }
    }
}

/// How an EM run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FitReport {
    /// EM iterations performed.
    pub iterations: usize,
    /// True when stopped by `tol` rather than by `max_iter`.
    pub converged: bool,
    /// Log-likelihood computed in each iteration's E-step (before that iteration's M-step),
    /// like hmmlearn's `monitor_.history`.
    pub log_likelihood_history: Vec<f64>,
}

/// The initial distribution for [`GaussianHmm::filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// The fitted start probabilities: right for a sequence that starts where training did.
    StartProb,
    /// The stationary distribution of the transition matrix: right for a window cut from the
    /// middle of a series (what the detector uses).
    Stationary,
}

/// Power iteration on the lazy chain (A + I) / 2 of `transmat` (k x k).
fn stationary_of(transmat: &[Vec<f64>], k: usize) -> Vec<f64> {
    let mut pi = vec![1.0 / k as f64; k];
    for _ in 0..100_000 {
        let mut next = vec![0.0; k];
        for (i, p) in pi.iter().enumerate() {
            for (j, n) in next.iter_mut().enumerate() {
                let lazy = 0.5 * transmat[i][j] + if i == j { 0.5 } else { 0.0 };
                *n += p * lazy;
            }
        }
        let sum: f64 = next.iter().sum();
        next.iter_mut().for_each(|n| *n /= sum);
        let delta: f64 = next.iter().zip(&pi).map(|(a, b)| (a - b).abs()).sum();
        pi = next;
        if delta < 1e-13 {
            break;
        }
    }
    pi
}

/// A validated Gaussian HMM with diagonal covariances.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianHmm {
    params: HmmParams,
    k: usize,
    d: usize,
    /// The transition matrix's stationary distribution, computed once: the
    /// parameters never change after [`GaussianHmm::new`], and the detector
    /// asks for it at every inference.
    stationary: Vec<f64>,
}

struct Stats {
    loglik: f64,
    start: Vec<f64>,
    trans: Vec<f64>,
    post: Vec<f64>,
    obs: Vec<f64>,
    obs2: Vec<f64>,
}

impl GaussianHmm {
    /// Validates shapes and values: probabilities non-negative and summing to 1 (within
    /// 1e-6), means finite, variances finite and > 0.
    pub fn new(params: HmmParams) -> Result<Self, RegimeError> {
        let k = params.startprob.len();
        let d = params.means.first().map_or(0, Vec::len);
        if k == 0 || d == 0 {
            return Err(invalid(
                "hmm params",
                "need at least one state and one feature",
            ));
        }
        let prob_ok = |row: &[f64]| {
            row.iter().all(|p| p.is_finite() && *p >= 0.0)
                && (row.iter().sum::<f64>() - 1.0).abs() <= SUM_TOL
        };
        if !prob_ok(&params.startprob) {
            return Err(invalid(
                "hmm params",
                "startprob is not a probability vector",
            ));
        }
        if params.transmat.len() != k || params.transmat.iter().any(|r| r.len() != k || !prob_ok(r))
        {
            return Err(invalid(
                "hmm params",
                format!("transmat must be {k}x{k} with rows summing to 1"),
            ));
        }
        if params.means.len() != k
            || params
                .means
                .iter()
                .any(|r| r.len() != d || r.iter().any(|v| !v.is_finite()))
        {
            return Err(invalid(
                "hmm params",
                format!("means must be {k}x{d} and finite"),
            ));
        }
        if params.vars.len() != k
            || params
                .vars
                .iter()
                .any(|r| r.len() != d || r.iter().any(|v| !v.is_finite() || *v <= 0.0))
        {
            return Err(invalid(
                "hmm params",
                format!("vars must be {k}x{d}, finite and > 0"),
            ));
        }
        let stationary = stationary_of(&params.transmat, k);
        Ok(Self {
            params,
            k,
            d,
            stationary,
        })
    }

    /// The model's parameters.
    pub fn params(&self) -> &HmmParams {
        &self.params
    }

    /// Number of hidden states.
    pub fn n_states(&self) -> usize {
        self.k
    }

    /// Fits from a seeded initialisation: k-means++ (10 restarts, deterministic from
    /// `config.seed`) for the means, the data's per-feature variance (ddof 1) plus `min_covar`
    /// for every state's variances, uniform start and transition probabilities (hmmlearn's
    /// initialisation scheme). Same data and seed give bit-identical results.
    pub fn fit(obs: &Observations, config: &FitConfig) -> Result<(Self, FitReport), RegimeError> {
        Self::fit_with(obs, config, Kernel::Fastest)
    }

    fn fit_with(
        obs: &Observations,
        config: &FitConfig,
        kernel: Kernel,
    ) -> Result<(Self, FitReport), RegimeError> {
        let init = initial_params(obs, config, kernel)?;
        Self::fit_from_with(init, obs, config, kernel)
    }

    /// Runs Baum-Welch from the given initial parameters (`config.seed` is unused).
    pub fn fit_from(
        initial: HmmParams,
        obs: &Observations,
        config: &FitConfig,
    ) -> Result<(Self, FitReport), RegimeError> {
        Self::fit_from_with(initial, obs, config, Kernel::Fastest)
    }

    fn fit_from_with(
        initial: HmmParams,
        obs: &Observations,
        config: &FitConfig,
        kernel: Kernel,
    ) -> Result<(Self, FitReport), RegimeError> {
        let mut model = Self::new(initial)?;
        model.check_obs(obs)?;
        if obs.len() < 2 {
            return Err(RegimeError::TooFew {
                what: "observations to fit",
                have: obs.len(),
                need: 2,
            });
        }
        let fixed_params = match kernel {
            Kernel::Fastest => fixed::Params::<3, 4>::from_hmm(&model.params),
            Kernel::General => None,
        };
        let (history, converged) = match (fixed_params, obs.data().as_chunks::<4>()) {
            (Some(mut p), (x, [])) if obs.cols() == 4 => {
                let run = fixed::baum_welch(&mut p, x, config)?;
                model.params = p.to_hmm();
                run
            }
            _ => model.baum_welch(obs, config)?,
        };
        if !model.is_finite() {
            return Err(RegimeError::Numerical(
                "fitted parameters are not finite".into(),
            ));
        }
        // `new` computed it for the initial parameters.
        model.stationary = stationary_of(&model.params.transmat, model.k);
        let report = FitReport {
            iterations: history.len(),
            converged,
            log_likelihood_history: history,
        };
        Ok((model, report))
    }

    /// The general EM loop (any shape): parameters updated in place; the log-likelihood
    /// history and whether `tol` stopped it.
    fn baum_welch(
        &mut self,
        obs: &Observations,
        config: &FitConfig,
    ) -> Result<(Vec<f64>, bool), RegimeError> {
        let mut history: Vec<f64> = Vec::with_capacity(config.max_iter);
        let mut converged = false;
        for _ in 0..config.max_iter {
            let stats = self.e_step(obs)?;
            self.m_step(&stats, config);
            history.push(stats.loglik);
            if let [.., prev, last] = history[..]
                && last - prev < config.tol
            {
                converged = true;
                break;
            }
        }
        Ok((history, converged))
    }

    /// Log-likelihood of `obs` under the model, starting from the start probabilities.
    pub fn log_likelihood(&self, obs: &Observations) -> Result<f64, RegimeError> {
        self.check_obs(obs)?;
        let (b, maxes) = self.emissions(obs);
        Ok(self.forward(&self.params.startprob, &b, &maxes)?.2)
    }

    /// Forward filtering: for every step t the posterior P(state | obs[0..=t]), normalised
    /// per step. Returns one row of length `k` per observation.
    pub fn filter(&self, obs: &Observations, prior: Prior) -> Result<Vec<Vec<f64>>, RegimeError> {
        self.check_obs(obs)?;
        let init = match prior {
            Prior::StartProb => self.params.startprob.clone(),
            Prior::Stationary => self.stationary(),
        };
        let (b, maxes) = self.emissions(obs);
        let (alpha, _, _) = self.forward(&init, &b, &maxes)?;
        Ok(alpha.chunks_exact(self.k).map(<[f64]>::to_vec).collect())
    }

    /// Posterior at the last step of `obs` (see [`GaussianHmm::filter`]).
    pub fn filter_last(&self, obs: &Observations, prior: Prior) -> Result<Vec<f64>, RegimeError> {
        self.filter(obs, prior)?.pop().ok_or(RegimeError::TooFew {
            what: "observations to filter",
            have: 0,
            need: 1,
        })
    }

    /// Stationary distribution of the transition matrix, by power iteration on the lazy
    /// chain (A + I) / 2, which has the same stationary distribution and always converges.
    pub fn stationary(&self) -> Vec<f64> {
        self.stationary.clone()
    }

    fn check_obs(&self, obs: &Observations) -> Result<(), RegimeError> {
        if obs.cols() != self.d {
            return Err(invalid(
                "observations",
                format!("{} columns, model has {} features", obs.cols(), self.d),
            ));
        }
        if obs.is_empty() {
            return Err(RegimeError::TooFew {
                what: "observations",
                have: 0,
                need: 1,
            });
        }
        Ok(())
    }

    fn is_finite(&self) -> bool {
        let p = &self.params;
        p.startprob.iter().all(|v| v.is_finite())
            && [&p.transmat, &p.means, &p.vars]
                .iter()
                .all(|m| m.iter().flatten().all(|v| v.is_finite()))
    }

    /// Emission probabilities scaled per step: `b[t*k + j] = max(exp(logN_j(x_t) - m_t),
    /// 1e-300)` with `m_t = max_j logN_j(x_t)`.
    fn emissions(&self, obs: &Observations) -> (Vec<f64>, Vec<f64>) {
        let k = self.k;
        let consts = self.emission_consts();
        let n = obs.len();
        let mut b = vec![0.0; n * k];
        let mut maxes = vec![0.0; n];
        for (t, x) in obs.rows().enumerate() {
            maxes[t] = self.emission_into(&consts, x, &mut b[t * k..(t + 1) * k]);
        }
        (b, maxes)
    }

    /// Each state's log-density constant: -(d ln 2pi + sum ln var) / 2.
    fn emission_consts(&self) -> Vec<f64> {
        let d = self.d;
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        self.params
            .vars
            .iter()
            .map(|v| -0.5 * (d as f64 * ln_2pi + v.iter().map(|x| x.ln()).sum::<f64>()))
            .collect()
    }

    /// One observation's scaled emissions into `row` (length k); returns the max
    /// log-density it was scaled by.
    fn emission_into(&self, consts: &[f64], x: &[f64], row: &mut [f64]) -> f64 {
        for (j, slot) in row.iter_mut().enumerate() {
            let (mu, var) = (&self.params.means[j], &self.params.vars[j]);
            let maha: f64 = x
                .iter()
                .zip(mu)
                .zip(var)
                .map(|((x, m), v)| (x - m) * (x - m) / v)
                .sum();
            *slot = consts[j] - 0.5 * maha;
        }
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for slot in row.iter_mut() {
            *slot = (*slot - m).exp().max(EMISSION_FLOOR);
        }
        m
    }

    /// The scaled emission row of one observation `x` (length d) and its scale, exactly as
    /// [`GaussianHmm::filter`] computes them for each of its rows: a caller that filters a
    /// sliding window can compute each row once ([`crate::stream::StreamingInference`]).
    pub fn emission_row(&self, x: &[f64]) -> Result<(Vec<f64>, f64), RegimeError> {
        if x.len() != self.d {
            return Err(invalid(
                "observation",
                format!("{} columns, model has {} features", x.len(), self.d),
            ));
        }
        let mut row = vec![0.0; self.k];
        let m = self.emission_into(&self.emission_consts(), x, &mut row);
        Ok((row, m))
    }

    /// The posterior at the last step, from emission rows made by
    /// [`GaussianHmm::emission_row`] (`b` flat, k per step; `maxes` one per step): the same
    /// numbers as [`GaussianHmm::filter_last`] on the observations they came from.
    pub fn filter_last_emissions(
        &self,
        b: &[f64],
        maxes: &[f64],
        prior: Prior,
    ) -> Result<Vec<f64>, RegimeError> {
        if maxes.is_empty() || b.len() != maxes.len() * self.k {
            return Err(invalid(
                "emissions",
                format!(
                    "{} values for {} steps of {} states",
                    b.len(),
                    maxes.len(),
                    self.k
                ),
            ));
        }
        let init = match prior {
            Prior::StartProb => &self.params.startprob,
            Prior::Stationary => &self.stationary,
        };
        if let (Some(init), Some(trans), (rows, [])) = (
            fixed::array::<3>(init),
            fixed::rows::<3, 3>(&self.params.transmat),
            b.as_chunks::<3>(),
        ) && let Some(last) = fixed::filter_last(&init, &trans, rows, maxes)
        {
            return last.map(|p| p.to_vec());
        }
        let (alpha, _, _) = self.forward(init, b, maxes)?;
        Ok(alpha[alpha.len() - self.k..].to_vec())
    }

    /// Scaled forward pass: normalised alphas, scale factors c_t and the log-likelihood.
    fn forward(
        &self,
        init: &[f64],
        b: &[f64],
        maxes: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>, f64), RegimeError> {
        let k = self.k;
        let n = maxes.len();
        let mut alpha = vec![0.0; n * k];
        let mut scale = vec![0.0; n];
        let mut loglik = 0.0;
        let mut pred = vec![0.0; k];
        for t in 0..n {
            if t == 0 {
                pred.copy_from_slice(init);
            } else {
                let (done, _) = alpha.split_at(t * k);
                let prev = &done[(t - 1) * k..];
                for (j, p) in pred.iter_mut().enumerate() {
                    *p = (0..k).map(|i| prev[i] * self.params.transmat[i][j]).sum();
                }
            }
            let row = &mut alpha[t * k..(t + 1) * k];
            let mut c = 0.0;
            for ((a, p), bj) in row.iter_mut().zip(&pred).zip(&b[t * k..(t + 1) * k]) {
                *a = p * bj;
                c += *a;
            }
            if !(c > 0.0 && c.is_finite()) {
                return Err(RegimeError::Numerical(format!(
                    "forward pass lost all probability mass at step {t}"
                )));
            }
            row.iter_mut().for_each(|a| *a /= c);
            scale[t] = c;
            loglik += c.ln() + maxes[t];
        }
        if !loglik.is_finite() {
            return Err(RegimeError::Numerical(
                "log-likelihood is not finite".into(),
            ));
        }
        Ok((alpha, scale, loglik))
    }

    fn e_step(&self, obs: &Observations) -> Result<Stats, RegimeError> {
        let (k, d) = (self.k, self.d);
        let a = &self.params.transmat;
        let n = obs.len();
        let (b, maxes) = self.emissions(obs);
        let (alpha, scale, loglik) = self.forward(&self.params.startprob, &b, &maxes)?;

        let mut beta = vec![1.0; n * k];
        for t in (0..n - 1).rev() {
            let (head, tail) = beta.split_at_mut((t + 1) * k);
            let next = &tail[..k];
            let bn = &b[(t + 1) * k..(t + 2) * k];
            for (i, slot) in head[t * k..].iter_mut().enumerate() {
                let s: f64 = (0..k).map(|j| a[i][j] * bn[j] * next[j]).sum();
                *slot = s / scale[t + 1];
            }
        }

        let mut stats = Stats {
            loglik,
            start: vec![0.0; k],
            trans: vec![0.0; k * k],
            post: vec![0.0; k],
            obs: vec![0.0; k * d],
            obs2: vec![0.0; k * d],
        };
        let mut gamma = vec![0.0; k];
        for (t, x) in obs.rows().enumerate() {
            let (al, be) = (&alpha[t * k..(t + 1) * k], &beta[t * k..(t + 1) * k]);
            let mut norm = 0.0;
            for ((g, a), b) in gamma.iter_mut().zip(al).zip(be) {
                *g = a * b;
                norm += *g;
            }
            if !(norm > 0.0 && norm.is_finite()) {
                return Err(RegimeError::Numerical(format!(
                    "state posteriors degenerate at step {t}"
                )));
            }
            gamma.iter_mut().for_each(|g| *g /= norm);
            if t == 0 {
                stats.start.copy_from_slice(&gamma);
            }
            for (i, g) in gamma.iter().enumerate() {
                stats.post[i] += g;
                for (f, xv) in x.iter().enumerate() {
                    stats.obs[i * d + f] += g * xv;
                    stats.obs2[i * d + f] += g * xv * xv;
                }
            }
            if t + 1 < n {
                let bn = &b[(t + 1) * k..(t + 2) * k];
                let be_next = &beta[(t + 1) * k..(t + 2) * k];
                for i in 0..k {
                    for j in 0..k {
                        stats.trans[i * k + j] +=
                            al[i] * a[i][j] * bn[j] * be_next[j] / scale[t + 1];
                    }
                }
            }
        }
        let all = [
            &stats.start,
            &stats.trans,
            &stats.post,
            &stats.obs,
            &stats.obs2,
        ];
        if all.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(RegimeError::Numerical(
                "expected sufficient statistics are not finite".into(),
            ));
        }
        Ok(stats)
    }

    fn m_step(&mut self, s: &Stats, config: &FitConfig) {
        let (k, d) = (self.k, self.d);
        let p = &mut self.params;
        let start_sum: f64 = s.start.iter().sum();
        if start_sum > 0.0 {
            p.startprob = s.start.iter().map(|x| x / start_sum).collect();
        }
        for (i, row) in p.transmat.iter_mut().enumerate() {
            let counts = &s.trans[i * k..(i + 1) * k];
            let sum: f64 = counts.iter().sum();
            if sum > 0.0 {
                *row = counts.iter().map(|c| c / sum).collect();
            }
        }
        for i in 0..k {
            let post = s.post[i];
            if post <= 0.0 {
                continue;
            }
            for f in 0..d {
                let (o, o2) = (s.obs[i * d + f], s.obs2[i * d + f]);
                let mean = o / post;
                let c_n = o2 - 2.0 * mean * o + mean * mean * post;
                let var = (config.covars_prior + c_n) / post.max(1e-5);
                p.means[i][f] = mean;
                p.vars[i][f] = var.max(config.min_covar);
            }
        }
    }
}

/// Which implementation runs: the fixed-shape kernels ([`crate::fixed`]) for 3 states of 4
/// features, or the general code; the results are the same bit for bit (tests compare them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Fastest,
    /// Only the tests ask for it, to compare.
    #[cfg_attr(not(test), allow(dead_code))]
    General,
}

fn initial_params(
    obs: &Observations,
    config: &FitConfig,
    kernel: Kernel,
) -> Result<HmmParams, RegimeError> {
    let k = config.n_states;
    if k == 0 {
        return Err(invalid("fit config", "n_states must be > 0"));
    }
    if obs.len() < k.max(2) {
        return Err(RegimeError::TooFew {
            what: "observations to fit",
            have: obs.len(),
            need: k.max(2),
        });
    }
    let d = obs.cols();
    let n = obs.len() as f64;
    let mut mean = vec![0.0; d];
    for row in obs.rows() {
        mean.iter_mut().zip(row).for_each(|(m, x)| *m += x / n);
    }
    let mut var = vec![0.0; d];
    for row in obs.rows() {
        for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
            *v += (x - m) * (x - m) / (n - 1.0);
        }
    }
    let vars_row: Vec<f64> = var.iter().map(|v| v + config.min_covar).collect();
    Ok(HmmParams {
        startprob: vec![1.0 / k as f64; k],
        transmat: vec![vec![1.0 / k as f64; k]; k],
        means: match (kernel, k, obs.data().as_chunks::<4>()) {
            (Kernel::Fastest, 3, (x, [])) if d == 4 => {
                fixed::kmeans::<3, 4>(x, config.seed, KMEANS_RESTARTS, KMEANS_MAX_ITER)
                    .iter()
                    .map(|c| c.to_vec())
                    .collect()
            }
            _ => kmeans(obs, k, config.seed, KMEANS_RESTARTS, KMEANS_MAX_ITER),
        },
        vars: vec![vars_row; k],
    })
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means with k-means++ seeding; the best of [`KMEANS_RESTARTS`] runs by inertia.
/// Centres come out sorted by their first differing coordinate so the result does not depend
/// on which restart found it first. Requires `obs.len() >= k >= 1`.
fn kmeans(
    obs: &Observations,
    k: usize,
    seed: u64,
    restarts: usize,
    max_iter: usize,
) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64::new(seed);
    let n = obs.len();
    let mut best: Option<(f64, Vec<Vec<f64>>)> = None;
    for _ in 0..restarts {
        let mut centres: Vec<Vec<f64>> = vec![obs.row(rng.below(n)).to_vec()];
        let mut dist: Vec<f64> = obs.rows().map(|x| sq_dist(x, &centres[0])).collect();
        while centres.len() < k {
            let total: f64 = dist.iter().sum();
            let pick = if total > 0.0 {
                let target = rng.next_f64() * total;
                let mut acc = 0.0;
                dist.iter()
                    .position(|w| {
                        acc += w;
                        acc > target
                    })
                    .unwrap_or(n - 1)
            } else {
                rng.below(n)
            };
            let c = obs.row(pick).to_vec();
            for (dv, x) in dist.iter_mut().zip(obs.rows()) {
                *dv = dv.min(sq_dist(x, &c));
            }
            centres.push(c);
        }
        let mut assign = vec![usize::MAX; n];
        let mut inertia = 0.0;
        for _ in 0..max_iter {
            let mut changed = false;
            inertia = 0.0;
            for (t, x) in obs.rows().enumerate() {
                let (j, dj) = centres.iter().map(|c| sq_dist(x, c)).enumerate().fold(
                    (0, f64::INFINITY),
                    |acc, (j, dj)| if dj < acc.1 { (j, dj) } else { acc },
                );
                inertia += dj;
                if assign[t] != j {
                    assign[t] = j;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
            let mut sums = vec![vec![0.0; obs.cols()]; k];
            let mut counts = vec![0usize; k];
            for (x, &j) in obs.rows().zip(&assign) {
                counts[j] += 1;
                sums[j].iter_mut().zip(x).for_each(|(s, v)| *s += v);
            }
            for ((c, s), &cnt) in centres.iter_mut().zip(sums).zip(&counts) {
                if cnt > 0 {
                    *c = s.into_iter().map(|v| v / cnt as f64).collect();
                }
            }
        }
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centres));
        }
    }
    let mut centres = best.map(|(_, c)| c).unwrap_or_default();
    centres.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    centres
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn toy_obs() -> Observations {
        // Two well separated clusters with persistence: 100 steps near -2, 100 near +2.
        let mut rng = SplitMix64::new(1);
        let rows: Vec<Vec<f64>> = (0..300)
            .map(|t| {
                let c = if (t / 50) % 2 == 0 { -2.0 } else { 2.0 };
                vec![c + rng.next_f64() - 0.5, rng.next_f64()]
            })
            .collect();
        Observations::from_rows(&rows).unwrap()
    }

    #[test]
    fn fit_is_deterministic_from_seed_and_increases_likelihood() {
        let obs = toy_obs();
        let cfg = FitConfig {
            n_states: 2,
            tol: 1e-8,
            ..FitConfig::default()
        };
        let (a, ra) = GaussianHmm::fit(&obs, &cfg).unwrap();
        let (b, rb) = GaussianHmm::fit(&obs, &cfg).unwrap();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        for w in ra.log_likelihood_history.windows(2) {
            assert!(w[1] >= w[0] - 1e-9, "EM decreased: {w:?}");
        }
        let mut means: Vec<f64> = a.params().means.iter().map(|m| m[0]).collect();
        means.sort_by(f64::total_cmp);
        assert!(
            (means[0] + 2.0).abs() < 0.1 && (means[1] - 2.0).abs() < 0.1,
            "{means:?}"
        );
        let stay = a.params().transmat[0][0];
        assert!(stay > 0.9, "{stay}");
    }

    /// Observations of the detector's shape: 4 features, 3 persistent regimes.
    fn four_feature_obs(seed: u64, n: usize) -> Observations {
        let mut rng = SplitMix64::new(seed);
        let mut state = 0.0;
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|t| {
                if t % 70 == 0 {
                    state = rng.below(3) as f64 - 1.0;
                }
                vec![
                    state + rng.next_f64() - 0.5,
                    0.5 * state + rng.next_f64(),
                    rng.next_f64() * (1.0 + state * state),
                    rng.next_f64() - 0.5 * state,
                ]
            })
            .collect();
        Observations::from_rows(&rows).unwrap()
    }

    fn param_bits(p: &HmmParams) -> Vec<u64> {
        std::iter::once(&p.startprob)
            .chain(&p.transmat)
            .chain(&p.means)
            .chain(&p.vars)
            .flatten()
            .map(|v| v.to_bits())
            .collect()
    }

    /// The fixed-shape kernels (3 states, 4 features: what the detector fits) give the
    /// general code's results bit for bit: k-means initialisation, every EM iteration's
    /// log-likelihood, the fitted parameters, and the forward filter of the readings.
    #[test]
    fn fixed_shape_kernels_equal_the_general_code_bit_for_bit() {
        let constant = Observations::new(4, vec![0.25; 4 * 300]).unwrap();
        let cases = [
            (four_feature_obs(1, 600), 1e-2, 100),
            (four_feature_obs(2, 1500), 1e-8, 100),
            (four_feature_obs(3, 4000), f64::NEG_INFINITY, 40),
            (constant, 1e-2, 100),
        ];
        for (case, (obs, tol, max_iter)) in cases.into_iter().enumerate() {
            let cfg = FitConfig {
                tol,
                max_iter,
                seed: 40 + case as u64,
                ..FitConfig::default()
            };
            let init = initial_params(&obs, &cfg, Kernel::Fastest).unwrap();
            let general_init = initial_params(&obs, &cfg, Kernel::General).unwrap();
            assert_eq!(param_bits(&init), param_bits(&general_init), "case {case}");
            let (fast, fast_report) = GaussianHmm::fit_with(&obs, &cfg, Kernel::Fastest).unwrap();
            let (general, general_report) =
                GaussianHmm::fit_with(&obs, &cfg, Kernel::General).unwrap();
            assert_eq!(
                param_bits(fast.params()),
                param_bits(general.params()),
                "case {case}"
            );
            assert_eq!(fast, general, "case {case}");
            assert_eq!(fast_report.iterations, general_report.iterations);
            assert_eq!(fast_report.converged, general_report.converged);
            let bits = |h: &[f64]| h.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&fast_report.log_likelihood_history),
                bits(&general_report.log_likelihood_history),
                "case {case}"
            );
            assert!(case == 3 || fast_report.iterations > 5, "case {case}");

            // The readings' forward filter over cached emission rows.
            let (mut b, mut maxes) = (Vec::new(), Vec::new());
            for x in obs.rows().skip(100).take(50) {
                let (row, m) = fast.emission_row(x).unwrap();
                b.extend(row);
                maxes.push(m);
            }
            for prior in [Prior::StartProb, Prior::Stationary] {
                let got = fast.filter_last_emissions(&b, &maxes, prior).unwrap();
                let init = match prior {
                    Prior::StartProb => fast.params.startprob.clone(),
                    Prior::Stationary => fast.stationary(),
                };
                let (alpha, _, _) = fast.forward(&init, &b, &maxes).unwrap();
                let want = &alpha[alpha.len() - 3..];
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "case {case}"
                );
                let window = obs.slice(100, 150);
                assert_eq!(got, fast.filter_last(&window, prior).unwrap());
            }
        }
    }

    /// k-means stopped by its iteration cap (the inertia of the last pass is the one
    /// compared) or converging: the fixed-shape and general code pick the same centres.
    #[test]
    fn fixed_shape_kmeans_equals_the_general_code_at_every_iteration_cap() {
        let obs = four_feature_obs(9, 900);
        let (x, _) = obs.data().as_chunks::<4>();
        for max_iter in [0, 1, 2, 3, 5, 8, 50] {
            for seed in [1, 2, 3] {
                let fast = fixed::kmeans::<3, 4>(x, seed, 4, max_iter);
                let general = kmeans(&obs, 3, seed, 4, max_iter);
                let fast: Vec<Vec<u64>> = fast
                    .iter()
                    .map(|c| c.iter().map(|v| v.to_bits()).collect())
                    .collect();
                let general: Vec<Vec<u64>> = general
                    .iter()
                    .map(|c| c.iter().map(|v| v.to_bits()).collect())
                    .collect();
                assert_eq!(fast, general, "max_iter {max_iter}, seed {seed}");
            }
        }
    }

    /// The filter's `Prior::Stationary` of a fitted model is the stationary distribution of
    /// the fitted transition matrix (it was once the initial matrix's, uniform).
    #[test]
    fn a_fitted_model_has_the_stationary_distribution_of_its_own_transitions() {
        for obs in [four_feature_obs(4, 1200), toy_obs()] {
            let (m, _) = GaussianHmm::fit(&obs, &FitConfig::default()).unwrap();
            let rebuilt = GaussianHmm::new(m.params().clone()).unwrap();
            assert_eq!(m.stationary(), rebuilt.stationary());
            let pi = m.stationary();
            let a = &m.params().transmat;
            for j in 0..m.n_states() {
                let next: f64 = (0..m.n_states()).map(|i| pi[i] * a[i][j]).sum();
                assert!((next - pi[j]).abs() < 1e-9, "{pi:?} {a:?}");
            }
            let uniform = 1.0 / m.n_states() as f64;
            assert!(pi.iter().any(|p| (p - uniform).abs() > 0.01), "{pi:?}");
        }
    }

    /// A scale that could overflow the log-likelihood sends the filter down the general
    /// path, which reports it as the error it always was.
    #[test]
    fn filter_with_huge_scales_keeps_the_general_error() {
        let (m, _) = GaussianHmm::fit(&four_feature_obs(5, 400), &FitConfig::default()).unwrap();
        let b = vec![1.0, 0.5, 0.25, 1.0, 0.5, 0.25];
        assert!(
            m.filter_last_emissions(&b, &[0.0, -3.0], Prior::Stationary)
                .is_ok()
        );
        for bad in [f64::NEG_INFINITY, -1.5e308] {
            let err = m
                .filter_last_emissions(&b, &[bad, bad], Prior::Stationary)
                .unwrap_err();
            assert!(matches!(err, RegimeError::Numerical(_)), "{err}");
        }
        assert!(
            m.filter_last_emissions(&b, &[-1e301, 0.0], Prior::Stationary)
                .is_ok()
        );
    }

    #[test]
    fn filtered_posteriors_are_distributions() {
        let obs = toy_obs();
        let (m, _) = GaussianHmm::fit(&obs, &FitConfig::default()).unwrap();
        for prior in [Prior::StartProb, Prior::Stationary] {
            for p in m.filter(&obs, prior).unwrap() {
                assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
            }
        }
        let pi = m.stationary();
        assert!((pi.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn invalid_params_are_rejected() {
        let good = HmmParams {
            startprob: vec![0.5, 0.5],
            transmat: vec![vec![0.9, 0.1], vec![0.2, 0.8]],
            means: vec![vec![0.0], vec![1.0]],
            vars: vec![vec![1.0], vec![1.0]],
        };
        assert!(GaussianHmm::new(good.clone()).is_ok());
        let mut bad = good.clone();
        bad.startprob = vec![0.7, 0.7];
        assert!(GaussianHmm::new(bad).is_err());
        let mut bad = good.clone();
        bad.vars[1][0] = 0.0;
        assert!(GaussianHmm::new(bad).is_err());
        let mut bad = good.clone();
        bad.transmat[0] = vec![1.0];
        assert!(GaussianHmm::new(bad).is_err());
        let m = GaussianHmm::new(good).unwrap();
        let wrong_cols = Observations::from_rows(&[vec![1.0, 2.0]]).unwrap();
        assert!(m.log_likelihood(&wrong_cols).is_err());
    }

    #[test]
    fn too_few_observations_is_an_error() {
        let obs = Observations::from_rows(&[vec![1.0], vec![2.0]]).unwrap();
        assert!(matches!(
            GaussianHmm::fit(&obs, &FitConfig::default()),
            Err(RegimeError::TooFew {
                have: 2,
                need: 3,
                ..
            })
        ));
    }

    #[test]
    fn constant_observations_fit_without_nan() {
        let obs = Observations::new(2, vec![0.0; 400]).unwrap();
        let (m, _) = GaussianHmm::fit(&obs, &FitConfig::default()).unwrap();
        assert!(m.params().vars.iter().flatten().all(|v| *v >= 1e-3));
        let p = m.filter_last(&obs, Prior::Stationary).unwrap();
        assert!(p.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn extreme_outlier_does_not_break_filtering() {
        let obs = toy_obs();
        let (m, _) = GaussianHmm::fit(
            &obs,
            &FitConfig {
                n_states: 2,
                ..FitConfig::default()
            },
        )
        .unwrap();
        let far = Observations::from_rows(&[vec![1e6, -1e6], vec![0.0, 0.0]]).unwrap();
        let p = m.filter_last(&far, Prior::Stationary).unwrap();
        assert!(p.iter().all(|x| x.is_finite()));
    }
}
