#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The funding orchestrator end to end on Bybit: the `bybit-sim` binary
//! (spot + linear perps, funding rates and settlements, positions, the
//! unified wallet, fills), `herd-gateway` with `venue = "bybit"` pointed at
//! it and `herd-engine` with `[funding]` enabled, all real processes. The
//! test drives the funding-rate path through the simulator's admin
//! endpoints and waits on what it can see (the engine's GetStatus funding
//! block, the simulator's ledger), never on time.
//!
//! - A rich rate opens spot long + perp short, settlements pay the short,
//!   a decayed rate closes both legs (reduce-only perp buy + spot sell); the
//!   engine's journal (store) equals the simulator's own records: funding
//!   credits to the unit, fees and net to the cent, no exposure left.
//! - A perp leg refused by the venue after the spot leg filled: the spot
//!   leg is sold back, nothing is left at the simulator.

use std::path::Path;
use std::time::{Duration, Instant};

use herd_engine::store::Store;
use herd_proto::engine as epb;
use herd_tests::{EngineProc, Proc, bin_path, engine_client, engine_token};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const KEY: &str = "funding-sim-key";
const SECRET: &str = "funding-sim-secret";
const PERP: &str = "BTCUSDT-PERP";
const WAIT: Duration = Duration::from_secs(30);

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

/// The simulator, the gateway on it and a funding engine, as processes.
struct Herd {
    sim: Proc,
    gateway: Proc,
    engine: EngineProc,
    http: reqwest::Client,
    /// The simulator's ledger before the gateway and the engine start: the
    /// engine may trade as soon as it is up.
    before: Ledger,
}

impl Herd {
    /// `faults` are injected at the simulator before the gateway starts.
    async fn start(dir: &Path, cycle_ms: u64, faults: &[Value]) -> Herd {
        let sim = Proc::start(
            Path::new(env!("CARGO_BIN_EXE_bybit-sim")),
            &[
                "--listen",
                "127.0.0.1:0",
                "--key",
                KEY,
                "--secret",
                SECRET,
                "--step-ms",
                "0",
            ],
            &dir.join("bybit-sim.log"),
            &[],
        )
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let herd_sim = SimAdmin {
            base: sim.url(),
            http: http.clone(),
        };
        // Frozen prices, perp on the spot (no basis), BTC's rate rich:
        // 0.002 - (0.001 + 0.00055) * 2 / 3 > 0.
        herd_sim
            .post(
                "price",
                json!({"category": "spot", "symbol": "BTCUSDT", "price": "60000"}),
            )
            .await;
        herd_sim
            .post(
                "price",
                json!({"category": "linear", "symbol": "BTCUSDT", "price": "60000"}),
            )
            .await;
        herd_sim
            .post("funding", json!({"symbol": "BTCUSDT", "rate": "0.002"}))
            .await;
        for f in faults {
            herd_sim.post("fault", f.clone()).await;
        }
        let before = herd_sim.ledger().await;

        std::fs::write(dir.join("bybit-key"), format!("{KEY}\n")).unwrap();
        std::fs::write(dir.join("bybit-secret"), format!("{SECRET}\n")).unwrap();
        let gw_http = format!("127.0.0.1:{}", herd_tests::free_port().unwrap());
        let gw_cfg = format!(
            "listen = \"127.0.0.1:0\"\nhttp_listen = \"{gw_http}\"\nvenue = \"bybit\"\n\
             admin_token = \"{}\"\npoll_interval_ms = 50\npending_timeout_ms = 2000\n\
             [[engines]]\nid = \"e1\"\ntoken = \"{}\"\nuserref_min = 2000\nuserref_max = 2999\n\
             [bybit]\nbase_url = \"{}\"\nrequest_timeout_ms = 3000\n\
             credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n",
            herd_tests::ADMIN_TOKEN,
            engine_token("e1"),
            sim.url(),
            dir.join("bybit-key").display(),
            dir.join("bybit-secret").display(),
        );
        let gw_path = dir.join("gateway.toml");
        std::fs::write(&gw_path, gw_cfg).unwrap();
        let gateway = Proc::start(
            &bin_path("herd-gateway").unwrap(),
            &["--config", &gw_path.display().to_string()],
            &dir.join("gateway.log"),
            &[],
        )
        .await
        .unwrap();
        // Short cycles, no minimum hold (funding periods are 8 h at the
        // simulator; settlements come when the test asks for them), one
        // confirmation for a decayed rate.
        let engine = EngineProc::start(
            dir,
            "e1",
            &gateway.addr,
            &format!(
                "symbol = \"BTCUSDT\"\n[funding]\nenabled = true\ncycle_interval_ms = {cycle_ms}\n\
                 symbols = [\"{PERP}\"]\nmin_hold_periods = 0\nexit_confirmations = 1\n\
                 leg_timeout_ms = 3000\nresolve_timeout_ms = 3000\npoll_interval_ms = 25\n"
            ),
        )
        .await
        .unwrap();
        Herd {
            sim,
            gateway,
            engine,
            http,
            before,
        }
    }

    fn sim(&self) -> SimAdmin {
        SimAdmin {
            base: self.sim.url(),
            http: self.http.clone(),
        }
    }

    async fn funding(&self) -> epb::FundingStatus {
        let mut c = engine_client(&self.engine.proc.url()).await.unwrap();
        c.get_status(epb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .funding
            .expect("the funding block")
    }

    /// Waits until `check` holds on the funding block; returns it.
    async fn wait_funding(
        &self,
        what: &str,
        check: impl Fn(&epb::FundingStatus) -> bool,
    ) -> epb::FundingStatus {
        let last = std::sync::Mutex::new(None);
        let r = herd_tests::wait_until(what, WAIT, || {
            let fut = self.funding();
            let last = &last;
            let check = &check;
            async move {
                let f = fut.await;
                let ok = check(&f);
                *last.lock().unwrap() = Some(f.clone());
                Ok(ok.then_some(f))
            }
        })
        .await;
        r.unwrap_or_else(|e| {
            panic!(
                "{e}; last status {:?}\nengine log:\n{}",
                last.lock().unwrap(),
                self.engine.proc.log_text()
            )
        })
    }
}

#[derive(Clone)]
struct SimAdmin {
    base: String,
    http: reqwest::Client,
}

impl SimAdmin {
    async fn post(&self, route: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/admin/{route}", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{route}: {v}");
        v
    }

    async fn ledger(&self) -> Ledger {
        let v: Value = self
            .http
            .get(format!("{}/admin/ledger", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Ledger(v)
    }
}

/// The simulator's own records.
struct Ledger(Value);

impl Ledger {
    fn balance(&self, coin: &str) -> Decimal {
        self.0["balances"].get(coin).map(dec).unwrap_or_default()
    }

    fn positions(&self) -> &Vec<Value> {
        self.0["positions"].as_array().unwrap()
    }

    fn fills(&self) -> &Vec<Value> {
        self.0["fills"].as_array().unwrap()
    }

    /// Funding credits (positive = received), by id.
    fn funding(&self) -> Vec<(String, Decimal)> {
        self.0["funding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap().to_string(), dec(&p["amount"])))
            .collect()
    }

    /// Every fee in USDT: a base-coin fee (spot buys) at its fill's price.
    fn fees_usd(&self) -> Decimal {
        self.fills()
            .iter()
            .map(|f| {
                let fee = dec(&f["fee"]);
                if f["feeCurrency"] == "USDT" {
                    fee
                } else {
                    fee * dec(&f["price"])
                }
            })
            .sum()
    }

    /// (category, side) of every fill, in order.
    fn legs(&self) -> Vec<(String, String)> {
        self.fills()
            .iter()
            .map(|f| {
                (
                    f["category"].as_str().unwrap().to_string(),
                    f["side"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// What the engine journaled: (funding payments by id, fees in USD, the
/// last PnL snapshot's net).
async fn journal(engine: &EngineProc) -> (Vec<(String, Decimal)>, Decimal, Decimal, Vec<String>) {
    let store = Store::open_sqlite_dir(&engine.data_dir, &engine.id)
        .await
        .unwrap();
    let positions = store.funding_positions(false).await.unwrap();
    let mut payments = Vec::new();
    let mut fees = Decimal::ZERO;
    let mut purposes = Vec::new();
    for p in &positions {
        for x in store.funding_payments(&p.id).await.unwrap() {
            payments.push((x.payment_id.clone(), x.amount));
        }
        for f in store.funding_fills(&p.id).await.unwrap() {
            fees += f.fee_usd;
            purposes.push(format!("{}:{}:{}", f.purpose, f.leg, f.side));
        }
    }
    payments.sort();
    let net = store
        .funding_pnl_history()
        .await
        .unwrap()
        .last()
        .map(|r| r.net)
        .unwrap_or_default();
    store.close().await;
    (payments, fees, net, purposes)
}

fn open_on_perp(f: &epb::FundingStatus) -> Option<&epb::FundingPositionStatus> {
    f.positions
        .iter()
        .find(|p| p.symbol == PERP && p.state == "open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_a_rich_rate_collects_funding_closes_on_decay_and_books_match_the_venue() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = Herd::start(dir.path(), 150, &[]).await;
    let started = Instant::now();
    let sim = herd.sim();
    // Read before the engine started: it may have bought the spot leg by now.
    let before = &herd.before;
    let usdt_before = before.balance("USDT");
    assert_eq!(usdt_before, Decimal::from(10_000));
    assert_eq!(before.balance("BTC"), Decimal::ZERO);

    // Rich: both legs open at the simulator.
    let f = herd
        .wait_funding("a hedge open on BTC", |f| open_on_perp(f).is_some())
        .await;
    assert_eq!(f.mode, "live", "Bybit is a live venue to the engine");
    assert_eq!(f.ranking[0].symbol, PERP);
    let pos = open_on_perp(&f).unwrap().clone();
    // 1000 USD * 0.999 / 60000 = 0.01665 -> 0.016 on the perp's 0.001 step.
    assert_eq!(pos.perp_qty, "0.016");
    let l = sim.ledger().await;
    assert_eq!(
        l.positions(),
        &vec![json!({"symbol": "BTCUSDT", "side": "Sell", "size": "0.016"})]
    );
    assert!(
        l.balance("BTC") >= d("0.016"),
        "the spot leg covers the short after its fee: {}",
        l.balance("BTC")
    );
    let mut legs = l.legs();
    legs.sort();
    assert_eq!(
        legs,
        vec![
            ("linear".to_string(), "Sell".to_string()),
            ("spot".to_string(), "Buy".to_string())
        ]
    );

    // Three settlements at the rich rate: each pays the short, and the
    // engine books each once from the transaction log.
    let mut paid = Decimal::ZERO;
    for n in 1..=3u32 {
        let r = sim
            .post("funding", json!({"symbol": "BTCUSDT", "settle_now": true}))
            .await;
        let amount = dec(&r["paid"]);
        // 0.016 * 60000 * 0.002
        assert_eq!(amount, d("1.92"), "settlement {n}");
        paid += amount;
        herd.wait_funding(&format!("settlement {n} booked"), |f| {
            open_on_perp(f).is_some_and(|p| p.funding_payments == n)
        })
        .await;
    }
    let f = herd.funding().await;
    assert_eq!(d(&f.portfolio.unwrap().total_funding), paid);

    // The rate decays below exit_rate: reduce-only perp buy + spot sell.
    sim.post("funding", json!({"symbol": "BTCUSDT", "rate": "0.00005"}))
        .await;
    let f = herd
        .wait_funding("the hedge closed", |f| {
            f.positions
                .iter()
                .any(|p| p.id == pos.id && p.state == "closed")
        })
        .await;
    let closed = f.positions.iter().find(|p| p.id == pos.id).unwrap();
    assert!(
        closed.last_error.contains("decayed") || closed.last_error.contains("rate"),
        "close reason: {}",
        closed.last_error
    );
    // No new position while the rate stays low.
    assert!(
        f.positions.iter().all(|p| p.state == "closed"),
        "{:?}",
        f.positions
    );
    let run = f.cycles.as_ref().unwrap().run;
    herd.wait_funding("two more cycles", |f| {
        f.cycles.as_ref().is_some_and(|c| c.run >= run + 2)
    })
    .await;

    // The simulator's own records.
    let l = sim.ledger().await;
    assert!(l.positions().is_empty(), "orphan perp: {:?}", l.positions());
    let legs = l.legs();
    assert_eq!(legs.len(), 4, "{legs:?}");
    assert!(legs.contains(&("linear".into(), "Buy".into())), "{legs:?}");
    assert!(legs.contains(&("spot".into(), "Sell".into())), "{legs:?}");
    let btc_left = l.balance("BTC");
    assert!(
        btc_left < d("0.000001"),
        "spot left over after the close: {btc_left}"
    );
    let venue_funding = l.funding();
    assert_eq!(venue_funding.len(), 3);
    let venue_fees = l.fees_usd();
    let equity_delta = l.balance("USDT") - usdt_before + btc_left * Decimal::from(60_000);

    // Stop the engine (policy keep: nothing to keep) and read its journal.
    herd.engine.proc.terminate().await.unwrap();
    let (payments, fees, net, purposes) = journal(&herd.engine).await;
    let mut want = venue_funding.clone();
    want.sort();
    assert_eq!(payments, want, "each venue credit booked once, to the unit");
    assert!(
        (fees - venue_fees).abs() < d("0.01"),
        "engine fees {fees}, venue fees {venue_fees}"
    );
    assert!(
        (net - (paid - venue_fees)).abs() < d("0.01"),
        "net {net} = funding {paid} - fees {venue_fees} (frozen prices)"
    );
    assert!(
        (net - equity_delta).abs() < d("0.01"),
        "the venue's equity moved {equity_delta}, the engine says {net}"
    );
    let mut purposes = purposes;
    purposes.sort();
    assert_eq!(
        purposes,
        vec![
            "close:perp:buy",
            "close:spot:sell",
            "open:perp:sell",
            "open:spot:buy"
        ]
    );
    // The gateway's fills ledger: every leg tagged `funding` by the
    // orchestrator, the settlements it listed booked to e1, and its PnL
    // the engine's own net to the cent.
    let mut admin = herd_tests::admin_client(&herd.gateway.url()).await.unwrap();
    let fills = admin
        .list_fills(herd_proto::gateway::ListFillsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .fills;
    assert!(fills.len() >= 4, "{fills:#?}");
    assert!(
        fills
            .iter()
            .all(|f| f.strategy == "funding" && f.engine_id == "e1"),
        "{fills:#?}"
    );
    let pnl = admin
        .get_pnl(herd_proto::gateway::GetPnlRequest {
            by: herd_proto::gateway::PnlGrouping::Strategy as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = pnl.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["funding"]);
    let row = &pnl.rows[0];
    assert_eq!(d(&row.funding), paid, "every settlement booked once");
    assert_eq!(
        d(&row.total).round_dp(2),
        net.round_dp(2),
        "the ledger's PnL {row:?}, the engine's net {net}"
    );
    eprintln!(
        "funding {paid}, fees {venue_fees}, net {net}, venue equity {equity_delta}, \
         ledger {} ({} fills); {:?}",
        row.total,
        fills.len(),
        started.elapsed()
    );
    herd.gateway.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_perp_leg_refused_after_the_spot_fill_is_rolled_back_at_the_venue() {
    let dir = tempfile::tempdir().unwrap();
    // Every perp order is refused (insufficient balance) until cleared.
    let mut herd = Herd::start(
        dir.path(),
        150,
        &[json!({"kind": "reject", "path": "/v5/order/create", "category": "linear", "count": 1000})],
    )
    .await;
    let started = Instant::now();
    let sim = herd.sim();
    let f = herd
        .wait_funding("a rolled-back open", |f| {
            f.positions
                .iter()
                .any(|p| p.last_error.starts_with("rollback"))
        })
        .await;
    // Stop opening so the books stay still, then let a running cycle end.
    sim.post("funding", json!({"symbol": "BTCUSDT", "rate": "0.00005"}))
        .await;
    let run = f.cycles.as_ref().unwrap().run;
    let f = herd
        .wait_funding("two more cycles", |f| {
            f.cycles.as_ref().is_some_and(|c| c.run >= run + 2)
        })
        .await;
    assert!(
        f.positions.iter().all(|p| p.state == "failed"),
        "{:?}",
        f.positions
    );
    let l = sim.ledger().await;
    assert!(l.positions().is_empty(), "{:?}", l.positions());
    let legs = l.legs();
    let attempts = f.positions.len();
    assert!(attempts >= 1);
    assert_eq!(
        legs,
        (0..attempts)
            .flat_map(|_| [
                ("spot".to_string(), "Buy".to_string()),
                ("spot".into(), "Sell".into())
            ])
            .collect::<Vec<_>>(),
        "each attempt: the spot buy and its sell-back; no perp fill"
    );
    let btc = l.balance("BTC");
    assert!(btc < d("0.000001"), "orphan spot: {btc}");
    let fees = l.fees_usd();
    // What the attempts cost at the venue (USDT out, less the spot dust
    // below the lot size still held) is their fees, to the cent.
    let spent = Decimal::from(10_000) - l.balance("USDT") - btc * Decimal::from(60_000);
    assert!(
        (spent - fees).abs() < d("0.01"),
        "equity back within fees: spent {spent}, fees {fees}"
    );
    herd.engine.proc.terminate().await.unwrap();
    let (_, engine_fees, _, purposes) = journal(&herd.engine).await;
    assert!(
        (engine_fees - fees).abs() < d("0.01"),
        "engine fees {engine_fees}, venue fees {fees}"
    );
    assert_eq!(
        purposes
            .iter()
            .filter(|p| p.starts_with("rollback"))
            .count(),
        attempts,
        "{purposes:?}"
    );
    eprintln!(
        "{attempts} rolled-back attempts, fees {fees}, USDT spent {spent}; {:?}",
        started.elapsed()
    );
    herd.gateway.terminate().await.unwrap();
}
