//! The engine's view of its own risk book at the gateway (docs/risk.md).
//!
//! The gateway enforces the limits; the engine only reads what the gateway
//! says of it (`GetRiskState` for itself) so GetStatus, the dashboard and
//! the metrics can show the state, the last breach and the denials. It reads
//! every [`RISK_READ_EVERY`] and at once after a PlaceOrder comes back with a
//! `herd-risk-code` ([`Shared::risk_changed`]).

use std::sync::Arc;
use std::time::Duration;

use herd_proto::engine as pb;
use herd_proto::gateway as gpb;

use crate::execution::{Shared, now_ms};

/// How often the engine reads its risk book when nothing happens.
pub const RISK_READ_EVERY: Duration = Duration::from_secs(5);

/// The last read, as the engine keeps it.
#[derive(Debug, Clone, Default)]
pub struct RiskRead {
    pub book: Option<gpb::RiskBook>,
    pub read_ms: i64,
    pub error: String,
}

/// Reads the engine's risk book until the process ends.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let r = shared
            .gateway
            .clone()
            .get_risk_state(gpb::GetRiskStateRequest {
                engine_id: shared.cfg.id.clone(),
            })
            .await;
        {
            let mut st = shared.state();
            let read = st.risk.get_or_insert_with(RiskRead::default);
            match r {
                Ok(resp) => {
                    let book = resp
                        .into_inner()
                        .engines
                        .into_iter()
                        .find(|b| b.engine_id == shared.cfg.id);
                    read.book = book;
                    read.read_ms = now_ms();
                    read.error.clear();
                }
                // The last good read stays, with its age and the failure.
                Err(s) => read.error = format!("{:?}: {}", s.code(), s.message()),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RISK_READ_EVERY) => {}
            () = shared.risk_changed.notified() => {}
        }
    }
}

/// `TRADING_STATE_HALTED` -> `HALTED`.
fn state_name(state: i32) -> String {
    gpb::TradingState::try_from(state)
        .map_or("UNSPECIFIED", |s| s.as_str_name())
        .trim_start_matches("TRADING_STATE_")
        .to_string()
}

/// GetStatus's block.
pub fn status_pb(read: &RiskRead) -> pb::EngineRiskStatus {
    let b = read.book.clone().unwrap_or_default();
    pb::EngineRiskStatus {
        state: if read.book.is_some() {
            state_name(b.state)
        } else {
            String::new()
        },
        open_orders: b.open_orders,
        gross_exposure: b.gross_exposure,
        realized_pnl_today: b.realized_pnl_today,
        pnl_today: b.pnl_today,
        last_breach_code: b.last_breach_code,
        last_breach_message: b.last_breach_message,
        last_breach_ms: b.last_breach_ms,
        denials: b.denials.into_iter().collect(),
        read_ms: read.read_ms,
        read_error: read.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_named_without_the_prefix() {
        assert_eq!(state_name(gpb::TradingState::Halted as i32), "HALTED");
        assert_eq!(state_name(gpb::TradingState::Reducing as i32), "REDUCING");
        assert_eq!(state_name(99), "UNSPECIFIED");
    }

    #[test]
    fn a_failed_read_keeps_the_last_book_and_says_why() {
        let read = RiskRead {
            book: Some(gpb::RiskBook {
                engine_id: "e0".into(),
                state: gpb::TradingState::Reducing as i32,
                last_breach_code: "daily_loss".into(),
                ..Default::default()
            }),
            read_ms: 5,
            error: "Unavailable: gateway down".into(),
        };
        let s = status_pb(&read);
        assert_eq!(s.state, "REDUCING");
        assert_eq!(s.last_breach_code, "daily_loss");
        assert_eq!(s.read_ms, 5);
        assert!(s.read_error.contains("gateway down"));
        assert_eq!(status_pb(&RiskRead::default()).state, "");
    }
}
