//! URL detection through the engine with the real pattern library and
//! real processes in PTYs (`PYTHONUNBUFFERED` removed: the PTY must make
//! Python's output arrive): framework lines (Gradio, Uvicorn) are trusted
//! at once and known before the `on` handler that saw them ends the step;
//! Python's `http.server` prints a generic URL that is trusted once its
//! port listens; a generic URL nobody listens on is not; a server that
//! prints nothing is found by its listening port. Launchers here never set
//! `local.url`: `apps::up` falls back to the detected URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_cloud::urls::{ShellUrlWatcher, ShellWatchers, WatchOptions};
use pinokio_core::apps::{self, AppError};
use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::urlwatch::{UrlSource, UrlWatcher};
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::json;

fn engine(home: &Path, url_wait: Duration) -> (Engine, CollectSink) {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.remove("PYTHONUNBUFFERED");
    let sink = CollectSink::new();
    let watchers = ShellWatchers {
        opts: WatchOptions {
            poll_every: Duration::from_millis(200),
            ..WatchOptions::default()
        },
    };
    let e = Engine::builder(PinokioHome::new(home))
        .facts(Facts::cpu_only())
        .env(env)
        .options(EngineOptions {
            kill_grace: Duration::from_secs(2),
            url_wait,
            ..EngineOptions::default()
        })
        .sink(Arc::new(sink.clone()))
        .url_watchers(Arc::new(watchers))
        .build()
        .unwrap();
    (e, sink)
}

const MENU: &str = r#"module.exports = {
  menu: async (kernel, info) => {
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) return [{ default: true, text: "Open Web UI", href: local.url }]
      return [{ default: true, text: "Terminal", href: "start.json" }]
    }
    return [{ default: true, text: "Start", href: "start.json" }]
  }
}
"#;

/// An app whose daemon `start.json` runs `message` until `done` matches,
/// and never sets local.url.
fn app(e: &Engine, name: &str, message: &str, done: &str) -> PathBuf {
    let dir = e.home().api().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pinokio.js"), MENU).unwrap();
    let start = json!({
        "daemon": true,
        "run": [{
            "method": "shell.run",
            "params": { "message": message, "on": [{ "event": done, "done": true }] }
        }]
    });
    std::fs::write(dir.join("start.json"), start.to_string()).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn detected(sink: &CollectSink) -> Vec<(String, String, bool)> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::UrlDetected {
                url,
                framework,
                public,
                ..
            } => Some((url, framework, public)),
            _ => None,
        })
        .collect()
}

fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let hostport = rest.split('/').next().unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(hostport) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

#[test]
fn gradio_and_uvicorn_lines_are_known_before_the_step_ends() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), Duration::from_secs(10));
    // Gradio 4 prints the local URL, then how to share
    let port = free_port();
    let dir = app(
        &e,
        "gradio",
        &format!(
            "python3 -c \"import time; print('* Running on local URL:  http://0.0.0.0:{port}'); print(); print('To create a public link, set share=True in launch().'); time.sleep(60)\""
        ),
        "/To create a public link/",
    );
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, format!("http://127.0.0.1:{port}"));
    assert_eq!(
        detected(&sink),
        vec![(
            format!("http://127.0.0.1:{port}"),
            "gradio".to_string(),
            false
        )]
    );

    // Uvicorn: the `done` pattern is on the URL's own line, and the URL is
    // known when the run returns (the command line is built so that its
    // echo does not match the pattern)
    let port = free_port();
    let dir = app(
        &e,
        "api",
        &format!(
            "python3 -c \"import time; print('INFO:     Started server process [42]'); print('INFO:     Uvicorn running on http://0.0.0.0:{port} (Press CTRL+%s to quit)' % 'C'); time.sleep(60)\""
        ),
        "/Press CTRL\\+C to quit/",
    );
    let id = dir.join("start.json").display().to_string();
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    let found = e.detected_urls(&id);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].url, format!("http://127.0.0.1:{port}"));
    assert_eq!(found[0].framework, "uvicorn");
    assert_eq!(found[0].source, UrlSource::Framework);
    e.shutdown();
}

#[test]
fn python_http_server_is_trusted_once_its_port_listens() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), Duration::from_secs(10));
    let port = free_port();
    // "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
    let dir = app(
        &e,
        "files",
        &format!("python3 -m http.server {port} --bind 127.0.0.1"),
        "/Serving HTTP/",
    );
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, format!("http://127.0.0.1:{port}/"));
    assert!(http_ok(&up.url), "{} answers", up.url);
    let id = dir.join("start.json").display().to_string();
    let found = e.detected_urls(&id);
    assert_eq!(found[0].framework, "generic");
    assert_eq!(found[0].source, UrlSource::Confirmed);
    assert_eq!(detected(&sink).len(), 1, "{:?}", detected(&sink));
    e.shutdown();
}

#[test]
fn a_generic_url_nobody_listens_on_is_not_trusted() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), Duration::from_millis(1500));
    let port = free_port();
    let dir = app(
        &e,
        "docs",
        &format!("echo 'docs are at http://127.0.0.1:{port}/guide'; echo ready; sleep 60"),
        "/ready/",
    );
    let t0 = Instant::now();
    let err = apps::up(&e, &dir, 8).unwrap_err();
    assert!(matches!(err, AppError::NoWebUi(..)), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "waited for a URL"
    );
    assert!(detected(&sink).is_empty(), "{:?}", detected(&sink));
    e.shutdown();
}

#[test]
fn a_server_that_prints_nothing_is_found_by_its_listening_port() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path(), Duration::from_secs(10));
    let port = free_port();
    let dir = app(
        &e,
        "mute",
        &format!(
            "python3 -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); print('ready'); time.sleep(60)\""
        ),
        "/ready/",
    );
    let up = apps::up(&e, &dir, 8).unwrap();
    assert_eq!(up.url, format!("http://127.0.0.1:{port}"));
    assert_eq!(
        detected(&sink),
        vec![(
            format!("http://127.0.0.1:{port}"),
            "listening".to_string(),
            false
        )]
    );
    e.shutdown();
}

#[test]
fn feeding_a_line_costs_well_under_a_millisecond() {
    let lines = [
        "Collecting torch==2.4.0 (from -r requirements.txt (line 3))\n",
        "  Downloading https://download.pytorch.org/whl/cu124/torch-2.4.0-cp310-linux_x86_64.whl (797.2 MB)\n",
        "\u{1b}[32mINFO\u{1b}[0m:     127.0.0.1:51234 - \"GET /queue/data HTTP/1.1\" 200 OK\n",
        "100%|██████████| 20/20 [00:03<00:00,  5.12it/s]\n",
        "Model loaded in 4.2s (load weights from disk: 0.3s).\n",
    ];
    let mut w = ShellUrlWatcher::new(std::process::id(), WatchOptions::default());
    let n = 20_000;
    let t0 = Instant::now();
    for i in 0..n {
        assert!(w.feed(lines[i % lines.len()]).is_empty());
    }
    let per_line = t0.elapsed() / n as u32;
    assert!(per_line < Duration::from_millis(1), "{per_line:?} per line");
    // and a URL line in the middle of it all is found
    let found = w.feed("Running on local URL:  http://127.0.0.1:7860\n");
    assert_eq!(found[0].url, "http://127.0.0.1:7860");
}
