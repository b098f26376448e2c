//! Gateway and engine processes for end-to-end tests.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use herd_proto::engine::engine_client::EngineClient;
use herd_proto::gateway::gateway_admin_client::GatewayAdminClient;
use herd_proto::gateway::gateway_client::GatewayClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const CONTROL_TOKEN: &str = "test-control-token";

/// The token of engine `id` in the test gateway's config.
pub fn engine_token(id: &str) -> String {
    format!("test-engine-token-{id}")
}

/// The workspace root (where Cargo.toml and target/ live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

static BUILT: Mutex<bool> = Mutex::new(false);

/// The path of a workspace binary, built (once per test process) with the
/// same profile as the tests, so tests always run the current code.
///
/// `HERD_BIN_DIR=DIR` takes the binaries from `DIR` instead and builds
/// nothing (a bench run against binaries built apart, e.g. to compare two
/// builds of the gateway on the same machine, alternately).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HERD_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        if !path.exists() {
            bail!("HERD_BIN_DIR: {} does not exist", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>, or target/<profile>/<binary>
    // (the chaos-soak binary).
    let dir = exe.parent().context("unexpected test binary location")?;
    let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().context("unexpected test binary location")?
    } else {
        dir
    }
    .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !*built {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.current_dir(workspace_root()).args([
            "build",
            "--bins",
            "-p",
            "herd-gateway",
            "-p",
            "herd-engine",
            "-p",
            "herdctl",
        ]);
        if release {
            cmd.arg("--release");
        }
        // Cargo gives this test process its package's variables; passed on to
        // the nested build they change build scripts' fingerprints (ring
        // watches CARGO_MANIFEST_DIR), and every test run would rebuild the
        // TLS stack for the next `cargo test` to rebuild it back.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(
                    k.as_ref(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&key);
            }
        }
        let status = cmd.status().context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build of the service binaries failed");
        }
        *built = true;
    }
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// A running child process that printed "<name> listening on <addr>".
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args`, stderr to `log`, and waits for its
    /// readiness line on stdout.
    pub async fn start(
        bin: &Path,
        args: &[&str],
        log: &Path,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let log_file = std::fs::File::create(log)?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, a)) = line.split_once(" listening on ") {
                    return Ok::<_, std::io::Error>(Some(a.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let addr = match addr {
            Ok(Ok(Some(a))) => a,
            _ => {
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "{} did not become ready; its log:\n{log_text}",
                    bin.display()
                );
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            child,
            addr,
            log: log.to_path_buf(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: a crash, no chance to clean up.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.sigterm().await?;
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }

    /// SIGTERM without waiting (the process drains; see [`Proc::terminate`]).
    pub async fn sigterm(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await?;
            if !status.success() {
                bail!("kill -TERM {pid} failed: {status}");
            }
        }
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A gateway on the paper venue with engines e0..e{n-1} configured.
#[derive(Debug)]
pub struct GatewayProc {
    pub proc: Proc,
    pub dir: PathBuf,
    /// The admin HTTP port's address (`/metrics`, `/healthz`).
    pub http_addr: String,
}

/// Knobs of a test gateway beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct GatewayOpts {
    /// Listen port (0 = any free port).
    pub port: u16,
    /// Per-engine dead man's switch grace (None = the gateway's default).
    pub cancel_on_disconnect_ms: Option<i64>,
    /// Shutdown timing (None = the test defaults: a 50 ms drain delay, a
    /// 20 s deadline).
    pub drain_delay_ms: Option<u64>,
    pub shutdown_timeout_ms: Option<u64>,
    /// The gateway's `state_dir` (None = none: nothing durable).
    pub state_dir: Option<PathBuf>,
    /// `venue_slots` (None = the gateway's default).
    pub venue_slots: Option<usize>,
}

/// The drain delay and deadline of test processes unless a test sets them:
/// short, so stopping a test service costs little.
pub const TEST_DRAIN_DELAY_MS: u64 = 50;
pub const TEST_SHUTDOWN_TIMEOUT_MS: u64 = 20_000;

/// Runs `start` again (at most twice more) while it fails because a port
/// [`free_port`] handed out was bound by another process before the child
/// bound it (seen in CI: "Address already in use" on an engine's
/// `http_listen`). Each try picks its ports afresh.
pub async fn retry_port_race<T, F, Fut>(mut start: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut tries = 0;
    loop {
        match start().await {
            Err(e) if tries < 2 && format!("{e:#}").contains("Address already in use") => {
                tries += 1;
                eprintln!("a picked port was taken meanwhile; starting again: {e:#}");
            }
            r => return r,
        }
    }
}

/// A free loopback port (bound and released; for a service that must come
/// back on the same port after a restart).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `N` distinct free ports: every listener is held until all are picked, so
/// two calls in a row cannot hand out the same port (the kernel may reuse a
/// port the moment its listener closes).
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = [0u16; N];
    for (slot, l) in out.iter_mut().zip(&listeners) {
        *slot = l.local_addr()?.port();
    }
    Ok(out)
}

impl GatewayProc {
    /// `extra` is appended to the generated TOML (e.g. a `[paper]` table).
    pub async fn start(dir: &Path, engines: usize, extra: &str) -> anyhow::Result<GatewayProc> {
        GatewayProc::start_with(dir, engines, extra, &GatewayOpts::default()).await
    }

    pub async fn start_with(
        dir: &Path,
        engines: usize,
        extra: &str,
        opts: &GatewayOpts,
    ) -> anyhow::Result<GatewayProc> {
        let http_addr = format!("127.0.0.1:{}", free_port()?);
        let mut cfg = format!(
            "listen = \"127.0.0.1:{}\"\nhttp_listen = \"{http_addr}\"\nvenue = \"paper\"\nadmin_token = \"{ADMIN_TOKEN}\"\npoll_interval_ms = 20\npending_timeout_ms = 2000\ndrain_delay_ms = {}\nshutdown_timeout_ms = {}\n",
            opts.port,
            opts.drain_delay_ms.unwrap_or(TEST_DRAIN_DELAY_MS),
            opts.shutdown_timeout_ms.unwrap_or(TEST_SHUTDOWN_TIMEOUT_MS),
        );
        if let Some(d) = &opts.state_dir {
            cfg.push_str(&format!("state_dir = \"{}\"\n", d.display()));
        }
        if let Some(n) = opts.venue_slots {
            cfg.push_str(&format!("venue_slots = {n}\n"));
        }
        for i in 0..engines {
            let id = format!("e{i}");
            cfg.push_str(&format!(
                "[[engines]]\nid = \"{id}\"\ntoken = \"{}\"\nuserref_min = {}\nuserref_max = {}\n",
                engine_token(&id),
                1000 * (i + 1),
                1000 * (i + 1) + 999
            ));
            if let Some(ms) = opts.cancel_on_disconnect_ms {
                cfg.push_str(&format!("cancel_on_disconnect_ms = {ms}\n"));
            }
        }
        cfg.push_str(extra);
        let path = dir.join("gateway.toml");
        std::fs::write(&path, cfg)?;
        let bin = bin_path("herd-gateway")?;
        let config = path.display().to_string();
        let log = dir.join(format!("gateway-{}.log", now_nanos()));
        let proc = Proc::start(&bin, &["--config", &config], &log, &[]).await?;
        Ok(GatewayProc {
            proc,
            dir: dir.to_path_buf(),
            http_addr,
        })
    }
}

/// An engine process with its own data dir (SQLite store).
#[derive(Debug)]
pub struct EngineProc {
    pub proc: Proc,
    pub id: String,
    pub data_dir: PathBuf,
    /// The admin HTTP port's address (`/metrics`, `/healthz`, dashboard).
    pub http_addr: String,
}

/// Knobs of a test engine beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct EngineOpts {
    /// Shutdown timing (None = [`TEST_DRAIN_DELAY_MS`],
    /// [`TEST_SHUTDOWN_TIMEOUT_MS`]).
    pub drain_delay_ms: Option<u64>,
    pub shutdown_timeout_ms: Option<u64>,
}

impl EngineProc {
    /// `extra` is appended to the generated TOML (top-level keys first, then tables).
    pub async fn start(
        dir: &Path,
        id: &str,
        gateway_addr: &str,
        extra: &str,
    ) -> anyhow::Result<EngineProc> {
        EngineProc::start_with(dir, id, gateway_addr, extra, &EngineOpts::default()).await
    }

    pub async fn start_with(
        dir: &Path,
        id: &str,
        gateway_addr: &str,
        extra: &str,
        opts: &EngineOpts,
    ) -> anyhow::Result<EngineProc> {
        retry_port_race(|| Self::start_once(dir, id, gateway_addr, extra, opts)).await
    }

    async fn start_once(
        dir: &Path,
        id: &str,
        gateway_addr: &str,
        extra: &str,
        opts: &EngineOpts,
    ) -> anyhow::Result<EngineProc> {
        let data_dir = dir.join(format!("data-{id}"));
        let http_addr = format!("127.0.0.1:{}", free_port()?);
        let cfg = format!(
            "id = \"{id}\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"{http_addr}\"\ngateway_url = \"http://{gateway_addr}\"\ngateway_token = \"{}\"\ncontrol_token = \"{CONTROL_TOKEN}\"\ndata_dir = \"{}\"\ntick_ms = 50\ndrain_delay_ms = {}\nshutdown_timeout_ms = {}\n{extra}",
            engine_token(id),
            data_dir.display(),
            opts.drain_delay_ms.unwrap_or(TEST_DRAIN_DELAY_MS),
            opts.shutdown_timeout_ms.unwrap_or(TEST_SHUTDOWN_TIMEOUT_MS),
        );
        let path = dir.join(format!("engine-{id}.toml"));
        std::fs::write(&path, cfg)?;
        let bin = bin_path("herd-engine")?;
        let config = path.display().to_string();
        let log = dir.join(format!("engine-{id}-{}.log", now_nanos()));
        let proc = Proc::start(&bin, &["--config", &config], &log, &[]).await?;
        Ok(EngineProc {
            proc,
            id: id.to_string(),
            data_dir,
            http_addr,
        })
    }

    /// The engine's SQLite store file.
    pub fn db_url(&self) -> String {
        format!(
            "sqlite://{}?mode=ro",
            self.data_dir.join(format!("{}.db", self.id)).display()
        )
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Adds a bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(Bearer(format!("Bearer {token}").parse()?))
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(url.to_string())?.connect().await?)
}

pub async fn gateway_client(
    url: &str,
    token: &str,
) -> anyhow::Result<GatewayClient<InterceptedService<Channel, Bearer>>> {
    Ok(GatewayClient::with_interceptor(
        channel(url).await?,
        bearer(token)?,
    ))
}

pub async fn admin_client(
    url: &str,
) -> anyhow::Result<GatewayAdminClient<InterceptedService<Channel, Bearer>>> {
    Ok(GatewayAdminClient::with_interceptor(
        channel(url).await?,
        bearer(ADMIN_TOKEN)?,
    ))
}

pub async fn engine_client(
    url: &str,
) -> anyhow::Result<EngineClient<InterceptedService<Channel, Bearer>>> {
    Ok(EngineClient::with_interceptor(
        channel(url).await?,
        bearer(CONTROL_TOKEN)?,
    ))
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
/// This is waiting for an observable condition, not sleeping for one.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

/// `herdctl up` as a user runs it: a real process that starts its own
/// gateway and engines. Started with `--plain` on ports 0; ready once it
/// printed every child's address and pid.
#[derive(Debug)]
pub struct HerdctlUp {
    pub child: Child,
    /// (name, grpc address, pid) of each child: gateway, engine-0, engine-1.
    pub procs: Vec<(String, String, u32)>,
    /// herdctl's stderr.
    pub stderr: PathBuf,
    /// What herdctl printed on stdout until it was ready.
    pub printed: String,
}

impl HerdctlUp {
    /// Starts `herdctl up --plain --dir DIR` on free ports with `extra`
    /// arguments and waits for its "Ctrl-C stops the herd" line.
    pub async fn start(dir: &Path, extra: &[&str]) -> anyhow::Result<HerdctlUp> {
        let stderr = dir.with_extension(format!("up-{}.err", now_nanos()));
        let mut cmd = Command::new(bin_path("herdctl")?);
        cmd.args(["up", "--plain", "--gateway-port", "0", "--engine-port", "0"])
            .args(["--http-port", "0", "--dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr)?))
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("cannot start herdctl up")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = String::new();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            let mut procs = Vec::new();
            while let Some(line) = lines.next_line().await? {
                printed.push_str(&line);
                printed.push('\n');
                if line.starts_with("Ctrl-C stops the herd") {
                    return Ok::<_, std::io::Error>(Some(procs));
                }
                // "  gateway   grpc://127.0.0.1:PORT (pid N)"
                let mut words = line.split_whitespace();
                if let (Some(name), Some(addr), Some("(pid"), Some(pid)) =
                    (words.next(), words.next(), words.next(), words.next())
                    && let (Some(addr), Ok(pid)) = (
                        addr.strip_prefix("grpc://"),
                        pid.trim_end_matches(')').parse::<u32>(),
                    )
                {
                    procs.push((name.to_string(), addr.to_string(), pid));
                }
            }
            Ok(None)
        })
        .await;
        let procs = match ready {
            Ok(Ok(Some(procs))) if procs.len() == 3 => procs,
            other => {
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                bail!("herdctl up did not become ready ({other:?}); its stderr:\n{err}");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(HerdctlUp {
            child,
            procs,
            stderr,
            printed,
        })
    }

    /// The grpc URL of child `name` ("gateway", "engine-0", "engine-1").
    pub fn url(&self, name: &str) -> String {
        self.procs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, addr, _)| format!("http://{addr}"))
            .unwrap_or_default()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|(_, _, pid)| *pid).collect()
    }

    /// Sends `signal` ("TERM", "INT", "HUP") to herdctl up itself.
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("herdctl up already reaped")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Whether process `pid` still runs (a zombie waiting for its parent to
/// reap it has exited).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod port_race_tests {
    use super::retry_port_race;

    /// Only the port race is retried, at most twice more.
    #[tokio::test]
    async fn only_a_taken_port_is_tried_again() {
        let mut calls = 0;
        let r = retry_port_race(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    anyhow::bail!("cannot listen: Address already in use (os error 98)")
                }
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: anyhow::Result<()> = retry_port_race(|| {
            calls += 1;
            async { anyhow::bail!("Address already in use") }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: anyhow::Result<()> = retry_port_race(|| {
            calls += 1;
            async { anyhow::bail!("bad config") }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
