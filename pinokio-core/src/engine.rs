//! The engine and its runner (section 3 of the semantics note): start a
//! script, render each step just before it runs, evaluate `when`, call the
//! method, follow `next`/`jump`, and end the run as upstream does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::envfile;
use crate::events::{now_ms, Event, EventKind, EventSink, NullSink, RunStatus};
use crate::facts::{Facts, FactsProbe, HostProbe};
use crate::home::{HomeError, PinokioHome};
use crate::js::{JsFacts, JsRuntime, KernelHost, StickyValue};
use crate::loader::{self, LoadError, Script, ScriptKind};
use crate::memory::Memory;
use crate::methods::{JumpTarget, Lookup, MethodCx, MethodError, Registry};
use crate::process::{OutputSink, ProcessManager, ProcessRecord};
use crate::template::{truthy, Renderer};

/// Names in template scope, in upstream's layer order.
pub const SCOPE_NAMES: &[&str] = &[
    "_",
    "os",
    "path",
    "input",
    "args",
    "local",
    "global",
    "key",
    "current",
    "next",
    "uri",
    "cwd",
    "dirname",
    "name",
    "self",
    "port",
    "exists",
    "running",
    "ready",
    "script",
    "pip",
    "kernel",
    "platform",
    "arch",
    "gpu",
    "gpus",
    "gpu_model",
    "gpu_driver",
    "gpu_target",
    "vram",
    "ram",
    "env",
    "envs",
    "which",
    "proxy",
];

/// Errors that stop the engine from doing what was asked (not step errors).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("JavaScript runtime: {0}")]
    Js(#[from] crate::js::JsError),
    #[error("{path}: menu error: {message}")]
    Menu { path: PathBuf, message: String },
}

/// Answers `input` forms (a frontend, or nothing).
pub trait InputAnswers: Send + Sync {
    /// Values for the form's fields, if someone answered.
    fn answer(&self, script: &str, form: &Value) -> Option<Map<String, Value>>;
}

/// Nobody answers.
pub struct NoAnswers;
impl InputAnswers for NoAnswers {
    fn answer(&self, _script: &str, _form: &Value) -> Option<Map<String, Value>> {
        None
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Time limit for one template expression.
    pub template_limit: Duration,
    /// Time limit for loading a JS script or evaluating a menu.
    pub load_limit: Duration,
    /// First port handed out by `port`/`kernel.port()`.
    pub port_start: u16,
    /// How long a stopped shell tree gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Fail `shell.run` steps whose command exits non-zero (pinokiod ignores
    /// exit codes; this is off by default).
    pub strict_exit_codes: bool,
    /// How long `apps::up` waits for a detected web UI URL when a running
    /// daemon script set no `local.url` (only with URL watchers; see
    /// [`crate::urlwatch`]).
    pub url_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            template_limit: crate::js::DEFAULT_TEMPLATE_LIMIT,
            load_limit: crate::js::DEFAULT_LOAD_LIMIT,
            port_start: 42003,
            kill_grace: Duration::from_secs(10),
            strict_exit_codes: false,
            url_wait: Duration::from_secs(60),
        }
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    home: PinokioHome,
    facts: Option<Facts>,
    probe: Box<dyn FactsProbe>,
    sink: Arc<dyn EventSink>,
    answers: Arc<dyn InputAnswers>,
    options: EngineOptions,
    env: Option<BTreeMap<String, String>>,
    registry: Option<Registry>,
    state: Option<Arc<crate::state::StateStore>>,
    supervisor: Option<crate::process::Supervisor>,
    exposer: Arc<dyn crate::expose::Exposer>,
    url_watchers: Option<crate::urlwatch::UrlWatchers>,
    activity: crate::activity::Activity,
}

impl EngineBuilder {
    /// Detect web UI URLs in every shell's output and listening ports
    /// (`pinokio-cloud`'s `urls::shell_watchers()`); default: none.
    pub fn url_watchers(mut self, w: Arc<dyn crate::urlwatch::UrlWatcherFactory>) -> Self {
        self.url_watchers = Some(crate::urlwatch::UrlWatchers(w));
        self
    }
    /// Share this activity handle (frontends touch it on user requests;
    /// idle policies read it); default: a fresh one.
    pub fn activity(mut self, a: crate::activity::Activity) -> Self {
        self.activity = a;
        self
    }
    /// How apps are made reachable from outside (platform proxies,
    /// tunnels); default: none.
    pub fn exposer(mut self, e: Arc<dyn crate::expose::Exposer>) -> Self {
        self.exposer = e;
        self
    }
    /// Run shells under supervisor processes so they outlive this engine
    /// and a later engine can re-adopt them ([`Engine::readopt`]).
    pub fn supervisor(mut self, s: crate::process::Supervisor) -> Self {
        self.supervisor = Some(s);
        self
    }
    /// Record runs and shells in this state store.
    pub fn state(mut self, s: Arc<crate::state::StateStore>) -> Self {
        self.state = Some(s);
        self
    }
    /// Use fixed facts instead of probing.
    pub fn facts(mut self, f: Facts) -> Self {
        self.facts = Some(f);
        self
    }
    /// Probe facts with this probe.
    pub fn probe(mut self, p: impl FactsProbe + 'static) -> Self {
        self.probe = Box::new(p);
        self
    }
    pub fn sink(mut self, s: Arc<dyn EventSink>) -> Self {
        self.sink = s;
        self
    }
    pub fn answers(mut self, a: Arc<dyn InputAnswers>) -> Self {
        self.answers = a;
        self
    }
    pub fn options(mut self, o: EngineOptions) -> Self {
        self.options = o;
        self
    }
    /// The process environment scripts see (default: this process's).
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }
    pub fn registry(mut self, r: Registry) -> Self {
        self.registry = Some(r);
        self
    }
    /// Create the home layout and build the engine.
    pub fn build(self) -> Result<Engine, EngineError> {
        self.home.ensure()?;
        let facts = self.facts.unwrap_or_else(|| self.probe.probe());
        let env = self.env.unwrap_or_else(|| std::env::vars().collect());
        let memory = Arc::new(Memory::default());
        let urls = Arc::new(crate::urlwatch::DetectedUrls::default());
        let has_watchers = self.url_watchers.is_some();
        let processes = ProcessManager::with_options(
            self.home.logs().join("shell.log"),
            Arc::new(ShellOutput {
                sink: self.sink.clone(),
                state: self.state.clone(),
                urls: urls.clone(),
                memory: memory.clone(),
            }),
            crate::process::ManagerOptions {
                supervisor: self.supervisor,
                url_watchers: self.url_watchers,
                ..Default::default()
            },
        );
        Ok(Engine {
            inner: Arc::new(Inner {
                processes,
                state: self.state,
                home: self.home,
                facts,
                registry: self.registry.unwrap_or_else(Registry::standard),
                exposer: self.exposer,
                memory,
                urls,
                has_watchers,
                activity: self.activity,
                proxied: Mutex::new(Vec::new()),
                sink: self.sink,
                answers: self.answers,
                options: self.options,
                base_env: env,
                queues: Mutex::new(HashMap::new()),
                next_port: AtomicU64::new((std::process::id() as u64 * 7) % 500),
            }),
        })
    }
}

struct Inner {
    processes: ProcessManager,
    state: Option<Arc<crate::state::StateStore>>,
    home: PinokioHome,
    facts: Facts,
    registry: Registry,
    exposer: Arc<dyn crate::expose::Exposer>,
    memory: Arc<Memory>,
    /// URLs the shells' watchers found.
    urls: Arc<crate::urlwatch::DetectedUrls>,
    has_watchers: bool,
    activity: crate::activity::Activity,
    /// Exposures asked for by `proxy.start`: (script id, app, local URL).
    proxied: Mutex<Vec<(String, String, String)>>,
    sink: Arc<dyn EventSink>,
    answers: Arc<dyn InputAnswers>,
    options: EngineOptions,
    base_env: BTreeMap<String, String>,
    queues: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    next_port: AtomicU64,
}

/// The engine: shared state plus the runner. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A request to start a script.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// `~/api/app/start.js`, an absolute path, a path relative to `HOME/api`
    /// (or to `base`), or a git URI.
    pub uri: String,
    /// Parameters: `args` and the first `input` (`None`: `{}`).
    pub input: Option<Value>,
    /// Base folder for a relative `uri` (default `HOME/api`).
    pub base: Option<PathBuf>,
    /// Which key of the script to run (default `run`).
    pub action: Option<String>,
}

impl RunRequest {
    pub fn new(uri: impl Into<String>) -> Self {
        RunRequest {
            uri: uri.into(),
            input: None,
            base: None,
            action: None,
        }
    }
    pub fn input(mut self, v: Value) -> Self {
        self.input = Some(v);
        self
    }
}

/// A failed step (or a script that could not start).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunError {
    pub script: PathBuf,
    pub step: Option<usize>,
    pub method: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.script.display())?;
        if let Some(s) = self.step {
            write!(f, ": step {s}")?;
        }
        if let Some(m) = &self.method {
            write!(f, " ({m})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub script: PathBuf,
    pub status: RunStatus,
    /// The last step's result (`None`: undefined).
    pub result: Option<Value>,
    pub error: Option<RunError>,
    /// Step indexes in the order they were reached (skipped ones included).
    pub visited: Vec<usize>,
}

impl RunOutcome {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status != RunStatus::Error
    }
}

/// Per-run context handed to methods.
pub struct RunContext {
    /// Script id (the absolute path).
    pub id: String,
    pub path: PathBuf,
    /// The script's folder (templates' `cwd` and `dirname`).
    pub cwd: PathBuf,
    /// The uri as given.
    pub uri: String,
    pub args: Option<Value>,
    pub depth: usize,
    pub stop: Arc<AtomicBool>,
    /// The step list being run (for `jump` id lookup).
    pub steps: Vec<Value>,
    pub kind: ScriptKind,
    /// `HOME/api/<app>` when the script lives in an app.
    pub app_root: Option<PathBuf>,
    /// The run's row in the state store, when there is one.
    pub run_id: Option<i64>,
}

static STICKY_TOKENS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The runs executing on this thread (innermost last), so JavaScript
    /// `console` output is attributed to the right script.
    static CURRENT_RUN: std::cell::RefCell<Vec<(String, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}
fn new_token() -> u64 {
    STICKY_TOKENS.fetch_add(1, Ordering::Relaxed)
}

/// Forwards shell output to the event sink, attributed to the script and step.
struct ShellOutput {
    sink: Arc<dyn EventSink>,
    state: Option<Arc<crate::state::StateStore>>,
    urls: Arc<crate::urlwatch::DetectedUrls>,
    memory: Arc<Memory>,
}

impl OutputSink for ShellOutput {
    fn output(&self, rec: &ProcessRecord, step: Option<usize>, depth: usize, raw: &str) {
        self.sink.emit(&Event {
            script: rec.group.clone(),
            depth,
            time_ms: now_ms(),
            kind: EventKind::Output {
                index: step,
                text: raw.to_string(),
            },
        });
    }
    fn exited(&self, rec: &ProcessRecord, _step: Option<usize>, _depth: usize, code: Option<i32>) {
        // a server that exited no longer serves its URL
        self.urls.forget_shell(&rec.shell_id);
        if let Some(s) = &self.state {
            let _ = s.process_exited(&rec.shell_id, code);
        }
    }
    fn url_found(
        &self,
        rec: &ProcessRecord,
        step: Option<usize>,
        depth: usize,
        found: &crate::urlwatch::FoundUrl,
    ) {
        if !self.urls.add(&rec.group, &rec.shell_id, found) {
            return;
        }
        self.sink.emit(&Event {
            script: rec.group.clone(),
            depth,
            time_ms: now_ms(),
            kind: EventKind::UrlDetected {
                index: step,
                shell_id: rec.shell_id.clone(),
                url: found.url.clone(),
                framework: found.framework.clone(),
                public: found.public,
            },
        });
    }
    fn poll_ports(&self, rec: &ProcessRecord) -> bool {
        self.memory.is_daemon_idle(&rec.group)
    }
}

/// Where a step sits, for its template scope.
struct StepPlace<'a> {
    index: usize,
    total: usize,
    uri: &'a str,
    cwd: &'a Path,
    name: Option<&'a str>,
}

/// Marks the run executing on this thread until dropped.
struct CurrentRun;
impl CurrentRun {
    fn enter(id: String, depth: usize) -> CurrentRun {
        CURRENT_RUN.with(|c| c.borrow_mut().push((id, depth)));
        CurrentRun
    }
}
impl Drop for CurrentRun {
    fn drop(&mut self) {
        CURRENT_RUN.with(|c| c.borrow_mut().pop());
    }
}

/// `self` of a JSON script, re-read when the file changes.
struct SelfTracker {
    stamp: Option<(std::time::SystemTime, u64)>,
    value: Value,
    token: u64,
}

impl SelfTracker {
    fn refresh(&mut self, path: &Path, kind: ScriptKind) {
        if kind != ScriptKind::Json {
            return;
        }
        let Ok(m) = std::fs::metadata(path) else {
            return;
        };
        let stamp = m.modified().ok().map(|t| (t, m.len()));
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        if let Ok(v) = loader::read_json(path) {
            if v != self.value {
                self.value = v;
                self.token = new_token();
            }
        }
    }
}

impl Engine {
    /// Start building an engine for a home folder.
    pub fn builder(home: PinokioHome) -> EngineBuilder {
        EngineBuilder {
            home,
            facts: None,
            probe: Box::new(HostProbe),
            sink: Arc::new(NullSink),
            answers: Arc::new(NoAnswers),
            options: EngineOptions::default(),
            env: None,
            registry: None,
            state: None,
            supervisor: None,
            exposer: Arc::new(crate::expose::NoExposer),
            url_watchers: None,
            activity: crate::activity::Activity::new(),
        }
    }

    pub fn home(&self) -> &PinokioHome {
        &self.inner.home
    }
    pub fn facts(&self) -> &Facts {
        &self.inner.facts
    }
    pub fn memory(&self) -> &Memory {
        &self.inner.memory
    }
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
    pub fn answers(&self) -> &dyn InputAnswers {
        self.inner.answers.as_ref()
    }
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }
    /// The state store runs and shells are recorded in, if any.
    pub fn state(&self) -> Option<&Arc<crate::state::StateStore>> {
        self.inner.state.as_ref()
    }

    /// The app id (folder name under `HOME/api`) of a script's app.
    pub fn app_id_of(&self, app_root: Option<&Path>) -> Option<String> {
        app_root
            .and_then(|a| a.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }

    /// The process manager that owns every shell.
    pub fn processes(&self) -> &ProcessManager {
        &self.inner.processes
    }

    /// Emit an event for a run.
    pub fn emit(&self, run: &RunContext, kind: EventKind) {
        self.inner.sink.emit(&Event {
            script: run.id.clone(),
            depth: run.depth,
            time_ms: now_ms(),
            kind,
        });
    }

    fn emit_for(&self, script: &str, depth: usize, kind: EventKind) {
        self.inner.sink.emit(&Event {
            script: script.to_string(),
            depth,
            time_ms: now_ms(),
            kind,
        });
    }

    /// A JS runtime bound to this engine.
    pub fn js_runtime(&self) -> Result<JsRuntime, EngineError> {
        let host: Arc<dyn KernelHost> = Arc::new(self.clone());
        let mut js = JsRuntime::new(host, &self.sys_json())?;
        js.set_limits(
            self.inner.options.template_limit,
            self.inner.options.load_limit,
        );
        js.set_facts(&self.js_facts())?;
        Ok(js)
    }

    fn sys_json(&self) -> Value {
        let f = &self.inner.facts;
        let env = &self.inner.base_env;
        json!({
            "platform": f.platform,
            "arch": f.arch,
            "homedir": dirs::home_dir().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into()),
            "tmpdir": std::env::temp_dir().display().to_string(),
            "hostname": std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into()),
            "release": "",
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "cpu_model": "",
            "totalmem": f.ram * 1024 * 1024 * 1024,
            "freemem": 0,
            "username": env.get("USER").cloned().unwrap_or_default(),
            "shell": env.get("SHELL").cloned().unwrap_or_else(|| "/bin/bash".into()),
            "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_else(|_| "/".into()),
            "env": env,
        })
    }

    fn js_facts(&self) -> JsFacts {
        let f = &self.inner.facts;
        JsFacts {
            home: self.inner.home.root().display().to_string(),
            platform: f.platform.clone(),
            arch: f.arch.clone(),
            gpu: f.gpu(),
            gpus: f.gpus_value(),
            gpu_model: f.gpu_model(),
            gpu_driver: f.gpu_driver(),
            gpu_target: f.gpu_target(),
            vram: f.vram(),
            ram: f.ram,
            envs: json!(self.base_env()),
        }
    }

    /// The engine's environment after upstream's filtering of conda
    /// leftovers and `PYTHONPATH`. (`*SSL*`/`*SSH*`/`CUDA*` are kept: see
    /// ARCHITECTURE.md, "Deviations".)
    pub fn base_env(&self) -> BTreeMap<String, String> {
        self.inner
            .base_env
            .iter()
            .filter(|(k, _)| {
                !(k.starts_with("CONDA_PREFIX")
                    || k.starts_with("BLUEFAIRY_")
                    || matches!(
                        k.as_str(),
                        "CONDA_EXE"
                            | "CONDA_PYTHON_EXE"
                            | "CONDA_DEFAULT_ENV"
                            | "CONDA_PROMPT_MODIFIER"
                            | "CONDA_SHLVL"
                            | "CONDA_PS1_BACKUP"
                            | "_CE_M"
                            | "_CE_CONDA"
                            | "PYTHONPATH"
                    ))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `env`/`envs` for a script: engine env + system ENVIRONMENT + the
    /// app's ENVIRONMENT (later wins), `./` values made absolute.
    pub fn env_for(&self, app_root: Option<&Path>) -> BTreeMap<String, String> {
        let mut env = self.base_env();
        let home = self.inner.home.root();
        if let Ok(pairs) = envfile::read_file(&home.join("ENVIRONMENT")) {
            for (k, v) in envfile::resolve(pairs, home) {
                env.insert(k, v);
            }
        }
        if let Some(app) = app_root {
            let file = app_env_file(app);
            if let Ok(pairs) = envfile::read_file(&file) {
                for (k, v) in envfile::resolve(pairs, app) {
                    env.insert(k, v);
                }
            }
        }
        env
    }

    /// A TCP port that is free now, at or above `port_start`.
    pub fn free_port(&self) -> u16 {
        // Each call moves on by one, and engines of different processes
        // start at different offsets, so two apps starting at the same
        // moment are not handed the same "free" port.
        let start = self.inner.options.port_start;
        let offset = (self.inner.next_port.fetch_add(1, Ordering::Relaxed) % 2000) as u16;
        for i in 0..2000u16 {
            let p = start.saturating_add((offset + i) % 2000);
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                return p;
            }
        }
        start
    }

    /// Check a user-started script's `requires` and `pre` (section 1.8-1.9):
    /// report warnings and what was installed, fail with the missing list.
    fn check_requirements(
        &self,
        script: &Script,
        app_root: Option<&Path>,
        id: &str,
    ) -> Result<(), String> {
        if script.body.get("requires").is_none()
            && script.body.get("pre").is_none()
            && !script
                .body
                .get("env")
                .map(|e| e.is_array())
                .unwrap_or(false)
        {
            return Ok(());
        }
        let mut env = self.env_for(app_root);
        let bin = self.inner.home.bin();
        let path = format!(
            "{}:{}",
            env.get("PATH").cloned().unwrap_or_default(),
            bin.display()
        );
        env.insert("PATH".into(), path);
        let find = |name: &str| crate::methods::shell::find_in_path(&env, name);
        let install = |cmd: &str| match cmd {
            "uv" => Some(crate::methods::shell::provide_uv(&bin, &env)),
            other => crate::requires::provide_from_pypi(&bin, &env, other),
        };
        let env_file = app_root.map(app_env_file);
        let check = crate::requires::check(
            &script.body,
            &self.inner.facts,
            &env,
            env_file.as_deref(),
            &find,
            &install,
        );
        for w in &check.warnings {
            self.emit_for(
                id,
                0,
                EventKind::Warning {
                    index: None,
                    message: w.clone(),
                },
            );
        }
        for d in &check.done {
            self.emit_for(
                id,
                0,
                EventKind::Output {
                    index: None,
                    text: format!("{d}\n"),
                },
            );
        }
        if check.ok() {
            Ok(())
        } else {
            Err(format!(
                "missing requirements:\n  - {}",
                check.missing.join("\n  - ")
            ))
        }
    }

    /// Take over a daemon script whose shells outlived an earlier engine
    /// (re-adopted with [`crate::process::ProcessManager::adopt`]): it is
    /// running and idle, with the `local` memory it had. `false` if the
    /// script is already running here.
    pub fn adopt_run(&self, id: &str, started_ms: u64, local: Option<Value>) -> bool {
        if self.inner.memory.start(id, started_ms, 0).is_none() {
            return false;
        }
        self.inner.memory.mark_daemon_idle(id);
        if let Some(Value::Object(map)) = local {
            self.inner
                .memory
                .update_local(id, |l| *l = Value::Object(map));
        }
        true
    }

    /// How apps are exposed.
    pub fn exposer(&self) -> &Arc<dyn crate::expose::Exposer> {
        &self.inner.exposer
    }

    /// The user-activity handle: frontends touch it on every user request,
    /// idle policies read it (see [`crate::activity`]).
    pub fn activity(&self) -> &crate::activity::Activity {
        &self.inner.activity
    }

    /// Whether shells have URL watchers (see [`crate::urlwatch`]).
    pub fn detects_urls(&self) -> bool {
        self.inner.has_watchers
    }

    /// URLs detected in a script's live shells, in the order found.
    pub fn detected_urls(&self, script_id: &str) -> Vec<crate::urlwatch::FoundUrl> {
        self.inner.urls.of_script(script_id)
    }

    /// The detected web UI URL of an app's live shells (a fallback for
    /// launchers that set no `local.url`; see [`crate::urlwatch`]).
    pub fn detected_app_url(&self, app_dir: &Path) -> Option<String> {
        let found = self.inner.urls.under(&format!("{}/", app_dir.display()));
        crate::urlwatch::DetectedUrls::best(&found).map(|f| f.url.clone())
    }

    /// Wait up to `timeout` for a detected web UI URL of an app; gives up
    /// early when the app has no running shell or the engine detects no
    /// URLs at all.
    pub fn wait_detected_url(&self, app_dir: &Path, timeout: Duration) -> Option<String> {
        let prefix = format!("{}/", app_dir.display());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(u) = self.detected_app_url(app_dir) {
                return Some(u);
            }
            let live = self
                .inner
                .processes
                .list()
                .iter()
                .any(|p| p.running && p.group.starts_with(&prefix));
            if !self.inner.has_watchers || !live || std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Remember an exposure a script asked for (`proxy.start`), so it is
    /// closed when the script stops (section 3.14).
    pub fn track_exposure(&self, script_id: &str, app: &str, local_url: &str) {
        let mut p = self.inner.proxied.lock().unwrap_or_else(|p| p.into_inner());
        if !p
            .iter()
            .any(|(s, a, u)| s == script_id && a == app && u == local_url)
        {
            p.push((script_id.into(), app.into(), local_url.into()));
        }
    }

    /// Forget an exposure a script asked for (`proxy.stop`).
    pub fn untrack_exposure(&self, app: &str, local_url: &str) {
        self.inner
            .proxied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, a, u)| !(a == app && u == local_url));
    }

    /// Close the exposures a stopping script asked for.
    fn release_exposures(&self, script_id: &str) {
        let mine: Vec<(String, String, String)> = {
            let mut p = self.inner.proxied.lock().unwrap_or_else(|p| p.into_inner());
            let (mine, rest) = p.drain(..).partition(|(s, _, _)| s == script_id);
            *p = rest;
            mine
        };
        for (_, app, url) in mine {
            self.inner.exposer.unexpose_url(&app, &url);
        }
    }

    /// Is a script (by absolute path) running?
    pub fn is_running(&self, id: &str) -> bool {
        self.inner.memory.is_running(id)
    }

    /// Stop a script (section 3.14): signal it, drop its running mark and
    /// `local`. Returns whether it was running.
    pub fn stop(&self, id: &str) -> bool {
        let (was_idle, depth) = self
            .inner
            .memory
            .running()
            .get(id)
            .map(|r| (r.daemon_idle, r.depth))
            .unwrap_or((false, 0));
        let was = self.inner.memory.stop(id);
        self.inner.memory.clear_ready(id);
        self.inner
            .processes
            .kill_group(id, self.inner.options.kill_grace);
        self.release_exposures(id);
        if was && was_idle {
            self.emit_for(
                id,
                depth,
                EventKind::RunEnd {
                    status: RunStatus::Stopped,
                    result: None,
                    error: None,
                },
            );
        }
        was
    }

    /// Stop every running script.
    pub fn stop_all(&self) {
        for id in self.inner.memory.running().keys() {
            self.stop(id);
        }
    }

    /// Stop everything and kill every shell (engine shutdown).
    pub fn shutdown(&self) {
        self.stop_all();
        self.inner.processes.kill_all(self.inner.options.kill_grace);
    }

    /// Run a script to its end on this thread.
    pub fn run(&self, req: RunRequest) -> RunOutcome {
        let js = match self.js_runtime() {
            Ok(js) => js,
            Err(e) => {
                let path = PathBuf::from(&req.uri);
                return self.failed_to_start(&path, 0, e.to_string());
            }
        };
        self.run_with(&js, req, 0)
    }

    fn failed_to_start(&self, path: &Path, depth: usize, message: String) -> RunOutcome {
        let id = path.display().to_string();
        let message = message
            .strip_prefix(&format!("{id}: "))
            .map(String::from)
            .unwrap_or(message);
        self.emit_for(
            &id,
            depth,
            EventKind::RunEnd {
                status: RunStatus::Error,
                result: None,
                error: Some(message.clone()),
            },
        );
        RunOutcome {
            script: path.to_path_buf(),
            status: RunStatus::Error,
            result: None,
            error: Some(RunError {
                script: path.to_path_buf(),
                step: None,
                method: None,
                message,
            }),
            visited: Vec::new(),
        }
    }

    /// Resolve a request's uri to a script path.
    pub fn resolve_uri(&self, uri: &str, base: Option<&Path>) -> Result<PathBuf, HomeError> {
        let api = self.inner.home.api();
        self.inner.home.resolve(uri, Some(base.unwrap_or(&api)))
    }

    /// Run a script with an existing JS runtime (nested runs share it).
    pub fn run_with(&self, js: &JsRuntime, req: RunRequest, depth: usize) -> RunOutcome {
        let path = match self.resolve_uri(&req.uri, req.base.as_deref()) {
            Ok(p) => p,
            Err(e) => return self.failed_to_start(Path::new(&req.uri), depth, e.to_string()),
        };
        let _current = CurrentRun::enter(path.display().to_string(), depth);
        let script = match loader::load_script(&path, js) {
            Ok(s) => s,
            Err(e) => return self.failed_to_start(&path, depth, e.to_string()),
        };
        let id = path.display().to_string();
        let cwd = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let args = Some(req.input.clone().unwrap_or_else(|| json!({})));
        let action = req.action.clone().unwrap_or_else(|| "run".into());
        let app_root = self.inner.home.app_root_of(&path);
        let ctx_value = json!({
            "action": action, "input": args, "args": args, "uri": req.uri,
            "cwd": cwd, "dirname": cwd, "name": self.inner.home.app_relative_name(&cwd),
            "self": script.body, "local": self.inner.memory.local(&id),
            "global": self.inner.memory.global(&id), "port": self.free_port(),
            "env": self.env_for(app_root.as_deref()),
        });
        let steps = match script.steps(&action, js, &ctx_value) {
            Ok(s) => s,
            Err(e) => return self.failed_to_start(&path, depth, e.to_string()),
        };
        if depth == 0 {
            if let Err(message) = self.check_requirements(&script, app_root.as_deref(), &id) {
                return self.failed_to_start(&path, depth, message);
            }
        }
        let Some(stop) = self.inner.memory.start(&id, now_ms(), depth) else {
            return self.failed_to_start(
                &path,
                depth,
                format!("{} is already running; stop it first", path.display()),
            );
        };
        let run_id = self.inner.state.as_ref().and_then(|s| {
            s.start_run(
                self.app_id_of(app_root.as_deref()).as_deref(),
                &id,
                args.as_ref(),
            )
            .ok()
        });
        let run = RunContext {
            run_id,
            id: id.clone(),
            path: path.clone(),
            cwd,
            uri: req.uri.clone(),
            args,
            depth,
            stop,
            steps,
            kind: script.kind,
            app_root,
        };
        self.emit(
            &run,
            EventKind::RunStart {
                uri: req.uri.clone(),
                path: path.display().to_string(),
                args: run.args.clone(),
                steps: run.steps.len(),
            },
        );
        let mut tracker = SelfTracker {
            stamp: None,
            value: script.body.clone(),
            token: new_token(),
        };
        let outcome = self.step_loop(js, &run, &script, &mut tracker);
        if let (Some(st), Some(rid)) = (&self.inner.state, run.run_id) {
            if outcome.status == RunStatus::Daemon {
                // what a re-adopting engine needs to show the app (its URL)
                let _ = st.set_run_local(rid, &self.inner.memory.local(&id));
            }
            let reason = outcome.error.as_ref().map(|e| e.to_string());
            let _ = st.end_run(rid, outcome.status.into(), reason.as_deref());
        }
        self.emit(
            &run,
            EventKind::RunEnd {
                status: outcome.status,
                result: outcome.result.clone(),
                error: outcome.error.as_ref().map(|e| e.to_string()),
            },
        );
        outcome
    }

    fn step_loop(
        &self,
        js: &JsRuntime,
        run: &RunContext,
        script: &Script,
        tracker: &mut SelfTracker,
    ) -> RunOutcome {
        let mem = &self.inner.memory;
        let total = run.steps.len();
        let mut input: Option<Value> = run.args.clone();
        let mut last_result: Option<Value> = None;
        let mut visited = Vec::new();
        let mut i = 0usize;
        let mut env_cache: Option<(BTreeMap<String, String>, u64)> = None;
        let name = self.inner.home.app_relative_name(&run.cwd);
        let outcome = |status,
                       result: Option<Value>,
                       error: Option<RunError>,
                       visited: Vec<usize>| RunOutcome {
            script: run.path.clone(),
            status,
            result,
            error,
            visited,
        };
        let step_error = |index: usize, method: Option<String>, message: String| RunError {
            script: run.path.clone(),
            step: Some(index),
            method,
            message,
        };
        loop {
            if run.stop.load(Ordering::SeqCst) {
                return outcome(RunStatus::Stopped, last_result, None, visited);
            }
            visited.push(i);
            let raw = &run.steps[i];
            if raw.is_null() {
                // documented upstream as skipped (pinokiod itself crashes)
                self.emit(
                    run,
                    EventKind::Warning {
                        index: Some(i),
                        message: format!("step {i} is null; skipped"),
                    },
                );
                i += 1;
                if i >= total {
                    return self.finish(run, script, last_result, visited);
                }
                continue;
            }
            if !raw.is_object() {
                let e = step_error(
                    i,
                    None,
                    "missing RPC attribute: method (a step must be an object)".into(),
                );
                return self.fail(run, e, visited);
            }
            // scope
            tracker.refresh(&run.path, run.kind);
            let env = self.env_for(run.app_root.as_deref());
            let env_token = match &env_cache {
                Some((prev, tok)) if *prev == env => *tok,
                _ => new_token(),
            };
            let local = mem.local(&run.id);
            let global = mem.global(&run.id);
            let data_place = StepPlace {
                index: i,
                total,
                uri: &run.uri,
                cwd: &run.cwd,
                name: name.as_deref(),
            };
            let data = self.scope_data(
                &data_place,
                input.as_ref(),
                run.args.as_ref(),
                local.clone(),
                global.clone(),
            );

            let env_value = json!(env);
            let sticky = [
                StickyValue {
                    name: "self",
                    token: tracker.token,
                    value: &tracker.value,
                },
                StickyValue {
                    name: "env",
                    token: env_token,
                    value: &env_value,
                },
            ];
            env_cache = Some((env, env_token));
            if let Err(e) = js.set_scope(SCOPE_NAMES, &Value::Object(data), &sticky, &run.cwd) {
                let e = step_error(i, None, format!("cannot prepare template scope: {e}"));
                return self.fail(run, e, visited);
            }
            let mut renderer = Renderer::new(js);
            let step = renderer.render_step(raw);
            for w in renderer.take_warnings() {
                self.emit(
                    run,
                    EventKind::Warning {
                        index: Some(i),
                        message: w,
                    },
                );
            }
            let when = step.get("when").cloned();
            if let Some(w) = &when {
                let run_it = match renderer.when_truthy(w) {
                    Ok(b) => b,
                    Err(e) => {
                        let err = step_error(
                            i,
                            step.get("method")
                                .and_then(|m| m.as_str())
                                .map(String::from),
                            format!("`when` cannot be evaluated: {e}"),
                        );
                        return self.fail(run, err, visited);
                    }
                };
                if !run_it {
                    self.emit(
                        run,
                        EventKind::StepSkipped {
                            index: i,
                            when: Some(w.clone()),
                            input: input.clone(),
                            args: run.args.clone(),
                            local: local.clone(),
                        },
                    );
                    input = Some(Value::Null);
                    i += 1;
                    if i >= total {
                        return self.finish(run, script, input, visited);
                    }
                    continue;
                }
            }
            let method = match step.get("method") {
                Some(Value::String(m)) if !m.is_empty() => m.clone(),
                Some(v) if loader::is_function_marker(v) => {
                    let e = step_error(
                        i,
                        None,
                        "a JavaScript function as `method` is not supported".into(),
                    );
                    return self.fail(run, e, visited);
                }
                _ => {
                    let e = step_error(i, None, "missing RPC attribute: method".into());
                    return self.fail(run, e, visited);
                }
            };
            // where to go next
            let mut target: Option<Value> = match step.get("next") {
                Some(Value::String(s)) => Some(
                    run.steps
                        .iter()
                        .position(|st| st.get("id").and_then(|x| x.as_str()) == Some(s.as_str()))
                        .map(|p| json!(p))
                        .unwrap_or_else(|| json!(s)),
                ),
                Some(other) => Some(other.clone()).filter(|v| !v.is_null()),
                None => (i + 1 < total).then(|| json!(i + 1)),
            };
            let params = step.get("params").cloned();
            self.emit(
                run,
                EventKind::StepStart {
                    index: i,
                    id: step.get("id").and_then(|x| x.as_str()).map(String::from),
                    method: method.clone(),
                    when: when.clone(),
                    params: params.clone(),
                    input: input.clone(),
                    args: run.args.clone(),
                    local,
                    global,
                },
            );
            let queue_guard = if step.get("queue").map(truthy).unwrap_or(false) {
                Some(self.queue(&method))
            } else {
                None
            };
            let _held = queue_guard
                .as_ref()
                .map(|q| q.lock().unwrap_or_else(|p| p.into_inner()));
            let found = match self.inner.registry.lookup(&method) {
                Lookup::Found(m) => m,
                Lookup::Unsupported(why) => {
                    let e = step_error(
                        i,
                        Some(method.clone()),
                        format!("not supported yet: {method} ({why})"),
                    );
                    return self.fail(run, e, visited);
                }
                Lookup::Unknown => {
                    let e = step_error(
                        i,
                        Some(method.clone()),
                        format!("unknown method {method:?} (no such Pinokio API method)"),
                    );
                    return self.fail(run, e, visited);
                }
            };
            let mut cx = MethodCx {
                engine: self,
                js,
                run,
                index: i,
                method: &method,
                input: &input,
                jump: None,
            };
            let result = found.call(&mut cx, params.unwrap_or(Value::Null));
            let jump = cx.jump.take();
            let result = match result {
                Ok(r) => r,
                Err(MethodError::Stopped) => {
                    return outcome(RunStatus::Stopped, last_result, None, visited)
                }
                Err(e) => {
                    let e = step_error(i, Some(method.clone()), e.to_string());
                    return self.fail(run, e, visited);
                }
            };
            if let Some(Value::Object(o)) = &result {
                if o.get("error").map(truthy).unwrap_or(false) {
                    let msg = o
                        .get("error")
                        .map(|e| match e {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .unwrap_or_default();
                    let e = step_error(i, Some(method.clone()), msg);
                    return self.fail(run, e, visited);
                }
            }
            self.apply_returns(run, i, &step, &result);
            self.emit(
                run,
                EventKind::StepResult {
                    index: i,
                    result: result.clone(),
                },
            );
            if run.stop.load(Ordering::SeqCst) {
                return outcome(RunStatus::Stopped, result, None, visited);
            }
            if let Some(j) = jump {
                match j {
                    JumpTarget::Index(v) => target = Some(v),
                    JumpTarget::Id(id) => {
                        if let Some(p) = run.steps.iter().rposition(|st| {
                            st.get("id").and_then(|x| x.as_str()) == Some(id.as_str())
                        }) {
                            target = Some(json!(p));
                        } else {
                            target = (i + 1 < total).then(|| json!(i + 1));
                        }
                    }
                }
            }
            last_result = result.clone();
            match target {
                None => return self.finish(run, script, last_result, visited),
                Some(t) => {
                    let idx = t.as_u64().map(|n| n as usize).filter(|n| *n < total);
                    match idx {
                        Some(n) => {
                            i = n;
                            input = result;
                        }
                        None => {
                            // upstream: finished without stop (shells and marks stay)
                            self.emit(
                                run,
                                EventKind::Warning {
                                    index: Some(i),
                                    message: format!(
                                        "next step {t} does not exist; the run ends here (pinokiod leaves such a run marked running; we end it like a normal last step)"
                                    ),
                                },
                            );
                            return self.finish(run, script, last_result, visited);
                        }
                    }
                }
            }
        }
    }

    /// The per-step data part of the template scope.
    fn scope_data(
        &self,
        place: &StepPlace<'_>,
        input: Option<&Value>,
        args: Option<&Value>,
        local: Value,
        global: Value,
    ) -> Map<String, Value> {
        let mut data = Map::new();
        if let Some(v) = input {
            data.insert("input".into(), v.clone());
        }
        if let Some(a) = args {
            data.insert("args".into(), a.clone());
        }
        data.insert("local".into(), local);
        data.insert("global".into(), global);
        data.insert("current".into(), json!(place.index));
        let next = if place.index + 1 < place.total {
            json!(place.index + 1)
        } else {
            Value::Null
        };
        data.insert("next".into(), next);
        data.insert("uri".into(), json!(place.uri));
        data.insert("cwd".into(), json!(place.cwd));
        data.insert("dirname".into(), json!(place.cwd));
        if let Some(n) = place.name {
            data.insert("name".into(), json!(n));
        }
        data.insert("port".into(), json!(self.free_port()));
        self.insert_facts(&mut data);
        data
    }

    fn insert_facts(&self, data: &mut Map<String, Value>) {
        let f = &self.inner.facts;
        data.insert("platform".into(), json!(f.platform));
        data.insert("arch".into(), json!(f.arch));
        data.insert("gpu".into(), json!(f.gpu()));
        data.insert("gpus".into(), f.gpus_value());
        if let Some(m) = f.gpu_model() {
            data.insert("gpu_model".into(), json!(m));
        }
        data.insert("gpu_driver".into(), json!(f.gpu_driver()));
        data.insert("gpu_target".into(), json!(f.gpu_target()));
        data.insert("vram".into(), json!(f.vram()));
        data.insert("ram".into(), json!(f.ram));
        let torch = match (f.platform.as_str(), f.gpu().as_str()) {
            ("darwin", _) => "pip3 install torch torchvision torchaudio",
            ("win32", "nvidia") => "pip3 install torch torchvision torchaudio --index-url https://download.pytorch.org/whl/cu118",
            _ => "pip3 install torch torchvision torchaudio --index-url https://download.pytorch.org/whl/cpu",
        };
        data.insert("__pip_torch".into(), json!(torch));
    }

    fn apply_returns(&self, run: &RunContext, index: usize, step: &Value, result: &Option<Value>) {
        let Some(r) = step.get("returns") else { return };
        match r {
            Value::String(s) => {
                let v = result.clone().unwrap_or(Value::Null);
                if let Some(k) = s.strip_prefix("local.") {
                    self.inner.memory.update_local(&run.id, |l| crate::keypath::set(l, k, v));
                } else if let Some(k) = s.strip_prefix("global.") {
                    self.inner.memory.update_global(&run.id, |g| crate::keypath::set(g, k, v));
                } else {
                    self.emit(
                        run,
                        EventKind::Warning {
                            index: Some(index),
                            message: format!("`returns` must start with local. or global. (got {s:?}); ignored"),
                        },
                    );
                }
            }
            _ => self.emit(
                run,
                EventKind::Warning {
                    index: Some(index),
                    message: "the object form of `returns` is broken upstream and not supported; use \"returns\": \"local.<name>\"".into(),
                },
            ),
        }
    }

    fn queue(&self, method: &str) -> Arc<Mutex<()>> {
        let mut q = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        q.entry(method.to_string()).or_default().clone()
    }

    /// The run reached its end (no next step).
    fn finish(
        &self,
        run: &RunContext,
        script: &Script,
        result: Option<Value>,
        visited: Vec<usize>,
    ) -> RunOutcome {
        let daemon = match run.kind {
            ScriptKind::Json => loader::read_json(&run.path)
                .map(|v| v.get("daemon").map(truthy).unwrap_or(false))
                .unwrap_or_else(|_| script.daemon()),
            ScriptKind::Js => script.daemon(),
        };
        let status = if run.stop.load(Ordering::SeqCst) {
            RunStatus::Stopped
        } else if daemon {
            self.inner.memory.mark_daemon_idle(&run.id);
            RunStatus::Daemon
        } else {
            self.inner.memory.stop(&run.id);
            self.inner
                .processes
                .kill_group(&run.id, self.inner.options.kill_grace);
            self.release_exposures(&run.id);
            self.inner.memory.mark_ready(&run.id);
            RunStatus::Finished
        };
        RunOutcome {
            script: run.path.clone(),
            status,
            result,
            error: None,
            visited,
        }
    }

    /// A step failed: report it and stop the script (a sane engine does not
    /// leave a failed script marked running, unlike pinokiod).
    fn fail(&self, run: &RunContext, e: RunError, visited: Vec<usize>) -> RunOutcome {
        self.emit(
            run,
            EventKind::StepError {
                index: e.step.unwrap_or(0),
                method: e.method.clone(),
                message: e.message.clone(),
            },
        );
        self.inner.memory.stop(&run.id);
        self.inner
            .processes
            .kill_group(&run.id, self.inner.options.kill_grace);
        self.release_exposures(&run.id);
        RunOutcome {
            script: run.path.clone(),
            status: RunStatus::Error,
            result: None,
            error: Some(e),
            visited,
        }
    }

    /// Load `pinokio.js` (and friends) of an app folder and evaluate its menu now.
    pub fn menu(&self, app_dir: &Path) -> Result<Menu, EngineError> {
        let js = self.js_runtime()?;
        self.menu_with(&js, app_dir)
    }

    /// [`Engine::menu`] with an existing runtime.
    pub fn menu_with(&self, js: &JsRuntime, app_dir: &Path) -> Result<Menu, EngineError> {
        let launcher = loader::load_launcher(app_dir, js)?;
        let raw = match launcher.meta.get("menu") {
            Some(v) if loader::is_function_marker(v) => js
                .call_exported("menu", &launcher.root, None)
                .map_err(|e| EngineError::Menu {
                    path: launcher.root.join("pinokio.js"),
                    message: e.to_string(),
                })?
                .unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => Value::Array(Vec::new()),
        };
        let items = match raw {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => {
                return Err(EngineError::Menu {
                    path: launcher.root.join("pinokio.js"),
                    message: format!("menu must be an array (got {other})"),
                })
            }
        };
        let items = items
            .iter()
            .filter_map(|it| self.menu_item(&launcher.root, it))
            .collect();
        Ok(Menu {
            title: launcher.title(),
            description: launcher.str_field("description"),
            icon: launcher.str_field("icon"),
            version: launcher.meta.get("version").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            root: launcher.root.clone(),
            items,
            warnings: launcher.warnings,
        })
    }

    fn menu_item(&self, root: &Path, it: &Value) -> Option<MenuItem> {
        let o = it.as_object()?;
        let s = |k: &str| o.get(k).and_then(|v| v.as_str()).map(String::from);
        let label_html = s("html").or_else(|| s("text")).unwrap_or_default();
        let text = strip_html(&label_html);
        let href = s("href");
        let sub: Vec<MenuItem> = o
            .get("menu")
            .and_then(|m| m.as_array())
            .map(|a| a.iter().filter_map(|x| self.menu_item(root, x)).collect())
            .unwrap_or_default();
        let mut script = None;
        let mut url = None;
        if let Some(h) = &href {
            if h.starts_with("http://") || h.starts_with("https://") {
                url = Some(h.clone());
            } else if !h.starts_with('/') {
                let path_part = h.split('?').next().unwrap_or(h);
                if ScriptKind::of(Path::new(path_part)).is_some() {
                    script = Some(crate::home::normalize(&root.join(path_part)));
                }
            }
        }
        let running = script
            .as_ref()
            .map(|p| self.is_running(&p.display().to_string()))
            .unwrap_or(false);
        if text.is_empty()
            && href.is_none()
            && sub.is_empty()
            && o.get("action").is_none()
            && o.get("run").is_none()
        {
            return None;
        }
        Some(MenuItem {
            text,
            html: label_html,
            icon: s("icon"),
            href,
            script,
            url,
            params: o.get("params").cloned(),
            default: o.get("default").map(truthy).unwrap_or(false),
            running,
            popout: o.get("popout").map(truthy).unwrap_or(false),
            menu: sub,
        })
    }

    /// Render every step of a script as if reached first (input null, local
    /// empty), without running anything.
    pub fn plan(&self, uri: &str, args: Option<Value>) -> Result<Plan, EngineError> {
        let js = self.js_runtime()?;
        let path = self.resolve_uri(uri, None)?;
        let script = loader::load_script(&path, &js)?;
        let cwd = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let app_root = self.inner.home.app_root_of(&path);
        let args = Some(args.unwrap_or_else(|| json!({})));
        let env = json!(self.env_for(app_root.as_deref()));
        let name = self.inner.home.app_relative_name(&cwd);
        let ctx_value = json!({
            "action": "run", "input": args, "args": args, "uri": uri,
            "cwd": cwd, "dirname": cwd, "name": name, "self": script.body,
            "local": {}, "global": {}, "port": self.free_port(), "env": env,
        });
        let steps = script.steps("run", &js, &ctx_value)?;
        let total = steps.len();
        let mut out = Vec::new();
        let self_token = new_token();
        let env_token = new_token();
        for (i, raw) in steps.iter().enumerate() {
            if raw.is_null() {
                out.push(json!({"index": i, "null": true}));
                continue;
            }
            let place = StepPlace {
                index: i,
                total,
                uri,
                cwd: &cwd,
                name: name.as_deref(),
            };
            let data = self.scope_data(
                &place,
                Some(&Value::Null),
                args.as_ref(),
                json!({}),
                json!({}),
            );

            let sticky = [
                StickyValue {
                    name: "self",
                    token: self_token,
                    value: &script.body,
                },
                StickyValue {
                    name: "env",
                    token: env_token,
                    value: &env,
                },
            ];
            js.set_scope(SCOPE_NAMES, &Value::Object(data), &sticky, &cwd)?;
            let mut r = Renderer::new(&js);
            let step = r.render_step(raw);
            let warnings = r.take_warnings();
            let when = step.get("when").cloned();
            let will_run = match &when {
                Some(w) => r
                    .when_truthy(w)
                    .map(Value::Bool)
                    .unwrap_or_else(|e| json!(e.to_string())),
                None => Value::Bool(true),
            };
            let mut entry = json!({
                "index": i,
                "id": step.get("id").cloned().unwrap_or(Value::Null),
                "method": step.get("method").cloned().unwrap_or(Value::Null),
                "when": when.unwrap_or(Value::Null),
                "runs": will_run,
                "params": step.get("params").cloned().unwrap_or(Value::Null),
                "next": step.get("next").cloned().unwrap_or_else(|| if i + 1 < total { json!(i + 1) } else { Value::Null }),
            });
            if !warnings.is_empty() {
                entry["warnings"] = json!(warnings);
            }
            out.push(entry);
        }
        Ok(Plan {
            script: path,
            steps: out,
        })
    }
}

/// Output of [`Engine::plan`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub script: PathBuf,
    pub steps: Vec<Value>,
}

/// A launcher's menu, evaluated now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Menu {
    pub title: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub version: Option<String>,
    pub root: PathBuf,
    pub items: Vec<MenuItem>,
    pub warnings: Vec<String>,
}

/// One menu item.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MenuItem {
    /// The label as plain text.
    pub text: String,
    /// The label as given (may hold HTML).
    pub html: String,
    pub icon: Option<String>,
    pub href: Option<String>,
    /// The script the item runs, when `href` names one.
    pub script: Option<PathBuf>,
    /// The web page the item opens, when `href` is a URL.
    pub url: Option<String>,
    pub params: Option<Value>,
    pub default: bool,
    /// Is the item's script running now?
    pub running: bool,
    pub popout: bool,
    pub menu: Vec<MenuItem>,
}

impl Menu {
    /// The first `default: true` item, depth first.
    pub fn default_item(&self) -> Option<&MenuItem> {
        fn find(items: &[MenuItem]) -> Option<&MenuItem> {
            for it in items {
                if it.default {
                    return Some(it);
                }
                if let Some(x) = find(&it.menu) {
                    return Some(x);
                }
            }
            None
        }
        find(&self.items)
    }
}

/// Menu `params` travel through a query string upstream: every value
/// becomes a string, arrays repeat the key (parsed back as arrays of strings).
pub fn stringify_menu_params(params: &Value) -> Value {
    fn s(v: &Value) -> Value {
        match v {
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| json!(crate::template::js_string(x)))
                    .collect(),
            ),
            other => json!(crate::template::js_string(other)),
        }
    }
    match params {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        _ => json!({}),
    }
}

/// The app ENVIRONMENT file: `<app>/pinokio/ENVIRONMENT` when a `pinokio`
/// folder exists, else `<app>/ENVIRONMENT`.
pub fn app_env_file(app: &Path) -> PathBuf {
    if app.join("pinokio").is_dir() {
        app.join("pinokio").join("ENVIRONMENT")
    } else {
        app.join("ENVIRONMENT")
    }
}

/// Strip HTML tags and collapse whitespace.
pub fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in s.chars() {
        match ch {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl KernelHost for Engine {
    fn running(&self, script: &str) -> bool {
        self.inner.memory.is_running(script)
    }
    fn ready(&self, script: &str) -> bool {
        self.inner.memory.is_ready(script)
    }
    fn local(&self, script: &str) -> Option<Value> {
        self.inner.memory.local_opt(script)
    }
    fn global(&self, script: &str) -> Option<Value> {
        self.inner.memory.global_opt(script)
    }
    fn memory_keys(&self, global: bool) -> Vec<String> {
        self.inner.memory.keys(global)
    }
    fn which(&self, name: &str) -> Option<String> {
        let path = self.inner.base_env.get("PATH").cloned().unwrap_or_default();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        which::which_in(name, Some(path), cwd)
            .ok()
            .map(|p| p.display().to_string())
    }
    fn port(&self) -> u16 {
        self.free_port()
    }
    fn key(&self, host: &str) -> Option<Value> {
        let v = loader::read_json(&self.inner.home.root().join("key.json")).ok()?;
        v.get(host).cloned()
    }
    fn resolve_git(&self, uri: &str) -> Option<String> {
        self.inner
            .home
            .resolve_git(uri)
            .ok()
            .map(|p| p.display().to_string())
    }
    fn env_for(&self, dir: &str) -> Value {
        let app = self.inner.home.app_root_of(Path::new(dir));
        json!(Engine::env_for(self, app.as_deref()))
    }
    fn venvs(&self, dir: &str) -> Vec<String> {
        find_venvs(Path::new(dir), 4)
    }
    fn console(&self, level: &str, text: &str) {
        let (script, depth) = CURRENT_RUN
            .with(|c| c.borrow().last().cloned())
            .unwrap_or_default();
        self.inner.sink.emit(&Event {
            script,
            depth,
            time_ms: now_ms(),
            kind: EventKind::Output {
                index: None,
                text: format!("[js {level}] {text}\n"),
            },
        });
    }
}

/// Folders under `dir` (to `depth` levels) that hold a `pyvenv.cfg`.
fn find_venvs(dir: &Path, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    if dir.join("pyvenv.cfg").is_file() {
        out.push(dir.display().to_string());
        return out;
    }
    if depth == 0 {
        return out;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        subs.sort();
        for s in subs {
            out.extend(find_venvs(&s, depth - 1));
        }
    }
    out
}
