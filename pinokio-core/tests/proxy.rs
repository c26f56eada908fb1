//! `proxy.start` / `proxy.stop` as exposure requests, with a fake exposer:
//! the script's app and `uri` reach the exposer, the exposure is the step
//! result, it is closed by `proxy.stop` and when the script stops or
//! finishes; without an exposer (or when it refuses) the step says why in
//! a warning and resolves undefined, as upstream.

use std::path::Path;
use std::sync::{Arc, Mutex};

use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::expose::{Exposer, Exposure};
use pinokio_core::{Engine, Facts, PinokioHome, RunRequest};
use serde_json::{json, Value};

#[derive(Default)]
struct FakeExposer {
    calls: Mutex<Vec<String>>,
    live: Mutex<Vec<Exposure>>,
    refuse: Option<String>,
}

impl Exposer for FakeExposer {
    fn expose(&self, app: &str, local_url: &str, via: Option<&str>) -> Result<Exposure, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("expose {app} {local_url} {via:?}"));
        if let Some(r) = &self.refuse {
            return Err(r.clone());
        }
        let port = local_url.rsplit(':').next().unwrap_or("0");
        let e = Exposure {
            app: app.into(),
            via: "platform".into(),
            local_url: local_url.into(),
            public_url: Some(format!("https://pod-{port}.proxy.example")),
            state: "up".into(),
            note: Some("a note".into()),
        };
        self.live.lock().unwrap().push(e.clone());
        Ok(e)
    }
    fn unexpose(&self, app: &str) -> Vec<Exposure> {
        self.calls.lock().unwrap().push(format!("unexpose {app}"));
        let mut live = self.live.lock().unwrap();
        let (mine, rest): (Vec<_>, Vec<_>) = live.drain(..).partition(|e| e.app == app);
        *live = rest;
        mine
    }
    fn exposures(&self) -> Vec<Exposure> {
        self.live.lock().unwrap().clone()
    }
    fn expose_by_default(&self) -> bool {
        false
    }
}

fn engine(home: &Path, exposer: Option<Arc<FakeExposer>>) -> (Engine, CollectSink) {
    let sink = CollectSink::new();
    let mut b = Engine::builder(PinokioHome::new(home))
        .facts(Facts::cpu_only())
        .sink(Arc::new(sink.clone()));
    if let Some(x) = exposer {
        b = b.exposer(x);
    }
    (b.build().unwrap(), sink)
}

fn script(e: &Engine, rel: &str, v: Value) -> String {
    let p = e.home().api().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, v.to_string()).unwrap();
    p.display().to_string()
}

fn warnings(sink: &CollectSink) -> Vec<String> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Warning { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

fn output(sink: &CollectSink) -> String {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Output { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

#[test]
fn proxy_start_exposes_the_uri_for_the_app_and_returns_the_exposure() {
    let t = tempfile::tempdir().unwrap();
    let x = Arc::new(FakeExposer::default());
    let (e, sink) = engine(t.path(), Some(x.clone()));
    let id = script(
        &e,
        "demo/start.json",
        json!({
            "daemon": true,
            "run": [{ "method": "proxy.start", "params": { "uri": "http://0.0.0.0:7860", "name": "Web UI" } }]
        }),
    );
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    assert_eq!(
        out.result,
        Some(json!({
            "app": "demo",
            "via": "platform",
            "local_url": "http://127.0.0.1:7860",
            "public_url": "https://pod-7860.proxy.example",
            "state": "up",
            "note": "a note",
            "name": "Web UI",
            "uri": "https://pod-7860.proxy.example"
        }))
    );
    assert_eq!(
        x.calls.lock().unwrap().as_slice(),
        ["expose demo http://127.0.0.1:7860 None"]
    );
    assert!(
        output(&sink).contains("Web UI: http://127.0.0.1:7860 is reachable at https://pod-7860.proxy.example (platform)"),
        "{}",
        output(&sink)
    );
    assert!(warnings(&sink).is_empty(), "{:?}", warnings(&sink));
    // stopping the script closes what it opened (section 3.14)
    assert_eq!(x.exposures().len(), 1);
    e.stop(&id);
    assert!(x.exposures().is_empty());
    assert_eq!(x.calls.lock().unwrap().last().unwrap(), "unexpose demo");
}

#[test]
fn proxy_stop_unexposes_and_a_finished_script_releases_its_exposures() {
    let t = tempfile::tempdir().unwrap();
    let x = Arc::new(FakeExposer::default());
    let (e, sink) = engine(t.path(), Some(x.clone()));
    let id = script(
        &e,
        "demo/share.json",
        json!({ "run": [
            { "method": "proxy.start", "params": { "uri": "http://127.0.0.1:8188" } },
            { "method": "proxy.stop", "params": { "uri": "http://127.0.0.1:8188" } },
            { "method": "proxy.stop", "params": { "uri": "http://127.0.0.1:9999" } }
        ]}),
    );
    let out = e.run(RunRequest::new(&id));
    assert!(out.ok(), "{:?}", out.error);
    assert_eq!(out.result, None, "proxy.stop resolves undefined");
    assert!(x.exposures().is_empty());
    let text = output(&sink);
    assert!(text.contains("proxy.stop: http://127.0.0.1:8188 no longer exposed (platform https://pod-8188.proxy.example)"), "{text}");
    assert!(
        text.contains("proxy.stop: http://127.0.0.1:9999 was not exposed"),
        "{text}"
    );

    // a non-daemon script that ends closes what it opened
    let id = script(
        &e,
        "demo/once.json",
        json!({ "run": [{ "method": "proxy.start", "params": { "uri": "http://127.0.0.1:5000" } }] }),
    );
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Finished);
    assert!(x.exposures().is_empty(), "{:?}", x.exposures());
}

#[test]
fn without_an_exposer_or_when_it_refuses_the_step_says_so() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), None);
    let id = script(
        &e,
        "demo/start.json",
        json!({ "run": [{ "method": "proxy.start", "params": { "uri": "http://127.0.0.1:7860", "name": "x" } }] }),
    );
    let out = e.run(RunRequest::new(&id));
    assert!(out.ok(), "{:?}", out.error);
    assert_eq!(out.result, None, "undefined, as upstream");
    let w = warnings(&sink);
    assert!(
        w.iter().any(
            |m| m.contains("proxy.start: http://127.0.0.1:7860 was not exposed")
                && m.contains("this engine has no exposer")
        ),
        "{w:?}"
    );

    let x = Arc::new(FakeExposer {
        refuse: Some("Local machine has no proxy the engine can use".into()),
        ..Default::default()
    });
    let (e, sink) = engine(t.path(), Some(x));
    let out = e.run(RunRequest::new(&id));
    assert!(out.ok());
    assert!(warnings(&sink)
        .iter()
        .any(|m| m.contains("Local machine has no proxy")));

    // a template that did not resolve is not a URL
    let id = script(
        &e,
        "demo/bad.json",
        json!({ "run": [{ "method": "proxy.start", "params": { "uri": "{{local.url}}" } }] }),
    );
    let out = e.run(RunRequest::new(&id));
    assert!(out.ok());
    assert!(warnings(&sink)
        .iter()
        .any(|m| m.contains("nothing exposed: `uri` is not a URL")));
}
