//! `risk-adversary`: an engine gone bad, as a process of its own. It holds
//! an engine token and sends the gateway whatever orders it is told
//! (JSON lines on stdin), exactly as a buggy or compromised engine could,
//! and prints what the gateway answered to each (JSON lines on stdout).
//! `tests/tests/risk_kraken.rs` drives it against kraken-sim to prove that
//! no order over a risk limit reaches the venue.
//!
//! ```text
//! echo '{"op":"place","id":"big","side":"buy","volume":"1000000","price":"0.10"}' \
//!   | target/debug/risk-adversary --gateway http://127.0.0.1:50051 --token e0-token
//! ```
//!
//! Ops: `{"op":"place","id","side":"buy"|"sell","volume","price"[,"symbol"]}`
//! (a limit order; `"price":""` makes it a market order) and
//! `{"op":"cancel","id"}`. Answers: `{"id","op","ok","grpc","risk_code",
//! "retry_after_ms","message"}`.

use std::io::BufRead;

use clap::Parser;
use herd_proto::gateway as pb;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Sends a gateway the orders it is told, as an engine, and prints the answers")]
struct Args {
    /// The gateway's gRPC URL.
    #[arg(long)]
    gateway: String,
    /// The engine token to send them with.
    #[arg(long)]
    token: String,
}

fn field<'a>(op: &'a Value, k: &str) -> &'a str {
    op.get(k).and_then(Value::as_str).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut g = herd_tests::procs::gateway_client(&args.gateway, &args.token).await?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Value = serde_json::from_str(&line)?;
        let id = field(&op, "id").to_string();
        let kind = field(&op, "op").to_string();
        let r = match kind.as_str() {
            "place" => {
                let price = field(&op, "price");
                let symbol = match field(&op, "symbol") {
                    "" => herd_tests::kraken_herd::SYMBOL,
                    s => s,
                };
                g.place_order(pb::PlaceOrderRequest {
                    client_order_id: id.clone(),
                    symbol: symbol.into(),
                    side: if field(&op, "side") == "sell" {
                        pb::Side::Sell as i32
                    } else {
                        pb::Side::Buy as i32
                    },
                    order_type: if price.is_empty() {
                        pb::OrderType::Market as i32
                    } else {
                        pb::OrderType::Limit as i32
                    },
                    volume: field(&op, "volume").into(),
                    price: price.into(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
            "cancel" => g
                .cancel_order(pb::CancelOrderRequest {
                    client_order_id: id.clone(),
                })
                .await
                .map(|_| ()),
            other => anyhow::bail!("unknown op {other:?} in {line}"),
        };
        let answer = match r {
            Ok(()) => json!({"id": id, "op": kind, "ok": true}),
            Err(s) => json!({
                "id": id,
                "op": kind,
                "ok": false,
                "grpc": format!("{:?}", s.code()),
                "risk_code": herd_proto::answer::risk_code(&s),
                "retry_after_ms": s.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()),
                "message": s.message(),
            }),
        };
        println!("{answer}");
    }
    Ok(())
}
