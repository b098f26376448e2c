//! Herd's test support: wire-level venue simulators and helpers for
//! end-to-end tests that run the gateway and the simulators as real
//! processes or in-process servers.

// Tests unwrap freely (style.md); library code may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod kraken_harness;
pub mod kraken_sim;
