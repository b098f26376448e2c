//! `herd-engine`: one trading engine process.

use std::path::PathBuf;

use clap::Parser;

/// A Herd trading engine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file; environment variables override it.
    #[arg(long, short, env = "HERD_ENGINE_CONFIG")]
    config: Option<PathBuf>,
    /// Control server address (overrides the config), e.g. 127.0.0.1:0.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    herd_proto::report::exit(serve().await)
}

async fn serve() -> anyhow::Result<()> {
    herd_engine::init_tracing();
    let args = Args::parse();
    let mut cfg = herd_engine::config::EngineConfig::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let strategies = herd_engine::strategies_from_config(&cfg).await?;
    let origin = herd_engine::reload::Origin {
        path: args.config.clone(),
        listen: args.listen,
    };
    herd_engine::run_reloadable(
        cfg,
        strategies,
        Some(origin),
        |addr| println!("herd-engine listening on {addr}"),
        herd_proto::serving::termination_signal(),
    )
    .await
}
