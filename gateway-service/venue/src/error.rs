//! The venue-neutral error every adapter maps its venue's errors into.

/// What went wrong talking to a venue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VenueError {
    /// The request itself is wrong (bad symbol, volume below minimum, tick).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The venue refused the order for a business reason (post-only would
    /// take, reduce-only would increase, market closed).
    #[error("order rejected: {0}")]
    Rejected(String),
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    /// The venue does not know the order.
    #[error("unknown order: {0}")]
    UnknownOrder(String),
    /// Too many open orders on the pair.
    #[error("open order limit reached: {0}")]
    OrderLimit(String),
    /// The venue said we exceeded its rate limits.
    #[error("rate limited by venue: {message}")]
    RateLimited {
        message: String,
        retry_after_ms: i64,
    },
    /// Private calls are suspended until `until_ms` (Kraken temporary lockout,
    /// Bybit IP ban).
    #[error("locked out until {until_ms}: {message}")]
    Lockout { message: String, until_ms: i64 },
    /// Key, signature, nonce or permission problems.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The venue is down, busy or answered 5xx.
    #[error("venue unavailable: {0}")]
    Unavailable(String),
    /// The request did not complete (connect, reset, timeout).
    #[error("transport: {0}")]
    Transport(String),
    /// The venue answered something we could not understand.
    #[error("unexpected venue response: {0}")]
    Parse(String),
    /// The venue (or this adapter) does not offer the call, e.g. funding
    /// rates on a spot-only venue.
    #[error("unsupported by this venue: {0}")]
    Unsupported(String),
    /// Anything else the venue reported.
    #[error("venue error: {0}")]
    Other(String),
}

impl VenueError {
    /// "`what` is not offered by `venue`".
    pub fn unsupported(venue: &str, what: &str) -> VenueError {
        VenueError::Unsupported(format!("{what} on venue {venue:?}"))
    }

    /// True when the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            VenueError::RateLimited { .. }
                | VenueError::Unavailable(_)
                | VenueError::Transport(_)
                | VenueError::Lockout { .. }
        )
    }

    /// True when an order request that failed this way may still have been
    /// placed: the outcome must be resolved by polling, not by resending.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, VenueError::Unavailable(_) | VenueError::Transport(_))
    }
}
