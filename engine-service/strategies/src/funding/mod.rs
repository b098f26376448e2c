//! Funding-rate arbitrage (seed 003, spec funding-arb.md): hold spot long
//! and the USDT linear perpetual short on the same coin, collect funding
//! while it is rich, close when it decays.
//!
//! These are the pure, table-tested decisions: [`rank`] (the opportunity
//! ranker), [`risk`] (check_can_open, margin bands), [`position`] (sizing,
//! drift, close decisions, fill arithmetic), [`pnl`] (funding sign, fee
//! coins, estimated settlements, portfolio) and [`reconcile`] (store vs
//! venue). The venue is the [`api::FundingApi`] trait. The I/O (two legs at
//! once under a deadline, the cycle, the emergency controller) is the
//! engine's `funding` module: unlike the rangers this is not a
//! [`crate::strategy::Strategy`], since it waits on two concurrent legs with
//! deadlines, which a reducer driven by ticks cannot.

pub mod api;
pub mod config;
pub mod pnl;
pub mod position;
pub mod rank;
pub mod reconcile;
pub mod risk;

pub use config::{FundingConfig, RiskLimits, ShutdownPolicy};

/// The name shown for the orchestrator (status, journal owner).
pub const NAME: &str = "funding";
