//! URL detection wired into the engine, with a fake watcher (the real
//! pattern library lives in pinokio-cloud and is tested there through the
//! engine too): every shell gets a watcher fed in its reader thread, found
//! URLs become `UrlDetected` events and a fallback for launchers that set
//! no `local.url` (`apps::up`), `local.url` stays first, listening ports are
//! only polled for idle daemons, URLs are forgotten when shells exit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinokio_core::apps::{self, AppError};
use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::urlwatch::{FoundUrl, UrlSource, UrlWatcher, UrlWatcherFactory};
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::{json, Value};

/// Reports `URL=<url>` lines; with `poll_ports` reports a fixed URL.
#[derive(Default)]
struct Fake {
    polls: Arc<Mutex<Vec<(u32, bool)>>>,
}

struct FakeWatcher {
    pid: u32,
    polls: Arc<Mutex<Vec<(u32, bool)>>>,
    partial: String,
}

impl UrlWatcherFactory for Fake {
    fn watcher(&self, pid: u32) -> Box<dyn UrlWatcher> {
        Box::new(FakeWatcher {
            pid,
            polls: self.polls.clone(),
            partial: String::new(),
        })
    }
}

impl UrlWatcher for FakeWatcher {
    fn feed(&mut self, text: &str) -> Vec<FoundUrl> {
        self.partial.push_str(text);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            if line.contains("<<PINOKIO_SHELL>>") {
                continue;
            }
            if let Some(u) = line.trim().strip_prefix("URL=") {
                out.push(FoundUrl {
                    url: u.to_string(),
                    framework: "fake".into(),
                    public: false,
                    source: UrlSource::Framework,
                });
            }
        }
        out
    }
    fn tick(&mut self, poll_ports: bool) -> Vec<FoundUrl> {
        self.polls.lock().unwrap().push((self.pid, poll_ports));
        if poll_ports {
            vec![FoundUrl {
                url: "http://127.0.0.1:9/polled".into(),
                framework: "listening".into(),
                public: false,
                source: UrlSource::Port,
            }]
        } else {
            Vec::new()
        }
    }
}

fn env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.remove("PYTHONUNBUFFERED");
    env
}

fn engine(home: &Path, fake: Option<&Fake>) -> (Engine, CollectSink) {
    let sink = CollectSink::new();
    let mut b = Engine::builder(PinokioHome::new(home))
        .facts(Facts::cpu_only())
        .env(env())
        .options(EngineOptions {
            kill_grace: Duration::from_secs(2),
            url_wait: Duration::from_secs(10),
            ..EngineOptions::default()
        })
        .sink(Arc::new(sink.clone()));
    if let Some(f) = fake {
        b = b.url_watchers(Arc::new(Fake {
            polls: f.polls.clone(),
        }));
    }
    (b.build().unwrap(), sink)
}

const MENU: &str = r#"module.exports = {
  menu: async (kernel, info) => {
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) {
        return [{ default: true, text: "Open Web UI", href: local.url }]
      }
      return [{ default: true, text: "Terminal", href: "start.json" }]
    }
    return [{ default: true, text: "Start", href: "start.json" }]
  }
}
"#;

/// An app `name` whose `start.json` is `start`.
fn app(e: &Engine, name: &str, start: Value) -> PathBuf {
    let dir = e.home().api().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pinokio.js"), MENU).unwrap();
    std::fs::write(
        dir.join("start.json"),
        serde_json::to_string_pretty(&start).unwrap(),
    )
    .unwrap();
    dir
}

/// A daemon whose server prints its URL, and a launcher that never
/// stores it (no local.set).
fn silent_launcher(url_line: &str) -> Value {
    json!({
        "daemon": true,
        "run": [{
            "method": "shell.run",
            "params": {
                "message": format!("printf '%s\\n' '{url_line}'; echo ready; sleep 30"),
                "on": [{ "event": "/ready/", "done": true }]
            }
        }]
    })
}

fn detected(sink: &CollectSink) -> Vec<(String, String, String)> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::UrlDetected {
                shell_id,
                url,
                framework,
                ..
            } => Some((e.script, shell_id, url + " " + &framework)),
            _ => None,
        })
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(15), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_detected_url_is_the_fallback_when_the_launcher_sets_no_local_url() {
    let t = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let (e, sink) = engine(t.path(), Some(&fake));
    let dir = app(&e, "quiet", silent_launcher("URL=http://127.0.0.1:4567"));
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, "http://127.0.0.1:4567");
    let id = dir.join("start.json").display().to_string();
    let d = detected(&sink);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, id);
    assert_eq!(d[0].2, "http://127.0.0.1:4567 fake");
    assert!(
        e.processes().get(&d[0].1).is_some(),
        "the event names the shell"
    );
    assert_eq!(e.detected_urls(&id)[0].url, "http://127.0.0.1:4567");
    // the URL is never written into the launcher's memory
    assert!(e.memory().local(&id).get("url").is_none());
    assert_eq!(
        e.detected_app_url(&dir).as_deref(),
        Some("http://127.0.0.1:4567")
    );
    // the server's shell exits with the stop: its URL is forgotten
    assert!(e.stop(&id));
    wait_until("URL forgotten", || e.detected_urls(&id).is_empty());
    assert!(e.detected_app_url(&dir).is_none());
    e.shutdown();
}

#[test]
fn without_watchers_a_launcher_without_local_url_shows_no_web_ui() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), None);
    let dir = app(&e, "quiet", silent_launcher("URL=http://127.0.0.1:4567"));
    let t0 = Instant::now();
    let err = apps::up(&e, &dir, 8).unwrap_err();
    assert!(matches!(err, AppError::NoWebUi(..)), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "no wait without watchers"
    );
    assert!(detected(&sink).is_empty());
    e.shutdown();
}

#[test]
fn the_launchers_local_url_stays_first() {
    let t = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let (e, sink) = engine(t.path(), Some(&fake));
    let dir = app(
        &e,
        "tidy",
        json!({
            "daemon": true,
            "run": [
                {
                    "method": "shell.run",
                    "params": {
                        "message": "printf '%s\\n' URL=http://127.0.0.1:2222; echo ready; sleep 30",
                        "on": [{ "event": "/ready/", "done": true }]
                    }
                },
                { "method": "local.set", "params": { "url": "http://127.0.0.1:1111" } }
            ]
        }),
    );
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, "http://127.0.0.1:1111");
    // detected all the same, and reported
    assert_eq!(detected(&sink).len(), 1);
    e.shutdown();
}

#[test]
fn listening_ports_are_polled_only_for_idle_daemons_without_a_url() {
    let t = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let (e, sink) = engine(t.path(), Some(&fake));
    // a plain script: its shell is never polled
    let uri = {
        let p = e.home().api().join("tools/work.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            json!({"run": [{"method": "shell.run", "params": {"message": "sleep 0.8"}}]})
                .to_string(),
        )
        .unwrap();
        p.display().to_string()
    };
    let out = e.run(RunRequest::new(&uri));
    assert_eq!(out.status, RunStatus::Finished, "{:?}", out.error);
    {
        let polls = fake.polls.lock().unwrap();
        assert!(!polls.is_empty(), "the shell was ticked");
        assert!(polls.iter().all(|(_, p)| !p), "{polls:?}");
    }
    // a daemon that prints nothing: polled once it is idle, and the
    // polled port is the web UI
    let dir = app(
        &e,
        "mute",
        json!({
            "daemon": true,
            "run": [{
                "method": "shell.run",
                "params": { "message": "echo ready; sleep 30", "on": [{ "event": "/ready/", "done": true }] }
            }]
        }),
    );
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, "http://127.0.0.1:9/polled");
    let d = detected(&sink);
    assert_eq!(d.len(), 1, "reported once: {d:?}");
    assert!(d[0].2.ends_with("listening"));
    // polling stopped once the URL was shown
    let n = fake
        .polls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| *p)
        .count();
    std::thread::sleep(Duration::from_millis(700));
    let m = fake
        .polls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| *p)
        .count();
    assert_eq!(n, m, "no polls after the URL");
    e.shutdown();
}
