//! The chaos soak (issue 22): a [`KrakenHerd`] of real processes (kraken-sim,
//! the gateway, engines) driven by a seeded random driver that submits,
//! cancels, moves the market, arms the simulator's faults (5xx bursts,
//! timeouts after accept, resets, rate-limit answers, a lockout) and kill -9s
//! and restarts the gateway, the engines and the simulator (which keeps its
//! state in a file across the restart). After every step it waits for
//! the fault suite's invariants ([`KrakenHerd::converge`]: no client order id
//! twice at the simulator, no lost fill, no lost journal row, no order of
//! one engine touched by another) and for no phantom: each engine's open
//! orders (GetStatus) equal the simulator's open orders with its prefix.
//! The same seed drives the same sequence of steps.
//!
//! Used by the `chaos-soak` binary (long runs, docs/faults.md) and by the
//! short seeded run in `tests/tests/faults.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::funding_leg::{FundingLeg, POOR_RATE, RICH_RATE};
use crate::kraken_herd::{HerdOpts, KrakenHerd, PAIR, START_PRICE, prefix};
use crate::wait_until;

/// How long the herd may take to agree after a step.
const CONVERGE: Duration = Duration::from_secs(60);

/// A seeded SplitMix64: the driver's only source of randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What a soak run did and found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub seed: u64,
    pub steps: u64,
    pub submits: u64,
    pub cancels: u64,
    pub market_moves: u64,
    pub faults: u64,
    pub gateway_restarts: u64,
    pub engine_restarts: u64,
    /// kill -9 + restart of kraken-sim on its port and state file.
    pub sim_restarts: u64,
    /// The Bybit leg: funding-rate turns, kill -9 + restarts of bybit-sim
    /// (port and state file kept), of the Bybit gateway and of the funding
    /// engine.
    pub funding_rate_changes: u64,
    pub bybit_sim_restarts: u64,
    pub bybit_gateway_restarts: u64,
    pub funding_engine_restarts: u64,
    /// Invariant checks that held (one per step: converge, no phantom,
    /// capital ledgers, funding positions).
    pub checks: u64,
    /// Capital-ledger holds compared with their orders, over all checks.
    pub holds_checked: u64,
    /// Open funding hedges compared with the venue, over all checks.
    pub open_hedges_checked: u64,
    /// Checks that did not hold in time, with what was wrong.
    pub violations: Vec<String>,
    pub elapsed: Duration,
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} steps {} submits {} cancels {} market_moves {} faults {} gateway_restarts {} engine_restarts {} sim_restarts {} funding_rate_changes {} bybit_sim_restarts {} bybit_gateway_restarts {} funding_engine_restarts {} checks {} holds_checked {} open_hedges_checked {} violations {} elapsed {:.0?}",
            self.seed,
            self.steps,
            self.submits,
            self.cancels,
            self.market_moves,
            self.faults,
            self.gateway_restarts,
            self.engine_restarts,
            self.sim_restarts,
            self.funding_rate_changes,
            self.bybit_sim_restarts,
            self.bybit_gateway_restarts,
            self.funding_engine_restarts,
            self.checks,
            self.holds_checked,
            self.open_hedges_checked,
            self.violations.len(),
            self.elapsed
        )
    }
}

/// The faults the driver arms, one at a time, for a few submits.
fn fault(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => json!([
            {"method": "AddOrder", "kind": {"type": "http_status", "status": 502}, "every": 2, "times": 2},
            {"method": "AddOrder", "kind": {"type": "http_status", "status": 503}, "after_processing": true, "every": 3, "times": 1},
            {"method": "OpenOrders", "kind": {"type": "http_status", "status": 500}, "times": 2}
        ]),
        1 => json!([
            {"method": "AddOrder", "kind": {"type": "delay_answer", "ms": 1500}, "every": 2, "times": 2}
        ]),
        2 => json!([
            {"method": "AddOrder", "kind": {"type": "reset"}, "every": 3, "times": 1},
            {"method": "AddOrder", "kind": {"type": "lose_response"}, "every": 2, "times": 1},
            {"method": "QueryOrders", "kind": {"type": "lose_response"}, "times": 1}
        ]),
        3 => json!([
            {"method": "AddOrder", "kind": {"type": "error", "error": "EOrder:Rate limit exceeded"}, "every": 2, "times": 2},
            {"method": "OpenOrders", "kind": {"type": "error", "error": "EAPI:Rate limit exceeded"}, "times": 1}
        ]),
        _ => json!([
            {"method": "AddOrder", "kind": {"type": "error", "error": "EGeneral:Temporary lockout"}, "times": 2}
        ]),
    }
}

/// Each engine's open orders (GetStatus) and the simulator's open orders
/// with its prefix agree; `Err` says how they differ.
async fn no_phantom(h: &KrakenHerd) -> anyhow::Result<Result<(), String>> {
    let venue = h.admin().orders().await?;
    let mut problems = Vec::new();
    for (i, e) in h.engines.iter().enumerate() {
        let pre = prefix(&e.id);
        let at_venue: BTreeSet<String> = venue
            .iter()
            .filter(|o| matches!(o["status"].as_str(), Some("open" | "pending")))
            .filter_map(|o| o["cl_ord_id"].as_str())
            .filter_map(|cl| cl.strip_prefix(&pre))
            .map(str::to_string)
            .collect();
        let engine: BTreeSet<String> = h
            .status(i)
            .await?
            .open_orders
            .into_iter()
            .map(|o| o.client_order_id)
            .collect();
        if engine != at_venue {
            problems.push(format!(
                "{}: engine lists {:?} open, the venue {:?}",
                e.id,
                engine.difference(&at_venue).collect::<Vec<_>>(),
                at_venue.difference(&engine).collect::<Vec<_>>()
            ));
        }
    }
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    })
}

/// The engines' strategies in a soak of `engines` engines (for
/// [`HerdOpts::engine_extra`]): e0 runs none (the operator's orders only),
/// e1 the grid, e2 the rangers, any further engine both (with two engines,
/// e1 runs both). Small sizes, so the
/// strategies trade around the start price as the driver moves the market.
pub fn strategy_engines(engines: usize) -> Vec<String> {
    const GRID: &str = "[grid]\nenabled = true\nslots = 2\ndaily_loss_limit_usd = \"50\"\n\
                        [grid.slot]\nentry_pct = \"0.20\"\nprofit_pct = \"1.00\"\nreentry_delay_sec = 1\n";
    const RANGERS: &str = "[rangers]\nenabled = true\nmax_slots = 2\nentry_pct = \"0.30\"\n\
                           profit_pct = \"1.20\"\ncooldown_sec = 1\n";
    (0..engines)
        .map(|i| match (i, engines) {
            (0, _) => String::new(),
            (1, 2) => format!("{GRID}{RANGERS}"),
            (1, _) => GRID.to_string(),
            (2, _) => RANGERS.to_string(),
            _ => format!("{GRID}{RANGERS}"),
        })
        .collect()
}

/// Each strategy's capital ledger (its GetStatus block's `capital`)
/// against the engine's open orders in the same status: every hold belongs
/// to an open order of that strategy and is what the order commits (a buy:
/// volume x price x (1 + maker fee), in quote; a sell: the volume, in
/// base), and every open buy of a strategy (both strategies reserve their
/// buys), and every open grid order, holds funds. `Err` says what differs.
/// `Ok` counts the holds checked.
async fn capital_matches(
    h: &KrakenHerd,
    maker_fee: Decimal,
) -> anyhow::Result<Result<u64, String>> {
    let mut problems = Vec::new();
    let mut checked = 0u64;
    for i in 0..h.engines.len() {
        let status = h.status(i).await?;
        let id = &h.engines[i].id;
        for st in &status.strategies {
            let detail: Value = serde_json::from_str(&st.detail_json).unwrap_or(Value::Null);
            let Some(holds) = detail.get("capital").and_then(|c| c.get("holds")) else {
                if matches!(st.name.as_str(), "grid" | "rangers") {
                    problems.push(format!("{id} {}: no capital ledger in its status", st.name));
                }
                continue;
            };
            let holds = holds.as_object().cloned().unwrap_or_default();
            let open: Vec<_> = status
                .open_orders
                .iter()
                .filter(|o| o.owner == st.name)
                .collect();
            for (cl, hold) in &holds {
                let Some(o) = open.iter().find(|o| &o.client_order_id == cl) else {
                    problems.push(format!(
                        "{id} {}: holds {hold} for {cl}, which is not open",
                        st.name
                    ));
                    continue;
                };
                let num = |v: &str| Decimal::from_str(v).unwrap_or(Decimal::MIN);
                let (volume, price) = (num(&o.volume), num(&o.price));
                let want = match o.side.as_str() {
                    "buy" => ("quote", volume * price * (Decimal::ONE + maker_fee)),
                    _ => ("base", volume),
                };
                let got = (
                    hold["asset"].as_str().unwrap_or(""),
                    num(hold["amount"].as_str().unwrap_or("")),
                );
                checked += 1;
                if got != want {
                    problems.push(format!(
                        "{id} {}: {cl} ({} {} @ {}) holds {} {}, commits {} {}",
                        st.name, o.side, o.volume, o.price, got.1, got.0, want.1, want.0
                    ));
                }
            }
            for o in &open {
                if (o.side == "buy" || st.name == "grid") && !holds.contains_key(&o.client_order_id)
                {
                    problems.push(format!(
                        "{id} {}: open {} {} holds nothing",
                        st.name, o.side, o.client_order_id
                    ));
                }
            }
        }
    }
    Ok(if problems.is_empty() {
        Ok(checked)
    } else {
        problems.truncate(12);
        Err(problems.join("; "))
    })
}

/// Waits until `check` holds (`Ok(Ok(_))`); fails with the last reason.
async fn hold_within<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let last = std::sync::Mutex::new(String::new());
    let r = wait_until(what, CONVERGE, || async {
        match check().await {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(why)) => {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = why;
                Ok(None)
            }
            Err(e) => {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = format!("{e:#}");
                Ok(None)
            }
        }
    })
    .await;
    r.map_err(|e| {
        anyhow::anyhow!(
            "{e}; last: {}",
            last.lock().unwrap_or_else(|p| p.into_inner())
        )
    })
}

/// How long a soak runs.
#[derive(Debug, Clone, Copy)]
pub enum SoakLength {
    /// This many steps: the same seed gives the same steps, whatever the
    /// machine's speed (the test suite's short run).
    Steps(u64),
    /// Until this much time has passed (at least one step).
    Time(Duration),
}

/// Runs the soak on a fresh herd for `length`, starting the simulator from
/// `sim_bin`.
pub async fn run(
    sim_bin: &Path,
    seed: u64,
    length: SoakLength,
    mut opts: HerdOpts,
) -> anyhow::Result<SoakReport> {
    let started = Instant::now();
    // The simulator keeps its state, so the driver can restart it too.
    opts.sim_state = true;
    let funding_leg = opts.funding_leg;
    let mut h = KrakenHerd::start(sim_bin, opts)
        .await
        .context("cannot start the herd")?;
    let mut leg = if funding_leg {
        Some(
            FundingLeg::start(h.dir.path())
                .await
                .context("cannot start the Bybit leg")?,
        )
    } else {
        None
    };
    let mut funding_steps = 0usize;
    let mut rng = Rng::new(seed);
    let mut report = SoakReport {
        seed,
        ..SoakReport::default()
    };
    let engines = h.engines.len();
    let maker_fee = crate::kraken_sim::PairSpec::doge_usd().instrument.maker_fee;
    let mut asked: Vec<BTreeSet<String>> = vec![BTreeSet::new(); engines];
    let mut open: Vec<Vec<String>> = vec![Vec::new(); engines];
    let mut next_price = 0usize;
    let more = |steps: u64| match length {
        SoakLength::Steps(n) => steps < n,
        SoakLength::Time(d) => steps == 0 || started.elapsed() < d,
    };
    while more(report.steps) {
        report.steps += 1;
        let step = rng.below(12);
        let what = match step {
            0..=3 => {
                let i = rng.below(engines);
                for _ in 0..1 + rng.below(3) {
                    // Distinct resting prices below the start price.
                    let price = format!("0.{}", 1190 - (next_price % 150));
                    next_price += 1;
                    if let Ok(Ok(r)) = h.submit(i, &price).await {
                        open[i].push(r.client_order_id);
                    }
                    report.submits += 1;
                }
                format!("submit via e{i}")
            }
            4 => {
                let i = rng.below(engines);
                if open[i].is_empty() {
                    "cancel (none open)".to_string()
                } else {
                    let k = rng.below(open[i].len());
                    let id = open[i].remove(k);
                    asked[i].insert(id.clone());
                    let _ = h.cancel(i, &id).await;
                    report.cancels += 1;
                    format!("cancel {id} via e{i}")
                }
            }
            5 => {
                // Trade down through some of the resting buys (or up through
                // the strategies' sells), then back.
                let price = if rng.below(3) == 0 {
                    format!("0.{}", 1201 + rng.below(40))
                } else {
                    format!("0.{}", 1050 + rng.below(140))
                };
                h.admin().set_price(PAIR, &price).await?;
                h.admin().set_price(PAIR, START_PRICE).await?;
                report.market_moves += 1;
                format!("market to {price} and back")
            }
            6 | 7 => {
                let rules = fault(&mut rng);
                h.admin().set_faults(rules.clone()).await?;
                let i = rng.below(engines);
                for _ in 0..3 {
                    let price = format!("0.{}", 1190 - (next_price % 150));
                    next_price += 1;
                    if let Ok(Ok(r)) = h.submit(i, &price).await {
                        open[i].push(r.client_order_id);
                    }
                    report.submits += 1;
                }
                h.admin().clear_faults().await?;
                report.faults += 1;
                format!("fault {rules} during submits via e{i}")
            }
            8 => {
                h.kill_gateway().await?;
                h.start_gateway().await?;
                report.gateway_restarts += 1;
                "kill -9 and restart the gateway".to_string()
            }
            11 if leg.is_some() => {
                let Some(leg) = leg.as_mut() else {
                    anyhow::bail!("no Bybit leg for a funding step");
                };
                // Round robin, so a short run meets every kind.
                funding_steps += 1;
                match funding_steps % 4 {
                    1 | 3 => {
                        let rich = funding_steps % 8 == 1;
                        let rate = if rich { RICH_RATE } else { POOR_RATE };
                        let settle = rng.below(2) == 0;
                        leg.set_rate(rate, settle).await?;
                        report.funding_rate_changes += 1;
                        format!("funding rate {rate} (settle now: {settle})")
                    }
                    // The engine and the gateway in turn as well.
                    2 => match (funding_steps / 4) % 2 {
                        0 => {
                            leg.restart_engine().await?;
                            report.funding_engine_restarts += 1;
                            "kill -9 and restart the funding engine".to_string()
                        }
                        _ => {
                            leg.restart_gateway().await?;
                            report.bybit_gateway_restarts += 1;
                            "kill -9 and restart the Bybit gateway".to_string()
                        }
                    },
                    _ => {
                        leg.restart_sim().await?;
                        report.bybit_sim_restarts += 1;
                        "kill -9 and restart bybit-sim (same port, same state file)".to_string()
                    }
                }
            }
            9 => {
                h.restart_sim().await?;
                report.sim_restarts += 1;
                "kill -9 and restart kraken-sim (same port, same state file)".to_string()
            }
            _ => {
                let i = rng.below(engines);
                h.kill_engine(i).await?;
                h.start_engine(i).await?;
                report.engine_restarts += 1;
                format!("kill -9 and restart e{i}")
            }
        };
        // A lockout the fault earned must pass before the herd can agree.
        let _ = h.admin().clear_faults().await;
        let held = async {
            h.converge(CONVERGE, &asked).await?;
            hold_within("no phantom order", || no_phantom(&h)).await?;
            let holds = hold_within("capital ledgers equal the open orders", || {
                capital_matches(&h, maker_fee)
            })
            .await?;
            let hedges = match &leg {
                Some(leg) => {
                    hold_within("funding positions match the venue's", || {
                        leg.positions_match()
                    })
                    .await?
                }
                None => 0,
            };
            Ok::<(u64, u64), anyhow::Error>((holds, hedges))
        }
        .await;
        match held {
            Ok((holds, hedges)) => {
                report.checks += 1;
                report.holds_checked += holds;
                report.open_hedges_checked += hedges;
            }
            Err(e) => {
                let why = format!("{e:#}");
                // What the processes logged about the orders named.
                let ids: BTreeSet<&str> = why
                    .split([' ', ':', ';', '"'])
                    .filter(|w| h.engines.iter().any(|e| w.starts_with(&prefix(&e.id))))
                    .collect();
                for log in h.all_logs() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    for line in text.lines() {
                        if ids.iter().any(|id| {
                            line.contains(id)
                                || id
                                    .split_once('-')
                                    .is_some_and(|(_, rest)| line.contains(rest))
                        }) {
                            eprintln!("{}: {line}", log.display());
                        }
                    }
                }
                let v = format!("step {} ({what}): {why}", report.steps);
                eprintln!("soak violation: {v}");
                report.violations.push(v);
            }
        }
        // Orders the market filled are no longer open to cancel.
        for (i, ids) in open.iter_mut().enumerate() {
            if let Ok(s) = h.status(i).await {
                let live: BTreeSet<String> = s
                    .open_orders
                    .into_iter()
                    .map(|o| o.client_order_id)
                    .collect();
                ids.retain(|id| live.contains(id));
            }
        }
        eprintln!("soak step {} ({what}): {report}", report.steps);
    }
    report.elapsed = started.elapsed();
    h.cleanup().await?;
    Ok(report)
}
