//! `herdctl up`: a complete local herd in one command.
//!
//! Writes the local configs (from deploy/local/, compiled in) to
//! `.herd/local/`, starts the gateway on the paper venue and two engines as
//! separate processes (this same binary, hidden subcommands) talking real
//! gRPC over loopback, waits for each to say it listens, then shows a live
//! status screen until Ctrl-C, when it stops them with SIGTERM.
//!
//! `up` owns its children: they run in a process group of their own (a
//! terminal's Ctrl-C reaches only `up`, which stops them in order), SIGTERM,
//! SIGINT and SIGHUP to `up` stop every child gracefully (SIGKILL after
//! [`SHUTDOWN_DEADLINE`]), and each child asks the kernel for SIGTERM when
//! `up` dies ([`child_of_up`]), so a kill -9 of `up` leaves nothing running.
//!
//! One herd per directory: `DIR/up.lock` is held while `up` runs, and a
//! second `up` there is refused before it changes anything. Each start
//! keeps the previous run's logs as `*.log.1`. The paper account
//! (`DIR/data/paper.json`) persists beside the engines' journals, so a
//! restart continues the same account; `--fresh` removes both first.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use herd_proto::engine as epb;
use herd_proto::gateway as gpb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client;
use crate::render;

const GATEWAY_TEMPLATE: &str = include_str!("../../../deploy/local/gateway.toml");
const ENGINE_TEMPLATES: [&str; 2] = [
    include_str!("../../../deploy/local/engine-0.toml"),
    include_str!("../../../deploy/local/engine-1.toml"),
];
const ADMIN_TOKEN: &str = "herd-local-admin";
const CONTROL_TOKEN: &str = "herd-local-control";
const ENGINE_TOKEN_0: &str = "herd-local-engine-0";
/// How long the children get to drain after SIGTERM before SIGKILL (their
/// own `shutdown_timeout_ms` in deploy/local/ is 12 s).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);
/// Set in every child's environment: the pid of the `herdctl up` that owns it.
const PARENT_ENV: &str = "HERD_UP_PARENT_PID";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Gateway port; engines listen on the next ports after base 50061.
    #[arg(long, default_value_t = 50051)]
    gateway_port: u16,
    /// First engine's control port (the second gets the next one).
    #[arg(long, default_value_t = 50061)]
    engine_port: u16,
    /// The gateway's admin HTTP port (/metrics); the engines' admin ports
    /// (/metrics and the dashboard) are the next ones. 0 = any free port.
    #[arg(long, default_value_t = 9090)]
    http_port: u16,
    /// Where configs, logs and the engines' SQLite stores go.
    #[arg(long, default_value = ".herd")]
    dir: PathBuf,
    /// Print the status once every few seconds instead of a live screen.
    #[arg(long)]
    plain: bool,
    /// Start, wait until everything is up, print where it listens and stop
    /// again (a smoke test of the whole herd).
    #[arg(long)]
    check: bool,
    /// Start from nothing: remove the local herd's state first (the
    /// engines' journals and the paper account in DIR/data), saying what
    /// goes. Without it a restart continues where the last run stopped.
    #[arg(long)]
    fresh: bool,
}

/// Where `up` keeps the local herd's files by default.
pub fn local_dir() -> PathBuf {
    PathBuf::from(".herd/local")
}

struct Proc {
    name: String,
    child: Child,
    addr: String,
}

/// The port `n` places after `base`; 0 stays 0 ("any free port").
fn nth_port(base: u16, n: u16) -> u16 {
    if base == 0 { 0 } else { base.saturating_add(n) }
}

/// The local herd's ports.
#[derive(Debug, Clone, Copy)]
struct Ports {
    gateway: u16,
    engine: u16,
    http: u16,
}

/// Fills a config template. Port 0 means "any free port" for every service.
fn fill(template: &str, ports: Ports, data_dir: &Path) -> String {
    template
        .replace("{gateway_port}", &ports.gateway.to_string())
        .replace("{engine_0_port}", &ports.engine.to_string())
        .replace("{engine_1_port}", &nth_port(ports.engine, 1).to_string())
        .replace("{gateway_http_port}", &ports.http.to_string())
        .replace("{engine_0_http_port}", &nth_port(ports.http, 1).to_string())
        .replace("{engine_1_http_port}", &nth_port(ports.http, 2).to_string())
        .replace("{data_dir}", &data_dir.display().to_string())
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Called first by the hidden `gateway` and `engine` subcommands: when
/// `herdctl up` started this process ([`PARENT_ENV`]), ask the kernel for
/// SIGTERM when it dies (a graceful drain, as if `up` had stopped us), and
/// exit at once if it already died before the request was in place.
pub fn child_of_up() -> anyhow::Result<()> {
    let Some(parent) = std::env::var(PARENT_ENV).ok() else {
        return Ok(());
    };
    let parent: i32 = parent
        .parse()
        .with_context(|| format!("{PARENT_ENV}={parent:?} is not a pid"))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("cannot set the parent-death signal")?;
    let now = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if now != parent {
        anyhow::bail!("herdctl up (pid {parent}) that started this process is gone");
    }
    Ok(())
}

/// Where a child goes: `group` is the process group to join (None: a new
/// group led by the child itself).
async fn spawn(
    name: &str,
    sub: &str,
    config: &Path,
    log: &Path,
    group: Option<u32>,
) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("cannot find the herdctl binary")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let group = group.and_then(|g| i32::try_from(g).ok()).unwrap_or(0);
    let mut child = Command::new(exe)
        .arg(sub)
        .arg("--config")
        .arg(config)
        .env(PARENT_ENV, std::process::id().to_string())
        .process_group(group)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some((_, addr)) = line.split_once(" listening on ") {
                return Ok::<_, std::io::Error>(Some(addr.trim().to_string()));
            }
        }
        Ok(None)
    })
    .await;
    let addr = match ready {
        Ok(Ok(Some(addr))) => addr,
        _ => anyhow::bail!(
            "{name} did not start; its log is {} (is the port taken?)",
            log.display()
        ),
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        name: name.to_string(),
        child,
        addr,
    })
}

/// The lock file that marks a directory's herd as running.
const LOCK_FILE: &str = "up.lock";
/// The children's logs, kept for one run after it ended (`NAME.1`).
const LOGS: [&str; 3] = ["gateway.log", "engine-0.log", "engine-1.log"];

/// Takes `DIR/up.lock`: an exclusive advisory lock held for as long as the
/// returned file is open (the kernel drops it when `up` exits, however it
/// exits), with `up`'s pid inside. Another `up` in the same directory is
/// refused, naming that pid, before it touches anything.
fn lock_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => String::new(),
            pid => format!(" (pid {pid})"),
        };
        anyhow::bail!(
            "a herd is already running in {}: another herdctl up{holder} holds {}; \
             stop it first, or pass --dir for a second herd",
            dir.display(),
            path.display()
        );
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(file)
}

/// `--fresh`: removes everything in `data_dir` (the engines' SQLite
/// journals, the paper account), one line per entry said first.
fn wipe_state(data_dir: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot list {}", data_dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", data_dir.display()))?;
    entries.sort();
    if entries.is_empty() {
        println!(
            "--fresh: no local state in {} to remove",
            data_dir.display()
        );
        return Ok(());
    }
    println!(
        "--fresh: removing the local herd's state (engine journals, paper account) in {}:",
        data_dir.display()
    );
    for path in &entries {
        println!("  removing {}", path.display());
    }
    for path in &entries {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Keeps the previous run's logs (a crash's among them): `gateway.log`
/// becomes `gateway.log.1`, replacing the run before that.
fn rotate_logs(log_dir: &Path) -> anyhow::Result<()> {
    for name in LOGS {
        let log = log_dir.join(name);
        let previous = log_dir.join(format!("{name}.1"));
        match std::fs::rename(&log, &previous) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot keep {} as {}", log.display(), previous.display())
                });
            }
        }
    }
    Ok(())
}

/// Sends `signal` to a child that has not been reaped yet.
fn signal(p: &Proc, signal: rustix::process::Signal) {
    if let Some(pid) = p
        .child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH: it exited on its own meanwhile; waiting tells how.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Stops the herd: SIGTERM to the engines, and once they have drained (they
/// still journal what the gateway streams) to the gateway; SIGKILL to what
/// is still running at [`SHUTDOWN_DEADLINE`]. True when every child exited 0.
async fn terminate(procs: &mut [Proc]) -> bool {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    let mut clean = true;
    let (engines, gateway): (Vec<&mut Proc>, Vec<&mut Proc>) =
        procs.iter_mut().partition(|p| p.name != "gateway");
    for phase in [engines, gateway] {
        for p in &phase {
            signal(p, rustix::process::Signal::TERM);
        }
        for p in phase {
            match tokio::time::timeout_at(deadline, p.child.wait()).await {
                Ok(Ok(status)) => {
                    clean &= status.success();
                    eprintln!("{} stopped ({status})", p.name);
                }
                Ok(Err(e)) => {
                    clean = false;
                    eprintln!("{} could not be waited for: {e}", p.name);
                }
                Err(_) => {
                    clean = false;
                    let _ = p.child.kill().await;
                    eprintln!(
                        "{} killed: still running {} s after SIGTERM",
                        p.name,
                        SHUTDOWN_DEADLINE.as_secs()
                    );
                }
            }
        }
    }
    clean
}

/// Resolves on the first SIGTERM, SIGINT or SIGHUP with the signal's name.
/// Registered before any child starts, so none of them is missed.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        }
    })
}

/// Stops the herd after `signal` and says how that went.
async fn stop_after(signal: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    eprintln!("\n{signal}: stopping the herd...");
    if terminate(procs).await {
        Ok(())
    } else {
        anyhow::bail!("not every process of the herd stopped cleanly (see above)")
    }
}

/// One screen of the herd's status.
async fn screen(procs: &[Proc], gateway_url: &str) -> String {
    let mut out = String::new();
    let mut rows = Vec::new();
    for p in procs.iter().filter(|p| p.name.starts_with("engine")) {
        let url = format!("http://{}", p.addr);
        let status = async {
            let mut c = client::engine(&url, CONTROL_TOKEN).await?;
            Ok::<_, anyhow::Error>(c.get_status(epb::GetStatusRequest {}).await?.into_inner())
        }
        .await;
        match status {
            Ok(s) => {
                let regime = s
                    .regime
                    .as_ref()
                    .map(|r| {
                        if r.ready {
                            r.regime.clone()
                        } else {
                            "not ready".into()
                        }
                    })
                    .unwrap_or_default();
                let strategies = s
                    .strategies
                    .iter()
                    .map(|st| format!("{}:{}", st.name, st.state))
                    .collect::<Vec<_>>()
                    .join(" ");
                rows.push(vec![
                    s.engine_id.clone(),
                    p.addr.clone(),
                    render::status_json(&s)["mode"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string(),
                    if s.gateway_connected { "yes" } else { "NO" }.into(),
                    s.price.clone(),
                    regime,
                    s.open_orders.len().to_string(),
                    s.fills_journaled.to_string(),
                    strategies,
                ]);
            }
            Err(e) => rows.push(vec![
                p.name.clone(),
                p.addr.clone(),
                format!("unreachable: {e}"),
            ]),
        }
    }
    out.push_str(&render::table(
        &[
            "engine",
            "control",
            "mode",
            "gw",
            "price",
            "regime",
            "open",
            "fills",
            "strategies",
        ],
        &rows,
    ));
    let engines = async {
        let mut c = client::admin(gateway_url, ADMIN_TOKEN).await?;
        Ok::<_, anyhow::Error>(
            c.list_engines(gpb::ListEnginesRequest {})
                .await?
                .into_inner(),
        )
    }
    .await;
    out.push('\n');
    match engines {
        Ok(l) => out.push_str(&render::engines_table(&l)),
        Err(e) => out.push_str(&format!("gateway unreachable: {e}\n")),
    }
    out
}

/// What `up` prints once the herd is up: where each process listens (gRPC,
/// metrics, dashboards), the logs, and the local tokens with the files they
/// are in. `procs` is (name, address, pid), the gateway first, then the
/// engines.
fn banner(procs: &[(&str, &str, u32)], http_port: u16, log_dir: &Path, conf_dir: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("Herd is up (paper venue, no keys, no network).\n");
    for (name, addr, pid) in procs {
        let _ = writeln!(out, "  {name:<9} grpc://{addr} (pid {pid})");
    }
    if http_port != 0 {
        let _ = writeln!(
            out,
            "  metrics   http://127.0.0.1:{}/metrics (gateway), :{}/metrics, :{}/metrics (engines)",
            http_port,
            nth_port(http_port, 1),
            nth_port(http_port, 2)
        );
        let _ = writeln!(
            out,
            "  dashboard http://127.0.0.1:{}/ (e0), http://127.0.0.1:{}/ (e1)",
            nth_port(http_port, 1),
            nth_port(http_port, 2)
        );
        let _ = writeln!(
            out,
            "  herd      http://127.0.0.1:{http_port}/#token={ADMIN_TOKEN} (every engine, PnL, fills)"
        );
    }
    let _ = writeln!(
        out,
        "  logs      {} (the previous run's as *.log.1)",
        log_dir.display()
    );
    let _ = writeln!(
        out,
        "  tokens    control {CONTROL_TOKEN} ({}), admin {ADMIN_TOKEN} ({}), engine e0 {ENGINE_TOKEN_0} ({})",
        conf_dir.join("control.token").display(),
        conf_dir.join("admin.token").display(),
        conf_dir.join("engine-0.token").display(),
    );
    if let Some((_, engine, _)) = procs.get(1) {
        let _ = writeln!(
            out,
            "  try       grpcurl -plaintext -H 'authorization: Bearer {CONTROL_TOKEN}' {engine} herd.engine.v1.Engine/GetStatus"
        );
    }
    out
}

/// One redraw of the live screen: clear, then the banner (so addresses and
/// token files stay in view), then the status tables.
fn live_frame(banner: &str, tables: &str) -> String {
    format!("\x1b[2J\x1b[H{banner}\n{tables}\n(Ctrl-C stops the herd)\n")
}

/// Waits until every engine follows the gateway's event stream.
async fn wait_connected(procs: &[Proc]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for p in procs.iter().filter(|p| p.name.starts_with("engine")) {
        let mut c = client::engine(&format!("http://{}", p.addr), CONTROL_TOKEN).await?;
        loop {
            let s = c.get_status(epb::GetStatusRequest {}).await?.into_inner();
            if s.gateway_connected && !s.price.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{} did not connect to the gateway within 30 s", p.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let stop = stop_signals()?;
    tokio::pin!(stop);
    // Before anything under the directory changes: a herd already running
    // there keeps its configs and logs.
    let _lock = lock_dir(&args.dir)?;
    let conf_dir = args.dir.join("local");
    let log_dir = args.dir.join("logs");
    let data_dir = args.dir.join("data");
    for d in [&conf_dir, &log_dir, &data_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if args.fresh {
        wipe_state(&data_dir)?;
    }
    rotate_logs(&log_dir)?;
    let gateway_cfg = conf_dir.join("gateway.toml");
    let ports = Ports {
        gateway: args.gateway_port,
        engine: args.engine_port,
        http: args.http_port,
    };
    std::fs::write(&gateway_cfg, fill(GATEWAY_TEMPLATE, ports, &data_dir))?;
    // Tokens where herdctl's other commands find them.
    std::fs::write(conf_dir.join("control.token"), CONTROL_TOKEN)?;
    std::fs::write(conf_dir.join("admin.token"), ADMIN_TOKEN)?;
    std::fs::write(conf_dir.join("engine-0.token"), ENGINE_TOKEN_0)?;

    let mut procs = Vec::new();
    let started = {
        let start = start_herd(
            &mut procs,
            &gateway_cfg,
            &conf_dir,
            &log_dir,
            &data_dir,
            ports,
        );
        tokio::select! {
            r = start => r.map(|()| None),
            signal = &mut stop => Ok(Some(signal)),
        }
    };
    match started {
        Ok(None) => {}
        Ok(Some(signal)) => return stop_after(signal, &mut procs).await,
        Err(e) => {
            terminate(&mut procs).await;
            return Err(e);
        }
    }
    let gateway_url = format!("http://{}", procs[0].addr);
    let procs_shown: Vec<(&str, &str, u32)> = procs
        .iter()
        .map(|p| (p.name.as_str(), p.addr.as_str(), p.child.id().unwrap_or(0)))
        .collect();
    let header = banner(&procs_shown, args.http_port, &log_dir, &conf_dir);
    print!("{header}");
    if args.check {
        let connected = tokio::select! {
            r = wait_connected(&procs) => r,
            signal = &mut stop => return stop_after(signal, &mut procs).await,
        };
        println!("{}", screen(&procs, &gateway_url).await);
        let clean = terminate(&mut procs).await;
        connected?;
        if !clean {
            anyhow::bail!("not every process of the herd stopped cleanly (see above)");
        }
        return Ok(());
    }
    println!("Ctrl-C stops the herd.\n");
    let live = std::io::stdout().is_terminal() && !args.plain;
    let mut tick = tokio::time::interval(Duration::from_secs(if live { 1 } else { 5 }));
    loop {
        tokio::select! {
            signal = &mut stop => return stop_after(signal, &mut procs).await,
            _ = tick.tick() => {
                for p in procs.iter_mut() {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        eprintln!("{} exited ({status}); see {}", p.name, log_dir.display());
                        terminate(&mut procs).await;
                        anyhow::bail!("the herd lost a process");
                    }
                }
                let s = screen(&procs, &gateway_url).await;
                if live {
                    print!("{}", live_frame(&header, &s));
                } else {
                    println!("{s}");
                }
            }
        }
    }
}

/// Starts the gateway, then the engines (told the port the gateway got), in
/// one process group led by the gateway. Started children are in `procs`
/// even when a later one fails, for the caller to stop.
async fn start_herd(
    procs: &mut Vec<Proc>,
    gateway_cfg: &Path,
    conf_dir: &Path,
    log_dir: &Path,
    data_dir: &Path,
    ports: Ports,
) -> anyhow::Result<()> {
    let gateway = spawn(
        "gateway",
        "gateway",
        gateway_cfg,
        &log_dir.join("gateway.log"),
        None,
    )
    .await?;
    let group = gateway.child.id();
    // Engines learn the port the gateway actually got.
    let gateway_port = port_of(&gateway.addr);
    procs.push(gateway);
    for (i, t) in ENGINE_TEMPLATES.iter().enumerate() {
        let cfg = conf_dir.join(format!("engine-{i}.toml"));
        let ports = Ports {
            gateway: gateway_port,
            ..ports
        };
        std::fs::write(&cfg, fill(t, ports, data_dir))
            .with_context(|| format!("cannot write {}", cfg.display()))?;
        procs.push(
            spawn(
                &format!("engine-{i}"),
                "engine",
                &cfg,
                &log_dir.join(format!("engine-{i}.log")),
                group,
            )
            .await?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_frame_keeps_addresses_and_token_files_above_the_table() {
        let procs = [
            ("gateway", "127.0.0.1:50051", 11),
            ("engine-0", "127.0.0.1:50061", 12),
            ("engine-1", "127.0.0.1:50062", 13),
        ];
        let header = banner(
            &procs,
            9090,
            Path::new(".herd/logs"),
            Path::new(".herd/local"),
        );
        let table = "engine  control  mode\ne0      127.0.0.1:50061  RUNNING\n";
        let frame = live_frame(&header, table);
        // The clear comes first, so nothing above survives a redraw but
        // what the frame itself holds.
        assert!(frame.starts_with("\x1b[2J\x1b[H"), "{frame:?}");
        let header_at = frame.find("Herd is up").unwrap();
        let table_at = frame.find(table).unwrap();
        assert!(header_at < table_at, "{frame}");
        for want in [
            "  gateway   grpc://127.0.0.1:50051 (pid 11)",
            "  engine-0  grpc://127.0.0.1:50061 (pid 12)",
            "  engine-1  grpc://127.0.0.1:50062 (pid 13)",
            "http://127.0.0.1:9090/metrics (gateway)",
            "http://127.0.0.1:9091/ (e0), http://127.0.0.1:9092/ (e1)",
            "http://127.0.0.1:9090/#token=herd-local-admin",
            ".herd/logs",
            "(.herd/local/control.token)",
            "(.herd/local/admin.token)",
            "(.herd/local/engine-0.token)",
            "127.0.0.1:50061 herd.engine.v1.Engine/GetStatus",
        ] {
            let at = frame
                .find(want)
                .unwrap_or_else(|| panic!("{want:?} not in {frame}"));
            assert!(at < table_at, "{want:?} below the table: {frame}");
        }
        assert!(frame.ends_with("(Ctrl-C stops the herd)\n"), "{frame:?}");
    }
}
