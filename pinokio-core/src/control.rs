//! The background engine's control socket.
//!
//! `pinokio start` must return once an app's URL is known while the app
//! keeps running, so one long-lived process (the background engine, started
//! on demand; `pinokio engine` in the foreground) owns the PTYs, logs and
//! `local` memory of running scripts. Other `pinokio` commands talk to it
//! over a Unix socket at `HOME/engine.sock` with one JSON object per line:
//!
//! | request | reply |
//! | --- | --- |
//! | `{"op":"ping"}` | `{"ok":true,"pid":N,"home":"..."}` |
//! | `{"op":"start","app":"NAME","script":null,"args":null,"expose":null,"via":null}` | once the web UI is up (or the script ended): `{"ok":true,"url":"...","ran":[...],"exposure"?:{...},"expose_error"?:"..."}` |
//! | `{"op":"stop","app":"NAME"}` | `{"ok":true,"stopped":["script", ...]}` (its tunnels stop too) |
//! | `{"op":"status"}` | `{"ok":true,"apps":[{"app","scripts","url","exposures","pids","uptime_s"}]}` |
//! | `{"op":"expose","app":"NAME","via":null}` | `{"ok":true,"exposure":{"app","via","local_url","public_url","state","note"}}` |
//! | `{"op":"unexpose","app":"NAME"}` | `{"ok":true,"stopped":[exposure, ...]}` |
//! | `{"op":"exposures"}` | `{"ok":true,"exposures":[...]}` |
//! | `{"op":"menu","app":"NAME"}` | `{"ok":true,"menu":{...}}` (evaluated against the live state) |
//! | `{"op":"shutdown"}` | `{"ok":true}`, then every app is stopped and the engine exits |
//!
//! Errors are `{"ok":false,"error":"..."}`. The socket file is created with
//! mode 0600 (only the owner may drive the engine).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::apps;
use crate::engine::{Engine, RunRequest};
use crate::events::now_ms;
use crate::state::{AppState, StateStore};

/// The socket path of a home's background engine.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("engine.sock")
}

/// Errors talking to the background engine.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no background engine is running for {0}")]
    NotRunning(PathBuf),
    #[error("background engine socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the background engine answered something unreadable: {0}")]
    BadReply(String),
    #[error("{0}")]
    Failed(String),
}

/// A connection to a running background engine.
pub struct Client {
    path: PathBuf,
}

impl Client {
    /// Connect if an engine answers on the home's socket.
    pub fn connect(home: &Path) -> Result<Client, ControlError> {
        let path = socket_path(home);
        let c = Client { path };
        c.request(&json!({"op": "ping"}))
            .map_err(|_| ControlError::NotRunning(home.to_path_buf()))?;
        Ok(c)
    }

    /// Send one request and wait for its reply (no time limit: `start`
    /// waits for installs).
    pub fn request(&self, req: &Value) -> Result<Value, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.path).map_err(io)?;
        let mut line = req.to_string();
        line.push('\n');
        s.write_all(line.as_bytes()).map_err(io)?;
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).map_err(io)?;
        let v: Value = serde_json::from_str(reply.trim())
            .map_err(|e| ControlError::BadReply(format!("{e}: {reply:?}")))?;
        if v.get("ok") == Some(&Value::Bool(true)) {
            Ok(v)
        } else {
            Err(ControlError::Failed(
                v.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("unknown error")
                    .to_string(),
            ))
        }
    }
}

/// Serve the control socket until a `shutdown` request (or `stop` is set).
/// Refuses to start when another engine answers on the socket.
pub fn serve(engine: Engine, stop: Arc<AtomicBool>) -> Result<(), ControlError> {
    serve_reporting(engine, stop, |_| {})
}

/// [`serve`], telling `ready` what was re-adopted from an earlier engine
/// (see [`crate::adopt`]) once the socket is up.
pub fn serve_reporting(
    engine: Engine,
    stop: Arc<AtomicBool>,
    ready: impl FnOnce(&crate::adopt::ReadoptReport),
) -> Result<(), ControlError> {
    let home = engine.home().root().to_path_buf();
    let path = socket_path(&home);
    if Client::connect(&home).is_ok() {
        return Err(ControlError::Failed(format!(
            "a background engine is already running for {}",
            home.display()
        )));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|source| ControlError::Io {
        path: path.clone(),
        source,
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    listener
        .set_nonblocking(true)
        .map_err(|source| ControlError::Io {
            path: path.clone(),
            source,
        })?;
    if let Ok(store) = StateStore::open(&home) {
        let _ = store.reconcile(crate::state::process_alive);
    }
    let readopted = engine.readopt();
    ready(&readopted);
    let started = now_ms();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let engine = engine.clone();
                let stop = stop.clone();
                std::thread::spawn(move || handle(engine, stream, stop, started));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    for e in engine.exposer().exposures() {
        engine.exposer().unexpose(&e.app);
    }
    engine.shutdown();
    if let Ok(store) = StateStore::open(&home) {
        for (name, _) in apps::installed(&engine) {
            if let Ok(Some(a)) = store.get_app(&name) {
                if a.state == AppState::Running {
                    let _ = store.set_app_state(&name, AppState::Stopped, None);
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn handle(engine: Engine, stream: UnixStream, stop: Arc<AtomicBool>, started: u64) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Value>(line.trim()) {
        Ok(req) => dispatch(&engine, &req, &stop, started),
        Err(e) => Err(format!("bad request: {e}")),
    };
    let reply = match reply {
        Ok(mut v) => {
            v["ok"] = Value::Bool(true);
            v
        }
        Err(e) => json!({"ok": false, "error": e}),
    };
    let mut out = stream;
    let _ = out.write_all(format!("{reply}\n").as_bytes());
}

fn app_prefix(dir: &Path) -> String {
    format!("{}/", dir.display())
}

fn dispatch(
    engine: &Engine,
    req: &Value,
    stop: &AtomicBool,
    started: u64,
) -> Result<Value, String> {
    let op = req.get("op").and_then(|o| o.as_str()).unwrap_or("");
    let app_name = || {
        req.get("app")
            .and_then(|a| a.as_str())
            .ok_or_else(|| format!("{op}: missing \"app\""))
    };
    match op {
        "ping" => Ok(
            json!({"pid": std::process::id(), "home": engine.home().root(), "started_ms": started}),
        ),
        "start" => start(engine, &StartRequest::from_json(app_name()?, req)),
        "stop" => Ok(json!({ "stopped": stop_fully(engine, app_name()?)? })),
        "status" => Ok(json!({"apps": status(engine), "pid": std::process::id()})),
        "menu" => Ok(json!({ "menu": menu(engine, app_name()?)? })),
        "expose" => {
            let name = app_name()?;
            let via = req.get("via").and_then(|v| v.as_str());
            Ok(json!({ "exposure": expose(engine, name, via)? }))
        }
        "unexpose" => {
            let name = app_name()?;
            Ok(json!({ "stopped": engine.exposer().unexpose(name) }))
        }
        "exposures" => Ok(json!({ "exposures": engine.exposer().exposures() })),
        "shutdown" => {
            stop.store(true, Ordering::SeqCst);
            Ok(json!({}))
        }
        other => Err(format!("unknown request {other:?}")),
    }
}

/// What to start: the control socket's `start` request (and the HTTP
/// API's `POST /apps/{id}/start`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartRequest {
    /// The app (folder name under `HOME/api`, or a folder path).
    pub app: String,
    /// One script of the app (relative to its folder) instead of the
    /// one-click loop.
    pub script: Option<String>,
    /// The script's input.
    pub args: Option<Value>,
    /// Expose the web UI (`None`: by default on a cloud platform).
    pub expose: Option<bool>,
    /// How to expose it (`platform`, `cloudflare`, ...).
    pub via: Option<String>,
}

impl StartRequest {
    /// Start `app` with the one-click loop and the default exposure.
    pub fn new(app: impl Into<String>) -> Self {
        StartRequest {
            app: app.into(),
            ..Default::default()
        }
    }

    fn from_json(app: &str, req: &Value) -> Self {
        let s = |k: &str| req.get(k).and_then(|v| v.as_str()).map(String::from);
        StartRequest {
            app: app.to_string(),
            script: s("script"),
            args: req.get("args").cloned().filter(|a| !a.is_null()),
            expose: req.get("expose").and_then(|e| e.as_bool()),
            via: s("via"),
        }
    }
}

/// Start an app: run one script, or the one-click loop until a web UI URL
/// is known (an app already running with a URL is left as it is), then
/// expose it as asked. The reply is the control socket's: `{"url", "ran",
/// "already_running"?, "exposure"?, "expose_error"?}` (one script:
/// `{"status", "url"}`). The app's state and shells are recorded in the
/// state store.
pub fn start(engine: &Engine, r: &StartRequest) -> Result<Value, String> {
    let name = r.app.as_str();
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    let store = StateStore::open(engine.home().root()).map_err(|e| e.to_string())?;
    let running = engine
        .memory()
        .running()
        .keys()
        .any(|id| id.starts_with(&app_prefix(&dir)));
    if let Some(script) = &r.script {
        let path = dir.join(script);
        let mut req = RunRequest::new(path.display().to_string());
        req.input = r.args.clone();
        let out = engine.run(req);
        record(engine, &store, name, &dir);
        return match (out.status, out.error) {
            (_, Some(e)) => Err(e.to_string()),
            (s, None) => {
                Ok(json!({"status": format!("{s:?}").to_lowercase(), "url": url_of(engine, &dir)}))
            }
        };
    }
    if running {
        if let Some(url) = url_of(engine, &dir) {
            let mut reply = json!({"url": url, "ran": [], "already_running": true});
            expose_on_start(engine, r, name, &url, &mut reply);
            return Ok(reply);
        }
    }
    let _ = store.set_app_state(name, AppState::Running, None);
    match apps::up(engine, &dir, 8) {
        Ok(up) => {
            record(engine, &store, name, &dir);
            let mut reply = json!({"url": up.url, "ran": up.ran});
            expose_on_start(engine, r, name, &up.url, &mut reply);
            Ok(reply)
        }
        Err(e) => {
            let _ = store.set_app_state(name, AppState::Failed, Some(&e.to_string()));
            Err(e.to_string())
        }
    }
}

/// Stop an app completely: its scripts and shells ([`stop_app`]), its
/// exposures, and shells an earlier engine recorded that are still alive;
/// the app is recorded as `stopped`. Returns the scripts that were stopped
/// (relative to the app folder).
pub fn stop_fully(engine: &Engine, name: &str) -> Result<Vec<String>, String> {
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    let stopped = stop_app(engine, &dir);
    engine.exposer().unexpose(name);
    if let Ok(store) = StateStore::open(engine.home().root()) {
        let _ = store.set_app_state(name, AppState::Stopped, None);
        // shells recorded by an earlier engine that are still alive
        if let Ok(procs) = store.processes_of(name) {
            for p in procs
                .into_iter()
                .filter(|p| p.state == crate::state::ProcState::Running)
            {
                if crate::state::process_alive(p.pid, p.started_at) {
                    // SAFETY: killpg with a recorded, still-alive process group.
                    unsafe {
                        libc::killpg(p.pgid as i32, libc::SIGTERM);
                    }
                }
                let _ = store.process_killed(&p.shell_id, None);
            }
        }
    }
    Ok(stopped)
}

/// What runs of one app: `{"app", "scripts" (relative), "url", "exposures",
/// "pids", "uptime_s"}`, or `None` when nothing of it runs.
pub fn live(engine: &Engine, name: &str, dir: &Path) -> Option<Value> {
    let prefix = app_prefix(dir);
    let scripts: Vec<(String, u64)> = engine
        .memory()
        .running()
        .into_iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .map(|(id, r)| (id, r.started_ms))
        .collect();
    let pids: Vec<u32> = engine
        .processes()
        .list()
        .into_iter()
        .filter(|p| p.running && p.group.starts_with(&prefix))
        .map(|p| p.pid)
        .collect();
    if scripts.is_empty() && pids.is_empty() {
        return None;
    }
    let since = scripts.iter().map(|(_, s)| *s).min().unwrap_or_else(now_ms);
    Some(json!({
        "app": name,
        "scripts": scripts.iter().map(|(id, _)| id.strip_prefix(&prefix).unwrap_or(id).to_string()).collect::<Vec<_>>(),
        "url": url_of(engine, dir),
        "exposures": engine.exposer().exposures().into_iter().filter(|e| e.app == name).collect::<Vec<_>>(),
        "pids": pids,
        "uptime_s": now_ms().saturating_sub(since) / 1000,
    }))
}

/// [`live`] for every installed app that runs.
pub fn status(engine: &Engine) -> Vec<Value> {
    apps::installed(engine)
        .into_iter()
        .filter_map(|(name, dir)| live(engine, &name, &dir))
        .collect()
}

/// The app's menu, evaluated against the live state.
pub fn menu(engine: &Engine, name: &str) -> Result<crate::engine::Menu, String> {
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    engine.menu(&dir).map_err(|e| e.to_string())
}

/// Expose a running app's web UI.
pub fn expose(
    engine: &Engine,
    name: &str,
    via: Option<&str>,
) -> Result<crate::expose::Exposure, String> {
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    let url = url_of(engine, &dir).ok_or_else(|| {
        format!("{name} is not running (or has shown no web UI URL yet); start it first")
    })?;
    engine.exposer().expose(name, &url, via)
}

/// Expose a started app when asked (`expose: Some(true)`), or by default on
/// a cloud platform unless told not to (`Some(false)`). A failure to
/// expose does not fail the start: the reply says why (`expose_error`).
pub fn expose_on_start(engine: &Engine, r: &StartRequest, app: &str, url: &str, reply: &mut Value) {
    let wanted = match r.expose {
        Some(w) => w,
        None => engine.exposer().expose_by_default(),
    };
    if !wanted {
        return;
    }
    match engine.exposer().expose(app, url, r.via.as_deref()) {
        Ok(e) => reply["exposure"] = json!(e),
        Err(e) => reply["expose_error"] = json!(e),
    }
}

/// The first `url` found in the `local` memory of the app's scripts, else
/// the URL detected in its shells (see `crate::urlwatch`).
pub fn url_of(engine: &Engine, dir: &Path) -> Option<String> {
    apps::app_locals(engine, dir)
        .into_iter()
        .find_map(|(_, l)| l.get("url").and_then(|u| u.as_str()).map(String::from))
        // a launcher that sets no local.url: what its shells showed
        .or_else(|| engine.detected_app_url(dir))
}

/// Stop every running script and shell of an app.
pub fn stop_app(engine: &Engine, dir: &Path) -> Vec<String> {
    let prefix = app_prefix(dir);
    let mut stopped = Vec::new();
    for id in engine.memory().running().keys() {
        if id.starts_with(&prefix) {
            engine.stop(id);
            stopped.push(id.strip_prefix(&prefix).unwrap_or(id).to_string());
        }
    }
    for rec in engine.processes().list() {
        if rec.running && rec.group.starts_with(&prefix) {
            engine
                .processes()
                .kill_group(&rec.group, engine.options().kill_grace);
        }
    }
    stopped
}

/// Record the app's shells so a restarted engine can find them.
pub fn record(engine: &Engine, store: &StateStore, name: &str, dir: &Path) {
    let prefix = app_prefix(dir);
    for rec in engine.processes().list() {
        if rec.group.starts_with(&prefix) {
            let _ = store.record_process(&rec, Some(name), None);
        }
    }
}
