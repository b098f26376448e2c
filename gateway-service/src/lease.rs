//! One active gateway per API key (ARCHITECTURE.md, "One gateway per key").
//!
//! A second process signing with the same key doubles the rate budget and
//! races the nonce, so [`hold`] runs before anything else in
//! [`crate::run`]: before the venue is built, before any state file is
//! opened, before the first venue call, recovery, the poller or the dead
//! man's switch.
//!
//! - With `[lease]` ([`LeaseConfig`]) the gateway takes a
//!   `coordination.k8s.io/v1` Lease through kube's `Api<Lease>` (get, create,
//!   replace with the `resourceVersion` read: a concurrent write is a 409 and
//!   loses). Until it holds the Lease it is a standby: gRPC health of
//!   `herd.gateway.v1.Gateway` NOT_SERVING (the overall "" stays SERVING so a
//!   liveness probe does not restart a healthy standby), `/readyz` 503, and no
//!   venue at all. A Lease held by another identity is taken only once it
//!   has expired: its `renewTime + leaseDurationSeconds` has passed by the
//!   wall clock *and* this process has seen the record unchanged for a whole
//!   `leaseDurationSeconds` by its own monotonic clock (client-go's rule,
//!   which is safe against clock skew). A released Lease (no holder) is free.
//! - The holder renews every `retry_period_s`. The [`Fence`] allows venue
//!   calls only until `renew_deadline_s` after the last renewal that
//!   succeeded (counted from before it was sent), which is before the Lease
//!   can expire for anyone else: past it every venue call is refused at once
//!   and calls waiting inside the adapter (for the rate budget or an answer)
//!   are cut off ([`FencedVenue`], the one wrapper every venue call goes
//!   through). [`Hold::lost`] resolves then; `run` drains (health NOT_SERVING)
//!   and exits non-zero so Kubernetes restarts the pod, which comes back as a
//!   standby.
//! - On a clean shutdown the holder fences itself and releases the Lease (no
//!   holder), so a standby takes over within one retry period.
//! - Without `[lease]`, and also after the Lease is held, the gateway locks
//!   `state_dir/gateway.lock` (and `STATE_FILE.lock` beside a paper
//!   `state_file`) with flock: two gateways on one state refuse to run
//!   together; the error names the file and the holder's pid. With a Lease
//!   the lock is waited for (the previous holder, fenced, may still be
//!   draining on the same volume); without one it fails at once.

use std::future::Future;
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use herd_venue::{
    AccountMargin, Balance, BudgetSnapshot, Candle, ClockReading, FundingPayment,
    FundingPaymentQuery, FundingRate, Instrument, KeyInfo, NewOrder, OrderRef, OrderState,
    PlaceOutcome, Position, Ticker, Venue, VenueError,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::GatewayConfig;

/// Where the pod's name comes from when `identity` is not set (the
/// Deployment sets it through the downward API; HOSTNAME is the pod name too).
pub const IDENTITY_ENV: [&str; 2] = ["POD_NAME", "HOSTNAME"];

/// The lock file in `state_dir`.
pub const LOCK_FILE: &str = "gateway.lock";

/// `[lease]`: take a Kubernetes Lease before any venue call (present = on).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// The Lease's name: one per API key (every gateway on the key names the
    /// same Lease). Required.
    pub name: String,
    /// Its namespace; unset = the client's (in a pod: the service account's
    /// namespace; with a kubeconfig: the context's).
    #[serde(default)]
    pub namespace: Option<String>,
    /// This process's `holderIdentity`; unset = the pod's name from the
    /// environment (POD_NAME, else HOSTNAME).
    #[serde(default)]
    pub identity: Option<String>,
    /// `leaseDurationSeconds`: how long a standby waits after the holder's
    /// last renewal before it takes over. Whole seconds (the Lease's field).
    #[serde(default = "default_lease_duration_s")]
    pub lease_duration_s: u32,
    /// The holder stops every venue call this long after its last successful
    /// renewal when it could not renew since; must be below
    /// `lease_duration_s` (the margin covers calls in flight and clock rate).
    #[serde(default = "default_renew_deadline_s")]
    pub renew_deadline_s: f64,
    /// How often the holder renews and a standby looks at the Lease.
    #[serde(default = "default_retry_period_s")]
    pub retry_period_s: f64,
}

fn default_lease_duration_s() -> u32 {
    15
}

fn default_renew_deadline_s() -> f64 {
    10.0
}

fn default_retry_period_s() -> f64 {
    2.0
}

impl LeaseConfig {
    /// Checks names and durations; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !is_dns_subdomain(&self.name) {
            return Err(format!(
                "lease.name: {:?} is not a Kubernetes object name (lowercase letters, digits, \
                 '-' and '.', at most 253 characters, starting and ending alphanumeric)",
                self.name
            ));
        }
        if let Some(ns) = &self.namespace
            && !(ns.len() <= 63 && !ns.contains('.') && is_dns_subdomain(ns))
        {
            return Err(format!(
                "lease.namespace: {ns:?} is not a namespace name (lowercase letters, digits \
                 and '-', at most 63 characters)"
            ));
        }
        if let Some(id) = &self.identity
            && id.trim().is_empty()
        {
            return Err(
                "lease.identity is empty: remove it to use the pod's name (POD_NAME)".into(),
            );
        }
        if self.lease_duration_s == 0 || i32::try_from(self.lease_duration_s).is_err() {
            return Err(format!(
                "lease.lease_duration_s: {} must be a whole number of seconds from 1",
                self.lease_duration_s
            ));
        }
        let (deadline, retry) = (self.renew_deadline_s, self.retry_period_s);
        if !(retry.is_finite() && retry >= 0.01) {
            return Err(format!(
                "lease.retry_period_s: {retry} must be a number of seconds of at least 0.01"
            ));
        }
        if !deadline.is_finite() || deadline >= f64::from(self.lease_duration_s) {
            return Err(format!(
                "lease.renew_deadline_s ({deadline}) must be below lease.lease_duration_s ({}): \
                 the holder must stop before a standby may take over",
                self.lease_duration_s
            ));
        }
        if deadline <= retry {
            return Err(format!(
                "lease.renew_deadline_s ({deadline}) must be above lease.retry_period_s \
                 ({retry}): a renewal must get more than one try before the deadline"
            ));
        }
        Ok(())
    }

    /// Fills `identity` from the environment when it is not set.
    pub fn resolve_identity(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if self.identity.is_some() {
            return Ok(());
        }
        self.identity = IDENTITY_ENV
            .iter()
            .find_map(|k| get(k).filter(|v| !v.trim().is_empty()));
        if self.identity.is_none() {
            return Err(format!(
                "lease.identity is not set and neither {} is in the environment: set the pod's \
                 name through the downward API, or lease.identity",
                IDENTITY_ENV.join(" nor ")
            ));
        }
        Ok(())
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_duration_s))
    }

    fn renew_deadline(&self) -> Duration {
        Duration::from_secs_f64(self.renew_deadline_s)
    }

    fn retry_period(&self) -> Duration {
        Duration::from_secs_f64(self.retry_period_s)
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(ok_char)
        && alnum(s.chars().next())
        && alnum(s.chars().last())
}

// ---------------------------------------------------------------- the fence

/// Whether this process may make venue calls. Clones share it.
///
/// Holding a Lease, calls are allowed until a deadline that each successful
/// renewal moves on; once it passes, or once [`Fence::close`] was called,
/// the fence is closed for good. Without a Lease it is always open.
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

#[derive(Debug)]
struct FenceInner {
    /// None = no deadline (the file lock alone).
    until: Mutex<Option<Instant>>,
    /// Some(why) once closed.
    closed: watch::Sender<Option<String>>,
    /// When a standby could take over after the deadline passed, for the
    /// refusal's retry hint.
    lease_duration: Duration,
}

impl Fence {
    /// Always open (no Lease).
    pub fn open() -> Fence {
        Fence::with_deadline(None, Duration::ZERO)
    }

    fn with_deadline(until: Option<Instant>, lease_duration: Duration) -> Fence {
        Fence {
            inner: Arc::new(FenceInner {
                until: Mutex::new(until),
                closed: watch::channel(None).0,
                lease_duration,
            }),
        }
    }

    fn until(&self) -> Option<Instant> {
        *self.inner.until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the deadline on (never back); no effect once closed.
    fn extend(&self, until: Instant) {
        let mut u = self.inner.until.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.closed.borrow().is_none() {
            *u = Some(u.map_or(until, |old| old.max(until)));
        }
    }

    /// Closes the fence for good: no venue call from now on.
    pub fn close(&self, why: impl Into<String>) {
        let why = why.into();
        self.inner.closed.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            tracing::error!(reason = %why, "fenced: this gateway makes no more venue calls");
            *c = Some(why);
            true
        });
    }

    /// Why the fence is closed, or None while calls are allowed. A passed
    /// deadline closes it here, so the answer is exact at the moment of the
    /// call even if no timer has fired yet.
    pub fn closed(&self) -> Option<String> {
        if let Some(why) = self.inner.closed.borrow().clone() {
            return Some(why);
        }
        if let Some(until) = self.until()
            && Instant::now() >= until
        {
            self.close(
                "the Lease was not renewed within renew_deadline_s; stopping before it can expire",
            );
            return self.inner.closed.borrow().clone();
        }
        None
    }

    /// Resolves once the fence is closed (its deadline passed or
    /// [`Fence::close`]); never for an open fence without a deadline that
    /// nobody closes.
    pub async fn wait_closed(&self) -> String {
        let mut rx = self.inner.closed.subscribe();
        loop {
            if let Some(why) = self.closed() {
                return why;
            }
            match self.until() {
                Some(until) => {
                    tokio::select! {
                        _ = rx.changed() => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
                None => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    fn refusal(&self, why: &str) -> VenueError {
        let retry = i64::try_from(self.inner.lease_duration.as_millis()).unwrap_or(i64::MAX);
        VenueError::Lockout {
            message: format!("this gateway is fenced and makes no venue calls: {why}"),
            until_ms: wall_ms().saturating_add(retry),
        }
    }

    /// Runs `call` if the fence is open, and cuts it off if the fence closes
    /// while it runs (a call waiting for the rate budget never goes out; one
    /// already sent has an unknown outcome, UNAVAILABLE).
    async fn guard<T>(
        &self,
        call: impl Future<Output = Result<T, VenueError>>,
    ) -> Result<T, VenueError> {
        if let Some(why) = self.closed() {
            return Err(self.refusal(&why));
        }
        tokio::select! {
            biased;
            why = self.wait_closed() => Err(VenueError::Unavailable(format!(
                "venue call cut off by the fence (outcome unknown): {why}"
            ))),
            r = call => r,
        }
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The venue behind a [`Fence`]: every call, public or private, goes through
/// it, so a fenced gateway makes none.
pub struct FencedVenue {
    inner: Arc<dyn Venue>,
    fence: Fence,
}

impl FencedVenue {
    pub fn wrap(inner: Arc<dyn Venue>, fence: Fence) -> Arc<dyn Venue> {
        Arc::new(FencedVenue { inner, fence })
    }
}

#[async_trait]
impl Venue for FencedVenue {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn instruments(&self) -> Result<Vec<Instrument>, VenueError> {
        self.fence.guard(self.inner.instruments()).await
    }
    async fn ticker(&self, symbol: &str) -> Result<Ticker, VenueError> {
        self.fence.guard(self.inner.ticker(symbol)).await
    }
    async fn candles(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        self.fence
            .guard(self.inner.candles(symbol, interval_minutes, since_ms))
            .await
    }
    async fn balances(&self) -> Result<Vec<Balance>, VenueError> {
        self.fence.guard(self.inner.balances()).await
    }
    async fn place_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        self.fence.guard(self.inner.place_order(order)).await
    }
    async fn cancel_order(&self, order: &OrderRef) -> Result<(), VenueError> {
        self.fence.guard(self.inner.cancel_order(order)).await
    }
    async fn open_orders(&self) -> Result<Vec<OrderState>, VenueError> {
        self.fence.guard(self.inner.open_orders()).await
    }
    async fn query_orders(&self, orders: &[OrderRef]) -> Result<Vec<OrderState>, VenueError> {
        self.fence.guard(self.inner.query_orders(orders)).await
    }
    fn max_query_batch(&self) -> usize {
        self.inner.max_query_batch()
    }
    fn budget(&self) -> BudgetSnapshot {
        self.inner.budget()
    }
    fn max_client_order_id_len(&self) -> usize {
        self.inner.max_client_order_id_len()
    }
    fn min_pending_timeout_ms(&self) -> i64 {
        self.inner.min_pending_timeout_ms()
    }
    async fn arm_dead_mans_switch(&self, timeout_s: u32) -> Result<bool, VenueError> {
        self.fence
            .guard(self.inner.arm_dead_mans_switch(timeout_s))
            .await
    }
    async fn funding_rates(&self, symbols: &[String]) -> Result<Vec<FundingRate>, VenueError> {
        self.fence.guard(self.inner.funding_rates(symbols)).await
    }
    async fn positions(&self) -> Result<Vec<Position>, VenueError> {
        self.fence.guard(self.inner.positions()).await
    }
    async fn account_margin(&self) -> Result<AccountMargin, VenueError> {
        self.fence.guard(self.inner.account_margin()).await
    }
    async fn funding_payments(
        &self,
        query: &FundingPaymentQuery,
    ) -> Result<Vec<FundingPayment>, VenueError> {
        self.fence.guard(self.inner.funding_payments(query)).await
    }
    async fn key_info(&self) -> Result<Option<KeyInfo>, VenueError> {
        self.fence.guard(self.inner.key_info()).await
    }
    async fn clock_offset_ms(&self) -> Result<Option<ClockReading>, VenueError> {
        self.fence.guard(self.inner.clock_offset_ms()).await
    }
    fn clock_offset_limit_ms(&self) -> Option<i64> {
        self.inner.clock_offset_limit_ms()
    }
}

// ------------------------------------------------------------ the file lock

/// An exclusive flock on a file, held until dropped (or the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path} is locked by another gateway{holder}: two gateways must not share a state \
         (nor an API key); stop the other one first, or give this one a state_dir of its own"
    )]
    Held { path: String, holder: String },
    #[error("cannot lock {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
}

/// Takes an exclusive lock on `path` (created if missing) without waiting,
/// and writes this process's pid into it.
pub fn lock_file(path: &Path) -> Result<FileLock, LockError> {
    let io = |cause: std::io::Error| LockError::Io {
        path: path.display().to_string(),
        cause,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            return Err(io(std::io::Error::from(e)));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => String::new(),
            pid => format!(" (pid {pid})"),
        };
        return Err(LockError::Held {
            path: path.display().to_string(),
            holder,
        });
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .map_err(io)?;
    Ok(FileLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// The files a gateway with `cfg` locks: `state_dir/gateway.lock`, and
/// `STATE_FILE.lock` beside a paper `state_file`.
pub fn lock_paths(cfg: &GatewayConfig) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dir) = &cfg.state_dir {
        paths.push(dir.join(LOCK_FILE));
    }
    if cfg.venue == crate::config::VenueKind::Paper
        && let Some(f) = &cfg.paper.state_file
    {
        let mut name = f.as_os_str().to_owned();
        name.push(".lock");
        paths.push(PathBuf::from(name));
    }
    paths
}

// ---------------------------------------------------------------- the hold

/// What [`hold`] gives `run`: the fence every venue call passes, the locks,
/// and (with `[lease]`) the renewal task.
#[derive(Debug)]
pub struct Hold {
    fence: Fence,
    lease: Option<Holder>,
    _locks: Vec<FileLock>,
}

#[derive(Debug)]
struct Holder {
    elector: Arc<tokio::sync::Mutex<Elector>>,
    renewer: tokio::task::JoinHandle<()>,
    retry: Duration,
}

impl Hold {
    /// `venue` behind this process's fence.
    pub fn fence_venue(&self, venue: Arc<dyn Venue>) -> Arc<dyn Venue> {
        FencedVenue::wrap(venue, self.fence.clone())
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Resolves with the reason when the Lease is lost (never without one).
    pub fn lost(&self) -> impl Future<Output = String> + Send + 'static {
        let fence = self.fence.clone();
        async move { fence.wait_closed().await }
    }

    /// `shutdown`, or the loss of the Lease, whichever comes first.
    pub fn shutdown_or_lost(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let lost = self.lost();
        async move {
            tokio::select! {
                () = shutdown => {}
                _ = lost => {}
            }
        }
    }

    /// Why the Lease was lost, if it was (a closed fence before [`Hold::release`]).
    pub fn lost_reason(&self) -> Option<String> {
        self.fence.closed()
    }

    /// On a clean stop: no venue call from now on, and the Lease released so a
    /// standby takes over at once. The locks go when `self` is dropped.
    pub async fn release(mut self) {
        self.fence.close("released the Lease (shutting down)");
        if let Some(h) = self.lease.take() {
            h.renewer.abort();
            let _ = h.renewer.await;
            let mut elector = h.elector.lock().await;
            match tokio::time::timeout(h.retry.max(Duration::from_secs(1)), elector.release()).await
            {
                Ok(Ok(())) => tracing::info!(lease = %elector.what(), "released the Lease"),
                Ok(Err(e)) => {
                    tracing::warn!(lease = %elector.what(), error = %e, "could not release the Lease; it expires on its own")
                }
                Err(_) => {
                    tracing::warn!(lease = %elector.what(), "releasing the Lease timed out; it expires on its own")
                }
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(h) = &self.lease {
            h.renewer.abort();
        }
    }
}

/// One active gateway per key: with `[lease]`, waits as a standby until this
/// process holds the Lease, then starts renewing it; then locks the state
/// files. Updates `cfg.listen` / `cfg.http_listen` to the addresses the
/// standby bound (port 0 becomes the port it got).
pub async fn hold(cfg: &mut GatewayConfig) -> anyhow::Result<Hold> {
    let Some(lease_cfg) = cfg.lease.clone() else {
        let locks = lock_paths(cfg)
            .iter()
            .map(|p| lock_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Hold {
            fence: Fence::open(),
            lease: None,
            _locks: locks,
        });
    };
    let mut lease_cfg = lease_cfg;
    lease_cfg
        .resolve_identity(|k| std::env::var(k).ok())
        .map_err(crate::config::ConfigError::Invalid)?;
    lease_cfg
        .validate()
        .map_err(crate::config::ConfigError::Invalid)?;
    let elector = Elector::connect(&lease_cfg).await?;
    let what = elector.what();
    let standby = Standby::start(cfg, &what).await?;
    cfg.listen = standby.grpc_local;
    cfg.http_listen = standby.admin_local;
    let elector = Arc::new(tokio::sync::Mutex::new(elector));
    let fence = {
        let mut e = elector.lock().await;
        let mut last_said = String::new();
        // An API server that does not answer is looked at again, not waited for.
        let patience = lease_cfg.renew_deadline();
        loop {
            let attempt = tokio::time::timeout(patience, e.try_acquire())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", patience.as_millis())));
            match attempt {
                Ok(Attempt::Held { sent }) => {
                    break Fence::with_deadline(
                        Some(sent + lease_cfg.renew_deadline()),
                        lease_cfg.duration(),
                    );
                }
                Ok(Attempt::Waiting(why)) => {
                    if why != last_said {
                        tracing::info!(lease = %what, "gateway standby: {why}");
                        standby.readiness.set_not_ready(format!("standby: {why}"));
                        last_said = why;
                    }
                }
                Err(e) => {
                    let why = format!("cannot read the Lease: {e}");
                    if why != last_said {
                        tracing::warn!(lease = %what, "gateway standby: {why}");
                        standby.readiness.set_not_ready(format!("standby: {why}"));
                        last_said = why;
                    }
                }
            }
            tokio::time::sleep(lease_cfg.retry_period()).await;
        }
    };
    tracing::info!(lease = %what, "holding the Lease: this gateway is the active one for its key");
    // Renewing from now on, while the standby's servers stop.
    let renewer = tokio::spawn(renew(
        elector.clone(),
        fence.clone(),
        lease_cfg.retry_period(),
        lease_cfg.renew_deadline(),
    ));
    standby.stop().await;
    let mut hold = Hold {
        fence: fence.clone(),
        lease: Some(Holder {
            elector,
            renewer,
            retry: lease_cfg.retry_period(),
        }),
        _locks: Vec::new(),
    };
    // The previous holder may still be draining on the same volume: wait for
    // its locks (it exits within its shutdown deadline), renewing meanwhile.
    for path in lock_paths(cfg) {
        let mut said = false;
        let lock = loop {
            match lock_file(&path) {
                Ok(l) => break l,
                Err(LockError::Held { .. }) if fence.closed().is_none() => {
                    if !said {
                        tracing::warn!(path = %path.display(), "holding the Lease; waiting for the previous gateway to let go of its lock");
                        said = true;
                    }
                    tokio::time::sleep(lease_cfg.retry_period()).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        hold._locks.push(lock);
    }
    Ok(hold)
}

/// The holder's renewals: every `retry`, each given until the fence's
/// deadline; the fence closes by itself when the deadline passes, and at
/// once when someone else wrote the Lease.
async fn renew(
    elector: Arc<tokio::sync::Mutex<Elector>>,
    fence: Fence,
    retry: Duration,
    deadline: Duration,
) {
    let mut tick = tokio::time::interval(retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = fence.wait_closed() => return,
            _ = tick.tick() => {}
        }
        let Some(until) = fence.until() else { return };
        let mut e = elector.lock().await;
        let attempt = tokio::select! {
            _ = fence.wait_closed() => return,
            r = tokio::time::timeout_at(until, e.renew()) => r,
        };
        match attempt {
            Ok(Ok(sent)) => fence.extend(sent + deadline),
            Ok(Err(RenewError::Taken(by))) => {
                fence.close(format!("the Lease {} was taken by {by}", e.what()));
                return;
            }
            Ok(Err(RenewError::Api(err))) => {
                tracing::warn!(lease = %e.what(), error = %err, "renewing the Lease failed; retrying until renew_deadline_s");
            }
            Err(_) => {
                tracing::warn!(lease = %e.what(), "renewing the Lease got no answer before renew_deadline_s");
            }
        }
    }
}

// ------------------------------------------------------- talking to the API

enum Attempt {
    /// This process holds the Lease; `sent` is when the winning write was
    /// sent (its renewTime is no earlier).
    Held { sent: Instant },
    /// Someone else holds it; why, in words.
    Waiting(String),
}

#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error("the Lease was taken by {0}")]
    Taken(String),
    #[error("{0}")]
    Api(String),
}

/// The Lease as this process knows it.
struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration_s: i32,
    /// The record last read: its resourceVersion and when it was first seen
    /// (monotonic).
    observed: Option<(String, Instant)>,
    /// The Lease as this process last wrote it, while it holds it.
    mine: Option<Lease>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("lease", &self.what())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn now_micro() -> MicroTime {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {} ({})", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

impl Elector {
    async fn connect(cfg: &LeaseConfig) -> anyhow::Result<Elector> {
        let mut kc = kube::Config::infer().await.context(
            "[lease]: no Kubernetes API client configuration (in a pod: the service account \
             token must be mounted; elsewhere: KUBECONFIG)",
        )?;
        // This module retries on its own schedule, within its deadlines.
        kc.default_retry = false;
        let namespace = cfg
            .namespace
            .clone()
            .unwrap_or_else(|| kc.default_namespace.clone());
        let client =
            kube::Client::try_from(kc).context("[lease]: building the Kubernetes client")?;
        Ok(Elector {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: cfg.name.clone(),
            identity: cfg.identity.clone().unwrap_or_default(),
            duration_s: i32::try_from(cfg.lease_duration_s).unwrap_or(i32::MAX),
            observed: None,
            mine: None,
        })
    }

    /// "namespace/name as identity", for log lines.
    fn what(&self) -> String {
        format!("{}/{} as {}", self.namespace, self.name, self.identity)
    }

    fn spec(&self, transitions: i32, acquire: MicroTime) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_s),
            acquire_time: Some(acquire),
            renew_time: Some(now_micro()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One look at the Lease as a candidate: create it, take it if it is
    /// free or expired, else say who holds it.
    async fn try_acquire(&mut self) -> Result<Attempt, String> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| api_error(&e))?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, now_micro())),
            };
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.mine = Some(written);
                    Ok(Attempt::Held { sent })
                }
                Err(e) if conflict(&e) => Ok(Attempt::Waiting(
                    "another candidate created the Lease first".into(),
                )),
                Err(e) => Err(api_error(&e)),
            };
        };
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let now = Instant::now();
        let seen_at = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => {
                self.observed = Some((version.clone(), now));
                now
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(self.duration_s)).unwrap_or(0),
        );
        if let Some(holder) = &holder {
            let renewed_ms = spec.renew_time.as_ref().map_or(0, |t| t.0.as_millisecond());
            let expires_ms =
                renewed_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let expired_by_clock = wall_ms() >= expires_ms;
            let expired_as_seen = now >= seen_at + duration;
            if !(expired_by_clock && expired_as_seen) {
                let left = duration.saturating_sub(now.saturating_duration_since(seen_at));
                return Ok(Attempt::Waiting(format!(
                    "the Lease is held by {holder} (renewed at {}; this gateway takes over if it \
                     is not renewed for {} s, at the earliest in {} ms)",
                    spec.renew_time
                        .as_ref()
                        .map_or_else(|| "never".to_string(), |t| t.0.to_string()),
                    duration.as_secs(),
                    left.as_millis()
                )));
            }
            tracing::warn!(lease = %self.what(), previous = %holder, "the Lease expired; taking it over");
        }
        let transitions = spec.lease_transitions.unwrap_or(0)
            + i32::from(holder.as_deref() != Some(self.identity.as_str()));
        let mut lease = current;
        lease.spec = Some(self.spec(transitions, now_micro()));
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.mine = Some(written);
                Ok(Attempt::Held { sent })
            }
            Err(e) if conflict(&e) => Ok(Attempt::Waiting(
                "another candidate wrote the Lease first".into(),
            )),
            Err(e) => Err(api_error(&e)),
        }
    }

    /// One renewal of the Lease this process holds: a replace of what it
    /// last wrote, so any write in between (someone took it) is a 409.
    async fn renew(&mut self) -> Result<Instant, RenewError> {
        let Some(mut lease) = self.mine.clone() else {
            return Err(RenewError::Taken(
                "nobody (this gateway does not hold it)".into(),
            ));
        };
        if let Some(spec) = &mut lease.spec {
            spec.renew_time = Some(now_micro());
        }
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.mine = Some(written);
                Ok(sent)
            }
            Err(e) if conflict(&e) => {
                let by = match self.api.get_opt(&self.name).await {
                    Ok(Some(l)) => l
                        .spec
                        .and_then(|s| s.holder_identity)
                        .unwrap_or_else(|| "nobody".into()),
                    Ok(None) => "nobody (it was deleted)".into(),
                    Err(_) => "someone (the write conflicted)".into(),
                };
                self.mine = None;
                Err(RenewError::Taken(by))
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                self.mine = None;
                Err(RenewError::Taken("nobody (it was deleted)".into()))
            }
            Err(e) => Err(RenewError::Api(api_error(&e))),
        }
    }

    /// Gives the Lease up: no holder, so a standby takes it at once.
    async fn release(&mut self) -> Result<(), String> {
        let Some(mut lease) = self.mine.take() else {
            return Ok(());
        };
        if let Some(spec) = &mut lease.spec {
            spec.holder_identity = None;
            spec.renew_time = Some(now_micro());
            spec.lease_duration_seconds = Some(1);
        }
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|e| api_error(&e))
    }
}

// -------------------------------------------------------------- the standby

/// What a standby serves: gRPC health (the gateway's named service
/// NOT_SERVING, "" SERVING) and the admin port's `/healthz` (200) and
/// `/readyz` (503, saying who holds the Lease). Nothing else.
struct Standby {
    grpc: tokio::task::JoinHandle<()>,
    grpc_stop: Option<tokio::sync::oneshot::Sender<()>>,
    admin: herd_proto::admin_http::AdminPort,
    admin_tasks: tokio::task::JoinSet<()>,
    readiness: herd_proto::admin_http::Readiness,
    grpc_local: SocketAddr,
    admin_local: Option<SocketAddr>,
}

impl Standby {
    async fn start(cfg: &GatewayConfig, what: &str) -> anyhow::Result<Standby> {
        use herd_proto::gateway::gateway_server::GatewayServer;
        use tonic::server::NamedService;
        let named = <GatewayServer<crate::service::GatewayService> as NamedService>::NAME;
        let (health, router) = herd_proto::serving::grpc_server(named).await?;
        health
            .set_service_status(named, herd_proto::serving::ServingStatus::NotServing)
            .await;
        let (incoming, grpc_local) = herd_proto::serving::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let (grpc_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let grpc = tokio::spawn(async move {
            // Kept alive while the server runs.
            let _health = health;
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                tracing::warn!(error = %e, "standby gRPC server stopped");
            }
        });
        let readiness = herd_proto::admin_http::Readiness::default();
        readiness.set_not_ready(format!("standby: waiting for the Lease {what}"));
        let mut admin_tasks = tokio::task::JoinSet::new();
        let admin = herd_proto::admin_http::start_with_readiness(
            cfg.http_listen,
            axum::Router::new(),
            "gateway (standby)",
            &mut admin_tasks,
            readiness.clone(),
        )
        .await?;
        let admin_local = admin.local;
        tracing::info!(%grpc_local, lease = %what, "gateway standby: health NOT_SERVING until this process holds the Lease");
        Ok(Standby {
            grpc,
            grpc_stop: Some(grpc_stop),
            admin,
            admin_tasks,
            readiness,
            grpc_local,
            admin_local,
        })
    }

    /// Stops both servers and waits until their listeners are closed, so
    /// the gateway proper can bind the same addresses.
    /// Connections still open (a health watch) are told to go away and
    /// get a moment to; then the servers are dropped.
    async fn stop(mut self) {
        const GRACE: Duration = Duration::from_millis(500);
        self.admin.stop();
        if let Some(stop) = self.grpc_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(GRACE, &mut self.grpc).await.is_err() {
            self.grpc.abort();
            let _ = (&mut self.grpc).await;
        }
        let _ = tokio::time::timeout(GRACE, self.admin_tasks.join_next()).await;
        self.admin_tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(text: &str) -> Result<LeaseConfig, String> {
        let cfg: GatewayConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let l = cfg.lease.ok_or("no [lease]")?;
        l.validate()?;
        Ok(l)
    }

    #[test]
    fn lease_section_defaults_and_validation() {
        let l = lease("[lease]\nname = \"herd-gateway-kraken\"\n").unwrap();
        assert_eq!(
            (l.lease_duration_s, l.renew_deadline_s, l.retry_period_s),
            (15, 10.0, 2.0)
        );
        assert!(l.identity.is_none() && l.namespace.is_none());
        let ok = lease(
            "[lease]\nname = \"gw\"\nnamespace = \"herd-live\"\nidentity = \"pod-a\"\n\
             lease_duration_s = 3\nrenew_deadline_s = 2\nretry_period_s = 0.5\n",
        )
        .unwrap();
        assert_eq!(ok.renew_deadline(), Duration::from_secs(2));
        assert_eq!(ok.retry_period(), Duration::from_millis(500));
        // (text after name, words the error must contain)
        let cases: &[(&str, &[&str])] = &[
            (
                "renew_deadline_s = 15\n",
                &["lease.renew_deadline_s", "lease_duration_s"],
            ),
            (
                "lease_duration_s = 3\nrenew_deadline_s = 2\nretry_period_s = 2\n",
                &["lease.renew_deadline_s", "retry_period_s"],
            ),
            ("lease_duration_s = 0\n", &["lease.lease_duration_s"]),
            ("retry_period_s = 0\n", &["lease.retry_period_s"]),
            ("retry_period_s = -1\n", &["lease.retry_period_s"]),
            ("namespace = \"Herd\"\n", &["lease.namespace"]),
            ("identity = \" \"\n", &["lease.identity"]),
        ];
        for (extra, words) in cases {
            let e = lease(&format!("[lease]\nname = \"gw\"\n{extra}")).unwrap_err();
            for w in *words {
                assert!(e.contains(w), "{extra:?}: {e} should mention {w}");
            }
        }
        let e = lease("[lease]\nname = \"Herd_GW\"\n").unwrap_err();
        assert!(e.contains("lease.name"), "{e}");
        let e = lease("[lease]\nnamespace = \"x\"\n").unwrap_err();
        assert!(e.contains("name"), "{e}");
        let e = lease("[lease]\nname = \"gw\"\nrenew_deadline = 2\n").unwrap_err();
        assert!(e.contains("renew_deadline"), "{e}");
    }

    #[test]
    fn identity_comes_from_the_pod_name() {
        let mut l = lease("[lease]\nname = \"gw\"\n").unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        l.resolve_identity(env(&[("HOSTNAME", "host-1"), ("POD_NAME", "gw-abc")]))
            .unwrap();
        assert_eq!(l.identity.as_deref(), Some("gw-abc"));
        l.identity = None;
        l.resolve_identity(env(&[("HOSTNAME", "host-1")])).unwrap();
        assert_eq!(l.identity.as_deref(), Some("host-1"));
        l.identity = None;
        let e = l.resolve_identity(env(&[])).unwrap_err();
        assert!(
            e.contains("lease.identity") && e.contains("POD_NAME"),
            "{e}"
        );
        l.identity = Some("given".into());
        l.resolve_identity(env(&[("POD_NAME", "gw-abc")])).unwrap();
        assert_eq!(l.identity.as_deref(), Some("given"));
    }

    #[tokio::test(start_paused = true)]
    async fn fence_closes_at_its_deadline_and_cuts_calls_off() {
        let fence = Fence::with_deadline(
            Some(Instant::now() + Duration::from_secs(2)),
            Duration::from_secs(3),
        );
        assert!(fence.closed().is_none());
        fence.extend(Instant::now() + Duration::from_secs(1)); // never back
        assert_eq!(fence.until(), Some(Instant::now() + Duration::from_secs(2)));
        // A call that would take 5 s is cut off when the deadline passes.
        let started = Instant::now();
        let slow = fence.guard(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<(), VenueError>(())
        });
        let r = slow.await;
        assert!(matches!(r, Err(VenueError::Unavailable(_))), "{r:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // And nothing starts afterwards, even after an extension.
        fence.extend(Instant::now() + Duration::from_secs(10));
        let r = fence.guard(async { Ok::<(), VenueError>(()) }).await;
        assert!(matches!(r, Err(VenueError::Lockout { .. })), "{r:?}");
        assert!(
            fence
                .closed()
                .is_some_and(|w| w.contains("renew_deadline_s"))
        );
    }

    #[tokio::test]
    async fn open_fence_passes_calls_until_closed() {
        let fence = Fence::open();
        assert!(fence.guard(async { Ok::<u8, VenueError>(7) }).await.is_ok());
        fence.close("test");
        assert_eq!(fence.wait_closed().await, "test");
        assert!(
            fence
                .guard(async { Ok::<u8, VenueError>(7) })
                .await
                .is_err()
        );
    }

    /// A typo in `[lease]` is refused naming the file, the key, the table
    /// and the closest known key, like everywhere else in the config.
    #[test]
    fn unknown_lease_keys_are_refused() {
        let cases: &[herd_proto::config::UnknownKeyCase<'_>] = &[
            (
                "[lease]\nname = \"gw\"\nrenew_deadlin_s = 2\n",
                "renew_deadlin_s",
                "in [lease]",
                Some("renew_deadline_s"),
            ),
            (
                "[leese]\nname = \"gw\"\n",
                "leese",
                "at the top level",
                Some("lease"),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let failures = herd_proto::config::unknown_key_failures(dir.path(), cases, |p| {
            GatewayConfig::load(Some(p))
        });
        assert!(failures.is_empty(), "{failures:#?}");
        // A bad value: the file and the key.
        let path = dir.path().join("bad-lease.toml");
        std::fs::write(
            &path,
            "[lease]\nname = \"gw\"\nidentity = \"pod-a\"\nrenew_deadline_s = 20\n",
        )
        .unwrap();
        let e = GatewayConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("lease.renew_deadline_s (20)"), "{e}");
    }

    /// The in-cluster client speaks TLS: its rustls configuration is built
    /// on the one crypto provider the workspace compiles (ring); a second or
    /// missing provider would fail here, not in a pod.
    #[tokio::test]
    async fn the_kubernetes_client_builds_with_tls_on_ring() {
        let kc = kube::config::Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
             server: https://kubernetes.default.svc\ncontexts:\n- name: c\n  context:\n    \
             cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    \
             token: not-a-real-token\n",
        )
        .unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        assert_eq!(cfg.default_namespace, "default");
        kube::Client::try_from(cfg).unwrap();
    }

    #[test]
    fn the_state_dir_and_a_paper_state_file_are_locked() {
        let mut cfg = GatewayConfig::default();
        assert!(lock_paths(&cfg).is_empty());
        cfg.state_dir = Some(PathBuf::from("/s"));
        cfg.paper.state_file = Some(PathBuf::from("/p/paper.json"));
        assert_eq!(
            lock_paths(&cfg),
            [
                PathBuf::from("/s/gateway.lock"),
                PathBuf::from("/p/paper.json.lock")
            ]
        );
        cfg.venue = crate::config::VenueKind::Kraken;
        assert_eq!(lock_paths(&cfg), [PathBuf::from("/s/gateway.lock")]);
    }

    #[test]
    fn a_second_lock_on_the_file_is_refused_naming_it_and_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(LOCK_FILE);
        let first = lock_file(&path).unwrap();
        let e = lock_file(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        lock_file(&path).unwrap();
    }
}
