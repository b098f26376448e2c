//! `herdctl backtest`: the engine's configured strategies over a candle
//! file, on the paper matching core in simulated time (herd-backtest), and
//! the report written to a directory.
//!
//! The engine's config is read here with the engine's own loader (unknown
//! keys refused, env overrides applied, validated), so the backtest crate
//! stays free of the runtime: it gets the parsed strategy configs.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use herd_backtest::csv::{Candles, fmt_time, load_candles, load_funding, parse_cli_time};
use herd_backtest::sim::{FillModel, FundingSetup, Progress, RegimeSetup, Setup};
use herd_backtest::sweep::SweepConfig;
use herd_backtest::{Companion, engine_strategies, report, run, run_with};
use herd_engine::config::{EngineConfig, RegimeSource, Secret};
use herd_paper::{FeePolicy, PaperConfig, PaperInstrument, PathConfig};
use herd_venue::{Instrument, InstrumentKind};
use rust_decimal::Decimal;

/// `herdctl backtest` options.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The engine's TOML config (strategies, symbol, regime source).
    #[arg(long)]
    config: PathBuf,
    /// OHLCV candles: Kraken OHLCVT (no header, seconds) or a header-named CSV.
    #[arg(
        long,
        required_unless_present = "recording",
        conflicts_with = "recording"
    )]
    candles: Option<PathBuf>,
    /// A gateway recording (`[record] path`) to replay instead of candles:
    /// each ticker of the symbol is one flat candle; the recorded fills are
    /// compared with the replay's.
    #[arg(long)]
    recording: Option<PathBuf>,
    /// Funding rates CSV (time, symbol, rate[, mark]): settled at the
    /// venue's funding times when the engine's symbol is a perpetual
    /// (e.g. BTCUSDT-PERP); read and checked on spot.
    #[arg(long)]
    funding: Option<PathBuf>,
    /// Hours between funding settlements; default: the paper venue's for a
    /// perpetual it lists, else 8.
    #[arg(long)]
    funding_hours: Option<u32>,
    /// First candle to use: unix seconds or ms, or a date (2024-01-31[ 12:00]).
    #[arg(long)]
    from: Option<String>,
    /// Stop before this time (same forms as --from).
    #[arg(long)]
    to: Option<String>,
    /// Maker fee as a fraction (0.0025 = 0.25 %); default: the instrument's.
    #[arg(long)]
    maker_fee: Option<String>,
    /// Taker fee as a fraction; default: the instrument's.
    #[arg(long)]
    taker_fee: Option<String>,
    /// Ticks a trade must go beyond a resting limit to fill it.
    #[arg(long, default_value_t = 1)]
    through_ticks: u32,
    /// Market-order slippage as a fraction (0.0005 = 5 bp).
    #[arg(long, default_value = "0.0005")]
    slippage: String,
    /// Partial liquidity: at most this base volume of one resting order
    /// fills per trade of the intra-candle path (default: all of it).
    #[arg(long)]
    liquidity: Option<String>,
    /// Starting balance, ASSET=AMOUNT (repeatable); default: the paper
    /// venue's for a symbol it lists, else 10000 of the quote coin.
    #[arg(long = "balance")]
    balances: Vec<String>,
    /// Where the report goes.
    #[arg(long, default_value = "backtest-report")]
    out: PathBuf,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Run a parameter sweep (TOML: `[params]` engine env-var overrides ->
    /// values to try, `rank_by`, `threads`) instead of one run; prints a
    /// ranked table and writes it to DIR/sweep.csv.
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// Run only slice INDEX of --sweep-count (a Kubernetes Indexed Job's
    /// pod: JOB_COMPLETION_INDEX).
    #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
    sweep_index: usize,
    /// How many slices the sweep is split into.
    #[arg(long, default_value_t = 1)]
    sweep_count: usize,
}

fn decimal_arg(flag: &str, text: &str) -> anyhow::Result<Decimal> {
    let d = Decimal::from_str(text.trim())
        .map_err(|_| anyhow::anyhow!("--{flag}: {text:?} is not a decimal number"))?;
    if d < Decimal::ZERO {
        bail!("--{flag}: {text} is negative");
    }
    Ok(d)
}

fn time_arg(flag: &str, text: Option<&str>) -> anyhow::Result<Option<i64>> {
    text.map(|t| {
        parse_cli_time(t).ok_or_else(|| {
            anyhow::anyhow!("--{flag}: {t:?} is not unix seconds, milliseconds or a date (YYYY-MM-DD[ HH:MM[:SS]])")
        })
    })
    .transpose()
}

/// The instrument: the paper venue's for a symbol it lists, else one
/// derived from the symbol's quote suffix and the prices' decimals.
fn instrument_for(symbol: &str, sample: &[Decimal]) -> anyhow::Result<(Instrument, FeePolicy)> {
    let paper = PaperConfig::default();
    if let Some(p) = paper
        .instruments
        .iter()
        .find(|p| p.instrument.symbol == symbol)
    {
        return Ok((
            p.instrument.clone(),
            p.fee_policy.unwrap_or(paper.fee_policy),
        ));
    }
    const QUOTES: &[&str] = &["USDT", "USDC", "USD", "EUR", "GBP", "JPY", "BTC", "ETH"];
    // A linear perpetual is named by its pair and "-PERP" (BTCUSDT-PERP).
    let (pair, kind) = match symbol.strip_suffix("-PERP") {
        Some(pair) => (pair, InstrumentKind::Perpetual),
        None => (symbol, InstrumentKind::Spot),
    };
    let Some(quote) = QUOTES
        .iter()
        .find(|q| pair.len() > q.len() && pair.ends_with(*q))
    else {
        bail!(
            "symbol {symbol:?} (the engine config's `symbol`) does not end in a quote coin herdctl knows ({})",
            QUOTES.join(", ")
        );
    };
    let decimals = sample
        .iter()
        .map(|d| d.normalize().scale())
        .max()
        .unwrap_or(2)
        .max(2);
    Ok((
        Instrument {
            symbol: symbol.to_string(),
            base: pair[..pair.len() - quote.len()].to_string(),
            quote: (*quote).to_string(),
            kind,
            tick_size: Decimal::new(1, decimals),
            price_decimals: decimals,
            lot_decimals: 8,
            min_volume: Decimal::ZERO,
            min_cost: Decimal::ZERO,
            maker_fee: Decimal::new(25, 4),
            taker_fee: Decimal::new(40, 4),
            max_open_orders: 225,
        },
        FeePolicy::Quote,
    ))
}

fn balances_for(args: &[String], inst: &Instrument) -> anyhow::Result<BTreeMap<String, Decimal>> {
    if args.is_empty() {
        let paper = PaperConfig::default();
        if paper
            .instruments
            .iter()
            .any(|p| p.instrument.symbol == inst.symbol)
        {
            return Ok(paper.balances);
        }
        return Ok(BTreeMap::from([(
            inst.quote.clone(),
            Decimal::from(10_000),
        )]));
    }
    let mut out = BTreeMap::new();
    for a in args {
        let Some((asset, amount)) = a.split_once('=') else {
            bail!("--balance: {a:?} is not ASSET=AMOUNT");
        };
        out.insert(asset.trim().to_string(), decimal_arg("balance", amount)?);
    }
    Ok(out)
}

/// The progress bar on stderr (indicatif, drawn only on a terminal): candles
/// done of all, the share, candles per second and the time left.
struct ProgressOut(indicatif::ProgressBar);

impl ProgressOut {
    fn new(target: indicatif::ProgressDrawTarget) -> ProgressOut {
        let style = indicatif::ProgressStyle::with_template(
            "backtest {pos}/{len} candles ({percent}%), {cps}, {eta} left [{wide_bar}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key(
            "cps",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} candles/s", s.per_sec());
            },
        )
        .progress_chars("=> ");
        ProgressOut(indicatif::ProgressBar::with_draw_target(Some(0), target).with_style(style))
    }
}

impl Progress for ProgressOut {
    fn candles(&mut self, done: usize, total: usize) {
        if self.0.length() != Some(total as u64) {
            self.0.set_length(total as u64);
        }
        self.0.set_position(done as u64);
    }
}

/// The engine's config as the engine reads it (unknown keys refused, env
/// overrides from `get`, validated), except that the connection tokens a
/// backtest never uses may be missing.
pub fn engine_config(
    path: &Path,
    get: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<EngineConfig> {
    let mut cfg: EngineConfig = herd_proto::config::read_toml(Some(path))?;
    cfg.apply_env(get)?;
    if cfg.gateway_token.expose().is_empty() {
        cfg.gateway_token = Secret::new("unused-by-backtests");
    }
    if cfg.control_token.expose().len() < 8 {
        cfg.control_token = Secret::new("unused-by-backtests");
    }
    cfg.validate().map_err(|e| e.in_file(Some(path)))?;
    Ok(cfg)
}

/// Runs the backtest (or the sweep) and writes the report. It runs on a
/// thread of its own, outside herdctl's async runtime, because the funding
/// orchestrator brings a runtime of its own (see `backtest_funding`).
pub fn run_backtest(args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    std::thread::scope(|s| {
        s.spawn(|| run_backtest_here(args))
            .join()
            .unwrap_or_else(|_| bail!("the backtest thread panicked"))
    })
}

fn run_backtest_here(args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    if let Some(sweep) = &args.sweep {
        return run_sweep(args, sweep);
    }
    let cfg = engine_config(&args.config, |k| std::env::var(k).ok())?;
    let (candles, recorded) = input(args, &cfg.symbol)?;
    let mut setup = setup_for(args, &cfg, &candles)?;
    // A recording's funding rates stand in for --funding.
    let recorded_rates = recorded
        .as_ref()
        .map(|r| r.funding.clone())
        .filter(|v| !v.is_empty() && args.funding.is_none());
    if let Some(rates) = &recorded_rates {
        setup.funding.rates = rates.clone();
    }
    let mut companion = None;
    if cfg.funding.enabled {
        let follower = funding_follower(&setup.instrument, &price_sample(&candles))?;
        let perp = if follower.instrument.kind == InstrumentKind::Perpetual {
            &follower.instrument
        } else {
            &setup.instrument
        };
        let mut funding = funding_for(args, &[perp])?;
        if let Some(rates) = &recorded_rates {
            funding.rates = rates.clone();
        } else if args.funding.is_none() {
            bail!(
                "[funding] is enabled in {}: the orchestrator needs --funding rates for {}",
                args.config.display(),
                perp.symbol
            );
        }
        eprintln!(
            "backtest: the funding orchestrator trades {} and {} every {} s of simulated time",
            setup.instrument.symbol,
            follower.instrument.symbol,
            cfg.funding.cycle_interval_ms / 1000
        );
        funding.followers.push(follower);
        setup.funding = funding;
        companion = Some(crate::backtest_funding::FundingCompanion::new(
            cfg.funding.clone(),
        )?);
    }
    if let Some(f) = &args.funding {
        if setup.instrument.kind == InstrumentKind::Perpetual || companion.is_some() {
            eprintln!(
                "backtest: {} funding rows from {}, settled every {} h",
                setup.funding.rates.len(),
                f.display(),
                setup.funding.interval_hours
            );
        } else {
            eprintln!(
                "backtest: funding rates read from {} (spot run: funding is not settled)",
                f.display()
            );
        }
    }
    let start = candles.bars[0].open_time_ms;
    let strategies = engine_strategies(cfg.rangers.clone(), cfg.grid.clone(), &cfg.symbol, start)
        .with_context(|| format!("{}", args.config.display()))?;
    for g in candles.gaps.iter().take(5) {
        eprintln!(
            "backtest: gap: {} missing candle(s) between {} and {}",
            g.missing,
            fmt_time(g.after_ms),
            fmt_time(g.before_ms)
        );
    }
    if candles.gaps.len() > 5 {
        eprintln!(
            "backtest: ... {} gaps in all ({} candles missing)",
            candles.gaps.len(),
            candles.missing()
        );
    }
    let started = Instant::now();
    let show = !args.quiet && std::io::stderr().is_terminal();
    let mut bar = show.then(|| ProgressOut::new(indicatif::ProgressDrawTarget::stderr()));
    let mut quiet = ();
    let progress: &mut dyn Progress = match bar.as_mut() {
        Some(b) => b,
        None => &mut quiet,
    };
    let mut none = ();
    let with: &mut dyn Companion = match companion.as_mut() {
        Some(c) => c,
        None => &mut none,
    };
    let mut out = run_with(
        &setup,
        strategies,
        &candles.bars,
        candles.interval_ms,
        progress,
        with,
    )?;
    if let Some(b) = &bar {
        // The finished bar stays; what follows starts on its own line.
        b.0.finish();
        eprintln!();
    }
    if let Some(c) = companion {
        let (fills, summary) = c.finish();
        merge_funding(&mut out, fills);
        eprintln!(
            "backtest: funding orchestrator: {} cycles, {} opened, {} closed, {} step errors",
            summary.cycles,
            summary.opened.len(),
            summary.closed.len(),
            summary.errors.len()
        );
        for (t, e) in summary.errors.iter().take(5) {
            eprintln!("backtest: funding orchestrator at {}: {e}", fmt_time(*t));
        }
    }
    let elapsed = started.elapsed();
    if let Some(replay) = &recorded {
        compare_with_recording(&out, &replay.fills);
    }
    let written = report::write_files(&args.out, &out, &candles.gaps)
        .with_context(|| format!("cannot write the report to {}", args.out.display()))?;
    let rep = report::build(&out, &candles.gaps);
    print_summary(
        &rep,
        &written,
        &args.out,
        elapsed.as_secs_f64(),
        out.candles,
    );
    Ok(ExitCode::SUCCESS)
}

/// The candles (from --candles, or the tickers of --recording with the
/// recorded fills), cut to --from / --to.
fn input(
    args: &BacktestArgs,
    symbol: &str,
) -> anyhow::Result<(Candles, Option<crate::backtest_replay::Replay>)> {
    let (candles, recorded, path) = match (&args.candles, &args.recording) {
        (_, Some(r)) => {
            let replay = crate::backtest_replay::load(r, symbol)?;
            (replay.candles.clone(), Some(replay), r)
        }
        (Some(c), None) => (load_candles(c)?, None, c),
        (None, None) => bail!("--candles or --recording is needed"),
    };
    let from = time_arg("from", args.from.as_deref())?;
    let to = time_arg("to", args.to.as_deref())?;
    let candles = candles.into_between(from, to);
    if candles.bars.is_empty() {
        bail!("{}: no candles between --from and --to", path.display());
    }
    Ok((candles, recorded))
}

/// Says whether the replay filled what the gateway recorded: the same
/// sides, prices and volumes in the same order (ids differ in their run
/// part; times are simulated).
fn compare_with_recording(
    out: &herd_backtest::Outcome,
    recorded: &[crate::backtest_replay::RecordedFill],
) {
    let side = |s: herd_venue::Side| s.as_str().to_string();
    let replay: Vec<(String, Decimal, Decimal)> = out
        .fills
        .iter()
        .map(|f| (side(f.side), f.price, f.volume))
        .collect();
    let live: Vec<(String, Decimal, Decimal)> = recorded
        .iter()
        .map(|f| (side(f.side), f.price, f.volume))
        .collect();
    match replay.iter().zip(&live).position(|(a, b)| a != b) {
        None if replay.len() == live.len() => eprintln!(
            "backtest: replay: {} fills, the same sides, prices and volumes as the recording's",
            replay.len()
        ),
        None => eprintln!(
            "backtest: replay: {} fills, the recording has {} (the first {} agree)",
            replay.len(),
            live.len(),
            replay.len().min(live.len())
        ),
        Some(i) => eprintln!(
            "backtest: replay: fill {} differs: replay {:?}, recording {:?}",
            i + 1,
            replay[i],
            live[i]
        ),
    }
}

/// The orchestrator's fills join the strategies' (in time order), and the
/// funding the strategies' own positions do not account for is its.
fn merge_funding(out: &mut herd_backtest::Outcome, fills: Vec<herd_backtest::sim::Fill>) {
    out.fills.extend(fills);
    out.fills.sort_by_key(|f| f.time_ms);
    let total: Decimal = out.funding.iter().map(|p| p.amount).sum();
    let strategies: Decimal = out.funding_by_strategy.values().copied().sum();
    let own = total - strategies;
    if !own.is_zero() || !out.funding.is_empty() {
        out.funding_by_strategy
            .insert(crate::backtest_funding::NAME.to_string(), own);
    }
}

/// Prices to derive a tick from: the first 1,000 candles' opens and closes.
fn price_sample(candles: &Candles) -> Vec<Decimal> {
    candles
        .bars
        .iter()
        .take(1000)
        .flat_map(|b| [b.open, b.close])
        .collect()
}

fn setup_for(args: &BacktestArgs, cfg: &EngineConfig, candles: &Candles) -> anyhow::Result<Setup> {
    let sample = price_sample(candles);
    let (mut instrument, fee_policy) = instrument_for(&cfg.symbol, &sample)?;
    if let Some(f) = &args.maker_fee {
        instrument.maker_fee = decimal_arg("maker-fee", f)?;
    }
    if let Some(f) = &args.taker_fee {
        instrument.taker_fee = decimal_arg("taker-fee", f)?;
    }
    Ok(Setup {
        balances: balances_for(&args.balances, &instrument)?,
        funding: funding_for(
            args,
            &[&instrument]
                .into_iter()
                .filter(|i| i.kind == InstrumentKind::Perpetual)
                .collect::<Vec<_>>(),
        )?,
        instrument,
        fee_policy,
        fill: FillModel {
            through_ticks: args.through_ticks,
            market_slippage: decimal_arg("slippage", &args.slippage)?,
            liquidity_per_trade: match &args.liquidity {
                Some(l) => {
                    let v = decimal_arg("liquidity", l)?;
                    if v.is_zero() {
                        bail!("--liquidity: must be greater than zero");
                    }
                    Some(v)
                }
                None => None,
            },
        },
        regime: match cfg.regime_source {
            RegimeSource::Fixed => {
                RegimeSetup::Fixed(herd_engine::regime::fixed_view(&cfg.fixed_regime))
            }
            RegimeSource::Hmm => RegimeSetup::Hmm {
                refresh_ms: i64::try_from(cfg.regime_refresh_ms).unwrap_or(i64::MAX),
            },
        },
    })
}

/// The funding rows (every symbol's: the simulation takes each perpetual's
/// own) and the settlement interval of the first perpetual traded.
fn funding_for(args: &BacktestArgs, perps: &[&Instrument]) -> anyhow::Result<FundingSetup> {
    let interval_hours = match args.funding_hours {
        Some(0) => bail!("--funding-hours: must be at least 1"),
        Some(h) => h,
        None => perps
            .first()
            .and_then(|inst| {
                PaperConfig::default()
                    .instruments
                    .into_iter()
                    .find(|p| p.instrument.symbol == inst.symbol)
            })
            .and_then(|p| p.perp)
            .map_or(8, |p| p.funding_interval_hours),
    };
    let Some(path) = &args.funding else {
        return Ok(FundingSetup {
            interval_hours,
            rates: Vec::new(),
            followers: Vec::new(),
        });
    };
    let rates = load_funding(path)?;
    for inst in perps {
        let pair = inst.symbol.strip_suffix("-PERP").unwrap_or(&inst.symbol);
        if !rates
            .iter()
            .any(|r| r.symbol == inst.symbol || r.symbol == pair)
        {
            bail!(
                "{}: no funding rows for {} (rows must name it or {pair})",
                path.display(),
                inst.symbol
            );
        }
    }
    Ok(FundingSetup {
        interval_hours,
        rates,
        followers: Vec::new(),
    })
}

/// The funding orchestrator's other leg: the perpetual of a spot engine
/// symbol, or the spot pair of a perpetual one; it trades at the candles'
/// prices too.
fn funding_follower(inst: &Instrument, sample: &[Decimal]) -> anyhow::Result<PaperInstrument> {
    let other = match inst.symbol.strip_suffix("-PERP") {
        Some(pair) => pair.to_string(),
        None => format!("{}-PERP", inst.symbol),
    };
    let (instrument, fee_policy) = instrument_for(&other, sample)?;
    Ok(PaperInstrument {
        instrument,
        start_price: Decimal::ONE,
        path: PathConfig::default(),
        liquidity_per_step: None,
        typical_step_volume: 0.0,
        fee_policy: Some(fee_policy),
        perp: None,
    })
}

/// `--sweep`: every combination of the file's overrides (this slice of
/// them), in parallel, ranked.
fn run_sweep(args: &BacktestArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let sweep: SweepConfig = herd_proto::config::read_toml(Some(path))?;
    sweep
        .check()
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    if args.sweep_index >= args.sweep_count.max(1) {
        bail!(
            "--sweep-index {} must be below --sweep-count {}",
            args.sweep_index,
            args.sweep_count
        );
    }
    let cfg0 = engine_config(&args.config, |k| std::env::var(k).ok())?;
    let (candles, _) = input(args, &cfg0.symbol)?;
    let combos = sweep.combinations();
    // Every combination's config is read and checked before any runs, so
    // a bad value is named at once (with the override's name).
    let mut configs = Vec::with_capacity(combos.len());
    for combo in &combos {
        let cfg = engine_config(&args.config, |k| {
            combo.get(k).cloned().or_else(|| std::env::var(k).ok())
        })
        .with_context(|| format!("sweep combination {}", describe(combo)))?;
        configs.push(cfg);
    }
    let mine = herd_backtest::sweep::slice(combos.len(), args.sweep_index, args.sweep_count);
    let started = Instant::now();
    let results = herd_backtest::sweep::run_parallel(&mine, sweep.threads, |k| {
        let cfg = &configs[k];
        let setup = setup_for(args, cfg, &candles).map_err(|e| e.to_string())?;
        let strategies = engine_strategies(
            cfg.rangers.clone(),
            cfg.grid.clone(),
            &cfg.symbol,
            candles.bars[0].open_time_ms,
        )
        .map_err(|e| e.to_string())?;
        let out = run(
            &setup,
            strategies,
            &candles.bars,
            candles.interval_ms,
            &mut (),
        )
        .map_err(|e| e.to_string())?;
        Ok::<report::Report, String>(report::build(&out, &candles.gaps))
    });
    let secs = started.elapsed().as_secs_f64();
    let mut scores: Vec<(usize, Option<f64>)> = results
        .iter()
        .map(|(k, r)| {
            (
                *k,
                r.as_ref()
                    .ok()
                    .and_then(|r| herd_backtest::sweep::score(r, &sweep.rank_by)),
            )
        })
        .collect();
    herd_backtest::sweep::rank(&mut scores);
    let by_k: BTreeMap<usize, &Result<report::Report, String>> =
        results.iter().map(|(k, r)| (*k, r)).collect();
    let names: Vec<&String> = sweep.params.keys().collect();
    let mut csv = String::from("rank,combination");
    for n in &names {
        csv.push(',');
        csv.push_str(n);
    }
    csv.push_str(
        ",net_pnl,return_pct,max_drawdown_pct,sharpe_daily,cycles,win_rate_pct,fills,error\n",
    );
    let mut table = comfy_table::Table::new();
    let mut header: Vec<String> = vec!["rank".into(), "#".into()];
    header.extend(names.iter().map(|n| (*n).clone()));
    header.extend(
        [
            "net pnl", "return %", "max dd %", "sharpe", "cycles", "win %", "fills",
        ]
        .map(String::from),
    );
    table.set_header(header);
    for (rank, (k, _)) in scores.iter().enumerate() {
        let combo = &combos[*k];
        let mut row: Vec<String> = vec![(rank + 1).to_string(), k.to_string()];
        row.extend(
            names
                .iter()
                .map(|n| combo.get(*n).cloned().unwrap_or_default()),
        );
        let (cells, error) = match by_k.get(k) {
            Some(Ok(r)) => (
                vec![
                    r.net_pnl.round_dp(2).to_string(),
                    r.return_pct.round_dp(2).to_string(),
                    r.max_drawdown
                        .as_ref()
                        .map_or("0".into(), |d| d.pct.round_dp(2).to_string()),
                    r.sharpe_daily.map_or(String::new(), |x| format!("{x:.3}")),
                    r.cycles.to_string(),
                    r.win_rate_pct
                        .map_or(String::new(), |w| w.round_dp(1).to_string()),
                    r.fills.to_string(),
                ],
                String::new(),
            ),
            Some(Err(e)) => (vec![String::new(); 7], e.clone()),
            None => (vec![String::new(); 7], "not run".into()),
        };
        row.extend(cells.iter().cloned());
        table.add_row(row.clone());
        csv.push_str(&row.join(","));
        csv.push(',');
        csv.push_str(&error.replace(',', ";"));
        csv.push('\n');
    }
    println!("{table}");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let name = if args.sweep_count > 1 {
        format!("sweep-{}-of-{}.csv", args.sweep_index, args.sweep_count)
    } else {
        "sweep.csv".to_string()
    };
    let file = args.out.join(name);
    std::fs::write(&file, csv).with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "{} of {} combinations in {secs:.2} s, ranked by {}; table in {}",
        mine.len(),
        combos.len(),
        sweep.rank_by,
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(combo: &BTreeMap<String, String>) -> String {
    combo
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_summary(rep: &report::Report, written: &[PathBuf], dir: &Path, secs: f64, candles: usize) {
    println!(
        "backtest {} {} .. {} ({} candles)",
        rep.symbol, rep.start, rep.end, rep.candles
    );
    println!(
        "  net pnl      {} {} ({}%)",
        rep.net_pnl.round_dp(2),
        rep.quote,
        rep.return_pct.round_dp(2)
    );
    println!("  buy & hold   {}%", rep.buy_and_hold_pct.round_dp(2));
    println!("  fees         {} {}", rep.fees.round_dp(2), rep.quote);
    if let Some(d) = &rep.max_drawdown {
        println!(
            "  max drawdown {} {} ({}%) {} .. {}",
            d.amount.round_dp(2),
            rep.quote,
            d.pct.round_dp(2),
            d.peak,
            d.trough
        );
    }
    println!(
        "  fills {}  cycles {}  win rate {}  orphans {}",
        rep.fills,
        rep.cycles,
        rep.win_rate_pct
            .map_or("n/a".into(), |w| format!("{}%", w.round_dp(1))),
        rep.orphans
    );
    println!(
        "  ran in {secs:.2} s ({:.0} candles/s); report in {} ({} files)",
        candles as f64 / secs.max(1e-9),
        dir.display(),
        written.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{InMemoryTerm, ProgressDrawTarget};

    /// The bar a terminal shows: what the run reported (candles done of
    /// all, the share, a rate in candles per second), and the finished bar.
    #[test]
    fn the_progress_bar_shows_candles_their_share_and_rate() {
        let term = InMemoryTerm::new(4, 120);
        let mut bar = ProgressOut::new(ProgressDrawTarget::term_like(Box::new(term.clone())));
        bar.candles(0, 8192);
        let first = term.contents();
        assert!(first.contains("0/8192 candles (0%)"), "{first:?}");
        bar.candles(4096, 8192);
        bar.candles(8192, 8192);
        bar.0.finish();
        let last = term.contents();
        assert!(last.contains("8192/8192 candles (100%)"), "{last:?}");
        assert!(last.contains(" candles/s"), "{last:?}");
        // The bar takes the terminal's width left of the text, all filled.
        assert!(last.starts_with("backtest 8192/8192"), "{last:?}");
        assert!(last.ends_with("=]"), "{last:?}");
        assert_eq!(last.lines().count(), 1, "{last:?}");
        assert!(last.len() <= 120, "{last:?}");
    }
}
