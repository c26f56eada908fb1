//! `pinokio tools install` and `pinokio expose --install`: tunnel programs
//! come from a local stand-in release server (`PINOKIO_CLOUDFLARED_URL`),
//! are checked and placed in HOME/bin, and the background engine's tunnels
//! use them.

mod common;

use common::{cmd, launcher_repo};

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A stand-in `cloudflared`: answers `--version`, and as a tunnel prints a
/// quick tunnel banner (to stderr, as cloudflared does) and stays up.
const FAKE: &str = "#!/bin/sh\n\
if [ \"$1\" = \"--version\" ]; then echo 'cloudflared version 2026.1.1 (built 2026-01-10-1200 UTC)'; exit 0; fi\n\
echo '2026-11-21T10:00:01Z INF |  https://installed-tunnel.trycloudflare.com                 |' >&2\n\
exec sleep 300\n";

/// Serve the stand-in as the release asset of this machine; returns the
/// base URL and a flag that stops the server.
fn release_server() -> (String, Arc<AtomicBool>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let asset = format!("/dl/cloudflared-linux-{arch}");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) else {
                continue;
            };
            let resp = if req.url() == asset {
                tiny_http::Response::from_data(FAKE.as_bytes().to_vec())
            } else {
                tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
            };
            let _ = req.respond(resp);
        }
    });
    (format!("http://127.0.0.1:{port}/dl"), stop)
}

fn run(home: &Path, base: &str, args: &[&str]) -> std::process::Output {
    cmd(home)
        .env("PINOKIO_CLOUDFLARED_URL", base)
        .env("PATH", "/usr/bin:/bin")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn tools_install_puts_cloudflared_in_home_bin() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let (base, stop) = release_server();
    let out = run(&home, &base, &["tools", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("cloudflared  not installed: pinokio tools install cloudflared"));
    let out = run(&home, &base, &["tools", "install", "cloudflared"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let bin = home.join("bin/cloudflared");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        bin.display().to_string()
    );
    assert!(
        stderr.contains(&format!(
            "downloading cloudflared from {base}/cloudflared-linux-"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("(cloudflared version 2026.1.1"), "{stderr}");
    let out = run(&home, &base, &["tools", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&bin.display().to_string()));
    let out = run(&home, &base, &["tools", "install", "cloudflared"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("installed already"));
    stop.store(true, Ordering::SeqCst);
    // a failed download is an error that names the URL
    let out = run(
        &home,
        "http://127.0.0.1:9/nothing",
        &["tools", "install", "cloudflared", "--force"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot download cloudflared"));
}

#[test]
fn expose_install_fetches_the_tunnel_program_the_engine_then_runs() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    let (base, stop) = release_server();
    let go = |args: &[&str]| {
        // PATH keeps python3 and git but has no cloudflared
        cmd(&home)
            .env("PINOKIO_CLOUDFLARED_URL", &base)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(go(&["install", &url, "--name", "demo"]).status.success());
    let out = go(&["start", "demo", "--no-expose"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // without --install: the error says how to get it
    if which_cloudflared().is_none() {
        let out = go(&["expose", "demo", "--via", "cloudflare"]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("pinokio tools install cloudflared"), "{e}");
    }
    let out = go(&["expose", "demo", "--via", "cloudflare", "--install"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "https://installed-tunnel.trycloudflare.com"
    );
    if which_cloudflared().is_none() {
        assert!(stderr.contains("installed cloudflared into"), "{stderr}");
        assert!(home.join("bin/cloudflared").is_file());
    }
    let out = go(&["expose", "demo", "--via", "localtunnel", "--install"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--install needs --via cloudflare or --via ngrok"));
    assert!(go(&["shutdown"]).status.success());
    stop.store(true, Ordering::SeqCst);
}

fn which_cloudflared() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("cloudflared"))
            .find(|f| f.is_file())
    })
}
