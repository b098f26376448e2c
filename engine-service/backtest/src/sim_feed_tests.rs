//! The regime feed's worker thread against the inline feed, call for call,
//! including calls out of the driver's order (where it leaves the worker).

use super::{Bar, FeedMode, RegimeFeed};

/// Trending and ranging spells of 1 m candles.
fn bars(n: usize) -> Vec<Bar> {
    crate::synthetic::candles(n, 1_704_067_200_000, 60_000, 0.1, 8, 11)
}

/// One call to a feed.
#[derive(Clone, Copy)]
enum Call {
    Reading(i64),
    Push(usize),
}

fn replay(feed: &mut RegimeFeed<'_>, bars: &[Bar], calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match *c {
            Call::Reading(t) => Some(format!("{:?}", feed.reading(t))),
            Call::Push(i) => {
                feed.push(&bars[i]);
                None
            }
        })
        .collect()
}

fn canonical(bars: &[Bar], range: std::ops::Range<usize>) -> Vec<Call> {
    range
        .flat_map(|i| [Call::Reading(bars[i].open_time_ms), Call::Push(i)])
        .collect()
}

#[test]
fn worker_answers_exactly_as_inline_in_the_drivers_order() {
    let b = bars(4200);
    let calls = canonical(&b, 0..b.len());
    let mut ahead = RegimeFeed::new(60_000, 60_000, &b, true).unwrap();
    let mut inline = RegimeFeed::new(60_000, 60_000, &b, false).unwrap();
    assert!(matches!(ahead.mode, FeedMode::Ahead(_)));
    let got = replay(&mut ahead, &b, &calls);
    assert!(matches!(ahead.mode, FeedMode::Ahead(_)), "left the worker");
    assert_eq!(got, replay(&mut inline, &b, &calls));
    let ready = got.iter().filter(|v| v.contains("ready: true")).count();
    assert!(ready > 1000, "{ready} ready readings");
}

#[test]
fn calls_out_of_order_leave_the_worker_with_the_same_answers() {
    let b = bars(3600);
    // A second reading of one bar, later a push without its reading, then a
    // bar pushed that is not the next one: each alone leaves the worker.
    let mut deviations: Vec<Vec<Call>> = Vec::new();
    let mut calls = canonical(&b, 0..3200);
    calls.push(Call::Reading(b[3200].open_time_ms));
    calls.push(Call::Reading(b[3200].open_time_ms + 30_000));
    calls.push(Call::Push(3200));
    calls.extend(canonical(&b, 3201..3600));
    deviations.push(calls);
    let mut calls = canonical(&b, 0..3300);
    calls.push(Call::Push(3300));
    calls.extend(canonical(&b, 3301..3600));
    deviations.push(calls);
    let mut calls = canonical(&b, 0..3100);
    calls.push(Call::Reading(b[3100].open_time_ms));
    calls.push(Call::Push(3101));
    calls.extend(canonical(&b, 3102..3600));
    deviations.push(calls);
    for (n, calls) in deviations.iter().enumerate() {
        let mut ahead = RegimeFeed::new(60_000, 60_000, &b, true).unwrap();
        let mut inline = RegimeFeed::new(60_000, 60_000, &b, false).unwrap();
        let got = replay(&mut ahead, &b, calls);
        assert!(matches!(ahead.mode, FeedMode::Inline(_)), "case {n}");
        assert_eq!(got, replay(&mut inline, &b, calls), "case {n}");
        assert!(got.iter().any(|v| v.contains("ready: true")), "case {n}");
    }
}
