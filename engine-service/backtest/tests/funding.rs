#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Funding in the backtest: a perpetual held by two strategies through six
//! settlements (positive and negative rates, long and short) settles the
//! same payments as the paper venue does for the same rates and prices,
//! to the cent; each strategy's share follows its own position; equity
//! counts the position's unrealized PnL as the venue's account does.

use std::collections::BTreeMap;

use herd_backtest::sim::{FillModel, FundingSetup, RegimeSetup, Setup, intra_candle_path};
use herd_backtest::{Bar, FundingRow, report, run};
use herd_paper::{Exchange, FeePolicy, PaperConfig};
use herd_strategies::strategy::{
    Action, MarketView, OrderIntent, OrderUpdate, RegimeView, Side, StatusBlock, Strategy,
};
use herd_venue::{FundingPaymentQuery, NewOrder, OrderType};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const PERP: &str = "BTCUSDT-PERP";
const HOUR_MS: i64 = 3_600_000;
/// 2024-01-01 00:00 UTC: a settlement time.
const START_MS: i64 = 1_704_067_200_000;

/// Market orders at given times, then nothing: a position held on purpose.
struct Holder {
    name: &'static str,
    script: Script,
    done: usize,
}

impl Strategy for Holder {
    fn name(&self) -> &str {
        self.name
    }
    fn owns(&self, client_order_id: &str) -> bool {
        client_order_id.starts_with(self.name)
    }
    fn on_tick(&mut self, _market: &MarketView, now_ms: i64) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some((at, side, volume)) = self.script.get(self.done).copied() {
            if at > now_ms {
                break;
            }
            self.done += 1;
            out.push(Action::Place(OrderIntent {
                client_order_id: format!("{}-{}", self.name, self.done),
                symbol: PERP.into(),
                side,
                volume,
                price: None,
                post_only: false,
                userref_offset: 0,
            }));
        }
        out
    }
    fn on_order(&mut self, _update: &OrderUpdate, _now_ms: i64) -> Vec<Action> {
        Vec::new()
    }
    fn status(&self, _now_ms: i64) -> StatusBlock {
        StatusBlock::Detail(serde_json::json!({ "done": self.done }))
    }
    fn enabled(&self) -> bool {
        true
    }
}

/// Market orders: (time, side, volume).
type Script = Vec<(i64, Side, Decimal)>;

fn scripts() -> Vec<(&'static str, Script)> {
    vec![
        ("long", vec![(START_MS, Side::Buy, dec!(0.5))]),
        (
            "short",
            vec![
                (START_MS + 20 * HOUR_MS, Side::Sell, dec!(0.2)),
                (START_MS + 40 * HOUR_MS, Side::Buy, dec!(0.2)),
            ],
        ),
    ]
}

/// 48 hourly candles drifting up 100 a candle: bar k opens at
/// 40000 + 100k and closes 50 higher.
fn bars() -> Vec<Bar> {
    (0..48)
        .map(|k| {
            let open = Decimal::from(40_000 + 100 * k);
            Bar {
                open_time_ms: START_MS + k * HOUR_MS,
                open,
                high: open + dec!(70),
                low: open - dec!(20),
                close: open + dec!(50),
                volume: dec!(1),
            }
        })
        .collect()
}

/// A rate per 8 h settlement, both signs.
fn rates() -> Vec<FundingRow> {
    [
        dec!(0.0001),
        dec!(-0.0002),
        dec!(0.0003),
        dec!(0.00015),
        dec!(-0.0001),
        dec!(0.0002),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, rate)| FundingRow {
        time_ms: START_MS + (i64::try_from(i).unwrap() + 1) * 8 * HOUR_MS,
        symbol: PERP.into(),
        rate,
        mark: None,
    })
    .collect()
}

fn balances() -> BTreeMap<String, Decimal> {
    BTreeMap::from([("USDT".to_string(), dec!(10000))])
}

/// The paper venue's own BTCUSDT-PERP (the gateway's default instruments).
fn venue_perp() -> herd_paper::PaperInstrument {
    PaperConfig::default()
        .instruments
        .into_iter()
        .find(|p| p.instrument.symbol == PERP)
        .unwrap()
}

#[test]
fn funding_settlements_equal_the_paper_venues_for_the_same_rates() {
    let inst = venue_perp();
    let setup = Setup {
        instrument: inst.instrument.clone(),
        balances: balances(),
        fee_policy: FeePolicy::Quote,
        fill: FillModel::default(),
        regime: RegimeSetup::Fixed(RegimeView::not_ready()),
        funding: FundingSetup {
            interval_hours: inst.perp.as_ref().unwrap().funding_interval_hours,
            rates: rates(),
            followers: Vec::new(),
        },
    };
    let strategies: Vec<Box<dyn Strategy>> = scripts()
        .into_iter()
        .map(|(name, script)| {
            Box::new(Holder {
                name,
                script,
                done: 0,
            }) as Box<dyn Strategy>
        })
        .collect();
    let out = run(&setup, strategies, &bars(), HOUR_MS, &mut ()).unwrap();
    assert_eq!(out.fills.len(), 3, "{:?}", out.fills);

    // The paper venue, driven as the gateway's clock drives it: at every
    // trade time it first settles what is due (the rate of each interval
    // set beforehand), then the price moves, then the orders come.
    let cfg = PaperConfig {
        balances: balances(),
        ..PaperConfig::default()
    };
    let mut ex = Exchange::new(&cfg, START_MS);
    ex.set_market_slippage(FillModel::default().market_slippage);
    let rows = rates();
    let mut next_row = 0;
    ex.set_funding_rate(PERP, rows[0].rate).unwrap();
    let mut script: Vec<(i64, Side, Decimal, String)> = scripts()
        .into_iter()
        .flat_map(|(name, s)| {
            s.into_iter()
                .enumerate()
                .map(move |(i, (t, side, v))| (t, side, v, format!("{name}-{}", i + 1)))
        })
        .collect();
    script.sort_by_key(|x| x.0);
    let mut sent = 0;
    for bar in bars() {
        for (k, price) in intra_candle_path(&bar).into_iter().enumerate() {
            let now = bar.open_time_ms + HOUR_MS / 4 * i64::try_from(k).unwrap();
            let paid = ex.settle_funding(now);
            if !paid.is_empty() {
                next_row += paid.len();
                if let Some(r) = rows.get(next_row) {
                    ex.set_funding_rate(PERP, r.rate).unwrap();
                }
            }
            ex.set_price(PERP, price, now).unwrap();
            while let Some((_, side, volume, id)) = script.get(sent).filter(|x| x.0 <= now) {
                let order = NewOrder {
                    client_order_id: id.clone(),
                    symbol: PERP.into(),
                    side: *side,
                    order_type: OrderType::Market,
                    volume: *volume,
                    price: None,
                    post_only: false,
                    userref: 1000,
                    reduce_only: false,
                };
                ex.place(&order, now).unwrap();
                sent += 1;
            }
        }
    }
    let venue = ex.funding_payments(&FundingPaymentQuery::default());
    assert_eq!(venue.len(), 5, "settlements at 8, 16, 24, 32 and 40 h");
    let key = |p: &herd_venue::FundingPayment| {
        (
            p.time_ms,
            p.side,
            p.size,
            p.mark_price,
            p.rate,
            p.amount.round_dp(2),
        )
    };
    assert_eq!(
        out.funding.iter().map(key).collect::<Vec<_>>(),
        venue.iter().map(key).collect::<Vec<_>>()
    );
    let venue_total: Decimal = venue.iter().map(|p| p.amount).sum();
    let rep = report::build(&out, &[]);
    assert_eq!(rep.funding.round_dp(2), venue_total.round_dp(2));
    assert_eq!(rep.funding_settlements, 5);

    // By hand: at 08:00 the long holds 0.5 marked at bar 7's close (40750)
    // and pays 0.01 %: 0.5 x 40750 x 0.0001 = 2.0375. At 16:00 it receives
    // 0.02 % on 0.5 x 41550 = 4.155.
    assert_eq!(out.funding[0].amount, dec!(-2.0375));
    assert_eq!(out.funding[1].amount, dec!(4.155));
    // 24 h: the short holds 0.2 of the 0.5, the venue settles the net 0.3 at
    // 42350: -0.3 x 42350 x 0.0003 = -3.8115; the long's share -6.3525, the
    // short's +2.541.
    assert_eq!(out.funding[2].size, dec!(0.3));
    assert_eq!(out.funding[2].amount, dec!(-3.8115));
    let long = &rep.strategies["long"];
    let short = &rep.strategies["short"];
    // The short held through 24 h, 32 h and 40 h (it buys back after the
    // 40 h settlement): +0.2 x mark x rate each.
    let short_want = dec!(0.2) * (dec!(42350) * dec!(0.0003) + dec!(43150) * dec!(0.00015))
        + dec!(0.2) * dec!(43950) * dec!(-0.0001);
    assert_eq!(short.funding, short_want);
    assert_eq!(
        (long.funding + short.funding).round_dp(2),
        venue_total.round_dp(2)
    );

    // Equity at the end counts the position's unrealized PnL: the venue's
    // account equity at the same price, to the cent.
    let last = out.equity.last().unwrap();
    let venue_equity = ex.account_margin(last.time_ms).equity;
    assert_eq!(last.equity.round_dp(2), venue_equity.round_dp(2));
}
