//! `json.set`, `json.get`, `json.rm` (section 4.3), also behind `self.set`,
//! `self.rm`, `set` and `rm`. Files are written atomically (temp file, then
//! rename), so a crash never leaves half a JSON file.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{MethodCx, MethodError, Registry};
use crate::keypath;

pub fn register(r: &mut Registry) {
    // `self.set`/`self.rm` are the same file operations (section 4.4)
    for name in ["json.set", "self.set"] {
        r.register(name, |cx: &mut MethodCx<'_>, p: Value| {
            set_files(cx, &p).map(|_| None)
        });
    }
    for name in ["json.rm", "self.rm"] {
        r.register(name, |cx: &mut MethodCx<'_>, p: Value| {
            rm_files(cx, &p).map(|_| None)
        });
    }
    r.register("json.get", json_get);
}

fn is_json_name(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".json")
}

/// Read a JSON file for modification: missing, empty or invalid counts as `{}`.
pub fn read_for_update(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// Write `v` as JSON indented by two spaces, atomically.
pub fn write_json_atomic(path: &Path, v: &Value) -> Result<(), MethodError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| MethodError::Failed(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Write bytes atomically: a temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MethodError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| MethodError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp: PathBuf = dir.join(format!(".{name}.pinokio-tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| MethodError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        MethodError::io(path, e)
    })
}

fn object_params<'a>(
    cx: &MethodCx<'_>,
    p: &'a Value,
) -> Result<&'a Map<String, Value>, MethodError> {
    p.as_object().ok_or_else(|| MethodError::InvalidParams {
        method: cx.method.to_string(),
        message: "params must be an object of { \"<file>.json\": ... }".into(),
    })
}

/// `{ "<file>.json": { "<key path>": value } }`
pub fn set_files(cx: &MethodCx<'_>, p: &Value) -> Result<(), MethodError> {
    for (file, updates) in object_params(cx, p)? {
        if !is_json_name(file) {
            cx.output(format!(
                "{}: skipped {file:?} (not a .json file)\n",
                cx.method
            ));
            continue;
        }
        let path = cx.resolve_plain(file);
        let mut doc = read_for_update(&path);
        if let Some(map) = updates.as_object() {
            for (k, v) in map {
                if !keypath::set(&mut doc, k, v.clone()) {
                    cx.output(format!(
                        "{}: could not set {k:?} in {}\n",
                        cx.method,
                        path.display()
                    ));
                }
            }
        }
        write_json_atomic(&path, &doc)?;
    }
    Ok(())
}

/// `{ "<file>.json": ["<key path>", ...] }`
pub fn rm_files(cx: &MethodCx<'_>, p: &Value) -> Result<(), MethodError> {
    for (file, keys) in object_params(cx, p)? {
        if !is_json_name(file) {
            continue;
        }
        let path = cx.resolve_plain(file);
        let mut doc = read_for_update(&path);
        let keys: Vec<String> = match keys {
            Value::Array(a) => a
                .iter()
                .map(|k| match k {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        for k in keys {
            keypath::unset(&mut doc, &k);
        }
        write_json_atomic(&path, &doc)?;
    }
    Ok(())
}

/// `{ "<local name>": "<file>.json" }` stores the file in `local.<name>`
/// (missing file: `null`; invalid JSON: not set). Extension:
/// `{ "<local name>": { "<file>.json": "$.json.path" } }` stores a JSONPath
/// query result (a key path when the query does not start with `$`).
fn json_get(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let map = object_params(cx, &p)?.clone();
    let mut stored = Map::new();
    for (name, spec) in map {
        let (file, query) = match &spec {
            Value::String(f) => (f.clone(), None),
            Value::Object(o) if o.len() == 1 => {
                let (f, q) = o
                    .iter()
                    .next()
                    .map(|(f, q)| (f.clone(), q.clone()))
                    .unwrap_or_default();
                let q = q
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| MethodError::InvalidParams {
                        method: cx.method.to_string(),
                        message: format!("query for {name:?} must be a string"),
                    })?;
                (f, Some(q))
            }
            _ => {
                return Err(MethodError::InvalidParams {
                    method: cx.method.to_string(),
                    message: format!("{name:?} must name a .json file"),
                })
            }
        };
        let path = cx.resolve_plain(&file);
        let value = match std::fs::read_to_string(&path) {
            Err(_) => Some(Value::Null),
            Ok(t) => serde_json::from_str::<Value>(&t).ok(),
        };
        let value = match (value, query) {
            (Some(v), Some(q)) if q.starts_with('$') => {
                Some(keypath::query(&v, &q).map_err(|e| MethodError::Failed(e.to_string()))?)
            }
            (Some(v), Some(q)) => keypath::get(&v, &q).cloned(),
            (v, None) => v,
            (None, Some(_)) => None,
        };
        if let Some(v) = value {
            stored.insert(name.clone(), v.clone());
            cx.engine
                .memory()
                .update_local(cx.script_id(), |l| keypath::set(l, &name, v));
        }
    }
    cx.output(format!(
        "{}\n",
        serde_json::to_string_pretty(&Value::Object(stored)).unwrap_or_default()
    ));
    Ok(None)
}
