//! The gateway's admin HTTP port (read-only): `/metrics` (Prometheus, no
//! token) here; the herd page and the fills and PnL exports in
//! [`crate::herd_http`] (admin token when one is set); `/healthz` and
//! `/readyz` (200 while serving, 503 once draining) are added by
//! [`herd_proto::admin_http::start`].

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
