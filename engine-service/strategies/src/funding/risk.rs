//! The risk manager: may a new hedge open, and how healthy is the margin.
//! Pure.
//!
//! [`check_can_open`] answers with the first reason that forbids an open
//! (every reason is a variant of [`Rejection`]); [`margin_band`] sorts the
//! account's maintenance-margin ratio into ok / alert (stop opening) /
//! critical (emergency stop).

use rust_decimal::Decimal;
use serde::Serialize;

use crate::funding::config::RiskLimits;

/// How healthy the account's margin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarginBand {
    Ok,
    /// >= margin_alert: no new positions.
    Alert,
    /// >= margin_critical: emergency stop.
    Critical,
    /// Not read yet or the read failed: no new positions.
    Unknown,
}

impl MarginBand {
    pub fn as_str(self) -> &'static str {
        match self {
            MarginBand::Ok => "ok",
            MarginBand::Alert => "alert",
            MarginBand::Critical => "critical",
            MarginBand::Unknown => "unknown",
        }
    }
}

/// The band of a maintenance-margin ratio.
pub fn margin_band(ratio: Option<Decimal>, limits: &RiskLimits) -> MarginBand {
    match ratio {
        None => MarginBand::Unknown,
        Some(r) if r >= limits.margin_critical => MarginBand::Critical,
        Some(r) if r >= limits.margin_alert => MarginBand::Alert,
        Some(_) => MarginBand::Ok,
    }
}

/// Why a position may not open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    #[error("size {size} USD is not positive")]
    NonPositiveSize { size: Decimal },
    #[error("size {size} USD is above the per-pair maximum {max}")]
    AboveMaxPositionSize { size: Decimal, max: Decimal },
    #[error("{open} positions open, the maximum is {max}")]
    TooManyPositions { open: u32, max: u32 },
    #[error("a position on {symbol} is already open")]
    AlreadyOpen { symbol: String },
    #[error("total exposure would be {would_be} USD, above the cap {cap}")]
    ExposureCap { would_be: Decimal, cap: Decimal },
    #[error("opening is paused: {reason}")]
    OpeningPaused { reason: String },
    #[error("the emergency stop has fired")]
    EmergencyStopped,
    #[error("margin is {band}: no new positions")]
    Margin { band: String },
    #[error("{symbol}: the store and the venue disagree; not trading it")]
    ReconcileMismatch { symbol: String },
}

/// The state the risk manager judges an open against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RiskView {
    /// Perpetuals with a position not yet fully closed.
    pub open_symbols: Vec<String>,
    /// Sum of the open positions' notional, USD.
    pub exposure_usd: Decimal,
    /// Why opening is paused (operator, engine mode, shutdown), if it is.
    pub opening_paused: Option<String>,
    pub emergency: bool,
    pub margin_band: Option<MarginBand>,
    /// Symbols with a reconciliation mismatch.
    pub blocked_symbols: Vec<String>,
}

/// May a position of `size_usd` open on `symbol`?
pub fn check_can_open(
    symbol: &str,
    size_usd: Decimal,
    limits: &RiskLimits,
    view: &RiskView,
) -> Result<(), Rejection> {
    if view.emergency {
        return Err(Rejection::EmergencyStopped);
    }
    if let Some(reason) = &view.opening_paused {
        return Err(Rejection::OpeningPaused {
            reason: reason.clone(),
        });
    }
    match view.margin_band.unwrap_or(MarginBand::Unknown) {
        MarginBand::Ok => {}
        band => {
            return Err(Rejection::Margin {
                band: band.as_str().into(),
            });
        }
    }
    if view.blocked_symbols.iter().any(|s| s == symbol) {
        return Err(Rejection::ReconcileMismatch {
            symbol: symbol.into(),
        });
    }
    if size_usd <= Decimal::ZERO {
        return Err(Rejection::NonPositiveSize { size: size_usd });
    }
    if size_usd > limits.max_position_usd {
        return Err(Rejection::AboveMaxPositionSize {
            size: size_usd,
            max: limits.max_position_usd,
        });
    }
    let open = u32::try_from(view.open_symbols.len()).unwrap_or(u32::MAX);
    if open >= limits.max_positions {
        return Err(Rejection::TooManyPositions {
            open,
            max: limits.max_positions,
        });
    }
    if view.open_symbols.iter().any(|s| s == symbol) {
        return Err(Rejection::AlreadyOpen {
            symbol: symbol.into(),
        });
    }
    let would_be = view.exposure_usd + size_usd;
    if would_be > limits.max_total_exposure_usd {
        return Err(Rejection::ExposureCap {
            would_be,
            cap: limits.max_total_exposure_usd,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn healthy() -> RiskView {
        RiskView {
            open_symbols: vec!["AAAUSDT-PERP".into()],
            exposure_usd: dec!(1000),
            opening_paused: None,
            emergency: false,
            margin_band: Some(MarginBand::Ok),
            blocked_symbols: vec![],
        }
    }

    #[test]
    fn every_rejection_reason() {
        let limits = RiskLimits {
            max_position_usd: dec!(1000),
            max_positions: 2,
            max_total_exposure_usd: dec!(1500),
            ..RiskLimits::default()
        };
        struct Case {
            name: &'static str,
            symbol: &'static str,
            size: Decimal,
            view: RiskView,
            want: Result<(), Rejection>,
        }
        let cases = vec![
            Case {
                name: "fits",
                symbol: "BBBUSDT-PERP",
                size: dec!(500),
                view: healthy(),
                want: Ok(()),
            },
            Case {
                name: "zero size",
                symbol: "BBBUSDT-PERP",
                size: dec!(0),
                view: healthy(),
                want: Err(Rejection::NonPositiveSize { size: dec!(0) }),
            },
            Case {
                name: "negative size",
                symbol: "BBBUSDT-PERP",
                size: dec!(-1),
                view: healthy(),
                want: Err(Rejection::NonPositiveSize { size: dec!(-1) }),
            },
            Case {
                name: "above per-pair max",
                symbol: "BBBUSDT-PERP",
                size: dec!(1000.01),
                view: healthy(),
                want: Err(Rejection::AboveMaxPositionSize {
                    size: dec!(1000.01),
                    max: dec!(1000),
                }),
            },
            Case {
                name: "too many positions",
                symbol: "CCCUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    open_symbols: vec!["AAAUSDT-PERP".into(), "BBBUSDT-PERP".into()],
                    ..healthy()
                },
                want: Err(Rejection::TooManyPositions { open: 2, max: 2 }),
            },
            Case {
                name: "already open on that perp",
                symbol: "AAAUSDT-PERP",
                size: dec!(100),
                view: healthy(),
                want: Err(Rejection::AlreadyOpen {
                    symbol: "AAAUSDT-PERP".into(),
                }),
            },
            Case {
                name: "exposure cap",
                symbol: "BBBUSDT-PERP",
                size: dec!(500.01),
                view: healthy(),
                want: Err(Rejection::ExposureCap {
                    would_be: dec!(1500.01),
                    cap: dec!(1500),
                }),
            },
            Case {
                name: "opening paused",
                symbol: "BBBUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    opening_paused: Some("operator".into()),
                    ..healthy()
                },
                want: Err(Rejection::OpeningPaused {
                    reason: "operator".into(),
                }),
            },
            Case {
                name: "emergency fired",
                symbol: "BBBUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    emergency: true,
                    ..healthy()
                },
                want: Err(Rejection::EmergencyStopped),
            },
            Case {
                name: "margin alert",
                symbol: "BBBUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    margin_band: Some(MarginBand::Alert),
                    ..healthy()
                },
                want: Err(Rejection::Margin {
                    band: "alert".into(),
                }),
            },
            Case {
                name: "margin unknown fails closed",
                symbol: "BBBUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    margin_band: None,
                    ..healthy()
                },
                want: Err(Rejection::Margin {
                    band: "unknown".into(),
                }),
            },
            Case {
                name: "reconcile mismatch",
                symbol: "BBBUSDT-PERP",
                size: dec!(100),
                view: RiskView {
                    blocked_symbols: vec!["BBBUSDT-PERP".into()],
                    ..healthy()
                },
                want: Err(Rejection::ReconcileMismatch {
                    symbol: "BBBUSDT-PERP".into(),
                }),
            },
        ];
        for c in cases {
            assert_eq!(
                check_can_open(c.symbol, c.size, &limits, &c.view),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn margin_bands() {
        let l = RiskLimits::default();
        let cases = [
            (None, MarginBand::Unknown),
            (Some(dec!(0)), MarginBand::Ok),
            (Some(dec!(0.7999)), MarginBand::Ok),
            (Some(dec!(0.8)), MarginBand::Alert),
            (Some(dec!(0.8999)), MarginBand::Alert),
            (Some(dec!(0.9)), MarginBand::Critical),
            (Some(dec!(1.2)), MarginBand::Critical),
        ];
        for (ratio, band) in cases {
            assert_eq!(margin_band(ratio, &l), band, "{ratio:?}");
        }
    }
}
