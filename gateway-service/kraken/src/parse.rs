//! Kraken's models turned into herd's venue-neutral types.
//!
//! Naming: an instrument's `symbol` is its base and quote in common spelling
//! (`DOGEUSD`, `BTCUSD`, `ETHUSD`), built from AssetPairs' base and quote
//! after dropping Kraken's legacy X/Z prefixes and renaming XBT to BTC and XDG
//! to DOGE. For most pairs that is exactly Kraken's altname; for the two
//! renamed assets it is what people call them, while the wire keeps the
//! altname (`XDGUSD`). [`PairDirectory`] resolves any of symbol, altname,
//! pair key or wsname, so callers may use whichever they have.

use std::collections::{BTreeMap, HashMap};

use herd_venue::{
    Balance, Candle, Foreign, Instrument, InstrumentKind, OrderState, OrderStatus, OrderType, Side,
    Ticker, VenueError,
};
use rust_decimal::Decimal;

use crate::common::enums::{KrakenOrderStatus, KrakenOrderType, KrakenSide};
use crate::http::models::{AssetPair, BalanceExEntry, OhlcResult, OrderInfo, TickerInfo};

/// Kraken's legacy four-letter asset codes whose first letter is a class
/// prefix (X crypto, Z fiat).
const LEGACY_CODES: &[&str] = &[
    "XXBT", "XETH", "XLTC", "XXRP", "XXLM", "XXDG", "XZEC", "XXMR", "XETC", "XMLN", "XREP", "ZUSD",
    "ZEUR", "ZGBP", "ZCAD", "ZJPY", "ZAUD",
];

/// An asset code in common spelling: `XXBT` -> `BTC`, `ZUSD` -> `USD`,
/// `XXDG` -> `DOGE`, `XBT.M` -> `BTC.M`; anything else unchanged.
pub fn normalize_asset(code: &str) -> String {
    let (base, suffix) = match code.split_once('.') {
        Some((b, s)) => (b, Some(s)),
        None => (code, None),
    };
    let base = if LEGACY_CODES.contains(&base) {
        &base[1..]
    } else {
        base
    };
    let base = match base {
        "XBT" => "BTC",
        "XDG" => "DOGE",
        other => other,
    };
    match suffix {
        Some(s) => format!("{base}.{s}"),
        None => base.to_owned(),
    }
}

fn parse_err(what: impl std::fmt::Display) -> VenueError {
    VenueError::Parse(what.to_string())
}

/// One pair as the venue knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PairInfo {
    /// AssetPairs key (`XDGUSD`, `XXBTZUSD`).
    pub key: String,
    /// Kraken's altname, what the wire uses (`XDGUSD`, `XBTUSD`).
    pub altname: String,
    pub instrument: Instrument,
}

/// Every tradable pair, findable by any of its names.
#[derive(Debug, Clone, Default)]
pub struct PairDirectory {
    pairs: BTreeMap<String, PairInfo>,
    aliases: HashMap<String, String>,
}

impl PairDirectory {
    /// Builds the directory from AssetPairs. Dark-pool (`.d`) and delisted
    /// pairs are left out; a pair that does not parse is skipped with a warning.
    pub fn from_asset_pairs(
        pairs: &BTreeMap<String, AssetPair>,
        max_open_orders: u32,
    ) -> PairDirectory {
        let mut dir = PairDirectory::default();
        for (key, pair) in pairs {
            if pair.altname.ends_with(".d") || pair.status.as_deref() == Some("delisted") {
                continue;
            }
            let instrument = instrument_from_pair(pair, max_open_orders);
            let symbol = instrument.symbol.clone();
            let mut names = vec![symbol.clone(), pair.altname.clone(), key.clone()];
            if let Some(ws) = &pair.wsname {
                names.push(ws.replace('/', ""));
                names.push(ws.clone());
            }
            for n in names {
                dir.aliases
                    .entry(n.to_ascii_uppercase())
                    .or_insert(symbol.clone());
            }
            dir.pairs.insert(
                symbol,
                PairInfo {
                    key: key.clone(),
                    altname: pair.altname.clone(),
                    instrument,
                },
            );
        }
        dir
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pair called `name` (symbol, altname, key or wsname; any case).
    pub fn get(&self, name: &str) -> Option<&PairInfo> {
        let symbol = self.aliases.get(&name.to_ascii_uppercase())?;
        self.pairs.get(symbol)
    }

    /// Every instrument, by symbol.
    pub fn instruments(&self) -> Vec<Instrument> {
        self.pairs.values().map(|p| p.instrument.clone()).collect()
    }
}

/// The first step of a fee schedule, as a fraction (0.25 % -> 0.0025).
fn first_fee(tiers: &[crate::http::models::FeeTier]) -> Decimal {
    tiers
        .first()
        .map(|t| t.percent / Decimal::ONE_HUNDRED)
        .unwrap_or_default()
}

/// An [`Instrument`] from one AssetPairs entry.
pub fn instrument_from_pair(pair: &AssetPair, max_open_orders: u32) -> Instrument {
    let base = normalize_asset(&pair.base);
    let quote = normalize_asset(&pair.quote);
    let tick_size = pair
        .tick_size
        .filter(|t| *t > Decimal::ZERO)
        .unwrap_or_else(|| Decimal::new(1, pair.pair_decimals.min(28)));
    Instrument {
        symbol: format!("{base}{quote}"),
        base,
        quote,
        kind: InstrumentKind::Spot,
        tick_size: tick_size.normalize(),
        price_decimals: pair.pair_decimals,
        lot_decimals: pair.lot_decimals,
        min_volume: pair.ordermin.unwrap_or_default(),
        min_cost: pair.costmin.unwrap_or_default(),
        maker_fee: first_fee(&pair.fees_maker),
        taker_fee: first_fee(&pair.fees),
        max_open_orders,
    }
}

/// A [`Ticker`] from Ticker's entry: bid `b[0]`, ask `a[0]`, last `c[0]`, volume
/// over the last 24 hours `v[1]`.
pub fn ticker_from(symbol: &str, t: &TickerInfo, now_ms: i64) -> Result<Ticker, VenueError> {
    let at = |v: &[Decimal], i: usize, name: &str| {
        v.get(i)
            .copied()
            .ok_or_else(|| parse_err(format!("ticker {symbol}: field {name}[{i}] missing")))
    };
    Ok(Ticker {
        symbol: symbol.to_owned(),
        bid: at(&t.b, 0, "b")?,
        ask: at(&t.a, 0, "a")?,
        last: at(&t.c, 0, "c")?,
        volume_24h: at(&t.v, 1, "v")?,
        time_ms: now_ms,
    })
}

/// Candles from OHLC, oldest first, opening at or after `since_ms`.
///
/// Kraken's last row is the candle still forming; it is **dropped**, so every
/// candle returned is closed and will not change.
pub fn candles_from(result: &OhlcResult, since_ms: i64) -> Result<Vec<Candle>, VenueError> {
    let rows = match result.rows.values().next() {
        Some(rows) if result.rows.len() == 1 => rows,
        _ => {
            return Err(parse_err(format!(
                "OHLC: expected one pair in the result, got {}",
                result.rows.len()
            )));
        }
    };
    let closed = rows.len().saturating_sub(1);
    Ok(rows[..closed]
        .iter()
        .map(|r| Candle {
            open_time_ms: r.0.saturating_mul(1000),
            open: r.1,
            high: r.2,
            low: r.3,
            close: r.4,
            volume: r.6,
        })
        .filter(|c| c.open_time_ms >= since_ms)
        .collect())
}

/// Balances from BalanceEx: `free = balance - hold_trade`.
pub fn balances_from_ex(entries: &BTreeMap<String, BalanceExEntry>) -> Vec<Balance> {
    entries
        .iter()
        .map(|(asset, e)| Balance {
            asset: normalize_asset(asset),
            total: e.balance,
            free: e.balance - e.hold_trade.unwrap_or_default(),
        })
        .collect()
}

/// herd's status for Kraken's. `pending` (accepted, not yet booked) is open;
/// `closed` is filled; a cancel whose reason is Kraken's post-only check
/// (the order would have taken) is a rejection.
pub fn order_status(status: KrakenOrderStatus, reason: Option<&str>) -> OrderStatus {
    match status {
        KrakenOrderStatus::Pending | KrakenOrderStatus::Open => OrderStatus::Open,
        KrakenOrderStatus::Closed => OrderStatus::Filled,
        KrakenOrderStatus::Canceled
            if reason.is_some_and(|r| r.to_ascii_lowercase().contains("post only")) =>
        {
            OrderStatus::Rejected
        }
        KrakenOrderStatus::Canceled => OrderStatus::Canceled,
        KrakenOrderStatus::Expired => OrderStatus::Expired,
    }
}

/// Kraken order types that wait for a trigger: their `descr.price` is the
/// trigger (an offset for trailing ones) and `price2` the limit, if any.
const TRIGGERED_TYPES: &[&str] = &["stop-loss", "take-profit", "trailing-stop"];

/// Why Herd cannot model an order, as its [`Foreign`] record, or `None` for
/// the plain limit and market orders Herd places itself (sized in base,
/// priced absolutely).
fn foreign_of(info: &OrderInfo, flags: &[&str]) -> Option<Foreign> {
    let quote_sized = flags.contains(&"viqc");
    let offset = info.descr.price.price().is_none();
    match &info.descr.ordertype {
        KrakenOrderType::Limit | KrakenOrderType::Market if !quote_sized && !offset => None,
        other => {
            let t = other.as_str();
            let triggered = TRIGGERED_TYPES.iter().any(|p| t.starts_with(p));
            Some(Foreign {
                venue_type: t.to_owned(),
                trigger: (triggered || offset).then(|| info.descr.price.text()),
                quote_volume: quote_sized.then_some(info.vol),
            })
        }
    }
}

/// An [`OrderState`] from Kraken's order info.
///
/// `pair` is the directory entry of `descr.pair`, when known (it gives the
/// symbol and the fee asset). `client_order_id` is used when Kraken's record
/// has no `cl_ord_id` (orders placed with userref only).
///
/// An order Herd cannot model (any type but limit and market, a trigger
/// price given as an offset, a volume in quote currency) is not an error:
/// it comes back with [`OrderState::foreign`] set, so one order placed by
/// hand on the key never hides the others.
pub fn order_state_from(
    txid: &str,
    info: &OrderInfo,
    pair: Option<&PairInfo>,
    client_order_id: Option<&str>,
) -> Result<OrderState, VenueError> {
    let side = match info.descr.side {
        KrakenSide::Buy => Side::Buy,
        KrakenSide::Sell => Side::Sell,
    };
    let flags: Vec<&str> = info.oflags.split(',').map(str::trim).collect();
    let foreign = foreign_of(info, &flags);
    let (order_type, price) = match &foreign {
        // Not foreign: a limit or market order with an absolute price.
        None if info.descr.ordertype == KrakenOrderType::Limit => (
            OrderType::Limit,
            info.descr.price.price().filter(|p| *p > Decimal::ZERO),
        ),
        None => (OrderType::Market, None),
        Some(f) => {
            let t = f.venue_type.as_str();
            // Where Kraken gives an absolute limit price: a limit or iceberg
            // order's price, a `*-limit` conditional order's price2.
            let limit = if t == "limit" || t == "iceberg" {
                info.descr.price.price()
            } else if t.ends_with("-limit") {
                info.descr.price2.as_ref().and_then(|p| p.price())
            } else {
                None
            }
            .filter(|p| *p > Decimal::ZERO);
            match limit {
                Some(p) => (OrderType::Limit, Some(p)),
                None => (OrderType::Market, None),
            }
        }
    };
    let average_price = if info.price > Decimal::ZERO {
        Some(info.price)
    } else if info.vol_exec > Decimal::ZERO {
        Some(info.cost / info.vol_exec)
    } else {
        None
    };
    let (symbol, fee_asset) = match pair {
        Some(p) => {
            let base = &p.instrument.base;
            let quote = &p.instrument.quote;
            // Kraken's documented default: fee in quote when buying, in base
            // when selling, unless fcib / fciq says otherwise.
            let in_base = if flags.contains(&"fcib") {
                true
            } else if flags.contains(&"fciq") {
                false
            } else {
                side == Side::Sell
            };
            (
                p.instrument.symbol.clone(),
                if in_base { base.clone() } else { quote.clone() },
            )
        }
        None => (info.descr.pair.clone(), String::new()),
    };
    let userref = match info.userref.map(i32::try_from).transpose() {
        Ok(u) => u.unwrap_or(0),
        // Another tool's userref need not fit Herd's int32; it is nobody's.
        Err(_) if foreign.is_some() => 0,
        Err(_) => {
            return Err(parse_err(format!(
                "order {txid}: userref {:?}",
                info.userref
            )));
        }
    };
    // A quote-sized order's `vol` is quote currency; in base units only what
    // executed is known.
    let volume = match &foreign {
        Some(f) if f.quote_volume.is_some() => info.vol_exec,
        _ => info.vol,
    };
    Ok(OrderState {
        client_order_id: info
            .cl_ord_id
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| client_order_id.map(str::to_owned))
            .unwrap_or_default(),
        venue_order_id: txid.to_owned(),
        symbol,
        side,
        order_type,
        price,
        volume,
        volume_executed: info.vol_exec,
        average_price,
        fee: info.fee,
        fee_asset,
        status: order_status(info.status, info.reason.as_deref()),
        userref,
        opened_at_ms: info.opentm.to_ms(),
        closed_at_ms: info.closetm.map(|t| t.to_ms()).filter(|ms| *ms > 0),
        reason: info.reason.clone().filter(|r| !r.is_empty()),
        post_only: flags.contains(&"post"),
        foreign,
    })
}

/// RFC3339 UTC (`2024-05-09T12:00:30Z`) of a Unix time in seconds, for
/// AddOrder's `deadline` (no date library needed for this one format).
pub fn rfc3339_utc(unix_s: i64) -> String {
    herd_venue::calendar::utc_string(unix_s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names() {
        let cases = [
            ("XXBT", "BTC"),
            ("XBT", "BTC"),
            ("XXDG", "DOGE"),
            ("XDG", "DOGE"),
            ("ZUSD", "USD"),
            ("XETH", "ETH"),
            ("USDT", "USDT"),
            ("DOT.S", "DOT.S"),
            ("XBT.M", "BTC.M"),
            ("SOL", "SOL"),
            ("ZEUS", "ZEUS"),
        ];
        for (k, want) in cases {
            assert_eq!(normalize_asset(k), want, "{k}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_617_236_325), "2021-04-01T00:18:45Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn status_table() {
        use KrakenOrderStatus as K;
        let cases = [
            (K::Pending, None, OrderStatus::Open),
            (K::Open, None, OrderStatus::Open),
            (K::Closed, None, OrderStatus::Filled),
            (K::Canceled, Some("User requested"), OrderStatus::Canceled),
            (K::Canceled, Some("Post only order"), OrderStatus::Rejected),
            (K::Expired, None, OrderStatus::Expired),
        ];
        for (k, reason, want) in cases {
            assert_eq!(order_status(k, reason), want, "{k:?} {reason:?}");
        }
    }
}

/// Kraken's permission names Herd needs for spot trading.
pub const NEEDED_PERMISSIONS: [&str; 5] = [
    "query-funds",
    "query-open-trades",
    "query-closed-trades",
    "modify-trades",
    "cancel-close-trades",
];
/// Kraken's name of the permission to withdraw funds.
pub const WITHDRAW_PERMISSION: &str = "withdraw-funds";

/// GetApiKeyInfo in venue-neutral terms. A key that can neither create nor
/// cancel orders is read-only for Herd.
pub fn key_info(raw: &crate::http::models::ApiKeyInfo) -> herd_venue::KeyInfo {
    let has = |p: &str| raw.permissions.iter().any(|k| k == p);
    herd_venue::KeyInfo {
        name: raw.name.clone(),
        permissions: raw.permissions.clone(),
        withdraw_permission: has(WITHDRAW_PERMISSION).then(|| WITHDRAW_PERMISSION.to_string()),
        read_only: !has("modify-trades") && !has("cancel-close-trades"),
        lacking: NEEDED_PERMISSIONS
            .iter()
            .filter(|p| !has(p))
            .map(|p| (*p).to_string())
            .collect(),
        ip_allowlist: raw.ip_allowlist.clone(),
        expires_at_ms: (raw.valid_until > 0).then(|| raw.valid_until * 1000),
        nonce_window_s: (raw.nonce_window > 0).then_some(raw.nonce_window),
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use crate::http::models::{ApiKeyInfo, Envelope};

    #[test]
    fn get_api_key_info_in_neutral_terms_with_numbers_or_strings() {
        for valid_until in ["\"1800000000\"", "1800000000"] {
            let body = format!(
                r#"{{"error":[],"result":{{"apiKeyName":"bot","permissions":["query-funds",
                "withdraw-funds","modify-trades"],"ipAllowlist":[],"validUntil":{valid_until},
                "nonceWindow":"5"}}}}"#
            );
            let env: Envelope<ApiKeyInfo> = serde_json::from_str(&body).unwrap();
            let k = key_info(&env.result.unwrap());
            assert_eq!(k.name, "bot");
            assert_eq!(k.withdraw_permission.as_deref(), Some("withdraw-funds"));
            assert!(!k.read_only, "can create orders");
            assert_eq!(
                k.lacking,
                vec![
                    "query-open-trades",
                    "query-closed-trades",
                    "cancel-close-trades"
                ]
            );
            assert_eq!(k.expires_at_ms, Some(1_800_000_000_000));
            assert_eq!(k.nonce_window_s, Some(5));
        }
        let never: ApiKeyInfo =
            serde_json::from_str(r#"{"apiKeyName":"x","permissions":[],"validUntil":"0"}"#)
                .unwrap();
        let k = key_info(&never);
        assert_eq!(k.expires_at_ms, None);
        assert!(k.read_only);
        let err = serde_json::from_str::<ApiKeyInfo>(r#"{"validUntil":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("validUntil"), "{err}");
    }

    #[test]
    fn get_api_key_info_fixture_is_a_trade_only_key() {
        let env: Envelope<ApiKeyInfo> =
            serde_json::from_str(include_str!("../test_data/http_get_api_key_info.json")).unwrap();
        let k = key_info(&env.result.unwrap());
        assert_eq!(k.name, "herd-trade-only");
        assert_eq!(k.withdraw_permission, None);
        assert!(!k.read_only);
        assert!(k.lacking.is_empty(), "{:?}", k.lacking);
        assert_eq!(k.ip_allowlist, vec!["203.0.113.7/32".to_string()]);
        assert_eq!(k.expires_at_ms, None);
    }
}
