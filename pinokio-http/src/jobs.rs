//! Jobs: one background action on an app (install, start, stop, update,
//! reset, uninstall), its state and the engine events it caused (the last
//! 5,000, numbered), and the event-stream clients following it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use pinokio_core::apps::{self, AppError, Source, Updated};
use pinokio_core::control::{self, StartRequest};
use pinokio_core::events::now_ms;
use pinokio_core::state::{AppRecord, AppState, StateStore};
use pinokio_core::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::hub::Hub;
use crate::queue::{Queue, SseItem};
use crate::redact::Redactor;

/// Events kept per job.
pub const EVENTS_PER_JOB: usize = 5_000;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Stopped,
}

/// The job object of the API.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub app: String,
    pub action: String,
    pub state: JobState,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub error: Option<String>,
    pub url: Option<String>,
    pub exposure: Option<Value>,
    pub events: u64,
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: u64,
    pub event: Arc<str>,
    pub data: Arc<str>,
}

impl Recorded {
    pub fn item(&self) -> SseItem {
        SseItem {
            id: Some(self.seq),
            event: self.event.clone(),
            data: self.data.clone(),
        }
    }
}

struct Inner {
    view: JobView,
    events: VecDeque<Recorded>,
    subs: Vec<Weak<Queue>>,
    stop_requested: bool,
}

/// A job.
pub struct Job {
    pub id: String,
    pub app: String,
    pub action: String,
    /// The app folder (attributes the job's own notes).
    pub dir: PathBuf,
    inner: Mutex<Inner>,
    redactor: Arc<Redactor>,
}

/// What a client following a job gets first.
pub struct Subscription {
    pub replay: Vec<Recorded>,
    /// Events after `after` that are no longer kept.
    pub missed: u64,
    /// Live events; `None` when the job has ended.
    pub queue: Option<Arc<Queue>>,
    pub view: JobView,
}

impl Job {
    pub fn new(id: u64, app: &str, action: &str, dir: &Path, redactor: Arc<Redactor>) -> Job {
        Job {
            id: id.to_string(),
            app: app.to_string(),
            action: action.to_string(),
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                view: JobView {
                    id: id.to_string(),
                    app: app.to_string(),
                    action: action.to_string(),
                    state: JobState::Running,
                    started_ms: now_ms(),
                    ended_ms: None,
                    error: None,
                    url: None,
                    exposure: None,
                    events: 0,
                },
                events: VecDeque::new(),
                subs: Vec::new(),
                stop_requested: false,
            }),
            redactor,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn view(&self) -> JobView {
        self.lock().view.clone()
    }

    pub fn is_running(&self) -> bool {
        self.lock().view.state == JobState::Running
    }

    /// The job object as JSON (secrets masked).
    fn view_json(&self, v: &JobView) -> String {
        let s = serde_json::to_string(v).unwrap_or_default();
        self.redactor.redact(&s).into_owned()
    }

    /// Record an engine event: `body` is its JSON object without the
    /// leading `{` (secrets already masked); `seq` goes first.
    pub fn record(&self, event: &str, body: &str) {
        let mut g = self.lock();
        if g.view.state != JobState::Running {
            return;
        }
        g.view.events += 1;
        let seq = g.view.events;
        let data: Arc<str> = if body.starts_with('}') {
            Arc::from(format!("{{\"seq\":{seq}}}"))
        } else {
            Arc::from(format!("{{\"seq\":{seq},{body}"))
        };
        let rec = Recorded {
            seq,
            event: Arc::from(event),
            data,
        };
        if g.events.len() >= EVENTS_PER_JOB {
            g.events.pop_front();
        }
        g.events.push_back(rec.clone());
        let item = rec.item();
        g.subs.retain(|w| match w.upgrade() {
            Some(q) => {
                q.push(item.clone());
                true
            }
            None => false,
        });
    }

    /// A line of the job's own (not the engine's) output, e.g. "cloning ...".
    pub fn note(&self, text: &str) {
        let v = json!({
            "script": self.dir.display().to_string(),
            "depth": 0,
            "time_ms": now_ms(),
            "type": "output",
            "index": null,
            "text": format!("{text}\r\n"),
        });
        let s = v.to_string();
        let s = self.redactor.redact(&s);
        self.record("output", &s[1..]);
    }

    /// Change fields of the job and tell its followers (`job` event).
    pub fn update(&self, f: impl FnOnce(&mut JobView)) {
        let mut g = self.lock();
        f(&mut g.view);
        let item = SseItem::new(None, "job", self.view_json(&g.view));
        g.subs.retain(|w| match w.upgrade() {
            Some(q) => {
                q.push(item.clone());
                true
            }
            None => false,
        });
    }

    /// End the job: followers get a `job` and an `end` event, then their
    /// streams close.
    pub fn finish(&self, state: JobState, error: Option<String>) {
        let mut g = self.lock();
        if g.view.state != JobState::Running {
            return;
        }
        g.view.state = state;
        g.view.error = error.map(|e| self.redactor.redact(&e).into_owned());
        g.view.ended_ms = Some(now_ms());
        let data = self.view_json(&g.view);
        let job = SseItem::new(None, "job", data.clone());
        let end = SseItem::new(None, "end", data);
        for w in g.subs.drain(..) {
            if let Some(q) = w.upgrade() {
                q.push(job.clone());
                q.close_with(Some(end.clone()));
            }
        }
    }

    /// Mark that a `stop` of the app is under way: this job then ends as
    /// `stopped`, not `failed`.
    pub fn request_stop(&self) {
        self.lock().stop_requested = true;
    }

    pub fn stop_requested(&self) -> bool {
        self.lock().stop_requested
    }

    /// Events after `after`, and a queue for the ones to come.
    pub fn subscribe(&self, after: u64, cap: usize) -> Subscription {
        let mut g = self.lock();
        let replay: Vec<Recorded> = g.events.iter().filter(|r| r.seq > after).cloned().collect();
        let first_kept = replay.first().map(|r| r.seq).unwrap_or(g.view.events + 1);
        let missed = first_kept.saturating_sub(after + 1);
        let queue = (g.view.state == JobState::Running).then(|| {
            let q = Queue::new(cap);
            g.subs.push(Arc::downgrade(&q));
            q
        });
        Subscription {
            replay,
            missed,
            queue,
            view: g.view.clone(),
        }
    }

    /// `?format=json`: `{"events", "next", "done"}`.
    pub fn events_json(&self, after: u64) -> Value {
        let g = self.lock();
        let events: Vec<Value> = g
            .events
            .iter()
            .filter(|r| r.seq > after)
            .filter_map(|r| serde_json::from_str(&r.data).ok())
            .collect();
        let next = g.events.back().map(|r| r.seq).unwrap_or(after).max(after);
        json!({
            "events": events,
            "next": next,
            "done": g.view.state != JobState::Running,
        })
    }
}

/// What an action does (validated before the job is created).
pub enum Action {
    Install { url: String, run: bool },
    Start(StartRequest),
    Stop,
    Update,
    Reset,
    Uninstall,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Install { .. } => "install",
            Action::Start(_) => "start",
            Action::Stop => "stop",
            Action::Update => "update",
            Action::Reset => "reset",
            Action::Uninstall => "uninstall",
        }
    }
}

fn store(engine: &Engine) -> Option<Arc<StateStore>> {
    engine
        .state()
        .cloned()
        .or_else(|| StateStore::open(engine.home().root()).ok().map(Arc::new))
}

/// Run an action on the job's thread; the job ends with the outcome.
pub fn run(engine: &Engine, hub: &Hub, job: &Arc<Job>, action: Action) {
    let name = job.app.clone();
    let out: Result<(), String> = match action {
        Action::Install { url, run } => install(engine, job, &name, &url, run),
        Action::Start(req) => start(engine, job, &req),
        Action::Stop => stop(engine, hub, job, &name),
        Action::Update => update(engine, job, &name),
        Action::Reset => reset(engine, hub, job, &name),
        Action::Uninstall => uninstall(engine, hub, job, &name),
    };
    match out {
        Ok(()) => job.finish(JobState::Succeeded, None),
        Err(_) if job.stop_requested() => job.finish(JobState::Stopped, None),
        Err(e) => {
            job.note(&format!("error: {e}"));
            job.finish(JobState::Failed, Some(e))
        }
    }
}

fn install(engine: &Engine, job: &Job, name: &str, url: &str, run: bool) -> Result<(), String> {
    job.note(&format!("cloning {url}"));
    let source = Source::Git(url.to_string());
    let dir = apps::fetch(engine, &source, name, &[]).map_err(|e| e.to_string())?;
    job.note(&format!("downloaded {name} into {}", dir.display()));
    let store = store(engine);
    if let Some(s) = &store {
        let mut rec = AppRecord::new(name, &dir, AppState::Installing);
        rec.source_url = Some(source.shown());
        let _ = s.upsert_app(&rec);
    }
    if !run {
        if let Some(s) = &store {
            let _ = s.set_app_state(name, AppState::Installed, None);
        }
        return Ok(());
    }
    match apps::install(engine, &dir) {
        Ok(_) => {
            if let Some(s) = &store {
                let _ = s.set_app_state(name, AppState::Installed, None);
            }
            job.note(&format!("installed {name}"));
            Ok(())
        }
        Err(e) => {
            if let Some(s) = &store {
                let _ = s.set_app_state(name, AppState::Failed, Some(&e.to_string()));
            }
            Err(e.to_string())
        }
    }
}

fn start(engine: &Engine, job: &Job, req: &StartRequest) -> Result<(), String> {
    let reply = match control::start(engine, req) {
        Ok(r) => r,
        Err(e) => {
            if job.stop_requested() {
                // stopped on purpose, not failed
                if let Some(s) = store(engine) {
                    let _ = s.set_app_state(&req.app, AppState::Stopped, None);
                }
            }
            return Err(e);
        }
    };
    if reply.get("status").and_then(|s| s.as_str()) == Some("stopped") {
        job.request_stop();
        return Err("stopped".into());
    }
    let url = reply.get("url").and_then(|u| u.as_str()).map(String::from);
    let exposure = reply.get("exposure").cloned();
    if let Some(err) = reply.get("expose_error").and_then(|e| e.as_str()) {
        job.note(&format!("not exposed: {err}"));
    }
    if let Some(u) = &url {
        job.note(&format!("web UI: {u}"));
    }
    job.update(|v| {
        v.url = url;
        v.exposure = exposure;
    });
    Ok(())
}

/// Stop the app: its other jobs end as `stopped`, its forms are cancelled.
fn stop_app(engine: &Engine, hub: &Hub, job: &Job, name: &str) -> Result<Vec<String>, String> {
    for other in hub.running_jobs(name) {
        if other.id != job.id {
            other.request_stop();
        }
    }
    hub.inputs().cancel_app(name);
    control::stop_fully(engine, name)
}

fn stop(engine: &Engine, hub: &Hub, job: &Job, name: &str) -> Result<(), String> {
    let stopped = stop_app(engine, hub, job, name)?;
    job.note(&if stopped.is_empty() {
        format!("{name} was not running")
    } else {
        format!("stopped {name} ({})", stopped.join(", "))
    });
    Ok(())
}

fn ensure_record(store: &StateStore, name: &str, dir: &Path) {
    if store.get_app(name).ok().flatten().is_none() {
        let _ = store.upsert_app(&AppRecord::new(name, dir, AppState::Installed));
    }
}

fn update(engine: &Engine, job: &Job, name: &str) -> Result<(), String> {
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    let store = store(engine);
    if let Some(s) = &store {
        ensure_record(s, name, &dir);
        let _ = s.set_app_state(name, AppState::Updating, None);
    }
    match apps::update(engine, &dir) {
        Ok(u) => {
            if let Some(s) = &store {
                let _ = s.set_app_state(name, AppState::Installed, None);
            }
            job.note(&match u {
                Updated::Script(o) => format!("updated {name} (ran {})", o.script.display()),
                Updated::Pulled { from, to } if from == to => format!("{name} is up to date"),
                Updated::Pulled { from, to } => format!("updated {name}: {from}..{to}"),
            });
            Ok(())
        }
        Err(e) => {
            if let Some(s) = &store {
                let _ = s.set_app_state(name, AppState::Failed, Some(&e.to_string()));
            }
            Err(e.to_string())
        }
    }
}

fn reset(engine: &Engine, hub: &Hub, job: &Job, name: &str) -> Result<(), String> {
    let dir = apps::app_dir(engine, name).map_err(|e| e.to_string())?;
    if control::live(engine, name, &dir).is_some() {
        stop_app(engine, hub, job, name)?;
    }
    let store = store(engine);
    match apps::reset(engine, &dir) {
        Ok(o) => {
            if let Some(s) = &store {
                if s.get_app(name)
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.state == AppState::Running)
                {
                    let _ = s.set_app_state(name, AppState::Stopped, None);
                }
            }
            job.note(&format!("reset {name} (ran {})", o.script.display()));
            Ok(())
        }
        Err(e) => {
            if matches!(e, AppError::RunFailed { .. } | AppError::Engine(_)) {
                if let Some(s) = &store {
                    let _ = s.set_app_state(name, AppState::Failed, Some(&e.to_string()));
                }
            }
            Err(e.to_string())
        }
    }
}

fn uninstall(engine: &Engine, hub: &Hub, job: &Job, name: &str) -> Result<(), String> {
    stop_app(engine, hub, job, name)?;
    let dir = apps::uninstall(engine, name).map_err(|e| e.to_string())?;
    if let Some(s) = store(engine) {
        let _ = s.remove_app(name);
    }
    job.note(&format!(
        "removed {} (shared drive data was not touched)",
        dir.display()
    ));
    Ok(())
}
