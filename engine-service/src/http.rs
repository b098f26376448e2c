//! The engine's admin HTTP port (read-only, no token): `/healthz` (200 while
//! serving, 503 once draining), `/metrics` (Prometheus) and the dashboard.
//!
//! Routes live here; what they render lives beside the state they read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herd_proto::admin_http::{AdminHandler, AdminRequest, AdminResponse};

use crate::dashboard;
use crate::execution::Shared;

/// Shared with the handler: flips to false when the engine starts draining.
#[derive(Debug)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub serving: AtomicBool,
}

/// The engine's routes.
pub fn handler(state: Arc<HttpState>) -> AdminHandler {
    Arc::new(move |req: AdminRequest| {
        let state = state.clone();
        Box::pin(async move { route(&state, req).await })
    })
}

async fn route(state: &HttpState, req: AdminRequest) -> AdminResponse {
    match req.path.as_str() {
        "/healthz" | "/readyz" => AdminResponse::health(state.serving.load(Ordering::Relaxed)),
        "/metrics" => match crate::metrics::render(&state.shared).await {
            Ok(page) => AdminResponse::prometheus(page),
            Err(_) => AdminResponse::status(500, "metrics: encoding failed\n"),
        },
        "/" | "/index.html" => dashboard::page(),
        "/api/status" => dashboard::api_status(&state.shared).await,
        p => AdminResponse::not_found(p),
    }
}
