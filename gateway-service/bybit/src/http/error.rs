//! Bybit's retCodes as a typed enum, the HTTP client's error, and their
//! mapping to [`herd_venue::VenueError`] (done here and nowhere else).

use herd_venue::VenueError;

/// What a retCode means. Codes come in pairs where Bybit's derivatives and
/// spot engines use different numbers for the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// 10001: a parameter is wrong.
    BadParameter,
    /// 10002: the timestamp is outside the receive window.
    TimestampWindow,
    /// 10003: the API key is invalid.
    InvalidKey,
    /// 10004: the signature is wrong.
    InvalidSignature,
    /// 10005: the key lacks the permission.
    PermissionDenied,
    /// 10006: the per-endpoint limit is exceeded ("Too many visits!").
    RateLimited,
    /// 10010: the request IP is not bound to the key.
    IpMismatch,
    /// 10016: Bybit's server error; the request may have been processed.
    ServerError,
    /// 110001 / 170213: no such order.
    OrderNotFound,
    /// 110007 / 170131: insufficient balance.
    InsufficientBalance,
    /// 110072 / 170141: the orderLinkId was used before (the order exists).
    DuplicateOrderLinkId,
    /// 110094 / 170140: order value below the minimum notional.
    NotionalTooLow,
    /// 170136: quantity below the minimum.
    QuantityTooLow,
    /// 110017: a reduce-only order would not reduce the position.
    ReduceOnlyRejected,
    /// Anything else.
    Other,
}

impl ApiErrorKind {
    pub fn from_code(code: i64) -> ApiErrorKind {
        match code {
            10001 => ApiErrorKind::BadParameter,
            10002 => ApiErrorKind::TimestampWindow,
            10003 => ApiErrorKind::InvalidKey,
            10004 => ApiErrorKind::InvalidSignature,
            10005 => ApiErrorKind::PermissionDenied,
            10006 => ApiErrorKind::RateLimited,
            10010 => ApiErrorKind::IpMismatch,
            10016 => ApiErrorKind::ServerError,
            110001 | 170213 => ApiErrorKind::OrderNotFound,
            110007 | 170131 => ApiErrorKind::InsufficientBalance,
            110072 | 170141 => ApiErrorKind::DuplicateOrderLinkId,
            110094 | 170140 => ApiErrorKind::NotionalTooLow,
            170136 => ApiErrorKind::QuantityTooLow,
            110017 => ApiErrorKind::ReduceOnlyRejected,
            _ => ApiErrorKind::Other,
        }
    }
}

/// A non-zero retCode with Bybit's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retCode {code}: {msg}")]
pub struct BybitApiError {
    pub code: i64,
    pub msg: String,
}

impl BybitApiError {
    pub fn kind(&self) -> ApiErrorKind {
        ApiErrorKind::from_code(self.code)
    }

    /// True when the same call may succeed later unchanged (10002 after a
    /// clock resync, 10006 after the reset, 10016).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ApiErrorKind::TimestampWindow | ApiErrorKind::RateLimited | ApiErrorKind::ServerError
        )
    }
}

/// What a call of the raw HTTP client can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BybitError {
    /// Bybit answered with retCode != 0.
    #[error("bybit {0}")]
    Api(BybitApiError),
    /// HTTP 403: the IP limit was breached; Bybit bans the IP for a while.
    #[error("http 403: IP rate limit breached, calls stopped until {until_ms}")]
    IpBanned { until_ms: i64 },
    /// A non-2xx HTTP status without a Bybit envelope.
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
    /// The call was refused before sending (bad arguments).
    #[error("request: {0}")]
    Request(String),
    /// A private call without a configured credential.
    #[error("no API credential configured")]
    NoCredential,
}

impl BybitError {
    /// The retCode error, if this is one.
    pub fn api(&self) -> Option<&BybitApiError> {
        match self {
            BybitError::Api(e) => Some(e),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<ApiErrorKind> {
        self.api().map(BybitApiError::kind)
    }

    /// True when the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            BybitError::Api(e) => e.is_retryable(),
            BybitError::IpBanned { .. } => true,
            BybitError::Http { status, .. } => *status >= 500 || *status == 429,
            BybitError::Timeout(_) | BybitError::Connect(_) | BybitError::Transport(_) => true,
            BybitError::Decode(_) | BybitError::Request(_) | BybitError::NoCredential => false,
        }
    }

    /// True when a state-changing request failing this way may still have
    /// been executed: a timeout, a connection broken after sending, a 5xx,
    /// retCode 10016 or an unreadable answer.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            BybitError::Api(e) => e.kind() == ApiErrorKind::ServerError,
            BybitError::Http { status, .. } => *status >= 500,
            BybitError::Timeout(_) | BybitError::Transport(_) | BybitError::Decode(_) => true,
            BybitError::IpBanned { .. }
            | BybitError::Connect(_)
            | BybitError::Request(_)
            | BybitError::NoCredential => false,
        }
    }

    /// The venue-neutral error. `retry_after_ms` is what the rate budget
    /// knows about the next allowed call, for 10006 and 429.
    pub fn to_venue_error(&self, retry_after_ms: i64) -> VenueError {
        let msg = self.to_string();
        match self {
            BybitError::Api(e) => match e.kind() {
                ApiErrorKind::BadParameter
                | ApiErrorKind::NotionalTooLow
                | ApiErrorKind::QuantityTooLow => VenueError::InvalidArgument(msg),
                ApiErrorKind::TimestampWindow
                | ApiErrorKind::InvalidKey
                | ApiErrorKind::InvalidSignature
                | ApiErrorKind::PermissionDenied
                | ApiErrorKind::IpMismatch => VenueError::Auth(msg),
                ApiErrorKind::RateLimited => VenueError::RateLimited {
                    message: msg,
                    retry_after_ms,
                },
                ApiErrorKind::ServerError => VenueError::Unavailable(msg),
                ApiErrorKind::OrderNotFound => VenueError::UnknownOrder(msg),
                ApiErrorKind::InsufficientBalance => VenueError::InsufficientFunds(msg),
                ApiErrorKind::DuplicateOrderLinkId | ApiErrorKind::ReduceOnlyRejected => {
                    VenueError::Rejected(msg)
                }
                ApiErrorKind::Other => VenueError::Other(msg),
            },
            BybitError::IpBanned { until_ms } => VenueError::Lockout {
                message: msg,
                until_ms: *until_ms,
            },
            BybitError::Http { status: 429, .. } => VenueError::RateLimited {
                message: msg,
                retry_after_ms,
            },
            BybitError::Http { status, .. } if *status >= 500 => VenueError::Unavailable(msg),
            BybitError::Http { .. } => VenueError::Other(msg),
            BybitError::Timeout(_) | BybitError::Connect(_) | BybitError::Transport(_) => {
                VenueError::Transport(msg)
            }
            BybitError::Decode(_) => VenueError::Parse(msg),
            BybitError::Request(_) => VenueError::InvalidArgument(msg),
            BybitError::NoCredential => VenueError::Auth(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: i64) -> BybitError {
        BybitError::Api(BybitApiError {
            code,
            msg: "m".into(),
        })
    }

    #[test]
    fn every_spec_code_maps() {
        // (code, kind, venue error discriminant check, retryable, unknown outcome)
        type Check = fn(&VenueError) -> bool;
        let cases: [(i64, ApiErrorKind, Check, bool, bool); 19] = [
            (
                10001,
                ApiErrorKind::BadParameter,
                |v| matches!(v, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                10002,
                ApiErrorKind::TimestampWindow,
                |v| matches!(v, VenueError::Auth(_)),
                true,
                false,
            ),
            (
                10003,
                ApiErrorKind::InvalidKey,
                |v| matches!(v, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                10004,
                ApiErrorKind::InvalidSignature,
                |v| matches!(v, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                10005,
                ApiErrorKind::PermissionDenied,
                |v| matches!(v, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                10006,
                ApiErrorKind::RateLimited,
                |v| {
                    matches!(
                        v,
                        VenueError::RateLimited {
                            retry_after_ms: 250,
                            ..
                        }
                    )
                },
                true,
                false,
            ),
            (
                10010,
                ApiErrorKind::IpMismatch,
                |v| matches!(v, VenueError::Auth(_)),
                false,
                false,
            ),
            (
                10016,
                ApiErrorKind::ServerError,
                |v| matches!(v, VenueError::Unavailable(_)),
                true,
                true,
            ),
            (
                110001,
                ApiErrorKind::OrderNotFound,
                |v| matches!(v, VenueError::UnknownOrder(_)),
                false,
                false,
            ),
            (
                170213,
                ApiErrorKind::OrderNotFound,
                |v| matches!(v, VenueError::UnknownOrder(_)),
                false,
                false,
            ),
            (
                110007,
                ApiErrorKind::InsufficientBalance,
                |v| matches!(v, VenueError::InsufficientFunds(_)),
                false,
                false,
            ),
            (
                170131,
                ApiErrorKind::InsufficientBalance,
                |v| matches!(v, VenueError::InsufficientFunds(_)),
                false,
                false,
            ),
            (
                110072,
                ApiErrorKind::DuplicateOrderLinkId,
                |v| matches!(v, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                170141,
                ApiErrorKind::DuplicateOrderLinkId,
                |v| matches!(v, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                110094,
                ApiErrorKind::NotionalTooLow,
                |v| matches!(v, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                170140,
                ApiErrorKind::NotionalTooLow,
                |v| matches!(v, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                170136,
                ApiErrorKind::QuantityTooLow,
                |v| matches!(v, VenueError::InvalidArgument(_)),
                false,
                false,
            ),
            (
                110017,
                ApiErrorKind::ReduceOnlyRejected,
                |v| matches!(v, VenueError::Rejected(_)),
                false,
                false,
            ),
            (
                99999,
                ApiErrorKind::Other,
                |v| matches!(v, VenueError::Other(_)),
                false,
                false,
            ),
        ];
        for (code, kind, check, retryable, unknown) in cases {
            let e = api(code);
            assert_eq!(e.kind(), Some(kind), "{code}");
            let v = e.to_venue_error(250);
            assert!(check(&v), "{code} -> {v:?}");
            assert_eq!(e.is_retryable(), retryable, "{code} retryable");
            assert_eq!(e.is_outcome_unknown(), unknown, "{code} unknown");
        }
    }

    #[test]
    fn transport_table() {
        let cases = [
            (BybitError::IpBanned { until_ms: 9 }, true, false),
            (
                BybitError::Http {
                    status: 502,
                    body: String::new(),
                },
                true,
                true,
            ),
            (
                BybitError::Http {
                    status: 429,
                    body: String::new(),
                },
                true,
                false,
            ),
            (
                BybitError::Http {
                    status: 404,
                    body: String::new(),
                },
                false,
                false,
            ),
            (BybitError::Timeout("t".into()), true, true),
            (BybitError::Connect("c".into()), true, false),
            (BybitError::Transport("r".into()), true, true),
            (BybitError::Decode("d".into()), false, true),
            (BybitError::NoCredential, false, false),
        ];
        for (e, retryable, unknown) in cases {
            assert_eq!(e.is_retryable(), retryable, "{e}");
            assert_eq!(e.is_outcome_unknown(), unknown, "{e}");
        }
        assert!(matches!(
            BybitError::IpBanned { until_ms: 9 }.to_venue_error(0),
            VenueError::Lockout { until_ms: 9, .. }
        ));
    }
}
