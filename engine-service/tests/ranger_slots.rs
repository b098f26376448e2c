#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The rangers reducer on a fake clock (seed 000, Phase 6): gates, stage
//! transitions, timeouts, orphans, profit to the last decimal and the status
//! block. Every price and profit below is computed by hand:
//!
//! market 0.12, entry +0.15 % = 0.12018 (on the 0.0000001 tick);
//! volume $2 / 0.12018 = 16.64170411 (8 lot decimals, rounded down);
//! exit margin max(1.20, 0.50 + 0.20) = 1.20 %: 0.12018 * 0.988 = 0.11873784,
//! rounded down to the tick 0.1187378;
//! entry fee 16.64170411 * 0.12018 * 0.0025 = 0.00500000 (8 dp),
//! exit fee 16.64170411 * 0.1187378 * 0.0025 = 0.00494000 (8 dp);
//! gross (0.12018 - 0.1187378) * 16.64170411 = 0.024000665667442;
//! net 0.024000665667442 - 0.005 - 0.00494 = 0.014060665667442 ($0.01).

use herd_strategies::rangers::{
    OpenOrderRef, RangerConfig, Rangers, RangersStatusBlock, stale_ranger_orders,
};
use herd_strategies::strategy::{
    Action, Instrument, InstrumentKind, MarketView, OrderIntent, OrderUpdate, RegimeView, Side,
    StatusBlock, Strategy, UpdateKind,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// 2023-11-14 22:13:20 UTC.
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

fn regime(name: &str, ready: bool) -> RegimeView {
    RegimeView {
        regime: name.into(),
        ready,
        confidence: 0.9,
        bias: 0.0,
    }
}

fn market(last: Decimal) -> MarketView {
    MarketView {
        instrument: Some(inst()),
        free_base: Some(dec!(5000)),
        free_quote: Some(dec!(1000)),
        open_orders_on_pair: Some(0),
        regime: regime("RANGING", true),
        ..MarketView::prices(
            "DOGEUSD",
            last,
            last - dec!(0.0000001),
            last + dec!(0.0000001),
        )
    }
}

fn cfg(slots: u32) -> RangerConfig {
    RangerConfig {
        enabled: true,
        max_slots: slots,
        ..RangerConfig::default()
    }
}

fn update(id: &str, kind: UpdateKind) -> OrderUpdate {
    OrderUpdate {
        client_order_id: id.into(),
        kind,
        volume_executed: Decimal::ZERO,
        average_price: None,
        fill_volume: Decimal::ZERO,
        fill_price: Decimal::ZERO,
        fill_fee: Decimal::ZERO,
        fee_asset: String::new(),
        message: String::new(),
    }
}

fn fill(id: &str, kind: UpdateKind, volume: Decimal, price: Decimal, fee: Decimal) -> OrderUpdate {
    OrderUpdate {
        volume_executed: volume,
        average_price: Some(price),
        fill_volume: volume,
        fill_price: price,
        fill_fee: fee,
        fee_asset: "USD".into(),
        ..update(id, kind)
    }
}

fn places(actions: &[Action]) -> Vec<OrderIntent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Place(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { client_order_id } => Some(client_order_id.clone()),
            _ => None,
        })
        .collect()
}

fn journals(actions: &[Action]) -> Vec<(String, serde_json::Value)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Journal {
                stream,
                kind,
                payload_json,
            } => {
                assert_eq!(stream, "rangers");
                Some((kind.clone(), serde_json::from_str(payload_json).unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn block(r: &Rangers, now: i64) -> RangersStatusBlock {
    match r.status(now) {
        StatusBlock::Rangers(b) => *b,
        other => panic!("rangers gave {other:?}"),
    }
}

/// Ticks once at 0.12 and returns the entry it places.
fn placed_entry(r: &mut Rangers, now: i64) -> OrderIntent {
    let a = r.on_tick(&market(dec!(0.12)), now);
    let p = places(&a);
    assert_eq!(p.len(), 1, "{a:?}");
    p[0].clone()
}

/// Places an entry and fills it completely; returns (entry id, exit intent).
fn filled_entry(r: &mut Rangers, now: i64) -> (String, OrderIntent) {
    let e = placed_entry(r, now);
    r.on_order(&update(&e.client_order_id, UpdateKind::Open), now);
    let a = r.on_order(
        &fill(
            &e.client_order_id,
            UpdateKind::Filled,
            e.volume,
            dec!(0.12018),
            dec!(0.005),
        ),
        now + 10 * S,
    );
    let x = places(&a);
    assert_eq!(x.len(), 1, "{a:?}");
    (e.client_order_id, x[0].clone())
}

#[test]
fn test_ranger_skips_when_regime_not_ranging() {
    let mut r = Rangers::new(cfg(3), "DOGEUSD", T0);
    for view in [
        regime("BULLISH", true),
        regime("BEARISH", true),
        // A detector that is not ready is not RANGING, whatever it says.
        regime("RANGING", false),
        RegimeView::not_ready(),
    ] {
        let m = MarketView {
            regime: view.clone(),
            ..market(dec!(0.12))
        };
        let a = r.on_tick(&m, T0);
        assert!(a.is_empty(), "{view:?}: {a:?}");
        let b = block(&r, T0);
        assert!(!b.regime_ok);
        assert!(b.slots.iter().all(|s| s.stage == "idle"));
        assert!(
            b.slots[0].last_error.contains("not RANGING"),
            "{}",
            b.slots[0].last_error
        );
    }
    // Disabled rangers place nothing even in RANGING.
    let mut off = Rangers::new(RangerConfig::default(), "DOGEUSD", T0);
    assert!(off.on_tick(&market(dec!(0.12)), T0).is_empty());
}

#[test]
fn test_ranger_respects_doge_reserve_gate() {
    // (free DOGE, rangers, entries placed): each entry is 16.64170411 DOGE
    // and 100 DOGE must stay free after it.
    let cases = [
        (dec!(116.64170410), 1, 0),
        (dec!(116.64170411), 1, 1),
        (dec!(133.28340821), 2, 1),
        (dec!(133.28340822), 2, 2),
        (dec!(50), 1, 0),
    ];
    for (free, slots, want) in cases {
        let mut r = Rangers::new(cfg(slots), "DOGEUSD", T0);
        let m = MarketView {
            free_base: Some(free),
            ..market(dec!(0.12))
        };
        let a = r.on_tick(&m, T0);
        assert_eq!(places(&a).len(), want, "free {free}, {slots} rangers");
        if want < slots as usize {
            let b = block(&r, T0);
            let refused = &b.slots[want];
            assert_eq!(refused.stage, "idle");
            assert!(
                refused.last_error.contains("DOGE reserve"),
                "{}",
                refused.last_error
            );
        }
    }
    // Unknown free balance fails closed.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let m = MarketView {
        free_base: None,
        ..market(dec!(0.12))
    };
    assert!(places(&r.on_tick(&m, T0)).is_empty());
}

#[test]
fn test_ranger_places_sell_entry_when_gates_pass() {
    let mut r = Rangers::new(cfg(3), "DOGEUSD", T0);
    let a = r.on_tick(&market(dec!(0.12)), T0);
    let p = places(&a);
    // At most two new entries per loop.
    assert_eq!(p.len(), 2, "{a:?}");
    for (n, e) in p.iter().enumerate() {
        assert_eq!(e.side, Side::Sell);
        assert_eq!(e.price, Some(dec!(0.12018)));
        assert_eq!(e.volume, dec!(16.64170411));
        assert!(e.post_only);
        assert_eq!(e.symbol, "DOGEUSD");
        assert_eq!(e.userref_offset, 800 + n as i32);
        assert!(
            e.client_order_id.starts_with(&format!("r{n}e-")),
            "{}",
            e.client_order_id
        );
        assert!(r.owns(&e.client_order_id));
    }
    // The third ranger enters on the next loop.
    let p = places(&r.on_tick(&market(dec!(0.12)), T0 + S));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].userref_offset, 802);
    let b = block(&r, T0 + S);
    assert_eq!(b.active, 3);
    assert_eq!(b.slots[0].entry_price, Some(dec!(0.12018)));
    assert_eq!(b.slots[0].entry_volume, Some(dec!(16.64170411)));

    // Headroom: the safe cap of 225 is 168; 159 open leaves 9 < 10.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let m = MarketView {
        open_orders_on_pair: Some(159),
        ..market(dec!(0.12))
    };
    assert!(places(&r.on_tick(&m, T0)).is_empty());
    assert!(block(&r, T0).slots[0].last_error.contains("headroom"));
    let m = MarketView {
        open_orders_on_pair: Some(158),
        ..market(dec!(0.12))
    };
    assert_eq!(places(&r.on_tick(&m, T0)).len(), 1);

    // Below the venue's minimum volume: skipped, not upsized.
    let mut r = Rangers::new(
        RangerConfig {
            order_size_usd: dec!(1),
            ..cfg(1)
        },
        "DOGEUSD",
        T0,
    );
    assert!(places(&r.on_tick(&market(dec!(0.12)), T0)).is_empty());
    let err = block(&r, T0).slots[0].last_error.clone();
    assert!(err.contains("below the minimum"), "{err}");
}

#[test]
fn test_ranger_entry_timeout_cancels_to_idle() {
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let e = placed_entry(&mut r, T0);
    r.on_order(&update(&e.client_order_id, UpdateKind::Open), T0 + S);
    assert!(r.on_tick(&market(dec!(0.12)), T0 + 299 * S).is_empty());
    let a = r.on_tick(&market(dec!(0.12)), T0 + 300 * S);
    assert_eq!(cancels(&a), vec![e.client_order_id.clone()]);
    // Still entry_open until the venue confirms; no second cancel at once.
    assert_eq!(block(&r, T0 + 300 * S).slots[0].stage, "entry_open");
    assert!(r.on_tick(&market(dec!(0.12)), T0 + 301 * S).is_empty());
    let a = r.on_order(
        &update(&e.client_order_id, UpdateKind::Canceled),
        T0 + 302 * S,
    );
    assert!(a.is_empty());
    let b = block(&r, T0 + 302 * S);
    assert_eq!(b.slots[0].stage, "idle");
    assert_eq!((b.orphans_today, b.cycles_today), (0, 0));
    // No cooldown: the next loop enters again.
    assert_eq!(
        places(&r.on_tick(&market(dec!(0.12)), T0 + 302 * S)).len(),
        1
    );
}

#[test]
fn test_ranger_entry_fill_places_exit_and_transitions() {
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    assert_eq!(x.side, Side::Buy);
    assert_eq!(x.price, Some(dec!(0.1187378)));
    assert_eq!(x.volume, dec!(16.64170411));
    assert!(x.post_only);
    assert_eq!(x.userref_offset, 800);
    assert!(
        x.client_order_id.starts_with("r0x-"),
        "{}",
        x.client_order_id
    );
    let b = block(&r, T0 + 10 * S);
    assert_eq!(b.slots[0].stage, "exit_open");
    assert_eq!(b.slots[0].entry_price, Some(dec!(0.12018)));
    assert_eq!(b.slots[0].exit_price, Some(dec!(0.1187378)));
    assert_eq!(b.slots[0].age_sec, 0.0);
    assert_eq!(block(&r, T0 + 15 * S).slots[0].age_sec, 5.0);

    // A partly filled entry that times out buys back what sold.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let e = placed_entry(&mut r, T0);
    r.on_order(
        &fill(
            &e.client_order_id,
            UpdateKind::PartialFill,
            dec!(12),
            dec!(0.12018),
            dec!(0.0036054),
        ),
        T0 + S,
    );
    let a = r.on_tick(&market(dec!(0.12)), T0 + 300 * S);
    assert_eq!(cancels(&a), vec![e.client_order_id.clone()]);
    let a = r.on_order(
        &OrderUpdate {
            volume_executed: dec!(12),
            ..update(&e.client_order_id, UpdateKind::Canceled)
        },
        T0 + 301 * S,
    );
    let x = places(&a);
    assert_eq!(x.len(), 1, "{a:?}");
    assert_eq!((x[0].volume, x[0].price), (dec!(12), Some(dec!(0.1187378))));
}

#[test]
fn test_ranger_exit_fill_updates_profit_and_counters() {
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    r.on_order(&update(&x.client_order_id, UpdateKind::Open), T0 + 11 * S);
    let a = r.on_order(
        &fill(
            &x.client_order_id,
            UpdateKind::Filled,
            x.volume,
            dec!(0.1187378),
            dec!(0.00494),
        ),
        T0 + 60 * S,
    );
    let j = journals(&a);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].0, "cycle");
    assert_eq!(j[0].1["net_usd"], "0.014060665667442");
    assert_eq!(j[0].1["gross_usd"], "0.024000665667442");
    assert_eq!(j[0].1["volume"], "16.64170411");
    let b = block(&r, T0 + 60 * S);
    assert_eq!(b.cycles_today, 1);
    assert_eq!(b.profit_today, dec!(0.014060665667442));
    assert_eq!(b.profit_today.round_dp(2), dec!(0.01));
    assert_eq!(b.orphans_today, 0);
    assert_eq!(b.slots[0].stage, "cooldown");
    // Cooldown 30 s, then a new entry.
    assert!(places(&r.on_tick(&market(dec!(0.12)), T0 + 89 * S)).is_empty());
    assert_eq!(
        places(&r.on_tick(&market(dec!(0.12)), T0 + 90 * S)).len(),
        1
    );
    // Daily counters roll over at the UTC day change (T0 is 22:13:20 UTC).
    let next_day = T0 + (86_400_000 - T0.rem_euclid(86_400_000));
    r.on_tick(&market(dec!(0.12)), next_day - 1);
    assert_eq!(block(&r, next_day - 1).cycles_today, 1);
    r.on_tick(&market(dec!(0.12)), next_day);
    let b = block(&r, next_day);
    assert_eq!((b.cycles_today, b.profit_today), (0, Decimal::ZERO));
    assert_eq!(b.profit_total, dec!(0.014060665667442));
}

#[test]
fn test_ranger_exit_timeout_records_orphan_and_cooldown() {
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    let filled_at = T0 + 10 * S;
    r.on_order(&update(&x.client_order_id, UpdateKind::Open), filled_at);
    assert!(cancels(&r.on_tick(&market(dec!(0.125)), filled_at + 1349 * S)).is_empty());
    let a = r.on_tick(&market(dec!(0.125)), filled_at + 1350 * S);
    assert_eq!(cancels(&a), vec![x.client_order_id.clone()]);
    let a = r.on_order(
        &update(&x.client_order_id, UpdateKind::Canceled),
        filled_at + 1351 * S,
    );
    let j = journals(&a);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].0, "orphan");
    assert_eq!(j[0].1["reason"], "exit_timeout");
    assert_eq!(j[0].1["exposure_usd"], "1.9999999999398");
    assert_eq!(j[0].1["market_price"], "0.125");
    let b = block(&r, filled_at + 1351 * S);
    assert_eq!(b.orphans_today, 1);
    assert_eq!(b.orphan_exposure_usd, dec!(1.9999999999398));
    assert_eq!((b.cycles_today, b.profit_today), (0, Decimal::ZERO));
    assert_eq!(b.slots[0].stage, "cooldown");
    assert!(places(&r.on_tick(&market(dec!(0.12)), filled_at + 1380 * S)).is_empty());
    assert_eq!(
        places(&r.on_tick(&market(dec!(0.12)), filled_at + 1381 * S)).len(),
        1
    );

    // A timeout cancel that races the exit's fill books the cycle, not an orphan.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    let a = r.on_tick(&market(dec!(0.12)), T0 + 10 * S + 1350 * S);
    assert_eq!(cancels(&a).len(), 1);
    let a = r.on_order(
        &fill(
            &x.client_order_id,
            UpdateKind::Filled,
            x.volume,
            dec!(0.1187378),
            dec!(0.00494),
        ),
        T0 + 1361 * S,
    );
    assert_eq!(journals(&a)[0].0, "cycle");
    let b = block(&r, T0 + 1361 * S);
    assert_eq!((b.cycles_today, b.orphans_today), (1, 0));
}

#[test]
fn test_ranger_regime_shift_cancels_and_idles() {
    let mut r = Rangers::new(cfg(2), "DOGEUSD", T0);
    // Ranger 0 ends in exit_open, ranger 1 in entry_open.
    let a = r.on_tick(&market(dec!(0.12)), T0);
    let p = places(&a);
    assert_eq!(p.len(), 2);
    let a = r.on_order(
        &fill(
            &p[0].client_order_id,
            UpdateKind::Filled,
            p[0].volume,
            dec!(0.12018),
            dec!(0.005),
        ),
        T0 + S,
    );
    let exit = places(&a)[0].client_order_id.clone();
    let bullish = MarketView {
        regime: regime("BULLISH", true),
        ..market(dec!(0.121))
    };
    let a = r.on_tick(&bullish, T0 + 2 * S);
    let mut c = cancels(&a);
    c.sort();
    let mut want = vec![exit.clone(), p[1].client_order_id.clone()];
    want.sort();
    assert_eq!(c, want);
    assert!(places(&a).is_empty());
    let a = r.on_order(&update(&exit, UpdateKind::Canceled), T0 + 3 * S);
    let j = journals(&a);
    assert_eq!(j[0].0, "orphan");
    assert_eq!(j[0].1["reason"], "regime_shift");
    r.on_order(
        &update(&p[1].client_order_id, UpdateKind::Canceled),
        T0 + 3 * S,
    );
    let b = block(&r, T0 + 3 * S);
    assert!(b.slots.iter().all(|s| s.stage == "idle"), "{b:?}");
    assert_eq!(b.orphans_today, 1);
    assert_eq!(b.orphan_exposure_usd, dec!(1.9999999999398));
    assert_eq!(b.active, 0);
    // Nothing new while the regime stays away; RANGING again enters at once.
    assert!(r.on_tick(&bullish, T0 + 4 * S).is_empty());
    assert_eq!(places(&r.on_tick(&market(dec!(0.12)), T0 + 5 * S)).len(), 2);
}

#[test]
fn disabling_at_runtime_cancels_and_idles() {
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    let a = r.set_enabled(false, T0 + 20 * S).unwrap();
    assert_eq!(cancels(&a), vec![x.client_order_id.clone()]);
    let a = r.on_order(
        &update(&x.client_order_id, UpdateKind::Canceled),
        T0 + 21 * S,
    );
    assert_eq!(journals(&a)[0].1["reason"], "disabled");
    let b = block(&r, T0 + 21 * S);
    assert!(!b.enabled);
    assert_eq!(b.slots[0].stage, "idle");
    assert!(r.on_tick(&market(dec!(0.12)), T0 + 22 * S).is_empty());
    assert!(r.set_enabled(true, T0 + 23 * S).unwrap().is_empty());
    assert_eq!(
        places(&r.on_tick(&market(dec!(0.12)), T0 + 24 * S)).len(),
        1
    );
}

#[test]
fn refused_orders_do_not_strand_state() {
    // A refused entry releases its DOGE and cools down.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let e = placed_entry(&mut r, T0);
    let a = r.on_order(
        &OrderUpdate {
            message: "insufficient funds".into(),
            ..update(&e.client_order_id, UpdateKind::PlaceFailed)
        },
        T0 + S,
    );
    assert!(a.is_empty());
    let b = block(&r, T0 + S);
    assert_eq!(b.slots[0].stage, "cooldown");
    assert!(b.slots[0].last_error.contains("insufficient funds"));
    assert_eq!(b.committed_base, Decimal::ZERO);

    // A refused exit is placed again after a short wait.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let (_, x) = filled_entry(&mut r, T0);
    r.on_order(
        &OrderUpdate {
            message: "post-only would take".into(),
            ..update(&x.client_order_id, UpdateKind::Rejected)
        },
        T0 + 11 * S,
    );
    assert_eq!(block(&r, T0 + 11 * S).slots[0].stage, "exit_open");
    assert!(places(&r.on_tick(&market(dec!(0.12)), T0 + 12 * S)).is_empty());
    let again = places(&r.on_tick(&market(dec!(0.12)), T0 + 16 * S));
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].client_order_id, x.client_order_id);
    assert_eq!(again[0].price, Some(dec!(0.1187378)));

    // A cancel the gateway never heard of (never acknowledged): gone.
    let mut r = Rangers::new(cfg(1), "DOGEUSD", T0);
    let e = placed_entry(&mut r, T0);
    r.on_tick(&market(dec!(0.12)), T0 + 300 * S);
    r.on_order(
        &OrderUpdate {
            message: format!("order {:?} not found", e.client_order_id),
            ..update(&e.client_order_id, UpdateKind::CancelFailed)
        },
        T0 + 301 * S,
    );
    assert_eq!(block(&r, T0 + 301 * S).slots[0].stage, "idle");

    // Orders that are not this run's live ranger orders are ignored.
    assert!(
        r.on_order(&update("r0e-oldrun1", UpdateKind::Canceled), T0)
            .is_empty()
    );
}

#[test]
fn stale_ranger_orders_match_the_userref_sub_range() {
    let o = |id: &str, symbol: &str, userref: i32| OpenOrderRef {
        client_order_id: id.into(),
        symbol: symbol.into(),
        userref,
    };
    // Engine range starts at 1000; rangers use 1800..1900.
    let open = vec![
        o("m-manual", "DOGEUSD", 1000),
        o("r0e-old", "DOGEUSD", 1800),
        o("r2x-old", "DOGEUSD", 1802),
        o("r99e-old", "DOGEUSD", 1899),
        o("grid-1", "DOGEUSD", 1900),
        o("grid-2", "DOGEUSD", 1799),
        o("r0e-other-pair", "XBTUSD", 1800),
        // Userref unknown to the gateway (0): told apart by the client id.
        o("r1x-no-userref", "DOGEUSD", 0),
        o("m-no-userref", "DOGEUSD", 0),
        o("g0ae-no-userref", "DOGEUSD", 0),
        o("r1x-other-pair", "XBTUSD", 0),
    ];
    assert_eq!(
        stale_ranger_orders(&open, "DOGEUSD", 1000, 800),
        vec!["r0e-old", "r2x-old", "r99e-old", "r1x-no-userref"]
    );
    assert_eq!(
        stale_ranger_orders(&open, "DOGEUSD", 2000, 800),
        vec!["r1x-no-userref"]
    );
}

#[test]
fn status_block_has_the_seed_fields() {
    let r = Rangers::new(RangerConfig::default(), "DOGEUSD", T0);
    let v: serde_json::Value = serde_json::from_str(&r.status(T0).detail_json()).unwrap();
    for key in [
        "enabled",
        "active",
        "regime_ok",
        "cycles_today",
        "profit_today",
        "orphans_today",
        "orphan_exposure_usd",
        "doge_reserve",
        "slots",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["enabled"], false);
    assert_eq!(v["doge_reserve"], "100");
    assert_eq!(v["slots"].as_array().unwrap().len(), 3);
    for key in [
        "ranger_id",
        "stage",
        "entry_price",
        "exit_price",
        "entry_volume",
        "age_sec",
        "last_error",
    ] {
        assert!(v["slots"][0].get(key).is_some(), "missing slots[].{key}");
    }
    assert_eq!(v["slots"][0]["stage"], "idle");
}
