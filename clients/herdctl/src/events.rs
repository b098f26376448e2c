//! `herdctl events`: the herd's event feed from the gateway
//! (`StreamHerdEvents`, docs/events.md), as a table or as JSON Lines.

use std::io::Write;

use herd_proto::events::{parse_severity, severity_name, to_json};
use herd_proto::gateway as gpb;

use crate::{GatewayArgs, Output};

/// Options of `herdctl events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub g: GatewayArgs,
    /// Keep streaming new events until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Only events at least this severe: info, notice, warning, critical.
    #[arg(long, value_parser = severity_arg)]
    pub severity: Option<gpb::Severity>,
    /// Only events concerning this engine (repeatable).
    #[arg(long = "engine")]
    pub engines: Vec<String>,
    /// Only this kind (repeatable; "risk_*" matches a prefix): fill,
    /// order_rejected, risk_denial, lockout, engine_gone, ...
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Start after this event id (resume where an earlier run stopped).
    #[arg(long)]
    pub after: Option<String>,
    /// Without --after: only the newest this many matching (0 = all kept).
    #[arg(long, default_value_t = 50)]
    pub last: u32,
    /// Instead of events: each sink's outbox, dead letters and counters.
    #[arg(long, conflicts_with = "follow")]
    pub sinks: bool,
    /// Put this sink's dead letters back for delivery (after its receiver
    /// was fixed); prints how many.
    #[arg(long, value_name = "SINK", conflicts_with_all = ["follow", "sinks"])]
    pub redeliver_dead: Option<String>,
}

async fn redeliver(a: &EventsArgs, sink: &str, token: &str) -> anyhow::Result<()> {
    let mut c = crate::client::admin(&a.g.gateway, token).await?;
    let r = c
        .redeliver_dead_letters(gpb::RedeliverDeadLettersRequest { sink: sink.into() })
        .await?
        .into_inner();
    match a.g.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"sink": sink, "requeued": r.requeued})
        ),
        Output::Table => println!("{sink}: {} dead letters put back for delivery", r.requeued),
    }
    Ok(())
}

async fn sinks(a: &EventsArgs, token: &str) -> anyhow::Result<()> {
    let mut c = crate::client::admin(&a.g.gateway, token).await?;
    let r = c
        .list_event_sinks(gpb::ListEventSinksRequest {})
        .await?
        .into_inner();
    match a.g.output {
        Output::Json => {
            let v: Vec<serde_json::Value> = r
                .sinks
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name, "kind": s.kind, "pending": s.pending,
                        "dead_letters": s.dead_letters, "delivered": s.delivered,
                        "failures": s.failures, "dropped": s.dropped, "last_error": s.last_error,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            println!(
                "{:<16}  {:<8}  {:>8}  {:>6}  {:>9}  {:>8}  {:>7}  LAST ERROR",
                "SINK", "TYPE", "PENDING", "DEAD", "DELIVERED", "FAILURES", "DROPPED"
            );
            for s in &r.sinks {
                println!(
                    "{:<16}  {:<8}  {:>8}  {:>6}  {:>9}  {:>8}  {:>7}  {}",
                    s.name,
                    s.kind,
                    s.pending,
                    s.dead_letters,
                    s.delivered,
                    s.failures,
                    s.dropped,
                    s.last_error
                );
            }
        }
    }
    Ok(())
}

fn severity_arg(s: &str) -> Result<gpb::Severity, String> {
    parse_severity(s).ok_or_else(|| format!("{s:?} is not info, notice, warning or critical"))
}

/// One line of the table.
pub fn line(e: &gpb::HerdEvent) -> String {
    let engine = if e.engine.is_empty() { "-" } else { &e.engine };
    format!(
        "{}  {:<8}  {:<8}  {:<22}  {:<8}  {}",
        herd_venue::calendar::utc_string(e.time_ms),
        severity_name(e.severity),
        e.source,
        e.kind,
        engine,
        e.message
    )
}

pub async fn run(a: EventsArgs, token: String) -> anyhow::Result<()> {
    if a.sinks {
        return sinks(&a, &token).await;
    }
    if let Some(sink) = &a.redeliver_dead {
        return redeliver(&a, sink, &token).await;
    }
    let mut c = crate::client::admin(&a.g.gateway, &token).await?;
    let mut s = c
        .stream_herd_events(gpb::StreamHerdEventsRequest {
            after_id: a.after.clone().unwrap_or_default(),
            min_severity: a.severity.map_or(0, |s| s as i32),
            engines: a.engines,
            kinds: a.kinds,
            follow: a.follow,
            last: if a.after.is_some() { 0 } else { a.last },
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if a.g.output == Output::Table {
        writeln!(
            out,
            "{:<20}  {:<8}  {:<8}  {:<22}  {:<8}  MESSAGE",
            "TIME", "SEVERITY", "SOURCE", "KIND", "ENGINE"
        )?;
    }
    while let Some(e) = s.message().await? {
        match a.g.output {
            Output::Json => writeln!(out, "{}", to_json(&e))?,
            Output::Table => writeln!(out, "{}", line(&e))?,
        }
        // A follower sees each event as it comes, not when a buffer fills.
        out.flush()?;
    }
    Ok(())
}
