//! kraken-sim on the wire: a hand-written HTTP request signed by hand, and
//! herd-kraken's raw client, against the simulator running as a process.
//! Checks Kraken's envelope, names, error strings and limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herd_kraken::common::enums::{KrakenOrderType, KrakenSide};
use herd_kraken::http::query::{AddOrderParams, CancelTarget, OpenOrdersParams, QueryOrdersParams};
use herd_kraken::http::{HttpConfig, KrakenApiError, KrakenError};
use herd_kraken::nonce::NonceGenerator;
use herd_kraken::{CREDENTIAL_SPEC, KrakenHttpClient};
use herd_tests::kraken_harness::{API_KEY, API_SECRET, SimProcess};
use hmac::{Hmac, Mac};
use rust_decimal_macros::dec;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

/// One HTTP/1.1 request written by hand; returns (status, JSON body).
async fn raw(addr: std::net::SocketAddr, request: String) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

fn hand_sign(path: &str, nonce: &str, body: &str) -> String {
    let secret = BASE64.decode(API_SECRET).unwrap();
    let mut sha = Sha256::new();
    sha.update(nonce.as_bytes());
    sha.update(body.as_bytes());
    let mut mac = Hmac::<Sha512>::new_from_slice(&secret).unwrap();
    mac.update(path.as_bytes());
    mac.update(&sha.finalize());
    BASE64.encode(mac.finalize().into_bytes())
}

fn private_request(path: &str, key: &str, sign: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: api.kraken.com\r\nUser-Agent: hand-written\r\n\
         API-Key: {key}\r\nAPI-Sign: {sign}\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn client(url: &str) -> KrakenHttpClient {
    KrakenHttpClient::new(
        &HttpConfig {
            base_url: url.to_string(),
            ..HttpConfig::default()
        },
        Some(CREDENTIAL_SPEC.parse(API_KEY, API_SECRET).unwrap()),
        NonceGenerator::new(None).unwrap(),
    )
    .unwrap()
}

fn api_error(r: Result<impl std::fmt::Debug, KrakenError>) -> KrakenApiError {
    match r {
        Err(KrakenError::Api { error, .. }) => error,
        other => panic!("expected a Kraken error, got {other:?}"),
    }
}

fn buy(pair: &str, volume: rust_decimal::Decimal, price: rust_decimal::Decimal) -> AddOrderParams {
    AddOrderParams {
        pair: pair.into(),
        side: KrakenSide::Buy,
        ordertype: KrakenOrderType::Limit,
        volume,
        price: Some(price),
        post_only: false,
        userref: None,
        cl_ord_id: None,
        deadline: None,
        validate: false,
    }
}

#[tokio::test]
async fn hand_written_requests_get_krakens_answers() {
    let sim = SimProcess::spawn(sim_bin(), "starter", &[]).await.unwrap();
    let (status, time) = raw(
        sim.addr,
        "GET /0/public/Time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(time["error"], serde_json::json!([]));
    assert!(time["result"]["unixtime"].as_i64().unwrap() > 1_700_000_000);
    assert!(
        time["result"]["rfc1123"]
            .as_str()
            .unwrap()
            .ends_with("+0000")
    );

    let (_, pairs) = raw(
        sim.addr,
        "GET /0/public/AssetPairs?pair=XDGUSD HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await;
    let doge = &pairs["result"]["XDGUSD"];
    assert_eq!(doge["altname"], "XDGUSD");
    assert_eq!(doge["base"], "XXDG");
    assert_eq!(doge["quote"], "ZUSD");
    assert!(doge["tick_size"].is_string() && doge["ordermin"].is_string());

    let path = "/0/private/Balance";
    let nonce = "1700000000000001";
    let body = format!("nonce={nonce}");
    let sign = hand_sign(path, nonce, &body);
    let (status, bal) = raw(sim.addr, private_request(path, API_KEY, &sign, &body)).await;
    assert_eq!(status, 200);
    assert_eq!(bal["error"], serde_json::json!([]), "{bal}");
    assert!(bal["result"]["ZUSD"].as_str().unwrap().contains('.'));
    assert!(bal["result"]["XXDG"].is_string());

    // The same nonce again, a bad signature and an unknown key.
    let cases = [
        (API_KEY, sign.clone(), body.clone(), "EAPI:Invalid nonce"),
        (
            API_KEY,
            hand_sign(path, "1700000000000002", "nonce=1700000000000003"),
            "nonce=1700000000000002".to_string(),
            "EAPI:Invalid signature",
        ),
        (
            "someone-else",
            sign.clone(),
            body.clone(),
            "EAPI:Invalid key",
        ),
    ];
    for (key, sign, body, want) in cases {
        let (_, v) = raw(sim.addr, private_request(path, key, &sign, &body)).await;
        assert_eq!(v["error"][0], want, "{v}");
    }

    // A signed AddOrder, as Kraken's documentation spells it.
    let path = "/0/private/AddOrder";
    let nonce = "1700000000000010";
    let body = format!(
        "nonce={nonce}&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&cl_ord_id=hand-1"
    );
    let sign = hand_sign(path, nonce, &body);
    let (_, v) = raw(sim.addr, private_request(path, API_KEY, &sign, &body)).await;
    assert_eq!(v["error"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["result"]["descr"]["order"],
        "buy 1.25000000 XBTUSD @ limit 37500.0"
    );
    let txid = v["result"]["txid"][0].as_str().unwrap();
    let parts: Vec<usize> = txid.split('-').map(str::len).collect();
    assert_eq!(parts, [6, 5, 6], "{txid}");
    assert!(txid.starts_with('O'));
}

#[tokio::test]
async fn herd_kraken_raw_client_against_the_sim() {
    let sim = SimProcess::spawn(sim_bin(), "starter", &[]).await.unwrap();
    let k = client(&sim.url());
    let pairs = k.asset_pairs(&[]).await.unwrap();
    assert_eq!(pairs["XDGUSD"].altname, "XDGUSD");
    assert_eq!(pairs["XXBTZUSD"].altname, "XBTUSD");
    let t = k.ticker("XDGUSD").await.unwrap();
    assert_eq!(t["XDGUSD"].c[0], dec!(0.12));
    let ohlc = k.ohlc("XDGUSD", 5, None).await.unwrap();
    assert!(ohlc.rows["XDGUSD"].len() >= 10);
    assert!(k.balance_ex().await.unwrap()["ZUSD"].balance > dec!(0));

    // validate places nothing; deadline in the past; post-only that takes.
    let mut v = buy("XDGUSD", dec!(100), dec!(0.1));
    v.validate = true;
    let r = k.add_order(&v).await.unwrap();
    assert!(r.txid.is_empty());
    assert_eq!(r.descr.order, "buy 100.00000000 XDGUSD @ limit 0.1000000");
    let mut late = buy("XDGUSD", dec!(100), dec!(0.1));
    late.deadline = Some("2020-01-01T00:00:00Z".into());
    assert_eq!(
        api_error(k.add_order(&late).await),
        KrakenApiError::DeadlineElapsed
    );
    let mut taker = buy("XDGUSD", dec!(100), dec!(0.2));
    taker.post_only = true;
    assert_eq!(
        api_error(k.add_order(&taker).await),
        KrakenApiError::PostOnly
    );
    assert_eq!(
        api_error(k.add_order(&buy("XDGUSD", dec!(1), dec!(0.1))).await),
        KrakenApiError::OrderMinimumNotMet
    );
    assert_eq!(
        api_error(
            k.add_order(&buy("XDGUSD", dec!(100), dec!(0.10000001)))
                .await
        ),
        KrakenApiError::TickSizeCheckFailed
    );

    // cl_ord_id and userref orders, found again by their filters.
    let mut a = buy("XDGUSD", dec!(100), dec!(0.1));
    a.cl_ord_id = Some("wire-a".into());
    let ta = k.add_order(&a).await.unwrap().txid[0].clone();
    assert_eq!(
        api_error(k.add_order(&a).await),
        KrakenApiError::InvalidArguments(Some("cl_ord_id".into())),
        "a cl_ord_id is unique among open orders"
    );
    let mut b = buy("XDGUSD", dec!(100), dec!(0.1));
    b.userref = Some(77);
    let tb = k.add_order(&b).await.unwrap().txid[0].clone();
    let by_cl = k
        .open_orders(&OpenOrdersParams {
            cl_ord_id: Some("wire-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_cl.open.keys().collect::<Vec<_>>(), [&ta]);
    let by_ref = k
        .open_orders(&OpenOrdersParams {
            userref: Some(77),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_ref.open.keys().collect::<Vec<_>>(), [&tb]);
    assert_eq!(by_ref.open[&tb].userref, Some(77));

    // QueryOrders: 50 ids at most (the client refuses 51 itself).
    let q = k
        .query_orders(&QueryOrdersParams {
            txids: vec![ta.clone(), tb.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.len(), 2);
    assert!(matches!(
        k.query_orders(&QueryOrdersParams {
            txids: vec![ta.clone(); 51],
            ..Default::default()
        })
        .await,
        Err(KrakenError::Request(_))
    ));

    // A fill when the price crosses, then cancel by cl_ord_id of a filled order fails.
    sim.admin().set_price("XDGUSD", "0.09").await.unwrap();
    let q = k
        .query_orders(&QueryOrdersParams {
            txids: vec![ta.clone()],
            trades: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let info = &q[&ta];
    assert_eq!(info.vol_exec, dec!(100));
    assert_eq!(info.price, dec!(0.1));
    assert_eq!(info.trades.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        api_error(
            k.cancel_order(&CancelTarget::ClOrdId("wire-a".into()))
                .await
        ),
        KrakenApiError::UnknownOrder
    );
    let trades = k.trades_history(&Default::default()).await.unwrap();
    assert_eq!(trades.count, 2);
    let closed = k.closed_orders(&Default::default()).await.unwrap();
    assert_eq!(closed.closed.len(), 2);

    // The dead man's switch answers with its trigger time.
    let dms = k.cancel_all_orders_after(60).await.unwrap();
    assert_ne!(dms.trigger_time, "0");
    assert_eq!(
        k.cancel_all_orders_after(0).await.unwrap().trigger_time,
        "0"
    );
}

#[tokio::test]
async fn limits_are_enforced_with_krakens_errors() {
    let sim = SimProcess::spawn(
        sim_bin(),
        "starter",
        &["--lockout-after", "3", "--lockout-ms", "2000"],
    )
    .await
    .unwrap();
    let k = client(&sim.url());
    // Trading counter: fresh cancels cost 8 each on top of the adds (60 at Starter).
    let mut txids = Vec::new();
    for _ in 0..8 {
        txids.push(
            k.add_order(&buy("XBTUSD", dec!(0.001), dec!(50000)))
                .await
                .unwrap()
                .txid[0]
                .clone(),
        );
    }
    let mut refused = None;
    for (i, t) in txids.iter().enumerate() {
        if let Err(e) = k.cancel_order(&CancelTarget::Txid(t.clone())).await {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("the trading counter must refuse a cancel");
    assert_eq!(
        i, 6,
        "8 adds + 6 cancels = 56 fit, the 7th cancel (64) does not"
    );
    assert_eq!(e.api(), Some(&KrakenApiError::OrderRateLimit));
    // REST counter: 15 at Starter (AddOrder and CancelOrder do not count there).
    for _ in 0..15 {
        k.balance().await.unwrap();
    }
    assert_eq!(api_error(k.balance().await), KrakenApiError::ApiRateLimit);
    // The third violation within a minute earns the lockout.
    assert_eq!(api_error(k.balance().await), KrakenApiError::ApiRateLimit);
    assert_eq!(
        api_error(k.balance().await),
        KrakenApiError::TemporaryLockout
    );
    let stats = sim.admin().stats().await.unwrap();
    assert_eq!(stats["stats"]["rate_limit_errors"], 3);
    assert!(stats["locked_until_ms"].as_i64().is_some());
}

/// One signed private call by hand with `nonce`; returns the envelope.
async fn signed(addr: std::net::SocketAddr, method: &str, nonce: u64, rest: &str) -> Value {
    let path = format!("/0/private/{method}");
    let body = if rest.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{rest}")
    };
    let sign = hand_sign(&path, &nonce.to_string(), &body);
    raw(addr, private_request(&path, API_KEY, &sign, &body))
        .await
        .1
}

/// `--state FILE`: everything answered survives a kill -9 and a restart on
/// the same file (issue 22): orders with their cl_ord_id, userref, status
/// and executed volume, the trades, the balances, and the last nonce (a
/// nonce below it is still refused).
#[tokio::test]
async fn state_file_keeps_what_was_answered_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("kraken-sim.state");
    let state_arg = state.display().to_string();
    let mut sim = SimProcess::spawn(sim_bin(), "starter", &["--state", &state_arg])
        .await
        .unwrap();
    let admin = sim.admin();
    admin.set_price("XDGUSD", "0.12").await.unwrap();
    let mut nonce = 1_700_000_000_000_100_u64;
    for (id, price) in [
        ("cl_ord_id=keep-fill", "0.11"),
        ("cl_ord_id=keep-open", "0.05"),
        ("userref=1003", "0.04"),
    ] {
        nonce += 1;
        let v = signed(
            sim.addr,
            "AddOrder",
            nonce,
            &format!("ordertype=limit&pair=XDGUSD&price={price}&type=buy&volume=100&{id}"),
        )
        .await;
        assert_eq!(v["error"], serde_json::json!([]), "{v}");
    }
    // The first buy fills as the market trades down through it.
    admin.set_price("XDGUSD", "0.10").await.unwrap();
    let orders_before = admin.orders().await.unwrap();
    let trades_before = admin.trades().await.unwrap();
    let balances_before = admin.balances().await.unwrap();
    let by_cl = |orders: &[Value], cl: &str| {
        orders
            .iter()
            .find(|o| o["cl_ord_id"] == cl)
            .cloned()
            .unwrap_or_else(|| panic!("no order {cl} in {orders:?}"))
    };
    assert_eq!(by_cl(&orders_before, "keep-fill")["status"], "closed");
    assert_eq!(by_cl(&orders_before, "keep-open")["status"], "open");
    assert_eq!(trades_before.len(), 1, "{trades_before:?}");

    let addr = sim.addr;
    sim.kill().await;
    let sim = SimProcess::spawn_at(
        sim_bin(),
        &addr.to_string(),
        "starter",
        &["--state", &state_arg],
    )
    .await
    .unwrap();
    assert_eq!(sim.addr, addr);
    let admin = sim.admin();
    let orders_after = admin.orders().await.unwrap();
    assert_eq!(orders_after, orders_before);
    assert_eq!(admin.trades().await.unwrap(), trades_before);
    assert_eq!(admin.balances().await.unwrap(), balances_before);
    assert!(
        orders_after.iter().any(|o| o["userref"] == 1003),
        "{orders_after:?}"
    );
    let exec: rust_decimal::Decimal = by_cl(&orders_after, "keep-fill")["vol_exec"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(exec, dec!(100));

    // The nonce: one at or below the last accepted is still a replay.
    let v = signed(sim.addr, "OpenOrders", nonce, "").await;
    assert_eq!(v["error"][0], "EAPI:Invalid nonce", "{v}");
    let v = signed(sim.addr, "OpenOrders", nonce - 50, "").await;
    assert_eq!(v["error"][0], "EAPI:Invalid nonce", "{v}");
    // Above it: the client sees the open order and the fill as before.
    let v = signed(sim.addr, "OpenOrders", nonce + 1, "").await;
    assert_eq!(v["error"], serde_json::json!([]), "{v}");
    let open: Vec<&Value> = v["result"]["open"].as_object().unwrap().values().collect();
    assert_eq!(open.len(), 2, "{v}");
    assert!(open.iter().any(|o| o["cl_ord_id"] == "keep-open"), "{v}");
    let v = signed(sim.addr, "TradesHistory", nonce + 2, "").await;
    assert_eq!(v["result"]["count"], 1, "{v}");
    // The same cl_ord_id again does not make a second order after the
    // restart (the client ids seen are part of the state).
    signed(
        sim.addr,
        "AddOrder",
        nonce + 3,
        "ordertype=limit&pair=XDGUSD&price=0.05&type=buy&volume=100&cl_ord_id=keep-open",
    )
    .await;
    let same = admin
        .orders()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o["cl_ord_id"] == "keep-open")
        .count();
    assert_eq!(same, 1);

    // A corrupt state file is refused with its name, not started over.
    drop(sim);
    std::fs::write(&state, b"{not json").unwrap();
    let e = SimProcess::spawn(sim_bin(), "starter", &["--state", &state_arg])
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("exited before"), "{e:#}");
}
