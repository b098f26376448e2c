//! The paper venue: an exchange simulated in-process, so a whole herd runs
//! with no keys and no network.
//!
//! [`Exchange`] is the matching core (also used by the wire-level simulators
//! in tests/); [`PaperVenue`] wraps it behind the gateway's [`Venue`] trait,
//! and [`PaperVenue::drive`] moves its price path in real time. USDT linear
//! perpetuals ("BTCUSDT-PERP") trade beside their spot pairs, with one-way
//! positions, funding settlements and account margin ([`perp`]).
//!
//! With a state file ([`PaperVenue::load_or_new`]) the account survives a
//! crash: the whole exchange is snapshotted every few seconds and at
//! shutdown ([`PaperVenue::save`]), and every accepted place and cancel is
//! on disk before it is answered, as an account record beside the snapshot
//! (`STATE_FILE.account`: balances, positions, open orders, orders closed
//! since the snapshot; no candles, so it stays small). Concurrent places
//! share one write. Both files are written to a temp file, fsynced and
//! renamed; on load the newer of the two (a save sequence number) wins.

mod exchange;
mod path;
pub mod perp;

pub use exchange::{Exchange, FeePolicy, PaperConfig, PaperInstrument};
pub use path::{PathConfig, PathRegime, PricePath, SplitMix64};
pub use perp::{FundingPathConfig, PerpConfig};

#[cfg(feature = "venue")]
mod venue;
#[cfg(feature = "venue")]
pub use venue::PaperVenue;
