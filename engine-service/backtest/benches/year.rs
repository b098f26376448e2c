//! A year of 1-minute candles (525,600) through the engine's strategies on
//! the paper core: wall time, peak memory, candles per second; and the
//! cost of one regime inference step.
//!
//! Run: `cargo bench --workspace --bench backtest_year` (release profile).
//! Results and the machine are in docs/benchmarks.md.

use std::time::Instant;

use herd_backtest::sim::{RegimeSetup, Setup};
use herd_backtest::{Bar, engine_strategies, run};
use herd_strategies::strategy::RegimeView;
use rust_decimal::Decimal;

/// The allocator herdctl runs backtests with (clients/herdctl/src/main.rs).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const YEAR: usize = 525_600;
const START_MS: i64 = 1_704_067_200_000;

/// DOGE-like 1 m candles: a mean-reverting walk around 0.1 with ranging and
/// trending spells (shared with the tests: `herd_backtest::synthetic`).
fn candles(n: usize) -> Vec<Bar> {
    herd_backtest::synthetic::candles(n, START_MS, 60_000, 0.1, 7, 7)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of the whole process so far (all threads, user + system), in
/// seconds: on a loaded machine it says more than the wall time.
fn cpu_secs() -> f64 {
    stat_cpu_secs("/proc/self/stat")
}

/// CPU time of the calling thread (the driver's), in seconds.
fn thread_cpu_secs() -> f64 {
    stat_cpu_secs("/proc/thread-self/stat")
}

fn stat_cpu_secs(path: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            // Fields after the command name (which ends with ')'): utime and
            // stime are the 12th and 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn setup(regime: RegimeSetup) -> Setup {
    herd_backtest::synthetic::doge_setup(regime)
}

fn strategies() -> Vec<Box<dyn herd_strategies::strategy::Strategy>> {
    let (rangers, grid) = herd_backtest::synthetic::all_on();
    engine_strategies(rangers, grid, "DOGEUSD", START_MS).unwrap_or_default()
}

/// One regime inference step for a new candle (the 1 m preset: features
/// advanced by the candle, emissions of the new row, forward pass over the
/// window) with a model trained on the first 4,000 candles; retrains are
/// not in it (they follow the live daily schedule).
fn regime_step(bars: &[Bar]) {
    use herd_regime::stream::StreamingInference;
    use herd_regime::{Candle, TimeframeConfig, TimeframeDetector};
    use rust_decimal::prelude::ToPrimitive;
    let f = |d: Decimal| d.to_f64().unwrap_or(0.0);
    let candles: Vec<Candle> = bars
        .iter()
        .map(|b| Candle {
            open_time_ms: b.open_time_ms,
            open: f(b.open),
            high: f(b.high),
            low: f(b.low),
            close: f(b.close),
            volume: f(b.volume),
        })
        .collect();
    if candles.len() < 5_000 {
        println!("regime step: needs at least 5,000 candles");
        return;
    }
    let Ok(mut detector) = TimeframeDetector::new(TimeframeConfig::one_minute()) else {
        return;
    };
    let t = Instant::now();
    if let Err(e) = detector.train(&candles[..4_000], 0) {
        println!("regime step: training failed: {e}");
        return;
    }
    println!(
        "regime training (1 m preset, 4,000 candles, the daily retrain): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if let Ok(mut d15) = TimeframeDetector::new(TimeframeConfig::fifteen_minutes()) {
        let t = Instant::now();
        let ok = d15.train(&candles[..1_440], 0).is_ok();
        println!(
            "regime training (15 m preset, 1,440 candles, the daily retrain): {:.1} ms{}",
            t.elapsed().as_secs_f64() * 1e3,
            if ok { "" } else { " (failed)" }
        );
    }
    let mut stream = StreamingInference::new(&detector);
    for c in &candles[..4_000] {
        let _ = stream.push(c);
    }
    let _ = stream.reading(&detector);
    let rest = &candles[4_000..];
    let t = Instant::now();
    let mut ready = 0usize;
    for c in rest {
        let _ = stream.push(c);
        if stream.reading(&detector).is_ok_and(|r| r.ready) {
            ready += 1;
        }
    }
    let per = t.elapsed().as_secs_f64() / rest.len() as f64;
    println!(
        "regime step (1 m preset, one candle: features + emissions + forward over the window): {:.2} us ({ready} of {} readings ready)",
        per * 1e6,
        rest.len()
    );
}

/// One run over `bars` with `regime`, and its timing line: wall time, CPU
/// of the process and of the driver's thread, candles per second.
fn timed(bars: &[Bar], regime: RegimeSetup) -> Option<(herd_backtest::Outcome, String)> {
    let (t, c, tc) = (Instant::now(), cpu_secs(), thread_cpu_secs());
    let out = run(&setup(regime), strategies(), bars, 60_000, &mut ()).ok()?;
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let driver = thread_cpu_secs() - tc;
    Some((
        out,
        format!(
            "{secs:.2} s (CPU {cpu:.1} s, driver's thread {driver:.1} s), {:.0} candles/s",
            bars.len() as f64 / secs
        ),
    ))
}

/// The fixed run again, its time split between the strategies, the paper
/// core, the simulated gateway and the driver's bookkeeping (built with
/// `--features timing`: every switch of part reads the clock once, which
/// the split's own overhead line measures).
fn split(bars: &[Bar], regime: RegimeSetup) {
    use herd_backtest::timing::{self, Part};
    let setup = setup(regime);
    let strategies = strategies();
    let t = Instant::now();
    timing::start();
    let ran = run(&setup, strategies, bars, 60_000, &mut ());
    let s = timing::stop();
    let wall = t.elapsed().as_secs_f64();
    if ran.is_err() {
        println!("split: the run failed");
        return;
    }
    // What one switch costs: the clock read and the bookkeeping, measured
    // on their own.
    let probe = 1_000_000u32;
    timing::start();
    let t = Instant::now();
    for _ in 0..probe {
        // Entered and left at once: two switches.
        let _left_at_once = timing::enter(Part::Gateway);
    }
    let per_pair = t.elapsed().as_secs_f64() / f64::from(probe);
    let _ = timing::stop();
    let n = bars.len() as f64;
    let secs = |p: Part| s.of(p) as f64 / 1e9;
    let overhead = per_pair / 2.0 * s.switches as f64;
    println!(
        "split of the fixed run (timing on: {wall:.2} s, {} switches of part, about {:.0} ns each, so about {overhead:.2} s of the run is the timing itself, spread over the parts):",
        s.switches,
        per_pair / 2.0 * 1e9,
    );
    for (label, part) in [
        (
            "strategies (on_tick, on_order, wake, owns, restore, status)",
            Part::Strategies,
        ),
        (
            "paper core (place, cancel, trade_through, touch, pair_funds, forget_closed)",
            Part::PaperCore,
        ),
        (
            "simulated gateway (the poll's diffs, follow)",
            Part::Gateway,
        ),
        (
            "driver bookkeeping (equity, outcome records, skipping, views)",
            Part::Driver,
        ),
    ] {
        let x = secs(part);
        println!(
            "  {label}: {x:.3} s ({:.1} %, {:.0} ns per candle, {:.0} candles/s alone)",
            x / (s.total() as f64 / 1e9) * 100.0,
            x / n * 1e9,
            n / x
        );
    }
    let venue = secs(Part::PaperCore) + secs(Part::Gateway);
    println!(
        "  venue (paper core + gateway): {venue:.3} s, {:.0} candles/s alone; whole driver {:.0} candles/s with timing on",
        n / venue,
        n / (s.total() as f64 / 1e9)
    );
}

/// The strategy step alone: the fixed run recorded (every call the driver
/// made into the strategies, with its answer), replayed once on fresh
/// strategies comparing every answer, then replayed three times more
/// (`HERD_BENCH_REPLAYS`: that many, for profiling), timed, without
/// comparing. Nothing of the venue, the driver or a
/// clock runs between the calls; the strategies see the inputs the run
/// gave them and take the same decisions.
fn step(bars: &[Bar], regime: RegimeSetup) {
    use herd_backtest::replay;
    let replays: usize = std::env::var("HERD_BENCH_REPLAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (wrapped, log) = replay::record(strategies());
    if run(&setup(regime), wrapped, bars, 60_000, &mut ()).is_err() {
        println!("strategy step: the recorded run failed");
        return;
    }
    let log = log.take();
    let (ticks, quiet, updates) = log
        .calls
        .iter()
        .fold((0, 0, 0), |(t, q, u), (_, c)| match c {
            replay::Call::Tick(..) => (t + 1, q, u),
            replay::Call::QuietTick(..) => (t, q + 1, u),
            replay::Call::Order(..) => (t, q, u + 1),
            _ => (t, q, u),
        });
    if let Err(m) = replay::replay(&mut strategies(), &log, true) {
        println!("strategy step: the replay differs from the run at {m}");
        return;
    }
    let mut best = f64::INFINITY;
    let mut all = Vec::new();
    for _ in 0..replays {
        let mut fresh = strategies();
        let (t, c) = (Instant::now(), thread_cpu_secs());
        let made = timed_replay(&mut fresh, &log);
        let (secs, cpu) = (t.elapsed().as_secs_f64(), thread_cpu_secs() - c);
        drop(fresh);
        if made.is_err() {
            return;
        }
        best = best.min(secs);
        all.push(format!("{secs:.3} s (CPU {cpu:.2} s)"));
    }
    // The replay's own cost: the same calls made on strategies that do
    // nothing (the loop, the views and updates written, the answers
    // dropped).
    let mut floor = f64::INFINITY;
    for _ in 0..replays.max(1) {
        let mut idle: Vec<Box<dyn herd_strategies::strategy::Strategy>> =
            (0..2).map(|_| Box::new(Idle) as _).collect();
        let t = Instant::now();
        let _ = replay::replay(&mut idle, &log, false);
        floor = floor.min(t.elapsed().as_secs_f64());
    }
    let n = bars.len() as f64;
    println!(
        "replay alone (the same calls on strategies that do nothing): best {floor:.3} s, {:.0} ns per candle; the strategies net of it: {:.0} ns per candle, {:.0} candles/s",
        floor / n * 1e9,
        (best - floor) / n * 1e9,
        n / (best - floor)
    );
    println!(
        "strategy step (the fixed run's {} calls replayed: {ticks} ticks, {quiet} skipped ticks replayed, {updates} order updates; every answer equal to the run's): best {best:.3} s, {:.0} ns per candle, {:.0} candles/s on one core; replays {}",
        log.len(),
        best / n * 1e9,
        n / best,
        all.join(", ")
    );
}

/// One timed replay, apart so that a profiler can collect it alone
/// (`valgrind --tool=callgrind --collect-atstart=no
/// --toggle-collect='backtest_year::timed_replay'`: no recording, no
/// comparing pass, no idle pass).
#[inline(never)]
fn timed_replay(
    strategies: &mut [Box<dyn herd_strategies::strategy::Strategy>],
    log: &herd_backtest::replay::Calls,
) -> Result<usize, herd_backtest::replay::Mismatch> {
    herd_backtest::replay::replay(strategies, log, false)
}

/// A strategy that does nothing (the replay's own cost).
struct Idle;

impl herd_strategies::strategy::Strategy for Idle {
    fn name(&self) -> &str {
        "idle"
    }

    fn owns(&self, _: &str) -> bool {
        false
    }

    fn on_tick(
        &mut self,
        _: &herd_strategies::strategy::MarketView,
        _: i64,
    ) -> Vec<herd_strategies::strategy::Action> {
        Vec::new()
    }

    fn on_order(
        &mut self,
        _: &herd_strategies::strategy::OrderUpdate,
        _: i64,
    ) -> Vec<herd_strategies::strategy::Action> {
        Vec::new()
    }

    fn status(&self, _: i64) -> herd_strategies::strategy::StatusBlock {
        herd_strategies::strategy::StatusBlock::Detail(serde_json::Value::Null)
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// `bars` in Kraken's OHLCVT layout: time in seconds, open, high, low,
/// close, volume, trades (a placeholder 12); no header.
fn write_kraken_csv(bars: &[Bar], path: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for b in bars {
        writeln!(
            w,
            "{},{},{},{},{},{},12",
            b.open_time_ms / 1000,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume
        )?;
    }
    w.flush()
}

fn main() {
    let n = std::env::var("HERD_BENCH_CANDLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(YEAR);
    let t = Instant::now();
    let bars = candles(n);
    println!(
        "generated {n} candles in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // HERD_BENCH_WRITE_CSV=FILE writes these candles as a Kraken OHLCVT file
    // (seconds, no header) and stops: the input of the `herdctl backtest`
    // measurement in docs/benchmarks.md.
    if let Ok(path) = std::env::var("HERD_BENCH_WRITE_CSV") {
        if let Err(e) = write_kraken_csv(&bars, &path) {
            eprintln!("HERD_BENCH_WRITE_CSV={path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {} candles to {path}", bars.len());
        return;
    }

    // HERD_BENCH_RUNS=fixed, =step, =hmm, =hmm-inline or =regime runs only that one
    // (for profiling).
    let runs = std::env::var("HERD_BENCH_RUNS").unwrap_or_default();
    let want = |name: &str| runs.is_empty() || runs == name;

    // The strategy step alone: fixed RANGING regime, no detector.
    let ranging = RegimeSetup::Fixed(RegimeView {
        regime: "RANGING".into(),
        ready: true,
        confidence: 1.0,
        bias: 0.0,
    });
    if want("fixed")
        && let Some((o, timing)) = timed(&bars, ranging.clone())
    {
        println!(
            "strategies only (fixed regime): {timing}, {} ticks, {} strategy ticks skipped, {} fills, {} orders",
            o.ticks,
            o.ticks_skipped,
            o.fills.len(),
            o.orders_placed
        );
    }
    if want("fixed") && herd_backtest::timing::ENABLED {
        split(&bars, ranging.clone());
    }
    // Everything: grid + rangers + churner rules + HMM consensus (refresh
    // every simulated minute, daily retrains); then the same on the
    // driver's thread (no worker thread ahead of it).
    let hmm_runs = [
        (
            "hmm",
            "with HMM consensus",
            RegimeSetup::Hmm { refresh_ms: 60_000 },
        ),
        (
            "hmm-inline",
            "with HMM consensus on the driver's thread",
            RegimeSetup::HmmInline { refresh_ms: 60_000 },
        ),
    ];
    for (name, label, regime) in hmm_runs {
        if want(name)
            && let Some((o, timing)) = timed(&bars, regime)
        {
            println!(
                "{label}: {timing}, {} fills, regime time {:?}",
                o.fills.len(),
                o.regime_ms
            );
        }
    }
    if want("regime") || runs.is_empty() {
        regime_step(&bars);
    }
    println!("peak memory (VmHWM): {:.0} MB", peak_rss_mb());
    // Last: the recorded calls it holds (about 500 MB) are not a run's.
    if want("step") {
        step(&bars, ranging);
        println!(
            "peak memory with the step's recorded calls (VmHWM): {:.0} MB",
            peak_rss_mb()
        );
    }
}
