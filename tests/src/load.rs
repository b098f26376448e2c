//! Issue 9's load scenario, shared by the load test (`tests/tests/load.rs`,
//! short) and the benchmark (`tests/benches/gateway_bench.rs`, 60 s):
//! `kraken-sim` at Starter tier, one `herd-gateway` process on it with
//! weighted engines, and an open-loop request generator per engine.
//!
//! The "engines" are gRPC clients in the calling process: one tokio task per
//! engine, each with its own channel and bearer token, paced by a tokio
//! interval at `rate_per_s`. Every request is its own in-flight call (the
//! task does not wait for answers before sending the next), so an engine
//! whose share of the venue is smaller than its demand builds a queue at the
//! gateway, which is what competing for a scarce budget means.
//!
//! Before the flood each engine places [`RESTING_PER_ENGINE`] post-only
//! orders below the market, one at a time, on a pair of its own. The mix per 10 ticks then: 7
//! PlaceOrder that cross the book (filled at once, so they hold no
//! open-order slot; spread over the crossing pairs), 1 CancelOrder of one of
//! the engine's resting orders (at most one in flight; a query once none is
//! left), 2 QueryOrders of the engine's recently placed orders (answered
//! from the gateway's registry). Cancels jump the engine's own queue (cancel
//! before place), so they happen even while its places wait.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use herd_proto::gateway as pb;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::kraken_harness::{EngineClient, engine_client, limit};
use crate::procs::{ADMIN_TOKEN, Bearer, Proc, bin_path, engine_token, free_port};

/// The weights of issue 9's ten engines.
pub const WEIGHTS: [u32; 10] = [1, 1, 1, 1, 1, 2, 2, 2, 3, 3];

/// Synthetic DOGE-priced pairs besides DOGEUSD and BTCUSD: P1..P33 with
/// DOGEUSD are 34 trading counters (each 60 units, decaying 1/s at Starter)
/// for the crossing orders; P34..P43 hold engine i's resting orders on
/// P(34 + i), so their cancel penalties and open-order counts never meet
/// the crossing flood (the adapter counts an accepted order as open until
/// the next OpenOrders shows it gone, so a pair's burst of 59 crossing
/// orders is all its 60 open-order slots leave room for).
pub const EXTRA_PAIRS: u32 = 43;
const CROSSING_PAIRS: u32 = 33;

/// Private venue calls the load gateway lets be in flight at once: enough
/// that calls waiting on different counters (34 pairs, the REST counter)
/// never hold each other up, so the counters, not the slots, are the limit.
pub const VENUE_SLOTS: usize = 96;

/// Resting orders each engine places before the flood, for its cancels.
/// One: every cancel's follow-up QueryOrders costs a unit of Starter's REST
/// counter (15, decaying 0.33/s), and the poller needs that counter to see
/// filled orders leave; until it does the adapter counts them as open, and
/// a pair with 60 of them refuses new orders ("open order limit reached").
pub const RESTING_PER_ENGINE: usize = 1;

/// The metadata key of the retry hint on RESOURCE_EXHAUSTED.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The symbols the crossing orders go to.
pub fn crossing_symbols() -> Vec<String> {
    std::iter::once("DOGEUSD".to_string())
        .chain((1..=CROSSING_PAIRS).map(|n| format!("P{n}USD")))
        .collect()
}

/// Engine ids `e0..` with their weights.
pub fn engines() -> Vec<(String, u32)> {
    WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("e{i}"), *w))
        .collect()
}

/// Peak and current resident set size of a process, KiB, from
/// `/proc/<pid>/status` (VmHWM, VmRSS).
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status has no {name}"))?;
        let kib = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Writes the gateway config for `venue = "kraken"` at `sim_url` (Starter
/// tier, credentials from files in `dir`) and starts `herd-gateway`.
pub async fn start_kraken_gateway(
    dir: &Path,
    sim_url: &str,
    engines: &[(String, u32)],
) -> anyhow::Result<(Proc, String)> {
    let creds = crate::kraken_harness::credential_files(dir)?;
    let herd_kraken::CredentialSource::Files {
        key_path,
        secret_path,
    } = creds
    else {
        anyhow::bail!("credential_files returned no files");
    };
    let http_addr = format!("127.0.0.1:{}", free_port()?);
    let mut cfg = format!(
        "listen = \"127.0.0.1:0\"\nhttp_listen = \"{http_addr}\"\nvenue = \"kraken\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 1000\n\
         venue_slots = {VENUE_SLOTS}\nengine_queue_limit = 64\n"
    );
    for (i, (id, weight)) in engines.iter().enumerate() {
        cfg.push_str(&format!(
            "[[engines]]\nid = \"{id}\"\ntoken = \"{}\"\nuserref_min = {}\nuserref_max = {}\n\
             weight = {weight}\ncancel_on_disconnect_ms = 0\n",
            engine_token(id),
            1000 * (i + 1),
            1000 * (i + 1) + 999
        ));
    }
    cfg.push_str(&format!(
        "[kraken]\ntier = \"starter\"\nbase_url = \"{sim_url}\"\n\
         credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n\
         [dead_mans_switch]\nenabled = false\n",
        key_path.display(),
        secret_path.display()
    ));
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg)?;
    let bin = bin_path("herd-gateway")?;
    let config = path.display().to_string();
    let log = dir.join("gateway.log");
    let proc = Proc::start(&bin, &["--config", &config], &log, &[]).await?;
    Ok((proc, http_addr))
}

/// What one engine's generator saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub sent: u64,
    pub placed: u64,
    pub cancelled: u64,
    pub queried: u64,
    /// RESOURCE_EXHAUSTED answers, and those without a usable retry hint.
    pub exhausted: u64,
    pub exhausted_without_hint: u64,
    /// Any other error, by code, with one example message.
    pub other: BTreeMap<String, (u64, String)>,
    /// Calls answered, and their latencies (ms) for percentiles.
    pub latencies_ms: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cross,
    Cancel,
    Query,
}

type Answer = (Kind, String, Instant, Result<Option<pb::Order>, Status>);

/// A running load; [`LoadRun::stop`] ends it and returns each engine's tally.
#[derive(Debug)]
pub struct LoadRun {
    stop: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<Tally>)>,
}

impl LoadRun {
    /// Places each engine's resting orders, then starts one generator per
    /// engine against the gateway at `url`.
    pub async fn start(
        url: &str,
        engines: &[(String, u32)],
        rate_per_s: u32,
    ) -> anyhow::Result<LoadRun> {
        let (stop, stop_rx) = watch::channel(false);
        // Every engine's resting orders first, then every generator.
        let mut ready = Vec::new();
        for (i, (id, _)) in engines.iter().enumerate() {
            let mut client = engine_client(url, &engine_token(id))?;
            let sym = format!("P{}USD", CROSSING_PAIRS + 1 + u32::try_from(i)?);
            let mut resting = VecDeque::new();
            for j in 0..RESTING_PER_ENGINE {
                let oid = format!("r{j}");
                let mut req = limit(&oid, &sym, pb::Side::Buy, "100", "0.1");
                req.post_only = true;
                let order = client.place_order(req).await?.into_inner().order;
                let status = order.map(|o| o.status).unwrap_or_default();
                if status != pb::OrderStatus::Open as i32 {
                    anyhow::bail!("{id}'s resting order {oid} is not open: status {status}");
                }
                resting.push_back(oid);
            }
            ready.push((id.clone(), client, resting));
        }
        let mut tasks = Vec::new();
        for (id, client, resting) in ready {
            let rx = stop_rx.clone();
            tasks.push((
                id,
                tokio::spawn(generate(client, rate_per_s.max(1), resting, rx)),
            ));
        }
        Ok(LoadRun { stop, tasks })
    }

    /// Stops every generator (calls still waiting are dropped) and returns
    /// the tallies by engine id.
    pub async fn stop(self) -> anyhow::Result<Vec<(String, Tally)>> {
        let _ = self.stop.send(true);
        let mut out = Vec::new();
        for (id, t) in self.tasks {
            out.push((id, t.await?));
        }
        Ok(out)
    }
}

fn has_retry_hint(st: &Status) -> bool {
    st.metadata()
        .get(RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|ms| ms > 0)
}

async fn generate(
    client: EngineClient,
    rate_per_s: u32,
    mut resting: VecDeque<String>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let symbols = crossing_symbols();
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate_per_s)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut calls: JoinSet<Answer> = JoinSet::new();
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut cancel_in_flight = false;
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                n += 1;
                let slot = n % 10;
                let kind = if slot < 7 {
                    Kind::Cross
                } else if slot == 7 && !cancel_in_flight && !resting.is_empty() {
                    Kind::Cancel
                } else {
                    Kind::Query
                };
                let mut c = client.clone();
                let at = Instant::now();
                tally.sent += 1;
                match kind {
                    Kind::Cross => {
                        let id = format!("x{n}");
                        let sym = &symbols[usize::try_from(n).unwrap_or(0) % symbols.len()];
                        let req = limit(&id, sym, pb::Side::Buy, "100", "0.13");
                        calls.spawn(async move {
                            let r = c.place_order(req).await.map(|r| r.into_inner().order);
                            (kind, id, at, r)
                        });
                    }
                    Kind::Cancel => {
                        cancel_in_flight = true;
                        let id = resting.front().cloned().unwrap_or_default();
                        calls.spawn(async move {
                            let r = c
                                .cancel_order(pb::CancelOrderRequest { client_order_id: id.clone() })
                                .await
                                .map(|r| r.into_inner().order);
                            (kind, id, at, r)
                        });
                    }
                    Kind::Query => {
                        let ids: Vec<String> = recent.iter().rev().take(3).cloned().collect();
                        calls.spawn(async move {
                            let r = c
                                .query_orders(pb::QueryOrdersRequest { client_order_ids: ids })
                                .await
                                .map(|r| r.into_inner().orders.into_iter().next());
                            (kind, String::new(), at, r)
                        });
                    }
                }
            }
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                let Ok((kind, id, at, answer)) = done else { continue };
                tally.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                match (kind, answer) {
                    (Kind::Cross, Ok(_)) => {
                        tally.placed += 1;
                        recent.push_back(id);
                        if recent.len() > 16 {
                            recent.pop_front();
                        }
                    }
                    (Kind::Cancel, Ok(_)) => {
                        tally.cancelled += 1;
                        cancel_in_flight = false;
                        resting.retain(|r| *r != id);
                    }
                    (Kind::Query, Ok(_)) => tally.queried += 1,
                    (kind, Err(st)) => {
                        if kind == Kind::Cancel {
                            cancel_in_flight = false;
                            // Gone or final: nothing left to cancel.
                            if st.code() != Code::ResourceExhausted {
                                resting.retain(|r| *r != id);
                            }
                        }
                        if st.code() == Code::ResourceExhausted {
                            tally.exhausted += 1;
                            if !has_retry_hint(&st) {
                                tally.exhausted_without_hint += 1;
                            }
                        } else {
                            let e = tally
                                .other
                                .entry(format!("{:?}", st.code()))
                                .or_insert_with(|| (0, st.message().to_string()));
                            e.0 += 1;
                        }
                    }
                }
            }
        }
    }
    calls.abort_all();
    while let Some(done) = calls.join_next().await {
        // Answers that arrived before the abort still count.
        if let Ok((_, _, _, Err(st))) = done
            && st.code() == Code::ResourceExhausted
        {
            tally.exhausted += 1;
            if !has_retry_hint(&st) {
                tally.exhausted_without_hint += 1;
            }
        }
    }
    tally
}

/// `values` sorted; the `q` quantile (0..=1), nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits (up to 90 s) until each of `engines` engines has at least 16 calls
/// queued at the gateway, and returns the grants at that moment. Shares are
/// measured from then on: before it, while the counters' burst allowance
/// lasts, an engine asking for less than its share rightly gets only that.
pub async fn wait_for_backlog(
    admin: &GatewayAdminClient<InterceptedService<Channel, Bearer>>,
    engines: usize,
) -> anyhow::Result<BTreeMap<String, (u64, u32)>> {
    crate::wait_until(
        "every engine to have a backlog at the gateway",
        Duration::from_secs(90),
        || {
            let mut admin = admin.clone();
            async move {
                let g = grants(&mut admin).await?;
                Ok((g.len() == engines && g.values().all(|(_, depth)| *depth >= 16)).then_some(g))
            }
        },
    )
    .await
}

/// Grants per engine from the gateway's ListEngines.
pub async fn grants(
    admin: &mut GatewayAdminClient<InterceptedService<Channel, Bearer>>,
) -> anyhow::Result<BTreeMap<String, (u64, u32)>> {
    let list = admin
        .list_engines(pb::ListEnginesRequest {})
        .await?
        .into_inner();
    Ok(list
        .engines
        .into_iter()
        .map(|e| (e.engine_id, (e.venue_grants, e.queue_depth)))
        .collect())
}

/// Each engine's share of the grants between two readings, beside its
/// weighted share: (id, weight, grants, share, wanted share).
pub fn shares(
    engines: &[(String, u32)],
    before: &BTreeMap<String, (u64, u32)>,
    after: &BTreeMap<String, (u64, u32)>,
) -> Vec<(String, u32, u64, f64, f64)> {
    let got = |id: &str| {
        let a = after.get(id).map_or(0, |g| g.0);
        let b = before.get(id).map_or(0, |g| g.0);
        a.saturating_sub(b)
    };
    let total: u64 = engines.iter().map(|(id, _)| got(id)).sum();
    let weight: u32 = engines.iter().map(|(_, w)| *w).sum();
    engines
        .iter()
        .map(|(id, w)| {
            let g = got(id);
            (
                id.clone(),
                *w,
                g,
                g as f64 / (total.max(1) as f64),
                f64::from(*w) / f64::from(weight.max(1)),
            )
        })
        .collect()
}
