//! Bearer-token authentication for the business services. The interceptor
//! puts the caller's identity into the request extensions for handlers to
//! read; health and reflection are served without it.

use std::sync::Arc;

use herd_proto::auth::token_matches;
use tonic::{Request, Status};

use crate::config::GatewayConfig;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Engine(String),
    Admin,
}

/// Token -> identity, compared in constant time.
#[derive(Clone)]
pub struct Auth {
    engines: Arc<Vec<(Vec<u8>, String)>>,
    admin: Option<Arc<Vec<u8>>>,
    /// Refused tokens become `auth_error` events (never the token).
    events: crate::events::Emitter,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("engines", &self.engines.len())
            .field("admin", &self.admin.is_some())
            .finish()
    }
}

fn bearer<T>(req: &Request<T>) -> Result<&[u8], Status> {
    let value = req.metadata().get("authorization").ok_or_else(|| {
        Status::unauthenticated("missing authorization metadata (\"Bearer <token>\")")
    })?;
    let s = value
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization metadata is not ASCII"))?;
    s.strip_prefix("Bearer ")
        .or_else(|| s.strip_prefix("bearer "))
        .map(str::as_bytes)
        .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))
}

impl Auth {
    pub fn from_config(cfg: &GatewayConfig) -> Auth {
        Auth {
            engines: Arc::new(
                cfg.engines
                    .iter()
                    .map(|e| (e.token.expose().as_bytes().to_vec(), e.id.clone()))
                    .collect(),
            ),
            // Validation refuses an empty token; the filter keeps an
            // unvalidated one from matching an empty bearer.
            admin: cfg
                .admin_token
                .as_ref()
                .map(|t| t.expose())
                .filter(|t| !t.is_empty())
                .map(|t| Arc::new(t.as_bytes().to_vec())),
            events: crate::events::Emitter::default(),
        }
    }

    /// Reports refused calls as herd events.
    pub fn with_events(mut self, events: crate::events::Emitter) -> Auth {
        self.events = events;
        self
    }

    fn refused(&self, service: &str, why: &str) -> Status {
        crate::events::auth_refused(&self.events, service, why);
        Status::unauthenticated(why.to_string())
    }

    fn identify(&self, token: &[u8]) -> Option<Caller> {
        let mut found = None;
        // Compare against every token so timing does not reveal which matched.
        for (t, id) in self.engines.iter() {
            if token_matches(t, token) {
                found = Some(Caller::Engine(id.clone()));
            }
        }
        if let Some(admin) = &self.admin
            && token_matches(admin, token)
        {
            found = Some(Caller::Admin);
        }
        found
    }

    /// Interceptor for engine calls: only engine tokens pass.
    pub fn engine(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.identify(bearer(&req)?) {
            Some(c @ Caller::Engine(_)) => {
                req.extensions_mut().insert(c);
                Ok(req)
            }
            Some(Caller::Admin) => Err(Status::permission_denied(
                "the admin token cannot trade; use an engine token",
            )),
            None => Err(self.refused("Gateway", "unknown token")),
        }
    }

    /// Interceptor for admin calls: only the admin token passes.
    pub fn admin(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.identify(bearer(&req)?) {
            Some(Caller::Admin) => {
                req.extensions_mut().insert(Caller::Admin);
                Ok(req)
            }
            Some(Caller::Engine(_)) => Err(Status::permission_denied(
                "admin calls need the admin token",
            )),
            None => Err(self.refused("GatewayAdmin", "unknown token")),
        }
    }
}

/// The engine id an authenticated request carries.
pub fn engine_of<T>(req: &Request<T>) -> Result<String, Status> {
    match req.extensions().get::<Caller>() {
        Some(Caller::Engine(id)) => Ok(id.clone()),
        _ => Err(Status::unauthenticated("no engine identity on the request")),
    }
}
