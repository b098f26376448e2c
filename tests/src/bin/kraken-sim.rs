//! `kraken-sim`: runs the Kraken spot REST simulator until SIGTERM / Ctrl-C.
//!
//! ```text
//! kraken-sim --listen 127.0.0.1:0 --key KEY --secret BASE64 --tier starter
//! ```
//! Prints `kraken-sim listening on ADDR` on stdout once bound. With
//! `--state FILE` it keeps its state across restarts (kill -9 included).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use herd_tests::kraken_sim::{LockoutPolicy, Shared, SimConfig, Tier, serve};

#[derive(Debug, Parser)]
#[command(about = "Kraken spot REST simulator over the paper matching core")]
struct Args {
    /// Address to bind; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API key clients must send.
    #[arg(long, env = "KRAKEN_SIM_KEY")]
    key: String,
    /// The API secret, base64 as Kraken shows it.
    #[arg(long, env = "KRAKEN_SIM_SECRET", hide_env_values = true)]
    secret: String,
    /// starter | intermediate | pro
    #[arg(long, default_value = "starter")]
    tier: Tier,
    /// Step the price paths every this many ms (default: prices move only
    /// through POST /sim/price).
    #[arg(long)]
    step_ms: Option<u64>,
    /// Extra synthetic pairs P1USD.. (benchmarks needing many open orders).
    #[arg(long, default_value_t = 0)]
    extra_pairs: u32,
    /// Do not enforce rate limits (raw-speed benchmarks only).
    #[arg(long)]
    no_limits: bool,
    /// Rate-limit violations within a minute that earn a lockout.
    #[arg(long, default_value_t = 20)]
    lockout_after: usize,
    /// How long an earned lockout lasts, ms.
    #[arg(long, default_value_t = 900_000)]
    lockout_ms: i64,
    /// The key's permissions as GetApiKeyInfo reports them and every private
    /// method enforces (comma-separated Kraken names; add `withdraw-funds`
    /// for a key that can withdraw, drop `modify-trades` for a read-only one).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "query-funds,query-open-trades,query-closed-trades,modify-trades,cancel-close-trades"
    )]
    permissions: Vec<String>,
    /// The key's IP allowlist (comma-separated; empty = none).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1/32")]
    ip_allowlist: Vec<String>,
    /// When the key expires, Unix seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    key_valid_until: i64,
    /// The key's nonce window, seconds.
    #[arg(long, default_value_t = 0)]
    nonce_window: u32,
    /// Keep the state (balances, orders with their client ids, trades, the
    /// last nonce) in this file: loaded on start, written durably before
    /// every answer that follows a change, so a kill -9 loses nothing that
    /// was answered.
    #[arg(long)]
    state: Option<std::path::PathBuf>,
    /// The simulator's clock minus the machine's, ms.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_ms: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg =
        SimConfig::new(&args.key, &args.secret, args.tier).with_synthetic_pairs(args.extra_pairs);
    cfg.step_ms = args.step_ms;
    cfg.enforce_limits = !args.no_limits;
    cfg.key_info.permissions = args
        .permissions
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    cfg.key_info.ip_allowlist = args
        .ip_allowlist
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    cfg.key_info.valid_until = args.key_valid_until;
    cfg.key_info.nonce_window = args.nonce_window;
    cfg.clock_skew_ms = args.skew_ms;
    cfg.lockout = LockoutPolicy {
        violations: args.lockout_after.max(1),
        duration_ms: args.lockout_ms,
        ..LockoutPolicy::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(
        match &args.state {
            Some(path) => Shared::with_state_file(cfg, path),
            None => Shared::new(cfg),
        }
        .map_err(anyhow::Error::msg)?,
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "kraken-sim listening on {addr}")?;
        out.flush()?;
    }
    serve(listener, shared, herd_proto::serving::termination_signal()).await;
    Ok(())
}
