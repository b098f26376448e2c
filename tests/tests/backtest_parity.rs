//! Live / backtest parity: one price path through the gateway's paper venue
//! with a real engine (real processes, gRPC over loopback), and through
//! herd-backtest with the same strategy configuration. Both must give the
//! same orders (side, price, volume, post-only, id tag and counter) and the
//! same fills (order, price, volume, fee).
//!
//! What is not comparable, and why: the client ids' run part (6 base-36
//! digits from the run's start second: the wall clock live, the first
//! candle in the backtest), the venue order ids (random per venue) and all
//! times (wall clock live, simulated in the backtest).
//!
//! The path: the paper venue's price moves only by SetPaperPrice (its own
//! walk is flat and steps once an hour), and each price is a flat candle in the
//! backtest with `through_ticks = 0` (the paper venue fills a resting order
//! when the price touches it). After each price the test waits until the
//! engine has done what the backtest did at that candle (observable state
//! with a deadline), then compares everything at the end.
//!
//! The gateway also records what it saw (`[record]`), and `herdctl backtest
//! --recording` replays that file with the engine's own config: the same
//! fills (order id tag and counter, side, price, volume).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use herd_backtest::sim::{FillModel, FundingSetup, RegimeSetup, Setup};
use herd_backtest::{Bar, engine_strategies, run};
use herd_engine::store::Store;
use herd_paper::{FeePolicy, PaperInstrument};
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::{RegimeView, Side};
use herd_tests::{EngineProc, GatewayProc, admin_client, engine_client, wait_until};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// The gateway's `[paper]`: DOGEUSD alone, on a flat path (the venue's
/// own step, the first of which runs at start, leaves the price where
/// SetPaperPrice put it), stepping once an hour.
fn still_market() -> String {
    let mut doge = PaperInstrument::doge_usd();
    doge.path = herd_paper::PathConfig {
        volatility: 0.0,
        mean_reversion: 0.0,
        trend_drift: 0.0,
        switch_probability: 0.0,
        ..herd_paper::PathConfig::default()
    };
    let paper = herd_paper::PaperConfig {
        instruments: vec![doge],
        history_minutes: 0,
        ..herd_paper::PaperConfig::default()
    };
    let mut v = serde_json::to_value(&paper).unwrap();
    v["step_ms"] = serde_json::json!(3_600_000);
    let mut out = String::new();
    toml_table(&mut out, "paper", &v, false);
    out
}

/// `v` (a JSON object) as a TOML table named `name`: scalars first, then
/// sub-tables and arrays of tables (the config types read either).
fn toml_table(out: &mut String, name: &str, v: &serde_json::Value, array: bool) {
    use std::fmt::Write as _;
    let Some(map) = v.as_object() else { return };
    let _ = writeln!(
        out,
        "{}{name}{}",
        if array { "[[" } else { "[" },
        if array { "]]" } else { "]" }
    );
    let nested = |x: &serde_json::Value| {
        x.is_object()
            || x.as_array()
                .is_some_and(|a| a.first().is_some_and(|e| e.is_object()))
    };
    for (k, x) in map.iter().filter(|(_, x)| !nested(x) && !x.is_null()) {
        let _ = writeln!(out, "{k} = {x}");
    }
    for (k, x) in map.iter().filter(|(_, x)| nested(x)) {
        let path = format!("{name}.{k}");
        match x.as_array() {
            Some(items) => items.iter().for_each(|e| toml_table(out, &path, e, true)),
            None => toml_table(out, &path, x, false),
        }
    }
}
const WAIT: Duration = Duration::from_secs(30);
/// Digits of the run part in a client id (`r0e-` + 6 + counter).
const RUN_DIGITS: usize = 6;

/// Two rangers; timeouts and cooldown far beyond the test's length, so
/// wall time and simulated time cannot make them differ.
const RANGERS_TOML: &str = r#"
regime_source = "fixed"
fixed_regime = "RANGING"

[rangers]
enabled = true
max_slots = 2
order_size_usd = "20"
entry_pct = "1"
profit_pct = "2"
entry_timeout_sec = 100000
exit_timeout_sec = 100000
cooldown_sec = 100000
"#;

fn rangers() -> RangerConfig {
    RangerConfig {
        enabled: true,
        max_slots: 2,
        order_size_usd: dec!(20),
        entry_pct: dec!(1),
        profit_pct: dec!(2),
        entry_timeout_sec: 100_000,
        exit_timeout_sec: 100_000,
        cooldown_sec: 100_000,
        ..RangerConfig::default()
    }
}

/// The path: the rangers offer 1 % above 0.1; 0.1015 fills the offers
/// (their exits bid 2 % below); 0.0985 fills the exits.
const PATH: [Decimal; 3] = [dec!(0.1), dec!(0.1015), dec!(0.0985)];

/// The run part of a client id taken out: `r0e-000abc12` -> `r0e-12`.
fn comparable_id(id: &str) -> String {
    match id.split_once('-') {
        Some((tag, rest)) if rest.len() > RUN_DIGITS => format!("{tag}-{}", &rest[RUN_DIGITS..]),
        _ => id.to_string(),
    }
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// (comparable id, side, price, volume) of each order, in placement order.
type Orders = Vec<(String, String, Decimal, Decimal)>;
/// (comparable id, price, volume, fee) of each fill, in order.
type Fills = Vec<(String, Decimal, Decimal, Decimal)>;

/// The backtest over the path: orders and fills after each candle.
fn backtest() -> Vec<(Orders, Fills)> {
    let start = 1_704_067_200_000;
    let bars: Vec<Bar> = PATH
        .iter()
        .enumerate()
        .map(|(i, p)| Bar {
            open_time_ms: start + 60_000 * i64::try_from(i).unwrap(),
            open: *p,
            high: *p,
            low: *p,
            close: *p,
            volume: dec!(1000),
        })
        .collect();
    let setup = Setup {
        instrument: PaperInstrument::doge_usd().instrument,
        balances: BTreeMap::from([("USD".into(), dec!(1000)), ("DOGE".into(), dec!(5000))]),
        fee_policy: FeePolicy::Quote,
        fill: FillModel {
            through_ticks: 0,
            ..FillModel::default()
        },
        regime: RegimeSetup::Fixed(RegimeView {
            regime: "RANGING".into(),
            ready: true,
            confidence: 1.0,
            bias: 0.0,
        }),
        funding: FundingSetup::default(),
    };
    (1..=bars.len())
        .map(|n| {
            let s = engine_strategies(rangers(), GridConfig::default(), "DOGEUSD", start).unwrap();
            let out = run(&setup, s, &bars[..n], 60_000, &mut ()).unwrap();
            let orders = out
                .orders
                .iter()
                .map(|o| {
                    (
                        comparable_id(&o.client_order_id),
                        side_str(o.side).to_string(),
                        o.price.unwrap_or_default(),
                        o.volume,
                    )
                })
                .collect();
            let fills = out
                .fills
                .iter()
                .map(|f| (comparable_id(&f.client_order_id), f.price, f.volume, f.fee))
                .collect();
            (orders, fills)
        })
        .collect()
}

async fn set_price(gateway_url: &str, price: Decimal) {
    admin_client(gateway_url)
        .await
        .unwrap()
        .set_paper_price(gpb::SetPaperPriceRequest {
            symbol: "DOGEUSD".into(),
            price: price.to_string(),
        })
        .await
        .unwrap();
}

/// The engine's orders and fills as its store has them.
async fn live(engine: &EngineProc) -> (Orders, Fills) {
    let store = Store::connect(&engine.db_url()).await.unwrap();
    let mut rows = store.orders_of("rangers").await.unwrap();
    rows.sort_by(|a, b| {
        (a.created_at_ms, comparable_id(&a.client_order_id))
            .cmp(&(b.created_at_ms, comparable_id(&b.client_order_id)))
    });
    let orders = rows
        .iter()
        .map(|o| {
            (
                comparable_id(&o.client_order_id),
                o.side.clone(),
                o.price.parse().unwrap(),
                o.volume.parse().unwrap(),
            )
        })
        .collect();
    let fills = store
        .fills()
        .await
        .unwrap()
        .iter()
        .map(|f| (comparable_id(&f.client_order_id), f.price, f.volume, f.fee))
        .collect();
    store.close().await;
    (orders, fills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_price_path_gives_the_same_orders_and_fills_live_and_in_the_backtest() {
    let expected = backtest();
    // A useful path: both rangers offer at 0.101, both offers fill, both
    // exits bid at 0.09898 and fill: two cycles, four orders, four fills.
    let (last_orders, last_fills) = expected.last().unwrap();
    assert_eq!(last_orders.len(), 4, "{last_orders:?}");
    assert_eq!(last_fills.len(), 4, "{last_fills:?}");

    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("recording.jsonl");
    let gw_toml = format!(
        "[record]\npath = \"{}\"\n{}",
        recording.display(),
        still_market()
    );
    let gw = GatewayProc::start(dir.path(), 1, &gw_toml).await.unwrap();
    let gw_url = gw.proc.url();
    set_price(&gw_url, PATH[0]).await;
    let engine = EngineProc::start(dir.path(), "e0", &gw.proc.addr, RANGERS_TOML)
        .await
        .unwrap();
    let mut client = engine_client(&engine.proc.url()).await.unwrap();
    for (i, price) in PATH.iter().enumerate() {
        if i > 0 {
            set_price(&gw_url, *price).await;
        }
        let (orders, fills) = &expected[i];
        // Wait until the engine has placed as many orders, had as many
        // fills journaled, and has as many open orders as the backtest.
        let want_open = orders.len() - fills.len();
        wait_until(
            &format!("the engine's state after price {price}"),
            WAIT,
            || {
                let mut c = client.clone();
                let (n_fills, n_open) = (fills.len() as u64, want_open);
                async move {
                    let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
                    let open = s
                        .open_orders
                        .iter()
                        .filter(|o| o.status == "open" && o.owner == "rangers")
                        .count();
                    Ok(
                        (s.gateway_connected && s.fills_journaled == n_fills && open == n_open)
                            .then_some(()),
                    )
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let (live_orders, live_fills) = live(&engine).await;
        assert_eq!(&live_orders, orders, "orders after price {price}");
        assert_eq!(&live_fills, fills, "fills after price {price}");
    }
    let s = client
        .get_status(epb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.fills_journaled, 4);

    // Replay: the gateway recorded the tickers it served and the fills it
    // booked; `herdctl backtest --recording` runs the engine's own config
    // over those tickers and fills the same orders at the same prices.
    let text = std::fs::read_to_string(&recording).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let recorded_fills: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "fill").collect();
    assert_eq!(recorded_fills.len(), 4, "{text}");
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "ticker" && r["last"] == "0.1015")
    );
    let out_dir = dir.path().join("replay");
    let out = std::process::Command::new(herd_tests::bin_path("herdctl").unwrap())
        .args(["backtest", "--quiet", "--through-ticks", "0", "--config"])
        .arg(dir.path().join("engine-e0.toml"))
        .arg("--recording")
        .arg(&recording)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("replay: 4 fills, the same sides, prices and volumes as the recording's"),
        "{stderr}"
    );
    let fills_csv = std::fs::read_to_string(out_dir.join("fills.csv")).unwrap();
    let replayed: Vec<String> = fills_csv
        .lines()
        .skip(1)
        .map(|l| comparable_id(l.split(',').nth(3).unwrap()))
        .collect();
    let live_ids: Vec<String> = recorded_fills
        .iter()
        .map(|f| comparable_id(f["client_order_id"].as_str().unwrap()))
        .collect();
    assert_eq!(replayed, live_ids);
}
