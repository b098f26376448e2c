//! `/metrics` on both services' admin ports and their JSON logs, with real
//! processes: a paper gateway and one engine. Every page is parsed strictly
//! as the OpenMetrics text format 1.0 (what prometheus-client writes and
//! Prometheus asks for first), and specific series must move when an order
//! is placed, refused and canceled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::procs::{CONTROL_TOKEN, Proc, free_port};
use herd_tests::{ADMIN_TOKEN, admin_client, bin_path, engine_client, engine_token, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// A gateway (paper, a still market) and engine e0, both logging JSON.
struct Herd {
    gateway: Proc,
    gateway_http: String,
    engine: Proc,
    engine_http: String,
    _dir: tempfile::TempDir,
}

async fn start_herd() -> Herd {
    let dir = tempfile::tempdir().unwrap();
    let json = [("HERD_LOG_FORMAT", "json")];
    let gateway_http = format!("127.0.0.1:{}", free_port().unwrap());
    let gw_cfg = format!(
        "listen = \"127.0.0.1:0\"\nhttp_listen = \"{gateway_http}\"\nvenue = \"paper\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 20\npending_timeout_ms = 2000\n\
         [[engines]]\nid = \"e0\"\ntoken = \"{}\"\nuserref_min = 1000\nuserref_max = 1999\n\
         [paper]\nstep_ms = 3600000\nhistory_minutes = 0\n",
        engine_token("e0")
    );
    let gw_path = dir.path().join("gateway.toml");
    std::fs::write(&gw_path, gw_cfg).unwrap();
    let gateway = Proc::start(
        &bin_path("herd-gateway").unwrap(),
        &["--config", gw_path.to_str().unwrap()],
        &dir.path().join("gateway.log"),
        &json,
    )
    .await
    .unwrap();
    admin_client(&gateway.url())
        .await
        .unwrap()
        .set_paper_price(gpb::SetPaperPriceRequest {
            symbol: "DOGEUSD".into(),
            price: "0.1".into(),
        })
        .await
        .unwrap();

    let engine_http = format!("127.0.0.1:{}", free_port().unwrap());
    let en_cfg = format!(
        "id = \"e0\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"{engine_http}\"\n\
         gateway_url = \"http://{}\"\ngateway_token = \"{}\"\ncontrol_token = \"{CONTROL_TOKEN}\"\n\
         data_dir = \"{}\"\ntick_ms = 50\n",
        gateway.addr,
        engine_token("e0"),
        dir.path().join("data").display()
    );
    let en_path = dir.path().join("engine.toml");
    std::fs::write(&en_path, en_cfg).unwrap();
    let engine = Proc::start(
        &bin_path("herd-engine").unwrap(),
        &["--config", en_path.to_str().unwrap()],
        &dir.path().join("engine.log"),
        &json,
    )
    .await
    .unwrap();
    let mut c = engine_client(&engine.url()).await.unwrap();
    wait_until("the engine connected to the gateway", WAIT, || {
        let mut c = c.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok(s.gateway_connected.then_some(()))
        }
    })
    .await
    .unwrap();
    c.get_status(epb::GetStatusRequest {}).await.unwrap();
    Herd {
        gateway,
        gateway_http,
        engine,
        engine_http,
        _dir: dir,
    }
}

async fn submit(engine_url: &str, price: &str) -> Result<epb::SubmitOrderResponse, tonic::Status> {
    engine_client(engine_url)
        .await
        .unwrap()
        .submit_order(epb::SubmitOrderRequest {
            symbol: "DOGEUSD".into(),
            side: "buy".into(),
            order_type: "limit".into(),
            volume: "100".into(),
            price: price.into(),
            post_only: true,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed page: samples in order and each family's declared type.
#[derive(Debug)]
struct Page {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Page {
    /// Whether the family whose samples Prometheus stores as `name` is
    /// declared: a counter's family is declared without the `_total` its
    /// samples carry.
    fn has_family(&self, name: &str) -> bool {
        match name.strip_suffix("_total") {
            Some(base) if self.types.get(base).is_some_and(|t| t == "counter") => true,
            _ => self.types.get(name).is_some_and(|t| t != "counter"),
        }
    }

    /// The one sample of `name` whose labels include `labels`; None if absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// `{a="x",b="y"}` (the braces included) -> labels; unescapes \\, \" and \n.
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("labels not in braces")?;
    let mut labels = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() && chars.peek().is_none() {
            break;
        }
        if !is_label_name(&name) {
            return Err(format!("bad label name {name:?}"));
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("label {name}: expected =\""));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("label {name}: bad escape {other:?}")),
                },
                Some('"') => break,
                Some('\n') | None => return Err(format!("label {name}: unterminated value")),
                Some(c) => value.push(c),
            }
        }
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(c) => return Err(format!("after label {name}: unexpected {c:?}")),
        }
    }
    Ok(labels)
}

/// The sample-name suffixes each OpenMetrics family type allows ("" is the
/// family's own name).
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "summary" => &["", "_sum", "_count", "_created"],
        _ => &[""],
    }
}

/// Parses a page strictly: every line is a comment (`# HELP` / `# TYPE` /
/// `# UNIT` well formed, each family typed once and before its samples) or
/// `name{labels} value`, and the last line is `# EOF` (no blank lines, nothing
/// after it); every sample belongs to a typed family by one of the names its
/// type allows (a counter family is named without `_total` and its samples
/// with it); a family's samples are contiguous; histogram buckets are
/// cumulative and end at `+Inf` == `_count`; no series appears twice.
fn parse(page: &str) -> Page {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut sampled: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    let mut current: Option<String> = None;
    let body = page
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("page must end with \"# EOF\\n\""));
    for (n, line) in body.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        assert!(!line.is_empty(), "blank line: {}", at());
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest
                .strip_prefix(' ')
                .unwrap_or_else(|| panic!("{}", at()))
                .splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    let kind = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(is_metric_name(name), "{}", at());
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "stateset",
                            "info",
                            "summary",
                            "unknown"
                        ]
                        .contains(&kind),
                        "{}",
                        at()
                    );
                    assert!(
                        !sampled.contains(name),
                        "TYPE after samples of {name}: {}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "family typed twice: {}",
                        at()
                    );
                    if kind == "counter" {
                        assert!(
                            !name.ends_with("_total"),
                            "counter family named with its samples' _total: {}",
                            at()
                        );
                    }
                }
                Some("HELP") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(is_metric_name(name), "{}", at());
                    assert!(
                        parts.next().is_some_and(|h| !h.is_empty()),
                        "empty HELP: {}",
                        at()
                    );
                }
                Some("UNIT") => {
                    let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    let unit = parts.next().unwrap_or_else(|| panic!("{}", at()));
                    assert!(
                        is_metric_name(name) && name.ends_with(&format!("_{unit}")),
                        "UNIT not a suffix of its family: {}",
                        at()
                    );
                }
                _ => panic!(
                    "unknown comment (OpenMetrics has only HELP, TYPE, UNIT, EOF): {}",
                    at()
                ),
            }
            continue;
        }
        let (series_text, value_text) = match line.rfind('}') {
            Some(i) => {
                let (s, v) = line.split_at(i + 1);
                (s, v.strip_prefix(' ').unwrap_or_else(|| panic!("{}", at())))
            }
            None => line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no value: {}", at())),
        };
        let (name, labels) = match series_text.find('{') {
            Some(i) => (
                &series_text[..i],
                parse_labels(&series_text[i..]).unwrap_or_else(|e| panic!("{e}: {}", at())),
            ),
            None => (series_text, BTreeMap::new()),
        };
        assert!(is_metric_name(name), "bad metric name: {}", at());
        // An optional timestamp (seconds, may be fractional) may follow.
        let mut vt = value_text.split(' ');
        let value =
            parse_value(vt.next().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {}", at()));
        if let Some(ts) = vt.next() {
            ts.parse::<f64>()
                .unwrap_or_else(|e| panic!("timestamp {e}: {}", at()));
        }
        assert!(vt.next().is_none(), "trailing text: {}", at());
        let family = types
            .iter()
            .find(|(family, kind)| {
                suffixes(kind)
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str()))
            })
            .map(|(family, _)| family.clone())
            .unwrap_or_else(|| {
                panic!(
                    "sample without a TYPE (or a name its type does not allow): {}",
                    at()
                )
            });
        if name.ends_with("_bucket") && types.get(&family).is_some_and(|t| t == "histogram") {
            assert!(labels.contains_key("le"), "bucket without le: {}", at());
        }
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !sampled.contains(&family),
                "samples of {family} interleaved with another family: {}",
                at()
            );
            current = Some(family.clone());
        }
        sampled.insert(family);
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "series repeated: {}", at());
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    let page = Page { samples, types };
    check_histograms(&page);
    page
}

/// Buckets non-decreasing in `le` order, the last is `+Inf` and equals `_count`.
fn check_histograms(page: &Page) {
    for (family, kind) in &page.types {
        if kind != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in page.samples.iter().filter(|s| s.name == bucket) {
            let mut key = s.labels.clone();
            let le = parse_value(&key.remove("le").unwrap()).unwrap();
            groups.entry(key).or_default().push((le, s.value));
        }
        for (labels, buckets) in groups {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, v) in &buckets {
                assert!(le > last.0, "{family}{labels:?}: le not increasing");
                assert!(v >= last.1, "{family}{labels:?}: buckets not cumulative");
                last = (le, v);
            }
            assert!(last.0.is_infinite(), "{family}{labels:?}: no +Inf bucket");
            let count = page
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .unwrap_or_else(|| panic!("{family}{labels:?}: no _count"));
            assert!(
                (count.value - last.1).abs() < f64::EPSILON,
                "{family}{labels:?}: +Inf bucket != _count"
            );
            assert!(
                page.samples
                    .iter()
                    .any(|s| s.name == format!("{family}_sum") && s.labels == labels),
                "{family}{labels:?}: no _sum"
            );
        }
    }
}

/// GETs `/metrics`, checks the content type and parses the page.
async fn scrape(addr: &str) -> Page {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    parse(&resp.text().await.unwrap())
}

#[test]
fn the_strict_parser_refuses_what_prometheus_would() {
    let good = "# HELP a x\n# TYPE a counter\na_total{k=\"q\\\"\\\\\\n\"} 1\n\
                # TYPE h_seconds histogram\n# UNIT h_seconds seconds\nh_seconds_sum 3.0\n\
                h_seconds_count 2\nh_seconds_bucket{le=\"1.0\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
                # TYPE g gauge\ng 1.5 1700000000.25\n# EOF\n";
    let p = parse(good);
    assert_eq!(p.value("a_total", &[("k", "q\"\\\n")]), 1.0);
    assert_eq!(p.value("h_seconds_count", &[]), 2.0);
    assert!(p.has_family("a_total") && p.has_family("h_seconds") && p.has_family("g"));
    assert!(!p.has_family("a") && !p.has_family("g_total"));
    let bad = [
        "untyped_sample 1\n# EOF\n",
        "# TYPE g gauge\ng 1\n",
        "# TYPE g gauge\ng 1\n# EOF\ng 2\n# EOF\n",
        "# TYPE g gauge\n\ng 1\n# EOF\n",
        "# TYPE c counter\nc 1\n# EOF\n",
        "# TYPE c_total counter\nc_total 1\n# EOF\n",
        "# TYPE g gauge\ng_total 1\n# EOF\n",
        "# TYPE g gauge\ng{k=\"unterminated} 1\n# EOF\n",
        "# TYPE g gauge\ng{k=\"bad \\x escape\"} 1\n# EOF\n",
        "# TYPE g gauge\ng 1\ng 2\n# EOF\n",
        "# TYPE g gauge\ng one\n# EOF\n",
        "# TYPE g gauge\n# TYPE f gauge\ng{k=\"1\"} 1\nf 1\ng{k=\"2\"} 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n# EOF\n",
        "# TYPE g gauge\ng 1\n# TYPE g gauge\n# EOF\n",
        "# TYPE h histogram\n# UNIT h seconds\nh_sum 1\nh_count 0\n# EOF\n",
        "# TYPE g gauge\n# a remark\ng 1\n# EOF\n",
    ];
    for page in bad {
        assert!(
            std::panic::catch_unwind(|| parse(page)).is_err(),
            "accepted {page:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_pages_parse_and_order_traffic_moves_them() {
    let herd = start_herd().await;
    let gw0 = scrape(&herd.gateway_http).await;
    let en0 = scrape(&herd.engine_http).await;
    for (page, family) in [
        (&gw0, "herd_gateway_venue_calls_total"),
        (&gw0, "herd_gateway_venue_budget_level"),
        (&gw0, "herd_gateway_fair_queue_waiting"),
        (&gw0, "herd_gateway_poll_duration_seconds"),
        (&gw0, "herd_gateway_poll_batch_size"),
        (&gw0, "herd_gateway_events_streamed_total"),
        (&gw0, "herd_gateway_engine_open_orders"),
        (&gw0, "herd_gateway_dead_man_cancels_total"),
        (&en0, "herd_engine_order_latency_seconds"),
        (&en0, "herd_engine_venue_errors_total"),
        (&en0, "herd_engine_regime"),
        (&en0, "herd_engine_rangers_cycles_today"),
        (&en0, "herd_engine_grid_orphans"),
        (&en0, "herd_engine_churner_cycles"),
        (&en0, "herd_engine_funding_positions"),
    ] {
        assert!(page.has_family(family), "no family {family}");
    }
    assert_eq!(
        gw0.value("herd_gateway_engine_stream_connected", &[("engine", "e0")]),
        1.0
    );
    assert_eq!(gw0.value("herd_gateway_info", &[("venue", "paper")]), 1.0);
    assert!(gw0.value("process_start_time_seconds", &[]) > 1.7e9);
    assert_eq!(en0.value("herd_engine_gateway_connected", &[]), 1.0);
    assert_eq!(en0.value("herd_engine_info", &[("engine", "e0")]), 1.0);
    let regimes: f64 = en0
        .samples
        .iter()
        .filter(|s| s.name == "herd_engine_regime")
        .map(|s| s.value)
        .sum();
    assert_eq!(regimes, 1.0, "exactly one regime is current");
    let place_ok = |p: &Page| {
        p.value(
            "herd_gateway_venue_calls_total",
            &[("method", "place_order"), ("outcome", "ok")],
        )
    };
    assert_eq!(place_ok(&gw0), 0.0);
    assert_eq!(
        en0.value(
            "herd_engine_order_latency_seconds_count",
            &[("op", "place")]
        ),
        0.0
    );

    // A resting buy below the market.
    let placed = submit(&herd.engine.url(), "0.099").await.unwrap();
    assert_eq!(placed.status, "open");
    // A post-only buy above the market would take: the venue refuses it.
    let refused = submit(&herd.engine.url(), "0.2").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");

    let gw1 = wait_until("the OPEN event streamed to e0", WAIT, || {
        let addr = herd.gateway_http.clone();
        async move {
            let p = scrape(&addr).await;
            Ok(
                (p.value("herd_gateway_events_streamed_total", &[("engine", "e0")]) >= 1.0)
                    .then_some(p),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(place_ok(&gw1), 1.0);
    assert_eq!(
        gw1.value(
            "herd_gateway_venue_calls_total",
            &[("method", "place_order"), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        gw1.value("herd_gateway_engine_open_orders", &[("engine", "e0")]),
        1.0
    );
    assert!(gw1.value("herd_gateway_engine_event_sequence", &[("engine", "e0")]) >= 1.0);
    assert!(gw1.value("herd_gateway_poll_duration_seconds_count", &[]) >= 1.0);
    assert!(
        gw1.value(
            "herd_gateway_venue_call_duration_seconds_count",
            &[("method", "place_order")]
        ) >= 2.0
    );
    assert!(gw1.value("herd_gateway_fair_queue_granted_total", &[("engine", "e0")]) >= 2.0);

    let en1 = wait_until("e0 journaled the OPEN event", WAIT, || {
        let addr = herd.engine_http.clone();
        async move {
            let p = scrape(&addr).await;
            Ok((p.value("herd_engine_order_events_total", &[]) >= 1.0).then_some(p))
        }
    })
    .await
    .unwrap();
    assert_eq!(
        en1.value(
            "herd_engine_order_latency_seconds_count",
            &[("op", "place")]
        ),
        2.0
    );
    assert!(en1.value("herd_engine_order_latency_seconds_sum", &[("op", "place")]) > 0.0);
    assert_eq!(
        en1.value(
            "herd_engine_orders_total",
            &[("op", "place"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        en1.value(
            "herd_engine_orders_total",
            &[("op", "place"), ("result", "error")]
        ),
        1.0
    );
    assert_eq!(
        en1.value("herd_engine_open_orders", &[("owner", "manual")]),
        1.0
    );
    assert!(en1.value("herd_engine_event_sequence", &[]) >= 1.0);
    // A refusal is the request's problem, not the venue's health.
    assert_eq!(
        en1.value("herd_engine_venue_errors_total", &[("code", "unavailable")]),
        0.0
    );

    engine_client(&herd.engine.url())
        .await
        .unwrap()
        .cancel_order(epb::CancelOrderRequest {
            client_order_id: placed.client_order_id.clone(),
        })
        .await
        .unwrap();
    let gw2 = scrape(&herd.gateway_http).await;
    assert_eq!(
        gw2.value(
            "herd_gateway_venue_calls_total",
            &[("method", "cancel_order"), ("outcome", "ok")]
        ),
        1.0
    );
    let en2 = scrape(&herd.engine_http).await;
    assert_eq!(
        en2.value(
            "herd_engine_orders_total",
            &[("op", "cancel"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        en2.value(
            "herd_engine_order_latency_seconds_count",
            &[("op", "cancel")]
        ),
        1.0
    );
    drop(herd);
}

/// Looks for `key` in a JSON log line's own fields, then its spans.
fn log_field<'a>(line: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    line["fields"][key]
        .as_str()
        .or_else(|| line["span"][key].as_str())
        .or_else(|| {
            line["spans"]
                .as_array()?
                .iter()
                .find_map(|s| s[key].as_str())
        })
}

/// Every line of the log, each of which must be a JSON object.
fn json_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_engine_id_and_order_id_on_the_order_path() {
    let herd = start_herd().await;
    let placed = submit(&herd.engine.url(), "0.098").await.unwrap();
    let id = placed.client_order_id;
    engine_client(&herd.engine.url())
        .await
        .unwrap()
        .cancel_order(epb::CancelOrderRequest {
            client_order_id: id.clone(),
        })
        .await
        .unwrap();

    // (service, log, message) the order path must have logged with both ids.
    let expected = [
        ("engine", &herd.engine.log, "order placed"),
        ("engine", &herd.engine.log, "order cancel sent"),
        ("gateway", &herd.gateway.log, "order placed"),
        (
            "gateway",
            &herd.gateway.log,
            "order cancel accepted by the venue",
        ),
    ];
    for (service, log, message) in expected {
        let log = log.clone();
        let id = id.clone();
        let line = wait_until(&format!("{service} logs {message:?}"), WAIT, || {
            let log = log.clone();
            let id = id.clone();
            async move {
                Ok(json_lines(&log).into_iter().find(|l| {
                    l["fields"]["message"] == message
                        && log_field(l, "client_order_id") == Some(id.as_str())
                }))
            }
        })
        .await
        .unwrap();
        assert_eq!(log_field(&line, "engine"), Some("e0"), "{service}: {line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    // Nothing but JSON on either log, and no token in them.
    for log in [&herd.gateway.log, &herd.engine.log] {
        let text = std::fs::read_to_string(log).unwrap();
        json_lines(log);
        assert!(
            !text.contains(&engine_token("e0")),
            "token in {}",
            log.display()
        );
        assert!(!text.contains(CONTROL_TOKEN), "token in {}", log.display());
    }
}
