//! `herd-gateway`: the exchange gateway process.

use std::path::PathBuf;

use clap::Parser;

/// Herd's exchange gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file; environment variables override it.
    #[arg(long, short, env = "HERD_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address (overrides the config), e.g. 127.0.0.1:0 for any free port.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// jemalloc: the order path allocates small, short-lived buffers (requests,
/// events, rows) on several threads at once. Under 32 callers glibc's malloc
/// and free were about an eighth of the gateway's CPU, and waits on its arena
/// locks about 8 % of the gateway's context switches (docs/benchmarks.md,
/// issue 16).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    herd_proto::report::exit(serve().await)
}

async fn serve() -> anyhow::Result<()> {
    herd_gateway::init_tracing();
    let args = Args::parse();
    let mut cfg = herd_gateway::config::GatewayConfig::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let origin = herd_gateway::reload::Origin {
        path: args.config.clone(),
        listen: args.listen,
    };
    herd_gateway::run_reloadable(
        cfg,
        Some(origin),
        // The readiness line tests and herdctl wait for.
        |addr| println!("herd-gateway listening on {addr}"),
        herd_proto::serving::termination_signal(),
    )
    .await
}
