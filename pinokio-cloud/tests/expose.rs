//! Exposure: platform proxy URLs from fixtures, and tunnels run by local
//! stand-in programs that print what `cloudflared`, `ngrok` and `lt`
//! print (no test needs the internet).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_cloud::expose::{platform_url, port_of, Provider, TunnelManager, TunnelOptions};
use pinokio_cloud::platform::Platform;
use pinokio_cloud::source::FixtureHost;
use pinokio_core::expose::Exposer;
use pinokio_core::state::{StateStore, TunnelState};

#[test]
fn platform_proxy_urls() {
    let runpod = FixtureHost::new().env("RUNPOD_POD_ID", "abc123xyz");
    let u = platform_url(Platform::RunPod, &runpod, 7860).unwrap();
    assert_eq!(u.url, "https://abc123xyz-7860.proxy.runpod.net");
    assert!(u.note.unwrap().contains("Expose HTTP Ports"));

    let vast = FixtureHost::new()
        .env("PUBLIC_IPADDR", "203.0.113.9")
        .env("VAST_TCP_PORT_7860", "41234");
    assert_eq!(
        platform_url(Platform::Vast, &vast, 7860).unwrap().url,
        "http://203.0.113.9:41234"
    );
    // a port the instance does not map has no platform URL
    assert!(platform_url(Platform::Vast, &vast, 8188).is_none());

    let lightning = FixtureHost::new().env("LIGHTNING_CLOUD_SPACE_ID", "01hx2y");
    assert_eq!(
        platform_url(Platform::Lightning, &lightning, 8188)
            .unwrap()
            .url,
        "https://8188-01hx2y.cloudspaces.litng.ai"
    );

    let paperspace =
        FixtureHost::new().env("PAPERSPACE_FQDN", "n1a2b3.clg07azjl.paperspacegradient.com");
    assert_eq!(
        platform_url(Platform::Paperspace, &paperspace, 6006)
            .unwrap()
            .url,
        "https://tensorboard-n1a2b3.clg07azjl.paperspacegradient.com/"
    );
    assert!(platform_url(Platform::Paperspace, &paperspace, 7860).is_none());

    let lab = FixtureHost::new();
    assert_eq!(
        platform_url(Platform::StudioLab, &lab, 7860).unwrap().url,
        "/studiolab/default/jupyter/proxy/7860/"
    );
    for p in [
        Platform::Colab,
        Platform::Kaggle,
        Platform::Docker,
        Platform::Local,
    ] {
        assert!(platform_url(p, &runpod, 7860).is_none(), "{p:?}");
    }
    assert_eq!(port_of("http://127.0.0.1:7860/"), Some(7860));
    assert_eq!(port_of("http://[::1]:8188"), Some(8188));
    assert_eq!(port_of("http://localhost"), None);
}

#[test]
fn tunnel_urls_are_read_from_real_output_formats() {
    let cf = "2026-11-21T10:00:03Z INF |  https://seasonal-deck-organisms-sf.trycloudflare.com                                      |";
    assert_eq!(
        Provider::Cloudflare.find_url(cf).as_deref(),
        Some("https://seasonal-deck-organisms-sf.trycloudflare.com")
    );
    assert_eq!(
        Provider::Cloudflare.find_url(
            "2026-11-21T10:00:03Z INF Requesting new quick Tunnel on trycloudflare.com..."
        ),
        None
    );
    let ng = r#"t=2026-11-21T10:00:00+0000 lvl=info msg="started tunnel" obj=tunnels name=command_line addr=http://127.0.0.1:7860 url=https://1a2b-203-0-113-9.ngrok-free.app"#;
    assert_eq!(
        Provider::Ngrok.find_url(ng).as_deref(),
        Some("https://1a2b-203-0-113-9.ngrok-free.app")
    );
    assert_eq!(
        Provider::Localtunnel
            .find_url("your url is: https://quiet-fox-12.loca.lt")
            .as_deref(),
        Some("https://quiet-fox-12.loca.lt")
    );
}

/// A stand-in program in `dir` that prints `lines` (to stderr like
/// cloudflared, `{n}` replaced by how many times it ran) and stays up.
fn stand_in(dir: &Path, name: &str, lines: &[&str], to_stderr: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let counter = dir.join(format!("{name}.runs"));
    let mut script = format!(
        "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'\necho \"$@\" > '{a}'\n",
        c = counter.display(),
        a = dir.join(format!("{name}.args")).display()
    );
    for l in lines {
        let l = l.replace("{n}", "$n");
        if to_stderr {
            script.push_str(&format!("echo \"{l}\" >&2\n"));
        } else {
            script.push_str(&format!("echo \"{l}\"\n"));
        }
    }
    script.push_str("exec sleep 300\n");
    let p = dir.join(name);
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn env_with(bin: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        format!("{}:/usr/bin:/bin", bin.display()),
    );
    env
}

/// A manager on `platform` whose tunnel programs are looked up in `bin`.
fn manager(
    platform: Platform,
    host: FixtureHost,
    home: &Path,
    bin: &Path,
    store: Option<Arc<StateStore>>,
    opts: TunnelOptions,
) -> TunnelManager {
    TunnelManager::with_options(
        platform,
        Arc::new(host),
        home,
        env_with(bin),
        store,
        opts,
        None,
    )
}

fn fast() -> TunnelOptions {
    TunnelOptions {
        url_timeout: Duration::from_secs(5),
        max_restarts: 3,
        backoff: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        health_interval: None,
        health_failures: 2,
    }
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

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CLOUDFLARED: &[&str] = &[
    "2026-11-21T10:00:00Z INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out.",
    "2026-11-21T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...",
    "2026-11-21T10:00:01Z INF +--------------------------------------------------------------------------------------------+",
    "2026-11-21T10:00:01Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |",
    "2026-11-21T10:00:01Z INF |  https://quick-run-{n}.trycloudflare.com                                      |",
    "2026-11-21T10:00:01Z INF +--------------------------------------------------------------------------------------------+",
];

#[test]
fn cloudflare_tunnel_starts_restarts_with_a_new_url_and_stops() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let bin = t.path().join("tools");
    stand_in(&bin, "cloudflared", CLOUDFLARED, true);
    let store = Arc::new(StateStore::open(&home).unwrap());
    let m = manager(
        Platform::Kaggle,
        FixtureHost::new(),
        &home,
        &bin,
        Some(store.clone()),
        fast(),
    );
    // no platform proxy on Kaggle and no opt-in: refused, and says why
    let e = m.expose("demo", "http://127.0.0.1:7860", None).unwrap_err();
    assert!(
        e.contains("opt-in") && e.contains("--via cloudflare"),
        "{e}"
    );
    assert!(m.expose_by_default());

    let e = m
        .expose("demo", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap();
    assert_eq!(e.via, "cloudflare");
    assert_eq!(e.state, "up");
    assert_eq!(
        e.public_url.as_deref(),
        Some("https://quick-run-1.trycloudflare.com")
    );
    assert!(e.note.unwrap().contains("anyone with this URL"));
    let args = std::fs::read_to_string(bin.join("cloudflared.args")).unwrap();
    assert_eq!(
        args.trim(),
        "tunnel --no-autoupdate --url http://127.0.0.1:7860"
    );
    // recorded in the state store with its pid
    let rows = store.tunnels(Some("demo")).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, TunnelState::Up);
    let pid = rows[0].pid.unwrap();
    assert!(alive(pid));
    // exposing again is a no-op
    let again = m
        .expose("demo", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap();
    assert_eq!(again.public_url, e.public_url);

    // the tunnel dies: it is restarted, with a new quick-tunnel URL
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_for("a restarted tunnel", || {
        m.exposures().iter().any(|x| {
            x.state == "up"
                && x.public_url.as_deref() == Some("https://quick-run-2.trycloudflare.com")
        })
    });
    let rows = store.tunnels(Some("demo")).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|r| r.state == TunnelState::Failed));
    let new_pid = rows
        .iter()
        .find(|r| r.state == TunnelState::Up)
        .unwrap()
        .pid
        .unwrap();

    // unexpose stops it: no process left, recorded as stopped
    let stopped = m.unexpose("demo");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].state, "stopped");
    wait_for("the tunnel process to go", || !alive(new_pid));
    assert!(m.exposures().is_empty());
    assert!(store
        .tunnels(Some("demo"))
        .unwrap()
        .iter()
        .all(|r| r.state != TunnelState::Up));
}

#[test]
fn app_opt_in_passcode_and_provider_errors() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let bin = t.path().join("tools");
    stand_in(&bin, "cloudflared", CLOUDFLARED, true);
    stand_in(
        &bin,
        "ngrok",
        &[
            r#"t=2026-11-21T10:00:00+0000 lvl=info msg=\"started tunnel\" obj=tunnels name=command_line addr=http://127.0.0.1:8188 url=https://1a2b-203-0-113-9.ngrok-free.app"#,
        ],
        false,
    );
    stand_in(
        &bin,
        "lt",
        &["your url is: https://quiet-fox-12.loca.lt"],
        false,
    );
    std::fs::create_dir_all(home.join("api/optin")).unwrap();
    std::fs::write(
        home.join("api/optin/ENVIRONMENT"),
        "PINOKIO_SHARE_CLOUDFLARE=true\nPINOKIO_SHARE_PASSCODE=s3cret\n",
    )
    .unwrap();
    let m = manager(
        Platform::Colab,
        FixtureHost::new(),
        &home,
        &bin,
        None,
        fast(),
    );
    // the app's ENVIRONMENT opts in to a cloudflare tunnel
    let e = m.expose("optin", "http://127.0.0.1:7860", None).unwrap();
    assert_eq!(e.via, "cloudflare");
    assert!(e.note.unwrap().contains("cannot ask for a passcode"));
    m.unexpose("optin");

    // ngrok without a token is refused before anything starts
    let err = m
        .expose("optin", "http://127.0.0.1:8188", Some("ngrok"))
        .unwrap_err();
    assert!(err.contains("NGROK_AUTHTOKEN"), "{err}");
    assert!(!bin.join("ngrok.args").exists());
    // with a token: basic auth from the passcode, the token in its env only
    let mut env = env_with(&bin);
    env.insert("NGROK_AUTHTOKEN".into(), "tok_123".into());
    let m2 = TunnelManager::with_options(
        Platform::Colab,
        Arc::new(FixtureHost::new()),
        &home,
        env,
        None,
        fast(),
        None,
    );
    let e = m2
        .expose("optin", "http://127.0.0.1:8188", Some("ngrok"))
        .unwrap();
    assert_eq!(
        e.public_url.as_deref(),
        Some("https://1a2b-203-0-113-9.ngrok-free.app")
    );
    assert!(e.note.unwrap().contains("basic auth"));
    let args = std::fs::read_to_string(bin.join("ngrok.args")).unwrap();
    assert!(args.contains("--basic-auth pinokio:s3cret"), "{args}");
    assert!(!args.contains("tok_123"));
    m2.unexpose("optin");

    let e = m2
        .expose("optin", "http://127.0.0.1:8188", Some("localtunnel"))
        .unwrap();
    assert_eq!(
        e.public_url.as_deref(),
        Some("https://quiet-fox-12.loca.lt")
    );
    assert!(e.note.unwrap().contains("tunnel password"));
    m2.unexpose("optin");

    // a program that is not installed, an unknown provider, a silent one
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let m3 = manager(
        Platform::Local,
        FixtureHost::new(),
        &home,
        &empty,
        None,
        fast(),
    );
    assert!(!m3.expose_by_default());
    let err = m3
        .expose("optin", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap_err();
    assert!(err.contains("cloudflared is not installed"), "{err}");
    let err = m3
        .expose("optin", "http://127.0.0.1:7860", Some("auto"))
        .unwrap_err();
    assert!(err.contains("no tunnel program is available"), "{err}");
    let err = m3
        .expose("optin", "http://127.0.0.1:7860", Some("carrier-pigeon"))
        .unwrap_err();
    assert!(err.contains("unknown exposure"), "{err}");
    stand_in(&empty, "cloudflared", &["starting, but never a URL"], true);
    let mut opts = fast();
    opts.url_timeout = Duration::from_millis(500);
    opts.max_restarts = 0;
    let m4 = manager(
        Platform::Local,
        FixtureHost::new(),
        &home,
        &empty,
        None,
        opts,
    );
    let err = m4
        .expose("optin", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap_err();
    assert!(
        err.contains("did not print a public URL") && err.contains("never a URL"),
        "{err}"
    );
    assert!(m4.exposures().is_empty());
}

#[test]
fn platform_proxy_is_the_default_on_runpod_and_unhealthy_tunnels_restart() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let bin = t.path().join("tools");
    stand_in(&bin, "cloudflared", CLOUDFLARED, true);
    let m = manager(
        Platform::RunPod,
        FixtureHost::new().env("RUNPOD_POD_ID", "pod9"),
        &home,
        &bin,
        None,
        fast(),
    );
    let e = m.expose("demo", "http://127.0.0.1:7860", None).unwrap();
    assert_eq!(e.via, "platform");
    assert_eq!(
        e.public_url.as_deref(),
        Some("https://pod9-7860.proxy.runpod.net")
    );
    assert_eq!(m.exposures().len(), 1);
    assert_eq!(m.unexpose("demo").len(), 1);

    // a health check that keeps failing restarts the tunnel
    let mut opts = fast();
    opts.health_interval = Some(Duration::from_millis(100));
    let checks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c2 = checks.clone();
    let m = TunnelManager::with_options(
        Platform::Local,
        Arc::new(FixtureHost::new()),
        &home,
        env_with(&bin),
        None,
        opts,
        Some(Arc::new(move |_url: &str| {
            c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            false
        })),
    );
    let before: u32 = std::fs::read_to_string(bin.join("cloudflared.runs"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    m.expose("demo", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap();
    wait_for("a restart after failed health checks", || {
        std::fs::read_to_string(bin.join("cloudflared.runs"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|n| n >= before + 2)
    });
    assert!(checks.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    m.unexpose("demo");
}

#[test]
fn tunnels_do_not_outlive_their_manager() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let bin = t.path().join("tools");
    stand_in(&bin, "cloudflared", CLOUDFLARED, true);
    let store = Arc::new(StateStore::open(&home).unwrap());
    let m = manager(
        Platform::Local,
        FixtureHost::new(),
        &home,
        &bin,
        Some(store.clone()),
        fast(),
    );
    m.expose("demo", "http://127.0.0.1:7860", Some("cloudflare"))
        .unwrap();
    let pid = store.tunnels(Some("demo")).unwrap()[0].pid.unwrap();
    assert!(alive(pid));
    drop(m);
    wait_for("the tunnel to stop with its manager", || !alive(pid));
}
