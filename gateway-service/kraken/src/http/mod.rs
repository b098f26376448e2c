//! The raw Kraken REST client: one method per endpoint, Kraken's own types in
//! and out, signing and per-key nonce ordering. No rate budget and no herd
//! types here; [`crate::venue`] adds those.

pub mod client;
pub mod error;
pub mod models;
pub mod query;

pub use client::{HttpConfig, KrakenHttpClient, decode_body};
pub use error::{KrakenApiError, KrakenError};
