#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The paper matching core, case by case: post-only, partial fills, fees on
//! the right coin, funds and the open-order limit.

use herd_paper::{Exchange, FeePolicy, PaperConfig, PaperInstrument};
use herd_venue::{NewOrder, OrderRef, OrderStatus, OrderType, Side, VenueError};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_700_000_000_000;

fn config(policy: FeePolicy, liquidity: Option<Decimal>, max_open: u32) -> PaperConfig {
    let mut doge = PaperInstrument::doge_usd();
    doge.start_price = dec!(0.1);
    doge.liquidity_per_step = liquidity;
    doge.instrument.max_open_orders = max_open;
    PaperConfig {
        instruments: vec![doge],
        fee_policy: policy,
        ..PaperConfig::default()
    }
}

fn limit(id: &str, side: Side, volume: Decimal, price: Decimal, post_only: bool) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side,
        order_type: OrderType::Limit,
        volume,
        price: Some(price),
        post_only,
        userref: 0,
        reduce_only: false,
    }
}

fn market(id: &str, side: Side, volume: Decimal) -> NewOrder {
    NewOrder {
        order_type: OrderType::Market,
        price: None,
        ..limit(id, side, volume, dec!(1), false)
    }
}

fn balance(ex: &Exchange, asset: &str) -> (Decimal, Decimal) {
    let b = ex
        .balances()
        .into_iter()
        .find(|b| b.asset == asset)
        .unwrap();
    (b.total, b.free)
}

fn by_id(id: &str) -> OrderRef {
    OrderRef {
        client_order_id: id.into(),
        venue_order_id: None,
    }
}

#[test]
fn post_only_that_would_cross_is_rejected() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    // ask = 0.1 + one tick
    for (price, side) in [
        (dec!(0.1000001), Side::Buy),
        (dec!(0.11), Side::Buy),
        (dec!(0.0999999), Side::Sell),
    ] {
        let err = ex
            .place(&limit("p", side, dec!(100), price, true), T0)
            .unwrap_err();
        assert!(
            matches!(err, VenueError::Rejected(_)),
            "{price} {side:?}: {err}"
        );
    }
    assert!(ex.open_orders().is_empty());
    // one tick inside is fine
    let o = ex
        .place(
            &limit("ok", Side::Buy, dec!(100), dec!(0.0999999), true),
            T0,
        )
        .unwrap();
    assert_eq!(o.status, OrderStatus::Open);
}

#[test]
fn resting_buy_fills_as_maker_with_quote_fee() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    ex.place(&limit("b1", Side::Buy, dec!(100), dec!(0.099), true), T0)
        .unwrap();
    // held: 100 * 0.099 * 1.0025 = 9.92475
    assert_eq!(balance(&ex, "USD"), (dec!(1000), dec!(990.07525)));
    ex.set_price("DOGEUSD", dec!(0.0995), T0 + 1).unwrap();
    assert_eq!(
        ex.query(&[by_id("b1")])[0].status,
        OrderStatus::Open,
        "not crossed yet"
    );
    ex.set_price("DOGEUSD", dec!(0.0989), T0 + 2).unwrap();
    let o = &ex.query(&[by_id("b1")])[0];
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(
        o.average_price,
        Some(dec!(0.099)),
        "maker fills at its limit"
    );
    assert_eq!(o.fee, dec!(0.02475));
    assert_eq!(o.fee_asset, "USD");
    // 1000 - 9.9 - 0.02475
    assert_eq!(balance(&ex, "USD"), (dec!(990.07525), dec!(990.07525)));
    assert_eq!(balance(&ex, "DOGE"), (dec!(5100), dec!(5100)));
}

#[test]
fn bybit_style_buy_pays_fee_in_base_and_sell_in_quote() {
    let mut ex = Exchange::new(&config(FeePolicy::BaseOnBuy, None, 225), T0);
    let buy = ex.place(&market("m1", Side::Buy, dec!(100)), T0).unwrap();
    assert_eq!(buy.status, OrderStatus::Filled);
    assert_eq!(
        (buy.fee, buy.fee_asset.as_str()),
        (dec!(0.4), "DOGE"),
        "taker 0.4 % of 100 DOGE"
    );
    assert_eq!(
        buy.average_price,
        Some(dec!(0.1000001)),
        "market buy fills at the ask"
    );
    assert_eq!(balance(&ex, "DOGE").0, dec!(5099.6));
    let sell = ex.place(&market("m2", Side::Sell, dec!(100)), T0).unwrap();
    // bid 0.0999999 * 100 = 9.99999, fee 0.4 % = 0.03999996
    assert_eq!(
        (sell.fee, sell.fee_asset.as_str()),
        (dec!(0.03999996), "USD")
    );
    assert_eq!(
        balance(&ex, "USD").0,
        dec!(1000) - dec!(10.00001) + dec!(9.99999) - dec!(0.03999996)
    );
}

#[test]
fn partial_fills_follow_liquidity_per_step() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, Some(dec!(40)), 225), T0);
    ex.place(&limit("s1", Side::Sell, dec!(100), dec!(0.101), true), T0)
        .unwrap();
    let mut seen = vec![];
    for i in 1..=3 {
        ex.set_price("DOGEUSD", dec!(0.102), T0 + i).unwrap();
        let o = &ex.query(&[by_id("s1")])[0];
        seen.push((o.volume_executed, o.status));
    }
    assert_eq!(
        seen,
        vec![
            (dec!(40), OrderStatus::Open),
            (dec!(80), OrderStatus::Open),
            (dec!(100), OrderStatus::Filled)
        ]
    );
}

#[test]
fn insufficient_balance_is_rejected_and_nothing_is_placed() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    let cases = [
        limit("a", Side::Buy, dec!(20000), dec!(0.099), true), // 1980 USD > 1000
        limit("b", Side::Sell, dec!(5001), dec!(0.2), true),   // 5001 DOGE > 5000
        market("c", Side::Buy, dec!(10000)),
    ];
    for o in cases {
        let err = ex.place(&o, T0).unwrap_err();
        assert!(
            matches!(err, VenueError::InsufficientFunds(_)),
            "{}: {err}",
            o.client_order_id
        );
    }
    assert!(ex.open_orders().is_empty());
    // Holds count: two sells of 3000 cannot both rest on 5000 DOGE.
    ex.place(&limit("d", Side::Sell, dec!(3000), dec!(0.2), true), T0)
        .unwrap();
    let err = ex
        .place(&limit("e", Side::Sell, dec!(3000), dec!(0.2), true), T0)
        .unwrap_err();
    assert!(matches!(err, VenueError::InsufficientFunds(_)));
    // Cancel releases the hold.
    ex.cancel(&by_id("d"), T0).unwrap();
    assert_eq!(balance(&ex, "DOGE"), (dec!(5000), dec!(5000)));
}

#[test]
fn open_order_limit_per_pair() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 3), T0);
    for i in 0..3 {
        ex.place(
            &limit(&format!("o{i}"), Side::Sell, dec!(10), dec!(0.2), true),
            T0,
        )
        .unwrap();
    }
    let err = ex
        .place(&limit("o3", Side::Sell, dec!(10), dec!(0.2), true), T0)
        .unwrap_err();
    assert!(matches!(err, VenueError::OrderLimit(_)), "{err}");
    assert_eq!(ex.open_orders().len(), 3);
}

#[test]
fn same_client_id_returns_the_first_order() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    let a = ex
        .place(&limit("x", Side::Sell, dec!(10), dec!(0.2), true), T0)
        .unwrap();
    let b = ex
        .place(&limit("x", Side::Sell, dec!(10), dec!(0.3), true), T0)
        .unwrap();
    assert_eq!(a.venue_order_id, b.venue_order_id);
    assert_eq!(ex.open_orders().len(), 1);
}

#[test]
fn candles_aggregate_and_history_is_generated() {
    let cfg = PaperConfig {
        history_minutes: 120,
        ..config(FeePolicy::Quote, None, 225)
    };
    let ex = Exchange::new(&cfg, T0);
    let one = ex.candles("DOGEUSD", 1, 0).unwrap();
    assert!(one.len() >= 120, "{}", one.len());
    let fifteen = ex.candles("DOGEUSD", 15, 0).unwrap();
    assert!(
        fifteen.len() >= 8 && fifteen.len() <= 10,
        "{}",
        fifteen.len()
    );
    for w in one.windows(2) {
        assert!(w[0].open_time_ms < w[1].open_time_ms);
        assert!(w[0].low <= w[0].high);
    }
    assert!(matches!(
        ex.candles("NOPE", 1, 0),
        Err(VenueError::InvalidArgument(_))
    ));
}

#[test]
fn amend_changes_volume_and_price_in_place_and_checks_it_as_a_new_order() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    let placed = ex
        .place(&limit("s", Side::Sell, dec!(1000), dec!(0.2), true), T0)
        .unwrap();
    // Bigger and higher: same ids, new volume and price, the hold follows.
    let amended = ex
        .amend(&by_id("s"), Some(dec!(3000)), Some(dec!(0.25)), T0 + 1)
        .unwrap();
    assert_eq!(amended.venue_order_id, placed.venue_order_id);
    assert_eq!(
        (amended.volume, amended.price),
        (dec!(3000), Some(dec!(0.25)))
    );
    assert_eq!(balance(&ex, "DOGE"), (dec!(5000), dec!(2000)));
    // Refusals leave the order as it was.
    let refused = [
        (Some(dec!(6000)), None, "funds"), // holds 3000 more, 2000 free
        (None, Some(dec!(0.0999999)), "post-only"), // at the bid
        (None, Some(dec!(0.25000001)), "tick"), // off the tick
        (Some(dec!(0)), None, "not above executed"), // nothing left
    ];
    for (volume, price, why) in refused {
        let err = ex.amend(&by_id("s"), volume, price, T0 + 2).unwrap_err();
        let kind_ok = match why {
            "funds" => matches!(err, VenueError::InsufficientFunds(_)),
            "post-only" => matches!(err, VenueError::Rejected(_)),
            _ => matches!(err, VenueError::InvalidArgument(_)),
        };
        assert!(kind_ok, "{why}: {err}");
        let now = &ex.query(&[by_id("s")])[0];
        assert_eq!(
            (now.volume, now.price),
            (dec!(3000), Some(dec!(0.25))),
            "{why}"
        );
    }
    // A resting buy that is not post-only, amended across the ask, takes.
    ex.place(&limit("b", Side::Buy, dec!(100), dec!(0.09), false), T0)
        .unwrap();
    let taken = ex
        .amend(&by_id("b"), None, Some(dec!(0.2)), T0 + 3)
        .unwrap();
    assert_eq!(taken.status, OrderStatus::Filled);
    assert_eq!(taken.average_price, Some(dec!(0.1000001)));
    // Closed orders cannot be amended.
    let err = ex
        .amend(&by_id("b"), Some(dec!(200)), None, T0 + 4)
        .unwrap_err();
    assert!(matches!(err, VenueError::UnknownOrder(_)), "{err}");
}

/// The open orders the core reports (from its index of open orders) are
/// exactly the orders it remembers as open, through places, fills at the
/// touch and by price moves, partial fills, amends, cancels, a snapshot
/// round trip and an account record replayed over an older snapshot.
#[test]
fn the_open_order_index_agrees_with_every_order_through_each_change() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, Some(dec!(150)), 225), T0);
    let check = |ex: &Exchange, at: &str| {
        let scanned: Vec<String> = ex
            .all_orders()
            .into_iter()
            .filter(|o| o.status == OrderStatus::Open)
            .map(|o| o.venue_order_id)
            .collect();
        let indexed: Vec<String> = ex
            .open_orders()
            .into_iter()
            .map(|o| o.venue_order_id)
            .collect();
        assert_eq!(indexed, scanned, "{at}");
    };
    let mut t = T0;
    let mut n = 0;
    let mut older_snapshot = None;
    for round in 0..6 {
        for k in 0..8 {
            n += 1;
            t += 1_000;
            let id = format!("o{n}");
            let (side, price) = if k % 2 == 0 {
                (Side::Buy, dec!(0.1) - Decimal::new(k + 1, 3))
            } else {
                (Side::Sell, dec!(0.1) + Decimal::new(k + 1, 3))
            };
            // Every fourth one crosses (fills at the touch at once).
            let order = if k % 4 == 3 {
                market(&id, side, dec!(100))
            } else {
                limit(&id, side, dec!(300), price, false)
            };
            ex.place(&order, t).unwrap();
            check(&ex, &format!("round {round}: placed {id}"));
        }
        // A price move through some resting orders (partial fills: 150 a step).
        let price = if round % 2 == 0 {
            dec!(0.097)
        } else {
            dec!(0.103)
        };
        t += 1_000;
        ex.set_price("DOGEUSD", price, t).unwrap();
        check(&ex, &format!("round {round}: price {price}"));
        t += 1_000;
        ex.set_price("DOGEUSD", dec!(0.1), t).unwrap();
        // Amend one open order, cancel another.
        let open = ex.open_orders();
        if let Some(o) = open.first() {
            ex.amend(&by_id(&o.client_order_id), Some(dec!(400)), None, t)
                .unwrap();
            check(&ex, &format!("round {round}: amended"));
        }
        if let Some(o) = open.last() {
            ex.cancel(&by_id(&o.client_order_id), t).unwrap();
            check(&ex, &format!("round {round}: cancelled"));
        }
        if round == 2 {
            older_snapshot = Some(ex.snapshot_json(t).unwrap());
        }
    }
    // A snapshot read back rebuilds the index.
    let snap = ex.snapshot_json(t).unwrap();
    let back: Exchange = serde_json::from_slice(&snap).unwrap();
    check(&back, "snapshot round trip");
    assert_eq!(back.open_orders(), ex.open_orders());
    assert_eq!(back.balances(), ex.balances());
    // An account record over an older snapshot: orders closed since then
    // leave the index, orders opened since join it.
    let record = ex.account_json(T0).unwrap();
    let mut restored: Exchange = serde_json::from_slice(&older_snapshot.unwrap()).unwrap();
    assert!(restored.restore_account(&record).unwrap());
    check(&restored, "account record over an older snapshot");
    assert_eq!(restored.open_orders(), ex.open_orders());
    assert_eq!(restored.balances(), ex.balances());
}

/// `revision` moves with every change of an order or a balance and with
/// nothing else: the backtester skips its poll and its balance read while it
/// stays, so a change it missed would be a fill the strategies never see.
#[test]
fn revision_moves_with_orders_and_balances_only() {
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    let mut rev = ex.revision();
    let mut moved = |ex: &Exchange, what: &str, expect: bool| {
        let now = ex.revision();
        assert_eq!(now != rev, expect, "{what}: revision {rev} -> {now}");
        rev = now;
    };
    // Reads change nothing.
    let _ = (ex.balances(), ex.open_orders(), ex.query(&[by_id("a")]));
    let _ = ex.touch("DOGEUSD").unwrap();
    moved(&ex, "reads", false);
    ex.place(&limit("a", Side::Buy, dec!(100), dec!(0.09), true), T0)
        .unwrap();
    moved(&ex, "place", true);
    ex.place(&limit("b", Side::Buy, dec!(100), dec!(0.08), true), T0)
        .unwrap();
    moved(&ex, "second place", true);
    // A trade that crosses nothing moves the price only.
    ex.trade_through("DOGEUSD", dec!(0.095), Decimal::ZERO, T0 + 1)
        .unwrap();
    moved(&ex, "trade crossing nothing", false);
    ex.trade_through("DOGEUSD", dec!(0.0899), Decimal::ZERO, T0 + 2)
        .unwrap();
    moved(&ex, "fill", true);
    assert_eq!(
        ex.query(&[by_id("a")])[0].status,
        OrderStatus::Filled,
        "the fill happened"
    );
    ex.forget_closed();
    moved(&ex, "forgetting closed orders", false);
    ex.cancel(&by_id("b"), T0 + 3).unwrap();
    moved(&ex, "cancel", true);
    assert!(ex.cancel(&by_id("b"), T0 + 4).is_err());
    moved(&ex, "refused cancel", false);
}

/// `trade_through` skips its scan of the open orders while a trade crosses
/// neither bound of the resting limits (the highest buy and lowest sell as
/// of the last scan, widened by orders placed since, kept when orders
/// leave): every order a scan would fill still fills, at the edges (through
/// included), after a placement or a cancel moved them, and with several
/// orders on one side.
#[test]
fn trades_that_cross_a_resting_edge_still_fill_after_quiet_trades() {
    let through = dec!(0.0000001);
    let mut ex = Exchange::new(&config(FeePolicy::Quote, None, 225), T0);
    let status = |ex: &Exchange, id: &str| ex.query(&[by_id(id)])[0].status;
    ex.place(&limit("b1", Side::Buy, dec!(100), dec!(0.09), true), T0)
        .unwrap();
    ex.place(&limit("b2", Side::Buy, dec!(100), dec!(0.095), true), T0)
        .unwrap();
    ex.place(&limit("s1", Side::Sell, dec!(100), dec!(0.11), true), T0)
        .unwrap();
    // Quiet trades (the edges get remembered), one exactly at the buy edge
    // minus less than `through`.
    for (k, p) in [dec!(0.1), dec!(0.0951), dec!(0.095), dec!(0.1099)]
        .into_iter()
        .enumerate()
    {
        ex.trade_through("DOGEUSD", p, through, T0 + 1 + k as i64)
            .unwrap();
    }
    for id in ["b1", "b2", "s1"] {
        assert_eq!(status(&ex, id), OrderStatus::Open, "{id}");
    }
    // Through the higher buy by a tick: it fills, the lower one does not.
    ex.trade_through("DOGEUSD", dec!(0.0949999), through, T0 + 10)
        .unwrap();
    assert_eq!(status(&ex, "b2"), OrderStatus::Filled);
    assert_eq!(status(&ex, "b1"), OrderStatus::Open);
    // The filled buy's price stays the (looser) bound: a trade between it
    // and the next buy scans and fills nothing.
    ex.trade_through("DOGEUSD", dec!(0.092), through, T0 + 10)
        .unwrap();
    assert_eq!(status(&ex, "b1"), OrderStatus::Open);
    // A new sell below the old edge: the remembered edge must not hide it.
    ex.trade_through("DOGEUSD", dec!(0.1), through, T0 + 11)
        .unwrap();
    ex.place(
        &limit("s2", Side::Sell, dec!(100), dec!(0.105), true),
        T0 + 12,
    )
    .unwrap();
    ex.trade_through("DOGEUSD", dec!(0.1050001), through, T0 + 13)
        .unwrap();
    assert_eq!(status(&ex, "s2"), OrderStatus::Filled);
    assert_eq!(status(&ex, "s1"), OrderStatus::Open);
    // Cancelling the edge order lets the next one become the edge.
    ex.cancel(&by_id("s1"), T0 + 14).unwrap();
    ex.place(
        &limit("s3", Side::Sell, dec!(100), dec!(0.12), true),
        T0 + 15,
    )
    .unwrap();
    ex.trade_through("DOGEUSD", dec!(0.1150001), through, T0 + 16)
        .unwrap();
    assert_eq!(status(&ex, "s3"), OrderStatus::Open);
    ex.trade_through("DOGEUSD", dec!(0.1200001), through, T0 + 17)
        .unwrap();
    assert_eq!(status(&ex, "s3"), OrderStatus::Filled);
    ex.trade_through("DOGEUSD", dec!(0.0899999), through, T0 + 18)
        .unwrap();
    assert_eq!(status(&ex, "b1"), OrderStatus::Filled);
}
