//! The engine's admin HTTP port (read-only, no token): `/metrics`
//! (Prometheus) and the dashboard (`/`, `/api/status`) here; `/healthz` and
//! `/readyz` (200 while serving, 503 once draining) are added by
//! [`herd_proto::admin_http::start`].
//!
//! Routes live here; what they render lives beside the state they read.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::dashboard;
use crate::execution::Shared;

/// The engine's routes.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(dashboard::page))
        .route("/index.html", get(dashboard::page))
        .route("/api/status", get(api_status))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    herd_proto::admin_http::metrics_page(crate::metrics::render(&shared).await)
}

async fn api_status(State(shared): State<Arc<Shared>>) -> Response {
    dashboard::api_status(&shared).await
}
