//! [`FundingApi`] over the gateway: the engine's execution layer journals
//! every leg like any other order (owner "funding"), and the perps RPCs
//! (ListFundingRates, GetPositions, GetAccountMargin, ListFundingPayments)
//! feed the monitor, the reconciliation and the PnL tracker.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use herd_proto::gateway as pb;
use rust_decimal::Decimal;
use tonic::{Code, Status};

use crate::execution::{Mode, Shared, now_ms};
use herd_strategies::funding::api::{
    ApiError, BalanceInfo, FundingApi, InstrumentKind, InstrumentSpec, LegOrder, MarginInfo,
    OrderReport, OrderStatus, PaymentInfo, PosSide, RateSnapshot, Side, VenuePosition,
};
use herd_strategies::strategy::OrderIntent;

/// The owner recorded with the orchestrator's orders.
pub const OWNER: &str = "funding";

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s.trim()).unwrap_or_default()
}

fn err(s: Status) -> ApiError {
    use herd_proto::answer::{Answer, classify};
    match classify(&s) {
        Answer::OutcomeUnknown => ApiError::Unknown(s.message().to_string()),
        Answer::Unsupported => ApiError::Unsupported(s.message().to_string()),
        Answer::Refused | Answer::InvalidRequest | Answer::NotFound | Answer::Draining => {
            ApiError::Refused(s.message().to_string())
        }
    }
}

fn read_err(s: Status) -> ApiError {
    match s.code() {
        Code::Unimplemented => ApiError::Unsupported(s.message().to_string()),
        _ => ApiError::Other(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// Converts the gateway's order.
pub fn report(o: &pb::Order) -> OrderReport {
    OrderReport {
        client_order_id: o.client_order_id.clone(),
        status: match pb::OrderStatus::try_from(o.status) {
            Ok(pb::OrderStatus::Open) => OrderStatus::Open,
            Ok(pb::OrderStatus::Filled) => OrderStatus::Filled,
            Ok(pb::OrderStatus::Canceled) => OrderStatus::Canceled,
            Ok(pb::OrderStatus::Expired) => OrderStatus::Expired,
            Ok(pb::OrderStatus::Rejected) => OrderStatus::Rejected,
            _ => OrderStatus::Pending,
        },
        executed: dec(&o.volume_executed),
        avg_price: dec(&o.average_price),
        fee: dec(&o.fee),
        fee_asset: o.fee_asset.clone(),
        reason: o.reason.clone(),
    }
}

/// The orchestrator's venue, through the engine's gateway connection.
pub struct GatewayApi {
    shared: Arc<Shared>,
    venue: Mutex<String>,
}

impl std::fmt::Debug for GatewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayApi").finish_non_exhaustive()
    }
}

impl GatewayApi {
    pub fn new(shared: Arc<Shared>) -> GatewayApi {
        GatewayApi {
            shared,
            venue: Mutex::new(String::new()),
        }
    }
}

impl FundingApi for GatewayApi {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn new_client_id(&self) -> String {
        self.shared.next_id("f")
    }

    fn venue_name(&self) -> String {
        self.venue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn opening_blocked(&self) -> Option<String> {
        let st = self.shared.state();
        match st.mode {
            Mode::Running => None,
            m => Some(format!("engine is {m:?}: {}", st.pause_reason)),
        }
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSpec>, ApiError> {
        if self.venue_name().is_empty()
            && let Ok(s) = self
                .shared
                .gateway
                .clone()
                .get_session(pb::GetSessionRequest {})
                .await
        {
            *self.venue.lock().unwrap_or_else(|p| p.into_inner()) = s.into_inner().venue;
        }
        let list = self
            .shared
            .gateway
            .clone()
            .list_instruments(pb::ListInstrumentsRequest {})
            .await
            .map_err(read_err)?
            .into_inner()
            .instruments;
        Ok(list
            .into_iter()
            .filter_map(|i| {
                let kind = match pb::InstrumentKind::try_from(i.kind).ok()? {
                    pb::InstrumentKind::Perpetual => InstrumentKind::Perpetual,
                    _ => InstrumentKind::Spot,
                };
                Some(InstrumentSpec {
                    qty_step: Decimal::new(1, i.lot_decimals.min(28)),
                    min_qty: dec(&i.min_volume),
                    min_notional: dec(&i.min_cost),
                    taker_fee: dec(&i.taker_fee),
                    symbol: i.symbol,
                    base: i.base,
                    quote: i.quote,
                    kind,
                    active: true,
                })
            })
            .collect())
    }

    async fn funding_rates(&self) -> Result<Vec<RateSnapshot>, ApiError> {
        let r = self
            .shared
            .gateway
            .clone()
            .list_funding_rates(pb::ListFundingRatesRequest { symbols: vec![] })
            .await
            .map_err(read_err)?
            .into_inner();
        Ok(r.rates
            .into_iter()
            .map(|x| RateSnapshot {
                rate: dec(&x.rate),
                interval_hours: x.interval_hours.max(1),
                next_funding_ms: x.next_funding_ms,
                mark: dec(&x.mark),
                index: dec(&x.index),
                turnover_24h_usd: dec(&x.turnover_24h_usd),
                time_ms: x.time_ms,
                symbol: x.symbol,
            })
            .collect())
    }

    async fn balances(&self) -> Result<Vec<BalanceInfo>, ApiError> {
        let r = self
            .shared
            .gateway
            .clone()
            .get_balances(pb::GetBalancesRequest {})
            .await
            .map_err(read_err)?
            .into_inner();
        Ok(r.balances
            .into_iter()
            .map(|b| BalanceInfo {
                total: dec(&b.total),
                free: dec(&b.free),
                asset: b.asset,
            })
            .collect())
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, ApiError> {
        let r = self
            .shared
            .gateway
            .clone()
            .get_positions(pb::GetPositionsRequest {
                symbol: String::new(),
            })
            .await
            .map_err(read_err)?
            .into_inner();
        Ok(r.positions
            .into_iter()
            .filter_map(|p| {
                let side = match pb::PositionSide::try_from(p.side).ok()? {
                    pb::PositionSide::Long => PosSide::Long,
                    pb::PositionSide::Short => PosSide::Short,
                    pb::PositionSide::Unspecified => return None,
                };
                Some(VenuePosition {
                    side,
                    size: dec(&p.size),
                    entry_price: dec(&p.entry_price),
                    mark_price: dec(&p.mark_price),
                    symbol: p.symbol,
                })
            })
            .collect())
    }

    async fn margin(&self) -> Result<MarginInfo, ApiError> {
        let m = self
            .shared
            .gateway
            .clone()
            .get_account_margin(pb::GetAccountMarginRequest {})
            .await
            .map_err(read_err)?
            .into_inner();
        Ok(MarginInfo {
            equity: dec(&m.equity),
            available: dec(&m.available),
            maintenance_margin_ratio: dec(&m.maintenance_margin_ratio),
        })
    }

    async fn funding_payments(
        &self,
        symbol: &str,
        since_ms: i64,
    ) -> Result<Vec<PaymentInfo>, ApiError> {
        let r = self
            .shared
            .gateway
            .clone()
            .list_funding_payments(pb::ListFundingPaymentsRequest {
                symbol: symbol.to_string(),
                since_ms: since_ms.max(0),
                until_ms: 0,
                limit: 0,
            })
            .await
            .map_err(read_err)?
            .into_inner();
        Ok(r.payments
            .into_iter()
            .map(|p| PaymentInfo {
                amount: dec(&p.amount),
                rate: dec(&p.rate),
                mark: dec(&p.mark_price),
                size: dec(&p.size),
                time_ms: p.time_ms,
                id: p.id,
                symbol: p.symbol,
            })
            .collect())
    }

    async fn place(&self, order: &LegOrder) -> Result<OrderReport, ApiError> {
        let intent = OrderIntent {
            client_order_id: order.client_order_id.clone(),
            symbol: order.symbol.clone(),
            side: match order.side {
                Side::Buy => Side::Buy,
                Side::Sell => Side::Sell,
            },
            volume: order.qty,
            price: None,
            post_only: false,
            userref_offset: 0,
        };
        self.shared
            .place_with(OWNER, &intent, order.reduce_only)
            .await
            .map(|o| report(&o))
            .map_err(err)
    }

    async fn query(&self, client_order_id: &str) -> Result<Option<OrderReport>, ApiError> {
        let r = self
            .shared
            .gateway
            .clone()
            .query_orders(pb::QueryOrdersRequest {
                client_order_ids: vec![client_order_id.to_string()],
            })
            .await;
        match r {
            Ok(resp) => {
                let orders = resp.into_inner().orders;
                if let Some(o) = orders.first()
                    && let Err(e) = self.shared.store.update_order(o, now_ms()).await
                {
                    tracing::warn!(error = %e, "journal update failed");
                }
                Ok(orders
                    .iter()
                    .find(|o| o.client_order_id == client_order_id)
                    .map(report))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(read_err(s)),
        }
    }

    async fn cancel(&self, client_order_id: &str) -> Result<OrderReport, ApiError> {
        self.shared
            .cancel(client_order_id)
            .await
            .map(|o| report(&o))
            .map_err(err)
    }
}
