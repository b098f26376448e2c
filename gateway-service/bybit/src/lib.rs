//! Bybit V5 REST adapter: spot and USDT linear perpetuals on the unified
//! trading account.
//!
//! Layers, bottom up: [`common`] (credential and signing, constants, enums,
//! URLs and the symbol mapping), [`budget`] (per-endpoint and per-IP rate
//! windows fed by Bybit's headers), [`http`] (the raw client: Bybit's
//! endpoints with Bybit's types, signed against Bybit's clock), [`parse`]
//! (Bybit's types to herd's) and [`venue`] (the [`herd_venue::Venue`]
//! implementation the gateway uses). [`config`] is the typed configuration
//! that builds it.
//!
//! Symbols: spot pairs keep Bybit's name ("BTCUSDT"); the USDT perpetual on
//! the same coin is "BTCUSDT-PERP" (see [`common::symbol`]).

// Tests unwrap freely (style.md); library code may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod budget;
pub mod common;
pub mod config;
pub mod http;
pub mod parse;
pub mod venue;

pub use budget::{BudgetConfig, Endpoint, Priority, RateBudget};
pub use common::{CREDENTIAL_SPEC, Category, Credential, CredentialError};
pub use config::{BybitConfig, FeeConfig};
pub use herd_venue::credential::CredentialSource;
pub use http::{BybitError, BybitHttpClient};
pub use venue::BybitVenue;
