//! `bybit-sim`: the Bybit V5 simulator as a process. Prints
//! "bybit-sim listening on ADDR" once it accepts connections.

use std::net::SocketAddr;

use clap::Parser;
use herd_tests::bybit_sim::{self, SimConfig};

/// A wire-level Bybit V5 simulator on the paper matching core.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API key clients must present.
    #[arg(long, env = "BYBIT_SIM_KEY")]
    key: String,
    /// The API secret signatures are checked with.
    #[arg(long, env = "BYBIT_SIM_SECRET")]
    secret: String,
    /// The simulator's clock minus the machine's, ms.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_ms: i64,
    /// Milliseconds between price steps (0 = only when told).
    #[arg(long, default_value_t = 1000)]
    step_ms: u64,
    /// Extra permissions for the key, GROUP:NAME (e.g. `Wallet:Withdraw`).
    #[arg(long = "grant", value_name = "GROUP:NAME")]
    grants: Vec<String>,
    /// The key is read-only (`readOnly: 1`; order calls answer 10005).
    #[arg(long)]
    read_only: bool,
    /// The key's IP allowlist (comma-separated; `*` = none).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    ips: Vec<String>,
    /// When the key expires, Unix ms (default: never).
    #[arg(long)]
    key_expires_at_ms: Option<i64>,
    /// Keep the state (balances, orders, fills, positions, funding) in this
    /// file: loaded on start, written durably before every answer, so a
    /// kill -9 loses nothing that was answered.
    #[arg(long)]
    state: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = SimConfig::new(&args.key, &args.secret);
    cfg.clock_skew_ms = args.skew_ms;
    cfg.step_ms = args.step_ms;
    for g in &args.grants {
        cfg.key_info.grant(g).map_err(anyhow::Error::msg)?;
    }
    cfg.key_info.read_only = args.read_only;
    cfg.key_info.ips = args.ips;
    cfg.key_info.expires_at_ms = args.key_expires_at_ms;
    cfg.state_file = args.state;
    let handle = bybit_sim::start(cfg, args.listen).await?;
    println!("bybit-sim listening on {}", handle.addr);
    herd_proto::serving::termination_signal().await;
    drop(handle);
    Ok(())
}
