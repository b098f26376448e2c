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
