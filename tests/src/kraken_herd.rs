//! A whole herd on the Kraken simulator, every part a real process:
//! `kraken-sim` as the venue, `herd-gateway` on it (Kraken adapter, API key
//! and secret from files) and `herd-engine`s on SQLite or on Postgres
//! schemas of their own. The fault matrix (`tests/tests/faults.rs`) and the
//! hostile-input tests drive it: orders through the engines' SubmitOrder /
//! CancelOrder control RPCs, fills through the simulator's `/sim/price`,
//! faults through `/sim/faults`, crashes through SIGKILL.
//!
//! [`KrakenHerd::check`] states the invariants every fault must keep, from
//! the venue's order book and the engines' journals: no duplicate order at
//! the venue, no lost fill, no lost journal row, no order of one engine
//! touched by another.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use herd_engine::store::{OrderRow, Store};
use herd_proto::engine as epb;
use rust_decimal::Decimal;
use serde_json::Value;
use tempfile::TempDir;
use tonic::Status;

use crate::kraken_harness::{API_KEY, API_SECRET, SimAdmin, SimProcess};
use crate::procs::{
    ADMIN_TOKEN, CONTROL_TOKEN, EngineProc, Proc, bin_path, engine_client, engine_token, free_port,
    free_ports, wait_until,
};

/// The instrument every order of the suite trades.
pub const SYMBOL: &str = "DOGEUSD";
/// Its Kraken altname (the simulator's admin endpoints speak Kraken).
pub const PAIR: &str = "XDGUSD";
/// The DOGE price the suite starts from: buys below it rest on the book.
pub const START_PRICE: &str = "0.12";
/// A price that trades through every buy the suite places.
pub const FILL_PRICE: &str = "0.09";

/// Where an engine keeps its journal.
#[derive(Debug, Clone)]
pub enum StoreKind {
    /// A SQLite file under the engine's data dir.
    Sqlite,
    /// A fresh schema (search_path) on the server at this base URL, one per
    /// engine; the engine's connections carry an application_name so a test
    /// can terminate exactly them.
    Postgres { base_url: String },
}

/// How to build a herd.
#[derive(Debug, Clone)]
pub struct HerdOpts {
    pub engines: usize,
    pub store: StoreKind,
    /// Kraken tier the simulator and the gateway use.
    pub tier: &'static str,
    /// The gateway's whole-request timeout for Kraken calls.
    pub request_timeout_ms: u64,
    /// `RUST_LOG` of the gateway and engine processes.
    pub rust_log: &'static str,
    /// Run the simulator with a state file (`--state`), so
    /// [`KrakenHerd::restart_sim`] can kill -9 and restart it.
    pub sim_state: bool,
    /// Extra engine config (TOML appended to every engine's file), per
    /// engine number; an engine without an entry runs no strategy.
    pub engine_extra: Vec<String>,
    /// The chaos soak adds its Bybit leg (`crate::funding_leg`): bybit-sim,
    /// a Bybit gateway and a funding engine (the herd itself ignores it).
    pub funding_leg: bool,
}

impl Default for HerdOpts {
    fn default() -> HerdOpts {
        HerdOpts {
            engines: 2,
            store: StoreKind::Sqlite,
            tier: "pro",
            request_timeout_ms: 1_000,
            rust_log: "info",
            sim_state: false,
            engine_extra: Vec::new(),
            funding_leg: false,
        }
    }
}

/// One engine of the herd.
#[derive(Debug)]
pub struct HerdEngine {
    pub id: String,
    pub proc: Option<EngineProc>,
    /// The engine's `database_url` ("" = SQLite under the data dir).
    pub database_url: String,
    /// A URL for the test's own reads of the engine's journal.
    pub check_url: String,
    /// Postgres application_name of the engine's connections.
    pub app_name: Option<String>,
    /// Logs of every run of this engine.
    pub logs: Vec<PathBuf>,
}

/// The herd; every process is killed when it is dropped.
#[derive(Debug)]
pub struct KrakenHerd {
    pub dir: TempDir,
    pub sim: SimProcess,
    /// The simulator's binary and state file (when `opts.sim_state`).
    pub sim_bin: PathBuf,
    pub sim_state: Option<PathBuf>,
    pub gateway: Option<Proc>,
    pub gateway_port: u16,
    pub gateway_http: String,
    pub gateway_config: PathBuf,
    pub gateway_logs: Vec<PathBuf>,
    pub engines: Vec<HerdEngine>,
    pub opts: HerdOpts,
    /// Postgres schemas created for this herd (dropped by [`KrakenHerd::cleanup`]).
    pub schemas: Vec<String>,
}

/// One engine's journal: its orders, and its fills as (client id, volume).
pub type Journal = (Vec<OrderRow>, Vec<(String, Decimal)>);

/// What [`KrakenHerd::check`] saw when every invariant held.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Orders at the venue, per engine id.
    pub venue_orders: BTreeMap<String, usize>,
    /// Fills journaled, per engine id.
    pub fills: BTreeMap<String, usize>,
    /// Orders executed (fully or partly) at the venue.
    pub executed_orders: usize,
    /// Volume executed at the venue.
    pub executed_volume: Decimal,
    /// Journal rows that never reached the venue (rejected), per engine id.
    pub rejected: BTreeMap<String, usize>,
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn dec(s: &str) -> Decimal {
    if s.is_empty() {
        return Decimal::ZERO;
    }
    Decimal::from_str(s).unwrap_or(Decimal::MIN)
}

/// The gateway's prefix for engine `id`'s orders at the venue.
pub fn prefix(id: &str) -> String {
    format!("{id}-")
}

/// The userref range of engine number `i` in the gateway's config.
pub fn userref_range(i: usize) -> (i64, i64) {
    let lo = 1000 * (i as i64 + 1);
    (lo, lo + 999)
}

impl KrakenHerd {
    /// Starts the simulator (`sim_bin`), the gateway and `opts.engines`
    /// engines e0.., and waits until every engine is connected.
    pub async fn start(sim_bin: &Path, opts: HerdOpts) -> anyhow::Result<KrakenHerd> {
        let dir = tempfile::tempdir()?;
        let sim_state = opts.sim_state.then(|| dir.path().join("kraken-sim.state"));
        let state_arg = sim_state.as_ref().map(|p| p.display().to_string());
        let extra: Vec<&str> = match &state_arg {
            Some(p) => vec!["--state", p],
            None => Vec::new(),
        };
        let sim = SimProcess::spawn(sim_bin, opts.tier, &extra).await?;
        sim.admin().set_price(PAIR, START_PRICE).await?;
        let key_path = dir.path().join("kraken-api-key");
        let secret_path = dir.path().join("kraken-api-secret");
        std::fs::write(&key_path, API_KEY)?;
        std::fs::write(&secret_path, API_SECRET)?;
        let [gateway_port, http_port] = free_ports::<2>()?;
        let gateway_http = format!("127.0.0.1:{http_port}");
        let mut cfg = format!(
            "listen = \"127.0.0.1:{gateway_port}\"\nhttp_listen = \"{gateway_http}\"\nvenue = \"kraken\"\n\
             admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 100\npending_timeout_ms = 1000\n\
             state_dir = \"{}\"\n",
            dir.path().join("gateway-state").display()
        );
        for i in 0..opts.engines {
            let id = format!("e{i}");
            let (lo, hi) = userref_range(i);
            cfg.push_str(&format!(
                "[[engines]]\nid = \"{id}\"\ntoken = \"{}\"\nuserref_min = {lo}\nuserref_max = {hi}\ncancel_on_disconnect_ms = 0\n",
                engine_token(&id)
            ));
        }
        cfg.push_str(&format!(
            "[dead_mans_switch]\nenabled = false\n[kraken]\ntier = \"{}\"\nbase_url = \"{}\"\n\
             nonce_file = \"{}\"\nrequest_timeout_ms = {}\nconnect_timeout_ms = 1000\nlockout_ms = 2000\n\
             add_order_deadline_s = 2\ncredentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n",
            opts.tier,
            sim.url(),
            dir.path().join("kraken.nonce").display(),
            opts.request_timeout_ms,
            key_path.display(),
            secret_path.display(),
        ));
        let gateway_config = dir.path().join("gateway-kraken.toml");
        std::fs::write(&gateway_config, cfg)?;
        let mut herd = KrakenHerd {
            dir,
            sim,
            sim_bin: sim_bin.to_path_buf(),
            sim_state,
            gateway: None,
            gateway_port,
            gateway_http,
            gateway_config,
            gateway_logs: Vec::new(),
            engines: Vec::new(),
            opts: opts.clone(),
            schemas: Vec::new(),
        };
        herd.start_gateway().await?;
        for i in 0..opts.engines {
            let id = format!("e{i}");
            let (database_url, check_url, app_name) = match &opts.store {
                StoreKind::Sqlite => {
                    let file = herd
                        .dir
                        .path()
                        .join(format!("data-{id}"))
                        .join(format!("{id}.db"));
                    (
                        String::new(),
                        format!("sqlite://{}?mode=ro", file.display()),
                        None,
                    )
                }
                StoreKind::Postgres { base_url } => {
                    let schema = format!("herd_faults_{id}_{}", nanos() % 1_000_000_000_000);
                    create_schema(base_url, &schema).await?;
                    herd.schemas.push(schema.clone());
                    let app = format!("herd-{schema}");
                    let sep = if base_url.contains('?') { '&' } else { '?' };
                    let check = format!("{base_url}{sep}options=-c%20search_path%3D{schema}");
                    (format!("{check}&application_name={app}"), check, Some(app))
                }
            };
            herd.engines.push(HerdEngine {
                id,
                proc: None,
                database_url,
                check_url,
                app_name,
                logs: Vec::new(),
            });
            herd.start_engine(i).await?;
        }
        Ok(herd)
    }

    pub fn admin(&self) -> SimAdmin {
        self.sim.admin()
    }

    /// kill -9 of the simulator, then a restart on the same port with its
    /// state file: the gateway meets the venue it left. Only with
    /// `opts.sim_state`.
    pub async fn restart_sim(&mut self) -> anyhow::Result<()> {
        let state = self
            .sim_state
            .clone()
            .context("the herd's simulator runs without a state file")?;
        let addr = self.sim.addr.to_string();
        self.sim.kill().await;
        let state = state.display().to_string();
        // The port was the dead process's; a connection of the gateway's in
        // TIME_WAIT does not keep a listener from binding it (SO_REUSEADDR).
        self.sim = SimProcess::spawn_at(&self.sim_bin, &addr, self.opts.tier, &["--state", &state])
            .await
            .context("cannot restart kraken-sim on its port")?;
        Ok(())
    }

    pub fn gateway_addr(&self) -> String {
        format!("127.0.0.1:{}", self.gateway_port)
    }

    /// Starts the gateway (again) on its port and waits for its readiness line.
    pub async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let bin = bin_path("herd-gateway")?;
        let log = self.dir.path().join(format!("gateway-{}.log", nanos()));
        let config = self.gateway_config.display().to_string();
        let proc = Proc::start(
            &bin,
            &["--config", &config],
            &log,
            &[("RUST_LOG", self.opts.rust_log)],
        )
        .await?;
        self.gateway_logs.push(log);
        self.gateway = Some(proc);
        Ok(())
    }

    /// SIGKILL the gateway.
    pub async fn kill_gateway(&mut self) -> anyhow::Result<()> {
        if let Some(mut g) = self.gateway.take() {
            g.kill9().await?;
        }
        Ok(())
    }

    /// Starts engine `i` (again) and waits until it is connected.
    pub async fn start_engine(&mut self, i: usize) -> anyhow::Result<()> {
        let e = self.engines.get(i).context("no such engine")?;
        let mut extra = String::from(
            "regime_source = \"fixed\"\nfixed_regime = \"RANGING\"\nmax_consecutive_errors = 1000000\nbalance_refresh_ms = 600000\n",
        );
        if !e.database_url.is_empty() {
            extra.push_str(&format!("database_url = \"{}\"\n", e.database_url));
        }
        // Tables last: the keys above belong to the top level.
        if let Some(more) = self.opts.engine_extra.get(i) {
            extra.push_str(more);
        }
        let id = e.id.clone();
        let proc = self.spawn_engine(&id, &extra).await?;
        let url = proc.proc.url();
        let log = proc.proc.log.clone();
        if let Some(e) = self.engines.get_mut(i) {
            e.logs.push(log);
            e.proc = Some(proc);
        }
        wait_until(
            &format!("{id} connected to the gateway"),
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move { Ok(status_at(&url).await.ok().filter(|s| s.gateway_connected)) }
            },
        )
        .await?;
        Ok(())
    }

    /// An engine process as [`EngineProc::start`] makes it, with the herd's
    /// `RUST_LOG`.
    async fn spawn_engine(&self, id: &str, extra: &str) -> anyhow::Result<EngineProc> {
        crate::procs::retry_port_race(|| self.spawn_engine_once(id, extra)).await
    }

    async fn spawn_engine_once(&self, id: &str, extra: &str) -> anyhow::Result<EngineProc> {
        let dir = self.dir.path();
        let data_dir = dir.join(format!("data-{id}"));
        let http_addr = format!("127.0.0.1:{}", free_port()?);
        let cfg = format!(
            "id = \"{id}\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"{http_addr}\"\ngateway_url = \"http://{}\"\n\
             gateway_token = \"{}\"\ncontrol_token = \"{CONTROL_TOKEN}\"\ndata_dir = \"{}\"\ntick_ms = 200\n\
             herd_dashboard_url = \"http://{}/\"\n{extra}",
            self.gateway_addr(),
            engine_token(id),
            data_dir.display(),
            self.gateway_http,
        );
        let path = dir.join(format!("engine-{id}.toml"));
        std::fs::write(&path, cfg)?;
        let bin = bin_path("herd-engine")?;
        let config = path.display().to_string();
        let log = dir.join(format!("engine-{id}-{}.log", nanos()));
        let proc = Proc::start(
            &bin,
            &["--config", &config],
            &log,
            &[("RUST_LOG", self.opts.rust_log)],
        )
        .await?;
        Ok(EngineProc {
            proc,
            id: id.to_string(),
            data_dir,
            http_addr,
        })
    }

    /// SIGKILL engine `i`.
    pub async fn kill_engine(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(e) = self.engines.get_mut(i)
            && let Some(mut p) = e.proc.take()
        {
            p.proc.kill9().await?;
        }
        Ok(())
    }

    pub fn engine_url(&self, i: usize) -> anyhow::Result<String> {
        self.engines
            .get(i)
            .and_then(|e| e.proc.as_ref())
            .map(|p| p.proc.url())
            .context("engine is not running")
    }

    /// The engine's status.
    pub async fn status(&self, i: usize) -> anyhow::Result<epb::EngineStatus> {
        status_at(&self.engine_url(i)?).await
    }

    /// A post-only limit buy of 100 DOGE at `price` through engine `i`'s
    /// SubmitOrder. The status is the engine's answer as is.
    pub async fn submit(
        &self,
        i: usize,
        price: &str,
    ) -> anyhow::Result<Result<epb::SubmitOrderResponse, Status>> {
        let mut c = engine_client(&self.engine_url(i)?).await?;
        Ok(c.submit_order(epb::SubmitOrderRequest {
            symbol: SYMBOL.into(),
            side: "buy".into(),
            order_type: "limit".into(),
            volume: "100".into(),
            price: price.into(),
            post_only: true,
        })
        .await
        .map(tonic::Response::into_inner))
    }

    /// [`KrakenHerd::submit`] that must be accepted; returns the client id.
    pub async fn submit_ok(&self, i: usize, price: &str) -> anyhow::Result<String> {
        match self.submit(i, price).await? {
            Ok(r) => Ok(r.client_order_id),
            Err(s) => bail!("engine e{i} refused a submit: {s:?}"),
        }
    }

    /// CancelOrder through engine `i`'s control RPC.
    pub async fn cancel(
        &self,
        i: usize,
        client_order_id: &str,
    ) -> anyhow::Result<Result<(), Status>> {
        let mut c = engine_client(&self.engine_url(i)?).await?;
        Ok(c.cancel_order(epb::CancelOrderRequest {
            client_order_id: client_order_id.into(),
        })
        .await
        .map(|_| ()))
    }

    /// Trades the market through every resting buy.
    pub async fn fill_all(&self) -> anyhow::Result<()> {
        self.admin().set_price(PAIR, FILL_PRICE).await?;
        Ok(())
    }

    /// Engine `i`'s journal: every order and every fill.
    pub async fn journal(
        &self,
        i: usize,
    ) -> anyhow::Result<(Vec<OrderRow>, Vec<(String, Decimal)>)> {
        let e = self.engines.get(i).context("no such engine")?;
        let store = Store::connect(&e.check_url).await?;
        // Every owner: the operator's (manual), adopted ones and the
        // strategies' (grid, rangers, ...).
        let read = async {
            let orders = store.all_orders().await?;
            let fills = store
                .fills()
                .await?
                .into_iter()
                .map(|f| (f.client_order_id, f.volume))
                .collect();
            anyhow::Ok((orders, fills))
        }
        .await;
        // Closed on an error too: a pool left open when the test's runtime
        // shuts down can keep its maintenance task spinning (seen once: a
        // test that had finished never exited).
        store.close().await;
        read
    }

    /// Terminates every Postgres backend of engine `i` (pg_terminate_backend
    /// on its application_name); returns how many were terminated. Only for
    /// [`StoreKind::Postgres`].
    pub async fn terminate_db_connections(&self, i: usize) -> anyhow::Result<u64> {
        let (StoreKind::Postgres { base_url }, Some(app)) = (
            &self.opts.store,
            self.engines.get(i).and_then(|e| e.app_name.as_ref()),
        ) else {
            bail!("engine e{i} is not on Postgres");
        };
        let pool = sqlx::PgPool::connect(base_url).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(app)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Checks every invariant once; `Err` describes the first violations.
    /// `asked_to_cancel[i]` are the client ids engine `i` was told to cancel.
    pub async fn check(
        &self,
        asked_to_cancel: &[BTreeSet<String>],
    ) -> anyhow::Result<Result<CheckReport, String>> {
        let venue = self.admin().orders().await?;
        let mut journals = Vec::new();
        for i in 0..self.engines.len() {
            journals.push(self.journal(i).await?);
        }
        Ok(check_invariants(
            &venue,
            &self
                .engines
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>(),
            &journals,
            asked_to_cancel,
        ))
    }

    /// Waits until [`KrakenHerd::check`] holds; fails with the last violation.
    pub async fn converge(
        &self,
        within: Duration,
        asked_to_cancel: &[BTreeSet<String>],
    ) -> anyhow::Result<CheckReport> {
        let last = std::sync::Mutex::new(String::new());
        let r = wait_until("the invariants to hold", within, || async {
            match self.check(asked_to_cancel).await {
                Ok(Ok(report)) => Ok(Some(report)),
                Ok(Err(why)) => {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = why;
                    Ok(None)
                }
                // A journal mid-restart is not a violation yet.
                Err(e) => {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = format!("{e:#}");
                    Ok(None)
                }
            }
        })
        .await;
        match r {
            Ok(report) => Ok(report),
            Err(e) => {
                let why = last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                bail!("{e}; last violation: {why}")
            }
        }
    }

    /// Every log file the herd's processes wrote.
    pub fn all_logs(&self) -> Vec<PathBuf> {
        let mut v = self.gateway_logs.clone();
        for e in &self.engines {
            v.extend(e.logs.iter().cloned());
        }
        v
    }

    /// Drops the Postgres schemas this herd created.
    pub async fn cleanup(&mut self) -> anyhow::Result<()> {
        for i in 0..self.engines.len() {
            self.kill_engine(i).await?;
        }
        if let StoreKind::Postgres { base_url } = &self.opts.store {
            let pool = sqlx::PgPool::connect(base_url).await?;
            for s in self.schemas.drain(..) {
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                    .execute(&pool)
                    .await?;
            }
            pool.close().await;
        }
        Ok(())
    }
}

async fn status_at(url: &str) -> anyhow::Result<epb::EngineStatus> {
    Ok(engine_client(url)
        .await?
        .get_status(epb::GetStatusRequest {})
        .await?
        .into_inner())
}

async fn create_schema(base_url: &str, schema: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(base_url)
        .await
        .context("TEST_DATABASE_URL must reach Postgres")?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// The invariants, over the venue's order book (`/sim/orders`) and each
/// engine's journal (orders, and fills as (client id, volume)).
pub fn check_invariants(
    venue: &[Value],
    engine_ids: &[String],
    journals: &[Journal],
    asked_to_cancel: &[BTreeSet<String>],
) -> Result<CheckReport, String> {
    let mut problems: Vec<String> = Vec::new();
    let mut report = CheckReport::default();
    // 1. No duplicate order at the venue.
    let mut by_cl: HashMap<String, Vec<&Value>> = HashMap::new();
    for o in venue {
        let cl = o["cl_ord_id"].as_str().unwrap_or("").to_string();
        by_cl.entry(cl).or_default().push(o);
    }
    for (cl, v) in &by_cl {
        if v.len() > 1 {
            problems.push(format!(
                "{} orders at the venue with cl_ord_id {cl:?}",
                v.len()
            ));
        }
    }
    for (i, id) in engine_ids.iter().enumerate() {
        let Some((orders, fills)) = journals.get(i) else {
            problems.push(format!("no journal for {id}"));
            continue;
        };
        let pre = prefix(id);
        let (lo, hi) = userref_range(i);
        let journaled: HashMap<&str, &OrderRow> = orders
            .iter()
            .map(|o| (o.client_order_id.as_str(), o))
            .collect();
        let mut fill_sum: HashMap<&str, Decimal> = HashMap::new();
        for (cl, vol) in fills {
            *fill_sum.entry(cl.as_str()).or_default() += *vol;
        }
        report.fills.insert(id.clone(), fills.len());
        let cancels = asked_to_cancel.get(i).cloned().unwrap_or_default();
        let mine: Vec<&Value> = venue
            .iter()
            .filter(|o| o["cl_ord_id"].as_str().unwrap_or("").starts_with(&pre))
            .collect();
        report.venue_orders.insert(id.clone(), mine.len());
        for o in &mine {
            let cl = o["cl_ord_id"].as_str().unwrap_or("");
            let engine_cl = &cl[pre.len()..];
            let userref = o["userref"].as_i64().unwrap_or(0);
            // 4. Ownership: the prefix and (when sent) the userref agree.
            if userref != 0 && !(lo..=hi).contains(&userref) {
                problems.push(format!(
                    "{cl}: userref {userref} outside {id}'s {lo}..={hi}"
                ));
            }
            // 3. No lost journal row.
            let Some(row) = journaled.get(engine_cl) else {
                problems.push(format!("{cl} is at the venue but not in {id}'s journal"));
                continue;
            };
            let venue_status = o["status"].as_str().unwrap_or("");
            let exec = dec(o["vol_exec"].as_str().unwrap_or(""));
            if exec > Decimal::ZERO {
                report.executed_orders += 1;
                report.executed_volume += exec;
            }
            let journal_status = row.status.as_str();
            let same = match venue_status {
                "open" | "pending" => journal_status == "open" || journal_status == "pending",
                "closed" => journal_status == "filled",
                // The sim shows a venue-side rejection as canceled.
                "canceled" | "expired" => {
                    matches!(journal_status, "canceled" | "expired" | "rejected")
                }
                other => journal_status == other,
            };
            if !same {
                problems.push(format!(
                    "{cl}: venue {venue_status} (executed {exec}) but {id}'s journal {journal_status}"
                ));
            }
            // 2. No lost fill, none counted twice.
            let journaled_exec = fill_sum.get(engine_cl).copied().unwrap_or_default();
            if journaled_exec != exec {
                problems.push(format!(
                    "{cl}: executed {exec} at the venue, {journaled_exec} in {id}'s fills"
                ));
            }
            if dec(&row.volume_executed) != exec {
                problems.push(format!(
                    "{cl}: executed {exec} at the venue, {} on {id}'s order row",
                    row.volume_executed
                ));
            }
            // 4. Cancels only by the owner, and an operator's order only
            // when asked (a strategy cancels its own orders by itself).
            if venue_status == "canceled"
                && journal_status != "rejected"
                && row.owner == "manual"
                && !cancels.contains(engine_cl)
            {
                problems.push(format!("{cl} was canceled but {id} never asked"));
            }
        }
        let at_venue: BTreeSet<&str> = mine
            .iter()
            .map(|o| &o["cl_ord_id"].as_str().unwrap_or("")[pre.len()..])
            .collect();
        let mut rejected = 0;
        for row in orders {
            let cl = row.client_order_id.as_str();
            if at_venue.contains(cl) {
                continue;
            }
            // A journal row the venue never saw must be final and empty.
            if row.status == "rejected" && dec(&row.volume_executed).is_zero() {
                rejected += 1;
            } else {
                problems.push(format!(
                    "{id}'s journal has {cl} ({}) that the venue does not have",
                    row.status
                ));
            }
        }
        report.rejected.insert(id.clone(), rejected);
        for cl in fill_sum.keys() {
            if !at_venue.contains(cl) {
                problems.push(format!(
                    "{id} journaled a fill of {cl} the venue never made"
                ));
            }
        }
    }
    // 4. Every order at the venue belongs to one of the engines.
    for o in venue {
        let cl = o["cl_ord_id"].as_str().unwrap_or("");
        let owners = engine_ids
            .iter()
            .filter(|id| cl.starts_with(&prefix(id)))
            .count();
        if owners != 1 {
            problems.push(format!("{cl:?} at the venue has {owners} owners"));
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        problems.sort();
        problems.truncate(12);
        Err(problems.join("; "))
    }
}
