//! API methods: one module per namespace behind one [`Method`] trait and one
//! [`Registry`]. Each method parses its rendered `params` into a typed struct
//! (`serde_json::Value` stops here) and returns the step result (`None` is
//! JavaScript `undefined`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::{Engine, RunContext};
use crate::events::EventKind;
use crate::js::JsRuntime;

pub mod download;
pub mod drive;
pub mod env;
pub mod fs;
pub mod gui;
pub mod hf;
pub mod json;
pub mod jump;
pub mod log;
pub mod memory;
pub mod net;
pub mod process;
pub mod script;
pub mod shell;

/// Why a step failed inside a method.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("invalid params for {method}: {message}")]
    InvalidParams { method: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not supported yet: {method} ({reason})")]
    Unsupported { method: String, reason: String },
    #[error("{0}")]
    Failed(String),
    #[error("the script was stopped")]
    Stopped,
}

impl MethodError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MethodError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Parse rendered params into a typed struct.
pub fn parse_params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, MethodError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params).map_err(|e| MethodError::InvalidParams {
        method: method.to_string(),
        message: e.to_string(),
    })
}

/// Where execution goes after a `jump`/`goto`.
#[derive(Debug, Clone, PartialEq)]
pub enum JumpTarget {
    Index(Value),
    Id(String),
}

/// What a method can see and do.
pub struct MethodCx<'a> {
    pub engine: &'a Engine,
    pub js: &'a JsRuntime,
    pub run: &'a RunContext,
    /// Index of the step.
    pub index: usize,
    /// The method name as called.
    pub method: &'a str,
    /// The step's `input`.
    pub input: &'a Option<Value>,
    /// Set by `jump`/`goto`.
    pub jump: Option<JumpTarget>,
}

impl MethodCx<'_> {
    /// Emit an event for this run.
    pub fn emit(&self, kind: EventKind) {
        self.engine.emit(self.run, kind);
    }
    /// Print text to the run's terminal.
    pub fn output(&self, text: impl Into<String>) {
        self.emit(EventKind::Output {
            index: Some(self.index),
            text: text.into(),
        });
    }
    /// Resolve a path parameter like upstream's file methods: `~/...`,
    /// absolute, git URI, or relative to the script folder.
    pub fn resolve(&self, p: &str) -> Result<PathBuf, MethodError> {
        self.engine
            .home()
            .resolve(p, Some(&self.run.cwd))
            .map_err(|e| MethodError::Failed(e.to_string()))
    }
    /// Plain `path.resolve(cwd, p)` (no `~/` expansion), as `json.*` uses.
    pub fn resolve_plain(&self, p: &str) -> PathBuf {
        crate::home::normalize(&self.run.cwd.join(p))
    }
    /// Has the run been stopped?
    pub fn stopped(&self) -> bool {
        self.run.stop.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// The script id.
    pub fn script_id(&self) -> &str {
        &self.run.id
    }
    pub fn cwd(&self) -> &Path {
        &self.run.cwd
    }
}

/// One API method.
pub trait Method: Send + Sync {
    fn call(&self, cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError>;
}

impl<F> Method for F
where
    F: Fn(&mut MethodCx<'_>, Value) -> Result<Option<Value>, MethodError> + Send + Sync,
{
    fn call(&self, cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
        self(cx, params)
    }
}

/// Method names upstream has that we do not run (yet), with the reason shown
/// to the user.
pub const NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "hf.upload",
        "Hugging Face uploads are not supported headless",
    ),
    (
        "hf.login",
        "interactive Hugging Face login is not supported headless; set HF_TOKEN",
    ),
    (
        "hf.logout",
        "interactive Hugging Face login is not supported headless",
    ),
    ("gradio.predict", "not implemented"),
    (
        "script.download",
        "downloading launchers arrives with app installs",
    ),
    ("script.restart", "not implemented"),
    (
        "cloudflare.tunnel",
        "tunnels arrive with pinokio-cloud exposure",
    ),
    (
        "cloudflare.stop",
        "tunnels arrive with pinokio-cloud exposure",
    ),
    ("web.expose", "exposure arrives with pinokio-cloud"),
    (
        "key.set",
        "the desktop key store dialog does not exist headless",
    ),
    (
        "key.get",
        "the desktop key store dialog does not exist headless (and is broken upstream)",
    ),
    ("import", "broken upstream; use local.import"),
    (
        "clipboard.copy",
        "there is no clipboard on a headless server",
    ),
    (
        "clipboard.paste",
        "there is no clipboard on a headless server",
    ),
    (
        "filepicker.open",
        "there is no file dialog on a headless server",
    ),
    ("terminal.upload", "desktop terminal upload"),
    ("app.launch", "desktop application launcher"),
    ("app.search", "desktop application launcher"),
    ("app.info", "desktop application launcher"),
    ("app.refresh", "desktop application launcher"),
    ("app.download", "use `pinokio install`"),
    (
        "github.create",
        "GitHub account integration is desktop-only",
    ),
    ("github.fork", "GitHub account integration is desktop-only"),
];

/// The method table.
#[derive(Clone, Default)]
pub struct Registry {
    methods: BTreeMap<String, Arc<dyn Method>>,
    unsupported: BTreeMap<String, String>,
}

/// How a method name resolved.
pub enum Lookup {
    Found(Arc<dyn Method>),
    Unsupported(String),
    Unknown,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in method.
    pub fn standard() -> Self {
        let mut r = Registry::empty();
        for (name, why) in NOT_SUPPORTED {
            r.unsupported.insert((*name).into(), (*why).into());
        }
        log::register(&mut r);
        memory::register(&mut r);
        json::register(&mut r);
        fs::register(&mut r);
        jump::register(&mut r);
        script::register(&mut r);
        shell::register(&mut r);
        process::register(&mut r);
        net::register(&mut r);
        gui::register(&mut r);
        env::register(&mut r);
        download::register(&mut r);
        drive::register(&mut r);
        hf::register(&mut r);
        r
    }

    /// Add or replace a method.
    pub fn register(&mut self, name: &str, m: impl Method + 'static) {
        self.unsupported.remove(name);
        self.methods.insert(name.to_string(), Arc::new(m));
    }

    /// Look a method up.
    pub fn lookup(&self, name: &str) -> Lookup {
        if let Some(m) = self.methods.get(name) {
            return Lookup::Found(m.clone());
        }
        if let Some(why) = self.unsupported.get(name) {
            return Lookup::Unsupported(why.clone());
        }
        if name.starts_with("kernel.") {
            return Lookup::Unsupported("kernel.* pass-through calls are not supported".into());
        }
        Lookup::Unknown
    }

    /// Names of the methods that run.
    pub fn names(&self) -> Vec<String> {
        self.methods.keys().cloned().collect()
    }

    /// Names that are known but fail with "not supported yet".
    pub fn unsupported_names(&self) -> Vec<String> {
        self.unsupported.keys().cloned().collect()
    }
}
