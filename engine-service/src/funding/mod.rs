//! Funding-rate arbitrage (seed 003, spec funding-arb.md): hold spot long
//! and the USDT linear perpetual short on the same coin, collect funding
//! while it is rich, close when it decays.
//!
//! The decisions are pure and table-tested: [`rank`] (the opportunity
//! ranker), [`risk`] (check_can_open, margin bands), [`position`] (sizing,
//! drift, close decisions, fill arithmetic), [`pnl`] (funding sign, fee
//! coins, estimated settlements, portfolio) and [`reconcile`] (store vs
//! venue). The I/O is in [`legs`] (two legs at once under a deadline,
//! polling unknown outcomes, rollback) and [`orchestrator`] (the cycle, the
//! emergency controller, commands, shutdown, persistence). The venue is
//! the [`api::FundingApi`] trait: [`gateway::GatewayApi`] in production.
//!
//! Unlike the rangers this is not a [`crate::strategy::Strategy`]: it waits
//! on two concurrent legs with deadlines, which a reducer driven by ticks
//! cannot. It still owns its orders (client ids "f-...", owner "funding")
//! and journals them through the execution layer.

pub mod api;
pub mod config;
pub mod gateway;
pub mod legs;
pub mod orchestrator;
pub mod pnl;
pub mod position;
pub mod rank;
pub mod reconcile;
pub mod risk;

pub use config::{FundingConfig, RiskLimits, ShutdownPolicy};
pub use orchestrator::{FundingHandle, Orchestrator};

/// The name shown for the orchestrator (status, journal owner).
pub const NAME: &str = "funding";
