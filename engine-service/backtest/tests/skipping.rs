#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Skipping the ticks a strategy's wake covers changes nothing: the same
//! run with skipping on and off gives byte-identical outcomes (fills,
//! orders, journal, equity, funding, final status: everything serialized),
//! over the engine's grid (with the churner rules on), rangers and
//! self-healing, on synthetic candles with ranging and trending spells:
//! a fixed RANGING regime, regime changes (the grid following the regime),
//! self-healing on a short clock with partial fills and a daily loss
//! limit, and a perpetual with funding.

use herd_backtest::sim::{FundingSetup, RegimeSetup, Setup, run_with_skipping};
use herd_backtest::{Bar, FundingRow, Outcome, engine_strategies, synthetic};
use herd_paper::PaperInstrument;
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::{InstrumentKind, RegimeView};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const START_MS: i64 = 1_704_067_200_000;
const MINUTE_MS: i64 = 60_000;
const CANDLES: usize = 3_000;

fn view(regime: &str) -> RegimeView {
    RegimeView {
        regime: regime.into(),
        ready: true,
        confidence: 0.9,
        bias: 0.0,
    }
}

fn setup(regime: RegimeSetup) -> Setup {
    herd_backtest::synthetic::doge_setup(regime)
}

fn configs() -> (RangerConfig, GridConfig) {
    synthetic::all_on()
}

fn bars() -> Vec<Bar> {
    synthetic::candles(CANDLES, START_MS, MINUTE_MS, 0.1, 7, 7)
}

/// The run with skipping on and off; asserts the outcomes are identical
/// and returns them (skipping on first).
fn both(
    setup: &Setup,
    rangers: &RangerConfig,
    grid: &GridConfig,
    bars: &[Bar],
) -> (Outcome, Outcome) {
    let symbol = setup.instrument.symbol.clone();
    let go = |skip: bool| {
        let strategies =
            engine_strategies(rangers.clone(), grid.clone(), &symbol, START_MS).unwrap();
        run_with_skipping(setup, strategies, bars, MINUTE_MS, &mut (), &mut (), skip).unwrap()
    };
    let on = go(true);
    let off = go(false);
    assert_eq!(off.ticks_skipped, 0);
    assert_eq!(on.ticks, off.ticks);
    let (a, b) = (
        serde_json::to_string(&on).unwrap(),
        serde_json::to_string(&off).unwrap(),
    );
    if a != b {
        // Say where they part, not 10 MB of JSON.
        let at = a
            .bytes()
            .zip(b.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        let from = at.saturating_sub(300);
        panic!(
            "skipping changed the outcome at byte {at}:\n  on:  {}\n  off: {}",
            &a[from..(at + 300).min(a.len())],
            &b[from..(at + 300).min(b.len())]
        );
    }
    eprintln!(
        "skipped {} of {} strategy ticks, {} fills",
        on.ticks_skipped,
        2 * on.ticks,
        on.fills.len()
    );
    assert!(on.ticks_skipped > 0, "nothing was skipped");
    (on, off)
}

#[test]
fn fixed_ranging_regime_gives_the_same_outcome() {
    let (rangers, grid) = configs();
    let (on, _) = both(
        &setup(RegimeSetup::Fixed(view("RANGING"))),
        &rangers,
        &grid,
        &bars(),
    );
    assert!(on.fills.len() > 20, "{} fills", on.fills.len());
    // Most ticks of the two strategies are skipped.
    assert!(
        on.ticks_skipped > on.ticks,
        "{} of {}",
        on.ticks_skipped,
        2 * on.ticks
    );
}

#[test]
fn regime_changes_give_the_same_outcome() {
    let (rangers, mut grid) = configs();
    grid.mode_from_regime = true;
    let t = |candle: i64| START_MS + candle * MINUTE_MS;
    let schedule = vec![
        (t(0), view("RANGING")),
        (t(400), view("BULLISH")),
        (t(900), view("RANGING")),
        (t(1_300), RegimeView::not_ready()),
        (t(1_600), view("BEARISH")),
        (t(2_100), view("RANGING")),
        (
            t(2_500),
            RegimeView {
                confidence: 0.6,
                ..view("RANGING")
            },
        ),
    ];
    let (on, _) = both(
        &setup(RegimeSetup::Schedule(schedule)),
        &rangers,
        &grid,
        &bars(),
    );
    assert!(on.fills.len() > 20, "{} fills", on.fills.len());
    assert!(on.regime_ms.len() >= 4, "{:?}", on.regime_ms);
}

/// Self-healing on a clock of minutes (positions go stale, stuck and
/// written off within the run), partial fills (the capacity band's
/// partial-cancel window), a daily loss limit and short timers.
#[test]
fn self_healing_partial_fills_and_loss_limit_give_the_same_outcome() {
    let (mut rangers, mut grid) = configs();
    rangers.entry_timeout_sec = 600;
    rangers.exit_timeout_sec = 1_800;
    grid.daily_loss_limit_usd = dec!(3);
    grid.heal.aging_hours = dec!(0.5);
    grid.heal.stale_hours = dec!(1);
    grid.heal.stuck_hours = dec!(2);
    grid.heal.write_off_hours = dec!(4);
    grid.heal.reprice_cooldown_sec = 600;
    let mut s = setup(RegimeSetup::Fixed(view("RANGING")));
    s.fill.liquidity_per_trade = Some(dec!(60));
    let (on, _) = both(&s, &rangers, &grid, &bars());
    assert!(on.fills.len() > 20, "{} fills", on.fills.len());
}

/// A DOGE perpetual settling funding every 8 h at changing rates.
#[test]
fn a_perpetual_with_funding_gives_the_same_outcome() {
    let (rangers, grid) = configs();
    let mut inst = PaperInstrument::doge_usd().instrument;
    inst.symbol = "DOGEUSD-PERP".into();
    inst.kind = InstrumentKind::Perpetual;
    let mut s = setup(RegimeSetup::Fixed(view("RANGING")));
    s.instrument = inst;
    s.funding = FundingSetup {
        interval_hours: 8,
        rates: (0..8)
            .map(|k| FundingRow {
                time_ms: START_MS + k * 6 * 3_600_000,
                symbol: "DOGEUSD-PERP".into(),
                rate: Decimal::new(if k % 2 == 0 { 1 } else { -2 }, 4),
                mark: None,
            })
            .collect(),
        followers: Vec::new(),
    };
    let (on, _) = both(&s, &rangers, &grid, &bars());
    assert!(!on.funding.is_empty(), "no funding settled");
    assert!(on.fills.len() > 20, "{} fills", on.fills.len());
}
