//! Events: the only way the core reports what happens. Frontends (CLI, HTTP,
//! tests) subscribe with an [`EventSink`]; the core never prints.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

/// One event of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// The script id (absolute script path) the event belongs to.
    pub script: String,
    /// Nesting depth: 0 for the top-level run, 1 for a `script.start` child...
    pub depth: usize,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The last step finished (or `next: null`), non-daemon.
    Finished,
    /// A daemon script is idle after its last step and keeps running.
    Daemon,
    /// A step failed; the run halted.
    Error,
    /// Stopped from outside (Ctrl-C, `script.stop`, a frontend).
    Stopped,
}

/// What happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run started.
    RunStart {
        uri: String,
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        args: Option<Value>,
        steps: usize,
    },
    /// A step is about to run: its rendered form and the memory it sees
    /// (pinokiod's `memory` + `start` events).
    StepStart {
        index: usize,
        id: Option<String>,
        method: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        when: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        args: Option<Value>,
        local: Value,
        global: Value,
    },
    /// A shell started by a step exited (`code`: `None` when killed by a signal).
    ShellExit {
        index: usize,
        shell_id: String,
        code: Option<i32>,
    },
    /// A web UI URL was found in a shell's output or listening ports (see
    /// [`crate::urlwatch`]): a fallback for launchers that set no
    /// `local.url`, never written into `local`.
    UrlDetected {
        index: Option<usize>,
        shell_id: String,
        url: String,
        /// `gradio`, `uvicorn`, ..., `generic`, `listening`.
        framework: String,
        /// A share link or tunnel rather than a local address.
        public: bool,
    },
    /// A step was skipped by its `when`.
    StepSkipped {
        index: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        when: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        args: Option<Value>,
        local: Value,
    },
    /// Text a step printed (terminal output, `log`, method messages).
    Output { index: Option<usize>, text: String },
    /// How far a download of a step has come (`fs.download`, `hf.download`):
    /// a few per second while bytes arrive, then one with `done: true` when
    /// the file is in place. Frontends draw progress bars from these; the
    /// step also prints a plain progress line every few seconds.
    Progress {
        index: usize,
        /// The file: its name, or its path in a Hugging Face repository.
        name: String,
        /// Bytes downloaded so far (resumed bytes included).
        bytes: u64,
        /// The file size, when the server said.
        total: Option<u64>,
        /// Bytes per second over the last few seconds.
        rate: u64,
        /// Seconds left, when the size and rate are known.
        eta: Option<u64>,
        done: bool,
    },
    /// A step finished with a result (`None`: `undefined`).
    StepResult { index: usize, result: Option<Value> },
    /// Something suspicious that upstream ignores silently (an unresolved
    /// template, a syntax error that left an object unrendered...).
    Warning {
        index: Option<usize>,
        message: String,
    },
    /// A step failed.
    StepError {
        index: usize,
        method: Option<String>,
        message: String,
    },
    /// A message for the user (`notify`).
    Notify {
        index: usize,
        message: String,
        href: Option<String>,
        kind: Option<String>,
    },
    /// A URL for the user to open (`browser.open`, `web.open`, `tab.open`...).
    OpenUrl {
        index: usize,
        url: String,
        target: Option<String>,
    },
    /// A modal message (`modal`, `htmlmodal.*`).
    Modal { index: usize, params: Value },
    /// An `input` form is waiting for an answer.
    InputRequest { index: usize, form: Value },
    /// The run ended.
    RunEnd {
        status: RunStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        error: Option<String>,
    },
}

/// Receives events. Must be cheap and never block for long.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: &Event);
}

/// Discards everything.
pub struct NullSink;
impl EventSink for NullSink {
    fn emit(&self, _event: &Event) {}
}

/// Keeps every event in memory (tests, `pinokio plan`).
#[derive(Default, Clone)]
pub struct CollectSink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl CollectSink {
    pub fn new() -> Self {
        Self::default()
    }
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
    /// Take the events so far, leaving none.
    pub fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl EventSink for CollectSink {
    fn emit(&self, event: &Event) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
}

/// Calls a closure for each event.
pub struct FnSink<F: Fn(&Event) + Send + Sync>(pub F);
impl<F: Fn(&Event) + Send + Sync> EventSink for FnSink<F> {
    fn emit(&self, event: &Event) {
        (self.0)(event)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
