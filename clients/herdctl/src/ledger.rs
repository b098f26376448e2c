//! `herdctl fills` and `herdctl pnl`: the gateway's fills ledger and the PnL
//! computed from it (GatewayAdmin ListFills / GetPnl, admin token;
//! docs/pnl.md). The CSV and JSON are the ones the gateway's admin port
//! serves as `/api/fills.csv` and `/api/fills.json`.

use herd_gateway::herd_http::{fill_json, parse_time, pnl_row_json};
use herd_gateway::ledger_api::{fills_csv, grouping_from_str};
use herd_proto::gateway as gpb;

use crate::render;

/// The export format of `herdctl fills`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FillsFormat {
    Table,
    Csv,
    Json,
}

/// Filters of `herdctl fills`.
#[derive(Debug, clap::Args)]
pub struct FillsFilter {
    /// Only this engine's fills.
    #[arg(long)]
    pub engine: Option<String>,
    /// Only fills of orders with this strategy tag (grid, rangers, churner,
    /// funding, manual).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Only this instrument.
    #[arg(long)]
    pub symbol: Option<String>,
    /// From this time on (Unix ms, or a UTC date like 2026-12-05 or
    /// 2026-12-05T12:00:00Z).
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (same forms as --from).
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: FillsFormat,
}

/// The ListFills request the flags ask for; a bad time names its flag.
pub fn fills_request(f: &FillsFilter) -> anyhow::Result<gpb::ListFillsRequest> {
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<i64> {
        v.as_deref()
            .map(|s| parse_time(flag, s).map_err(|e| anyhow::anyhow!("--{e}")))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(gpb::ListFillsRequest {
        engine_id: f.engine.clone().unwrap_or_default(),
        strategy: f.strategy.clone().unwrap_or_default(),
        symbol: f.symbol.clone().unwrap_or_default(),
        from_ms: time("from", &f.from)?,
        to_ms: time("to", &f.to)?,
        limit: 0,
    })
}

/// What `herdctl fills` prints.
pub fn render_fills(fills: &[gpb::Fill], format: FillsFormat) -> anyhow::Result<String> {
    Ok(match format {
        FillsFormat::Csv => fills_csv(fills),
        FillsFormat::Json => {
            let v: Vec<_> = fills.iter().map(fill_json).collect();
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        FillsFormat::Table => {
            let rows: Vec<Vec<String>> = fills
                .iter()
                .map(|f| {
                    vec![
                        herd_venue::calendar::utc_string(f.time_ms),
                        f.engine_id.clone(),
                        if f.strategy.is_empty() {
                            "-".into()
                        } else {
                            f.strategy.clone()
                        },
                        f.symbol.clone(),
                        f.side.clone(),
                        f.price.clone(),
                        f.volume.clone(),
                        f.fee.clone(),
                        f.fee_asset.clone(),
                        f.trade_id.clone(),
                    ]
                })
                .collect();
            render::table(
                &[
                    "time (UTC)",
                    "engine",
                    "strategy",
                    "symbol",
                    "side",
                    "price",
                    "volume",
                    "fee",
                    "fee asset",
                    "trade id",
                ],
                &rows,
            )
        }
    })
}

/// The grouping `--by` names.
pub fn grouping(by: &str) -> anyhow::Result<gpb::PnlGrouping> {
    grouping_from_str(by).ok_or_else(|| {
        anyhow::anyhow!("--by: {by:?} is not one of day, engine, strategy, instrument")
    })
}

/// What `herdctl pnl` prints.
pub fn render_pnl(by: &str, r: &gpb::GetPnlResponse, json: bool) -> anyhow::Result<String> {
    if json {
        let v = serde_json::json!({
            "by": by,
            "rows": r.rows.iter().map(pnl_row_json).collect::<Vec<_>>(),
            "total": r.total.as_ref().map(pnl_row_json),
            "as_of_ms": r.as_of_ms,
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let row = |p: &gpb::PnlRow| {
        vec![
            p.key.clone(),
            p.realized.clone(),
            p.fees.clone(),
            p.funding.clone(),
            p.unrealized.clone(),
            p.total.clone(),
            p.volume.clone(),
            p.fills.to_string(),
        ]
    };
    let mut rows: Vec<Vec<String>> = r.rows.iter().map(row).collect();
    if let Some(t) = &r.total {
        rows.push(row(t));
    }
    Ok(render::table(
        &[
            by,
            "realized",
            "fees",
            "funding",
            "unrealized",
            "total",
            "volume",
            "fills",
        ],
        &rows,
    ))
}
