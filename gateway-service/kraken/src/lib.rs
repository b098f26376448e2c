//! Kraken spot REST adapter.
//!
//! Layers, bottom up: [`common`] (credential and signing, constants, enums,
//! URLs), [`http`] (the raw client: Kraken's endpoints with Kraken's types),
//! [`nonce`] and [`budget`] (per-key nonce and the modelled rate limits),
//! [`parse`] (Kraken's types to herd's), and [`venue`] (the
//! [`herd_venue::Venue`] implementation the gateway uses). [`config`] is the
//! typed configuration that builds it.

// Tests unwrap freely (style.md); library code may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod budget;
pub mod common;
pub mod config;
pub mod http;
pub mod nonce;
pub mod parse;
pub mod venue;

pub use budget::{Priority, RateBudget};
pub use common::{CREDENTIAL_SPEC, Credential, CredentialError, Tier};
pub use config::KrakenConfig;
pub use herd_venue::credential::CredentialSource;
pub use http::{KrakenError, KrakenHttpClient};
pub use venue::{KrakenVenue, Resolution};
