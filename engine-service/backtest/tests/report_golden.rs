#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The report of a fixed run is byte for byte the one recorded in
//! `tests/golden/` (report.json in full, every other file by size and
//! FNV-1a hash). It was recorded before the run's outcome was made compact
//! (streamed equity statistics, interned fill strings); any change to what
//! a run or its report produces shows here. To record it again after an
//! intended change: `HERD_GOLDEN_WRITE=1 cargo test -p herd-backtest --test
//! report_golden`, and say why in the commit.

use std::fmt::Write as _;
use std::path::PathBuf;

use herd_backtest::sim::RegimeSetup;
use herd_backtest::{Bar, engine_strategies, report, run};
use herd_strategies::strategy::RegimeView;

const START_MS: i64 = 1_704_067_200_000;

/// The year bench's generator: DOGE-like 1 m candles.
fn candles(n: usize) -> Vec<Bar> {
    herd_backtest::synthetic::candles(n, START_MS, 60_000, 0.1, 7, 7)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// 3,000 one-minute candles (two days and a bit: three daily returns, a
/// chart sampled every other point) through rangers, the grid and its
/// churner in a fixed RANGING regime.
#[test]
fn a_fixed_run_gives_the_recorded_report_byte_for_byte() {
    let bars = candles(3_000);
    let setup = herd_backtest::synthetic::doge_setup(RegimeSetup::Fixed(RegimeView {
        regime: "RANGING".into(),
        ready: true,
        confidence: 1.0,
        bias: 0.0,
    }));
    let (rangers, grid) = herd_backtest::synthetic::all_on();
    let strategies = engine_strategies(rangers, grid, "DOGEUSD", START_MS).unwrap();
    let out = run(&setup, strategies, &bars, 60_000, &mut ()).unwrap();
    let rep = report::build(&out, &[]);
    // What makes this scenario a useful check: trades, cycles, a drawdown
    // and daily ratios.
    assert!(rep.fills > 100, "{} fills", rep.fills);
    assert!(rep.cycles > 10, "{} cycles", rep.cycles);
    assert!(rep.max_drawdown.is_some());
    assert!(rep.sharpe_daily.is_some());

    let files = report::files(&out, &[]).unwrap();
    let mut index = String::new();
    let mut json = Vec::new();
    for (name, bytes) in &files {
        let _ = writeln!(index, "{name} {} {:016x}", bytes.len(), fnv1a(bytes));
        if *name == "report.json" {
            json.clone_from(bytes);
        }
    }
    let dir = golden_dir();
    if std::env::var_os("HERD_GOLDEN_WRITE").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fixed_3000.index"), &index).unwrap();
        std::fs::write(dir.join("fixed_3000.report.json"), &json).unwrap();
    }
    let want_json = std::fs::read(dir.join("fixed_3000.report.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&want_json),
        "report.json differs from the recorded one"
    );
    let want_index = std::fs::read_to_string(dir.join("fixed_3000.index")).unwrap();
    assert_eq!(
        index, want_index,
        "a report file differs from the recorded one (name, size, FNV-1a)"
    );
}
