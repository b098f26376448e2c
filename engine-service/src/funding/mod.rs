//! The funding-rate arbitrage orchestrator's I/O: [`legs`] (two legs at
//! once under a deadline, polling unknown outcomes, rollback) and
//! [`orchestrator`] (the cycle, the emergency controller, commands,
//! shutdown, persistence). The decisions it runs are pure and live in
//! [`herd_strategies::funding`]; the venue is
//! [`herd_strategies::funding::api::FundingApi`], implemented over the
//! gateway by [`gateway::GatewayApi`] (and read off a paper core by
//! `herd_backtest::paper_funding`, for the backtest and the tests).
//!
//! It owns its orders (client ids "f-...", owner "funding") and journals
//! them through the execution layer.

pub mod gateway;
pub mod legs;
pub mod orchestrator;

pub use orchestrator::{FundingHandle, Orchestrator};
