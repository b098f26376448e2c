#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The funding orchestrator on the paper exchange, driven directly (no
//! gateway) on a manual clock: a multi-day run over a synthetic funding
//! path with PnL checked against the venue to the cent, rollback of a
//! filled leg, legs that time out and are resolved by polling, the margin
//! bands and the one-shot emergency controller, skipped cycles, failing
//! steps, close retries, drift and a restart from the store.

#[path = "support/funding_sim.rs"]
mod funding_sim;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use funding_sim::{HOUR_MS, START_MS, SimApi, pair};
use herd_engine::funding::Orchestrator;
use herd_engine::store::Store;
use herd_strategies::funding::FundingConfig;
use herd_strategies::funding::position::PositionState;
use herd_strategies::funding::risk::Rejection;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const AAA: &str = "AAAUSDT-PERP";
const BBB: &str = "BBBUSDT-PERP";

fn cfg() -> FundingConfig {
    FundingConfig {
        enabled: true,
        leg_timeout_ms: 300,
        resolve_timeout_ms: 2_000,
        poll_interval_ms: 20,
        ..FundingConfig::default()
    }
}

async fn store(dir: &tempfile::TempDir) -> Store {
    Store::open_sqlite_dir(dir.path(), "e-funding")
        .await
        .unwrap()
}

fn active(ps: &[herd_strategies::funding::position::FundingPosition]) -> Vec<String> {
    ps.iter()
        .filter(|p| p.state.is_active())
        .map(|p| p.symbol.clone())
        .collect()
}

/// Six days, a cycle every hour. AAA (8 h funding) is rich, sits between
/// the exit and entry rates (nothing happens), decays (closes), then turns
/// rich again (reopens). BBB (4 h) is rich, then flickers around the exit
/// rate (the hysteresis keeps it), then decays (closes). PnL = funding -
/// fees, equal to the venue's equity change to the cent.
#[tokio::test]
async fn multi_day_run_opens_rich_closes_decayed_and_pnl_matches_the_venue() {
    let dir = tempfile::tempdir().unwrap();
    let mut instruments = pair("AAA", dec!(100), 8, dec!(0.0015));
    instruments.extend(pair("BBB", dec!(20), 4, dec!(0.0012)));
    let api = SimApi::new(instruments);
    let equity_start = api.equity();
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    let aaa = |h: i64| match h {
        0..40 => dec!(0.0015),
        40..48 => dec!(0.0004),
        48..72 => dec!(0.00005),
        72..96 => dec!(0.00002),
        _ => dec!(0.002),
    };
    let bbb = |h: i64| match h {
        0..24 => dec!(0.0012),
        24..48 if h % 2 == 0 => dec!(0.00009),
        24..48 => dec!(0.00011),
        _ => dec!(0.00001),
    };
    let mut opened_at: Vec<(String, i64)> = Vec::new();
    let mut closed_at: Vec<(String, i64)> = Vec::new();
    for h in 0..144 {
        api.clock.set_ms(START_MS + h * HOUR_MS + 60_000);
        api.set_rate(AAA, aaa(h));
        api.set_rate(BBB, bbb(h));
        let r = orch.run_cycle().await;
        assert!(r.errors.is_empty(), "hour {h}: {:?}", r.errors);
        opened_at.extend(r.opened.into_iter().map(|s| (s, h)));
        closed_at.extend(r.closed.into_iter().map(|s| (s, h)));
    }
    // Both open at once; BBB survives the flicker (24 h to 48 h) and closes
    // on the second cycle below the exit rate; AAA closes once decayed
    // (again the second cycle) and reopens when rich.
    assert_eq!(
        opened_at,
        vec![(AAA.into(), 0), (BBB.into(), 0), (AAA.into(), 96)]
    );
    assert_eq!(closed_at, vec![(AAA.into(), 49), (BBB.into(), 49)]);
    let positions = orch.positions().await;
    assert_eq!(active(&positions), vec![AAA.to_string()]);
    for p in &positions {
        // 1000 USD * 0.999 / price on the perp's 0.01 step.
        let want = if p.symbol == AAA {
            dec!(9.99)
        } else {
            dec!(49.95)
        };
        assert_eq!(p.hedge_target, want, "{}", p.id);
        assert!(
            p.funding > Decimal::ZERO,
            "{} collected {}",
            p.id,
            p.funding
        );
    }

    let status = orch.handle().status();
    let pf = status.portfolio.clone().unwrap();
    let funding: Decimal = pf.total_funding.parse().unwrap();
    let fees: Decimal = pf.total_fees.parse().unwrap();
    let net: Decimal = pf.net_pnl.parse().unwrap();
    // Funding: exactly what the venue booked.
    assert_eq!(funding, api.funding_booked());
    // Hand check of one settlement: AAA's first 8 h settlement paid
    // 9.99 * 100 * 0.0015 = 1.4985 to the short.
    let first = herd_engine::store::Store::open_sqlite_dir(dir.path(), "e-funding")
        .await
        .unwrap()
        .funding_payments(&positions[0].id)
        .await
        .unwrap();
    assert_eq!(first[0].amount, dec!(1.4985));
    // Funding minus fees, to the cent (flat prices: only the tick spread).
    assert!(
        (net - (funding - fees)).abs() < dec!(0.005),
        "net {net} funding {funding} fees {fees}"
    );
    // And the venue agrees: its equity moved by the same amount.
    let equity_delta = api.equity() - equity_start;
    assert!(
        (equity_delta - net).abs() < dec!(0.005),
        "equity moved {equity_delta}, tracker says {net}"
    );
    assert_eq!(status.cycles.unwrap().run, 144);
    assert_eq!(status.mode, "paper");
    let ranking = status.ranking;
    assert_eq!(ranking[0].symbol, AAA);
    // 0.002 - 0.0031 / 3 = 0.00096667 per 8 h, * 1095 = 1.0585.
    assert_eq!(ranking[0].annualized, "1.0585");
    // Snapshots of the PnL were stored every cycle.
    let history = store(&dir).await.funding_pnl_history().await.unwrap();
    assert_eq!(history.len(), 144);
    assert_eq!(history.last().unwrap().net, net);
}

/// The perp leg is refused after the spot leg filled: the spot is sold back
/// and nothing stays open.
#[tokio::test]
async fn rollback_when_the_perp_leg_fails_after_the_spot_filled() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    api.faults().refuse.insert(AAA.into());
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    let r = orch.run_cycle().await;
    assert!(r.opened.is_empty());
    let p = &orch.positions().await[0];
    assert_eq!(p.state, PositionState::Failed, "{p:?}");
    assert!(p.close_reason.starts_with("rollback"), "{}", p.close_reason);
    assert_eq!(p.spot_qty, dec!(0));
    // The venue: no perp, the coins sold back (only sub-step dust remains).
    assert_eq!(api.perp_position(AAA), dec!(0));
    assert!(api.balance("AAA") < dec!(0.0001), "{}", api.balance("AAA"));
    let sent = api.sent.lock().unwrap().clone();
    let sides: Vec<(&str, &str)> = sent
        .iter()
        .map(|o| (o.symbol.as_str(), o.side.as_str()))
        .collect();
    assert_eq!(
        sides,
        vec![("AAAUSDT", "buy"), (AAA, "sell"), ("AAAUSDT", "sell")]
    );
    // The rollback's cost is booked: two spot fees, no funding.
    assert!(p.fees > dec!(1.9) && p.fees < dec!(2.1), "{}", p.fees);
    let fills = store(&dir).await.funding_fills(&p.id).await.unwrap();
    let purposes: Vec<&str> = fills.iter().map(|f| f.purpose.as_str()).collect();
    assert_eq!(purposes, vec!["open", "rollback"]);
    // Nothing is retried on the next cycle while the perp stays refused,
    // and nothing is left hanging.
    api.faults().refuse.clear();
    orch.run_cycle().await;
    assert_eq!(active(&orch.positions().await), vec![AAA.to_string()]);
    assert_eq!(api.perp_position(AAA), dec!(-9.99));
}

/// Both legs miss the deadline. Their outcomes are resolved by polling the
/// venue by client order id: both filled -> a hedged position; the spot
/// filled and the perp never reached the venue -> the spot is unwound. No
/// orphan exposure either way.
#[tokio::test]
async fn both_legs_time_out_and_polling_resolves_them() {
    struct Case {
        name: &'static str,
        spot_lost: bool,
        perp_lost: bool,
        state: PositionState,
        perp: Decimal,
    }
    let cases = [
        Case {
            name: "both filled behind the deadline",
            spot_lost: false,
            perp_lost: false,
            state: PositionState::Open,
            perp: dec!(-9.99),
        },
        Case {
            name: "perp never reached the venue",
            spot_lost: false,
            perp_lost: true,
            state: PositionState::Failed,
            perp: dec!(0),
        },
        Case {
            name: "neither reached the venue",
            spot_lost: true,
            perp_lost: true,
            state: PositionState::Failed,
            perp: dec!(0),
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
        {
            let mut f = api.faults();
            for (symbol, lost) in [("AAAUSDT", c.spot_lost), (AAA, c.perp_lost)] {
                if lost {
                    f.lost.insert(symbol.into());
                } else {
                    f.hang_after_place.insert(symbol.into());
                }
            }
        }
        let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
        let started = tokio::time::Instant::now();
        orch.run_cycle().await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{}: the deadline",
            c.name
        );
        // Rollback orders must be answered: only the opening legs hang.
        api.faults().hang_after_place.clear();
        api.faults().lost.clear();
        let p = orch.positions().await[0].clone();
        let p = if p.state == PositionState::Unwinding {
            orch.run_cycle().await;
            orch.positions().await[0].clone()
        } else {
            p
        };
        assert_eq!(p.state, c.state, "{}: {p:?}", c.name);
        assert!(p.pending.is_empty(), "{}", c.name);
        assert_eq!(api.perp_position(AAA), c.perp, "{}", c.name);
        let coins = api.balance("AAA");
        if c.state == PositionState::Open {
            assert!(coins >= dec!(9.99), "{}: {coins}", c.name);
        } else {
            assert!(coins < dec!(0.0001), "{}: orphan spot {coins}", c.name);
        }
    }
}

/// An outcome still unknown after the resolve budget stays pending; the
/// position sends nothing else and a later cycle resolves it.
#[tokio::test]
async fn unknown_outcome_survives_the_cycle_and_is_resolved_next() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    {
        let mut f = api.faults();
        f.hang_after_place.insert(AAA.into());
        f.hang_after_place.insert("AAAUSDT".into());
        f.blind_queries = true;
    }
    let config = FundingConfig {
        resolve_timeout_ms: 100,
        ..cfg()
    };
    let orch = Orchestrator::new(api.clone(), store(&dir).await, config);
    let r = orch.run_cycle().await;
    let p = orch.positions().await[0].clone();
    assert_eq!(p.state, PositionState::Opening, "{p:?}");
    assert_eq!(p.pending.len(), 2, "{p:?}");
    assert!(
        r.errors.iter().any(|e| e.contains("unknown")),
        "{:?}",
        r.errors
    );
    // Still blind: stays pending, nothing else is sent.
    orch.run_cycle().await;
    assert_eq!(orch.positions().await[0].pending.len(), 2);
    assert_eq!(api.sent.lock().unwrap().len(), 2);
    api.faults().blind_queries = false;
    orch.run_cycle().await;
    let p = orch.positions().await[0].clone();
    assert_eq!(p.state, PositionState::Open, "{p:?}");
    assert_eq!(api.sent.lock().unwrap().len(), 2, "nothing was resent");
    assert_eq!(api.perp_position(AAA), dec!(-9.99));
}

/// Margin alert (>= 0.8) stops opening; critical (>= 0.9) fires the
/// emergency stop exactly once: every position closed, opening stopped.
#[tokio::test]
async fn margin_bands_and_critical_fires_the_emergency_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut instruments = pair("AAA", dec!(100), 8, dec!(0.002));
    instruments.extend(pair("BBB", dec!(20), 8, dec!(0.002)));
    let api = SimApi::new(instruments);
    api.faults().margin_ratio = Some(dec!(0.85));
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    let r = orch.run_cycle().await;
    assert!(r.opened.is_empty());
    assert!(
        r.rejected.iter().any(|(_, why)| *why
            == Rejection::Margin {
                band: "alert".into()
            }),
        "{:?}",
        r.rejected
    );
    assert_eq!(orch.handle().status().margin_band, "alert");
    api.faults().margin_ratio = Some(dec!(0.3));
    orch.run_cycle().await;
    assert_eq!(active(&orch.positions().await).len(), 2);

    api.faults().margin_ratio = Some(dec!(0.95));
    let sent_before = api.sent.lock().unwrap().len();
    orch.run_cycle().await;
    let e = orch.handle().emergency();
    assert!(e.triggered && e.done, "{e:?}");
    assert!(e.reason.contains("0.95"), "{}", e.reason);
    assert!(e.failures.is_empty(), "{:?}", e.failures);
    assert!(active(&orch.positions().await).is_empty());
    assert_eq!(api.perp_position(AAA), dec!(0));
    assert_eq!(api.perp_position(BBB), dec!(0));
    let closes = api.sent.lock().unwrap().len() - sent_before;
    assert_eq!(closes, 4, "two legs per position");
    // Still critical: no second emergency, nothing sent, nothing opened.
    orch.run_cycle().await;
    api.faults().margin_ratio = Some(dec!(0.1));
    let r = orch.run_cycle().await;
    assert_eq!(api.sent.lock().unwrap().len() - sent_before, 4);
    assert!(
        r.rejected
            .iter()
            .all(|(_, why)| *why == Rejection::EmergencyStopped)
    );
    assert_eq!(orch.handle().emergency().at_ms, e.at_ms);
    assert!(!orch.handle().trigger_emergency("again", 1), "one-shot");
    let st = orch.handle().status();
    assert!(st.opening_paused && st.emergency.unwrap().triggered);
}

/// The emergency closes concurrently with three tries (1 s, then 2 s
/// apart); what still fails is reported as critical.
#[tokio::test]
async fn emergency_retries_and_reports_what_it_could_not_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut instruments = pair("AAA", dec!(100), 8, dec!(0.002));
    instruments.extend(pair("BBB", dec!(20), 8, dec!(0.002)));
    let api = SimApi::new(instruments);
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    orch.run_cycle().await;
    assert_eq!(active(&orch.positions().await).len(), 2);
    api.faults().refuse_close.insert(BBB.into(), u32::MAX);
    // AAA's perp close is refused twice, then works on the third try.
    api.faults().refuse_close.insert(AAA.into(), 2);
    let started = std::time::Instant::now();
    assert!(orch.emergency_now("operator").await);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "1 s + 2 s backoff"
    );
    let e = orch.handle().emergency();
    assert!(e.done);
    assert_eq!(e.failures.len(), 1, "{:?}", e.failures);
    assert!(e.failures[0].starts_with(BBB), "{:?}", e.failures);
    assert_eq!(api.perp_position(AAA), dec!(0));
    assert_eq!(api.perp_position(BBB), dec!(-49.95));
    assert!(!orch.emergency_now("again").await);
    // The close that failed stays on the books and is retried every cycle.
    let p = orch
        .positions()
        .await
        .into_iter()
        .find(|p| p.symbol == BBB)
        .unwrap();
    assert_eq!(p.state, PositionState::Closing);
    api.faults().refuse_close.clear();
    orch.run_cycle().await;
    assert!(active(&orch.positions().await).is_empty());
}

/// A cycle due while one runs is skipped and counted, not queued.
#[tokio::test]
async fn a_due_cycle_while_one_runs_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    let gate = Arc::new(tokio::sync::Notify::new());
    *api.rates_gate.lock().unwrap() = Some(gate.clone());
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    let running = tokio::spawn({
        let orch = orch.clone();
        async move { orch.run_cycle().await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !api.rates_waiting.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cycle never reached its scan"
        );
        tokio::task::yield_now().await;
    }
    assert!(orch.try_cycle().await.is_none());
    assert!(orch.try_cycle().await.is_none());
    *api.rates_gate.lock().unwrap() = None;
    gate.notify_one();
    running.await.unwrap();
    let cycles = orch.handle().status().cycles.unwrap();
    assert_eq!((cycles.run, cycles.skipped), (1, 2));
    assert!(orch.try_cycle().await.is_some());
}

/// One failing step does not stop the others: without rates nothing is
/// ranked, opened or closed, but the margin is still checked.
#[tokio::test]
async fn a_failing_step_does_not_kill_the_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    orch.run_cycle().await;
    assert_eq!(active(&orch.positions().await).len(), 1);
    api.faults().fail_rates = true;
    let r = orch.run_cycle().await;
    assert!(
        r.errors.iter().any(|e| e.contains("funding rates")),
        "{:?}",
        r.errors
    );
    // No rates is not "rate missing": the position stays.
    assert_eq!(active(&orch.positions().await).len(), 1);
    let st = orch.handle().status();
    assert_eq!(st.margin_band, "ok");
    assert!(!st.margin_ratio.is_empty());
    let cycles = st.cycles.unwrap();
    assert_eq!((cycles.run, cycles.failed), (2, 1));
    assert!(!cycles.last_errors.is_empty());
}

/// A close whose legs fail keeps the position and retries next cycle; the
/// minimum hold and the confirmations come first.
#[tokio::test]
async fn close_waits_for_the_hold_and_retries_when_a_leg_fails() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    api.clock.set_ms(START_MS + 60_000);
    orch.run_cycle().await;
    assert_eq!(active(&orch.positions().await).len(), 1);
    api.set_rate(AAA, dec!(0.00001));
    // Inside the 8 h hold: no close however many cycles.
    for m in 1..5 {
        api.clock.set_ms(START_MS + m * HOUR_MS);
        orch.run_cycle().await;
    }
    assert_eq!(active(&orch.positions().await).len(), 1);
    api.faults().refuse_close.insert(AAA.into(), 1);
    api.faults().refuse_close.insert("AAAUSDT".into(), 1);
    api.clock.set_ms(START_MS + 9 * HOUR_MS);
    let r = orch.run_cycle().await;
    assert!(r.closed.is_empty());
    let p = orch.positions().await[0].clone();
    assert_eq!(p.state, PositionState::Closing, "{p:?}");
    assert!(
        r.errors.iter().any(|e| e.contains("retried next cycle")),
        "{:?}",
        r.errors
    );
    let r = orch.run_cycle().await;
    assert_eq!(r.closed, vec![AAA.to_string()]);
    assert_eq!(api.perp_position(AAA), dec!(0));
}

/// Fill prices more than 2 % apart close both legs at once.
#[tokio::test]
async fn drift_above_two_percent_closes_both_legs() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    api.set_price(AAA, dec!(103));
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    let r = orch.run_cycle().await;
    let p = orch.positions().await[0].clone();
    assert_eq!(p.state, PositionState::Closed, "{p:?} {r:?}");
    assert!(p.close_reason.contains("drift"), "{}", p.close_reason);
    assert_eq!(api.perp_position(AAA), dec!(0));
}

/// A new orchestrator over the same store and venue picks the position up,
/// finds the venue in agreement and keeps collecting; a venue that no
/// longer agrees is reported, not traded over.
#[tokio::test]
async fn restart_reconciles_and_keeps_collecting() {
    let dir = tempfile::tempdir().unwrap();
    let api = SimApi::new(pair("AAA", dec!(100), 8, dec!(0.002)));
    api.clock.set_ms(START_MS + 60_000);
    {
        let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
        orch.run_cycle().await;
        api.clock.set_ms(START_MS + 8 * HOUR_MS + 60_000);
        orch.run_cycle().await;
        assert_eq!(orch.positions().await[0].funding, dec!(1.998));
    }
    let orch = Orchestrator::new(api.clone(), store(&dir).await, cfg());
    api.clock.set_ms(START_MS + 16 * HOUR_MS + 60_000);
    let r = orch.run_cycle().await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let p = orch.positions().await[0].clone();
    assert_eq!(p.state, PositionState::Open);
    assert_eq!((p.funding, p.funding_count), (dec!(3.996), 2));
    assert!(orch.handle().status().reconcile_mismatches.is_empty());
    assert_eq!(p.funding, api.funding_booked());

    // Someone buys back half the short behind the orchestrator's back.
    {
        let now = api.clock.now_ms();
        let mut ex = api.ex();
        ex.place(
            &herd_venue::NewOrder {
                client_order_id: "manual-1".into(),
                symbol: AAA.into(),
                side: herd_venue::Side::Buy,
                order_type: herd_venue::OrderType::Market,
                volume: dec!(5),
                price: None,
                post_only: false,
                userref: 0,
                reduce_only: true,
            },
            now,
        )
        .unwrap();
    }
    let sent = api.sent.lock().unwrap().len();
    api.set_rate(AAA, dec!(-0.001));
    orch.run_cycle().await;
    let st = orch.handle().status();
    assert_eq!(
        st.reconcile_mismatches.len(),
        1,
        "{:?}",
        st.reconcile_mismatches
    );
    assert!(
        st.reconcile_mismatches[0].contains("4.99"),
        "{:?}",
        st.reconcile_mismatches
    );
    // A negative rate would close it, but not over a mismatch.
    assert_eq!(api.sent.lock().unwrap().len(), sent);
    assert_eq!(active(&orch.positions().await), vec![AAA.to_string()]);
}

use herd_venue::Clock as _;
