//! Fault injection: rules set through the admin endpoint (`POST /sim/faults`)
//! that delay, fail, reset or swallow matching Kraken calls.
//!
//! ```json
//! {"rules": [
//!   {"method": "AddOrder", "kind": {"type": "lose_response"}, "every": 3, "times": 5},
//!   {"kind": {"type": "latency", "ms": 200}},
//!   {"method": "OpenOrders", "kind": {"type": "http_status", "status": 502}, "times": 1},
//!   {"method": "AddOrder", "kind": {"type": "error", "error": "EService:Unavailable"}},
//!   {"method": "AddOrder", "kind": {"type": "delay_answer", "ms": 1500}, "times": 2}
//! ]}
//! ```

use serde::{Deserialize, Serialize};

/// What a rule does to a request it hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Wait this long before handling the request (adds up across rules).
    Latency { ms: u64 },
    /// Answer this HTTP status with a proxy-style HTML body.
    HttpStatus { status: u16 },
    /// Reset the TCP connection instead of answering.
    Reset,
    /// Answer HTTP 200 with this Kraken error.
    Error { error: String },
    /// Carry the request out, then reset the connection: the order is
    /// accepted but the client never hears of it.
    LoseResponse,
    /// Carry the request out, then hold the answer this long before sending
    /// it: with `ms` past the client's timeout the order is accepted but the
    /// client has given up waiting ("timeout after accept").
    DelayAnswer { ms: u64 },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The Kraken method it applies to (`AddOrder`); none = every `/0/` call.
    #[serde(default)]
    pub method: Option<String>,
    pub kind: FaultKind,
    /// Carry the request out first, then apply the fault to the answer.
    #[serde(default)]
    pub after_processing: bool,
    /// Hit every `every`-th matching request (1 = each one).
    #[serde(default = "one")]
    pub every: u32,
    /// Stop after this many hits; none = until the rules are replaced.
    #[serde(default)]
    pub times: Option<u32>,
    #[serde(default)]
    pub seen: u32,
    #[serde(default)]
    pub hits: u32,
}

fn one() -> u32 {
    1
}

/// The rules file as POSTed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSet {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// What to do with one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub latency_ms: u64,
    /// The fault, and whether it comes after processing.
    pub fault: Option<(FaultKind, bool)>,
}

impl FaultSet {
    /// Counts the request against every matching rule and returns the plan:
    /// the summed latency and the first other fault that fires.
    pub fn plan(&mut self, method: &str) -> Plan {
        let mut plan = Plan::default();
        for r in &mut self.rules {
            if r.method.as_deref().is_some_and(|m| m != method) {
                continue;
            }
            if r.times.is_some_and(|t| r.hits >= t) {
                continue;
            }
            let is_latency = matches!(r.kind, FaultKind::Latency { .. });
            if !is_latency && plan.fault.is_some() {
                continue;
            }
            r.seen += 1;
            if !r.seen.is_multiple_of(r.every.max(1)) {
                continue;
            }
            r.hits += 1;
            match &r.kind {
                FaultKind::Latency { ms } => plan.latency_ms += ms,
                FaultKind::LoseResponse => plan.fault = Some((FaultKind::Reset, true)),
                FaultKind::DelayAnswer { ms } => {
                    plan.fault = Some((FaultKind::DelayAnswer { ms: *ms }, true));
                }
                other => plan.fault = Some((other.clone(), r.after_processing)),
            }
        }
        plan
    }

    pub fn hits(&self) -> u64 {
        self.rules.iter().map(|r| u64::from(r.hits)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_and_times() {
        let mut set: FaultSet = serde_json::from_str(
            r#"{"rules": [
                {"method": "AddOrder", "kind": {"type": "lose_response"}, "every": 2, "times": 2},
                {"kind": {"type": "latency", "ms": 5}}
            ]}"#,
        )
        .unwrap();
        let plans: Vec<Plan> = (0..6).map(|_| set.plan("AddOrder")).collect();
        let lost: Vec<bool> = plans.iter().map(|p| p.fault.is_some()).collect();
        assert_eq!(lost, [false, true, false, true, false, false]);
        assert_eq!(plans[1].fault, Some((FaultKind::Reset, true)));
        assert!(plans.iter().all(|p| p.latency_ms == 5));
        assert_eq!(set.plan("Balance").fault, None);
        assert_eq!(set.hits(), 2 + 7);
    }

    #[test]
    fn delay_answer_always_comes_after_processing() {
        let mut set: FaultSet = serde_json::from_str(
            r#"{"rules": [{"method": "AddOrder", "kind": {"type": "delay_answer", "ms": 700}, "times": 1}]}"#,
        )
        .unwrap();
        assert_eq!(
            set.plan("AddOrder").fault,
            Some((FaultKind::DelayAnswer { ms: 700 }, true))
        );
        assert_eq!(set.plan("AddOrder").fault, None, "times: 1");
    }
}
