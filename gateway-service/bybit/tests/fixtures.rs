//! Every endpoint's recorded-style answer, decoded by the raw client's
//! envelope decoder and parsed into herd's types; error envelopes mapped to
//! typed errors and venue errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use herd_bybit::http::models::{
    CancelAllResult, ExecutionRow, FundingHistoryRow, InstrumentRow, KlineResult, ListResult,
    OrderIds, OrderRow, PositionRow, ServerTime, TickerRow, TransactionRow, WalletBalanceResult,
};
use herd_bybit::http::{ApiErrorKind, BybitError, decode_body};
use herd_bybit::parse::{self, Directory, Fees};
use herd_bybit::{BybitConfig, Category};
use herd_venue::{InstrumentKind, OrderStatus, OrderType, PositionSide, Side, VenueError};
use rust_decimal_macros::dec;
use serde::de::DeserializeOwned;

fn fixture(name: &str) -> String {
    let path = format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode<T: DeserializeOwned>(name: &str) -> (T, i64) {
    decode_body(200, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fees() -> Fees {
    BybitConfig::default().fee_rates()
}

fn directory() -> Directory {
    let (spot, _): (ListResult<InstrumentRow>, _) =
        decode("http_market_instruments_info_spot.json");
    let (linear, _): (ListResult<InstrumentRow>, _) =
        decode("http_market_instruments_info_linear.json");
    let mut metas = Vec::new();
    for r in &spot.list {
        metas.extend(parse::instrument_from(Category::Spot, r, &fees()).unwrap());
    }
    for r in &linear.list {
        metas.extend(parse::instrument_from(Category::Linear, r, &fees()).unwrap());
    }
    Directory::new(metas)
}

#[test]
fn market_time() {
    let (t, time): (ServerTime, i64) = decode("http_market_time.json");
    assert_eq!(t.time_second, "1700000000");
    assert_eq!(time, 1_700_000_000_123);
}

#[test]
fn instruments_info_keeps_trading_spot_and_usdt_perpetuals() {
    let dir = directory();
    let names: Vec<String> = dir.instruments().into_iter().map(|i| i.symbol).collect();
    assert_eq!(
        names,
        ["1000PEPEUSDT-PERP", "BTCUSDT", "BTCUSDT-PERP", "ETHUSDT"],
        "closed spot, USDC perps and dated futures are left out"
    );
    let spot = dir.get("BTCUSDT").unwrap();
    assert_eq!(spot.instrument.kind, InstrumentKind::Spot);
    assert_eq!(spot.instrument.tick_size, dec!(0.01));
    assert_eq!(spot.instrument.price_decimals, 2);
    assert_eq!(spot.instrument.lot_decimals, 6);
    assert_eq!(spot.instrument.min_volume, dec!(0.000048));
    assert_eq!(spot.instrument.min_cost, dec!(1));
    assert_eq!(spot.instrument.taker_fee, dec!(0.001));
    let perp = dir.get("BTCUSDT-PERP").unwrap();
    assert_eq!(perp.bybit.category, Category::Linear);
    assert_eq!(perp.bybit.symbol, "BTCUSDT");
    assert_eq!(perp.instrument.kind, InstrumentKind::Perpetual);
    assert_eq!(perp.instrument.lot_decimals, 3);
    assert_eq!(perp.instrument.price_decimals, 1);
    assert_eq!(perp.instrument.min_cost, dec!(5));
    assert_eq!(perp.instrument.taker_fee, dec!(0.00055));
    assert_eq!(perp.instrument.maker_fee, dec!(0.0002));
    assert_eq!(perp.funding_interval_hours, Some(8));
    let pepe = dir.get("1000PEPEUSDT-PERP").unwrap();
    assert_eq!(pepe.qty_step, dec!(100));
    assert_eq!(pepe.instrument.lot_decimals, 0);
    assert_eq!(pepe.funding_interval_hours, Some(4));
    let (linear, _): (ListResult<InstrumentRow>, _) =
        decode("http_market_instruments_info_linear.json");
    assert!(
        !linear.next_page_cursor.is_empty(),
        "paginated with a cursor"
    );
}

#[test]
fn tickers_and_funding() {
    let dir = directory();
    let (linear, time): (ListResult<TickerRow>, _) = decode("http_market_tickers_linear.json");
    let btc = &linear.list[0];
    let meta = dir.by_bybit(Category::Linear, &btc.symbol).unwrap();
    let f = parse::funding_from(
        &meta.instrument.symbol,
        btc,
        meta.funding_interval_hours,
        time,
    )
    .unwrap();
    assert_eq!(f.symbol, "BTCUSDT-PERP");
    assert_eq!(f.rate, dec!(0.0001));
    assert_eq!(f.interval_hours, 8);
    assert_eq!(f.next_funding_ms, 1_700_006_400_000);
    assert_eq!(f.mark, dec!(37005.00));
    assert_eq!(f.index, dec!(37010.12));
    assert_eq!(
        f.turnover_24h_usd,
        dec!(5123456789.1234),
        "turnover (USD), not volume"
    );
    let sol = parse::funding_from("SOLUSDT-PERP", &linear.list[1], None, time).unwrap();
    assert_eq!(sol.interval_hours, 4);
    assert_eq!(sol.rate, dec!(-0.00025));
    assert!(
        dir.by_bybit(Category::Linear, &linear.list[2].symbol)
            .is_none(),
        "USDC perp is not in the directory"
    );

    let (spot, time): (ListResult<TickerRow>, _) = decode("http_market_tickers_spot.json");
    let t = parse::ticker_from("BTCUSDT", &spot.list[0], time).unwrap();
    assert_eq!(
        (t.bid, t.ask, t.last),
        (dec!(36999.99), dec!(37000.01), dec!(37000.00))
    );
    assert_eq!(t.volume_24h, dec!(24567.891));
    assert_eq!(t.time_ms, 1_700_000_000_789);

    let (hist, _): (ListResult<FundingHistoryRow>, _) = decode("http_market_funding_history.json");
    assert_eq!(hist.list.len(), 2);
    assert_eq!(hist.list[0].funding_rate, "0.0001");
}

#[test]
fn kline_is_returned_oldest_first() {
    let (k, _): (KlineResult, _) = decode("http_market_kline.json");
    let c = parse::candles_from(&k).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].open_time_ms, 1_700_000_000_000);
    assert_eq!(c[0].close, dec!(37010));
    assert_eq!(c[1].volume, dec!(1.5));
    assert_eq!(parse::kline_interval(1440).unwrap(), "D");
    assert!(matches!(
        parse::kline_interval(21600),
        Err(VenueError::InvalidArgument(_))
    ));
}

#[test]
fn order_endpoints() {
    let (ids, _): (OrderIds, _) = decode("http_order_create.json");
    assert_eq!(ids.order_link_id, "e0-spot-1");
    let (ids, _): (OrderIds, _) = decode("http_order_cancel.json");
    assert_eq!(ids.order_id, "c6f055d9-7f21-4079-913d-e6523a9cfffa");
    let (all, _): (CancelAllResult, _) = decode("http_order_cancel_all.json");
    assert_eq!(all.list.len(), 2);
    assert_eq!(all.success, "1");
}

#[test]
fn order_states_table() {
    let dir = directory();
    let (open, _): (ListResult<OrderRow>, _) = decode("http_order_realtime.json");
    let o = parse::order_state_from(
        Category::Linear,
        &open.list[0],
        dir.by_bybit(Category::Linear, "BTCUSDT"),
        7,
    )
    .unwrap();
    assert_eq!(o.symbol, "BTCUSDT-PERP");
    assert_eq!(o.client_order_id, "e0-grid-7");
    assert_eq!(o.status, OrderStatus::Open);
    assert_eq!(o.side, Side::Buy);
    assert_eq!(o.order_type, OrderType::Limit);
    assert_eq!(o.price, Some(dec!(36000.0)));
    assert_eq!((o.volume, o.volume_executed), (dec!(0.010), dec!(0.004)));
    assert_eq!(o.fee, dec!(0.0288));
    assert_eq!(o.fee_asset, "USDT");
    assert!(o.post_only);
    assert_eq!(o.userref, 7);
    assert_eq!(o.reason, None);
    assert_eq!(o.closed_at_ms, None);

    let (hist, _): (ListResult<OrderRow>, _) = decode("http_order_history.json");
    struct Case {
        status: OrderStatus,
        price: Option<rust_decimal::Decimal>,
        avg: Option<rust_decimal::Decimal>,
        fee_asset: &'static str,
        reason: Option<&'static str>,
    }
    let cases = [
        Case {
            status: OrderStatus::Filled,
            price: None,
            avg: Some(dec!(37000.01)),
            fee_asset: "BTC",
            reason: None,
        },
        Case {
            status: OrderStatus::Canceled,
            price: Some(dec!(30000)),
            avg: None,
            fee_asset: "USDT",
            reason: Some("CancelByUser"),
        },
        Case {
            status: OrderStatus::Rejected,
            price: Some(dec!(50000)),
            avg: None,
            fee_asset: "USDT",
            reason: Some("EC_PostOnlyWillTakeLiquidity"),
        },
    ];
    for (row, c) in hist.list.iter().zip(cases) {
        let o = parse::order_state_from(
            Category::Spot,
            row,
            dir.by_bybit(Category::Spot, "BTCUSDT"),
            0,
        )
        .unwrap();
        assert_eq!(o.status, c.status, "{}", row.order_link_id);
        assert_eq!(o.price, c.price, "{}", row.order_link_id);
        assert_eq!(o.average_price, c.avg, "{}", row.order_link_id);
        assert_eq!(o.fee_asset, c.fee_asset, "{}", row.order_link_id);
        assert_eq!(o.reason.as_deref(), c.reason, "{}", row.order_link_id);
        assert!(o.closed_at_ms.is_some());
    }

    let mut bad = hist.list[0].clone();
    bad.qty = "abc".into();
    let err = parse::order_state_from(Category::Spot, &bad, None, 0).unwrap_err();
    assert!(
        matches!(&err, VenueError::Parse(m) if m.contains("qty")),
        "{err:?}"
    );
    bad = hist.list[0].clone();
    bad.order_status = "Exploded".into();
    assert!(parse::order_state_from(Category::Spot, &bad, None, 0).is_err());
}

#[test]
fn executions() {
    let (ex, _): (ListResult<ExecutionRow>, _) = decode("http_execution_list.json");
    assert_eq!(ex.list[0].exec_fee, "0.2035");
    assert_eq!(ex.list[0].fee_currency, "USDT");
    assert!(!ex.list[0].is_maker);
}

#[test]
fn positions_skip_flat_rows() {
    let (p, _): (ListResult<PositionRow>, _) = decode("http_position_list.json");
    let parsed: Vec<_> = p
        .list
        .iter()
        .filter_map(|r| parse::position_from(r, "USDT").unwrap())
        .collect();
    assert_eq!(parsed.len(), 1);
    let btc = &parsed[0];
    assert_eq!(btc.symbol, "BTCUSDT-PERP");
    assert_eq!(btc.side, PositionSide::Short);
    assert_eq!(btc.size, dec!(0.010));
    assert_eq!(btc.entry_price, dec!(37000));
    assert_eq!(btc.maintenance_margin, dec!(1.85025));
    assert_eq!(btc.liquidation_price, None);
    assert_eq!(btc.leverage, dec!(10));
}

#[test]
fn wallet_balance_and_margin() {
    let (w, time): (WalletBalanceResult, _) = decode("http_account_wallet_balance.json");
    let account = &w.list[0];
    let b = parse::balances_from(account).unwrap();
    let usdt = b.iter().find(|b| b.asset == "USDT").unwrap();
    assert_eq!((usdt.total, usdt.free), (dec!(9999.7965), dec!(9899.7965)));
    let m = parse::margin_from(account, time).unwrap();
    assert_eq!(m.asset, "USD");
    assert_eq!(m.equity, dec!(10369.8231));
    assert_eq!(m.maintenance_margin_ratio, dec!(0.0002));
    assert_eq!(m.initial_margin_ratio, dec!(0.0036));
    assert_eq!(m.unrealized_pnl, dec!(-0.05));
}

#[test]
fn transaction_log_settlements() {
    let (t, _): (ListResult<TransactionRow>, _) = decode("http_account_transaction_log.json");
    let p: Vec<_> = t
        .list
        .iter()
        .map(|r| parse::funding_payment_from(r).unwrap())
        .collect();
    assert_eq!(p[0].symbol, "BTCUSDT-PERP");
    assert_eq!(p[0].side, PositionSide::Short);
    assert_eq!(p[0].amount, dec!(0.037005), "positive = received");
    assert_eq!(p[0].size, dec!(0.010));
    assert_eq!(p[0].rate, dec!(0.0001));
    assert_eq!(p[0].mark_price, dec!(37005.00));
    assert_eq!(p[0].time_ms, 1_700_006_400_000);
    assert_eq!(p[1].side, PositionSide::Long);
    assert_eq!(p[1].amount, dec!(-0.2));
}

#[test]
fn error_envelopes_map_to_typed_and_venue_errors() {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&fixture("http_error_envelopes.json")).unwrap();
    let expected = [
        (10001, ApiErrorKind::BadParameter),
        (10002, ApiErrorKind::TimestampWindow),
        (10003, ApiErrorKind::InvalidKey),
        (10004, ApiErrorKind::InvalidSignature),
        (10005, ApiErrorKind::PermissionDenied),
        (10006, ApiErrorKind::RateLimited),
        (10010, ApiErrorKind::IpMismatch),
        (10016, ApiErrorKind::ServerError),
        (110001, ApiErrorKind::OrderNotFound),
        (170213, ApiErrorKind::OrderNotFound),
        (110007, ApiErrorKind::InsufficientBalance),
        (170131, ApiErrorKind::InsufficientBalance),
        (110072, ApiErrorKind::DuplicateOrderLinkId),
        (170141, ApiErrorKind::DuplicateOrderLinkId),
        (110094, ApiErrorKind::NotionalTooLow),
        (170140, ApiErrorKind::NotionalTooLow),
        (170136, ApiErrorKind::QuantityTooLow),
        (110017, ApiErrorKind::ReduceOnlyRejected),
    ];
    assert_eq!(all.len(), expected.len());
    for (env, (code, kind)) in all.iter().zip(expected) {
        let err = decode_body::<OrderIds>(200, &env.to_string()).unwrap_err();
        let BybitError::Api(api) = &err else {
            panic!("{code}: {err:?}")
        };
        assert_eq!(api.code, code);
        assert_eq!(api.kind(), kind, "{code}");
        // Every code lands on a venue error that is not a parse failure.
        let v = err.to_venue_error(0);
        assert!(!matches!(v, VenueError::Parse(_)), "{code}: {v:?}");
    }
}

#[test]
fn conditional_and_quote_sized_orders_parse_as_foreign() {
    use rust_decimal::Decimal;
    struct Case {
        order_id: &'static str,
        /// `None`: herd's own kind of order, not foreign.
        venue_type: Option<&'static str>,
        trigger: Option<&'static str>,
        quote_volume: Option<Decimal>,
        order_type: OrderType,
        price: Option<Decimal>,
        volume: Decimal,
        executed: Decimal,
        status: OrderStatus,
        side: Side,
    }
    let dir = directory();
    let check = |category: Category, file: &str, cases: &[Case]| {
        let (page, _): (ListResult<OrderRow>, _) = decode(file);
        assert_eq!(page.list.len(), cases.len(), "{file}");
        for (row, c) in page.list.iter().zip(cases) {
            assert_eq!(row.order_id, c.order_id);
            let o = parse::order_state_from(category, row, dir.by_bybit(category, &row.symbol), 0)
                .unwrap_or_else(|e| panic!("{}: {e}", c.order_id));
            let f = o.foreign.as_ref();
            assert_eq!(
                f.map(|f| f.venue_type.as_str()),
                c.venue_type,
                "{}",
                c.order_id
            );
            assert_eq!(
                f.and_then(|f| f.trigger.as_deref()),
                c.trigger,
                "{}",
                c.order_id
            );
            assert_eq!(
                f.and_then(|f| f.quote_volume),
                c.quote_volume,
                "{}",
                c.order_id
            );
            assert_eq!(
                (o.order_type, o.price),
                (c.order_type, c.price),
                "{}",
                c.order_id
            );
            assert_eq!(
                (o.volume, o.volume_executed),
                (c.volume, c.executed),
                "{}",
                c.order_id
            );
            assert_eq!((o.status, o.side), (c.status, c.side), "{}", c.order_id);
            assert_eq!(o.venue_order_id, c.order_id);
        }
    };
    check(
        Category::Spot,
        "http_order_realtime_conditional.json",
        &[
            Case {
                order_id: "1321052653536515584",
                venue_type: Some("Limit StopOrder Stop"),
                trigger: Some("30000"),
                quote_volume: None,
                order_type: OrderType::Limit,
                price: Some(dec!(29900)),
                volume: dec!(0.01),
                executed: dec!(0),
                status: OrderStatus::Open,
                side: Side::Sell,
            },
            Case {
                order_id: "1321052653536515585",
                venue_type: Some("Market tpslOrder"),
                trigger: Some("45000"),
                quote_volume: None,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(0.02),
                executed: dec!(0),
                status: OrderStatus::Open,
                side: Side::Sell,
            },
            Case {
                order_id: "1321052653536515586",
                venue_type: None,
                trigger: None,
                quote_volume: None,
                order_type: OrderType::Limit,
                price: Some(dec!(36000)),
                volume: dec!(0.01),
                executed: dec!(0),
                status: OrderStatus::Open,
                side: Side::Buy,
            },
        ],
    );
    check(
        Category::Linear,
        "http_order_realtime_conditional_linear.json",
        &[Case {
            order_id: "9a6e6b2c-0c3e-4f1e-8d5c-1f5b7e1c2d01",
            venue_type: Some("Market StopLoss"),
            trigger: Some("33000.00"),
            quote_volume: None,
            order_type: OrderType::Market,
            price: None,
            volume: dec!(0.010),
            executed: dec!(0),
            status: OrderStatus::Open,
            side: Side::Sell,
        }],
    );
    // A spot market buy sized in quote: 100 USDT bought 0.002702 BTC. The
    // volume is base (cumExecQty); the quote size is kept apart.
    check(
        Category::Spot,
        "http_order_history_quote_market.json",
        &[
            Case {
                order_id: "1321060000000000001",
                venue_type: Some("Market quoteCoin"),
                trigger: None,
                quote_volume: Some(dec!(100)),
                order_type: OrderType::Market,
                price: None,
                volume: dec!(0.002702),
                executed: dec!(0.002702),
                status: OrderStatus::Filled,
                side: Side::Buy,
            },
            Case {
                order_id: "1321060000000000002",
                venue_type: None,
                trigger: None,
                quote_volume: None,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(0.01),
                executed: dec!(0.01),
                status: OrderStatus::Filled,
                side: Side::Buy,
            },
        ],
    );
    // Another order type is foreign too, not a failure of the whole page.
    let (page, _): (ListResult<OrderRow>, _) = decode("http_order_realtime_conditional.json");
    let mut odd = page.list[2].clone();
    odd.order_type = "UNKNOWN".into();
    let o = parse::order_state_from(Category::Spot, &odd, None, 0).unwrap();
    assert_eq!(o.foreign.unwrap().venue_type, "UNKNOWN");
}

#[test]
fn envelope_integers_read_numbers_and_numeric_strings() {
    struct Case {
        ret_code: &'static str,
        time: &'static str,
        /// Ok((retCode, time)) or Err(text the error must contain).
        want: Result<(i64, i64), &'static str>,
    }
    let cases = [
        Case {
            ret_code: "0",
            time: "1700000000123",
            want: Ok((0, 1_700_000_000_123)),
        },
        Case {
            ret_code: r#""0""#,
            time: r#""1700000000123""#,
            want: Ok((0, 1_700_000_000_123)),
        },
        Case {
            ret_code: r#""10006""#,
            time: "1",
            want: Ok((10006, 1)),
        },
        Case {
            ret_code: r#""OK""#,
            time: "1",
            want: Err("field retCode: \"OK\" is not an integer"),
        },
        Case {
            ret_code: "0",
            time: r#""now""#,
            want: Err("field time: \"now\" is not an integer"),
        },
        Case {
            ret_code: "0.5",
            time: "1",
            want: Err("field retCode: 0.5 is not an integer"),
        },
    ];
    for c in cases {
        let body = format!(
            r#"{{"retCode":{},"retMsg":"OK","result":{{"timeSecond":"1700000000","timeNano":"1700000000123000000"}},"retExtInfo":{{}},"time":{}}}"#,
            c.ret_code, c.time
        );
        let got = decode_body::<ServerTime>(200, &body);
        match (got, c.want) {
            (Ok((_, time)), Ok((0, want_time))) => assert_eq!(time, want_time, "{body}"),
            (Err(BybitError::Api(api)), Ok((code, _))) => assert_eq!(api.code, code, "{body}"),
            (Err(e), Err(want)) => {
                assert!(matches!(e, BybitError::Decode(_)), "{body}: {e:?}");
                assert!(e.to_string().contains(want), "{body}: {e}");
            }
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }
}
