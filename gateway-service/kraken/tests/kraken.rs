//! The adapter against recorded fixtures and a local HTTP server speaking
//! Kraken's wire format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herd_kraken::budget::CounterKey;
use herd_kraken::common::credential::sign;
use herd_kraken::common::enums::ClientIdMode;
use herd_kraken::http::KrakenApiError;
use herd_kraken::http::decode_body;
use herd_kraken::http::models::{
    AddOrderResult, AssetPair, BalanceExEntry, CancelAllOrdersAfterResult, CancelOrderResult,
    ClosedOrdersResult, OhlcResult, OpenOrdersResult, OrderInfo, ServerTime, SystemStatus,
    TickerInfo, TradesHistoryResult,
};
use herd_kraken::parse::{self, PairDirectory};
use herd_kraken::{CREDENTIAL_SPEC, KrakenError, Resolution, Tier};
use herd_venue::{
    NewOrder, OrderRef, OrderStatus, OrderType, PlaceOutcome, Side, Venue, VenueError,
};
use rust_decimal_macros::dec;
use support::{MockKraken, Recorded, Reply, fixture, venue, venue_with, with_public};

fn dir() -> PairDirectory {
    let pairs: BTreeMap<String, AssetPair> =
        decode_body(200, &fixture("http_asset_pairs.json")).unwrap();
    PairDirectory::from_asset_pairs(&pairs, 60)
}

fn doge_order(id: &str) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        volume: dec!(100),
        price: Some(dec!(0.071)),
        post_only: true,
        userref: 120_001,
        reduce_only: false,
    }
}

#[test]
fn every_fixture_decodes() {
    fn ok<T: serde::de::DeserializeOwned>(name: &str) -> T {
        decode_body(200, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
    let t: ServerTime = ok("http_time.json");
    assert_eq!(t.unixtime, 1_700_000_100);
    let s: SystemStatus = ok("http_system_status.json");
    assert_eq!(s.timestamp, "2023-11-14T22:15:00Z");
    let _: BTreeMap<String, TickerInfo> = ok("http_ticker.json");
    let _: OhlcResult = ok("http_ohlc.json");
    let _: BTreeMap<String, BalanceExEntry> = ok("http_balance_ex.json");
    let _: OpenOrdersResult = ok("http_open_orders.json");
    let _: BTreeMap<String, OrderInfo> = ok("http_query_orders.json");
    let _: ClosedOrdersResult = ok("http_closed_orders.json");
    let a: AddOrderResult = ok("http_add_order.json");
    assert_eq!(a.txid, vec!["OU22CG-KLAF2-FWUDD7"]);
    let v: AddOrderResult = ok("http_add_order_validate.json");
    assert!(v.txid.is_empty());
    let c: CancelOrderResult = ok("http_cancel_order.json");
    assert_eq!(c.count, 1);
    let d: CancelAllOrdersAfterResult = ok("http_cancel_all_orders_after.json");
    assert_eq!(d.trigger_time, "2023-11-14T22:16:00Z");
    let h: TradesHistoryResult = ok("http_trades_history.json");
    assert_eq!(
        h.trades["TCCCTY-WE2O6-P3NB37"].ordertxid,
        "OU22CG-KLAF2-FWUDD7"
    );
    let w: CancelOrderResult = ok("http_warning_only.json");
    assert_eq!(w.count, 1, "warnings alone are not errors");
}

#[test]
fn error_envelopes_and_bad_payloads() {
    struct Case {
        file: &'static str,
        want: fn(&KrakenError) -> bool,
    }
    let cases = [
        Case {
            file: "http_error_invalid_nonce.json",
            want: |e| e.api() == Some(&KrakenApiError::InvalidNonce),
        },
        Case {
            file: "http_error_rate_limit.json",
            want: |e| e.api() == Some(&KrakenApiError::ApiRateLimit),
        },
        Case {
            file: "http_error_order_rate_limit.json",
            want: |e| e.api() == Some(&KrakenApiError::OrderRateLimit),
        },
        Case {
            file: "http_error_lockout.json",
            want: |e| e.api() == Some(&KrakenApiError::TemporaryLockout),
        },
        Case {
            file: "http_error_service_unavailable.json",
            want: |e| e.is_outcome_unknown(),
        },
        Case {
            file: "http_error_insufficient_funds.json",
            want: |e| e.api() == Some(&KrakenApiError::InsufficientFunds),
        },
        Case {
            file: "http_error_invalid_arguments.json",
            want: |e| e.api() == Some(&KrakenApiError::InvalidArguments(Some("volume".into()))),
        },
        // The rate limit wins over the first error: it changes what we do next.
        Case {
            file: "http_error_multiple.json",
            want: |e| e.api() == Some(&KrakenApiError::ApiRateLimit),
        },
        Case {
            file: "http_query_orders_missing_field.json",
            want: |e| matches!(e, KrakenError::Decode(_)),
        },
        Case {
            file: "http_open_orders_bad_status.json",
            want: |e| matches!(e, KrakenError::Decode(_)),
        },
    ];
    for c in cases {
        // Either shape: decode as the widest result type we use.
        let err = decode_body::<BTreeMap<String, OrderInfo>>(200, &fixture(c.file))
            .err()
            .or_else(|| decode_body::<OpenOrdersResult>(200, &fixture(c.file)).err())
            .unwrap_or_else(|| panic!("{}: decoded", c.file));
        assert!((c.want)(&err), "{}: {err:?}", c.file);
    }
    let html = decode_body::<ServerTime>(502, "<html>Bad Gateway</html>").unwrap_err();
    assert!(matches!(html, KrakenError::Http { status: 502, .. }));
    assert!(html.is_outcome_unknown());
    let empty = decode_body::<ServerTime>(200, "{\"error\":[]}").unwrap_err();
    assert!(matches!(empty, KrakenError::Decode(_)));
}

#[test]
fn instruments_from_asset_pairs() {
    let d = dir();
    let symbols: Vec<String> = d.instruments().into_iter().map(|i| i.symbol).collect();
    assert_eq!(
        symbols,
        vec!["BTCUSD", "DOGEUSD", "SOLUSD"],
        "dark pool left out"
    );
    let doge = d.get("DOGEUSD").unwrap();
    assert_eq!(doge.altname, "XDGUSD");
    for alias in ["XDGUSD", "xdgusd", "XDG/USD", "DOGEUSD"] {
        assert_eq!(d.get(alias).unwrap().altname, "XDGUSD", "{alias}");
    }
    assert_eq!(d.get("XBTUSD").unwrap().key, "XXBTZUSD");
    let i = &doge.instrument;
    assert_eq!((i.base.as_str(), i.quote.as_str()), ("DOGE", "USD"));
    assert_eq!(i.tick_size, dec!(0.0000001));
    assert_eq!((i.price_decimals, i.lot_decimals), (7, 8));
    assert_eq!((i.min_volume, i.min_cost), (dec!(50), dec!(0.5)));
    assert_eq!((i.maker_fee, i.taker_fee), (dec!(0.0025), dec!(0.004)));
    assert_eq!(i.max_open_orders, 60);
}

#[test]
fn orders_parse_to_herd_states() {
    let d = dir();
    let open: OpenOrdersResult = decode_body(200, &fixture("http_open_orders.json")).unwrap();
    let doge = &open.open["OU22CG-KLAF2-FWUDD7"];
    let s = parse::order_state_from("OU22CG-KLAF2-FWUDD7", doge, d.get(&doge.descr.pair), None)
        .unwrap();
    assert_eq!(s.symbol, "DOGEUSD");
    assert_eq!(s.client_order_id, "g1-s3-e-00042");
    assert_eq!(s.status, OrderStatus::Open);
    assert_eq!((s.volume, s.volume_executed), (dec!(100), dec!(40)));
    assert_eq!(s.price, Some(dec!(0.071)));
    assert_eq!(s.average_price, Some(dec!(0.071)));
    assert_eq!((s.fee, s.fee_asset.as_str()), (dec!(0.0071), "USD"));
    assert!(s.post_only);
    assert_eq!(s.opened_at_ms, 1_700_000_000_123);

    let q: BTreeMap<String, OrderInfo> =
        decode_body(200, &fixture("http_query_orders.json")).unwrap();
    let state = |txid: &str| {
        let i = &q[txid];
        parse::order_state_from(txid, i, d.get(&i.descr.pair), Some("from-tracker")).unwrap()
    };
    let filled = state("OU22CG-KLAF2-FWUDD7");
    assert_eq!(filled.status, OrderStatus::Filled);
    assert_eq!(
        filled.average_price,
        Some(dec!(0.07095)),
        "cost / vol_exec when price is 0"
    );
    assert_eq!(filled.closed_at_ms, Some(1_700_000_050_988));
    let post_only_reject = state("OQCLML-BW3P3-BUCMWZ");
    assert_eq!(post_only_reject.status, OrderStatus::Rejected);
    assert_eq!(post_only_reject.reason.as_deref(), Some("Post only order"));
    assert_eq!(
        post_only_reject.fee_asset, "DOGE",
        "a sell pays fees in base by default"
    );
    let market = state("O6CX3N-UMG5F-DDD3WW");
    assert_eq!((market.order_type, market.price), (OrderType::Market, None));
    assert_eq!(market.status, OrderStatus::Canceled);
    assert_eq!(market.client_order_id, "from-tracker");
    assert_eq!(market.userref, 0);
    assert_eq!(market.symbol, "BTCUSD");

    let odd: OpenOrdersResult =
        decode_body(200, &fixture("http_open_orders_unexpected_fields.json")).unwrap();
    let (txid, info) = odd.open.iter().next().unwrap();
    let s = parse::order_state_from(txid, info, d.get(&info.descr.pair), None).unwrap();
    assert_eq!(s.status, OrderStatus::Open, "pending is accepted, so open");
    assert_eq!((s.fee_asset.as_str(), s.post_only), ("DOGE", false), "fcib");
    assert_eq!(s.opened_at_ms, 1_700_000_300_000, "string timestamps too");
}

#[test]
fn market_data_and_balances_parse() {
    let t: BTreeMap<String, TickerInfo> = decode_body(200, &fixture("http_ticker.json")).unwrap();
    let tk = parse::ticker_from("DOGEUSD", &t["XDGUSD"], 5).unwrap();
    assert_eq!(
        (tk.bid, tk.ask, tk.last),
        (dec!(0.07121), dec!(0.071234), dec!(0.07122))
    );
    assert_eq!(tk.volume_24h, dec!(48123456.789));
    let o: OhlcResult = decode_body(200, &fixture("http_ohlc.json")).unwrap();
    let c = parse::candles_from(&o, 0).unwrap();
    assert_eq!(c.len(), 3, "the still-open last row is dropped");
    assert_eq!(c[0].open_time_ms, 1_700_000_040_000);
    assert_eq!((c[2].close, c[2].volume), (dec!(0.0713), dec!(5310)));
    let c = parse::candles_from(&o, 1_700_000_100_000).unwrap();
    assert_eq!(c.len(), 2);
    let b: BTreeMap<String, BalanceExEntry> =
        decode_body(200, &fixture("http_balance_ex.json")).unwrap();
    let bal = parse::balances_from_ex(&b);
    let get = |a: &str| bal.iter().find(|x| x.asset == a).unwrap().clone();
    assert_eq!(
        (get("USD").total, get("USD").free),
        (dec!(2543.521), dec!(2418.551))
    );
    assert_eq!(get("DOGE").free, dec!(12500));
    assert_eq!(
        get("DOT.S").free,
        dec!(10),
        "no hold_trade means nothing held"
    );
}

#[tokio::test]
async fn public_endpoints_through_the_venue() {
    let server = MockKraken::start(with_public(|_, _| Reply::status(404, "{}"))).await;
    let (v, _) = venue(&server.url, Tier::Pro);
    let instruments = v.instruments().await.unwrap();
    assert_eq!(instruments.len(), 3);
    let t = v.ticker("DOGEUSD").await.unwrap();
    assert_eq!(t.symbol, "DOGEUSD");
    let c = v.candles("DOGEUSD", 1, 1_700_000_100_000).await.unwrap();
    assert_eq!(c.len(), 2);
    assert!(matches!(
        v.candles("DOGEUSD", 3, 0).await,
        Err(VenueError::InvalidArgument(_))
    ));
    assert!(matches!(
        v.ticker("NOPEUSD").await,
        Err(VenueError::InvalidArgument(_))
    ));
    let ohlc = &server.calls("OHLC")[0];
    assert_eq!(ohlc.method, "GET");
    assert_eq!(
        ohlc.field("pair").as_deref(),
        Some("XDGUSD"),
        "the wire uses the altname"
    );
    assert_eq!(ohlc.field("interval").as_deref(), Some("1"));
    assert_eq!(ohlc.field("since").as_deref(), Some("1700000099"));
    assert_eq!(
        server.calls("AssetPairs").len(),
        1,
        "pairs are cached after instruments()"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.headers.contains_key("user-agent"))
    );
}

#[tokio::test]
async fn private_calls_are_signed_and_nonces_arrive_in_order() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "BalanceEx" => Reply::fixture("http_balance_ex.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Pro);
    let v = Arc::new(v);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let v = v.clone();
        tasks.push(tokio::spawn(async move { v.balances().await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 3);
    }
    let calls = server.calls("BalanceEx");
    assert_eq!(calls.len(), 16);
    let nonces: Vec<u64> = calls.iter().map(Recorded::nonce).collect();
    assert!(
        nonces.windows(2).all(|w| w[0] < w[1]),
        "arrival order: {nonces:?}"
    );
    let cred = CREDENTIAL_SPEC
        .parse(support::API_KEY, support::SECRET)
        .unwrap();
    for r in &calls {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["api-key"], support::API_KEY);
        assert!(r.body.starts_with("nonce="));
        assert!(r.headers["content-type"].starts_with("application/x-www-form-urlencoded"));
        assert_eq!(
            r.headers["api-sign"],
            sign(&cred, &r.path, r.nonce(), r.body.as_bytes())
        );
    }
    let rest = v
        .budget()
        .counters
        .into_iter()
        .find(|c| c.name == "rest")
        .unwrap();
    assert!(rest.level <= dec!(20) && rest.level > dec!(14), "{rest:?}");
}

#[tokio::test]
async fn place_order_sends_kraken_fields() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "AddOrder" => Reply::fixture("http_add_order.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Starter);
    let out = v.place_order(&doge_order("g1-s3-e-00042")).await.unwrap();
    let PlaceOutcome::Accepted(state) = out else {
        panic!("{out:?}")
    };
    assert_eq!(state.venue_order_id, "OU22CG-KLAF2-FWUDD7");
    assert_eq!(
        (state.status, state.symbol.as_str()),
        (OrderStatus::Open, "DOGEUSD")
    );
    let r = &server.calls("AddOrder")[0];
    let f = |k: &str| r.field(k);
    assert_eq!(f("pair").as_deref(), Some("XDGUSD"));
    assert_eq!(f("type").as_deref(), Some("buy"));
    assert_eq!(f("ordertype").as_deref(), Some("limit"));
    assert_eq!(f("price").as_deref(), Some("0.071"));
    assert_eq!(f("volume").as_deref(), Some("100"));
    assert_eq!(f("oflags").as_deref(), Some("post"));
    assert_eq!(f("cl_ord_id").as_deref(), Some("g1-s3-e-00042"));
    assert_eq!(
        f("userref"),
        None,
        "mutually exclusive with cl_ord_id on Kraken"
    );
    assert_eq!(
        f("deadline").as_deref(),
        Some("2023-11-14T22:13:53Z"),
        "T0 + 30 s"
    );
    let snap = v.budget();
    let trading = snap
        .counters
        .iter()
        .find(|c| c.name == "trading:XDGUSD")
        .unwrap();
    assert!(
        trading.level > dec!(0.9) && trading.level <= dec!(1),
        "{trading:?}"
    );
    let open = snap
        .counters
        .iter()
        .find(|c| c.name == "open_orders:XDGUSD")
        .unwrap();
    assert_eq!(open.level, dec!(1));

    let (both, _) = venue_with(&server.url, Tier::Starter, |c| {
        c.client_id_mode = ClientIdMode::Both
    });
    both.place_order(&doge_order("g1-s3-e-00043"))
        .await
        .unwrap();
    let r = &server.calls("AddOrder")[1];
    assert_eq!(r.field("userref").as_deref(), Some("120001"));
    assert_eq!(r.field("cl_ord_id").as_deref(), Some("g1-s3-e-00043"));

    let bad = v
        .place_order(&doge_order("a client id that is far too long"))
        .await;
    assert!(matches!(bad, Err(VenueError::InvalidArgument(_))));
    assert_eq!(server.calls("AddOrder").len(), 2, "refused before sending");
}

#[tokio::test]
async fn unknown_outcomes_are_never_resent() {
    let replies = [
        (
            "EService:Unavailable",
            Reply::fixture("http_error_service_unavailable.json"),
        ),
        (
            "EService:Busy",
            Reply::json(r#"{"error":["EService:Busy"]}"#),
        ),
        (
            "EService:Deadline elapsed",
            Reply::json(r#"{"error":["EService:Deadline elapsed"]}"#),
        ),
        (
            "EGeneral:Internal error",
            Reply::json(r#"{"error":["EGeneral:Internal error"]}"#),
        ),
        ("502", Reply::status(502, "<html>bad gateway</html>")),
        (
            "timeout",
            Reply::fixture("http_add_order.json").after(Duration::from_millis(1500)),
        ),
        ("garbage", Reply::json("{\"error\":[],\"result\":")),
    ];
    for (name, reply) in replies {
        let server = MockKraken::start(with_public(move |m, _| match m {
            "AddOrder" => reply.clone(),
            _ => Reply::status(404, "{}"),
        }))
        .await;
        let (v, _) = venue(&server.url, Tier::Starter);
        let out = v.place_order(&doge_order("c-1")).await.unwrap();
        assert!(
            matches!(out, PlaceOutcome::Unknown { .. }),
            "{name}: {out:?}"
        );
        assert_eq!(server.calls("AddOrder").len(), 1, "{name}: sent once");
        let again = v.place_order(&doge_order("c-1")).await;
        assert!(
            matches!(again, Err(VenueError::InvalidArgument(_))),
            "{name}: resend refused"
        );
        assert_eq!(server.calls("AddOrder").len(), 1, "{name}: still once");
        let open = v
            .budget()
            .counters
            .into_iter()
            .find(|c| c.name == "open_orders:XDGUSD");
        assert_eq!(
            open.map(|c| c.level),
            Some(dec!(1)),
            "{name}: counted as maybe open"
        );
    }
}

#[tokio::test]
async fn definite_rejections_are_errors() {
    type Check = fn(&VenueError) -> bool;
    let cases: [(&str, Check); 4] = [
        ("http_error_insufficient_funds.json", |e| {
            matches!(e, VenueError::InsufficientFunds(_))
        }),
        ("http_error_invalid_arguments.json", |e| {
            matches!(e, VenueError::InvalidArgument(_))
        }),
        ("http_error_invalid_nonce.json", |e| {
            matches!(e, VenueError::Auth(_))
        }),
        ("http_error_order_rate_limit.json", |e| {
            matches!(
                e,
                VenueError::RateLimited {
                    retry_after_ms: 1000,
                    ..
                }
            )
        }),
    ];
    for (file, want) in cases {
        let server = MockKraken::start(with_public(move |m, _| match m {
            "AddOrder" => Reply::fixture(file),
            _ => Reply::status(404, "{}"),
        }))
        .await;
        let (v, _) = venue(&server.url, Tier::Starter);
        let err = v.place_order(&doge_order("c-2")).await.unwrap_err();
        assert!(want(&err), "{file}: {err:?}");
        assert!(
            v.budget()
                .counters
                .iter()
                .all(|c| c.name != "open_orders:XDGUSD" || c.level == dec!(0))
        );
    }
}

#[tokio::test]
async fn order_rate_limit_answer_saturates_the_pair_counter() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "AddOrder" => Reply::fixture("http_error_order_rate_limit.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Starter);
    let _ = v.place_order(&doge_order("c-3")).await;
    let level = v.rate_budget().level(&CounterKey::Trading("XDGUSD".into()));
    assert!(level > 59.9, "model corrected to the threshold: {level}");
}

#[tokio::test]
async fn rest_rate_limit_answer_saturates_the_rest_counter() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "BalanceEx" => Reply::fixture("http_error_rate_limit.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Starter);
    let err = v.balances().await.unwrap_err();
    assert!(
        matches!(
            err,
            VenueError::RateLimited {
                retry_after_ms: 3031,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(v.rate_budget().level(&CounterKey::Rest) > 14.9);
}

#[tokio::test]
async fn lockout_stops_private_calls() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "BalanceEx" => Reply::fixture("http_error_lockout.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, wall) = venue(&server.url, Tier::Starter);
    let err = v.balances().await.unwrap_err();
    let until = support::T0_MS + 15 * 60 * 1000;
    assert!(
        matches!(err, VenueError::Lockout { until_ms, .. } if until_ms == until),
        "{err:?}"
    );
    assert_eq!(v.budget().locked_until_ms, Some(until));
    for _ in 0..3 {
        assert!(matches!(
            v.balances().await,
            Err(VenueError::Lockout { .. })
        ));
        assert!(matches!(
            v.place_order(&doge_order("c-4")).await,
            Err(VenueError::Lockout { .. })
        ));
    }
    assert_eq!(
        server.calls("BalanceEx").len(),
        1,
        "no private call during the lockout"
    );
    assert_eq!(server.calls("AddOrder").len(), 0);
    v.ticker("DOGEUSD").await.unwrap();
    wall.advance_ms(15 * 60 * 1000 + 1);
    assert_eq!(v.budget().locked_until_ms, None);
    let _ = v.balances().await;
    assert_eq!(server.calls("BalanceEx").len(), 2);
}

#[tokio::test]
async fn query_orders_batches_at_most_50() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "QueryOrders" => Reply::json(r#"{"error":[],"result":{}}"#),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Pro);
    let refs: Vec<OrderRef> = (0..120)
        .map(|i| OrderRef {
            client_order_id: format!("c{i}"),
            venue_order_id: Some(format!("O{i:05}-AAAAA-BBBBBB")),
        })
        .collect();
    assert!(v.query_orders(&refs).await.unwrap().is_empty());
    let sizes: Vec<usize> = server
        .calls("QueryOrders")
        .iter()
        .map(|r| r.field("txid").unwrap().split(',').count())
        .collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(v.max_query_batch(), 50);
}

#[tokio::test]
async fn unknown_submit_resolves_by_cl_ord_id() {
    let state = Arc::new(AtomicUsize::new(0));
    let s = state.clone();
    let server = MockKraken::start(with_public(move |m, _| {
        match (m, s.load(Ordering::SeqCst)) {
            ("AddOrder", _) => Reply::fixture("http_error_service_unavailable.json"),
            // 0: nowhere yet; 1: it is open; 2: it already filled and closed.
            ("OpenOrders", 1) => Reply::fixture("http_open_orders.json"),
            ("OpenOrders", _) => Reply::json(r#"{"error":[],"result":{"open":{}}}"#),
            ("ClosedOrders", 2) => Reply::fixture("http_closed_orders.json"),
            ("ClosedOrders", _) => Reply::json(r#"{"error":[],"result":{"closed":{},"count":0}}"#),
            _ => Reply::status(404, "{}"),
        }
    }))
    .await;
    let (v, wall) = venue(&server.url, Tier::Pro);

    let out = v.place_order(&doge_order("g1-s3-e-00042")).await.unwrap();
    assert!(matches!(out, PlaceOutcome::Unknown { .. }));
    assert_eq!(
        v.resolve_order("g1-s3-e-00042").await.unwrap(),
        Resolution::NotFound { conclusive: false }
    );
    let open_q = &server.calls("OpenOrders")[0];
    assert_eq!(open_q.field("cl_ord_id").as_deref(), Some("g1-s3-e-00042"));
    let closed_q = &server.calls("ClosedOrders")[0];
    assert_eq!(
        closed_q.field("cl_ord_id").as_deref(),
        Some("g1-s3-e-00042")
    );
    assert_eq!(closed_q.field("start").as_deref(), Some("1699999943"));

    state.store(1, Ordering::SeqCst);
    let Resolution::Found(found) = v.resolve_order("g1-s3-e-00042").await.unwrap() else {
        panic!()
    };
    assert_eq!(found.venue_order_id, "OU22CG-KLAF2-FWUDD7");
    assert_eq!(found.status, OrderStatus::Open);

    // A second unknown submit that filled before anyone looked.
    let out = v.place_order(&doge_order("g1-s3-e-00050")).await.unwrap();
    assert!(matches!(out, PlaceOutcome::Unknown { .. }));
    state.store(2, Ordering::SeqCst);
    let got = v
        .query_orders(&[OrderRef {
            client_order_id: "g1-s3-e-00050".into(),
            venue_order_id: None,
        }])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].venue_order_id.as_str(), got[0].status),
        ("OKJ7NU-IZ5G4-7FWJHB", OrderStatus::Filled)
    );

    // A third that never reached the book: final only after its deadline.
    state.store(0, Ordering::SeqCst);
    let _ = v.place_order(&doge_order("g1-s3-e-00051")).await.unwrap();
    assert_eq!(
        v.resolve_order("g1-s3-e-00051").await.unwrap(),
        Resolution::NotFound { conclusive: false }
    );
    wall.advance_ms(36_000);
    assert_eq!(
        v.resolve_order("g1-s3-e-00051").await.unwrap(),
        Resolution::NotFound { conclusive: true }
    );
    assert_eq!(server.calls("AddOrder").len(), 3, "nothing was resent");
}

#[tokio::test]
async fn cancel_penalty_follows_order_age() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "OpenOrders" => Reply::fixture("http_open_orders.json"),
        "CancelOrder" => Reply::fixture("http_cancel_order.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    // The DOGE order opened 2.9 s before T0, the XBT one about 17 minutes before.
    let (v, _) = venue(&server.url, Tier::Starter);
    let open = v.open_orders().await.unwrap();
    assert_eq!(open.len(), 2);
    let snap = v.budget();
    assert!(
        snap.counters
            .iter()
            .any(|c| c.name == "open_orders:XDGUSD" && c.level == dec!(1))
    );
    v.cancel_order(&OrderRef {
        client_order_id: "g1-s3-e-00042".into(),
        venue_order_id: Some("OU22CG-KLAF2-FWUDD7".into()),
    })
    .await
    .unwrap();
    let doge = v.rate_budget().level(&CounterKey::Trading("XDGUSD".into()));
    assert!((doge - 8.0).abs() < 0.05, "< 5 s old costs 8: {doge}");
    v.cancel_order(&OrderRef {
        client_order_id: String::new(),
        venue_order_id: Some("OB5VMB-B4U2U-DK2WRW".into()),
    })
    .await
    .unwrap();
    assert_eq!(
        v.rate_budget().level(&CounterKey::Trading("XBTUSD".into())),
        0.0,
        "older than 300 s is free"
    );
    let cancels = server.calls("CancelOrder");
    assert_eq!(
        cancels[0].field("txid").as_deref(),
        Some("OU22CG-KLAF2-FWUDD7")
    );
    assert!(
        v.budget()
            .counters
            .iter()
            .all(|c| !c.name.starts_with("open_orders:") || c.level == dec!(0))
    );
}

#[tokio::test]
async fn cancel_by_client_id_and_dead_mans_switch() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "CancelOrder" => Reply::fixture("http_cancel_order.json"),
        "CancelAllOrdersAfter" => Reply::fixture("http_cancel_all_orders_after.json"),
        "CancelAll" => Reply::fixture("http_cancel_all.json"),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Starter);
    v.cancel_order(&OrderRef {
        client_order_id: "g1-s9-x-1".into(),
        venue_order_id: None,
    })
    .await
    .unwrap();
    let c = &server.calls("CancelOrder")[0];
    assert_eq!(
        (c.field("cl_ord_id").as_deref(), c.field("txid")),
        (Some("g1-s9-x-1"), None)
    );
    let armed = v.cancel_all_orders_after(60).await.unwrap();
    assert_eq!(armed.trigger_time, "2023-11-14T22:16:00Z");
    assert_eq!(
        server.calls("CancelAllOrdersAfter")[0]
            .field("timeout")
            .as_deref(),
        Some("60")
    );
    assert_eq!(v.cancel_all().await.unwrap(), 4);
}

#[tokio::test]
async fn connect_failure_is_not_an_unknown_outcome() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = MockKraken::start(with_public(|_, _| Reply::status(404, "{}"))).await;
    let (v, _) = venue(&server.url, Tier::Starter);
    v.instruments().await.unwrap();
    let (dead, _) = venue(&format!("http://127.0.0.1:{port}"), Tier::Starter);
    assert!(matches!(
        dead.instruments().await,
        Err(VenueError::Transport(_))
    ));
}

/// An order Kraken lists as open in `OpenOrders` (opened a minute before T0).
fn open_order_json(txid: &str) -> String {
    format!(
        r#""{txid}":{{"refid":null,"userref":120001,"status":"open","opentm":1699999940.0,"starttm":0,"expiretm":0,
        "descr":{{"pair":"XDGUSD","type":"buy","ordertype":"limit","price":"0.0710000","price2":"0","leverage":"none",
        "order":"buy 100.00000000 XDGUSD @ limit 0.0710000","close":""}},
        "vol":"100.00000000","vol_exec":"0.00000000","cost":"0","fee":"0","price":"0","stopprice":"0","limitprice":"0",
        "misc":"","oflags":"fciq,post"}}"#
    )
}

/// A venue at Intermediate (80 open orders per pair; a trading counter of
/// 125 lets 80 adds through without waiting) that has placed 80 orders, on
/// a mock whose OpenOrders lists them all (`still_open`) or none (they
/// filled at once).
async fn full_pair(
    still_open: bool,
) -> (
    MockKraken,
    herd_kraken::KrakenVenue,
    herd_venue::ManualClock,
) {
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let a = accepted.clone();
    let server = MockKraken::start(with_public(move |m, _| match m {
        "AddOrder" => {
            let mut a = a.lock().unwrap();
            let txid = format!("O{:05}-AAAAA-BBBBBB", a.len());
            a.push(txid.clone());
            Reply::json(format!(
                r#"{{"error":[],"result":{{"descr":{{"order":"buy"}},"txid":["{txid}"]}}}}"#
            ))
        }
        "OpenOrders" => {
            let open: Vec<String> = if still_open {
                a.lock()
                    .unwrap()
                    .iter()
                    .map(|t| open_order_json(t))
                    .collect()
            } else {
                Vec::new()
            };
            Reply::json(format!(
                r#"{{"error":[],"result":{{"open":{{{}}}}}}}"#,
                open.join(",")
            ))
        }
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, wall) = venue(&server.url, Tier::Intermediate);
    for i in 0..80 {
        let placed = v.place_order(&doge_order(&format!("g1-s3-e-{i:05}"))).await;
        assert!(
            matches!(placed, Ok(PlaceOutcome::Accepted(_))),
            "{placed:?}"
        );
    }
    assert!(server.calls("OpenOrders").is_empty());
    wall.advance_ms(1_000);
    (server, v, wall)
}

#[tokio::test]
async fn open_order_limit_is_checked_with_kraken_before_refusing() {
    // By our count the pair is full, but those orders were accepted after
    // the last look (there was none) and Kraken says they all filled.
    let (server, v, _wall) = full_pair(false).await;
    let placed = v.place_order(&doge_order("g1-s3-e-00080")).await;
    assert!(
        matches!(placed, Ok(PlaceOutcome::Accepted(_))),
        "{placed:?}"
    );
    assert_eq!(
        server.calls("OpenOrders").len(),
        1,
        "one look before refusing"
    );
    assert_eq!(server.calls("AddOrder").len(), 81);

    // A true limit: Kraken lists all 80 as open. The look confirms the count
    // and the place is refused; the next refusal needs no look.
    let (server, v, _wall) = full_pair(true).await;
    let refused = v
        .place_order(&doge_order("g1-s3-e-00080"))
        .await
        .unwrap_err();
    assert!(matches!(refused, VenueError::OrderLimit(_)), "{refused:?}");
    assert_eq!(server.calls("OpenOrders").len(), 1);
    let again = v
        .place_order(&doge_order("g1-s3-e-00081"))
        .await
        .unwrap_err();
    assert!(matches!(again, VenueError::OrderLimit(_)), "{again:?}");
    assert_eq!(
        server.calls("OpenOrders").len(),
        1,
        "a confirmed count needs no look"
    );
    assert_eq!(server.calls("AddOrder").len(), 80);
}

/// What one order of a foreign-orders fixture must parse to.
struct ForeignCase {
    txid: &'static str,
    /// `None`: Herd's own kind of order, not foreign.
    venue_type: Option<&'static str>,
    trigger: Option<&'static str>,
    quote_volume: Option<rust_decimal::Decimal>,
    symbol: &'static str,
    side: Side,
    order_type: OrderType,
    price: Option<rust_decimal::Decimal>,
    volume: rust_decimal::Decimal,
    executed: rust_decimal::Decimal,
    status: OrderStatus,
}

fn check_foreign_cases(orders: &BTreeMap<String, OrderInfo>, cases: &[ForeignCase]) {
    let d = dir();
    assert_eq!(orders.len(), cases.len());
    for c in cases {
        let info = &orders[c.txid];
        let s = parse::order_state_from(c.txid, info, d.get(&info.descr.pair), None)
            .unwrap_or_else(|e| panic!("{}: {e}", c.txid));
        let f = s.foreign.as_ref();
        assert_eq!(f.map(|f| f.venue_type.as_str()), c.venue_type, "{}", c.txid);
        assert_eq!(
            f.and_then(|f| f.trigger.as_deref()),
            c.trigger,
            "{}",
            c.txid
        );
        assert_eq!(f.and_then(|f| f.quote_volume), c.quote_volume, "{}", c.txid);
        assert_eq!(s.venue_order_id, c.txid);
        assert_eq!(s.symbol, c.symbol, "{}", c.txid);
        assert_eq!(s.side, c.side, "{}", c.txid);
        assert_eq!(
            (s.order_type, s.price),
            (c.order_type, c.price),
            "{}",
            c.txid
        );
        assert_eq!(
            (s.volume, s.volume_executed),
            (c.volume, c.executed),
            "{}",
            c.txid
        );
        assert_eq!(s.status, c.status, "{}", c.txid);
    }
}

#[test]
fn orders_herd_cannot_model_parse_as_foreign() {
    let open: OpenOrdersResult =
        decode_body(200, &fixture("http_open_orders_foreign.json")).unwrap();
    check_foreign_cases(
        &open.open,
        &[
            ForeignCase {
                txid: "OU22CG-KLAF2-FWUDD7",
                venue_type: None,
                trigger: None,
                quote_volume: None,
                symbol: "DOGEUSD",
                side: Side::Buy,
                order_type: OrderType::Limit,
                price: Some(dec!(0.071)),
                volume: dec!(100),
                executed: dec!(0),
                status: OrderStatus::Open,
            },
            ForeignCase {
                txid: "OTP4NE-YZ2KP-G6ZOQW",
                venue_type: Some("take-profit"),
                trigger: Some("45000"),
                quote_volume: None,
                symbol: "BTCUSD",
                side: Side::Sell,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(0.01),
                executed: dec!(0),
                status: OrderStatus::Open,
            },
            ForeignCase {
                txid: "OSLL7Q-3DDUT-ZMH2VE",
                venue_type: Some("stop-loss-limit"),
                trigger: Some("30000"),
                quote_volume: None,
                symbol: "BTCUSD",
                side: Side::Sell,
                order_type: OrderType::Limit,
                price: Some(dec!(29900)),
                volume: dec!(0.02),
                executed: dec!(0),
                status: OrderStatus::Open,
            },
            ForeignCase {
                txid: "OTS5XH-KJ7PA-WQ4LCD",
                venue_type: Some("trailing-stop"),
                trigger: Some("+50.0000%"),
                quote_volume: None,
                symbol: "DOGEUSD",
                side: Side::Sell,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(500),
                executed: dec!(0),
                status: OrderStatus::Open,
            },
        ],
    );
    let sll = &open.open["OSLL7Q-3DDUT-ZMH2VE"];
    assert_eq!(sll.userref, Some(-5), "userref as a numeric string");

    let closed: ClosedOrdersResult =
        decode_body(200, &fixture("http_closed_orders_foreign.json")).unwrap();
    assert_eq!(closed.count, 3, "count as a numeric string");
    check_foreign_cases(
        &closed.closed,
        &[
            ForeignCase {
                txid: "OSP6RT-QWXL2-5ABHNE",
                venue_type: Some("settle-position"),
                trigger: None,
                quote_volume: None,
                symbol: "BTCUSD",
                side: Side::Buy,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(0),
                executed: dec!(0.005),
                status: OrderStatus::Filled,
            },
            // viqc: `vol` is 71 USD; in base only what executed is known.
            ForeignCase {
                txid: "OVQ3MB-7HCLX-ZRJ2PF",
                venue_type: Some("market"),
                trigger: None,
                quote_volume: Some(dec!(71)),
                symbol: "DOGEUSD",
                side: Side::Buy,
                order_type: OrderType::Market,
                price: None,
                volume: dec!(1000),
                executed: dec!(1000),
                status: OrderStatus::Filled,
            },
            ForeignCase {
                txid: "OB5VMB-B4U2U-DK2WRW",
                venue_type: None,
                trigger: None,
                quote_volume: None,
                symbol: "BTCUSD",
                side: Side::Sell,
                order_type: OrderType::Limit,
                price: Some(dec!(37500)),
                volume: dec!(0.001),
                executed: dec!(0),
                status: OrderStatus::Canceled,
            },
        ],
    );
}

#[tokio::test]
async fn a_foreign_order_never_fails_open_query_or_closed_orders() {
    let server = MockKraken::start(with_public(|m, _| match m {
        "OpenOrders" => Reply::json(fixture("http_open_orders_foreign.json")),
        "QueryOrders" => {
            let open: serde_json::Value =
                serde_json::from_str(&fixture("http_open_orders_foreign.json")).unwrap();
            Reply::json(
                serde_json::json!({"error": [], "result": open["result"]["open"]}).to_string(),
            )
        }
        "ClosedOrders" => Reply::json(fixture("http_closed_orders_foreign.json")),
        _ => Reply::status(404, "{}"),
    }))
    .await;
    let (v, _) = venue(&server.url, Tier::Pro);
    let open = v.open_orders().await.unwrap();
    assert_eq!(open.len(), 4, "every order of the answer");
    let own: Vec<&str> = open
        .iter()
        .filter(|s| !s.is_foreign())
        .map(|s| s.client_order_id.as_str())
        .collect();
    assert_eq!(own, ["g1-s3-e-00042"]);
    assert_eq!(open.iter().filter(|s| s.is_foreign()).count(), 3);

    let refs: Vec<OrderRef> = open
        .iter()
        .map(|s| OrderRef {
            client_order_id: s.client_order_id.clone(),
            venue_order_id: Some(s.venue_order_id.clone()),
        })
        .collect();
    let queried = v.query_orders(&refs).await.unwrap();
    assert_eq!(queried.len(), 4);
    assert_eq!(queried.iter().filter(|s| s.is_foreign()).count(), 3);

    // ClosedOrders answers the look-up by client id of an unknown submit:
    // the foreign orders beside it do not fail it.
    let r = v.resolve_order("not-there").await.unwrap();
    assert_eq!(r, Resolution::NotFound { conclusive: false });
    assert_eq!(server.calls("ClosedOrders").len(), 1);
}

#[test]
fn integer_fields_read_numbers_and_numeric_strings() {
    struct Case {
        what: &'static str,
        body: String,
        /// `Ok(value read)` or `Err(text the error must contain)`.
        want: Result<i64, &'static str>,
        read: fn(&str) -> Result<i64, KrakenError>,
    }
    fn order(userref: &str) -> String {
        format!(
            r#"{{"error":[],"result":{{"O1":{{"userref":{userref},"status":"open","opentm":1,
            "descr":{{"pair":"XDGUSD","type":"buy","ordertype":"limit","price":"1"}},
            "vol":"1","vol_exec":"0","cost":"0","fee":"0","price":"0"}}}}}}"#
        )
    }
    fn ohlc(last: &str, count: &str) -> String {
        format!(
            r#"{{"error":[],"result":{{"XDGUSD":[[1700000040,"1","1","1","1","1","1",{count}]],"last":{last}}}}}"#
        )
    }
    let userref = |b: &str| {
        decode_body::<BTreeMap<String, OrderInfo>>(200, b).map(|m| m["O1"].userref.unwrap_or(-1))
    };
    let closed_count = |b: &str| decode_body::<ClosedOrdersResult>(200, b).map(|r| r.count as i64);
    let cancel_count =
        |b: &str| decode_body::<CancelOrderResult>(200, b).map(|r| i64::from(r.count));
    let ohlc_last = |b: &str| decode_body::<OhlcResult>(200, b).map(|r| r.last);
    let ohlc_count =
        |b: &str| decode_body::<OhlcResult>(200, b).map(|r| r.rows.values().next().unwrap()[0].7);
    let closed =
        |count: &str| format!(r#"{{"error":[],"result":{{"closed":{{}},"count":{count}}}}}"#);
    let cancel = |count: &str| format!(r#"{{"error":[],"result":{{"count":{count}}}}}"#);
    let cases = [
        Case {
            what: "userref number",
            body: order("120001"),
            want: Ok(120_001),
            read: userref,
        },
        Case {
            what: "userref string",
            body: order(r#""120001""#),
            want: Ok(120_001),
            read: userref,
        },
        Case {
            what: "userref negative string",
            body: order(r#""-7""#),
            want: Ok(-7),
            read: userref,
        },
        Case {
            what: "userref null",
            body: order("null"),
            want: Ok(-1),
            read: userref,
        },
        Case {
            what: "userref junk",
            body: order(r#""abc""#),
            want: Err("field userref: \"abc\" is not an integer"),
            read: userref,
        },
        Case {
            what: "userref fraction",
            body: order("1.5"),
            want: Err("field userref: 1.5 is not an integer"),
            read: userref,
        },
        Case {
            what: "ClosedOrders count number",
            body: closed("3"),
            want: Ok(3),
            read: closed_count,
        },
        Case {
            what: "ClosedOrders count string",
            body: closed(r#""3""#),
            want: Ok(3),
            read: closed_count,
        },
        Case {
            what: "ClosedOrders count junk",
            body: closed(r#""many""#),
            want: Err("field count: \"many\" is not an integer"),
            read: closed_count,
        },
        Case {
            what: "ClosedOrders count negative",
            body: closed("-1"),
            want: Err("field count: -1 is out of range"),
            read: closed_count,
        },
        Case {
            what: "CancelOrder count string",
            body: cancel(r#""1""#),
            want: Ok(1),
            read: cancel_count,
        },
        Case {
            what: "CancelOrder count junk",
            body: cancel(r#""one""#),
            want: Err("field count: \"one\" is not an integer"),
            read: cancel_count,
        },
        Case {
            what: "OHLC last number",
            body: ohlc("1700000040", "14"),
            want: Ok(1_700_000_040),
            read: ohlc_last,
        },
        Case {
            what: "OHLC last string",
            body: ohlc(r#""1700000040""#, "14"),
            want: Ok(1_700_000_040),
            read: ohlc_last,
        },
        Case {
            what: "OHLC last junk",
            body: ohlc(r#""soon""#, "14"),
            want: Err("field last: \"soon\" is not an integer"),
            read: ohlc_last,
        },
        Case {
            what: "OHLC count string",
            body: ohlc("1", r#""14""#),
            want: Ok(14),
            read: ohlc_count,
        },
        Case {
            what: "OHLC count junk",
            body: ohlc("1", r#""x""#),
            want: Err("field OHLC count: \"x\" is not an integer"),
            read: ohlc_count,
        },
    ];
    for c in cases {
        match ((c.read)(&c.body), c.want) {
            (Ok(v), Ok(want)) => assert_eq!(v, want, "{}", c.what),
            (Err(e), Err(want)) => {
                assert!(matches!(e, KrakenError::Decode(_)), "{}: {e:?}", c.what);
                assert!(e.to_string().contains(want), "{}: {e}", c.what);
            }
            (got, want) => panic!("{}: got {got:?}, want {want:?}", c.what),
        }
    }
}
