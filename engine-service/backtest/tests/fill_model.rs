#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The backtest's fill model, case by case: the intra-candle path, limits
//! that fill only when traded through by a tick, post-only orders that
//! would cross, market slippage, fees on the right coin, the venue's
//! filters and open-order limit.

use std::collections::BTreeMap;

use herd_backtest::sim::{FillModel, FundingSetup, RegimeSetup, Setup, intra_candle_path};
use herd_backtest::{Bar, run};
use herd_paper::{Exchange, FeePolicy, PaperConfig, PaperInstrument};
use herd_strategies::strategy::{
    Action, MarketView, OrderIntent, OrderUpdate, RegimeView, StatusBlock, Strategy, UpdateKind,
};
use herd_venue::{NewOrder, OrderStatus, OrderType, Side, VenueError};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn bar(o: Decimal, h: Decimal, l: Decimal, c: Decimal) -> Bar {
    Bar {
        open_time_ms: 0,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: dec!(1),
    }
}

#[test]
fn the_path_visits_the_nearer_extreme_first() {
    let cases = [
        // (open, high, low, close) -> path
        (
            bar(dec!(10), dec!(11), dec!(7), dec!(8)),
            [dec!(10), dec!(11), dec!(7), dec!(8)],
        ),
        (
            bar(dec!(10), dec!(14), dec!(9), dec!(13)),
            [dec!(10), dec!(9), dec!(14), dec!(13)],
        ),
        // A tie goes to the low first.
        (
            bar(dec!(10), dec!(12), dec!(8), dec!(10)),
            [dec!(10), dec!(8), dec!(12), dec!(10)],
        ),
    ];
    for (b, want) in cases {
        assert_eq!(intra_candle_path(&b), want, "{b:?}");
    }
}

fn exchange(fee_policy: FeePolicy, max_open: u32) -> Exchange {
    let mut inst = PaperInstrument::doge_usd();
    inst.start_price = dec!(0.1);
    inst.instrument.max_open_orders = max_open;
    inst.fee_policy = Some(fee_policy);
    let cfg = PaperConfig {
        instruments: vec![inst],
        balances: BTreeMap::from([("USD".into(), dec!(1000)), ("DOGE".into(), dec!(5000))]),
        ..PaperConfig::default()
    };
    let mut ex = Exchange::new(&cfg, 0);
    ex.set_market_slippage(dec!(0.001));
    ex
}

fn order(
    id: &str,
    side: Side,
    volume: Decimal,
    price: Option<Decimal>,
    post_only: bool,
) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side,
        order_type: if price.is_some() {
            OrderType::Limit
        } else {
            OrderType::Market
        },
        volume,
        price,
        post_only,
        userref: 1,
        reduce_only: false,
    }
}

fn state(ex: &Exchange, id: &str) -> herd_venue::OrderState {
    ex.all_orders()
        .into_iter()
        .find(|o| o.client_order_id == id)
        .unwrap()
}

const TICK: Decimal = dec!(0.0000001);

#[test]
fn resting_limits_fill_only_when_traded_through_by_a_tick() {
    // (side, limit, trade price, through ticks, fills?)
    let cases = [
        (Side::Buy, dec!(0.099), dec!(0.099), 1, false),
        (Side::Buy, dec!(0.099), dec!(0.0989999), 1, true),
        (Side::Buy, dec!(0.099), dec!(0.099), 0, true),
        (Side::Buy, dec!(0.099), dec!(0.0989998), 2, true),
        (Side::Buy, dec!(0.099), dec!(0.0989999), 2, false),
        (Side::Sell, dec!(0.101), dec!(0.101), 1, false),
        (Side::Sell, dec!(0.101), dec!(0.1010001), 1, true),
        (Side::Sell, dec!(0.101), dec!(0.101), 0, true),
    ];
    for (i, (side, limit, trade, ticks, fills)) in cases.into_iter().enumerate() {
        let mut ex = exchange(FeePolicy::Quote, 225);
        let id = format!("c{i}");
        let placed = ex
            .place(&order(&id, side, dec!(100), Some(limit), true), 0)
            .unwrap();
        assert_eq!(placed.status, OrderStatus::Open, "case {i}");
        ex.trade_through("DOGEUSD", trade, TICK * Decimal::from(ticks), 1)
            .unwrap();
        let o = state(&ex, &id);
        if fills {
            assert_eq!(o.status, OrderStatus::Filled, "case {i}");
            // At the limit, as a maker: 0.25 % of the cost in USD.
            assert_eq!(o.average_price, Some(limit), "case {i}");
            assert_eq!(
                o.fee,
                (dec!(100) * limit * dec!(0.0025)).round_dp(8),
                "case {i}"
            );
            assert_eq!(o.fee_asset, "USD", "case {i}");
        } else {
            assert_eq!(o.status, OrderStatus::Open, "case {i}");
            assert_eq!(o.volume_executed, Decimal::ZERO, "case {i}");
        }
    }
}

#[test]
fn post_only_orders_that_would_cross_are_rejected() {
    let mut ex = exchange(FeePolicy::Quote, 225);
    // last 0.1: bid 0.0999999, ask 0.1000001.
    for (side, price) in [(Side::Buy, dec!(0.1000001)), (Side::Sell, dec!(0.0999999))] {
        let e = ex
            .place(&order("p", side, dec!(100), Some(price), true), 0)
            .unwrap_err();
        assert!(
            matches!(e, VenueError::Rejected(ref m) if m.contains("would take liquidity")),
            "{e:?}"
        );
    }
    // Not post-only: a crossing limit takes at the touch and pays the taker fee.
    let o = ex
        .place(&order("t", Side::Buy, dec!(100), Some(dec!(0.2)), false), 0)
        .unwrap();
    assert_eq!(o.status, OrderStatus::Filled);
    assert_eq!(o.average_price, Some(dec!(0.1000001)));
    assert_eq!(
        o.fee,
        (dec!(100) * dec!(0.1000001) * dec!(0.004)).round_dp(8)
    );
}

#[test]
fn market_orders_pay_slippage_against_the_taker() {
    let mut ex = exchange(FeePolicy::Quote, 225);
    let buy = ex
        .place(&order("mb", Side::Buy, dec!(100), None, false), 0)
        .unwrap();
    // ask 0.1000001 x 1.001 = 0.1001001001, rounded up to the tick.
    assert_eq!(buy.average_price, Some(dec!(0.1001002)));
    assert_eq!(
        buy.fee,
        (dec!(100) * dec!(0.1001002) * dec!(0.004)).round_dp(8)
    );
    let sell = ex
        .place(&order("ms", Side::Sell, dec!(100), None, false), 0)
        .unwrap();
    // bid 0.0999999 x 0.999 = 0.0998999001, rounded down.
    assert_eq!(sell.average_price, Some(dec!(0.0998999)));
}

#[test]
fn fees_go_to_the_coin_the_venue_charges() {
    // Bybit spot: buys pay in the base they receive, sells in the quote.
    let mut ex = exchange(FeePolicy::BaseOnBuy, 225);
    ex.place(
        &order("b", Side::Buy, dec!(100), Some(dec!(0.099)), true),
        0,
    )
    .unwrap();
    ex.place(
        &order("s", Side::Sell, dec!(100), Some(dec!(0.101)), true),
        0,
    )
    .unwrap();
    ex.trade_through("DOGEUSD", dec!(0.098), TICK, 1).unwrap();
    ex.trade_through("DOGEUSD", dec!(0.102), TICK, 2).unwrap();
    let b = state(&ex, "b");
    assert_eq!((b.fee, b.fee_asset.as_str()), (dec!(0.25), "DOGE"));
    let s = state(&ex, "s");
    assert_eq!((s.fee, s.fee_asset.as_str()), (dec!(0.02525), "USD"));
    let bal: BTreeMap<String, Decimal> = ex
        .balances()
        .into_iter()
        .map(|b| (b.asset, b.total))
        .collect();
    assert_eq!(bal["DOGE"], dec!(5000) + dec!(100) - dec!(0.25) - dec!(100));
    assert_eq!(
        bal["USD"],
        dec!(1000) - dec!(9.9) + dec!(10.1) - dec!(0.02525)
    );
}

#[test]
fn filters_and_the_open_order_limit_refuse_as_the_venue_would() {
    let mut ex = exchange(FeePolicy::Quote, 2);
    // DOGEUSD: min volume 10, min cost 0.5.
    let e = ex
        .place(&order("v", Side::Buy, dec!(9), Some(dec!(0.09)), true), 0)
        .unwrap_err();
    assert!(
        e.to_string().contains("below the minimum order volume"),
        "{e}"
    );
    let e = ex
        .place(&order("c", Side::Buy, dec!(10), Some(dec!(0.01)), true), 0)
        .unwrap_err();
    assert!(e.to_string().contains("cost"), "{e}");
    // Prices round to the tick in the order's favour (buys down).
    let o = ex
        .place(
            &order("r", Side::Buy, dec!(100), Some(dec!(0.09000009)), true),
            0,
        )
        .unwrap();
    assert_eq!(o.price, Some(dec!(0.09)));
    ex.place(
        &order("o2", Side::Buy, dec!(100), Some(dec!(0.09)), true),
        0,
    )
    .unwrap();
    let e = ex
        .place(
            &order("o3", Side::Buy, dec!(100), Some(dec!(0.09)), true),
            0,
        )
        .unwrap_err();
    assert!(matches!(e, VenueError::OrderLimit(_)), "{e:?}");
    // Funds: a buy the free quote cannot hold.
    let e = ex.place(
        &order("f", Side::Sell, dec!(6000), Some(dec!(0.2)), true),
        0,
    );
    assert!(
        matches!(
            e,
            Err(VenueError::InsufficientFunds(_)) | Err(VenueError::OrderLimit(_))
        ),
        "{e:?}"
    );
}

/// One resting post-only buy of 10 DOGE at 0.099, placed at the first tick.
struct OneBid {
    placed: bool,
    updates: Vec<(UpdateKind, Decimal, Decimal)>,
}

impl Strategy for OneBid {
    fn name(&self) -> &str {
        "bid"
    }
    fn owns(&self, client_order_id: &str) -> bool {
        client_order_id == "bid-1"
    }
    fn on_tick(&mut self, _market: &MarketView, _now_ms: i64) -> Vec<Action> {
        if std::mem::replace(&mut self.placed, true) {
            return Vec::new();
        }
        vec![Action::Place(OrderIntent {
            client_order_id: "bid-1".into(),
            symbol: "DOGEUSD".into(),
            side: Side::Buy,
            volume: dec!(10),
            price: Some(dec!(0.099)),
            post_only: true,
            userref_offset: 0,
        })]
    }
    fn on_order(&mut self, update: &OrderUpdate, _now_ms: i64) -> Vec<Action> {
        self.updates
            .push((update.kind, update.fill_volume, update.volume_executed));
        Vec::new()
    }
    fn status(&self, _now_ms: i64) -> StatusBlock {
        // The kinds of the updates it got, for the test to read back.
        StatusBlock::Detail(serde_json::json!(
            self.updates
                .iter()
                .map(|(k, _, _)| format!("{k:?}"))
                .collect::<Vec<_>>()
        ))
    }
    fn enabled(&self) -> bool {
        true
    }
}

#[test]
fn partial_liquidity_fills_a_resting_order_over_several_trades() {
    // Two candles trading through the bid five times: the first's low and
    // close, the second's open, low and close.
    let bars = [
        Bar {
            open_time_ms: 60_000,
            ..bar(dec!(0.1), dec!(0.1001), dec!(0.098), dec!(0.0985))
        },
        Bar {
            open_time_ms: 120_000,
            ..bar(dec!(0.0985), dec!(0.0999), dec!(0.0984), dec!(0.0986))
        },
    ];
    // (liquidity per trade, fills as (fill volume, executed so far), last kind)
    let cases = [
        (None, vec![(dec!(10), dec!(10))], UpdateKind::Filled),
        (
            Some(dec!(3)),
            vec![
                (dec!(3), dec!(3)),
                (dec!(3), dec!(6)),
                (dec!(3), dec!(9)),
                (dec!(1), dec!(10)),
            ],
            UpdateKind::Filled,
        ),
        (
            Some(dec!(1.5)),
            vec![
                (dec!(1.5), dec!(1.5)),
                (dec!(1.5), dec!(3.0)),
                (dec!(1.5), dec!(4.5)),
                (dec!(1.5), dec!(6.0)),
                (dec!(1.5), dec!(7.5)),
            ],
            UpdateKind::PartialFill,
        ),
        (
            Some(dec!(20)),
            vec![(dec!(10), dec!(10))],
            UpdateKind::Filled,
        ),
    ];
    assert_eq!(
        FillModel::default().liquidity_per_trade,
        None,
        "off by default"
    );
    for (liquidity, want, last) in cases {
        let mut inst = PaperInstrument::doge_usd().instrument;
        inst.tick_size = TICK;
        let setup = Setup {
            instrument: inst,
            balances: BTreeMap::from([("USD".into(), dec!(1000))]),
            fee_policy: FeePolicy::Quote,
            fill: FillModel {
                liquidity_per_trade: liquidity,
                ..FillModel::default()
            },
            regime: RegimeSetup::Fixed(RegimeView::not_ready()),
            funding: FundingSetup::default(),
        };
        let mut seen = Vec::new();
        let strategy = OneBid {
            placed: false,
            updates: Vec::new(),
        };
        let out = run(&setup, vec![Box::new(strategy)], &bars, 60_000, &mut ()).unwrap();
        for f in &out.fills {
            assert_eq!(f.price, dec!(0.099), "{liquidity:?}: at the limit");
            assert!(!f.taker, "{liquidity:?}: maker fills");
        }
        let mut executed = Decimal::ZERO;
        for f in &out.fills {
            executed += f.volume;
            seen.push((f.volume, executed));
        }
        assert_eq!(seen, want, "{liquidity:?}");
        // The strategy saw OPEN, then one update per fill, the last FILLED
        // or (liquidity left wanting) PARTIAL_FILL.
        let kinds = out.final_status["bid"].as_array().unwrap().clone();
        assert_eq!(kinds.len(), want.len() + 1, "{liquidity:?}: {kinds:?}");
        assert_eq!(kinds[0], format!("{:?}", UpdateKind::Open));
        assert_eq!(kinds[kinds.len() - 1], format!("{last:?}"), "{liquidity:?}");
    }
}
