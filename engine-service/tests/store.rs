#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The engine's store: journal rows survive a restart, events are recorded
//! exactly once, and the cursor moves with them. Every test runs on SQLite,
//! and on Postgres too when TEST_DATABASE_URL is set (CI sets it).

use herd_engine::store::{OrderRow, Store};
use herd_proto::gateway as pb;

/// Backends to run against: a SQLite file in `dir`, plus a fresh Postgres
/// schema when TEST_DATABASE_URL is set.
async fn backends(dir: &std::path::Path, name: &str) -> Vec<(String, String)> {
    let mut v = vec![(
        "sqlite".to_string(),
        format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{name}.db")).display()
        ),
    )];
    if let Ok(base) = std::env::var("TEST_DATABASE_URL") {
        let schema = format!(
            "herd_test_{name}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
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

fn order_row(id: &str) -> OrderRow {
    OrderRow {
        client_order_id: id.into(),
        owner: "manual".into(),
        symbol: "DOGEUSD".into(),
        side: "buy".into(),
        order_type: "limit".into(),
        price: "0.1".into(),
        volume: "100".into(),
        volume_executed: "0".into(),
        average_price: String::new(),
        fee: "0".into(),
        fee_asset: String::new(),
        status: "pending".into(),
        venue_order_id: String::new(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

fn fill_event(
    seq: u64,
    id: &str,
    executed: &str,
    fill: &str,
    status: pb::OrderStatus,
) -> pb::OrderEvent {
    pb::OrderEvent {
        sequence: seq,
        incarnation: "inc-1".into(),
        kind: if status == pb::OrderStatus::Filled {
            pb::OrderEventKind::Filled
        } else {
            pb::OrderEventKind::PartialFill
        } as i32,
        order: Some(pb::Order {
            client_order_id: id.into(),
            venue_order_id: "OABCDE-FGHIJ-KLMNOP".into(),
            symbol: "DOGEUSD".into(),
            side: pb::Side::Buy as i32,
            order_type: pb::OrderType::Limit as i32,
            price: "0.1".into(),
            volume: "100".into(),
            volume_executed: executed.into(),
            average_price: "0.1".into(),
            fee: "0.01".into(),
            fee_asset: "USD".into(),
            status: status as i32,
            ..Default::default()
        }),
        fill_volume: fill.into(),
        fill_price: "0.1".into(),
        fill_fee: "0.01".into(),
        time_ms: 10 + seq as i64,
    }
}

#[tokio::test]
async fn journal_survives_restart_and_events_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path(), "restart").await {
        {
            let store = Store::connect(&url).await.unwrap();
            store.insert_order(&order_row("m-1")).await.unwrap();
            assert!(
                store
                    .record_event(&fill_event(1, "m-1", "40", "40", pb::OrderStatus::Open))
                    .await
                    .unwrap()
            );
            store
                .append_journal("grid", "cycle", r#"{"profit":"0.01"}"#, 5)
                .await
                .unwrap();
            store.close().await;
        }
        // A new process: same data, cursor where it was.
        let store = Store::connect(&url).await.unwrap();
        let cursor = store.cursor().await.unwrap();
        assert_eq!(
            (cursor.incarnation.as_str(), cursor.last_sequence),
            ("inc-1", 1),
            "{backend}"
        );
        // The same event again (a replay after a crash) adds nothing.
        assert!(
            !store
                .record_event(&fill_event(1, "m-1", "40", "40", pb::OrderStatus::Open))
                .await
                .unwrap(),
            "{backend}"
        );
        assert!(
            store
                .record_event(&fill_event(2, "m-1", "100", "60", pb::OrderStatus::Filled))
                .await
                .unwrap()
        );
        let fills = store.fills().await.unwrap();
        assert_eq!(fills.len(), 2, "{backend}");
        assert_eq!(
            fills
                .iter()
                .map(|f| f.volume)
                .sum::<rust_decimal::Decimal>(),
            rust_decimal::Decimal::from(100)
        );
        assert!(
            store.working_orders().await.unwrap().is_empty(),
            "{backend}: filled is final"
        );
        assert_eq!(store.journal("grid").await.unwrap().len(), 1, "{backend}");
        // A late, older view never reopens a final order.
        store
            .record_event(&fill_event(3, "m-1", "40", "", pb::OrderStatus::Open))
            .await
            .unwrap();
        assert!(
            store.working_orders().await.unwrap().is_empty(),
            "{backend}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path(), "migrate").await {
        for _ in 0..3 {
            let store = Store::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{backend}: {e}"));
            store.close().await;
        }
    }
}
