//! Baum-Welch, k-means and the forward filter for a fixed number of states `K` and features
//! `D` (const generics). The detector's shape (3 states, 4 features) runs here instead of the
//! general code in [`crate::hmm`], which stays for every other shape.
//!
//! The arithmetic is the general code's, operation for operation and in the same order, so
//! the results are bit-identical (`hmm::tests` compares the two paths on every output). What
//! makes it faster:
//! - loops over states and features have known lengths: unrolled, no bounds checks, no
//!   `Vec<Vec<f64>>` indirection;
//! - the E-step's buffers are allocated once per fit, not once per EM iteration;
//! - a state whose log-density is the step's maximum has the scaled emission `exp(0) = 1`
//!   exactly, so that exp is skipped (one of the three per step);
//! - the forward filter used for readings does not compute the log-likelihood it never
//!   returns (one `ln` per step) when the result is known to be finite.

// Index loops over states and features read like the formulas they implement.
#![allow(clippy::needless_range_loop)]

use crate::error::RegimeError;
use crate::hmm::{EMISSION_FLOOR, FitConfig, HmmParams};
use crate::rng::SplitMix64;

/// Model parameters as arrays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params<const K: usize, const D: usize> {
    pub(crate) start: [f64; K],
    pub(crate) trans: [[f64; K]; K],
    pub(crate) means: [[f64; D]; K],
    pub(crate) vars: [[f64; D]; K],
}

pub(crate) fn array<const N: usize>(v: &[f64]) -> Option<[f64; N]> {
    v.try_into().ok()
}

pub(crate) fn rows<const R: usize, const C: usize>(v: &[Vec<f64>]) -> Option<[[f64; C]; R]> {
    if v.len() != R {
        return None;
    }
    let mut out = [[0.0; C]; R];
    for (o, r) in out.iter_mut().zip(v) {
        *o = array(r)?;
    }
    Some(out)
}

impl<const K: usize, const D: usize> Params<K, D> {
    /// `None` when the shapes are not `K` states of `D` features.
    pub(crate) fn from_hmm(p: &HmmParams) -> Option<Self> {
        Some(Self {
            start: array(&p.startprob)?,
            trans: rows(&p.transmat)?,
            means: rows(&p.means)?,
            vars: rows(&p.vars)?,
        })
    }

    pub(crate) fn to_hmm(self) -> HmmParams {
        HmmParams {
            startprob: self.start.to_vec(),
            transmat: self.trans.iter().map(|r| r.to_vec()).collect(),
            means: self.means.iter().map(|r| r.to_vec()).collect(),
            vars: self.vars.iter().map(|r| r.to_vec()).collect(),
        }
    }
}

/// Expected sufficient statistics of one E-step.
struct Stats<const K: usize, const D: usize> {
    loglik: f64,
    start: [f64; K],
    trans: [[f64; K]; K],
    post: [f64; K],
    obs: [[f64; D]; K],
    obs2: [[f64; D]; K],
}

/// The E-step's per-step arrays, reused over the iterations of one fit.
struct Buffers<const K: usize> {
    b: Vec<[f64; K]>,
    maxes: Vec<f64>,
    alpha: Vec<[f64; K]>,
    scale: Vec<f64>,
    beta: Vec<[f64; K]>,
}

/// Each state's log-density constant: -(d ln 2pi + sum ln var) / 2.
fn emission_consts<const K: usize, const D: usize>(vars: &[[f64; D]; K]) -> [f64; K] {
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    vars.map(|v| {
        let mut s = -0.0;
        for x in v {
            s += x.ln();
        }
        -0.5 * (D as f64 * ln_2pi + s)
    })
}

/// One observation's scaled emissions into `row`; returns the max log-density.
#[inline(always)]
fn emission_row<const K: usize, const D: usize>(
    consts: &[f64; K],
    p: &Params<K, D>,
    x: &[f64; D],
    row: &mut [f64; K],
) -> f64 {
    for j in 0..K {
        let (mu, var) = (&p.means[j], &p.vars[j]);
        let mut maha = -0.0;
        for f in 0..D {
            maha += (x[f] - mu[f]) * (x[f] - mu[f]) / var[f];
        }
        row[j] = consts[j] - 0.5 * maha;
    }
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for slot in row.iter_mut() {
        let z = *slot - m;
        // exp(0) is exactly 1 (and above the floor): the most likely state's emission.
        *slot = if z == 0.0 {
            1.0
        } else {
            z.exp().max(EMISSION_FLOOR)
        };
    }
    m
}

/// `pred[j] = sum_i prev[i] * trans[i][j]`.
#[inline(always)]
fn predict<const K: usize>(prev: &[f64; K], trans: &[[f64; K]; K]) -> [f64; K] {
    let mut pred = [0.0; K];
    for (j, p) in pred.iter_mut().enumerate() {
        let mut s = -0.0;
        for i in 0..K {
            s += prev[i] * trans[i][j];
        }
        *p = s;
    }
    pred
}

/// One normalised forward step: `alpha = pred * b / c`; returns `c`, or an error when the
/// step lost all probability mass.
#[inline(always)]
fn forward_step<const K: usize>(
    pred: &[f64; K],
    b: &[f64; K],
    t: usize,
) -> Result<([f64; K], f64), RegimeError> {
    let mut row = [0.0; K];
    let mut c = 0.0;
    for j in 0..K {
        row[j] = pred[j] * b[j];
        c += row[j];
    }
    if !(c > 0.0 && c.is_finite()) {
        return Err(RegimeError::Numerical(format!(
            "forward pass lost all probability mass at step {t}"
        )));
    }
    for a in row.iter_mut() {
        *a /= c;
    }
    Ok((row, c))
}

impl<const K: usize> Buffers<K> {
    fn new(n: usize) -> Self {
        Self {
            b: vec![[0.0; K]; n],
            maxes: vec![0.0; n],
            alpha: vec![[0.0; K]; n],
            scale: vec![0.0; n],
            beta: vec![[0.0; K]; n],
        }
    }

    fn e_step<const D: usize>(
        &mut self,
        p: &Params<K, D>,
        x: &[[f64; D]],
    ) -> Result<Stats<K, D>, RegimeError> {
        let n = x.len();
        let a = &p.trans;
        let consts = emission_consts(&p.vars);
        for ((xt, bt), mt) in x.iter().zip(&mut self.b).zip(&mut self.maxes) {
            *mt = emission_row(&consts, p, xt, bt);
        }

        // Forward.
        let mut loglik = 0.0;
        let mut prev = p.start;
        for t in 0..n {
            let pred = if t == 0 { prev } else { predict(&prev, a) };
            let (row, c) = forward_step(&pred, &self.b[t], t)?;
            self.alpha[t] = row;
            self.scale[t] = c;
            loglik += c.ln() + self.maxes[t];
            prev = row;
        }
        if !loglik.is_finite() {
            return Err(RegimeError::Numerical(
                "log-likelihood is not finite".into(),
            ));
        }

        // Backward.
        self.beta[n - 1] = [1.0; K];
        for t in (0..n - 1).rev() {
            let next = self.beta[t + 1];
            let bn = &self.b[t + 1];
            let s_next = self.scale[t + 1];
            let mut row = [0.0; K];
            for (i, slot) in row.iter_mut().enumerate() {
                let mut s = -0.0;
                for j in 0..K {
                    s += a[i][j] * bn[j] * next[j];
                }
                *slot = s / s_next;
            }
            self.beta[t] = row;
        }

        // Posteriors and expected counts, in time order.
        let mut st = Stats {
            loglik,
            start: [0.0; K],
            trans: [[0.0; K]; K],
            post: [0.0; K],
            obs: [[0.0; D]; K],
            obs2: [[0.0; D]; K],
        };
        for t in 0..n {
            let (al, be) = (&self.alpha[t], &self.beta[t]);
            let mut gamma = [0.0; K];
            let mut norm = 0.0;
            for i in 0..K {
                gamma[i] = al[i] * be[i];
                norm += gamma[i];
            }
            if !(norm > 0.0 && norm.is_finite()) {
                return Err(RegimeError::Numerical(format!(
                    "state posteriors degenerate at step {t}"
                )));
            }
            for g in gamma.iter_mut() {
                *g /= norm;
            }
            if t == 0 {
                st.start = gamma;
            }
            let xt = &x[t];
            for i in 0..K {
                let g = gamma[i];
                st.post[i] += g;
                for f in 0..D {
                    st.obs[i][f] += g * xt[f];
                    st.obs2[i][f] += g * xt[f] * xt[f];
                }
            }
            if t + 1 < n {
                let bn = &self.b[t + 1];
                let be_next = &self.beta[t + 1];
                let s_next = self.scale[t + 1];
                for i in 0..K {
                    for j in 0..K {
                        st.trans[i][j] += al[i] * a[i][j] * bn[j] * be_next[j] / s_next;
                    }
                }
            }
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !(finite(&st.start)
            && st.trans.iter().all(|r| finite(r))
            && finite(&st.post)
            && st.obs.iter().all(|r| finite(r))
            && st.obs2.iter().all(|r| finite(r)))
        {
            return Err(RegimeError::Numerical(
                "expected sufficient statistics are not finite".into(),
            ));
        }
        Ok(st)
    }
}

fn m_step<const K: usize, const D: usize>(
    p: &mut Params<K, D>,
    s: &Stats<K, D>,
    config: &FitConfig,
) {
    let mut start_sum = -0.0;
    for x in s.start {
        start_sum += x;
    }
    if start_sum > 0.0 {
        p.start = s.start.map(|x| x / start_sum);
    }
    for (row, counts) in p.trans.iter_mut().zip(&s.trans) {
        let mut sum = -0.0;
        for c in counts {
            sum += c;
        }
        if sum > 0.0 {
            *row = counts.map(|c| c / sum);
        }
    }
    for i in 0..K {
        let post = s.post[i];
        if post <= 0.0 {
            continue;
        }
        for f in 0..D {
            let (o, o2) = (s.obs[i][f], s.obs2[i][f]);
            let mean = o / post;
            let c_n = o2 - 2.0 * mean * o + mean * mean * post;
            let var = (config.covars_prior + c_n) / post.max(1e-5);
            p.means[i][f] = mean;
            p.vars[i][f] = var.max(config.min_covar);
        }
    }
}

/// The EM loop of [`crate::hmm::GaussianHmm::fit_from`] on `p` (updated in place); returns
/// the log-likelihood history and whether `tol` stopped it. Requires `x.len() >= 2`.
pub(crate) fn baum_welch<const K: usize, const D: usize>(
    p: &mut Params<K, D>,
    x: &[[f64; D]],
    config: &FitConfig,
) -> Result<(Vec<f64>, bool), RegimeError> {
    let mut buffers = Buffers::<K>::new(x.len());
    let mut history: Vec<f64> = Vec::with_capacity(config.max_iter);
    let mut converged = false;
    for _ in 0..config.max_iter {
        let stats = buffers.e_step(p, x)?;
        m_step(p, &stats, config);
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

/// The posterior at the last step of a forward pass from `init` over scaled emission rows
/// `b` (`K` per step) with scales `maxes`, as the general forward pass computes it; `None`
/// when the general pass would need its log-likelihood to decide (a scale that is not
/// finite or so large that the sum could overflow), so the caller runs that instead.
pub(crate) fn filter_last<const K: usize>(
    init: &[f64; K],
    trans: &[[f64; K]; K],
    b: &[[f64; K]],
    maxes: &[f64],
) -> Option<Result<[f64; K], RegimeError>> {
    // With every scale below 1e300 in size and every c_t a positive finite number (checked
    // step by step), sum(ln c_t + max_t) over fewer than 1e6 steps is finite.
    if b.len() != maxes.len() || b.len() >= 1_000_000 || !maxes.iter().all(|m| m.abs() < 1e300) {
        return None;
    }
    let mut prev = *init;
    for (t, bt) in b.iter().enumerate() {
        let pred = if t == 0 { prev } else { predict(&prev, trans) };
        match forward_step(&pred, bt, t) {
            Ok((row, _)) => prev = row,
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(prev))
}

fn sq_dist<const D: usize>(a: &[f64; D], b: &[f64; D]) -> f64 {
    let mut s = -0.0;
    for f in 0..D {
        s += (a[f] - b[f]) * (a[f] - b[f]);
    }
    s
}

/// The general `kmeans` of [`crate::hmm`] (k-means++ seeding, best of `restarts` runs of at
/// most `max_iter` Lloyd iterations by inertia, centres sorted by their first differing
/// coordinate) for `K` centres of `D` features. Requires `x.len() >= K >= 1`.
pub(crate) fn kmeans<const K: usize, const D: usize>(
    x: &[[f64; D]],
    seed: u64,
    restarts: usize,
    max_iter: usize,
) -> [[f64; D]; K] {
    let mut rng = SplitMix64::new(seed);
    let n = x.len();
    let mut best: Option<(f64, [[f64; D]; K])> = None;
    let mut dist = vec![0.0; n];
    let mut assign = vec![usize::MAX; n];
    for _ in 0..restarts {
        let mut centres = [[0.0; D]; K];
        centres[0] = x[rng.below(n)];
        for (dv, xt) in dist.iter_mut().zip(x) {
            *dv = sq_dist(xt, &centres[0]);
        }
        for c in 1..K {
            let mut total = -0.0;
            for w in &dist {
                total += w;
            }
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
            centres[c] = x[pick];
            // The distances to the nearest centre only matter for the next pick.
            if c + 1 < K {
                for (dv, xt) in dist.iter_mut().zip(x) {
                    *dv = dv.min(sq_dist(xt, &centres[c]));
                }
            }
        }
        assign.fill(usize::MAX);
        let mut inertia = 0.0;
        for iteration in 0..max_iter {
            let mut changed = false;
            // Each point's distance to its centre is kept (`dist` is free again) and
            // summed, in the same order, only for the iteration that ends the loop: the
            // only inertia that is read. The pass itself then carries no dependency from
            // one point to the next.
            for ((xt, at), dt) in x.iter().zip(assign.iter_mut()).zip(dist.iter_mut()) {
                let (mut j, mut dj) = (0, f64::INFINITY);
                for (c, centre) in centres.iter().enumerate() {
                    let d = sq_dist(xt, centre);
                    if d < dj {
                        (j, dj) = (c, d);
                    }
                }
                *dt = dj;
                if *at != j {
                    *at = j;
                    changed = true;
                }
            }
            if !changed || iteration + 1 == max_iter {
                inertia = 0.0;
                for d in &dist {
                    inertia += d;
                }
            }
            if !changed {
                break;
            }
            let mut sums = [[0.0; D]; K];
            let mut counts = [0usize; K];
            for (xt, &j) in x.iter().zip(&assign) {
                counts[j] += 1;
                for f in 0..D {
                    sums[j][f] += xt[f];
                }
            }
            for ((c, s), &cnt) in centres.iter_mut().zip(sums).zip(&counts) {
                if cnt > 0 {
                    *c = s.map(|v| v / cnt as f64);
                }
            }
        }
        if best.as_ref().is_none_or(|(b, _)| inertia < *b) {
            best = Some((inertia, centres));
        }
    }
    let mut centres = best.map_or([[0.0; D]; K], |(_, c)| c);
    centres.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    centres
}
