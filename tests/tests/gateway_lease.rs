//! One active gateway per key (issue 20, gateway-service/src/lease.rs), with
//! real processes: two `herd-gateway`s on one Kraken key against
//! `kraken-sim`, taking a Lease from a fake of the Kubernetes Lease API
//! (`herd_tests::kube_fake`, real HTTP) through the real client (kube, a
//! KUBECONFIG file). The simulator's request log (`/sim/requests`, each
//! request with the user agent that tells the two gateways apart) proves which
//! gateway called the venue when; the fake's write log says when the Lease
//! was renewed and taken. Durations are short: lease 3 s, renew deadline 2 s,
//! retry 0.5 s. And the state_dir lock outside Kubernetes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use herd_proto::gateway as pb;
use herd_tests::kraken_harness::{
    API_KEY, API_SECRET, SimProcess, engine_client, engine_token, limit,
};
use herd_tests::kube_fake::{FakeKube, Write};
use herd_tests::procs::{ADMIN_TOKEN, GatewayOpts, GatewayProc, bin_path, free_ports, wait_until};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const LEASE: &str = "herd-gateway-test";
const NAMESPACE: &str = "herd-test";
const LEASE_MS: i64 = 3_000;
const RENEW_DEADLINE_MS: i64 = 2_000;
/// A call the holder started just before its deadline still travels to the
/// simulator: the most it may arrive after the deadline.
const TRANSIT_MS: i64 = 300;
const NAMED: &str = "herd.gateway.v1.Gateway";

fn sim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kraken-sim"))
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The simulator, the fake API server and what both gateways share: the
/// key files, one state dir and nonce file (the live overlay's volume).
struct World {
    dir: tempfile::TempDir,
    sim: SimProcess,
    kube: FakeKube,
    kubeconfig: PathBuf,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimProcess::spawn(&sim_bin(), "pro", &[]).await.unwrap();
        sim.admin().set_price("XDGUSD", "0.12").await.unwrap();
        std::fs::write(dir.path().join("api-key"), API_KEY).unwrap();
        std::fs::write(dir.path().join("api-secret"), API_SECRET).unwrap();
        let kube = FakeKube::start().await.unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig, NAMESPACE).unwrap();
        World {
            dir,
            sim,
            kube,
            kubeconfig,
        }
    }

    /// Starts gateway `identity` (also its Kraken user agent); it may wait
    /// as a standby.
    async fn gateway(&self, identity: &str, drain_delay_ms: u64) -> Gw {
        self.gateway_with_secret(identity, drain_delay_ms, "api-secret")
            .await
    }

    /// [`World::gateway`] reading its API secret from `secret_file` (in
    /// the world's directory).
    async fn gateway_with_secret(
        &self,
        identity: &str,
        drain_delay_ms: u64,
        secret_file: &str,
    ) -> Gw {
        let [grpc, http] = free_ports::<2>().unwrap();
        let d = self.dir.path();
        let cfg = format!(
            "listen = \"127.0.0.1:{grpc}\"\nhttp_listen = \"127.0.0.1:{http}\"\nvenue = \"kraken\"\n\
             admin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 100\npending_timeout_ms = 1000\n\
             drain_delay_ms = {drain_delay_ms}\nshutdown_timeout_ms = 20000\nstate_dir = \"{}\"\n\
             [[engines]]\nid = \"e0\"\ntoken = \"{}\"\nuserref_min = 1000\nuserref_max = 1999\n\
             cancel_on_disconnect_ms = 0\n[dead_mans_switch]\nenabled = false\n\
             [kraken]\ntier = \"pro\"\nbase_url = \"{}\"\nnonce_file = \"{}\"\nrequest_timeout_ms = 1000\n\
             connect_timeout_ms = 1000\nuser_agent = \"{identity}\"\n\
             credentials = {{ source = \"files\", key_path = \"{}\", secret_path = \"{}\" }}\n\
             [lease]\nname = \"{LEASE}\"\nidentity = \"{identity}\"\nlease_duration_s = 3\n\
             renew_deadline_s = 2\nretry_period_s = 0.5\n",
            d.join("gateway-state").display(),
            engine_token("e0"),
            self.sim.url(),
            d.join("kraken.nonce").display(),
            d.join("api-key").display(),
            d.join(secret_file).display(),
        );
        let config = d.join(format!("{identity}.toml"));
        std::fs::write(&config, cfg).unwrap();
        let log = d.join(format!("{identity}-{}.log", wall_ms()));
        let mut child = Command::new(bin_path("herd-gateway").unwrap())
            .arg("--config")
            .arg(&config)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let active_ms = Arc::new(Mutex::new(None));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let seen = active_ms.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(" listening on ") {
                    *seen.lock().unwrap() = Some(wall_ms());
                }
            }
        });
        Gw {
            identity: identity.to_string(),
            child,
            log,
            grpc: format!("127.0.0.1:{grpc}"),
            http: format!("127.0.0.1:{http}"),
            active_ms,
        }
    }

    /// The simulator's requests from gateway `identity`: (ms, method, private).
    async fn calls_of(&self, identity: &str) -> Vec<(i64, String, bool)> {
        self.sim
            .admin()
            .requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r["user_agent"] == identity)
            .map(|r: &Value| {
                (
                    r["ms"].as_i64().unwrap(),
                    r["method"].as_str().unwrap_or("").to_string(),
                    r["private"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    fn writes_of(&self, identity: &str) -> Vec<Write> {
        self.kube
            .writes()
            .into_iter()
            .filter(|w| w.holder.as_deref() == Some(identity))
            .collect()
    }

    /// The renewTime of `identity`'s last successful write.
    fn last_renew_ms(&self, identity: &str) -> i64 {
        self.writes_of(identity)
            .iter()
            .filter_map(|w| w.renew_ms)
            .max()
            .unwrap_or_else(|| panic!("{identity} never wrote the Lease"))
    }
}

struct Gw {
    identity: String,
    child: Child,
    log: PathBuf,
    grpc: String,
    http: String,
    /// When it printed its readiness line (it holds the Lease and serves).
    active_ms: Arc<Mutex<Option<i64>>>,
}

impl Gw {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_active(&self, within: Duration) -> i64 {
        let active = self.active_ms.clone();
        wait_until(
            &format!("{} to become active", self.identity),
            within,
            || {
                let a = *active.lock().unwrap();
                async move { Ok(a) }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", self.log_text()))
    }

    fn is_active(&self) -> bool {
        self.active_ms.lock().unwrap().is_some()
    }

    /// `/readyz`: (status, body); None while nothing listens.
    async fn readyz(&self) -> Option<(u16, String)> {
        let r = reqwest::get(format!("http://{}/readyz", self.http))
            .await
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.unwrap_or_default()))
    }

    async fn health(&self, service: &str) -> anyhow::Result<i32> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.grpc))?
            .connect()
            .await?;
        let r = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await?;
        Ok(r.into_inner().status)
    }

    async fn wait_standby(&self) {
        wait_until(
            &format!("{} to serve as a standby", self.identity),
            Duration::from_secs(60),
            || async {
                Ok(self
                    .readyz()
                    .await
                    .filter(|(code, body)| *code == 503 && body.contains("standby")))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; its log:\n{}", self.log_text()));
    }
}

/// Places a resting buy through `gw` for engine e0, so its poller asks the
/// venue for open orders every 100 ms: a steady stream of private calls.
async fn place_resting_order(gw: &Gw, id: &str) {
    let mut e0 = engine_client(&format!("http://{}", gw.grpc), &engine_token("e0")).unwrap();
    e0.place_order(limit(id, "DOGEUSD", pb::Side::Buy, "100", "0.05"))
        .await
        .unwrap();
}

/// Waits until `identity` made at least `n` private calls after `since_ms`.
async fn wait_private_calls(world: &World, identity: &str, since_ms: i64, n: usize) {
    wait_until(
        &format!("{n} private venue calls of {identity}"),
        Duration::from_secs(30),
        || async {
            let calls = world.calls_of(identity).await;
            Ok((calls.iter().filter(|c| c.2 && c.0 > since_ms).count() >= n).then_some(()))
        },
    )
    .await
    .unwrap();
}

async fn first_private_call_ms(world: &World, identity: &str) -> i64 {
    wait_until(
        &format!("a private venue call of {identity}"),
        Duration::from_secs(30),
        || async {
            let calls = world.calls_of(identity).await;
            Ok(calls.iter().filter(|c| c.2).map(|c| c.0).min())
        },
    )
    .await
    .unwrap()
}

/// Two gateways on one key: the first holds the Lease and trades; the second
/// is a standby (named health NOT_SERVING, overall SERVING, /readyz 503) that
/// makes no venue call at all. kill -9 the holder: the standby takes over
/// only once the Lease expired (its takeover written no earlier than the old
/// renewTime + 3 s), and only then calls the venue, starting with recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_makes_no_venue_call_and_takes_over_after_expiry_on_kill_9() {
    let world = World::start().await;
    let mut a = world.gateway("gw-a", 50).await;
    a.wait_active(Duration::from_secs(60)).await;
    place_resting_order(&a, "lease-kill-1").await;

    let b = world.gateway("gw-b", 50).await;
    b.wait_standby().await;
    let standby_ms = wall_ms();
    assert_eq!(
        b.health(NAMED).await.unwrap(),
        ServingStatus::NotServing as i32
    );
    assert_eq!(b.health("").await.unwrap(), ServingStatus::Serving as i32);
    // While A holds: A polls its order (many private calls), B none at all.
    wait_private_calls(&world, "gw-a", standby_ms, 15).await;
    assert!(
        world.calls_of("gw-b").await.is_empty(),
        "the standby called the venue"
    );
    assert!(!b.is_active());

    a.child.kill().await.unwrap();
    let killed_ms = wall_ms();
    let b_active = b.wait_active(Duration::from_secs(30)).await;
    let last_a = world.last_renew_ms("gw-a");
    let takeover = world.writes_of("gw-b");
    let takeover = takeover.first().expect("gw-b wrote the Lease");
    assert!(
        takeover.at_ms >= last_a + LEASE_MS,
        "gw-b took the Lease at {} ms, before gw-a's renewTime {last_a} + {LEASE_MS} ms",
        takeover.at_ms
    );
    assert!(b_active >= last_a + LEASE_MS);
    // Recovery from the venue as after any restart, and never overlapping A.
    let b_first = first_private_call_ms(&world, "gw-b").await;
    let a_calls = world.calls_of("gw-a").await;
    let a_last = a_calls.iter().map(|c| c.0).max().unwrap();
    assert!(
        a_last <= killed_ms + TRANSIT_MS,
        "gw-a called after its kill"
    );
    assert!(
        b_first >= last_a + LEASE_MS && b_first > a_last,
        "gw-b's first venue call at {b_first}: gw-a's last at {a_last}, Lease expiry at {}",
        last_a + LEASE_MS
    );
    eprintln!(
        "after gw-a's last renewal: killed +{} ms, its last call +{} ms, gw-b's takeover +{} ms, \
         gw-b's first call +{} ms",
        killed_ms - last_a,
        a_last - last_a,
        takeover.at_ms - last_a,
        b_first - last_a
    );
    assert!(
        world
            .calls_of("gw-b")
            .await
            .iter()
            .any(|c| c.1 == "OpenOrders"),
        "gw-b rebuilt its state from the venue"
    );
    let ready = b.readyz().await.unwrap();
    assert_eq!(ready.0, 200, "{ready:?}");
    assert_eq!(
        b.health(NAMED).await.unwrap(),
        ServingStatus::Serving as i32
    );
    // It adopted the order A placed.
    let e0 = engine_client(&format!("http://{}", b.grpc), &engine_token("e0")).unwrap();
    wait_until("gw-b to know A's order", Duration::from_secs(10), || {
        let mut e0 = e0.clone();
        async move {
            let open = e0
                .list_open_orders(pb::ListOpenOrdersRequest {
                    symbol: String::new(),
                })
                .await?
                .into_inner();
            Ok(open
                .orders
                .iter()
                .any(|o| o.client_order_id == "lease-kill-1")
                .then_some(()))
        }
    })
    .await
    .unwrap();
}

/// The Lease API stops answering the holder's renewals: it stops every venue
/// call by renew_deadline (2 s after its last renewal), before the Lease can
/// expire (3 s), turns NOT_SERVING and exits non-zero; the standby takes
/// over after the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_renewal_fences_the_holder_before_the_lease_expires() {
    renewals_stop_working(|kube| kube.stall_writes_of("gw-a")).await;
}

/// The same when the Lease API answers every renewal with a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_renewals_fence_the_holder_before_the_lease_expires() {
    renewals_stop_working(|kube| kube.fail_writes_of("gw-a")).await;
}

async fn renewals_stop_working(break_renewals: impl FnOnce(&FakeKube)) {
    let world = World::start().await;
    // A long drain, so its NOT_SERVING phase can be seen before it exits.
    let mut a = world.gateway("gw-a", 1_500).await;
    a.wait_active(Duration::from_secs(60)).await;
    place_resting_order(&a, "lease-stall-1").await;
    let b = world.gateway("gw-b", 50).await;
    b.wait_standby().await;
    wait_private_calls(&world, "gw-a", wall_ms(), 5).await;

    break_renewals(&world.kube);
    let not_ready_ms = wait_until(
        "gw-a to turn not ready",
        Duration::from_secs(10),
        || async {
            Ok(match a.readyz().await {
                Some((200, _)) => None,
                _ => Some(wall_ms()),
            })
        },
    )
    .await
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), a.child.wait())
        .await
        .expect("gw-a exits")
        .unwrap();
    assert!(!status.success(), "a fenced gateway exits non-zero");
    let log = a.log_text();
    assert!(log.contains("lost its Lease"), "{log}");

    let last_a = world.last_renew_ms("gw-a");
    let a_private_last = world
        .calls_of("gw-a")
        .await
        .iter()
        .filter(|c| c.2)
        .map(|c| c.0)
        .max()
        .unwrap();
    assert!(
        a_private_last <= last_a + RENEW_DEADLINE_MS + TRANSIT_MS,
        "gw-a called the venue at {a_private_last}, {} ms after its last renewal",
        a_private_last - last_a
    );
    assert!(a_private_last < last_a + LEASE_MS);
    // Its calls went on until close to the deadline (the poller's cadence is
    // about half a second): the fence stopped them, not an idle poller.
    assert!(
        a_private_last >= last_a + RENEW_DEADLINE_MS - 1_000,
        "gw-a's calls stopped {} ms after its last renewal, long before the deadline",
        a_private_last - last_a
    );
    assert!(
        log.contains("fenced: this gateway makes no more venue calls"),
        "{log}"
    );
    assert!(
        not_ready_ms < last_a + LEASE_MS,
        "gw-a was still ready {} ms after its last renewal",
        not_ready_ms - last_a
    );

    b.wait_active(Duration::from_secs(30)).await;
    let takeover = world.writes_of("gw-b");
    let takeover = takeover.first().expect("gw-b wrote the Lease");
    assert!(
        takeover.at_ms >= last_a + LEASE_MS,
        "gw-b took over at {} before the expiry at {}",
        takeover.at_ms,
        last_a + LEASE_MS
    );
    let b_first = first_private_call_ms(&world, "gw-b").await;
    assert!(b_first > a_private_last);
    eprintln!(
        "after gw-a's last renewal: its last private call +{} ms, not ready +{} ms, \
         gw-b's takeover +{} ms, gw-b's first call +{} ms",
        a_private_last - last_a,
        not_ready_ms - last_a,
        takeover.at_ms - last_a,
        b_first - last_a
    );
}

/// Someone else writes the Lease while gw-a holds it: gw-a's next renewal
/// conflicts (409) and it stops every venue call at once, long before its
/// renew deadline, and exits non-zero. The standby does not take over from
/// the new holder until that one's Lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_fences_the_holder_at_once() {
    let world = World::start().await;
    let mut a = world.gateway("gw-a", 50).await;
    a.wait_active(Duration::from_secs(60)).await;
    place_resting_order(&a, "lease-steal-1").await;
    let b = world.gateway("gw-b", 50).await;
    b.wait_standby().await;
    wait_private_calls(&world, "gw-a", wall_ms(), 5).await;

    let stolen = world.kube.steal(NAMESPACE, LEASE, "thief").unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), a.child.wait())
        .await
        .expect("gw-a exits")
        .unwrap();
    assert!(!status.success());
    let log = a.log_text();
    assert!(log.contains("was taken by thief"), "{log}");
    // The next renewal (0.5 s) conflicted: no call after it.
    let a_last = world
        .calls_of("gw-a")
        .await
        .iter()
        .map(|c| c.0)
        .max()
        .unwrap();
    assert!(
        a_last <= stolen.at_ms + 500 + TRANSIT_MS,
        "gw-a called the venue {} ms after the Lease was taken",
        a_last - stolen.at_ms
    );
    b.wait_active(Duration::from_secs(30)).await;
    let takeover = world.writes_of("gw-b");
    assert!(takeover[0].at_ms >= stolen.at_ms + LEASE_MS);
}

async fn sigterm(gw: &mut Gw) -> std::process::ExitStatus {
    let pid = gw.child.id().context("pid").unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    tokio::time::timeout(Duration::from_secs(30), gw.child.wait())
        .await
        .unwrap_or_else(|_| panic!("{} did not exit on SIGTERM", gw.identity))
        .unwrap()
}

/// SIGTERM on the holder (a rollout): it drains, releases the Lease and
/// exits 0; the standby takes over at once, well before the old Lease would
/// have expired, and the two never call the venue at the same time. A
/// standby stops on SIGTERM too, having called nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_releases_the_lease_to_the_standby() {
    let world = World::start().await;
    let mut a = world.gateway("gw-a", 50).await;
    a.wait_active(Duration::from_secs(60)).await;
    place_resting_order(&a, "lease-term-1").await;
    let b = world.gateway("gw-b", 50).await;
    let mut c = world.gateway("gw-c", 50).await;
    b.wait_standby().await;
    c.wait_standby().await;
    let stopped = sigterm(&mut c).await;
    assert!(stopped.success(), "{stopped}: {}", c.log_text());
    assert!(world.calls_of("gw-c").await.is_empty());
    assert!(world.writes_of("gw-c").is_empty());
    wait_private_calls(&world, "gw-a", wall_ms(), 5).await;

    let status = sigterm(&mut a).await;
    assert!(status.success(), "{status}: {}", a.log_text());
    b.wait_active(Duration::from_secs(30)).await;
    let writes = world.kube.writes();
    let released = writes
        .iter()
        .position(|w| w.holder.is_none() && w.verb == "replace")
        .expect("gw-a released the Lease");
    let last_a = world.last_renew_ms("gw-a");
    let takeover = writes
        .iter()
        .position(|w| w.holder.as_deref() == Some("gw-b"))
        .expect("gw-b took the Lease");
    assert!(takeover > released);
    assert!(
        writes[takeover].at_ms < last_a + LEASE_MS,
        "the standby waited for the expiry instead of taking the released Lease"
    );
    let a_last = world
        .calls_of("gw-a")
        .await
        .iter()
        .map(|c| c.0)
        .max()
        .unwrap();
    let b_first = first_private_call_ms(&world, "gw-b").await;
    assert!(
        b_first > a_last,
        "gw-b called at {b_first}, gw-a at {a_last}"
    );
    eprintln!(
        "after gw-a's last renewal: gw-b's takeover +{} ms (the Lease would expire at +{LEASE_MS})",
        writes[takeover].at_ms - last_a
    );
}

/// A start that fails after taking the Lease (here the venue refuses the
/// key at the start-up check: the secret is wrong) gives the Lease back at
/// once instead of leaving it to expire, and the standby takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_releases_the_lease() {
    let world = World::start().await;
    // Another valid base64 secret (one character changed): signatures fail.
    let wrong: String = API_SECRET
        .char_indices()
        .map(|(i, c)| match (i, c) {
            (4, 'A') => 'B',
            (4, _) => 'A',
            _ => c,
        })
        .collect();
    assert_ne!(wrong, API_SECRET);
    std::fs::write(world.dir.path().join("wrong-secret"), wrong).unwrap();
    let mut a = world.gateway_with_secret("gw-a", 50, "wrong-secret").await;
    let status = tokio::time::timeout(Duration::from_secs(60), a.child.wait())
        .await
        .expect("gw-a exits after its failed start")
        .unwrap();
    assert!(!status.success(), "{status}: {}", a.log_text());
    let log = a.log_text();
    assert!(log.contains("start-up check"), "{log}");
    assert!(log.contains("releasing the Lease"), "{log}");
    let writes = world.kube.writes();
    let took = writes
        .iter()
        .position(|w| w.holder.as_deref() == Some("gw-a"))
        .expect("gw-a took the Lease before it failed");
    let released = writes
        .iter()
        .skip(took)
        .position(|w| w.holder.is_none() && w.verb == "replace");
    assert!(
        released.is_some(),
        "gw-a left the Lease to expire; writes: {:?}",
        writes
            .iter()
            .map(|w| (&w.verb, &w.holder))
            .collect::<Vec<_>>()
    );
    let b = world.gateway("gw-b", 50).await;
    b.wait_active(Duration::from_secs(30)).await;
}

/// Outside Kubernetes: a second gateway on the same state_dir refuses to
/// start, naming the lock file and the first one's pid; once the first has
/// stopped, a new one starts.
#[tokio::test]
async fn a_second_gateway_on_one_state_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let opts = GatewayOpts {
        state_dir: Some(state.clone()),
        ..GatewayOpts::default()
    };
    let sub = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let mut first = GatewayProc::start_with(&sub("a"), 1, "", &opts)
        .await
        .unwrap();
    let pid = first.proc.child.id().unwrap();
    let err = GatewayProc::start_with(&sub("b"), 1, "", &opts)
        .await
        .expect_err("a second gateway on the same state_dir must not start")
        .to_string();
    let lock = state.join("gateway.lock");
    assert!(err.contains(&lock.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("another gateway"), "{err}");
    let stopped = first.proc.terminate().await.unwrap();
    assert!(stopped.success());
    let mut third = GatewayProc::start_with(&sub("c"), 1, "", &opts)
        .await
        .unwrap();
    let third_pid = third.proc.child.id().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(&lock)).unwrap().trim(),
        third_pid.to_string()
    );
    assert!(third.proc.terminate().await.unwrap().success());
}
