//! `herd.engine.v1.Engine`: status and operator control of one engine.

use std::sync::Arc;

use herd_proto::auth::token_matches;
use herd_proto::engine as pb;
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use crate::config::Secret;
use crate::execution::{ActionFailure, Mode, Shared, now_ms};
use herd_strategies::grid;
use herd_strategies::rangers;
use herd_strategies::strategy::{Action, Command, CommandError, OrderIntent, Side};

/// Checks the operator's bearer token on every control call.
#[derive(Clone)]
pub struct ControlAuth {
    token: Vec<u8>,
}

impl std::fmt::Debug for ControlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlAuth(REDACTED)")
    }
}

impl ControlAuth {
    pub fn new(token: &Secret) -> ControlAuth {
        ControlAuth {
            token: token.expose().as_bytes().to_vec(),
        }
    }

    pub fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let v = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("missing authorization metadata (\"Bearer <token>\")")
            })?;
        let presented = v
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?
            .as_bytes();
        if token_matches(&self.token, presented) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("unknown token"))
        }
    }
}

/// The control service.
#[derive(Debug, Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

impl ControlService {
    pub fn new(shared: Arc<Shared>) -> ControlService {
        ControlService { shared }
    }
}

fn ok(message: impl Into<String>) -> Response<pb::ControlResponse> {
    Response::new(pb::ControlResponse {
        ok: true,
        message: message.into(),
    })
}

/// The emergency stop (RPC and SIGUSR1): halts the engine, cancels its open
/// orders and fires the funding orchestrator's emergency controller (one
/// shot: it closes every position and stops opening). Returns (ok, message).
pub async fn emergency_stop(shared: &Shared, reason: &str) -> (bool, String) {
    {
        let mut st = shared.state();
        st.mode = Mode::Halted;
        st.pause_reason = reason.to_string();
    }
    tracing::error!(%reason, "EMERGENCY STOP");
    crate::events::record(
        &shared.store,
        now_ms(),
        herd_proto::events::kind::EMERGENCY_STOP,
        herd_proto::gateway::Severity::Critical,
        format!("emergency stop: {reason}"),
    )
    .await;
    let funding = match shared.funding.get() {
        Some(f) if f.trigger_emergency(reason, now_ms()) => {
            "; funding: closing every position".to_string()
        }
        Some(_) => "; funding: emergency already fired".to_string(),
        None => String::new(),
    };
    let open = match shared
        .gateway
        .clone()
        .list_open_orders(herd_proto::gateway::ListOpenOrdersRequest {
            symbol: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().orders,
        Err(s) => {
            return (
                false,
                format!("halted; cannot list open orders: {}{funding}", s.message()),
            );
        }
    };
    let mut failed = Vec::new();
    for o in &open {
        if let Err(s) = shared.cancel(&o.client_order_id).await {
            failed.push(format!("{}: {}", o.client_order_id, s.message()));
        }
    }
    if failed.is_empty() {
        (
            true,
            format!("halted; canceled {} open orders{funding}", open.len()),
        )
    } else {
        (
            false,
            format!(
                "halted; canceled {} of {} open orders; FAILED: {}{funding}",
                open.len() - failed.len(),
                open.len(),
                failed.join("; ")
            ),
        )
    }
}

fn funding_handle(shared: &Shared) -> Result<&crate::funding::FundingHandle, Status> {
    shared.funding.get().map(|f| f.as_ref()).ok_or_else(|| {
        Status::failed_precondition(
            "this engine runs no funding orchestrator ([funding] enabled = false)",
        )
    })
}

/// Parses an optional decimal field (never negative): empty keeps `current`.
fn limit_field(field: &str, v: &str, current: Decimal) -> Result<Decimal, Status> {
    if v.is_empty() {
        return Ok(current);
    }
    strict_decimal(field, v)
}

fn parse_positive(field: &str, s: &str) -> Result<Decimal, Status> {
    let d = strict_decimal(field, s)?;
    if d <= Decimal::ZERO {
        return Err(Status::invalid_argument(format!(
            "{field}: must be greater than zero, got {d}"
        )));
    }
    Ok(d)
}

/// herd-types' strict decimal grammar, no minus; INVALID_ARGUMENT naming
/// the field.
fn strict_decimal(field: &str, s: &str) -> Result<Decimal, Status> {
    herd_types::decimal::parse_decimal(s, herd_types::decimal::Sign::Unsigned)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

impl ControlService {
    /// Runs an operator command on the grid and its actions; a refusal is
    /// FAILED_PRECONDITION with the reason.
    async fn grid_command(&self, cmd: Command) -> Result<Response<pb::ControlResponse>, Status> {
        let (message, _) = self.grid_command_with_failures(cmd).await?;
        Ok(ok(message))
    }

    /// [`ControlService::grid_command`], returning the message and the
    /// order actions that failed (including what the grid did about them).
    async fn grid_command_with_failures(
        &self,
        cmd: Command,
    ) -> Result<(String, Vec<ActionFailure>), Status> {
        let (message, actions): (String, Vec<Action>) = {
            let mut strategies = self.shared.strategies.lock().await;
            let g = strategies
                .iter_mut()
                .find(|s| s.name() == grid::STRATEGY_NAME)
                .ok_or_else(|| Status::failed_precondition("this engine runs no grid strategy"))?;
            match g.command(&cmd, now_ms()) {
                Some(Ok(r)) => r,
                Some(Err(CommandError::NotFound(e))) => return Err(Status::not_found(e)),
                Some(Err(CommandError::Refused(e))) => return Err(Status::failed_precondition(e)),
                None => return Err(Status::unimplemented("the grid does not take this command")),
            }
        };
        tracing::warn!(?cmd, %message, "operator command");
        let churner = match &cmd {
            Command::SpawnChurner => Some((herd_proto::events::kind::CHURNER_SPAWNED, "spawned")),
            Command::KillChurner { .. } => {
                Some((herd_proto::events::kind::CHURNER_KILLED, "killed"))
            }
            _ => None,
        };
        if let Some((kind, verb)) = churner {
            crate::events::record(
                &self.shared.store,
                now_ms(),
                kind,
                herd_proto::gateway::Severity::Notice,
                format!("churner {verb}: {message}"),
            )
            .await;
        }
        let failures = self.shared.execute(grid::STRATEGY_NAME, actions).await;
        Ok((message, failures))
    }
}

/// The longest free-text field (a reason) an operator call may carry, in
/// characters: enough to say why, small enough for a status line and a log.
pub const MAX_FREE_TEXT_CHARS: usize = 500;

/// `v` when it is at most [`MAX_FREE_TEXT_CHARS`] long; INVALID_ARGUMENT
/// naming `field` otherwise.
pub fn free_text(field: &str, v: String) -> Result<String, Status> {
    let n = v.chars().count();
    if n > MAX_FREE_TEXT_CHARS {
        return Err(Status::invalid_argument(format!(
            "{field}: at most {MAX_FREE_TEXT_CHARS} characters, got {n}"
        )));
    }
    Ok(v)
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Running => "RUNNING",
        Mode::Paused => "PAUSED",
        Mode::Halted => "HALTED",
    }
}

/// SubmitOrder's order type (required) and the price it takes: a limit
/// order's positive price, none for a market order.
fn order_price(order_type: &str, price: &str) -> Result<Option<Decimal>, Status> {
    match order_type.to_ascii_lowercase().as_str() {
        "limit" => Ok(Some(parse_positive("price", price)?)),
        "market" => Ok(None),
        "" => Err(Status::invalid_argument(
            "order_type: is required (limit or market)",
        )),
        other => Err(Status::invalid_argument(format!(
            "order_type: {other:?} is not limit or market"
        ))),
    }
}

/// Longest KeepHolding: 30 days.
pub const MAX_HOLD_HOURS: u32 = 720;

/// KeepHolding's hours: 24 when zero (engine.proto), else 1..=720.
fn keep_holding_hours(hours: u32) -> Result<u32, Status> {
    match hours {
        0 => Ok(24),
        1..=MAX_HOLD_HOURS => Ok(hours),
        _ => Err(Status::invalid_argument(format!(
            "hours: {hours} is more than {MAX_HOLD_HOURS} (30 days)"
        ))),
    }
}

fn position_id(id: String) -> Result<String, Status> {
    if id.trim().is_empty() {
        return Err(Status::invalid_argument("position_id: is required"));
    }
    Ok(id.trim().to_string())
}

#[tonic::async_trait]
impl pb::engine_server::Engine for ControlService {
    async fn spawn_churner(
        &self,
        _req: Request<pb::SpawnChurnerRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        if self.shared.state().mode != Mode::Running {
            return Err(Status::failed_precondition(
                "engine is not running; resume it first",
            ));
        }
        self.grid_command(Command::SpawnChurner).await
    }

    async fn kill_churner(
        &self,
        req: Request<pb::KillChurnerRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let churner_id = req.into_inner().churner_id;
        self.grid_command(Command::KillChurner { churner_id }).await
    }

    async fn reprice_break_even(
        &self,
        req: Request<pb::PositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let position_id = position_id(req.into_inner().position_id)?;
        self.grid_command(Command::RepriceBreakEven { position_id })
            .await
    }

    async fn close_position_at_market(
        &self,
        req: Request<pb::PositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let position_id = position_id(req.into_inner().position_id)?;
        // A paused or halted engine places nothing (an emergency stop
        // halts it): say so rather than start a close that cannot finish.
        {
            let st = self.shared.state();
            if st.mode != Mode::Running {
                return Err(Status::failed_precondition(format!(
                    "position {position_id}: not closed: the engine is {} ({}) and places no orders; \
                     `herdctl resume` first (its strategies trade again), then close the position",
                    mode_word(st.mode),
                    st.pause_reason
                )));
            }
        }
        let (message, failures) = self
            .grid_command_with_failures(Command::CloseAtMarket {
                position_id: position_id.clone(),
            })
            .await?;
        if failures.is_empty() {
            return Ok(ok(message));
        }
        let why: Vec<String> = failures
            .iter()
            .map(|f| format!("{}: {}", f.client_order_id, f.message))
            .collect();
        Err(Status::failed_precondition(format!(
            "position {position_id}: not closed: {}; the position stays open",
            why.join("; ")
        )))
    }

    async fn keep_holding(
        &self,
        req: Request<pb::KeepHoldingRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let r = req.into_inner();
        let position_id = position_id(r.position_id)?;
        let hours = keep_holding_hours(r.hours)?;
        self.grid_command(Command::KeepHolding { position_id, hours })
            .await
    }

    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let dry_run = req.into_inner().dry_run;
        let report = crate::reconcile::operator(&self.shared, dry_run).await?;
        Ok(Response::new(crate::view::reconcile_response_pb(&report)))
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::EngineStatus>, Status> {
        Ok(Response::new(
            crate::view::engine_status(&self.shared).await?,
        ))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let reason = Some(free_text("reason", req.into_inner().reason)?)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "paused by operator".into());
        let mut st = self.shared.state();
        if st.mode == Mode::Halted {
            return Err(Status::failed_precondition(
                "engine is halted; resume it first",
            ));
        }
        st.mode = Mode::Paused;
        st.pause_reason = reason.clone();
        tracing::warn!(%reason, "engine paused");
        Ok(ok(format!("paused: {reason}")))
    }

    async fn resume(
        &self,
        _req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let mut st = self.shared.state();
        st.mode = Mode::Running;
        st.pause_reason.clear();
        st.consecutive_errors = 0;
        tracing::info!("engine resumed");
        Ok(ok("running"))
    }

    async fn emergency_stop(
        &self,
        req: Request<pb::EmergencyStopRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let reason = Some(free_text("reason", req.into_inner().reason)?)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "emergency stop by operator".into());
        let (ok, message) = emergency_stop(&self.shared, &reason).await;
        Ok(Response::new(pb::ControlResponse { ok, message }))
    }

    async fn submit_order(
        &self,
        req: Request<pb::SubmitOrderRequest>,
    ) -> Result<Response<pb::SubmitOrderResponse>, Status> {
        let r = req.into_inner();
        let side = match r.side.to_ascii_lowercase().as_str() {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => {
                return Err(Status::invalid_argument(format!(
                    "side: {other:?} is not buy or sell"
                )));
            }
        };
        let price = order_price(&r.order_type, &r.price)?;
        let volume = parse_positive("volume", &r.volume)?;
        let symbol = if r.symbol.is_empty() {
            self.shared.cfg.symbol.clone()
        } else {
            r.symbol
        };
        // Shutting down: UNAVAILABLE, so a client retries after the restart.
        self.shared.drain.check_accepting()?;
        let mode = self.shared.state().mode;
        if mode != Mode::Running {
            return Err(Status::failed_precondition(format!(
                "engine is {mode:?}; resume it first"
            )));
        }
        let intent = OrderIntent {
            client_order_id: self.shared.next_id("m"),
            symbol,
            side,
            volume,
            price,
            post_only: r.post_only,
            userref_offset: 0,
        };
        let order = self.shared.place("manual", &intent).await?;
        let status = status_word(order.status).to_ascii_lowercase();
        Ok(Response::new(pb::SubmitOrderResponse {
            client_order_id: order.client_order_id,
            status,
        }))
    }

    async fn cancel_order(
        &self,
        req: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let id = req.into_inner().client_order_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("client_order_id: is required"));
        }
        let o = self.shared.cancel(&id).await?;
        Ok(ok(format!(
            "order {} is {}",
            o.client_order_id,
            status_word(o.status)
        )))
    }

    async fn set_rangers_enabled(
        &self,
        req: Request<pb::SetRangersEnabledRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let enabled = req.into_inner().enabled;
        let actions = {
            let mut strategies = self.shared.strategies.lock().await;
            let Some(r) = strategies
                .iter_mut()
                .find(|s| s.name() == rangers::STRATEGY_NAME)
            else {
                return Err(Status::failed_precondition(
                    "this engine runs no rangers strategy",
                ));
            };
            r.set_enabled(enabled, now_ms()).unwrap_or_default()
        };
        let cancels = actions
            .iter()
            .filter(|a| matches!(a, herd_strategies::strategy::Action::Cancel { .. }))
            .count();
        tracing::warn!(enabled, cancels, "rangers switched by operator");
        self.shared.execute(rangers::STRATEGY_NAME, actions).await;
        Ok(ok(if enabled {
            "rangers enabled".to_string()
        } else {
            format!("rangers disabled; {cancels} ranger orders asked to cancel")
        }))
    }

    async fn set_funding_opening(
        &self,
        req: Request<pb::SetFundingOpeningRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let r = req.into_inner();
        let reason = free_text("reason", r.reason)?;
        let f = funding_handle(&self.shared)?;
        if r.paused {
            let reason = Some(reason)
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "paused by operator".into());
            f.set_opening_paused(Some(reason.clone()));
            Ok(ok(format!("funding opening paused: {reason}")))
        } else {
            f.set_opening_paused(None);
            let e = f.emergency();
            Ok(ok(if e.triggered {
                "funding opening resumed, but the emergency stop has fired: nothing opens until it is cleared (ClearFundingEmergency)".to_string()
            } else {
                "funding opening resumed".to_string()
            }))
        }
    }

    async fn close_funding_position(
        &self,
        req: Request<pb::CloseFundingPositionRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let f = funding_handle(&self.shared)?;
        let symbol = req.into_inner().symbol;
        if symbol.trim().is_empty() {
            return Err(Status::invalid_argument("symbol: is required"));
        }
        match f.close_position(symbol.trim()).await {
            Ok(m) => Ok(ok(m)),
            Err(m) if m.starts_with("no open funding position") => Err(Status::not_found(m)),
            Err(m) => Ok(Response::new(pb::ControlResponse {
                ok: false,
                message: m,
            })),
        }
    }

    async fn clear_funding_emergency(
        &self,
        req: Request<pb::ClearFundingEmergencyRequest>,
    ) -> Result<Response<pb::ControlResponse>, Status> {
        let reason = free_text("reason", req.into_inner().reason)?;
        let f = funding_handle(&self.shared)?;
        let reason = Some(reason)
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "cleared by operator".into());
        f.clear_emergency(&reason)
            .await
            .map(ok)
            .map_err(Status::failed_precondition)
    }

    async fn reload_config(
        &self,
        _req: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let Some(r) = self.shared.reloader.get() else {
            return Err(Status::failed_precondition(
                "this engine was started from code with no configuration to reload",
            ));
        };
        let out = r
            .reload(&self.shared, herd_proto::reload::Trigger::Rpc)
            .await
            .map_err(|e| Status::invalid_argument(format!("nothing changed: {e}")))?;
        Ok(Response::new(pb::ReloadConfigResponse {
            file: r.file(),
            changes: out.changes.iter().map(crate::reload::change_pb).collect(),
            message: out.message,
        }))
    }

    async fn get_config(
        &self,
        _req: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let Some(r) = self.shared.reloader.get() else {
            return Err(Status::failed_precondition(
                "this engine was started from code; its configuration is not kept",
            ));
        };
        Ok(Response::new(r.show().await))
    }

    async fn set_funding_risk_limits(
        &self,
        req: Request<pb::SetFundingRiskLimitsRequest>,
    ) -> Result<Response<pb::FundingRiskLimits>, Status> {
        let f = funding_handle(&self.shared)?;
        let r = req.into_inner();
        let cur = f.limits();
        let next = herd_strategies::funding::RiskLimits {
            max_position_usd: limit_field(
                "max_position_usd",
                &r.max_position_usd,
                cur.max_position_usd,
            )?,
            max_positions: if r.max_positions == 0 {
                cur.max_positions
            } else {
                r.max_positions
            },
            max_total_exposure_usd: limit_field(
                "max_total_exposure_usd",
                &r.max_total_exposure_usd,
                cur.max_total_exposure_usd,
            )?,
            min_rate: limit_field("min_rate", &r.min_rate, cur.min_rate)?,
            exit_rate: limit_field("exit_rate", &r.exit_rate, cur.exit_rate)?,
            margin_alert: limit_field("margin_alert", &r.margin_alert, cur.margin_alert)?,
            margin_critical: limit_field(
                "margin_critical",
                &r.margin_critical,
                cur.margin_critical,
            )?,
        };
        f.set_limits(next)
            .map_err(|(field, m)| Status::invalid_argument(format!("{field}: {m}")))?;
        Ok(Response::new(f.status().limits.unwrap_or_default()))
    }
}

/// An order status as an operator reads it: "CANCELED", not its number 4.
fn status_word(status: i32) -> &'static str {
    herd_proto::gateway::OrderStatus::try_from(status).map_or("UNKNOWN", |s| {
        s.as_str_name().trim_start_matches("ORDER_STATUS_")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// SubmitOrder's price and volume and SetFundingRiskLimits' fields go
    /// through the strict grammar: what rust_decimal would take is refused,
    /// naming the field, and a number too large is "out of range".
    #[test]
    fn control_decimals_are_strict() {
        let cases: [(Result<Decimal, Status>, &str); 7] = [
            (
                parse_positive("price", "1_000"),
                "price: \"1_000\" is not a decimal number",
            ),
            (
                parse_positive("volume", "+100"),
                "volume: \"+100\" is not a decimal number",
            ),
            (
                parse_positive("volume", " 100 "),
                "volume: \" 100 \" is not a decimal number",
            ),
            (
                parse_positive("price", "123456789012345678901234567890"),
                "price: \"123456789012345678901234567890\" is out of range",
            ),
            (
                parse_positive("price", "0"),
                "price: must be greater than zero",
            ),
            (
                limit_field("min_rate", "0.0_5", Decimal::ONE),
                "min_rate: \"0.0_5\" is not a decimal number",
            ),
            (
                limit_field("max_position_usd", "-5", Decimal::ONE),
                "max_position_usd: \"-5\" must not be negative",
            ),
        ];
        for (got, want) in cases {
            let e = got.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with(want), "{want}: {}", e.message());
        }
        assert_eq!(
            limit_field("min_rate", "", Decimal::ONE).unwrap(),
            Decimal::ONE
        );
        assert_eq!(parse_positive("price", "0.05").unwrap(), Decimal::new(5, 2));
    }

    /// SubmitOrder needs an order type; KeepHolding's hours are bounded.
    #[test]
    fn order_type_required_and_hold_hours_bounded() {
        let e = order_price("", "0.1").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "order_type: is required (limit or market)");
        assert_eq!(
            order_price("LIMIT", "0.1").unwrap(),
            Some(Decimal::new(1, 1))
        );
        assert_eq!(order_price("market", "").unwrap(), None);
        assert!(
            order_price("stop", "1")
                .unwrap_err()
                .message()
                .starts_with("order_type:")
        );
        assert_eq!(keep_holding_hours(0).unwrap(), 24);
        assert_eq!(keep_holding_hours(1).unwrap(), 1);
        assert_eq!(keep_holding_hours(720).unwrap(), 720);
        let e = keep_holding_hours(721).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("hours: 721 is more than 720"),
            "{}",
            e.message()
        );
    }
}
