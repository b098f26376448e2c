//! The raw Bybit V5 REST client: one method per endpoint, Bybit's own types
//! in and out, signing against the server's clock, and every request passing
//! the [`crate::budget::RateBudget`] first. No herd types here beyond the
//! clock; [`crate::venue`] adds those.

pub mod client;
pub mod error;
pub mod models;
pub mod query;

pub use crate::budget::LimitStatus;
pub use client::{BybitHttpClient, HttpConfig, decode_body, limit_status};
pub use error::{ApiErrorKind, BybitApiError, BybitError};
