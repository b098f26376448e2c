//! The rate budget: Bybit's limits modelled as rolling windows, so calls
//! wait for room instead of being refused.
//!
//! Two scopes are metered. Per IP, 600 requests in any 5 s (beyond that
//! Bybit answers HTTP 403 and bans the IP for about 10 minutes). Per account
//! and endpoint, a rolling 1 s window: order create / cancel / cancel-all at
//! 10/s for linear and 20/s for spot (separate counters per category), the
//! order, execution, position and wallet queries at 50/s, the transaction
//! log at 25/s. Public market endpoints only count against the IP.
//!
//! Bybit's answers correct the model: `X-Bapi-Limit` replaces an endpoint's
//! limit, `X-Bapi-Limit-Status` (remaining) tops the window up with calls we
//! did not make ourselves (another client of the key), retCode 10006 blocks
//! the endpoint until `X-Bapi-Limit-Reset-Timestamp`, and HTTP 403 stops
//! every call until the ban is over, reported in [`BudgetSnapshot`].
//!
//! Cancels may use the whole IP window, new orders 95 % of it and queries
//! 85 %, so a burst of queries never delays a cancel. Time comes from an
//! injected [`Clock`]; [`RateBudget::try_acquire`] is pure, so tests drive it
//! with a `ManualClock`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herd_venue::{BudgetCounter, BudgetSnapshot, Clock};
use rust_decimal::Decimal;

use crate::common::consts::{ACCOUNT_WINDOW_MS, IP_BAN_MS, IP_LIMIT, IP_WINDOW_MS};
use crate::common::enums::Category;
use crate::common::urls;
use crate::http::BybitError;

/// Who goes first when the IP window is nearly full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Cancel,
    Place,
    Query,
}

impl Priority {
    /// Share of the IP window this priority may fill, in percent.
    fn ip_share_percent(self) -> u32 {
        match self {
            Priority::Cancel => 100,
            Priority::Place => 95,
            Priority::Query => 85,
        }
    }
}

/// Every endpoint the adapter calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Time,
    Tickers,
    FundingHistory,
    Instruments,
    Kline,
    OrderCreate,
    OrderCancel,
    OrderCancelAll,
    OrderRealtime,
    OrderHistory,
    ExecutionList,
    PositionList,
    WalletBalance,
    TransactionLog,
    QueryApi,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Time => urls::MARKET_TIME,
            Endpoint::Tickers => urls::MARKET_TICKERS,
            Endpoint::FundingHistory => urls::MARKET_FUNDING_HISTORY,
            Endpoint::Instruments => urls::MARKET_INSTRUMENTS,
            Endpoint::Kline => urls::MARKET_KLINE,
            Endpoint::OrderCreate => urls::ORDER_CREATE,
            Endpoint::OrderCancel => urls::ORDER_CANCEL,
            Endpoint::OrderCancelAll => urls::ORDER_CANCEL_ALL,
            Endpoint::OrderRealtime => urls::ORDER_REALTIME,
            Endpoint::OrderHistory => urls::ORDER_HISTORY,
            Endpoint::ExecutionList => urls::EXECUTION_LIST,
            Endpoint::PositionList => urls::POSITION_LIST,
            Endpoint::WalletBalance => urls::WALLET_BALANCE,
            Endpoint::TransactionLog => urls::TRANSACTION_LOG,
            Endpoint::QueryApi => urls::USER_QUERY_API,
        }
    }

    /// The endpoint of a path, for the simulator and for logs.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        ALL_ENDPOINTS.iter().copied().find(|e| e.path() == path)
    }

    pub fn is_private(self) -> bool {
        !matches!(
            self,
            Endpoint::Time
                | Endpoint::Tickers
                | Endpoint::FundingHistory
                | Endpoint::Instruments
                | Endpoint::Kline
        )
    }

    pub fn priority(self) -> Priority {
        match self {
            Endpoint::OrderCancel | Endpoint::OrderCancelAll => Priority::Cancel,
            Endpoint::OrderCreate => Priority::Place,
            _ => Priority::Query,
        }
    }

    /// Whether spot and linear have separate counters for this endpoint.
    fn per_category(self) -> bool {
        matches!(
            self,
            Endpoint::OrderCreate | Endpoint::OrderCancel | Endpoint::OrderCancelAll
        )
    }

    /// The default per-account limit per rolling second, `None` for public
    /// endpoints (only the IP limit applies).
    pub fn account_limit(self, category: Option<Category>) -> Option<u32> {
        match self {
            Endpoint::OrderCreate | Endpoint::OrderCancel | Endpoint::OrderCancelAll => {
                Some(match category {
                    Some(Category::Spot) => 20,
                    _ => 10,
                })
            }
            Endpoint::OrderRealtime
            | Endpoint::OrderHistory
            | Endpoint::ExecutionList
            | Endpoint::PositionList
            | Endpoint::WalletBalance => Some(50),
            Endpoint::TransactionLog => Some(25),
            // Bybit publishes no per-account limit for it: the IP limit applies.
            Endpoint::QueryApi => None,
            Endpoint::Time
            | Endpoint::Tickers
            | Endpoint::FundingHistory
            | Endpoint::Instruments
            | Endpoint::Kline => None,
        }
    }
}

/// Every endpoint, for lookups.
pub const ALL_ENDPOINTS: [Endpoint; 15] = [
    Endpoint::Time,
    Endpoint::Tickers,
    Endpoint::FundingHistory,
    Endpoint::Instruments,
    Endpoint::Kline,
    Endpoint::OrderCreate,
    Endpoint::OrderCancel,
    Endpoint::OrderCancelAll,
    Endpoint::OrderRealtime,
    Endpoint::OrderHistory,
    Endpoint::ExecutionList,
    Endpoint::PositionList,
    Endpoint::WalletBalance,
    Endpoint::TransactionLog,
    Endpoint::QueryApi,
];

/// A per-account counter: an endpoint, per category where Bybit splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateKey {
    pub endpoint: Endpoint,
    pub category: Option<Category>,
}

impl RateKey {
    pub fn new(endpoint: Endpoint, category: Option<Category>) -> RateKey {
        RateKey {
            endpoint,
            category: if endpoint.per_category() {
                category
            } else {
                None
            },
        }
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.endpoint.path().trim_start_matches("/v5/");
        match self.category {
            Some(c) => write!(f, "{path}:{c}"),
            None => f.write_str(path),
        }
    }
}

/// The rate-limit headers of one answer. `reset_ms` is on Bybit's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_ms: Option<i64>,
}

/// Knobs of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    pub ip_limit: u32,
    pub ip_window_ms: i64,
    pub account_window_ms: i64,
    /// Added to every window: our send time and Bybit's receive time differ
    /// by the network's jitter.
    pub slack_ms: i64,
    /// How long every call stops after HTTP 403.
    pub ban_ms: i64,
    /// How long a 10006 blocks its endpoint when Bybit gives no reset time.
    pub default_block_ms: i64,
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            ip_limit: IP_LIMIT,
            ip_window_ms: IP_WINDOW_MS,
            account_window_ms: ACCOUNT_WINDOW_MS,
            slack_ms: 100,
            ban_ms: IP_BAN_MS,
            default_block_ms: ACCOUNT_WINDOW_MS,
        }
    }
}

/// Why a call may not go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Room comes back in this many ms.
    Wait(i64),
    /// Every call is stopped until this Unix ms (HTTP 403).
    Banned(i64),
}

#[derive(Debug, Clone)]
struct Window {
    limit: u32,
    width_ms: i64,
    stamps: VecDeque<i64>,
}

impl Window {
    fn new(limit: u32, width_ms: i64) -> Window {
        Window {
            limit,
            width_ms,
            stamps: VecDeque::new(),
        }
    }

    fn prune(&mut self, now: i64) {
        while self
            .stamps
            .front()
            .is_some_and(|t| *t + self.width_ms <= now)
        {
            self.stamps.pop_front();
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.stamps.len()).unwrap_or(u32::MAX)
    }

    /// Ms until one more call fits under `cap`, 0 when it fits now.
    fn wait_for(&self, now: i64, cap: u32) -> i64 {
        let n = self.count();
        if n < cap {
            return 0;
        }
        // The call that must leave the window first is number n - cap.
        let idx = usize::try_from(n - cap).unwrap_or(0);
        self.stamps
            .get(idx)
            .map_or(1, |t| (*t + self.width_ms - now).max(1))
    }
}

#[derive(Debug, Default)]
struct Inner {
    ip: Option<Window>,
    accounts: BTreeMap<RateKey, Window>,
    blocked_until: BTreeMap<RateKey, i64>,
    banned_until: Option<i64>,
    waiting: BTreeMap<Priority, u32>,
}

/// Bybit's limits for one API key and the IP it calls from.
pub struct RateBudget {
    cfg: BudgetConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBudget")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RateBudget {
    pub fn new(cfg: BudgetConfig, clock: Arc<dyn Clock>) -> RateBudget {
        RateBudget {
            cfg,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent, so a poisoned lock is safe
        // to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Takes room for one call of `endpoint` now, or says how long to wait.
    pub fn try_acquire(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
    ) -> Result<(), Denied> {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(until) = inner.banned_until {
            if now < until {
                return Err(Denied::Banned(until));
            }
            inner.banned_until = None;
        }
        let key = RateKey::new(endpoint, category);
        if let Some(until) = inner.blocked_until.get(&key).copied() {
            if now < until {
                return Err(Denied::Wait(until - now));
            }
            inner.blocked_until.remove(&key);
        }
        let ip_width = self.cfg.ip_window_ms + self.cfg.slack_ms;
        let ip_limit = self.cfg.ip_limit;
        let ip = inner
            .ip
            .get_or_insert_with(|| Window::new(ip_limit, ip_width));
        ip.prune(now);
        let ip_cap = (ip.limit * endpoint.priority().ip_share_percent() / 100).max(1);
        let ip_wait = ip.wait_for(now, ip_cap);
        let account_wait = match endpoint.account_limit(category) {
            Some(limit) => {
                let width = self.cfg.account_window_ms + self.cfg.slack_ms;
                let w = inner
                    .accounts
                    .entry(key)
                    .or_insert_with(|| Window::new(limit, width));
                w.prune(now);
                w.wait_for(now, w.limit.max(1))
            }
            None => 0,
        };
        let wait = ip_wait.max(account_wait);
        if wait > 0 {
            return Err(Denied::Wait(wait));
        }
        if let Some(ip) = inner.ip.as_mut() {
            ip.stamps.push_back(now);
        }
        if endpoint.account_limit(category).is_some()
            && let Some(w) = inner.accounts.get_mut(&key)
        {
            w.stamps.push_back(now);
        }
        Ok(())
    }

    /// Waits until one call of `endpoint` fits, then takes its room. Fails
    /// at once while the IP is banned.
    pub async fn acquire(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
    ) -> Result<(), BybitError> {
        let priority = endpoint.priority();
        let mut counted = false;
        let out = loop {
            match self.try_acquire(endpoint, category) {
                Ok(()) => break Ok(()),
                Err(Denied::Banned(until_ms)) => break Err(BybitError::IpBanned { until_ms }),
                Err(Denied::Wait(ms)) => {
                    if !counted {
                        *self.lock().waiting.entry(priority).or_insert(0) += 1;
                        counted = true;
                    }
                    let ms = u64::try_from(ms.clamp(1, 1_000)).unwrap_or(1);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        };
        if counted && let Some(n) = self.lock().waiting.get_mut(&priority) {
            *n = n.saturating_sub(1);
        }
        out
    }

    /// Feeds the rate-limit headers of an answer back into the model.
    /// `server_offset_ms` is Bybit's clock minus ours.
    pub fn observe(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        status: &LimitStatus,
        server_offset_ms: i64,
    ) {
        if endpoint.account_limit(category).is_none() {
            return;
        }
        let now = self.now();
        let key = RateKey::new(endpoint, category);
        let width = self.cfg.account_window_ms + self.cfg.slack_ms;
        let mut inner = self.lock();
        let default_limit = endpoint.account_limit(category).unwrap_or(1);
        let w = inner
            .accounts
            .entry(key)
            .or_insert_with(|| Window::new(default_limit, width));
        if let Some(limit) = status.limit.filter(|l| *l > 0) {
            w.limit = limit;
        }
        if let Some(remaining) = status.remaining {
            w.prune(now);
            let used = w.limit.saturating_sub(remaining);
            while w.count() < used {
                // Calls we did not make (another client of the key): count
                // them as made now.
                w.stamps.push_back(now);
            }
            if remaining == 0
                && let Some(reset) = status.reset_ms
            {
                let local = reset - server_offset_ms;
                if local > now {
                    inner.blocked_until.insert(key, local);
                }
            }
        }
    }

    /// Records a 10006 answer: the endpoint waits until Bybit's reset time
    /// (on our clock), or a default block. Returns when it may go again.
    pub fn on_rate_limited(
        &self,
        endpoint: Endpoint,
        category: Option<Category>,
        reset_local_ms: Option<i64>,
    ) -> i64 {
        let now = self.now();
        let until = reset_local_ms
            .filter(|r| *r > now)
            .unwrap_or(now + self.cfg.default_block_ms);
        let key = RateKey::new(endpoint, category);
        let mut inner = self.lock();
        let entry = inner.blocked_until.entry(key).or_insert(until);
        *entry = (*entry).max(until);
        *entry
    }

    /// Records an HTTP 403: every call stops for the ban. Returns its end.
    pub fn on_forbidden(&self) -> i64 {
        let until = self.now() + self.cfg.ban_ms;
        let mut inner = self.lock();
        inner.banned_until = Some(inner.banned_until.map_or(until, |u| u.max(until)));
        until
    }

    /// When the IP ban ends, if one is on.
    pub fn banned_until(&self) -> Option<i64> {
        let now = self.now();
        self.lock().banned_until.filter(|u| *u > now)
    }

    /// Ms until `endpoint` may be called again (0 = now).
    pub fn retry_after_ms(&self, endpoint: Endpoint, category: Option<Category>) -> i64 {
        let now = self.now();
        let key = RateKey::new(endpoint, category);
        let inner = self.lock();
        let blocked = inner
            .blocked_until
            .get(&key)
            .map_or(0, |u| (*u - now).max(0));
        let banned = inner.banned_until.map_or(0, |u| (u - now).max(0));
        blocked.max(banned)
    }

    /// The model as the gateway reports it.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = self.now();
        let mut inner = self.lock();
        let mut counters = Vec::new();
        let ip_window_s = Decimal::from(self.cfg.ip_window_ms.max(1)) / Decimal::from(1000);
        if let Some(ip) = inner.ip.as_mut() {
            ip.prune(now);
            counters.push(BudgetCounter {
                name: "ip".into(),
                level: Decimal::from(ip.count()),
                limit: Decimal::from(ip.limit),
                decay_per_second: (Decimal::from(ip.limit) / ip_window_s).round_dp(2),
            });
        }
        let account_window_s =
            Decimal::from(self.cfg.account_window_ms.max(1)) / Decimal::from(1000);
        for (key, w) in inner.accounts.iter_mut() {
            w.prune(now);
            counters.push(BudgetCounter {
                name: key.to_string(),
                level: Decimal::from(w.count()),
                limit: Decimal::from(w.limit),
                decay_per_second: (Decimal::from(w.limit) / account_window_s).round_dp(2),
            });
        }
        let waiting = |p| inner.waiting.get(&p).copied().unwrap_or(0);
        BudgetSnapshot {
            counters,
            waiting_cancels: waiting(Priority::Cancel),
            waiting_places: waiting(Priority::Place),
            waiting_queries: waiting(Priority::Query),
            locked_until_ms: inner.banned_until.filter(|u| *u > now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_venue::ManualClock;

    const T0: i64 = 1_700_000_000_000;

    fn budget() -> (RateBudget, ManualClock) {
        let clock = ManualClock::new(T0);
        let cfg = BudgetConfig {
            slack_ms: 0,
            ..BudgetConfig::default()
        };
        (RateBudget::new(cfg, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn per_endpoint_limits_table() {
        let cases = [
            (Endpoint::OrderCreate, Some(Category::Linear), 10),
            (Endpoint::OrderCreate, Some(Category::Spot), 20),
            (Endpoint::OrderCancel, Some(Category::Linear), 10),
            (Endpoint::OrderCancelAll, Some(Category::Spot), 20),
            (Endpoint::OrderRealtime, Some(Category::Linear), 50),
            (Endpoint::PositionList, Some(Category::Linear), 50),
            (Endpoint::WalletBalance, None, 50),
            (Endpoint::TransactionLog, None, 25),
        ];
        for (endpoint, category, limit) in cases {
            let (b, clock) = budget();
            for i in 0..limit {
                assert_eq!(
                    b.try_acquire(endpoint, category),
                    Ok(()),
                    "{endpoint:?} call {i}"
                );
            }
            assert_eq!(
                b.try_acquire(endpoint, category),
                Err(Denied::Wait(1000)),
                "{endpoint:?} over its limit"
            );
            clock.advance_ms(999);
            assert_eq!(b.try_acquire(endpoint, category), Err(Denied::Wait(1)));
            clock.advance_ms(1);
            assert_eq!(
                b.try_acquire(endpoint, category),
                Ok(()),
                "{endpoint:?} rolled"
            );
        }
    }

    #[test]
    fn categories_have_separate_order_counters() {
        let (b, _) = budget();
        for _ in 0..10 {
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Linear))
                .unwrap();
        }
        assert!(
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Linear))
                .is_err()
        );
        assert_eq!(
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Spot)),
            Ok(())
        );
        // Queries are shared across categories.
        for _ in 0..50 {
            b.try_acquire(Endpoint::OrderRealtime, Some(Category::Spot))
                .unwrap();
        }
        assert!(
            b.try_acquire(Endpoint::OrderRealtime, Some(Category::Linear))
                .is_err()
        );
    }

    #[test]
    fn ip_window_reserves_room_for_cancels() {
        let (b, clock) = budget();
        // Public calls only meet the IP limit: queries stop at 85 %.
        let mut n = 0;
        while b.try_acquire(Endpoint::Tickers, None).is_ok() {
            n += 1;
        }
        assert_eq!(n, 510);
        assert!(
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Linear))
                .is_ok()
        );
        assert!(
            b.try_acquire(Endpoint::OrderCancel, Some(Category::Linear))
                .is_ok()
        );
        clock.advance_ms(5_000);
        assert!(b.try_acquire(Endpoint::Tickers, None).is_ok());
    }

    #[test]
    fn headers_correct_the_model() {
        let (b, clock) = budget();
        let ep = Endpoint::OrderRealtime;
        b.try_acquire(ep, None).unwrap();
        // Someone else used 40 of 50: only 10 left this second.
        b.observe(
            ep,
            None,
            &LimitStatus {
                limit: Some(50),
                remaining: Some(10),
                reset_ms: Some(T0 + 1000),
            },
            0,
        );
        let mut ok = 0;
        while b.try_acquire(ep, None).is_ok() {
            ok += 1;
        }
        assert_eq!(ok, 10);
        // A higher tier raises the limit.
        clock.advance_ms(1000);
        b.observe(
            ep,
            None,
            &LimitStatus {
                limit: Some(100),
                remaining: Some(100),
                reset_ms: None,
            },
            0,
        );
        let mut ok = 0;
        while b.try_acquire(ep, None).is_ok() {
            ok += 1;
        }
        assert_eq!(ok, 100);
        // Remaining 0 blocks until the reset, on our clock (server 2 s ahead).
        clock.advance_ms(5000);
        b.observe(
            ep,
            None,
            &LimitStatus {
                limit: Some(100),
                remaining: Some(0),
                reset_ms: Some(clock.now_ms() + 2000 + 300),
            },
            2000,
        );
        assert_eq!(b.try_acquire(ep, None), Err(Denied::Wait(300)));
    }

    #[test]
    fn rate_limited_blocks_until_reset_and_forbidden_bans_everything() {
        let (b, clock) = budget();
        let until = b.on_rate_limited(Endpoint::OrderCreate, Some(Category::Linear), None);
        assert_eq!(until, T0 + 1000);
        assert_eq!(
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Linear)),
            Err(Denied::Wait(1000))
        );
        assert_eq!(
            b.retry_after_ms(Endpoint::OrderCreate, Some(Category::Linear)),
            1000
        );
        assert!(
            b.try_acquire(Endpoint::OrderCreate, Some(Category::Spot))
                .is_ok()
        );
        let until = b.on_forbidden();
        assert_eq!(until, T0 + 600_000);
        assert_eq!(
            b.try_acquire(Endpoint::Tickers, None),
            Err(Denied::Banned(until))
        );
        assert_eq!(b.snapshot().locked_until_ms, Some(until));
        clock.advance_ms(600_000);
        assert!(b.try_acquire(Endpoint::Tickers, None).is_ok());
        assert_eq!(b.snapshot().locked_until_ms, None);
    }

    #[test]
    fn snapshot_names_counters() {
        let (b, _) = budget();
        b.try_acquire(Endpoint::OrderCreate, Some(Category::Linear))
            .unwrap();
        let s = b.snapshot();
        let names: Vec<&str> = s.counters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ip", "order/create:linear"]);
        assert_eq!(s.counters[1].level, Decimal::ONE);
        assert_eq!(s.counters[1].limit, Decimal::from(10));
    }

    #[test]
    fn endpoint_paths_round_trip() {
        for e in ALL_ENDPOINTS {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
        }
    }
}
