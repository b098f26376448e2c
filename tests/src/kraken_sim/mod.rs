//! `kraken-sim`: a wire-level simulator of Kraken's spot REST API over the
//! paper matching core, faithful enough that an independently written
//! Kraken client works against it unchanged.
//!
//! It speaks Kraken's wire format (form bodies, the `{"error":[],"result":{}}`
//! envelope, string prices and volumes, `OU22CG-KLAF2-FWUDD7` txids, pair keys
//! and altnames such as `XDGUSD`), verifies `API-Key` / `API-Sign` / nonce
//! with Kraken's exact error strings, and enforces the tier's REST and
//! per-pair trading counters, open-order limits and lockouts. Tests steer it
//! through admin endpoints under `/sim/` (prices, faults, lockouts, stats).
//!
//! Modules: [`wire`] (encodings), [`auth`] (signature and nonce), [`limits`]
//! (rate counters), [`exchange`] (the endpoints), [`faults`] (injection),
//! [`server`] (HTTP).

pub mod auth;
pub mod exchange;
pub mod faults;
pub mod limits;
pub mod server;
pub mod wire;

pub use exchange::{PairSpec, Sim, SimConfig, Stats};
pub use faults::{FaultKind, FaultRule, FaultSet};
pub use limits::{LockoutPolicy, Tier};
pub use server::{Shared, SimHandle, serve};
