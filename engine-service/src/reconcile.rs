//! The reconcile step: one place where the engine compares what its journal
//! says with what the gateway (and through it the venue) says, and resolves
//! every difference by a written rule (docs/reconcile.md has the table).
//!
//! It runs on every start (before the strategies restore), on every
//! connection to the gateway's event stream (a reconnect, or a new gateway
//! incarnation after a gateway restart) and when an operator asks
//! (`herdctl reconcile`, the `Reconcile` RPC, optionally as a dry run).
//! Three steps: [`gather`] reads the journal's working orders and the
//! gateway's view (this engine's open orders, a lookup by client id of every
//! working order the gateway does not list open, the strategies' open
//! positions); [`differences`] (pure) turns that into typed
//! [`Difference`]s, each with the [`Action`] its rule picks; [`apply`] does
//! the actions (not in a dry run) and journals each one (journal stream
//! `reconcile`). One reconcile runs at a time.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use herd_proto::answer;
use herd_proto::gateway as pb;
use rust_decimal::Decimal;
use serde::Serialize;
use tonic::Status;

use crate::config::UnknownOrderPolicy;
use crate::execution::{Shared, UNKNOWN_OUTCOME_ASK_MS, now_ms, update_from_event};
use crate::store::{OrderRow, is_final_status};
use herd_strategies::strategy::{OrderUpdate, UpdateKind};

/// The journal stream the reconcile step writes what it did to.
pub const JOURNAL_STREAM: &str = "reconcile";

/// Why a reconcile ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The engine started (before its strategies restore).
    Start,
    /// The event stream (re)connected to the same gateway incarnation.
    Reconnect,
    /// The event stream connected to a new gateway incarnation: the old
    /// event log is gone, so what it would have told is learned here.
    GatewayRestart,
    /// An operator asked (`herdctl reconcile`).
    Operator,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Reconnect => "reconnect",
            Trigger::GatewayRestart => "gateway_restart",
            Trigger::Operator => "operator",
        }
    }
}

/// The kinds of difference between the journal and the gateway's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A working order (open or partly filled in the journal) that neither
    /// the gateway nor the venue knows.
    Lost,
    /// A pending order (its place was never answered) that the gateway does
    /// not know: it never reached the gateway, which registers an order
    /// before sending it.
    NeverReachedGateway,
    /// A working order the venue closed (filled, cancelled, expired) while
    /// nobody was listening.
    ClosedWhileDown,
    /// The venue executed more of an order than the journal has fills for.
    MissingFill,
    /// The journal's state is behind (pending in the journal, open at the
    /// venue) with nothing executed that the journal lacks.
    StateBehind,
    /// An open order with this engine's prefix that the journal does not
    /// know.
    UnknownOpenOrder,
    /// An order open at the venue that the journal says is closed.
    OpenButClosedInJournal,
    /// A strategy's open position whose order (its exit) the venue does not
    /// have open.
    PositionWithoutOrder,
    /// The gateway could not answer about a working order (its lookup
    /// failed): nothing is decided.
    Unresolved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::NeverReachedGateway => "never_reached_gateway",
            Kind::ClosedWhileDown => "closed_while_down",
            Kind::MissingFill => "missing_fill",
            Kind::StateBehind => "state_behind",
            Kind::UnknownOpenOrder => "unknown_open_order",
            Kind::OpenButClosedInJournal => "open_but_closed_in_journal",
            Kind::PositionWithoutOrder => "position_without_order",
            Kind::Unresolved => "unresolved",
        }
    }
}

/// What a difference's rule does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Close the order in the journal as `lost` (with a warning); a live
    /// strategy is told it was cancelled.
    CloseAsLost,
    /// Close the order in the journal as rejected ("never reached the
    /// gateway").
    Reject,
    /// Write the gateway's state of the order into the journal.
    JournalState,
    /// Journal the missing fill once (keyed by order and cumulative volume)
    /// and hand it to the owning strategy.
    JournalFill,
    /// Nothing here: the event stream replays it after the cursor (doing it
    /// here too would hand the strategy the same update twice).
    LeaveToStream,
    /// Cancel the order at the venue.
    Cancel,
    /// Journal the order (owner `adopted`) and leave it open.
    Adopt,
    /// Surfaced (status, log); the owning strategy's own rule for an order
    /// gone outside it applies (the grid: the exit waits in recovery and is
    /// placed again).
    StrategyRule,
    /// Nothing yet: asked again at the next reconcile (or resolved by the
    /// unknown-outcome ask).
    Wait,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CloseAsLost => "close_as_lost",
            Action::Reject => "reject",
            Action::JournalState => "journal_state",
            Action::JournalFill => "journal_fill",
            Action::LeaveToStream => "leave_to_stream",
            Action::Cancel => "cancel",
            Action::Adopt => "adopt",
            Action::StrategyRule => "strategy_rule",
            Action::Wait => "wait",
        }
    }

    /// Whether applying it changes anything (the journal or the venue).
    fn changes_something(self) -> bool {
        !matches!(
            self,
            Action::LeaveToStream | Action::StrategyRule | Action::Wait
        )
    }
}

/// One difference and the action its rule picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub kind: Kind,
    pub client_order_id: String,
    /// The owning strategy as the journal has it ("" when it has none).
    pub owner: String,
    /// What the journal and the gateway each say, in words.
    pub detail: String,
    pub action: Action,
    /// The gateway's view of the order, when it has one.
    pub venue: Option<pb::Order>,
    /// The journal's row, when it has one.
    pub journal: Option<OrderRow>,
    /// After applying: "done" or "failed: why"; empty before (and in a dry
    /// run).
    pub outcome: String,
}

/// What the gateway answered about one working order it does not list open.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Box<pb::Order>),
    /// Neither the gateway nor the venue knows it.
    NotFound,
    /// The lookup failed (the gateway or the venue is in trouble).
    Failed(String),
}

/// Everything a reconcile compares, read once.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// The journal's working orders (not in a final state).
    pub working: Vec<OrderRow>,
    /// This engine's open orders as the gateway lists them.
    pub venue_open: Vec<pb::Order>,
    /// Lookups by client id of working orders not in `venue_open`.
    pub lookups: HashMap<String, Lookup>,
    /// The journal's rows for open orders that are not working in the
    /// journal (closed there), by client id.
    pub journal_closed: HashMap<String, OrderRow>,
    /// (strategy, position, order) of each open position the strategies
    /// hold, with the journal's status of that order ("" when unknown).
    pub positions: Vec<PositionRow>,
}

/// One open position of a strategy, as the reconcile step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub strategy: String,
    pub position_id: String,
    pub client_order_id: String,
    pub journal_status: String,
}

/// The rules' inputs besides what was gathered.
#[derive(Debug, Clone)]
pub struct Context {
    pub now_ms: i64,
    /// The event stream will replay what happened since the journal's
    /// cursor (same gateway incarnation): fills and state changes are left
    /// to it. False after a gateway restart (the old event log is gone).
    pub stream_replays: bool,
    pub unknown_open_orders: UnknownOrderPolicy,
    /// Orders whose place had an unknown outcome that the execution layer
    /// is resolving by asking the gateway.
    pub resolving: HashSet<String>,
    /// Why this reconcile runs: an operator's runs beside the strategies'
    /// places, so a young pending order may still be on its way.
    pub trigger: Trigger,
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

fn status_str(status: i32) -> &'static str {
    match pb::OrderStatus::try_from(status) {
        Ok(pb::OrderStatus::Pending) => "pending",
        Ok(pb::OrderStatus::Open) => "open",
        Ok(pb::OrderStatus::Filled) => "filled",
        Ok(pb::OrderStatus::Canceled) => "canceled",
        Ok(pb::OrderStatus::Expired) => "expired",
        Ok(pb::OrderStatus::Rejected) => "rejected",
        _ => "unknown",
    }
}

/// The rules (docs/reconcile.md): every difference between `g`'s journal
/// and its gateway view, with the action its rule picks, in a stable order
/// (journal orders oldest first, then the venue's unknown orders, then
/// positions).
pub fn differences(g: &Gathered, ctx: &Context) -> Vec<Difference> {
    let mut out = Vec::new();
    let open: HashMap<&str, &pb::Order> = g
        .venue_open
        .iter()
        .map(|o| (o.client_order_id.as_str(), o))
        .collect();
    let working: HashSet<&str> = g
        .working
        .iter()
        .map(|r| r.client_order_id.as_str())
        .collect();
    let mut gone: HashSet<&str> = HashSet::new();
    for row in &g.working {
        let id = row.client_order_id.as_str();
        let diff = |kind, detail: String, action, venue: Option<&pb::Order>| Difference {
            kind,
            client_order_id: id.to_string(),
            owner: row.owner.clone(),
            detail,
            action,
            venue: venue.cloned(),
            journal: Some(row.clone()),
            outcome: String::new(),
        };
        let before = dec(&row.volume_executed);
        let venue = match open.get(id) {
            Some(o) => Some(*o),
            None => match g.lookups.get(id) {
                Some(Lookup::Found(o)) => Some(o.as_ref()),
                Some(Lookup::NotFound) => {
                    gone.insert(id);
                    if row.status == "pending" {
                        let young = ctx.trigger == Trigger::Operator
                            && ctx.now_ms - row.updated_at_ms < UNKNOWN_OUTCOME_ASK_MS;
                        if ctx.resolving.contains(id) || young {
                            // Its place may still be on the way to the
                            // gateway; the unknown-outcome ask settles it.
                            out.push(diff(
                                Kind::NeverReachedGateway,
                                "journal: pending; gateway: unknown (the place may still be in flight)".into(),
                                Action::Wait,
                                None,
                            ));
                        } else {
                            out.push(diff(
                                Kind::NeverReachedGateway,
                                "journal: pending; gateway: unknown".into(),
                                Action::Reject,
                                None,
                            ));
                        }
                    } else {
                        out.push(diff(
                            Kind::Lost,
                            format!(
                                "journal: {} ({} executed); gateway and venue: unknown",
                                row.status,
                                before.normalize()
                            ),
                            Action::CloseAsLost,
                            None,
                        ));
                    }
                    continue;
                }
                Some(Lookup::Failed(why)) => {
                    out.push(diff(
                        Kind::Unresolved,
                        format!("journal: {}; gateway lookup failed: {why}", row.status),
                        Action::Wait,
                        None,
                    ));
                    continue;
                }
                None => None,
            },
        };
        let Some(o) = venue else { continue };
        let after = dec(&o.volume_executed);
        let venue_status = status_str(o.status);
        let closed = is_final_status(venue_status);
        let detail = format!(
            "journal: {} ({} executed); venue: {venue_status} ({} executed)",
            row.status,
            before.normalize(),
            after.normalize()
        );
        if after > before {
            let action = if ctx.stream_replays {
                Action::LeaveToStream
            } else {
                Action::JournalFill
            };
            out.push(diff(Kind::MissingFill, detail, action, Some(o)));
        } else if closed {
            // The journal takes the final state now, so a strategy restores
            // from it; the stream's replay (if any) still tells a strategy,
            // else `apply` does.
            out.push(diff(
                Kind::ClosedWhileDown,
                detail,
                Action::JournalState,
                Some(o),
            ));
        } else if row.status != venue_status
            && !(row.status == "pending" && venue_status == "pending")
        {
            out.push(diff(
                Kind::StateBehind,
                detail,
                Action::JournalState,
                Some(o),
            ));
        }
    }
    for o in &g.venue_open {
        let id = o.client_order_id.as_str();
        if working.contains(id) {
            continue;
        }
        let (kind, action, detail, journal) = match g.journal_closed.get(id) {
            Some(row) => (
                Kind::OpenButClosedInJournal,
                Action::Cancel,
                format!(
                    "journal: {}; venue: open ({} of {})",
                    row.status,
                    dec(&o.volume_executed).normalize(),
                    dec(&o.volume).normalize()
                ),
                Some(row.clone()),
            ),
            None => (
                Kind::UnknownOpenOrder,
                match ctx.unknown_open_orders {
                    UnknownOrderPolicy::Cancel => Action::Cancel,
                    UnknownOrderPolicy::Adopt => Action::Adopt,
                },
                format!(
                    "journal: unknown; venue: open {} {} at {} (policy: {})",
                    side_str(o.side),
                    dec(&o.volume).normalize(),
                    o.price,
                    ctx.unknown_open_orders.as_str()
                ),
                None,
            ),
        };
        out.push(Difference {
            kind,
            client_order_id: id.to_string(),
            owner: journal
                .as_ref()
                .map(|r| r.owner.clone())
                .unwrap_or_default(),
            detail,
            action,
            venue: Some(o.clone()),
            journal,
            outcome: String::new(),
        });
    }
    for p in &g.positions {
        let id = p.client_order_id.as_str();
        if open.contains_key(id) {
            continue;
        }
        let status = p.journal_status.as_str();
        let missing = gone.contains(id)
            || status.is_empty()
            || matches!(status, "canceled" | "expired" | "rejected" | "lost");
        if !missing {
            continue;
        }
        out.push(Difference {
            kind: Kind::PositionWithoutOrder,
            client_order_id: id.to_string(),
            owner: p.strategy.clone(),
            detail: format!(
                "position {}: its order is {} and not open at the venue",
                p.position_id,
                if status.is_empty() {
                    "unknown to the journal"
                } else {
                    status
                }
            ),
            action: Action::StrategyRule,
            venue: None,
            journal: None,
            outcome: String::new(),
        });
    }
    out
}

fn side_str(side: i32) -> &'static str {
    match pb::Side::try_from(side) {
        Ok(pb::Side::Buy) => "buy",
        Ok(pb::Side::Sell) => "sell",
        _ => "?",
    }
}

/// Reads the journal and the gateway's view. Fails only when the gateway
/// cannot list this engine's open orders or the journal cannot be read; a
/// failed lookup of one order becomes [`Lookup::Failed`].
pub async fn gather(shared: &Shared) -> Result<Gathered, Status> {
    let store_err = |e: crate::store::StoreError| Status::internal(format!("journal: {e}"));
    let venue_open = shared
        .gateway
        .clone()
        .list_open_orders(pb::ListOpenOrdersRequest {
            symbol: String::new(),
        })
        .await?
        .into_inner()
        .orders;
    // Read after the list: an order placed in between is journaled (pending)
    // before it is sent, so it is never taken for an unknown one.
    let working = shared.store.working_orders().await.map_err(store_err)?;
    let open_ids: HashSet<&str> = venue_open
        .iter()
        .map(|o| o.client_order_id.as_str())
        .collect();
    let working_ids: HashSet<&str> = working.iter().map(|r| r.client_order_id.as_str()).collect();
    let mut lookups = HashMap::new();
    for row in &working {
        if open_ids.contains(row.client_order_id.as_str()) {
            continue;
        }
        // One id a call: QueryOrders fails whole on an id it does not know.
        let r = shared
            .gateway
            .clone()
            .query_orders(pb::QueryOrdersRequest {
                client_order_ids: vec![row.client_order_id.clone()],
            })
            .await;
        let lookup = match r {
            Ok(resp) => match resp
                .into_inner()
                .orders
                .into_iter()
                .find(|o| o.client_order_id == row.client_order_id)
            {
                Some(o) => Lookup::Found(Box::new(o)),
                None => Lookup::NotFound,
            },
            Err(s) if answer::classify(&s) == answer::Answer::NotFound => Lookup::NotFound,
            Err(s) => Lookup::Failed(s.message().to_string()),
        };
        lookups.insert(row.client_order_id.clone(), lookup);
    }
    let mut journal_closed = HashMap::new();
    for o in &venue_open {
        if working_ids.contains(o.client_order_id.as_str()) {
            continue;
        }
        if let Some(row) = shared
            .store
            .order(&o.client_order_id)
            .await
            .map_err(store_err)?
        {
            journal_closed.insert(o.client_order_id.clone(), row);
        }
    }
    let refs: Vec<(String, herd_strategies::strategy::PositionOrderRef)> = shared
        .strategies
        .lock()
        .await
        .iter()
        .flat_map(|s| {
            let name = s.name().to_string();
            s.position_orders()
                .into_iter()
                .map(move |p| (name.clone(), p))
        })
        .collect();
    let mut positions = Vec::new();
    for (strategy, p) in refs {
        let journal_status = shared
            .store
            .order(&p.client_order_id)
            .await
            .map_err(store_err)?
            .map(|r| r.status)
            .unwrap_or_default();
        positions.push(PositionRow {
            strategy,
            position_id: p.position_id,
            client_order_id: p.client_order_id,
            journal_status,
        });
    }
    Ok(Gathered {
        working,
        venue_open,
        lookups,
        journal_closed,
        positions,
    })
}

/// What one reconcile found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub time_ms: i64,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub differences: Vec<Difference>,
    /// Differences whose action changed something and succeeded.
    pub applied: u32,
    pub failed: u32,
}

impl Report {
    /// Differences per kind, kinds with none left out, in [`Kind`] order.
    pub fn counts(&self) -> Vec<(Kind, u32)> {
        let mut m: std::collections::BTreeMap<Kind, u32> = std::collections::BTreeMap::new();
        for d in &self.differences {
            *m.entry(d.kind).or_default() += 1;
        }
        m.into_iter().collect()
    }
}

/// One reconcile: gather, compute the differences, apply them (unless
/// `dry_run`) and journal what was done. The last applied report is kept
/// for status. One reconcile runs at a time.
/// `incarnation`: the gateway incarnation fills learned here are filed
/// under (the engine's current one when `None`).
pub async fn run(
    shared: &Shared,
    trigger: Trigger,
    stream_replays: bool,
    incarnation: Option<&str>,
    dry_run: bool,
) -> Result<Report, Status> {
    let _one_at_a_time = shared.reconcile_lock.lock().await;
    // Read before gathering: a place that answers while the journal and the
    // gateway are read must still count as in flight, or its pending row
    // could meet a gateway lookup made before the gateway registered it.
    let mut resolving = shared.resolving_unknown_outcomes();
    let g = gather(shared).await?;
    // ... and one that began while gathering is in flight too.
    resolving.extend(shared.resolving_unknown_outcomes());
    let ctx = Context {
        now_ms: now_ms(),
        stream_replays,
        unknown_open_orders: shared.cfg.reconcile.unknown_open_orders,
        resolving,
        trigger,
    };
    let mut report = Report {
        time_ms: ctx.now_ms,
        trigger,
        dry_run,
        differences: differences(&g, &ctx),
        applied: 0,
        failed: 0,
    };
    if dry_run {
        return Ok(report);
    }
    let incarnation = match incarnation {
        Some(i) => i.to_string(),
        None => shared.state().incarnation.clone(),
    };
    for d in &mut report.differences {
        let r = apply(shared, d, &incarnation, stream_replays).await;
        d.outcome = match &r {
            Ok(()) => "done".to_string(),
            Err(why) => format!("failed: {why}"),
        };
        match r {
            Ok(()) if d.action.changes_something() => report.applied += 1,
            Ok(()) => {}
            Err(_) => report.failed += 1,
        }
        let payload = serde_json::json!({
            "trigger": trigger,
            "kind": d.kind,
            "client_order_id": d.client_order_id,
            "owner": d.owner,
            "detail": d.detail,
            "action": d.action,
            "outcome": d.outcome,
        });
        if let Err(e) = shared
            .store
            .append_journal(
                JOURNAL_STREAM,
                d.kind.as_str(),
                &payload.to_string(),
                now_ms(),
            )
            .await
        {
            tracing::error!(error = %e, "cannot journal a reconcile action");
        }
    }
    if !report.differences.is_empty() {
        tracing::info!(
            trigger = trigger.as_str(),
            differences = report.differences.len(),
            applied = report.applied,
            failed = report.failed,
            "reconcile done"
        );
    }
    shared.state().last_reconcile = Some(report.clone());
    Ok(report)
}

/// The operator's reconcile (`herdctl reconcile`): the stream replays what
/// the journal lacks unless the gateway restarted since the cursor was
/// written (then the stream's own reconcile is about to run too; this one
/// does the same work first).
pub async fn operator(shared: &Shared, dry_run: bool) -> Result<Report, Status> {
    let session = shared
        .gateway
        .clone()
        .get_session(pb::GetSessionRequest {})
        .await?
        .into_inner();
    let cursor = shared
        .store
        .cursor()
        .await
        .map_err(|e| Status::internal(format!("journal: {e}")))?;
    let replays = cursor.incarnation.is_empty() || cursor.incarnation == session.incarnation;
    run(
        shared,
        Trigger::Operator,
        replays,
        Some(&session.incarnation),
        dry_run,
    )
    .await
}

/// Does what one difference's rule says.
async fn apply(
    shared: &Shared,
    d: &Difference,
    incarnation: &str,
    stream_replays: bool,
) -> Result<(), String> {
    let now = now_ms();
    let id = d.client_order_id.as_str();
    let store_err = |e: crate::store::StoreError| format!("journal: {e}");
    match d.action {
        Action::LeaveToStream | Action::Wait => Ok(()),
        Action::StrategyRule => {
            tracing::warn!(client_order_id = %id, strategy = %d.owner, detail = %d.detail,
                "reconcile: a position's order is gone; the strategy's rule for it applies");
            Ok(())
        }
        Action::CloseAsLost => {
            tracing::warn!(client_order_id = %id, detail = %d.detail,
                "reconcile: neither the gateway nor the venue knows this working order; closed in the journal as lost");
            shared.store.mark_lost(id, now).await.map_err(store_err)?;
            // A live strategy hears it as a cancel (its rule for an order
            // gone outside it applies); strategies not live yet restore from
            // the journal, where it is closed.
            if shared.strategies_live() {
                shared
                    .dispatch(gone_update(
                        id,
                        UpdateKind::Canceled,
                        d.journal.as_ref(),
                        "lost: neither the gateway nor the venue knows it (reconcile)",
                    ))
                    .await;
            }
            Ok(())
        }
        Action::Reject => {
            let rejected = pb::Order {
                client_order_id: id.to_string(),
                status: pb::OrderStatus::Rejected as i32,
                volume_executed: "0".into(),
                reason: "never reached the gateway".into(),
                ..Default::default()
            };
            shared
                .store
                .update_order(&rejected, now)
                .await
                .map_err(store_err)?;
            if shared.strategies_live() {
                shared
                    .dispatch(gone_update(
                        id,
                        UpdateKind::PlaceFailed,
                        None,
                        "never reached the gateway (reconcile)",
                    ))
                    .await;
            }
            Ok(())
        }
        Action::JournalState => {
            let Some(o) = &d.venue else {
                return Err("no gateway view of the order".into());
            };
            shared.store.update_order(o, now).await.map_err(store_err)?;
            // No stream will tell a live strategy how its order closed (the
            // event log that had it is gone): this does.
            let closed = match pb::OrderStatus::try_from(o.status) {
                Ok(pb::OrderStatus::Canceled) => Some(UpdateKind::Canceled),
                Ok(pb::OrderStatus::Expired) => Some(UpdateKind::Expired),
                Ok(pb::OrderStatus::Rejected) => Some(UpdateKind::Rejected),
                _ => None,
            };
            if let Some(kind) = closed.filter(|_| !stream_replays && shared.strategies_live()) {
                let mut update = gone_update(id, kind, d.journal.as_ref(), &o.reason);
                update.fee_asset.clone_from(&o.fee_asset);
                shared.dispatch(update).await;
            }
            Ok(())
        }
        Action::JournalFill => {
            let (Some(o), Some(row)) = (&d.venue, &d.journal) else {
                return Err("no gateway view of the order".into());
            };
            journal_fill(shared, o, row, incarnation).await
        }
        Action::Cancel => {
            tracing::warn!(client_order_id = %id, detail = %d.detail, "reconcile: cancelling an open order");
            shared
                .cancel(id)
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string())
        }
        Action::Adopt => {
            let Some(o) = &d.venue else {
                return Err("no gateway view of the order".into());
            };
            tracing::warn!(client_order_id = %id, "reconcile: adopting an open order the journal did not know");
            let row = OrderRow {
                client_order_id: o.client_order_id.clone(),
                owner: "adopted".into(),
                symbol: o.symbol.clone(),
                side: side_str(o.side).to_string(),
                order_type: if o.price.is_empty() {
                    "market"
                } else {
                    "limit"
                }
                .into(),
                price: o.price.clone(),
                volume: o.volume.clone(),
                volume_executed: o.volume_executed.clone(),
                average_price: o.average_price.clone(),
                fee: o.fee.clone(),
                fee_asset: o.fee_asset.clone(),
                status: status_str(o.status).to_string(),
                venue_order_id: o.venue_order_id.clone(),
                created_at_ms: now,
                updated_at_ms: now,
            };
            shared.store.insert_order(&row).await.map_err(store_err)
        }
    }
}

/// The update a live strategy gets for an order that is gone.
fn gone_update(id: &str, kind: UpdateKind, row: Option<&OrderRow>, message: &str) -> OrderUpdate {
    OrderUpdate {
        client_order_id: id.to_string(),
        kind,
        volume_executed: row.map(|r| dec(&r.volume_executed)).unwrap_or_default(),
        average_price: row.map(|r| dec(&r.average_price)).filter(|p| !p.is_zero()),
        fill_volume: Decimal::ZERO,
        fill_price: Decimal::ZERO,
        fill_fee: Decimal::ZERO,
        fee_asset: row.map(|r| r.fee_asset.clone()).unwrap_or_default(),
        message: message.to_string(),
    }
}

/// Journals the rise in an order's executed volume as one fill (keyed like
/// stream fills: order id + cumulative volume, so it is journaled once)
/// and hands it to the owning strategy; a final state other than filled
/// follows as its own update.
async fn journal_fill(
    shared: &Shared,
    o: &pb::Order,
    row: &OrderRow,
    incarnation: &str,
) -> Result<(), String> {
    let before = dec(&row.volume_executed);
    let after = dec(&o.volume_executed);
    let delta = after - before;
    if delta <= Decimal::ZERO {
        return Ok(());
    }
    let avg_before = dec(&row.average_price);
    let avg_after = dec(&o.average_price);
    let price = ((avg_after * after - avg_before * before) / delta)
        .round_dp(12)
        .normalize();
    let fee = (dec(&o.fee) - dec(&row.fee)).max(Decimal::ZERO);
    let status = pb::OrderStatus::try_from(o.status).ok();
    let kind = if status == Some(pb::OrderStatus::Filled) {
        pb::OrderEventKind::Filled
    } else {
        pb::OrderEventKind::PartialFill
    };
    let ev = pb::OrderEvent {
        sequence: 0,
        incarnation: incarnation.to_string(),
        kind: kind as i32,
        fill_volume: delta.to_string(),
        fill_price: price.to_string(),
        fill_fee: fee.to_string(),
        time_ms: now_ms(),
        order: Some(o.clone()),
    };
    let new = shared
        .store
        .record_reconciled(&ev)
        .await
        .map_err(|e| format!("journal: {e}"))?;
    if !new {
        return Ok(());
    }
    tracing::warn!(client_order_id = %o.client_order_id, volume = %delta,
        "reconcile: fill learned from the venue (the event log that had it is gone)");
    if let Some(update) = update_from_event(&ev) {
        shared.dispatch(update).await;
    }
    let closed_kind = match status {
        Some(pb::OrderStatus::Canceled) => Some(UpdateKind::Canceled),
        Some(pb::OrderStatus::Expired) => Some(UpdateKind::Expired),
        Some(pb::OrderStatus::Rejected) => Some(UpdateKind::Rejected),
        _ => None,
    };
    if let Some(kind) = closed_kind {
        let mut update = gone_update(&o.client_order_id, kind, None, &o.reason);
        update.volume_executed = after;
        update.average_price = Some(avg_after).filter(|p| !p.is_zero());
        update.fee_asset.clone_from(&o.fee_asset);
        shared.dispatch(update).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str, executed: &str, updated_at_ms: i64) -> OrderRow {
        OrderRow {
            client_order_id: id.into(),
            owner: "grid".into(),
            symbol: "DOGEUSD".into(),
            side: "buy".into(),
            order_type: "limit".into(),
            price: "0.1".into(),
            volume: "100".into(),
            volume_executed: executed.into(),
            average_price: if executed == "0" { "" } else { "0.1" }.into(),
            fee: "0".into(),
            fee_asset: "USD".into(),
            status: status.into(),
            venue_order_id: String::new(),
            created_at_ms: 0,
            updated_at_ms,
        }
    }

    fn venue(id: &str, status: pb::OrderStatus, executed: &str) -> pb::Order {
        pb::Order {
            client_order_id: id.into(),
            symbol: "DOGEUSD".into(),
            status: status as i32,
            price: "0.1".into(),
            volume: "100".into(),
            volume_executed: executed.into(),
            average_price: "0.1".into(),
            ..Default::default()
        }
    }

    fn ctx(stream_replays: bool, policy: UnknownOrderPolicy) -> Context {
        Context {
            now_ms: 1_000_000,
            stream_replays,
            unknown_open_orders: policy,
            resolving: HashSet::new(),
            trigger: Trigger::Operator,
        }
    }

    /// Each rule of docs/reconcile.md: (case, gathered, stream replays,
    /// policy, expected (kind, id, action) list).
    #[test]
    fn every_difference_gets_its_rule() {
        type Case = (
            &'static str,
            Gathered,
            bool,
            UnknownOrderPolicy,
            Vec<(Kind, &'static str, Action)>,
        );
        let lookup = |pairs: Vec<(&str, Lookup)>| -> HashMap<String, Lookup> {
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
        };
        let cases: Vec<Case> = vec![
            (
                "agree: nothing to do",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    venue_open: vec![venue("a", pb::OrderStatus::Open, "0")],
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![],
            ),
            (
                "open in the journal, unknown everywhere: lost",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    lookups: lookup(vec![("a", Lookup::NotFound)]),
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::Lost, "a", Action::CloseAsLost)],
            ),
            (
                "old pending unknown to the gateway: rejected",
                Gathered {
                    working: vec![row("a", "pending", "0", 0)],
                    lookups: lookup(vec![("a", Lookup::NotFound)]),
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::NeverReachedGateway, "a", Action::Reject)],
            ),
            (
                "fresh pending unknown to the gateway: may be in flight",
                Gathered {
                    working: vec![row("a", "pending", "0", 999_500)],
                    lookups: lookup(vec![("a", Lookup::NotFound)]),
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::NeverReachedGateway, "a", Action::Wait)],
            ),
            (
                "filled while down, new gateway: fill journaled here",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    lookups: lookup(vec![(
                        "a",
                        Lookup::Found(Box::new(venue("a", pb::OrderStatus::Filled, "100"))),
                    )]),
                    ..Gathered::default()
                },
                false,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::MissingFill, "a", Action::JournalFill)],
            ),
            (
                "filled while down, same gateway: the stream replays it",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    venue_open: vec![venue("b", pb::OrderStatus::Open, "0")],
                    lookups: lookup(vec![(
                        "a",
                        Lookup::Found(Box::new(venue("a", pb::OrderStatus::Filled, "100"))),
                    )]),
                    journal_closed: [("b".to_string(), row("b", "canceled", "0", 0))].into(),
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![
                    (Kind::MissingFill, "a", Action::LeaveToStream),
                    (Kind::OpenButClosedInJournal, "b", Action::Cancel),
                ],
            ),
            (
                "cancelled while down: state journaled",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    lookups: lookup(vec![(
                        "a",
                        Lookup::Found(Box::new(venue("a", pb::OrderStatus::Canceled, "0"))),
                    )]),
                    ..Gathered::default()
                },
                false,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::ClosedWhileDown, "a", Action::JournalState)],
            ),
            (
                "pending in the journal, open at the venue",
                Gathered {
                    working: vec![row("a", "pending", "0", 0)],
                    venue_open: vec![venue("a", pb::OrderStatus::Open, "0")],
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::StateBehind, "a", Action::JournalState)],
            ),
            (
                "unknown open order, default policy: cancel",
                Gathered {
                    venue_open: vec![venue("x", pb::OrderStatus::Open, "0")],
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::UnknownOpenOrder, "x", Action::Cancel)],
            ),
            (
                "unknown open order, adopt policy",
                Gathered {
                    venue_open: vec![venue("x", pb::OrderStatus::Open, "0")],
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Adopt,
                vec![(Kind::UnknownOpenOrder, "x", Action::Adopt)],
            ),
            (
                "lookup failed: nothing decided",
                Gathered {
                    working: vec![row("a", "open", "0", 0)],
                    lookups: lookup(vec![("a", Lookup::Failed("timeout".into()))]),
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![(Kind::Unresolved, "a", Action::Wait)],
            ),
            (
                "a position whose exit is lost, one whose exit is open, one filled",
                Gathered {
                    working: vec![row("e1", "open", "0", 0), row("e2", "open", "0", 0)],
                    venue_open: vec![venue("e2", pb::OrderStatus::Open, "0")],
                    lookups: lookup(vec![("e1", Lookup::NotFound)]),
                    positions: vec![
                        PositionRow {
                            strategy: "grid".into(),
                            position_id: "p1".into(),
                            client_order_id: "e1".into(),
                            journal_status: "open".into(),
                        },
                        PositionRow {
                            strategy: "grid".into(),
                            position_id: "p2".into(),
                            client_order_id: "e2".into(),
                            journal_status: "open".into(),
                        },
                        PositionRow {
                            strategy: "grid".into(),
                            position_id: "p3".into(),
                            client_order_id: "e3".into(),
                            journal_status: "filled".into(),
                        },
                        PositionRow {
                            strategy: "grid".into(),
                            position_id: "p4".into(),
                            client_order_id: "e4".into(),
                            journal_status: "lost".into(),
                        },
                    ],
                    ..Gathered::default()
                },
                true,
                UnknownOrderPolicy::Cancel,
                vec![
                    (Kind::Lost, "e1", Action::CloseAsLost),
                    (Kind::PositionWithoutOrder, "e1", Action::StrategyRule),
                    (Kind::PositionWithoutOrder, "e4", Action::StrategyRule),
                ],
            ),
        ];
        for (name, g, replays, policy, want) in cases {
            let got: Vec<(Kind, String, Action)> = differences(&g, &ctx(replays, policy))
                .into_iter()
                .map(|d| (d.kind, d.client_order_id, d.action))
                .collect();
            let want: Vec<(Kind, String, Action)> = want
                .into_iter()
                .map(|(k, id, a)| (k, id.to_string(), a))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
