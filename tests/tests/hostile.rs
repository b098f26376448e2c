//! Bad and hostile input: property tests (proptest) over the gRPC request
//! types, through the gateway's validation in-process and through the
//! gateway's and the engine's real servers, and over the Kraken and Bybit
//! JSON parsers (arbitrary JSON and mutated real-shaped responses): never a
//! panic, every refusal a typed error (INVALID_ARGUMENT naming the field
//! for a malformed request). Then, on the Kraken path with real processes:
//! an engine's token guessing another engine's order ids gets NOT_FOUND and
//! leaves them untouched; and no secret (API key, API secret, engine and
//! control tokens, the database password) reaches any log of a full run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use herd_gateway::convert::{MAX_CLIENT_ORDER_ID, new_order_from_pb};
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::kraken_herd::{HerdOpts, KrakenHerd, StoreKind};
use herd_tests::{
    CONTROL_TOKEN, EngineProc, GatewayProc, engine_client, engine_token, gateway_client, wait_until,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tonic::Code;

// ---------------------------------------------------------------- inputs

/// Strings a hostile client sends where a decimal belongs.
fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "-?[0-9]{0,12}(\\.[0-9]{0,12})?",
        1 => "[0-9]{1,40}",
        1 => "-?[0-9]\\.?[0-9]{0,3}[eE][+-]?[0-9]{1,4}",
        1 => prop::sample::select(vec![
            "", " ", "NaN", "nan", "inf", "-inf", "Infinity", "0", "-0", "0.0", "1e400",
            "1e-400", "79228162514264337593543950336", "0x10", "1,5", " 1 ", "١٢", "1_000",
            "--1", "+1", ".", "1.", ".5", "\u{0}", "💰",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Strings where an id or a symbol belongs.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{0,40}",
        1 => prop::sample::select(vec![
            "", "DOGEUSD", "BTCUSD", "e1-m-1", "../../etc/passwd", "' OR 1=1 --", "%s%n",
            "\u{202e}abc", "a\nb", "ÿ",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[a-z]{1000,2000}",
    ]
}

fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![3 => 0i32..4, 1 => any::<i32>()]
}

fn place_request() -> impl Strategy<Value = gpb::PlaceOrderRequest> {
    (
        id_text(),
        id_text(),
        enum_value(),
        enum_value(),
        decimal_text(),
        decimal_text(),
        any::<bool>(),
        any::<i32>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                client_order_id,
                symbol,
                side,
                order_type,
                volume,
                price,
                post_only,
                userref,
                reduce_only,
            )| {
                gpb::PlaceOrderRequest {
                    client_order_id,
                    symbol,
                    side,
                    order_type,
                    volume,
                    price,
                    post_only,
                    userref,
                    reduce_only,
                    strategy: String::new(),
                }
            },
        )
}

const PLACE_FIELDS: &[&str] = &[
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "volume",
    "price",
    "userref",
    "reduce_only",
    "post_only",
];

/// A refusal is INVALID_ARGUMENT whose message starts with a field name.
fn names_a_field(st: &tonic::Status, fields: &[&str]) -> bool {
    st.code() == Code::InvalidArgument
        && fields
            .iter()
            .any(|f| st.message().starts_with(&format!("{f}:")))
}

// --------------------------------------------- the gateway's validation

#[test]
fn place_order_validation_refuses_junk_by_name() {
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&place_request(), |r| {
            match new_order_from_pb(&r) {
                Ok(o) => {
                    // What passes is a well-formed order.
                    prop_assert!(o.volume > rust_decimal::Decimal::ZERO);
                    prop_assert!(o.price.is_none_or(|p| p > rust_decimal::Decimal::ZERO));
                    prop_assert!(!r.client_order_id.is_empty());
                    prop_assert!(r.client_order_id.len() <= MAX_CLIENT_ORDER_ID);
                    prop_assert!(matches!(r.side, 1 | 2) && matches!(r.order_type, 1 | 2));
                }
                Err(st) => prop_assert!(names_a_field(&st, PLACE_FIELDS), "{st:?} for {r:?}"),
            }
            Ok(())
        })
        .unwrap();
}

// ------------------------------------ the real servers, gateway and engine

/// Codes a well-behaved server may answer hostile input with. Internal,
/// Unknown (a handler panic) or Unavailable (a crash) are never acceptable.
fn acceptable(st: &tonic::Status) -> bool {
    matches!(
        st.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::Unimplemented
            | Code::OutOfRange
    ) && !st.message().is_empty()
}

#[test]
fn gateway_and_engine_servers_take_hostile_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut gw, mut engine) = rt.block_on(async {
        let gw = GatewayProc::start(
            dir.path(),
            2,
            "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n",
        )
        .await
        .unwrap();
        let engine = EngineProc::start(
            dir.path(),
            "e0",
            &gw.proc.addr,
            "regime_source = \"fixed\"\nfixed_regime = \"RANGING\"\n",
        )
        .await
        .unwrap();
        (gw, engine)
    });
    let gw_url = gw.proc.url();
    let engine_url = engine.proc.url();
    let as_e1 = rt
        .block_on(gateway_client(&gw_url, &engine_token("e1")))
        .unwrap();
    let control = rt.block_on(engine_client(&engine_url)).unwrap();
    let start = Instant::now();
    let config = || Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    };

    // PlaceOrder through the gateway's handler.
    TestRunner::new(config())
        .run(&place_request(), |r| {
            let mut c = as_e1.clone();
            let malformed = new_order_from_pb(&r).is_err();
            match rt.block_on(c.place_order(r.clone())) {
                Ok(_) => prop_assert!(!malformed, "accepted what validation refuses: {r:?}"),
                Err(st) => {
                    prop_assert!(acceptable(&st), "{st:?} for {r:?}");
                    if malformed {
                        prop_assert!(names_a_field(&st, PLACE_FIELDS), "{st:?} for {r:?}");
                    }
                }
            }
            Ok(())
        })
        .unwrap();

    // CancelOrder / QueryOrders / market data / funding with arbitrary ids.
    let other = (
        id_text(),
        prop::collection::vec(id_text(), 0..8),
        any::<u32>(),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
    );
    TestRunner::new(config())
        .run(&other, |(id, ids, n, t0, t1, seq)| {
            let mut c = as_e1.clone();
            let calls: Vec<(&str, Result<(), tonic::Status>)> = rt.block_on(async {
                vec![
                    (
                        "cancel",
                        c.cancel_order(gpb::CancelOrderRequest {
                            client_order_id: id.clone(),
                        })
                        .await
                        .map(|_| ()),
                    ),
                    (
                        "query",
                        c.query_orders(gpb::QueryOrdersRequest {
                            client_order_ids: ids.clone(),
                        })
                        .await
                        .map(|_| ()),
                    ),
                    (
                        "ticker",
                        c.get_ticker(gpb::GetTickerRequest { symbol: id.clone() })
                            .await
                            .map(|_| ()),
                    ),
                    (
                        "candles",
                        c.get_candles(gpb::GetCandlesRequest {
                            symbol: id.clone(),
                            interval_minutes: n,
                            since_ms: t0,
                        })
                        .await
                        .map(|_| ()),
                    ),
                    (
                        "open orders",
                        c.list_open_orders(gpb::ListOpenOrdersRequest { symbol: id.clone() })
                            .await
                            .map(|_| ()),
                    ),
                    (
                        "capacity",
                        c.get_capacity(gpb::GetCapacityRequest { symbol: id.clone() })
                            .await
                            .map(|_| ()),
                    ),
                    (
                        "funding rates",
                        c.list_funding_rates(gpb::ListFundingRatesRequest {
                            symbols: ids.clone(),
                        })
                        .await
                        .map(|_| ()),
                    ),
                    (
                        "funding payments",
                        c.list_funding_payments(gpb::ListFundingPaymentsRequest {
                            symbol: id.clone(),
                            since_ms: t0,
                            until_ms: t1,
                            limit: n,
                        })
                        .await
                        .map(|_| ()),
                    ),
                    (
                        "positions",
                        c.get_positions(gpb::GetPositionsRequest { symbol: id.clone() })
                            .await
                            .map(|_| ()),
                    ),
                    (
                        "stream",
                        // A stream is opened and dropped; only its opening is judged.
                        c.stream_order_events(gpb::StreamOrderEventsRequest {
                            after_sequence: seq,
                        })
                        .await
                        .map(|_| ()),
                    ),
                ]
            });
            for (what, r) in calls {
                if let Err(st) = r {
                    prop_assert!(acceptable(&st), "{what}: {st:?} for {id:?} / {ids:?}");
                }
            }
            Ok(())
        })
        .unwrap();

    // Regression (found by this test): a price whose count of ticks is
    // beyond Decimal's range made the gateway's order check panic.
    for (volume, price) in [
        ("10", "7923000000000000000000"),
        ("79228162514264337593543950335", "2"),
    ] {
        let r = rt.block_on(control.clone().submit_order(epb::SubmitOrderRequest {
            symbol: String::new(),
            side: "buy".into(),
            order_type: "limit".into(),
            volume: volume.into(),
            price: price.into(),
            post_only: false,
        }));
        let st = r.unwrap_err();
        assert!(acceptable(&st), "{volume} @ {price}: {st:?}");
    }

    // The engine's control server: SubmitOrder, CancelOrder, funding limits.
    let submit = (
        id_text(),
        prop::sample::select(vec!["buy", "sell", "BUY", "", "hold", "limit"])
            .prop_map(String::from),
        prop::sample::select(vec!["limit", "market", "", "stop", "LIMIT"]).prop_map(String::from),
        decimal_text(),
        decimal_text(),
        any::<bool>(),
    );
    TestRunner::new(config())
        .run(
            &submit,
            |(symbol, side, order_type, volume, price, post_only)| {
                let mut c = control.clone();
                let r = rt.block_on(c.submit_order(epb::SubmitOrderRequest {
                    symbol: symbol.clone(),
                    side: side.clone(),
                    order_type: order_type.clone(),
                    volume: volume.clone(),
                    price: price.clone(),
                    post_only,
                }));
                if let Err(st) = r {
                    prop_assert!(acceptable(&st), "{st:?}");
                    let bad_side = !matches!(side.to_ascii_lowercase().as_str(), "buy" | "sell");
                    let bad_type = !matches!(
                        order_type.to_ascii_lowercase().as_str(),
                        "limit" | "market" | ""
                    );
                    let bad_volume = !volume.chars().any(|c| c.is_ascii_digit());
                    if bad_side || bad_type || bad_volume {
                        prop_assert!(
                            names_a_field(&st, &["side", "order_type", "volume", "price"]),
                            "{st:?}"
                        );
                    }
                }
                let cancel = rt.block_on(c.cancel_order(epb::CancelOrderRequest {
                    client_order_id: symbol.clone(),
                }));
                if let Err(st) = cancel {
                    prop_assert!(acceptable(&st), "{st:?}");
                }
                let limits =
                    rt.block_on(c.set_funding_risk_limits(epb::SetFundingRiskLimitsRequest {
                        max_position_usd: volume.clone(),
                        max_total_exposure_usd: price.clone(),
                        max_positions: 3,
                        min_rate: volume.clone(),
                        exit_rate: price.clone(),
                        margin_alert: volume.clone(),
                        margin_critical: price.clone(),
                    }));
                if let Err(st) = limits {
                    prop_assert!(acceptable(&st), "{st:?}");
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "hostile requests through the servers took {:?}",
        start.elapsed()
    );

    // Both processes are alive and answering.
    rt.block_on(async {
        assert!(
            gw.proc.child.try_wait().unwrap().is_none(),
            "the gateway died"
        );
        assert!(
            engine.proc.child.try_wait().unwrap().is_none(),
            "the engine died"
        );
        as_e1
            .clone()
            .get_session(gpb::GetSessionRequest {})
            .await
            .unwrap();
        control
            .clone()
            .get_status(epb::GetStatusRequest {})
            .await
            .unwrap();
        let logs = gw.proc.log_text() + &engine.proc.log_text();
        assert!(!logs.contains("panicked"), "a panic in the logs");
        gw.proc.kill9().await.unwrap();
        engine.proc.kill9().await.unwrap();
    });
}

// ------------------------------------------------------ venue JSON parsers

/// Any JSON value, with keys that real responses use.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        decimal_text().prop_map(Value::String),
    ];
    let keys = prop::sample::select(vec![
        "error",
        "result",
        "open",
        "closed",
        "descr",
        "status",
        "vol",
        "vol_exec",
        "price",
        "opentm",
        "type",
        "ordertype",
        "pair",
        "last",
        "a",
        "b",
        "c",
        "v",
        "retCode",
        "retMsg",
        "list",
        "orderId",
        "orderLinkId",
        "qty",
        "cumExecQty",
        "orderStatus",
        "symbol",
        "category",
        "x",
    ])
    .prop_map(String::from);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every leaf's path in `v`.
fn leaf_paths(v: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                here.push(k.clone());
                leaf_paths(x, here, out);
                here.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                here.push(i.to_string());
                leaf_paths(x, here, out);
                here.pop();
            }
        }
        _ => out.push(here.clone()),
    }
}

/// `sample` with the leaf at `which` replaced by `with` (or removed).
fn mutate(sample: &Value, which: prop::sample::Index, with: Option<Value>) -> Value {
    let mut paths = Vec::new();
    leaf_paths(sample, &mut Vec::new(), &mut paths);
    let mut v = sample.clone();
    let path = which.get(&paths).clone();
    let Some((last, parents)) = path.split_last() else {
        return with.unwrap_or(Value::Null);
    };
    let mut cur = &mut v;
    for p in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(p).unwrap(),
            Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    match (cur, with) {
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Object(m), Some(x)) => {
            m.insert(last.clone(), x);
        }
        (Value::Array(a), with) => {
            a[last.parse::<usize>().unwrap()] = with.unwrap_or(Value::Null);
        }
        _ => {}
    }
    v
}

fn kraken_samples() -> Vec<Value> {
    vec![
        json!({"error": [], "result": {"open": {"OQCLML-BW3P3-BUCMWZ": {
            "refid": null, "userref": 1000, "cl_ord_id": "e0-m-1", "status": "open",
            "opentm": 1688666559.8974, "starttm": 0, "expiretm": 0,
            "descr": {"pair": "XDGUSD", "type": "buy", "ordertype": "limit", "price": "0.1000000",
                      "price2": "0", "leverage": "none", "order": "buy 100 XDGUSD @ limit 0.1"},
            "vol": "100.00000000", "vol_exec": "40.00000000", "cost": "4.0", "fee": "0.0104",
            "price": "0.1", "stopprice": "0", "limitprice": "0", "misc": "", "oflags": "fciq",
            "trades": ["TCCCTY-WE2O6-P3NB37"]}}}}),
        json!({"error": [], "result": {"XDGUSD": {
            "a": ["0.12010000", "1000", "1000.000"], "b": ["0.11990000", "5000", "5000.000"],
            "c": ["0.12000000", "10.0"], "v": ["100000", "250000"], "o": "0.11500000"}}}),
        json!({"error": [], "result": {"XDGUSD": [
            [1688671200, "0.1200", "0.1250", "0.1190", "0.1210", "0.1220", "12345.6", 42],
            [1688671260, "0.1210", "0.1230", "0.1200", "0.1220", "0.1215", "100.0", 3]],
            "last": 1688671200}}),
        json!({"error": [], "result": {"XDGUSD": {
            "altname": "XDGUSD", "wsname": "XDG/USD", "base": "XXDG", "quote": "ZUSD",
            "pair_decimals": 7, "lot_decimals": 8, "cost_decimals": 5, "ordermin": "50",
            "costmin": "0.5", "tick_size": "0.0000001", "status": "online",
            "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]]}}}),
        json!({"error": [], "result": {"ZUSD": {"balance": "1000.5", "hold_trade": "10"},
                                        "XXDG": {"balance": "100000", "credit": "0", "credit_used": "0"}}}),
        json!({"error": ["EAPI:Rate limit exceeded"]}),
    ]
}

/// Runs one body through every Kraken decoder and parser it could meet.
fn kraken_parse_all(body: &str) {
    use herd_kraken::http::decode_body;
    use herd_kraken::http::models::{
        AssetPair, BalanceExEntry, OhlcResult, OpenOrdersResult, TickerInfo,
    };
    use herd_kraken::parse;
    for status in [200u16, 502] {
        if let Ok(r) = decode_body::<OpenOrdersResult>(status, body) {
            for (txid, info) in &r.open {
                let _ = parse::order_state_from(txid, info, None, None);
                let _ = parse::order_state_from(txid, info, None, Some("e0-x"));
            }
        }
        if let Ok(r) = decode_body::<BTreeMap<String, TickerInfo>>(status, body) {
            for t in r.values() {
                let _ = parse::ticker_from("DOGEUSD", t, 0);
            }
        }
        if let Ok(r) = decode_body::<OhlcResult>(status, body) {
            let _ = parse::candles_from(&r, 0);
            let _ = parse::candles_from(&r, i64::MAX);
        }
        if let Ok(r) = decode_body::<BTreeMap<String, AssetPair>>(status, body) {
            let dir = parse::PairDirectory::from_asset_pairs(&r, 60);
            let _ = dir.instruments();
        }
        if let Ok(r) = decode_body::<BTreeMap<String, BalanceExEntry>>(status, body) {
            let _ = parse::balances_from_ex(&r);
        }
        // Whatever failed, failed as a typed error that prints.
        if let Err(e) = decode_body::<Value>(status, body) {
            let _ = e.to_string();
        }
    }
}

fn bybit_samples() -> Vec<Value> {
    let env = |result: Value| json!({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1_700_000_000_000i64});
    vec![
        env(
            json!({"category": "linear", "nextPageCursor": "", "list": [{
            "orderId": "fd4300ae-7847-404e-b947-b46980a4d140", "orderLinkId": "e0-m-1",
            "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "price": "30000",
            "qty": "0.010", "cumExecQty": "0.004", "cumExecValue": "120", "cumExecFee": "0.07",
            "avgPrice": "30000", "leavesQty": "0.006", "orderStatus": "PartiallyFilled",
            "timeInForce": "PostOnly", "reduceOnly": false, "rejectReason": "EC_NoError",
            "cancelType": "UNKNOWN", "createdTime": "1700000000000", "updatedTime": "1700000001000"}]}),
        ),
        env(json!({"category": "linear", "list": [{
            "symbol": "BTCUSDT", "lastPrice": "30000.5", "bid1Price": "30000", "ask1Price": "30001",
            "markPrice": "30000.2", "indexPrice": "30000.1", "fundingRate": "0.0001",
            "nextFundingTime": "1700006400000", "fundingIntervalHour": "8",
            "turnover24h": "1000000", "volume24h": "33.3"}]})),
        env(json!({"category": "linear", "list": [{
            "symbol": "BTCUSDT", "side": "Sell", "size": "0.01", "avgPrice": "30000",
            "markPrice": "30010", "positionValue": "300", "unrealisedPnl": "-0.1",
            "cumRealisedPnl": "1.2", "positionIM": "30", "positionMM": "3", "leverage": "10",
            "liqPrice": "33000", "updatedTime": "1700000000000"}]})),
        env(
            json!({"list": [{"accountType": "UNIFIED", "totalEquity": "10000", "totalWalletBalance": "9990",
            "totalMarginBalance": "10000", "totalAvailableBalance": "9000", "totalPerpUPL": "10",
            "totalInitialMargin": "1000", "totalMaintenanceMargin": "100", "accountIMRate": "0.1",
            "accountMMRate": "0.01", "coin": [{"coin": "USDT", "equity": "10000", "walletBalance": "9990",
            "locked": "0", "usdValue": "10000", "unrealisedPnl": "10", "cumRealisedPnl": "0"}]}]}),
        ),
        env(json!({"symbol": "BTCUSDT", "category": "linear", "list": [
            ["1700000000000", "30000", "30100", "29900", "30050", "12.5", "375000"]]})),
        json!({"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "time": 1}),
    ]
}

/// Runs one body through every Bybit decoder and parser it could meet.
fn bybit_parse_all(body: &str) {
    use herd_bybit::Category;
    use herd_bybit::http::decode_body;
    use herd_bybit::http::models::{
        KlineResult, ListResult, OrderRow, PositionRow, TickerRow, WalletBalanceResult,
    };
    use herd_bybit::parse;
    for status in [200u16, 403] {
        if let Ok((r, _)) = decode_body::<ListResult<OrderRow>>(status, body) {
            for row in &r.list {
                let _ = parse::order_state_from(Category::Linear, row, None, 0);
                let _ = parse::order_state_from(Category::Spot, row, None, 1000);
            }
        }
        if let Ok((r, _)) = decode_body::<ListResult<TickerRow>>(status, body) {
            for row in &r.list {
                let _ = parse::ticker_from("BTCUSDT-PERP", row, 0);
                let _ = parse::funding_from("BTCUSDT-PERP", row, Some(8), 0);
                let _ = parse::funding_from("BTCUSDT-PERP", row, None, i64::MAX);
            }
        }
        if let Ok((r, _)) = decode_body::<ListResult<PositionRow>>(status, body) {
            for row in &r.list {
                let _ = parse::position_from(row, "USDT");
            }
        }
        if let Ok((r, _)) = decode_body::<WalletBalanceResult>(status, body) {
            for a in &r.list {
                let _ = parse::balances_from(a);
                let _ = parse::margin_from(a, 0);
            }
        }
        if let Ok((r, _)) = decode_body::<KlineResult>(status, body) {
            let _ = parse::candles_from(&r);
        }
        if let Err(e) = decode_body::<Value>(status, body) {
            let _ = e.to_string();
        }
    }
}

fn parser_config() -> Config {
    Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn kraken_parsers_take_arbitrary_and_mutated_json() {
    let samples = kraken_samples();
    for s in &samples {
        kraken_parse_all(&s.to_string());
    }
    let mut runner = TestRunner::new(parser_config());
    // Arbitrary JSON, bare and in Kraken's envelope.
    runner
        .run(&json_value(), |v| {
            kraken_parse_all(&v.to_string());
            kraken_parse_all(&json!({"error": [], "result": v}).to_string());
            Ok(())
        })
        .unwrap();
    // Real-shaped answers with one leaf replaced or removed.
    let mutation = (
        prop::sample::select(samples),
        any::<prop::sample::Index>(),
        prop::option::of(json_value()),
    );
    runner
        .run(&mutation, |(sample, which, with)| {
            kraken_parse_all(&mutate(&sample, which, with).to_string());
            Ok(())
        })
        .unwrap();
    // Bodies that are not JSON at all (a proxy's HTML, truncation).
    runner
        .run(&any::<String>(), |s| {
            kraken_parse_all(&s);
            Ok(())
        })
        .unwrap();
}

#[test]
fn bybit_parsers_take_arbitrary_and_mutated_json() {
    let samples = bybit_samples();
    for s in &samples {
        bybit_parse_all(&s.to_string());
    }
    let mut runner = TestRunner::new(parser_config());
    runner
        .run(&json_value(), |v| {
            bybit_parse_all(&v.to_string());
            bybit_parse_all(&json!({"retCode": 0, "retMsg": "OK", "result": v}).to_string());
            Ok(())
        })
        .unwrap();
    let mutation = (
        prop::sample::select(samples),
        any::<prop::sample::Index>(),
        prop::option::of(json_value()),
    );
    runner
        .run(&mutation, |(sample, which, with)| {
            bybit_parse_all(&mutate(&sample, which, with).to_string());
            Ok(())
        })
        .unwrap();
    runner
        .run(&any::<String>(), |s| {
            bybit_parse_all(&s);
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------- cross-tenant on the Kraken path

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_guessing_another_engines_ids_gets_not_found_on_kraken() {
    let h = KrakenHerd::start(sim_bin(), HerdOpts::default())
        .await
        .unwrap();
    // e1 places three orders through its engine.
    let mut theirs = Vec::new();
    for k in 0..3 {
        theirs.push(h.submit_ok(1, &format!("0.10{k}")).await.unwrap());
    }
    let mine = h.submit_ok(0, "0.099").await.unwrap();
    let venue = h.admin().orders().await.unwrap();
    let txids: Vec<String> = venue
        .iter()
        .filter(|o| o["cl_ord_id"].as_str().unwrap().starts_with("e1-"))
        .map(|o| o["txid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(txids.len(), 3);
    // Guesses: e1's exact ids, the venue-side ids with the prefix, the
    // prefix swapped to e0's, the txids, and the next ids of e1's counter.
    let mut guesses: BTreeSet<String> = BTreeSet::new();
    for id in &theirs {
        guesses.insert(id.clone());
        guesses.insert(format!("e1-{id}"));
        guesses.insert(format!("e0-{id}"));
        let (run, _) = id.split_at(id.len() - 1);
        for c in ['4', '5', '6', 'z'] {
            guesses.insert(format!("{run}{c}"));
        }
    }
    guesses.extend(txids.iter().cloned());
    guesses.remove(&mine);
    let mut as_e0 = gateway_client(&format!("http://{}", h.gateway_addr()), &engine_token("e0"))
        .await
        .unwrap();
    for g in &guesses {
        let q = as_e0
            .query_orders(gpb::QueryOrdersRequest {
                client_order_ids: vec![g.clone()],
            })
            .await;
        match q {
            Err(st) => assert!(
                matches!(st.code(), Code::NotFound | Code::InvalidArgument),
                "query {g}: {st:?}"
            ),
            Ok(r) => assert!(
                r.into_inner().orders.is_empty(),
                "e0 read an order it does not own with {g:?}"
            ),
        }
        let c = as_e0
            .cancel_order(gpb::CancelOrderRequest {
                client_order_id: g.clone(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(c.code(), Code::NotFound | Code::InvalidArgument),
            "cancel {g}: {c:?}"
        );
        // The engine's own control server refuses them too (it asks the
        // gateway with its own token).
        let via_engine = h.cancel(0, g).await.unwrap();
        assert!(via_engine.is_err(), "e0's engine canceled {g}");
    }
    // Nothing of e1's was touched; e0's ListOpenOrders shows only its own.
    let open = as_e0
        .list_open_orders(gpb::ListOpenOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(
        open.iter()
            .map(|o| o.client_order_id.clone())
            .collect::<Vec<_>>(),
        vec![mine.clone()]
    );
    let report = h
        .converge(Duration::from_secs(20), &vec![BTreeSet::new(); 2])
        .await
        .unwrap();
    assert_eq!(report.venue_orders["e1"], 3);
    let venue = h.admin().orders().await.unwrap();
    assert!(
        venue.iter().all(|o| o["status"] == "open"),
        "every order still open: {venue:?}"
    );
    eprintln!("{} guesses refused", guesses.len());
}

// ----------------------------------------------------- secrets in the logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_any_log_of_a_full_kraken_run() {
    use herd_tests::kraken_harness::{API_KEY, API_SECRET};
    // Postgres when available, with a password in the URL (the test server
    // trusts local connections, so any password works).
    const DB_PASSWORD: &str = "pw-Zq8vN3xK1-secret";
    let store = match std::env::var("TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres://") && !base.contains('@') => {
            eprintln!("TEST_DATABASE_URL has no user: the database password is not checked");
            StoreKind::Sqlite
        }
        Ok(base) if base.starts_with("postgres://") => {
            let (scheme_user, host) = base.split_once('@').unwrap();
            let user = scheme_user.split(':').take(2).collect::<Vec<_>>().join(":");
            StoreKind::Postgres {
                base_url: format!("{user}:{DB_PASSWORD}@{host}"),
            }
        }
        _ => {
            eprintln!(
                "TEST_DATABASE_URL is unset: SQLite engines, the database password is not checked"
            );
            StoreKind::Sqlite
        }
    };
    let with_db = matches!(store, StoreKind::Postgres { .. });
    let mut h = KrakenHerd::start(
        sim_bin(),
        HerdOpts {
            store,
            rust_log: "debug,h2=info,hyper=info,tower=info,sqlx=info",
            ..HerdOpts::default()
        },
    )
    .await
    .unwrap();
    // Exercise the error paths: bad tokens, refused orders, venue faults, a
    // lockout, a gateway restart.
    let gw_url = format!("http://{}", h.gateway_addr());
    let mut wrong = gateway_client(&gw_url, "not-a-token").await.unwrap();
    assert_eq!(
        wrong
            .get_session(gpb::GetSessionRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut bad_control = herd_proto::engine::engine_client::EngineClient::connect(format!(
        "http://{}",
        h.engines[0].proc.as_ref().unwrap().proc.addr
    ))
    .await
    .unwrap();
    assert!(
        bad_control
            .get_status(epb::GetStatusRequest {})
            .await
            .is_err()
    );
    h.submit_ok(0, "0.1").await.unwrap();
    assert!(h.submit(0, "junk").await.unwrap().is_err());
    h.admin()
        .set_faults(json!([
            {"method": "AddOrder", "kind": {"type": "http_status", "status": 502}, "times": 1},
            {"method": "OpenOrders", "kind": {"type": "error", "error": "EService:Unavailable"}, "times": 2},
            {"method": "QueryOrders", "kind": {"type": "http_status", "status": 504}, "times": 1}
        ]))
        .await
        .unwrap();
    let _ = h.submit(1, "0.1").await.unwrap();
    let _ = h.submit(1, "0.101").await.unwrap();
    wait_until(
        "the faults to be used up",
        Duration::from_secs(20),
        || async { Ok((h.admin().stats().await?["fault_hits"].as_u64() >= Some(3)).then_some(())) },
    )
    .await
    .unwrap();
    h.admin().clear_faults().await.unwrap();
    h.admin().lockout(500).await.unwrap();
    let _ = h.submit(0, "0.102").await.unwrap();
    h.kill_gateway().await.unwrap();
    h.start_gateway().await.unwrap();
    wait_until(
        "e0 back on the gateway",
        Duration::from_secs(30),
        || async { Ok(h.status(0).await.ok().filter(|s| s.gateway_connected)) },
    )
    .await
    .unwrap();
    wait_until(
        "e1 places after the restart",
        Duration::from_secs(20),
        || async { Ok(h.submit(1, "0.103").await?.ok()) },
    )
    .await
    .unwrap();

    let mut secrets: Vec<(&str, String)> = vec![
        ("API key", API_KEY.to_string()),
        ("API secret", API_SECRET.to_string()),
        // A fragment of the secret as logged in another encoding would
        // still start like this.
        ("API secret prefix", API_SECRET[..16].to_string()),
        ("engine token e0", engine_token("e0")),
        ("engine token e1", engine_token("e1")),
        ("control token", CONTROL_TOKEN.to_string()),
        ("admin token", herd_tests::ADMIN_TOKEN.to_string()),
    ];
    if with_db {
        secrets.push(("database password", DB_PASSWORD.to_string()));
    }
    let logs = h.all_logs();
    let mut total = 0;
    for path in &logs {
        let text = std::fs::read_to_string(path).unwrap();
        total += text.len();
        for (what, s) in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "the {what} is in {}",
                path.display()
            );
        }
    }
    // The logs are not empty: debug logging of the whole run was searched.
    assert!(total > 10_000, "only {total} bytes of logs");
    assert!(logs.len() >= 4, "{logs:?}");
    eprintln!(
        "{} logs, {total} bytes, searched for {} secrets (database password: {})",
        logs.len(),
        secrets.len(),
        if with_db { "yes" } else { "no, SQLite" }
    );
    h.cleanup().await.unwrap();
}
