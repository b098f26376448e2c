//! USDT linear perpetuals on the paper core: positions, reduce-only, fees,
//! funding settlements with the right sign at the right times, margin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use herd_paper::{Exchange, PaperConfig, PaperInstrument};
use herd_venue::{
    FundingPaymentQuery, InstrumentKind, NewOrder, OrderStatus, OrderType, PositionSide, Side,
    VenueError,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// 2023-11-14 22:13:20 UTC; the next 8 h settlement is 2023-11-15 00:00 UTC.
const T0: i64 = 1_700_000_000_000;
const MIDNIGHT: i64 = 1_700_006_400_000;
const HOUR: i64 = 3_600_000;

fn exchange() -> Exchange {
    Exchange::new(&PaperConfig::default(), T0)
}

fn market(id: &str, symbol: &str, side: Side, volume: Decimal, reduce_only: bool) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side,
        order_type: OrderType::Market,
        volume,
        price: None,
        post_only: false,
        userref: 0,
        reduce_only,
    }
}

fn balance(ex: &Exchange, asset: &str) -> Decimal {
    ex.balances()
        .into_iter()
        .find(|b| b.asset == asset)
        .map(|b| b.total)
        .unwrap_or_default()
}

#[test]
fn default_config_keeps_doge_and_adds_usdt_pairs() {
    let ex = exchange();
    let inst = ex.instruments();
    let names: Vec<&str> = inst.iter().map(|i| i.symbol.as_str()).collect();
    for s in [
        "DOGEUSD",
        "BTCUSDT",
        "BTCUSDT-PERP",
        "ETHUSDT",
        "ETHUSDT-PERP",
        "SOLUSDT",
        "SOLUSDT-PERP",
    ] {
        assert!(names.contains(&s), "{s} missing from {names:?}");
    }
    let perp = ex.instrument("BTCUSDT-PERP").unwrap();
    assert_eq!(perp.kind, InstrumentKind::Perpetual);
    assert_eq!(
        (perp.taker_fee, perp.maker_fee),
        (dec!(0.00055), dec!(0.0002))
    );
    let spot = ex.instrument("BTCUSDT").unwrap();
    assert_eq!((spot.taker_fee, spot.maker_fee), (dec!(0.001), dec!(0.001)));
    assert_eq!(balance(&ex, "USDT"), dec!(10000));
    assert_eq!(balance(&ex, "USD"), dec!(1000));
    let rates = ex.funding_rates(&[]).unwrap();
    assert_eq!(rates.len(), 3);
    let sol = rates.iter().find(|r| r.symbol == "SOLUSDT-PERP").unwrap();
    assert_eq!(sol.interval_hours, 4);
    assert_eq!(sol.next_funding_ms % (4 * HOUR), 0);
    assert!(sol.turnover_24h_usd >= dec!(1000000));
}

#[test]
fn hedge_opens_settles_funding_and_closes() {
    let mut ex = exchange();
    ex.set_price("BTCUSDT", dec!(50000), T0).unwrap();
    ex.set_price("BTCUSDT-PERP", dec!(50000), T0).unwrap();
    ex.set_funding_rate("BTCUSDT-PERP", dec!(0.0001)).unwrap();

    // Spot buy: the fee is charged in BTC.
    let buy = ex
        .place(&market("s1", "BTCUSDT", Side::Buy, dec!(0.1), false), T0)
        .unwrap();
    assert_eq!(buy.status, OrderStatus::Filled);
    assert_eq!(buy.fee_asset, "BTC");
    assert_eq!(buy.fee, dec!(0.0001));
    assert_eq!(balance(&ex, "BTC"), dec!(0.0999));

    // Perp sell: no BTC needed, the fee is in USDT at 0.055 %.
    let usdt_before = balance(&ex, "USDT");
    let sell = ex
        .place(
            &market("p1", "BTCUSDT-PERP", Side::Sell, dec!(0.1), false),
            T0,
        )
        .unwrap();
    assert_eq!(sell.status, OrderStatus::Filled);
    assert_eq!(sell.fee_asset, "USDT");
    let fill = sell.average_price.unwrap();
    assert_eq!(sell.fee, (dec!(0.1) * fill * dec!(0.00055)).round_dp(8));
    assert_eq!(balance(&ex, "USDT"), usdt_before - sell.fee);
    assert_eq!(balance(&ex, "BTC"), dec!(0.0999), "perps leave coins alone");

    let pos = ex.positions();
    assert_eq!(pos.len(), 1);
    assert_eq!(pos[0].symbol, "BTCUSDT-PERP");
    assert_eq!(pos[0].side, PositionSide::Short);
    assert_eq!(pos[0].size, dec!(0.1));
    assert_eq!(pos[0].entry_price, fill);

    // Nothing settles before the funding time, one settlement at it.
    assert!(ex.settle_funding(MIDNIGHT - 1).is_empty());
    let mark = ex.ticker("BTCUSDT-PERP").unwrap().last;
    let usdt_before = balance(&ex, "USDT");
    let paid = ex.settle_funding(MIDNIGHT);
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0].time_ms, MIDNIGHT);
    assert_eq!(paid[0].side, PositionSide::Short);
    assert_eq!(paid[0].amount, dec!(0.1) * mark * dec!(0.0001));
    assert!(
        paid[0].amount > Decimal::ZERO,
        "a short receives a positive rate"
    );
    assert_eq!(balance(&ex, "USDT"), usdt_before + paid[0].amount);
    assert!(ex.settle_funding(MIDNIGHT + 1).is_empty(), "settled once");
    let next = ex.funding_rate("BTCUSDT-PERP").unwrap().next_funding_ms;
    assert_eq!(next, MIDNIGHT + 8 * HOUR);
    let listed = ex.funding_payments(&FundingPaymentQuery {
        symbol: Some("BTCUSDT-PERP".into()),
        ..FundingPaymentQuery::default()
    });
    assert_eq!(listed, paid);

    // Reduce-only buy bigger than the position is cut to it and flattens.
    let close = ex
        .place(
            &market("p2", "BTCUSDT-PERP", Side::Buy, dec!(0.5), true),
            MIDNIGHT + 1,
        )
        .unwrap();
    assert_eq!(close.status, OrderStatus::Filled);
    assert_eq!(close.volume_executed, dec!(0.1));
    assert!(ex.positions().is_empty());
    // And once flat, reduce-only is refused.
    let err = ex
        .place(
            &market("p3", "BTCUSDT-PERP", Side::Buy, dec!(0.1), true),
            MIDNIGHT + 2,
        )
        .unwrap_err();
    assert!(matches!(err, VenueError::Rejected(_)), "{err:?}");
}

#[test]
fn funding_sign_table() {
    struct Case {
        side: Side,
        rate: Decimal,
        receives: bool,
    }
    let cases = [
        Case {
            side: Side::Sell,
            rate: dec!(0.0005),
            receives: true,
        },
        Case {
            side: Side::Buy,
            rate: dec!(0.0005),
            receives: false,
        },
        Case {
            side: Side::Sell,
            rate: dec!(-0.0005),
            receives: false,
        },
        Case {
            side: Side::Buy,
            rate: dec!(-0.0005),
            receives: true,
        },
    ];
    for c in cases {
        let mut ex = exchange();
        ex.set_price("ETHUSDT-PERP", dec!(2000), T0).unwrap();
        ex.place(&market("o", "ETHUSDT-PERP", c.side, dec!(1), false), T0)
            .unwrap();
        ex.set_funding_rate("ETHUSDT-PERP", c.rate).unwrap();
        let paid = ex
            .settle_funding_now("ETHUSDT-PERP", T0 + 1)
            .unwrap()
            .unwrap();
        let mark = ex.ticker("ETHUSDT-PERP").unwrap().last;
        assert_eq!(paid.amount.abs(), mark * c.rate.abs());
        assert_eq!(
            paid.amount > Decimal::ZERO,
            c.receives,
            "{:?} at {}: {}",
            c.side,
            c.rate,
            paid.amount
        );
    }
}

#[test]
fn perp_follows_spot_with_small_basis() {
    let mut ex = exchange();
    for i in 0..2_000 {
        ex.step(T0 + i * 1000);
        let spot = ex.ticker("SOLUSDT").unwrap().last;
        let perp = ex.ticker("SOLUSDT-PERP").unwrap().last;
        let basis = ((perp - spot) / spot).abs();
        assert!(basis < dec!(0.01), "step {i}: spot {spot} perp {perp}");
    }
    // Moving the spot moves the perp with it.
    ex.set_price("SOLUSDT", dec!(300), T0 + 3_000_000).unwrap();
    let perp = ex.ticker("SOLUSDT-PERP").unwrap().last;
    assert!((perp - dec!(300)).abs() < dec!(3), "{perp}");
}

#[test]
fn stepping_settles_every_interval_with_the_path_moving_the_rate() {
    let mut ex = exchange();
    ex.place(
        &market("o", "SOLUSDT-PERP", Side::Sell, dec!(10), false),
        T0,
    )
    .unwrap();
    let first_rate = ex.funding_rate("SOLUSDT-PERP").unwrap().rate;
    // One day in one-minute steps: 4 h interval -> 6 settlements.
    let mut t = T0;
    while t < T0 + 24 * HOUR {
        t += 60_000;
        ex.step(t);
    }
    let paid = ex.funding_payments(&FundingPaymentQuery::default());
    assert_eq!(paid.len(), 6, "{paid:?}");
    for p in &paid {
        assert_eq!(p.time_ms % (4 * HOUR), 0);
    }
    let last_rate = ex.funding_rate("SOLUSDT-PERP").unwrap().rate;
    assert!(
        last_rate < first_rate,
        "SOL's rate decays: {first_rate} -> {last_rate}"
    );
}

#[test]
fn margin_ratio_and_insufficient_margin() {
    let mut ex = exchange();
    ex.set_price("BTCUSDT-PERP", dec!(50000), T0).unwrap();
    let m0 = ex.account_margin(T0);
    assert_eq!(m0.asset, "USDT");
    assert_eq!(m0.maintenance_margin_ratio, Decimal::ZERO);
    ex.place(
        &market("p", "BTCUSDT-PERP", Side::Sell, dec!(0.2), false),
        T0,
    )
    .unwrap();
    let m = ex.account_margin(T0);
    let mark = ex.ticker("BTCUSDT-PERP").unwrap().last;
    assert_eq!(m.maintenance_margin, dec!(0.2) * mark * dec!(0.005));
    assert_eq!(m.initial_margin, dec!(0.2) * mark * dec!(0.1));
    assert_eq!(
        m.maintenance_margin_ratio,
        (m.maintenance_margin / m.equity).round_dp(6)
    );
    assert!(m.maintenance_margin_ratio > Decimal::ZERO);
    // The price running up against the short raises the ratio.
    ex.set_price("BTCUSDT-PERP", dec!(90000), T0 + 1).unwrap();
    let up = ex.account_margin(T0 + 1);
    assert!(up.unrealized_pnl < Decimal::ZERO);
    assert!(up.maintenance_margin_ratio > m.maintenance_margin_ratio);
    // 10x on 10,000 USDT cannot short 100 BTC.
    let err = ex
        .place(
            &market("big", "BTCUSDT-PERP", Side::Sell, dec!(100), false),
            T0 + 2,
        )
        .unwrap_err();
    assert!(matches!(err, VenueError::InsufficientFunds(_)), "{err:?}");
}

#[test]
fn resting_reduce_only_is_cancelled_when_the_position_is_gone() {
    let mut ex = exchange();
    ex.set_price("ETHUSDT-PERP", dec!(2000), T0).unwrap();
    ex.place(&market("o", "ETHUSDT-PERP", Side::Sell, dec!(1), false), T0)
        .unwrap();
    let resting = NewOrder {
        order_type: OrderType::Limit,
        price: Some(dec!(1900)),
        ..market("tp", "ETHUSDT-PERP", Side::Buy, dec!(1), true)
    };
    let tp = ex.place(&resting, T0).unwrap();
    assert_eq!(tp.status, OrderStatus::Open);
    // Closed another way first.
    ex.place(
        &market("c", "ETHUSDT-PERP", Side::Buy, dec!(1), true),
        T0 + 1,
    )
    .unwrap();
    ex.set_price("ETHUSDT-PERP", dec!(1850), T0 + 2).unwrap();
    let tp = ex
        .query(&[herd_venue::OrderRef {
            client_order_id: "tp".into(),
            venue_order_id: None,
        }])
        .remove(0);
    assert_eq!(tp.status, OrderStatus::Canceled, "{tp:?}");
    assert!(ex.positions().is_empty());
}

#[test]
fn spot_only_config_has_no_funding() {
    let cfg = PaperConfig {
        instruments: vec![PaperInstrument::doge_usd()],
        ..PaperConfig::default()
    };
    let ex = Exchange::new(&cfg, T0);
    assert!(ex.funding_rates(&[]).unwrap().is_empty());
    assert!(ex.funding_rate("DOGEUSD").is_err());
}
