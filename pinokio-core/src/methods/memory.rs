//! Memory methods (section 4.4): `local.set/rm/import`, `global.set/rm`,
//! `self.set/rm` and the one-word `set`/`rm`.

use serde_json::{Map, Value};

use super::json::{rm_files, set_files};
use super::{MethodCx, MethodError, Registry};
use crate::keypath;

pub fn register(r: &mut Registry) {
    r.register("local.set", |cx: &mut MethodCx<'_>, p: Value| {
        mem_set(cx, p, false).map(|_| None)
    });
    r.register("local.rm", |cx: &mut MethodCx<'_>, p: Value| {
        mem_rm(cx, p, false).map(|_| None)
    });
    r.register("global.set", |cx: &mut MethodCx<'_>, p: Value| {
        mem_set(cx, p, true).map(|_| None)
    });
    r.register("global.rm", |cx: &mut MethodCx<'_>, p: Value| {
        mem_rm(cx, p, true).map(|_| None)
    });
    r.register("local.import", local_import);
    r.register("set", set);
    r.register("rm", rm);
}

fn dump_local(cx: &MethodCx<'_>) {
    let local = cx.engine.memory().local(cx.script_id());
    cx.output(format!(
        "\n\n===================================================\n# local variables\n{}\n===================================================\n\n",
        serde_json::to_string_pretty(&local).unwrap_or_default()
    ));
}

/// `local.set` / `global.set`: key paths into the store; an array replaces it.
fn mem_set(cx: &MethodCx<'_>, p: Value, global: bool) -> Result<(), MethodError> {
    if !(p.is_array() || p.is_object() || p.is_null()) {
        return Err(MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: format!("params must be an object of key: value (got {p})"),
        });
    }
    let apply = |store: &mut Value| match p {
        Value::Array(_) => *store = p,
        Value::Object(map) => {
            for (k, v) in map {
                keypath::set(store, &k, v);
            }
        }
        _ => {}
    };
    let mem = cx.engine.memory();
    if global {
        mem.update_global(cx.script_id(), apply);
    } else {
        mem.update_local(cx.script_id(), apply);
        dump_local(cx);
    }
    Ok(())
}

fn key_list(p: &Value) -> Vec<String> {
    match p {
        Value::Array(a) => a
            .iter()
            .map(|k| match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => vec![s.clone()],
        Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn mem_rm(cx: &MethodCx<'_>, p: Value, global: bool) -> Result<(), MethodError> {
    let keys = key_list(&p);
    let mem = cx.engine.memory();
    let f = |v: &mut Value| {
        for k in &keys {
            keypath::unset(v, k);
        }
    };
    if global {
        mem.update_global(cx.script_id(), f);
    } else {
        mem.update_local(cx.script_id(), f);
        dump_local(cx);
    }
    Ok(())
}

/// `{ "<name>": "<script uri>" }`: copy another script's `local` into `local.<name>`.
fn local_import(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let map = p.as_object().cloned().unwrap_or_default();
    for (name, uri) in map {
        let uri = uri.as_str().ok_or_else(|| MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: format!("{name:?} must be a script path"),
        })?;
        let path = cx.resolve(uri)?;
        let other = cx.engine.memory().local_opt(&path.display().to_string());
        cx.engine
            .memory()
            .update_local(cx.script_id(), |l| match other {
                Some(v) => {
                    keypath::set(l, &name, v);
                }
                None => {
                    keypath::unset(l, &name);
                }
            });
    }
    Ok(None)
}

/// `set`: any of `local`, `global`, `self`/`json` (files), `key` (HOME/key.json).
fn set(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let map = p.as_object().cloned().unwrap_or_default();
    if let Some(l) = map.get("local") {
        mem_set(cx, l.clone(), false)?;
    }
    if let Some(g) = map.get("global") {
        mem_set(cx, g.clone(), true)?;
    }
    for k in ["self", "json"] {
        if let Some(files) = map.get(k) {
            set_files(cx, files)?;
        }
    }
    if let Some(Value::Object(keys)) = map.get("key") {
        let path = cx.engine.home().root().join("key.json");
        let mut doc = super::json::read_for_update(&path);
        if !doc.is_object() {
            doc = Value::Object(Map::new());
        }
        for (host, entry) in keys {
            let slot = &mut doc[host.as_str()];
            match (slot.as_object_mut(), entry.as_object()) {
                (Some(existing), Some(new)) => {
                    for (k, v) in new {
                        existing.insert(k.clone(), v.clone());
                    }
                }
                _ => *slot = entry.clone(),
            }
        }
        super::json::write_json_atomic(&path, &doc)?;
    }
    Ok(None)
}

/// `rm`: any of `local`, `global`, `self`/`json`.
fn rm(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let map = p.as_object().cloned().unwrap_or_default();
    if let Some(l) = map.get("local") {
        mem_rm(cx, l.clone(), false)?;
    }
    if let Some(g) = map.get("global") {
        mem_rm(cx, g.clone(), true)?;
    }
    for k in ["self", "json"] {
        if let Some(files) = map.get(k) {
            rm_files(cx, files)?;
        }
    }
    Ok(None)
}
