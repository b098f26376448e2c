//! PnL from the fills ledger (docs/pnl.md): realized at average cost per
//! (engine, strategy, instrument) position, fees and funding included, by
//! UTC day, engine, strategy or instrument, and unrealized at the last
//! ticker. Pure: the ledger's rows, the marks and the base asset of each
//! symbol go in, the table comes out.

use std::collections::{BTreeMap, HashMap};

use herd_venue::Side;
use rust_decimal::Decimal;

use crate::fills::{Fill, Funding};

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    Day,
    Engine,
    Strategy,
    Instrument,
}

/// The PnL of one group, in quote currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Trading gains at average cost, less fees, plus funding.
    pub realized: Decimal,
    /// Fees paid (in `realized` already), in quote.
    pub fees: Decimal,
    /// Funding received (+) or paid (-) (in `realized` already).
    pub funding: Decimal,
    /// Open positions valued at the marks.
    pub unrealized: Decimal,
    /// Quote volume traded.
    pub volume: Decimal,
    pub fills: u32,
}

impl Totals {
    pub fn total(&self) -> Decimal {
        self.realized + self.unrealized
    }

    fn add(&mut self, o: &Totals) {
        self.realized += o.realized;
        self.fees += o.fees;
        self.funding += o.funding;
        self.unrealized += o.unrealized;
        self.volume += o.volume;
        self.fills += o.fills;
    }
}

/// An open position at average cost: `qty` signed (short < 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub qty: Decimal,
    pub avg: Decimal,
}

impl Position {
    /// Applies a fill; returns the gain it realized (before fees).
    pub fn apply(&mut self, side: Side, volume: Decimal, price: Decimal) -> Decimal {
        let dir = match side {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        };
        if self.qty.is_zero() || self.qty.is_sign_negative() == dir.is_sign_negative() {
            let held = self.qty.abs();
            self.avg = (held * self.avg + volume * price) / (held + volume);
            self.qty += dir * volume;
            return Decimal::ZERO;
        }
        let closed = volume.min(self.qty.abs());
        let long = self.qty.is_sign_positive();
        let gain = if long {
            (price - self.avg) * closed
        } else {
            (self.avg - price) * closed
        };
        self.qty += dir * closed;
        let rest = volume - closed;
        if self.qty.is_zero() {
            self.avg = Decimal::ZERO;
        }
        if rest > Decimal::ZERO {
            self.qty = dir * rest;
            self.avg = price;
        }
        gain
    }
}

/// The UTC day of a time, as `YYYY-MM-DD`.
pub fn day_of(ms: i64) -> String {
    let (y, m, d) = herd_venue::calendar::civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A fee in quote units: a fee charged in the instrument's base asset is
/// converted at the fill's price; any other asset is taken as quote.
pub fn fee_in_quote(f: &Fill, base: Option<&str>) -> Decimal {
    match base {
        Some(b) if !f.fee_asset.is_empty() && f.fee_asset.eq_ignore_ascii_case(b) => {
            f.fee * f.price
        }
        _ => f.fee,
    }
}

/// What one fill does to its position and to realized PnL: the gain it
/// realizes and the fee in quote, shown apart. A fee charged in the base
/// asset changes the base that moved instead (a buy receives `volume - fee`
/// for `volume x price`; a sell gives up `volume + fee` for the same), so
/// it is in the position's cost, not taken off realized PnL a second time.
/// Returns (realized change, fee in quote).
pub fn apply_fill(pos: &mut Position, f: &Fill, base: Option<&str>) -> (Decimal, Decimal) {
    let fee_quote = fee_in_quote(f, base);
    let in_base =
        base.is_some_and(|b| !f.fee_asset.is_empty() && f.fee_asset.eq_ignore_ascii_case(b));
    if in_base && f.fee > Decimal::ZERO {
        let moved = match f.side {
            Side::Buy => f.volume - f.fee,
            Side::Sell => f.volume + f.fee,
        };
        if moved > Decimal::ZERO {
            let gain = pos.apply(f.side, moved, f.volume * f.price / moved);
            return (gain, fee_quote);
        }
    }
    (pos.apply(f.side, f.volume, f.price) - fee_quote, fee_quote)
}

/// What [`compute`] needs besides the rows.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// symbol -> base asset (for fees charged in base).
    pub bases: HashMap<String, String>,
    /// symbol -> last price (for unrealized PnL).
    pub marks: HashMap<String, Decimal>,
    /// The current time (unrealized goes to this day's row when by day).
    pub now_ms: i64,
}

/// Positions after every fill, by (engine, strategy, symbol).
pub type Positions = BTreeMap<(String, String, String), Position>;

/// The table: one row per group (sorted by key) and the total.
pub fn compute(
    fills: &[Fill],
    funding: &[Funding],
    ctx: &Context,
    by: Grouping,
) -> (Vec<(String, Totals)>, Totals, Positions) {
    let mut rows: BTreeMap<String, Totals> = BTreeMap::new();
    let mut positions: Positions = BTreeMap::new();
    // Funding goes to the strategy that last traded the symbol on that engine.
    let mut holder: HashMap<(String, String), String> = HashMap::new();
    let key = |day: &str, engine: &str, strategy: &str, symbol: &str| -> String {
        match by {
            Grouping::Day => day.to_string(),
            Grouping::Engine => engine.to_string(),
            Grouping::Strategy => strategy.to_string(),
            Grouping::Instrument => symbol.to_string(),
        }
    };
    for f in fills {
        let pos = positions
            .entry((f.engine.clone(), f.strategy.clone(), f.symbol.clone()))
            .or_default();
        let (change, fee) = apply_fill(pos, f, ctx.bases.get(&f.symbol).map(String::as_str));
        holder.insert((f.engine.clone(), f.symbol.clone()), f.strategy.clone());
        let t = rows
            .entry(key(&day_of(f.time_ms), &f.engine, &f.strategy, &f.symbol))
            .or_default();
        t.realized += change;
        t.fees += fee;
        t.volume += f.volume * f.price;
        t.fills += 1;
    }
    for p in funding {
        let strategy = holder
            .get(&(p.engine.clone(), p.symbol.clone()))
            .cloned()
            .unwrap_or_else(|| "funding".to_string());
        let t = rows
            .entry(key(&day_of(p.time_ms), &p.engine, &strategy, &p.symbol))
            .or_default();
        t.realized += p.amount;
        t.funding += p.amount;
    }
    let today = day_of(ctx.now_ms);
    for ((engine, strategy, symbol), pos) in &positions {
        if pos.qty.is_zero() {
            continue;
        }
        let Some(mark) = ctx.marks.get(symbol) else {
            continue;
        };
        rows.entry(key(&today, engine, strategy, symbol))
            .or_default()
            .unrealized += pos.qty * (*mark - pos.avg);
    }
    let mut total = Totals::default();
    for t in rows.values() {
        total.add(t);
    }
    (rows.into_iter().collect(), total, positions)
}

/// Realized PnL over time per engine and for the whole herd: one point
/// (time, cumulative realized) after each fill and funding payment, oldest
/// first, and a last point at `ctx.now_ms` that adds the unrealized part.
/// The herd's series is keyed "" .
pub fn equity(
    fills: &[Fill],
    funding: &[Funding],
    ctx: &Context,
) -> BTreeMap<String, Vec<(i64, Decimal)>> {
    let mut steps: Vec<(i64, String, Decimal)> = Vec::new();
    let mut positions: Positions = BTreeMap::new();
    for f in fills {
        let pos = positions
            .entry((f.engine.clone(), f.strategy.clone(), f.symbol.clone()))
            .or_default();
        let (change, _) = apply_fill(pos, f, ctx.bases.get(&f.symbol).map(String::as_str));
        steps.push((f.time_ms, f.engine.clone(), change));
    }
    for p in funding {
        steps.push((p.time_ms, p.engine.clone(), p.amount));
    }
    steps.sort_by_key(|s| s.0);
    let mut out: BTreeMap<String, Vec<(i64, Decimal)>> = BTreeMap::new();
    let mut cum: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut herd = Decimal::ZERO;
    for (t, engine, d) in steps {
        let c = cum.entry(engine.clone()).or_default();
        *c += d;
        herd += d;
        out.entry(engine).or_default().push((t, *c));
        out.entry(String::new()).or_default().push((t, herd));
    }
    let mut unrealized: BTreeMap<String, Decimal> = BTreeMap::new();
    for ((engine, _, symbol), pos) in &positions {
        if let Some(mark) = ctx.marks.get(symbol).filter(|_| !pos.qty.is_zero()) {
            *unrealized.entry(engine.clone()).or_default() += pos.qty * (*mark - pos.avg);
        }
    }
    let total_unrealized: Decimal = unrealized.values().copied().sum();
    for (engine, c) in &cum {
        let u = unrealized.get(engine).copied().unwrap_or_default();
        out.entry(engine.clone())
            .or_default()
            .push((ctx.now_ms, *c + u));
    }
    if !cum.is_empty() {
        out.entry(String::new())
            .or_default()
            .push((ctx.now_ms, herd + total_unrealized));
    }
    out
}

/// A decimal as the API prints money: at most 8 places, no trailing zeros.
pub fn money(d: Decimal) -> String {
    d.round_dp(8).normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn fill(
        t: i64,
        engine: &str,
        strategy: &str,
        side: Side,
        v: Decimal,
        p: Decimal,
        fee: Decimal,
    ) -> Fill {
        Fill {
            trade_id: format!("O{t}:{v}"),
            trade_id_derived: true,
            time_ms: t,
            engine: engine.into(),
            strategy: strategy.into(),
            symbol: "DOGEUSD".into(),
            side,
            price: p,
            volume: v,
            fee,
            fee_asset: "USD".into(),
            client_order_id: format!("c{t}"),
            venue_order_id: format!("O{t}"),
        }
    }

    #[test]
    fn average_cost_table() {
        struct Case {
            fills: Vec<(Side, Decimal, Decimal)>,
            gain: Decimal,
            qty: Decimal,
            avg: Decimal,
        }
        use Side::{Buy, Sell};
        let cases = [
            Case {
                fills: vec![
                    (Buy, dec!(10), dec!(1)),
                    (Buy, dec!(10), dec!(2)),
                    (Sell, dec!(5), dec!(3)),
                ],
                gain: dec!(7.5),
                qty: dec!(15),
                avg: dec!(1.5),
            },
            // Through zero: the rest opens a short at the fill's price.
            Case {
                fills: vec![(Buy, dec!(2), dec!(10)), (Sell, dec!(5), dec!(12))],
                gain: dec!(4),
                qty: dec!(-3),
                avg: dec!(12),
            },
            // A short closed lower gains.
            Case {
                fills: vec![(Sell, dec!(4), dec!(5)), (Buy, dec!(4), dec!(4))],
                gain: dec!(4),
                qty: dec!(0),
                avg: dec!(0),
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let mut p = Position::default();
            let gain: Decimal = c.fills.iter().map(|(s, v, px)| p.apply(*s, *v, *px)).sum();
            assert_eq!((gain, p.qty, p.avg), (c.gain, c.qty, c.avg), "case {i}");
        }
    }

    /// A prepared sequence computed by hand (docs/pnl.md has the same).
    #[test]
    fn prepared_sequence_to_the_cent() {
        let day1 = 1_764_892_800_000; // 2025-12-05T00:00Z
        let day2 = day1 + 86_400_000;
        let fills = vec![
            // grid on e0: buy 100 @ 0.10 fee 0.026, buy 100 @ 0.12 fee 0.0312
            fill(
                day1 + 1,
                "e0",
                "grid",
                Side::Buy,
                dec!(100),
                dec!(0.10),
                dec!(0.026),
            ),
            fill(
                day1 + 2,
                "e0",
                "grid",
                Side::Buy,
                dec!(100),
                dec!(0.12),
                dec!(0.0312),
            ),
            // sell 150 @ 0.13 fee 0.0507: gain 150 * (0.13 - 0.11) = 3
            fill(
                day2 + 3,
                "e0",
                "grid",
                Side::Sell,
                dec!(150),
                dec!(0.13),
                dec!(0.0507),
            ),
            // manual on e1: a short, closed higher: (2.0 - 2.5) * 10 = -5
            fill(
                day2 + 4,
                "e1",
                "manual",
                Side::Sell,
                dec!(10),
                dec!(2.0),
                dec!(0.05),
            ),
            fill(
                day2 + 5,
                "e1",
                "manual",
                Side::Buy,
                dec!(10),
                dec!(2.5),
                dec!(0.0625),
            ),
        ];
        let funding = vec![Funding {
            payment_id: "f1".into(),
            time_ms: day2 + 6,
            engine: "e1".into(),
            symbol: "DOGEUSD".into(),
            amount: dec!(-0.37),
            asset: "USD".into(),
        }];
        let ctx = Context {
            marks: [("DOGEUSD".to_string(), dec!(0.14))].into(),
            now_ms: day2 + 10,
            ..Context::default()
        };
        let (rows, total, _) = compute(&fills, &funding, &ctx, Grouping::Engine);
        let e0 = &rows[0].1;
        // realized: 3 - (0.026 + 0.0312 + 0.0507) = 2.8921
        assert_eq!(e0.realized, dec!(2.8921));
        // 50 left at 0.11, marked at 0.14: 1.5
        assert_eq!(e0.unrealized, dec!(1.5));
        let e1 = &rows[1].1;
        // -5 - 0.1125 - 0.37 = -5.4825
        assert_eq!(e1.realized, dec!(-5.4825));
        assert_eq!(e1.funding, dec!(-0.37));
        assert_eq!(total.total().round_dp(2), dec!(-1.09));
        let (days, _, _) = compute(&fills, &funding, &ctx, Grouping::Day);
        assert_eq!(days[0].0, "2025-12-05");
        assert_eq!(days[0].1.realized, dec!(-0.0572));
        assert_eq!(days[1].1.realized, dec!(2.9493) - dec!(5.4825));
        assert_eq!(days[1].1.unrealized, dec!(1.5), "unrealized on today's row");
        let (by_strategy, _, _) = compute(&fills, &funding, &ctx, Grouping::Strategy);
        let keys: Vec<&str> = by_strategy.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["grid", "manual"]);
    }

    #[test]
    fn equity_series_end_at_the_totals() {
        let t0 = 1_764_892_800_000;
        let fills = vec![
            fill(t0, "e0", "grid", Side::Buy, dec!(10), dec!(1), dec!(0.01)),
            fill(t0 + 1, "e1", "manual", Side::Buy, dec!(1), dec!(5), dec!(0)),
            fill(
                t0 + 2,
                "e0",
                "grid",
                Side::Sell,
                dec!(10),
                dec!(1.2),
                dec!(0.012),
            ),
        ];
        let ctx = Context {
            marks: [("DOGEUSD".to_string(), dec!(6))].into(),
            now_ms: t0 + 10,
            ..Context::default()
        };
        let eq = equity(&fills, &[], &ctx);
        let e0: Vec<Decimal> = eq["e0"].iter().map(|p| p.1).collect();
        assert_eq!(e0, [dec!(-0.01), dec!(1.978), dec!(1.978)]);
        // e1 holds 1 bought at 5, marked at 6.
        assert_eq!(eq["e1"].last().unwrap(), &(t0 + 10, dec!(1)));
        assert_eq!(eq[""].last().unwrap(), &(t0 + 10, dec!(2.978)));
        let (_, total, _) = compute(&fills, &[], &ctx, Grouping::Engine);
        assert_eq!(total.total(), dec!(2.978));
    }

    /// A buy whose fee is taken in base holds less; selling what is held
    /// closes the position, and the fee is in the loss once.
    #[test]
    fn base_fees_shrink_the_position() {
        let mut buy = fill(
            1,
            "e0",
            "funding",
            Side::Buy,
            dec!(0.01),
            dec!(50000),
            dec!(0.00001),
        );
        buy.fee_asset = "BTC".into();
        let sell = fill(
            2,
            "e0",
            "funding",
            Side::Sell,
            dec!(0.00999),
            dec!(50000),
            dec!(0.4995),
        );
        let ctx = Context {
            bases: [("DOGEUSD".to_string(), "BTC".to_string())].into(),
            marks: [("DOGEUSD".to_string(), dec!(60000))].into(),
            now_ms: 3,
        };
        let (_, total, positions) = compute(&[buy, sell], &[], &ctx, Grouping::Engine);
        assert!(positions.values().all(|p| p.qty.is_zero()), "{positions:?}");
        assert_eq!(total.unrealized, Decimal::ZERO);
        // Paid 500 for 0.00999 sold at 499.5, less the 0.4995 quote fee.
        assert_eq!(total.realized.round_dp(12), dec!(-0.9995));
        assert_eq!(total.fees, dec!(0.9995));
    }

    #[test]
    fn fee_in_base_is_converted() {
        let mut f = fill(1, "e0", "grid", Side::Buy, dec!(100), dec!(0.1), dec!(0.2));
        f.fee_asset = "XDG".into();
        assert_eq!(fee_in_quote(&f, Some("XDG")), dec!(0.02));
        assert_eq!(fee_in_quote(&f, Some("DOGE")), dec!(0.2));
    }
}
