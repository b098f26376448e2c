//! The one reading of a gateway answer to an order call.
//!
//! What matters to an engine is not the gRPC code but what it says about
//! the order: was it definitely not placed (refused, invalid, draining), or
//! may it exist (the outcome is unknown, resolved by asking the gateway,
//! never by placing again)? The gateway marks every refusal of its own with
//! the [`REFUSED_KEY`] trailer, so a status that went wrong on the way (a
//! reset connection, a timeout, an HTTP/2 error: tonic reports those as
//! UNAVAILABLE, DEADLINE_EXCEEDED, UNKNOWN, CANCELLED or INTERNAL) is
//! never mistaken for a refusal.

use tonic::{Code, Status};

/// Trailer on a gateway's definite refusal: the order was not placed and
/// will not be. Values: [`REFUSED`] and [`SHUTTING_DOWN`].
pub const REFUSED_KEY: &str = "herd-refused";
/// [`REFUSED_KEY`]'s value for a refusal of the gateway (or a venue it
/// asked) that it is sure of.
pub const REFUSED: &str = "refused";
/// [`REFUSED_KEY`]'s value on a draining server's refusal.
pub const SHUTTING_DOWN: &str = "shutting-down";

/// The trailer of a gateway risk denial (docs/risk.md): the limit's code
/// (`max_notional`, `order_rate`, `halted`, ...). Such a denial is definite
/// (it also carries [`REFUSED_KEY`]) and is never venue trouble.
pub const RISK_CODE_KEY: &str = "herd-risk-code";

/// The risk code of a gateway risk denial, if `status` is one.
pub fn risk_code(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(RISK_CODE_KEY)
        .and_then(|v| v.to_str().ok())
}

/// What a failed order call says about the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Definitely not done: the gateway or the venue said no.
    Refused,
    /// Definitely not done: the request itself was wrong.
    InvalidRequest,
    /// The gateway does not know the order (or the caller may not see it).
    NotFound,
    /// Definitely not done: the server is shutting down.
    Draining,
    /// The server does not offer this call.
    Unsupported,
    /// Maybe done: ask the gateway later; never send it again.
    OutcomeUnknown,
}

impl Answer {
    /// True when nothing happened, so the caller may try something else
    /// (a strategy may place a new order).
    pub fn is_definite(self) -> bool {
        !matches!(self, Answer::OutcomeUnknown)
    }
}

/// Reads `status` (an error answer to PlaceOrder, CancelOrder, SubmitOrder).
pub fn classify(status: &Status) -> Answer {
    match status.metadata().get(REFUSED_KEY) {
        Some(v) if v == SHUTTING_DOWN => return Answer::Draining,
        Some(_) => {
            return match status.code() {
                Code::InvalidArgument | Code::OutOfRange => Answer::InvalidRequest,
                Code::NotFound => Answer::NotFound,
                Code::Unimplemented => Answer::Unsupported,
                _ => Answer::Refused,
            };
        }
        None => {}
    }
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => Answer::InvalidRequest,
        Code::NotFound => Answer::NotFound,
        Code::Unimplemented => Answer::Unsupported,
        Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists
        | Code::ResourceExhausted => Answer::Refused,
        // No answer the gateway vouched for: the request may have reached
        // it and the order may exist. `Ok` cannot be an error answer; read
        // it as unknown rather than as a refusal.
        Code::Ok
        | Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => Answer::OutcomeUnknown,
    }
}

/// True when `status` is not the gateway's answer but the client's own: it
/// could not reach the gateway (connection refused, connect timeout) or the
/// connection broke during the call. Tonic builds such a status from its
/// transport error and keeps that error as the status's source; a status
/// the server sent arrives as headers and has none, and a status carrying
/// the gateway's [`REFUSED_KEY`] mark came from the gateway.
pub fn is_gateway_unreachable(status: &Status) -> bool {
    !status.metadata().contains_key(REFUSED_KEY) && std::error::Error::source(status).is_some()
}

/// True when `status` speaks of trouble at the venue or on the gateway's
/// way to it (unavailable, slow, rate-limited or failing), which the engine
/// counts towards pausing itself. A refusal of a bad order, a draining
/// server and a gateway the engine cannot reach ([`is_gateway_unreachable`]:
/// the engine waits for it and resumes on reconnect) are not venue trouble.
pub fn is_venue_trouble(status: &Status) -> bool {
    classify(status) != Answer::Draining
        && !is_gateway_unreachable(status)
        && risk_code(status).is_none()
        && matches!(
            status.code(),
            Code::Unavailable
                | Code::Internal
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Unknown
        )
}

/// `status` marked as the gateway's definite refusal (see [`REFUSED_KEY`]).
/// A status already marked keeps its mark.
pub fn refused(mut status: Status) -> Status {
    if !status.metadata().contains_key(REFUSED_KEY) {
        status.metadata_mut().insert(
            REFUSED_KEY,
            tonic::metadata::MetadataValue::from_static(REFUSED),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(code: Code, trailer: Option<&'static str>) -> Status {
        let mut s = Status::new(code, "x");
        if let Some(v) = trailer {
            s.metadata_mut()
                .insert(REFUSED_KEY, tonic::metadata::MetadataValue::from_static(v));
        }
        s
    }

    #[test]
    fn every_code_with_and_without_the_refusal_trailer() {
        use Answer::*;
        // (code, without the trailer, with herd-refused: refused)
        let table = [
            (Code::Ok, OutcomeUnknown, Refused),
            (Code::Cancelled, OutcomeUnknown, Refused),
            (Code::Unknown, OutcomeUnknown, Refused),
            (Code::InvalidArgument, InvalidRequest, InvalidRequest),
            (Code::DeadlineExceeded, OutcomeUnknown, Refused),
            (Code::NotFound, NotFound, NotFound),
            (Code::AlreadyExists, Refused, Refused),
            (Code::PermissionDenied, Refused, Refused),
            (Code::ResourceExhausted, Refused, Refused),
            (Code::FailedPrecondition, Refused, Refused),
            (Code::Aborted, OutcomeUnknown, Refused),
            (Code::OutOfRange, InvalidRequest, InvalidRequest),
            (Code::Unimplemented, Unsupported, Unsupported),
            (Code::Internal, OutcomeUnknown, Refused),
            (Code::Unavailable, OutcomeUnknown, Refused),
            (Code::DataLoss, OutcomeUnknown, Refused),
            (Code::Unauthenticated, Refused, Refused),
        ];
        assert_eq!(table.len(), 17, "every gRPC code");
        for (code, bare, marked) in table {
            assert_eq!(classify(&with(code, None)), bare, "{code:?}");
            assert_eq!(
                classify(&with(code, Some(REFUSED))),
                marked,
                "{code:?} refused"
            );
            assert_eq!(
                classify(&with(code, Some(SHUTTING_DOWN))),
                Draining,
                "{code:?} draining"
            );
            assert_eq!(classify(&refused(Status::new(code, "x"))), marked);
        }
        assert!(!OutcomeUnknown.is_definite());
        assert!(Refused.is_definite() && Draining.is_definite());
    }

    #[test]
    fn venue_trouble_is_the_path_failing_not_a_refusal_or_a_drain() {
        assert!(is_venue_trouble(&with(Code::Unavailable, None)));
        assert!(is_venue_trouble(&with(
            Code::ResourceExhausted,
            Some(REFUSED)
        )));
        assert!(is_venue_trouble(&with(Code::Internal, Some(REFUSED))));
        assert!(!is_venue_trouble(&with(
            Code::Unavailable,
            Some(SHUTTING_DOWN)
        )));
        assert!(!is_venue_trouble(&with(
            Code::FailedPrecondition,
            Some(REFUSED)
        )));
        assert!(!is_venue_trouble(&with(Code::InvalidArgument, None)));
    }

    /// A risk denial (the gateway's own limits) is a definite refusal and
    /// never counts toward pausing the engine, the rate limit's
    /// RESOURCE_EXHAUSTED included.
    #[test]
    fn a_risk_denial_is_a_refusal_not_venue_trouble() {
        for code in [Code::FailedPrecondition, Code::ResourceExhausted] {
            let mut s = with(code, Some(REFUSED));
            s.metadata_mut().insert(
                RISK_CODE_KEY,
                tonic::metadata::MetadataValue::from_static("order_rate"),
            );
            assert_eq!(classify(&s), Answer::Refused, "{code:?}");
            assert_eq!(risk_code(&s), Some("order_rate"));
            assert!(!is_venue_trouble(&s), "{code:?}");
        }
        assert_eq!(
            risk_code(&with(Code::FailedPrecondition, Some(REFUSED))),
            None
        );
    }

    /// What tonic hands back when nothing listens at the gateway's address:
    /// UNAVAILABLE "tcp connect error", built by the client, not the server.
    async fn connect_refused() -> Status {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| unreachable!("bind: {e}"));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap_or_else(|e| unreachable!("endpoint: {e}"))
            .connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        match health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
        {
            Ok(_) => unreachable!("nothing listens on {port}"),
            Err(s) => s,
        }
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_not_venue_trouble() {
        let s = connect_refused().await;
        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
        assert!(s.message().contains("tcp connect error"), "{s:?}");
        assert!(is_gateway_unreachable(&s), "{s:?}");
        assert!(!is_venue_trouble(&s), "{s:?}");
        // Still an unknown outcome for an order call: the request may have
        // left before the connection broke.
        assert_eq!(classify(&s), Answer::OutcomeUnknown);
        // The same code sent by the gateway (the venue is down) is trouble.
        let sent = with(Code::Unavailable, None);
        assert!(!is_gateway_unreachable(&sent));
        assert!(is_venue_trouble(&sent));
        assert!(!is_gateway_unreachable(&with(
            Code::Unavailable,
            Some(REFUSED)
        )));
    }

    #[test]
    fn a_mark_is_kept() {
        let s = refused(with(Code::Unavailable, Some(SHUTTING_DOWN)));
        assert_eq!(classify(&s), Answer::Draining);
    }
}
