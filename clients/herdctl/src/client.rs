//! gRPC clients with the bearer token attached, and the confirmation prompt.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use herd_proto::engine::engine_client::EngineClient;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow::anyhow!("{url} is not a valid address: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|source| crate::errors::ConnectError {
            url: url.to_string(),
            source,
        })?)
}

fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(Bearer(format!("Bearer {token}").parse().map_err(|_| {
        anyhow::anyhow!("the token is not valid ASCII")
    })?))
}

pub type Engine = EngineClient<InterceptedService<Channel, Bearer>>;
pub type Gateway = GatewayClient<InterceptedService<Channel, Bearer>>;
pub type Admin = GatewayAdminClient<InterceptedService<Channel, Bearer>>;

pub async fn engine(url: &str, token: &str) -> anyhow::Result<Engine> {
    Ok(EngineClient::with_interceptor(
        channel(url).await?,
        bearer(token)?,
    ))
}

pub async fn gateway(url: &str, token: &str) -> anyhow::Result<Gateway> {
    Ok(GatewayClient::with_interceptor(
        channel(url).await?,
        bearer(token)?,
    ))
}

pub async fn admin(url: &str, token: &str) -> anyhow::Result<Admin> {
    Ok(GatewayAdminClient::with_interceptor(
        channel(url).await?,
        bearer(token)?,
    ))
}

/// Asks "[y/N]" on the terminal; without a terminal the answer is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} (no terminal to ask on; pass --yes)");
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES"))
}
