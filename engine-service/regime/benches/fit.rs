//! Times training and inference on 4,000 synthetic 1 m candles (the spec's training depth).
//!
//! Run: `cargo bench -p herd-regime --bench fit`. The candles come from the same generator as
//! `reference/synth.py` (SplitMix64, only + - * /), so `reference/bench_hmmlearn.py` times
//! hmmlearn on bit-identical data.

use std::time::{Duration, Instant};

use herd_regime::detector::TrainedModel;
use herd_regime::features::{Standardizer, compute_features};
use herd_regime::hmm::{FitConfig, GaussianHmm, HmmParams, Prior};
use herd_regime::{Candle, TimeframeConfig, TimeframeDetector};

const N_CANDLES: usize = 4000;
const SEED: u64 = 7;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn normalish(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            s += self.next_f64();
        }
        s - 6.0
    }
}

/// Port of `synth_candles` in reference/synth.py.
fn synth_candles(n: usize, seed: u64) -> Vec<Candle> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(n);
    let (mut price, mut anchor) = (0.1f64, 0.1f64);
    let (mut regime, mut left) = (1u32, 0u32);
    for i in 0..n {
        if left == 0 {
            regime = (rng.next_f64() * 3.0) as u32;
            left = 60 + (rng.next_f64() * 200.0) as u32;
            anchor = price;
        }
        left -= 1;
        let (drift, vol, vmul) = match regime {
            0 => (-0.0006, 0.0025, 1.6),
            2 => (0.0006, 0.0025, 1.6),
            _ => (-0.02 * (price / anchor - 1.0), 0.0012, 1.0),
        };
        let open = price;
        let close = open * (1.0 + drift + vol * rng.normalish());
        let high = open.max(close) * (1.0 + 0.001 * rng.next_f64());
        let low = open.min(close) * (1.0 - 0.001 * rng.next_f64());
        let volume = 1000.0 * vmul * (0.5 + rng.next_f64());
        out.push(Candle {
            open_time_ms: 1_700_000_000_000 + 60_000 * i as i64,
            open,
            high,
            low,
            close,
            volume,
        });
        price = close;
    }
    out
}

/// The initial parameters of reference/make_reference.py.
fn fixed_init() -> HmmParams {
    HmmParams {
        startprob: vec![1.0 / 3.0; 3],
        transmat: vec![
            vec![0.8, 0.1, 0.1],
            vec![0.1, 0.8, 0.1],
            vec![0.1, 0.1, 0.8],
        ],
        means: vec![
            vec![0.0, -1.0, -0.5, 0.2],
            vec![0.0, 0.0, 0.0, -0.2],
            vec![0.0, 1.0, 0.5, 0.2],
        ],
        vars: vec![vec![1.0; 4]; 3],
    }
}

fn median_of<F: FnMut()>(reps: usize, mut f: F) -> Duration {
    f(); // warm caches
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[reps / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let candles = synth_candles(N_CANDLES, SEED);
    let raw = compute_features(&candles)?;
    let z = Standardizer::fit(&raw)?.transform(&raw)?;
    let fit = FitConfig::default();
    let (model, report) = GaussianHmm::fit(&z, &fit)?;
    let config = TimeframeConfig::one_minute();
    let mut det = TimeframeDetector::new(config.clone())?;
    det.train(&candles, 0)?;
    let window = z.tail(config.window);
    let init_only = FitConfig {
        max_iter: 0,
        ..fit.clone()
    };
    let fixed_100 = FitConfig {
        tol: f64::NEG_INFINITY,
        ..fit.clone()
    };
    let (_, fixed_report) = GaussianHmm::fit_from(fixed_init(), &z, &fixed_100)?;

    let rows: Vec<(&str, usize, Duration)> = vec![
        (
            "features (4000 candles)",
            50,
            median_of(50, || {
                std::hint::black_box(compute_features(&candles).ok());
            }),
        ),
        (
            "HMM fit: k-means++ init + EM",
            20,
            median_of(20, || {
                std::hint::black_box(GaussianHmm::fit(&z, &fit).ok());
            }),
        ),
        (
            "k-means++ init only (10 restarts)",
            20,
            median_of(20, || {
                std::hint::black_box(GaussianHmm::fit(&z, &init_only).ok());
            }),
        ),
        (
            "EM from fixed init, exactly 100 iterations",
            20,
            median_of(20, || {
                std::hint::black_box(GaussianHmm::fit_from(fixed_init(), &z, &fixed_100).ok());
            }),
        ),
        (
            "train (features + z-score + fit + labels)",
            20,
            median_of(20, || {
                std::hint::black_box(TrainedModel::train(&candles, &fit).ok());
            }),
        ),
        (
            "forward filter, 50 observations",
            1000,
            median_of(1000, || {
                std::hint::black_box(model.filter_last(&window, Prior::Stationary).ok());
            }),
        ),
        (
            "inference step (features over 4000 + filter 50)",
            200,
            median_of(200, || {
                std::hint::black_box(det.infer(&candles).ok());
            }),
        ),
    ];

    println!(
        "herd-regime bench: {} candles, {} observations, EM iterations {} (converged {}), final lnL {:.3}",
        N_CANDLES,
        z.len(),
        report.iterations,
        report.converged,
        report
            .log_likelihood_history
            .last()
            .copied()
            .unwrap_or(f64::NAN)
    );
    let h = &report.log_likelihood_history;
    if let [.., a, b] = h[..] {
        println!("seeded run: last iteration gained {:.4} lnL", b - a);
    }
    println!(
        "fixed-init run: {} iterations, final lnL {:.3}",
        fixed_report.iterations,
        fixed_report
            .log_likelihood_history
            .last()
            .copied()
            .unwrap_or(f64::NAN)
    );
    println!("| step | reps | median |");
    println!("|---|---:|---:|");
    for (name, reps, t) in rows {
        println!("| {name} | {reps} | {:.3} ms |", t.as_secs_f64() * 1e3);
    }
    Ok(())
}
