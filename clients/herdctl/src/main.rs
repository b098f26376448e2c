//! `herdctl`: operate a Herd from the command line.
//!
//! Exit codes scripts can trust: 0 success, 1 the call failed (the message
//! says why), 2 bad usage (clap), 3 the operator declined a confirmation.

mod backtest;
mod backtest_funding;
mod backtest_replay;
mod client;
mod errors;
mod events;
mod ledger;
mod render;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;

/// jemalloc: `herdctl backtest` runs the strategy step, whose small ids and
/// rows per order and fill cost about 4 % more instructions on glibc's
/// malloc (docs/benchmarks.md, issue 18); the year bench uses the same.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Operate a Herd: status, control and a one-command local herd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

/// How to reach an engine's control server.
#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// The engine's control URL.
    #[arg(
        long,
        env = "HERD_ENGINE_URL",
        default_value = "http://127.0.0.1:50061"
    )]
    engine: String,
    /// Control token (or HERD_CONTROL_TOKEN, or --token-file; the local herd's
    /// token is found in .herd/local/ when none is given).
    #[arg(long, env = "HERD_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    output: Output,
}

/// How to reach the gateway.
#[derive(Debug, clap::Args)]
struct GatewayArgs {
    #[arg(
        long,
        env = "HERD_GATEWAY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    gateway: String,
    /// An engine token (budget) or the admin token (engines).
    #[arg(long, env = "HERD_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[arg(long, short, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a complete local herd: gateway on the paper venue plus two engines.
    Up(up::UpArgs),
    /// An engine's status.
    Status(EngineArgs),
    /// Stop placing new orders (working orders stay).
    Pause {
        #[command(flatten)]
        e: EngineArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused or halted engine.
    Resume(EngineArgs),
    /// Cancel every open order of the engine and halt it.
    EmergencyStop {
        #[command(flatten)]
        e: EngineArgs,
        #[arg(long, default_value = "")]
        reason: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Compare the engine's journal with the gateway's view and resolve each
    /// difference by its rule (docs/reconcile.md). Lists the differences and
    /// the action each takes, then asks before applying them.
    Reconcile {
        #[command(flatten)]
        e: EngineArgs,
        /// Only list the differences and the action each would take.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Rangers: enable or disable them at runtime (disabling cancels their
    /// orders and idles them).
    Rangers {
        #[command(subcommand)]
        action: RangersCmd,
    },
    /// Churners: operator-spawned subsidy earners for aging grid positions.
    Churner {
        #[command(subcommand)]
        action: ChurnerCmd,
    },
    /// Operator actions on a grid position (id = its entry order id, as
    /// `herdctl status` lists it).
    Position {
        #[command(subcommand)]
        action: PositionCmd,
    },
    /// The funding-rate orchestrator: status, opening, closes, risk limits
    /// and the emergency latch.
    Funding {
        #[command(subcommand)]
        action: FundingCmd,
    },
    /// The gateway's rate budget (needs an engine token).
    Budget(GatewayArgs),
    /// Every engine the gateway knows (needs the admin token).
    Engines(GatewayArgs),
    /// What the gateway's API key may do (name, permissions, IP allowlist,
    /// expiry; never the key) and the venue clock's offset (admin token).
    Key(GatewayArgs),
    /// The herd's event feed: fills, rejections, risk, lockouts, engines
    /// coming and going, strategy events (admin token; docs/events.md).
    Events(events::EventsArgs),
    /// The gateway's risk limits and trading states (needs the admin token;
    /// docs/risk.md).
    Risk {
        #[command(subcommand)]
        action: RiskCmd,
    },
    /// Every engine's fills from the gateway's ledger (admin token;
    /// docs/pnl.md), as a table, CSV or JSON.
    Fills {
        #[command(flatten)]
        g: GatewayArgs,
        #[command(flatten)]
        f: ledger::FillsFilter,
    },
    /// PnL from the gateway's ledger: realized (average cost, fees and
    /// funding included) and unrealized at the last ticker (admin token).
    Pnl {
        #[command(flatten)]
        g: GatewayArgs,
        /// Rows per day (UTC), engine, strategy or instrument.
        #[arg(long, default_value = "engine")]
        by: String,
        #[arg(long)]
        engine: Option<String>,
        #[arg(long)]
        strategy: Option<String>,
    },
    /// Fit the regime detector on a CSV of candles and print, per candle after
    /// the warm-up, the posteriors, regime, confidence and bias.
    Regime {
        /// CSV with columns time,open,high,low,close,volume.
        #[arg(long)]
        candles: PathBuf,
        /// 1m, 15m or 1h (sets the training window and warm-up).
        #[arg(long, default_value = "1m")]
        timeframe: String,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Run the engine's configured strategies over a candle file on the
    /// paper matching core in simulated time, and write a report (JSON,
    /// fills CSV, SVG charts, one HTML page). See docs/backtest.md.
    Backtest(backtest::BacktestArgs),
    /// The running configuration of the gateway or an engine, and reloading
    /// it without a restart (docs/config.md).
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Run the gateway in this process (used by `up`).
    #[command(hide = true)]
    Gateway {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run an engine in this process (used by `up`).
    #[command(hide = true)]
    Engine {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Reload the config file now (as SIGHUP and a change of the file do):
    /// live fields apply at once, restart-only changes are listed and not
    /// applied. An invalid file changes nothing and exits 1 naming the file,
    /// field and problem.
    Reload {
        #[command(subcommand)]
        target: ConfigTarget,
    },
    /// The running configuration: every field with its value (secrets
    /// REDACTED), source (file, env, default) and class (live or
    /// restart-only), then the file's changes that wait for a restart.
    Show {
        #[command(subcommand)]
        target: ConfigTarget,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigTarget {
    /// The gateway (admin token).
    Gateway(GatewayArgs),
    /// An engine (its control token).
    Engine(EngineArgs),
}

/// Which book a risk command acts on: one engine, or the account.
#[derive(Debug, clap::Args)]
struct RiskTarget {
    /// The engine id.
    #[arg(required_unless_present = "account", conflicts_with = "account")]
    engine_id: Option<String>,
    /// The account-wide book (acts on every engine).
    #[arg(long)]
    account: bool,
}

// Parsed once per process; boxing the `set` options buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum RiskCmd {
    /// Limits, usage, state and last breach of every engine (or one) and
    /// of the account.
    Status {
        #[command(flatten)]
        g: GatewayArgs,
        engine_id: Option<String>,
    },
    /// Change limits at runtime; options not given keep their value, "none"
    /// removes a limit (counts: 0). Refused values exit 1 naming the field.
    Set {
        #[command(flatten)]
        g: GatewayArgs,
        #[command(flatten)]
        t: RiskTarget,
        #[arg(long, default_value = "")]
        max_order_notional: String,
        #[arg(long, default_value = "")]
        max_order_volume: String,
        #[arg(long, default_value = "")]
        price_band_pct: String,
        #[arg(long)]
        max_open_orders: Option<u32>,
        #[arg(long)]
        max_open_orders_per_instrument: Option<u32>,
        #[arg(long, default_value = "")]
        max_exposure_per_instrument: String,
        #[arg(long, default_value = "")]
        max_gross_exposure: String,
        #[arg(long)]
        max_orders_per_window: Option<u32>,
        #[arg(long)]
        order_window_ms: Option<u64>,
        #[arg(long, default_value = "")]
        max_daily_loss: String,
        #[arg(long, default_value = "")]
        max_drawdown: String,
        /// A limit's breach action, CODE=ACTION (e.g. daily_loss=halt_flatten); repeatable.
        #[arg(long = "action")]
        actions: Vec<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// HALT: no new orders (cancels still pass).
    Halt {
        #[command(flatten)]
        g: GatewayArgs,
        #[command(flatten)]
        t: RiskTarget,
        /// Also cancel every open order (of the engine; --account: of all).
        #[arg(long)]
        cancel_all: bool,
        /// Also close what it built at market (implies --cancel-all).
        #[arg(long)]
        flatten: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// REDUCING: only orders that reduce exposure.
    Reduce {
        #[command(flatten)]
        g: GatewayArgs,
        #[command(flatten)]
        t: RiskTarget,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Back to ACTIVE.
    Resume {
        #[command(flatten)]
        g: GatewayArgs,
        #[command(flatten)]
        t: RiskTarget,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The audit log: limit and state changes, denials, kill actions.
    Audit {
        #[command(flatten)]
        g: GatewayArgs,
        engine_id: Option<String>,
        #[arg(long, conflicts_with = "engine_id")]
        account: bool,
        /// The newest this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum RangersCmd {
    Enable(EngineArgs),
    Disable(EngineArgs),
}

#[derive(Debug, Subcommand)]
enum ChurnerCmd {
    /// Spawn a churner for the best parent position (refused with the gate
    /// that failed: max_active, regime_not_ready, not_ranging, headroom,
    /// no_parent, disabled).
    Spawn(EngineArgs),
    /// Kill a churner: its orders are cancelled and it leaves.
    Kill {
        #[command(flatten)]
        e: EngineArgs,
        /// The churner's id (from `herdctl status`).
        id: u32,
    },
}

#[derive(Debug, Subcommand)]
enum FundingCmd {
    /// Positions, portfolio, ranking, margin band, emergency state, cycles
    /// and limits.
    Status(EngineArgs),
    /// Stop opening new hedges (open ones are still managed and closed).
    Pause {
        #[command(flatten)]
        e: EngineArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume opening.
    Resume(EngineArgs),
    /// Close one hedge now: spot SELL + perp BUY (reduce-only).
    Close {
        #[command(flatten)]
        e: EngineArgs,
        /// The perpetual ("BTCUSDT-PERP") or its spot pair ("BTCUSDT").
        symbol: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Change the runtime risk limits; options not given keep their value.
    /// A value the engine refuses exits 2 with its reason.
    Limits {
        #[command(flatten)]
        e: EngineArgs,
        #[arg(long, default_value = "")]
        max_position_usd: String,
        #[arg(long, default_value = "")]
        max_total_exposure_usd: String,
        #[arg(long, default_value_t = 0)]
        max_positions: u32,
        #[arg(long, default_value = "")]
        min_rate: String,
        #[arg(long, default_value = "")]
        exit_rate: String,
        #[arg(long, default_value = "")]
        margin_alert: String,
        #[arg(long, default_value = "")]
        margin_critical: String,
    },
    /// Clear a finished emergency stop (it survives restarts): opening may
    /// resume. `herdctl resume` then resumes an engine that came back halted.
    ClearEmergency {
        #[command(flatten)]
        e: EngineArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum PositionCmd {
    /// Move the exit to break-even, paid from the slot's subsidy.
    BreakEven {
        #[command(flatten)]
        e: EngineArgs,
        position_id: String,
    },
    /// Cancel the exit and close at market (the exit comes back if the
    /// market order fails). An exit already canceled (an emergency stop)
    /// is not waited for: the market order goes out at once. Exits 1 with
    /// the reason when the engine cannot close it (paused or halted: it
    /// places no orders, `herdctl resume` first; or the market order failed).
    Close {
        #[command(flatten)]
        e: EngineArgs,
        position_id: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Keep holding: no self-healing for a while.
    Hold {
        #[command(flatten)]
        e: EngineArgs,
        position_id: String,
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
}

/// Runs a control call; a refusal (FAILED_PRECONDITION and friends) is
/// printed and exits 1 with the engine's reason, and so is an id the
/// engine does not know (NOT_FOUND: a churner or position id).
fn control_result(
    r: Result<tonic::Response<epb::ControlResponse>, tonic::Status>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    match r {
        Ok(resp) => Ok(print_control(resp.into_inner(), output)),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(print_control(
            epb::ControlResponse {
                ok: false,
                message: format!("not found: {}", s.message()),
            },
            output,
        )),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Ok(print_control(
            epb::ControlResponse {
                ok: false,
                message: format!("refused: {}", s.message()),
            },
            output,
        )),
        Err(s) => Err(s.into()),
    }
}

async fn funding(action: FundingCmd) -> anyhow::Result<ExitCode> {
    let connect = |e: &EngineArgs| {
        let t = token(e.token.clone(), e.token_file.clone(), "control.token");
        let url = e.engine.clone();
        async move { client::engine(&url, &t?).await }
    };
    match action {
        FundingCmd::Status(e) => {
            let mut c = connect(&e).await?;
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            let f = s.funding.unwrap_or_default();
            match e.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&render::to_json(&f))?),
                Output::Table => print!("{}", render::funding_table(&f)),
            }
            Ok(ExitCode::SUCCESS)
        }
        FundingCmd::Pause { e, reason } => {
            let mut c = connect(&e).await?;
            control_result(
                c.set_funding_opening(epb::SetFundingOpeningRequest {
                    paused: true,
                    reason,
                })
                .await,
                e.output,
            )
        }
        FundingCmd::Resume(e) => {
            let mut c = connect(&e).await?;
            control_result(
                c.set_funding_opening(epb::SetFundingOpeningRequest {
                    paused: false,
                    reason: String::new(),
                })
                .await,
                e.output,
            )
        }
        FundingCmd::Close { e, symbol, yes } => {
            if !yes
                && !client::confirm(&format!(
                    "Close the funding hedge on {symbol} at market on {}?",
                    e.engine
                ))?
            {
                eprintln!("herdctl: not confirmed; nothing done");
                return Ok(ExitCode::from(3));
            }
            let mut c = connect(&e).await?;
            match c
                .close_funding_position(epb::CloseFundingPositionRequest { symbol })
                .await
            {
                Err(s) if s.code() == tonic::Code::NotFound => Ok(print_control(
                    epb::ControlResponse {
                        ok: false,
                        message: s.message().to_string(),
                    },
                    e.output,
                )),
                r => control_result(r, e.output),
            }
        }
        FundingCmd::Limits {
            e,
            max_position_usd,
            max_total_exposure_usd,
            max_positions,
            min_rate,
            exit_rate,
            margin_alert,
            margin_critical,
        } => {
            let mut c = connect(&e).await?;
            let r = c
                .set_funding_risk_limits(epb::SetFundingRiskLimitsRequest {
                    max_position_usd,
                    max_total_exposure_usd,
                    max_positions,
                    min_rate,
                    exit_rate,
                    margin_alert,
                    margin_critical,
                })
                .await;
            match r {
                Ok(l) => {
                    let l = l.into_inner();
                    match e.output {
                        Output::Json => {
                            println!("{}", serde_json::to_string_pretty(&render::to_json(&l))?)
                        }
                        Output::Table => print!("{}", render::funding_limits_table(&l)),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    if e.output == Output::Json {
                        println!(
                            "{}",
                            serde_json::json!({"ok": false, "message": s.message()})
                        );
                    }
                    eprintln!("herdctl: invalid limit: {}", s.message());
                    Ok(ExitCode::from(2))
                }
                Err(s) => control_result(Err(s), e.output),
            }
        }
        FundingCmd::ClearEmergency { e, reason } => {
            let mut c = connect(&e).await?;
            control_result(
                c.clear_funding_emergency(epb::ClearFundingEmergencyRequest { reason })
                    .await,
                e.output,
            )
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = target_of(&cli.cmd);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herdctl: {}", errors::explain(&e, target.as_ref()).await);
            ExitCode::from(1)
        }
    }
}

/// The server a command calls and where its token comes from, for the
/// error message (`errors::explain`); None for commands that call none.
fn target_of(cmd: &Cmd) -> Option<errors::Target> {
    let engine = |e: &EngineArgs| errors::Target {
        service: errors::Service::Engine,
        url: e.engine.clone(),
        token: token_source(e.token.is_some(), e.token_file.as_ref(), "control.token"),
    };
    let gateway = |g: &GatewayArgs, service, local| errors::Target {
        service,
        url: g.gateway.clone(),
        token: token_source(g.token.is_some(), g.token_file.as_ref(), local),
    };
    Some(match cmd {
        Cmd::Up(_)
        | Cmd::Regime { .. }
        | Cmd::Backtest(_)
        | Cmd::Gateway { .. }
        | Cmd::Engine { .. } => {
            return None;
        }
        Cmd::Status(e)
        | Cmd::Pause { e, .. }
        | Cmd::Resume(e)
        | Cmd::EmergencyStop { e, .. }
        | Cmd::Reconcile { e, .. }
        | Cmd::Rangers {
            action: RangersCmd::Enable(e) | RangersCmd::Disable(e),
        }
        | Cmd::Churner {
            action: ChurnerCmd::Spawn(e) | ChurnerCmd::Kill { e, .. },
        }
        | Cmd::Position {
            action:
                PositionCmd::BreakEven { e, .. }
                | PositionCmd::Close { e, .. }
                | PositionCmd::Hold { e, .. },
        }
        | Cmd::Funding {
            action:
                FundingCmd::Status(e)
                | FundingCmd::Pause { e, .. }
                | FundingCmd::Resume(e)
                | FundingCmd::Close { e, .. }
                | FundingCmd::Limits { e, .. }
                | FundingCmd::ClearEmergency { e, .. },
        } => engine(e),
        Cmd::Budget(g) => gateway(g, errors::Service::Gateway, "engine-0.token"),
        Cmd::Events(a) => gateway(&a.g, errors::Service::Admin, "admin.token"),
        Cmd::Engines(g)
        | Cmd::Key(g)
        | Cmd::Risk {
            action:
                RiskCmd::Status { g, .. }
                | RiskCmd::Set { g, .. }
                | RiskCmd::Halt { g, .. }
                | RiskCmd::Reduce { g, .. }
                | RiskCmd::Resume { g, .. }
                | RiskCmd::Audit { g, .. },
        }
        | Cmd::Fills { g, .. }
        | Cmd::Pnl { g, .. } => gateway(g, errors::Service::Admin, "admin.token"),
        Cmd::Config {
            action: ConfigCmd::Reload { target } | ConfigCmd::Show { target },
        } => match target {
            ConfigTarget::Gateway(g) => gateway(g, errors::Service::Admin, "admin.token"),
            ConfigTarget::Engine(e) => engine(e),
        },
    })
}

/// The environment variable behind `--token` for a command whose local-herd
/// token file is `local` (engine control tokens vs. gateway tokens).
fn token_env(local: &str) -> &'static str {
    if local == "control.token" {
        "HERD_CONTROL_TOKEN"
    } else {
        "HERD_GATEWAY_TOKEN"
    }
}

/// Where `token` takes the token from: the flag (or its variable), else the
/// file, else the local herd's file.
fn token_source(flag: bool, file: Option<&PathBuf>, local: &str) -> errors::TokenSource {
    match (flag, file) {
        (true, _) => errors::TokenSource::Flag {
            env: token_env(local),
        },
        (false, Some(f)) => errors::TokenSource::File(f.clone()),
        (false, None) => errors::TokenSource::Local(up::local_dir().join(local)),
    }
}

fn token(flag: Option<String>, file: Option<PathBuf>, local: &str) -> anyhow::Result<String> {
    if let Some(t) = flag {
        return Ok(t);
    }
    if let Some(f) = file {
        return Ok(std::fs::read_to_string(&f)
            .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", f.display()))?
            .trim()
            .to_string());
    }
    let local_file = up::local_dir().join(local);
    if let Ok(t) = std::fs::read_to_string(&local_file) {
        return Ok(t.trim().to_string());
    }
    Err(errors::NoToken {
        env: token_env(local),
        local: local_file,
    }
    .into())
}

fn print_control(r: epb::ControlResponse, output: Output) -> ExitCode {
    if output == Output::Json {
        println!("{}", serde_json::json!({"ok": r.ok, "message": r.message}));
    } else {
        println!("{}", r.message);
    }
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Up(args) => up::run(args).await.map(|()| ExitCode::SUCCESS),
        Cmd::Status(e) => {
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            match e.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::status_json(&s))?
                ),
                Output::Table => print!("{}", render::status_table(&s)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pause { e, reason } => {
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            let r = c.pause(epb::PauseRequest { reason }).await?.into_inner();
            Ok(print_control(r, e.output))
        }
        Cmd::Resume(e) => {
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            let r = c.resume(epb::ResumeRequest {}).await?.into_inner();
            Ok(print_control(r, e.output))
        }
        Cmd::EmergencyStop { e, reason, yes } => {
            if !yes
                && !client::confirm(&format!(
                    "Emergency stop {}: cancel all its orders and halt it?",
                    e.engine
                ))?
            {
                eprintln!("herdctl: not confirmed; nothing done");
                return Ok(ExitCode::from(3));
            }
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            let r = c
                .emergency_stop(epb::EmergencyStopRequest { reason })
                .await?
                .into_inner();
            Ok(print_control(r, e.output))
        }
        Cmd::Reconcile { e, dry_run, yes } => {
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            let preview = c
                .reconcile(epb::ReconcileRequest { dry_run: true })
                .await?
                .into_inner();
            let pending = preview.differences.len();
            if dry_run || pending == 0 {
                match e.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&render::to_json(&preview))?
                    ),
                    Output::Table => print!("{}", render::reconcile_table(&preview)),
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !yes {
                if e.output == Output::Table {
                    print!("{}", render::reconcile_table(&preview));
                }
                if !client::confirm(&format!(
                    "Apply these {pending} reconcile action(s) to {}?",
                    e.engine
                ))? {
                    eprintln!("herdctl: not confirmed; nothing done");
                    return Ok(ExitCode::from(3));
                }
            }
            // Applied from a fresh look: what changed since the preview is
            // decided by the same rules.
            let done = c
                .reconcile(epb::ReconcileRequest { dry_run: false })
                .await?
                .into_inner();
            match e.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&render::to_json(&done))?)
                }
                Output::Table => print!("{}", render::reconcile_table(&done)),
            }
            let failed = done.summary.as_ref().map_or(0, |s| s.failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Rangers { action } => {
            let (e, enabled) = match action {
                RangersCmd::Enable(e) => (e, true),
                RangersCmd::Disable(e) => (e, false),
            };
            let mut c =
                client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?).await?;
            control_result(
                c.set_rangers_enabled(epb::SetRangersEnabledRequest { enabled })
                    .await,
                e.output,
            )
        }
        Cmd::Churner { action } => match action {
            ChurnerCmd::Spawn(e) => {
                let mut c =
                    client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?)
                        .await?;
                control_result(c.spawn_churner(epb::SpawnChurnerRequest {}).await, e.output)
            }
            ChurnerCmd::Kill { e, id } => {
                let mut c =
                    client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?)
                        .await?;
                control_result(
                    c.kill_churner(epb::KillChurnerRequest { churner_id: id })
                        .await,
                    e.output,
                )
            }
        },
        Cmd::Position { action } => match action {
            PositionCmd::BreakEven { e, position_id } => {
                let mut c =
                    client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?)
                        .await?;
                control_result(
                    c.reprice_break_even(epb::PositionRequest { position_id })
                        .await,
                    e.output,
                )
            }
            PositionCmd::Close {
                e,
                position_id,
                yes,
            } => {
                if !yes
                    && !client::confirm(&format!(
                        "Close position {position_id} at market on {}?",
                        e.engine
                    ))?
                {
                    eprintln!("herdctl: not confirmed; nothing done");
                    return Ok(ExitCode::from(3));
                }
                let mut c =
                    client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?)
                        .await?;
                control_result(
                    c.close_position_at_market(epb::PositionRequest { position_id })
                        .await,
                    e.output,
                )
            }
            PositionCmd::Hold {
                e,
                position_id,
                hours,
            } => {
                let mut c =
                    client::engine(&e.engine, &token(e.token, e.token_file, "control.token")?)
                        .await?;
                control_result(
                    c.keep_holding(epb::KeepHoldingRequest { position_id, hours })
                        .await,
                    e.output,
                )
            }
        },
        Cmd::Funding { action } => funding(action).await,
        Cmd::Budget(g) => {
            let mut c =
                client::gateway(&g.gateway, &token(g.token, g.token_file, "engine-0.token")?)
                    .await?;
            let b = c.get_budget(gpb::GetBudgetRequest {}).await?.into_inner();
            match g.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::budget_json(&b))?
                ),
                Output::Table => print!("{}", render::budget_table(&b)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Engines(g) => {
            let mut c =
                client::admin(&g.gateway, &token(g.token, g.token_file, "admin.token")?).await?;
            let list = c
                .list_engines(gpb::ListEnginesRequest {})
                .await?
                .into_inner();
            match g.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::engines_json(&list))?
                ),
                Output::Table => print!("{}", render::engines_table(&list)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Key(g) => {
            let mut c =
                client::admin(&g.gateway, &token(g.token, g.token_file, "admin.token")?).await?;
            let k = c
                .get_key_info(gpb::GetKeyInfoRequest {})
                .await?
                .into_inner();
            match g.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&render::key_json(&k))?)
                }
                Output::Table => print!("{}", render::key_table(&k)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events(a) => {
            let t = token(a.g.token.clone(), a.g.token_file.clone(), "admin.token")?;
            events::run(a, t).await.map(|()| ExitCode::SUCCESS)
        }
        Cmd::Risk { action } => risk(action).await,
        Cmd::Fills { g, f } => {
            let req = ledger::fills_request(&f)?;
            let mut c =
                client::admin(&g.gateway, &token(g.token, g.token_file, "admin.token")?).await?;
            let fills = c.list_fills(req).await?.into_inner().fills;
            print!("{}", ledger::render_fills(&fills, f.format)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pnl {
            g,
            by,
            engine,
            strategy,
        } => {
            let grouping = ledger::grouping(&by)?;
            let mut c =
                client::admin(&g.gateway, &token(g.token, g.token_file, "admin.token")?).await?;
            let r = c
                .get_pnl(gpb::GetPnlRequest {
                    by: grouping as i32,
                    engine_id: engine.unwrap_or_default(),
                    strategy: strategy.unwrap_or_default(),
                    symbol: String::new(),
                })
                .await?
                .into_inner();
            print!("{}", ledger::render_pnl(&by, &r, g.output == Output::Json)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Backtest(args) => backtest::run_backtest(&args),
        Cmd::Regime {
            candles,
            timeframe,
            output,
        } => {
            render::regime(&candles, &timeframe, output == Output::Json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config { action } => config_cmd(action).await,
        Cmd::Gateway { config } => {
            up::child_of_up()?;
            herd_gateway::init_tracing();
            let cfg = herd_gateway::config::GatewayConfig::load(Some(&config))?;
            let origin = herd_gateway::reload::Origin {
                path: Some(config),
                listen: None,
            };
            herd_gateway::run_reloadable(
                cfg,
                Some(origin),
                |addr| println!("herd-gateway listening on {addr}"),
                herd_proto::serving::termination_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Engine { config } => {
            up::child_of_up()?;
            herd_engine::init_tracing();
            let cfg = herd_engine::config::EngineConfig::load(Some(&config))?;
            let strategies = herd_engine::strategies_from_config(&cfg).await?;
            let origin = herd_engine::reload::Origin {
                path: Some(config),
                listen: None,
            };
            herd_engine::run_reloadable(
                cfg,
                strategies,
                Some(origin),
                |addr| println!("herd-engine listening on {addr}"),
                herd_proto::serving::termination_signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One configuration change as herdctl shows it (gateway and engine alike).
struct ChangeRow {
    path: String,
    before: String,
    after: String,
    live: bool,
    applied: bool,
}

/// One field of `config show`.
struct FieldRow {
    path: String,
    value: String,
    source: String,
    live: bool,
}

fn class_word(live: bool) -> &'static str {
    if live { "live" } else { "restart-only" }
}

fn changes_json(rows: &[ChangeRow]) -> serde_json::Value {
    rows.iter()
        .map(|c| {
            serde_json::json!({
                "path": c.path, "before": c.before, "after": c.after,
                "class": class_word(c.live), "applied": c.applied,
            })
        })
        .collect()
}

fn changes_table(rows: &[ChangeRow]) -> String {
    let mut out = String::new();
    for c in rows {
        let state = if c.applied {
            "applied"
        } else if c.live {
            "NOT applied"
        } else {
            "restart-only: not applied"
        };
        let show = |v: &str| {
            if v.is_empty() {
                "(absent)".to_string()
            } else {
                v.to_string()
            }
        };
        out.push_str(&format!(
            "  {}: {} -> {}  [{state}]\n",
            c.path,
            show(&c.before),
            show(&c.after)
        ));
    }
    out
}

fn print_reload(
    file: &str,
    message: &str,
    rows: &[ChangeRow],
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file, "message": message, "changes": changes_json(rows),
            }))?
        ),
        Output::Table => {
            println!(
                "reloaded {}: {message}",
                if file.is_empty() { "(no file)" } else { file }
            );
            print!("{}", changes_table(rows));
        }
    }
    Ok(())
}

fn print_show(
    file: &str,
    fields: &[FieldRow],
    pending: &[ChangeRow],
    output: Output,
) -> anyhow::Result<()> {
    match output {
        Output::Json => {
            let fields: serde_json::Value = fields
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "path": f.path, "value": f.value, "source": f.source,
                        "class": class_word(f.live),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "file": file, "fields": fields, "pending_restart": changes_json(pending),
                }))?
            );
        }
        Output::Table => {
            println!(
                "config file: {}",
                if file.is_empty() { "(none)" } else { file }
            );
            let width = fields
                .iter()
                .map(|f| f.path.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!("{:width$}  {:7}  {:12}  VALUE", "FIELD", "SOURCE", "CLASS");
            for f in fields {
                println!(
                    "{:width$}  {:7}  {:12}  {}",
                    f.path,
                    f.source,
                    class_word(f.live),
                    f.value
                );
            }
            if !pending.is_empty() {
                println!("changed in the file, waiting for a restart:");
                print!("{}", changes_table(pending));
            }
        }
    }
    Ok(())
}

async fn config_cmd(action: ConfigCmd) -> anyhow::Result<ExitCode> {
    let connect = |e: &EngineArgs| {
        let t = token(e.token.clone(), e.token_file.clone(), "control.token");
        let url = e.engine.clone();
        async move { client::engine(&url, &t?).await }
    };
    let gw_rows = |v: Vec<gpb::ConfigChange>| -> Vec<ChangeRow> {
        v.into_iter()
            .map(|c| ChangeRow {
                path: c.path,
                before: c.before,
                after: c.after,
                live: c.live,
                applied: c.applied,
            })
            .collect()
    };
    let en_rows = |v: Vec<epb::ConfigChange>| -> Vec<ChangeRow> {
        v.into_iter()
            .map(|c| ChangeRow {
                path: c.path,
                before: c.before,
                after: c.after,
                live: c.live,
                applied: c.applied,
            })
            .collect()
    };
    match action {
        ConfigCmd::Reload {
            target: ConfigTarget::Gateway(g),
        } => {
            let mut c = risk_admin(&g).await?;
            let r = c
                .reload_config(gpb::ReloadConfigRequest {})
                .await?
                .into_inner();
            print_reload(&r.file, &r.message, &gw_rows(r.changes), g.output)?;
        }
        ConfigCmd::Reload {
            target: ConfigTarget::Engine(e),
        } => {
            let mut c = connect(&e).await?;
            let r = c
                .reload_config(epb::ReloadConfigRequest {})
                .await?
                .into_inner();
            print_reload(&r.file, &r.message, &en_rows(r.changes), e.output)?;
        }
        ConfigCmd::Show {
            target: ConfigTarget::Gateway(g),
        } => {
            let mut c = risk_admin(&g).await?;
            let r = c.get_config(gpb::GetConfigRequest {}).await?.into_inner();
            let fields: Vec<FieldRow> = r
                .fields
                .into_iter()
                .map(|f| FieldRow {
                    path: f.path,
                    value: f.value,
                    source: f.source,
                    live: f.live,
                })
                .collect();
            print_show(&r.file, &fields, &gw_rows(r.pending_restart), g.output)?;
        }
        ConfigCmd::Show {
            target: ConfigTarget::Engine(e),
        } => {
            let mut c = connect(&e).await?;
            let r = c.get_config(epb::GetConfigRequest {}).await?.into_inner();
            let fields: Vec<FieldRow> = r
                .fields
                .into_iter()
                .map(|f| FieldRow {
                    path: f.path,
                    value: f.value,
                    source: f.source,
                    live: f.live,
                })
                .collect();
            print_show(&r.file, &fields, &en_rows(r.pending_restart), e.output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn risk_admin(g: &GatewayArgs) -> anyhow::Result<client::Admin> {
    client::admin(
        &g.gateway,
        &token(g.token.clone(), g.token_file.clone(), "admin.token")?,
    )
    .await
}

async fn set_state(
    g: GatewayArgs,
    t: RiskTarget,
    state: gpb::TradingState,
    cancel_all: bool,
    flatten: bool,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let mut c = risk_admin(&g).await?;
    let r = c
        .set_trading_state(gpb::SetTradingStateRequest {
            engine_id: t.engine_id.clone().unwrap_or_default(),
            account: t.account,
            state: state as i32,
            cancel_all: cancel_all || flatten,
            flatten,
            reason,
        })
        .await?
        .into_inner();
    let who = t.engine_id.unwrap_or_else(|| "account".into());
    println!(
        "{who}: {} -> {}",
        render::trading_state(r.before),
        render::trading_state(r.after)
    );
    Ok(ExitCode::SUCCESS)
}

async fn risk(action: RiskCmd) -> anyhow::Result<ExitCode> {
    match action {
        RiskCmd::Status { g, engine_id } => {
            let mut c = risk_admin(&g).await?;
            let r = c
                .get_risk_state(gpb::GetRiskStateRequest {
                    engine_id: engine_id.unwrap_or_default(),
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&render::risk_json(&r))?)
                }
                Output::Table => print!("{}", render::risk_table(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
        RiskCmd::Set {
            g,
            t,
            max_order_notional,
            max_order_volume,
            price_band_pct,
            max_open_orders,
            max_open_orders_per_instrument,
            max_exposure_per_instrument,
            max_gross_exposure,
            max_orders_per_window,
            order_window_ms,
            max_daily_loss,
            max_drawdown,
            actions,
            reason,
        } => {
            let mut map = std::collections::HashMap::new();
            for a in actions {
                let (code, action) = a
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--action {a:?}: write CODE=ACTION"))?;
                map.insert(code.to_string(), action.to_string());
            }
            let mut c = risk_admin(&g).await?;
            let r = c
                .set_risk_limits(gpb::SetRiskLimitsRequest {
                    engine_id: t.engine_id.clone().unwrap_or_default(),
                    account: t.account,
                    limits: Some(gpb::RiskLimits {
                        max_order_notional,
                        max_order_volume,
                        price_band_pct,
                        max_open_orders,
                        max_open_orders_per_instrument,
                        max_exposure_per_instrument,
                        max_gross_exposure,
                        max_orders_per_window,
                        order_window_ms,
                        max_daily_loss,
                        max_drawdown,
                        actions: map,
                    }),
                    reason,
                })
                .await?
                .into_inner();
            let after = r.after.unwrap_or_default();
            print!("{}", render::limits_table(&after));
            Ok(ExitCode::SUCCESS)
        }
        RiskCmd::Halt {
            g,
            t,
            cancel_all,
            flatten,
            reason,
        } => set_state(g, t, gpb::TradingState::Halted, cancel_all, flatten, reason).await,
        RiskCmd::Reduce { g, t, reason } => {
            set_state(g, t, gpb::TradingState::Reducing, false, false, reason).await
        }
        RiskCmd::Resume { g, t, reason } => {
            set_state(g, t, gpb::TradingState::Active, false, false, reason).await
        }
        RiskCmd::Audit {
            g,
            engine_id,
            account,
            limit,
        } => {
            let mut c = risk_admin(&g).await?;
            let r = c
                .list_risk_audit(gpb::ListRiskAuditRequest {
                    engine_id: engine_id.unwrap_or_default(),
                    account,
                    limit,
                })
                .await?
                .into_inner();
            match g.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&render::audit_json(&r))?)
                }
                Output::Table => print!("{}", render::audit_table(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
