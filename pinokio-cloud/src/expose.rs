//! Exposure: a URL the user's browser can open for an app's local URL.
//!
//! - [`platform_url`]: the platform's own proxy where it has one (RunPod,
//!   Vast mapped ports, Lightning, Paperspace, SageMaker Studio Lab's
//!   Jupyter proxy path). Colab has none the engine can use: the notebook
//!   asks the kernel proxy.
//! - [`Provider`]: tunnel programs (`cloudflared` quick tunnels, `ngrok`
//!   with an auth token, `lt` from localtunnel), found on PATH or in
//!   `HOME/bin`, started in their own process group; the public URL is read
//!   from their output.
//! - [`TunnelManager`]: the engine's [`Exposer`]. It starts tunnels, waits
//!   for their URL, health-checks them, restarts them with backoff when
//!   they die (quick tunnels get a new URL), and records them in the state
//!   store's `tunnels` table.
//!
//! Policy: on a cloud platform an app is exposed through the platform's
//! proxy by default. A public tunnel is opt-in per app (`pinokio expose`,
//! or `PINOKIO_SHARE_CLOUDFLARE=true` in the app's ENVIRONMENT, as desktop
//! Pinokio reads it), because most web UIs have no login of their own; the
//! exposure's note says so. `PINOKIO_SHARE_PASSCODE` becomes ngrok basic
//! auth (cloudflared quick tunnels have no passcode; the note says that).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pinokio_core::expose::{Exposer, Exposure};
use pinokio_core::state::{NewTunnel, StateStore, TunnelState};

use crate::platform::Platform;
use crate::source::HostSource;

/// A URL the platform serves for a local port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformUrl {
    pub url: String,
    pub note: Option<String>,
}

/// The platform proxy URL for `port`, when the platform has one.
pub fn platform_url(platform: Platform, host: &dyn HostSource, port: u16) -> Option<PlatformUrl> {
    let var = |k: &str| host.var(k).filter(|v| !v.trim().is_empty());
    match platform {
        Platform::RunPod => {
            let id = var("RUNPOD_POD_ID")?;
            Some(PlatformUrl {
                url: format!("https://{id}-{port}.proxy.runpod.net"),
                note: Some(format!(
                    "port {port} must be listed in the pod's \"Expose HTTP Ports\""
                )),
            })
        }
        Platform::Vast => {
            let mapped = var(&format!("VAST_TCP_PORT_{port}"))?;
            let ip = var("PUBLIC_IPADDR")?;
            Some(PlatformUrl {
                url: format!("http://{ip}:{mapped}"),
                note: Some(format!(
                    "the instance maps port {port} to {mapped} on {ip}"
                )),
            })
        }
        Platform::Lightning => {
            let id = var("LIGHTNING_CLOUD_SPACE_ID")?;
            Some(PlatformUrl {
                url: format!("https://{port}-{id}.cloudspaces.litng.ai"),
                note: Some(format!(
                    "open port {port} in the Studio's Port plugin first"
                )),
            })
        }
        Platform::Paperspace => {
            let fqdn = var("PAPERSPACE_FQDN")?;
            match port {
                6006 => Some(PlatformUrl {
                    url: format!("https://tensorboard-{fqdn}/"),
                    note: None,
                }),
                8888 => Some(PlatformUrl {
                    url: format!("https://{fqdn}/"),
                    note: None,
                }),
                _ => None,
            }
        }
        Platform::StudioLab => Some(PlatformUrl {
            url: format!("/studiolab/default/jupyter/proxy/{port}/"),
            note: Some(
                "a path on your Studio Lab address: append it to https://<id>.studio.<region>.sagemaker.aws \
                 as shown in the notebook's browser tab (apps with absolute links may break under a path)"
                    .into(),
            ),
        }),
        _ => None,
    }
}

/// A tunnel program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cloudflare,
    Ngrok,
    Localtunnel,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Cloudflare, Provider::Ngrok, Provider::Localtunnel];

    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "cloudflare" | "cloudflared" => Some(Provider::Cloudflare),
            "ngrok" => Some(Provider::Ngrok),
            "localtunnel" | "lt" => Some(Provider::Localtunnel),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Provider::Cloudflare => "cloudflare",
            Provider::Ngrok => "ngrok",
            Provider::Localtunnel => "localtunnel",
        }
    }

    /// The program looked up on PATH and in `HOME/bin`.
    pub fn program(self) -> &'static str {
        match self {
            Provider::Cloudflare => "cloudflared",
            Provider::Ngrok => "ngrok",
            Provider::Localtunnel => "lt",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Provider::Cloudflare => {
                "install it with `pinokio tools install cloudflared` (or `pinokio expose APP --via cloudflare --install`), or put cloudflared (https://github.com/cloudflare/cloudflared/releases) into PATH or HOME/bin"
            }
            Provider::Ngrok => {
                "install it with `pinokio tools install ngrok` (or `pinokio expose APP --via ngrok --install`), or put ngrok (https://ngrok.com/download) into PATH or HOME/bin"
            }
            Provider::Localtunnel => "install localtunnel: npm install -g localtunnel",
        }
    }

    /// Arguments for exposing `local_url` (whose port is `port`).
    pub fn args(self, local_url: &str, port: u16, passcode: Option<&str>) -> Vec<String> {
        match self {
            Provider::Cloudflare => vec![
                "tunnel".into(),
                "--no-autoupdate".into(),
                "--url".into(),
                local_url.into(),
            ],
            Provider::Ngrok => {
                let mut a: Vec<String> = vec![
                    "http".into(),
                    local_url.into(),
                    "--log".into(),
                    "stdout".into(),
                    "--log-format".into(),
                    "logfmt".into(),
                ];
                if let Some(p) = passcode {
                    a.push("--basic-auth".into());
                    a.push(format!("pinokio:{p}"));
                }
                a
            }
            Provider::Localtunnel => vec!["--port".into(), port.to_string()],
        }
    }

    /// The public URL in one line of the program's output.
    pub fn find_url(self, line: &str) -> Option<String> {
        match self {
            // the URL pattern library knows cloudflared's banner
            Provider::Cloudflare => crate::urls::detect_line(line)
                .filter(|d| d.framework == "cloudflared")
                .map(|d| d.printed),
            Provider::Ngrok => {
                // logfmt: lvl=info msg="started tunnel" ... url=https://x.ngrok-free.app
                let i = line.find(" url=https://")?;
                let url = line[i + 5..].split_whitespace().next()?;
                Some(url.trim_matches('"').to_string())
            }
            Provider::Localtunnel => {
                let i = line.find("your url is: ")?;
                let url = line[i + 13..].split_whitespace().next()?;
                url.starts_with("https://").then(|| url.to_string())
            }
        }
    }
}

/// Tuning (tests shrink the times).
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// How long a tunnel may take to print its URL.
    pub url_timeout: Duration,
    /// Restarts after the tunnel process died, before giving up.
    pub max_restarts: u32,
    /// First wait before a restart (doubled each time, up to `backoff_max`).
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Health checks of the public URL (`None`: off).
    pub health_interval: Option<Duration>,
    /// Failed checks in a row that restart the tunnel.
    pub health_failures: u32,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        TunnelOptions {
            url_timeout: Duration::from_secs(45),
            max_restarts: 8,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            health_interval: Some(Duration::from_secs(60)),
            health_failures: 3,
        }
    }
}

/// Is a public URL healthy? (an HTTP answer below 500)
pub type HealthCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

fn default_health() -> HealthCheck {
    Arc::new(|url: &str| {
        pinokio_core::methods::net::probe_status(url, Duration::from_secs(15))
            .is_ok_and(|s| s < 500)
    })
}

struct TunnelState_ {
    state: String,
    public_url: Option<String>,
    note: Option<String>,
    pid: Option<u32>,
    row: Option<i64>,
    last_lines: VecDeque<String>,
}

struct Tunnel {
    app: String,
    provider: Provider,
    local_url: String,
    st: Mutex<TunnelState_>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Tunnel {
    fn lock(&self) -> MutexGuard<'_, TunnelState_> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exposure(&self) -> Exposure {
        let st = self.lock();
        Exposure {
            app: self.app.clone(),
            via: self.provider.id().into(),
            local_url: self.local_url.clone(),
            public_url: st.public_url.clone(),
            state: st.state.clone(),
            note: st.note.clone(),
        }
    }
}

struct Inner {
    platform: Platform,
    host: Arc<dyn HostSource>,
    home: PathBuf,
    env: BTreeMap<String, String>,
    store: Option<Arc<StateStore>>,
    opts: TunnelOptions,
    health: HealthCheck,
    tunnels: Mutex<Vec<Arc<Tunnel>>>,
    platform_exposures: Mutex<Vec<Exposure>>,
}

impl Drop for Inner {
    /// Tunnels do not outlive the engine that started them.
    fn drop(&mut self) {
        let all = std::mem::take(&mut *self.tunnels.lock().unwrap_or_else(|p| p.into_inner()));
        for t in all {
            t.stop.store(true, Ordering::SeqCst);
            let pid = t.lock().pid;
            if let Some(pid) = pid {
                kill_group(pid);
            }
        }
    }
}

/// The engine's [`Exposer`]: platform proxies and tunnel processes.
#[derive(Clone)]
pub struct TunnelManager {
    inner: Arc<Inner>,
}

impl TunnelManager {
    /// `env` is where tunnel programs and tokens are looked up (PATH,
    /// `NGROK_AUTHTOKEN`); `home` the Pinokio home (`HOME/bin`, app
    /// ENVIRONMENT files).
    pub fn new(
        platform: Platform,
        host: Arc<dyn HostSource>,
        home: &Path,
        env: BTreeMap<String, String>,
        store: Option<Arc<StateStore>>,
    ) -> Self {
        Self::with_options(
            platform,
            host,
            home,
            env,
            store,
            TunnelOptions::default(),
            None,
        )
    }

    pub fn with_options(
        platform: Platform,
        host: Arc<dyn HostSource>,
        home: &Path,
        env: BTreeMap<String, String>,
        store: Option<Arc<StateStore>>,
        opts: TunnelOptions,
        health: Option<HealthCheck>,
    ) -> Self {
        TunnelManager {
            inner: Arc::new(Inner {
                platform,
                host,
                home: home.to_path_buf(),
                env,
                store,
                opts,
                health: health.unwrap_or_else(default_health),
                tunnels: Mutex::new(Vec::new()),
                platform_exposures: Mutex::new(Vec::new()),
            }),
        }
    }

    fn find_program(&self, p: Provider) -> Option<PathBuf> {
        let path = format!(
            "{}:{}",
            self.inner.home.join("bin").display(),
            self.inner.env.get("PATH").cloned().unwrap_or_default()
        );
        which::which_in(p.program(), Some(path), "/").ok()
    }

    /// The app's ENVIRONMENT values (sharing keys).
    fn app_env(&self, app: &str) -> BTreeMap<String, String> {
        let file = self.inner.home.join("api").join(app).join("ENVIRONMENT");
        pinokio_core::envfile::read_file(&file)
            .map(|pairs| pairs.into_iter().collect())
            .unwrap_or_default()
    }

    fn ngrok_token(&self) -> Option<String> {
        if let Some(t) = self
            .inner
            .env
            .get("NGROK_AUTHTOKEN")
            .filter(|t| !t.is_empty())
        {
            return Some(t.clone());
        }
        let home = self.inner.env.get("HOME").map(PathBuf::from)?;
        for f in [".config/ngrok/ngrok.yml", ".ngrok2/ngrok.yml"] {
            if let Ok(text) = std::fs::read_to_string(home.join(f)) {
                if let Some(t) = text.lines().find_map(|l| {
                    l.trim()
                        .strip_prefix("authtoken:")
                        .map(|v| v.trim().trim_matches('"').to_string())
                }) {
                    return Some(t);
                }
            }
        }
        None
    }

    fn running(&self, app: &str) -> Option<Arc<Tunnel>> {
        self.inner
            .tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|t| t.app == app && !t.stop.load(Ordering::SeqCst))
            .cloned()
    }

    /// Start a tunnel for `app` and wait for its public URL.
    pub fn start_tunnel(
        &self,
        app: &str,
        local_url: &str,
        provider: Provider,
    ) -> Result<Exposure, String> {
        if let Some(t) = self.running(app) {
            if t.provider == provider && t.local_url == local_url {
                return Ok(t.exposure());
            }
            self.stop_tunnels(app);
        }
        let program = self.find_program(provider).ok_or_else(|| {
            format!(
                "{} is not installed: {}",
                provider.program(),
                provider.install_hint()
            )
        })?;
        let port =
            port_of(local_url).ok_or_else(|| format!("{local_url} has no port to expose"))?;
        let app_env = self.app_env(app);
        let passcode = app_env
            .get("PINOKIO_SHARE_PASSCODE")
            .filter(|p| !p.is_empty())
            .cloned();
        let mut env = self.inner.env.clone();
        let mut note =
            "public: anyone with this URL can use the app, which may have no login of its own"
                .to_string();
        match provider {
            Provider::Ngrok => {
                let token = self.ngrok_token().ok_or(
                    "ngrok needs an auth token (ERR_NGROK_4018): set NGROK_AUTHTOKEN or run `ngrok config add-authtoken TOKEN`",
                )?;
                env.insert("NGROK_AUTHTOKEN".into(), token);
                if passcode.is_some() {
                    note =
                        "protected by basic auth: user `pinokio`, the app's PINOKIO_SHARE_PASSCODE"
                            .into();
                }
            }
            Provider::Cloudflare if passcode.is_some() => {
                note.push_str(
                    "; cloudflared quick tunnels cannot ask for a passcode (PINOKIO_SHARE_PASSCODE is ignored: use --via ngrok)",
                );
            }
            Provider::Localtunnel => {
                note.push_str(
                    "; browsers are asked once for the tunnel password, the machine's public IP (https://loca.lt/mytunnelpassword)",
                );
            }
            _ => {}
        }
        let args = provider.args(
            local_url,
            port,
            passcode.as_deref().filter(|_| provider == Provider::Ngrok),
        );
        let tunnel = Arc::new(Tunnel {
            app: app.into(),
            provider,
            local_url: local_url.into(),
            st: Mutex::new(TunnelState_ {
                state: "starting".into(),
                public_url: None,
                note: Some(note),
                pid: None,
                row: None,
                last_lines: VecDeque::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        self.inner
            .tunnels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tunnel.clone());
        // the thread holds what it needs, not the manager (whose drop
        // stops every tunnel)
        let ctx = Ctx {
            opts: self.inner.opts.clone(),
            store: self.inner.store.clone(),
            health: self.inner.health.clone(),
        };
        let t = tunnel.clone();
        std::thread::Builder::new()
            .name(format!("tunnel-{app}"))
            .spawn(move || supervise(&ctx, &t, &program, &args, &env))
            .map_err(|e| format!("cannot start the tunnel thread: {e}"))?;
        // wait for the first URL (or the failure)
        let deadline = Instant::now() + self.inner.opts.url_timeout + Duration::from_secs(1);
        let mut st = tunnel.lock();
        while st.state == "starting" || (st.state == "restarting" && st.public_url.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match tunnel.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        if st.state == "up" {
            drop(st);
            return Ok(tunnel.exposure());
        }
        let out: Vec<String> = st.last_lines.iter().cloned().collect();
        drop(st);
        self.stop_tunnels(app);
        Err(format!(
            "{} did not print a public URL within {} s{}",
            provider.program(),
            self.inner.opts.url_timeout.as_secs(),
            if out.is_empty() {
                String::new()
            } else {
                format!("; its last output:\n  {}", out.join("\n  "))
            }
        ))
    }

    fn stop_tunnels(&self, app: &str) -> Vec<Exposure> {
        let mine: Vec<Arc<Tunnel>> = {
            let mut all = self.inner.tunnels.lock().unwrap_or_else(|p| p.into_inner());
            let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|t| t.app == app);
            *all = rest;
            mine
        };
        let mut out = Vec::new();
        for t in mine {
            t.stop.store(true, Ordering::SeqCst);
            let pid = t.lock().pid;
            if let Some(pid) = pid {
                kill_group(pid);
            }
            {
                let mut st = t.lock();
                st.state = "stopped".into();
                if let (Some(store), Some(row)) = (&self.inner.store, st.row) {
                    let _ = store.set_tunnel(row, TunnelState::Stopped, None);
                }
            }
            t.changed.notify_all();
            out.push(t.exposure());
        }
        out
    }
}

/// The exposer for this machine: its detected platform, the real
/// environment, tunnels recorded in `store`.
pub fn exposer_for(home: &Path, store: Option<Arc<StateStore>>) -> TunnelManager {
    let host = crate::source::RealHost;
    let platform = crate::platform::detect(&host).platform;
    TunnelManager::new(
        platform,
        Arc::new(host),
        home,
        std::env::vars().collect(),
        store,
    )
}

/// The port of `http://host:port/...`.
pub fn port_of(url: &str) -> Option<u16> {
    let rest = url.split("://").nth(1)?;
    let hostport = rest.split('/').next()?;
    let port = hostport.rsplit_once(':')?.1;
    port.parse().ok()
}

fn kill_group(pid: u32) {
    // SAFETY: signalling a process group we started (pgid == pid).
    unsafe {
        libc::killpg(pid as i32, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::killpg(pid as i32, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::killpg(pid as i32, libc::SIGKILL);
    }
}

/// What a tunnel's thread needs.
struct Ctx {
    opts: TunnelOptions,
    store: Option<Arc<StateStore>>,
    health: HealthCheck,
}

/// Run the tunnel process, restart it when it dies, until stopped.
fn supervise(
    inner: &Ctx,
    t: &Tunnel,
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
) {
    let mut restarts = 0u32;
    let mut backoff = inner.opts.backoff;
    loop {
        if t.stop.load(Ordering::SeqCst) {
            return;
        }
        let ended_well = run_once(inner, t, program, args, env);
        if t.stop.load(Ordering::SeqCst) {
            return;
        }
        restarts += 1;
        if restarts > inner.opts.max_restarts {
            let mut st = t.lock();
            st.state = "failed".into();
            if let (Some(store), Some(row)) = (&inner.store, st.row) {
                let _ = store.set_tunnel(row, TunnelState::Failed, None);
            }
            drop(st);
            t.changed.notify_all();
            return;
        }
        {
            let mut st = t.lock();
            st.state = "restarting".into();
            if let (Some(store), Some(row)) = (&inner.store, st.row.take()) {
                let _ = store.set_tunnel(row, TunnelState::Failed, None);
            }
        }
        t.changed.notify_all();
        if ended_well {
            backoff = inner.opts.backoff;
        }
        let t0 = Instant::now();
        while t0.elapsed() < backoff && !t.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(inner.opts.backoff_max);
    }
}

/// One life of the tunnel process; `true` if it had come up.
fn run_once(
    inner: &Ctx,
    t: &Tunnel,
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let mut st = t.lock();
            st.last_lines
                .push_back(format!("cannot start {}: {e}", program.display()));
            drop(st);
            t.changed.notify_all();
            return false;
        }
    };
    let pid = child.id();
    t.lock().pid = Some(pid);
    let (tx, rx) = channel::<String>();
    for out in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let started = Instant::now();
    let mut up = false;
    let mut last_check = Instant::now();
    let mut failures = 0u32;
    loop {
        if t.stop.load(Ordering::SeqCst) {
            kill_group(pid);
            let _ = child.wait();
            return up;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let mut st = t.lock();
                st.last_lines.push_back(line.clone());
                if st.last_lines.len() > 8 {
                    st.last_lines.pop_front();
                }
                if !up {
                    if let Some(url) = t.provider.find_url(&line) {
                        up = true;
                        st.state = "up".into();
                        st.public_url = Some(url.clone());
                        if let Some(store) = &inner.store {
                            st.row = store
                                .add_tunnel(&NewTunnel {
                                    app_id: Some(t.app.clone()),
                                    kind: t.provider.id().into(),
                                    local_url: t.local_url.clone(),
                                    public_url: Some(url),
                                    pid: Some(pid),
                                    state: TunnelState::Up,
                                })
                                .ok();
                        }
                        drop(st);
                        t.changed.notify_all();
                        last_check = Instant::now();
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // both pipes closed: the process is ending
                let _ = child.wait();
                return up;
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return up;
        }
        if !up && started.elapsed() > inner.opts.url_timeout {
            kill_group(pid);
            let _ = child.wait();
            return false;
        }
        if let (true, Some(every)) = (up, inner.opts.health_interval) {
            if last_check.elapsed() >= every {
                last_check = Instant::now();
                let url = t.lock().public_url.clone().unwrap_or_default();
                if (inner.health)(&url) {
                    failures = 0;
                } else {
                    failures += 1;
                    if failures >= inner.opts.health_failures {
                        // a tunnel that no longer answers is restarted
                        kill_group(pid);
                        let _ = child.wait();
                        return up;
                    }
                }
            }
        }
    }
}

impl Exposer for TunnelManager {
    fn expose(&self, app: &str, local_url: &str, via: Option<&str>) -> Result<Exposure, String> {
        let port =
            port_of(local_url).ok_or_else(|| format!("{local_url} has no port to expose"))?;
        let platform = || {
            platform_url(self.inner.platform, self.inner.host.as_ref(), port).map(|p| {
                let e = Exposure {
                    app: app.into(),
                    via: "platform".into(),
                    local_url: local_url.into(),
                    public_url: Some(p.url),
                    state: "up".into(),
                    note: p.note,
                };
                let mut all = self
                    .inner
                    .platform_exposures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                all.retain(|x| x.app != app);
                all.push(e.clone());
                e
            })
        };
        let first_tunnel = || -> Result<Exposure, String> {
            let mut tried = Vec::new();
            for p in Provider::ALL {
                if self.find_program(p).is_none() {
                    tried.push(format!("{} ({})", p.program(), p.install_hint()));
                    continue;
                }
                if p == Provider::Ngrok && self.ngrok_token().is_none() {
                    tried.push("ngrok (no NGROK_AUTHTOKEN)".into());
                    continue;
                }
                return self.start_tunnel(app, local_url, p);
            }
            Err(format!(
                "no tunnel program is available: {}",
                tried.join("; ")
            ))
        };
        match via {
            Some("platform") => platform().ok_or_else(|| {
                format!(
                    "{} has no proxy for port {port}: use --via cloudflare, ngrok or localtunnel",
                    self.inner.platform.name()
                )
            }),
            Some("auto") => match platform() {
                Some(e) => Ok(e),
                None => first_tunnel(),
            },
            Some(other) => {
                let p = Provider::parse(other).ok_or_else(|| {
                    format!("unknown exposure {other:?} (platform, cloudflare, ngrok, localtunnel)")
                })?;
                self.start_tunnel(app, local_url, p)
            }
            None => {
                if let Some(e) = platform() {
                    return Ok(e);
                }
                let env = self.app_env(app);
                if env.get("PINOKIO_SHARE_CLOUDFLARE").map(|v| v.trim()) == Some("true") {
                    return self.start_tunnel(app, local_url, Provider::Cloudflare);
                }
                Err(format!(
                    "{} has no proxy the engine can use; a public tunnel is opt-in: `pinokio expose {app} --via cloudflare` (anyone with the URL can use the app)",
                    self.inner.platform.name()
                ))
            }
        }
    }

    fn unexpose(&self, app: &str) -> Vec<Exposure> {
        let mut out: Vec<Exposure> = {
            let mut all = self
                .inner
                .platform_exposures
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|e| e.app == app);
            *all = rest;
            mine
        };
        out.extend(self.stop_tunnels(app));
        out
    }

    fn exposures(&self) -> Vec<Exposure> {
        let mut out: Vec<Exposure> = self
            .inner
            .platform_exposures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.extend(
            self.inner
                .tunnels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|t| t.exposure()),
        );
        out
    }

    fn expose_by_default(&self) -> bool {
        self.inner.platform.is_cloud()
    }
}
