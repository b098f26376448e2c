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

/// What the crate's tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// One step of the 64-bit linear congruential generator the
    /// randomized tests walk (Knuth's MMIX constants): a fixed sequence
    /// from a seed, no dependency.
    pub(crate) fn lcg(seed: u64) -> u64 {
        seed.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
    }
}
