//! The gateway's herd page in a real headless browser (Debian's chromium
//! through playwright-core, as the engine dashboard's test): kraken-sim,
//! herd-gateway and two herd-engines as real processes. The page lists both
//! engines, draws each one's PnL and the herd's as SVG polylines with data
//! points, follows fills as the market trades through the engines' orders,
//! links each engine's page (which links back), logs no console or page
//! error, and shows the stale banner once the gateway stops answering. The
//! page is served under a strict Content-Security-Policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use herd_tests::ADMIN_TOKEN;
use herd_tests::browser::{Browser, check_tools};
use herd_tests::kraken_herd::{HerdOpts, KrakenHerd, PAIR};
use herd_tests::wait_until;
use serde_json::json;

fn sim_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kraken-sim"))
}

fn engine_row(id: &str, column: usize) -> String {
    format!(
        "(() => {{ const r = document.querySelector('#engines tbody tr[data-engine=\"{id}\"]'); \
         return r ? r.children[{column}].textContent : null; }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_page_lists_engines_charts_pnl_and_goes_stale() {
    check_tools();
    let mut h = KrakenHerd::start(sim_bin(), HerdOpts::default())
        .await
        .unwrap();
    // Links from the herd page to each engine's page.
    let urls: Vec<String> = h
        .engines
        .iter()
        .map(|e| format!("http://{}/", e.proc.as_ref().unwrap().http_addr))
        .collect();
    let mut cfg = std::fs::read_to_string(&h.gateway_config).unwrap();
    cfg.push_str(&format!(
        "[dashboard]\nengine_urls = {{ e0 = \"{}\", e1 = \"{}\" }}\n",
        urls[0], urls[1]
    ));
    std::fs::write(&h.gateway_config, cfg).unwrap();
    h.kill_gateway().await.unwrap();
    h.start_gateway().await.unwrap();
    for i in 0..2 {
        wait_until(
            "the engine reconnected",
            Duration::from_secs(30),
            || async { Ok(h.status(i).await?.gateway_connected.then_some(())) },
        )
        .await
        .unwrap();
    }
    h.submit_ok(0, "0.1100").await.unwrap();
    h.submit_ok(1, "0.1050").await.unwrap();
    h.admin().set_price(PAIR, "0.108").await.unwrap();

    let base = format!("http://{}", h.gateway_http);
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !page.text().await.unwrap().contains("://"),
        "the page names no other origin"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut b = Browser::start(dir.path()).await;
    b.call(json!({"cmd": "open", "url": format!("{base}/#token={ADMIN_TOKEN}")}))
        .await;
    b.wait(
        "both engines listed",
        "document.querySelectorAll('#engines tbody tr').length === 2",
    )
    .await;
    assert_eq!(b.eval(&engine_row("e0", 1)).await, "connected");
    b.wait("e0's fill", &format!("{} === '1'", engine_row("e0", 5)))
        .await;
    assert_eq!(b.eval(&engine_row("e1", 5)).await, "0");
    b.wait(
        "a chart with points for e0 and the herd",
        "document.querySelectorAll('#chart g[data-series=\"e0\"] circle').length >= 2 && \
         document.querySelectorAll('#chart g[data-series=\"herd\"] polyline').length === 1",
    )
    .await;
    // Values follow the orders as they fill.
    h.fill_all().await.unwrap();
    b.wait("e1's fill", &format!("{} === '1'", engine_row("e1", 5)))
        .await;
    b.wait(
        "two recent fills and e1 on the chart",
        "document.querySelectorAll('#fills tbody tr').length === 2 && \
         document.querySelectorAll('#chart g[data-series=\"e1\"] circle').length >= 2",
    )
    .await;
    assert_ne!(
        b.eval(&engine_row("e1", 7)).await,
        "0",
        "e1 has PnL (fees, unrealized)"
    );
    // The herd's events: the fills are there, newest first.
    b.wait(
        "the fills among the herd's events",
        "document.querySelectorAll('#events tbody tr[data-kind=\"fill\"]').length >= 2",
    )
    .await;
    let last_event = b.eval(&engine_row("e1", 9)).await;
    assert!(
        last_event.as_str().unwrap().ends_with(" ago"),
        "{last_event}"
    );
    let link = b
        .eval("document.querySelector('#engines tbody tr[data-engine=\"e0\"] a').href")
        .await;
    assert_eq!(link, urls[0]);
    let (errors, _) = b.call(json!({"cmd": "errors"})).await;
    assert_eq!(
        errors,
        json!({"console": [], "page": []}),
        "no errors on the herd page"
    );

    // The engine's page links back to the herd page.
    b.call(json!({"cmd": "open", "url": urls[0]})).await;
    b.wait(
        "the herd link on the engine page",
        &format!(
            "!document.getElementById('herd-box').hidden && \
             document.getElementById('herd-link').href === '{base}/'"
        ),
    )
    .await;

    // The gateway stops answering: the page says its numbers are stale.
    b.call(json!({"cmd": "open", "url": format!("{base}/#token={ADMIN_TOKEN}")}))
        .await;
    b.wait(
        "both engines listed again",
        "document.querySelectorAll('#engines tbody tr').length === 2",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('stale').hidden").await,
        true
    );
    h.kill_gateway().await.unwrap();
    b.wait(
        "the stale banner",
        "!document.getElementById('stale').hidden",
    )
    .await;
    b.quit().await;
    h.cleanup().await.unwrap();
}
