#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The driver end to end on hand-checked candles: one ranger cycle over
//! three candles, to the cent, and determinism (two runs, identical bytes).

use std::collections::BTreeMap;

use herd_backtest::csv::parse_candles;
use herd_backtest::sim::{FillModel, FundingSetup, RegimeSetup, Setup};
use herd_backtest::{engine_strategies, report, run};
use herd_paper::{FeePolicy, PaperInstrument};
use herd_strategies::grid::GridConfig;
use herd_strategies::rangers::RangerConfig;
use herd_strategies::strategy::{RegimeView, Side};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

fn setup() -> Setup {
    Setup {
        instrument: PaperInstrument::doge_usd().instrument,
        balances: BTreeMap::from([("USD".into(), dec!(1000)), ("DOGE".into(), dec!(5000))]),
        fee_policy: FeePolicy::Quote,
        fill: FillModel::default(),
        funding: FundingSetup::default(),
        regime: RegimeSetup::Fixed(RegimeView {
            regime: "RANGING".into(),
            ready: true,
            confidence: 1.0,
            bias: 0.0,
        }),
    }
}

fn one_ranger() -> RangerConfig {
    RangerConfig {
        enabled: true,
        max_slots: 1,
        order_size_usd: dec!(20),
        entry_pct: dec!(1),
        profit_pct: dec!(2),
        entry_timeout_sec: 100_000,
        exit_timeout_sec: 100_000,
        cooldown_sec: 100_000,
        ..RangerConfig::default()
    }
}

const THREE_CANDLES: &str = "time,open,high,low,close,volume\n\
    1700000040,0.1,0.1,0.1,0.1,1000\n\
    1700000100,0.1,0.1015,0.1,0.101,1000\n\
    1700000160,0.101,0.101,0.0985,0.099,1000\n";

#[test]
fn one_ranger_cycle_over_three_candles_to_the_cent() {
    let candles = parse_candles("three.csv", THREE_CANDLES).unwrap();
    let start = candles.bars[0].open_time_ms;
    let strategies =
        engine_strategies(one_ranger(), GridConfig::default(), "DOGEUSD", start).unwrap();
    let out = run(
        &setup(),
        strategies,
        &candles.bars,
        candles.interval_ms,
        &mut (),
    )
    .unwrap();

    // Candle 1 (flat at 0.1): the ranger offers 20 USD of DOGE 1 % above,
    // 0.101 (198.01980198 DOGE). Candle 2 trades up to 0.1015, through the
    // offer: it fills at 0.101, and the exit bids 2 % lower, at 0.09898.
    // Candle 3 trades down to 0.0985, through the bid: the exit fills.
    assert_eq!(out.fills.len(), 2, "{:#?}", out.fills);
    let (entry, exit) = (&out.fills[0], &out.fills[1]);
    assert_eq!(
        (entry.side, entry.price, entry.volume),
        (Side::Sell, dec!(0.101), dec!(198.01980198))
    );
    assert_eq!(
        (exit.side, exit.price, exit.volume),
        (Side::Buy, dec!(0.09898), dec!(198.01980198))
    );
    // Maker fees 0.25 % in USD: 19.99999999998 x 0.0025, 19.5999999999804 x 0.0025.
    assert_eq!(entry.fee, dec!(0.05));
    assert_eq!(exit.fee, dec!(0.049));
    assert!(!entry.taker && !exit.taker);
    // The entry filled at the candle's high (a quarter in), the exit at its low.
    assert_eq!(entry.time_ms, 1_700_000_100_000 + 30_000);
    assert_eq!(exit.time_ms, 1_700_000_160_000 + 30_000);

    let rep = report::build(&out, &candles.gaps);
    assert_eq!(rep.cycles, 1);
    assert_eq!(rep.win_rate_pct, Some(dec!(100)));
    // Gross 0.00202 x 198.01980198 = 0.40, minus 0.099 fees: 0.30.
    let cycle_net = rep.strategies["rangers"].cycle_net;
    assert_eq!(cycle_net.round_dp(2), dec!(0.30));
    assert_eq!(rep.fees.round_dp(3), dec!(0.099));
    // The DOGE came back; the USD gained the cycle's net.
    assert_eq!(rep.final_base, dec!(5000));
    assert_eq!(rep.final_quote.round_dp(2), dec!(1000.30));
    assert_eq!(
        (rep.final_quote - dec!(1000)).round_dp(8),
        cycle_net.round_dp(8)
    );
    // Equity: 1000 + 5000 x 0.1 at the start; 1000.301 + 5000 x 0.099 at the end.
    assert_eq!(rep.initial_equity, dec!(1500));
    assert_eq!(rep.net_pnl.round_dp(2), dec!(-4.70));
    let dd = rep.max_drawdown.unwrap();
    // The peak at the second candle's close (the DOGE sold at 0.101 is
    // worth less), the trough at the third's.
    assert_eq!(dd.peak, "2023-11-14T22:16:00Z");
    assert_eq!(dd.trough, "2023-11-14T22:17:00Z");
    assert_eq!(dd.recovered, None);
    assert_eq!(rep.regime_time_pct["RANGING"], dec!(100));
    assert_eq!(rep.strategies["rangers"].slots["ranger 0"].cycles, 1);
}

#[test]
fn the_same_inputs_give_byte_identical_reports() {
    // Two hours of a zig-zag market with the rangers and the grid on.
    let mut text = String::from("time,open,high,low,close,volume\n");
    let mut p = Decimal::new(1000, 4);
    for i in 0..120 {
        let step = if (i / 7) % 2 == 0 {
            dec!(0.0004)
        } else {
            dec!(-0.0004)
        };
        let close = p + step;
        let (hi, lo) = (p.max(close) + dec!(0.0003), p.min(close) - dec!(0.0002));
        text.push_str(&format!(
            "{},{p},{hi},{lo},{close},1000\n",
            1_700_000_040 + 60 * i
        ));
        p = close;
    }
    let candles = parse_candles("zigzag.csv", &text).unwrap();
    let grid = GridConfig {
        enabled: true,
        ..GridConfig::default()
    };
    let files = || {
        let start = candles.bars[0].open_time_ms;
        let s = engine_strategies(one_ranger(), grid.clone(), "DOGEUSD", start).unwrap();
        let out = run(&setup(), s, &candles.bars, candles.interval_ms, &mut ()).unwrap();
        assert!(
            !out.fills.is_empty(),
            "the run traded nothing: not a useful check"
        );
        report::files(&out, &candles.gaps).unwrap()
    };
    let (a, b) = (files(), files());
    assert_eq!(a.len(), 8);
    for ((name_a, bytes_a), (name_b, bytes_b)) in a.iter().zip(b.iter()) {
        assert_eq!(name_a, name_b);
        assert!(bytes_a == bytes_b, "{name_a} differs between two runs");
    }
    // The PNG charts decode, at their size, with the line drawn in its
    // colour and the ground white.
    for (name, rgb) in [
        ("equity.png", [0x1f, 0x6f, 0xeb]),
        ("drawdown.png", [0xcf, 0x22, 0x2e]),
    ] {
        let bytes = &a.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes.as_slice()))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), report::PNG_SIZE, "{name}");
        assert_eq!(info.color_type, png::ColorType::Rgb, "{name}");
        let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
        let line = pixels.iter().filter(|p| **p == rgb).count();
        let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
        assert!(line > 900, "{name}: {line} pixels of the line");
        assert!(white > pixels.len() / 2, "{name}: {white} white pixels");
    }
}
