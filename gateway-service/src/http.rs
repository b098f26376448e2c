//! The gateway's admin HTTP port (read-only, no token): `/healthz` (200
//! while serving, 503 once draining) and `/metrics` (Prometheus).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herd_proto::admin_http::{AdminHandler, AdminRequest, AdminResponse};

use crate::service::Core;

/// Shared with the handler: flips to false when the gateway starts draining.
#[derive(Debug)]
pub struct HttpState {
    pub core: Arc<Core>,
    pub serving: AtomicBool,
}

/// The gateway's routes.
pub fn handler(state: Arc<HttpState>) -> AdminHandler {
    Arc::new(move |req: AdminRequest| {
        let state = state.clone();
        Box::pin(async move { route(&state, req).await })
    })
}

async fn route(state: &HttpState, req: AdminRequest) -> AdminResponse {
    match req.path.as_str() {
        "/healthz" | "/readyz" => AdminResponse::health(state.serving.load(Ordering::Relaxed)),
        "/metrics" => match crate::metrics::render(&state.core) {
            Ok(page) => AdminResponse::prometheus(page),
            Err(_) => AdminResponse::status(500, "metrics: encoding failed\n"),
        },
        p => AdminResponse::not_found(p),
    }
}
