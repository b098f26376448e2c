"""Builds the hmmlearn reference data for tests/reference.rs.

Run from this directory:  python3 make_reference.py
Needs: pip install hmmlearn numpy   (generated with hmmlearn 0.3.3, numpy 2.x)

Writes (commit these; the Rust test needs no Python):
  candles.csv    1000 synthetic 1m candles (time,open,high,low,close,volume)
  features.csv   raw features from src/features.rs's formulas, one row per candle after warm-up
  zfeatures.csv  the same z-scored with their mean and population std: the HMM input
  expected.json  initial params, hmmlearn's fitted params, its log-likelihood history,
                 filtered posteriors, and a window posterior from the stationary distribution
"""

import json
import sys

import numpy as np
from hmmlearn.hmm import GaussianHMM

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
from synth import synth_candles, features  # noqa: E402

N_CANDLES = 1000
SEED = 20240601
N_ITER = 100
TOL = 1e-6
WINDOW = 50


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join(repr(x) for x in r) + "\n")


def forward_filter(log_b, log_start, log_trans):
    """Forward pass in log space, normalised per step: P(state_t | x_0..t)."""
    from scipy.special import logsumexp

    T, K = log_b.shape
    out = np.empty((T, K))
    la = log_start + log_b[0]
    la -= logsumexp(la)
    out[0] = np.exp(la)
    for t in range(1, T):
        la = logsumexp(la[:, None] + log_trans, axis=0) + log_b[t]
        la -= logsumexp(la)
        out[t] = np.exp(la)
    return out


def stationary(A):
    K = A.shape[0]
    lazy = 0.5 * A + 0.5 * np.eye(K)
    pi = np.full(K, 1.0 / K)
    for _ in range(100_000):
        nxt = pi @ lazy
        nxt /= nxt.sum()
        done = np.abs(nxt - pi).sum() < 1e-13
        pi = nxt
        if done:
            break
    return pi


def main():
    candles = synth_candles(N_CANDLES, SEED)
    write_csv("candles.csv", "time,open,high,low,close,volume", candles)
    raw = np.array(features(candles))
    write_csv("features.csv", "macd_slope,ema_spread,rsi_zone,volume_ratio", raw.tolist())
    mean = raw.mean(axis=0)
    std = raw.std(axis=0)
    X = (raw - mean) / std
    write_csv("zfeatures.csv", "macd_slope,ema_spread,rsi_zone,volume_ratio", X.tolist())

    init = {
        "startprob": [1 / 3, 1 / 3, 1 / 3],
        "transmat": [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],
        "means": [[0.0, -1.0, -0.5, 0.2], [0.0, 0.0, 0.0, -0.2], [0.0, 1.0, 0.5, 0.2]],
        "vars": [[1.0] * 4, [1.0] * 4, [1.0] * 4],
    }
    m = GaussianHMM(n_components=3, covariance_type="diag", n_iter=N_ITER, tol=TOL,
                    init_params="", params="stmc")
    m.startprob_ = np.array(init["startprob"])
    m.transmat_ = np.array(init["transmat"])
    m.means_ = np.array(init["means"])
    m.covars_ = np.array(init["vars"])
    m.fit(X)

    fitted = {
        "startprob": m.startprob_.tolist(),
        "transmat": m.transmat_.tolist(),
        "means": m.means_.tolist(),
        "vars": m._covars_.tolist(),
    }
    log_b = m._compute_log_likelihood(X)
    with np.errstate(divide="ignore"):
        post = forward_filter(log_b, np.log(m.startprob_), np.log(m.transmat_))
        pi = stationary(m.transmat_)
        window_post = forward_filter(log_b[-WINDOW:], np.log(pi), np.log(m.transmat_))[-1]

    expected = {
        "generator": {"n_candles": N_CANDLES, "seed": SEED},
        "hmmlearn": {"n_iter": N_ITER, "tol": TOL, "min_covar": m.min_covar,
                     "covars_prior": m.covars_prior, "implementation": m.implementation},
        "feature_mean": mean.tolist(),
        "feature_std": std.tolist(),
        "initial": init,
        "fitted": fitted,
        "iterations": int(m.monitor_.iter),
        "converged": bool(m.monitor_.converged),
        "log_likelihood_history": list(m.monitor_.history),
        "final_log_likelihood": float(m.score(X)),
        "filtered_posteriors": post.tolist(),
        "window": WINDOW,
        "stationary": pi.tolist(),
        "window_posterior": window_post.tolist(),
    }
    with open("expected.json", "w") as f:
        json.dump(expected, f, indent=1)
    print(f"iterations={m.monitor_.iter} converged={m.monitor_.converged} "
          f"logL={m.score(X):.6f} min_var={m._covars_.min():.4g}")
    print("means (ema_spread col):", m.means_[:, 1])
    print("transmat diag:", np.diag(m.transmat_))


if __name__ == "__main__":
    main()
