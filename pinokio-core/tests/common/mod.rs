//! Helpers shared by the integration tests: turning engine events into the
//! per-step records the conformance pack and fixture launchers describe.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pinokio_core::events::{Event, EventKind};
use serde_json::{json, Map, Value};

/// Copy a folder tree, keeping file modes.
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&e.path(), &to);
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).unwrap();
            std::os::unix::fs::symlink(target, &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Per-step records of one script's run, as the conformance pack writes them.
pub fn step_records(events: &[Event], script: &str) -> (Vec<usize>, Vec<Value>) {
    let mut visited = Vec::new();
    let mut steps: Vec<Value> = Vec::new();
    for e in events.iter().filter(|e| e.script == script) {
        match &e.kind {
            EventKind::StepStart {
                index,
                method,
                when,
                params,
                input,
                args,
                local,
                ..
            } => {
                visited.push(*index);
                let mut o = Map::new();
                o.insert("index".into(), json!(index));
                o.insert("skipped".into(), json!(false));
                o.insert("method".into(), json!(method));
                if let Some(w) = when {
                    o.insert("when".into(), w.clone());
                }
                o.insert("params".into(), params.clone().unwrap_or(Value::Null));
                if let Some(i) = input {
                    o.insert("input".into(), input_view(i));
                }
                if let Some(a) = args {
                    o.insert("args".into(), a.clone());
                }
                o.insert("local_before".into(), local.clone());
                steps.push(Value::Object(o));
            }
            EventKind::StepSkipped {
                index,
                input,
                args,
                local,
                ..
            } => {
                visited.push(*index);
                let mut o = Map::new();
                o.insert("index".into(), json!(index));
                o.insert("skipped".into(), json!(true));
                if let Some(i) = input {
                    o.insert("input".into(), input_view(i));
                }
                if let Some(a) = args {
                    o.insert("args".into(), a.clone());
                }
                o.insert("local_before".into(), local.clone());
                steps.push(Value::Object(o));
            }
            EventKind::Output {
                index: Some(i),
                text,
            } => {
                if let Some(last) = steps.last_mut() {
                    if last["index"] == json!(i) {
                        let prev = last
                            .get("output")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_string();
                        last["output"] = json!(prev + text);
                    }
                }
            }
            EventKind::StepResult { index, result } => {
                if let Some(last) = steps.last_mut() {
                    if last["index"] == json!(index) {
                        let shell = last["method"]
                            .as_str()
                            .map(|m| m.starts_with("shell."))
                            .unwrap_or(false);
                        match result {
                            // the pack records shell results without id/stdout/response
                            Some(Value::Object(o)) if shell => {
                                let mut o = o.clone();
                                for k in ["id", "stdout", "response"] {
                                    o.shift_remove(k);
                                }
                                last["result"] = Value::Object(o);
                            }
                            Some(r) => last["result"] = r.clone(),
                            None => last["result_undefined"] = json!(true),
                        }
                    }
                }
            }
            EventKind::StepError { index, message, .. } => {
                if !visited.contains(index) || visited.last() != Some(index) {
                    visited.push(*index);
                }
                match steps.last_mut() {
                    Some(last) if last["index"] == json!(index) => last["error"] = json!(message),
                    _ => steps.push(json!({"index": index, "error": message})),
                }
            }
            _ => {}
        }
    }
    (visited, steps)
}

/// pinokiod's view of `input` spreads a Buffer into indexed keys and drops
/// `stdout`/`response` of shell results.
fn input_view(v: &Value) -> Value {
    if let Some(o) = v.as_object() {
        if o.contains_key("stdout") && o.contains_key("id") {
            let mut o = o.clone();
            o.shift_remove("stdout");
            o.shift_remove("response");
            return Value::Object(o);
        }
    }
    if let Some(o) = v.as_object() {
        if o.len() == 2 && o.get("type") == Some(&json!("Buffer")) {
            if let Some(Value::Array(data)) = o.get("data") {
                return Value::Object(
                    data.iter()
                        .enumerate()
                        .map(|(i, b)| (i.to_string(), b.clone()))
                        .collect(),
                );
            }
        }
    }
    v.clone()
}

/// Replace the home path with `<PINOKIO_HOME>` in every string.
pub fn redact_home(v: &Value, home: &Path) -> Value {
    let h = home.display().to_string();
    match v {
        Value::String(s) => Value::String(shell_ids(&s.replace(&h, "<PINOKIO_HOME>"))),
        Value::Array(a) => Value::Array(a.iter().map(|x| redact_home(x, home)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.replace(&h, "<PINOKIO_HOME>"), redact_home(x, home)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Our shell ids (see `methods::shell::new_shell_id`) become `<SHELL_ID>`.
fn shell_ids(s: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}")
            .unwrap()
    });
    re.replace_all(s, "<SHELL_ID>").into_owned()
}

/// Files in `dir` that are new or changed compared with `pristine`, in the
/// pack's shape, plus deleted ones.
pub fn file_changes(
    pristine: &Path,
    dir: &Path,
    ignore: &[String],
    home: &Path,
) -> (Value, Vec<String>) {
    let mut changed = Map::new();
    walk(dir, dir, &mut |rel: &str, p: &Path| {
        if ignored(rel, ignore) {
            return;
        }
        let orig = pristine.join(rel);
        let meta = std::fs::symlink_metadata(p).unwrap();
        if meta.is_dir() {
            let empty = std::fs::read_dir(p)
                .map(|mut r| r.next().is_none())
                .unwrap_or(false);
            if empty && !orig.is_dir() {
                changed.insert(format!("{rel}/"), json!({"type": "dir"}));
            }
            return;
        }
        let bytes = std::fs::read(p).unwrap_or_default();
        if std::fs::read(&orig).ok().as_deref() == Some(&bytes[..]) {
            return;
        }
        let entry = match String::from_utf8(bytes.clone()) {
            Ok(t) if t.len() <= 20000 => {
                json!({"type": "file", "text": t.replace(&home.display().to_string(), "<PINOKIO_HOME>")})
            }
            _ => json!({"type": "file", "size": bytes.len()}),
        };
        changed.insert(rel.to_string(), entry);
    });
    // ignored folders that exist show as dirs
    for g in ignore {
        if let Some(prefix) = g.strip_suffix("/**") {
            if dir.join(prefix).is_dir() {
                changed.insert(format!("{prefix}/"), json!({"type": "dir"}));
            }
        }
    }
    let mut deleted = Vec::new();
    walk(pristine, pristine, &mut |rel: &str, p: &Path| {
        if !p.is_dir() && !dir.join(rel).exists() {
            deleted.push(rel.to_string());
        }
    });
    (Value::Object(changed), deleted)
}

fn ignored(rel: &str, ignore: &[String]) -> bool {
    if rel == "logs" || rel.starts_with("logs/") {
        return true;
    }
    ignore.iter().any(|g| match g.strip_suffix("/**") {
        Some(prefix) => rel == prefix || rel.starts_with(&format!("{prefix}/")),
        None => rel == g,
    })
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        f(&rel, &p);
        if p.is_dir()
            && !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        {
            walk(root, &p, f);
        }
    }
}

/// Apply JSON-pointer patches: `{path, value}` sets, `{path, remove: true}` deletes.
pub fn apply_patch(doc: &mut Value, path: &str, value: Option<Value>) {
    let parts: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = parts.split_last().expect("empty patch path");
    let mut cur = doc;
    for p in parents {
        cur = match cur {
            Value::Object(o) => o.entry(p.clone()).or_insert_with(|| json!({})),
            Value::Array(a) => {
                let i: usize = p.parse().expect("array index");
                &mut a[i]
            }
            _ => panic!("patch path {path} goes through a scalar"),
        };
    }
    match (cur, value) {
        (Value::Object(o), Some(v)) => {
            o.insert(last.clone(), v);
        }
        (Value::Object(o), None) => {
            o.shift_remove(last);
        }
        (Value::Array(a), Some(v)) => {
            let i: usize = last.parse().expect("array index");
            if i < a.len() {
                a[i] = v;
            } else {
                a.push(v);
            }
        }
        (Value::Array(a), None) => {
            let i: usize = last.parse().expect("array index");
            if i < a.len() {
                a.remove(i);
            }
        }
        _ => panic!("patch path {path} ends at a scalar"),
    }
}
