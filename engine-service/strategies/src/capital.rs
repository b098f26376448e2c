//! The capital ledger: funds a strategy has promised to orders, so two
//! placements in one loop cannot both spend the same free balance.
//!
//! Discipline: [`CapitalLedger::reserve`] before placing, [`CapitalLedger::release`]
//! when the placement fails (or the order is done), [`CapitalLedger::commit`]
//! when the venue acknowledges it. The venue's free balance (the gateway's
//! `free`) already excludes what its open orders hold, so an order is
//! subtracted from a balance snapshot only while the snapshot cannot know it
//! yet: reservations always, commitments acknowledged after the snapshot was
//! requested. Never twice. Pure; money is [`Decimal`].

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Which side of the pair an amount is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Asset {
    /// The base coin (DOGE): what sells hold.
    Base,
    /// The quote currency (USD): what buys hold.
    Quote,
}

/// Funds promised to one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub asset: Asset,
    pub amount: Decimal,
    pub reserved_at_ms: i64,
    /// When the venue acknowledged the order; `None` while only reserved.
    pub committed_at_ms: Option<i64>,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum CapitalError {
    #[error("free {asset:?} balance is not known yet")]
    UnknownBalance { asset: Asset },
    #[error("{asset:?}: available {available} - {amount} would leave less than the {keep} to keep")]
    Insufficient {
        asset: Asset,
        available: Decimal,
        amount: Decimal,
        keep: Decimal,
    },
    #[error("order {0:?} already holds funds")]
    Duplicate(String),
}

/// A venue balance snapshot: the free amount and when it was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeBalance {
    pub free: Decimal,
    pub as_of_ms: i64,
}

/// Holds by client order id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapitalLedger {
    holds: BTreeMap<String, Hold>,
    /// Answers read since the holds last changed (every `&mut` method
    /// drops them): a grid asks the same questions at every slot tick.
    #[serde(skip)]
    memo: Memo,
}

/// [`CapitalLedger`]'s kept answers: not part of its value (equal, and
/// cloned empty, whatever they hold).
#[derive(Default)]
struct Memo(std::cell::RefCell<MemoData>);

#[derive(Default)]
struct MemoData {
    /// Per asset (base, quote): the sum of the holds not acknowledged, in
    /// the holds' order, and the latest acknowledgement (a snapshot
    /// requested after it subtracts exactly those holds).
    pending: [Option<(Decimal, Option<i64>)>; 2],
    /// `holds_prefix` per prefix asked (its bytes), the answer.
    prefixes: Vec<(Vec<u8>, bool)>,
}

impl Memo {
    fn forget(&mut self) {
        let m = self.0.get_mut();
        m.pending = [None, None];
        m.prefixes.clear();
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl CapitalLedger {
    /// An empty ledger.
    pub fn new() -> CapitalLedger {
        CapitalLedger::default()
    }

    /// What is free to promise: the snapshot minus reservations and minus
    /// commitments the snapshot cannot reflect yet.
    pub fn available(&self, asset: Asset, snapshot: Option<FreeBalance>) -> Option<Decimal> {
        let snap = snapshot?;
        let slot = usize::from(asset == Asset::Quote);
        let kept = self.memo.0.borrow().pending.get(slot).copied().flatten();
        let (unacked, last_ack) = match kept {
            Some(k) => k,
            None => {
                let k = self.unacknowledged(asset);
                if let Some(m) = self.memo.0.borrow_mut().pending.get_mut(slot) {
                    *m = Some(k);
                }
                k
            }
        };
        // Requested after every acknowledgement: the snapshot reflects each
        // acknowledged order, and only the others are subtracted (the same
        // holds, added in the same order, as the whole reading adds).
        if last_ack.is_none_or(|t| t < snap.as_of_ms) {
            return Some(snap.free - unacked);
        }
        self.available_now(asset, snap)
    }

    /// The sum of `asset`'s holds not acknowledged yet (in the holds'
    /// order) and the latest acknowledgement of the others.
    fn unacknowledged(&self, asset: Asset) -> (Decimal, Option<i64>) {
        let mut sum = Decimal::ZERO;
        let mut last = None;
        for h in self.holds.values().filter(|h| h.asset == asset) {
            match h.committed_at_ms {
                None => sum += h.amount,
                Some(c) => last = Some(last.map_or(c, |l: i64| l.max(c))),
            }
        }
        (sum, last)
    }

    fn available_now(&self, asset: Asset, snap: FreeBalance) -> Option<Decimal> {
        let pending: Decimal = self
            .holds
            .values()
            .filter(|h| h.asset == asset)
            .filter(|h| h.committed_at_ms.is_none_or(|c| c >= snap.as_of_ms))
            .map(|h| h.amount)
            .sum();
        Some(snap.free - pending)
    }

    /// Reserves `amount` for order `id` if `keep` still remains afterwards.
    pub fn reserve(
        &mut self,
        id: &str,
        asset: Asset,
        amount: Decimal,
        keep: Decimal,
        snapshot: Option<FreeBalance>,
        now_ms: i64,
    ) -> Result<(), CapitalError> {
        if self.holds.contains_key(id) {
            return Err(CapitalError::Duplicate(id.to_string()));
        }
        self.check(asset, amount, keep, snapshot)?;
        self.hold(id, asset, amount, now_ms);
        Ok(())
    }

    /// Whether order `id` holds funds here (then [`CapitalLedger::reserve`]
    /// of it is refused as a duplicate).
    pub fn is_held(&self, id: &str) -> bool {
        self.holds.contains_key(id)
    }

    /// Whether an order whose id starts with `prefix` holds funds.
    pub fn holds_prefix(&self, prefix: &str) -> bool {
        use std::ops::Bound;
        let p = prefix.as_bytes();
        if let Some((_, answer)) = self.memo.0.borrow().prefixes.iter().find(|(k, _)| k == p) {
            return *answer;
        }
        let answer = self
            .holds
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .next()
            .is_some_and(|(id, _)| id.starts_with(prefix));
        self.memo.0.borrow_mut().prefixes.push((p.to_vec(), answer));
        answer
    }

    /// Whether [`CapitalLedger::reserve`] of `amount` would pass the
    /// balance check now (before the order has an id): the same refusal,
    /// with nothing recorded.
    pub fn check(
        &self,
        asset: Asset,
        amount: Decimal,
        keep: Decimal,
        snapshot: Option<FreeBalance>,
    ) -> Result<(), CapitalError> {
        let available = self
            .available(asset, snapshot)
            .ok_or(CapitalError::UnknownBalance { asset })?;
        if available - amount < keep {
            return Err(CapitalError::Insufficient {
                asset,
                available,
                amount,
                keep,
            });
        }
        Ok(())
    }

    /// Records a hold without a balance check (orders that must go out,
    /// such as exits closing a position).
    pub fn hold(&mut self, id: &str, asset: Asset, amount: Decimal, now_ms: i64) {
        self.memo.forget();
        self.holds.insert(
            id.to_string(),
            Hold {
                asset,
                amount,
                reserved_at_ms: now_ms,
                committed_at_ms: None,
            },
        );
    }

    /// The venue acknowledged order `id`. False when it holds nothing here.
    pub fn commit(&mut self, id: &str, now_ms: i64) -> bool {
        self.memo.forget();
        match self.holds.get_mut(id) {
            Some(h) => {
                if h.committed_at_ms.is_none() {
                    h.committed_at_ms = Some(now_ms);
                }
                true
            }
            None => false,
        }
    }

    /// Order `id` failed or is done: its funds are no longer promised.
    pub fn release(&mut self, id: &str) -> Option<Hold> {
        self.memo.forget();
        self.holds.remove(id)
    }

    /// Funds held by acknowledged (open) orders.
    pub fn committed(&self, asset: Asset) -> Decimal {
        self.holds
            .values()
            .filter(|h| h.asset == asset && h.committed_at_ms.is_some())
            .map(|h| h.amount)
            .sum()
    }

    /// Funds reserved for orders not acknowledged yet.
    pub fn reserved(&self, asset: Asset) -> Decimal {
        self.holds
            .values()
            .filter(|h| h.asset == asset && h.committed_at_ms.is_none())
            .map(|h| h.amount)
            .sum()
    }

    /// Drops every hold (a strategy that has cancelled everything).
    pub fn clear(&mut self) {
        self.memo.forget();
        self.holds.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn snap(free: Decimal, as_of_ms: i64) -> Option<FreeBalance> {
        Some(FreeBalance { free, as_of_ms })
    }

    #[test]
    fn available_never_double_subtracts() {
        // Holds: a reserved sell (t=100), a sell committed at t=200, a buy
        // committed at t=300.
        let mut l = CapitalLedger::new();
        l.hold("a", Asset::Base, dec!(10), 100);
        l.hold("b", Asset::Base, dec!(20), 150);
        l.commit("b", 200);
        l.hold("c", Asset::Quote, dec!(5), 250);
        l.commit("c", 300);
        // (asset, snapshot free, snapshot as_of, expected available)
        let cases = [
            // Snapshot older than both base holds: both subtracted.
            (Asset::Base, dec!(1000), 50, dec!(970)),
            // Snapshot requested after b's ack: the venue already holds b.
            (Asset::Base, dec!(980), 201, dec!(970)),
            // At the ack instant the snapshot may not know it yet.
            (Asset::Base, dec!(1000), 200, dec!(970)),
            (Asset::Quote, dec!(50), 299, dec!(45)),
            (Asset::Quote, dec!(45), 301, dec!(45)),
        ];
        for (asset, free, as_of, want) in cases {
            assert_eq!(
                l.available(asset, snap(free, as_of)),
                Some(want),
                "{asset:?} free {free} as of {as_of}"
            );
        }
        assert_eq!(l.available(Asset::Base, None), None);
        assert_eq!(l.committed(Asset::Base), dec!(20));
        assert_eq!(l.reserved(Asset::Base), dec!(10));
        assert_eq!(l.committed(Asset::Quote), dec!(5));
    }

    /// The kept answers are the ones read afresh (a clone keeps none),
    /// whatever the holds went through between two reads.
    #[test]
    fn kept_answers_are_fresh_answers() {
        let mut l = CapitalLedger::new();
        let mut seed: u64 = 11;
        let ids = ["g0Ae-1", "g0Be-2", "g1Ae-3", "r0e-4", "g0Ax-5"];
        let prefixes = ["g0Ae-", "g0Be-", "g1Ae-", "r0e-", "g0A", "g2Be-"];
        let mut kept_reads = 0;
        for step in 0..4_000_i64 {
            seed = crate::testing::lcg(seed);
            let id = ids[(seed >> 20) as usize % ids.len()];
            let asset = if seed.is_multiple_of(2) {
                Asset::Base
            } else {
                Asset::Quote
            };
            match (seed >> 8) % 8 {
                0 | 1 => l.hold(id, asset, Decimal::from(seed % 50), step),
                2 => {
                    l.commit(id, step);
                }
                3 => {
                    l.release(id);
                }
                4 if step % 500 == 0 => l.clear(),
                _ => {}
            }
            // Two reads in a row: the second is kept.
            for _ in 0..2 {
                let snap = snap(
                    Decimal::new((seed % 9_000) as i64, 2),
                    step - (seed % 3) as i64,
                );
                let fresh = l.clone();
                let whole = snap.and_then(|s| l.available_now(asset, s));
                let read = l.available(asset, snap);
                assert_eq!(
                    read.map(|d| d.serialize()),
                    whole.map(|d| d.serialize()),
                    "{read:?} {whole:?}"
                );
                assert_eq!(read, fresh.available(asset, snap));
                for p in prefixes {
                    assert_eq!(l.holds_prefix(p), fresh.holds_prefix(p), "{p}");
                }
                kept_reads += 1;
            }
        }
        assert!(kept_reads > 4_000);
    }

    #[test]
    fn a_prefix_is_held_only_when_an_id_starting_with_it_is() {
        let mut l = CapitalLedger::new();
        assert!(!l.holds_prefix("g1Be-"));
        l.hold("g1Be-00a1b2c7", Asset::Quote, dec!(5), 100);
        l.hold("g12Ae-00a1b2c9", Asset::Base, dec!(5), 100);
        assert!(l.holds_prefix("g1Be-"));
        assert!(l.holds_prefix("g12Ae-"));
        // A longer tag, another trade or role, a tag that only shares a
        // start with a held id's.
        for other in ["g1Ae-", "g1Bx-", "g10Be-", "g12Be-", "g1B", "g2", "h"] {
            assert_eq!(l.holds_prefix(other), other == "g1B", "{other}");
        }
        l.release("g1Be-00a1b2c7");
        assert!(!l.holds_prefix("g1Be-"));
    }

    #[test]
    fn reserve_release_commit_table() {
        // (free, keep, amounts reserved in order, expected results)
        type Case = (Decimal, Decimal, Vec<Decimal>, Vec<bool>);
        let cases: Vec<Case> = vec![
            (
                dec!(200),
                dec!(100),
                vec![dec!(50), dec!(50), dec!(1)],
                vec![true, true, false],
            ),
            (dec!(116.64), dec!(100), vec![dec!(16.64)], vec![true]),
            (dec!(116.63), dec!(100), vec![dec!(16.64)], vec![false]),
            (dec!(0), dec!(0), vec![dec!(0)], vec![true]),
        ];
        for (free, keep, amounts, want) in cases {
            let mut l = CapitalLedger::new();
            let got: Vec<bool> = amounts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    l.reserve(&format!("o{i}"), Asset::Base, *a, keep, snap(free, 0), 1)
                        .is_ok()
                })
                .collect();
            assert_eq!(got, want, "free {free} keep {keep} amounts {amounts:?}");
        }
    }

    #[test]
    fn release_on_failure_frees_funds_and_commit_is_idempotent() {
        let mut l = CapitalLedger::new();
        let s = snap(dec!(150), 0);
        l.reserve("x", Asset::Base, dec!(50), dec!(100), s, 1)
            .unwrap();
        let err = l
            .reserve("y", Asset::Base, dec!(50), dec!(100), s, 2)
            .unwrap_err();
        assert!(matches!(err, CapitalError::Insufficient { .. }), "{err}");
        assert!(err.to_string().contains("100"), "{err}");
        assert!(l.release("x").is_some());
        l.reserve("y", Asset::Base, dec!(50), dec!(100), s, 3)
            .unwrap();
        assert!(matches!(
            l.reserve("y", Asset::Base, dec!(1), dec!(0), s, 4),
            Err(CapitalError::Duplicate(_))
        ));
        assert!(l.commit("y", 10));
        assert!(l.commit("y", 20));
        assert_eq!(
            l.available(Asset::Base, snap(dec!(150), 11)),
            Some(dec!(150))
        );
        assert!(!l.commit("nope", 1));
        assert!(matches!(
            l.reserve("z", Asset::Quote, dec!(1), dec!(0), None, 1),
            Err(CapitalError::UnknownBalance { .. })
        ));
    }
}
