//! Kraken's error strings as a typed enum, the HTTP client's error, and their
//! mapping to [`herd_venue::VenueError`] (done here and nowhere else).

use herd_venue::VenueError;

/// One error string of Kraken's `error` array, parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrakenApiError {
    #[error("EAPI:Invalid key")]
    InvalidKey,
    #[error("EAPI:Invalid signature")]
    InvalidSignature,
    #[error("EAPI:Invalid nonce")]
    InvalidNonce,
    /// `EGeneral:Invalid arguments[:detail]`.
    #[error("EGeneral:Invalid arguments{}", .0.as_deref().map(|d| format!(":{d}")).unwrap_or_default())]
    InvalidArguments(Option<String>),
    #[error("EGeneral:Permission denied")]
    PermissionDenied,
    /// About 15 minutes without private calls.
    #[error("EGeneral:Temporary lockout")]
    TemporaryLockout,
    #[error("EAPI:Rate limit exceeded")]
    ApiRateLimit,
    #[error("EOrder:Rate limit exceeded")]
    OrderRateLimit,
    /// `EService:Throttled:<unix ts>`: calls refused until that second.
    #[error("EService:Throttled{}", .0.map(|t| format!(":{t}")).unwrap_or_default())]
    Throttled(Option<i64>),
    #[error("EOrder:Insufficient funds")]
    InsufficientFunds,
    #[error("EOrder:Orders limit exceeded")]
    OrdersLimitExceeded,
    #[error("EOrder:Unknown order")]
    UnknownOrder,
    #[error("EOrder:Order minimum not met")]
    OrderMinimumNotMet,
    #[error("EOrder:Cost minimum not met")]
    CostMinimumNotMet,
    #[error("EOrder:Tick size check failed")]
    TickSizeCheckFailed,
    /// A post-only order would have taken liquidity.
    #[error("EOrder:Post only order")]
    PostOnly,
    #[error("EService:Unavailable")]
    Unavailable,
    #[error("EService:Busy")]
    Busy,
    #[error("EService:Market in cancel_only mode")]
    MarketCancelOnly,
    #[error("EService:Market in post_only mode")]
    MarketPostOnly,
    #[error("EService:Deadline elapsed")]
    DeadlineElapsed,
    #[error("EGeneral:Internal error")]
    InternalError,
    /// Anything not listed, verbatim.
    #[error("{0}")]
    Other(String),
}

impl KrakenApiError {
    /// Parses one string of the `error` array.
    pub fn parse(s: &str) -> KrakenApiError {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("EGeneral:Invalid arguments") {
            let detail = rest
                .strip_prefix(':')
                .map(str::trim)
                .filter(|d| !d.is_empty());
            return KrakenApiError::InvalidArguments(detail.map(str::to_owned));
        }
        if let Some(rest) = s.strip_prefix("EService:Throttled") {
            let ts = rest
                .strip_prefix(':')
                .and_then(|t| t.trim().parse::<i64>().ok());
            return KrakenApiError::Throttled(ts);
        }
        match s {
            "EAPI:Invalid key" => KrakenApiError::InvalidKey,
            "EAPI:Invalid signature" => KrakenApiError::InvalidSignature,
            "EAPI:Invalid nonce" => KrakenApiError::InvalidNonce,
            "EGeneral:Permission denied" => KrakenApiError::PermissionDenied,
            "EGeneral:Temporary lockout" => KrakenApiError::TemporaryLockout,
            "EAPI:Rate limit exceeded" => KrakenApiError::ApiRateLimit,
            "EOrder:Rate limit exceeded" => KrakenApiError::OrderRateLimit,
            "EOrder:Insufficient funds" => KrakenApiError::InsufficientFunds,
            "EOrder:Orders limit exceeded" => KrakenApiError::OrdersLimitExceeded,
            "EOrder:Unknown order" => KrakenApiError::UnknownOrder,
            "EOrder:Order minimum not met" => KrakenApiError::OrderMinimumNotMet,
            "EOrder:Cost minimum not met" => KrakenApiError::CostMinimumNotMet,
            "EOrder:Tick size check failed" => KrakenApiError::TickSizeCheckFailed,
            "EOrder:Post only order" => KrakenApiError::PostOnly,
            "EService:Unavailable" => KrakenApiError::Unavailable,
            "EService:Busy" => KrakenApiError::Busy,
            "EService:Market in cancel_only mode" => KrakenApiError::MarketCancelOnly,
            "EService:Market in post_only mode" => KrakenApiError::MarketPostOnly,
            "EService:Deadline elapsed" => KrakenApiError::DeadlineElapsed,
            "EGeneral:Internal error" => KrakenApiError::InternalError,
            other => KrakenApiError::Other(other.to_owned()),
        }
    }

    /// True when the same call may succeed later without changing it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KrakenApiError::ApiRateLimit
                | KrakenApiError::OrderRateLimit
                | KrakenApiError::Throttled(_)
                | KrakenApiError::TemporaryLockout
                | KrakenApiError::Unavailable
                | KrakenApiError::Busy
                | KrakenApiError::DeadlineElapsed
                | KrakenApiError::InternalError
                | KrakenApiError::InvalidNonce
        )
    }

    /// True when an AddOrder (or cancel) answered this way may still have
    /// taken effect: Kraken's matching engine may have processed it.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            KrakenApiError::Unavailable
                | KrakenApiError::Busy
                | KrakenApiError::DeadlineElapsed
                | KrakenApiError::InternalError
        )
    }

    /// True for the two answers that say our rate model was wrong.
    pub fn is_rate_limit(&self) -> bool {
        matches!(
            self,
            KrakenApiError::ApiRateLimit | KrakenApiError::OrderRateLimit
        )
    }
}

/// What a call of the raw HTTP client can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KrakenError {
    /// Kraken answered with a non-empty `error` array. `error` is the first
    /// entry; `all` keeps every string verbatim.
    #[error("kraken: {error}")]
    Api {
        error: KrakenApiError,
        all: Vec<String>,
    },
    /// A non-2xx HTTP status without a Kraken error in the body.
    #[error("http status {status}: {body}")]
    Http { status: u16, body: String },
    /// No answer in time: the request may have been processed.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The connection could not be made: the request was not sent.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent.
    #[error("transport: {0}")]
    Transport(String),
    /// The body was not the JSON we expected.
    #[error("decode: {0}")]
    Decode(String),
    /// The call was refused before sending (bad arguments, no credentials).
    #[error("request: {0}")]
    Request(String),
    /// The nonce could not be issued (persisting the high-water mark failed).
    #[error("nonce: {0}")]
    Nonce(String),
}

impl KrakenError {
    /// The typed Kraken error, if this is one.
    pub fn api(&self) -> Option<&KrakenApiError> {
        match self {
            KrakenError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// True when the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            KrakenError::Api { error, .. } => error.is_retryable(),
            KrakenError::Http { status, .. } => *status >= 500 || *status == 429,
            KrakenError::Timeout(_) | KrakenError::Connect(_) | KrakenError::Transport(_) => true,
            KrakenError::Decode(_) | KrakenError::Request(_) | KrakenError::Nonce(_) => false,
        }
    }

    /// True when a state-changing request failing this way may still have
    /// been executed: timeout, 5xx, a broken connection after sending, an
    /// unreadable answer, or one of Kraken's "service" errors.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            KrakenError::Api { error, .. } => error.is_outcome_unknown(),
            KrakenError::Http { status, .. } => *status >= 500,
            KrakenError::Timeout(_) | KrakenError::Transport(_) | KrakenError::Decode(_) => true,
            KrakenError::Connect(_) | KrakenError::Request(_) | KrakenError::Nonce(_) => false,
        }
    }

    /// The venue-neutral error. `now_ms` turns Kraken's absolute times into
    /// waits; `lockout_ms` is how long a temporary lockout is assumed to last.
    pub fn to_venue_error(&self, now_ms: i64, lockout_ms: i64) -> VenueError {
        let msg = self.to_string();
        match self {
            KrakenError::Api { error, .. } => match error {
                KrakenApiError::InvalidKey
                | KrakenApiError::InvalidSignature
                | KrakenApiError::InvalidNonce
                | KrakenApiError::PermissionDenied => VenueError::Auth(msg),
                KrakenApiError::InvalidArguments(_)
                | KrakenApiError::OrderMinimumNotMet
                | KrakenApiError::CostMinimumNotMet
                | KrakenApiError::TickSizeCheckFailed => VenueError::InvalidArgument(msg),
                KrakenApiError::TemporaryLockout => VenueError::Lockout {
                    message: msg,
                    until_ms: now_ms.saturating_add(lockout_ms),
                },
                KrakenApiError::ApiRateLimit | KrakenApiError::OrderRateLimit => {
                    VenueError::RateLimited {
                        message: msg,
                        retry_after_ms: 0,
                    }
                }
                KrakenApiError::Throttled(until) => VenueError::RateLimited {
                    message: msg,
                    retry_after_ms: until
                        .map(|s| s.saturating_mul(1000).saturating_sub(now_ms).max(0))
                        .unwrap_or(1000),
                },
                KrakenApiError::InsufficientFunds => VenueError::InsufficientFunds(msg),
                KrakenApiError::OrdersLimitExceeded => VenueError::OrderLimit(msg),
                KrakenApiError::UnknownOrder => VenueError::UnknownOrder(msg),
                KrakenApiError::PostOnly
                | KrakenApiError::MarketCancelOnly
                | KrakenApiError::MarketPostOnly => VenueError::Rejected(msg),
                KrakenApiError::Unavailable
                | KrakenApiError::Busy
                | KrakenApiError::DeadlineElapsed
                | KrakenApiError::InternalError => VenueError::Unavailable(msg),
                KrakenApiError::Other(_) => VenueError::Other(msg),
            },
            KrakenError::Http { status, .. } if *status >= 500 => VenueError::Unavailable(msg),
            KrakenError::Http { status: 429, .. } => VenueError::RateLimited {
                message: msg,
                retry_after_ms: 1000,
            },
            KrakenError::Http {
                status: 401 | 403, ..
            } => VenueError::Auth(msg),
            KrakenError::Http { .. } => VenueError::Other(msg),
            KrakenError::Timeout(_) | KrakenError::Connect(_) | KrakenError::Transport(_) => {
                VenueError::Transport(msg)
            }
            KrakenError::Decode(_) => VenueError::Parse(msg),
            KrakenError::Request(_) => VenueError::InvalidArgument(msg),
            KrakenError::Nonce(_) => VenueError::Other(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_string_parses_and_round_trips() {
        use KrakenApiError as K;
        type Case = (
            &'static str,
            KrakenApiError,
            fn(&VenueError) -> bool,
            bool,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "EAPI:Invalid key",
                K::InvalidKey,
                |e| matches!(e, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                "EAPI:Invalid signature",
                K::InvalidSignature,
                |e| matches!(e, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                "EAPI:Invalid nonce",
                K::InvalidNonce,
                |e| matches!(e, VenueError::Auth(_)),
                true,
                false,
            ),
            (
                "EGeneral:Invalid arguments",
                K::InvalidArguments(None),
                |e| matches!(e, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                "EGeneral:Invalid arguments:volume",
                K::InvalidArguments(Some("volume".into())),
                |e| matches!(e, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                "EGeneral:Permission denied",
                K::PermissionDenied,
                |e| matches!(e, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                "EGeneral:Temporary lockout",
                K::TemporaryLockout,
                |e| {
                    matches!(
                        e,
                        VenueError::Lockout {
                            until_ms: 901_000,
                            ..
                        }
                    )
                },
                true,
                false,
            ),
            (
                "EAPI:Rate limit exceeded",
                K::ApiRateLimit,
                |e| matches!(e, VenueError::RateLimited { .. }),
                true,
                false,
            ),
            (
                "EOrder:Rate limit exceeded",
                K::OrderRateLimit,
                |e| matches!(e, VenueError::RateLimited { .. }),
                true,
                false,
            ),
            (
                "EService:Throttled:1700",
                K::Throttled(Some(1700)),
                |e| {
                    matches!(
                        e,
                        VenueError::RateLimited {
                            retry_after_ms: 1_699_000,
                            ..
                        }
                    )
                },
                true,
                false,
            ),
            (
                "EOrder:Insufficient funds",
                K::InsufficientFunds,
                |e| matches!(e, VenueError::InsufficientFunds(_)),
                false,
                false,
            ),
            (
                "EOrder:Orders limit exceeded",
                K::OrdersLimitExceeded,
                |e| matches!(e, VenueError::OrderLimit(_)),
                false,
                false,
            ),
            (
                "EOrder:Unknown order",
                K::UnknownOrder,
                |e| matches!(e, VenueError::UnknownOrder(_)),
                false,
                false,
            ),
            (
                "EOrder:Order minimum not met",
                K::OrderMinimumNotMet,
                |e| matches!(e, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                "EOrder:Cost minimum not met",
                K::CostMinimumNotMet,
                |e| matches!(e, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                "EOrder:Tick size check failed",
                K::TickSizeCheckFailed,
                |e| matches!(e, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                "EOrder:Post only order",
                K::PostOnly,
                |e| matches!(e, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                "EService:Unavailable",
                K::Unavailable,
                |e| matches!(e, VenueError::Unavailable(_)),
                true,
                true,
            ),
            (
                "EService:Busy",
                K::Busy,
                |e| matches!(e, VenueError::Unavailable(_)),
                true,
                true,
            ),
            (
                "EService:Market in cancel_only mode",
                K::MarketCancelOnly,
                |e| matches!(e, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                "EService:Market in post_only mode",
                K::MarketPostOnly,
                |e| matches!(e, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                "EService:Deadline elapsed",
                K::DeadlineElapsed,
                |e| matches!(e, VenueError::Unavailable(_)),
                true,
                true,
            ),
            (
                "EGeneral:Internal error",
                K::InternalError,
                |e| matches!(e, VenueError::Unavailable(_)),
                true,
                true,
            ),
            (
                "EFunding:Unknown asset",
                K::Other("EFunding:Unknown asset".into()),
                |e| matches!(e, VenueError::Other(_)),
                false,
                false,
            ),
        ];
        for (text, want, venue, retryable, unknown) in cases {
            let got = KrakenApiError::parse(text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text, "display round-trips");
            assert_eq!(got.is_retryable(), retryable, "{text} retryable");
            assert_eq!(got.is_outcome_unknown(), unknown, "{text} unknown");
            let err = KrakenError::Api {
                error: got,
                all: vec![text.into()],
            };
            let v = err.to_venue_error(1_000, 900_000);
            assert!(venue(&v), "{text} -> {v:?}");
        }
    }

    #[test]
    fn transport_errors() {
        let t = KrakenError::Timeout("x".into());
        assert!(t.is_outcome_unknown() && t.is_retryable());
        let c = KrakenError::Connect("x".into());
        assert!(!c.is_outcome_unknown() && c.is_retryable());
        let h = KrakenError::Http {
            status: 502,
            body: "bad gateway".into(),
        };
        assert!(h.is_outcome_unknown());
        assert!(matches!(h.to_venue_error(0, 0), VenueError::Unavailable(_)));
        let d = KrakenError::Decode("x".into());
        assert!(d.is_outcome_unknown() && !d.is_retryable());
        assert!(matches!(d.to_venue_error(0, 0), VenueError::Parse(_)));
    }
}
