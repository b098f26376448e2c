//! Wire-level venue simulators and shared helpers for the end-to-end tests.
//!
//! [`bybit_sim`] is a Bybit V5 REST simulator over the paper matching core
//! (also the `bybit-sim` binary); [`http1`] is the small HTTP/1.1 server it
//! runs on.

pub mod bybit_sim;
pub mod http1;
