#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The grid slot reducer on a fake clock (grid-engine spec section 1): every
//! phase transition, pricing rule and timer rule, with prices and profits
//! computed by hand:
//!
//! market 0.12; entry A (sell) 0.12 * 1.002 = 0.12024, volume $2 / 0.12024 =
//! 16.63339986 (8 lot decimals, down); entry B (buy) 0.12 * 0.998 = 0.11976,
//! volume 16.70006680. B fills at 0.11976 (fee 0.005 at 0.25 %); its exit is
//! max(0.11976 * 1.01, 0.12 * 1.002) = max(0.1209576, 0.12024) = 0.1209576;
//! gross (0.1209576 - 0.11976) * 16.7000668 = 0.01999999999968, exit fee
//! 0.00505, net 0.00994999999968 (about $0.01). A fills at 0.12024 (fee
//! 0.005); its exit min(0.12024 * 0.99, 0.12 * 0.998) = 0.1190376.

use herd_strategies::grid::config::{SlotMode, SlotParams};
use herd_strategies::grid::slot::{
    CycleKind, Filters, Pending, Phase, Role, SlotAction, SlotCtx, SlotEvent, SlotOrder, SlotState,
    Trade, backoff, entry_price, entry_volume, eviction_victim, exit_price, is_slot_client_id,
    transition,
};
use herd_strategies::strategy::Side;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1_000;

fn filters() -> Filters {
    Filters {
        tick_size: dec!(0.0000001),
        lot_decimals: 8,
        min_volume: dec!(10),
        min_cost: dec!(0.5),
        maker_fee: dec!(0.0025),
    }
}

fn ctx(params: &SlotParams) -> SlotCtx<'_> {
    SlotCtx {
        params,
        filters: filters(),
        profit_pct: params.profit_pct,
        entry_budget: 2,
        entries_blocked: None,
        userref_offset: 100,
        loss_room: None,
    }
}

struct Run {
    s: SlotState,
    p: SlotParams,
    budget: u32,
    blocked: Option<String>,
}

impl Run {
    fn new() -> Run {
        Run::with(SlotParams::default(), false, SlotMode::Both)
    }

    fn with(p: SlotParams, sticky: bool, mode: SlotMode) -> Run {
        Run {
            s: SlotState::new(0, sticky, mode, T0),
            p,
            budget: 2,
            blocked: None,
        }
    }

    fn ev(&mut self, e: SlotEvent) -> Vec<SlotAction> {
        let mut c = ctx(&self.p);
        c.entry_budget = self.budget;
        c.entries_blocked = self.blocked.clone();
        let (s, a) = transition(self.s.clone(), &e, &c);
        self.s = s;
        a
    }

    fn tick(&mut self, market: Decimal, t: i64) -> Vec<SlotAction> {
        self.ev(SlotEvent::PriceTick { market, now_ms: t })
    }

    fn fill(&mut self, id: &str, v: Decimal, p: Decimal, fee: Decimal, t: i64) -> Vec<SlotAction> {
        let e = if self.s.is_recovery(id) {
            SlotEvent::RecoveryFill {
                client_order_id: id.into(),
                volume: v,
                price: p,
                fee,
                done: true,
                now_ms: t,
            }
        } else {
            SlotEvent::Fill {
                client_order_id: id.into(),
                volume: v,
                price: p,
                fee,
                done: true,
                now_ms: t,
            }
        };
        self.ev(e)
    }

    fn canceled(&mut self, id: &str, t: i64) -> Vec<SlotAction> {
        let e = if self.s.is_recovery(id) {
            SlotEvent::RecoveryCancel {
                client_order_id: id.into(),
                now_ms: t,
            }
        } else {
            SlotEvent::Canceled {
                client_order_id: id.into(),
                now_ms: t,
            }
        };
        self.ev(e)
    }

    fn id(&self, t: Trade, r: Role) -> String {
        self.s.order_of(t, r).unwrap().client_order_id.clone()
    }

    fn phase(&self) -> Phase {
        self.s.phase().unwrap()
    }
}

fn places(a: &[SlotAction]) -> Vec<(Trade, Role, Side, Option<Decimal>, Decimal)> {
    a.iter()
        .filter_map(|x| match x {
            SlotAction::PlaceOrder(p) => Some((p.trade, p.role, p.side, p.price, p.volume)),
            _ => None,
        })
        .collect()
}

fn cancels(a: &[SlotAction]) -> Vec<String> {
    a.iter()
        .filter_map(|x| match x {
            SlotAction::CancelOrder {
                client_order_id, ..
            } => Some(client_order_id.clone()),
            _ => None,
        })
        .collect()
}

fn cycles(a: &[SlotAction]) -> Vec<herd_strategies::grid::slot::CycleRecord> {
    a.iter()
        .filter_map(|x| match x {
            SlotAction::BookCycle(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// S0 -> S1b -> S2 -> S1a -> S0 with both cycles booked to the cent.
fn to_s2(r: &mut Run) -> (String, String) {
    let a = r.tick(dec!(0.12), T0);
    assert_eq!(
        places(&a),
        vec![
            (
                Trade::A,
                Role::Entry,
                Side::Sell,
                Some(dec!(0.12024)),
                dec!(16.63339986)
            ),
            (
                Trade::B,
                Role::Entry,
                Side::Buy,
                Some(dec!(0.11976)),
                dec!(16.70006680)
            ),
        ]
    );
    assert_eq!(r.phase(), Phase::S0);
    let b_entry = r.id(Trade::B, Role::Entry);
    let a = r.fill(
        &b_entry,
        dec!(16.7000668),
        dec!(0.11976),
        dec!(0.005),
        T0 + 10 * S,
    );
    assert_eq!(
        places(&a),
        vec![(
            Trade::B,
            Role::Exit,
            Side::Sell,
            Some(dec!(0.1209576)),
            dec!(16.7000668)
        )]
    );
    let opened = a
        .iter()
        .find_map(|x| match x {
            SlotAction::PositionOpened(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(opened.position_id, b_entry);
    // target: 0.01999999999968 - 0.005 - 0.1209576 * 16.7000668 * 0.0025
    assert_eq!(opened.target_profit, dec!(0.0099499999997608));
    assert_eq!(r.phase(), Phase::S1b);
    let a_entry = r.id(Trade::A, Role::Entry);
    let a = r.fill(
        &a_entry,
        dec!(16.63339986),
        dec!(0.12024),
        dec!(0.005),
        T0 + 20 * S,
    );
    assert_eq!(
        places(&a),
        vec![(
            Trade::A,
            Role::Exit,
            Side::Buy,
            Some(dec!(0.1190376)),
            dec!(16.63339986)
        )]
    );
    assert_eq!(r.phase(), Phase::S2);
    (r.id(Trade::A, Role::Exit), r.id(Trade::B, Role::Exit))
}

#[test]
fn phases_s0_s1b_s2_s1a_s0_and_cycle_profits() {
    let mut r = Run::new();
    let (a_exit, b_exit) = to_s2(&mut r);
    let a = r.fill(
        &b_exit,
        dec!(16.7000668),
        dec!(0.1209576),
        dec!(0.00505),
        T0 + 30 * S,
    );
    let c = cycles(&a);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, CycleKind::Exit);
    assert_eq!(c[0].gross, dec!(0.01999999999968));
    assert_eq!(c[0].net, dec!(0.00994999999968));
    assert_eq!(c[0].net.round_dp(2), dec!(0.01));
    assert_eq!(r.phase(), Phase::S1a);
    assert_eq!(r.s.b.cycles, 1);
    // Re-entry delay 60 s: no B entry at +59 s, one at +60 s.
    assert!(places(&r.tick(dec!(0.12), T0 + 89 * S)).is_empty());
    let a = r.tick(dec!(0.12), T0 + 90 * S);
    assert_eq!(
        places(&a),
        vec![(
            Trade::B,
            Role::Entry,
            Side::Buy,
            Some(dec!(0.11976)),
            dec!(16.70006680)
        )]
    );
    assert_eq!(r.phase(), Phase::S1a);
    // A's exit fills: back to S0 (B's entry still working).
    let a = r.fill(
        &a_exit,
        dec!(16.63339986),
        dec!(0.1190376),
        dec!(0.00495),
        T0 + 100 * S,
    );
    let c = cycles(&a);
    // gross (0.12024 - 0.1190376) * 16.63339986 = 0.019999999991664
    assert_eq!(c[0].gross, dec!(0.019999999991664));
    assert_eq!(c[0].net, dec!(0.010049999991664));
    assert_eq!(r.phase(), Phase::S0);
    assert_eq!(r.s.cycles, 2);
    assert_eq!(r.s.profit, dec!(0.019999999991344));
}

#[test]
fn pricing_rules_table() {
    let p = SlotParams::default();
    let c = ctx(&p);
    // (losses, backoff)
    for (losses, want) in [
        (0, dec!(1)),
        (2, dec!(1)),
        (3, dec!(1.5)),
        (4, dec!(2.0)),
        (5, dec!(2.5)),
        (10, dec!(5)),
        (20, dec!(5)),
    ] {
        assert_eq!(backoff(&p, losses), want, "losses {losses}");
    }
    // (trade, market, losses, entry)
    for (t, m, losses, want) in [
        (Trade::A, dec!(0.12), 0, dec!(0.12024)),
        (Trade::B, dec!(0.12), 0, dec!(0.11976)),
        (Trade::A, dec!(0.12), 5, dec!(0.1206)),
        (Trade::B, dec!(0.12), 5, dec!(0.1194)),
        // Rounded away from market onto the tick.
        (Trade::A, dec!(0.12345), 0, dec!(0.1236969)),
        (Trade::B, dec!(0.12345), 0, dec!(0.1232031)),
    ] {
        assert_eq!(entry_price(t, m, &c, losses), want, "{t:?} {m} {losses}");
    }
    // (trade, fill, market, exit): the profit target, or the market floor.
    for (t, fill, m, want) in [
        (Trade::B, dec!(0.11976), dec!(0.12), dec!(0.1209576)),
        (Trade::B, dec!(0.11976), dec!(0.125), dec!(0.12525)),
        (Trade::A, dec!(0.12024), dec!(0.12), dec!(0.1190376)),
        (Trade::A, dec!(0.12024), dec!(0.115), dec!(0.114770)),
    ] {
        assert_eq!(exit_price(t, fill, m, &c), want, "{t:?} {fill} {m}");
    }
    // Volume: rounded down to the lot, never upsized below the minimums.
    assert_eq!(
        entry_volume(dec!(2), dec!(0.12024), &filters()).unwrap(),
        dec!(16.63339986)
    );
    let e = entry_volume(dec!(1), dec!(0.12), &filters()).unwrap_err();
    assert!(e.contains("below the minimum 10"), "{e}");
    let mut f = filters();
    f.min_volume = dec!(1);
    let e = entry_volume(dec!(0.4), dec!(0.12), &f).unwrap_err();
    assert!(e.contains("cost"), "{e}");
    // A runtime profit raised by volatility moves the exit out.
    let mut c2 = ctx(&p);
    c2.profit_pct = dec!(2);
    assert_eq!(exit_price(Trade::B, dec!(0.1), dec!(0.1), &c2), dec!(0.102));
}

#[test]
fn no_order_below_the_minimums_and_budget_and_lock() {
    let p = SlotParams {
        order_size_usd: dec!(1),
        ..SlotParams::default()
    };
    let mut r = Run::with(p, false, SlotMode::Both);
    assert!(places(&r.tick(dec!(0.12), T0)).is_empty());
    assert!(
        r.s.last_error.contains("below the minimum"),
        "{}",
        r.s.last_error
    );
    let mut r = Run::new();
    r.budget = 1;
    assert_eq!(places(&r.tick(dec!(0.12), T0)).len(), 1);
    let mut r = Run::new();
    r.blocked = Some("daily loss lock".into());
    assert!(places(&r.tick(dec!(0.12), T0)).is_empty());
    assert!(r.s.last_error.contains("daily loss lock"));
    // The cause gone, the next entry clears the error (issue 23: it used
    // to stay on the dashboard for good).
    r.blocked = None;
    assert_eq!(places(&r.tick(dec!(0.12), T0 + 1000)).len(), 2);
    assert_eq!(r.s.last_error, "", "a resolved cause still shown");
}

#[test]
fn modes_long_only_short_only() {
    let mut r = Run::with(SlotParams::default(), false, SlotMode::LongOnly);
    let a = r.tick(dec!(0.12), T0);
    assert_eq!(places(&a).len(), 1);
    assert_eq!(places(&a)[0].0, Trade::B);
    let b = r.id(Trade::B, Role::Entry);
    let a = r.ev(SlotEvent::SetMode {
        mode: SlotMode::ShortOnly,
        now_ms: T0 + S,
    });
    assert_eq!(cancels(&a), vec![b.clone()]);
    assert_eq!(places(&a).len(), 1, "A's entry goes out at once");
    assert_eq!(places(&a)[0].0, Trade::A);
    r.canceled(&b, T0 + 2 * S);
    assert!(r.s.order_of(Trade::B, Role::Entry).is_none());
    assert!(places(&r.tick(dec!(0.12), T0 + 3 * S)).is_empty());
}

#[test]
fn stale_entry_refresh_one_per_tick_and_anti_chase() {
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    // 0.1215: B at 0.11976 is 1.43 % away, A at 0.12024 is 1.04 % away;
    // only one is refreshed per tick.
    let a = r.tick(dec!(0.1215), T0 + S);
    assert_eq!(cancels(&a).len(), 1, "one refresh per tick");

    // The chase rule on a long-only slot (one entry).
    let mut r = Run::with(SlotParams::default(), false, SlotMode::LongOnly);
    r.tick(dec!(0.12), T0);
    let first = r.id(Trade::B, Role::Entry);
    let a = r.tick(dec!(0.1215), T0 + S);
    assert_eq!(cancels(&a), vec![first.clone()]);
    assert_eq!((r.s.refresh_dir, r.s.refresh_streak), (1, 1));
    // Nothing is re-placed until the venue confirms the cancel.
    assert!(places(&r.tick(dec!(0.1215), T0 + 2 * S)).is_empty());
    assert!(places(&r.canceled(&first, T0 + 3 * S)).is_empty());
    let a = r.tick(dec!(0.1215), T0 + 4 * S);
    // 0.1215 * 0.998 = 0.121257
    assert_eq!(places(&a)[0].3, Some(dec!(0.121257)));
    // Two more refreshes up in a row: the third starts the 300 s cooldown.
    let mut market = dec!(0.1215);
    let mut t = T0 + 5 * S;
    for streak in [2, 3] {
        market *= dec!(1.02);
        let a = r.tick(market, t);
        let c = cancels(&a);
        assert_eq!(c.len(), 1, "{a:?}");
        if streak < 3 {
            assert_eq!(r.s.refresh_streak, streak);
        }
        r.canceled(&c[0], t + S);
        if streak < 3 {
            assert_eq!(places(&r.tick(market, t + S)).len(), 1);
        }
        t += 2 * S;
    }
    let third = t - 2 * S;
    assert_eq!(r.s.refresh_cooldown_until_ms, third + 300 * S);
    assert_eq!(places(&r.tick(market, t)).len(), 1, "re-placed at market");
    let a = r.tick(market * dec!(1.02), t + S);
    assert!(cancels(&a).is_empty(), "cooldown: no refresh");
    let a = r.tick(market * dec!(1.02), third + 300 * S);
    assert_eq!(cancels(&a).len(), 1, "after the cooldown");
}

#[test]
fn s1_orphan_only_when_old_and_market_moved_away() {
    let mut r = Run::new();
    r.budget = 1;
    r.p.order_size_usd = dec!(2);
    r.tick(dec!(0.12), T0);
    r.budget = 2;
    let a_entry = r.id(Trade::A, Role::Entry);
    r.fill(&a_entry, dec!(16.63339986), dec!(0.12024), dec!(0.005), T0);
    assert_eq!(r.phase(), Phase::S1a);
    let exit = r.id(Trade::A, Role::Exit);
    // Market moved toward the exit: not orphaned even when old.
    assert!(
        r.tick(dec!(0.1195), T0 + 2000 * S)
            .iter()
            .all(|a| !matches!(a, SlotAction::OrphanOrder { .. }))
    );
    // Away, but young: not yet (1349 s).
    let a = r.tick(dec!(0.1225), T0 + 1349 * S);
    assert!(
        a.iter()
            .all(|a| !matches!(a, SlotAction::OrphanOrder { .. }))
    );
    // 1350 s: orphaned, the order stays live, trade A starts afresh.
    let a = r.tick(dec!(0.1225), T0 + 1350 * S);
    assert!(a.iter().any(|x| matches!(x, SlotAction::OrphanOrder { client_order_id, reason, .. } if *client_order_id == exit && reason == "s1_timeout")));
    assert!(cancels(&a).is_empty(), "the orphan stays on the venue");
    assert_eq!(r.s.recovery.len(), 1);
    assert_eq!(r.s.a.cycles, 1);
    assert!(
        places(&a)
            .iter()
            .any(|p| p.0 == Trade::A && p.1 == Role::Entry)
    );
    assert_eq!(r.phase(), Phase::S0);
    // The recovery order fills later: a recovery cycle at its price.
    let a = r.fill(
        &exit,
        dec!(16.63339986),
        dec!(0.1190376),
        dec!(0.00495),
        T0 + 3000 * S,
    );
    let c = cycles(&a);
    assert_eq!(c[0].kind, CycleKind::Recovery);
    assert_eq!(c[0].net, dec!(0.010049999991664));
    assert!(r.s.recovery.is_empty());
}

#[test]
fn sticky_slots_never_orphan() {
    let mut r = Run::with(SlotParams::default(), true, SlotMode::Both);
    let (_, _) = to_s2(&mut r);
    let a = r.tick(dec!(0.13), T0 + 100_000 * S);
    assert!(
        a.iter()
            .all(|a| !matches!(a, SlotAction::OrphanOrder { .. }))
    );
    assert_eq!(r.phase(), Phase::S2);
}

#[test]
fn s2_orphans_the_farther_exit_after_1800s_and_eviction_books_at_market() {
    let mut r = Run::new();
    let (a_exit, b_exit) = to_s2(&mut r);
    // S2 since the first tick that sees it.
    r.tick(dec!(0.119), T0 + 21 * S);
    let a = r.tick(dec!(0.119), T0 + (21 + 1799) * S);
    assert!(
        a.iter()
            .all(|a| !matches!(a, SlotAction::OrphanOrder { .. }))
    );
    // At 0.119: A's buy exit 0.1190376 is 0.03 % away, B's sell 0.1209576 1.6 %.
    let a = r.tick(dec!(0.119), T0 + (21 + 1800) * S);
    let orphaned: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            SlotAction::OrphanOrder {
                client_order_id, ..
            } => Some(client_order_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(orphaned, vec![b_exit.clone()]);
    assert_eq!(r.phase(), Phase::S1a);
    assert!(
        r.s.order_of(Trade::A, Role::Exit)
            .is_some_and(|o| o.client_order_id == a_exit)
    );

    // Two more orphans overflow the cap of 2: the farthest is evicted.
    let mut rec = r.s.recovery[0].clone();
    for (n, price) in [(1, dec!(0.125)), (2, dec!(0.1215))] {
        rec.client_order_id = format!("g0bx-extra{n}");
        rec.position_id = format!("g0be-extra{n}");
        rec.price = Some(price);
        r.s.recovery.push(rec.clone());
        if r.s.recovery.len() > 2 {
            break;
        }
    }
    assert_eq!(r.s.recovery.len(), 3);
    assert_eq!(eviction_victim(&r.s.recovery, dec!(0.115)), Some(1));
    // Let the slot enforce the cap itself through its next orphan: put the
    // state back to 2 and orphan A's exit.
    r.s.recovery.truncate(2);
    let a = r.tick(dec!(0.115), T0 + 10_000 * S);
    let evicted: Vec<String> = a
        .iter()
        .filter_map(|x| match x {
            SlotAction::CancelOrder {
                client_order_id,
                reason,
            } if reason == "evicted" => Some(client_order_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, vec!["g0bx-extra1".to_string()], "{a:?}");
    let c = cycles(&a);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, CycleKind::Eviction);
    // B bought 16.7000668 @ 0.11976, booked at market 0.115 with a maker fee:
    // gross (0.115 - 0.11976) * 16.7000668 = -0.07949231797 (rounded here)
    assert_eq!(c[0].gross, dec!(-0.079492317968));
    assert_eq!(c[0].exit_fee, dec!(0.004801269205));
    assert_eq!(c[0].net, dec!(-0.089293587173));
    assert_eq!(c[0].net.round_dp(2), dec!(-0.09));
    assert_eq!(r.s.recovery.len(), 2);
}

#[test]
fn loss_cooldown_backoff_and_reentry() {
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    let a_entry = r.id(Trade::A, Role::Entry);
    r.fill(&a_entry, dec!(16.63339986), dec!(0.12024), dec!(0.005), T0);
    let exit = r.id(Trade::A, Role::Exit);
    r.s.a.consecutive_losses = 4;
    // The exit fills above the entry (an operator break-even gone wrong): a loss.
    let a = r.fill(
        &exit,
        dec!(16.63339986),
        dec!(0.1203),
        dec!(0.005),
        T0 + 10 * S,
    );
    assert!(cycles(&a)[0].net < Decimal::ZERO);
    assert_eq!(r.s.a.consecutive_losses, 5);
    assert_eq!(r.s.a.cooldown_until_ms, T0 + 910 * S);
    assert!(
        places(&r.tick(dec!(0.12), T0 + 909 * S))
            .iter()
            .all(|p| p.0 != Trade::A)
    );
    let a = r.tick(dec!(0.12), T0 + 910 * S);
    // Backoff min(5, 1 + 0.5 * 3) = 2.5: 0.12 * (1 + 0.002 * 2.5) = 0.1206.
    assert_eq!(
        places(&a).iter().find(|p| p.0 == Trade::A).unwrap().3,
        Some(dec!(0.1206))
    );
}

#[test]
fn invariant_violation_halts_the_slot_not_the_process() {
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    let mut dup: SlotOrder = r.s.order_of(Trade::A, Role::Entry).unwrap().clone();
    dup.client_order_id = "g0ae-dup".into();
    r.s.orders.push(dup);
    assert!(r.s.phase().is_err());
    let a = r.tick(dec!(0.12), T0 + S);
    assert!(places(&a).is_empty());
    let why = r.s.halted.clone().unwrap();
    assert!(why.contains("trade A has 2 open orders"), "{why}");
    // Wrong side for the role.
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    r.s.orders[0].side = Side::Buy;
    r.tick(dec!(0.12), T0 + S);
    assert!(r.s.halted.as_deref().unwrap().contains("expected sell"));
}

/// Every invariant, broken one at a time, is caught with its message (the
/// check runs a quick pass first and names the problem only then).
#[test]
fn each_broken_invariant_is_named() {
    type Break = fn(&mut SlotState);
    let cases: [(Break, &str); 6] = [
        (
            |s| {
                let mut dup = s.orders[0].clone();
                dup.client_order_id.push('x');
                s.orders.push(dup);
            },
            "open orders (at most 1)",
        ),
        (
            |s| s.orders[0].side = s.orders[0].side.opposite(),
            "expected",
        ),
        (|s| s.orders[0].volume = Decimal::ZERO, "has volume 0"),
        (|s| s.orders[0].volume = dec!(-1), "has volume -1"),
        (
            |s| {
                let mut o = s.orders[0].clone();
                o.client_order_id.push('r');
                o.role = Role::Entry;
                s.recovery.push(o);
            },
            "an entry is in the recovery list",
        ),
        (
            |s| {
                let o = s.orders[0].clone();
                s.orders[1].client_order_id.clone_from(&o.client_order_id);
            },
            "tracked twice",
        ),
    ];
    for (k, (brk, want)) in cases.into_iter().enumerate() {
        let mut r = Run::new();
        r.tick(dec!(0.12), T0);
        assert_eq!(r.s.orders.len(), 2, "both entries out");
        assert_eq!(r.s.check_invariants(), Ok(()));
        brk(&mut r.s);
        let why = r.s.check_invariants().unwrap_err();
        assert!(why.contains(want), "case {k}: {why}");
    }
}

#[test]
fn reprice_and_close_at_market_with_restore() {
    let mut r = Run::new();
    let (_, b_exit) = to_s2(&mut r);
    let a = r.ev(SlotEvent::Reprice {
        client_order_id: b_exit.clone(),
        price: dec!(0.1205),
        reason: "subsidy".into(),
        now_ms: T0 + 50 * S,
    });
    assert_eq!(cancels(&a), vec![b_exit.clone()]);
    assert!(matches!(
        r.s.order_of(Trade::B, Role::Exit).unwrap().pending,
        Some(Pending::Reprice { .. })
    ));
    let a = r.canceled(&b_exit, T0 + 51 * S);
    assert_eq!(
        places(&a),
        vec![(
            Trade::B,
            Role::Exit,
            Side::Sell,
            Some(dec!(0.1205)),
            dec!(16.7000668)
        )]
    );
    let moved = a
        .iter()
        .find_map(|x| match x {
            SlotAction::ExitMoved { new_order_id, .. } => Some(new_order_id.clone()),
            _ => None,
        })
        .unwrap();
    // Close at market; the market order fails; the exit comes back at 0.1205.
    let a = r.ev(SlotEvent::CloseAtMarket {
        client_order_id: moved.clone(),
        now_ms: T0 + 60 * S,
    });
    assert_eq!(cancels(&a), vec![moved.clone()]);
    let a = r.canceled(&moved, T0 + 61 * S);
    assert_eq!(
        places(&a),
        vec![(Trade::B, Role::Close, Side::Sell, None, dec!(16.7000668))]
    );
    let close = r.id(Trade::B, Role::Close);
    let a = r.ev(SlotEvent::Refused {
        client_order_id: close,
        message: "no liquidity".into(),
        now_ms: T0 + 62 * S,
    });
    assert_eq!(
        places(&a),
        vec![(
            Trade::B,
            Role::Exit,
            Side::Sell,
            Some(dec!(0.1205)),
            dec!(16.7000668)
        )]
    );
    assert!(r.s.last_error.contains("exit restored"));
    // A reprice of something that is not a live exit is abandoned.
    let a = r.ev(SlotEvent::Reprice {
        client_order_id: "nope".into(),
        price: dec!(1),
        reason: "x".into(),
        now_ms: T0,
    });
    assert!(matches!(a[0], SlotAction::Abandoned { .. }));
}

#[test]
fn refused_entry_waits_and_refused_exit_retries() {
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    let a_entry = r.id(Trade::A, Role::Entry);
    r.ev(SlotEvent::Refused {
        client_order_id: a_entry,
        message: "insufficient funds".into(),
        now_ms: T0 + S,
    });
    assert!(r.s.order_of(Trade::A, Role::Entry).is_none());
    assert!(places(&r.tick(dec!(0.12), T0 + 2 * S)).is_empty());
    assert_eq!(places(&r.tick(dec!(0.12), T0 + 61 * S)).len(), 1);
    let b_entry = r.id(Trade::B, Role::Entry);
    r.fill(
        &b_entry,
        dec!(16.7000668),
        dec!(0.11976),
        dec!(0.005),
        T0 + 70 * S,
    );
    let x = r.id(Trade::B, Role::Exit);
    r.ev(SlotEvent::Refused {
        client_order_id: x,
        message: "post-only would take".into(),
        now_ms: T0 + 71 * S,
    });
    assert!(places(&r.tick(dec!(0.12), T0 + 72 * S)).is_empty());
    let a = r.tick(dec!(0.12), T0 + 76 * S);
    assert_eq!(
        places(&a),
        vec![(
            Trade::B,
            Role::Exit,
            Side::Sell,
            Some(dec!(0.1209576)),
            dec!(16.7000668)
        )]
    );
}

/// A capital refusal of an entry (the grid's ledger, before the order went
/// out) leaves the slot exactly as the venue-style refusal with the message
/// `capital: {error}` did: the same actions, the same state (with the same
/// `last_error` text, written only when read); for an id that is not a
/// live entry it falls back to that refusal.
#[test]
fn capital_refusal_equals_the_refusal_it_replaced() {
    use herd_strategies::capital::{Asset, CapitalError};
    let error = CapitalError::Insufficient {
        asset: Asset::Quote,
        available: dec!(1.23456789),
        amount: dec!(2.0050000),
        keep: Decimal::ZERO,
    };
    let mut r = Run::new();
    r.tick(dec!(0.12), T0);
    let b_entry = r.id(Trade::B, Role::Entry);
    let a_entry = r.id(Trade::A, Role::Entry);
    for id in [b_entry, a_entry, "g0zz-none".to_string()] {
        let mut typed = Run::new();
        typed.s = r.s.clone();
        let mut text = Run::new();
        text.s = r.s.clone();
        let a = typed.ev(SlotEvent::CapitalRefused {
            client_order_id: id.clone(),
            error: error.clone(),
            now_ms: T0 + S,
        });
        let b = text.ev(SlotEvent::Refused {
            client_order_id: id.clone(),
            message: format!("capital: {error}"),
            now_ms: T0 + S,
        });
        assert_eq!(a, b, "{id}");
        assert_eq!(format!("{:?}", typed.s), format!("{:?}", text.s), "{id}");
        assert_eq!(
            typed.s.last_error.to_string(),
            text.s.last_error.to_string()
        );
        assert_eq!(
            serde_json::to_string(&typed.s).unwrap(),
            serde_json::to_string(&text.s).unwrap()
        );
        if id.starts_with("g0zz") {
            assert_eq!(typed.s.last_error, "", "an unknown id changes nothing");
        } else {
            assert_eq!(
                typed.s.last_error.to_string(),
                format!(
                    "entry {id} refused: capital: Quote: available 1.23456789 - 2.0050000 would leave less than the 0 to keep"
                )
            );
        }
    }
    // A later text replaces the refusal; a later refusal replaces the text.
    let mut e = r.s.last_error.clone();
    e.set_capital("g0be-1".into(), error.clone());
    assert!(e.starts_with("entry g0be-1 refused: capital: "));
    e.set("x".into());
    assert_eq!(e, "x");
    e.set_capital("g0be-2".into(), error);
    assert!(e.contains("g0be-2"), "{e}");
    e.clear();
    assert_eq!(e, "");
}

#[test]
fn client_ids() {
    for (id, want) in [
        ("g0ae-abc", true),
        ("g12bx-abc", true),
        ("g3ac-x", true),
        ("g0a-x", false),
        ("r0e-abc", false),
        ("gxae-1", false),
    ] {
        assert_eq!(is_slot_client_id(id), want, "{id}");
    }
}

mod churner_reducer {
    //! The churner reducer on a fake clock: stages, side choice and the
    //! reserve pool, timeouts, cancel failures, gate failures and profit
    //! routing. At market 0.12: buy 16.69170422 @ 0.12 * 0.9985 = 0.11982
    //! (fee 0.005); exit max(0.11982 * 1.006, 0.12 * 1.0015) = 0.120539 (fee
    //! 0.00503); gross (0.120539 - 0.11982) * 16.69170422 = 0.01200133533418,
    //! net 0.00197133533418.

    use super::*;
    use herd_strategies::churner::{
        ChurnAction, ChurnEnv, Churner, ChurnerConfig, ParentCandidate, Refusal, Stage,
    };
    use herd_strategies::grid::heal::Band;
    use herd_strategies::grid::ledger::LedgerEvent;

    fn parent(trade: &str) -> ParentCandidate {
        ParentCandidate {
            position_id: "g0be-parent".into(),
            slot_id: 0,
            trade: trade.into(),
            effective_age_hours: dec!(10),
            age_hours: dec!(8),
            band: Band::Aging,
            subsidy_needed: dec!(0.01),
        }
    }

    fn env(cfg: &ChurnerConfig) -> ChurnEnv<'_> {
        ChurnEnv {
            cfg,
            filters: filters(),
            market: dec!(0.12),
            gate: Ok(parent("B")),
            parent_alive: true,
            parent_needs_subsidy: true,
            free_quote: Some(dec!(1000)),
            free_base: Some(dec!(5000)),
            reserve_available: dec!(5),
            regime: "RANGING".into(),
            userref_offset: 600,
            symbol: "DOGEUSD".into(),
            entries_blocked: None,
        }
    }

    fn placed(a: &[ChurnAction]) -> Vec<(Side, Option<Decimal>, Decimal)> {
        a.iter()
            .filter_map(|x| match x {
                ChurnAction::Place(i) => Some((i.side, i.price, i.volume)),
                _ => None,
            })
            .collect()
    }

    fn cancelled(a: &[ChurnAction]) -> usize {
        a.iter()
            .filter(|x| matches!(x, ChurnAction::Cancel(_)))
            .count()
    }

    fn closes(a: &[ChurnAction]) -> Vec<(String, Decimal)> {
        a.iter()
            .filter_map(|x| match x {
                ChurnAction::Ledger(LedgerEvent::Close { outcome, .. }) => {
                    Some((outcome.kind.clone(), outcome.net))
                }
                _ => None,
            })
            .collect()
    }

    const NO_FILL: (Decimal, Decimal, Decimal) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);

    fn new() -> Churner {
        Churner::new(0, &parent("B"), T0, T0)
    }

    #[test]
    fn side_follows_the_parent_then_the_other_side_then_the_reserve() {
        let cfg = ChurnerConfig::default();
        // (parent trade, free quote, free base, reserve, expected entry)
        type Case = (
            &'static str,
            Option<Decimal>,
            Option<Decimal>,
            Decimal,
            Option<(Side, Decimal, Decimal)>,
        );
        let cases: Vec<Case> = vec![
            (
                "B",
                Some(dec!(1000)),
                Some(dec!(5000)),
                dec!(5),
                Some((Side::Buy, dec!(0.11982), dec!(16.69170422))),
            ),
            (
                "A",
                Some(dec!(1000)),
                Some(dec!(5000)),
                dec!(5),
                Some((Side::Sell, dec!(0.12018), dec!(16.64170411))),
            ),
            // No USD for the buy: the other side.
            (
                "B",
                Some(dec!(1)),
                Some(dec!(5000)),
                dec!(5),
                Some((Side::Sell, dec!(0.12018), dec!(16.64170411))),
            ),
            // Neither side funded: the reserve pool lends one base size (a buy).
            (
                "A",
                Some(dec!(1)),
                Some(dec!(1)),
                dec!(5),
                Some((Side::Buy, dec!(0.11982), dec!(16.69170422))),
            ),
            // The pool cannot lend a whole base size: nothing.
            ("A", Some(dec!(1)), Some(dec!(1)), dec!(1.99), None),
        ];
        for (trade, q, b, reserve, want) in cases {
            let mut e = env(&cfg);
            e.gate = Ok(parent(trade));
            e.free_quote = q;
            e.free_base = b;
            e.reserve_available = reserve;
            let mut c = new();
            let a = c.tick(&e, T0);
            let got = placed(&a).first().map(|(s, p, v)| (*s, p.unwrap(), *v));
            assert_eq!(got, want, "{trade} {q:?} {b:?} {reserve}");
            if want.is_none() {
                assert!(c.last_error.contains("reserve pool"), "{}", c.last_error);
                assert_eq!(c.stage, Stage::Idle);
            }
        }
    }

    #[test]
    fn cycle_routes_profit_to_the_parent_slot_then_compounds() {
        let cfg = ChurnerConfig::default();
        let e = env(&cfg);
        let mut c = new();
        let a = c.tick(&e, T0);
        let entry = match &a[0] {
            ChurnAction::Place(i) => i.client_order_id.clone(),
            other => panic!("{other:?}"),
        };
        let a = c.on_order(
            &entry,
            (dec!(16.69170422), dec!(0.11982), dec!(0.005)),
            true,
            false,
            None,
            None,
            &e,
            T0 + 10 * S,
        );
        assert!(
            a.iter()
                .any(|x| matches!(x, ChurnAction::Ledger(LedgerEvent::Open { .. })))
        );
        assert_eq!(
            placed(&a),
            vec![(Side::Sell, Some(dec!(0.120539)), dec!(16.69170422))]
        );
        assert_eq!(c.stage, Stage::ExitOpen);
        let exit = c.exit.clone().unwrap().client_order_id;
        let a = c.on_order(
            &exit,
            (dec!(16.69170422), dec!(0.120539), dec!(0.00503)),
            true,
            false,
            None,
            None,
            &e,
            T0 + 20 * S,
        );
        assert_eq!(
            closes(&a),
            vec![("exit".to_string(), dec!(0.00197133533418))]
        );
        let earned: Vec<(u32, Decimal)> = a
            .iter()
            .filter_map(|x| match x {
                ChurnAction::Ledger(LedgerEvent::Earned {
                    slot_id, amount, ..
                }) => Some((*slot_id, *amount)),
                _ => None,
            })
            .collect();
        assert_eq!(earned, vec![(0, dec!(0.00197133533418))]);
        assert_eq!((c.stage, c.compound_usd), (Stage::Idle, Decimal::ZERO));
        // The parent needs nothing more: the next cycle's profit compounds
        // and the size after it is $2 + that profit.
        let mut e2 = env(&cfg);
        e2.parent_needs_subsidy = false;
        let a = c.tick(&e2, T0 + 30 * S);
        let id = match &a[0] {
            ChurnAction::Place(i) => i.client_order_id.clone(),
            other => panic!("{other:?}"),
        };
        c.on_order(
            &id,
            (dec!(16.69170422), dec!(0.11982), dec!(0.005)),
            true,
            false,
            None,
            None,
            &e2,
            T0 + 31 * S,
        );
        let x = c.exit.clone().unwrap().client_order_id;
        let a = c.on_order(
            &x,
            (dec!(16.69170422), dec!(0.120539), dec!(0.00503)),
            true,
            false,
            None,
            None,
            &e2,
            T0 + 32 * S,
        );
        assert!(
            !a.iter()
                .any(|x| matches!(x, ChurnAction::Ledger(LedgerEvent::Earned { .. })))
        );
        assert_eq!(c.compound_usd, dec!(0.00197133533418));
        let a = c.tick(&e2, T0 + 33 * S);
        // (2 + 0.00197133533418) / 0.11982 = 16.708156696... -> 16.70815669
        assert_eq!(placed(&a)[0].2, dec!(16.70815669));
    }

    #[test]
    fn timeouts_and_cancel_failures() {
        let cfg = ChurnerConfig::default();
        let e = env(&cfg);
        let mut c = new();
        c.tick(&e, T0);
        let entry = c.entry.clone().unwrap().client_order_id;
        // Entry timeout 300 s.
        assert_eq!(cancelled(&c.tick(&e, T0 + 299 * S)), 0);
        assert_eq!(cancelled(&c.tick(&e, T0 + 300 * S)), 1);
        // The cancel fails: state kept, error recorded, retried after 10 s.
        c.on_order(
            &entry,
            NO_FILL,
            false,
            false,
            None,
            Some("venue busy"),
            &e,
            T0 + 301 * S,
        );
        assert_eq!(c.stage, Stage::EntryOpen);
        assert!(c.last_error.contains("venue busy"));
        assert_eq!(cancelled(&c.tick(&e, T0 + 309 * S)), 0);
        assert_eq!(cancelled(&c.tick(&e, T0 + 310 * S)), 1);
        c.on_order(&entry, NO_FILL, false, true, None, None, &e, T0 + 311 * S);
        assert_eq!(c.stage, Stage::Idle);

        // Exit timeout max(300, 600) = 600 s: booked at market (0.119) with a
        // maker fee: gross (0.119 - 0.11982) * 16.69170422 = -0.0136871974604,
        // fee 0.00496578200545, net -0.02365297946585.
        let mut c = new();
        c.tick(&e, T0);
        let entry = c.entry.clone().unwrap().client_order_id;
        c.on_order(
            &entry,
            (dec!(16.69170422), dec!(0.11982), dec!(0.005)),
            true,
            false,
            None,
            None,
            &e,
            T0,
        );
        let exit = c.exit.clone().unwrap().client_order_id;
        assert_eq!(cancelled(&c.tick(&e, T0 + 599 * S)), 0);
        assert_eq!(cancelled(&c.tick(&e, T0 + 600 * S)), 1);
        let mut at = env(&cfg);
        at.market = dec!(0.119);
        let a = c.on_order(&exit, NO_FILL, false, true, None, None, &at, T0 + 601 * S);
        assert_eq!(
            closes(&a),
            vec![("exit_timeout".to_string(), dec!(-0.02365297946585))]
        );
        assert_eq!(c.stage, Stage::Idle);
        assert_eq!(c.profit, dec!(-0.02365297946585));
    }

    #[test]
    fn a_failed_gate_cancels_and_closes_as_cancelled() {
        let cfg = ChurnerConfig::default();
        let e = env(&cfg);
        // Regime changes while the entry is open: cancel, then idle.
        let mut c = new();
        c.tick(&e, T0);
        let entry = c.entry.clone().unwrap().client_order_id;
        let mut bad = env(&cfg);
        bad.gate = Err(Refusal::NotRanging("BULLISH".into()));
        assert_eq!(cancelled(&c.tick(&bad, T0 + S)), 1);
        c.on_order(&entry, NO_FILL, false, true, None, None, &bad, T0 + 2 * S);
        assert_eq!(c.stage, Stage::Idle);
        assert!(
            placed(&c.tick(&bad, T0 + 3 * S)).is_empty(),
            "idle while the gate fails"
        );
        assert!(c.last_error.contains("BULLISH"), "{}", c.last_error);
        // The parent goes away while the exit is open: cancelled at market.
        let mut c = new();
        c.tick(&e, T0);
        let entry = c.entry.clone().unwrap().client_order_id;
        c.on_order(
            &entry,
            (dec!(16.69170422), dec!(0.11982), dec!(0.005)),
            true,
            false,
            None,
            None,
            &e,
            T0,
        );
        let exit = c.exit.clone().unwrap().client_order_id;
        let mut gone = env(&cfg);
        gone.parent_alive = false;
        assert_eq!(cancelled(&c.tick(&gone, T0 + S)), 1);
        let a = c.on_order(&exit, NO_FILL, false, true, None, None, &gone, T0 + 2 * S);
        let cl = closes(&a);
        assert_eq!(cl.len(), 1);
        assert_eq!(cl[0].0, "cancelled");
        // At 0.12: (0.12 - 0.11982) * v - 0.005 - 0.12 * v * 0.0025
        assert_eq!(cl[0].1, dec!(-0.0070030045064));
        // Killed: no new entry, ever.
        c.kill(T0 + 3 * S);
        assert!(placed(&c.tick(&e, T0 + 4 * S)).is_empty());
    }
}

#[test]
fn close_at_market_of_an_exit_canceled_outside_places_the_market_order_at_once() {
    let mut r = Run::new();
    let (_, b_exit) = to_s2(&mut r);
    // An emergency stop cancelled the exit: the slot was not asked.
    r.canceled(&b_exit, T0 + 50 * S);
    assert!(r.s.order_of(Trade::B, Role::Exit).is_none());
    assert!(r.s.recovery.iter().any(|o| o.client_order_id == b_exit));
    // There is nothing to cancel and no cancel event will come: the market
    // order goes out now.
    let a = r.ev(SlotEvent::CloseAtMarket {
        client_order_id: b_exit.clone(),
        now_ms: T0 + 60 * S,
    });
    assert!(cancels(&a).is_empty(), "{a:?}");
    assert_eq!(
        places(&a),
        vec![(Trade::B, Role::Close, Side::Sell, None, dec!(16.7000668))]
    );
}
