//! Loading scripts (`.json`, `.js`) and launcher metadata (`pinokio.js`,
//! `pinokio_meta.json`, `pinokio.json`), following section 1 of the
//! semantics note.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::js::{JsError, JsRuntime};

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: script not found")]
    NotFound { path: PathBuf },
    #[error("{path}: not a script (a script is a .json or .js file)")]
    NotAScript { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: JavaScript error while loading: {message}")]
    Js { path: PathBuf, message: String },
    #[error(
        "{path}: loading exceeded the time limit of {limit:?} and was stopped (runaway loop?)"
    )]
    Timeout {
        path: PathBuf,
        limit: std::time::Duration,
    },
    #[error("{path}: missing or invalid attribute: {action} ({detail})")]
    InvalidRun {
        path: PathBuf,
        action: String,
        detail: String,
    },
}

fn js_load_error(path: &Path, e: JsError) -> LoadError {
    match e {
        JsError::Timeout(limit) => LoadError::Timeout {
            path: path.to_path_buf(),
            limit,
        },
        other => LoadError::Js {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// The kind of script file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    Json,
    Js,
}

impl ScriptKind {
    /// `.json` or `.js`, case-insensitive.
    pub fn of(path: &Path) -> Option<ScriptKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(ScriptKind::Json),
            "js" => Some(ScriptKind::Js),
            _ => None,
        }
    }
}

/// A loaded script.
#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    pub kind: ScriptKind,
    /// The script object as JSON. In JS scripts, functions appear as
    /// `{"$function": "<key>"}`.
    pub body: Value,
}

/// Is this JSON value a marker for a JS function?
pub fn is_function_marker(v: &Value) -> bool {
    v.as_object()
        .map(|o| o.len() == 1 && o.contains_key("$function"))
        .unwrap_or(false)
}

/// Read and parse a JSON file with a located error.
pub fn read_json(path: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LoadError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            LoadError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Load a script file. `root` is the folder `kernel.info` helpers resolve
/// against (the script's folder).
pub fn load_script(path: &Path, js: &JsRuntime) -> Result<Script, LoadError> {
    let kind = ScriptKind::of(path).ok_or_else(|| LoadError::NotAScript {
        path: path.to_path_buf(),
    })?;
    if path.is_dir() {
        return Err(LoadError::NotAScript {
            path: path.to_path_buf(),
        });
    }
    if !path.exists() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let body = match kind {
        ScriptKind::Json => read_json(path)?,
        ScriptKind::Js => {
            let root = path.parent().unwrap_or(Path::new("/"));
            js.load_script(path, root)
                .map_err(|e| js_load_error(path, e))?
                .unwrap_or(Value::Null)
        }
    };
    Ok(Script {
        path: path.to_path_buf(),
        kind,
        body,
    })
}

impl Script {
    /// The step list of `action` (normally `run`). A function-valued action
    /// is called as `fn(kernel, info, ctx)` right after loading, so call this
    /// before loading another script in the same runtime.
    pub fn steps(
        &self,
        action: &str,
        js: &JsRuntime,
        ctx: &Value,
    ) -> Result<Vec<Value>, LoadError> {
        let invalid = |detail: &str| LoadError::InvalidRun {
            path: self.path.clone(),
            action: action.to_string(),
            detail: detail.to_string(),
        };
        let v = self.body.get(action).ok_or_else(|| {
            if self.body.is_object() {
                invalid("the script has no such key")
            } else {
                invalid("the script does not export an object")
            }
        })?;
        let list = if is_function_marker(v) {
            let root = self.path.parent().unwrap_or(Path::new("/"));
            js.call_exported(action, root, Some(ctx))
                .map_err(|e| js_load_error(&self.path, e))?
                .ok_or_else(|| invalid("the function returned undefined"))?
        } else {
            v.clone()
        };
        match list {
            Value::Array(a) if !a.is_empty() => Ok(a),
            Value::Array(_) => Err(invalid("it is empty")),
            _ => Err(invalid(
                "it must be an array of steps or a function returning one",
            )),
        }
    }

    /// Is `daemon` truthy?
    pub fn daemon(&self) -> bool {
        self.body
            .get("daemon")
            .map(crate::template::truthy)
            .unwrap_or(false)
    }
}

/// Where a launcher's `pinokio.js` lives: `<app>/pinokio.js`, else
/// `<app>/pinokio/pinokio.js` (then the launcher root is `<app>/pinokio`).
pub fn launcher_root(app: &Path) -> PathBuf {
    if app.join("pinokio.js").is_file() {
        return app.to_path_buf();
    }
    if app.join("pinokio").join("pinokio.js").is_file() {
        return app.join("pinokio");
    }
    app.to_path_buf()
}

/// Launcher metadata: the shallow merge of `pinokio.js`, `pinokio_meta.json`
/// and `pinokio.json` (later files win; a `menu` that is neither an array
/// nor a function is dropped from each).
#[derive(Debug, Clone)]
pub struct Launcher {
    pub app_dir: PathBuf,
    pub root: PathBuf,
    pub meta: Map<String, Value>,
    /// Problems found while reading the files (reported, not fatal).
    pub warnings: Vec<String>,
}

impl Launcher {
    pub fn title(&self) -> String {
        self.meta
            .get("title")
            .and_then(|v| v.as_str())
            .map(String::from)
            .unwrap_or_else(|| {
                self.app_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
    }
    pub fn str_field(&self, key: &str) -> Option<String> {
        self.meta
            .get(key)
            .and_then(|v| v.as_str())
            .map(String::from)
    }
}

/// Load launcher metadata. A broken `pinokio.js` is an error (it is the
/// launcher's main description); broken optional JSON files are warnings.
pub fn load_launcher(app: &Path, js: &JsRuntime) -> Result<Launcher, LoadError> {
    let root = launcher_root(app);
    let mut meta = Map::new();
    let mut warnings = Vec::new();
    let pjs = root.join("pinokio.js");
    if pjs.is_file() {
        let v = js
            .load_script(&pjs, &root)
            .map_err(|e| js_load_error(&pjs, e))?;
        // pinokiod does not call a function export for metadata
        merge_meta(&mut meta, v.unwrap_or(Value::Null));
    }
    for name in ["pinokio_meta.json", "pinokio.json"] {
        let p = root.join(name);
        if p.is_file() {
            match read_json(&p) {
                Ok(v) => merge_meta(&mut meta, v),
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    Ok(Launcher {
        app_dir: app.to_path_buf(),
        root,
        meta,
        warnings,
    })
}

fn merge_meta(meta: &mut Map<String, Value>, v: Value) {
    if let Value::Object(o) = v {
        for (k, v) in o {
            if k == "menu" && !(v.is_array() || is_function_marker(&v)) {
                continue;
            }
            meta.insert(k, v);
        }
    }
}
