//! A hedged position (spot long + perp short) and the pure decisions about
//! it: sizing to both instruments' steps and minimums, the fill-price drift
//! check, and when to close (rate missing or decayed, after a minimum hold,
//! with hysteresis).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::funding::api::{InstrumentSpec, Side};

const HOUR_MS: i64 = 3_600_000;

/// Where a position is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionState {
    /// Legs sent, outcome not known yet.
    Opening,
    /// Both legs filled: hedged and collecting funding.
    Open,
    /// Closing (or a close that did not finish; retried every cycle).
    Closing,
    /// An open that failed on one leg: the filled leg is being sold back.
    Unwinding,
    Closed,
    /// An open that failed and was rolled back (no exposure left).
    Failed,
}

impl PositionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PositionState::Opening => "opening",
            PositionState::Open => "open",
            PositionState::Closing => "closing",
            PositionState::Unwinding => "unwinding",
            PositionState::Closed => "closed",
            PositionState::Failed => "failed",
        }
    }

    pub fn is_active(self) -> bool {
        !matches!(self, PositionState::Closed | PositionState::Failed)
    }
}

/// Spot or perp leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leg {
    Spot,
    Perp,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Spot => "spot",
            Leg::Perp => "perp",
        }
    }
}

/// Why an order was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Open,
    Close,
    Rollback,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Open => "open",
            Purpose::Close => "close",
            Purpose::Rollback => "rollback",
        }
    }
}

/// An order whose outcome is not known yet (polled every cycle; the
/// position sends nothing else until it is resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOrder {
    pub client_order_id: String,
    pub leg: Leg,
    pub purpose: Purpose,
    pub side: Side,
    pub qty: Decimal,
    /// Polls that found no trace of it at the venue.
    pub not_found: u32,
}

/// One hedged position, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundingPosition {
    pub id: String,
    /// The perpetual ("BTCUSDT-PERP").
    pub symbol: String,
    pub spot_symbol: String,
    pub base: String,
    pub quote: String,
    pub state: PositionState,
    /// Base coin held on the spot leg (after fees charged in base).
    pub spot_qty: Decimal,
    /// Average spot buy price.
    pub spot_entry: Decimal,
    /// Size of the perp short.
    pub perp_qty: Decimal,
    pub perp_entry: Decimal,
    /// The perp short the open aimed for (the spot leg holds at least it).
    #[serde(default)]
    pub hedge_target: Decimal,
    /// The hedge's notional at entry, USD: what counts toward exposure.
    pub notional_usd: Decimal,
    /// Funding received (negative = paid).
    pub funding: Decimal,
    pub funding_count: u32,
    /// Every fee, in the quote coin.
    pub fees: Decimal,
    /// Price PnL of closed quantities.
    pub realized: Decimal,
    /// Spot left below the venue's minimum after a close, booked at the
    /// last sell price.
    pub spot_dust: Decimal,
    pub interval_hours: u32,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    /// Consecutive cycles with the rate below the exit threshold.
    pub below_exit: u32,
    /// The funding settlement time the estimator expects next (venues
    /// without a payment history).
    pub next_funding_ms: i64,
    /// The last rate seen (estimated settlements use it).
    pub last_rate: Decimal,
    pub pending: Vec<PendingOrder>,
    pub close_reason: String,
    pub last_error: String,
}

impl FundingPosition {
    /// A new position about to send its legs.
    pub fn new(
        id: String,
        symbol: &str,
        spot: &InstrumentSpec,
        interval_hours: u32,
        now_ms: i64,
    ) -> FundingPosition {
        FundingPosition {
            id,
            symbol: symbol.to_string(),
            spot_symbol: spot.symbol.clone(),
            base: spot.base.clone(),
            quote: spot.quote.clone(),
            state: PositionState::Opening,
            spot_qty: Decimal::ZERO,
            spot_entry: Decimal::ZERO,
            perp_qty: Decimal::ZERO,
            perp_entry: Decimal::ZERO,
            hedge_target: Decimal::ZERO,
            notional_usd: Decimal::ZERO,
            funding: Decimal::ZERO,
            funding_count: 0,
            fees: Decimal::ZERO,
            realized: Decimal::ZERO,
            spot_dust: Decimal::ZERO,
            interval_hours,
            opened_at_ms: now_ms,
            closed_at_ms: None,
            below_exit: 0,
            next_funding_ms: 0,
            last_rate: Decimal::ZERO,
            pending: Vec::new(),
            close_reason: String::new(),
            last_error: String::new(),
        }
    }

    /// Applies a fill of `qty` at `price` with `fee_usd` (already in the
    /// quote coin); `fee_in_base` is the base coin the venue kept on a spot
    /// buy. Returns the price PnL it realizes.
    pub fn apply_fill(
        &mut self,
        leg: Leg,
        side: Side,
        qty: Decimal,
        price: Decimal,
        fee_usd: Decimal,
        fee_in_base: Decimal,
    ) -> Decimal {
        self.fees += fee_usd;
        let realized = match (leg, side) {
            (Leg::Spot, Side::Buy) => {
                let received = qty - fee_in_base;
                let total = self.spot_qty + received;
                if total > Decimal::ZERO {
                    // Cost basis per coin held; the base fee is booked as a fee.
                    self.spot_entry = (self.spot_entry * self.spot_qty + price * received) / total;
                }
                self.spot_qty = total;
                Decimal::ZERO
            }
            (Leg::Spot, Side::Sell) => {
                let sold = qty.min(self.spot_qty);
                self.spot_qty -= sold;
                sold * (price - self.spot_entry)
            }
            (Leg::Perp, Side::Sell) => {
                let total = self.perp_qty + qty;
                if total > Decimal::ZERO {
                    self.perp_entry = (self.perp_entry * self.perp_qty + price * qty) / total;
                }
                self.perp_qty = total;
                Decimal::ZERO
            }
            (Leg::Perp, Side::Buy) => {
                let bought = qty.min(self.perp_qty);
                self.perp_qty -= bought;
                bought * (self.perp_entry - price)
            }
        };
        self.realized += realized;
        realized
    }

    /// Books spot that is too small to sell as dust at `price` (its value
    /// stays in the account; the position no longer tracks it).
    pub fn book_dust(&mut self, price: Decimal) {
        if self.spot_qty > Decimal::ZERO {
            self.realized += self.spot_qty * (price - self.spot_entry);
            self.spot_dust += self.spot_qty;
            self.spot_qty = Decimal::ZERO;
        }
    }

    /// Price PnL of what is still held, at the given marks.
    pub fn unrealized(&self, spot_mark: Decimal, perp_mark: Decimal) -> Decimal {
        let spot = if spot_mark > Decimal::ZERO {
            self.spot_qty * (spot_mark - self.spot_entry)
        } else {
            Decimal::ZERO
        };
        let perp = if perp_mark > Decimal::ZERO {
            self.perp_qty * (self.perp_entry - perp_mark)
        } else {
            Decimal::ZERO
        };
        spot + perp
    }

    /// unrealized + realized + funding - fees.
    pub fn net(&self, spot_mark: Decimal, perp_mark: Decimal) -> Decimal {
        self.unrealized(spot_mark, perp_mark) + self.realized + self.funding - self.fees
    }
}

/// How big a hedge to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// The perp short (and the spot coins to hold).
    pub hedge_qty: Decimal,
    /// The spot buy: more than the hedge when the buy's fee is charged in
    /// the base coin, so what is left covers the short.
    pub spot_buy_qty: Decimal,
    /// hedge_qty * price: what the risk manager judges.
    pub notional_usd: Decimal,
}

/// Why no size fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    #[error("no price")]
    NoPrice,
    #[error("{qty} is below the minimum quantity {min} of {symbol}")]
    BelowMinQty {
        symbol: String,
        qty: Decimal,
        min: Decimal,
    },
    #[error("{notional} USD is below the minimum notional {min} of {symbol}")]
    BelowMinNotional {
        symbol: String,
        notional: Decimal,
        min: Decimal,
    },
}

fn floor_to(x: Decimal, step: Decimal) -> Decimal {
    if step <= Decimal::ZERO {
        return x;
    }
    ((x / step).round_dp_with_strategy(0, RoundingStrategy::ToZero) * step).normalize()
}

fn ceil_to(x: Decimal, step: Decimal) -> Decimal {
    if step <= Decimal::ZERO {
        return x;
    }
    ((x / step).round_dp_with_strategy(0, RoundingStrategy::AwayFromZero) * step).normalize()
}

/// Rounds down to the instrument's step.
pub fn round_down(x: Decimal, spec: &InstrumentSpec) -> Decimal {
    floor_to(x, spec.qty_step)
}

/// Sizes a hedge: `budget_usd / price`, rounded down to the coarser step of
/// the two instruments, meeting both minimum quantities and notionals. The
/// spot buy is grossed up by `spot_base_fee` (the fee rate charged in the
/// base coin on buys, 0 when it is charged in quote) and rounded up to the
/// spot step.
pub fn size_hedge(
    budget_usd: Decimal,
    price: Decimal,
    spot: &InstrumentSpec,
    perp: &InstrumentSpec,
    spot_base_fee: Decimal,
) -> Result<Sizing, SizingError> {
    if price <= Decimal::ZERO {
        return Err(SizingError::NoPrice);
    }
    let step = spot.qty_step.max(perp.qty_step);
    let hedge = floor_to(budget_usd.max(Decimal::ZERO) / price, step);
    for inst in [spot, perp] {
        if hedge < inst.min_qty || hedge.is_zero() {
            return Err(SizingError::BelowMinQty {
                symbol: inst.symbol.clone(),
                qty: hedge,
                min: inst.min_qty,
            });
        }
        if hedge * price < inst.min_notional {
            return Err(SizingError::BelowMinNotional {
                symbol: inst.symbol.clone(),
                notional: hedge * price,
                min: inst.min_notional,
            });
        }
    }
    let spot_buy = if spot_base_fee > Decimal::ZERO && spot_base_fee < Decimal::ONE {
        ceil_to(hedge / (Decimal::ONE - spot_base_fee), spot.qty_step)
    } else {
        hedge
    };
    Ok(Sizing {
        hedge_qty: hedge,
        spot_buy_qty: spot_buy,
        notional_usd: hedge * price,
    })
}

/// |spot - perp| / max(spot, perp) of the two fill prices.
pub fn drift(spot_fill: Decimal, perp_fill: Decimal) -> Decimal {
    let top = spot_fill.max(perp_fill);
    if top <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (spot_fill - perp_fill).abs() / top
}

/// Why a position should close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The scan succeeded and the perp is not in it any more.
    RateMissing,
    /// The rate turned negative: the short pays.
    RateNegative { rate: Decimal },
    /// Below the exit rate for long enough, after the minimum hold.
    RateDecayed { rate: Decimal },
}

impl CloseReason {
    pub fn describe(&self) -> String {
        match self {
            CloseReason::RateMissing => "funding rate missing".into(),
            CloseReason::RateNegative { rate } => format!("funding rate negative ({rate})"),
            CloseReason::RateDecayed { rate } => format!("funding rate decayed ({rate})"),
        }
    }
}

/// The knobs of the close decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosePolicy {
    pub exit_rate: Decimal,
    /// Minimum hold in funding periods of the position's perp.
    pub min_hold_periods: u32,
    /// Cycles in a row below the exit rate before closing.
    pub exit_confirmations: u32,
}

/// Decides whether an open position closes this cycle. `rate` is `None`
/// when a successful scan no longer lists the perp. Returns the decision
/// and the new count of consecutive cycles below the exit rate.
///
/// A rate missing or negative closes at once (waiting costs money or flies
/// blind); a rate that merely decayed below `exit_rate` closes only after
/// the minimum hold and `exit_confirmations` cycles in a row, so a rate
/// flickering around the threshold does not churn fees. Entry needs
/// `min_rate`, exit `exit_rate` < `min_rate`: the gap is the hysteresis.
pub fn close_decision(
    pos: &FundingPosition,
    rate: Option<Decimal>,
    now_ms: i64,
    policy: &ClosePolicy,
) -> (Option<CloseReason>, u32) {
    let Some(rate) = rate else {
        return (Some(CloseReason::RateMissing), pos.below_exit);
    };
    if rate < Decimal::ZERO {
        return (Some(CloseReason::RateNegative { rate }), pos.below_exit + 1);
    }
    if rate >= policy.exit_rate {
        return (None, 0);
    }
    let below = pos.below_exit + 1;
    let hold_ms =
        i64::from(policy.min_hold_periods) * i64::from(pos.interval_hours.max(1)) * HOUR_MS;
    let held_long_enough = now_ms - pos.opened_at_ms >= hold_ms;
    if held_long_enough && below >= policy.exit_confirmations.max(1) {
        (Some(CloseReason::RateDecayed { rate }), below)
    } else {
        (None, below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::funding::api::InstrumentKind;
    use rust_decimal_macros::dec;

    fn inst(
        symbol: &str,
        kind: InstrumentKind,
        step: Decimal,
        min_qty: Decimal,
        min_notional: Decimal,
    ) -> InstrumentSpec {
        InstrumentSpec {
            symbol: symbol.into(),
            base: "BTC".into(),
            quote: "USDT".into(),
            kind,
            qty_step: step,
            min_qty,
            min_notional,
            taker_fee: dec!(0.001),
            active: true,
        }
    }

    #[test]
    fn sizing_table() {
        let spot = inst(
            "BTCUSDT",
            InstrumentKind::Spot,
            dec!(0.000001),
            dec!(0.000001),
            dec!(1),
        );
        let perp = inst(
            "BTCUSDT-PERP",
            InstrumentKind::Perpetual,
            dec!(0.001),
            dec!(0.001),
            dec!(5),
        );
        // 1000 / 60000 = 0.016666.. -> 0.016 on the perp's coarser step;
        // spot buy 0.016 / 0.999 = 0.016016016.. -> 0.016017 (rounded up).
        let s = size_hedge(dec!(1000), dec!(60000), &spot, &perp, dec!(0.001)).unwrap();
        assert_eq!(s.hedge_qty, dec!(0.016));
        assert_eq!(s.spot_buy_qty, dec!(0.016017));
        assert!(s.spot_buy_qty * dec!(0.999) >= s.hedge_qty);
        // Fee in quote: the spot buy equals the hedge.
        let s = size_hedge(dec!(1000), dec!(60000), &spot, &perp, dec!(0)).unwrap();
        assert_eq!(s.spot_buy_qty, dec!(0.016));
        // 50 USD -> 0.000833 -> 0.000 on the perp step: below its minimum.
        assert!(matches!(
            size_hedge(dec!(50), dec!(60000), &spot, &perp, dec!(0.001)),
            Err(SizingError::BelowMinQty { .. })
        ));
        // Meets the quantity but not the perp's 5 USD minimum notional.
        let cheap = inst(
            "XUSDT-PERP",
            InstrumentKind::Perpetual,
            dec!(1),
            dec!(1),
            dec!(5),
        );
        let cheap_spot = inst("XUSDT", InstrumentKind::Spot, dec!(1), dec!(1), dec!(1));
        assert!(matches!(
            size_hedge(dec!(4.5), dec!(1.5), &cheap_spot, &cheap, dec!(0)),
            Err(SizingError::BelowMinNotional { .. })
        ));
        assert_eq!(
            size_hedge(dec!(1000), dec!(0), &spot, &perp, dec!(0)),
            Err(SizingError::NoPrice)
        );
    }

    #[test]
    fn drift_is_relative_to_the_higher_fill() {
        assert_eq!(drift(dec!(100), dec!(98)), dec!(0.02));
        assert!(drift(dec!(100), dec!(97.9)) > dec!(0.02));
        assert_eq!(drift(dec!(0), dec!(0)), dec!(0));
    }

    #[test]
    fn close_decisions_with_min_hold_and_hysteresis() {
        let spot = inst(
            "BTCUSDT",
            InstrumentKind::Spot,
            dec!(0.001),
            dec!(0.001),
            dec!(1),
        );
        let mut pos = FundingPosition::new("p".into(), "BTCUSDT-PERP", &spot, 8, 0);
        pos.state = PositionState::Open;
        let policy = ClosePolicy {
            exit_rate: dec!(0.0001),
            min_hold_periods: 1,
            exit_confirmations: 2,
        };
        let h = 3_600_000;
        struct Case {
            name: &'static str,
            rate: Option<Decimal>,
            now: i64,
            below_before: u32,
            close: bool,
            below_after: u32,
        }
        let cases = [
            Case {
                name: "rich rate stays",
                rate: Some(dec!(0.0005)),
                now: 9 * h,
                below_before: 1,
                close: false,
                below_after: 0,
            },
            Case {
                name: "missing closes at once",
                rate: None,
                now: h,
                below_before: 0,
                close: true,
                below_after: 0,
            },
            Case {
                name: "negative closes at once",
                rate: Some(dec!(-0.0001)),
                now: h,
                below_before: 0,
                close: true,
                below_after: 1,
            },
            Case {
                name: "decayed inside the hold waits",
                rate: Some(dec!(0.00005)),
                now: 7 * h,
                below_before: 5,
                close: false,
                below_after: 6,
            },
            Case {
                name: "decayed once after the hold waits for confirmation",
                rate: Some(dec!(0.00005)),
                now: 9 * h,
                below_before: 0,
                close: false,
                below_after: 1,
            },
            Case {
                name: "decayed twice after the hold closes",
                rate: Some(dec!(0.00005)),
                now: 9 * h,
                below_before: 1,
                close: true,
                below_after: 2,
            },
            Case {
                name: "exactly the exit rate is not below",
                rate: Some(dec!(0.0001)),
                now: 9 * h,
                below_before: 3,
                close: false,
                below_after: 0,
            },
        ];
        for c in cases {
            pos.below_exit = c.below_before;
            let (decision, below) = close_decision(&pos, c.rate, c.now, &policy);
            assert_eq!(decision.is_some(), c.close, "{}", c.name);
            assert_eq!(below, c.below_after, "{}", c.name);
        }
    }

    #[test]
    fn fills_move_entry_realized_and_fees() {
        let spot = inst(
            "BTCUSDT",
            InstrumentKind::Spot,
            dec!(0.001),
            dec!(0.001),
            dec!(1),
        );
        let mut p = FundingPosition::new("p".into(), "BTCUSDT-PERP", &spot, 8, 0);
        // Buy 1.001 at 100 with 0.001 BTC fee (0.1 USD): hold 1.000.
        p.apply_fill(
            Leg::Spot,
            Side::Buy,
            dec!(1.001),
            dec!(100),
            dec!(0.1),
            dec!(0.001),
        );
        p.apply_fill(
            Leg::Perp,
            Side::Sell,
            dec!(1),
            dec!(101),
            dec!(0.05555),
            dec!(0),
        );
        assert_eq!(p.spot_qty, dec!(1.000));
        assert_eq!(p.spot_entry, dec!(100));
        assert_eq!(p.unrealized(dec!(110), dec!(111)), dec!(0));
        p.apply_fill(
            Leg::Spot,
            Side::Sell,
            dec!(1),
            dec!(110),
            dec!(0.11),
            dec!(0),
        );
        p.apply_fill(
            Leg::Perp,
            Side::Buy,
            dec!(1),
            dec!(111),
            dec!(0.06105),
            dec!(0),
        );
        assert_eq!(p.realized, dec!(0));
        assert_eq!(p.fees, dec!(0.3266));
        p.funding = dec!(0.5);
        assert_eq!(p.net(dec!(110), dec!(111)), dec!(0.1734));
    }
}
