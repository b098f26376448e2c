"""Times hmmlearn on the same 4,000 synthetic candles as benches/fit.rs.

Run from this directory:  python3 bench_hmmlearn.py
Same features (synth.py, pure-Python, not timed), same z-scoring, then
GaussianHMM(n_components=3, covariance_type="diag", n_iter=100, random_state=42) with its
default k-means initialisation and tol=1e-2, like the Rust `GaussianHmm::fit` defaults.
"""

import platform
import statistics
import sys
import time

import hmmlearn
import numpy as np
from hmmlearn.hmm import GaussianHMM

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
from synth import features, synth_candles  # noqa: E402

N_CANDLES = 4000
SEED = 7
WINDOW = 50


def median_time(reps, f):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    candles = synth_candles(N_CANDLES, SEED)
    raw = np.array(features(candles))
    X = (raw - raw.mean(axis=0)) / raw.std(axis=0)

    def fit():
        m = GaussianHMM(n_components=3, covariance_type="diag", n_iter=100, random_state=42)
        m.fit(X)
        return m

    def fit_fixed():
        m = GaussianHMM(n_components=3, covariance_type="diag", n_iter=100, tol=-np.inf,
                        init_params="", params="stmc")
        m.startprob_ = np.full(3, 1.0 / 3.0)
        m.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
        m.means_ = np.array([[0.0, -1.0, -0.5, 0.2], [0.0, 0.0, 0.0, -0.2],
                             [0.0, 1.0, 0.5, 0.2]])
        m.covars_ = np.ones((3, 4))
        m.fit(X)
        return m

    model = fit()
    fixed = fit_fixed()
    window = X[-WINDOW:]
    rows = [
        ("hmmlearn fit: k-means init + EM", 5, median_time(5, fit)),
        ("hmmlearn EM from fixed init, exactly 100 iterations", 5, median_time(5, fit_fixed)),
        ("hmmlearn predict_proba, 50 observations", 200,
         median_time(200, lambda: model.predict_proba(window)[-1])),
    ]
    print(f"hmmlearn {hmmlearn.__version__}, numpy {np.__version__}, Python "
          f"{platform.python_version()}: {N_CANDLES} candles, {len(X)} observations, "
          f"EM iterations {model.monitor_.iter} (converged {model.monitor_.converged}), "
          f"final lnL {model.monitor_.history[-1]:.3f}")
    print(f"fixed-init run: {fixed.monitor_.iter} iterations, "
          f"final lnL {fixed.monitor_.history[-1]:.3f}")
    print("| step | reps | median |")
    print("|---|---:|---:|")
    for name, reps, t in rows:
        print(f"| {name} | {reps} | {t * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
