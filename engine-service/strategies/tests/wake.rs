#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `Strategy::wake`: a tick just inside the promise does nothing (and,
//! for the run of such ticks, leaves the same state as the last alone);
//! at or past its bound something can happen.

use herd_strategies::grid::{Grid, GridConfig};
use herd_strategies::rangers::{RangerConfig, Rangers};
use herd_strategies::strategy::{
    Action, Instrument, InstrumentKind, MarketView, OrderUpdate, RegimeView, Strategy, UpdateKind,
    Wake,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1_000;

fn inst() -> Instrument {
    Instrument {
        kind: InstrumentKind::Spot,
        symbol: "DOGEUSD".into(),
        base: "DOGE".into(),
        quote: "USD".into(),
        tick_size: dec!(0.0000001),
        price_decimals: 7,
        lot_decimals: 8,
        min_volume: dec!(10),
        min_cost: dec!(0.5),
        maker_fee: dec!(0.0025),
        taker_fee: dec!(0.004),
        max_open_orders: 225,
    }
}

fn market(last: Decimal, now: i64) -> MarketView {
    MarketView {
        instrument: Some(inst()),
        free_base: Some(dec!(50000)),
        free_quote: Some(dec!(5000)),
        open_orders_on_pair: Some(0),
        regime: RegimeView {
            regime: "RANGING".into(),
            ready: true,
            confidence: 0.9,
            bias: 0.0,
        },
        balances_as_of_ms: now,
        ..MarketView::prices(
            "DOGEUSD",
            last,
            last - dec!(0.0000001),
            last + dec!(0.0000001),
        )
    }
}

fn opened(id: &str) -> OrderUpdate {
    OrderUpdate {
        client_order_id: id.into(),
        kind: UpdateKind::Open,
        volume_executed: Decimal::ZERO,
        average_price: None,
        fill_volume: Decimal::ZERO,
        fill_price: Decimal::ZERO,
        fill_fee: Decimal::ZERO,
        fee_asset: String::new(),
        message: String::new(),
    }
}

fn placed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Place(i) => Some(i.client_order_id.clone()),
            _ => None,
        })
        .collect()
}

fn status_json(s: &dyn Strategy, now: i64) -> String {
    s.status(now).detail_json()
}

#[test]
fn the_default_wake_is_every_tick_and_bounds_combine() {
    assert!(!Wake::EveryTick.holds(dec!(1), 0));
    assert!(Wake::IDLE.holds(dec!(1), i64::MAX - 1));
    let w = Wake::IDLE
        .before(100)
        .inside(Some(dec!(1)), Some(dec!(2)))
        .and(Wake::IDLE.before(50).inside(Some(dec!(1.5)), None));
    assert!(w.holds(dec!(1.6), 49));
    assert!(!w.holds(dec!(1.6), 50), "the earlier time bound");
    assert!(
        !w.holds(dec!(1.5), 10),
        "strictly inside: the narrower lower bound"
    );
    assert!(!w.holds(dec!(2), 10), "strictly inside: the upper bound");
    assert_eq!(w.and(Wake::EveryTick), Wake::EveryTick);
}

/// Rangers with open entries: quiet until the entry timeout; a tick a
/// millisecond before it does nothing at any price and a run of them
/// leaves the status of the last alone; at the timeout the entries are
/// cancelled.
#[test]
fn rangers_sleep_until_the_entry_timeout() {
    let cfg = RangerConfig {
        enabled: true,
        max_slots: 2,
        ..RangerConfig::default()
    };
    let timeout = i64::try_from(cfg.entry_timeout_sec).unwrap() * S;
    let mut r = Rangers::new(cfg.clone(), "DOGEUSD", T0);
    let ids = placed(&r.on_tick(&market(dec!(0.12), T0), T0));
    assert_eq!(ids.len(), 2, "both rangers enter");
    for id in &ids {
        assert!(r.on_order(&opened(id), T0).is_empty());
    }
    let t1 = T0 + S;
    assert!(r.on_tick(&market(dec!(0.12), t1), t1).is_empty());
    let w = r.wake();
    assert_eq!(
        w,
        Wake::Quiet {
            before_ms: Some(T0 + timeout),
            above: None,
            below: None
        }
    );
    let last = T0 + timeout - 1;
    assert!(w.holds(dec!(0.2), last));
    // A run of quiet ticks leaves what the last one alone leaves.
    let mut alone = r_clone(&cfg, &ids, t1);
    let mut run = r_clone(&cfg, &ids, t1);
    for (k, p) in [dec!(0.11), dec!(0.13), dec!(0.125)]
        .into_iter()
        .enumerate()
    {
        let t = t1 + 60 * S * (i64::try_from(k).unwrap() + 1);
        assert!(run.on_tick(&market(p, t), t).is_empty());
    }
    assert!(run.on_tick(&market(dec!(0.2), last), last).is_empty());
    assert!(alone.on_tick(&market(dec!(0.2), last), last).is_empty());
    assert_eq!(status_json(&run, last), status_json(&alone, last));
    // At the bound: both entries time out.
    let at = T0 + timeout;
    assert!(!w.holds(dec!(0.12), at));
    let cancels = r
        .on_tick(&market(dec!(0.12), at), at)
        .into_iter()
        .filter(|a| matches!(a, Action::Cancel { .. }))
        .count();
    assert_eq!(cancels, 2);
}

/// The same rangers, rebuilt to the same point (entries placed at T0 and
/// acknowledged, one quiet tick at `t1`).
fn r_clone(cfg: &RangerConfig, ids: &[String], t1: i64) -> Rangers {
    let mut r = Rangers::new(cfg.clone(), "DOGEUSD", T0);
    let again = placed(&r.on_tick(&market(dec!(0.12), T0), T0));
    assert_eq!(again, ids);
    for id in ids {
        assert!(r.on_order(&opened(id), T0).is_empty());
    }
    assert!(r.on_tick(&market(dec!(0.12), t1), t1).is_empty());
    r
}

/// A grid slot with both entries resting: quiet while the market stays
/// inside the stale-entry refresh band (and before the re-entry and day
/// bounds); just inside the band nothing happens, past its edge the stale
/// entry is refreshed.
#[test]
fn the_grid_sleeps_inside_its_refresh_band() {
    let mut cfg = GridConfig {
        enabled: true,
        slots: 1,
        ..GridConfig::default()
    };
    cfg.churner.enabled = true;
    let mut g = Grid::new(cfg.clone(), "DOGEUSD", T0);
    let ids = placed(&g.on_tick(&market(dec!(0.12), T0), T0));
    assert_eq!(ids.len(), 2, "both trades enter: {ids:?}");
    for id in &ids {
        assert!(g.on_order(&opened(id), T0).is_empty());
    }
    let t1 = T0 + S;
    assert!(g.on_tick(&market(dec!(0.12), t1), t1).is_empty());
    let w = g.wake();
    let Wake::Quiet {
        before_ms: Some(before),
        above: Some(lo),
        below: Some(hi),
    } = w
    else {
        panic!("expected a time bound and a band, got {w:?}");
    };
    assert!(lo < dec!(0.12) && dec!(0.12) < hi, "{lo} {hi}");
    assert!(before > t1);
    // Just inside the band: nothing, and nothing is due.
    let inside = lo + dec!(0.0000001);
    assert!(w.holds(inside, t1 + 60 * S));
    assert!(
        g.on_tick(&market(inside, t1 + 60 * S), t1 + 60 * S)
            .is_empty()
    );
    // Well outside it: an entry is stale and gets refreshed.
    let below = lo * dec!(0.99);
    assert!(!w.holds(below, t1 + 120 * S));
    let out = g.on_tick(&market(below, t1 + 120 * S), t1 + 120 * S);
    assert!(
        out.iter().any(|a| matches!(a, Action::Cancel { .. })),
        "{out:?}"
    );
}

/// A churner running or a volatility-adjusted profit: every tick.
#[test]
fn the_grid_promises_nothing_with_a_volatility_adjusted_profit() {
    let cfg = GridConfig {
        enabled: true,
        slots: 1,
        volatility_profit_factor: dec!(1),
        ..GridConfig::default()
    };
    let mut g = Grid::new(cfg, "DOGEUSD", T0);
    let _ = g.on_tick(&market(dec!(0.12), T0), T0);
    assert_eq!(g.wake(), Wake::EveryTick);
}

/// A market view whose free DOGE is `free`.
fn market_free(last: Decimal, now: i64, free: Decimal) -> MarketView {
    MarketView {
        free_base: Some(free),
        ..market(last, now)
    }
}

/// An entry the DOGE reserve refuses takes no client id: the next accepted
/// entry gets the id counter's first value, as if the refused tries never
/// happened. While the free DOGE is at or below the reserve, the idle
/// rangers sleep (no price, no time ends it: only a new free balance,
/// which wakes everyone), and a run of such ticks leaves the state of the
/// last alone.
#[test]
fn a_refused_entry_takes_no_id_and_the_rangers_sleep_below_the_reserve() {
    let cfg = RangerConfig {
        enabled: true,
        max_slots: 1,
        ..RangerConfig::default()
    };
    // 100 DOGE reserve, entries of ~16.7 DOGE at 0.12.
    let low = dec!(90);
    let mut r = Rangers::new(cfg.clone(), "DOGEUSD", T0);
    for k in 0..5 {
        let t = T0 + k * S;
        assert!(r.on_tick(&market_free(dec!(0.12), t, low), t).is_empty());
    }
    assert!(
        status_json(&r, T0 + 4 * S).contains("DOGE reserve gate"),
        "the refusal shows in the status: {}",
        status_json(&r, T0 + 4 * S)
    );
    let w = r.wake();
    assert_eq!(w, Wake::IDLE, "below the reserve nothing can enter");
    // A run of covered ticks (any price, any later time) leaves the state
    // the last of them alone leaves.
    let mut alone = Rangers::new(cfg.clone(), "DOGEUSD", T0);
    let last = T0 + 3_600 * S;
    for (k, p) in [dec!(0.01), dec!(5), dec!(0.12)].into_iter().enumerate() {
        let t = T0 + 10 * S * (i64::try_from(k).unwrap() + 1);
        assert!(w.holds(p, t));
        assert!(r.on_tick(&market_free(p, t, low), t).is_empty());
    }
    assert!(
        r.on_tick(&market_free(dec!(0.2), last, low), last)
            .is_empty()
    );
    assert!(
        alone
            .on_tick(&market_free(dec!(0.2), last, low), last)
            .is_empty()
    );
    assert_eq!(status_json(&r, last), status_json(&alone, last));
    // Enough DOGE: the entry's id is the generator's first.
    let t = last + S;
    let ids = placed(&r.on_tick(&market_free(dec!(0.12), t, dec!(1000)), t));
    let mut fresh = herd_strategies::strategy::IdGen::new(T0);
    assert_eq!(ids, vec![fresh.next("r0e")]);
    // Just above the reserve (an entry of ~16.6 DOGE at 0.12 does not fit
    // in the 15 DOGE over it, but one at a higher price is smaller and
    // does): no promise.
    let mut near = Rangers::new(cfg, "DOGEUSD", T0);
    assert!(
        near.on_tick(&market_free(dec!(0.12), T0, dec!(115)), T0)
            .is_empty()
    );
    assert_eq!(near.wake(), Wake::EveryTick);
    let at_high_price = placed(&near.on_tick(&market_free(dec!(0.18), T0 + S, dec!(115)), T0 + S));
    assert_eq!(
        at_high_price,
        vec![herd_strategies::strategy::IdGen::new(T0).next("r0e")]
    );
}
