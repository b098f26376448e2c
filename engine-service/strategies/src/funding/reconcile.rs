//! Reconciliation: does the venue hold what the store says the orchestrator
//! holds? Compared at start-up and every cycle; a mismatch is reported in
//! status and its symbol is not traded until the two agree. Pure.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::funding::api::{BalanceInfo, PosSide, VenuePosition};
use crate::funding::position::{FundingPosition, PositionState};

/// One difference between the store and the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The perpetual it concerns.
    pub symbol: String,
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.symbol, self.message)
    }
}

/// Compares tracked positions with the venue's perp positions and spot
/// balances. Positions with orders in flight are skipped (they are moving).
pub fn reconcile(
    tracked: &[FundingPosition],
    venue_positions: &[VenuePosition],
    balances: &[BalanceInfo],
) -> Vec<Mismatch> {
    let settled: Vec<&FundingPosition> = tracked
        .iter()
        .filter(|p| p.state.is_active() && p.pending.is_empty())
        .collect();
    let in_flight: Vec<&str> = tracked
        .iter()
        .filter(|p| p.state.is_active() && !p.pending.is_empty())
        .map(|p| p.symbol.as_str())
        .collect();
    let mut want_short: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut want_base: BTreeMap<(&str, &str), Decimal> = BTreeMap::new();
    for p in &settled {
        *want_short.entry(p.symbol.as_str()).or_default() += p.perp_qty;
        *want_base
            .entry((p.base.as_str(), p.symbol.as_str()))
            .or_default() += p.spot_qty;
    }
    let venue: HashMap<&str, &VenuePosition> = venue_positions
        .iter()
        .map(|v| (v.symbol.as_str(), v))
        .collect();
    let mut out = Vec::new();
    for (symbol, want) in &want_short {
        let have = venue.get(symbol);
        let (side, size) = match have {
            Some(v) => (Some(v.side), v.size),
            None => (None, Decimal::ZERO),
        };
        let ok = if want.is_zero() {
            size.is_zero()
        } else {
            side == Some(PosSide::Short) && size == *want
        };
        if !ok {
            out.push(Mismatch {
                symbol: (*symbol).to_string(),
                message: format!(
                    "store has a short of {want}, venue has {}",
                    match have {
                        Some(v) => format!("{:?} {}", v.side, v.size).to_lowercase(),
                        None => "none".into(),
                    }
                ),
            });
        }
    }
    for v in venue_positions {
        if !want_short.contains_key(v.symbol.as_str()) && !in_flight.contains(&v.symbol.as_str()) {
            out.push(Mismatch {
                symbol: v.symbol.clone(),
                message: format!(
                    "venue has a {} position of {} the store does not know",
                    match v.side {
                        PosSide::Long => "long",
                        PosSide::Short => "short",
                    },
                    v.size
                ),
            });
        }
    }
    let mut by_base: BTreeMap<&str, (Decimal, Vec<&str>)> = BTreeMap::new();
    for ((base, symbol), qty) in &want_base {
        let e = by_base.entry(base).or_default();
        e.0 += *qty;
        e.1.push(symbol);
    }
    for (base, (want, symbols)) in by_base {
        let have = balances
            .iter()
            .find(|b| b.asset == base)
            .map_or(Decimal::ZERO, |b| b.total);
        if have < want {
            for s in symbols {
                out.push(Mismatch {
                    symbol: s.to_string(),
                    message: format!("store holds {want} {base} on the spot leg, venue has {have}"),
                });
            }
        }
    }
    out
}

/// Positions whose state cannot be trusted without the venue (an open that
/// was cut short by a crash).
pub fn needs_resolution(p: &FundingPosition) -> bool {
    p.state == PositionState::Opening || !p.pending.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funding::api::{InstrumentKind, InstrumentSpec};
    use rust_decimal_macros::dec;

    fn pos(symbol: &str, base: &str, spot: Decimal, perp: Decimal) -> FundingPosition {
        let spec = InstrumentSpec {
            symbol: format!("{base}USDT"),
            base: base.into(),
            quote: "USDT".into(),
            kind: InstrumentKind::Spot,
            qty_step: dec!(0.001),
            min_qty: dec!(0.001),
            min_notional: dec!(1),
            taker_fee: dec!(0.001),
            active: true,
        };
        let mut p = FundingPosition::new("p".into(), symbol, &spec, 8, 0);
        p.state = PositionState::Open;
        p.spot_qty = spot;
        p.perp_qty = perp;
        p
    }

    fn short(symbol: &str, size: Decimal) -> VenuePosition {
        VenuePosition {
            symbol: symbol.into(),
            side: PosSide::Short,
            size,
            entry_price: dec!(1),
            mark_price: dec!(1),
        }
    }

    fn bal(asset: &str, total: Decimal) -> BalanceInfo {
        BalanceInfo {
            asset: asset.into(),
            total,
            free: total,
        }
    }

    #[test]
    fn reconcile_table() {
        let tracked = vec![pos("ETHUSDT-PERP", "ETH", dec!(0.33), dec!(0.33))];
        struct Case {
            name: &'static str,
            venue: Vec<VenuePosition>,
            balances: Vec<BalanceInfo>,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "agree",
                venue: vec![short("ETHUSDT-PERP", dec!(0.33))],
                balances: vec![bal("ETH", dec!(0.3304))],
                want: vec![],
            },
            Case {
                name: "perp missing at the venue",
                venue: vec![],
                balances: vec![bal("ETH", dec!(0.34))],
                want: vec!["ETHUSDT-PERP"],
            },
            Case {
                name: "perp size differs",
                venue: vec![short("ETHUSDT-PERP", dec!(0.2))],
                balances: vec![bal("ETH", dec!(0.34))],
                want: vec!["ETHUSDT-PERP"],
            },
            Case {
                name: "spot coins gone",
                venue: vec![short("ETHUSDT-PERP", dec!(0.33))],
                balances: vec![bal("ETH", dec!(0.1))],
                want: vec!["ETHUSDT-PERP"],
            },
            Case {
                name: "unknown venue position",
                venue: vec![
                    short("ETHUSDT-PERP", dec!(0.33)),
                    short("BTCUSDT-PERP", dec!(0.01)),
                ],
                balances: vec![bal("ETH", dec!(0.34))],
                want: vec!["BTCUSDT-PERP"],
            },
        ];
        for c in cases {
            let got: Vec<String> = reconcile(&tracked, &c.venue, &c.balances)
                .into_iter()
                .map(|m| m.symbol)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }
}
