#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The engine's web dashboard in a real headless browser: a gateway on the
//! paper venue (its walk frozen; only SetPaperPrice moves the market) and one
//! engine with two rangers under a fixed RANGING regime, as real processes.
//! Debian's chromium, driven by playwright-core through
//! tests/browser/dashboard.cjs, watches the page while the test moves the
//! price: entries fill, exits fill (a cycle), then an exit ages into amber
//! and times out (an orphan). Then the engine is killed and the page must
//! say it is disconnected. Last, the page is fed a status with every card
//! full (tests/browser/layout_status.json) at 1400 px: the churner, regime
//! and self-healing cards fit without horizontal scrolling, and every
//! column's header aligns as its cells do (numbers right).
//!
//! Needs node, /usr/bin/chromium and playwright-core in .herd/tools/browser:
//! `scripts/install-test-tools` installs them. A missing one fails the test.

use std::time::{Duration, Instant};

use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::browser::{Browser, check_tools};
use herd_tests::{
    EngineProc, GatewayProc, admin_client, engine_client, wait_until, workspace_root,
};
use serde_json::{Value, json};

const STILL_MARKET: &str = "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n";
const RANGERS: usize = 2;
const EXIT_TIMEOUT_SEC: u64 = 15;
fn engine_extra() -> String {
    format!(
        "regime_source = \"fixed\"\nfixed_regime = \"RANGING\"\n[rangers]\nenabled = true\nmax_slots = {RANGERS}\nexit_timeout_sec = {EXIT_TIMEOUT_SEC}\ncooldown_sec = 1\n"
    )
}

/// The cards that must fit at 1400 px without horizontal scrolling (the
/// card and each scrolling table box in it), and every table's column
/// alignment: a header aligns as the cells under it. Returns the problems
/// found and how many numeric cells were compared.
const LAYOUT_CHECK: &str = r#"(() => {
  const problems = [];
  for (const id of ["churner", "regime", "healing"]) {
    const card = document.getElementById(id);
    for (const e of [card, ...card.querySelectorAll(".scroll")]) {
      if (e.scrollWidth > e.clientWidth) {
        problems.push(`${e.id}: scrollWidth ${e.scrollWidth} > clientWidth ${e.clientWidth}`);
      }
    }
  }
  let numeric = 0;
  for (const t of document.querySelectorAll("main table")) {
    const heads = [...t.querySelectorAll("thead th")];
    for (const tr of t.querySelectorAll("tbody tr")) {
      [...tr.children].forEach((td, i) => {
        if (td.colSpan > 1 || !heads[i]) return;
        if (td.classList.contains("num")) numeric += 1;
        const h = getComputedStyle(heads[i]).textAlign;
        const c = getComputedStyle(td).textAlign;
        if (h !== c) {
          problems.push(`${t.parentElement.id} "${heads[i].textContent}": header ${h}, cells ${c}`);
        }
      });
    }
  }
  return { problems: [...new Set(problems)], numeric_cells: numeric };
})()"#;

/// Every ranger row of the page with the given stage and badge class.
fn all_rangers(stage: &str, badge: &str) -> String {
    format!(
        "(() => {{ const rows = [...document.querySelectorAll('#rangers-rows tbody tr[data-ranger-id]')]; \
         return rows.length === {RANGERS} && rows.every(r => {{ const b = r.querySelector('.badge'); \
         return b && b.dataset.stage === '{stage}' && b.classList.contains('badge-{badge}'); }}); }})()"
    )
}

fn text_is(id: &str, want: &str) -> String {
    format!("(document.getElementById('{id}') || {{}}).textContent === '{want}'")
}

async fn set_price(gateway_url: &str, price: &str) -> Instant {
    admin_client(gateway_url)
        .await
        .unwrap()
        .set_paper_price(gpb::SetPaperPriceRequest {
            symbol: "DOGEUSD".into(),
            price: price.into(),
        })
        .await
        .unwrap();
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_rangers_and_follows_orders_in_chromium() {
    // Before any process starts: a missing browser fails here, loudly.
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(dir.path(), 1, STILL_MARKET)
        .await
        .unwrap();
    let gw_url = gw.proc.url();
    set_price(&gw_url, "0.12").await;
    let mut e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, &engine_extra())
        .await
        .unwrap();
    let ctl = engine_client(&e0.proc.url()).await.unwrap();
    wait_until(
        "both rangers with an entry out",
        Duration::from_secs(60),
        || {
            let mut c = ctl.clone();
            async move {
                let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
                let r = s.rangers.unwrap_or_default();
                Ok(
                    (r.slots.len() == RANGERS && r.slots.iter().all(|x| x.stage == "entry_open"))
                        .then_some(()),
                )
            }
        },
    )
    .await
    .unwrap();

    // The admin port itself: the page, the JSON and its read-only answer.
    let base = format!("http://{}", e0.http_addr);
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page_bytes = page.bytes().await.unwrap().len();
    let t = Instant::now();
    let api = http.get(format!("{base}/api/status")).send().await.unwrap();
    assert_eq!(api.status(), 200);
    let status: Value = api.json().await.unwrap();
    let api_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status["engine_id"], "e0");
    assert_eq!(
        status["rangers"]["slots"].as_array().unwrap().len(),
        RANGERS
    );
    assert_eq!(status["rangers"]["slots"][0]["entry_price"], "0.12018");
    assert_eq!(
        status["rangers"]["timing"]["exit_timeout_sec"],
        EXIT_TIMEOUT_SEC
    );
    let post = http
        .post(format!("{base}/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405, "the admin port is read-only");
    println!(
        "page {page_bytes} bytes; /api/status {} bytes in {api_ms:.1} ms",
        status.to_string().len()
    );

    let mut b = Browser::start(dir.path()).await;
    b.call(json!({"cmd": "open", "url": format!("{base}/")}))
        .await;
    let first = b
        .wait(
            "two green entry_open rangers",
            &all_rangers("entry_open", "active"),
        )
        .await;
    println!("first render with both rangers: {first} ms after load");
    assert_eq!(b.eval("document.body.dataset.state").await, "ok");
    assert_eq!(
        b.eval("document.getElementById('engine-id').textContent")
            .await,
        "e0"
    );
    assert_eq!(
        b.eval("document.getElementById('gateway').textContent")
            .await,
        "connected"
    );
    assert_eq!(
        b.eval("document.getElementById('rangers-cycles').textContent")
            .await,
        "0"
    );
    // Passive: nothing on the page can submit or trade.
    let controls = b
        .eval(
            "document.querySelectorAll('button, form, input, select, textarea, [onclick]').length",
        )
        .await;
    assert_eq!(controls, 0, "the dashboard must have no controls");
    // Blocks this engine does not run say so instead of breaking.
    assert_eq!(
        b.eval("document.getElementById('funding-status').textContent")
            .await,
        "disabled"
    );
    // The engine's own risk book, read from the gateway, and the reconcile
    // it ran at start.
    b.wait(
        "the risk state read from the gateway",
        &text_is("risk-state", "ACTIVE"),
    )
    .await;
    b.wait(
        "the engine's own events: it started",
        "document.querySelectorAll('#events-rows tr[data-kind=\"engine_started\"]').length === 1",
    )
    .await;
    b.wait(
        "the start reconcile",
        "document.getElementById('reconcile-status').textContent.startsWith('start at ')",
    )
    .await;

    // The market trades up through both sells: exits go out.
    let moved = set_price(&gw_url, "0.1202").await;
    b.wait("two exit_open rangers", &all_rangers("exit_open", "active"))
        .await;
    let to_exit = moved.elapsed().as_millis();
    // And back down through the buy-backs: two cycles.
    let moved = set_price(&gw_url, "0.1187").await;
    b.wait("two cycles today", &text_is("rangers-cycles", "2"))
        .await;
    let to_cycle = moved.elapsed().as_millis();
    println!("price move -> page: exits {to_exit} ms, cycles {to_cycle} ms");
    let profit = b
        .eval("document.getElementById('rangers-profit').textContent")
        .await;
    assert!(
        profit
            .as_str()
            .is_some_and(|p| p.parse::<f64>().unwrap_or(0.0) > 0.0),
        "profit today after two cycles: {profit}"
    );

    // After the 1 s cooldown the rangers sell again, just above 0.1187.
    b.wait("new entries", &all_rangers("entry_open", "active"))
        .await;
    set_price(&gw_url, "0.1190").await;
    b.wait("exits again", &all_rangers("exit_open", "active"))
        .await;
    // Nothing buys back at 0.1190: the exits age into amber ...
    b.wait(
        "amber badges near the exit timeout",
        &all_rangers("exit_open", "amber"),
    )
    .await;
    let shot = dir.path().join("dashboard.png");
    b.call(json!({"cmd": "screenshot", "path": shot.display().to_string()}))
        .await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    if let Some(keep) = std::env::var_os("HERD_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, &keep).unwrap();
    }
    println!("screenshot: {}", shot.display());
    // ... and are orphaned at the timeout.
    b.wait("two orphans today", &text_is("rangers-orphans", "2"))
        .await;

    let (errors, _) = b.call(json!({"cmd": "errors"})).await;
    assert_eq!(errors["console"], json!([]), "console errors: {errors}");
    assert_eq!(errors["page"], json!([]), "page errors: {errors}");
    let polls = b.eval("Number(document.body.dataset.polls)").await;
    println!("polls so far: {polls}");

    // The engine dies: the page keeps its data and says it is disconnected.
    e0.proc.kill9().await.unwrap();
    b.wait(
        "the disconnected banner",
        "document.body.dataset.state === 'stale' && document.getElementById('banner').textContent.startsWith('Disconnected')",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('#rangers-rows tbody tr[data-ranger-id]').length")
            .await,
        RANGERS,
        "the last data stays on screen"
    );
    let (errors, _) = b.call(json!({"cmd": "errors"})).await;
    assert_eq!(
        errors["page"],
        json!([]),
        "no page errors after the engine died: {errors}"
    );

    // Layout at 1400 px with the churner, regime and self-healing cards
    // full of realistic values.
    let full: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/browser/layout_status.json"))
            .unwrap(),
    )
    .unwrap();
    b.call(json!({"cmd": "viewport", "width": 1400, "height": 1000}))
        .await;
    b.call(json!({"cmd": "serve_status", "status": full})).await;
    b.wait(
        "the full status on every card",
        "document.body.dataset.state === 'ok' \
         && document.querySelectorAll('#churner-rows tbody tr').length === 2 \
         && document.querySelectorAll('#healing-positions tbody tr').length === 2 \
         && document.querySelectorAll('#regime-rows tbody tr').length === 3",
    )
    .await;
    assert_eq!(b.eval("window.innerWidth").await, 1400);
    let layout = b.eval(LAYOUT_CHECK).await;
    assert_eq!(layout["problems"], json!([]), "{layout}");
    assert!(
        layout["numeric_cells"].as_u64().unwrap() >= 30,
        "numeric cells checked: {layout}"
    );
    let shot = dir.path().join("dashboard-full.png");
    b.call(json!({"cmd": "screenshot", "path": shot.display().to_string()}))
        .await;
    println!("screenshot with every card full: {}", shot.display());
    b.call(json!({"cmd": "quit"})).await;
    drop(b.stdin);
    let exit = tokio::time::timeout(Duration::from_secs(30), b.child.wait())
        .await
        .expect("the browser driver did not exit after quit")
        .unwrap();
    assert!(exit.success(), "browser driver: {exit}");
}
