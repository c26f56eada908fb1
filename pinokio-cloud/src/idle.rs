//! Idle shutdown: an optional policy that stops the apps after N minutes
//! without use, and, when the user enabled it with their own API key on a
//! platform that allows it (Vast.ai, RunPod), stops the instance, so a
//! forgotten GPU stops costing money. Off unless enabled.
//!
//! "Without use" means none of the [`ActivitySource`]s reported anything
//! for N minutes:
//! - [`RunningScripts`]: a script of the engine is executing steps (an
//!   install, a start that has not reached its web UI). Idle daemons (a
//!   server that started) do not count.
//! - [`AppConnections`]: established TCP connections to the ports the
//!   engine's shells listen on (`/proc/net/tcp{,6}`): someone uses a web UI.
//!   A connection counts while it is younger than the idle limit, so a tab
//!   left open or a tunnel's kept-alive connection cannot hold the machine
//!   forever.
//! - [`Touches`]: the engine's [`Activity`] handle, which frontends touch on
//!   every user request (the HTTP API).
//!
//! What is stopped, and the instance API, sit behind traits
//! ([`AppControl`], [`InstanceApi`]); time behind [`Clock`], so tests use a
//! [`FakeClock`] and fake APIs. [`VastApi`] (`PUT /api/v0/instances/{id}/`
//! with `{"state": "stopped"}`) and [`RunPodApi`] (`POST /v1/pods/{id}/stop`)
//! send the key as a bearer token; their base URLs are overridable
//! (`PINOKIO_VAST_API_URL`, `PINOKIO_RUNPOD_API_URL`).
//!
//! Configuration ([`IdlePolicy::from_env`], [`start_from_env`]):
//! `PINOKIO_IDLE_MINUTES=N` turns the policy on; `PINOKIO_IDLE_STOP_INSTANCE=1`
//! also stops the instance, with `VAST_API_KEY` + `CONTAINER_ID` on Vast.ai
//! or `RUNPOD_API_KEY` + `RUNPOD_POD_ID` on RunPod. Everything the watcher
//! decides is reported as an [`IdleNotice`] through a callback before it
//! acts; this module never prints.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pinokio_core::activity::Activity;
use pinokio_core::Engine;

use crate::platform::Platform;
use crate::source::HostSource;

/// Why the idle policy cannot be set up, or an instance API call failed.
#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error("PINOKIO_IDLE_MINUTES must be a whole number of minutes above 0, not {0:?}")]
    BadMinutes(String),
    #[error("{platform} API: {message}")]
    Api {
        platform: &'static str,
        /// The HTTP status, when the API answered.
        status: Option<u16>,
        message: String,
    },
    #[error("cannot start the idle watcher: {0}")]
    Thread(std::io::Error),
}

// ---------------------------------------------------------------------------
// time
// ---------------------------------------------------------------------------

/// Monotonic time, injectable.
pub trait Clock: Send + Sync {
    /// Time since a fixed point of this clock.
    fn now(&self) -> Duration;
    /// Wait a little (the watcher's loop sleeps in short slices).
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves only when told ([`FakeClock::advance`]); its
/// `sleep` waits a millisecond of real time so a watcher thread yields.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Mutex<Duration>,
}

impl FakeClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep(&self, _d: Duration) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// activity
// ---------------------------------------------------------------------------

/// Something that shows the machine is in use.
pub trait ActivitySource: Send + Sync {
    /// Why the machine counts as used now (work in progress, or activity
    /// since the last look), if it does.
    fn active(&self) -> Option<String>;
}

/// Scripts of the engine that are executing steps (installs, starts);
/// idle daemons do not count.
pub struct RunningScripts {
    engine: Engine,
}

impl RunningScripts {
    pub fn new(engine: &Engine) -> Self {
        RunningScripts {
            engine: engine.clone(),
        }
    }
}

impl ActivitySource for RunningScripts {
    fn active(&self) -> Option<String> {
        let api = self.engine.home().api();
        let busy: Vec<String> = self
            .engine
            .memory()
            .running()
            .into_iter()
            .filter(|(_, r)| !r.daemon_idle)
            .map(|(id, _)| {
                Path::new(&id)
                    .strip_prefix(&api)
                    .map(|p| p.display().to_string())
                    .unwrap_or(id)
            })
            .collect();
        if busy.is_empty() {
            None
        } else {
            Some(format!("running: {}", busy.join(", ")))
        }
    }
}

/// Established connections to the ports the engine's shells listen on.
/// A connection counts while it is younger than `max_age` (by the
/// watcher's clock), so one held open forever (a forgotten tab, a
/// tunnel's keep-alive) stops counting.
pub struct AppConnections {
    ports: Box<dyn Fn() -> HashSet<u16> + Send + Sync>,
    proc_root: PathBuf,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    first_seen: Mutex<HashMap<(SocketAddr, SocketAddr), Duration>>,
}

impl AppConnections {
    /// Connections to the listening ports of `engine`'s running shells.
    pub fn new(engine: &Engine, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        let engine = engine.clone();
        Self::with_ports(
            Box::new(move || shell_ports(&engine, Path::new("/proc"))),
            Path::new("/proc"),
            clock,
            max_age,
        )
    }

    /// Connections to `ports()` read from `{proc_root}/net` (tests).
    pub fn with_ports(
        ports: Box<dyn Fn() -> HashSet<u16> + Send + Sync>,
        proc_root: &Path,
        clock: Arc<dyn Clock>,
        max_age: Duration,
    ) -> Self {
        AppConnections {
            ports,
            proc_root: proc_root.to_path_buf(),
            clock,
            max_age,
            first_seen: Mutex::new(HashMap::new()),
        }
    }
}

/// The TCP ports the running shells of `engine` (and their descendants)
/// listen on.
pub fn shell_ports(engine: &Engine, proc_root: &Path) -> HashSet<u16> {
    engine
        .processes()
        .list()
        .into_iter()
        .filter(|p| p.running)
        .flat_map(|p| crate::ports::listening_ports_in(proc_root, p.pid))
        .map(|a| a.port())
        .collect()
}

impl ActivitySource for AppConnections {
    fn active(&self) -> Option<String> {
        let ports = (self.ports)();
        let now = self.clock.now();
        let conns = crate::ports::established_to(&self.proc_root, &ports);
        let mut seen = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
        let live: HashSet<_> = conns.iter().copied().collect();
        seen.retain(|k, _| live.contains(k));
        let mut fresh: Vec<u16> = Vec::new();
        for c in conns {
            let first = *seen.entry(c).or_insert(now);
            if now.saturating_sub(first) < self.max_age {
                fresh.push(c.0.port());
            }
        }
        if fresh.is_empty() {
            return None;
        }
        fresh.sort_unstable();
        let n = fresh.len();
        fresh.dedup();
        let ports: Vec<String> = fresh.iter().map(u16::to_string).collect();
        Some(format!("{n} connection(s) to port {}", ports.join(", ")))
    }
}

/// Touches of an [`Activity`] handle since the last look.
pub struct Touches {
    activity: Activity,
    seen: Mutex<u64>,
}

impl Touches {
    pub fn new(activity: Activity) -> Self {
        let seen = activity.touches();
        Touches {
            activity,
            seen: Mutex::new(seen),
        }
    }
}

impl ActivitySource for Touches {
    fn active(&self) -> Option<String> {
        let now = self.activity.touches();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now == *seen {
            return None;
        }
        let n = now.wrapping_sub(*seen);
        *seen = now;
        Some(format!("{n} request(s)"))
    }
}

// ---------------------------------------------------------------------------
// what gets stopped
// ---------------------------------------------------------------------------

/// The apps the policy stops.
pub trait AppControl: Send + Sync {
    /// Names of the apps with running scripts or shells.
    fn running_apps(&self) -> Vec<String>;
    /// Stop every app (scripts, shells, exposures); the names stopped.
    fn stop_apps(&self) -> Vec<String>;
}

/// The apps of an engine.
pub struct EngineApps {
    engine: Engine,
}

impl EngineApps {
    pub fn new(engine: &Engine) -> Self {
        EngineApps {
            engine: engine.clone(),
        }
    }
}

impl AppControl for EngineApps {
    fn running_apps(&self) -> Vec<String> {
        let running: Vec<String> = self.engine.memory().running().into_keys().collect();
        let shells: Vec<String> = self
            .engine
            .processes()
            .list()
            .into_iter()
            .filter(|p| p.running)
            .map(|p| p.group)
            .collect();
        pinokio_core::apps::installed(&self.engine)
            .into_iter()
            .filter(|(_, dir)| {
                let prefix = format!("{}/", dir.display());
                running
                    .iter()
                    .chain(shells.iter())
                    .any(|id| id.starts_with(&prefix))
            })
            .map(|(name, _)| name)
            .collect()
    }

    fn stop_apps(&self) -> Vec<String> {
        let names = self.running_apps();
        for name in &names {
            let dir = self.engine.home().api().join(name);
            pinokio_core::control::stop_app(&self.engine, &dir);
            self.engine.exposer().unexpose(name);
            if let Some(store) = self.engine.state() {
                let _ = store.set_app_state(
                    name,
                    pinokio_core::state::AppState::Stopped,
                    Some("stopped by the idle policy"),
                );
            }
        }
        // scripts outside the apps folder
        self.engine.stop_all();
        names
    }
}

/// Stops the machine this runs on, through its platform's API.
pub trait InstanceApi: Send + Sync {
    /// `Vast.ai`, `RunPod`.
    fn platform(&self) -> &'static str;
    fn instance_id(&self) -> &str;
    fn stop_instance(&self) -> Result<(), IdleError>;
}

/// Vast.ai: `PUT {base}/instances/{id}/` with `{"state": "stopped"}`.
#[derive(Debug, Clone)]
pub struct VastApi {
    pub base: String,
    key: String,
    pub id: String,
}

impl VastApi {
    pub const DEFAULT_BASE: &'static str = "https://console.vast.ai/api/v0";
    pub fn new(key: &str, id: &str, base: Option<&str>) -> Self {
        VastApi {
            base: base
                .unwrap_or(Self::DEFAULT_BASE)
                .trim_end_matches('/')
                .into(),
            key: key.into(),
            id: id.into(),
        }
    }
}

/// RunPod: `POST {base}/pods/{id}/stop` (REST API v1).
#[derive(Debug, Clone)]
pub struct RunPodApi {
    pub base: String,
    key: String,
    pub id: String,
}

impl RunPodApi {
    pub const DEFAULT_BASE: &'static str = "https://rest.runpod.io/v1";
    pub fn new(key: &str, id: &str, base: Option<&str>) -> Self {
        RunPodApi {
            base: base
                .unwrap_or(Self::DEFAULT_BASE)
                .trim_end_matches('/')
                .into(),
            key: key.into(),
            id: id.into(),
        }
    }
}

/// Send one API request; 2xx is success. The key never appears in errors.
fn api_call(
    platform: &'static str,
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> Result<String, IdleError> {
    let err = |status: Option<u16>, message: String| IdleError::Api {
        platform,
        status,
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| err(None, format!("{url}: {e}")))?;
    let client = pinokio_core::methods::net::client_for(&parsed, Some(Duration::from_secs(30)))
        .map_err(|e| err(None, e))?;
    let mut req = client
        .request(method, parsed)
        .header(reqwest::header::AUTHORIZATION, format!("Bearer {key}"))
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    let resp = req
        .send()
        .map_err(|e| err(None, pinokio_core::methods::net::error_chain(&e)))?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if !status.is_success() {
        let detail: String = text.trim().chars().take(300).collect();
        return Err(err(
            Some(status.as_u16()),
            format!(
                "HTTP {status}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        ));
    }
    Ok(text)
}

impl InstanceApi for VastApi {
    fn platform(&self) -> &'static str {
        "Vast.ai"
    }
    fn instance_id(&self) -> &str {
        &self.id
    }
    fn stop_instance(&self) -> Result<(), IdleError> {
        let url = format!("{}/instances/{}/", self.base, self.id);
        let text = api_call(
            self.platform(),
            reqwest::Method::PUT,
            &url,
            &self.key,
            Some(serde_json::json!({"state": "stopped"})),
        )?;
        // {"success": false, "msg": ...} comes with a 200 sometimes
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v.get("success") == Some(&serde_json::Value::Bool(false)) {
                return Err(IdleError::Api {
                    platform: self.platform(),
                    status: Some(200),
                    message: v
                        .get("msg")
                        .or_else(|| v.get("error"))
                        .and_then(|m| m.as_str())
                        .unwrap_or("the API refused to stop the instance")
                        .to_string(),
                });
            }
        }
        Ok(())
    }
}

impl InstanceApi for RunPodApi {
    fn platform(&self) -> &'static str {
        "RunPod"
    }
    fn instance_id(&self) -> &str {
        &self.id
    }
    fn stop_instance(&self) -> Result<(), IdleError> {
        let url = format!("{}/pods/{}/stop", self.base, self.id);
        api_call(
            self.platform(),
            reqwest::Method::POST,
            &url,
            &self.key,
            None,
        )
        .map(|_| ())
    }
}

/// What the policy does about the instance.
pub enum InstancePlan {
    /// Not asked for (`PINOKIO_IDLE_STOP_INSTANCE` unset).
    Off,
    /// Asked for, but impossible here (why).
    Unavailable(String),
    /// Stop it through this API.
    Api(Box<dyn InstanceApi>),
}

impl fmt::Debug for InstancePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstancePlan::Off => f.write_str("Off"),
            InstancePlan::Unavailable(w) => write!(f, "Unavailable({w:?})"),
            InstancePlan::Api(a) => write!(f, "Api({} {})", a.platform(), a.instance_id()),
        }
    }
}

/// The instance API for `platform`, from the platform's variables: the
/// user's key (`VAST_API_KEY`, `RUNPOD_API_KEY`) and the instance id
/// (`CONTAINER_ID`, `RUNPOD_POD_ID`); base URLs from
/// `PINOKIO_VAST_API_URL` / `PINOKIO_RUNPOD_API_URL`.
pub fn instance_plan(platform: Platform, host: &dyn HostSource) -> InstancePlan {
    let var = |k: &str| {
        host.var(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let need = |what: &str| {
        InstancePlan::Unavailable(format!(
            "{what} is not set, so the instance cannot be stopped ({} API)",
            platform.name()
        ))
    };
    match platform {
        Platform::Vast => {
            let Some(key) = var("VAST_API_KEY") else {
                return need("VAST_API_KEY (your Vast.ai API key)");
            };
            let Some(id) = var("CONTAINER_ID") else {
                return need("CONTAINER_ID (the instance id Vast.ai sets)");
            };
            InstancePlan::Api(Box::new(VastApi::new(
                &key,
                &id,
                var("PINOKIO_VAST_API_URL").as_deref(),
            )))
        }
        Platform::RunPod => {
            let Some(key) = var("RUNPOD_API_KEY") else {
                return need("RUNPOD_API_KEY (your RunPod API key)");
            };
            let Some(id) = var("RUNPOD_POD_ID") else {
                return need("RUNPOD_POD_ID (the pod id RunPod sets)");
            };
            InstancePlan::Api(Box::new(RunPodApi::new(
                &key,
                &id,
                var("PINOKIO_RUNPOD_API_URL").as_deref(),
            )))
        }
        other => InstancePlan::Unavailable(format!(
            "stopping the instance is supported on Vast.ai and RunPod only (this is {})",
            other.name()
        )),
    }
}

/// [`InstancePlan::Off`] unless the policy asks to stop the instance; then
/// [`instance_plan`].
pub fn instance_plan_for(
    policy: &IdlePolicy,
    platform: Platform,
    host: &dyn HostSource,
) -> InstancePlan {
    if policy.stop_instance {
        instance_plan(platform, host)
    } else {
        InstancePlan::Off
    }
}

// ---------------------------------------------------------------------------
// policy and watcher
// ---------------------------------------------------------------------------

/// When to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Time without use before the apps stop.
    pub idle_after: Duration,
    /// Also stop the instance (where the platform and a key allow).
    pub stop_instance: bool,
    /// How often activity is looked at.
    pub check_every: Duration,
    /// How long before acting a warning goes out (`0`: none).
    pub warn_before: Duration,
}

impl IdlePolicy {
    pub fn new(idle_after: Duration) -> Self {
        IdlePolicy {
            idle_after,
            stop_instance: false,
            check_every: Duration::from_secs(30)
                .min(idle_after / 4)
                .max(Duration::from_millis(10)),
            warn_before: Duration::from_secs(60).min(idle_after / 2),
        }
    }

    /// `PINOKIO_IDLE_MINUTES` (unset, empty or `0`: off) and
    /// `PINOKIO_IDLE_STOP_INSTANCE` (`1`/`true`/`yes`).
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<IdlePolicy>, IdleError> {
        let Some(raw) = get("PINOKIO_IDLE_MINUTES").map(|v| v.trim().to_string()) else {
            return Ok(None);
        };
        if raw.is_empty() || raw == "0" {
            return Ok(None);
        }
        let minutes: u64 = raw
            .parse()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| IdleError::BadMinutes(raw.clone()))?;
        let mut p = IdlePolicy::new(Duration::from_secs(minutes * 60));
        p.stop_instance = get("PINOKIO_IDLE_STOP_INSTANCE")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false);
        Ok(Some(p))
    }
}

/// What the watcher reports (before it acts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleNotice {
    /// The policy is on.
    Watching {
        idle_after: Duration,
        /// `Some((platform, id))` when the instance will be stopped too.
        instance: Option<(String, String)>,
        /// Why the instance will not be stopped, when that was asked for.
        instance_unavailable: Option<String>,
    },
    /// Acting soon unless the machine is used.
    Soon {
        idle: Duration,
        left: Duration,
    },
    /// Used again after a warning.
    Resumed {
        reason: String,
    },
    /// About to stop these apps.
    StoppingApps {
        idle: Duration,
        apps: Vec<String>,
    },
    /// About to stop the instance.
    StoppingInstance {
        platform: String,
        id: String,
    },
    InstanceStopped {
        platform: String,
        id: String,
    },
    InstanceStopFailed {
        platform: String,
        id: String,
        error: String,
    },
}

fn mins(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else if s == 0 && !d.is_zero() {
        format!("{} ms", d.as_millis())
    } else {
        format!("{s} s")
    }
}

impl fmt::Display for IdleNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleNotice::Watching {
                idle_after,
                instance,
                instance_unavailable,
            } => {
                write!(
                    f,
                    "idle shutdown on: apps stop after {} without use (no web UI connection, API request or running install)",
                    mins(*idle_after)
                )?;
                if let Some((p, id)) = instance {
                    write!(f, "; then the {p} instance {id} is stopped")?;
                }
                if let Some(why) = instance_unavailable {
                    write!(f, "; the instance is not stopped: {why}")?;
                }
                Ok(())
            }
            IdleNotice::Soon { idle, left } => write!(
                f,
                "idle for {}: apps stop in {} unless the machine is used",
                mins(*idle),
                mins(*left)
            ),
            IdleNotice::Resumed { reason } => {
                write!(f, "in use again ({reason}): idle shutdown postponed")
            }
            IdleNotice::StoppingApps { idle, apps } => write!(
                f,
                "idle for {}: stopping {}",
                mins(*idle),
                if apps.is_empty() {
                    "the engine's scripts".to_string()
                } else {
                    apps.join(", ")
                }
            ),
            IdleNotice::StoppingInstance { platform, id } => {
                write!(f, "stopping the {platform} instance {id} (idle)")
            }
            IdleNotice::InstanceStopped { platform, id } => {
                write!(f, "the {platform} instance {id} is stopping")
            }
            IdleNotice::InstanceStopFailed {
                platform,
                id,
                error,
            } => write!(
                f,
                "could not stop the {platform} instance {id}: {error}; it keeps running (and costing)"
            ),
        }
    }
}

/// Receives notices (never blocks for long).
pub type Notify = Arc<dyn Fn(&IdleNotice) + Send + Sync>;

/// The idle state machine; [`IdleWatch::check`] looks once, [`spawn`]
/// looks every `check_every`.
pub struct IdleWatch {
    policy: IdlePolicy,
    clock: Arc<dyn Clock>,
    sources: Vec<Box<dyn ActivitySource>>,
    apps: Arc<dyn AppControl>,
    instance: InstancePlan,
    notify: Notify,
    last_active: Duration,
    warned: bool,
}

impl IdleWatch {
    pub fn new(
        policy: IdlePolicy,
        clock: Arc<dyn Clock>,
        sources: Vec<Box<dyn ActivitySource>>,
        apps: Arc<dyn AppControl>,
        instance: InstancePlan,
        notify: Notify,
    ) -> Self {
        let last_active = clock.now();
        IdleWatch {
            policy,
            clock,
            sources,
            apps,
            instance,
            notify,
            last_active,
            warned: false,
        }
    }

    /// The watch of an engine: its running scripts, connections to its
    /// shells' ports and its activity handle.
    pub fn for_engine(
        engine: &Engine,
        policy: IdlePolicy,
        clock: Arc<dyn Clock>,
        instance: InstancePlan,
        notify: Notify,
    ) -> Self {
        let sources: Vec<Box<dyn ActivitySource>> = vec![
            Box::new(RunningScripts::new(engine)),
            Box::new(AppConnections::new(
                engine,
                clock.clone(),
                policy.idle_after,
            )),
            Box::new(Touches::new(engine.activity().clone())),
        ];
        Self::new(
            policy,
            clock,
            sources,
            Arc::new(EngineApps::new(engine)),
            instance,
            notify,
        )
    }

    /// The notice that says the policy is on (what [`spawn`] sends first).
    pub fn watching_notice(&self) -> IdleNotice {
        let (instance, instance_unavailable) = match &self.instance {
            InstancePlan::Off => (None, None),
            InstancePlan::Unavailable(why) => (None, Some(why.clone())),
            InstancePlan::Api(a) => (
                Some((a.platform().to_string(), a.instance_id().to_string())),
                None,
            ),
        };
        IdleNotice::Watching {
            idle_after: self.policy.idle_after,
            instance,
            instance_unavailable,
        }
    }

    /// How long nothing happened, as of the last check.
    pub fn idle_for(&self) -> Duration {
        self.clock.now().saturating_sub(self.last_active)
    }

    fn say(&self, n: IdleNotice, out: &mut Vec<IdleNotice>) {
        (self.notify)(&n);
        out.push(n);
    }

    /// Look once: reset the timer on activity, warn, or act. Returns the
    /// notices sent.
    pub fn check(&mut self) -> Vec<IdleNotice> {
        let mut out = Vec::new();
        let now = self.clock.now();
        // every source is asked (each keeps its own "since last look")
        let reasons: Vec<String> = self.sources.iter().filter_map(|s| s.active()).collect();
        if let Some(reason) = reasons.into_iter().next() {
            if self.warned {
                self.say(IdleNotice::Resumed { reason }, &mut out);
            }
            self.last_active = now;
            self.warned = false;
            return out;
        }
        let idle = now.saturating_sub(self.last_active);
        if idle >= self.policy.idle_after {
            let apps = self.apps.running_apps();
            let instance = matches!(self.instance, InstancePlan::Api(_));
            if !apps.is_empty() || instance {
                self.say(
                    IdleNotice::StoppingApps {
                        idle,
                        apps: apps.clone(),
                    },
                    &mut out,
                );
                self.apps.stop_apps();
            }
            if let InstancePlan::Api(api) = &self.instance {
                let (platform, id) = (api.platform().to_string(), api.instance_id().to_string());
                self.say(
                    IdleNotice::StoppingInstance {
                        platform: platform.clone(),
                        id: id.clone(),
                    },
                    &mut out,
                );
                let n = match api.stop_instance() {
                    Ok(()) => IdleNotice::InstanceStopped { platform, id },
                    Err(e) => IdleNotice::InstanceStopFailed {
                        platform,
                        id,
                        error: e.to_string(),
                    },
                };
                self.say(n, &mut out);
            }
            // start over: the next attempt is another full period away
            self.last_active = now;
            self.warned = false;
        } else if !self.warned
            && !self.policy.warn_before.is_zero()
            && idle + self.policy.warn_before >= self.policy.idle_after
        {
            let apps = self.apps.running_apps();
            if !apps.is_empty() || matches!(self.instance, InstancePlan::Api(_)) {
                self.say(
                    IdleNotice::Soon {
                        idle,
                        left: self.policy.idle_after - idle,
                    },
                    &mut out,
                );
                self.warned = true;
            }
        }
        out
    }
}

/// A running watcher; dropping it (or [`IdleHandle::stop`]) ends the
/// thread.
pub struct IdleHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IdleHandle {
    pub fn stop(mut self) {
        self.halt();
    }
    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IdleHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Run `watch` on a thread: the `Watching` notice, then a check every
/// `check_every` of its clock.
pub fn spawn(mut watch: IdleWatch) -> Result<IdleHandle, IdleError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("idle-watch".into())
        .spawn(move || {
            let first = watch.watching_notice();
            (watch.notify)(&first);
            let slice = Duration::from_millis(100).min(watch.policy.check_every);
            let mut next = watch.clock.now() + watch.policy.check_every;
            while !flag.load(Ordering::SeqCst) {
                if watch.clock.now() >= next {
                    watch.check();
                    next = watch.clock.now() + watch.policy.check_every;
                }
                watch.clock.sleep(slice);
            }
        })
        .map_err(IdleError::Thread)?;
    Ok(IdleHandle {
        stop,
        thread: Some(thread),
    })
}

/// Start the idle watcher for `engine` when the environment enables it
/// (`PINOKIO_IDLE_MINUTES`, see the module docs); `Ok(None)` when it is
/// off. Keep the handle: dropping it stops the watcher.
pub fn start_from_env(engine: &Engine, notify: Notify) -> Result<Option<IdleHandle>, IdleError> {
    let get = |k: &str| std::env::var(k).ok();
    let Some(policy) = IdlePolicy::from_env(&get)? else {
        return Ok(None);
    };
    let host = crate::source::RealHost;
    let instance = instance_plan_for(&policy, crate::platform::detect(&host).platform, &host);
    let watch = IdleWatch::for_engine(
        engine,
        policy,
        Arc::new(SystemClock::default()),
        instance,
        notify,
    );
    spawn(watch).map(Some)
}
