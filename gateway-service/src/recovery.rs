//! What keeps engines' orders safe when a process goes away.
//!
//! - **Restart recovery**: a restarted gateway has an empty registry. It
//!   rebuilds which orders belong to which engine from the venue itself (the
//!   engine's order prefix in the client order id) and resumes polling them.
//!   Orders that closed while it was down are found on demand when their
//!   engine asks for them ([`lookup`]). Events carry the new incarnation, so
//!   engines reconcile before trusting the stream again.
//! - **Per-engine dead man's switch**: when an engine's event stream has been
//!   gone longer than its grace, the gateway cancels that engine's working
//!   orders, and only those, once per disconnection, and says so in the log
//!   and in `ListEngines`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herd_venue::{OrderRef, OrderState};

use crate::fair::Priority;
use crate::service::Core;

/// Adopts every open order of the key that carries an engine's prefix and
/// is not foreign (foreign ones go to the registry's foreign set). Returns
/// how many were adopted.
pub async fn adopt_open_orders(core: &Core) -> Result<usize, herd_venue::VenueError> {
    let slot = core
        .fair
        .acquire(crate::poller::POLLER, Priority::Query)
        .await;
    let open = core.venue.open_orders().await?;
    drop(slot);
    core.registry.set_foreign(&open);
    Ok(open.iter().filter(|s| core.registry.adopt(s)).count())
}

/// Keeps trying [`adopt_open_orders`] until it works once.
pub async fn run_adoption(core: Arc<Core>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match adopt_open_orders(&core).await {
            Ok(n) => {
                tracing::info!(adopted = n, "orders rebuilt from the venue");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the venue's open orders yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Finds an order the registry does not know at the venue by the engine's
/// client id, and adopts it (it may have closed while the gateway was down).
///
/// Only an order that is the caller's is looked for and handed back: the
/// venue-facing id must belong to `engine` by [`Registry::owner_of`] (the
/// registry's owner, else the longest prefix), before the venue is asked
/// and again when adopting. Prefix arithmetic alone (`a-` + `b-xyz` is
/// `a-b-` + `xyz`) never makes another engine's order the caller's.
///
/// `Ok(None)` only when the venue answered and does not have it (or it is
/// not the caller's); a venue call that failed is an error (the engines'
/// reconcile must not take "could not ask" for "does not exist":
/// docs/reconcile.md).
///
/// [`Registry::owner_of`]: crate::registry::Registry::owner_of
pub async fn lookup(
    core: &Core,
    engine: &str,
    client_order_id: &str,
) -> Result<Option<OrderState>, tonic::Status> {
    let Some(venue_id) = core.registry.venue_client_id(engine, client_order_id) else {
        return Ok(None);
    };
    let mine = (engine.to_string(), client_order_id.to_string());
    if core.registry.owner_of(&venue_id).as_ref() != Some(&mine) {
        return Ok(None);
    }
    let slot = core
        .fair
        .acquire(engine, Priority::Query)
        .await
        .map_err(|_| tonic::Status::resource_exhausted("too many calls queued for this engine"))?;
    let found = core
        .venue
        .query_orders(&[OrderRef {
            client_order_id: venue_id.clone(),
            venue_order_id: None,
        }])
        .await
        .map_err(|e| crate::service::venue_status(&e))?;
    drop(slot);
    let Some(state) = found.into_iter().find(|s| s.client_order_id == venue_id) else {
        return Ok(None);
    };
    core.registry.adopt(&state);
    // Adoption gives the order to its owner by the same rule; if that is not
    // the caller (it changed meanwhile), the caller's book has no such order.
    Ok((core.registry.owner(&venue_id).as_ref() == Some(&mine))
        .then(|| core.registry.get(engine, client_order_id))
        .flatten())
}

/// Checks every second for engines whose stream has been gone too long.
pub async fn run_dead_man(core: Arc<Core>, grace_ms: HashMap<String, i64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = core.clock.now_ms();
        for engine in core
            .registry
            .dead_man_due(now, |e| grace_ms.get(e).copied().unwrap_or(0))
        {
            let working = core.registry.working_orders(&engine);
            let prefix = core.registry.prefix(&engine).unwrap_or_default();
            let mut canceled = 0;
            let mut failed = 0;
            for o in &working {
                let id = o
                    .client_order_id
                    .strip_prefix(&prefix)
                    .unwrap_or(&o.client_order_id);
                match core.cancel(&engine, id).await {
                    Ok(_) => canceled += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(engine, client_order_id = id, error = %e.message(), "dead man's switch cancel failed");
                    }
                }
            }
            tracing::warn!(
                engine,
                canceled,
                failed,
                "dead man's switch: engine stream gone past its grace; its orders canceled"
            );
            core.registry.set_dead_man_fired(&engine, now, canceled);
            crate::events::dead_man_fired(&core.events, &engine, canceled, failed);
            if let Some(c) = core.metrics.engine(&engine) {
                c.dead_man_fired.inc();
                c.dead_man_canceled.inc_by(u64::from(canceled));
            }
        }
    }
}
