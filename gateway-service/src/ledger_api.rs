//! The fills ledger and PnL as the outside sees them: GatewayAdmin's
//! `ListFills` / `GetPnl`, and the CSV and JSON the admin HTTP port serves
//! (`/api/fills.csv`, `/api/pnl`). One reading of the requests for all.

use std::collections::HashMap;

use herd_proto::gateway as pb;
use tonic::Status;

use crate::fills::{Fill, FillFilter};
use crate::pnl::{self, Grouping, Totals};
use crate::service::Core;

fn ledger(core: &Core) -> Result<&crate::fills::Ledger, Status> {
    core.ledger
        .as_deref()
        .ok_or_else(|| Status::failed_precondition("this gateway keeps no fills ledger"))
}

fn known_engine(core: &Core, field: &str, id: &str) -> Result<Option<String>, Status> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(None);
    }
    if !core.userrefs.contains_key(id) {
        return Err(Status::invalid_argument(format!(
            "{field}: no engine {id:?} is configured"
        )));
    }
    Ok(Some(id.to_string()))
}

fn nonempty(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The filter a `ListFills` request asks for.
pub fn filter_of(core: &Core, r: &pb::ListFillsRequest) -> Result<FillFilter, Status> {
    if r.from_ms < 0 {
        return Err(Status::invalid_argument("from_ms: must not be negative"));
    }
    if r.to_ms < 0 {
        return Err(Status::invalid_argument("to_ms: must not be negative"));
    }
    if r.to_ms > 0 && r.to_ms <= r.from_ms {
        return Err(Status::invalid_argument(format!(
            "to_ms: {} is not after from_ms {}",
            r.to_ms, r.from_ms
        )));
    }
    Ok(FillFilter {
        engine: known_engine(core, "engine_id", &r.engine_id)?,
        strategy: nonempty(&r.strategy),
        symbol: nonempty(&r.symbol),
        from_ms: Some(r.from_ms).filter(|t| *t > 0),
        to_ms: Some(r.to_ms).filter(|t| *t > 0),
        limit: Some(r.limit).filter(|n| *n > 0),
    })
}

pub fn fill_to_pb(f: &Fill) -> pb::Fill {
    pb::Fill {
        trade_id: f.trade_id.clone(),
        trade_id_derived: f.trade_id_derived,
        time_ms: f.time_ms,
        engine_id: f.engine.clone(),
        strategy: f.strategy.clone(),
        symbol: f.symbol.clone(),
        side: f.side.as_str().to_string(),
        price: f.price.normalize().to_string(),
        volume: f.volume.normalize().to_string(),
        fee: f.fee.normalize().to_string(),
        fee_asset: f.fee_asset.clone(),
        client_order_id: f.client_order_id.clone(),
        venue_order_id: f.venue_order_id.clone(),
    }
}

pub async fn list_fills(
    core: &Core,
    r: &pb::ListFillsRequest,
) -> Result<pb::ListFillsResponse, Status> {
    let filter = filter_of(core, r)?;
    let fills = ledger(core)?
        .fills(&filter)
        .await
        .map_err(|e| Status::internal(format!("reading the fills ledger: {e}")))?;
    Ok(pb::ListFillsResponse {
        fills: fills.iter().map(fill_to_pb).collect(),
    })
}

/// The CSV header of [`fills_csv`].
pub const CSV_HEADER: &str = "time_utc,time_ms,engine,strategy,symbol,side,price,volume,fee,fee_asset,trade_id,trade_id_derived,client_order_id,venue_order_id";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Fills as RFC 4180 CSV (CRLF line ends, a header line).
pub fn fills_csv(fills: &[pb::Fill]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for f in fills {
        let cols = [
            herd_venue::calendar::utc_string(f.time_ms),
            f.time_ms.to_string(),
            f.engine_id.clone(),
            f.strategy.clone(),
            f.symbol.clone(),
            f.side.clone(),
            f.price.clone(),
            f.volume.clone(),
            f.fee.clone(),
            f.fee_asset.clone(),
            f.trade_id.clone(),
            f.trade_id_derived.to_string(),
            f.client_order_id.clone(),
            f.venue_order_id.clone(),
        ];
        let line: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Reads `by` as the CLI and HTTP spell it.
pub fn grouping_from_str(s: &str) -> Option<pb::PnlGrouping> {
    match s {
        "day" => Some(pb::PnlGrouping::Day),
        "engine" | "" => Some(pb::PnlGrouping::Engine),
        "strategy" => Some(pb::PnlGrouping::Strategy),
        "instrument" | "symbol" => Some(pb::PnlGrouping::Instrument),
        _ => None,
    }
}

fn row_pb(key: String, t: &Totals) -> pb::PnlRow {
    pb::PnlRow {
        key,
        realized: pnl::money(t.realized),
        fees: pnl::money(t.fees),
        funding: pnl::money(t.funding),
        unrealized: pnl::money(t.unrealized),
        total: pnl::money(t.total()),
        volume: pnl::money(t.volume),
        fills: t.fills,
    }
}

pub async fn get_pnl(core: &Core, r: &pb::GetPnlRequest) -> Result<pb::GetPnlResponse, Status> {
    let by = match pb::PnlGrouping::try_from(r.by) {
        Ok(pb::PnlGrouping::Unspecified | pb::PnlGrouping::Engine) => Grouping::Engine,
        Ok(pb::PnlGrouping::Day) => Grouping::Day,
        Ok(pb::PnlGrouping::Strategy) => Grouping::Strategy,
        Ok(pb::PnlGrouping::Instrument) => Grouping::Instrument,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "by: {} is not a PnlGrouping",
                r.by
            )));
        }
    };
    let filter = FillFilter {
        engine: known_engine(core, "engine_id", &r.engine_id)?,
        strategy: nonempty(&r.strategy),
        symbol: nonempty(&r.symbol),
        ..FillFilter::default()
    };
    let l = ledger(core)?;
    let read = |e: anyhow::Error| Status::internal(format!("reading the fills ledger: {e}"));
    let fills = l.fills(&filter).await.map_err(read)?;
    let funding: Vec<_> = l
        .funding()
        .await
        .map_err(read)?
        .into_iter()
        .filter(|p| filter.engine.as_ref().is_none_or(|e| *e == p.engine))
        .filter(|p| filter.symbol.as_ref().is_none_or(|s| *s == p.symbol))
        .collect();
    let ctx = context(core, &fills).await;
    let (rows, total, _) = pnl::compute(&fills, &funding, &ctx, by);
    Ok(pb::GetPnlResponse {
        rows: rows.into_iter().map(|(k, t)| row_pb(k, &t)).collect(),
        total: Some(row_pb("total".into(), &total)),
        as_of_ms: ctx.now_ms,
    })
}

/// Bases and last prices of the symbols in `fills`: instruments from the
/// gateway's cache, tickers through the shared market cache (a symbol
/// whose ticker cannot be had is left unvalued).
pub async fn context(core: &Core, fills: &[Fill]) -> pnl::Context {
    let mut symbols: Vec<&str> = fills.iter().map(|f| f.symbol.as_str()).collect();
    symbols.sort_unstable();
    symbols.dedup();
    let mut bases = HashMap::new();
    let mut marks = HashMap::new();
    for s in symbols {
        if let Ok(i) = core.instrument(s).await {
            bases.insert(s.to_string(), i.base);
        }
        match core
            .market
            .ticker(core.venue.as_ref(), core.clock.as_ref(), s)
            .await
        {
            Ok(t) if t.last > rust_decimal::Decimal::ZERO => {
                marks.insert(s.to_string(), t.last);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(symbol = s, error = %e, "no ticker for unrealized PnL"),
        }
    }
    pnl::Context {
        bases,
        marks,
        now_ms: core.clock.now_ms(),
    }
}
