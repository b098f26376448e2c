#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The paper venue with a state file: what a place or cancel answered
//! before a crash is there after it (snapshot plus the account record
//! written before each answer), and the newer of the two files wins.

use std::sync::Arc;

use herd_paper::{PaperConfig, PaperVenue};
use herd_venue::{
    NewOrder, OrderRef, OrderState, OrderStatus, OrderType, PlaceOutcome, Side, SystemClock, Venue,
};
use rust_decimal_macros::dec;

fn buy(id: &str) -> NewOrder {
    NewOrder {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        volume: dec!(100),
        price: Some(dec!(0.01)),
        post_only: true,
        userref: 0,
        reduce_only: false,
    }
}

fn open(path: &std::path::Path) -> PaperVenue {
    PaperVenue::load_or_new(&PaperConfig::default(), Arc::new(SystemClock), path).unwrap()
}

async fn place(v: &PaperVenue, id: &str) -> OrderState {
    match v.place_order(&buy(id)).await.unwrap() {
        PlaceOutcome::Accepted(o) => o,
        other => panic!("{id}: {other:?}"),
    }
}

async fn statuses(v: &PaperVenue, ids: &[&str]) -> Vec<(String, OrderStatus)> {
    let refs: Vec<OrderRef> = ids
        .iter()
        .map(|id| OrderRef {
            client_order_id: (*id).into(),
            venue_order_id: None,
        })
        .collect();
    v.query_orders(&refs)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.client_order_id, o.status))
        .collect()
}

#[tokio::test]
async fn answered_places_and_cancels_survive_a_crash_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paper.json");
    let v = open(&path);
    let a = place(&v, "a").await;
    place(&v, "b").await;
    v.save(&path).unwrap();
    let c = place(&v, "c").await;
    v.cancel_order(&OrderRef {
        client_order_id: "a".into(),
        venue_order_id: Some(a.venue_order_id.clone()),
    })
    .await
    .unwrap();
    let balances = v.balances().await.unwrap();
    drop(v); // a crash: no save

    let v = open(&path);
    assert_eq!(
        statuses(&v, &["a", "b", "c"]).await,
        vec![
            ("a".into(), OrderStatus::Canceled),
            ("b".into(), OrderStatus::Open),
            ("c".into(), OrderStatus::Open),
        ]
    );
    assert_eq!(v.balances().await.unwrap(), balances);
    // The id generator came back too: no venue id is handed out twice.
    let d = place(&v, "d").await;
    assert!(![a.venue_order_id, c.venue_order_id].contains(&d.venue_order_id));

    // A snapshot newer than the record wins over it.
    v.cancel_order(&OrderRef {
        client_order_id: "b".into(),
        venue_order_id: None,
    })
    .await
    .unwrap();
    v.save(&path).unwrap();
    drop(v);
    let v = open(&path);
    assert_eq!(
        statuses(&v, &["a", "b", "c", "d"]).await,
        vec![
            ("a".into(), OrderStatus::Canceled),
            ("b".into(), OrderStatus::Canceled),
            ("c".into(), OrderStatus::Open),
            ("d".into(), OrderStatus::Open),
        ]
    );
}

#[tokio::test]
async fn an_order_answered_before_the_first_snapshot_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paper.json");
    let v = open(&path);
    place(&v, "first").await;
    drop(v);
    assert!(!path.exists(), "no snapshot was written");
    let v = open(&path);
    assert_eq!(
        statuses(&v, &["first"]).await,
        vec![("first".into(), OrderStatus::Open)]
    );
}

#[tokio::test]
async fn an_unreadable_record_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paper.json");
    std::fs::write(dir.path().join("paper.json.account"), "not json").unwrap();
    let e = PaperVenue::load_or_new(&PaperConfig::default(), Arc::new(SystemClock), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("paper.json.account"), "{e}");
}
