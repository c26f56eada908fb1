//! The conformance pack (`../shared/conformance`, or `PINOKIO_CONFORMANCE_DIR`):
//! launcher cases whose outcomes were recorded on real pinokiod. Every case
//! either passes, or is listed in `tests/conformance/deviations.json` with
//! its reason (a deliberate deviation, a later pinokiod version we follow,
//! or a feature that has not landed yet, which must then still fail).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pinokio_core::events::{CollectSink, RunStatus};
use pinokio_core::{Engine, Facts, PinokioHome, RunRequest};
use serde_json::{json, Map, Value};

fn pack_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("PINOKIO_CONFORMANCE_DIR") {
        return Some(PathBuf::from(d));
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    d.is_dir().then(|| d.canonicalize().unwrap())
}

fn deviations() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance/deviations.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

struct CaseResult {
    runs: Vec<Value>,
    checks: Vec<Value>,
}

/// Drive one case with our engine and record what happened in the pack's shape.
fn drive(case_dir: &Path, case: &Value) -> CaseResult {
    let tmp = tempfile::tempdir().unwrap();
    let home_dir = tmp.path().join("home");
    let app = case["app"].as_str().unwrap();
    let sink = CollectSink::new();
    let engine = Engine::builder(PinokioHome::new(&home_dir))
        .facts(Facts::cpu_only())
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let home = engine.home().root().to_path_buf();
    let app_dir = home.join("api").join(app);
    common::copy_tree(&case_dir.join("app"), &app_dir);
    let mut runs = Vec::new();
    let mut checks = Vec::new();
    for action in case["drive"].as_array().unwrap() {
        match action["do"].as_str().unwrap() {
            "run" => {
                let script = action["script"].as_str().unwrap();
                let mut req = RunRequest::new(format!("~/api/{app}/{script}"));
                if action.get("no_input") != Some(&json!(true)) {
                    req.input = Some(action.get("params").cloned().unwrap_or(json!({})));
                }
                let timeout = Duration::from_secs(action["timeout"].as_u64().unwrap_or(60));
                let id = app_dir.join(script).display().to_string();
                sink.take();
                let e2 = engine.clone();
                let handle = std::thread::spawn(move || e2.run(req));
                let start = std::time::Instant::now();
                while !handle.is_finished() && start.elapsed() < timeout {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let timed_out = !handle.is_finished();
                if timed_out {
                    engine.stop(&id);
                }
                let outcome = handle.join().unwrap();
                let events = sink.take();
                let (visited, steps) = common::step_records(&events, &id);
                let mut run = Map::new();
                run.insert("script".into(), json!(script));
                run.insert(
                    "outcome".into(),
                    json!(match (timed_out, outcome.status) {
                        (true, _) => "timeout",
                        (_, RunStatus::Finished) => "finished",
                        (_, RunStatus::Daemon) => "daemon",
                        (_, RunStatus::Error) => "error",
                        (_, RunStatus::Stopped) => "stopped",
                    }),
                );
                if let Some(e) = &outcome.error {
                    run.insert(
                        "error".into(),
                        json!({"script": script, "step": e.step, "message": e.message}),
                    );
                }
                run.insert("visited".into(), json!(visited));
                run.insert("steps".into(), common::redact_home(&json!(steps), &home));
                if let Some(listen) = action.get("listen").and_then(|l| l.as_array()) {
                    let mut children = Map::new();
                    for c in listen {
                        let c = c.as_str().unwrap();
                        let cid = app_dir.join(c).display().to_string();
                        let (v, s) = common::step_records(&events, &cid);
                        children.insert(
                            c.into(),
                            json!({"visited": v, "steps": common::redact_home(&json!(s), &home)}),
                        );
                    }
                    run.insert("children".into(), Value::Object(children));
                }
                runs.push(Value::Object(run));
            }
            "stop" => {
                let script = action["script"].as_str().unwrap();
                engine.stop(&app_dir.join(script).display().to_string());
                checks.push(json!({"do": "stop", "script": script}));
            }
            "sleep" => std::thread::sleep(Duration::from_millis(
                (action["s"].as_f64().unwrap_or(0.0) * 1000.0) as u64,
            )),
            "local" => {
                let mut local = Map::new();
                for id in engine.memory().keys(false) {
                    if let Ok(rel) = Path::new(&id).strip_prefix(&app_dir) {
                        local.insert(rel.display().to_string(), engine.memory().local(&id));
                    }
                }
                checks.push(json!({"do": "local", "label": action["label"], "local": local}));
            }
            "running" => {
                let script = action["script"].as_str().unwrap();
                let running = engine.is_running(&app_dir.join(script).display().to_string());
                checks.push(json!({"do": "running", "label": action["label"], "script": script, "running": running}));
            }
            "files" => {
                let ignore: Vec<String> = action
                    .get("ignore")
                    .and_then(|i| i.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let (changed, deleted) =
                    common::file_changes(&case_dir.join("app"), &app_dir, &ignore, &home);
                let mut c = json!({"do": "files", "label": action["label"], "changed": changed, "deleted": deleted});
                if let Some(ex) = action.get("exists").and_then(|e| e.as_array()) {
                    let m: Map<String, Value> = ex
                        .iter()
                        .filter_map(|x| x.as_str())
                        .map(|p| (p.to_string(), json!(app_dir.join(p).exists())))
                        .collect();
                    c["exists"] = Value::Object(m);
                }
                checks.push(c);
            }
            "menu" => {
                let menu = engine.menu(&app_dir).unwrap();
                let items: Vec<Value> = menu
                    .items
                    .iter()
                    .map(|it| {
                        let mut o = json!({"text": it.text});
                        if let Some(icon) = &it.icon {
                            o["tab_html"] = json!(format!("<i class=\"{icon}\"></i> {}", it.text));
                        }
                        let href = match (&it.url, &it.script) {
                            (Some(u), _) => u.clone(),
                            (None, Some(s)) => {
                                let rel = s
                                    .strip_prefix(home.join("api"))
                                    .unwrap()
                                    .display()
                                    .to_string();
                                let mut h = format!("/api/{rel}");
                                if let Some(Value::Object(p)) = &it.params {
                                    let q: Vec<String> = p
                                        .iter()
                                        .map(|(k, v)| {
                                            format!("{k}={}", pinokio_core::template::js_string(v))
                                        })
                                        .collect();
                                    if !q.is_empty() {
                                        h = format!("{h}?{}", q.join("&"));
                                    }
                                }
                                h
                            }
                            _ => it.href.clone().unwrap_or_default(),
                        };
                        o["target"] =
                            json!(format!("@{}", href.split('?').next().unwrap_or(&href)));
                        o["href"] = json!(href);
                        if it.default {
                            o["default"] = json!(true);
                        }
                        if it.running {
                            o["running"] = json!(true);
                        }
                        o
                    })
                    .collect();
                checks.push(json!({"do": "menu", "label": action["label"], "items": items}));
            }
            "http" => {
                let url = match action.get("url").and_then(|u| u.as_str()) {
                    Some(u) => u.to_string(),
                    None => {
                        let from = &action["url_from_local"];
                        let id = app_dir
                            .join(from["script"].as_str().unwrap())
                            .display()
                            .to_string();
                        let local = engine.memory().local(&id);
                        local[from["key"].as_str().unwrap()]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    }
                };
                let (status, failed) = match http_get(&url) {
                    Some(code) => (json!(code), false),
                    None => (Value::Null, true),
                };
                let mut c =
                    json!({"do": "http", "label": action["label"], "url": url, "status": status});
                if failed {
                    c["failed"] = json!(true);
                }
                checks.push(c);
            }
            other => panic!("unknown drive action {other}"),
        }
    }
    engine.stop_all();
    CaseResult { runs, checks }
}

/// pinokiod appends "\n\n██ Terminated Shell <id>\n████\n" to the running
/// step's terminal when it kills a shell at the end of a run: presentation.
fn strip_terminated_notice(s: &str) -> String {
    match s.find("\n\n██ Terminated Shell") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// A plain HTTP GET on loopback; the status code, or `None` when nothing answers.
fn http_get(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = hostport.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Compare what we recorded with what pinokiod did, on the fields the pack
/// says are strict. Returns the list of differences.
fn compare(expected: &Value, got: &CaseResult) -> Vec<String> {
    let mut diffs = Vec::new();
    let exp_runs = expected["runs"].as_array().cloned().unwrap_or_default();
    if exp_runs.len() != got.runs.len() {
        diffs.push(format!(
            "run count: expected {}, got {}",
            exp_runs.len(),
            got.runs.len()
        ));
    }
    for (ri, (e, g)) in exp_runs.iter().zip(&got.runs).enumerate() {
        let what = format!("run {ri} ({})", e["script"]);
        if e["outcome"] != g["outcome"] {
            diffs.push(format!(
                "{what}: outcome expected {} got {}",
                e["outcome"], g["outcome"]
            ));
        }
        if e.get("error").is_some() {
            let es = e["error"].get("step").cloned().unwrap_or(Value::Null);
            let gs = g
                .get("error")
                .and_then(|x| x.get("step"))
                .cloned()
                .unwrap_or(Value::Null);
            if es != gs {
                diffs.push(format!(
                    "{what}: error step expected {es} got {gs} ({})",
                    g.get("error").unwrap_or(&Value::Null)
                ));
            }
        }
        compare_steps(&what, e, g, &mut diffs);
        if let Some(children) = e.get("children").and_then(|c| c.as_object()) {
            for (name, ec) in children {
                let gc = &g["children"][name];
                compare_steps(&format!("{what} child {name}"), ec, gc, &mut diffs);
            }
        }
    }
    let exp_checks: Vec<&Value> = expected["checks"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["do"] != "stop").collect())
        .unwrap_or_default();
    let got_checks: Vec<&Value> = got.checks.iter().filter(|c| c["do"] != "stop").collect();
    for (e, g) in exp_checks.iter().zip(&got_checks) {
        let label = format!("check {} {:?}", e["do"], e.get("label"));
        for key in [
            "local", "running", "changed", "deleted", "exists", "items", "status", "failed", "url",
        ] {
            if e.get(key).is_some() && e.get(key) != g.get(key) {
                diffs.push(format!(
                    "{label}: {key}\n    expected {}\n    got      {}",
                    e[key], g[key]
                ));
            }
        }
    }
    diffs
}

fn compare_steps(what: &str, e: &Value, g: &Value, diffs: &mut Vec<String>) {
    if e["visited"] != g["visited"] {
        diffs.push(format!(
            "{what}: visited expected {} got {}",
            e["visited"], g["visited"]
        ));
    }
    let es = e["steps"].as_array().cloned().unwrap_or_default();
    let gs = g["steps"].as_array().cloned().unwrap_or_default();
    for (i, est) in es.iter().enumerate() {
        let Some(gst) = gs.get(i) else {
            diffs.push(format!("{what}: step record {i} missing"));
            continue;
        };
        let step = format!("{what} step {}", est["index"]);
        if let Some(err) = gst.get("error") {
            if est.get("error").is_none() {
                diffs.push(format!("{step}: unexpected error: {err}"));
            }
        }
        for key in [
            "skipped",
            "method",
            "params",
            "input",
            "args",
            "local_before",
            "result",
            "result_undefined",
        ] {
            let ev = est.get(key);
            let gv = gst.get(key);
            if ev != gv {
                diffs.push(format!(
                    "{step}: {key}\n    expected {}\n    got      {}",
                    ev.map(|v| v.to_string()).unwrap_or("(absent)".into()),
                    gv.map(|v| v.to_string()).unwrap_or("(absent)".into())
                ));
            }
        }
        let est_output = est
            .get("output")
            .and_then(|o| o.as_str())
            .map(strip_terminated_notice);
        let gst_output = gst.get("output").and_then(|o| o.as_str()).map(String::from);
        if est["method"] == "log" && est_output != gst_output {
            diffs.push(format!(
                "{step}: log output expected {:?} got {:?}",
                est.get("output"),
                gst.get("output")
            ));
        }
    }
}

#[test]
fn conformance_pack() {
    let Some(pack) = pack_dir() else {
        if std::env::var("CI").is_ok() {
            panic!("the conformance pack is missing: expected ../shared/conformance or PINOKIO_CONFORMANCE_DIR");
        }
        eprintln!("SKIP: no conformance pack found (../shared/conformance)");
        return;
    };
    let dev = deviations();
    let only = std::env::var("CONFORMANCE_CASE").ok();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(pack.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut passed = 0;
    let mut pending = 0;
    for dir in &cases {
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let name = case["name"].as_str().unwrap().to_string();
        if let Some(o) = &only {
            if !name.contains(o.as_str()) {
                continue;
            }
        }
        let os = case["platform"]["os"].as_str().unwrap_or("any");
        if os != "any" && os != "linux" {
            continue;
        }
        let d = dev["cases"].get(&name).cloned().unwrap_or(json!({}));
        let mut expected = case["expected"].clone();
        if let Some(v) = d.get("use_version").and_then(|v| v.as_str()) {
            for diff in case["other_versions"][v]["differences"].as_array().unwrap() {
                let other = &diff["other"];
                let value = if other == "(absent)" {
                    None
                } else {
                    Some(other.clone())
                };
                common::apply_patch(&mut expected, diff["path"].as_str().unwrap(), value);
            }
        }
        if let Some(patches) = d.get("patch").and_then(|p| p.as_array()) {
            for p in patches {
                let value = if p.get("remove") == Some(&json!(true)) {
                    None
                } else {
                    Some(p["value"].clone())
                };
                common::apply_patch(&mut expected, p["path"].as_str().unwrap(), value);
            }
        }
        if case.get("upstream_bug") == Some(&json!(true))
            && d.get("patch").is_none()
            && d.get("pending").is_none()
        {
            failures.push(format!(
                "{name}: upstream_bug case needs a sane expectation in deviations.json"
            ));
            continue;
        }
        let mut got = drive(dir, &case);
        if let Some(files) = d.get("ignore_files").and_then(|f| f.as_array()) {
            for f in files.iter().filter_map(|f| f.as_str()) {
                for c in got
                    .checks
                    .iter_mut()
                    .chain(expected["checks"].as_array_mut().into_iter().flatten())
                {
                    if let Some(ch) = c.get_mut("changed").and_then(|x| x.as_object_mut()) {
                        ch.shift_remove(f);
                    }
                }
            }
        }
        let diffs = compare(&expected, &got);
        match d.get("pending").and_then(|p| p.as_str()) {
            Some(why) => {
                pending += 1;
                if diffs.is_empty() {
                    failures.push(format!("{name}: listed as pending ({why}) but it passes now: remove it from deviations.json"));
                }
            }
            None => {
                if diffs.is_empty() {
                    passed += 1;
                } else {
                    failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
                }
            }
        }
    }
    eprintln!(
        "conformance: {passed} passed, {pending} pending, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
}
