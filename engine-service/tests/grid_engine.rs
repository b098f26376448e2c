#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The grid strategy (slots + ledger + self-healing + churners) and the
//! rangers on the paper venue's matching core, on a fake clock: a small
//! execution layer here ([`Sim`]) places and cancels on `herd_paper::Exchange`
//! at simulated time, turns the exchange's order changes into updates and
//! writes journal actions to a real store (SQLite, and Postgres when
//! TEST_DATABASE_URL is set). Hours of trading run in well under a second.

use std::collections::BTreeMap;

use herd_engine::store::Store;
use herd_paper::{Exchange, PaperConfig, PaperInstrument, PathConfig};
use herd_strategies::churner::{self, ChurnerConfig, GateInput, ParentCandidate, Refusal};
use herd_strategies::grid::heal::Band;
use herd_strategies::grid::ledger::{Ledger, PositionMode};
use herd_strategies::grid::slot::CycleRecord;
use herd_strategies::grid::{Grid, GridConfig, config::SlotMode};
use herd_strategies::rangers::{RangerConfig, Rangers};
use herd_strategies::strategy::{
    Action, Command, JournalRow, KnownOrder, MarketView, OrderUpdate, RegimeView, Side, Strategy,
    UpdateKind,
};
use herd_venue::{NewOrder, OrderRef, OrderStatus, OrderType};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1_000;
const H: i64 = 3_600_000;
const USERREF_MIN: i32 = 1000;

fn ranging() -> RegimeView {
    RegimeView {
        regime: "RANGING".into(),
        ready: true,
        confidence: 0.9,
        bias: 0.0,
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    owner: usize,
    executed: Decimal,
    value: Decimal,
    fee: Decimal,
    final_seen: bool,
}

/// A tiny execution layer over the paper matching core.
struct Sim {
    ex: Exchange,
    now: i64,
    grid: Grid,
    others: Vec<Box<dyn Strategy>>,
    tracked: BTreeMap<String, Tracked>,
    store: Store,
    regime: RegimeView,
    /// Every journal action, in order: (stream, kind, payload).
    journal: Vec<(String, String, String)>,
}

fn paper(volatility: f64, seed: u64) -> PaperConfig {
    let mut doge = PaperInstrument::doge_usd();
    doge.start_price = dec!(0.12);
    doge.path = PathConfig {
        seed,
        volatility,
        mean_reversion: 0.002,
        trend_drift: 0.0,
        switch_probability: 0.0,
        ..PathConfig::default()
    };
    PaperConfig {
        instruments: vec![doge],
        ..PaperConfig::default()
    }
}

impl Sim {
    async fn new(url: &str, cfg: PaperConfig, grid: Grid, others: Vec<Box<dyn Strategy>>) -> Sim {
        Sim {
            ex: Exchange::new(&cfg, T0),
            now: T0,
            grid,
            others,
            tracked: BTreeMap::new(),
            store: Store::connect(url).await.unwrap(),
            regime: ranging(),
            journal: Vec::new(),
        }
    }

    fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Strategy `k`: 0 is the grid, then the others.
    fn strat(&mut self, k: usize) -> &mut dyn Strategy {
        if k == 0 {
            &mut self.grid
        } else {
            self.others[k - 1].as_mut()
        }
    }

    fn count(&self) -> usize {
        1 + self.others.len()
    }

    fn market(&self) -> MarketView {
        let t = self.ex.ticker("DOGEUSD").unwrap();
        let i = self.ex.instrument("DOGEUSD").unwrap().clone();
        let free = |a: &str| {
            self.ex
                .balances()
                .into_iter()
                .find(|b| b.asset == a)
                .map(|b| b.free)
        };
        MarketView {
            symbol: "DOGEUSD".into(),
            last: t.last,
            bid: t.bid,
            ask: t.ask,
            instrument: Some(i),
            free_base: free("DOGE"),
            free_quote: free("USD"),
            open_orders_on_pair: Some(u32::try_from(self.ex.open_orders().len()).unwrap()),
            regime: self.regime.clone(),
            balances_as_of_ms: self.now,
            last_partial_cancel_ms: None,
        }
    }

    fn update(id: &str, kind: UpdateKind, message: &str) -> OrderUpdate {
        OrderUpdate {
            client_order_id: id.into(),
            kind,
            volume_executed: Decimal::ZERO,
            average_price: None,
            fill_volume: Decimal::ZERO,
            fill_price: Decimal::ZERO,
            fill_fee: Decimal::ZERO,
            fee_asset: "USD".into(),
            message: message.into(),
        }
    }

    async fn execute(&mut self, owner: usize, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<(usize, Action)> =
            actions.into_iter().map(|a| (owner, a)).collect();
        let mut budget = 10_000;
        while let Some((owner, a)) = queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "action loop");
            let feedback = match a {
                Action::Place(i) => {
                    let o = NewOrder {
                        client_order_id: i.client_order_id.clone(),
                        symbol: i.symbol.clone(),
                        side: match i.side {
                            Side::Buy => herd_venue::Side::Buy,
                            Side::Sell => herd_venue::Side::Sell,
                        },
                        order_type: if i.price.is_some() {
                            OrderType::Limit
                        } else {
                            OrderType::Market
                        },
                        volume: i.volume,
                        price: i.price,
                        post_only: i.post_only,
                        userref: USERREF_MIN + i.userref_offset,
                        reduce_only: false,
                    };
                    match self.ex.place(&o, self.now) {
                        Ok(_) => {
                            self.tracked.insert(
                                i.client_order_id.clone(),
                                Tracked {
                                    owner,
                                    executed: Decimal::ZERO,
                                    value: Decimal::ZERO,
                                    fee: Decimal::ZERO,
                                    final_seen: false,
                                },
                            );
                            vec![Self::update(&i.client_order_id, UpdateKind::Open, "")]
                        }
                        Err(e) => vec![Self::update(
                            &i.client_order_id,
                            UpdateKind::PlaceFailed,
                            &e.to_string(),
                        )],
                    }
                }
                Action::Cancel { client_order_id } => {
                    let r = OrderRef {
                        client_order_id: client_order_id.clone(),
                        venue_order_id: None,
                    };
                    match self.ex.cancel(&r, self.now) {
                        Ok(_) => Vec::new(),
                        Err(e) => vec![Self::update(
                            &client_order_id,
                            UpdateKind::CancelFailed,
                            &e.to_string(),
                        )],
                    }
                }
                Action::Journal {
                    stream,
                    kind,
                    payload_json,
                } => {
                    self.store
                        .append_journal(&stream, &kind, &payload_json, self.now)
                        .await
                        .unwrap();
                    self.journal.push((stream, kind, payload_json));
                    Vec::new()
                }
            };
            let mut updates: Vec<(usize, OrderUpdate)> =
                feedback.into_iter().map(|u| (owner, u)).collect();
            updates.extend(self.diff());
            for (o, u) in updates {
                let now = self.now;
                let more = self.strat(o).on_order(&u, now);
                queue.extend(more.into_iter().map(|a| (o, a)));
            }
        }
    }

    /// Order changes since the last look, as updates.
    fn diff(&mut self) -> Vec<(usize, OrderUpdate)> {
        let mut out = Vec::new();
        for (id, t) in self.tracked.iter_mut() {
            if t.final_seen {
                continue;
            }
            let r = OrderRef {
                client_order_id: id.clone(),
                venue_order_id: None,
            };
            let Some(st) = self.ex.query(&[r]).into_iter().next() else {
                continue;
            };
            let value = st.average_price.unwrap_or_default() * st.volume_executed;
            if st.volume_executed > t.executed {
                let dv = st.volume_executed - t.executed;
                let kind = if st.status == OrderStatus::Filled {
                    UpdateKind::Filled
                } else {
                    UpdateKind::PartialFill
                };
                out.push((
                    t.owner,
                    OrderUpdate {
                        client_order_id: id.clone(),
                        kind,
                        volume_executed: st.volume_executed,
                        average_price: st.average_price,
                        fill_volume: dv,
                        fill_price: (value - t.value) / dv,
                        fill_fee: st.fee - t.fee,
                        fee_asset: st.fee_asset.clone(),
                        message: String::new(),
                    },
                ));
                t.executed = st.volume_executed;
                t.value = value;
                t.fee = st.fee;
            }
            if st.status.is_final() {
                t.final_seen = true;
                if st.status != OrderStatus::Filled {
                    let kind = if st.status == OrderStatus::Canceled {
                        UpdateKind::Canceled
                    } else {
                        UpdateKind::Expired
                    };
                    out.push((
                        t.owner,
                        OrderUpdate {
                            volume_executed: st.volume_executed,
                            ..Self::update(id, kind, "")
                        },
                    ));
                }
            }
        }
        out
    }

    async fn dispatch(&mut self) {
        let ups = self.diff();
        for (o, u) in ups {
            let now = self.now;
            let a = self.strat(o).on_order(&u, now);
            self.execute(o, a).await;
        }
    }

    async fn tick(&mut self) {
        self.dispatch().await;
        let m = self.market();
        for k in 0..self.count() {
            let now = self.now;
            let a = self.strat(k).on_tick(&m, now);
            self.execute(k, a).await;
        }
    }

    async fn set_price(&mut self, p: Decimal) {
        self.ex.set_price("DOGEUSD", p, self.now).unwrap();
        self.dispatch().await;
    }

    async fn command(&mut self, cmd: Command) -> Result<String, String> {
        let r = self.grid.command(&cmd, self.now).unwrap();
        match r {
            Ok((msg, actions)) => {
                self.execute(0, actions).await;
                Ok(msg)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs `steps` steps of `step_ms`, moving the price path each step.
    async fn run(&mut self, steps: u32, step_ms: i64) {
        for _ in 0..steps {
            self.now += step_ms;
            self.ex.step(self.now);
            self.tick().await;
        }
    }

    fn known_orders(&self) -> Vec<KnownOrder> {
        self.tracked
            .keys()
            .filter_map(|id| {
                let st = self
                    .ex
                    .query(&[OrderRef {
                        client_order_id: id.clone(),
                        venue_order_id: None,
                    }])
                    .into_iter()
                    .next()?;
                Some(KnownOrder {
                    client_order_id: id.clone(),
                    status: format!("{:?}", st.status).to_ascii_lowercase(),
                    volume_executed: st.volume_executed,
                    average_price: st.average_price.unwrap_or_default(),
                    fee: st.fee,
                    fee_asset: st.fee_asset.clone(),
                    open_at_venue: st.status == OrderStatus::Open,
                })
            })
            .collect()
    }

    fn cycles(&self) -> Vec<CycleRecord> {
        self.journal
            .iter()
            .filter(|(s, k, _)| s == "grid" && k == "cycle")
            .map(|(_, _, p)| serde_json::from_str(p).unwrap())
            .collect()
    }
}

/// Backends: a SQLite file in `dir`, plus a fresh Postgres schema when
/// TEST_DATABASE_URL is set (as in tests/store.rs).
async fn backends(dir: &std::path::Path, name: &str) -> Vec<(String, String)> {
    let mut v = vec![(
        "sqlite".to_string(),
        format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("{name}.db")).display()
        ),
    )];
    if let Ok(base) = std::env::var("TEST_DATABASE_URL") {
        let schema = format!(
            "herd_test_{name}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let admin = sqlx::PgPool::connect(&base)
            .await
            .expect("TEST_DATABASE_URL must reach Postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        v.push((
            "postgres".to_string(),
            format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        ));
    }
    v
}

fn grid_cfg(slots: u32, mode: SlotMode) -> GridConfig {
    GridConfig {
        enabled: true,
        slots,
        mode,
        ..GridConfig::default()
    }
}

fn candidate(id: &str, band: Band, eff: Decimal, age: Decimal) -> ParentCandidate {
    ParentCandidate {
        position_id: id.into(),
        slot_id: 0,
        trade: "B".into(),
        effective_age_hours: eff,
        age_hours: age,
        band,
        subsidy_needed: Decimal::ZERO,
    }
}

#[test]
fn churner_spawn_refused_with_the_right_reason_for_each_gate() {
    let cfg = ChurnerConfig::default();
    let off = ChurnerConfig {
        enabled: false,
        ..ChurnerConfig::default()
    };
    let aging = vec![
        candidate("p1", Band::Aging, dec!(7), dec!(7)),
        candidate("p3", Band::Stuck, dec!(80), dec!(40)),
        candidate("p2", Band::Stuck, dec!(80), dec!(50)),
        candidate("p4", Band::Fresh, dec!(1), dec!(1)),
    ];
    let fresh_only = vec![candidate("p4", Band::Fresh, dec!(5.9), dec!(5.9))];
    let bullish = RegimeView {
        regime: "BULLISH".into(),
        ..ranging()
    };
    let not_ready = RegimeView::not_ready();
    // (config, active, regime, headroom, candidates, expected)
    type Case<'a> = (
        &'a ChurnerConfig,
        u32,
        RegimeView,
        Option<i64>,
        &'a [ParentCandidate],
        Result<&'a str, Refusal>,
    );
    let cases: Vec<Case> = vec![
        (
            &off,
            0,
            ranging(),
            Some(100),
            &aging,
            Err(Refusal::Disabled),
        ),
        (
            &cfg,
            5,
            ranging(),
            Some(100),
            &aging,
            Err(Refusal::MaxActive { active: 5, max: 5 }),
        ),
        (
            &cfg,
            0,
            not_ready.clone(),
            Some(100),
            &aging,
            Err(Refusal::RegimeNotReady),
        ),
        // A RANGING label from a detector that is not ready fails closed.
        (
            &cfg,
            0,
            RegimeView {
                ready: false,
                ..ranging()
            },
            Some(100),
            &aging,
            Err(Refusal::RegimeNotReady),
        ),
        (
            &cfg,
            0,
            bullish,
            Some(100),
            &aging,
            Err(Refusal::NotRanging("BULLISH".into())),
        ),
        (
            &cfg,
            0,
            ranging(),
            None,
            &aging,
            Err(Refusal::HeadroomUnknown),
        ),
        (
            &cfg,
            0,
            ranging(),
            Some(9),
            &aging,
            Err(Refusal::Headroom {
                headroom: 9,
                min: 10,
            }),
        ),
        (
            &cfg,
            0,
            ranging(),
            Some(100),
            &fresh_only,
            Err(Refusal::NoParent),
        ),
        (&cfg, 0, ranging(), Some(100), &[], Err(Refusal::NoParent)),
        // Highest (effective_age, age, id): p2 (80, 50) beats p3 (80, 40).
        (&cfg, 4, ranging(), Some(10), &aging, Ok("p2")),
    ];
    for (c, active, regime, headroom, candidates, want) in cases {
        let got = churner::gate(&GateInput {
            cfg: c,
            active,
            regime: &regime,
            headroom,
            candidates,
        });
        match (&got, &want) {
            (Ok(p), Ok(id)) => assert_eq!(p.position_id, *id),
            (Err(g), Err(w)) => {
                assert_eq!(g, w);
                assert!(!g.to_string().is_empty());
            }
            _ => panic!("active {active} headroom {headroom:?}: got {got:?}, want {want:?}"),
        }
    }
}

/// One long-only slot whose exit is left behind by the market, a churner
/// that earns subsidy for it, and a subsidised reprice that spends it.
///
/// Hand computation: B buys 16.70006680 @ 0.11976 (market 0.12), exit
/// 0.1209576. The market drops to 0.115; the S1 rule orphans the exit after
/// 1350 s (it stays live, in recovery). 40 h later the position's effective
/// age is 40 * (1 + 5.18 / 5) = 81 h: stuck. The churner buys 17.41743049 @
/// 0.115 * 0.9985 = 0.1148275 (fee 0.005), and sells @ max(0.1148275 * 1.006,
/// 0.1148 * 1.0015) = 0.1155165 (fee 0.00503): net 0.01200060960761 -
/// 0.01003 = 0.00197060960761, routed to slot 0's subsidy (its parent needs
/// subsidy). The next tick moves the stuck exit down by what that pays for:
/// floor_to_tick(0.00197060960761 / 16.7000668 = 0.000118000103) = 0.000118,
/// to 0.1208396, costing 0.000118 * 16.7000668 = 0.0019706078824.
#[tokio::test]
async fn churner_profit_funds_the_parent_slot_and_a_subsidised_reprice_spends_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let grid = Grid::new(grid_cfg(1, SlotMode::LongOnly), "DOGEUSD", T0);
    let mut sim = Sim::new(&url, paper(0.0, 1), grid, Vec::new()).await;
    sim.tick().await;
    sim.set_price(dec!(0.1197)).await;
    let pos = sim.grid().ledger().open_positions().next().unwrap().clone();
    assert_eq!(pos.entry.price, dec!(0.11976));
    assert_eq!(pos.exit.price, dec!(0.1209576));
    sim.set_price(dec!(0.115)).await;
    sim.now += 1350 * S;
    sim.tick().await;
    assert_eq!(
        sim.grid().slots()[0].recovery.len(),
        1,
        "orphaned, still live"
    );
    // Spawn refused while the position is fresh.
    let e = sim.command(Command::SpawnChurner).await.unwrap_err();
    assert!(e.starts_with("no_parent"), "{e}");
    sim.now = T0 + 40 * H;
    sim.tick().await;
    let st = sim.grid().status_block(sim.now);
    assert_eq!(
        st.self_healing.bands.stuck, 1,
        "{:?}",
        st.self_healing.positions
    );
    assert_eq!(st.self_healing.subsidy[0].balance, Decimal::ZERO);
    // needed: (0.1209576 - max(0.115 * 1.002, 0.11976 * 1.005)) * volume
    //       = (0.1209576 - 0.1203588) * 16.7000668
    assert_eq!(st.self_healing.subsidy[0].needed, dec!(0.00999999999984));
    // Break-even by operator is refused without subsidy.
    let e = sim
        .command(Command::RepriceBreakEven {
            position_id: pos.id.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.contains("cannot pay"), "{e}");

    let msg = sim.command(Command::SpawnChurner).await.unwrap();
    assert!(msg.contains(&pos.id), "{msg}");
    let c = sim.grid().churners()[0].clone();
    let entry = c.entry.clone().unwrap();
    assert_eq!(
        (entry.side, entry.price, entry.volume),
        (Side::Buy, dec!(0.1148275), dec!(17.41743049))
    );
    sim.set_price(dec!(0.1148)).await;
    let exit = sim.grid().churners()[0].exit.clone().unwrap();
    assert_eq!(exit.price, dec!(0.1155165));
    sim.set_price(dec!(0.1156)).await;
    let st = sim.grid().status_block(sim.now);
    assert_eq!(st.self_healing.churner.cycles_total, 1);
    assert_eq!(st.self_healing.churner.profit_total, dec!(0.00197060960761));
    assert_eq!(st.self_healing.subsidy[0].earned, dec!(0.00197060960761));
    // The next tick spends it on the stuck exit (partial move, whole ticks).
    sim.now += S;
    sim.tick().await;
    sim.now += S;
    sim.tick().await;
    let p = sim.grid().ledger().position(&pos.id).unwrap().clone();
    assert_eq!(p.exit.price, dec!(0.1208396));
    let acct = sim.grid().ledger().subsidy_of(0);
    assert_eq!(acct.consumed, dec!(0.0019706078824));
    assert_eq!(acct.balance(), dec!(0.00000000172521));
    assert_eq!(p.exit.reprices, 1);
    // The live order on the venue moved too.
    let live = sim.ex.open_orders();
    assert!(
        live.iter()
            .any(|o| o.client_order_id == p.exit.order_id && o.price == Some(dec!(0.1208396))),
        "{live:?}"
    );
    // Within the 3600 s cooldown no second reprice, even with new subsidy.
    assert_eq!(
        sim.grid().ledger().subsidy_of(0),
        Ledger::replay(
            sim.journal
                .iter()
                .filter(|j| j.0 == "grid")
                .map(|j| (j.1.as_str(), j.2.as_str()))
        )
        .unwrap()
        .subsidy_of(0)
    );
    // Kill the churner: it leaves once its orders are done.
    let msg = sim
        .command(Command::KillChurner { churner_id: 0 })
        .await
        .unwrap();
    assert!(msg.contains("killed"), "{msg}");
    sim.now += S;
    sim.tick().await;
    assert!(sim.grid().churners().is_empty());
    // Operator close at market of the parent: a market order books it.
    let before = sim.grid().ledger().realized(None);
    sim.command(Command::CloseAtMarket {
        position_id: pos.id.clone(),
    })
    .await
    .unwrap();
    let p = sim.grid().ledger().position(&pos.id).unwrap().clone();
    let o = p.outcome.expect("closed");
    assert_eq!(o.kind, "market_close");
    assert!(sim.grid().ledger().realized(None) < before);
}

/// A crash mid-cycle: the journal in the store rebuilds the same positions
/// and subsidy, and the restarted grid adopts the live exits and keeps
/// booking them. On SQLite, and on Postgres when TEST_DATABASE_URL is set.
#[tokio::test]
async fn journal_replay_after_a_crash_mid_cycle_gives_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, url) in backends(dir.path(), "replay").await {
        let grid = Grid::new(grid_cfg(3, SlotMode::Both), "DOGEUSD", T0);
        let mut sim = Sim::new(&url, paper(0.002, 11), grid, Vec::new()).await;
        sim.run(1500, 10 * S).await;
        let live = sim.grid().ledger().clone();
        // The ledger's index of open positions agrees with a scan of all.
        let indexed: Vec<&str> = live.open_positions().map(|p| p.id.as_str()).collect();
        let scanned: Vec<&str> = live
            .positions()
            .filter(|p| p.is_open())
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(indexed, scanned, "{backend}");
        let open = live.open_positions().count();
        let closed = live.position_count() - open;
        assert_eq!(closed, live.closed_positions().count(), "{backend}");
        assert!(
            open > 0 && closed > 0,
            "{backend}: mid-cycle: {open} open, {closed} closed"
        );
        // The "crash": nothing but the store survives.
        let store = Store::connect(&url).await.unwrap();
        let rows: Vec<JournalRow> = store
            .journal("grid")
            .await
            .unwrap()
            .into_iter()
            .map(|(kind, payload, time_ms)| JournalRow {
                kind,
                payload,
                time_ms,
            })
            .collect();
        let replayed =
            Ledger::replay(rows.iter().map(|r| (r.kind.as_str(), r.payload.as_str()))).unwrap();
        assert_eq!(replayed, live, "{backend}");
        for slot in 0..3 {
            assert_eq!(replayed.subsidy_of(slot), live.subsidy_of(slot));
        }
        // While the engine is down the market rises through the lowest
        // resting sell: entries (and exits) fill with no one watching.
        let open_before: Vec<String> = sim
            .ex
            .open_orders()
            .into_iter()
            .map(|o| o.client_order_id)
            .collect();
        let lowest_sell = sim
            .ex
            .open_orders()
            .into_iter()
            .filter(|o| o.side == herd_venue::Side::Sell)
            .filter_map(|o| o.price)
            .min()
            .unwrap();
        sim.ex.set_price("DOGEUSD", lowest_sell, sim.now).unwrap();
        let known = sim.known_orders();
        let filled_down = |role: &str| {
            known
                .iter()
                .filter(|k| open_before.contains(&k.client_order_id))
                .filter(|k| k.status == "filled" && k.client_order_id.contains(role))
                .count()
        };
        let (entries_down, exits_down) = (filled_down("e-"), filled_down("x-"));
        assert!(
            entries_down + exits_down > 0,
            "{backend}: something filled while down"
        );

        // The restarted engine: the same ledger, plus the exits that filled
        // while down booked; live exits adopted; stale entries cancelled.
        // A restart runs in a later wall-clock second (fresh_run_start_ms).
        let mut restarted = Grid::new(grid_cfg(3, SlotMode::Both), "DOGEUSD", T0 + 1_000);
        let actions = restarted.restore(&rows, &known, sim.now);
        let r = restarted.ledger();
        assert_eq!(r.position_count(), live.position_count(), "{backend}");
        for p in live.positions() {
            let q = r.position(&p.id).unwrap();
            assert_eq!(
                (&q.entry, q.slot_id, q.mode),
                (&p.entry, p.slot_id, p.mode),
                "{backend}"
            );
            if p.outcome.is_some() {
                assert_eq!(q.outcome, p.outcome, "{backend}: outcomes are written once");
            }
        }
        let newly_closed = r.positions().filter(|p| !p.is_open()).count()
            - live.positions().filter(|p| !p.is_open()).count();
        assert_eq!(newly_closed, exits_down, "{backend}");
        for slot in 0..3 {
            assert_eq!(r.subsidy_of(slot), live.subsidy_of(slot));
        }
        let live_exits = known
            .iter()
            .filter(|k| k.open_at_venue && k.client_order_id.contains("x-"))
            .count();
        let adopted: usize = restarted.slots().iter().map(|s| s.recovery.len()).sum();
        assert_eq!(adopted, live_exits, "{backend}");
        let cancels = actions
            .iter()
            .filter(|a| matches!(a, Action::Cancel { .. }))
            .count();
        let open_entries = known
            .iter()
            .filter(|k| k.open_at_venue && k.client_order_id.contains("e-"))
            .count();
        assert_eq!(cancels, open_entries, "{backend}");
        // The adopted live exits hold their funds in the capital ledger, as
        // before the restart (the chaos soak found them holding nothing).
        let capital = serde_json::to_value(&restarted.status_block(sim.now).capital).unwrap();
        for k in known
            .iter()
            .filter(|k| k.open_at_venue && k.client_order_id.contains("x-"))
        {
            let hold = &capital["holds"][&k.client_order_id];
            assert!(
                hold["committed_at_ms"].is_i64(),
                "{backend}: {k:?} holds {hold}"
            );
        }
        // A restore cancel refused (a lockout) is asked again after a
        // while, until the order's final event (the soak found the entry
        // left open and owned by no slot).
        let cancelled: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Cancel { client_order_id } => Some(client_order_id.clone()),
                _ => None,
            })
            .collect();
        let mut probe = restarted.clone();
        let update = |id: &str, kind: UpdateKind, message: &str| OrderUpdate {
            client_order_id: id.to_string(),
            kind,
            volume_executed: Decimal::ZERO,
            average_price: None,
            fill_volume: Decimal::ZERO,
            fill_price: Decimal::ZERO,
            fill_fee: Decimal::ZERO,
            fee_asset: String::new(),
            message: message.to_string(),
        };
        let retried = |actions: Vec<Action>| -> Vec<String> {
            let mut v: Vec<String> = actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::Cancel { client_order_id } if cancelled.contains(&client_order_id) => {
                        Some(client_order_id)
                    }
                    _ => None,
                })
                .collect();
            v.sort();
            v
        };
        for id in &cancelled {
            probe.on_order(
                &update(
                    id,
                    UpdateKind::CancelFailed,
                    "locked out: EGeneral:Temporary lockout",
                ),
                sim.now,
            );
        }
        let market = sim.market();
        assert!(retried(probe.on_tick(&market, sim.now + 1_000)).is_empty());
        let mut want = cancelled.clone();
        want.sort();
        assert_eq!(
            retried(probe.on_tick(&market, sim.now + 5_000)),
            want,
            "{backend}"
        );
        for id in &cancelled {
            probe.on_order(&update(id, UpdateKind::Canceled, ""), sim.now + 5_100);
        }
        assert!(retried(probe.on_tick(&market, sim.now + 20_000)).is_empty());
        let opened_before = restarted.ledger().position_count();
        sim.grid = restarted;
        sim.execute(0, actions).await;
        sim.tick().await;
        // The entries that filled while down are positions now, with exits.
        assert_eq!(
            sim.grid().ledger().position_count(),
            opened_before + entries_down,
            "{backend}"
        );
        // Run on with the restarted grid: the ledger stays consistent.
        sim.run(1500, 10 * S).await;
        let rows = store.journal("grid").await.unwrap();
        let replayed = Ledger::replay(rows.iter().map(|r| (r.0.as_str(), r.1.as_str()))).unwrap();
        assert_eq!(&replayed, sim.grid().ledger(), "{backend}");
        assert_eq!(replayed.conflicts, 0, "{backend}");
        store.close().await;
    }
}

/// Hours on the paper venue with several slots (one sticky), orphans, a
/// churner and rangers all active; the ledger's realized PnL equals the sum
/// of the journaled cycles, to the last decimal.
#[tokio::test]
async fn multi_hour_paper_run_ledger_matches_the_journaled_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("run.db").display());
    let mut cfg = grid_cfg(4, SlotMode::Both);
    cfg.sticky = vec![3];
    let grid = Grid::new(cfg, "DOGEUSD", T0);
    let rangers = Rangers::new(
        RangerConfig {
            enabled: true,
            max_slots: 2,
            ..RangerConfig::default()
        },
        "DOGEUSD",
        T0,
    );
    let mut sim = Sim::new(&url, paper(0.0025, 5), grid, vec![Box::new(rangers)]).await;
    let mut spawned = false;
    for _hour in 0..12 {
        sim.run(360, 10 * S).await;
        if !spawned && sim.command(Command::SpawnChurner).await.is_ok() {
            spawned = true;
        }
    }
    let g = sim.grid();
    let st = g.status_block(sim.now);
    let cycles = sim.cycles();
    assert!(cycles.len() >= 10, "{} cycles", cycles.len());
    assert!(st.total_orphans > 0, "orphans happen");
    assert!(spawned, "a churner ran: {:?}", st.self_healing);
    assert!(
        st.self_healing.churner.cycles_total > 0,
        "{:?}",
        st.self_healing.churner
    );
    let rangers = sim.journal.iter().filter(|j| j.0 == "rangers").count();
    assert!(rangers > 0, "the rangers traded");
    // Slot ledger vs journaled cycles.
    let grid_realized = g.ledger().realized(Some(PositionMode::Grid))
        + g.ledger().realized(Some(PositionMode::Sticky));
    let journaled: Decimal = cycles.iter().map(|c| c.net).sum();
    assert_eq!(grid_realized, journaled);
    assert_eq!(st.total_profit, journaled, "slot counters agree");
    // Churner positions vs the churners' own count.
    assert_eq!(
        g.ledger().realized(Some(PositionMode::Churner)),
        st.self_healing.churner.profit_total
    );
    // And the journal in the store rebuilds exactly this ledger.
    let store = Store::connect(&url).await.unwrap();
    let rows = store.journal("grid").await.unwrap();
    let replayed = Ledger::replay(rows.iter().map(|r| (r.0.as_str(), r.1.as_str()))).unwrap();
    assert_eq!(&replayed, g.ledger());
    assert_eq!(
        replayed.realized(None),
        grid_realized + st.self_healing.churner.profit_total
    );
    assert_eq!(replayed.conflicts, 0);
    // Sticky slot 3 never orphaned.
    assert!(g.slots()[3].recovery.is_empty() && g.slots()[3].orphans == 0);
    assert!(
        g.slots().iter().all(|s| s.halted.is_none()),
        "no slot halted"
    );
}

/// Evictions count toward the daily loss lock: two orphans on a one-slot
/// grid with room for one recovery order evict the first at market.
///
/// B buys 16.70006680 @ 0.11976 (fee 0.005); the market falls to 0.115 and
/// the exit (0.1209576) is orphaned after 1350 s; the next B entry buys
/// 17.42637186 @ 0.11477 (0.115 * 0.998); the market falls to 0.11 and that
/// exit is orphaned too, evicting the first (farther: 9.96 % vs 5.38 %) at
/// 0.11 with a maker fee: gross (0.11 - 0.11976) * 16.7000668 =
/// -0.162992651968, fee 0.11 * 16.7000668 * 0.0025 = 0.00459251837, net
/// -0.172585170338 <= -0.10: locked, no new entries until the UTC day changes.
#[tokio::test]
async fn evictions_count_toward_the_daily_loss_lock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("lock.db").display());
    let mut cfg = grid_cfg(1, SlotMode::LongOnly);
    cfg.slot.max_recovery = 1;
    cfg.daily_loss_limit_usd = dec!(0.10);
    let mut sim = Sim::new(
        &url,
        paper(0.0, 1),
        Grid::new(cfg, "DOGEUSD", T0),
        Vec::new(),
    )
    .await;
    sim.tick().await;
    sim.set_price(dec!(0.1197)).await;
    sim.set_price(dec!(0.115)).await;
    sim.now += 1350 * S;
    sim.tick().await;
    assert_eq!(sim.grid().slots()[0].recovery.len(), 1);
    sim.now += S;
    sim.tick().await;
    sim.set_price(dec!(0.1147)).await;
    let second = sim.grid().ledger().open_positions().count();
    assert_eq!(second, 2);
    sim.set_price(dec!(0.11)).await;
    sim.now += 1350 * S;
    sim.tick().await;
    let cycles = sim.cycles();
    let evicted: Vec<&CycleRecord> = cycles
        .iter()
        .filter(|c| c.kind == herd_strategies::grid::slot::CycleKind::Eviction)
        .collect();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].entry_price, dec!(0.11976));
    assert_eq!(evicted[0].net, dec!(-0.172585170338));
    let st = sim.grid().status_block(sim.now);
    assert!(st.daily_loss_lock);
    assert_eq!(st.realized_today, dec!(-0.172585170338));
    // No entry goes out while locked.
    sim.now += 120 * S;
    sim.tick().await;
    let slot = &sim.grid().slots()[0];
    assert!(slot.orders.is_empty(), "{:?}", slot.orders);
    assert!(
        slot.last_error.contains("daily loss lock"),
        "{}",
        slot.last_error
    );
    // The UTC day changes: the lock lifts.
    sim.now = (sim.now / (24 * H) + 1) * 24 * H + S;
    sim.tick().await;
    assert!(!sim.grid().status_block(sim.now).daily_loss_lock);
    assert_eq!(sim.grid().slots()[0].orders.len(), 1);
}

/// Entries reserve funds first (the shared capital ledger): with $0.50 free
/// the $2 buy entry is refused before it reaches the venue, the sell entry
/// (DOGE) goes out.
#[tokio::test]
async fn entries_reserve_funds_before_placing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cap.db").display());
    let mut p = paper(0.0, 1);
    p.balances.insert("USD".into(), dec!(0.5));
    let mut sim = Sim::new(
        &url,
        p,
        Grid::new(grid_cfg(1, SlotMode::Both), "DOGEUSD", T0),
        Vec::new(),
    )
    .await;
    sim.tick().await;
    let open = sim.ex.open_orders();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].side, herd_venue::Side::Sell);
    let slot = &sim.grid().slots()[0];
    assert!(slot.last_error.contains("capital"), "{}", slot.last_error);
    assert_eq!(slot.orders.len(), 1);
}

/// With `mode_from_regime`, a BULLISH reading makes the slots long-only
/// (the sell entry is cancelled) and RANGING brings both trades back.
#[tokio::test]
async fn slots_follow_the_regime_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("mode.db").display());
    let mut cfg = grid_cfg(1, SlotMode::Both);
    cfg.mode_from_regime = true;
    let mut sim = Sim::new(
        &url,
        paper(0.0, 1),
        Grid::new(cfg, "DOGEUSD", T0),
        Vec::new(),
    )
    .await;
    sim.tick().await;
    assert_eq!(sim.ex.open_orders().len(), 2);
    sim.regime = RegimeView {
        regime: "BULLISH".into(),
        ..ranging()
    };
    sim.now += S;
    sim.tick().await;
    let open = sim.ex.open_orders();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].side, herd_venue::Side::Buy);
    assert!(sim.grid().status_block(sim.now).slots[0].long_only);
    sim.regime = ranging();
    sim.now += S;
    sim.tick().await;
    assert_eq!(sim.ex.open_orders().len(), 2);
}

/// The volatility-adjusted profit: with factor 10 over the last hour, a
/// 0.12 -> 0.1202 range (0.16667 %) raises the exit profit to 1.6667 %:
/// B's fill at 0.11976 exits at 0.11976 * 1.016667 = 0.12175604 -> 0.1217561.
#[tokio::test]
async fn volatility_raises_the_exit_profit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("vol.db").display());
    let mut cfg = grid_cfg(1, SlotMode::Both);
    cfg.volatility_profit_factor = dec!(10);
    let mut sim = Sim::new(
        &url,
        paper(0.0, 1),
        Grid::new(cfg, "DOGEUSD", T0),
        Vec::new(),
    )
    .await;
    sim.tick().await;
    assert_eq!(sim.grid().profit_pct(), dec!(1.00));
    sim.set_price(dec!(0.1202)).await;
    sim.now += S;
    sim.tick().await;
    assert_eq!(sim.grid().profit_pct(), dec!(1.6667));
    sim.set_price(dec!(0.1197)).await;
    let p = sim.grid().ledger().open_positions().next().unwrap().clone();
    assert_eq!(
        (p.entry.price, p.exit.price),
        (dec!(0.11976), dec!(0.1217561))
    );
    // An hour later the range has left the window: back to 1 %.
    sim.now += 3_601 * S;
    sim.tick().await;
    assert_eq!(sim.grid().profit_pct(), dec!(1.00));
}

/// A configuration reload hands the grid new parameters between two
/// decisions (`Strategy::reconfigure`): working orders, slots and the
/// ledger stay, the new values show at once and drive the next decision,
/// and the restart-only fields (slot count, sticky slots, userref offsets)
/// keep what the grid was built with.
#[tokio::test]
async fn reconfigure_keeps_state_and_applies_to_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("re.db").display());
    let cfg = grid_cfg(1, SlotMode::Both);
    let mut sim = Sim::new(
        &url,
        paper(0.0, 1),
        Grid::new(cfg.clone(), "DOGEUSD", T0),
        Vec::new(),
    )
    .await;
    sim.tick().await;
    let before: Vec<String> = sim
        .ex
        .open_orders()
        .iter()
        .map(|o| o.client_order_id.clone())
        .collect();
    assert_eq!(before.len(), 2, "{before:?}");

    let mut new = cfg.clone();
    new.slot.order_size_usd = dec!(4);
    new.daily_loss_limit_usd = dec!(9);
    new.mode = SlotMode::LongOnly;
    new.slots = 5;
    new.sticky = vec![0];
    new.userref_offset = 300;
    let rangers = RangerConfig::default();
    let params = herd_strategies::strategy::Params {
        rangers: &rangers,
        grid: &new,
    };
    let actions = sim.grid.reconfigure(&params, sim.now);
    assert!(actions.is_empty(), "{actions:?}");
    // Nothing was dropped: the same orders are open, the slots are the same.
    let after: Vec<String> = sim
        .ex
        .open_orders()
        .iter()
        .map(|o| o.client_order_id.clone())
        .collect();
    assert_eq!(after, before);
    let st = sim.grid().status_block(sim.now);
    assert_eq!(st.slots.len(), 1, "the slot count is restart-only");
    assert!(!st.slots[0].sticky, "sticky slots are restart-only");
    assert_eq!(st.daily_loss_limit_usd, dec!(9));
    assert!(st.slots.iter().all(|s| s.order_size_usd == dec!(4)));
    // The next decision uses the new mode: the sell entries go.
    sim.now += S;
    sim.tick().await;
    let open = sim.ex.open_orders();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].side, herd_venue::Side::Buy);
    assert!(
        before.contains(&open[0].client_order_id),
        "the buy entry stays"
    );
}
