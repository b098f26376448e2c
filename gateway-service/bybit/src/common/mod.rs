//! Pieces every layer of the adapter shares: the API credential and request
//! signing, Bybit's constants, URLs, enums and the symbol mapping between
//! herd's venue-neutral names and Bybit's (category, symbol) pairs.

pub mod consts;
pub mod credential;
pub mod enums;
pub mod symbol;
pub mod urls;

pub use credential::{CREDENTIAL_SPEC, Credential, CredentialError};
pub use enums::{BybitOrderStatus, BybitOrderType, BybitSide, Category, TimeInForce};
pub use symbol::{BybitSymbol, from_herd, to_herd};
