//! Tenancy under any pair of order prefixes (issue 23, bug 1): a property
//! test against an in-process gateway on the paper venue (127.0.0.1:0, a
//! real tonic client per engine). For any two distinct prefixes and any
//! order ids, either the gateway refuses the config at start (one prefix
//! begins the other; the error names both engines), or no engine can read
//! (QueryOrders), cancel, or see (ListOpenOrders, its event stream) an order
//! of the other, whatever id it sends: the other's own ids, the ids prefix
//! arithmetic would make of the other's venue ids, or arbitrary ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use herd_gateway::config::{EngineEntry, GatewayConfig, Secret};
use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_client::GatewayClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

const ENGINES: [(&str, &str); 2] = [("eng-a", "token-engine-a"), ("eng-b", "token-engine-b")];

/// A started gateway, or the error `run` refused the config with.
enum Started {
    Up {
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    Refused(String),
}

async fn start(prefixes: [&str; 2]) -> Started {
    let engines = ENGINES
        .iter()
        .zip(prefixes)
        .enumerate()
        .map(|(i, ((id, token), prefix))| {
            let i = i32::try_from(i).unwrap();
            EngineEntry {
                id: (*id).into(),
                token: Secret::new(*token),
                token_file: None,
                userref_min: 1 + 1000 * i,
                userref_max: 999 + 1000 * i,
                order_prefix: Some(prefix.into()),
                weight: 1,
                cancel_on_disconnect_ms: 0,
            }
        })
        .collect();
    let mut cfg = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(Secret::new("admin-token-tenancy")),
        engines,
        drain_delay_ms: 0,
        ..GatewayConfig::default()
    };
    cfg.paper.exchange.history_minutes = 0;
    cfg.paper.step_ms = 600_000;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(herd_gateway::run(
        cfg,
        move |a| {
            let _ = ready_tx.send(a);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    match ready_rx.await {
        Ok(addr) => Started::Up { addr, stop, task },
        // `run` returned before it was ready: the readiness callback is gone.
        Err(_) => match task.await.unwrap() {
            Err(e) => Started::Refused(format!("{e:#}")),
            Ok(()) => panic!("the gateway ended before it was ready"),
        },
    }
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

fn resting_buy(id: &str, price: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: pb::Side::Buy as i32,
        order_type: pb::OrderType::Limit as i32,
        volume: "100".into(),
        price: price.into(),
        post_only: true,
        ..Default::default()
    }
}

/// Is `id` one the gateway accepts as a client order id at all?
fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= herd_gateway::convert::MAX_CLIENT_ORDER_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Both engines place their orders, then each tries the other's with every
/// id it can think of; every order stays its owner's alone.
async fn attack(
    ch: Channel,
    prefixes: [&str; 2],
    ids: [&BTreeSet<String>; 2],
    guesses: &[String],
) -> Result<(), TestCaseError> {
    let mut g = GatewayClient::new(ch);
    // engine index -> its orders: engine-facing id -> venue order id
    let mut placed: [BTreeMap<String, String>; 2] = Default::default();
    for (e, ((_, token), price)) in ENGINES.iter().zip(["0.05", "0.04"]).enumerate() {
        for id in ids[e] {
            let o = g
                .place_order(authed(resting_buy(id, price), token))
                .await
                .map_err(|st| TestCaseError::fail(format!("{token} place {id:?}: {st:?}")))?
                .into_inner()
                .order
                .unwrap();
            prop_assert_eq!(o.status, pb::OrderStatus::Open as i32, "{:?}", o);
            placed[e].insert(id.clone(), o.venue_order_id);
        }
    }
    for (attacker, victim) in [(0, 1), (1, 0)] {
        let (engine, token) = ENGINES[attacker];
        let mut tries: BTreeSet<String> = guesses.iter().cloned().collect();
        for id in ids[victim] {
            tries.insert(id.clone());
            // What prefix arithmetic makes of the victim's venue id.
            let venue_id = format!("{}{id}", prefixes[victim]);
            if let Some(rest) = venue_id.strip_prefix(prefixes[attacker]) {
                tries.insert(rest.to_string());
            }
        }
        for id in tries
            .iter()
            .filter(|id| well_formed(id) && !placed[attacker].contains_key(*id))
        {
            let q = g
                .query_orders(authed(
                    pb::QueryOrdersRequest {
                        client_order_ids: vec![id.clone()],
                    },
                    token,
                ))
                .await;
            prop_assert!(
                q.as_ref().is_err_and(|st| st.code() == Code::NotFound),
                "{} read {:?}: {:?}",
                engine,
                id,
                q
            );
            let c = g
                .cancel_order(authed(
                    pb::CancelOrderRequest {
                        client_order_id: id.clone(),
                    },
                    token,
                ))
                .await;
            prop_assert!(
                c.as_ref().is_err_and(|st| st.code() == Code::NotFound),
                "{} canceled {:?}: {:?}",
                engine,
                id,
                c
            );
        }
    }
    for (e, (engine, token)) in ENGINES.iter().enumerate() {
        let own: BTreeSet<&String> = placed[e].values().collect();
        // Its own orders: all still open, as placed.
        let ids: Vec<String> = placed[e].keys().cloned().collect();
        let mine = g
            .query_orders(authed(
                pb::QueryOrdersRequest {
                    client_order_ids: ids.clone(),
                },
                token,
            ))
            .await
            .map_err(|st| TestCaseError::fail(format!("{engine} query own: {st:?}")))?
            .into_inner()
            .orders;
        prop_assert_eq!(mine.len(), ids.len());
        for (o, id) in mine.iter().zip(&ids) {
            prop_assert_eq!(&o.client_order_id, id);
            prop_assert_eq!(Some(&o.venue_order_id), placed[e].get(id));
            prop_assert_eq!(o.status, pb::OrderStatus::Open as i32, "{:?}", o);
        }
        // It lists exactly its own orders.
        let listed: BTreeSet<String> = g
            .list_open_orders(authed(pb::ListOpenOrdersRequest::default(), token))
            .await
            .map_err(|st| TestCaseError::fail(format!("{engine} list: {st:?}")))?
            .into_inner()
            .orders
            .into_iter()
            .map(|o| o.venue_order_id)
            .collect();
        prop_assert_eq!(listed.iter().collect::<BTreeSet<_>>(), own.clone());
        // Its stream holds one OPEN per own order and nothing else.
        let last = g
            .get_session(authed(pb::GetSessionRequest::default(), token))
            .await
            .map_err(|st| TestCaseError::fail(format!("{engine} session: {st:?}")))?
            .into_inner()
            .last_sequence;
        prop_assert_eq!(last, own.len() as u64, "{} events", engine);
        let mut stream = g
            .stream_order_events(authed(
                pb::StreamOrderEventsRequest { after_sequence: 0 },
                token,
            ))
            .await
            .map_err(|st| TestCaseError::fail(format!("{engine} stream: {st:?}")))?
            .into_inner();
        let mut seen = BTreeSet::new();
        for _ in 0..last {
            let ev = stream.message().await.unwrap().unwrap();
            prop_assert_eq!(ev.kind, pb::OrderEventKind::Open as i32, "{:?}", ev);
            seen.insert(ev.order.unwrap().venue_order_id);
        }
        prop_assert_eq!(seen.iter().collect::<BTreeSet<_>>(), own);
    }
    Ok(())
}

async fn case(
    prefixes: [String; 2],
    ids: [BTreeSet<String>; 2],
    guesses: Vec<String>,
) -> Result<(), TestCaseError> {
    let p = [prefixes[0].as_str(), prefixes[1].as_str()];
    let overlap = p[0].starts_with(p[1]) || p[1].starts_with(p[0]);
    match start(p).await {
        Started::Refused(e) => {
            prop_assert!(overlap, "{:?} refused: {}", p, e);
            for (id, _) in ENGINES {
                prop_assert!(e.contains(&format!("{id:?}")), "{} should name {}", e, id);
            }
            Ok(())
        }
        Started::Up { addr, stop, task } => {
            let ch = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let held = attack(ch, p, [&ids[0], &ids[1]], &guesses).await;
            let _ = stop.send(());
            task.await.unwrap().unwrap();
            held?;
            prop_assert!(!overlap, "{:?} overlap, yet the gateway started", p);
            Ok(())
        }
    }
}

/// Two distinct prefixes, often one beginning the other.
fn prefixes() -> impl Strategy<Value = [String; 2]> {
    let part = "[A-Za-z0-9_-]{1,4}";
    prop_oneof![
        2 => ("[A-Za-z0-9_-]{1,8}", "[A-Za-z0-9_-]{1,8}").prop_map(|(a, b)| [a, b]),
        1 => (part, part).prop_map(|(a, tail)| [a.clone(), format!("{a}{tail}")]),
        1 => (part, part).prop_map(|(a, tail)| [format!("{a}{tail}"), a]),
        1 => ("[a-z]{1,3}", "[a-z]{1,3}").prop_map(|(a, b)| [format!("{a}-"), format!("{a}-{b}-")]),
    ]
    .prop_filter("distinct", |[a, b]| a != b)
}

fn ids() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set("[A-Za-z0-9_-]{1,12}", 1..4)
}

#[test]
fn no_engine_reaches_another_engines_orders_under_any_prefixes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let input = (
        prefixes(),
        ids(),
        ids(),
        prop::collection::vec("[A-Za-z0-9_-]{1,16}", 0..4),
    );
    runner
        .run(&input, |(prefixes, a, b, guesses)| {
            rt.block_on(case(prefixes, [a, b], guesses))
        })
        .unwrap();
}
