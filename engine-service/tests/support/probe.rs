//! A probe strategy that keeps one resting buy (it places one whenever it
//! has none that may exist) and logs what it placed and was told, and an
//! engine that runs only it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use herd_engine::config::EngineConfig;
use herd_strategies::strategy::{
    Action, IdGen, MarketView, OrderIntent, OrderUpdate, Side, StatusBlock, Strategy, UpdateKind,
};
use rust_decimal::Decimal;
use tokio::sync::oneshot;

use super::wait_for;

/// What the probe strategy did and was told.
#[derive(Default, Debug)]
pub struct Log {
    pub places: Vec<String>,
    pub updates: Vec<(String, UpdateKind, String)>,
    pub ticks: u64,
}

/// Keeps one resting buy: places one whenever it has none that may exist.
pub struct Probe {
    pub ids: IdGen,
    pub live: Option<String>,
    pub log: Arc<Mutex<Log>>,
}

impl Strategy for Probe {
    fn name(&self) -> &str {
        "probe"
    }

    fn owns(&self, client_order_id: &str) -> bool {
        client_order_id.starts_with("probe-")
    }

    fn on_tick(&mut self, market: &MarketView, _now_ms: i64) -> Vec<Action> {
        let mut log = self.log.lock().unwrap();
        log.ticks += 1;
        if self.live.is_some() || market.instrument.is_none() {
            return Vec::new();
        }
        let id = self.ids.next("probe");
        log.places.push(id.clone());
        self.live = Some(id.clone());
        vec![Action::Place(OrderIntent {
            client_order_id: id,
            symbol: market.symbol.clone(),
            side: Side::Buy,
            volume: Decimal::new(100, 0),
            price: Some(Decimal::new(10, 2)),
            post_only: true,
            userref_offset: 0,
        })]
    }

    fn on_order(&mut self, update: &OrderUpdate, _now_ms: i64) -> Vec<Action> {
        self.log.lock().unwrap().updates.push((
            update.client_order_id.clone(),
            update.kind,
            update.message.clone(),
        ));
        let gone = matches!(
            update.kind,
            UpdateKind::PlaceFailed | UpdateKind::Rejected | UpdateKind::Canceled
        );
        if gone && self.live.as_deref() == Some(update.client_order_id.as_str()) {
            self.live = None;
        }
        Vec::new()
    }

    fn status(&self, _now_ms: i64) -> StatusBlock {
        StatusBlock::Detail(serde_json::Value::Null)
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// [`wait_for`] over a check that answers `None` until it holds.
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for(what, || {
        let seen = check();
        async move { seen.await.ok_or_else(|| "not yet".to_string()) }
    })
    .await
}

/// Runs an engine with `cfg` and only the probe strategy; returns the
/// probe's log, the control server's address and the engine's stop.
pub async fn start_probe_engine(
    cfg: EngineConfig,
) -> (Arc<Mutex<Log>>, SocketAddr, oneshot::Sender<()>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let probe = Probe {
        ids: IdGen::new(herd_engine::clock::now_ms()),
        live: None,
        log: log.clone(),
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(herd_engine::run(
        cfg,
        vec![Box::new(probe)],
        move |a| {
            let _ = ready_tx.send(a);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let addr = ready_rx.await.unwrap();
    (log, addr, stop)
}
