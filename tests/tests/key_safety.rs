//! Key safety and the venue clock (issue 19), with a real gateway process
//! against the simulators: a key that can withdraw stops the start unless
//! the operator allows it, a read-only key stops it, missing permissions, a
//! missing allowlist and a near expiry are warned about, and a venue clock
//! two seconds off shows in the metric and the log while calls still work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_proto::gateway as gpb;
use herd_tests::kraken_harness::{API_KEY, API_SECRET, SimProcess};
use herd_tests::{ADMIN_TOKEN, Proc, admin_client, bin_path, engine_token, free_port, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

fn kraken_config(dir: &Path, sim_url: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("key"), API_KEY).unwrap();
    std::fs::write(dir.join("secret"), API_SECRET).unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:{}\"\nvenue = \"kraken\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\n\
         [[engines]]\nid = \"e0\"\ntoken = \"{}\"\nuserref_min = 1000\nuserref_max = 1999\n\
         [dead_mans_switch]\nenabled = false\n\
         [kraken]\nbase_url = \"{sim_url}\"\nnonce_file = \"{}\"\n\
         credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n{extra}",
        free_port().unwrap(),
        engine_token("e0"),
        dir.join("nonce").display(),
        dir.join("key").display(),
        dir.join("secret").display(),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Runs a gateway that must refuse to start: its exit status and stderr.
async fn refused(config: &Path) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(bin_path("herd-gateway").unwrap())
            .args(["--config", &config.display().to_string()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a gateway with a refused key exits")
    .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn started(dir: &Path, config: &Path) -> Proc {
    Proc::start(
        &bin_path("herd-gateway").unwrap(),
        &["--config", &config.display().to_string()],
        &dir.join("gateway.log"),
        &[],
    )
    .await
    .unwrap()
}

async fn key_info(gateway: &Proc) -> gpb::GetKeyInfoResponse {
    admin_client(&gateway.url())
        .await
        .unwrap()
        .get_key_info(gpb::GetKeyInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn sim(flags: &[&str]) -> SimProcess {
    SimProcess::spawn(
        &PathBuf::from(env!("CARGO_BIN_EXE_kraken-sim")),
        "pro",
        flags,
    )
    .await
    .unwrap()
}

const TRADE_ONLY: &str =
    "query-funds,query-open-trades,query-closed-trades,modify-trades,cancel-close-trades";

#[tokio::test]
async fn a_key_that_can_withdraw_stops_the_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let perms = format!("{TRADE_ONLY},withdraw-funds");
    let sim = sim(&["--permissions", &perms]).await;

    let cfg = kraken_config(dir.path(), &sim.url(), "");
    let (status, stderr) = refused(&cfg).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("withdraw-funds"), "{stderr}");
    assert!(stderr.contains("allow_withdrawal_permission"), "{stderr}");
    assert!(
        !stderr.contains(API_SECRET) && !stderr.contains(API_KEY),
        "{stderr}"
    );

    let cfg = kraken_config(
        dir.path(),
        &sim.url(),
        "[key_check]\nallow_withdrawal_permission = true\n",
    );
    let gateway = started(dir.path(), &cfg).await;
    let k = key_info(&gateway).await;
    assert!(k.known);
    assert_eq!(k.name, "herd-sim");
    assert_eq!(k.withdraw_permission, "withdraw-funds");
    assert!(
        k.warnings
            .iter()
            .any(|w| w.contains("withdrawal permission")),
        "{:?}",
        k.warnings
    );
    assert!(gateway.log_text().contains("withdrawal permission"));
}

#[tokio::test]
async fn a_read_only_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(&[
        "--permissions",
        "query-funds,query-open-trades,query-closed-trades",
    ])
    .await;
    let (status, stderr) = refused(&kraken_config(dir.path(), &sim.url(), "")).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
}

#[tokio::test]
async fn missing_permissions_no_allowlist_and_near_expiry_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let in_three_days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3 * 86_400)
        .to_string();
    let sim = sim(&[
        "--permissions",
        "query-funds,query-open-trades,query-closed-trades,modify-trades",
        "--ip-allowlist",
        "",
        "--key-valid-until",
        &in_three_days,
    ])
    .await;
    let gateway = started(dir.path(), &kraken_config(dir.path(), &sim.url(), "")).await;
    let k = key_info(&gateway).await;
    assert_eq!(k.lacking, vec!["cancel-close-trades"]);
    assert!(k.ip_allowlist.is_empty());
    assert!(k.expires_at_ms > 0);
    let all = k.warnings.join(" | ");
    assert!(all.contains("expires in"), "{all}");
    assert!(all.contains("cancel-close-trades"), "{all}");
    assert!(all.contains("no IP allowlist"), "{all}");
    let log = gateway.log_text();
    assert!(log.contains("no IP allowlist"), "{log}");
}

async fn metric(http: &str, name: &str) -> Option<f64> {
    let page = reqwest::get(format!("http://{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn http_listen(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("http_listen")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[tokio::test]
async fn a_kraken_clock_three_seconds_ahead_shows_in_the_metric_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    // Kraken's Time has whole seconds: the gateway warns on the least the
    // offset can be, so 3 s (not 2) is surely past the 1 s threshold.
    let sim = sim(&["--skew-ms", "3000"]).await;
    let cfg = kraken_config(dir.path(), &sim.url(), "");
    let gateway = started(dir.path(), &cfg).await;
    let offset = wait_until("the clock offset metric", DEADLINE, || async {
        Ok(metric(&http_listen(&cfg), "herd_gateway_venue_clock_offset_ms").await)
    })
    .await
    .unwrap();
    // Within half a second and half the round trip.
    assert!((2400.0..=3600.0).contains(&offset), "offset {offset}");
    assert!(
        gateway.log_text().contains("clock_warn_ms"),
        "{}",
        gateway.log_text()
    );
    // The admin RPC reports the same measurement (the gateway may have
    // measured again in between: the same clock, a different round trip).
    let reported = key_info(&gateway).await.clock_offset_ms;
    assert!(
        (reported - offset as i64).abs() <= 250,
        "GetKeyInfo says {reported} ms, the metric {offset} ms"
    );
}

#[tokio::test]
async fn a_bybit_clock_two_seconds_ahead_warns_and_calls_still_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim_cfg = herd_tests::bybit_sim::SimConfig::new("bkey", "bsecret");
    sim_cfg.clock_skew_ms = 2000;
    let sim = herd_tests::bybit_sim::start(sim_cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    std::fs::write(dir.path().join("key"), "bkey").unwrap();
    std::fs::write(dir.path().join("secret"), "bsecret").unwrap();
    let http = format!("127.0.0.1:{}", free_port().unwrap());
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nhttp_listen = \"{http}\"\nvenue = \"bybit\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\n\
         [[engines]]\nid = \"e0\"\ntoken = \"{}\"\nuserref_min = 1000\nuserref_max = 1999\n\
         [bybit]\nbase_url = \"{}\"\n\
         credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n",
        engine_token("e0"),
        sim.base_url(),
        dir.path().join("key").display(),
        dir.path().join("secret").display(),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let gateway = started(dir.path(), &path).await;
    let offset = wait_until("the clock offset metric", DEADLINE, || async {
        Ok(metric(&http, "herd_gateway_venue_clock_offset_ms").await)
    })
    .await
    .unwrap();
    assert!((1900.0..=2100.0).contains(&offset), "offset {offset}");
    assert!(gateway.log_text().contains("clock_warn_ms"));
    let k = key_info(&gateway).await;
    assert_eq!(k.clock_limit_ms, 5000, "Bybit's default receive window");
    assert!(k.lacking.is_empty(), "{:?}", k.lacking);
    // Signed calls go out on the venue's clock: they still succeed.
    let balances = herd_tests::gateway_client(&gateway.url(), &engine_token("e0"))
        .await
        .unwrap()
        .get_balances(gpb::GetBalancesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!balances.balances.is_empty());
    assert_eq!(sim.sim.stats().timestamp_rejections, 0);
}

#[tokio::test]
async fn a_bybit_key_that_can_withdraw_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim_cfg = herd_tests::bybit_sim::SimConfig::new("bkey", "bsecret");
    sim_cfg.key_info.grant("Wallet:Withdraw").unwrap();
    let sim = herd_tests::bybit_sim::start(sim_cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    std::fs::write(dir.path().join("key"), "bkey").unwrap();
    std::fs::write(dir.path().join("secret"), "bsecret").unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nvenue = \"bybit\"\n[bybit]\nbase_url = \"{}\"\n\
         credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n",
        sim.base_url(),
        dir.path().join("key").display(),
        dir.path().join("secret").display(),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, cfg).unwrap();
    let (status, stderr) = refused(&path).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("Wallet.Withdraw"), "{stderr}");
}
