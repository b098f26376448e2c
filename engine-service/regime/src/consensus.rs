//! Multi-timeframe consensus of the 1 m (primary) and 15 m (secondary) readings.
//!
//! | 1 m vs 15 m                   | agreement     | confidence       | bias                      |
//! |-------------------------------|---------------|------------------|---------------------------|
//! | same regime                   | `full`        | max(c1, c15)     | 0.3 b1 + 0.7 b15          |
//! | 15 m RANGING (1 m directional)| `15m_neutral` | 0                | 0                         |
//! | 1 m RANGING, 15 m directional | `1m_cooling`  | c15 / 2          | b15 / 2                   |
//! | opposite directions           | `conflict`    | 0                | 0                         |
//!
//! The regime is the agreed one (`full`) or the 15 m one (`1m_cooling`), and RANGING in the
//! other cases or whenever the confidence is below [`MIN_CONFIDENCE`]. If either timeframe is
//! not ready the consensus is not ready, with regime UNKNOWN: gates that need RANGING must
//! use [`RegimeReading::is_ranging`], which is false when not ready.

use crate::detector::{Regime, RegimeProbs, TimeframeReading};

/// Weight of the 1 m timeframe in the blended bias and posteriors.
pub const WEIGHT_1M: f64 = 0.3;
/// Weight of the 15 m timeframe in the blended bias and posteriors.
pub const WEIGHT_15M: f64 = 0.7;
/// Below this consensus confidence the effective regime is RANGING.
pub const MIN_CONFIDENCE: f64 = 0.20;
/// Factor applied to the 15 m confidence and bias when the 1 m is cooling.
pub const COOLING_DAMPEN: f64 = 0.5;

/// The consensus regime, as the engine and its status payload consume it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegimeReading {
    /// Effective regime (UNKNOWN when not ready).
    pub regime: Regime,
    /// Effective confidence.
    pub confidence: f64,
    /// Effective bias in [-1, 1]; positive favours the upside.
    pub bias: f64,
    /// True only when every required timeframe is ready.
    pub ready: bool,
    /// Per-timeframe detail: primary, secondary, then any extra (e.g. 1 h) the caller adds.
    pub per_timeframe: Vec<TimeframeReading>,
    /// `full`, `15m_neutral`, `1m_cooling`, `conflict`, or `not_ready`.
    pub agreement: String,
    /// Posteriors blended with the timeframe weights (telemetry only).
    pub probs: RegimeProbs,
}

impl RegimeReading {
    /// True only for a ready reading whose effective regime is RANGING.
    pub fn is_ranging(&self) -> bool {
        self.ready && self.regime == Regime::Ranging
    }
}

/// Combines the primary (1 m) and secondary (15 m) readings per the table above.
pub fn consensus(primary: &TimeframeReading, secondary: &TimeframeReading) -> RegimeReading {
    let per_timeframe = vec![primary.clone(), secondary.clone()];
    if !primary.ready || !secondary.ready {
        return RegimeReading {
            regime: Regime::Unknown,
            confidence: 0.0,
            bias: 0.0,
            ready: false,
            per_timeframe,
            agreement: "not_ready".into(),
            probs: RegimeProbs::default(),
        };
    }
    let (r1, r15) = (primary.regime, secondary.regime);
    let (agreement, label, confidence, bias) = if r1 == r15 {
        (
            "full",
            r15,
            primary.confidence.max(secondary.confidence),
            WEIGHT_1M * primary.bias + WEIGHT_15M * secondary.bias,
        )
    } else if r15 == Regime::Ranging {
        ("15m_neutral", Regime::Ranging, 0.0, 0.0)
    } else if r1 == Regime::Ranging {
        (
            "1m_cooling",
            r15,
            secondary.confidence * COOLING_DAMPEN,
            secondary.bias * COOLING_DAMPEN,
        )
    } else {
        ("conflict", Regime::Ranging, 0.0, 0.0)
    };
    let regime = if confidence < MIN_CONFIDENCE {
        Regime::Ranging
    } else {
        label
    };
    let blend = |a: f64, b: f64| WEIGHT_1M * a + WEIGHT_15M * b;
    RegimeReading {
        regime,
        confidence,
        bias: bias.clamp(-1.0, 1.0),
        ready: true,
        per_timeframe,
        agreement: agreement.into(),
        probs: RegimeProbs {
            bearish: blend(primary.probs.bearish, secondary.probs.bearish),
            ranging: blend(primary.probs.ranging, secondary.probs.ranging),
            bullish: blend(primary.probs.bullish, secondary.probs.bullish),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn tf(name: &str, regime: Regime, confidence: f64, bias: f64) -> TimeframeReading {
        TimeframeReading {
            ready: true,
            regime,
            confidence,
            bias,
            ..TimeframeReading::not_ready(name)
        }
    }

    struct Case {
        name: &'static str,
        m1: (Regime, f64, f64),
        m15: (Regime, f64, f64),
        agreement: &'static str,
        regime: Regime,
        confidence: f64,
        bias: f64,
    }

    #[test]
    fn consensus_rule_table() {
        use Regime::*;
        let cases = [
            Case {
                name: "full bullish",
                m1: (Bullish, 0.4, 0.5),
                m15: (Bullish, 0.6, 0.8),
                agreement: "full",
                regime: Bullish,
                confidence: 0.6,
                bias: 0.3 * 0.5 + 0.7 * 0.8,
            },
            Case {
                name: "full bearish",
                m1: (Bearish, 0.78, -0.3),
                m15: (Bearish, 0.72, -0.5),
                agreement: "full",
                regime: Bearish,
                confidence: 0.78,
                bias: 0.3 * -0.3 + 0.7 * -0.5,
            },
            Case {
                name: "full ranging",
                m1: (Ranging, 0.5, 0.0),
                m15: (Ranging, 0.3, 0.1),
                agreement: "full",
                regime: Ranging,
                confidence: 0.5,
                bias: 0.07,
            },
            Case {
                name: "full but low confidence",
                m1: (Bullish, 0.1, 0.0),
                m15: (Bullish, 0.19, 0.0),
                agreement: "full",
                regime: Ranging,
                confidence: 0.19,
                bias: 0.0,
            },
            Case {
                name: "15m neutral",
                m1: (Bullish, 0.9, 0.9),
                m15: (Ranging, 0.9, 0.0),
                agreement: "15m_neutral",
                regime: Ranging,
                confidence: 0.0,
                bias: 0.0,
            },
            Case {
                name: "1m cooling",
                m1: (Ranging, 0.9, 0.02),
                m15: (Bearish, 0.8, -0.6),
                agreement: "1m_cooling",
                regime: Bearish,
                confidence: 0.4,
                bias: -0.3,
            },
            Case {
                name: "1m cooling, dampened below threshold",
                m1: (Ranging, 0.9, 0.0),
                m15: (Bullish, 0.3, 0.5),
                agreement: "1m_cooling",
                regime: Ranging,
                confidence: 0.15,
                bias: 0.25,
            },
            Case {
                name: "conflict",
                m1: (Bearish, 0.9, -0.9),
                m15: (Bullish, 0.9, 0.9),
                agreement: "conflict",
                regime: Ranging,
                confidence: 0.0,
                bias: 0.0,
            },
        ];
        for c in cases {
            let r = consensus(
                &tf("1m", c.m1.0, c.m1.1, c.m1.2),
                &tf("15m", c.m15.0, c.m15.1, c.m15.2),
            );
            assert!(r.ready, "{}", c.name);
            assert_eq!(r.agreement, c.agreement, "{}", c.name);
            assert_eq!(r.regime, c.regime, "{}", c.name);
            assert!(
                (r.confidence - c.confidence).abs() < 1e-12,
                "{}: {}",
                c.name,
                r.confidence
            );
            assert!((r.bias - c.bias).abs() < 1e-12, "{}: {}", c.name, r.bias);
            assert_eq!(r.is_ranging(), c.regime == Ranging, "{}", c.name);
            assert_eq!(r.per_timeframe.len(), 2);
        }
    }

    #[test]
    fn not_ready_if_any_timeframe_not_ready() {
        let ready = tf("1m", Regime::Ranging, 0.9, 0.0);
        for (a, b) in [
            (ready.clone(), TimeframeReading::not_ready("15m")),
            (TimeframeReading::not_ready("1m"), ready.clone()),
        ] {
            let r = consensus(&a, &b);
            assert!(!r.ready);
            assert_eq!(r.regime, Regime::Unknown);
            assert_eq!(r.agreement, "not_ready");
            assert!(!r.is_ranging(), "not ready must never count as RANGING");
        }
    }

    #[test]
    fn serializes_with_upper_case_regimes() {
        let r = consensus(
            &tf("1m", Regime::Bullish, 0.5, 0.5),
            &tf("15m", Regime::Bullish, 0.5, 0.5),
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["regime"], "BULLISH");
        assert_eq!(json["agreement"], "full");
        assert_eq!(json["per_timeframe"][1]["timeframe"], "15m");
    }
}
