//! Rangers: standalone sell-first micro-cyclers (seed 000, grid-engine spec
//! section 4).
//!
//! A ranger sells a little DOGE just above market and buys it back lower:
//! `idle -> entry_open -> exit_open -> cooldown -> idle`. Rangers trade only
//! while the regime is RANGING (a detector that is not ready is not RANGING),
//! the pair has open-order headroom and the free DOGE left after the entry
//! stays above a reserve. An exit that does not fill in time is cancelled and
//! booked as an orphan (the DOGE stays sold: inventory converted to USD); a
//! regime shift or a runtime disable cancels everything and books orphans for
//! filled entries. Ranger state lives in memory only; a restarted engine
//! cancels what a previous run left ([`stale_ranger_orders`]) and starts
//! clean.
//!
//! [`Rangers`] is a pure reducer ([`Strategy`]): no I/O and no clock. It only
//! leaves a stage on what the venue confirms (a cancel is "requested" until
//! the order's final event arrives), so a cancel that races a fill books the
//! fill. Completed cycles and orphans go to the store's journal through
//! [`Action::Journal`].

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::capacity::{self, CapacityHealth};
use crate::capital::{Asset, CapitalError, CapitalLedger, FreeBalance};
use crate::strategy::{
    Action, IdGen, Instrument, MarketView, OrderIntent, OrderUpdate, Side, StatusBlock, Strategy,
    UpdateKind, Wake,
};

/// The strategy's name (status, journal owner).
pub const STRATEGY_NAME: &str = "rangers";
/// The journal stream cycles and orphans are written to.
pub const JOURNAL_STREAM: &str = "rangers";
/// Width of the rangers' userref sub-range; also the most rangers allowed.
pub const USERREF_SPAN: i32 = 100;
/// How long a requested cancel may go unconfirmed before it is sent again.
pub const CANCEL_RETRY_MS: i64 = 10_000;
/// How long to wait before re-placing an exit the gateway refused.
pub const EXIT_RETRY_MS: i64 = 5_000;
const DAY_MS: i64 = 86_400_000;

/// Profit floor over the round-trip fee, in percent (spec: fees + 0.20 %).
pub fn fee_floor_pct() -> Decimal {
    Decimal::new(20, 2)
}

/// The `[rangers]` config section (env: `RANGER_*`). Defaults are safe:
/// disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RangerConfig {
    /// Master switch (RANGER_ENABLED); also switchable at runtime.
    pub enabled: bool,
    /// How many rangers (RANGER_MAX_SLOTS), 1 to 100.
    pub max_slots: u32,
    /// USD value of one entry (RANGER_ORDER_SIZE_USD).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub order_size_usd: Decimal,
    /// Entry distance above market, percent (RANGER_ENTRY_PCT).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub entry_pct: Decimal,
    /// Target profit, percent; the exit margin is
    /// max(profit_pct, round-trip fee + 0.20) (RANGER_PROFIT_PCT).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub profit_pct: Decimal,
    /// An unfilled entry is cancelled after this long (RANGER_ENTRY_TIMEOUT_SEC).
    pub entry_timeout_sec: u64,
    /// An unfilled exit is orphaned after this long (RANGER_EXIT_TIMEOUT_SEC).
    pub exit_timeout_sec: u64,
    /// Pause after a cycle or an exit-timeout orphan (RANGER_COOLDOWN_SEC).
    pub cooldown_sec: u64,
    /// Open-order headroom needed to place an entry (RANGER_MIN_HEADROOM).
    pub min_headroom: u32,
    /// DOGE (base) that must stay free after an entry (RANGER_DOGE_RESERVE).
    #[serde(deserialize_with = "herd_types::decimal::deserialize")]
    pub doge_reserve: Decimal,
    /// Start of the rangers' userref sub-range, as an offset into the
    /// engine's range; ranger `n` uses `userref_offset + n`
    /// (RANGER_USERREF_OFFSET).
    pub userref_offset: i32,
}

impl Default for RangerConfig {
    fn default() -> RangerConfig {
        RangerConfig {
            enabled: false,
            max_slots: 3,
            order_size_usd: Decimal::new(200, 2),
            entry_pct: Decimal::new(15, 2),
            profit_pct: Decimal::new(120, 2),
            entry_timeout_sec: 300,
            exit_timeout_sec: 1350,
            cooldown_sec: 30,
            min_headroom: 10,
            doge_reserve: Decimal::from(100),
            userref_offset: 800,
        }
    }
}

/// Environment variables for the rangers (one place for their names).
pub mod env {
    pub const ENABLED: &str = "RANGER_ENABLED";
    pub const MAX_SLOTS: &str = "RANGER_MAX_SLOTS";
    pub const ORDER_SIZE_USD: &str = "RANGER_ORDER_SIZE_USD";
    pub const ENTRY_PCT: &str = "RANGER_ENTRY_PCT";
    pub const PROFIT_PCT: &str = "RANGER_PROFIT_PCT";
    pub const ENTRY_TIMEOUT_SEC: &str = "RANGER_ENTRY_TIMEOUT_SEC";
    pub const EXIT_TIMEOUT_SEC: &str = "RANGER_EXIT_TIMEOUT_SEC";
    pub const COOLDOWN_SEC: &str = "RANGER_COOLDOWN_SEC";
    pub const MIN_HEADROOM: &str = "RANGER_MIN_HEADROOM";
    pub const DOGE_RESERVE: &str = "RANGER_DOGE_RESERVE";
    pub const USERREF_OFFSET: &str = "RANGER_USERREF_OFFSET";
}

pub use crate::envvar::EnvError;
use crate::envvar::{parse as parse_env, parse_bool, parse_decimal};

impl RangerConfig {
    /// Applies `RANGER_*` overrides from `get` (the environment in production).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), EnvError> {
        if let Some(v) = get(env::ENABLED) {
            self.enabled = parse_bool(env::ENABLED, &v)?;
        }
        if let Some(v) = get(env::MAX_SLOTS) {
            self.max_slots = parse_env(env::MAX_SLOTS, &v)?;
        }
        if let Some(v) = get(env::ORDER_SIZE_USD) {
            self.order_size_usd = parse_decimal(env::ORDER_SIZE_USD, &v)?;
        }
        if let Some(v) = get(env::ENTRY_PCT) {
            self.entry_pct = parse_decimal(env::ENTRY_PCT, &v)?;
        }
        if let Some(v) = get(env::PROFIT_PCT) {
            self.profit_pct = parse_decimal(env::PROFIT_PCT, &v)?;
        }
        if let Some(v) = get(env::ENTRY_TIMEOUT_SEC) {
            self.entry_timeout_sec = parse_env(env::ENTRY_TIMEOUT_SEC, &v)?;
        }
        if let Some(v) = get(env::EXIT_TIMEOUT_SEC) {
            self.exit_timeout_sec = parse_env(env::EXIT_TIMEOUT_SEC, &v)?;
        }
        if let Some(v) = get(env::COOLDOWN_SEC) {
            self.cooldown_sec = parse_env(env::COOLDOWN_SEC, &v)?;
        }
        if let Some(v) = get(env::MIN_HEADROOM) {
            self.min_headroom = parse_env(env::MIN_HEADROOM, &v)?;
        }
        if let Some(v) = get(env::DOGE_RESERVE) {
            self.doge_reserve = parse_decimal(env::DOGE_RESERVE, &v)?;
        }
        if let Some(v) = get(env::USERREF_OFFSET) {
            self.userref_offset = parse_env(env::USERREF_OFFSET, &v)?;
        }
        Ok(())
    }

    /// Checks the knobs; the message names the knob and what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let span = u32::try_from(USERREF_SPAN).unwrap_or(100);
        if self.max_slots == 0 || self.max_slots > span {
            return Err(format!(
                "rangers.max_slots ({}): {} must be 1..={span}",
                env::MAX_SLOTS,
                self.max_slots
            ));
        }
        if self.order_size_usd <= Decimal::ZERO {
            return Err(format!(
                "rangers.order_size_usd ({}): {} must be greater than zero",
                env::ORDER_SIZE_USD,
                self.order_size_usd
            ));
        }
        if self.entry_pct < Decimal::ZERO || self.entry_pct >= Decimal::from(10) {
            return Err(format!(
                "rangers.entry_pct ({}): {} must be in [0, 10) percent",
                env::ENTRY_PCT,
                self.entry_pct
            ));
        }
        if self.profit_pct <= Decimal::ZERO || self.profit_pct >= Decimal::from(50) {
            return Err(format!(
                "rangers.profit_pct ({}): {} must be in (0, 50) percent",
                env::PROFIT_PCT,
                self.profit_pct
            ));
        }
        if self.entry_timeout_sec == 0 || self.exit_timeout_sec == 0 {
            return Err(format!(
                "rangers.entry_timeout_sec and exit_timeout_sec ({}, {}) must be >= 1",
                env::ENTRY_TIMEOUT_SEC,
                env::EXIT_TIMEOUT_SEC
            ));
        }
        if self.doge_reserve < Decimal::ZERO {
            return Err(format!(
                "rangers.doge_reserve ({}): {} must not be negative",
                env::DOGE_RESERVE,
                self.doge_reserve
            ));
        }
        if self.userref_offset < 1 || self.userref_offset > i32::MAX - USERREF_SPAN {
            return Err(format!(
                "rangers.userref_offset ({}): {} must be >= 1 (offset 0 is the engine's manual orders)",
                env::USERREF_OFFSET,
                self.userref_offset
            ));
        }
        Ok(())
    }
}

/// A ranger's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Idle,
    EntryOpen,
    ExitOpen,
    Cooldown,
}

impl Stage {
    /// The status name ("idle", "entry_open", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::EntryOpen => "entry_open",
            Stage::ExitOpen => "exit_open",
            Stage::Cooldown => "cooldown",
        }
    }
}

/// Why a ranger asked for a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    EntryTimeout,
    ExitTimeout,
    RegimeShift,
    Disabled,
}

impl CancelReason {
    fn as_str(self) -> &'static str {
        match self {
            CancelReason::EntryTimeout => "entry_timeout",
            CancelReason::ExitTimeout => "exit_timeout",
            CancelReason::RegimeShift => "regime_shift",
            CancelReason::Disabled => "disabled",
        }
    }

    /// A wind-down (regime shift, disable) goes idle and orphans fills.
    fn winds_down(self) -> bool {
        matches!(self, CancelReason::RegimeShift | CancelReason::Disabled)
    }
}

/// One order of a ranger and what has filled of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Leg {
    client_order_id: String,
    price: Decimal,
    volume: Decimal,
    executed: Decimal,
    /// Average fill price of `executed` (zero before any fill).
    average_price: Decimal,
    /// Fees paid so far, in the quote currency.
    fee_usd: Decimal,
    /// The venue acknowledged it (an Open or fill event arrived).
    acked: bool,
}

impl Leg {
    fn new(client_order_id: String, price: Decimal, volume: Decimal) -> Leg {
        Leg {
            client_order_id,
            price,
            volume,
            executed: Decimal::ZERO,
            average_price: Decimal::ZERO,
            fee_usd: Decimal::ZERO,
            acked: false,
        }
    }

    /// Folds a fill event in; fees charged in the base coin are valued at
    /// the fill price.
    fn apply_fill(&mut self, u: &OrderUpdate, base_asset: &str) {
        self.acked = true;
        if u.fill_volume <= Decimal::ZERO {
            return;
        }
        let price = if u.fill_price > Decimal::ZERO {
            u.fill_price
        } else {
            self.price
        };
        let executed = self.executed + u.fill_volume;
        self.average_price =
            (self.average_price * self.executed + price * u.fill_volume) / executed;
        self.executed = executed;
        self.fee_usd += if !base_asset.is_empty() && u.fee_asset == base_asset {
            u.fill_fee * price
        } else {
            u.fill_fee
        };
    }

    /// The price to report: the average fill once something filled.
    fn shown_price(&self) -> Decimal {
        if self.executed > Decimal::ZERO {
            self.average_price
        } else {
            self.price
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct PendingCancel {
    reason: CancelReason,
    sent_ms: i64,
}

/// The entry an idle ranger would place at one tick (the same for every
/// idle ranger of that tick).
#[derive(Debug, Clone, Copy)]
struct EntryPlan {
    price: Decimal,
    volume: Decimal,
    snapshot: Option<FreeBalance>,
}

/// A completed cycle's journal row. Its fields are declared in the order
/// of their names: the text is the one the `serde_json::json!` object it
/// replaced wrote (a map keeps its keys sorted), byte for byte
/// (`journal_rows_are_the_json_objects_they_replaced`).
#[derive(Debug, Serialize)]
struct CycleRow<'a> {
    entry_fee_usd: String,
    entry_filled_at_ms: Option<i64>,
    entry_order: &'a str,
    entry_price: String,
    exit_fee_usd: String,
    exit_order: &'a str,
    exit_price: String,
    gross_usd: String,
    net_usd: String,
    ranger_id: u32,
    time_ms: i64,
    volume: String,
}

/// An orphan's journal row, as [`CycleRow`]: fields in name order.
#[derive(Debug, Serialize)]
struct OrphanRow<'a> {
    entry_fee_usd: String,
    entry_filled_at_ms: Option<i64>,
    entry_order: &'a str,
    entry_price: String,
    exit_order: Option<&'a str>,
    exit_price: Option<String>,
    exposure_usd: String,
    market_price: Option<String>,
    orphan_volume: String,
    partial_profit_usd: String,
    ranger_id: u32,
    reason: &'a str,
    time_ms: i64,
}

/// `d.normalize().to_string()`, written directly: the digits of the
/// mantissa with the point placed by the scale (the journal rows write
/// nine of them each; the formatter was most of a row).
fn decimal_text(d: Decimal) -> String {
    let d = d.normalize();
    let m = d.mantissa().unsigned_abs();
    if m == 0 {
        return d.to_string();
    }
    let mut buf = [b'0'; 40];
    let at = crate::mantissa_digits(m, &mut buf);
    let digits = std::str::from_utf8(buf.get(at..).unwrap_or_default()).unwrap_or_default();
    let scale = usize::try_from(d.scale()).unwrap_or(0);
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if d.is_sign_negative() {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
    out
}

/// A row's compact JSON, as serde_json writes a struct: its fields in
/// order, strings escaped the same way.
struct JsonRow(String);

impl JsonRow {
    fn new() -> JsonRow {
        JsonRow(String::with_capacity(400))
    }

    fn key(&mut self, key: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    /// A string value: `"` and `\\` escaped, control characters as
    /// serde_json writes them (short forms, else `\u00xx`).
    fn str(&mut self, key: &str, v: &str) {
        self.key(key);
        let out = &mut self.0;
        out.push('"');
        // Ids and decimal texts need no escape: copied whole.
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push_str(v);
            out.push('"');
            return;
        }
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if u32::from(c) < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let b = u32::from(c);
                    out.push_str("\\u00");
                    for nibble in [b >> 4, b & 0xf] {
                        let digit = usize::try_from(nibble).unwrap_or(0);
                        out.push(char::from(HEX.get(digit).copied().unwrap_or(b'0')));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn opt_str(&mut self, key: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(key, v),
            None => {
                self.key(key);
                self.0.push_str("null");
            }
        }
    }

    fn int(&mut self, key: &str, v: impl std::fmt::Display) {
        use std::fmt::Write;
        self.key(key);
        let _ = write!(self.0, "{v}");
    }

    fn opt_int(&mut self, key: &str, v: Option<i64>) {
        match v {
            Some(v) => self.int(key, v),
            None => {
                self.key(key);
                self.0.push_str("null");
            }
        }
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl CycleRow<'_> {
    /// `serde_json::to_string(self)`, written directly.
    fn to_json(&self) -> String {
        let mut j = JsonRow::new();
        j.str("entry_fee_usd", &self.entry_fee_usd);
        j.opt_int("entry_filled_at_ms", self.entry_filled_at_ms);
        j.str("entry_order", self.entry_order);
        j.str("entry_price", &self.entry_price);
        j.str("exit_fee_usd", &self.exit_fee_usd);
        j.str("exit_order", self.exit_order);
        j.str("exit_price", &self.exit_price);
        j.str("gross_usd", &self.gross_usd);
        j.str("net_usd", &self.net_usd);
        j.int("ranger_id", self.ranger_id);
        j.int("time_ms", self.time_ms);
        j.str("volume", &self.volume);
        j.finish()
    }
}

impl OrphanRow<'_> {
    /// `serde_json::to_string(self)`, written directly.
    fn to_json(&self) -> String {
        let mut j = JsonRow::new();
        j.str("entry_fee_usd", &self.entry_fee_usd);
        j.opt_int("entry_filled_at_ms", self.entry_filled_at_ms);
        j.str("entry_order", self.entry_order);
        j.str("entry_price", &self.entry_price);
        j.opt_str("exit_order", self.exit_order);
        j.opt_str("exit_price", self.exit_price.as_deref());
        j.str("exposure_usd", &self.exposure_usd);
        j.opt_str("market_price", self.market_price.as_deref());
        j.str("orphan_volume", &self.orphan_volume);
        j.str("partial_profit_usd", &self.partial_profit_usd);
        j.int("ranger_id", self.ranger_id);
        j.str("reason", self.reason);
        j.int("time_ms", self.time_ms);
        j.finish()
    }
}

/// One ranger.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Slot {
    id: u32,
    stage: Stage,
    since_ms: i64,
    entry: Option<Leg>,
    exit: Option<Leg>,
    /// The exit price the margin asks for (the order may rest lower).
    exit_target: Option<Decimal>,
    entry_filled_at_ms: Option<i64>,
    cancel: Option<PendingCancel>,
    /// Earliest time to re-place a refused exit.
    retry_at_ms: i64,
    last_error: LastError,
}

/// A ranger's last error. A refused reservation is kept as the refusal and
/// formatted only when the status shows it: a ranger below its reserve is
/// refused at every tick, and formatting the message each time was a
/// measurable share of a long backtest.
#[derive(Debug, Clone, Default)]
enum LastError {
    #[default]
    None,
    Text(String),
    /// The DOGE reserve gate refused an entry.
    Reserve(CapitalError),
    /// The DOGE reserve gate refused an entry that an f64 screen found
    /// larger than what was left over the reserve
    /// ([`Rangers::screened_refusal`]): the entry's exact volume, which the
    /// refusal names, is worked out only when read ([`LastError::exact`]).
    Screened(ScreenedRefusal),
}

/// What a screened refusal needs to name the exact entry: the plan's
/// inputs (as [`entry_price_volume`] takes them) and the ledger's
/// available DOGE.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScreenedRefusal {
    last: Decimal,
    ask: Decimal,
    entry_pct: Decimal,
    order_size_usd: Decimal,
    tick_size: Decimal,
    lot_decimals: u32,
    available: Decimal,
    keep: Decimal,
}

impl PartialEq for LastError {
    /// Equal when they read the same: a screened refusal is the refusal
    /// the exact path records.
    fn eq(&self, other: &LastError) -> bool {
        match (self.exact(), other.exact()) {
            (LastError::None, LastError::None) => true,
            (LastError::Text(a), LastError::Text(b)) => a == b,
            (LastError::Reserve(a), LastError::Reserve(b)) => a == b,
            _ => false,
        }
    }
}

impl LastError {
    fn set(&mut self, text: String) {
        *self = LastError::Text(text);
    }

    fn clear(&mut self) {
        *self = LastError::None;
    }

    /// `self.set(text.to_string())`, into the text's buffer when it has one.
    fn set_str(&mut self, text: &str) {
        match self {
            LastError::Text(t) => {
                t.clear();
                t.push_str(text);
            }
            other => *other = LastError::Text(text.to_string()),
        }
    }

    /// The refusal of a regime that is not RANGING ("regime X is not
    /// RANGING"), written only when it is not already the text: winding
    /// down, every idle ranger is told at every tick.
    fn set_regime(&mut self, regime: &str) {
        if let LastError::Text(t) = self {
            let named = t
                .strip_prefix("regime ")
                .and_then(|r| r.strip_suffix(" is not RANGING"));
            if named == Some(regime) {
                return;
            }
        }
        self.set(format!("regime {regime} is not RANGING"));
    }

    /// `*self = LastError::Screened(r)`, in place when it is one.
    fn set_screened(&mut self, r: ScreenedRefusal) {
        match self {
            LastError::Screened(a) => *a = r,
            other => *other = LastError::Screened(r),
        }
    }

    /// `*self = e.clone()`, reusing what it holds: a ranger the reserve
    /// refuses at every tick is written the same kind of error each time.
    fn assign(&mut self, e: &LastError) {
        match (self, e) {
            (LastError::Screened(a), LastError::Screened(b)) => *a = *b,
            (LastError::Text(a), LastError::Text(b)) => a.clone_from(b),
            (s, e) => *s = e.clone(),
        }
    }

    /// The text the status shows.
    fn text(&self) -> String {
        match self {
            LastError::None => String::new(),
            LastError::Text(t) => t.clone(),
            LastError::Reserve(e) => format!("DOGE reserve gate: {e}"),
            LastError::Screened(_) => self.exact().text(),
        }
    }

    /// The error the exact path records: a screened refusal becomes the
    /// ledger's refusal of the entry's exact volume.
    fn exact(&self) -> LastError {
        match self {
            LastError::Screened(r) => {
                let (_, volume) = entry_price_volume(
                    r.last,
                    r.ask,
                    r.entry_pct,
                    r.order_size_usd,
                    r.tick_size,
                    r.lot_decimals,
                );
                LastError::Reserve(CapitalError::Insufficient {
                    asset: Asset::Base,
                    available: r.available,
                    amount: volume,
                    keep: r.keep,
                })
            }
            other => other.clone(),
        }
    }
}

impl Serialize for LastError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl Slot {
    fn new(id: u32) -> Slot {
        Slot {
            id,
            stage: Stage::Idle,
            since_ms: 0,
            entry: None,
            exit: None,
            exit_target: None,
            entry_filled_at_ms: None,
            cancel: None,
            retry_at_ms: 0,
            last_error: LastError::None,
        }
    }

    fn go(&mut self, stage: Stage, now_ms: i64) {
        self.stage = stage;
        self.since_ms = now_ms;
        self.cancel = None;
    }

    /// Live orders (entry or exit) of this ranger.
    fn open_orders(&self) -> u32 {
        match self.stage {
            Stage::EntryOpen => u32::from(self.entry.is_some()),
            Stage::ExitOpen => u32::from(self.exit.is_some()),
            Stage::Idle | Stage::Cooldown => 0,
        }
    }
}

/// One ranger in the status block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangerSlotStatus {
    pub ranger_id: u32,
    pub stage: String,
    pub entry_price: Option<Decimal>,
    pub exit_price: Option<Decimal>,
    pub entry_volume: Option<Decimal>,
    pub age_sec: f64,
    pub last_error: String,
    /// "active" (green), "idle" (gray) or "amber" (an exit near its timeout).
    #[serde(default)]
    pub badge: String,
    /// The timeout of the stage the ranger is in, seconds (0: none).
    #[serde(default)]
    pub timeout_sec: u64,
    /// Seconds left before that timeout; `None` for a stage without one.
    #[serde(default)]
    pub remaining_sec: Option<f64>,
}

/// A ranger in `exit_open` turns amber once this share of its exit timeout
/// has passed (1350 s default: amber for the last 270 s).
pub const NEAR_EXIT_TIMEOUT_SHARE: f64 = 0.8;

/// The rangers' stage timeouts, as the status shows them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RangerTiming {
    pub entry_timeout_sec: u64,
    pub exit_timeout_sec: u64,
    pub cooldown_sec: u64,
    pub near_exit_timeout_share: f64,
}

impl RangerTiming {
    pub fn from_config(cfg: &RangerConfig) -> RangerTiming {
        RangerTiming {
            entry_timeout_sec: cfg.entry_timeout_sec,
            exit_timeout_sec: cfg.exit_timeout_sec,
            cooldown_sec: cfg.cooldown_sec,
            near_exit_timeout_share: NEAR_EXIT_TIMEOUT_SHARE,
        }
    }

    /// The timeout of a stage in seconds (0 = the stage has none).
    pub fn of_stage(&self, stage: &str) -> u64 {
        match stage {
            "entry_open" => self.entry_timeout_sec,
            "exit_open" => self.exit_timeout_sec,
            "cooldown" => self.cooldown_sec,
            _ => 0,
        }
    }
}

/// A ranger's badge on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    /// Green: working (an order out, or cooling down after a cycle).
    Active,
    /// Gray: idle, or the rangers are disabled.
    Idle,
    /// Amber: an exit close to its timeout (it will be orphaned).
    NearTimeout,
}

impl Badge {
    pub fn as_str(self) -> &'static str {
        match self {
            Badge::Active => "active",
            Badge::Idle => "idle",
            Badge::NearTimeout => "amber",
        }
    }
}

/// The badge of one ranger.
pub fn ranger_badge(enabled: bool, stage: &str, age_sec: f64, timing: &RangerTiming) -> Badge {
    if !enabled || stage.is_empty() || stage == "idle" {
        return Badge::Idle;
    }
    let exit_timeout = timing.exit_timeout_sec as f64;
    if stage == "exit_open"
        && exit_timeout > 0.0
        && age_sec >= exit_timeout * timing.near_exit_timeout_share
    {
        return Badge::NearTimeout;
    }
    Badge::Active
}

/// The rangers' status block: exactly the seed's fields, then extras for
/// operators (the typed `RangersStatus` in GetStatus carries the former).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangersStatusBlock {
    pub enabled: bool,
    /// Rangers not idle.
    pub active: u32,
    pub regime_ok: bool,
    pub cycles_today: u32,
    pub profit_today: Decimal,
    pub orphans_today: u32,
    pub orphan_exposure_usd: Decimal,
    pub doge_reserve: Decimal,
    pub slots: Vec<RangerSlotStatus>,
    #[serde(default)]
    pub regime: String,
    #[serde(default)]
    pub cycles_total: u64,
    #[serde(default)]
    pub profit_total: Decimal,
    #[serde(default)]
    pub capacity: Option<CapacityHealth>,
    #[serde(default)]
    pub committed_base: Decimal,
    #[serde(default)]
    pub committed_quote: Decimal,
    #[serde(default)]
    pub exit_margin_pct: Option<Decimal>,
    #[serde(default)]
    pub timing: RangerTiming,
    /// The capital ledger: funds promised to each working entry (checked
    /// against the orders by the chaos soak).
    #[serde(default)]
    pub capital: CapitalLedger,
}

impl RangersStatusBlock {
    /// The block of an engine without rangers: everything off and zero.
    pub fn disabled(cfg: &RangerConfig) -> RangersStatusBlock {
        RangersStatusBlock {
            enabled: false,
            active: 0,
            regime_ok: false,
            cycles_today: 0,
            profit_today: Decimal::ZERO,
            orphans_today: 0,
            orphan_exposure_usd: Decimal::ZERO,
            doge_reserve: cfg.doge_reserve,
            slots: Vec::new(),
            regime: String::new(),
            cycles_total: 0,
            profit_total: Decimal::ZERO,
            capacity: None,
            committed_base: Decimal::ZERO,
            committed_quote: Decimal::ZERO,
            exit_margin_pct: None,
            timing: RangerTiming::from_config(cfg),
            capital: CapitalLedger::new(),
        }
    }
}

/// The rangers reducer.
#[derive(Debug, Clone)]
pub struct Rangers {
    cfg: RangerConfig,
    symbol: String,
    enabled: bool,
    ids: IdGen,
    slots: Vec<Slot>,
    ledger: CapitalLedger,
    market: Option<MarketView>,
    /// The last instrument seen, kept here only while the kept market
    /// view has none (see [`Rangers::instrument`]).
    instrument: Option<Instrument>,
    capacity: Option<CapacityHealth>,
    /// The screen's terms for the kept view's instrument and the config,
    /// kept while neither changes (a tick whose instrument is not the kept
    /// one, and a reconfigure, drop them).
    screen_terms: Option<ScreenTerms>,
    regime_ok: bool,
    day: i64,
    cycles_today: u32,
    profit_today: Decimal,
    orphans_today: u32,
    orphan_exposure_usd: Decimal,
    cycles_total: u64,
    profit_total: Decimal,
    /// Tests: each idle ranger works out its own entry (the way before the
    /// tick shared the plan), to compare the two.
    #[cfg(test)]
    per_slot_entries: bool,
    /// Tests: the instrument kept the way before [`Rangers::instrument`].
    #[cfg(test)]
    instrument_as_before: Option<Instrument>,
}

/// An entry's price and volume at a last price and ask: `entry_pct` above
/// the last, up to the tick, at least the ask (a post-only sell must rest
/// above the bid), for `order_size_usd` in whole lots.
fn entry_price_volume(
    last: Decimal,
    ask: Decimal,
    entry_pct: Decimal,
    order_size_usd: Decimal,
    tick_size: Decimal,
    lot_decimals: u32,
) -> (Decimal, Decimal) {
    let raw = last * (Decimal::ONE + entry_pct / hundred());
    let price = ceil_to_tick(raw, tick_size).max(ask);
    let volume = floor_lot(order_size_usd / price, lot_decimals);
    (price, volume)
}

/// Powers of ten as f64 (each the nearest f64 to it).
const POW10: [f64; 29] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28,
];

/// `d` as f64 within a few ulps (for screens with a far wider margin).
fn approx(d: Decimal) -> f64 {
    let scale = usize::try_from(d.scale()).unwrap_or(28).min(28);
    crate::mantissa_f64(d) / POW10[scale]
}

/// The screens' relative margin: far above the f64 rounding of the few
/// operations they make, far below anything a real refusal is decided by.
const SCREEN_MARGIN: f64 = 1e-9;

/// The terms of [`Rangers::screened_refusal`] that only the config and
/// the instrument set, each the f64 the screen worked out at every tick
/// (the same operations on the same inputs).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScreenTerms {
    /// 1 + entry_pct / 100.
    entry_factor: f64,
    tick: f64,
    /// The order size, less the margin.
    order: f64,
    /// One lot, plus the margin.
    lot: f64,
    min_volume: f64,
    min_cost: f64,
    /// The tick is above zero (the screen needs one).
    tick_positive: bool,
}

impl ScreenTerms {
    fn new(cfg: &RangerConfig, inst: &Instrument) -> Option<ScreenTerms> {
        let m = SCREEN_MARGIN;
        Some(ScreenTerms {
            entry_factor: 1.0 + approx(cfg.entry_pct) / 100.0,
            tick: approx(inst.tick_size),
            order: approx(cfg.order_size_usd) * (1.0 - m),
            lot: 1.0 / POW10[usize::try_from(inst.lot_decimals).ok()?.min(28)] * (1.0 + m),
            min_volume: approx(inst.min_volume),
            min_cost: approx(inst.min_cost),
            tick_positive: inst.tick_size > Decimal::ZERO,
        })
    }
}

fn ceil_to_tick(p: Decimal, tick: Decimal) -> Decimal {
    if tick <= Decimal::ZERO {
        return p;
    }
    ((p / tick).ceil() * tick).normalize()
}

fn floor_to_tick(p: Decimal, tick: Decimal) -> Decimal {
    if tick <= Decimal::ZERO {
        return p;
    }
    ((p / tick).floor() * tick).normalize()
}

fn floor_lot(v: Decimal, lot_decimals: u32) -> Decimal {
    v.round_dp_with_strategy(lot_decimals, RoundingStrategy::ToZero)
        .normalize()
}

fn hundred() -> Decimal {
    Decimal::from(100)
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Is `client_order_id` a ranger's ("r<n>e-..." entry, "r<n>x-..." exit)?
pub fn is_ranger_client_id(client_order_id: &str) -> bool {
    let Some(rest) = client_order_id.strip_prefix('r') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits..), Some([b'e' | b'x', b'-', ..]))
}

pub use crate::strategy::OpenOrderRef;

/// Startup cleanup: the open orders a previous run's rangers left on
/// `symbol`, recognised by the rangers' userref sub-range of this engine
/// (`userref_min + offset .. + USERREF_SPAN`), whatever `max_slots` was then,
/// or, when the gateway does not know an order's userref (0: on Kraken an
/// order carries its cl_ord_id and no userref, so a gateway restarted since
/// the place lists it without one), by the rangers' client id
/// ([`is_ranger_client_id`]). Found by the chaos soak: exits placed just
/// before a gateway kill -9 stayed open, unowned, after the engine's restart.
pub fn stale_ranger_orders(
    open: &[OpenOrderRef],
    symbol: &str,
    userref_min: i32,
    userref_offset: i32,
) -> Vec<String> {
    let lo = userref_min.saturating_add(userref_offset);
    let hi = lo.saturating_add(USERREF_SPAN);
    open.iter()
        .filter(|o| {
            o.symbol == symbol
                && ((lo..hi).contains(&o.userref)
                    || (o.userref == 0 && is_ranger_client_id(&o.client_order_id)))
        })
        .map(|o| o.client_order_id.clone())
        .collect()
}

impl Rangers {
    /// Rangers for `symbol`; `run_start_ms` seeds their client order ids.
    pub fn new(cfg: RangerConfig, symbol: &str, run_start_ms: i64) -> Rangers {
        let slots = (0..cfg.max_slots).map(Slot::new).collect();
        Rangers {
            enabled: cfg.enabled,
            symbol: symbol.to_string(),
            ids: IdGen::new(run_start_ms),
            slots,
            ledger: CapitalLedger::new(),
            market: None,
            instrument: None,
            capacity: None,
            screen_terms: None,
            regime_ok: false,
            day: run_start_ms.div_euclid(DAY_MS),
            cycles_today: 0,
            profit_today: Decimal::ZERO,
            orphans_today: 0,
            orphan_exposure_usd: Decimal::ZERO,
            cycles_total: 0,
            profit_total: Decimal::ZERO,
            #[cfg(test)]
            per_slot_entries: false,
            #[cfg(test)]
            instrument_as_before: None,
            cfg,
        }
    }

    /// The typed status block.
    pub fn status_block(&self, now_ms: i64) -> RangersStatusBlock {
        let timing = RangerTiming::from_config(&self.cfg);
        RangersStatusBlock {
            enabled: self.enabled,
            active: u32::try_from(self.slots.iter().filter(|s| s.stage != Stage::Idle).count())
                .unwrap_or(u32::MAX),
            regime_ok: self.regime_ok,
            cycles_today: self.cycles_today,
            profit_today: self.profit_today,
            orphans_today: self.orphans_today,
            orphan_exposure_usd: self.orphan_exposure_usd,
            doge_reserve: self.cfg.doge_reserve,
            slots: self
                .slots
                .iter()
                .map(|s| {
                    // Display only: seconds as a float.
                    let age_sec = if s.since_ms > 0 {
                        (now_ms - s.since_ms) as f64 / 1000.0
                    } else {
                        0.0
                    };
                    let stage = s.stage.as_str();
                    let timeout_sec = timing.of_stage(stage);
                    RangerSlotStatus {
                        ranger_id: s.id,
                        stage: stage.to_string(),
                        entry_price: s.entry.as_ref().map(Leg::shown_price),
                        exit_price: s.exit.as_ref().map(Leg::shown_price).or(s.exit_target),
                        entry_volume: s.entry.as_ref().map(|e| {
                            if e.executed > Decimal::ZERO {
                                e.executed
                            } else {
                                e.volume
                            }
                        }),
                        age_sec,
                        last_error: s.last_error.text(),
                        badge: ranger_badge(self.enabled, stage, age_sec, &timing)
                            .as_str()
                            .to_string(),
                        timeout_sec,
                        remaining_sec: (timeout_sec > 0)
                            .then(|| (timeout_sec as f64 - age_sec).max(0.0)),
                    }
                })
                .collect(),
            regime: self
                .market
                .as_ref()
                .map(|m| {
                    if m.regime.ready {
                        m.regime.regime.clone()
                    } else {
                        "not_ready".to_string()
                    }
                })
                .unwrap_or_default(),
            cycles_total: self.cycles_total,
            profit_total: self.profit_total,
            capacity: self.capacity.clone(),
            committed_base: self.ledger.committed(Asset::Base),
            committed_quote: self.ledger.committed(Asset::Quote),
            exit_margin_pct: self.instrument().map(|i| self.exit_margin_pct(i)),
            timing,
            capital: self.ledger.clone(),
        }
    }

    /// Whether the DOGE reserve gate refuses an entry of any size at every
    /// tick the wake covers (same free balance, later time, any price): the
    /// most the ledger can find available later is the free DOGE minus the
    /// reservations not yet acknowledged (acknowledged holds stop counting
    /// once the snapshot is newer than their ack), and an entry has a
    /// positive volume, so nothing at or below the reserve passes. An entry
    /// that reaches the gate also has at least the instrument's minimum
    /// volume (a smaller one is refused before it), so nothing passes
    /// either while less than that minimum is left over the reserve.
    fn reserve_refuses_every_entry(&self) -> bool {
        let Some(m) = &self.market else {
            return false;
        };
        let Some(free) = m.free_base else {
            // An unknown balance refuses every reservation.
            return true;
        };
        let most = free - self.ledger.reserved(Asset::Base);
        if most <= self.cfg.doge_reserve {
            return true;
        }
        #[cfg(test)]
        if self.per_slot_entries {
            return false;
        }
        m.instrument.as_ref().is_some_and(|i| {
            i.min_volume > Decimal::ZERO && most - i.min_volume < self.cfg.doge_reserve
        })
    }

    /// The exit margin in percent: max(profit_pct, round trip + 0.20).
    pub fn exit_margin_pct(&self, inst: &Instrument) -> Decimal {
        let round_trip = inst.maker_fee * Decimal::TWO * hundred();
        self.cfg.profit_pct.max(round_trip + fee_floor_pct())
    }

    fn roll_day(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.cycles_today = 0;
            self.profit_today = Decimal::ZERO;
            self.orphans_today = 0;
            self.orphan_exposure_usd = Decimal::ZERO;
        }
    }

    /// The last instrument a tick brought: the kept view's, or, while
    /// that has none, the one kept from before. (The view keeps its own
    /// copy; a second copy compared and kept at every tick was a tenth of
    /// the rangers' tick.)
    fn instrument(&self) -> Option<&Instrument> {
        match self.market.as_ref().and_then(|m| m.instrument.as_ref()) {
            Some(i) => Some(i),
            None => self.instrument.as_ref(),
        }
    }

    fn open_orders(&self) -> u32 {
        self.slots.iter().map(Slot::open_orders).sum()
    }

    fn base_asset(&self) -> String {
        self.instrument()
            .map(|i| i.base.clone())
            .unwrap_or_default()
    }

    /// Asks for a cancel of `client_order_id`, or repeats one that went
    /// unconfirmed for [`CANCEL_RETRY_MS`]. A wind-down overrides a timeout.
    fn request_cancel(
        &mut self,
        i: usize,
        client_order_id: String,
        reason: CancelReason,
        now_ms: i64,
    ) -> Vec<Action> {
        let slot = &mut self.slots[i];
        match &mut slot.cancel {
            None => {
                slot.cancel = Some(PendingCancel {
                    reason,
                    sent_ms: now_ms,
                });
                vec![Action::Cancel { client_order_id }]
            }
            Some(c) => {
                if reason.winds_down() {
                    c.reason = reason;
                }
                if now_ms - c.sent_ms >= CANCEL_RETRY_MS {
                    c.sent_ms = now_ms;
                    vec![Action::Cancel { client_order_id }]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Regime shift or disable: cancel what is live, go idle.
    fn wind_down(&mut self, i: usize, reason: CancelReason, now_ms: i64) -> Vec<Action> {
        let slot = &self.slots[i];
        match slot.stage {
            Stage::Idle => Vec::new(),
            Stage::Cooldown => {
                self.slots[i].go(Stage::Idle, now_ms);
                Vec::new()
            }
            Stage::EntryOpen => match slot.entry.as_ref().map(|e| e.client_order_id.clone()) {
                Some(id) => self.request_cancel(i, id, reason, now_ms),
                None => {
                    self.slots[i].go(Stage::Idle, now_ms);
                    Vec::new()
                }
            },
            Stage::ExitOpen => match slot.exit.as_ref().map(|e| e.client_order_id.clone()) {
                Some(id) => self.request_cancel(i, id, reason, now_ms),
                None => {
                    let out = self.book_orphan(i, reason.as_str(), now_ms);
                    self.slots[i].go(Stage::Idle, now_ms);
                    out
                }
            },
        }
    }

    /// Timeouts, cancel retries, exit re-placement, end of cooldown.
    fn timers(&mut self, i: usize, now_ms: i64) -> Vec<Action> {
        let slot = &self.slots[i];
        match slot.stage {
            Stage::Idle => Vec::new(),
            Stage::Cooldown => {
                if now_ms - slot.since_ms >= secs_ms(self.cfg.cooldown_sec) {
                    self.slots[i].go(Stage::Idle, now_ms);
                }
                Vec::new()
            }
            Stage::EntryOpen => {
                // The id is copied only for a cancel.
                let Some(id) = slot.entry.as_ref().map(|e| e.client_order_id.as_str()) else {
                    self.slots[i].go(Stage::Idle, now_ms);
                    return Vec::new();
                };
                if let Some(c) = slot.cancel {
                    let id = id.to_owned();
                    self.request_cancel(i, id, c.reason, now_ms)
                } else if now_ms - slot.since_ms >= secs_ms(self.cfg.entry_timeout_sec) {
                    let id = id.to_owned();
                    self.request_cancel(i, id, CancelReason::EntryTimeout, now_ms)
                } else {
                    Vec::new()
                }
            }
            Stage::ExitOpen => {
                let filled_at = slot.entry_filled_at_ms.unwrap_or(slot.since_ms);
                let timed_out = now_ms - filled_at >= secs_ms(self.cfg.exit_timeout_sec);
                // The id is copied only for a cancel.
                match (
                    slot.exit.as_ref().map(|e| e.client_order_id.as_str()),
                    slot.cancel,
                ) {
                    (Some(id), Some(c)) => {
                        let id = id.to_owned();
                        self.request_cancel(i, id, c.reason, now_ms)
                    }
                    (Some(id), None) if timed_out => {
                        let id = id.to_owned();
                        self.request_cancel(i, id, CancelReason::ExitTimeout, now_ms)
                    }
                    (Some(_), None) => Vec::new(),
                    (None, _) if timed_out => {
                        let out = self.book_orphan(i, CancelReason::ExitTimeout.as_str(), now_ms);
                        self.slots[i].go(Stage::Cooldown, now_ms);
                        out
                    }
                    (None, _) if now_ms >= slot.retry_at_ms => self.place_exit(i, now_ms),
                    (None, _) => Vec::new(),
                }
            }
        }
    }

    /// New entries for idle rangers, within the gates and the per-loop cap.
    fn entries(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        // The idle rangers are read as the loop reaches them: an entry
        // changes only its own ranger's stage, so the later ones read as
        // they did at the start (no list allocated at every tick).
        if !self.slots.iter().any(|s| s.stage == Stage::Idle) {
            return Vec::new();
        }
        let gate = match &self.capacity {
            None => Err("instrument filters unknown (no capacity reading)".to_string()),
            Some(c) if c.headroom < i64::from(self.cfg.min_headroom) => Err(format!(
                "headroom {} < min headroom {}",
                c.headroom, self.cfg.min_headroom
            )),
            Some(c) => Ok(c.entries_allowed),
        };
        let mut budget = match gate {
            Ok(n) => n,
            Err(e) => {
                for slot in &mut self.slots {
                    if slot.stage == Stage::Idle {
                        slot.last_error.set_str(&e);
                    }
                }
                return Vec::new();
            }
        };
        // The screen's refusal is every idle ranger's (a refusal takes
        // nothing from the budget): written over each one's last error in
        // place, with no plan kept.
        #[cfg(test)]
        let shared = !self.per_slot_entries;
        #[cfg(not(test))]
        let shared = true;
        if shared && budget > 0 && self.screen_terms.is_none() {
            self.screen_terms = market
                .instrument
                .as_ref()
                .and_then(|i| ScreenTerms::new(&self.cfg, i));
        }
        if shared
            && budget > 0
            && let Some(r) = self.screened_refusal(market)
        {
            for slot in &mut self.slots {
                if slot.stage == Stage::Idle {
                    slot.last_error.set_screened(r);
                }
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        // Every idle ranger of this tick sees the same market, so the
        // entry's price and volume (or why there is none) are worked out
        // once; and a reservation the ledger refused stays refused for the
        // next ranger while nothing has changed the ledger (a refusal
        // records nothing; an accepted entry's hold drops the kept refusal).
        let mut plan: Option<Result<EntryPlan, LastError>> = None;
        let mut refused: Option<CapitalError> = None;
        for i in 0..self.slots.len() {
            if self.slots[i].stage != Stage::Idle {
                continue;
            }
            if budget == 0 {
                break;
            }
            #[cfg(test)]
            if self.per_slot_entries {
                match self.try_entry(i, market, now_ms) {
                    Ok(a) => {
                        out.push(a);
                        budget -= 1;
                    }
                    Err(e) => self.slots[i].last_error = e,
                }
                continue;
            }
            // The screen refused nothing: the exact plan decides.
            let plan = plan.get_or_insert_with(|| self.entry_plan(market));
            // A refusal is written over the ranger's last error in place
            // (the same kind at every tick the reserve refuses).
            let result = match (&*plan, &refused) {
                (Err(e), _) => {
                    self.slots[i].last_error.assign(e);
                    continue;
                }
                (Ok(_), Some(e)) => Err(LastError::Reserve(e.clone())),
                (Ok(p), None) => match self.check_entry(p) {
                    Err(e) => {
                        refused = Some(e.clone());
                        Err(LastError::Reserve(e))
                    }
                    Ok(()) => self.place_entry(i, p, now_ms),
                },
            };
            match result {
                Ok(a) => {
                    out.push(a);
                    budget -= 1;
                }
                Err(e) => self.slots[i].last_error = e,
            }
        }
        out
    }

    /// An entry for idle ranger `i`, or why not: the plan, the ledger's
    /// check, the order. (The tick shares the plan and a refusal between
    /// its idle rangers instead; the tests compare the two.)
    #[cfg(test)]
    fn try_entry(
        &mut self,
        i: usize,
        market: &MarketView,
        now_ms: i64,
    ) -> Result<Action, LastError> {
        let plan = self.entry_plan(market)?;
        self.check_entry(&plan).map_err(LastError::Reserve)?;
        self.place_entry(i, &plan, now_ms)
    }

    /// The reserve gate's refusal of this tick's entry when an f64 screen
    /// can tell it without the exact entry: the entry passes the venue
    /// minimums (volume and cost) and is larger than the DOGE left over the
    /// reserve, each with a margin ([`SCREEN_MARGIN`]) the screen's
    /// rounding cannot cross. `None`: the exact path decides (an unknown
    /// instrument, price or balance, a zero tick, or anything too close).
    /// Later in a long run the free DOGE sits just over the reserve and
    /// every tick's entry is refused: the exact price and volume were most
    /// of the rangers' tick.
    fn screened_refusal(&self, market: &MarketView) -> Option<ScreenedRefusal> {
        let inst = market.instrument.as_ref()?;
        let free = market.free_base?;
        let terms = match self.screen_terms {
            Some(t) => t,
            None => ScreenTerms::new(&self.cfg, inst)?,
        };
        if market.last <= Decimal::ZERO || !terms.tick_positive {
            return None;
        }
        let available = self.ledger.available(
            Asset::Base,
            Some(FreeBalance {
                free,
                as_of_ms: market.balances_as_of_ms,
            }),
        )?;
        let keep = self.cfg.doge_reserve;
        let m = SCREEN_MARGIN;
        let ScreenTerms {
            entry_factor,
            tick,
            order,
            lot,
            min_volume,
            min_cost,
            tick_positive: _,
        } = terms;
        let raw = approx(market.last) * entry_factor;
        let ask = approx(market.ask);
        // The price is at most the raw price plus a tick, or the ask.
        let price_hi = (raw + tick).max(ask) * (1.0 + m);
        // The volume loses less than a lot to the rounding down.
        let volume_lo = order / price_hi - lot;
        let over = approx(available - keep);
        let passes_minimums = volume_lo * (1.0 - m) > min_volume.max(0.0) * (1.0 + m)
            && order - lot * price_hi > min_cost + min_cost.abs() * m;
        let refused = volume_lo * (1.0 - m) > over + over.abs() * m;
        (price_hi.is_finite() && passes_minimums && refused).then_some(ScreenedRefusal {
            last: market.last,
            ask: market.ask,
            entry_pct: self.cfg.entry_pct,
            order_size_usd: self.cfg.order_size_usd,
            tick_size: inst.tick_size,
            lot_decimals: inst.lot_decimals,
            available,
            keep,
        })
    }

    /// The entry any idle ranger would place at this market, or why none
    /// can. Every refusal that can be known before the order exists
    /// (filters, minimums, then the DOGE reserve in [`Rangers::check_entry`])
    /// comes before its client id is taken, so a refused try leaves no
    /// trace but the slot's `last_error` (and such ticks can sleep: see
    /// [`Strategy::wake`]).
    fn entry_plan(&self, market: &MarketView) -> Result<EntryPlan, LastError> {
        let text = |t: String| LastError::Text(t);
        let inst = market
            .instrument
            .as_ref()
            .ok_or_else(|| text("instrument filters unknown".to_string()))?;
        if market.last <= Decimal::ZERO {
            return Err(text("no market price".into()));
        }
        let (price, volume) = entry_price_volume(
            market.last,
            market.ask,
            self.cfg.entry_pct,
            self.cfg.order_size_usd,
            inst.tick_size,
            inst.lot_decimals,
        );
        if volume < inst.min_volume || volume <= Decimal::ZERO {
            return Err(text(format!(
                "entry volume {volume} is below the minimum {} (order size ${})",
                inst.min_volume, self.cfg.order_size_usd
            )));
        }
        if volume * price < inst.min_cost {
            return Err(text(format!(
                "entry cost {} is below the minimum {}",
                volume * price,
                inst.min_cost
            )));
        }
        let snapshot = market.free_base.map(|free| FreeBalance {
            free,
            as_of_ms: market.balances_as_of_ms,
        });
        Ok(EntryPlan {
            price,
            volume,
            snapshot,
        })
    }

    /// The DOGE reserve gate for a planned entry (records nothing).
    fn check_entry(&self, plan: &EntryPlan) -> Result<(), CapitalError> {
        self.ledger.check(
            Asset::Base,
            plan.volume,
            self.cfg.doge_reserve,
            plan.snapshot,
        )
    }

    /// Places a planned entry the reserve gate passed for idle ranger `i`:
    /// its client id, its hold, the slot's new stage.
    fn place_entry(
        &mut self,
        i: usize,
        plan: &EntryPlan,
        now_ms: i64,
    ) -> Result<Action, LastError> {
        let EntryPlan {
            price,
            volume,
            snapshot,
        } = *plan;
        let id = self.ids.next(&format!("r{}e", self.slots[i].id));
        self.ledger
            .reserve(
                &id,
                Asset::Base,
                volume,
                self.cfg.doge_reserve,
                snapshot,
                now_ms,
            )
            .map_err(LastError::Reserve)?;
        let slot = &mut self.slots[i];
        slot.go(Stage::EntryOpen, now_ms);
        slot.entry = Some(Leg::new(id.clone(), price, volume));
        slot.exit = None;
        slot.exit_target = None;
        slot.entry_filled_at_ms = None;
        slot.last_error.clear();
        Ok(Action::Place(OrderIntent {
            client_order_id: id,
            symbol: self.symbol.clone(),
            side: Side::Sell,
            volume,
            price: Some(price),
            post_only: true,
            userref_offset: self.cfg.userref_offset + i32::try_from(slot.id).unwrap_or(0),
        }))
    }

    /// Entry filled (or partly filled and done): buy back below the fill.
    fn start_exit(&mut self, i: usize, now_ms: i64) -> Vec<Action> {
        let slot = &mut self.slots[i];
        slot.go(Stage::ExitOpen, now_ms);
        slot.entry_filled_at_ms = Some(now_ms);
        slot.exit = None;
        slot.retry_at_ms = now_ms;
        self.place_exit(i, now_ms)
    }

    fn place_exit(&mut self, i: usize, now_ms: i64) -> Vec<Action> {
        let Some(inst) = self.instrument().cloned() else {
            self.slots[i]
                .last_error
                .set("instrument filters unknown; exit waits".into());
            self.slots[i].retry_at_ms = now_ms + EXIT_RETRY_MS;
            return Vec::new();
        };
        let Some(entry) = self.slots[i].entry.clone() else {
            self.slots[i].go(Stage::Idle, now_ms);
            return Vec::new();
        };
        let margin = self.exit_margin_pct(&inst);
        let target = floor_to_tick(
            entry.average_price * (Decimal::ONE - margin / hundred()),
            inst.tick_size,
        );
        // A post-only buy must rest below the ask: if the market already fell
        // through the target, rest at the bid (a better price).
        let price = match &self.market {
            Some(m) if m.ask > Decimal::ZERO && target >= m.ask => {
                floor_to_tick(m.bid.min(target), inst.tick_size)
            }
            _ => target,
        };
        let volume = floor_lot(entry.executed, inst.lot_decimals);
        self.slots[i].exit_target = Some(target);
        if volume < inst.min_volume || volume * price < inst.min_cost || price <= Decimal::ZERO {
            let reason = format!(
                "exit {volume} @ {price} is below the venue minimums ({} volume, {} cost)",
                inst.min_volume, inst.min_cost
            );
            let out = self.book_orphan(i, "exit_below_minimum", now_ms);
            let slot = &mut self.slots[i];
            slot.last_error.set(reason);
            slot.go(Stage::Cooldown, now_ms);
            return out;
        }
        let id = self.ids.next(&format!("r{}x", self.slots[i].id));
        self.ledger.hold(
            &id,
            Asset::Quote,
            volume * price * (Decimal::ONE + inst.maker_fee),
            now_ms,
        );
        let slot = &mut self.slots[i];
        slot.exit = Some(Leg::new(id.clone(), price, volume));
        vec![Action::Place(OrderIntent {
            client_order_id: id,
            symbol: self.symbol.clone(),
            side: Side::Buy,
            volume,
            price: Some(price),
            post_only: true,
            userref_offset: self.cfg.userref_offset + i32::try_from(slot.id).unwrap_or(0),
        })]
    }

    /// A journal row whose payload is `payload_json` (a row's compact
    /// JSON).
    fn journal(kind: &str, payload_json: String) -> Action {
        Action::Journal {
            stream: JOURNAL_STREAM.to_string(),
            kind: kind.to_string(),
            payload_json,
        }
    }

    /// Exit filled: a completed cycle.
    fn book_cycle(&mut self, i: usize, now_ms: i64) -> Vec<Action> {
        let slot = &self.slots[i];
        let (Some(entry), Some(exit)) = (slot.entry.as_ref(), slot.exit.as_ref()) else {
            return Vec::new();
        };
        let gross = (entry.average_price - exit.average_price) * exit.executed;
        let net = gross - entry.fee_usd - exit.fee_usd;
        self.cycles_today += 1;
        self.cycles_total += 1;
        self.profit_today += net;
        self.profit_total += net;
        let row = CycleRow {
            ranger_id: slot.id,
            entry_order: &entry.client_order_id,
            exit_order: &exit.client_order_id,
            entry_price: decimal_text(entry.average_price),
            exit_price: decimal_text(exit.average_price),
            volume: decimal_text(exit.executed),
            gross_usd: decimal_text(gross),
            entry_fee_usd: decimal_text(entry.fee_usd),
            exit_fee_usd: decimal_text(exit.fee_usd),
            net_usd: decimal_text(net),
            entry_filled_at_ms: slot.entry_filled_at_ms,
            time_ms: now_ms,
        };
        vec![Self::journal("cycle", row.to_json())]
    }

    /// Books what was sold and not bought back as an orphan; a partly filled
    /// exit's bought-back part still counts its profit.
    fn book_orphan(&mut self, i: usize, reason: &str, now_ms: i64) -> Vec<Action> {
        let slot = &self.slots[i];
        let Some(entry) = slot.entry.as_ref() else {
            return Vec::new();
        };
        let exit = slot.exit.as_ref();
        let bought_back = exit.as_ref().map_or(Decimal::ZERO, |x| x.executed);
        let orphan_volume = entry.executed - bought_back;
        if orphan_volume <= Decimal::ZERO {
            return Vec::new();
        }
        let exposure = orphan_volume * entry.average_price;
        let partial_profit = match exit {
            Some(x) if x.executed > Decimal::ZERO && entry.executed > Decimal::ZERO => {
                (entry.average_price - x.average_price) * x.executed
                    - x.fee_usd
                    - entry.fee_usd * x.executed / entry.executed
            }
            _ => Decimal::ZERO,
        };
        self.orphans_today += 1;
        self.orphan_exposure_usd += exposure;
        self.profit_today += partial_profit;
        self.profit_total += partial_profit;
        let row = OrphanRow {
            ranger_id: slot.id,
            reason,
            entry_order: &entry.client_order_id,
            exit_order: exit.map(|x| x.client_order_id.as_str()),
            entry_price: decimal_text(entry.average_price),
            exit_price: slot.exit_target.map(decimal_text),
            orphan_volume: decimal_text(orphan_volume),
            exposure_usd: decimal_text(exposure),
            entry_fee_usd: decimal_text(entry.fee_usd),
            partial_profit_usd: decimal_text(partial_profit),
            market_price: self.market.as_ref().map(|m| decimal_text(m.last)),
            entry_filled_at_ms: slot.entry_filled_at_ms,
            time_ms: now_ms,
        };
        vec![Self::journal("orphan", row.to_json())]
    }

    fn on_entry_update(&mut self, i: usize, u: &OrderUpdate, now_ms: i64) -> Vec<Action> {
        let base = self.base_asset();
        let Some(entry) = self.slots[i].entry.as_mut() else {
            return Vec::new();
        };
        let id = entry.client_order_id.clone();
        match u.kind {
            UpdateKind::Open => {
                entry.acked = true;
                self.ledger.commit(&id, now_ms);
                Vec::new()
            }
            UpdateKind::PartialFill => {
                entry.apply_fill(u, &base);
                self.ledger.commit(&id, now_ms);
                Vec::new()
            }
            UpdateKind::Filled => {
                entry.apply_fill(u, &base);
                self.ledger.release(&id);
                match self.slots[i].cancel.map(|c| c.reason) {
                    Some(r) if r.winds_down() => {
                        let out = self.book_orphan(i, r.as_str(), now_ms);
                        self.slots[i].go(Stage::Idle, now_ms);
                        out
                    }
                    _ => self.start_exit(i, now_ms),
                }
            }
            UpdateKind::Canceled | UpdateKind::Expired => {
                self.ledger.release(&id);
                let executed = entry.executed;
                let reason = self.slots[i].cancel.map(|c| c.reason);
                if executed <= Decimal::ZERO {
                    let slot = &mut self.slots[i];
                    if reason.is_none() {
                        slot.last_error
                            .set(format!("entry {:?} outside the rangers", u.kind));
                    }
                    slot.go(Stage::Idle, now_ms);
                    return Vec::new();
                }
                match reason {
                    Some(r) if r.winds_down() => {
                        let out = self.book_orphan(i, r.as_str(), now_ms);
                        self.slots[i].go(Stage::Idle, now_ms);
                        out
                    }
                    // A partly filled entry that timed out: buy back what sold.
                    _ => self.start_exit(i, now_ms),
                }
            }
            UpdateKind::Rejected | UpdateKind::PlaceFailed => {
                self.ledger.release(&id);
                let slot = &mut self.slots[i];
                slot.last_error.set(format!("entry refused: {}", u.message));
                slot.go(Stage::Cooldown, now_ms);
                Vec::new()
            }
            UpdateKind::CancelFailed => self.on_cancel_failed(i, false, u, now_ms),
        }
    }

    fn on_exit_update(&mut self, i: usize, u: &OrderUpdate, now_ms: i64) -> Vec<Action> {
        let base = self.base_asset();
        let Some(exit) = self.slots[i].exit.as_mut() else {
            return Vec::new();
        };
        let id = exit.client_order_id.clone();
        match u.kind {
            UpdateKind::Open => {
                exit.acked = true;
                self.ledger.commit(&id, now_ms);
                Vec::new()
            }
            UpdateKind::PartialFill => {
                exit.apply_fill(u, &base);
                self.ledger.commit(&id, now_ms);
                Vec::new()
            }
            UpdateKind::Filled => {
                exit.apply_fill(u, &base);
                self.ledger.release(&id);
                let out = self.book_cycle(i, now_ms);
                let slot = &mut self.slots[i];
                slot.last_error.clear();
                slot.go(Stage::Cooldown, now_ms);
                out
            }
            UpdateKind::Canceled | UpdateKind::Expired => {
                self.ledger.release(&id);
                let reason = self.slots[i].cancel.map(|c| c.reason);
                let label = reason.map_or("canceled_outside", CancelReason::as_str);
                let out = self.book_orphan(i, label, now_ms);
                let next = if reason.is_some_and(CancelReason::winds_down) {
                    Stage::Idle
                } else {
                    Stage::Cooldown
                };
                self.slots[i].go(next, now_ms);
                out
            }
            UpdateKind::Rejected | UpdateKind::PlaceFailed => {
                self.ledger.release(&id);
                let reason = self.slots[i].cancel.map(|c| c.reason);
                let slot = &mut self.slots[i];
                slot.exit = None;
                slot.last_error.set(format!("exit refused: {}", u.message));
                slot.retry_at_ms = now_ms + EXIT_RETRY_MS;
                match reason {
                    Some(r) => {
                        let out = self.book_orphan(i, r.as_str(), now_ms);
                        let next = if r.winds_down() {
                            Stage::Idle
                        } else {
                            Stage::Cooldown
                        };
                        self.slots[i].go(next, now_ms);
                        out
                    }
                    None => Vec::new(),
                }
            }
            UpdateKind::CancelFailed => self.on_cancel_failed(i, true, u, now_ms),
        }
    }

    /// A cancel failed. The order's final event settles it if it is done;
    /// otherwise the cancel is retried after [`CANCEL_RETRY_MS`]. An order
    /// the gateway never registered (never acknowledged, "not found") is gone.
    fn on_cancel_failed(
        &mut self,
        i: usize,
        is_exit: bool,
        u: &OrderUpdate,
        now_ms: i64,
    ) -> Vec<Action> {
        let slot = &mut self.slots[i];
        slot.last_error.set(format!("cancel failed: {}", u.message));
        let leg = if is_exit { &slot.exit } else { &slot.entry };
        let never_placed = leg.as_ref().is_some_and(|l| !l.acked)
            && u.message.to_ascii_lowercase().contains("not found");
        if !never_placed {
            return Vec::new();
        }
        let gone = UpdateKind::Canceled;
        let synthetic = OrderUpdate {
            kind: gone,
            ..u.clone()
        };
        if is_exit {
            self.on_exit_update(i, &synthetic, now_ms)
        } else {
            self.on_entry_update(i, &synthetic, now_ms)
        }
    }
}

impl Strategy for Rangers {
    fn name(&self) -> &str {
        STRATEGY_NAME
    }

    fn stale_orders(&self, open: &[OpenOrderRef], userref_min: i32) -> Vec<String> {
        stale_ranger_orders(open, &self.symbol, userref_min, self.cfg.userref_offset)
    }

    fn userref_range_problem(&self, userref_min: i32, userref_max: i32) -> Option<String> {
        let last = i64::from(userref_min)
            + i64::from(self.cfg.userref_offset)
            + i64::from(self.cfg.max_slots)
            - 1;
        (last > i64::from(userref_max)).then(|| {
            format!(
                "this engine's userref range {userref_min}..={userref_max} is too narrow for its rangers (offset {}, {} slots); the gateway will refuse their orders",
                self.cfg.userref_offset, self.cfg.max_slots
            )
        })
    }

    fn owns(&self, client_order_id: &str) -> bool {
        is_ranger_client_id(client_order_id)
    }

    fn on_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        self.roll_day(now_ms);
        if market.instrument.is_none() {
            // The view is about to lose its instrument: keep it apart.
            if let Some(i) = self.market.as_mut().and_then(|m| m.instrument.take()) {
                self.instrument = Some(i);
            }
        }
        if !crate::strategy::keep_view(&mut self.market, market) {
            self.screen_terms = None;
        }
        #[cfg(test)]
        if market.instrument.is_some() {
            crate::strategy::keep_instrument(&mut self.instrument_as_before, &market.instrument);
        }
        self.regime_ok = market.regime.is_ranging();
        let open = self.open_orders();
        capacity::refresh(&mut self.capacity, market, open, now_ms);
        let mut out = Vec::new();
        if !self.enabled || !self.regime_ok {
            let reason = if self.enabled {
                CancelReason::RegimeShift
            } else {
                CancelReason::Disabled
            };
            for i in 0..self.slots.len() {
                out.extend(self.wind_down(i, reason, now_ms));
                if self.slots[i].stage == Stage::Idle && self.enabled {
                    let regime = if market.regime.ready {
                        market.regime.regime.as_str()
                    } else {
                        "not ready"
                    };
                    self.slots[i].last_error.set_regime(regime);
                }
            }
            return out;
        }
        for i in 0..self.slots.len() {
            let timers = self.timers(i, now_ms);
            crate::strategy::append_actions(&mut out, timers);
        }
        let entries = self.entries(market, now_ms);
        crate::strategy::append_actions(&mut out, entries);
        out
    }

    /// Read after a tick. A quiet tick stores only what the next overwrites
    /// (the market view, instrument, regime flag, capacity reading, the idle
    /// slots' `last_error`, the day roll, which a later tick repeats), so
    /// only the timers and the entry gate bound it:
    /// - winding down (disabled or not RANGING): quiet once every slot is
    ///   idle, else every tick (a cooldown would go idle at the first tick,
    ///   a cancel may be due);
    /// - a cooldown ends at `since + cooldown_sec` (it goes idle then, with
    ///   no action, and the time it went idle shows in the status);
    /// - an open entry: its pending cancel's retry, else its timeout;
    ///   without an entry order, every tick;
    /// - an open exit: its timeout, its cancel's retry, a refused exit's
    ///   re-placement time;
    /// - idle rangers with the capacity gate open and entries allowed:
    ///   every tick (whether an entry goes out depends on the price), unless
    ///   the DOGE reserve refuses every entry whatever the price
    ///   ([`Rangers::reserve_refuses_every_entry`]); a refused entry takes
    ///   no client id, so such a tick stores only its `last_error`.
    ///
    /// The capacity reading's band depends on the time (the partial-cancel
    /// window) but the rangers gate only on its headroom, which does not.
    fn wake(&self) -> Wake {
        if self.market.is_none() {
            return Wake::EveryTick;
        }
        if !self.enabled || !self.regime_ok {
            return if self.slots.iter().all(|s| s.stage == Stage::Idle) {
                Wake::IDLE
            } else {
                Wake::EveryTick
            };
        }
        let mut wake = Wake::IDLE;
        let mut idle = false;
        for slot in &self.slots {
            match slot.stage {
                Stage::Idle => idle = true,
                Stage::Cooldown => {
                    wake =
                        wake.before(slot.since_ms.saturating_add(secs_ms(self.cfg.cooldown_sec)));
                }
                Stage::EntryOpen => {
                    if slot.entry.is_none() {
                        return Wake::EveryTick;
                    }
                    wake = match slot.cancel {
                        Some(c) => wake.before(c.sent_ms.saturating_add(CANCEL_RETRY_MS)),
                        None => wake.before(
                            slot.since_ms
                                .saturating_add(secs_ms(self.cfg.entry_timeout_sec)),
                        ),
                    };
                }
                Stage::ExitOpen => {
                    let filled_at = slot.entry_filled_at_ms.unwrap_or(slot.since_ms);
                    wake =
                        wake.before(filled_at.saturating_add(secs_ms(self.cfg.exit_timeout_sec)));
                    match (&slot.exit, slot.cancel) {
                        (Some(_), Some(c)) => {
                            wake = wake.before(c.sent_ms.saturating_add(CANCEL_RETRY_MS));
                        }
                        (Some(_), None) => {}
                        (None, _) => wake = wake.before(slot.retry_at_ms),
                    }
                }
            }
        }
        if idle {
            let open = match &self.capacity {
                None => false,
                Some(c) if c.headroom < i64::from(self.cfg.min_headroom) => false,
                Some(c) => c.entries_allowed > 0,
            };
            if open && !self.reserve_refuses_every_entry() {
                return Wake::EveryTick;
            }
        }
        wake
    }

    /// Stores what a covered tick stores, without the rest of the tick.
    /// The view differs from the kept one only in its copied fields
    /// (prices, balances, counts, times), so those are copied and its
    /// symbol, instrument and regime stay (the instrument was compared at
    /// every tick: a third of the rangers' tick). The day rolls and the
    /// capacity reading is taken again (its band follows the time). The
    /// timers are not due before the wake. Winding down, every ranger is
    /// idle and keeps the regime text the last tick wrote. Otherwise the
    /// idle rangers' entry refusals depend on the price: the entries are
    /// worked out as a tick does (they place nothing, by the wake). A view
    /// without an instrument, or with another regime, is a whole tick.
    fn on_quiet_tick(&mut self, market: &MarketView, now_ms: i64) -> Vec<Action> {
        let Some(kept) = self.market.as_mut() else {
            return self.on_tick(market, now_ms);
        };
        let winding_down = !self.enabled || !self.regime_ok;
        if kept.instrument.is_none()
            || market.instrument.is_none()
            || kept.regime != market.regime
            || winding_down && self.slots.iter().any(|s| s.stage != Stage::Idle)
        {
            return self.on_tick(market, now_ms);
        }
        crate::strategy::keep_view_scalars(kept, market);
        self.roll_day(now_ms);
        let open = self.open_orders();
        capacity::refresh(&mut self.capacity, market, open, now_ms);
        if winding_down {
            return Vec::new();
        }
        self.entries(market, now_ms)
    }

    fn on_order(&mut self, update: &OrderUpdate, now_ms: i64) -> Vec<Action> {
        self.roll_day(now_ms);
        let id = update.client_order_id.as_str();
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let is_entry = slot.stage == Stage::EntryOpen
                && slot.entry.as_ref().is_some_and(|e| e.client_order_id == id);
            let is_exit = slot.stage == Stage::ExitOpen
                && slot.exit.as_ref().is_some_and(|e| e.client_order_id == id);
            if is_entry {
                return self.on_entry_update(i, update, now_ms);
            }
            if is_exit {
                return self.on_exit_update(i, update, now_ms);
            }
        }
        // Not a live ranger order (a previous run's, or already settled).
        Vec::new()
    }

    fn status(&self, now_ms: i64) -> StatusBlock {
        StatusBlock::Rangers(Box::new(self.status_block(now_ms)))
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn set_enabled(&mut self, enabled: bool, now_ms: i64) -> Option<Vec<Action>> {
        self.enabled = enabled;
        let mut out = Vec::new();
        if !enabled {
            for i in 0..self.slots.len() {
                out.extend(self.wind_down(i, CancelReason::Disabled, now_ms));
            }
        }
        Some(out)
    }

    /// Sizes, distances, timeouts, headroom and reserve apply from the next
    /// tick; working orders keep the values they were placed with. The
    /// number of rangers and the userref offset are restart-only. A change
    /// of `enabled` in the file switches the rangers as the RPC does (a
    /// switch made by RPC stays until the file's value changes).
    fn reconfigure(&mut self, params: &crate::strategy::Params<'_>, now_ms: i64) -> Vec<Action> {
        let mut cfg = params.rangers.clone();
        cfg.max_slots = self.cfg.max_slots;
        cfg.userref_offset = self.cfg.userref_offset;
        let switched = cfg.enabled != self.cfg.enabled;
        self.cfg = cfg;
        self.screen_terms = None;
        if switched {
            return self
                .set_enabled(self.cfg.enabled, now_ms)
                .unwrap_or_default();
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BADGE_TIMING: RangerTiming = RangerTiming {
        entry_timeout_sec: 300,
        exit_timeout_sec: 1350,
        cooldown_sec: 30,
        near_exit_timeout_share: NEAR_EXIT_TIMEOUT_SHARE,
    };

    /// The journal rows' text is the text of the `json!` objects they
    /// replaced (keys sorted, the same values), byte for byte, with and
    /// without the optional fields.
    /// The rows' text is the one serde_json writes and the decimals' the
    /// normalized `to_string`, on random rows: every scale, mantissas up to
    /// 96 bits, both signs, zero, and strings with every character JSON
    /// escapes.
    #[test]
    fn rows_written_by_hand_are_the_serde_json_text() {
        struct R(u64);
        impl R {
            fn next(&mut self, n: u64) -> u64 {
                self.0 = crate::testing::lcg(self.0);
                (self.0 >> 33) % n
            }
            /// Up to 96 bits of mantissa, either sign, any scale.
            fn decimal(&mut self) -> Decimal {
                let bits = self.next(97);
                let m = (u128::from(self.next(1 << 31))
                    | u128::from(self.next(1 << 31)) << 31
                    | u128::from(self.next(1 << 31)) << 62
                    | u128::from(self.next(1 << 31)) << 93)
                    & ((1_u128 << bits) - 1);
                let m = i128::try_from(m).unwrap();
                let m = if self.next(2) == 0 { -m } else { m };
                Decimal::from_i128_with_scale(m, u32::try_from(self.next(29)).unwrap())
            }
            fn text(&mut self) -> String {
                const CHARS: [char; 16] = [
                    'a', 'Z', '0', '-', '"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}',
                    '\u{1}', '\u{1f}', '\u{7f}', '\u{e9}',
                ];
                (0..self.next(8))
                    .map(|_| CHARS[usize::try_from(self.next(16)).unwrap()])
                    .collect()
            }
        }
        let mut r = R(7);
        let mut specials = vec![
            Decimal::ZERO,
            -Decimal::ZERO,
            Decimal::new(-0, 5),
            Decimal::ONE,
            Decimal::NEGATIVE_ONE,
            Decimal::MAX,
            Decimal::MIN,
            Decimal::new(1, 28),
            Decimal::new(-1, 28),
            Decimal::new(100, 2),
            Decimal::new(1200, 0),
            Decimal::new(i64::MAX, 3),
            Decimal::from_i128_with_scale(i128::from(u64::MAX) + 1, 7),
        ];
        // Around the split into two u64 halves (10^19).
        for k in -2..=2 {
            specials.push(Decimal::from_i128_with_scale(10_i128.pow(19) + k, 3));
            specials.push(Decimal::from_i128_with_scale(
                -(10_i128.pow(19) * 7 + k),
                21,
            ));
        }
        specials.extend((0..20_000).map(|_| r.decimal()));
        for d in &specials {
            assert_eq!(decimal_text(*d), d.normalize().to_string(), "{d:?}");
        }
        for k in 0..2_000 {
            let texts: Vec<String> = (0..4).map(|_| r.text()).collect();
            let d: Vec<String> = (0..9)
                .map(|j| decimal_text(specials[(k * 9 + j) % specials.len()]))
                .collect();
            let filled =
                (r.next(2) == 0).then(|| i64::try_from(r.next(1 << 40)).unwrap() - (1 << 39));
            let time_ms = i64::try_from(r.next(1 << 40)).unwrap() - (1 << 39);
            let id = u32::try_from(r.next(1 << 32)).unwrap();
            let cycle = CycleRow {
                ranger_id: id,
                entry_order: &texts[0],
                exit_order: &texts[1],
                entry_price: d[0].clone(),
                exit_price: d[1].clone(),
                volume: d[2].clone(),
                gross_usd: d[3].clone(),
                entry_fee_usd: d[4].clone(),
                exit_fee_usd: d[5].clone(),
                net_usd: d[6].clone(),
                entry_filled_at_ms: filled,
                time_ms,
            };
            assert_eq!(cycle.to_json(), serde_json::to_string(&cycle).unwrap());
            let orphan = OrphanRow {
                ranger_id: id,
                reason: &texts[2],
                entry_order: &texts[0],
                exit_order: (r.next(2) == 0).then_some(texts[3].as_str()),
                entry_price: d[0].clone(),
                exit_price: (r.next(2) == 0).then(|| d[7].clone()),
                orphan_volume: d[2].clone(),
                exposure_usd: d[3].clone(),
                entry_fee_usd: d[4].clone(),
                partial_profit_usd: d[5].clone(),
                market_price: (r.next(2) == 0).then(|| d[8].clone()),
                entry_filled_at_ms: filled,
                time_ms,
            };
            assert_eq!(orphan.to_json(), serde_json::to_string(&orphan).unwrap());
        }
    }

    #[test]
    fn journal_rows_are_the_json_objects_they_replaced() {
        #![allow(clippy::unwrap_used)]
        let d = |s: &str| s.parse::<Decimal>().unwrap().normalize().to_string();
        for (filled, exit, target, market) in [
            (
                Some(1_700_000_000_123_i64),
                Some("r0x-abc"),
                Some("0.1234"),
                Some("0.12"),
            ),
            (None, None, None, None),
        ] {
            let cycle = CycleRow {
                ranger_id: 2,
                entry_order: "r2e-\"q\"",
                exit_order: "r2x-b",
                entry_price: d("0.12000"),
                exit_price: d("0.1188"),
                volume: d("100.5"),
                gross_usd: d("-0.0001"),
                entry_fee_usd: d("0.03"),
                exit_fee_usd: d("0"),
                net_usd: d("1e-8"),
                entry_filled_at_ms: filled,
                time_ms: -5,
            };
            let want = serde_json::json!({
                "ranger_id": cycle.ranger_id,
                "entry_order": cycle.entry_order,
                "exit_order": cycle.exit_order,
                "entry_price": cycle.entry_price,
                "exit_price": cycle.exit_price,
                "volume": cycle.volume,
                "gross_usd": cycle.gross_usd,
                "entry_fee_usd": cycle.entry_fee_usd,
                "exit_fee_usd": cycle.exit_fee_usd,
                "net_usd": cycle.net_usd,
                "entry_filled_at_ms": cycle.entry_filled_at_ms,
                "time_ms": cycle.time_ms,
            });
            assert_eq!(serde_json::to_string(&cycle).unwrap(), want.to_string());
            let orphan = OrphanRow {
                ranger_id: 0,
                reason: "exit timeout: \u{e9}",
                entry_order: "r0e-a",
                exit_order: exit,
                entry_price: d("0.1"),
                exit_price: target.map(d),
                orphan_volume: d("12.00000000"),
                exposure_usd: d("1.2"),
                entry_fee_usd: d("0.003"),
                partial_profit_usd: d("0"),
                market_price: market.map(d),
                entry_filled_at_ms: filled,
                time_ms: 7,
            };
            let want = serde_json::json!({
                "ranger_id": orphan.ranger_id,
                "reason": orphan.reason,
                "entry_order": orphan.entry_order,
                "exit_order": orphan.exit_order,
                "entry_price": orphan.entry_price,
                "exit_price": orphan.exit_price,
                "orphan_volume": orphan.orphan_volume,
                "exposure_usd": orphan.exposure_usd,
                "entry_fee_usd": orphan.entry_fee_usd,
                "partial_profit_usd": orphan.partial_profit_usd,
                "market_price": orphan.market_price,
                "entry_filled_at_ms": orphan.entry_filled_at_ms,
                "time_ms": orphan.time_ms,
            });
            assert_eq!(serde_json::to_string(&orphan).unwrap(), want.to_string());
        }
    }

    #[test]
    fn badges_follow_stage_and_exit_age() {
        struct Case {
            enabled: bool,
            stage: &'static str,
            age: f64,
            want: Badge,
        }
        let cases = [
            Case {
                enabled: true,
                stage: "idle",
                age: 5.0,
                want: Badge::Idle,
            },
            Case {
                enabled: true,
                stage: "",
                age: 0.0,
                want: Badge::Idle,
            },
            Case {
                enabled: true,
                stage: "entry_open",
                age: 299.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "cooldown",
                age: 1.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 0.0,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 1079.9,
                want: Badge::Active,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 1080.0,
                want: Badge::NearTimeout,
            },
            Case {
                enabled: true,
                stage: "exit_open",
                age: 5000.0,
                want: Badge::NearTimeout,
            },
            // Disabled rangers are gray whatever they are still winding down.
            Case {
                enabled: false,
                stage: "exit_open",
                age: 1300.0,
                want: Badge::Idle,
            },
            Case {
                enabled: false,
                stage: "entry_open",
                age: 1.0,
                want: Badge::Idle,
            },
        ];
        for c in cases {
            assert_eq!(
                ranger_badge(c.enabled, c.stage, c.age, &BADGE_TIMING),
                c.want,
                "{} {} {}",
                c.enabled,
                c.stage,
                c.age
            );
        }
        // A zero exit timeout (unknown) never turns amber.
        assert_eq!(
            ranger_badge(true, "exit_open", 1e9, &RangerTiming::default()),
            Badge::Active
        );
    }

    use rust_decimal_macros::dec;

    #[test]
    fn defaults_are_the_spec_and_safe() {
        let c = RangerConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.max_slots, 3);
        assert_eq!(c.order_size_usd.to_string(), "2.00");
        assert_eq!(c.entry_pct.to_string(), "0.15");
        assert_eq!(c.profit_pct.to_string(), "1.20");
        assert_eq!(
            (c.entry_timeout_sec, c.exit_timeout_sec, c.cooldown_sec),
            (300, 1350, 30)
        );
        assert_eq!((c.min_headroom, c.doge_reserve), (10, Decimal::from(100)));
        c.validate().unwrap();
    }

    #[test]
    fn validation_names_the_knob() {
        let cases: Vec<(RangerConfig, &str)> = vec![
            (
                RangerConfig {
                    max_slots: 0,
                    ..RangerConfig::default()
                },
                "max_slots",
            ),
            (
                RangerConfig {
                    max_slots: 101,
                    ..RangerConfig::default()
                },
                "RANGER_MAX_SLOTS",
            ),
            (
                RangerConfig {
                    order_size_usd: Decimal::ZERO,
                    ..RangerConfig::default()
                },
                "order_size_usd",
            ),
            (
                RangerConfig {
                    entry_pct: Decimal::from(-1),
                    ..RangerConfig::default()
                },
                "entry_pct",
            ),
            (
                RangerConfig {
                    profit_pct: Decimal::ZERO,
                    ..RangerConfig::default()
                },
                "profit_pct",
            ),
            (
                RangerConfig {
                    exit_timeout_sec: 0,
                    ..RangerConfig::default()
                },
                "exit_timeout_sec",
            ),
            (
                RangerConfig {
                    doge_reserve: Decimal::from(-5),
                    ..RangerConfig::default()
                },
                "doge_reserve",
            ),
            (
                RangerConfig {
                    userref_offset: 0,
                    ..RangerConfig::default()
                },
                "userref_offset",
            ),
        ];
        for (cfg, want) in cases {
            let e = cfg.validate().unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn env_overrides_parse_and_reject() {
        let mut c = RangerConfig::default();
        c.apply_env(|k| match k {
            env::ENABLED => Some("true".into()),
            env::MAX_SLOTS => Some("1".into()),
            env::ORDER_SIZE_USD => Some("2.5".into()),
            env::DOGE_RESERVE => Some("250.5".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.max_slots, 1);
        assert_eq!(c.order_size_usd.to_string(), "2.5");
        assert_eq!(c.doge_reserve.to_string(), "250.5");
        let e = c
            .apply_env(|k| (k == env::ENTRY_PCT).then(|| "lots".to_string()))
            .unwrap_err();
        assert_eq!(e.0, env::ENTRY_PCT);
        let e = c
            .apply_env(|k| (k == env::ENABLED).then(|| "maybe".to_string()))
            .unwrap_err();
        assert_eq!(e.0, env::ENABLED);
    }

    #[test]
    fn client_ids_are_recognised() {
        for (id, want) in [
            ("r0e-abc1", true),
            ("r12x-abc1", true),
            ("r0-abc", false),
            ("rxe-abc", false),
            ("m-abc", false),
            ("r0e", false),
            ("", false),
        ] {
            assert_eq!(is_ranger_client_id(id), want, "{id}");
        }
    }

    #[test]
    fn rounding_helpers() {
        let tick = Decimal::new(1, 7);
        assert_eq!(
            ceil_to_tick(dec!(0.120180001), tick).to_string(),
            "0.1201801"
        );
        assert_eq!(
            floor_to_tick(dec!(0.11873784), tick).to_string(),
            "0.1187378"
        );
        assert_eq!(
            floor_lot(dec!(16.641704110500915), 8).to_string(),
            "16.64170411"
        );
    }

    /// A reload's parameters: timing and sizes apply, the ranger count and
    /// userref offset stay as built, and a change of `enabled` in the file
    /// switches the rangers (off winds them down, as the RPC does).
    #[test]
    fn reconfigure_applies_knobs_and_keeps_structure() {
        let cfg = RangerConfig {
            enabled: true,
            max_slots: 2,
            ..RangerConfig::default()
        };
        let mut r = Rangers::new(cfg.clone(), "DOGEUSD", 1_700_000_000_000);
        let grid = crate::grid::GridConfig::default();
        let new = RangerConfig {
            max_slots: 7,
            userref_offset: 850,
            entry_timeout_sec: 99,
            doge_reserve: dec!(5),
            ..cfg.clone()
        };
        let actions = r.reconfigure(
            &crate::strategy::Params {
                rangers: &new,
                grid: &grid,
            },
            1_700_000_000_000,
        );
        assert!(actions.is_empty());
        let st = r.status_block(1_700_000_000_000);
        assert_eq!(st.slots.len(), 2, "max_slots is restart-only");
        assert_eq!(st.timing.entry_timeout_sec, 99);
        assert_eq!(st.doge_reserve, dec!(5));
        assert!(r.enabled());
        assert_eq!(r.cfg.userref_offset, cfg.userref_offset);
        let off = RangerConfig {
            enabled: false,
            ..new
        };
        r.reconfigure(
            &crate::strategy::Params {
                rangers: &off,
                grid: &grid,
            },
            1_700_000_000_000,
        );
        assert!(!r.enabled());
    }
}

/// The tick's shared entry plan, the screened reserve refusals and the
/// tighter reserve wake, against the way before: each idle ranger working
/// out its own entry exactly, and a ranger ticked at every tick.
#[cfg(test)]
mod shared_entry_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::strategy::RegimeView;

    const T0: i64 = 1_700_000_000_000;

    fn inst() -> Instrument {
        Instrument::kraken_doge_usd()
    }

    /// The part of the market view only events change.
    #[derive(Clone)]
    struct Env {
        free_base: Decimal,
        open: u32,
        ranging: bool,
    }

    fn view(env: &Env, last: Decimal, ask: Decimal, now: i64) -> MarketView {
        MarketView {
            instrument: Some(inst()),
            free_base: Some(env.free_base),
            free_quote: Some(Decimal::from(5000)),
            open_orders_on_pair: Some(env.open),
            regime: RegimeView {
                regime: if env.ranging { "RANGING" } else { "TRENDING" }.into(),
                ready: true,
                confidence: 0.9,
                bias: 0.0,
            },
            balances_as_of_ms: now,
            ..MarketView::prices("DOGEUSD", last, last - Decimal::new(1, 7), ask)
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = crate::testing::lcg(self.0);
            (self.0 >> 33) % n
        }
    }

    /// The state, a screened refusal shown as the exact one it stands for.
    fn state(r: &Rangers, now: i64) -> String {
        let slots: Vec<Slot> = r
            .slots
            .iter()
            .map(|s| Slot {
                last_error: s.last_error.exact(),
                ..s.clone()
            })
            .collect();
        format!("{slots:?}\n{:?}\n{}", r.ledger, r.status(now).detail_json())
    }

    /// Live orders: id, volume, price.
    type Live = Vec<(String, Decimal, Decimal)>;

    /// A step of the walks' price: later by 1-90 s, a small move within
    /// 0.05-0.30 and now and then a jump, and an ask (a wide one makes the
    /// entry smaller: below the minimum volume at twice the price, between
    /// it and the usual one at 1.3 times). (last, ask, now).
    fn walk_price(rng: &mut Rng, last: Decimal, now: i64) -> (Decimal, Decimal, i64) {
        let now = now + i64::try_from(1 + rng.next(90)).unwrap() * 1000;
        let delta = Decimal::new(i64::try_from(rng.next(2001)).unwrap() - 1000, 7);
        let mut last = (last + delta)
            .max(Decimal::new(5, 2))
            .min(Decimal::new(30, 2));
        if rng.next(20) == 0 {
            last = Decimal::new(i64::try_from(800 + rng.next(1200)).unwrap(), 4);
        }
        let ask = match rng.next(10) {
            0 => last * Decimal::from(2),
            1 => last * Decimal::new(13, 1),
            2 => last + Decimal::new(i64::try_from(rng.next(5000)).unwrap(), 7),
            _ => last + Decimal::new(1, 7),
        };
        (last, ask, now)
    }

    /// An update of one of `live`'s orders (non-empty), drawn at random: an
    /// ack, a partial or full fill, a cancel (always, when one was asked)
    /// or a refusal; a final one forgets the order. The update and its fill.
    fn random_update(
        rng: &mut Rng,
        live: &mut Live,
        cancels: &mut Vec<String>,
    ) -> (OrderUpdate, Decimal) {
        let k = usize::try_from(rng.next(live.len() as u64)).unwrap();
        let (id, volume, price) = live[k].clone();
        let asked = cancels.contains(&id);
        let kind = match rng.next(8) {
            0 | 1 => UpdateKind::Open,
            2 => UpdateKind::PartialFill,
            3 if asked => UpdateKind::Canceled,
            3 => UpdateKind::Rejected,
            4 => UpdateKind::Canceled,
            _ => UpdateKind::Filled,
        };
        let fill = match kind {
            UpdateKind::Filled => volume,
            UpdateKind::PartialFill => (volume / Decimal::from(3)).round_dp(8),
            _ => Decimal::ZERO,
        };
        let u = OrderUpdate {
            client_order_id: id.clone(),
            kind,
            volume_executed: fill,
            average_price: None,
            fill_volume: fill,
            fill_price: price,
            fill_fee: (fill * price * Decimal::new(25, 4)).round_dp(8),
            fee_asset: "USD".into(),
            message: "venue says no".into(),
        };
        if !matches!(kind, UpdateKind::Open | UpdateKind::PartialFill) {
            live.remove(k);
            cancels.retain(|c| c != &id);
        }
        (u, fill)
    }

    fn track(live: &mut Live, cancels: &mut Vec<String>, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Place(o) => {
                    live.push((o.client_order_id.clone(), o.volume, o.price.unwrap()));
                }
                Action::Cancel { client_order_id } => cancels.push(client_order_id.clone()),
                _ => {}
            }
        }
    }

    /// Walks `steps` events. `old` ticks at every tick and has each idle
    /// ranger work out its own entry; `new` shares the plan and skips the
    /// ticks its wake covers (as the backtest driver does: the last skipped
    /// tick is run before its next call of any kind). Both answer the same
    /// at every step and end every step in the same state. Returns how many
    /// ticks `new` skipped with more than the reserve free and unreserved,
    /// and how many screened refusals its ticks left.
    fn walk(seed: u64, steps: usize, max_slots: u32) -> (usize, usize) {
        let cfg = RangerConfig {
            enabled: true,
            max_slots,
            ..RangerConfig::default()
        };
        let mut old = Rangers::new(cfg.clone(), "DOGEUSD", T0);
        old.per_slot_entries = true;
        let mut new = Rangers::new(cfg, "DOGEUSD", T0);
        let mut rng = Rng(seed);
        let mut env = Env {
            free_base: Decimal::from(200),
            open: 0,
            ranging: true,
        };
        let mut now = T0;
        let mut last = Decimal::new(12, 2);
        let mut live: Live = Vec::new();
        let mut cancels: Vec<String> = Vec::new();
        // `new`'s wake, read after a tick that answered nothing; `None`
        // after any event.
        let mut wake: Option<Wake> = None;
        let mut skipped: Option<(Decimal, Decimal, i64)> = None;
        let mut skips_over_reserve = 0;
        let mut tick_seen = 0;
        let mut screened = 0;
        let mut no_instrument = 0;
        for step in 0..steps {
            let roll = rng.next(100);
            if roll < 65 || live.is_empty() && roll < 90 {
                // A price tick: a small walk, now and then a wide ask.
                let ask;
                (last, ask, now) = walk_price(&mut rng, last, now);
                let mut m = view(&env, last, ask, now);
                // Now and then a view without the instrument: not one a
                // wake covers (nor the next, with it again).
                let changed = rng.next(50) == 0;
                if changed {
                    m.instrument = None;
                    if let Some((l, ask, at)) = skipped.take() {
                        assert!(new.on_tick(&view(&env, l, ask, at), at).is_empty());
                    }
                    wake = None;
                }
                let a = old.on_tick(&m, now);
                if wake.is_some_and(|w| w.holds(last, now)) {
                    assert!(a.is_empty(), "step {step}: a covered tick acted: {a:?}");
                    skipped = Some((last, ask, now));
                    let most = env.free_base - new.ledger.reserved(Asset::Base);
                    if new.slots.iter().any(|s| s.stage == Stage::Idle)
                        && most > new.cfg.doge_reserve
                    {
                        skips_over_reserve += 1;
                    }
                    track(&mut live, &mut cancels, &a);
                    continue;
                }
                skipped = None;
                let b = new.on_tick(&m, now);
                tick_seen += 1;
                assert_eq!(new.instrument(), new.instrument_as_before.as_ref());
                if m.instrument.is_none() {
                    no_instrument += 1;
                }
                screened += new
                    .slots
                    .iter()
                    .filter(|s| matches!(s.last_error, LastError::Screened(_)))
                    .count();
                assert_eq!(a, b, "step {step}: actions");
                wake = if b.is_empty() && !changed {
                    Some(new.wake())
                } else {
                    None
                };
                track(&mut live, &mut cancels, &a);
            } else {
                // An event: replay `new`'s skipped tick first.
                if let Some((l, ask, at)) = skipped.take() {
                    assert!(new.on_tick(&view(&env, l, ask, at), at).is_empty());
                }
                wake = None;
                now += 500;
                if roll < 75 {
                    // New free DOGE around the reserve and an entry over it.
                    env.free_base =
                        Decimal::new(i64::try_from(9_000 + rng.next(3_500)).unwrap(), 2);
                } else if roll < 76 || !env.ranging && roll < 85 {
                    env.ranging = !env.ranging;
                } else if !live.is_empty() {
                    let (u, fill) = random_update(&mut rng, &mut live, &mut cancels);
                    let a = old.on_order(&u, now);
                    let b = new.on_order(&u, now);
                    assert_eq!(a, b, "step {step}: update actions");
                    track(&mut live, &mut cancels, &a);
                    // Fills move the free DOGE.
                    if fill > Decimal::ZERO {
                        env.free_base += if u.client_order_id.contains('e') {
                            -fill
                        } else {
                            fill
                        };
                    }
                }
                env.open = u32::try_from(live.len()).unwrap();
            }
            if skipped.is_none() {
                assert_eq!(state(&old, now), state(&new, now), "step {step}: state");
            }
        }
        if let Some((l, ask, at)) = skipped.take() {
            assert!(new.on_tick(&view(&env, l, ask, at), at).is_empty());
        }
        assert_eq!(state(&old, now), state(&new, now), "the end: state");
        assert!(tick_seen > steps / 20, "{tick_seen} ticks run");
        assert!(no_instrument > 0, "no tick without an instrument ran");
        (skips_over_reserve, screened)
    }

    /// Wherever the screen refuses, the exact path refuses with the error
    /// the screened one stands for; close to the edges (the reserve, the
    /// minimum volume at a wide ask) it leaves the decision to the exact
    /// path, and away from them it does refuse.
    #[test]
    fn the_screen_refuses_only_what_the_exact_path_refuses() {
        let cfg = RangerConfig {
            enabled: true,
            max_slots: 1,
            ..RangerConfig::default()
        };
        let mut r = Rangers::new(cfg, "DOGEUSD", T0);
        r.ledger.hold("held", Asset::Base, Decimal::new(3, 1), T0);
        let env = |free| Env {
            free_base: free,
            open: 0,
            ranging: true,
        };
        let (mut screened, mut exact_refusals) = (0, 0);
        for last in [
            Decimal::new(12, 2),
            Decimal::new(1_234_567, 7),
            Decimal::new(99_999_999, 9),
        ] {
            for ask in [
                last + Decimal::new(1, 7),
                last * Decimal::new(13, 1),
                last * Decimal::from(2),
            ] {
                // The entry's exact volume, and free balances around the
                // reserve plus it (to the last lot) and plus the minimum.
                let m = view(&env(Decimal::from(1000)), last, ask, T0);
                let (_, volume) = r
                    .entry_plan(&m)
                    .map_or((Decimal::ZERO, Decimal::ZERO), |p| (p.price, p.volume));
                let edge = Decimal::from(100) + Decimal::new(3, 1) + volume;
                let mut frees: Vec<Decimal> =
                    (-300..300).map(|k| edge + Decimal::new(k, 8)).collect();
                frees.extend((0..400).map(|k| Decimal::new(9_000 + k * 10, 2)));
                for free in frees {
                    let m = view(&env(free), last, ask, T0);
                    let exact = match r.entry_plan(&m) {
                        Err(e) => Some(e),
                        Ok(p) => r.check_entry(&p).err().map(LastError::Reserve),
                    };
                    exact_refusals += usize::from(matches!(exact, Some(LastError::Reserve(_))));
                    if let Some(s) = r.screened_refusal(&m) {
                        screened += 1;
                        let got = LastError::Screened(s).exact();
                        assert_eq!(Some(got), exact, "free {free} last {last} ask {ask}");
                        assert!(free < edge, "free {free} edge {edge}");
                    }
                }
            }
        }
        assert!(screened > 1_000, "{screened} screened of {exact_refusals}");
    }

    #[test]
    fn a_shared_screened_entry_plan_and_the_reserve_wake_change_nothing() {
        let (mut over, mut screened) = (0, 0);
        for (seed, slots) in [(1, 3), (2, 3), (3, 1), (4, 2), (5, 5), (6, 3)] {
            let (o, s) = walk(seed, 4_000, slots);
            over += o;
            screened += s;
        }
        // The tighter wake did skip ticks the old one ran (less than the
        // minimum volume left over the reserve), and the screen did refuse.
        assert!(over > 50, "{over} ticks skipped over the reserve");
        assert!(screened > 200, "{screened} screened refusals");
    }

    /// The regime a quiet walk's view carries: 0 RANGING, 1 TRENDING, 2
    /// VOLATILE, 3 a detector not ready.
    fn regime_view(kind: u64) -> RegimeView {
        match kind {
            0..=2 => RegimeView {
                regime: ["RANGING", "TRENDING", "VOLATILE"][usize::try_from(kind).unwrap()].into(),
                ready: true,
                confidence: 0.9,
                bias: 0.0,
            },
            _ => RegimeView::not_ready(),
        }
    }

    /// Walks `steps` events with two rangers given the same calls, except
    /// that `fast` takes each tick its wake covers (read after its last
    /// tick, no other call since, at the same balances) with
    /// `on_quiet_tick` and `slow` takes every tick whole. Both answer the
    /// same, show the same status, hold the same state and promise the same
    /// wake at every step. Returns how many quiet ticks `fast` took, how
    /// many of them were winding down, and after how many a ranger was
    /// refused at the DOGE reserve.
    fn quiet_walk(seed: u64, steps: usize, max_slots: u32) -> (usize, usize, usize) {
        let cfg = RangerConfig {
            enabled: true,
            max_slots,
            ..RangerConfig::default()
        };
        let mut slow = Rangers::new(cfg.clone(), "DOGEUSD", T0);
        let mut fast = Rangers::new(cfg, "DOGEUSD", T0);
        let mut rng = Rng(seed);
        let mut env = Env {
            free_base: Decimal::from(200),
            open: 0,
            ranging: true,
        };
        let mut regime = 0;
        let mut partial_cancel: Option<i64> = None;
        let mut now = T0;
        let mut last = Decimal::new(12, 2);
        let mut live: Live = Vec::new();
        let mut cancels: Vec<String> = Vec::new();
        // `fast`'s wake, read after a tick, while no other call reached it.
        let mut wake: Option<Wake> = None;
        let (mut quiet, mut quiet_down, mut refused) = (0, 0, 0);
        let (mut other_instrument, mut reconfigured, mut kept_terms) = (false, 0, 0);
        for step in 0..steps {
            let roll = rng.next(100);
            if roll < 65 {
                let ask;
                (last, ask, now) = walk_price(&mut rng, last, now);
                let mut m = view(&env, last, ask, now);
                m.regime = regime_view(regime);
                m.last_partial_cancel_ms = partial_cancel;
                if other_instrument {
                    m.instrument = Some(Instrument {
                        tick_size: Decimal::new(1, 6),
                        lot_decimals: 6,
                        min_volume: Decimal::from(12),
                        ..inst()
                    });
                }
                if rng.next(50) == 0 {
                    m.instrument = None;
                }
                let covered = wake.take().is_some_and(|w| w.holds(last, now));
                let a = if covered {
                    quiet += 1;
                    quiet_down += usize::from(!fast.regime_ok || !fast.enabled);
                    fast.on_quiet_tick(&m, now)
                } else {
                    fast.on_tick(&m, now)
                };
                let b = slow.on_tick(&m, now);
                assert_eq!(a, b, "step {step}: tick actions (quiet: {covered})");
                if covered {
                    refused += fast.slots.iter().any(|s| {
                        matches!(s.last_error, LastError::Reserve(_) | LastError::Screened(_))
                    }) as usize;
                }
                if a.is_empty() {
                    wake = Some(fast.wake());
                }
                track(&mut live, &mut cancels, &a);
            } else {
                wake = None;
                now += 500;
                let a = if roll < 68 {
                    // Free DOGE around the reserve and an entry over it.
                    env.free_base =
                        Decimal::new(i64::try_from(9_000 + rng.next(3_500)).unwrap(), 2);
                    Vec::new()
                } else if roll < 70 {
                    env.free_base = Decimal::from(150 + rng.next(1_000));
                    Vec::new()
                } else if roll < 73 {
                    regime = if regime == 0 { 1 + rng.next(3) } else { 0 };
                    Vec::new()
                } else if roll < 75 {
                    // The open-order count: headroom to spare, short of the
                    // minimum, none.
                    env.open = [0, 3, 0, 3, 160, 170][usize::try_from(rng.next(6)).unwrap()];
                    Vec::new()
                } else if roll < 76 {
                    // A partial cancel whose window ends within the hour.
                    let ago = capacity::PARTIAL_CANCEL_WINDOW_MS
                        - i64::try_from(rng.next(3_600_000)).unwrap();
                    partial_cancel = Some(now - ago);
                    Vec::new()
                } else if roll < 77 {
                    // Disabled now and then, for a while.
                    let on = !slow.enabled;
                    if on || rng.next(3) == 0 {
                        let a = fast.set_enabled(on, now).unwrap();
                        assert_eq!(a, slow.set_enabled(on, now).unwrap(), "step {step}");
                        a
                    } else {
                        Vec::new()
                    }
                } else if roll < 78 {
                    // Another instrument (its tick, lots and minimum).
                    other_instrument = !other_instrument;
                    Vec::new()
                } else if roll < 79 {
                    // Another entry distance and size.
                    let new = RangerConfig {
                        entry_pct: Decimal::new(i64::try_from(5 + rng.next(40)).unwrap(), 2),
                        order_size_usd: Decimal::new(
                            i64::try_from(150 + rng.next(200)).unwrap(),
                            2,
                        ),
                        ..slow.cfg.clone()
                    };
                    let grid = crate::grid::GridConfig::default();
                    let params = crate::strategy::Params {
                        rangers: &new,
                        grid: &grid,
                    };
                    let a = fast.reconfigure(&params, now);
                    assert_eq!(a, slow.reconfigure(&params, now), "step {step}");
                    reconfigured += 1;
                    a
                } else if !live.is_empty() {
                    let (u, fill) = random_update(&mut rng, &mut live, &mut cancels);
                    let a = fast.on_order(&u, now);
                    assert_eq!(a, slow.on_order(&u, now), "step {step}: update actions");
                    if fill > Decimal::ZERO {
                        env.free_base += if u.client_order_id.contains('e') {
                            -fill
                        } else {
                            fill
                        };
                    }
                    a
                } else {
                    Vec::new()
                };
                track(&mut live, &mut cancels, &a);
                env.open = env.open.max(u32::try_from(live.len()).unwrap());
            }
            assert_eq!(fast.wake(), slow.wake(), "step {step}: wake");
            assert_eq!(
                fast.status(now).detail_json(),
                slow.status(now).detail_json(),
                "step {step}: status"
            );
            assert_eq!(state(&fast, now), state(&slow, now), "step {step}: state");
            assert_eq!(fast.instrument(), slow.instrument(), "step {step}");
            assert_eq!(fast.market, slow.market, "step {step}: view");
            // Kept screen terms are the ones the kept instrument and the
            // config give (while a view without one is kept, the terms of
            // the last, which the next instrument replaces).
            let kept = fast.market.as_ref().and_then(|m| m.instrument.as_ref());
            if let (Some(t), Some(i)) = (fast.screen_terms, kept) {
                assert_eq!(
                    Some(t),
                    ScreenTerms::new(&fast.cfg, i),
                    "step {step}: terms"
                );
                kept_terms += 1;
            }
        }
        assert!(reconfigured > 10, "{reconfigured} reconfigures");
        assert!(kept_terms > steps / 4, "terms kept at {kept_terms} steps");
        (quiet, quiet_down, refused)
    }

    /// A quiet tick leaves what a whole tick leaves, in every stage and
    /// gate the walks reach: entries refused at the reserve, headroom short
    /// or gone, the capacity band's window, regime shifts, disables.
    #[test]
    fn a_quiet_tick_leaves_what_a_whole_tick_leaves() {
        let (mut quiet, mut down, mut refused) = (0, 0, 0);
        for (seed, slots) in [(11, 3), (12, 1), (13, 5), (14, 2), (15, 3)] {
            let (q, d, r) = quiet_walk(seed, 4_000, slots);
            quiet += q;
            down += d;
            refused += r;
        }
        assert!(quiet > 2_000, "only {quiet} quiet ticks");
        assert!(down > 500, "only {down} quiet ticks winding down");
        assert!(
            refused > 300,
            "only {refused} quiet ticks refused at the reserve"
        );
    }
}
