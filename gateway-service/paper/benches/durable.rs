//! What persisting every accepted place and cancel costs the paper venue
//! with a state file (issue 23, bug 8), against writing the whole snapshot
//! per order. Prints the numbers docs/benchmarks.md quotes:
//! `cargo bench -p herd-paper --bench durable` (add `--profile dev` for the
//! debug build the test suite and `cargo run` use).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_paper::{PaperConfig, PaperVenue};
use herd_venue::{NewOrder, OrderRef, OrderType, Side, SystemClock, Venue};
use rust_decimal::Decimal;

const N: u32 = 100;

fn order(id: String, price: Decimal) -> NewOrder {
    NewOrder {
        client_order_id: id,
        symbol: "DOGEUSD".into(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        volume: Decimal::from(10),
        price: Some(price),
        post_only: true,
        userref: 0,
        reduce_only: false,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("paper.json");
    // The local herd's shape: DOGE/USD and the USDT spot and perp pairs
    // with 4,400 minutes of candles behind them.
    let cfg = PaperConfig {
        history_minutes: 4_400,
        ..PaperConfig::default()
    };
    let v = PaperVenue::load_or_new(&cfg, Arc::new(SystemClock), &state).unwrap();
    v.save(&state).unwrap();
    let snapshot_bytes = std::fs::metadata(&state).unwrap().len();
    let bid = v.ticker("DOGEUSD").await.unwrap().bid;
    let price = (bid * Decimal::new(9, 1)).round_dp(7);

    let per = |d: Duration| d / N;
    let start = Instant::now();
    for i in 0..N {
        v.place_order(&order(format!("s-{i}"), price))
            .await
            .unwrap();
    }
    let place = per(start.elapsed());
    let start = Instant::now();
    for i in 0..N {
        v.cancel_order(&OrderRef {
            client_order_id: format!("s-{i}"),
            venue_order_id: None,
        })
        .await
        .unwrap();
    }
    let cancel = per(start.elapsed());
    let start = Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let v = v.clone();
            tokio::spawn(async move { v.place_order(&order(format!("c-{i}"), price)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let concurrent = start.elapsed();
    let record_bytes = std::fs::metadata(dir.path().join("paper.json.account"))
        .unwrap()
        .len();
    let start = Instant::now();
    for _ in 0..10 {
        v.save(&state).unwrap();
    }
    let snapshot = start.elapsed() / 10;

    println!("snapshot (the whole exchange): {snapshot_bytes} bytes, {snapshot:?} per save");
    println!("account record after {N} open orders: {record_bytes} bytes");
    println!(
        "place, one at a time:  {place:?} each (record written and fsynced before the answer)"
    );
    println!("cancel, one at a time: {cancel:?} each");
    println!(
        "{N} places at once:    {concurrent:?} in all, {:?} per order (they share writes)",
        concurrent / N
    );
}
