//! The hub: the engine's event sink and input answerer for `pinokio serve`.
//!
//! Every core [`Event`] is attributed to an app by its script path
//! (`HOME/api/<app>/...`), appended to the app's running jobs (numbered, the
//! last 5,000 kept) and pushed to their followers; `output` events also feed
//! the app's live log stream, split into lines. Pushing never waits: each
//! client has a bounded queue that drops its oldest items when the client
//! does not keep up (see [`crate::queue`]).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use pinokio_core::engine::InputAnswers;
use pinokio_core::events::{Event, EventKind, EventSink};
use pinokio_core::PinokioHome;
use serde_json::{json, Map, Value};

use crate::inputs::Inputs;
use crate::jobs::Job;
use crate::queue::{Queue, SseItem};
use crate::redact::Redactor;

/// Jobs kept (finished ones beyond this are forgotten, oldest first).
pub const JOBS_KEPT: usize = 200;

/// Queue length per event-stream client.
pub const CLIENT_QUEUE: usize = 4_096;

/// A partial log line longer than this is sent without waiting for its end.
const MAX_PARTIAL: usize = 8 * 1024;

#[derive(Default)]
struct JobTable {
    next: u64,
    jobs: VecDeque<Arc<Job>>,
}

#[derive(Default)]
struct LogFeed {
    subs: Vec<Weak<Queue>>,
    /// Unfinished line per script.
    partial: HashMap<String, String>,
}

/// See the module documentation.
pub struct Hub {
    api: PathBuf,
    prefixes: Vec<String>,
    jobs: Mutex<JobTable>,
    logs: Mutex<HashMap<String, LogFeed>>,
    inputs: Inputs,
    redactor: Arc<Redactor>,
}

/// Why a job could not be created.
pub enum Busy {
    /// The app has a running job (its id).
    Job(String),
}

impl Hub {
    pub fn new(home: &PinokioHome) -> Arc<Hub> {
        let api = home.api();
        let mut prefixes = vec![format!("{}/", api.display())];
        if let Ok(c) = std::fs::canonicalize(home.root()) {
            let p = format!("{}/", c.join("api").display());
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
        Arc::new(Hub {
            api,
            prefixes,
            jobs: Mutex::new(JobTable::default()),
            logs: Mutex::new(HashMap::new()),
            inputs: Inputs::default(),
            redactor: Arc::new(Redactor::new(home.root())),
        })
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    /// The app and the script (relative to the app folder) of a script id.
    pub fn attribute<'a>(&self, script: &'a str) -> Option<(&'a str, &'a str)> {
        self.prefixes.iter().find_map(|p| {
            let rest = script.strip_prefix(p.as_str())?;
            let (app, rel) = rest.split_once('/').unwrap_or((rest, ""));
            (!app.is_empty()).then_some((app, rel))
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create a job for `app`. Refused while the app has a running job,
    /// unless `action` is `stop`.
    pub fn new_job(&self, app: &str, action: &str) -> Result<Arc<Job>, Busy> {
        let mut t = self.table();
        if action != "stop" {
            if let Some(j) = t.jobs.iter().find(|j| j.app == app && j.is_running()) {
                return Err(Busy::Job(j.id.clone()));
            }
        }
        t.next += 1;
        let job = Arc::new(Job::new(
            t.next,
            app,
            action,
            &self.api.join(app),
            self.redactor.clone(),
        ));
        t.jobs.push_back(job.clone());
        // the job may run with secrets set since the last scan
        self.redactor.refresh();
        while t.jobs.len() > JOBS_KEPT {
            match t.jobs.iter().position(|j| !j.is_running()) {
                Some(i) => {
                    t.jobs.remove(i);
                }
                None => break,
            }
        }
        Ok(job)
    }

    pub fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.table().jobs.iter().find(|j| j.id == id).cloned()
    }

    /// Jobs, newest first (of one app when given).
    pub fn jobs(&self, app: Option<&str>) -> Vec<Arc<Job>> {
        self.table()
            .jobs
            .iter()
            .rev()
            .filter(|j| app.is_none_or(|a| j.app == a))
            .cloned()
            .collect()
    }

    pub fn running_jobs(&self, app: &str) -> Vec<Arc<Job>> {
        self.table()
            .jobs
            .iter()
            .filter(|j| j.app == app && j.is_running())
            .cloned()
            .collect()
    }

    /// The job working on the app now (not a `stop`, when there is another).
    pub fn active_job(&self, app: &str) -> Option<Arc<Job>> {
        let running = self.running_jobs(app);
        running
            .iter()
            .find(|j| j.action != "stop")
            .or(running.first())
            .cloned()
    }

    /// Follow the app's log lines (the caller sends the tail itself).
    pub fn subscribe_logs(&self, app: &str) -> Arc<Queue> {
        let q = Queue::new(CLIENT_QUEUE);
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.entry(app.to_string())
            .or_default()
            .subs
            .push(Arc::downgrade(&q));
        q
    }

    fn feed_log(&self, app: &str, script: &str, text: &str, flush: bool) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(feed) = logs.get_mut(app) else {
            return;
        };
        feed.subs.retain(|w| w.strong_count() > 0);
        if feed.subs.is_empty() {
            logs.remove(app);
            return;
        }
        let buf = feed.partial.entry(script.to_string()).or_default();
        buf.push_str(text);
        let mut lines = Vec::new();
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            lines.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        if (flush && !buf.is_empty()) || buf.len() > MAX_PARTIAL {
            lines.push(std::mem::take(buf).trim_end_matches('\r').to_string());
        }
        if lines.is_empty() {
            return;
        }
        let items: Vec<SseItem> = lines
            .into_iter()
            .map(|l| {
                let data = json!({"script": script, "text": l}).to_string();
                SseItem::new(None, "log", self.redactor.redact(&data).into_owned())
            })
            .collect();
        for w in &feed.subs {
            if let Some(q) = w.upgrade() {
                for it in &items {
                    q.push(it.clone());
                }
            }
        }
    }
}

impl EventSink for Hub {
    fn emit(&self, event: &Event) {
        let Some((app, rel)) = self.attribute(&event.script) else {
            return;
        };
        let jobs = self.running_jobs(app);
        if !jobs.is_empty() {
            if let Ok(text) = serde_json::to_string(event) {
                let text = self.redactor.redact(&text);
                let kind = event_type(&text);
                for j in &jobs {
                    j.record(&kind, &text[1..]);
                }
            }
        }
        match &event.kind {
            EventKind::Output { text, .. } => self.feed_log(app, rel, text, false),
            EventKind::ShellExit { .. } | EventKind::RunEnd { .. } => {
                self.feed_log(app, rel, "", true)
            }
            _ => {}
        }
    }
}

impl InputAnswers for Hub {
    fn answer(&self, script: &str, form: &Value) -> Option<Map<String, Value>> {
        let app = self.attribute(script).map(|(a, _)| a.to_string());
        let job = app
            .as_deref()
            .and_then(|a| self.active_job(a))
            .map(|j| j.id.clone());
        self.inputs.wait(app, script, job, form)
    }
}

/// The `type` of a serialised event: the first top-level `"type":"..."`
/// (it follows `script`, `depth` and `time_ms`; quotes inside strings are
/// escaped, so nothing before it can look like it).
fn event_type(json: &str) -> String {
    json.find(",\"type\":\"")
        .map(|i| &json[i + 9..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("event")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_and_attribution() {
        assert_eq!(
            event_type(
                r#"{"script":"/a \"type\":\"x","depth":0,"time_ms":1,"type":"output","index":0}"#
            ),
            "output"
        );
        let hub = Hub::new(&PinokioHome::new("/h"));
        assert_eq!(
            hub.attribute("/h/api/app/start.js"),
            Some(("app", "start.js"))
        );
        assert_eq!(
            hub.attribute("/h/api/app/x/y.json"),
            Some(("app", "x/y.json"))
        );
        assert_eq!(hub.attribute("/h/other/app/start.js"), None);
        assert_eq!(hub.attribute("/h/api/"), None);
    }
}
