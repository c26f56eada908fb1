//! `proxy.start` / `proxy.stop` steps through the real exposer
//! (`TunnelManager`): the platform proxy on RunPod, a Cloudflare quick
//! tunnel (a stand-in `cloudflared` in HOME/bin) when the app opted in with
//! `PINOKIO_SHARE_CLOUDFLARE=true`, a clear warning when neither applies;
//! the tunnel stops with `proxy.stop` and with the script.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_cloud::expose::{TunnelManager, TunnelOptions};
use pinokio_cloud::platform::Platform;
use pinokio_cloud::source::FixtureHost;
use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::expose::Exposer;
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::{json, Value};

/// A stand-in `cloudflared` that prints a quick tunnel banner (to stderr,
/// as cloudflared does) and stays up; it writes its pid to `<name>.pid`.
fn stand_in_cloudflared(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho $$ > '{pid}'\n\
         echo '2026-11-21T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...' >&2\n\
         echo '2026-11-21T10:00:01Z INF |  https://proxied-app.trycloudflare.com                 |' >&2\n\
         exec sleep 300\n",
        pid = bin.join("cloudflared.pid").display()
    );
    let p = bin.join("cloudflared");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn engine(
    home: &Path,
    platform: Platform,
    host: FixtureHost,
) -> (Engine, CollectSink, TunnelManager) {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
    let m = TunnelManager::with_options(
        platform,
        Arc::new(host),
        home,
        env,
        None,
        TunnelOptions {
            url_timeout: Duration::from_secs(5),
            health_interval: None,
            ..TunnelOptions::default()
        },
        None,
    );
    let sink = CollectSink::new();
    let e = Engine::builder(PinokioHome::new(home))
        .facts(Facts::cpu_only())
        .options(EngineOptions {
            kill_grace: Duration::from_secs(2),
            ..EngineOptions::default()
        })
        .sink(Arc::new(sink.clone()))
        .exposer(Arc::new(m.clone()))
        .build()
        .unwrap();
    (e, sink, m)
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

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn start_step(daemon: bool) -> Value {
    json!({
        "daemon": daemon,
        "run": [{ "method": "proxy.start", "params": { "uri": "http://127.0.0.1:7860", "name": "Web UI" } }]
    })
}

#[test]
fn on_runpod_proxy_start_gives_the_platform_url() {
    let t = tempfile::tempdir().unwrap();
    let host = FixtureHost::new().env("RUNPOD_POD_ID", "abc123xyz");
    let (e, _sink, m) = engine(t.path(), Platform::RunPod, host);
    let id = script(&e, "comfy/start.json", start_step(true));
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    let r = out.result.unwrap();
    assert_eq!(r["app"], "comfy");
    assert_eq!(r["via"], "platform");
    assert_eq!(r["local_url"], "http://127.0.0.1:7860");
    assert_eq!(r["uri"], "https://abc123xyz-7860.proxy.runpod.net");
    assert_eq!(r["public_url"], r["uri"]);
    assert_eq!(r["name"], "Web UI");
    assert!(r["note"].as_str().unwrap().contains("Expose HTTP Ports"));
    assert_eq!(m.exposures().len(), 1);
    e.stop(&id);
    assert!(m.exposures().is_empty());
}

#[test]
fn an_opted_in_app_gets_a_cloudflare_tunnel_that_stops_with_proxy_stop_and_the_script() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink, m) = engine(t.path(), Platform::Local, FixtureHost::new());
    stand_in_cloudflared(&e.home().bin());
    let id = script(&e, "share/start.json", start_step(true));
    std::fs::write(
        e.home().api().join("share/ENVIRONMENT"),
        "PINOKIO_SHARE_CLOUDFLARE=true\n",
    )
    .unwrap();
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    let r = out.result.unwrap();
    assert_eq!(r["via"], "cloudflare");
    assert_eq!(r["uri"], "https://proxied-app.trycloudflare.com");
    assert_eq!(r["state"], "up");
    assert!(r["note"].as_str().unwrap().contains("anyone with this URL"));
    let pid: u32 = std::fs::read_to_string(e.home().bin().join("cloudflared.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // the script stops: its tunnel stops
    e.stop(&id);
    let t0 = Instant::now();
    while alive(pid) {
        assert!(t0.elapsed() < Duration::from_secs(10), "tunnel still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(m.exposures().iter().all(|x| x.state == "stopped"));
    assert!(warnings(&sink).is_empty(), "{:?}", warnings(&sink));

    // proxy.stop in the same script stops it too
    let id = script(
        &e,
        "share/toggle.json",
        json!({ "daemon": true, "run": [
            { "method": "proxy.start", "params": { "uri": "http://127.0.0.1:7860" } },
            { "method": "proxy.stop", "params": { "uri": "http://127.0.0.1:7860" } }
        ]}),
    );
    let out = e.run(RunRequest::new(&id));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    assert!(m.exposures().iter().all(|x| x.state == "stopped"));
    e.shutdown();
}

#[test]
fn without_a_platform_proxy_or_opt_in_the_step_says_why() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink, m) = engine(t.path(), Platform::Kaggle, FixtureHost::new());
    stand_in_cloudflared(&e.home().bin());
    let id = script(&e, "app/start.json", start_step(false));
    let out = e.run(RunRequest::new(&id));
    assert!(out.ok(), "{:?}", out.error);
    assert_eq!(out.result, None);
    let w = warnings(&sink);
    assert!(
        w.iter().any(|m| m.contains("was not exposed")
            && m.contains("Kaggle has no proxy")
            && m.contains("opt-in")),
        "{w:?}"
    );
    assert!(m.exposures().is_empty(), "no tunnel without opt-in");
}
