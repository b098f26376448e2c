//! What went wrong, in words: the one place herdctl turns a failed
//! connection, a gRPC status or a missing token into the line an operator
//! reads (tonic's own wording, `transport error` or `code: 'Operation is not
//! implemented or not supported'`, says nothing about what to do).

use std::path::PathBuf;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Which API a command speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Engine,
    Gateway,
    Admin,
}

impl Service {
    fn noun(self) -> &'static str {
        match self {
            Service::Engine => "engine",
            Service::Gateway | Service::Admin => "gateway",
        }
    }

    /// The gRPC service name the command calls.
    fn grpc_name(self) -> &'static str {
        match self {
            Service::Engine => "herd.engine.v1.Engine",
            Service::Gateway => "herd.gateway.v1.Gateway",
            Service::Admin => "herd.gateway.v1.GatewayAdmin",
        }
    }
}

/// Where a command's token comes from, as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or its environment variable (clap does not tell them apart).
    Flag {
        env: &'static str,
    },
    File(PathBuf),
    /// The local herd's token file in `.herd/local/`.
    Local(PathBuf),
}

impl TokenSource {
    fn describe(&self) -> String {
        match self {
            TokenSource::Flag { env } => format!("the token given with --token or {env}"),
            TokenSource::File(f) | TokenSource::Local(f) => {
                format!("the token in {}", f.display())
            }
        }
    }
}

/// The server a command talks to and the token it presents.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: Service,
    pub url: String,
    pub token: TokenSource,
}

/// No token anywhere herdctl looks.
#[derive(Debug, thiserror::Error)]
#[error(
    "no token: set {env} or pass --token (or --token-file); the local herd's {} does not exist here either",
    local.display()
)]
pub struct NoToken {
    pub env: &'static str,
    pub local: PathBuf,
}

/// The channel to `url` could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {url}")]
pub struct ConnectError {
    pub url: String,
    #[source]
    pub source: tonic::transport::Error,
}

/// The message for `err`, which a command of `target` (if it has one)
/// returned. Asks the server once which service it is when the command's
/// service is not there.
pub async fn explain(err: &anyhow::Error, target: Option<&Target>) -> String {
    if let Some(c) = err.downcast_ref::<ConnectError>() {
        return format!(
            "cannot connect to {}: {}",
            c.url,
            root_cause_words(&c.source)
        );
    }
    if let (Some(s), Some(t)) = (err.downcast_ref::<tonic::Status>(), target) {
        return explain_status(s, t).await;
    }
    herd_proto::report::chain(err.as_ref())
}

async fn explain_status(s: &tonic::Status, t: &Target) -> String {
    use tonic::Code;
    let noun = t.service.noun();
    let url = &t.url;
    match s.code() {
        Code::Unauthenticated if s.message().contains("missing authorization") => {
            format!("the {noun} at {url} wants a token and got none")
        }
        Code::Unauthenticated => {
            format!("{} is not known to the {noun} at {url}", t.token.describe())
        }
        Code::PermissionDenied if t.service == Service::Admin => format!(
            "{} is an engine's token; this command needs the gateway's admin token",
            t.token.describe()
        ),
        Code::PermissionDenied => format!(
            "{} is the gateway's admin token; this command needs an engine's token",
            t.token.describe()
        ),
        Code::Unimplemented => match other_service(url, t.service).await {
            Some(other) => format!("{url} is {other}, not {}", with_article(noun)),
            None => format!(
                "{url} does not serve {} (is it the right address?)",
                t.service.grpc_name()
            ),
        },
        Code::Unavailable if is_transport(s) => {
            format!("lost the connection to {url}: {}", root_cause_words(s))
        }
        Code::Unavailable => format!("the {noun} at {url} is unavailable: {}", s.message()),
        Code::DeadlineExceeded | Code::Cancelled if is_transport(s) => {
            format!("no answer from the {noun} at {url} in time")
        }
        code => format!(
            "the {noun} at {url} answered {}: {}",
            code_words(code),
            s.message()
        ),
    }
}

fn with_article(noun: &str) -> String {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

/// What the server at `url` is instead, asked through grpc.health.v1 (every
/// Herd server registers its service's name there).
async fn other_service(url: &str, wanted: Service) -> Option<&'static str> {
    let candidates: &[(&str, &'static str)] = match wanted {
        Service::Engine => &[("herd.gateway.v1.Gateway", "a gateway")],
        Service::Gateway | Service::Admin => &[("herd.engine.v1.Engine", "an engine")],
    };
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()?;
    let mut health = HealthClient::new(channel);
    for (name, what) in candidates {
        let asked = health
            .check(HealthCheckRequest {
                service: (*name).to_string(),
            })
            .await;
        // Any answer but NOT_FOUND means the service is registered there
        // (a draining server answers NOT_SERVING).
        if asked.is_ok() {
            return Some(what);
        }
    }
    None
}

/// A status tonic made up for a broken connection, not one a server sent.
fn is_transport(s: &tonic::Status) -> bool {
    std::error::Error::source(s).is_some() || s.message().contains("transport error")
}

fn code_words(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => "invalid request",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::FailedPrecondition | Code::Aborted => "refused",
        Code::ResourceExhausted => "too busy",
        Code::Internal | Code::Unknown | Code::DataLoss => "internal error",
        _ => "an error",
    }
}

/// The innermost cause of `err` in words: "connection refused" rather than
/// "transport error".
fn root_cause_words(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            return io_words(io);
        }
        match cur.source() {
            Some(next) => cur = next,
            None => break,
        }
    }
    let last = cur.to_string();
    if last.contains("timed out") || last.contains("elapsed") {
        "timed out".to_string()
    } else {
        last
    }
}

fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => "connection refused (nothing listens there)".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::AddrNotAvailable => "address not available".to_string(),
        _ => {
            let s = io.to_string();
            // "Connection refused (os error 111)" -> drop the errno.
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_words() {
        let cases = [
            (
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                "connection refused (nothing listens there)",
            ),
            (
                std::io::Error::from(std::io::ErrorKind::TimedOut),
                "timed out",
            ),
            (std::io::Error::from_raw_os_error(113), "no route to host"),
        ];
        for (e, want) in cases {
            assert_eq!(io_words(&e), want);
        }
    }

    #[test]
    fn token_sources_name_the_file() {
        assert_eq!(
            TokenSource::File(PathBuf::from("/t/x.token")).describe(),
            "the token in /t/x.token"
        );
        assert_eq!(
            TokenSource::Flag {
                env: "HERD_CONTROL_TOKEN"
            }
            .describe(),
            "the token given with --token or HERD_CONTROL_TOKEN"
        );
    }
}
