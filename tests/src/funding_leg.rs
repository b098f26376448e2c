//! The chaos soak's Bybit leg (issue 22): `bybit-sim` (with a state file,
//! prices frozen), a second `herd-gateway` with `venue = "bybit"` on it, and
//! one engine `f0` running the funding orchestrator on BTCUSDT-PERP, all
//! real processes. The soak kill -9s and restarts each of them (the
//! simulator on its port with its state file), turns the funding rate rich
//! or poor, and checks that the engine's funding positions match the
//! simulator's positions and spot balance.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use herd_proto::engine as epb;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::procs::{
    ADMIN_TOKEN, EngineProc, Proc, bin_path, engine_client, engine_token, free_ports,
};

const KEY: &str = "soak-bybit-key";
const SECRET: &str = "soak-bybit-secret";
/// The funding engine's id and the perp it trades.
pub const FUNDING_ENGINE: &str = "f0";
pub const PERP: &str = "BTCUSDT-PERP";
/// A rate that opens a hedge (0.002 - (0.001 + 0.00055) * 2 / 3 > 0) and
/// one that closes it.
pub const RICH_RATE: &str = "0.002";
pub const POOR_RATE: &str = "0.00001";
/// BTCUSDT's smallest spot order at the simulator: what a close cannot sell.
const SPOT_MIN_QTY: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The Bybit leg's processes.
#[derive(Debug)]
pub struct FundingLeg {
    dir: PathBuf,
    pub sim: Option<Proc>,
    /// The simulator's address (kept across its restarts).
    pub sim_addr: String,
    pub sim_state: PathBuf,
    pub gateway: Option<Proc>,
    pub gateway_addr: String,
    gateway_config: PathBuf,
    pub engine: Option<EngineProc>,
    engine_extra: String,
    pub logs: Vec<PathBuf>,
    http: reqwest::Client,
}

impl FundingLeg {
    /// Starts the simulator, the gateway and the funding engine under `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<FundingLeg> {
        let dir = dir.join("bybit-leg");
        std::fs::create_dir_all(&dir)?;
        let [gw_port, gw_http] = free_ports::<2>()?;
        let mut leg = FundingLeg {
            sim_state: dir.join("bybit-sim.state"),
            gateway_config: dir.join("gateway-bybit.toml"),
            gateway_addr: format!("127.0.0.1:{gw_port}"),
            dir,
            sim: None,
            sim_addr: "127.0.0.1:0".into(),
            gateway: None,
            engine: None,
            engine_extra: format!(
                "symbol = \"BTCUSDT\"\nregime_source = \"fixed\"\nfixed_regime = \"RANGING\"\n\
                 max_consecutive_errors = 1000000\n[funding]\nenabled = true\ncycle_interval_ms = 300\n\
                 symbols = [\"{PERP}\"]\nmin_hold_periods = 0\nexit_confirmations = 1\n\
                 leg_timeout_ms = 3000\nresolve_timeout_ms = 3000\npoll_interval_ms = 50\n"
            ),
            logs: Vec::new(),
            http: reqwest::Client::new(),
        };
        leg.start_sim().await?;
        // Frozen prices, the perp on the spot (no basis), BTC's rate rich.
        leg.admin(
            "price",
            json!({"category": "spot", "symbol": "BTCUSDT", "price": "60000"}),
        )
        .await?;
        leg.admin(
            "price",
            json!({"category": "linear", "symbol": "BTCUSDT", "price": "60000"}),
        )
        .await?;
        leg.set_rate(RICH_RATE, false).await?;
        std::fs::write(leg.dir.join("bybit-key"), format!("{KEY}\n"))?;
        std::fs::write(leg.dir.join("bybit-secret"), format!("{SECRET}\n"))?;
        let cfg = format!(
            "listen = \"{}\"\nhttp_listen = \"127.0.0.1:{gw_http}\"\nvenue = \"bybit\"\n\
             admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 100\npending_timeout_ms = 2000\n\
             state_dir = \"{}\"\n\
             [[engines]]\nid = \"{FUNDING_ENGINE}\"\ntoken = \"{}\"\nuserref_min = 9000\nuserref_max = 9999\n\
             cancel_on_disconnect_ms = 0\n[dead_mans_switch]\nenabled = false\n\
             [bybit]\nbase_url = \"http://{}\"\nrequest_timeout_ms = 2000\n\
             credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n",
            leg.gateway_addr,
            leg.dir.join("gateway-state").display(),
            engine_token(FUNDING_ENGINE),
            leg.sim_addr,
            leg.dir.join("bybit-key").display(),
            leg.dir.join("bybit-secret").display(),
        );
        std::fs::write(&leg.gateway_config, cfg)?;
        leg.start_gateway().await?;
        leg.start_engine().await?;
        Ok(leg)
    }

    /// Starts bybit-sim (on its known port after the first start) with its
    /// state file.
    pub async fn start_sim(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join(format!("bybit-sim-{}.log", nanos()));
        let state = self.sim_state.display().to_string();
        let p = Proc::start(
            &bin_path("bybit-sim")?,
            &[
                "--listen",
                &self.sim_addr,
                "--key",
                KEY,
                "--secret",
                SECRET,
                "--step-ms",
                "0",
                "--state",
                &state,
            ],
            &log,
            &[],
        )
        .await
        .context("cannot start bybit-sim")?;
        self.sim_addr = p.addr.clone();
        self.logs.push(log);
        self.sim = Some(p);
        Ok(())
    }

    /// kill -9 of bybit-sim, then a restart on its port and state file.
    pub async fn restart_sim(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.sim.take() {
            p.kill9().await?;
        }
        self.start_sim().await
    }

    pub async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join(format!("gateway-bybit-{}.log", nanos()));
        let config = self.gateway_config.display().to_string();
        let p = Proc::start(
            &bin_path("herd-gateway")?,
            &["--config", &config],
            &log,
            &[],
        )
        .await
        .context("cannot start the Bybit gateway")?;
        self.logs.push(log);
        self.gateway = Some(p);
        Ok(())
    }

    /// kill -9 and restart of the Bybit gateway.
    pub async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.gateway.take() {
            p.kill9().await?;
        }
        self.start_gateway().await
    }

    pub async fn start_engine(&mut self) -> anyhow::Result<()> {
        let e = EngineProc::start(
            &self.dir,
            FUNDING_ENGINE,
            &self.gateway_addr,
            &self.engine_extra,
        )
        .await
        .context("cannot start the funding engine")?;
        self.logs.push(e.proc.log.clone());
        self.engine = Some(e);
        Ok(())
    }

    /// kill -9 and restart of the funding engine.
    pub async fn restart_engine(&mut self) -> anyhow::Result<()> {
        if let Some(mut e) = self.engine.take() {
            e.proc.kill9().await?;
        }
        self.start_engine().await
    }

    async fn admin(&self, route: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("http://{}/admin/{route}", self.sim_addr))
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("bybit-sim admin {route} answered {status}: {v}");
        }
        Ok(v)
    }

    /// Sets BTC's funding rate (and settles a period now when asked).
    pub async fn set_rate(&self, rate: &str, settle_now: bool) -> anyhow::Result<()> {
        self.admin(
            "funding",
            json!({"symbol": "BTCUSDT", "rate": rate, "settle_now": settle_now}),
        )
        .await?;
        Ok(())
    }

    /// The simulator's own records (`/admin/ledger`).
    pub async fn ledger(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("http://{}/admin/ledger", self.sim_addr))
            .send()
            .await?
            .json()
            .await?)
    }

    /// The funding engine's status block.
    pub async fn funding(&self) -> anyhow::Result<epb::FundingStatus> {
        let e = self
            .engine
            .as_ref()
            .context("the funding engine is not running")?;
        engine_client(&e.proc.url())
            .await?
            .get_status(epb::GetStatusRequest {})
            .await?
            .into_inner()
            .funding
            .context("no funding block")
    }

    /// The engine's funding positions match the simulator's: no leg in
    /// flight (opening, closing, unwinding), no reconcile mismatch, the
    /// open positions' perp quantity equals the simulator's short on the
    /// perp, their spot quantity its BTC balance, and the simulator holds no
    /// position the engine does not. `Err` says what differs.
    /// `Ok` counts the open hedges compared.
    pub async fn positions_match(&self) -> anyhow::Result<Result<u64, String>> {
        let f = self.funding().await?;
        let ledger = self.ledger().await?;
        let num = |s: &str| Decimal::from_str(s).unwrap_or(Decimal::MIN);
        let mut problems = Vec::new();
        if !f.running {
            problems.push("the orchestrator is not running".to_string());
        }
        if !f.reconcile_mismatches.is_empty() {
            problems.push(format!("reconcile mismatches {:?}", f.reconcile_mismatches));
        }
        let mut perp = Decimal::ZERO;
        let mut spot = Decimal::ZERO;
        let mut finished = Decimal::ZERO;
        let mut open = 0u64;
        for p in &f.positions {
            match p.state.as_str() {
                "open" => {
                    open += 1;
                    perp += num(&p.perp_qty).abs();
                    spot += num(&p.spot_qty);
                }
                "closed" | "failed" => finished += Decimal::ONE,
                other => problems.push(format!("position {} is {other}", p.id)),
            }
        }
        let mut venue_short = Decimal::ZERO;
        for p in ledger["positions"].as_array().cloned().unwrap_or_default() {
            let size = num(p["size"].as_str().unwrap_or(""));
            match (p["symbol"].as_str(), p["side"].as_str()) {
                (Some("BTCUSDT"), Some("Sell")) => venue_short += size,
                _ => problems.push(format!("the venue holds {p} that no hedge has")),
            }
        }
        let venue_btc = ledger["balances"]
            .get("BTC")
            .and_then(Value::as_str)
            .map_or(Decimal::ZERO, num);
        if venue_short != perp {
            problems.push(format!(
                "perp: the engine's open positions hold {perp} short, the venue {venue_short}"
            ));
        }
        // A close leaves the spot below the venue's minimum order unsold
        // (the engine books it as dust): at most one lot per finished hedge.
        // Status lists only the newest five finished hedges; the portfolio
        // counts them all (the 30-minute run's "5 hedges finished" with
        // more dust than five lots was this count, not the engine).
        let all_finished = f.portfolio.as_ref().map_or(0, |p| p.closed_positions);
        let finished = finished.max(Decimal::from(all_finished));
        let dust = venue_btc - spot;
        if dust < Decimal::ZERO || dust >= SPOT_MIN_QTY * finished.max(Decimal::ONE) {
            problems.push(format!(
                "spot: the engine's open positions hold {spot} BTC, the venue {venue_btc} \
                 ({finished} hedges finished, each may leave under {SPOT_MIN_QTY} of dust)"
            ));
        }
        Ok(if problems.is_empty() {
            Ok(open)
        } else {
            Err(problems.join("; "))
        })
    }
}
