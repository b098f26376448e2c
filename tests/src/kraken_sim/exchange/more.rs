//! The rest of Kraken's spot REST surface that independent clients call
//! (ccxt's unified flow among them): `Assets`, `Depth`, `Trades`, `Spread`,
//! `TradeBalance`, `QueryTrades`, `OpenPositions` and `GetApiKeyInfo`, plus
//! the key's permissions, which every private method checks as Kraken does
//! (`EGeneral:Permission denied`).
//!
//! The order book and the public trade tape are the simulator's own: `Depth`
//! shows synthetic liquidity stepped by the tick around the ticker with the
//! account's resting orders merged in, and `Trades` lists the trades this
//! simulator executed. Nothing else trades here, so nothing else can show.

use std::collections::BTreeMap;

use herd_venue::{OrderStatus, Side};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::super::wire::{Form, fixed, invalid, unix_secs};
use super::{Now, PairSpec, Sim, Trade, UNKNOWN_PAIR, kraken_side, ordertype_str};

pub const PERMISSION_DENIED: &str = "EGeneral:Permission denied";
pub const UNKNOWN_ASSET: &str = "EQuery:Unknown asset";
/// Depth answers at most this many levels a side.
const DEPTH_MAX: i64 = 500;
/// QueryTrades takes at most this many trade ids.
const QUERY_TRADES_MAX: usize = 20;

/// Kraken's permission names (GetApiKeyInfo's `permissions`).
pub const QUERY_FUNDS: &str = "query-funds";
pub const WITHDRAW_FUNDS: &str = "withdraw-funds";
pub const QUERY_OPEN: &str = "query-open-trades";
pub const QUERY_CLOSED: &str = "query-closed-trades";
pub const MODIFY_TRADES: &str = "modify-trades";
pub const CANCEL_TRADES: &str = "cancel-close-trades";

/// What `GetApiKeyInfo` reports of the key, and what the key may do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub permissions: Vec<String>,
    pub ip_allowlist: Vec<String>,
    /// Unix seconds; 0 = never expires.
    pub valid_until: i64,
    /// Seconds; 0 = nonces must strictly increase.
    pub nonce_window: u32,
}

impl Default for KeyInfo {
    /// A trade-only key, allowlisted to loopback, that never expires.
    fn default() -> KeyInfo {
        KeyInfo {
            name: "herd-sim".into(),
            permissions: [
                QUERY_FUNDS,
                QUERY_OPEN,
                QUERY_CLOSED,
                MODIFY_TRADES,
                CANCEL_TRADES,
            ]
            .map(str::to_string)
            .to_vec(),
            ip_allowlist: vec!["127.0.0.1/32".into()],
            valid_until: 0,
            nonce_window: 0,
        }
    }
}

/// The permission a private method needs; `None`: any key may call it.
pub fn permission_of(method: &str) -> Option<&'static str> {
    match method {
        "Balance" | "BalanceEx" | "TradeBalance" | "Ledgers" | "QueryLedgers" => Some(QUERY_FUNDS),
        "OpenOrders" | "QueryOrders" | "QueryTrades" | "OpenPositions" => Some(QUERY_OPEN),
        "ClosedOrders" | "TradesHistory" => Some(QUERY_CLOSED),
        "AddOrder" | "AddOrderBatch" | "AmendOrder" | "EditOrder" => Some(MODIFY_TRADES),
        "CancelOrder" | "CancelAll" | "CancelAllOrdersAfter" | "CancelOrderBatch" => {
            Some(CANCEL_TRADES)
        }
        _ => None,
    }
}

/// `XXDG` -> `XDG`, `ZUSD` -> `USD`; other codes are their own altname.
pub(super) fn asset_altname(code: &str) -> String {
    let legacy = code.len() == 4 && (code.starts_with('X') || code.starts_with('Z'));
    if legacy {
        code[1..].to_string()
    } else {
        code.to_string()
    }
}

impl Sim {
    /// The permission check every private method passes first.
    pub(super) fn check_permission(&self, method: &str, now: Now) -> Result<(), String> {
        let key = &self.cfg.key_info;
        if key.valid_until != 0 && now.ms.div_euclid(1000) >= key.valid_until {
            return Err(super::super::auth::INVALID_KEY.to_string());
        }
        match permission_of(method) {
            Some(p) if !key.permissions.iter().any(|k| k == p) => Err(PERMISSION_DENIED.into()),
            _ => Ok(()),
        }
    }

    /// Every asset code the pairs use, with its altname.
    fn asset_codes(&self) -> BTreeMap<String, String> {
        self.cfg
            .pairs
            .iter()
            .flat_map(|p| [p.base_code.clone(), p.quote_code.clone()])
            .map(|c| (c.clone(), asset_altname(&c)))
            .collect()
    }

    pub(super) fn assets(&self, f: &Form) -> Result<Value, String> {
        let all = self.asset_codes();
        let wanted: Option<Vec<String>> = f.get("asset").map(|list| {
            list.split(',')
                .map(|a| a.trim().to_ascii_uppercase())
                .collect()
        });
        let mut out = Map::new();
        for (code, alt) in &all {
            if let Some(w) = &wanted
                && !w.iter().any(|a| a == code || a == alt)
            {
                continue;
            }
            let dp = Self::asset_decimals(code);
            out.insert(
                code.clone(),
                json!({
                    "aclass": "currency",
                    "altname": alt,
                    "decimals": dp,
                    "display_decimals": dp.min(5),
                    "status": "enabled",
                }),
            );
        }
        if let Some(w) = &wanted
            && out.len() < w.len()
        {
            return Err(UNKNOWN_ASSET.into());
        }
        Ok(Value::Object(out))
    }

    fn one_pair(&self, f: &Form) -> Result<&PairSpec, String> {
        let name = f.get("pair").ok_or_else(|| invalid("pair"))?;
        let i = self.pair_index(name).ok_or(UNKNOWN_PAIR)?;
        self.pair(i)
    }

    pub(super) fn depth(&self, f: &Form, now: Now) -> Result<Value, String> {
        let p = self.one_pair(f)?;
        let count = f.int("count")?.unwrap_or(100);
        if !(1..=DEPTH_MAX).contains(&count) {
            return Err(invalid("count"));
        }
        let count = usize::try_from(count).unwrap_or(100);
        let inst = &p.instrument;
        let t = self.ex.ticker(&inst.symbol).map_err(|e| e.to_string())?;
        let lot = inst.min_volume.max(Decimal::new(1, inst.lot_decimals));
        let mut bids: BTreeMap<Decimal, Decimal> = BTreeMap::new();
        let mut asks: BTreeMap<Decimal, Decimal> = BTreeMap::new();
        for i in 0..count {
            let step = inst.tick_size * Decimal::from(i);
            let size = lot * Decimal::from(1000 * (i + 1));
            if t.bid - step > Decimal::ZERO {
                *bids.entry(t.bid - step).or_default() += size;
            }
            *asks.entry(t.ask + step).or_default() += size;
        }
        for txid in &self.live {
            let Some(m) = self.meta.get(txid) else {
                continue;
            };
            if self.cfg.pairs.get(m.pair).map(|q| &q.key) != Some(&p.key) {
                continue;
            }
            let Some(s) = self.state(txid) else { continue };
            let (Some(px), OrderStatus::Open) = (s.price, s.status) else {
                continue;
            };
            let rest = s.volume - s.volume_executed;
            let book = if s.side == Side::Buy {
                &mut bids
            } else {
                &mut asks
            };
            *book.entry(px).or_default() += rest;
        }
        let ts = now.ms.div_euclid(1000);
        let dp = inst.price_decimals;
        let row = |(px, v): (&Decimal, &Decimal)| {
            json!([fixed(*px, dp), fixed(*v, inst.lot_decimals), ts])
        };
        let bid_rows: Vec<Value> = bids.iter().rev().take(count).map(row).collect();
        let ask_rows: Vec<Value> = asks.iter().take(count).map(row).collect();
        let mut out = Map::new();
        out.insert(p.key.clone(), json!({"asks": ask_rows, "bids": bid_rows}));
        Ok(Value::Object(out))
    }

    /// `since` in Kraken's spellings: nanoseconds (the `last` of an earlier
    /// answer) or seconds.
    fn since_ms(f: &Form) -> Result<Option<i64>, String> {
        match f.get("since") {
            None => Ok(None),
            Some(s) => {
                let d: Decimal = s.parse().map_err(|_| invalid("since"))?;
                let ms = if d > Decimal::from(100_000_000_000_i64) * Decimal::ONE_THOUSAND {
                    d / Decimal::from(1_000_000)
                } else {
                    d * Decimal::ONE_THOUSAND
                };
                Ok(i64::try_from(ms.trunc()).ok())
            }
        }
    }

    pub(super) fn public_trades(&self, f: &Form) -> Result<Value, String> {
        let p = self.one_pair(f)?;
        let since = Self::since_ms(f)?;
        let limit = usize::try_from(f.int("count")?.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
        let dp = p.instrument.price_decimals;
        let lot = p.instrument.lot_decimals;
        let rows: Vec<(i64, Value)> = self
            .trades
            .iter()
            .enumerate()
            .filter(|(_, t)| self.cfg.pairs.get(t.pair).map(|q| &q.key) == Some(&p.key))
            .filter(|(_, t)| since.is_none_or(|s| t.time_ms > s))
            .take(limit)
            .map(|(i, t)| {
                (
                    t.time_ms,
                    json!([
                        fixed(t.price, dp),
                        fixed(t.vol, lot),
                        unix_secs(t.time_ms),
                        if t.side == Side::Buy { "b" } else { "s" },
                        if t.ordertype == herd_venue::OrderType::Market {
                            "m"
                        } else {
                            "l"
                        },
                        "",
                        i + 1
                    ]),
                )
            })
            .collect();
        let last_ms = rows.last().map_or(since.unwrap_or(0), |r| r.0);
        let mut out = Map::new();
        out.insert(
            p.key.clone(),
            Value::Array(rows.into_iter().map(|r| r.1).collect()),
        );
        out.insert(
            "last".into(),
            json!((i128::from(last_ms) * 1_000_000).to_string()),
        );
        Ok(Value::Object(out))
    }

    pub(super) fn spread(&self, f: &Form, now: Now) -> Result<Value, String> {
        let p = self.one_pair(f)?;
        let t = self
            .ex
            .ticker(&p.instrument.symbol)
            .map_err(|e| e.to_string())?;
        let dp = p.instrument.price_decimals;
        let ts = now.ms.div_euclid(1000);
        let mut out = Map::new();
        out.insert(
            p.key.clone(),
            json!([[ts, fixed(t.bid, dp), fixed(t.ask, dp)]]),
        );
        out.insert("last".into(), json!(ts));
        Ok(Value::Object(out))
    }

    /// The account valued in one asset (`ZUSD` by default) at the last prices.
    pub(super) fn trade_balance(&self, f: &Form) -> Result<Value, String> {
        let asset = f.get("asset").unwrap_or("ZUSD").to_ascii_uppercase();
        let codes = self.asset_codes();
        let Some((code, _)) = codes.iter().find(|(c, a)| **c == asset || **a == asset) else {
            return Err(UNKNOWN_ASSET.into());
        };
        let mut total = Decimal::ZERO;
        for b in self.ex.balances() {
            total += self.value_in(&b.asset, b.total, code)?;
        }
        let dp = Self::asset_decimals(code);
        let z = fixed(Decimal::ZERO, dp);
        let v = fixed(total, dp);
        Ok(json!({
            "eb": v, "tb": v, "m": z, "uv": z, "n": z, "c": z, "v": z, "e": v, "mf": v,
        }))
    }

    /// `amount` of the common asset `asset` in the asset code `code`, through
    /// a pair that joins them (last price); zero-valued if none does.
    fn value_in(&self, asset: &str, amount: Decimal, code: &str) -> Result<Decimal, String> {
        if self.asset_code(asset) == code {
            return Ok(amount);
        }
        for p in &self.cfg.pairs {
            if p.instrument.base == asset && p.quote_code == code {
                let t = self
                    .ex
                    .ticker(&p.instrument.symbol)
                    .map_err(|e| e.to_string())?;
                return Ok(amount * t.last);
            }
            if p.instrument.quote == asset && p.base_code == code {
                let t = self
                    .ex
                    .ticker(&p.instrument.symbol)
                    .map_err(|e| e.to_string())?;
                return Ok(if t.last.is_zero() {
                    Decimal::ZERO
                } else {
                    amount / t.last
                });
            }
        }
        Ok(Decimal::ZERO)
    }

    /// One trade as TradesHistory and QueryTrades show it.
    pub(super) fn trade_json(&self, t: &Trade) -> Option<Value> {
        let p = self.cfg.pairs.get(t.pair)?;
        let dp = p.instrument.price_decimals;
        let lot = p.instrument.lot_decimals;
        Some(json!({
            "ordertxid": t.txid,
            "postxid": format!("P{}", &t.id[1..]),
            "pair": p.key,
            "time": unix_secs(t.time_ms),
            "type": kraken_side(t.side),
            "ordertype": ordertype_str(t.ordertype),
            "price": fixed(t.price, dp),
            "cost": fixed(t.price * t.vol, p.cost_decimals),
            "fee": fixed(t.fee, p.cost_decimals),
            "vol": fixed(t.vol, lot),
            "margin": fixed(Decimal::ZERO, p.cost_decimals),
            "misc": "",
            "maker": t.maker,
            "trade_id": t.seq,
        }))
    }

    pub(super) fn query_trades(&self, f: &Form) -> Result<Value, String> {
        let list = f.get("txid").ok_or_else(|| invalid("txid"))?;
        let ids: Vec<&str> = list.split(',').map(str::trim).collect();
        if ids.len() > QUERY_TRADES_MAX {
            return Err(invalid("txid"));
        }
        let mut out = Map::new();
        for id in ids {
            let t = self
                .trades
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(|| invalid("txid"))?;
            if let Some(v) = self.trade_json(t) {
                out.insert(id.to_string(), v);
            }
        }
        Ok(Value::Object(out))
    }

    /// Every trade as booked (admin `GET /sim/trades`): exact decimals, no
    /// wire rounding, so clients' parsed values can be checked against it.
    pub fn trades_summary(&self) -> Value {
        let rows: Vec<Value> = self
            .trades
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "txid": t.txid,
                    "pair": self.cfg.pairs.get(t.pair).map(|p| p.altname.clone()),
                    "side": kraken_side(t.side),
                    "price": t.price.normalize().to_string(),
                    "vol": t.vol.normalize().to_string(),
                    "fee": t.fee.normalize().to_string(),
                    "maker": t.maker,
                    "time_ms": t.time_ms,
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// Each asset's balances by common name (admin `GET /sim/balances`).
    pub fn balances_summary(&self) -> Value {
        let mut out = Map::new();
        for b in self.ex.balances() {
            out.insert(
                b.asset.clone(),
                json!({"total": b.total.normalize().to_string(), "free": b.free.normalize().to_string()}),
            );
        }
        Value::Object(out)
    }

    pub(super) fn api_key_info(&self) -> Value {
        let k = &self.cfg.key_info;
        json!({
            "apiKeyName": k.name,
            "permissions": k.permissions,
            "ipAllowlist": k.ip_allowlist,
            "validUntil": k.valid_until.to_string(),
            "queryFrom": "0",
            "queryTo": "0",
            "nonceWindow": k.nonce_window,
            "createdTime": "1700000000",
            "modifiedTime": "1700000000",
            "lastUsed": "0",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_asset_codes_lose_their_prefix() {
        assert_eq!(asset_altname("XXDG"), "XDG");
        assert_eq!(asset_altname("ZUSD"), "USD");
        assert_eq!(asset_altname("XXBT"), "XBT");
        assert_eq!(asset_altname("P1"), "P1");
        assert_eq!(asset_altname("USDT"), "USDT");
    }

    #[test]
    fn every_private_method_but_key_info_needs_a_permission() {
        assert_eq!(permission_of("AddOrder"), Some(MODIFY_TRADES));
        assert_eq!(permission_of("CancelAll"), Some(CANCEL_TRADES));
        assert_eq!(permission_of("BalanceEx"), Some(QUERY_FUNDS));
        assert_eq!(permission_of("TradesHistory"), Some(QUERY_CLOSED));
        assert_eq!(permission_of("GetApiKeyInfo"), None);
    }
}
