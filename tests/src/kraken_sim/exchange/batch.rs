//! Kraken's batch, amend and ledger endpoints: `AddOrderBatch` and
//! `CancelOrderBatch` (JSON bodies, as Kraken takes them), `AmendOrder`
//! (in place, same txid), the legacy `EditOrder` (a new order replaces the
//! old one) and `Ledgers` / `QueryLedgers`.
//!
//! The ledger is derived from the trades, two entries a trade (the base leg
//! and the quote leg, the fee on the quote leg as the `fciq` flag every order
//! here carries puts it), with each entry's running `balance` counted back
//! from today's balances: nothing but trades moves a balance in this
//! simulator, so the history is exact.

use std::collections::BTreeMap;

use herd_venue::{OrderRef, Side, VenueError};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::super::wire::{Form, fixed, invalid, unix_secs};
use super::{Now, Sim, UNKNOWN_ORDER, looks_like_txid};

/// AddOrderBatch takes 2 to 15 orders.
const BATCH_MIN: usize = 2;
const BATCH_MAX: usize = 15;
/// CancelOrderBatch takes at most this many ids in all.
const CANCEL_BATCH_MAX: usize = 50;
/// QueryLedgers takes at most this many ids.
const QUERY_LEDGERS_MAX: usize = 20;
/// A page of Ledgers.
const LEDGER_PAGE: usize = 50;

/// A JSON request body (Kraken's batch calls): the parsed body and its
/// top-level scalars as a form (nonce, pair, deadline, validate), or `None`
/// when the body is a form.
pub fn json_body(body: &[u8]) -> Option<Result<(Value, Form), String>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    Some(
        serde_json::from_slice::<Value>(body)
            .map_err(|_| "EGeneral:Invalid arguments".to_string())
            .map(|v| {
                let form = scalars(&v);
                (v, form)
            }),
    )
}

/// A JSON object's scalar fields as form values.
fn scalars(v: &Value) -> Form {
    let mut out = BTreeMap::new();
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            let text = match x {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            out.insert(k.clone(), text);
        }
    }
    Form(out)
}

/// One ledger entry, before it is spelled on the wire.
struct Entry {
    id: String,
    refid: String,
    time_ms: i64,
    /// The common asset name (`USD`, `DOGE`).
    asset: String,
    amount: Decimal,
    fee: Decimal,
    balance: Decimal,
}

impl Sim {
    pub(super) fn add_order_batch(
        &mut self,
        body: Option<&Value>,
        f: &Form,
        now: Now,
    ) -> Result<Value, String> {
        let orders = body
            .and_then(|b| b.get("orders"))
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("orders"))?;
        if !(BATCH_MIN..=BATCH_MAX).contains(&orders.len()) {
            return Err(invalid("orders"));
        }
        let pair = f.get("pair").ok_or_else(|| invalid("pair"))?;
        // Each order as AddOrder's form: its own fields, the batch's pair,
        // deadline and validate.
        let mut forms = Vec::with_capacity(orders.len());
        for o in orders {
            if !o.is_object() {
                return Err(invalid("orders"));
            }
            let mut form = scalars(o);
            form.0.insert("pair".into(), pair.to_string());
            for k in ["deadline", "validate"] {
                if let Some(v) = f.get(k) {
                    form.0.insert(k.into(), v.to_string());
                }
            }
            forms.push(form);
        }
        // The whole batch is validated before any order reaches the book.
        for form in &forms {
            let mut check = form.clone();
            check.0.insert("validate".into(), "true".into());
            self.add_order(&check, now)?;
        }
        let mut out = Vec::with_capacity(forms.len());
        for form in &forms {
            match self.add_order(form, now) {
                Ok(v) => {
                    let mut entry = Map::new();
                    if let Some(t) = v
                        .get("txid")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                    {
                        entry.insert("txid".into(), t.clone());
                    }
                    entry.insert("descr".into(), v.get("descr").cloned().unwrap_or_default());
                    out.push(Value::Object(entry));
                }
                // Past validation, an order fails alone (funds, the book).
                Err(e) => out.push(json!({ "error": e })),
            }
        }
        Ok(json!({ "orders": out }))
    }

    pub(super) fn cancel_order_batch(
        &mut self,
        body: Option<&Value>,
        now: Now,
    ) -> Result<Value, String> {
        let body = body.ok_or_else(|| invalid("orders"))?;
        let mut forms: Vec<Form> = Vec::new();
        if let Some(list) = body.get("orders") {
            let list = list.as_array().ok_or_else(|| invalid("orders"))?;
            for item in list {
                // A txid or userref, bare or as {"txid": ...}.
                let id = match item {
                    Value::Object(o) => o.get("txid").cloned().unwrap_or_default(),
                    other => other.clone(),
                };
                let id = match id {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    _ => return Err(invalid("orders")),
                };
                forms.push(Form(BTreeMap::from([("txid".to_string(), id)])));
            }
        }
        if let Some(list) = body.get("cl_ord_ids") {
            let list = list.as_array().ok_or_else(|| invalid("cl_ord_ids"))?;
            for item in list {
                let id = item.as_str().ok_or_else(|| invalid("cl_ord_ids"))?;
                forms.push(Form(BTreeMap::from([(
                    "cl_ord_id".to_string(),
                    id.to_string(),
                )])));
            }
        }
        if forms.is_empty() || forms.len() > CANCEL_BATCH_MAX {
            return Err(invalid("orders"));
        }
        let mut count = 0;
        for form in &forms {
            match self.cancel_order(form, now) {
                Ok(v) => count += v.get("count").and_then(Value::as_u64).unwrap_or(0),
                // An id that matches no open order cancels nothing; the
                // rest of the batch still goes.
                Err(e) if e == UNKNOWN_ORDER => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({ "count": count }))
    }

    /// The open order a txid or cl_ord_id names.
    fn open_txid(&self, f: &Form) -> Result<String, String> {
        let found = match (f.get("txid"), f.get("cl_ord_id")) {
            (Some(t), None) => self.live.iter().find(|x| *x == t).cloned(),
            (None, Some(c)) => self
                .live
                .iter()
                .find(|x| self.matches(x, None, Some(c)))
                .cloned(),
            _ => return Err(invalid("txid")),
        };
        found.ok_or_else(|| UNKNOWN_ORDER.to_string())
    }

    /// `AmendOrder`: a new `order_qty` and/or `limit_price` in place.
    pub(super) fn amend_order(&mut self, f: &Form, now: Now) -> Result<Value, String> {
        let txid = self.open_txid(f)?;
        let qty = f.decimal("order_qty")?;
        let price = f.decimal("limit_price")?;
        if f.get("display_qty").is_some() {
            // Iceberg orders are not simulated.
            return Err(invalid("display_qty"));
        }
        if f.get("trigger_price").is_some() {
            return Err(invalid("trigger_price"));
        }
        if qty.is_none() && price.is_none() {
            return Err(invalid("order_qty"));
        }
        let m = self.meta.get(&txid).ok_or(UNKNOWN_ORDER)?;
        let p = self.pair(m.pair)?.clone();
        let r = OrderRef {
            client_order_id: m.internal_id.clone(),
            venue_order_id: Some(txid.clone()),
        };
        let s = self.state(&txid).ok_or(UNKNOWN_ORDER)?;
        if f.flag("post_only")
            && let Some(px) = price
        {
            let t = self
                .ex
                .ticker(&p.instrument.symbol)
                .map_err(|e| e.to_string())?;
            let crosses = match s.side {
                Side::Buy => px >= t.ask,
                Side::Sell => px <= t.bid,
            };
            if crosses {
                return Err("EOrder:Post only order".into());
            }
        }
        if let Some(px) = price
            && p.instrument.tick_size > Decimal::ZERO
            && !(px / p.instrument.tick_size).fract().is_zero()
        {
            return Err("EOrder:Tick size check failed".into());
        }
        // An amend counts on the pair's trading counter as an AddOrder does.
        self.limits
            .charge_trading(&p.altname, now.s, now.ms, 1.0)
            .map_err(str::to_string)?;
        self.ex.amend(&r, qty, price, now.ms).map_err(|e| match e {
            VenueError::InsufficientFunds(_) => "EOrder:Insufficient funds".to_string(),
            VenueError::Rejected(_) => "EOrder:Post only order".to_string(),
            VenueError::UnknownOrder(_) => UNKNOWN_ORDER.to_string(),
            VenueError::InvalidArgument(m) if m.contains("executed") => invalid("order_qty"),
            VenueError::InvalidArgument(m) if m.contains("minimum") => {
                "EOrder:Order minimum not met".to_string()
            }
            _ => invalid("order_qty"),
        })?;
        self.next_amend += 1;
        let n = self.next_amend;
        self.sync(now);
        Ok(json!({
            "amend_id": format!("T{:05}-SIMAM-{:06}", n / 1_000_000 % 100_000, n % 1_000_000)
        }))
    }

    /// `EditOrder` (legacy): the old order is cancelled and a new one with
    /// the edited volume and price takes its place, under a new txid.
    pub(super) fn edit_order(&mut self, f: &Form, now: Now) -> Result<Value, String> {
        let given = f.get("txid").ok_or_else(|| invalid("txid"))?;
        let pair = f.get("pair").ok_or_else(|| invalid("pair"))?;
        let lookup = Form(BTreeMap::from([("txid".to_string(), given.to_string())]));
        let old = if looks_like_txid(given) {
            self.open_txid(&lookup)?
        } else {
            let u: i64 = given.parse().map_err(|_| invalid("txid"))?;
            self.live
                .iter()
                .find(|x| self.matches(x, Some(u), None))
                .cloned()
                .ok_or(UNKNOWN_ORDER)?
        };
        let m = self.meta.get(&old).ok_or(UNKNOWN_ORDER)?;
        let s = self.state(&old).ok_or(UNKNOWN_ORDER)?;
        let p = self.pair(m.pair)?;
        if self.pair_index(pair) != Some(m.pair) {
            return Err(invalid("pair"));
        }
        let volume = f.decimal("volume")?.unwrap_or(s.volume);
        let price = f.decimal("price")?.or(s.price);
        let mut add = BTreeMap::from([
            ("pair".to_string(), p.altname.clone()),
            ("type".to_string(), s.side.as_str().to_string()),
            ("ordertype".to_string(), "limit".to_string()),
            ("volume".to_string(), volume.to_string()),
            (
                "price".to_string(),
                price.map(|x| x.to_string()).unwrap_or_default(),
            ),
        ]);
        let oflags = f
            .get("oflags")
            .map(str::to_string)
            .unwrap_or_else(|| m.oflags.clone());
        if oflags.split(',').any(|x| x.trim() == "post") {
            add.insert("oflags".into(), "post".into());
        }
        if let Some(u) = f
            .get("newuserref")
            .map(str::to_string)
            .or(m.userref.map(|u| u.to_string()))
        {
            add.insert("userref".into(), u);
        }
        let add = Form(add);
        // Checked first, so a refused edit leaves the old order alone.
        let mut check = add.clone();
        check.0.insert("validate".into(), "true".into());
        let checked = self.add_order(&check, now)?;
        if f.flag("validate") {
            return Ok(json!({ "descr": checked.get("descr"), "status": "ok" }));
        }
        let cancel = Form(BTreeMap::from([("txid".to_string(), old.clone())]));
        let cancelled = self
            .cancel_order(&cancel, now)?
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let placed = self.add_order(&add, now)?;
        let new = placed
            .get("txid")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default();
        let (lot, dp) = {
            let p = self.pair(self.meta.get(&old).map_or(0, |m| m.pair))?;
            (p.instrument.lot_decimals, p.instrument.price_decimals)
        };
        Ok(json!({
            "status": "ok",
            "txid": new,
            "originaltxid": old,
            "volume": fixed(volume, lot),
            "price": fixed(price.unwrap_or_default(), dp),
            "price2": "0",
            "orders_cancelled": cancelled,
            "descr": placed.get("descr"),
        }))
    }

    /// The two ledger entries of a trade (base leg, quote leg).
    pub(super) fn ledger_ids_of(&self, trade_id: &str) -> Vec<String> {
        self.trades
            .iter()
            .position(|t| t.id == trade_id)
            .map(|i| vec![ledger_id(2 * i + 1), ledger_id(2 * i + 2)])
            .unwrap_or_default()
    }

    /// Every ledger entry, oldest first, with running balances.
    fn ledger(&self) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(self.trades.len() * 2);
        for (i, t) in self.trades.iter().enumerate() {
            let Some(p) = self.cfg.pairs.get(t.pair) else {
                continue;
            };
            let (base, quote) = match t.side {
                Side::Buy => (t.vol, -t.cost),
                Side::Sell => (-t.vol, t.cost),
            };
            let n = 2 * i + 1;
            let id = ledger_id;
            entries.push(Entry {
                id: id(n),
                refid: t.id.clone(),
                time_ms: t.time_ms,
                asset: p.instrument.base.clone(),
                amount: base,
                fee: Decimal::ZERO,
                balance: Decimal::ZERO,
            });
            entries.push(Entry {
                id: id(n + 1),
                refid: t.id.clone(),
                time_ms: t.time_ms,
                asset: p.instrument.quote.clone(),
                amount: quote,
                fee: t.fee,
                balance: Decimal::ZERO,
            });
        }
        // Balances, counted back from today's.
        let mut running: BTreeMap<String, Decimal> = self
            .ex
            .balances()
            .into_iter()
            .map(|b| (b.asset, b.total))
            .collect();
        for e in entries.iter_mut().rev() {
            let r = running.entry(e.asset.clone()).or_default();
            e.balance = *r;
            *r -= e.amount - e.fee;
        }
        entries
    }

    fn entry_json(&self, e: &Entry) -> Value {
        let code = self.asset_code(&e.asset);
        let dp = Self::asset_decimals(&code);
        json!({
            "refid": e.refid,
            "time": unix_secs(e.time_ms),
            "type": "trade",
            "subtype": "",
            "aclass": "currency",
            "asset": code,
            "amount": fixed(e.amount, dp),
            "fee": fixed(e.fee, dp),
            "balance": fixed(e.balance, dp),
        })
    }

    /// `start` / `end` of Ledgers: Unix seconds or a ledger id.
    fn ledger_bound(entries: &[Entry], f: &Form, key: &str) -> Result<Option<i64>, String> {
        match f.get(key) {
            None => Ok(None),
            Some(v) if v.starts_with('L') => {
                Ok(entries.iter().find(|e| e.id == v).map(|e| e.time_ms))
            }
            Some(v) => v
                .parse::<Decimal>()
                .map(|d| i64::try_from((d * Decimal::ONE_THOUSAND).trunc()).ok())
                .map_err(|_| invalid(key)),
        }
    }

    pub(super) fn ledgers(&self, f: &Form) -> Result<Value, String> {
        let entries = self.ledger();
        match f.get("type") {
            None | Some("all" | "trade") => {}
            Some(_) => return Ok(json!({ "ledger": {}, "count": 0 })),
        }
        if f.get("aclass").is_some_and(|a| a != "currency") {
            return Ok(json!({ "ledger": {}, "count": 0 }));
        }
        let wanted: Option<Vec<String>> = f.get("asset").filter(|a| *a != "all").map(|list| {
            list.split(',')
                .map(|a| a.trim().to_ascii_uppercase())
                .collect()
        });
        let start = Self::ledger_bound(&entries, f, "start")?;
        let end = Self::ledger_bound(&entries, f, "end")?;
        let ofs = usize::try_from(f.int("ofs")?.unwrap_or(0).max(0)).unwrap_or(0);
        let hits: Vec<&Entry> = entries
            .iter()
            .rev()
            .filter(|e| {
                let code = self.asset_code(&e.asset);
                wanted.as_ref().is_none_or(|w| {
                    w.iter()
                        .any(|a| *a == code || *a == e.asset || *a == more_alt(&code))
                })
            })
            .filter(|e| start.is_none_or(|s| e.time_ms > s) && end.is_none_or(|x| e.time_ms <= x))
            .collect();
        let count = hits.len();
        let mut out = Map::new();
        for e in hits.into_iter().skip(ofs).take(LEDGER_PAGE) {
            out.insert(e.id.clone(), self.entry_json(e));
        }
        if f.flag("without_count") {
            return Ok(json!({ "ledger": out }));
        }
        Ok(json!({ "ledger": out, "count": count }))
    }

    pub(super) fn query_ledgers(&self, f: &Form) -> Result<Value, String> {
        let list = f.get("id").ok_or_else(|| invalid("id"))?;
        let ids: Vec<&str> = list.split(',').map(str::trim).collect();
        if ids.len() > QUERY_LEDGERS_MAX {
            return Err(invalid("id"));
        }
        let entries = self.ledger();
        let mut out = Map::new();
        for id in ids {
            let e = entries
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| invalid("id"))?;
            out.insert(id.to_string(), self.entry_json(e));
        }
        Ok(Value::Object(out))
    }
}

/// The id of the `k`-th ledger entry (from 1).
fn ledger_id(k: usize) -> String {
    format!("L{:05}-SIMLG-{:06}", k / 1_000_000 % 100_000, k % 1_000_000)
}

/// An asset code's altname (`ZUSD` -> `USD`), as Assets shows it.
fn more_alt(code: &str) -> String {
    super::more::asset_altname(code)
}
