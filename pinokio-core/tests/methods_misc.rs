//! `net`, `process.wait`, `exec`, `load`, the headless GUI methods, `input`
//! and `env.set`/`env.switch`, run through a real engine over a temporary
//! home. HTTP goes only to a server started here on 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinokio_core::engine::InputAnswers;
use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::{Engine, Facts, PinokioHome, RunOutcome, RunRequest};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// harness
// ---------------------------------------------------------------------------

struct Harness {
    _dir: tempfile::TempDir,
    engine: Engine,
    sink: Arc<CollectSink>,
}

impl Harness {
    fn new() -> Self {
        Self::with_answers(None)
    }

    fn with_answers(answers: Option<Arc<dyn InputAnswers>>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(CollectSink::new());
        let mut b = Engine::builder(PinokioHome::new(dir.path().join("home")))
            .facts(Facts::cpu_only())
            .sink(sink.clone());
        if let Some(a) = answers {
            b = b.answers(a);
        }
        let engine = b.build().expect("engine");
        Harness {
            _dir: dir,
            engine,
            sink,
        }
    }

    fn app(&self, app: &str) -> PathBuf {
        let p = self.engine.home().root().join("api").join(app);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Write `HOME/api/<app>/x.json` with these steps; returns its uri.
    fn script(&self, app: &str, steps: Value) -> String {
        let path = self.app(app).join("x.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json!({ "run": steps })).unwrap(),
        )
        .unwrap();
        format!("~/api/{app}/x.json")
    }

    fn script_id(&self, app: &str) -> String {
        self.app(app).join("x.json").display().to_string()
    }

    fn run(&self, uri: &str, input: Value) -> RunOutcome {
        self.engine.run(RunRequest::new(uri).input(input))
    }

    fn outputs(&self) -> String {
        self.sink
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Output { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

fn ok_result(o: &RunOutcome) -> Value {
    assert!(o.ok(), "run failed: {:?}", o.error);
    assert_eq!(o.status, RunStatus::Finished);
    o.result.clone().expect("a result")
}

fn error_message(o: &RunOutcome) -> String {
    assert_eq!(o.status, RunStatus::Error, "expected an error, got {o:?}");
    o.error.as_ref().expect("an error").message.clone()
}

// ---------------------------------------------------------------------------
// a tiny HTTP server on 127.0.0.1
// ---------------------------------------------------------------------------

struct Server {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &h);
                });
            }
        });
        Server { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn handle(stream: TcpStream, hits: &Mutex<HashMap<String, usize>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Map::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.insert(k, json!(v.trim()));
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let n = {
        let mut g = hits.lock().unwrap();
        let c = g.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let (status, ctype, text) = match path.as_str() {
        "/json" => (
            200,
            "application/json",
            r#"{"hello":"world","n":1}"#.to_string(),
        ),
        "/text" => (200, "text/plain", "plain text here".to_string()),
        "/untyped-json" => (200, "text/plain", r#"{"typed":false}"#.to_string()),
        "/echo" => (
            200,
            "application/json",
            json!({
                "method": method,
                "query": query,
                "body": String::from_utf8_lossy(&body),
                "content_type": headers.get("content-type"),
                "user_agent": headers.get("user-agent"),
                "x_custom": headers.get("x-custom"),
            })
            .to_string(),
        ),
        "/fail" => (500, "text/plain", "boom".to_string()),
        // 503 for the first three requests, then 200
        "/later" if n <= 3 => (503, "text/plain", "not yet".to_string()),
        "/later" => (200, "text/plain", "ready".to_string()),
        "/never" => (503, "text/plain", "never".to_string()),
        _ => (404, "text/plain", "no such path".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    s.flush()
}

/// A port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// net
// ---------------------------------------------------------------------------

#[test]
fn net_get_json_is_parsed() {
    let h = Harness::new();
    let s = Server::start();
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": { "url": s.url("/json") } }]),
    );
    assert_eq!(
        ok_result(&h.run(&uri, json!({}))),
        json!({"hello": "world", "n": 1})
    );
}

#[test]
fn net_get_text_stays_text_and_json_text_parses() {
    let h = Harness::new();
    let s = Server::start();
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": { "url": s.url("/text") } }]),
    );
    assert_eq!(ok_result(&h.run(&uri, json!({}))), json!("plain text here"));
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": { "url": s.url("/untyped-json") } }]),
    );
    assert_eq!(ok_result(&h.run(&uri, json!({}))), json!({"typed": false}));
}

#[test]
fn net_post_sends_json_body_headers_and_query() {
    let h = Harness::new();
    let s = Server::start();
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": {
            "url": s.url("/echo?keep=1"),
            "method": "post",
            "headers": { "X-Custom": "yes" },
            "data": { "a": 1, "b": [true, "x"] },
            "params": { "q": "x y", "list": [1, 2], "skip": null }
        } }]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    assert_eq!(r["method"], "POST");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({ "a": 1, "b": [true, "x"] }));
    assert_eq!(r["content_type"], "application/json");
    assert_eq!(r["x_custom"], "yes");
    assert!(
        r["user_agent"].as_str().unwrap().starts_with("Mozilla/5.0"),
        "{r}"
    );
    assert_eq!(r["query"], "keep=1&q=x+y&list%5B%5D=1&list%5B%5D=2");
}

#[test]
fn net_string_data_is_sent_raw() {
    let h = Harness::new();
    let s = Server::start();
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": { "url": s.url("/echo"), "method": "PUT", "data": "a=1&b=2" } }]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["body"], "a=1&b=2");
    assert_eq!(r["content_type"], "application/x-www-form-urlencoded");
}

#[test]
fn net_non_2xx_is_a_step_error_without_secrets() {
    let h = Harness::new();
    let s = Server::start();
    let url = s.url("/fail");
    let uri = h.script(
        "n",
        json!([{ "method": "net", "params": { "url": url, "headers": { "Authorization": "Bearer SECRET-TOKEN-123" } } }]),
    );
    let m = error_message(&h.run(&uri, json!({})));
    assert!(m.contains(&url) && m.contains("500"), "{m}");
    assert!(!m.contains("SECRET-TOKEN-123"), "{m}");
    assert!(!h.outputs().contains("SECRET-TOKEN-123"));
}

#[test]
fn net_network_error_names_the_url() {
    let h = Harness::new();
    let url = format!("http://127.0.0.1:{}/x", closed_port());
    let uri = h.script("n", json!([{ "method": "net", "params": { "url": url } }]));
    let m = error_message(&h.run(&uri, json!({})));
    assert!(m.contains(&url), "{m}");
}

// ---------------------------------------------------------------------------
// process.wait
// ---------------------------------------------------------------------------

#[test]
fn process_wait_sec_sleeps() {
    let h = Harness::new();
    let uri = h.script(
        "w",
        json!([{ "method": "process.wait", "params": { "sec": 0.4 } }, { "method": "log", "params": { "text": "after" } }]),
    );
    let t = Instant::now();
    let o = h.run(&uri, json!({}));
    assert!(o.ok(), "{o:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(h.outputs().contains("after"));
}

#[test]
fn process_wait_url_polls_until_2xx() {
    let h = Harness::new();
    let s = Server::start();
    let uri = h.script(
        "w",
        json!([{ "method": "process.wait", "params": { "url": s.url("/later"), "interval": 0.05, "timeout": 20 } }]),
    );
    let o = h.run(&uri, json!({}));
    assert!(o.ok(), "{o:?}");
    assert_eq!(s.hits("/later"), 4);
}

#[test]
fn process_wait_url_times_out() {
    let h = Harness::new();
    let s = Server::start();
    let url = s.url("/never");
    let uri = h.script(
        "w",
        json!([{ "method": "process.wait", "params": { "uri": url, "interval": 0.05, "timeout": 0.5 } }]),
    );
    let t = Instant::now();
    let m = error_message(&h.run(&uri, json!({})));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(m.contains(&url) && m.contains("503"), "{m}");
    assert!(s.hits("/never") >= 2);
}

#[test]
fn process_wait_on_tcp_resource() {
    let h = Harness::new();
    let port = closed_port();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        // keep accepting until the waiter connected
        let _ = l.accept();
    });
    let uri = h.script(
        "w",
        json!([{ "method": "process.wait", "params": { "on": { "resources": [format!("tcp:127.0.0.1:{port}")], "timeout": 10000 } } }]),
    );
    let t = Instant::now();
    let o = h.run(&uri, json!({}));
    assert!(o.ok(), "{o:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t.elapsed()
    );
    opener.join().unwrap();
}

#[test]
fn process_wait_on_times_out_naming_the_resource() {
    let h = Harness::new();
    let res = format!("tcp:{}", closed_port());
    let uri = h.script(
        "w",
        json!([{ "method": "process.wait", "params": { "on": { "resources": [res], "timeout": 300 } } }]),
    );
    let m = error_message(&h.run(&uri, json!({})));
    assert!(m.contains("timed out") && m.contains(&res), "{m}");
}

fn stop_while_waiting(params: Value) {
    let h = Harness::new();
    let uri = h.script("w", json!([{ "method": "process.wait", "params": params }]));
    let id = h.script_id("w");
    let engine = h.engine.clone();
    let runner = std::thread::spawn(move || engine.run(RunRequest::new(uri)));
    let t = Instant::now();
    while !h.engine.is_running(&id) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    assert!(h.engine.stop(&id));
    let o = runner.join().unwrap();
    assert_eq!(o.status, RunStatus::Stopped, "{o:?}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped_at.elapsed()
    );
}

#[test]
fn stop_during_sec_wait_is_prompt() {
    stop_while_waiting(json!({ "sec": 30 }));
}

#[test]
fn stop_ends_an_indefinite_wait() {
    stop_while_waiting(json!({}));
}

// ---------------------------------------------------------------------------
// exec, load
// ---------------------------------------------------------------------------

#[test]
fn exec_returns_stdout_stderr_and_uses_path_and_env() {
    let h = Harness::new();
    std::fs::create_dir_all(h.app("e").join("sub")).unwrap();
    let uri = h.script(
        "e",
        json!([{ "method": "exec", "params": {
            "message": "echo \"hi $FOO\"; pwd; echo oops >&2",
            "path": "sub",
            "env": { "FOO": "bar" }
        } }]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    let stdout = r["stdout"].as_str().unwrap();
    let sub = h.app("e").join("sub").display().to_string();
    assert_eq!(stdout, format!("hi bar\n{sub}\n"));
    assert_eq!(r["stderr"], "oops\n");
    assert_eq!(r["error"], Value::Null);
}

#[test]
fn exec_exit_code_is_reported() {
    let h = Harness::new();
    let uri = h.script(
        "e",
        json!([{ "method": "exec", "params": { "message": "echo out; exit 3" } }]),
    );
    let o = h.run(&uri, json!({}));
    // the method returns {error: {code: 3, ...}}; a truthy `error` ends the
    // run as a step error, as in Pinokio (section 3.10)
    let m = error_message(&o);
    assert!(m.contains("\"code\":3"), "{m}");
    let result = h.sink.events().iter().find_map(|e| match &e.kind {
        EventKind::StepResult { result, .. } => Some(result.clone()),
        _ => None,
    });
    assert_eq!(result, None, "a failed step has no result event");
}

#[test]
fn exec_with_empty_message_does_nothing() {
    let h = Harness::new();
    let uri = h.script(
        "e",
        json!([{ "method": "exec", "params": { "message": "" } }, { "method": "log", "params": { "text": "{{input === undefined}}" } }]),
    );
    let o = h.run(&uri, json!({}));
    assert!(o.ok(), "{o:?}");
    assert!(h.outputs().contains("true\n"), "{}", h.outputs());
    assert!(!h.outputs().contains("Exec:"));
}

#[test]
fn load_reads_json_files_and_null_for_missing() {
    let h = Harness::new();
    std::fs::write(h.app("l").join("data.json"), r#"{"k": [1, 2]}"#).unwrap();
    std::fs::write(
        h.app("l").join("mod.js"),
        "module.exports = { x: 1 + 1, s: 'js' }",
    )
    .unwrap();
    let uri = h.script(
        "l",
        json!([{ "method": "load", "params": { "a": "data.json", "b": "missing.json", "c": "mod.js" } }]),
    );
    assert_eq!(
        ok_result(&h.run(&uri, json!({}))),
        json!({ "a": { "k": [1, 2] }, "b": null, "c": { "x": 2, "s": "js" } })
    );
}

// ---------------------------------------------------------------------------
// GUI methods
// ---------------------------------------------------------------------------

#[test]
fn notify_and_open_methods_emit_events() {
    let h = Harness::new();
    std::fs::write(h.app("g").join("page.html"), "<p>x</p>").unwrap();
    let uri = h.script(
        "g",
        json!([
            { "method": "notify", "params": { "html": "<b>Done</b>", "href": "http://example.test/", "type": "success" } },
            { "method": "notify", "params": "not an object" },
            { "method": "browser.open", "params": { "uri": "http://127.0.0.1:7860" } },
            { "method": "web.open", "params": { "uri": "page.html", "target": "_blank" } },
            { "method": "modal", "params": { "title": "Hi" } },
            { "method": "uri.open", "params": { "uri": "https://x.test/a?b=1#top", "params": { "c": "d e", "n": [1, 2] } } }
        ]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    assert_eq!(
        r,
        json!({ "uri": "https://x.test/a?b=1&c=d%20e&n=1&n=2#top", "result": "event" })
    );
    let events = h.sink.events();
    let notifies: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notify {
                message,
                href,
                kind,
                ..
            } => Some((message.clone(), href.clone(), kind.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        notifies[0],
        (
            "<b>Done</b>".to_string(),
            Some("http://example.test/".to_string()),
            Some("success".to_string())
        )
    );
    assert_eq!(
        notifies.len(),
        2,
        "a bad notify still notifies and never fails"
    );
    let opens: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::OpenUrl { url, target, .. } => Some((url.clone(), target.clone())),
            _ => None,
        })
        .collect();
    let page = format!("file://{}", h.app("g").join("page.html").display());
    assert_eq!(
        opens,
        vec![
            ("http://127.0.0.1:7860".to_string(), None),
            (page, Some("_blank".to_string())),
            ("https://x.test/a?b=1&c=d%20e&n=1&n=2#top".to_string(), None),
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Modal { params, .. } if params["title"] == "Hi")));
}

#[test]
fn modal_loading_close_and_proxy_start_resolve_at_once() {
    let h = Harness::new();
    let uri = h.script(
        "g",
        json!([
            { "method": "loading.start", "params": { "message": "Working" } },
            { "method": "web.close", "params": {} },
            { "method": "browser.close" },
            { "method": "proxy.start", "params": { "uri": "http://127.0.0.1:7860", "name": "x" } },
            { "method": "loading.end" },
            { "method": "modal", "params": { "title": "Hi" } },
            { "method": "log", "params": { "json": "{{input}}" } },
            { "method": "htmlmodal.open", "params": { "id": "m", "html": "<p>x</p>" } }
        ]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    assert_eq!(r, json!({ "id": "m", "html": "<p>x</p>" }));
    let out = h.outputs();
    assert!(
        out.contains("Loading: Working\n") && out.contains("Loading finished\n"),
        "{out}"
    );
    assert!(
        out.contains("web.close") && out.contains("browser.close"),
        "{out}"
    );
    assert!(out.contains("{}\n"), "modal answers {{}}: {out}");
    let events = h.sink.events();
    assert!(events.iter().any(
        |e| matches!(&e.kind, EventKind::Warning { message, .. } if message.contains("proxy.start"))
    ));
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Modal { params, .. } if params["id"] == "m")));
}

#[test]
fn browser_open_without_uri_fails() {
    let h = Harness::new();
    let uri = h.script("g", json!([{ "method": "browser.open", "params": {} }]));
    let m = error_message(&h.run(&uri, json!({})));
    assert!(m.contains("uri"), "{m}");
}

fn form() -> Value {
    json!({
        "title": "Settings",
        "form": [
            { "key": "name", "title": "Name" },
            { "key": "size", "type": "number", "default": 5 },
            { "key": "agree", "type": "checkbox" }
        ]
    })
}

#[test]
fn input_takes_args_first() {
    let h = Harness::new();
    let uri = h.script("i", json!([{ "method": "input", "params": form() }]));
    let r = ok_result(&h.run(&uri, json!({ "name": "Bob", "size": 7, "agree": "true" })));
    assert_eq!(r, json!({ "name": "Bob", "size": "7", "agree": true }));
    assert!(!h
        .sink
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::InputRequest { .. })));
}

struct Fixed(Map<String, Value>, Mutex<Vec<Value>>);
impl InputAnswers for Fixed {
    fn answer(&self, _script: &str, form: &Value) -> Option<Map<String, Value>> {
        self.1.lock().unwrap().push(form.clone());
        Some(self.0.clone())
    }
}

#[test]
fn input_asks_the_answers_after_args() {
    let mut m = Map::new();
    m.insert("name".into(), json!("Alice"));
    m.insert("agree".into(), json!(true));
    m.insert("size".into(), json!(9));
    let answers = Arc::new(Fixed(m, Mutex::new(Vec::new())));
    let h = Harness::with_answers(Some(answers.clone()));
    let uri = h.script("i", json!([{ "method": "input", "params": form() }]));
    let r = ok_result(&h.run(&uri, json!({ "size": "3" })));
    assert_eq!(r, json!({ "name": "Alice", "size": "3", "agree": true }));
    assert_eq!(answers.1.lock().unwrap().as_slice(), &[form()]);
    assert!(h
        .sink
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::InputRequest { form: f, .. } if *f == form())));
}

#[test]
fn input_falls_back_to_defaults() {
    let h = Harness::new();
    let uri = h.script(
        "i",
        json!([{ "method": "input", "params": { "form": [
            { "key": "model", "type": "select", "items": ["a", "b"], "default": "b" },
            { "key": "steps", "type": "number", "default": 20 },
            { "key": "fast", "type": "checkbox", "default": true },
            { "key": "slow", "type": "checkbox" }
        ] } }]),
    );
    let r = ok_result(&h.run(&uri, json!({})));
    assert_eq!(
        r,
        json!({ "model": "b", "steps": "20", "fast": true, "slow": false })
    );
}

#[test]
fn input_without_values_names_every_missing_field() {
    let h = Harness::new();
    let uri = h.script(
        "i",
        json!([{ "method": "input", "params": { "form": [
            { "key": "token", "required": true },
            { "key": "ok", "default": "x" },
            { "key": "prompt" }
        ] } }]),
    );
    let m = error_message(&h.run(&uri, json!({})));
    assert!(m.contains("\"token\"") && m.contains("\"prompt\""), "{m}");
    assert!(m.contains("--arg token=VALUE --arg prompt=VALUE"), "{m}");
    assert!(!m.contains("\"ok\""), "{m}");
}

// ---------------------------------------------------------------------------
// env.set, env.switch
// ---------------------------------------------------------------------------

#[test]
fn env_set_writes_the_app_file_and_the_next_step_sees_it() {
    let h = Harness::new();
    let app = h.app("envapp");
    std::fs::write(
        app.join("ENVIRONMENT"),
        "# comment\nPMX_KEEP=1\nPMX_A=old\n",
    )
    .unwrap();
    let uri = h.script(
        "envapp",
        json!([
            { "method": "env.set", "params": { "PMX_A": "new value", "PMX_B": 42 } },
            { "method": "log", "params": { "text": "A={{env.PMX_A}} B={{env.PMX_B}}" } }
        ]),
    );
    let o = h.run(&uri, json!({}));
    assert!(o.ok(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(app.join("ENVIRONMENT")).unwrap(),
        "# comment\nPMX_KEEP=1\nPMX_A=new value\n\nPMX_B=42\n"
    );
    assert!(
        h.outputs().contains("A=new value B=42\n"),
        "{}",
        h.outputs()
    );
}

#[test]
fn env_switch_cycles_through_options() {
    let h = Harness::new();
    let app = h.app("sw");
    std::fs::create_dir_all(app.join("pinokio")).unwrap();
    let uri = h.script(
        "sw",
        json!([
            { "method": "env.switch", "params": { "PMX_MODE": ["fast", "slow"] } },
            { "method": "log", "params": { "text": "mode={{env.PMX_MODE}}" } }
        ]),
    );
    let file = app.join("pinokio").join("ENVIRONMENT");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let o = h.run(&uri, json!({}));
        assert!(o.ok(), "{o:?}");
        let text = std::fs::read_to_string(&file).unwrap();
        seen.push(
            text.lines()
                .find(|l| l.starts_with("PMX_MODE="))
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen, ["PMX_MODE=fast", "PMX_MODE=slow", "PMX_MODE=fast"]);
    let out = h.outputs();
    assert!(
        out.contains("mode=fast\n") && out.contains("mode=slow\n"),
        "{out}"
    );
    assert!(!app.join("ENVIRONMENT").exists());
}
