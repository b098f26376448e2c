//! The gateway's admin HTTP port (read-only, no token): `/metrics`
//! (Prometheus) here; `/healthz` and `/readyz` (200 while serving, 503 once
//! draining) are added by [`herd_proto::admin_http::start`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::service::Core;

/// The gateway's routes.
pub fn routes(core: Arc<Core>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(core)
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    herd_proto::admin_http::metrics_page(crate::metrics::render(&core))
}
