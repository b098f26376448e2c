//! The gateway's fills ledger against real processes: kraken-sim as the
//! venue, herd-gateway (with a `state_dir`) and two herd-engines. Every
//! fill of every engine is in the ledger exactly once, across a gateway
//! kill -9 and restart (fills that happened while it was down are recorded
//! when the order is next seen), and a second restart adds nothing: fills
//! are deduplicated by their trade id. The ledger agrees with the venue's
//! executed volumes and fees and with each engine's own journal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use herd_proto::gateway as gpb;
use herd_tests::kraken_herd::{HerdOpts, KrakenHerd, PAIR, SYMBOL};
use herd_tests::procs::admin_client;
use herd_tests::wait_until;
use rust_decimal::Decimal;

const WITHIN: Duration = Duration::from_secs(40);

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn ledger(h: &KrakenHerd) -> anyhow::Result<Vec<gpb::Fill>> {
    let mut c = admin_client(&format!("http://{}", h.gateway_addr())).await?;
    Ok(c.list_fills(gpb::ListFillsRequest::default())
        .await?
        .into_inner()
        .fills)
}

async fn ledger_with(h: &KrakenHerd, n: usize) -> Vec<gpb::Fill> {
    wait_until(&format!("{n} fills in the ledger"), WITHIN, || async {
        Ok(ledger(h).await.ok().filter(|f| f.len() >= n))
    })
    .await
    .unwrap()
}

/// Every ledger fill against the venue: one engine, unique trade ids, and
/// per order the ledger's volume and fee sums are the venue's.
async fn check_against_venue(h: &KrakenHerd, fills: &[gpb::Fill]) {
    let ids: BTreeSet<&str> = fills.iter().map(|f| f.trade_id.as_str()).collect();
    assert_eq!(ids.len(), fills.len(), "a trade id twice: {fills:#?}");
    let mut per_order: HashMap<&str, (Decimal, Decimal)> = HashMap::new();
    for f in fills {
        let e = per_order.entry(f.venue_order_id.as_str()).or_default();
        e.0 += dec(&f.volume);
        e.1 += dec(&f.fee);
        assert_eq!(f.strategy, "manual", "{f:?}");
        assert_eq!(f.symbol, SYMBOL);
        assert_eq!(f.side, "buy");
        assert!(f.trade_id_derived);
        assert_eq!(
            f.trade_id,
            format!("{}:{}", f.venue_order_id, dec(&f.volume).normalize()),
            "one fill per order here: the id is the order's at its full volume"
        );
    }
    let venue = h.admin().orders().await.unwrap();
    let mut executed = 0;
    for o in &venue {
        let exec = dec(o["vol_exec"].as_str().unwrap());
        if exec.is_zero() {
            continue;
        }
        executed += 1;
        let txid = o["txid"].as_str().unwrap();
        let (vol, fee) = per_order
            .get(txid)
            .unwrap_or_else(|| panic!("{txid} executed {exec} but the ledger has no fill"));
        assert_eq!(*vol, exec, "{txid}");
        // Kraken's answers carry the fee to 5 places (the simulator's own
        // book keeps more): the ledger has what the venue said.
        let venue_fee = dec(o["fee"].as_str().unwrap());
        assert!(
            (*fee - venue_fee).abs() <= dec("0.000005"),
            "{txid}: fee {fee} in the ledger, {venue_fee} at the venue"
        );
        let cl = o["cl_ord_id"].as_str().unwrap();
        let f = fills.iter().find(|f| f.venue_order_id == txid).unwrap();
        assert!(
            cl.starts_with(&format!("{}-", f.engine_id)),
            "{cl} is not {}'s",
            f.engine_id
        );
        assert_eq!(cl, format!("{}-{}", f.engine_id, f.client_order_id));
    }
    assert_eq!(
        executed,
        per_order.len(),
        "ledger orders the venue never filled"
    );
}

/// Per engine: the ledger's fills are the engine's journaled fills
/// (client id, volume, price, fee), to the last digit.
async fn check_against_journals(h: &KrakenHerd, fills: &[gpb::Fill]) {
    for (i, e) in h.engines.iter().enumerate() {
        let store = herd_engine::store::Store::connect(&e.check_url)
            .await
            .unwrap();
        let journal: BTreeMap<String, (Decimal, Decimal, Decimal)> = store
            .fills()
            .await
            .unwrap()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, f| {
                let v = m.entry(f.client_order_id.clone()).or_insert((
                    Decimal::ZERO,
                    Decimal::ZERO,
                    Decimal::ZERO,
                ));
                v.0 += f.volume;
                v.1 += f.volume * f.price;
                v.2 += f.fee;
                m
            });
        store.close().await;
        let mine: BTreeMap<String, (Decimal, Decimal, Decimal)> = fills
            .iter()
            .filter(|f| f.engine_id == e.id)
            .fold(BTreeMap::new(), |mut m, f| {
                let v = m.entry(f.client_order_id.clone()).or_insert((
                    Decimal::ZERO,
                    Decimal::ZERO,
                    Decimal::ZERO,
                ));
                v.0 += dec(&f.volume);
                v.1 += dec(&f.volume) * dec(&f.price);
                v.2 += dec(&f.fee);
                m
            });
        assert_eq!(mine, journal, "engine e{i}: ledger vs journal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_exactly_once_across_gateway_kill9() {
    let mut h = KrakenHerd::start(sim_bin(), HerdOpts::default())
        .await
        .unwrap();
    // e0's buys sit above e1's.
    for k in 0..3 {
        h.submit_ok(0, &format!("0.{}", 1100 - k)).await.unwrap();
        h.submit_ok(1, &format!("0.{}", 1050 - k)).await.unwrap();
    }
    // The market trades through e0's buys only, with the gateway watching.
    h.admin().set_price(PAIR, "0.108").await.unwrap();
    let before = ledger_with(&h, 3).await;
    assert!(before.iter().all(|f| f.engine_id == "e0"), "{before:#?}");

    let incarnation = h.status(0).await.unwrap().gateway_incarnation;
    h.kill_gateway().await.unwrap();
    // e1's buys fill while nobody watches.
    h.fill_all().await.unwrap();
    h.start_gateway().await.unwrap();
    for i in 0..2 {
        wait_until("the engine on the new incarnation", WITHIN, || async {
            let s = h.status(i).await?;
            Ok((s.gateway_connected && s.gateway_incarnation != incarnation).then_some(()))
        })
        .await
        .unwrap();
    }
    h.converge(WITHIN, &[BTreeSet::new(), BTreeSet::new()])
        .await
        .unwrap();
    let after = ledger_with(&h, 6).await;
    assert_eq!(after.len(), 6, "{after:#?}");
    // The fills recorded before the kill are the same rows, not new ones.
    for f in &before {
        assert!(after.contains(f), "{f:?} changed across the restart");
    }
    assert_eq!(after.iter().filter(|f| f.engine_id == "e1").count(), 3);
    check_against_venue(&h, &after).await;
    check_against_journals(&h, &after).await;

    // Again, with nothing new: the engines reconcile and look their
    // orders up, the gateway sees every filled order once more, and the
    // ledger adds nothing.
    let incarnation = h.status(0).await.unwrap().gateway_incarnation;
    h.kill_gateway().await.unwrap();
    h.start_gateway().await.unwrap();
    for i in 0..2 {
        wait_until("the engine on the third incarnation", WITHIN, || async {
            let s = h.status(i).await?;
            Ok((s.gateway_connected && s.gateway_incarnation != incarnation).then_some(()))
        })
        .await
        .unwrap();
    }
    // A new fill after the second restart is what we wait for: when it is
    // in, everything the restart could have re-recorded is in as well.
    let id = h.submit_ok(1, "0.0850").await.unwrap();
    h.admin().set_price(PAIR, "0.084").await.unwrap();
    let last = ledger_with(&h, 7).await;
    assert_eq!(last.len(), 7, "{last:#?}");
    assert_eq!(last[6].client_order_id, id);
    check_against_venue(&h, &last).await;
    h.converge(WITHIN, &[BTreeSet::new(), BTreeSet::new()])
        .await
        .unwrap();
    check_against_journals(&h, &last).await;
    h.cleanup().await.unwrap();
}

/// A strict RFC 4180 reader: comma-separated, CRLF line ends, fields
/// quoted when they hold a comma, quote or line end (quotes doubled);
/// anything else is an error. Every record must have the header's width.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    if !matches!(chars.peek(), Some(',') | Some('\r') | None) {
                        return Err(format!(
                            "text after a closing quote in record {}",
                            records.len()
                        ));
                    }
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            '"' => return Err(format!("a bare quote in record {}", records.len())),
            ',' => {
                record.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\r' => {
                if chars.next() != Some('\n') {
                    return Err("CR without LF".into());
                }
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_start = true;
            }
            '\n' => return Err(format!("a bare LF in record {}", records.len())),
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("an unclosed quote".into());
    }
    if !field.is_empty() || !record.is_empty() {
        return Err("the last record has no CRLF".into());
    }
    let width = records.first().map_or(0, Vec::len);
    if let Some((i, r)) = records.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(format!(
            "record {i} has {} fields, the header {width}",
            r.len()
        ));
    }
    Ok(records)
}

#[test]
fn the_csv_reader_is_strict() {
    assert_eq!(
        parse_csv("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\r\n").unwrap(),
        vec![vec!["a", "b"], vec!["x,1", "say \"hi\""]]
    );
    for bad in [
        "a,b\n1,2\n",
        "a,b\r\n1\r\n",
        "a\r\nx\"y\r\n",
        "a\r\n\"x\r\n",
        "a,b",
    ] {
        assert!(parse_csv(bad).is_err(), "{bad:?}");
    }
}

async fn http_get(url: &str, token: Option<&str>) -> (u16, String) {
    let c = reqwest::Client::new();
    let mut r = c.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

fn herdctl(args: &[&str]) -> String {
    let out = std::process::Command::new(herd_tests::bin_path("herdctl").unwrap())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "herdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The exports and PnL against real processes: `/api/fills.csv` (admin
/// token; parsed by a strict CSV reader) and `herdctl fills --format csv`
/// hold exactly the ledger's fills; PnL by engine agrees to the cent with a
/// hand computation from the venue's own order book and with each engine's
/// journal; by strategy every fill is `manual` (SubmitOrder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_and_pnl_match_the_ledger_venue_and_journals() {
    let mut h = KrakenHerd::start(sim_bin(), HerdOpts::default())
        .await
        .unwrap();
    for k in 0..3 {
        h.submit_ok(0, &format!("0.{}", 1100 - k)).await.unwrap();
    }
    h.submit_ok(1, "0.1050").await.unwrap();
    h.fill_all().await.unwrap();
    ledger_with(&h, 4).await;
    // e0 sells what it bought, at a loss.
    let mut e0 = herd_tests::engine_client(&h.engine_url(0).unwrap())
        .await
        .unwrap();
    e0.submit_order(herd_proto::engine::SubmitOrderRequest {
        symbol: SYMBOL.into(),
        side: "sell".into(),
        order_type: "limit".into(),
        volume: "300".into(),
        price: "0.0950".into(),
        post_only: true,
    })
    .await
    .unwrap();
    h.admin().set_price(PAIR, "0.096").await.unwrap();
    let fills = ledger_with(&h, 5).await;
    assert_eq!(fills.len(), 5);

    // By hand, from the venue's book (its fees unrounded): e0 bought 300
    // at the average of its three prices and sold 300.
    let venue = h.admin().orders().await.unwrap();
    let mut hand: BTreeMap<String, Decimal> = BTreeMap::new();
    let (mut bought, mut cost, mut sold, mut proceeds) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for o in &venue {
        let exec = dec(o["vol_exec"].as_str().unwrap());
        if exec.is_zero() {
            continue;
        }
        let engine = o["cl_ord_id"].as_str().unwrap()[..2].to_string();
        let px = dec(o["price"].as_str().unwrap());
        *hand.entry(engine.clone()).or_default() -= dec(o["fee"].as_str().unwrap());
        if engine == "e0" {
            if o["side"] == "buy" {
                bought += exec;
                cost += exec * px;
            } else {
                sold += exec;
                proceeds += exec * px;
            }
        }
    }
    assert_eq!((bought, sold), (dec("300"), dec("300")));
    *hand.get_mut("e0").unwrap() += proceeds - cost;
    // e1 holds 100 bought at 0.105; the last price is 0.096.
    let e1_unrealized = dec("100") * (dec("0.096") - dec("0.105"));

    let mut admin = admin_client(&format!("http://{}", h.gateway_addr()))
        .await
        .unwrap();
    let pnl = wait_until("the ticker at 0.096 in the PnL", WITHIN, || {
        let mut admin = admin.clone();
        async move {
            let r = admin
                .get_pnl(gpb::GetPnlRequest {
                    by: gpb::PnlGrouping::Engine as i32,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(r.rows
                .iter()
                .any(|r| r.key == "e1" && dec(&r.unrealized) == e1_unrealized)
                .then_some(r))
        }
    })
    .await
    .unwrap();
    let row = |k: &str| pnl.rows.iter().find(|r| r.key == k).unwrap().clone();
    assert_eq!(dec(&row("e0").realized).round_dp(2), hand["e0"].round_dp(2));
    assert_eq!(dec(&row("e0").unrealized), Decimal::ZERO);
    assert_eq!(dec(&row("e1").realized).round_dp(2), hand["e1"].round_dp(2));
    assert_eq!(row("e0").fills, 4);
    let total = pnl.total.clone().unwrap();
    assert_eq!(
        dec(&total.total).round_dp(2),
        (hand["e0"] + hand["e1"] + e1_unrealized).round_dp(2)
    );

    // Against each engine's journal: the same average-cost arithmetic on
    // the fills the engine journaled gives the same realized PnL.
    for (i, e) in h.engines.iter().enumerate() {
        let store = herd_engine::store::Store::connect(&e.check_url)
            .await
            .unwrap();
        let journal = store.fills().await.unwrap();
        let orders = store.orders_of("manual").await.unwrap();
        store.close().await;
        let side_of = |id: &str| {
            orders
                .iter()
                .find(|o| o.client_order_id == id)
                .map(|o| o.side.clone())
                .unwrap()
        };
        let (mut b, mut c, mut s, mut p, mut fees) = (
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        );
        for f in &journal {
            fees += f.fee;
            if side_of(&f.client_order_id) == "buy" {
                b += f.volume;
                c += f.volume * f.price;
            } else {
                s += f.volume;
                p += f.volume * f.price;
            }
        }
        let realized = if s.is_zero() {
            Decimal::ZERO
        } else {
            p - s * (c / b)
        } - fees;
        assert_eq!(
            dec(&row(&e.id).realized).round_dp(2),
            realized.round_dp(2),
            "engine e{i}: ledger PnL vs journal"
        );
        assert_eq!(dec(&row(&e.id).fees), fees, "engine e{i}: fees");
    }
    let by_strategy = admin
        .get_pnl(gpb::GetPnlRequest {
            by: gpb::PnlGrouping::Strategy as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = by_strategy.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["manual"]);

    // CSV on the admin port: the token is needed, and the rows are the ledger.
    let base = format!("http://{}", h.gateway_http);
    let (code, _) = http_get(&format!("{base}/api/fills.csv"), None).await;
    assert_eq!(code, 401);
    let (code, _) = http_get(&format!("{base}/api/fills.csv"), Some("not-the-token")).await;
    assert_eq!(code, 403);
    let (code, body) = http_get(
        &format!("{base}/api/fills.csv?from=yesterday"),
        Some(herd_tests::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("from: "), "{body}");
    let (code, csv) = http_get(
        &format!("{base}/api/fills.csv"),
        Some(herd_tests::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 200);
    let records = parse_csv(&csv).unwrap();
    let header = &records[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(records.len() - 1, fills.len());
    for (r, f) in records[1..].iter().zip(&fills) {
        assert_eq!(r[col("trade_id")], f.trade_id);
        assert_eq!(r[col("engine")], f.engine_id);
        assert_eq!(r[col("strategy")], f.strategy);
        assert_eq!(r[col("side")], f.side);
        assert_eq!(dec(&r[col("price")]), dec(&f.price));
        assert_eq!(dec(&r[col("volume")]), dec(&f.volume));
        assert_eq!(dec(&r[col("fee")]), dec(&f.fee));
        assert_eq!(r[col("time_ms")], f.time_ms.to_string());
        assert_eq!(r[col("client_order_id")], f.client_order_id);
    }
    let (_, only_e1) = http_get(
        &format!("{base}/api/fills.csv?engine=e1"),
        Some(herd_tests::ADMIN_TOKEN),
    )
    .await;
    let only_e1 = parse_csv(&only_e1).unwrap();
    assert_eq!(only_e1.len(), 2);
    assert_eq!(only_e1[1][col("engine")], "e1");
    let (code, pnl_json) = http_get(
        &format!("{base}/api/pnl?by=engine"),
        Some(herd_tests::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&pnl_json).unwrap();
    assert_eq!(v["rows"][0]["key"], "e0");
    assert_eq!(v["rows"][0]["realized"], row("e0").realized);

    // herdctl prints the same CSV, and the PnL as a table.
    let grpc = format!("http://{}", h.gateway_addr());
    let cli_csv = herdctl(&[
        "fills",
        "--gateway",
        &grpc,
        "--token",
        herd_tests::ADMIN_TOKEN,
        "--format",
        "csv",
    ]);
    assert_eq!(cli_csv, csv);
    let cli_json = herdctl(&[
        "fills",
        "--gateway",
        &grpc,
        "--token",
        herd_tests::ADMIN_TOKEN,
        "--engine",
        "e0",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&cli_json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    let table = herdctl(&[
        "pnl",
        "--gateway",
        &grpc,
        "--token",
        herd_tests::ADMIN_TOKEN,
        "--by",
        "engine",
    ]);
    assert!(
        table.lines().next().unwrap().contains("realized"),
        "{table}"
    );
    assert!(table.contains(&row("e0").realized), "{table}");
    let fills_table = herdctl(&[
        "fills",
        "--gateway",
        &grpc,
        "--token",
        herd_tests::ADMIN_TOKEN,
        "--strategy",
        "manual",
    ]);
    assert!(
        fills_table.lines().next().unwrap().contains("trade id"),
        "{fills_table}"
    );
    // A header, its rule and one line per fill.
    assert_eq!(
        fills_table.lines().count(),
        2 + fills.len(),
        "{fills_table}"
    );
    h.cleanup().await.unwrap();
}
