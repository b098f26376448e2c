//! The rest of Bybit V5 that independent clients call before and around
//! trading (ccxt's unified flow among them): the key's own description
//! (`/v5/user/query-api`), account info and fee rates, coin info, the order
//! book and the recent-trade tape.
//!
//! The order book is synthetic liquidity stepped by the tick around the
//! ticker with the account's resting orders merged in; the trade tape is the
//! executions of this simulator: nothing else trades here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use herd_venue::{OrderStatus, Side};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Answer, State, bybit_symbol, core_symbol, fail, ok};

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

/// What `/v5/user/query-api` reports of the key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyInfo {
    pub note: String,
    /// A read-only key (`readOnly: 1`): every order call answers 10005.
    pub read_only: bool,
    /// Permission groups as Bybit names them (`Spot: [SpotTrade]`,
    /// `Wallet: [AccountTransfer, Withdraw]`, ...).
    pub permissions: BTreeMap<String, Vec<String>>,
    /// `["*"]`: no IP restriction.
    pub ips: Vec<String>,
    /// Unix ms the key expires at; `None`: it does not.
    pub expires_at_ms: Option<i64>,
}

impl Default for KeyInfo {
    /// A trade-only key (spot and derivatives orders and positions), bound
    /// to loopback, with no expiry.
    fn default() -> KeyInfo {
        let group = |v: &[&str]| v.iter().map(|p| (*p).to_string()).collect::<Vec<_>>();
        KeyInfo {
            note: "herd-sim".into(),
            read_only: false,
            permissions: BTreeMap::from([
                ("ContractTrade".into(), group(&["Order", "Position"])),
                ("Spot".into(), group(&["SpotTrade"])),
                ("Wallet".into(), group(&["AccountTransfer"])),
                ("Options".into(), Vec::new()),
                ("Derivatives".into(), group(&["DerivativesTrade"])),
                ("Exchange".into(), Vec::new()),
                ("CopyTrading".into(), Vec::new()),
                ("BlockTrade".into(), Vec::new()),
                ("NFT".into(), Vec::new()),
                ("Affiliate".into(), Vec::new()),
            ]),
            ips: vec!["127.0.0.1".into()],
            expires_at_ms: None,
        }
    }
}

impl KeyInfo {
    /// Adds `perm` to `group` (`Wallet:Withdraw`).
    pub fn grant(&mut self, spec: &str) -> Result<(), String> {
        let (group, perm) = spec.split_once(':').ok_or_else(|| {
            format!("permission {spec:?}: expected GROUP:NAME, e.g. Wallet:Withdraw")
        })?;
        let list = self.permissions.entry(group.to_string()).or_default();
        if !list.iter().any(|p| p == perm) {
            list.push(perm.to_string());
        }
        Ok(())
    }
}

pub(super) fn query_api(key: &KeyInfo, api_key: &str, now: i64) -> Answer {
    let deadline_day = key
        .expires_at_ms
        .map_or(-1, |e| (e - now).max(0).div_euclid(86_400_000));
    ok(json!({
        "id": "100001",
        "note": key.note,
        "apiKey": api_key,
        "readOnly": i64::from(key.read_only),
        "secret": "",
        "permissions": key.permissions,
        "ips": key.ips,
        "type": 1,
        "deadlineDay": deadline_day,
        "expiredAt": key.expires_at_ms.map_or(String::new(), herd_venue::calendar::utc_string),
        "createdAt": "2026-01-01T00:00:00Z",
        "unified": 0,
        "uta": 1,
        "userID": 100_001,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": true,
        "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }))
}

pub(super) fn account_info(now: i64) -> Answer {
    ok(json!({
        "unifiedMarginStatus": 5,
        "marginMode": "REGULAR_MARGIN",
        "isMasterTrader": false,
        "spotHedgingStatus": "OFF",
        "updatedTime": now.to_string(),
        "dcpStatus": "OFF",
        "timeWindow": 10,
        "smpGroup": 0,
    }))
}

fn category(q: &HashMap<String, String>) -> Result<String, Answer> {
    match q.get("category").map(String::as_str) {
        Some(c @ ("spot" | "linear")) => Ok(c.to_string()),
        Some(other) => Err(fail(
            10001,
            format!("params error: category {other} is not supported"),
        )),
        None => Err(fail(10001, "params error: category is required")),
    }
}

pub(super) fn fee_rate(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let cat = category(q)?;
    let mut list = Vec::new();
    for inst in st.exchange.instruments() {
        let (c, symbol) = bybit_symbol(&inst.symbol);
        if c != cat || q.get("symbol").is_some_and(|s| *s != symbol) {
            continue;
        }
        list.push(json!({
            "symbol": symbol,
            "baseCoin": if cat == "spot" { String::new() } else { inst.base.clone() },
            "takerFeeRate": s(inst.taker_fee),
            "makerFeeRate": s(inst.maker_fee),
        }));
    }
    if list.is_empty() && q.contains_key("symbol") {
        return Err(fail(10001, "params error: symbol invalid"));
    }
    Ok(ok(json!({ "list": list })))
}

pub(super) fn coin_info(st: &State, q: &HashMap<String, String>) -> Answer {
    let coins: BTreeSet<String> = st
        .exchange
        .instruments()
        .into_iter()
        .flat_map(|i| [i.base, i.quote])
        .filter(|c| q.get("coin").is_none_or(|w| w == c))
        .collect();
    let balances: HashMap<String, Decimal> = st
        .exchange
        .balances()
        .into_iter()
        .map(|b| (b.asset, b.total))
        .collect();
    let rows: Vec<Value> = coins
        .iter()
        .map(|c| {
            json!({
                "name": c,
                "coin": c,
                "remainAmount": s(balances.get(c).copied().unwrap_or_default()),
                "chains": [{
                    "chainType": c,
                    "confirmation": "1",
                    "withdrawFee": "0",
                    "depositMin": "0",
                    "withdrawMin": "0",
                    "chain": c,
                    "chainDeposit": "1",
                    "chainWithdraw": "1",
                    "minAccuracy": "8",
                    "withdrawPercentageFee": "0",
                    "contractAddress": "",
                }],
            })
        })
        .collect();
    ok(json!({ "rows": rows }))
}

fn symbol_of(q: &HashMap<String, String>) -> Result<(String, String, String), Answer> {
    let cat = category(q)?;
    let symbol = q
        .get("symbol")
        .ok_or_else(|| fail(10001, "params error: symbol is required"))?
        .clone();
    let core =
        core_symbol(&cat, &symbol).ok_or_else(|| fail(10001, "params error: symbol invalid"))?;
    Ok((cat, symbol, core))
}

pub(super) fn orderbook(
    st: &State,
    q: &HashMap<String, String>,
    now: i64,
) -> Result<Answer, Answer> {
    let (cat, symbol, core) = symbol_of(q)?;
    let max = if cat == "spot" { 200 } else { 500 };
    let default = if cat == "spot" { 1 } else { 25 };
    let depth: usize = match q.get("limit") {
        None => default,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| fail(10001, "params error: limit invalid"))?,
    };
    let inst = st
        .exchange
        .instruments()
        .into_iter()
        .find(|i| i.symbol == core)
        .ok_or_else(|| fail(10001, "params error: symbol invalid"))?;
    let t = st
        .exchange
        .ticker(&core)
        .map_err(|e| fail(10001, e.to_string()))?;
    let lot = inst.min_volume.max(Decimal::new(1, inst.lot_decimals));
    let mut bids: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    let mut asks: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for i in 0..depth {
        let step = inst.tick_size * Decimal::from(i);
        let size = lot * Decimal::from(100 * (i + 1));
        if t.bid - step > Decimal::ZERO {
            *bids.entry(t.bid - step).or_default() += size;
        }
        *asks.entry(t.ask + step).or_default() += size;
    }
    for o in st.exchange.all_orders() {
        if o.symbol != core || o.status != OrderStatus::Open {
            continue;
        }
        let Some(px) = o.price else { continue };
        let book = if o.side == Side::Buy {
            &mut bids
        } else {
            &mut asks
        };
        *book.entry(px).or_default() += o.volume - o.volume_executed;
    }
    let row = |(px, v): (&Decimal, &Decimal)| json!([s(*px), s(*v)]);
    let b: Vec<Value> = bids.iter().rev().take(depth).map(row).collect();
    let a: Vec<Value> = asks.iter().take(depth).map(row).collect();
    Ok(ok(json!({
        "s": symbol, "b": b, "a": a, "ts": now, "u": now, "seq": now, "cts": now,
    })))
}

pub(super) fn recent_trades(st: &State, q: &HashMap<String, String>) -> Result<Answer, Answer> {
    let (cat, symbol, core) = symbol_of(q)?;
    let max = if cat == "spot" { 60 } else { 1000 };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(if cat == "spot" { 60 } else { 500 })
        .clamp(1, max);
    let mut rows: Vec<(i64, Value)> = st
        .exchange
        .all_orders()
        .into_iter()
        .filter(|o| o.symbol == core && o.volume_executed > Decimal::ZERO)
        .map(|o| {
            let t = o.closed_at_ms.unwrap_or(o.opened_at_ms);
            (
                t,
                json!({
                    "execId": format!("{}-1", o.venue_order_id),
                    "symbol": symbol,
                    "price": s(o.average_price.unwrap_or_default()),
                    "size": s(o.volume_executed),
                    "side": if o.side == Side::Buy { "Buy" } else { "Sell" },
                    "time": t.to_string(),
                    "isBlockTrade": false,
                    "isRPITrade": false,
                }),
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let list: Vec<Value> = rows.into_iter().take(limit).map(|r| r.1).collect();
    Ok(ok(json!({ "category": cat, "list": list })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_adds_a_permission_once() {
        let mut k = KeyInfo::default();
        k.grant("Wallet:Withdraw").unwrap();
        k.grant("Wallet:Withdraw").unwrap();
        assert_eq!(k.permissions["Wallet"], vec!["AccountTransfer", "Withdraw"]);
        assert!(k.grant("Withdraw").is_err());
    }
}
