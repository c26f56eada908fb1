//! Walks the fixture launchers in `tests/fixtures/<name>/`: each has an
//! `app/` folder (copied to `HOME/api/<name>`) and an `expect.json` saying
//! how to run it and what must come out.
//!
//! expect.json fields: `script` (required), `args`, `status`
//! (finished|daemon|error|stopped), `error` {step, method, contains[]},
//! `visited`, `output_contains[]`, `output_excludes[]`, `warnings_contain[]`,
//! `running_after`, `local_after` ("<ANY>" matches any value),
//! `files` {rel: text}, `load_limit_ms`, `template_limit_ms`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::Value;

fn matches_any(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::String(s), _) if s == "<ANY>" => true,
        (Value::Object(e), Value::Object(g)) => {
            e.len() == g.len()
                && e.iter()
                    .all(|(k, v)| g.get(k).map(|gv| matches_any(v, gv)).unwrap_or(false))
        }
        (e, g) => e == g,
    }
}

fn run_fixture(dir: &Path) -> Vec<String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let expect: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expect.json")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/expect.json: {e}"));
    let tmp = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let mut options = EngineOptions::default();
    if let Some(ms) = expect.get("load_limit_ms").and_then(|v| v.as_u64()) {
        options.load_limit = Duration::from_millis(ms);
    }
    if let Some(ms) = expect.get("template_limit_ms").and_then(|v| v.as_u64()) {
        options.template_limit = Duration::from_millis(ms);
    }
    let engine = Engine::builder(PinokioHome::new(tmp.path().join("home")))
        .facts(Facts::cpu_only())
        .options(options)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let app = engine.home().api().join(&name);
    common::copy_tree(&dir.join("app"), &app);
    let script = expect["script"].as_str().unwrap();
    let mut req = RunRequest::new(format!("~/api/{name}/{script}"));
    if let Some(a) = expect.get("args") {
        req.input = Some(a.clone());
    }
    let out = engine.run(req);
    let events = sink.events();
    let id = app.join(script).display().to_string();
    let mut fails = Vec::new();
    let status = match out.status {
        RunStatus::Finished => "finished",
        RunStatus::Daemon => "daemon",
        RunStatus::Error => "error",
        RunStatus::Stopped => "stopped",
    };
    if let Some(s) = expect.get("status").and_then(|s| s.as_str()) {
        if s != status {
            fails.push(format!(
                "status: expected {s}, got {status} ({:?})",
                out.error
            ));
        }
    }
    if let Some(e) = expect.get("error") {
        match &out.error {
            None => fails.push("expected an error, got none".into()),
            Some(err) => {
                let text = err.to_string();
                if e.get("step").is_some() && e["step"] != serde_json::json!(err.step) {
                    fails.push(format!(
                        "error step: expected {}, got {:?}",
                        e["step"], err.step
                    ));
                }
                if let Some(m) = e.get("method").and_then(|m| m.as_str()) {
                    if err.method.as_deref() != Some(m) {
                        fails.push(format!("error method: expected {m}, got {:?}", err.method));
                    }
                }
                for c in e
                    .get("contains")
                    .and_then(|c| c.as_array())
                    .into_iter()
                    .flatten()
                {
                    let c = c.as_str().unwrap();
                    if !text.contains(c) {
                        fails.push(format!("error {text:?} does not contain {c:?}"));
                    }
                }
            }
        }
    } else if let Some(err) = &out.error {
        fails.push(format!("unexpected error: {err}"));
    }
    if let Some(v) = expect.get("visited") {
        if *v != serde_json::json!(out.visited) {
            fails.push(format!("visited: expected {v}, got {:?}", out.visited));
        }
    }
    let output: String = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let warnings: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Warning { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    for c in expect
        .get("output_contains")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        if !output.contains(c.as_str().unwrap()) {
            fails.push(format!("output does not contain {c}: {output:?}"));
        }
    }
    for c in expect
        .get("output_excludes")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        if output.contains(c.as_str().unwrap()) {
            fails.push(format!("output contains {c}: {output:?}"));
        }
    }
    for c in expect
        .get("warnings_contain")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        if !warnings.iter().any(|w| w.contains(c.as_str().unwrap())) {
            fails.push(format!("no warning contains {c}: {warnings:?}"));
        }
    }
    if let Some(r) = expect.get("running_after").and_then(|r| r.as_bool()) {
        if engine.is_running(&id) != r {
            fails.push(format!("running after: expected {r}"));
        }
    }
    if let Some(l) = expect.get("local_after") {
        let got = engine.memory().local(&id);
        if !matches_any(l, &got) {
            fails.push(format!("local after: expected {l}, got {got}"));
        }
    }
    if let Some(Value::Object(files)) = expect.get("files") {
        for (rel, text) in files {
            let got = std::fs::read_to_string(app.join(rel)).ok();
            if got.as_deref() != text.as_str() {
                fails.push(format!("file {rel}: expected {text}, got {got:?}"));
            }
        }
    }
    engine.stop_all();
    fails.into_iter().map(|f| format!("{name}: {f}")).collect()
}

#[test]
fn fixture_launchers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expect.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "fixture folders missing under {}",
        root.display()
    );
    let fails: Vec<String> = dirs.iter().flat_map(|d| run_fixture(d)).collect();
    assert!(fails.is_empty(), "fixture failures:\n{}", fails.join("\n"));
}
