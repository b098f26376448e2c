//! Market data fan-out: ticker and candle requests for the same instrument
//! from many engines are served from one venue call.
//!
//! Each key (ticker of a symbol; candles of a symbol and interval) has its
//! own async lock and a cached answer with the time it was fetched. A caller
//! takes the key's lock, returns the cached answer if it is fresher than the
//! bound, and otherwise fetches and stores it; callers that arrive while a
//! fetch is under way wait on the lock and then find the fresh answer, so
//! concurrent requests are coalesced into one venue call. Candles are cached
//! in full per interval and filtered by `since` per caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use herd_venue::{Candle, Clock, Ticker, Venue, VenueError};
use tokio::sync::Mutex;

type Slot<T> = Arc<Mutex<Option<(i64, T)>>>;
type CandleKey = (String, u32);

/// The cache.
#[derive(Debug)]
pub struct MarketData {
    ttl_ms: i64,
    tickers: std::sync::Mutex<HashMap<String, Slot<Ticker>>>,
    /// The last ticker of each symbol and when it was fetched, read first
    /// without the async lock (every order checked against a price band
    /// reads it; only a stale or missing one goes through the key's lock).
    fresh_tickers: std::sync::Mutex<HashMap<String, (i64, Ticker)>>,
    candles: std::sync::Mutex<HashMap<CandleKey, Slot<Vec<Candle>>>>,
    venue_calls: AtomicU64,
    /// `[record]`: tickers and closed candles are appended there.
    recorder: std::sync::OnceLock<Arc<crate::recorder::Recorder>>,
}

fn slot<K: std::hash::Hash + Eq + Clone, T>(
    map: &std::sync::Mutex<HashMap<K, Slot<T>>>,
    key: &K,
) -> Slot<T> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.clone())
        .or_insert_with(|| Arc::new(Mutex::new(None)))
        .clone()
}

impl MarketData {
    /// Answers stay fresh for `ttl_ms`.
    pub fn new(ttl_ms: i64) -> MarketData {
        MarketData {
            ttl_ms,
            tickers: std::sync::Mutex::new(HashMap::new()),
            fresh_tickers: std::sync::Mutex::new(HashMap::new()),
            candles: std::sync::Mutex::new(HashMap::new()),
            venue_calls: AtomicU64::new(0),
            recorder: std::sync::OnceLock::new(),
        }
    }

    /// The recording, when `[record]` is set.
    pub fn recorder(&self) -> Option<&Arc<crate::recorder::Recorder>> {
        self.recorder.get()
    }

    /// Appends the tickers and candles fetched from now on to a recording.
    pub fn set_recorder(&self, recorder: Arc<crate::recorder::Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Puts a fresh ticker in the cache (the paper venue's price was just
    /// set: the next reader must not see the old one for another TTL).
    pub async fn put_ticker(&self, clock: &dyn Clock, t: Ticker) {
        if let Some(r) = self.recorder.get() {
            r.ticker(clock.now_ms(), &t);
        }
        let s = slot(&self.tickers, &t.symbol);
        let mut cached = s.lock().await;
        let now = clock.now_ms();
        self.remember_ticker(&t.symbol, now, &t);
        *cached = Some((now, t));
    }

    fn remember_ticker(&self, symbol: &str, at_ms: i64, t: &Ticker) {
        self.fresh_tickers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(symbol.to_string(), (at_ms, t.clone()));
    }

    /// Venue calls made so far (for tests and metrics).
    pub fn venue_calls(&self) -> u64 {
        self.venue_calls.load(Ordering::Relaxed)
    }

    pub async fn ticker(
        &self,
        venue: &dyn Venue,
        clock: &dyn Clock,
        symbol: &str,
    ) -> Result<Ticker, VenueError> {
        if let Some((at, t)) = self
            .fresh_tickers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(symbol)
            && clock.now_ms() - at < self.ttl_ms
        {
            return Ok(t.clone());
        }
        let s = slot(&self.tickers, &symbol.to_string());
        let mut cached = s.lock().await;
        let now = clock.now_ms();
        if let Some((at, t)) = cached.as_ref()
            && now - at < self.ttl_ms
        {
            return Ok(t.clone());
        }
        self.venue_calls.fetch_add(1, Ordering::Relaxed);
        let t = venue.ticker(symbol).await?;
        let at = clock.now_ms();
        if let Some(r) = self.recorder.get() {
            r.ticker(at, &t);
        }
        self.remember_ticker(symbol, at, &t);
        *cached = Some((at, t.clone()));
        Ok(t)
    }

    pub async fn candles(
        &self,
        venue: &dyn Venue,
        clock: &dyn Clock,
        symbol: &str,
        interval_minutes: u32,
        since_ms: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        let s = slot(&self.candles, &(symbol.to_string(), interval_minutes));
        let mut cached = s.lock().await;
        let now = clock.now_ms();
        let fresh = matches!(cached.as_ref(), Some((at, _)) if now - at < self.ttl_ms);
        if !fresh {
            self.venue_calls.fetch_add(1, Ordering::Relaxed);
            let all = venue.candles(symbol, interval_minutes, 0).await?;
            if let Some(r) = self.recorder.get() {
                r.candles(symbol, interval_minutes, &all);
            }
            *cached = Some((clock.now_ms(), all));
        }
        Ok(cached
            .as_ref()
            .map(|(_, all)| {
                all.iter()
                    .filter(|c| c.open_time_ms >= since_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_paper::{PaperConfig, PaperVenue};
    use herd_venue::ManualClock;

    #[tokio::test]
    async fn many_engines_one_venue_call_until_stale() {
        let clock = ManualClock::new(1_700_000_000_000);
        let cfg = PaperConfig {
            history_minutes: 30,
            ..PaperConfig::default()
        };
        let venue = Arc::new(PaperVenue::new(&cfg, Arc::new(clock.clone())));
        let md = Arc::new(MarketData::new(500));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (md, venue, clock) = (md.clone(), venue.clone(), clock.clone());
            tasks.push(tokio::spawn(async move {
                md.ticker(venue.as_ref(), &clock, "DOGEUSD").await.unwrap();
                md.candles(venue.as_ref(), &clock, "DOGEUSD", 1, 0)
                    .await
                    .unwrap()
                    .len()
            }));
        }
        let mut lens = Vec::new();
        for t in tasks {
            lens.push(t.await.unwrap());
        }
        assert!(lens.iter().all(|l| *l == lens[0] && *l >= 30));
        assert_eq!(
            md.venue_calls(),
            2,
            "one ticker call and one candle call for 50 engines"
        );
        // `since` filters per caller from the same cached answer.
        let all = md
            .candles(venue.as_ref(), &clock, "DOGEUSD", 1, 0)
            .await
            .unwrap();
        let recent = md
            .candles(
                venue.as_ref(),
                &clock,
                "DOGEUSD",
                1,
                all[all.len() - 5].open_time_ms,
            )
            .await
            .unwrap();
        assert_eq!(recent.len(), 5);
        assert_eq!(md.venue_calls(), 2);
        clock.advance_ms(500);
        md.ticker(venue.as_ref(), &clock, "DOGEUSD").await.unwrap();
        assert_eq!(md.venue_calls(), 3, "stale after the freshness bound");
        assert!(md.ticker(venue.as_ref(), &clock, "NOPE").await.is_err());
    }
}
