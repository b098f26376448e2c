//! Herd's strategies, as pure reducers.
//!
//! Everything here is synchronous and deterministic: a strategy reads its
//! own state and the inputs it is handed (market views, order updates, the
//! time) and answers with [`strategy::Action`]s. It never does I/O and never
//! reads a clock. The live engine (`herd-engine`) and the backtester run
//! these same reducers; only the clock and the venue differ.
//!
//! - [`strategy`]: the [`strategy::Strategy`] trait and its types,
//!   [`strategy::IdGen`] for client order ids.
//! - [`rangers`] and [`grid`] (slots, ledger, self-healing) with its
//!   [`churner`]s.
//! - Shared services for strategies: [`capacity`] (open-order headroom) and
//!   [`capital`] (funds promised to orders).
//! - [`funding`]: the pure decisions of the funding-rate arbitrage (the
//!   orchestrator that runs them is async and lives in the engine).
//! - [`envvar`]: the rules for the strategies' environment overrides.

pub mod capacity;
pub mod capital;
pub mod churner;
pub mod envvar;
pub mod funding;
pub mod grid;
pub mod rangers;
pub mod strategy;
