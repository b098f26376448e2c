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

/// What arrived together is journaled in one transaction: each fill once
/// (a fill repeated inside the batch, or one journaled before, is not new),
/// every order state, and the cursor at the batch's last event; an empty
/// batch changes nothing; the same batch again adds nothing.
#[tokio::test]
async fn a_batch_of_events_records_each_once_and_moves_the_cursor_to_its_last() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path(), "batch").await {
        let store = Store::connect(&url).await.unwrap();
        store.insert_order(&order_row("m-1")).await.unwrap();
        store.insert_order(&order_row("m-2")).await.unwrap();
        assert!(
            store
                .record_event(&fill_event(1, "m-1", "40", "40", pb::OrderStatus::Open))
                .await
                .unwrap()
        );
        assert!(store.record_events(&[]).await.unwrap().is_empty());
        assert_eq!(store.cursor().await.unwrap().last_sequence, 1, "{backend}");
        let mut accepted = fill_event(3, "m-2", "0", "", pb::OrderStatus::Open);
        accepted.kind = pb::OrderEventKind::Open as i32;
        let batch = [
            // Journaled before this batch: not new.
            fill_event(1, "m-1", "40", "40", pb::OrderStatus::Open),
            fill_event(2, "m-1", "100", "60", pb::OrderStatus::Filled),
            accepted,
            fill_event(4, "m-2", "30", "30", pb::OrderStatus::Open),
            // The same fill twice in one batch counts once.
            fill_event(5, "m-2", "30", "30", pb::OrderStatus::Open),
        ];
        assert_eq!(
            store.record_events(&batch).await.unwrap(),
            vec![false, true, false, true, false],
            "{backend}"
        );
        let cursor = store.cursor().await.unwrap();
        assert_eq!(
            (cursor.incarnation.as_str(), cursor.last_sequence),
            ("inc-1", 5),
            "{backend}"
        );
        let fills = store.fills().await.unwrap();
        assert_eq!(fills.len(), 3, "{backend}: {fills:?}");
        let working: Vec<String> = store
            .working_orders()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.client_order_id)
            .collect();
        assert_eq!(working, ["m-2"], "{backend}: m-1 filled, m-2 open");
        // A replay of the whole batch (a crash before the strategy saw it)
        // adds nothing.
        assert_eq!(
            store.record_events(&batch).await.unwrap(),
            vec![false; 5],
            "{backend}"
        );
        assert_eq!(store.fills().await.unwrap().len(), 3, "{backend}");

        // An order first seen in a batch, open then filled: one row, created
        // at its first event's time, updated at its last, final.
        let batch = [
            fill_event(6, "x-1", "50", "50", pb::OrderStatus::Open),
            fill_event(7, "x-1", "100", "50", pb::OrderStatus::Filled),
        ];
        assert_eq!(
            store.record_events(&batch).await.unwrap(),
            vec![true, true],
            "{backend}"
        );
        let x1 = store.order("x-1").await.unwrap().unwrap();
        assert_eq!(
            (x1.status.as_str(), x1.volume_executed.as_str()),
            ("filled", "100"),
            "{backend}"
        );
        assert_eq!(
            (x1.owner.as_str(), x1.created_at_ms, x1.updated_at_ms),
            ("external", 16, 17),
            "{backend}"
        );
        // A late, older view after the final state in the same batch does
        // not reopen it.
        let batch = [
            fill_event(8, "x-2", "100", "100", pb::OrderStatus::Filled),
            fill_event(9, "x-2", "40", "", pb::OrderStatus::Open),
        ];
        store.record_events(&batch).await.unwrap();
        let x2 = store.order("x-2").await.unwrap().unwrap();
        assert_eq!(
            (x2.status.as_str(), x2.volume_executed.as_str()),
            ("filled", "100"),
            "{backend}"
        );
        assert_eq!(store.cursor().await.unwrap().last_sequence, 9, "{backend}");
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

#[tokio::test]
async fn every_row_reads_back_field_for_field() {
    use herd_engine::store::{
        Cursor, FillRow, FundingFillRow, FundingPaymentRow, FundingPnlRow, FundingPositionRow,
    };
    use rust_decimal::Decimal;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path(), "rows").await {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(
            store.cursor().await.unwrap(),
            Cursor::default(),
            "{backend}"
        );

        let mut order = order_row("m-1");
        order.average_price = "0.1".into();
        order.venue_order_id = "OABC".into();
        order.created_at_ms = 1_700_000_000_000;
        order.updated_at_ms = 1_700_000_000_001;
        store.insert_order(&order).await.unwrap();
        assert_eq!(
            store.orders_of("manual").await.unwrap(),
            vec![order.clone()],
            "{backend}"
        );
        assert_eq!(
            store.working_orders().await.unwrap(),
            vec![order],
            "{backend}"
        );

        // A fill event whose price and fee are empty: they read back as zero.
        let mut ev = fill_event(7, "m-1", "40", "40", pb::OrderStatus::Open);
        ev.fill_price = String::new();
        ev.fill_fee = String::new();
        assert!(store.record_event(&ev).await.unwrap());
        assert_eq!(
            store.fills().await.unwrap(),
            vec![FillRow {
                fill_id: "m-1:40".into(),
                client_order_id: "m-1".into(),
                volume: d("40"),
                price: Decimal::ZERO,
                fee: Decimal::ZERO,
                fee_asset: "USD".into(),
                sequence: 7,
                incarnation: "inc-1".into(),
            }],
            "{backend}"
        );
        assert_eq!(
            store.cursor().await.unwrap(),
            Cursor {
                incarnation: "inc-1".into(),
                last_sequence: 7
            },
            "{backend}"
        );
        assert_eq!(store.fill_count().await.unwrap(), 1, "{backend}");

        store
            .append_journal("grid", "cycle", "{}", 5)
            .await
            .unwrap();
        store
            .append_journal("grid", "heal", "[1]", 6)
            .await
            .unwrap();
        assert_eq!(
            store.journal("grid").await.unwrap(),
            vec![
                ("cycle".to_string(), "{}".to_string(), 5),
                ("heal".to_string(), "[1]".to_string(), 6)
            ],
            "{backend}"
        );

        let position = FundingPositionRow {
            id: "p-1".into(),
            symbol: "BTCUSDT".into(),
            state: "open".into(),
            payload: r#"{"legs":2}"#.into(),
            opened_at_ms: 100,
            updated_at_ms: 200,
        };
        store.upsert_funding_position(&position).await.unwrap();
        assert_eq!(
            store.funding_positions(true).await.unwrap(),
            vec![position],
            "{backend}"
        );

        let fill = FundingFillRow {
            fill_id: "f-1".into(),
            position_id: "p-1".into(),
            leg: "perp".into(),
            purpose: "open".into(),
            client_order_id: "e1-7".into(),
            symbol: "BTCUSDT-PERP".into(),
            side: "sell".into(),
            qty: d("0.012"),
            price: d("64000.5"),
            fee: d("0.42"),
            fee_asset: "USDT".into(),
            fee_usd: d("0.42"),
            time_ms: 300,
        };
        assert!(store.insert_funding_fill(&fill).await.unwrap());
        assert_eq!(
            store.funding_fills("p-1").await.unwrap(),
            vec![fill],
            "{backend}"
        );

        let payment = FundingPaymentRow {
            payment_id: "pay-1".into(),
            position_id: "p-1".into(),
            symbol: "BTCUSDT-PERP".into(),
            amount: d("-0.0768"),
            rate: d("0.0001"),
            mark: d("64000"),
            size: d("0.012"),
            source: "venue".into(),
            time_ms: 400,
        };
        assert!(store.insert_funding_payment(&payment).await.unwrap());
        assert_eq!(
            store.funding_payments("p-1").await.unwrap(),
            vec![payment],
            "{backend}"
        );

        let pnl = FundingPnlRow {
            time_ms: 500,
            total_funding: d("1.5"),
            total_fees: d("0.42"),
            unrealized: d("-0.3"),
            net: d("0.78"),
            open_positions: 1,
        };
        store.append_funding_pnl(&pnl).await.unwrap();
        assert_eq!(
            store.funding_pnl_history().await.unwrap(),
            vec![pnl],
            "{backend}"
        );

        // A stored value that is not a decimal is an error naming it, not a zero.
        store
            .execute_raw("UPDATE funding_payments SET rate = 'junk' WHERE payment_id = 'pay-1'")
            .await
            .unwrap();
        let err = store.funding_payments("p-1").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "database: error occurred while decoding column \"rate\": stored value \"junk\" is not a decimal",
            "{backend}"
        );
        store.close().await;
    }
}

/// A Postgres URL whose port refuses connections is an error at once that
/// names host:port and the cause, not a silent wait for the pool's acquire
/// timeout ending in "pool timed out". The acquire timeout here is an hour:
/// an answer at all proves the store did not wait for it.
#[tokio::test]
async fn refused_postgres_fails_fast_naming_host_port_and_cause() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://herd:hunter2@127.0.0.1:{port}/herd");
    let Err(err) = Store::connect_with_timeout(&url, std::time::Duration::from_secs(3600)).await
    else {
        panic!("nothing listens on port {port}");
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot connect to the database at 127.0.0.1:{port}: "
        )),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(!msg.contains("timed out"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}
