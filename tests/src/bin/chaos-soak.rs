//! `chaos-soak`: the issue-22 chaos soak as a long run (see
//! `herd_tests::soak`): kraken-sim + gateway + engines as real processes, a
//! seeded driver that kills and restarts them (the simulators too, with
//! their state files) and arms the simulator's faults, the invariants
//! checked after every step; e1 and e2 run the grid and the rangers, and a
//! Bybit leg (bybit-sim, its gateway, a funding engine) runs beside. Prints
//! the counts; exits 1 on any violation.
//!
//! ```text
//! cargo build --workspace --bins
//! target/debug/chaos-soak --seed 22 --minutes 30 --engines 3
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use herd_tests::kraken_herd::HerdOpts;

#[derive(Debug, Parser)]
#[command(
    about = "Chaos soak: kill -9, restarts and venue faults against a herd of real processes"
)]
struct Args {
    /// Seed of the driver (the same seed drives the same steps).
    #[arg(long, default_value_t = 22)]
    seed: u64,
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// How long to run, in seconds (instead of --minutes).
    #[arg(long)]
    seconds: Option<u64>,
    /// Engines in the herd.
    #[arg(long, default_value_t = 3)]
    engines: usize,
    /// Run no strategies (only the operator's orders through SubmitOrder);
    /// by default e1 runs the grid, e2 the rangers (see
    /// `herd_tests::soak::strategy_engines`).
    #[arg(long)]
    no_strategies: bool,
    /// Leave out the Bybit leg (bybit-sim, a Bybit gateway and a funding
    /// engine, `herd_tests::funding_leg`).
    #[arg(long)]
    no_funding: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let sim = herd_tests::bin_path("kraken-sim")?;
    let report = herd_tests::soak::run(
        &sim,
        args.seed,
        herd_tests::soak::SoakLength::Time(Duration::from_secs(
            args.seconds.unwrap_or(args.minutes * 60),
        )),
        HerdOpts {
            engines: args.engines,
            rust_log: "info",
            engine_extra: if args.no_strategies {
                Vec::new()
            } else {
                herd_tests::soak::strategy_engines(args.engines)
            },
            funding_leg: !args.no_funding,
            ..HerdOpts::default()
        },
    )
    .await?;
    println!("{report}");
    for v in &report.violations {
        println!("violation: {v}");
    }
    Ok(if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
