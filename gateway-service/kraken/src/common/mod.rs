//! Pieces every layer of the adapter shares: the API credential and request
//! signing, Kraken's constants, URLs and enums, and the tier tables.

pub mod consts;
pub mod credential;
pub mod enums;
pub mod urls;

pub use credential::{CREDENTIAL_SPEC, Credential, CredentialError};
pub use enums::{ClientIdMode, KrakenOrderStatus, Tier};
