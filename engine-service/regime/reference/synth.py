"""Deterministic synthetic candles shared by make_reference.py and bench_hmmlearn.py.

Uses SplitMix64 and only +, -, *, / so that benches/fit.rs reproduces the exact same
floating-point values in Rust (no libm calls whose last bit could differ).
"""

M64 = (1 << 64) - 1
WARMUP = 34


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def next_f64(self):
        return float(self.next_u64() >> 11) * (1.0 / float(1 << 53))

    def normalish(self):
        # Irwin-Hall(12) - 6: mean 0, variance 1; summed strictly left to right.
        s = 0.0
        for _ in range(12):
            s = s + self.next_f64()
        return s - 6.0


def synth_candles(n, seed):
    """Regime-switching random walk: bullish / bearish drift or mean-reverting range,
    segments of 60-260 candles, 1-minute spacing."""
    rng = SplitMix64(seed)
    out = []
    price = 0.1
    anchor = price
    t0 = 1_700_000_000_000
    regime = 1
    left = 0
    for i in range(n):
        if left == 0:
            regime = int(rng.next_f64() * 3.0)  # 0 bear, 1 range, 2 bull
            left = 60 + int(rng.next_f64() * 200.0)
            anchor = price
        left -= 1
        if regime == 0:
            drift, vol, vmul = -0.0006, 0.0025, 1.6
        elif regime == 2:
            drift, vol, vmul = 0.0006, 0.0025, 1.6
        else:
            drift, vol, vmul = -0.02 * (price / anchor - 1.0), 0.0012, 1.0
        o = price
        c = o * (1.0 + drift + vol * rng.normalish())
        hi = max(o, c) * (1.0 + 0.001 * rng.next_f64())
        lo = min(o, c) * (1.0 - 0.001 * rng.next_f64())
        v = 1000.0 * vmul * (0.5 + rng.next_f64())
        out.append((t0 + 60_000 * i, o, hi, lo, c, v))
        price = c
    return out


def ema(xs, n):
    a = 2.0 / (n + 1.0)
    out = []
    prev = xs[0]
    for x in xs:
        prev = a * x + (1.0 - a) * prev
        out.append(prev)
    return out


def rsi(closes, period=14):
    out = [50.0] * len(closes)
    if len(closes) <= period:
        return out
    g = l = 0.0
    for t in range(1, period + 1):
        d = closes[t] - closes[t - 1]
        g += max(d, 0.0)
        l += max(-d, 0.0)
    g /= period
    l /= period
    p = float(period)
    for t in range(period, len(closes)):
        if t > period:
            d = closes[t] - closes[t - 1]
            g = (g * (p - 1.0) + max(d, 0.0)) / p
            l = (l * (p - 1.0) + max(-d, 0.0)) / p
        if l > 0.0:
            out[t] = 100.0 - 100.0 / (1.0 + g / l)
        elif g > 0.0:
            out[t] = 100.0
        else:
            out[t] = 50.0
    return out


def features(candles):
    """Same formulas as src/features.rs; one row per candle from index WARMUP."""
    closes = [c[4] for c in candles]
    vols = [c[5] for c in candles]
    e9, e12, e21, e26 = ema(closes, 9), ema(closes, 12), ema(closes, 21), ema(closes, 26)
    macd = [a - b for a, b in zip(e12, e26)]
    sig = ema(macd, 9)
    hist = [m - s for m, s in zip(macd, sig)]
    r = rsi(closes)
    ve = ema(vols, 20)
    rows = []
    for t in range(WARMUP, len(candles)):
        vr = vols[t] / ve[t] if ve[t] > 0.0 else 1.0
        rows.append([hist[t] - hist[t - 1], (e9[t] - e21[t]) / e21[t], (r[t] - 50.0) / 50.0, vr])
    return rows
