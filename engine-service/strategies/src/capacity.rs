//! Capacity health: how many more orders the pair can take before the
//! venue's per-pair open-order limit bites, as one shared definition.
//!
//! The venue allows a fixed number of open orders per pair; Herd only ever
//! plans against a safe cap of 75 % of it (the original bot used different
//! caps in different places; here [`safe_cap`] is the only one). Headroom is
//! the safe cap minus the open orders on the pair, counted by the venue when
//! the gateway knows it, else by the caller's internal count. The band tells
//! strategies whether to stop or slow new entries (each gates on it as its
//! spec says), and [`CapacityHealth::entries_allowed`] caps new entries per
//! loop. Everything here is pure.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::strategy::MarketView;

/// Share of the venue's per-pair limit Herd plans against: 75 %.
pub const SAFE_CAP_PERCENT: u32 = 75;
/// Headroom below this stops new entries.
pub const STOP_HEADROOM: i64 = 10;
/// Headroom below this is the caution band.
pub const CAUTION_HEADROOM: i64 = 20;
/// A partially filled order cancelled within this window stops new entries.
pub const PARTIAL_CANCEL_WINDOW_MS: i64 = 86_400_000;
/// New entries per loop in the normal case.
pub const MAX_ENTRIES_PER_LOOP: u32 = 2;
/// At or below this headroom only one new entry per loop.
pub const LOW_HEADROOM: i64 = 5;

/// The safe cap for a venue limit: `limit * 0.75`, rounded down.
pub fn safe_cap(limit: u32) -> u32 {
    let cap = u64::from(limit) * u64::from(SAFE_CAP_PERCENT) / 100;
    u32::try_from(cap).unwrap_or(u32::MAX)
}

/// The capacity band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    Normal,
    Caution,
    Stop,
}

/// Where the open-order count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CountSource {
    /// The venue's count for the whole key (via the gateway).
    Venue,
    /// The caller's own count (the venue's was missing).
    Internal,
}

/// Capacity health of one pair at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityHealth {
    pub limit: u32,
    pub safe_cap: u32,
    pub open_orders: u32,
    pub source: CountSource,
    /// Safe cap minus open orders; negative when over the safe cap.
    pub headroom: i64,
    pub band: Band,
    /// Why the band is what it is.
    pub reason: String,
    /// New entries allowed this loop by headroom alone: 2, 1 at or below
    /// [`LOW_HEADROOM`], 0 at none. Strategies gate on the band themselves.
    pub entries_allowed: u32,
}

/// Assesses capacity from its inputs.
///
/// `venue_open` is the venue's count (preferred), `internal_open` the
/// caller's own; `last_partial_cancel_ms` the last time a partially filled
/// order was cancelled.
pub fn assess(
    limit: u32,
    venue_open: Option<u32>,
    internal_open: u32,
    last_partial_cancel_ms: Option<i64>,
    now_ms: i64,
) -> CapacityHealth {
    let cap = safe_cap(limit);
    let (open_orders, source) = match venue_open {
        Some(n) => (n, CountSource::Venue),
        None => (internal_open, CountSource::Internal),
    };
    let headroom = i64::from(cap) - i64::from(open_orders);
    let recent_partial_cancel =
        last_partial_cancel_ms.is_some_and(|t| now_ms - t < PARTIAL_CANCEL_WINDOW_MS);
    let (band, reason) = if headroom < STOP_HEADROOM {
        (
            Band::Stop,
            format!("headroom {headroom} < {STOP_HEADROOM} (safe cap {cap})"),
        )
    } else if recent_partial_cancel {
        (
            Band::Stop,
            "a partially filled order was cancelled in the last 24 h".to_string(),
        )
    } else if headroom < CAUTION_HEADROOM {
        (
            Band::Caution,
            format!("headroom {headroom} < {CAUTION_HEADROOM} (safe cap {cap})"),
        )
    } else {
        (Band::Normal, String::new())
    };
    let entries_allowed = if headroom <= 0 {
        0
    } else if headroom <= LOW_HEADROOM {
        1
    } else {
        MAX_ENTRIES_PER_LOOP
    };
    CapacityHealth {
        limit,
        safe_cap: cap,
        open_orders,
        source,
        headroom,
        band,
        reason,
        entries_allowed,
    }
}

/// Capacity from what the engine knows at a tick; `None` while the
/// instrument (and with it the venue's limit) is unknown.
pub fn from_market(market: &MarketView, internal_open: u32, now_ms: i64) -> Option<CapacityHealth> {
    let inst = market.instrument.as_ref()?;
    Some(assess(
        inst.max_open_orders,
        market.open_orders_on_pair,
        internal_open,
        market.last_partial_cancel_ms,
        now_ms,
    ))
}

/// Sets `kept` to [`from_market`]'s reading, leaving it as it is when it is
/// already that reading: read with the same limit, the same count from the
/// same source, and no partial cancel in the window then or now (a band
/// other than Stop says there was none; the reading is then a function of
/// those three alone). A tick reads capacity again at every call, and the
/// inputs rarely move between two.
pub fn refresh(
    kept: &mut Option<CapacityHealth>,
    market: &MarketView,
    internal_open: u32,
    now_ms: i64,
) {
    if let (Some(c), Some(inst)) = (kept.as_ref(), market.instrument.as_ref()) {
        let (open_orders, source) = match market.open_orders_on_pair {
            Some(n) => (n, CountSource::Venue),
            None => (internal_open, CountSource::Internal),
        };
        let recent_partial_cancel = market
            .last_partial_cancel_ms
            .is_some_and(|t| now_ms - t < PARTIAL_CANCEL_WINDOW_MS);
        if c.band != Band::Stop
            && !recent_partial_cancel
            && c.limit == inst.max_open_orders
            && c.open_orders == open_orders
            && c.source == source
        {
            return;
        }
    }
    *kept = from_market(market, internal_open, now_ms);
}

/// The safe cap as a decimal share, for display.
pub fn safe_cap_fraction() -> Decimal {
    Decimal::new(i64::from(SAFE_CAP_PERCENT), 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk of the inputs (limits, counts from either source, partial
    /// cancels in and out of the window, the window's end passing): the
    /// kept reading, refreshed at every step, is the fresh one.
    #[test]
    fn a_refreshed_reading_is_the_fresh_one() {
        use crate::strategy::MarketView;
        use crate::testing::doge_usd as instrument;
        let mut view = MarketView::prices("DOGEUSD", Decimal::ONE, Decimal::ONE, Decimal::ONE);
        view.instrument = Some(instrument(225));
        let (mut kept, mut seed, mut now) = (None, 17_u64, 0_i64);
        let (mut reused, mut read) = (0, 0);
        for _ in 0..20_000 {
            seed = crate::testing::lcg(seed);
            let r = seed >> 33;
            now += (r % 7) as i64 * 3_600_000;
            match r % 23 {
                0 => view.instrument = Some(instrument([225, 80, 10, 0][(r / 23 % 4) as usize])),
                1 => view.instrument = None,
                2 => view.last_partial_cancel_ms = Some(now - (r / 23 % 3) as i64 * 20 * 3_600_000),
                3 => view.open_orders_on_pair = None,
                4..=9 => view.open_orders_on_pair = Some((r / 23 % 200) as u32),
                _ => {}
            }
            let internal = (r / 5 % 180) as u32;
            let before = kept.clone();
            refresh(&mut kept, &view, internal, now);
            assert_eq!(kept, from_market(&view, internal, now), "at {now}");
            if before.is_some() && before == kept {
                reused += 1;
            }
            read += 1;
        }
        assert!(
            reused > 1_000 && reused < read,
            "{reused} of {read} readings kept"
        );
    }

    #[test]
    fn safe_cap_is_three_quarters_rounded_down() {
        for (limit, cap) in [(225, 168), (100, 75), (80, 60), (1, 0), (0, 0)] {
            assert_eq!(safe_cap(limit), cap, "limit {limit}");
        }
        assert_eq!(safe_cap_fraction().to_string(), "0.75");
    }

    #[test]
    fn bands_and_entries_table() {
        const DAY: i64 = PARTIAL_CANCEL_WINDOW_MS;
        let now = 10 * DAY;
        use Band::{Caution, Normal, Stop};
        use CountSource::{Internal, Venue};
        // (limit, venue, internal, last partial cancel, headroom, band, source, entries)
        type Case = (
            u32,
            Option<u32>,
            u32,
            Option<i64>,
            i64,
            Band,
            CountSource,
            u32,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (225, Some(0), 99, None, 168, Normal, Venue, 2),
            (225, None, 8, None, 160, Normal, Internal, 2),
            (225, Some(148), 0, None, 20, Normal, Venue, 2),
            (225, Some(149), 0, None, 19, Caution, Venue, 2),
            (225, Some(158), 0, None, 10, Caution, Venue, 2),
            (225, Some(159), 0, None, 9, Stop, Venue, 2),
            (225, Some(162), 0, None, 6, Stop, Venue, 2),
            (225, Some(163), 0, None, 5, Stop, Venue, 1),
            (225, Some(167), 0, None, 1, Stop, Venue, 1),
            (225, Some(168), 0, None, 0, Stop, Venue, 0),
            (225, Some(200), 0, None, -32, Stop, Venue, 0),
            // A partial fill cancelled 23 h ago stops; 25 h ago it no longer does.
            (225, Some(0), 0, Some(now - DAY + 3_600_000), 168, Stop, Venue, 2),
            (225, Some(0), 0, Some(now - DAY - 3_600_000), 168, Normal, Venue, 2),
        ];
        for (limit, venue, internal, partial, headroom, band, source, entries) in cases {
            let h = assess(limit, venue, internal, partial, now);
            assert_eq!(h.headroom, headroom, "{h:?}");
            assert_eq!(h.band, band, "{h:?}");
            assert_eq!(h.source, source, "{h:?}");
            assert_eq!(h.entries_allowed, entries, "{h:?}");
            assert_eq!(h.band == Band::Normal, h.reason.is_empty(), "{h:?}");
        }
    }
}
