//! PnL arithmetic: funding per settlement with the right sign, fees turned
//! into the quote coin, settlements estimated at the venue's funding times
//! when it keeps no payment history, and the portfolio summary. Pure.
//!
//! Net PnL = unrealized (from marks) + realized price PnL + funding - fees.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::funding::api::PosSide;
use crate::funding::position::FundingPosition;

/// What one settlement pays a position of `size` at `mark` and `rate`: a
/// positive rate means longs pay shorts, so a short receives
/// `size * mark * rate`.
pub fn funding_amount(side: PosSide, size: Decimal, mark: Decimal, rate: Decimal) -> Decimal {
    let paid_by_longs = size * mark * rate;
    match side {
        PosSide::Short => paid_by_longs,
        PosSide::Long => -paid_by_longs,
    }
}

/// A fee in the quote coin: fees charged in the base coin (a spot buy's)
/// are worth `fee * price`; fees in the quote coin are taken as they are.
pub fn fee_in_quote(fee: Decimal, fee_asset: &str, base: &str, price: Decimal) -> Decimal {
    if !fee_asset.is_empty() && fee_asset == base {
        fee * price
    } else {
        fee
    }
}

/// A settlement the estimator books for a venue without payment history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimatedSettlement {
    pub time_ms: i64,
    pub amount: Decimal,
    pub rate: Decimal,
    pub mark: Decimal,
}

/// Settlements due for `pos` given the venue's current `next_funding_ms`:
/// every funding time the position had scheduled (`pos.next_funding_ms`)
/// that is now in the past and after it opened, at the last rate seen and
/// the current mark. The caller then stores `next_funding_ms`.
pub fn estimate_settlements(
    pos: &FundingPosition,
    venue_next_funding_ms: i64,
    mark: Decimal,
    now_ms: i64,
) -> Vec<EstimatedSettlement> {
    let interval = i64::from(pos.interval_hours.max(1)) * 3_600_000;
    let mut out = Vec::new();
    if pos.next_funding_ms <= 0 || pos.perp_qty.is_zero() {
        return out;
    }
    let mut t = pos.next_funding_ms;
    // Bounded: a process suspended for long catches up at most a month.
    for _ in 0..(24 * 31) {
        if t > now_ms || t >= venue_next_funding_ms || t < pos.opened_at_ms {
            break;
        }
        out.push(EstimatedSettlement {
            time_ms: t,
            amount: funding_amount(PosSide::Short, pos.perp_qty, mark, pos.last_rate),
            rate: pos.last_rate,
            mark,
        });
        t += interval;
    }
    out
}

/// The portfolio summary over every position (open and closed).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Portfolio {
    pub total_funding: Decimal,
    pub total_fees: Decimal,
    pub unrealized: Decimal,
    pub realized: Decimal,
    pub net_pnl: Decimal,
    pub open_positions: u32,
    pub closed_positions: u32,
    pub exposure_usd: Decimal,
}

/// Sums positions; `marks` gives (spot, perp) marks by perp symbol.
pub fn portfolio<'a>(
    positions: impl IntoIterator<Item = &'a FundingPosition>,
    marks: impl Fn(&str) -> (Decimal, Decimal),
) -> Portfolio {
    let mut p = Portfolio::default();
    for pos in positions {
        let (spot_mark, perp_mark) = marks(&pos.symbol);
        let u = pos.unrealized(spot_mark, perp_mark);
        p.total_funding += pos.funding;
        p.total_fees += pos.fees;
        p.unrealized += u;
        p.realized += pos.realized;
        if pos.state.is_active() {
            p.open_positions += 1;
            p.exposure_usd += pos.notional_usd;
        } else {
            p.closed_positions += 1;
        }
    }
    p.net_pnl = p.unrealized + p.realized + p.total_funding - p.total_fees;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funding::api::{InstrumentKind, InstrumentSpec};
    use rust_decimal_macros::dec;

    #[test]
    fn funding_sign_table() {
        let cases = [
            (PosSide::Short, dec!(0.0001), dec!(0.5)),
            (PosSide::Long, dec!(0.0001), dec!(-0.5)),
            (PosSide::Short, dec!(-0.0001), dec!(-0.5)),
            (PosSide::Long, dec!(-0.0001), dec!(0.5)),
        ];
        for (side, rate, want) in cases {
            assert_eq!(funding_amount(side, dec!(0.1), dec!(50000), rate), want);
        }
    }

    #[test]
    fn fees_in_the_right_coin() {
        assert_eq!(
            fee_in_quote(dec!(0.001), "BTC", "BTC", dec!(60000)),
            dec!(60)
        );
        assert_eq!(
            fee_in_quote(dec!(0.33), "USDT", "BTC", dec!(60000)),
            dec!(0.33)
        );
        assert_eq!(fee_in_quote(dec!(0.33), "", "BTC", dec!(60000)), dec!(0.33));
    }

    #[test]
    fn estimated_settlements_follow_the_venue_schedule() {
        let spot = InstrumentSpec {
            symbol: "SOLUSDT".into(),
            base: "SOL".into(),
            quote: "USDT".into(),
            kind: InstrumentKind::Spot,
            qty_step: dec!(0.1),
            min_qty: dec!(0.1),
            min_notional: dec!(1),
            taker_fee: dec!(0.001),
            active: true,
        };
        let h = 3_600_000;
        let mut pos = FundingPosition::new("p".into(), "SOLUSDT-PERP", &spot, 4, 3 * h);
        pos.perp_qty = dec!(10);
        pos.last_rate = dec!(0.001);
        pos.next_funding_ms = 4 * h;
        // Not due yet.
        assert!(estimate_settlements(&pos, 4 * h, dec!(150), 3 * h + 1).is_empty());
        // 4 h and 8 h passed (the venue now says 12 h): two settlements of
        // 10 * 150 * 0.001 = 1.5 each, received by the short.
        let s = estimate_settlements(&pos, 12 * h, dec!(150), 9 * h);
        assert_eq!(
            s.iter().map(|x| x.time_ms).collect::<Vec<_>>(),
            vec![4 * h, 8 * h]
        );
        assert!(s.iter().all(|x| x.amount == dec!(1.5)));
    }
}
