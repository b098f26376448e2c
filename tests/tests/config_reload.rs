//! Configuration reload without a restart (issue 20, docs/config.md), with
//! real processes: the gateway and an engine reload their config file by
//! the ReloadConfig RPC, by SIGHUP and by a change of the file (a
//! Kubernetes ConfigMap's symlink swap), apply live fields under load
//! without losing an order, refuse an invalid file whole, and report
//! restart-only changes without applying them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use herd_tests::procs::free_ports;
use herd_tests::{
    ADMIN_TOKEN, EngineProc, GatewayProc, Proc, admin_client, bin_path, engine_client,
    engine_token, gateway_client, wait_until,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

/// The gateway's config: two engines, a market that does not move on its
/// own (nothing fills unless a test moves the price), e0's open orders
/// limited, and `poll` as `config_poll_ms`.
fn gateway_toml(port: u16, http_port: u16, poll: u64, extra: &str) -> String {
    let mut s = format!(
        "listen = \"127.0.0.1:{port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\nvenue = \"paper\"\n\
         admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 20\npending_timeout_ms = 2000\n\
         drain_delay_ms = 50\nshutdown_timeout_ms = 20000\nconfig_poll_ms = {poll}\n\
         venue_slots = 2\nengine_queue_limit = 64\n"
    );
    for (i, id) in ["e0", "e1"].iter().enumerate() {
        s.push_str(&format!(
            "[[engines]]\nid = \"{id}\"\ntoken = \"{}\"\nuserref_min = {}\nuserref_max = {}\nweight = 1\n",
            engine_token(id),
            1000 * (i + 1),
            1000 * (i + 1) + 999
        ));
    }
    s.push_str("[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n");
    s.push_str("[risk.engines.e0]\nmax_open_orders = 1000\n");
    s.push_str(extra);
    s
}

/// Writes `text` to `path` the way a careful tool does (a temp file renamed
/// over the old one): a reader never sees half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn start_gateway(dir: &Path, config: &Path) -> Proc {
    start_gateway_env(dir, config, &[]).await
}

async fn start_gateway_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Proc {
    let log = dir.join("gateway.log");
    Proc::start(
        &bin_path("herd-gateway").unwrap(),
        &["--config", &config.display().to_string()],
        &log,
        env,
    )
    .await
    .unwrap()
}

fn limit_buy(id: &str) -> gpb::PlaceOrderRequest {
    gpb::PlaceOrderRequest {
        client_order_id: id.into(),
        symbol: "DOGEUSD".into(),
        side: gpb::Side::Buy as i32,
        order_type: gpb::OrderType::Limit as i32,
        volume: "50".into(),
        price: "0.05".into(),
        userref: 1000,
        ..Default::default()
    }
}

async fn risk_limits(url: &str, engine: &str) -> gpb::RiskLimits {
    let r = admin_client(url)
        .await
        .unwrap()
        .get_risk_state(gpb::GetRiskStateRequest {
            engine_id: engine.into(),
        })
        .await
        .unwrap()
        .into_inner();
    r.engines
        .into_iter()
        .find(|b| b.engine_id == engine)
        .and_then(|b| b.limits)
        .unwrap_or_default()
}

async fn account_limits(url: &str) -> gpb::RiskLimits {
    admin_client(url)
        .await
        .unwrap()
        .get_risk_state(gpb::GetRiskStateRequest::default())
        .await
        .unwrap()
        .into_inner()
        .account
        .and_then(|b| b.limits)
        .unwrap_or_default()
}

async fn shown(url: &str) -> gpb::GetConfigResponse {
    admin_client(url)
        .await
        .unwrap()
        .get_config(gpb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn field<'a>(cfg: &'a gpb::GetConfigResponse, path: &str) -> &'a gpb::ConfigField {
    cfg.fields
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no field {path} in config show"))
}

async fn open_ids(url: &str, engine: &str) -> Vec<String> {
    let mut ids: Vec<String> = gateway_client(url, &engine_token(engine))
        .await
        .unwrap()
        .list_open_orders(gpb::ListOpenOrdersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .orders
        .into_iter()
        .map(|o| o.client_order_id)
        .collect();
    ids.sort();
    ids
}

/// Live fields reloaded by RPC while an engine places orders: the risk
/// limit, the engine's weight and the queue limit apply at once (GetRiskState,
/// config show), the change is audited like SetRiskLimits, every order
/// placed before, during and after the reload was accepted and is still open
/// (nothing lost), and `config show` tells each field's source.
/// Asks the gateway to reload its file (the admin `ReloadConfig` RPC).
async fn reload_gateway(url: &str) -> Result<gpb::ReloadConfigResponse, tonic::Status> {
    admin_client(url)
        .await
        .unwrap()
        .reload_config(gpb::ReloadConfigRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// Each change of a reload's answer as (path, live, applied), in order
/// (the gateway's and the engine's `ConfigChange` alike).
fn flags<'a, C>(
    changes: &'a [C],
    f: impl Fn(&'a C) -> (&'a str, bool, bool),
) -> Vec<(&'a str, bool, bool)> {
    changes.iter().map(f).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_live_fields_apply_under_load_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http] = free_ports::<2>().unwrap();
    let path = dir.path().join("gateway.toml");
    // The watcher is off: this test reloads by RPC only.
    let base = gateway_toml(port, http, 0, "");
    std::fs::write(&path, &base).unwrap();
    // An environment override: its source shows, and a reload keeps it.
    let mut gw = start_gateway_env(
        dir.path(),
        &path,
        &[("HERD_GATEWAY_POLL_INTERVAL_MS", "25")],
    )
    .await;
    let url = gw.url();

    let before = shown(&url).await;
    assert_eq!(field(&before, "poll_interval_ms").source, "env");
    assert_eq!(field(&before, "poll_interval_ms").value, "25");
    assert_eq!(field(&before, "engines.e0.weight").value, "1");
    assert_eq!(field(&before, "engines.e0.weight").source, "file");
    assert!(field(&before, "engines.e0.weight").live);
    assert_eq!(field(&before, "pending_timeout_ms").source, "file");
    assert_eq!(field(&before, "event_retention").source, "default");
    assert!(!field(&before, "listen").live);
    // Secrets never leave the process.
    assert_eq!(field(&before, "admin_token").value, "\"REDACTED\"");
    assert_eq!(field(&before, "engines.e0.token").value, "\"REDACTED\"");
    let text = format!("{before:?}");
    assert!(!text.contains(ADMIN_TOKEN) && !text.contains(&engine_token("e0")));

    // Orders flow: a loader places 60 resting orders as e0, one after the
    // other, and the reload lands while it runs.
    let loader = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut c = gateway_client(&url, &engine_token("e0")).await.unwrap();
            let mut placed = Vec::new();
            for i in 0..60 {
                let id = format!("load-{i:03}");
                c.place_order(limit_buy(&id))
                    .await
                    .unwrap_or_else(|e| panic!("{id} refused: {e:?}"));
                placed.push(id);
            }
            placed
        })
    };
    wait_until("orders flowing", WAIT, || {
        let url = url.clone();
        async move { Ok((open_ids(&url, "e0").await.len() >= 10).then_some(())) }
    })
    .await
    .unwrap();

    let changed = base
        .replace(
            "[risk.engines.e0]\nmax_open_orders = 1000\n",
            "[risk.engines.e0]\nmax_open_orders = 70\n",
        )
        .replace(
            "userref_max = 1999\nweight = 1\n",
            "userref_max = 1999\nweight = 3\n",
        )
        .replace("engine_queue_limit = 64\n", "engine_queue_limit = 32\n");
    assert_ne!(changed, base);
    write_atomically(&path, &changed);
    let r = reload_gateway(&url).await.unwrap();
    let paths = flags(&r.changes, |c| (c.path.as_str(), c.live, c.applied));
    assert_eq!(
        paths,
        [
            ("engine_queue_limit", true, true),
            ("engines.e0.weight", true, true),
            ("risk.engines.e0.max_open_orders", true, true),
        ],
        "{r:?}"
    );
    assert_eq!(r.file, path.display().to_string());
    let risk = &r.changes[2];
    assert_eq!((risk.before.as_str(), risk.after.as_str()), ("1000", "70"));

    // Applied: the risk book, the running config.
    assert_eq!(risk_limits(&url, "e0").await.max_open_orders, Some(70));
    let after = shown(&url).await;
    assert_eq!(field(&after, "engines.e0.weight").value, "3");
    assert_eq!(field(&after, "engine_queue_limit").value, "32");
    assert_eq!(field(&after, "poll_interval_ms").value, "25");
    assert!(
        after.pending_restart.is_empty(),
        "{:?}",
        after.pending_restart
    );
    assert!(after.loaded_at_ms >= before.loaded_at_ms);

    // Nothing lost: every order the loader placed is accepted and open.
    let placed = loader.await.unwrap();
    assert_eq!(placed.len(), 60);
    assert_eq!(open_ids(&url, "e0").await, placed);

    // Audited as the risk audit does, and raised as an event.
    let audit = admin_client(&url)
        .await
        .unwrap()
        .list_risk_audit(gpb::ListRiskAuditRequest {
            engine_id: "e0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = audit
        .iter()
        .find(|a| a.actor == "config-reload")
        .unwrap_or_else(|| panic!("no config-reload audit entry: {audit:?}"));
    assert_eq!(entry.kind, "limits");
    assert!(entry.after.contains("70"), "{entry:?}");
    let events = wait_until("a config_reloaded event", WAIT, || {
        let url = url.clone();
        async move {
            let mut s = admin_client(&url)
                .await?
                .stream_herd_events(gpb::StreamHerdEventsRequest {
                    kinds: vec!["config_reloaded".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut got = Vec::new();
            while let Some(e) = s.message().await? {
                got.push(e);
            }
            Ok((!got.is_empty()).then_some(got))
        }
    })
    .await
    .unwrap();
    let e = herd_proto::events::to_json(&events[0]);
    assert_eq!(e["fields"]["trigger"], "rpc", "{e}");
    assert!(
        e["fields"]["applied"]
            .as_str()
            .unwrap()
            .contains("risk.engines.e0.max_open_orders"),
        "{e}"
    );
    // The diff is in the log, without a secret.
    let log = gw.log_text();
    assert!(
        log.contains("risk.engines.e0.max_open_orders: 1000 -> 70"),
        "{log}"
    );
    assert!(!log.contains(ADMIN_TOKEN));
    gw.terminate().await.unwrap();
}

/// One bad field refuses the whole file: INVALID_ARGUMENT naming the file,
/// the field and the problem, and nothing changes, not even the good
/// fields of the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_changes_nothing_and_the_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http] = free_ports::<2>().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = gateway_toml(port, http, 0, "");
    std::fs::write(&path, &base).unwrap();
    let mut gw = start_gateway(dir.path(), &path).await;
    let url = gw.url();

    let bad = base.replace("engine_queue_limit = 64\n", "engine_queue_limit = 8\n")
        + "[risk.account]\nmax_daily_loss = \"-5\"\n";
    write_atomically(&path, &bad);
    let e = reload_gateway(&url).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("risk.account.max_daily_loss"), "{e:?}");
    assert!(e.message().contains("must be positive"), "{e:?}");
    assert!(e.message().contains(&path.display().to_string()), "{e:?}");
    assert!(e.message().contains("nothing changed"), "{e:?}");
    assert_eq!(field(&shown(&url).await, "engine_queue_limit").value, "64");
    assert_eq!(account_limits(&url).await.max_daily_loss, "");
    // Raised as an event naming the field (no secret in it).
    let failed = wait_until("a config_reload_failed event", WAIT, || {
        let url = url.clone();
        async move {
            let mut s = admin_client(&url)
                .await?
                .stream_herd_events(gpb::StreamHerdEventsRequest {
                    kinds: vec!["config_reload_failed".into()],
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut got = Vec::new();
            while let Some(e) = s.message().await? {
                got.push(e);
            }
            Ok(got.into_iter().next())
        }
    })
    .await
    .unwrap();
    let f = herd_proto::events::to_json(&failed);
    assert!(
        f["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("risk.account.max_daily_loss"),
        "{f}"
    );
    assert!(!f.to_string().contains(ADMIN_TOKEN));
    // herdctl says the same and exits 1.
    let out = tokio::process::Command::new(bin_path("herdctl").unwrap())
        .args([
            "config",
            "reload",
            "gateway",
            "--gateway",
            &url,
            "--token",
            ADMIN_TOKEN,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("risk.account.max_daily_loss"), "{err}");

    // A type error is refused the same way, naming the key and its line.
    write_atomically(
        &path,
        &base.replace(
            "engine_queue_limit = 64\n",
            "engine_queue_limit = \"many\"\n",
        ),
    );
    let e = reload_gateway(&url).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("engine_queue_limit"), "{e:?}");
    assert_eq!(field(&shown(&url).await, "engine_queue_limit").value, "64");
    gw.terminate().await.unwrap();
}

/// A restart-only change is reported (in the answer, in `config show` as
/// pending) and not applied, while a live change in the same file applies;
/// SIGHUP reloads too and no longer ends the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_changes_are_reported_not_applied_and_sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http, other_http] = free_ports::<3>().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = gateway_toml(port, http, 0, "");
    std::fs::write(&path, &base).unwrap();
    let mut gw = start_gateway(dir.path(), &path).await;
    let url = gw.url();

    let changed = base
        .replace("poll_interval_ms = 20\n", "poll_interval_ms = 40\n")
        .replace(
            &format!("http_listen = \"127.0.0.1:{http}\""),
            &format!("http_listen = \"127.0.0.1:{other_http}\""),
        )
        + "[risk.account]\nmax_order_notional = \"500\"\n";
    write_atomically(&path, &changed);
    let r = reload_gateway(&url).await.unwrap();
    let paths = flags(&r.changes, |c| (c.path.as_str(), c.live, c.applied));
    assert_eq!(
        paths,
        [
            ("http_listen", false, false),
            ("poll_interval_ms", false, false),
            ("risk.account.max_order_notional", true, true),
        ],
        "{r:?}"
    );
    assert!(r.message.contains("restart-only"), "{}", r.message);
    assert_eq!(account_limits(&url).await.max_order_notional, "500");
    let cfg = shown(&url).await;
    assert_eq!(field(&cfg, "poll_interval_ms").value, "20");
    let pending: Vec<&str> = cfg
        .pending_restart
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(pending, ["http_listen", "poll_interval_ms"]);
    // herdctl shows the same, as JSON.
    let out = tokio::process::Command::new(bin_path("herdctl").unwrap())
        .args([
            "config",
            "show",
            "gateway",
            "--gateway",
            &url,
            "--token",
            ADMIN_TOKEN,
            "-o",
            "json",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending: Vec<&str> = json["pending_restart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["http_listen", "poll_interval_ms"], "{json}");
    let notional = json["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "risk.account.max_order_notional")
        .unwrap();
    assert_eq!(notional["value"], "\"500\"");
    assert_eq!(notional["class"], "live");
    assert_eq!(notional["source"], "file");
    // The admin port still answers where it was bound.
    let health = reqwest::get(format!("http://127.0.0.1:{http}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success());

    // SIGHUP: the process stays up and reloads (the log says so).
    let pid = gw.child.id().unwrap();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    wait_until("the SIGHUP reload in the log", WAIT, || {
        let log = gw.log_text();
        async move { Ok(log.contains("sighup").then_some(())) }
    })
    .await
    .unwrap();
    admin_client(&url)
        .await
        .unwrap()
        .list_engines(gpb::ListEnginesRequest {})
        .await
        .unwrap();
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the gateway"
    );
    gw.terminate().await.unwrap();
}

/// A Kubernetes ConfigMap mounted as a directory: the file is a symlink
/// through `..data`, and an update swaps `..data` atomically. The gateway
/// picks the change up without a signal or a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_is_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http] = free_ports::<2>().unwrap();
    let mount = dir.path().join("config");
    let version = |n: u32, text: &str| -> PathBuf {
        let v = mount.join(format!("..2026_12_06_{n}"));
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("gateway.toml"), text).unwrap();
        v
    };
    let swap_to = |v: &Path| {
        let tmp = mount.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(v.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, mount.join("..data")).unwrap();
    };
    let base = gateway_toml(port, http, 200, "");
    std::fs::create_dir_all(&mount).unwrap();
    swap_to(&version(1, &base));
    std::os::unix::fs::symlink("..data/gateway.toml", mount.join("gateway.toml")).unwrap();
    let mut gw = start_gateway(dir.path(), &mount.join("gateway.toml")).await;
    let url = gw.url();
    assert_eq!(risk_limits(&url, "e0").await.max_open_orders, Some(1000));

    swap_to(&version(
        2,
        &base.replace("max_open_orders = 1000\n", "max_open_orders = 7\n"),
    ));
    wait_until("the new limit from the swapped ConfigMap", WAIT, || {
        let url = url.clone();
        async move { Ok((risk_limits(&url, "e0").await.max_open_orders == Some(7)).then_some(())) }
    })
    .await
    .unwrap();
    let log = gw.log_text();
    assert!(
        log.contains("trigger=\"file\"") || log.contains("\"trigger\":\"file\""),
        "{log}"
    );
    gw.terminate().await.unwrap();
}

/// An engine's strategy parameters reload while its grid works: the new
/// values show in GetStatus at once, the restart-only slot count is
/// reported and kept, and the grid's working orders stay exactly as they
/// were (nothing is cancelled or re-placed by the reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_strategy_parameters_reload_without_dropping_state() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(
        dir.path(),
        1,
        "[paper]\nstep_ms = 3600000\nhistory_minutes = 0\n",
    )
    .await
    .unwrap();
    let extra = "regime_source = \"fixed\"\nfixed_regime = \"RANGING\"\nconfig_poll_ms = 0\n\
                 [grid]\nenabled = true\nslots = 2\ndaily_loss_limit_usd = \"5\"\n";
    let mut e0 = EngineProc::start(dir.path(), "e0", &gw.proc.addr, extra)
        .await
        .unwrap();
    let engine_url = e0.proc.url();
    let gw_url = gw.proc.url();
    let mut c = engine_client(&engine_url).await.unwrap();
    wait_until("the grid's entries open", WAIT, || {
        let url = gw_url.clone();
        async move { Ok((open_ids(&url, "e0").await.len() >= 4).then_some(())) }
    })
    .await
    .unwrap();
    let before = open_ids(&gw_url, "e0").await;

    let path = dir.path().join("engine-e0.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("slots = 2\n", "slots = 4\n").replace(
        "daily_loss_limit_usd = \"5\"\n",
        "daily_loss_limit_usd = \"9\"\n[grid.slot]\nrefresh_cooldown_sec = 600\n",
    );
    write_atomically(&path, &changed);
    let r = c
        .reload_config(epb::ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let paths = flags(&r.changes, |c| (c.path.as_str(), c.live, c.applied));
    assert_eq!(
        paths,
        [
            ("grid.daily_loss_limit_usd", true, true),
            ("grid.slot.refresh_cooldown_sec", true, true),
            ("grid.slots", false, false),
        ],
        "{r:?}"
    );
    let s = c
        .get_status(epb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let grid = s.grid.unwrap();
    assert_eq!(grid.daily_loss_limit_usd, "9");
    assert_eq!(grid.slot_count, 2, "the slot count is restart-only");
    // The engine runs on (ticks every 50 ms) with the new values; half a
    // second of status time later the orders are still the same.
    let later = wait_until(
        "half a second of engine time after the reload",
        WAIT,
        || {
            let mut c = c.clone();
            let at = s.time_ms;
            async move {
                let now = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
                Ok((now.time_ms >= at + 500).then_some(now))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(later.grid.unwrap().slot_count, 2);
    assert_eq!(open_ids(&gw_url, "e0").await, before);

    // A bad strategy field: refused whole, named.
    write_atomically(
        &path,
        &changed.replace(
            "daily_loss_limit_usd = \"9\"\n",
            "daily_loss_limit_usd = \"9\"\nmode = \"sideways\"\n",
        ),
    );
    let e = c
        .reload_config(epb::ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("sideways"), "{e:?}");
    let cfg = c
        .get_config(epb::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let limit = cfg
        .fields
        .iter()
        .find(|f| f.path == "grid.daily_loss_limit_usd")
        .unwrap();
    assert_eq!(
        (limit.value.as_str(), limit.source.as_str()),
        ("\"9\"", "file")
    );
    let slots = cfg.fields.iter().find(|f| f.path == "grid.slots").unwrap();
    assert_eq!(slots.value, "2");
    assert_eq!(
        cfg.pending_restart
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        Vec::<&str>::new(),
        "the file on disk is invalid now: nothing to compare"
    );

    // SIGHUP reloads the engine too (its file watcher is off here).
    write_atomically(
        &path,
        &changed.replace(
            "daily_loss_limit_usd = \"9\"\n",
            "daily_loss_limit_usd = \"12\"\n",
        ),
    );
    let pid = e0.proc.child.id().unwrap();
    let status = tokio::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    wait_until("the engine's SIGHUP reload", WAIT, || {
        let mut c = c.clone();
        async move {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            Ok((s.grid.unwrap_or_default().daily_loss_limit_usd == "12").then_some(()))
        }
    })
    .await
    .unwrap();
    assert!(
        e0.proc.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the engine"
    );
    assert_eq!(open_ids(&gw_url, "e0").await, before);
    e0.proc.terminate().await.unwrap();
}

/// A webhook that answers 200 to every POST and hands each body over.
async fn webhook() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]);
                    let _ = tx.send(body.to_string());
                    buf.drain(..head_end + 4 + len);
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (port, rx)
}

/// Notification sinks are live: a sink added by a reload starts and gets
/// the reload's own `config_reloaded` event; one removed by the next reload
/// is gone from ListEventSinks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_by_a_reload_delivers_and_a_removed_one_stops() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http] = free_ports::<2>().unwrap();
    let path = dir.path().join("gateway.toml");
    let base = gateway_toml(port, http, 0, "");
    std::fs::write(&path, &base).unwrap();
    let mut gw = start_gateway(dir.path(), &path).await;
    let url = gw.url();
    let (hook_port, mut bodies) = webhook().await;

    let sink = format!(
        "[[events.sinks]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n"
    );
    write_atomically(&path, &(base.clone() + &sink));
    let r = reload_gateway(&url).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(r.changes[0].path, "events.sinks.ops");
    assert!(r.changes[0].live && r.changes[0].applied, "{r:?}");
    assert_eq!(r.changes[0].after.matches("REDACTED").count(), 2, "{r:?}");
    assert!(
        !r.changes[0].after.contains("/hook"),
        "the URL is a secret: {r:?}"
    );
    let body = tokio::time::timeout(WAIT, async {
        loop {
            let b = bodies.recv().await.unwrap();
            if b.contains("config_reloaded") {
                return b;
            }
        }
    })
    .await
    .unwrap();
    assert!(body.contains("events.sinks.ops"), "{body}");
    let sinks = |url: String| async move {
        admin_client(&url)
            .await
            .unwrap()
            .list_event_sinks(gpb::ListEventSinksRequest {})
            .await
            .unwrap()
            .into_inner()
            .sinks
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(sinks(url.clone()).await, ["ops"]);

    write_atomically(&path, &base);
    let r = reload_gateway(&url).await.unwrap();
    assert_eq!(r.changes[0].path, "events.sinks.ops");
    assert!(r.changes[0].after.is_empty(), "{r:?}");
    assert!(sinks(url.clone()).await.is_empty());
    gw.terminate().await.unwrap();
}

/// Reloaded risk limits are durable the way the file is: a runtime
/// override (SetRiskLimits) of the scope gives way to the reloaded value,
/// and after a restart the file governs, so an edit made while the gateway
/// was down is not masked by a stale override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_risk_limits_leave_the_file_in_charge_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let [port, http] = free_ports::<2>().unwrap();
    let path = dir.path().join("gateway.toml");
    let state = format!("state_dir = \"{}\"\n", dir.path().join("state").display());
    let base = state.clone() + &gateway_toml(port, http, 0, "");
    std::fs::write(&path, &base).unwrap();
    let mut gw = start_gateway(dir.path(), &path).await;
    let url = gw.url();
    admin_client(&url)
        .await
        .unwrap()
        .set_risk_limits(gpb::SetRiskLimitsRequest {
            engine_id: "e0".into(),
            limits: Some(gpb::RiskLimits {
                max_open_orders: Some(50),
                ..Default::default()
            }),
            reason: "operator".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(risk_limits(&url, "e0").await.max_open_orders, Some(50));
    write_atomically(
        &path,
        &base.replace("max_open_orders = 1000\n", "max_open_orders = 70\n"),
    );
    reload_gateway(&url).await.unwrap();
    assert_eq!(risk_limits(&url, "e0").await.max_open_orders, Some(70));
    gw.terminate().await.unwrap();

    // Edited while the gateway is down: the file's value holds at start.
    write_atomically(
        &path,
        &base.replace("max_open_orders = 1000\n", "max_open_orders = 80\n"),
    );
    let mut gw = start_gateway(dir.path(), &path).await;
    assert_eq!(risk_limits(&gw.url(), "e0").await.max_open_orders, Some(80));
    gw.terminate().await.unwrap();
}
