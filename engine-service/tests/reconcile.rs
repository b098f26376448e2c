//! The reconcile step's rules (docs/reconcile.md), each with a prepared
//! difference between the engine's journal and a real in-process gateway on
//! the paper venue: the difference is found with the action its rule picks,
//! applying it makes the journal agree with the gateway, the live strategy
//! hears what its rule says, and a second reconcile finds nothing. Runs on
//! SQLite, and on Postgres too when TEST_DATABASE_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)] // this test uses a part of the shared helpers
mod support;

use std::sync::{Arc, Mutex};

use herd_engine::config::UnknownOrderPolicy;
use herd_engine::execution::{Shared, gateway_client, now_ms};
use herd_engine::reconcile::{self, Action, Kind, Report, Trigger};
use herd_engine::store::{OrderRow, Store};
use herd_proto::gateway as gpb;
use herd_proto::gateway::gateway_client::GatewayClient;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::{
    Action as StrategyAction, MarketView, OrderIntent, OrderUpdate, PositionOrderRef, Side,
    StatusBlock, Strategy, UpdateKind,
};
use rust_decimal::Decimal;
use support::{ENGINES, TestGateway, authed, engine_config, wait_for};

/// What the probe was told, and the positions it claims to hold.
#[derive(Default)]
struct Probe {
    live_ticks: u64,
    updates: Vec<(String, UpdateKind, String)>,
    positions: Vec<PositionOrderRef>,
}

/// A passive strategy that owns `probe-` ids and records its updates.
struct ProbeStrategy(Arc<Mutex<Probe>>);

impl Strategy for ProbeStrategy {
    fn name(&self) -> &str {
        "probe"
    }

    fn owns(&self, client_order_id: &str) -> bool {
        client_order_id.starts_with("probe-")
    }

    fn on_tick(&mut self, market: &MarketView, _now_ms: i64) -> Vec<StrategyAction> {
        if market.instrument.is_some() {
            self.0.lock().unwrap().live_ticks += 1;
        }
        Vec::new()
    }

    fn on_order(&mut self, update: &OrderUpdate, _now_ms: i64) -> Vec<StrategyAction> {
        self.0.lock().unwrap().updates.push((
            update.client_order_id.clone(),
            update.kind,
            update.message.clone(),
        ));
        Vec::new()
    }

    fn status(&self, _now_ms: i64) -> StatusBlock {
        StatusBlock::Detail(serde_json::Value::Null)
    }

    fn enabled(&self) -> bool {
        true
    }

    fn position_orders(&self) -> Vec<PositionOrderRef> {
        self.0.lock().unwrap().positions.clone()
    }
}

/// Backends: a SQLite file in `dir`, plus a fresh Postgres schema when
/// TEST_DATABASE_URL is set.
async fn backends(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut v = vec![(
        "sqlite".to_string(),
        format!("sqlite://{}?mode=rwc", dir.join("reconcile.db").display()),
    )];
    if let Ok(base) = std::env::var("TEST_DATABASE_URL") {
        let schema = format!(
            "herd_test_reconcile_{}_{}",
            std::process::id(),
            now_ms() % 1_000_000_000
        );
        let admin = sqlx::PgPool::connect(&base)
            .await
            .expect("TEST_DATABASE_URL must reach Postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        v.push((
            "postgres".to_string(),
            format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        ));
    }
    v
}

fn journal_row(id: &str, status: &str, updated_at_ms: i64) -> OrderRow {
    OrderRow {
        client_order_id: id.into(),
        owner: "probe".into(),
        symbol: support::SYMBOL.into(),
        side: "buy".into(),
        order_type: "limit".into(),
        price: "0.1".into(),
        volume: "100".into(),
        volume_executed: "0".into(),
        average_price: String::new(),
        fee: "0".into(),
        fee_asset: String::new(),
        status: status.into(),
        venue_order_id: String::new(),
        created_at_ms: updated_at_ms,
        updated_at_ms,
    }
}

/// Places a resting buy at the gateway as engine e0, without the engine (so
/// its journal does not know it).
async fn place_behind_the_engines_back(gateway: &TestGateway, id: &str) {
    let mut gw = GatewayClient::new(
        tonic::transport::Channel::from_shared(gateway.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    gw.place_order(authed(
        gpb::PlaceOrderRequest {
            client_order_id: id.into(),
            symbol: support::SYMBOL.into(),
            side: gpb::Side::Buy as i32,
            order_type: gpb::OrderType::Limit as i32,
            volume: "100".into(),
            price: "0.1".into(),
            post_only: true,
            ..Default::default()
        },
        ENGINES[0].1,
    ))
    .await
    .unwrap();
}

fn found(r: &Report) -> Vec<(Kind, String, Action)> {
    r.differences
        .iter()
        .map(|d| (d.kind, d.client_order_id.clone(), d.action))
        .collect()
}

async fn operator(shared: &Shared, dry_run: bool) -> Report {
    reconcile::operator(shared, dry_run).await.unwrap()
}

async fn status_of(store: &Store, id: &str) -> String {
    store
        .order(id)
        .await
        .unwrap()
        .map(|r| r.status)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path()).await {
        rules_hold(&backend, &url, dir.path()).await;
    }
}

async fn rules_hold(backend: &str, url: &str, dir: &std::path::Path) {
    let gateway = TestGateway::start().await;
    let store = Store::connect(url).await.unwrap();
    let cfg = engine_config("e0", &gateway, dir, "RANGING", RangerConfig::default());
    let probe = Arc::new(Mutex::new(Probe::default()));
    let client = gateway_client(&cfg.gateway_url, &cfg.gateway_token).unwrap();
    let shared = Arc::new(Shared::new(
        cfg.clone(),
        store.clone(),
        client.clone(),
        vec![Box::new(ProbeStrategy(probe.clone()))],
    ));
    let ticks = tokio::spawn(shared.clone().run_ticks());
    wait_for(&format!("{backend}: the probe live"), || async {
        let ticks = probe.lock().unwrap().live_ticks;
        if ticks > 0 {
            Ok(())
        } else {
            Err(format!("{ticks} ticks with the instrument"))
        }
    })
    .await;
    let told = |id: &str| -> Vec<(UpdateKind, String)> {
        probe
            .lock()
            .unwrap()
            .updates
            .iter()
            .filter(|u| u.0 == id)
            .map(|u| (u.1, u.2.clone()))
            .collect()
    };
    let id = |name: &str| format!("probe-{backend}-{name}");

    // Lost: open in the journal, unknown to the gateway and the venue.
    // Without the rule it stayed open in the journal (and in status).
    let lost = id("lost");
    store
        .insert_order(&journal_row(&lost, "open", now_ms() - 60_000))
        .await
        .unwrap();
    let dry = operator(&shared, true).await;
    assert_eq!(
        found(&dry),
        vec![(Kind::Lost, lost.clone(), Action::CloseAsLost)],
        "{backend}"
    );
    assert_eq!(status_of(&store, &lost).await, "open", "{backend}: dry run");
    let r = operator(&shared, false).await;
    assert_eq!((r.applied, r.failed), (1, 0), "{backend}: {r:?}");
    assert_eq!(status_of(&store, &lost).await, "lost", "{backend}");
    assert!(
        store.working_orders().await.unwrap().is_empty(),
        "{backend}: a lost order is never kept open"
    );
    let heard = told(&lost);
    assert_eq!(heard.len(), 1, "{backend}: {heard:?}");
    assert_eq!(heard[0].0, UpdateKind::Canceled, "{backend}");
    assert!(heard[0].1.starts_with("lost"), "{backend}: {heard:?}");
    let journal = store.journal(reconcile::JOURNAL_STREAM).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|(kind, payload, _)| kind == "lost" && payload.contains(&lost)),
        "{backend}: what was done is journaled: {journal:?}"
    );

    // Never reached the gateway: pending long past any place in flight.
    let never = id("never");
    store
        .insert_order(&journal_row(&never, "pending", now_ms() - 60_000))
        .await
        .unwrap();
    let r = operator(&shared, false).await;
    assert_eq!(
        found(&r),
        vec![(Kind::NeverReachedGateway, never.clone(), Action::Reject)],
        "{backend}"
    );
    assert_eq!(status_of(&store, &never).await, "rejected", "{backend}");
    assert_eq!(
        told(&never).first().map(|u| u.0),
        Some(UpdateKind::PlaceFailed),
        "{backend}"
    );

    // An open order with the engine's prefix the journal does not know:
    // cancelled by default.
    let stray = id("stray");
    place_behind_the_engines_back(&gateway, &stray).await;
    let r = operator(&shared, false).await;
    assert_eq!(
        found(&r),
        vec![(Kind::UnknownOpenOrder, stray.clone(), Action::Cancel)],
        "{backend}"
    );
    assert!(
        gateway
            .open_orders("e0")
            .await
            .iter()
            .all(|o| o.client_order_id != stray),
        "{backend}: the stray order is cancelled at the venue"
    );
    assert_eq!(status_of(&store, &stray).await, "canceled", "{backend}");

    // ... or adopted when the policy says so.
    let mut adopt_cfg = cfg.clone();
    adopt_cfg.reconcile.unknown_open_orders = UnknownOrderPolicy::Adopt;
    let adopting = Shared::new(adopt_cfg, store.clone(), client.clone(), Vec::new());
    let adopted = id("adopted");
    place_behind_the_engines_back(&gateway, &adopted).await;
    let r = reconcile::operator(&adopting, false).await.unwrap();
    assert_eq!(
        found(&r),
        vec![(Kind::UnknownOpenOrder, adopted.clone(), Action::Adopt)],
        "{backend}"
    );
    let row = store.order(&adopted).await.unwrap().unwrap();
    assert_eq!(
        (row.owner.as_str(), row.status.as_str()),
        ("adopted", "open"),
        "{backend}"
    );
    assert!(
        gateway
            .open_orders("e0")
            .await
            .iter()
            .any(|o| o.client_order_id == adopted),
        "{backend}: an adopted order stays open"
    );
    assert_eq!(
        operator(&shared, true).await.differences,
        vec![],
        "{backend}"
    );
    shared.cancel(&adopted).await.unwrap();

    // A fill at the venue the journal lacks, after a gateway restart (no
    // stream will replay it): journaled once and handed to the strategy.
    let filled = id("filled");
    let intent = OrderIntent {
        client_order_id: filled.clone(),
        symbol: support::SYMBOL.into(),
        side: Side::Buy,
        volume: Decimal::new(100, 0),
        price: Some(Decimal::new(11, 2)),
        post_only: true,
        userref_offset: 0,
    };
    shared.place("probe", &intent).await.unwrap();
    gateway.set_price("0.10").await;
    wait_for(
        &format!("{backend}: the order filled at the venue"),
        || async {
            let o = gateway
                .query_orders("e0", std::slice::from_ref(&filled))
                .await;
            match o.first() {
                Some(o) if o.status == gpb::OrderStatus::Filled as i32 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(status_of(&store, &filled).await, "open", "{backend}");
    for pass in 0..2 {
        let r = reconcile::run(&shared, Trigger::GatewayRestart, false, None, false)
            .await
            .unwrap();
        let want = if pass == 0 {
            vec![(Kind::MissingFill, filled.clone(), Action::JournalFill)]
        } else {
            vec![]
        };
        assert_eq!(found(&r), want, "{backend}: pass {pass}");
    }
    let fills: Vec<_> = store
        .fills()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.client_order_id == filled)
        .collect();
    assert_eq!(fills.len(), 1, "{backend}: journaled once: {fills:?}");
    assert_eq!(fills[0].volume, Decimal::new(100, 0), "{backend}");
    assert_eq!(status_of(&store, &filled).await, "filled", "{backend}");
    assert_eq!(
        told(&filled).iter().map(|u| u.0).collect::<Vec<_>>(),
        vec![UpdateKind::Filled],
        "{backend}: handed to the strategy once"
    );
    // The gateway did not restart here, so its stream still has that fill:
    // following it replays the fill, which is journaled already and must not
    // reach the strategy a second time. A marker order placed after it shows
    // the replay has been handled (events arrive in sequence order).
    gateway.set_price("0.12").await;
    let stream = tokio::spawn(shared.clone().run_event_stream());
    let marker = id("marker");
    let marker_intent = OrderIntent {
        client_order_id: marker.clone(),
        price: Some(Decimal::new(10, 2)),
        ..intent
    };
    shared.place("probe", &marker_intent).await.unwrap();
    wait_for(
        &format!("{backend}: the stream reached the marker"),
        || async {
            let heard = told(&marker);
            if heard.is_empty() {
                Err("nothing yet".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    // (The replay also carries the order's older Open event: a state the
    // strategy can ignore, unlike a fill, which it would count.)
    assert_eq!(
        told(&filled)
            .iter()
            .map(|u| u.0)
            .filter(|k| matches!(k, UpdateKind::Filled | UpdateKind::PartialFill))
            .collect::<Vec<_>>(),
        vec![UpdateKind::Filled],
        "{backend}: the stream's replay of a journaled fill is not handed over again"
    );
    stream.abort();
    shared.cancel(&marker).await.unwrap();

    // A position whose order is gone: surfaced, the strategy's rule applies.
    let exit = id("exit");
    probe.lock().unwrap().positions = vec![PositionOrderRef {
        position_id: "pos-1".into(),
        client_order_id: exit.clone(),
    }];
    let r = operator(&shared, false).await;
    assert_eq!(
        found(&r),
        vec![(
            Kind::PositionWithoutOrder,
            exit.clone(),
            Action::StrategyRule
        )],
        "{backend}"
    );
    assert!(r.differences[0].detail.contains("pos-1"), "{backend}");
    let status = herd_engine::view::engine_status(&shared).await.unwrap();
    let last = status.last_reconcile.unwrap();
    assert_eq!(
        (last.trigger.as_str(), last.counts.len()),
        ("operator", 1),
        "{backend}"
    );
    assert_eq!(
        (last.counts[0].kind.as_str(), last.counts[0].count),
        ("position_without_order", 1),
        "{backend}"
    );
    probe.lock().unwrap().positions.clear();

    // Everything agrees now.
    assert_eq!(
        operator(&shared, true).await.differences,
        vec![],
        "{backend}"
    );
    ticks.abort();
    store.close().await;
    gateway.stop().await;
}
