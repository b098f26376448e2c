//! The report of a run: metrics ([`Report`]), and the files
//! [`write_files`] writes: `report.json`, `fills.csv`, `equity.svg`,
//! `drawdown.svg` and `report.html` (self-contained: its tables and the two
//! charts inline, nothing fetched). Every number comes from the
//! [`Outcome`] alone, so the same run gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::csv::{Gap, fmt_time};
use crate::sim::Outcome;
use crate::tally::EquityCurve;

/// Points a chart draws at most (the curve is sampled evenly, the last
/// point always kept).
const CHART_POINTS: usize = 1500;

/// The largest fall of equity from a previous peak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drawdown {
    /// In the quote coin.
    pub amount: Decimal,
    /// As a percentage of the peak.
    pub pct: Decimal,
    pub peak_ms: i64,
    pub peak: String,
    pub trough_ms: i64,
    pub trough: String,
    /// When equity was back at the peak; `None`: not by the end.
    pub recovered: Option<String>,
}

/// One strategy's share of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StrategyReport {
    pub fills: u64,
    pub buy_volume: Decimal,
    pub sell_volume: Decimal,
    /// Quote spent on buys minus quote received for sells, fees excluded.
    pub fees_quote: Decimal,
    pub cycles: u64,
    pub winning_cycles: u64,
    pub cycle_net: Decimal,
    pub orphans: u64,
    /// Exposure of the orphans that report it (quote).
    pub orphan_exposure: Decimal,
    /// Funding on this strategy's own perpetual position: received (+) or
    /// paid (-).
    pub funding: Decimal,
    /// Per slot (grid `slot N`, rangers `ranger N`): cycles and their net.
    pub slots: BTreeMap<String, SlotReport>,
}

/// One slot's cycles.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlotReport {
    pub cycles: u64,
    pub wins: u64,
    pub net: Decimal,
    pub orphans: u64,
}

/// The metrics of a run (report.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub symbol: String,
    pub quote: String,
    pub start: String,
    pub end: String,
    pub candles: usize,
    pub interval_ms: i64,
    pub gaps: usize,
    pub missing_candles: i64,
    pub initial_equity: Decimal,
    pub final_equity: Decimal,
    /// final - initial equity, in the quote coin (base valued at the last close).
    pub net_pnl: Decimal,
    /// net_pnl over initial equity, percent.
    pub return_pct: Decimal,
    /// The last close over the first open, percent (holding the base).
    pub buy_and_hold_pct: Decimal,
    pub fees: Decimal,
    pub fees_by_coin: BTreeMap<String, Decimal>,
    /// Funding received (+) or paid (-); zero on spot.
    pub funding: Decimal,
    /// Funding settlements booked (perpetuals; one per funding time with a
    /// position open).
    pub funding_settlements: usize,
    pub max_drawdown: Option<Drawdown>,
    /// Mean over standard deviation of daily returns, times sqrt(365).
    pub sharpe_daily: Option<f64>,
    /// Mean over downside deviation of daily returns, times sqrt(365).
    pub sortino_daily: Option<f64>,
    pub fills: usize,
    pub orders_placed: u64,
    pub place_failures: u64,
    pub cancel_failures: u64,
    pub cycles: u64,
    /// Winning cycles over all cycles, percent.
    pub win_rate_pct: Option<Decimal>,
    pub orphans: u64,
    pub orphan_exposure: Decimal,
    /// Share of simulated time in each regime reading, percent.
    pub regime_time_pct: BTreeMap<String, Decimal>,
    pub strategies: BTreeMap<String, StrategyReport>,
    pub ticks: u64,
    pub final_base: Decimal,
    pub final_quote: Decimal,
}

fn pct(part: Decimal, whole: Decimal) -> Decimal {
    if whole.is_zero() {
        Decimal::ZERO
    } else {
        (part * Decimal::ONE_HUNDRED / whole).round_dp(4)
    }
}

/// Builds the report from a run's outcome and the gaps of its candles.
pub fn build(out: &Outcome, gaps: &[Gap]) -> Report {
    let last = out.equity.last();
    let final_equity = last.map_or(out.initial_equity, |p| p.equity);
    let net_pnl = final_equity - out.initial_equity;
    let mut fees = Decimal::ZERO;
    let mut fees_by_coin: BTreeMap<String, Decimal> = BTreeMap::new();
    // The journal's fields come tallied from the run; the fills' and the
    // funding's are other fields of the same entries.
    let mut strategies: BTreeMap<String, StrategyReport> = out.journal.strategies.clone();
    for f in &out.fills {
        fees += f.fee_quote;
        *fees_by_coin.entry(f.fee_asset.clone()).or_default() += f.fee;
        let s = strategies.entry(f.strategy.clone()).or_default();
        s.fills += 1;
        s.fees_quote += f.fee_quote;
        match f.side {
            herd_strategies::strategy::Side::Buy => s.buy_volume += f.volume,
            herd_strategies::strategy::Side::Sell => s.sell_volume += f.volume,
        }
    }
    let (cycles, wins, orphans) = (out.journal.cycles, out.journal.wins, out.journal.orphans);
    let orphan_exposure = out.journal.orphan_exposure;
    for (name, amount) in &out.funding_by_strategy {
        strategies.entry(name.clone()).or_default().funding += *amount;
    }
    let funding: Decimal = out.funding.iter().map(|p| p.amount).sum();
    let total_ms: i64 = out.regime_ms.values().sum();
    let regime_time_pct = out
        .regime_ms
        .iter()
        .map(|(k, v)| (k.clone(), pct(Decimal::from(*v), Decimal::from(total_ms))))
        .collect();
    let (sharpe_daily, sortino_daily) = daily_ratios(&out.equity.daily());
    let buy_and_hold_pct = last.map_or(Decimal::ZERO, |l| {
        pct(l.close - out.first_open, out.first_open)
    });
    Report {
        symbol: out.symbol.clone(),
        quote: out.quote.clone(),
        start: fmt_time(out.start_ms),
        end: fmt_time(out.end_ms),
        candles: out.candles,
        interval_ms: out.interval_ms,
        gaps: gaps.len(),
        missing_candles: gaps.iter().map(|g| g.missing).sum(),
        initial_equity: out.initial_equity.round_dp(8),
        final_equity: final_equity.round_dp(8),
        net_pnl: net_pnl.round_dp(8),
        return_pct: pct(net_pnl, out.initial_equity),
        buy_and_hold_pct,
        fees: fees.round_dp(8),
        fees_by_coin,
        funding: funding.round_dp(8),
        funding_settlements: out.funding.len(),
        max_drawdown: max_drawdown(&out.equity),
        sharpe_daily,
        sortino_daily,
        fills: out.fills.len(),
        orders_placed: out.orders_placed,
        place_failures: out.place_failures,
        cancel_failures: out.cancel_failures,
        cycles,
        win_rate_pct: (cycles > 0).then(|| pct(Decimal::from(wins), Decimal::from(cycles))),
        orphans,
        orphan_exposure,
        regime_time_pct,
        strategies,
        ticks: out.ticks,
        final_base: last.map_or(Decimal::ZERO, |p| p.base),
        final_quote: last.map_or(Decimal::ZERO, |p| p.quote),
    }
}

fn max_drawdown(curve: &EquityCurve) -> Option<Drawdown> {
    let d = curve.max_drawdown()?;
    Some(Drawdown {
        amount: d.amount.round_dp(8),
        pct: pct(d.amount, d.peak),
        peak_ms: d.peak_ms,
        peak: fmt_time(d.peak_ms),
        trough_ms: d.trough_ms,
        trough: fmt_time(d.trough_ms),
        recovered: d.recovered_ms.map(fmt_time),
    })
}

/// Sharpe and Sortino over daily returns (`days`: the initial equity, then
/// equity at each UTC day's last close; [`EquityCurve::daily`]),
/// annualised with sqrt(365); `None` with fewer than two days or no
/// variation.
fn daily_ratios(days: &[f64]) -> (Option<f64>, Option<f64>) {
    let returns: Vec<f64> = days
        .windows(2)
        .filter(|w| w[0] > 0.0)
        .map(|w| w[1] / w[0] - 1.0)
        .collect();
    if returns.len() < 2 {
        return (None, None);
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let down = returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n;
    let annual = 365f64.sqrt();
    let round = |x: f64| (x * 1e6).round() / 1e6;
    let sharpe = (var > 0.0).then(|| round(mean / var.sqrt() * annual));
    let sortino = (down > 0.0).then(|| round(mean / down.sqrt() * annual));
    (sharpe, sortino)
}

/// fills.csv: one row per fill.
pub fn fills_csv(out: &Outcome) -> String {
    let mut s = String::from(
        "time,time_ms,strategy,client_order_id,side,price,volume,fee,fee_asset,fee_quote,liquidity\n",
    );
    for f in &out.fills {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{}",
            fmt_time(f.time_ms),
            f.time_ms,
            f.strategy,
            f.client_order_id,
            f.side.as_str(),
            f.price.normalize(),
            f.volume.normalize(),
            f.fee.normalize(),
            f.fee_asset,
            f.fee_quote.round_dp(8).normalize(),
            if f.taker { "taker" } else { "maker" }
        );
    }
    s
}

fn sample(curve: &[(i64, f64)]) -> Vec<(i64, f64)> {
    if curve.len() <= CHART_POINTS {
        return curve.to_vec();
    }
    let step = curve.len().div_ceil(CHART_POINTS);
    let mut v: Vec<(i64, f64)> = curve.iter().step_by(step).copied().collect();
    if let Some(l) = curve.last()
        && v.last() != Some(l)
    {
        v.push(*l);
    }
    v
}

/// A line chart as SVG: `title`, the series, and its value axis labels.
pub fn line_svg(title: &str, unit: &str, series: &[(i64, f64)], color: &str) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 300.0, 70.0, 20.0, 30.0, 40.0);
    let pts = sample(series);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{title}\">\
<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
<text x=\"{left}\" y=\"20\" font-family=\"sans-serif\" font-size=\"14\">{title}</text>"
    );
    if pts.is_empty() {
        s.push_str("</svg>\n");
        return s;
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1));
    let (mut lo, mut hi) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.1), h.max(p.1)));
    if hi - lo < 1e-12 {
        lo -= 1.0;
        hi += 1.0;
    }
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (w - left - right);
    let y = |v: f64| top + (hi - v) / (hi - lo) * (h - top - bottom);
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#999\"/>",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for (v, label) in [(hi, hi), (lo, lo), ((hi + lo) / 2.0, (hi + lo) / 2.0)] {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y(v) + 4.0,
            fmt_axis(label, unit)
        );
    }
    for (t, anchor) in [(t0, "start"), (t1, "end")] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            h - bottom + 16.0,
            &fmt_time(t)[..10]
        );
    }
    s.push_str("<polyline fill=\"none\" stroke=\"");
    s.push_str(color);
    s.push_str("\" stroke-width=\"1.5\" points=\"");
    for (i, (t, v)) in pts.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{:.2},{:.2}", x(*t), y(*v));
    }
    s.push_str("\"/></svg>\n");
    s
}

fn fmt_axis(v: f64, unit: &str) -> String {
    if unit == "%" {
        format!("{v:.2}%")
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// Width and height of the PNG charts, pixels (the SVGs' size).
pub const PNG_SIZE: (u32, u32) = (900, 300);

/// A line chart as a PNG: white ground, grey axes, the series in `rgb`, on
/// the same scales as [`line_svg`]. It has no text (no font is needed on
/// the machine that writes it); the SVG and the HTML page carry the title
/// and the axis labels.
pub fn line_png(series: &[(i64, f64)], rgb: [u8; 3]) -> Vec<u8> {
    let (w, h) = PNG_SIZE;
    let (left, right, top, bottom) = (70i64, 20i64, 30i64, 40i64);
    let (wi, hi_px) = (i64::from(w), i64::from(h));
    let mut px = vec![255u8; (w * h * 3) as usize];
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if (0..wi).contains(&x) && (0..hi_px).contains(&y) {
            let i = ((y * wi + x) * 3) as usize;
            px[i..i + 3].copy_from_slice(&c);
        }
    };
    let grey = [153, 153, 153];
    for x in left..=wi - right {
        put(x, hi_px - bottom, grey);
    }
    for y in top..=hi_px - bottom {
        put(left, y, grey);
    }
    let pts = sample(series);
    if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
        let (t0, t1) = (first.0, last.0.max(first.0 + 1));
        let (mut lo, mut hi) = pts
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.1), h.max(p.1)));
        if hi - lo < 1e-12 {
            lo -= 1.0;
            hi += 1.0;
        }
        let span_x = (wi - left - right) as f64;
        let span_y = (hi_px - top - bottom) as f64;
        let to_px = |t: i64, v: f64| -> (i64, i64) {
            let x = left as f64 + (t - t0) as f64 / (t1 - t0) as f64 * span_x;
            let y = top as f64 + (hi - v) / (hi - lo) * span_y;
            (x.round() as i64, y.round() as i64)
        };
        let mut prev = to_px(first.0, first.1);
        for &(t, v) in &pts {
            let next = to_px(t, v);
            // Bresenham, two pixels thick.
            let (mut x, mut y) = prev;
            let (dx, dy) = ((next.0 - x).abs(), -(next.1 - y).abs());
            let (sx, sy) = (
                if x < next.0 { 1 } else { -1 },
                if y < next.1 { 1 } else { -1 },
            );
            let mut err = dx + dy;
            loop {
                put(x, y, rgb);
                put(x, y + 1, rgb);
                if (x, y) == next {
                    break;
                }
                let e2 = 2 * err;
                if e2 >= dy {
                    err += dy;
                    x += sx;
                }
                if e2 <= dx {
                    err += dx;
                    y += sy;
                }
            }
            prev = next;
        }
    }
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // Writing to memory cannot fail but for a bad header, which these
    // constants are not; an empty file would show it.
    if let Ok(mut writer) = enc.write_header() {
        let _ = writer.write_image_data(&px);
    }
    bytes
}

fn equity_series(out: &Outcome) -> &[(i64, f64)] {
    out.equity.points()
}

/// The equity curve (quote) as SVG.
pub fn equity_svg(out: &Outcome) -> String {
    line_svg(
        &format!("Equity ({})", out.quote),
        "",
        equity_series(out),
        "#1f6feb",
    )
}

/// The equity curve as PNG (no text; see [`line_png`]).
pub fn equity_png(out: &Outcome) -> Vec<u8> {
    line_png(equity_series(out), [0x1f, 0x6f, 0xeb])
}

/// The drawdown curve as PNG (no text; see [`line_png`]).
pub fn drawdown_png(out: &Outcome) -> Vec<u8> {
    line_png(&drawdown_series(out), [0xcf, 0x22, 0x2e])
}

/// The drawdown from the running peak (percent, at most zero) as SVG.
pub fn drawdown_svg(out: &Outcome) -> String {
    line_svg("Drawdown (%)", "%", &drawdown_series(out), "#cf222e")
}

fn drawdown_series(out: &Outcome) -> Vec<(i64, f64)> {
    let mut peak = out.initial_equity.to_f64().unwrap_or(0.0);
    out.equity
        .points()
        .iter()
        .map(|&(t, e)| {
            peak = peak.max(e);
            let dd = if peak > 0.0 {
                (e / peak - 1.0) * 100.0
            } else {
                0.0
            };
            (t, dd)
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page: the summary, per-strategy and per-slot
/// tables and both charts inline.
pub fn html(report: &Report, equity_svg: &str, drawdown_svg: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Herd backtest: {}</title>\
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}</style>\
</head><body>\n<h1>Backtest: {} {} to {}</h1>\n",
        esc(&report.symbol),
        esc(&report.symbol),
        esc(&report.start),
        esc(&report.end)
    );
    let dd = report.max_drawdown.as_ref();
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    let rows: Vec<(&str, String)> = vec![
        (
            "Candles",
            format!(
                "{} ({} gaps, {} missing)",
                report.candles, report.gaps, report.missing_candles
            ),
        ),
        (
            "Initial equity",
            format!("{} {}", report.initial_equity, report.quote),
        ),
        (
            "Final equity",
            format!("{} {}", report.final_equity, report.quote),
        ),
        ("Net PnL", format!("{} {}", report.net_pnl, report.quote)),
        ("Return", format!("{}%", report.return_pct)),
        ("Buy and hold", format!("{}%", report.buy_and_hold_pct)),
        ("Fees", format!("{} {}", report.fees, report.quote)),
        ("Funding", format!("{} {}", report.funding, report.quote)),
        (
            "Max drawdown",
            dd.map_or("none".into(), |d| {
                format!(
                    "{} {} ({}%), {} to {}",
                    d.amount, report.quote, d.pct, d.peak, d.trough
                )
            }),
        ),
        ("Sharpe (daily)", opt(report.sharpe_daily)),
        ("Sortino (daily)", opt(report.sortino_daily)),
        ("Fills", report.fills.to_string()),
        ("Cycles", report.cycles.to_string()),
        (
            "Win rate",
            report
                .win_rate_pct
                .map_or("n/a".into(), |w| format!("{w}%")),
        ),
        (
            "Orphans",
            format!(
                "{} (exposure {} {})",
                report.orphans, report.orphan_exposure, report.quote
            ),
        ),
    ];
    s.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    for (k, v) in rows {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    s.push_str("</table>\n<h2>Equity</h2>\n<div id=\"equity\">");
    s.push_str(equity_svg);
    s.push_str("</div>\n<h2>Drawdown</h2>\n<div id=\"drawdown\">");
    s.push_str(drawdown_svg);
    s.push_str("</div>\n<h2>Time in each regime</h2>\n<table id=\"regimes\"><tr><th>Regime</th><th>%</th></tr>\n");
    for (k, v) in &report.regime_time_pct {
        let _ = writeln!(s, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
    }
    s.push_str("</table>\n<h2>Strategies</h2>\n<table id=\"strategies\"><tr><th>Strategy</th><th>Fills</th><th>Bought</th><th>Sold</th><th>Fees</th><th>Cycles</th><th>Wins</th><th>Cycle net</th><th>Orphans</th></tr>\n");
    for (name, r) in &report.strategies {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            r.fills,
            r.buy_volume.normalize(),
            r.sell_volume.normalize(),
            r.fees_quote.round_dp(8).normalize(),
            r.cycles,
            r.winning_cycles,
            r.cycle_net.round_dp(8).normalize(),
            r.orphans
        );
    }
    s.push_str("</table>\n<h2>Slots</h2>\n<table id=\"slots\"><tr><th>Strategy</th><th>Slot</th><th>Cycles</th><th>Wins</th><th>Net</th><th>Orphans</th></tr>\n");
    for (name, r) in &report.strategies {
        for (slot, v) in &r.slots {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(slot),
                v.cycles,
                v.wins,
                v.net.round_dp(8).normalize(),
                v.orphans
            );
        }
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

/// The files of a report, by name.
pub fn files(
    out: &Outcome,
    gaps: &[Gap],
) -> Result<Vec<(&'static str, Vec<u8>)>, serde_json::Error> {
    let report = build(out, gaps);
    let equity = equity_svg(out);
    let drawdown = drawdown_svg(out);
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    Ok(vec![
        ("report.json", json),
        ("fills.csv", fills_csv(out).into_bytes()),
        ("funding.csv", funding_csv(out).into_bytes()),
        ("equity.svg", equity.clone().into_bytes()),
        ("drawdown.svg", drawdown.clone().into_bytes()),
        ("equity.png", equity_png(out)),
        ("drawdown.png", drawdown_png(out)),
        (
            "report.html",
            html(&report, &equity, &drawdown).into_bytes(),
        ),
    ])
}

/// One row per funding settlement: time, symbol, side and size of the
/// position, mark, rate, amount (+ received, - paid), asset.
fn funding_csv(out: &Outcome) -> String {
    let mut s = String::from("time,time_ms,symbol,side,size,mark,rate,amount,asset\n");
    for p in &out.funding {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            fmt_time(p.time_ms),
            p.time_ms,
            p.symbol,
            p.side.as_str(),
            p.size,
            p.mark_price,
            p.rate,
            p.amount,
            p.asset
        ));
    }
    s
}

/// Writes the report's files into `dir` (created if missing).
pub fn write_files(
    dir: &Path,
    out: &Outcome,
    gaps: &[Gap],
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, bytes) in files(out, gaps).map_err(std::io::Error::other)? {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}
