//! Instruments and the pre-trade check every order passes before it leaves
//! the gateway: rounded to the venue's precision, refused below its minimums.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::{NewOrder, OrderType, Side};

/// Spot pair or linear perpetual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstrumentKind {
    Spot,
    Perpetual,
}

/// A tradable instrument and its filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// The venue's name for it ("DOGEUSD", "BTCUSDT").
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub kind: InstrumentKind,
    pub tick_size: Decimal,
    pub price_decimals: u32,
    pub lot_decimals: u32,
    pub min_volume: Decimal,
    pub min_cost: Decimal,
    pub maker_fee: Decimal,
    pub taker_fee: Decimal,
    pub max_open_orders: u32,
}

/// Why an order cannot be sent as asked. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OrderCheckError {
    pub field: &'static str,
    pub message: String,
}

impl OrderCheckError {
    fn new(field: &'static str, message: impl Into<String>) -> OrderCheckError {
        OrderCheckError {
            field,
            message: message.into(),
        }
    }
}

impl Instrument {
    /// DOGE/USD with Kraken's spot filters (tick 0.0000001, volumes to 8
    /// decimals, at least 10 DOGE and 0.5 USD, fees 0.25 % maker and 0.40 %
    /// taker, 225 open orders): the paper venue's default instrument, and
    /// the one the strategies' tests trade.
    pub fn kraken_doge_usd() -> Instrument {
        Instrument {
            symbol: "DOGEUSD".into(),
            base: "DOGE".into(),
            quote: "USD".into(),
            kind: InstrumentKind::Spot,
            tick_size: Decimal::new(1, 7),
            price_decimals: 7,
            lot_decimals: 8,
            min_volume: Decimal::from(10),
            min_cost: Decimal::new(5, 1),
            maker_fee: Decimal::new(25, 4),
            taker_fee: Decimal::new(40, 4),
            max_open_orders: 225,
        }
    }

    /// Rounds a limit price to the tick: buys down and sells up, so rounding
    /// never makes an order more aggressive than the engine asked.
    pub fn round_price(&self, side: Side, price: Decimal) -> Decimal {
        let strategy = match side {
            Side::Buy => RoundingStrategy::ToNegativeInfinity,
            Side::Sell => RoundingStrategy::ToPositiveInfinity,
        };
        let by_decimals = price.round_dp_with_strategy(self.price_decimals, strategy);
        if self.tick_size <= Decimal::ZERO {
            return by_decimals;
        }
        // A price too large to count in ticks stays rounded by decimals
        // ([`Instrument::check_order`] refuses it before it gets here).
        let Some(ticks) = price.checked_div(self.tick_size) else {
            return by_decimals;
        };
        let ticks = ticks.round_dp_with_strategy(0, strategy).normalize();
        ticks
            .checked_mul(self.tick_size)
            .map_or(by_decimals, |d| d.normalize())
    }

    /// Rounds a volume down to the lot precision.
    pub fn round_volume(&self, volume: Decimal) -> Decimal {
        volume
            .round_dp_with_strategy(self.lot_decimals, RoundingStrategy::ToZero)
            .normalize()
    }

    /// Validates an order against this instrument and returns it rounded.
    ///
    /// `reference_price` prices a market order for the cost minimum.
    pub fn check_order(
        &self,
        order: &NewOrder,
        reference_price: Option<Decimal>,
    ) -> Result<NewOrder, OrderCheckError> {
        if order.reduce_only && self.kind == InstrumentKind::Spot {
            return Err(OrderCheckError::new(
                "reduce_only",
                format!("reduce-only applies to perpetuals; {} is spot", self.symbol),
            ));
        }
        if order.volume <= Decimal::ZERO {
            return Err(OrderCheckError::new("volume", "must be greater than zero"));
        }
        let volume = self.round_volume(order.volume);
        if volume <= Decimal::ZERO {
            return Err(OrderCheckError::new(
                "volume",
                format!(
                    "{} rounds to zero at {} lot decimals",
                    order.volume, self.lot_decimals
                ),
            ));
        }
        if volume < self.min_volume {
            return Err(OrderCheckError::new(
                "volume",
                format!(
                    "{volume} is below the minimum order volume {} for {}",
                    self.min_volume, self.symbol
                ),
            ));
        }
        let price = match (order.order_type, order.price) {
            (OrderType::Limit, None) => {
                return Err(OrderCheckError::new("price", "a limit order needs a price"));
            }
            (OrderType::Limit, Some(p)) if p <= Decimal::ZERO => {
                return Err(OrderCheckError::new("price", "must be greater than zero"));
            }
            (OrderType::Limit, Some(p))
                if self.tick_size > Decimal::ZERO && p.checked_div(self.tick_size).is_none() =>
            {
                return Err(OrderCheckError::new(
                    "price",
                    format!("{p} is too large for {}", self.symbol),
                ));
            }
            (OrderType::Limit, Some(p)) => {
                let rounded = self.round_price(order.side, p);
                if rounded <= Decimal::ZERO {
                    return Err(OrderCheckError::new(
                        "price",
                        format!("{p} rounds to zero at tick {}", self.tick_size),
                    ));
                }
                Some(rounded)
            }
            (OrderType::Market, Some(_)) => {
                return Err(OrderCheckError::new(
                    "price",
                    "a market order takes no price",
                ));
            }
            (OrderType::Market, None) => None,
        };
        if order.post_only && order.order_type == OrderType::Market {
            return Err(OrderCheckError::new(
                "post_only",
                "a market order cannot be post-only",
            ));
        }
        if let Some(p) = price.or(reference_price) {
            let Some(cost) = p.checked_mul(volume) else {
                return Err(OrderCheckError::new(
                    "volume",
                    format!("{volume} at {p} is too large an order for {}", self.symbol),
                ));
            };
            if cost < self.min_cost {
                return Err(OrderCheckError::new(
                    "volume",
                    format!(
                        "cost {cost} is below the minimum order cost {} for {}",
                        self.min_cost, self.symbol
                    ),
                ));
            }
        }
        Ok(NewOrder {
            volume,
            price,
            ..order.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn doge() -> Instrument {
        Instrument {
            symbol: "DOGEUSD".into(),
            base: "DOGE".into(),
            quote: "USD".into(),
            kind: InstrumentKind::Spot,
            tick_size: dec!(0.000001),
            price_decimals: 6,
            lot_decimals: 8,
            min_volume: dec!(10),
            min_cost: dec!(0.5),
            maker_fee: dec!(0.0025),
            taker_fee: dec!(0.004),
            max_open_orders: 60,
        }
    }

    fn order(side: Side, volume: Decimal, price: Option<Decimal>) -> NewOrder {
        NewOrder {
            client_order_id: "c1".into(),
            symbol: "DOGEUSD".into(),
            side,
            order_type: if price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            volume,
            price,
            post_only: false,
            userref: 0,
            reduce_only: false,
        }
    }

    #[test]
    fn check_order_table() {
        struct Case {
            name: &'static str,
            order: NewOrder,
            expect: Result<(Decimal, Option<Decimal>), &'static str>,
        }
        let cases = [
            Case {
                name: "buy price rounds down to tick",
                order: order(Side::Buy, dec!(20.123456789), Some(dec!(0.1234567))),
                expect: Ok((dec!(20.12345678), Some(dec!(0.123456)))),
            },
            Case {
                name: "sell price rounds up to tick",
                order: order(Side::Sell, dec!(20), Some(dec!(0.1234561))),
                expect: Ok((dec!(20), Some(dec!(0.123457)))),
            },
            Case {
                name: "zero volume",
                order: order(Side::Buy, dec!(0), Some(dec!(0.1))),
                expect: Err("volume"),
            },
            Case {
                name: "negative volume",
                order: order(Side::Buy, dec!(-5), Some(dec!(0.1))),
                expect: Err("volume"),
            },
            Case {
                name: "below minimum volume",
                order: order(Side::Buy, dec!(9.99), Some(dec!(0.1))),
                expect: Err("volume"),
            },
            Case {
                name: "below minimum cost",
                order: order(Side::Buy, dec!(10), Some(dec!(0.01))),
                expect: Err("volume"),
            },
            Case {
                name: "negative price",
                order: order(Side::Buy, dec!(10), Some(dec!(-0.1))),
                expect: Err("price"),
            },
            Case {
                name: "reduce-only on spot",
                order: NewOrder {
                    reduce_only: true,
                    ..order(Side::Sell, dec!(10), Some(dec!(0.1)))
                },
                expect: Err("reduce_only"),
            },
            Case {
                name: "market order without price passes",
                order: order(Side::Buy, dec!(10), None),
                expect: Ok((dec!(10), None)),
            },
        ];
        for case in cases {
            let got = doge().check_order(&case.order, None);
            match (got, case.expect) {
                (Ok(o), Ok((v, p))) => {
                    assert_eq!((o.volume, o.price), (v, p), "{}", case.name)
                }
                (Err(e), Err(field)) => assert_eq!(e.field, field, "{}: {e}", case.name),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
            }
        }
    }

    #[test]
    fn a_price_or_cost_beyond_decimal_range_is_refused_not_a_panic() {
        let i = doge();
        let order = |volume: Decimal, price: Decimal| NewOrder {
            client_order_id: "x".into(),
            symbol: "DOGEUSD".into(),
            side: Side::Buy,
            order_type: OrderType::Limit,
            volume,
            price: Some(price),
            post_only: false,
            userref: 0,
            reduce_only: false,
        };
        // Found by tests/tests/hostile.rs: price / tick overflowed.
        let e = i
            .check_order(&order(dec!(10), dec!(79230000000000000000000)), None)
            .unwrap_err();
        assert_eq!(e.field, "price");
        let e = i
            .check_order(&order(Decimal::MAX, dec!(7922816251426433759354)), None)
            .unwrap_err();
        assert_eq!(e.field, "volume");
        assert_eq!(
            i.round_price(Side::Buy, Decimal::MAX),
            Decimal::MAX.round_dp(6)
        );
    }
}
