//! Backtests: the engine's own strategies (herd-strategies' reducers) over
//! historical candles on herd-paper's matching core, in simulated time.
//!
//! [`csv`] reads candles and funding rates, [`sim`] walks each candle
//! through the paper core with the fill model and drives the strategies
//! with the live engine's call sequence, and [`report`] turns the run into
//! metrics, a fills CSV, SVG charts and one self-contained HTML page.
//! [`replay`] records a run's calls into the strategies and makes them
//! again on fresh ones (the year bench's strategy step, measured alone).
//! Nothing here reads a clock or does I/O except [`report::write_files`]
//! and the CSV loaders; the same inputs give byte-identical reports.

pub mod csv;
pub mod paper_funding;
pub mod replay;
pub mod report;
pub mod sim;
pub mod sweep;
pub mod synthetic;
pub mod tally;
pub mod timing;

pub use csv::{Bar, Candles, CsvError, FundingRow};
pub use sim::{
    Companion, FillModel, FundingSetup, Outcome, RegimeSetup, Setup, engine_strategies, run,
    run_with,
};
