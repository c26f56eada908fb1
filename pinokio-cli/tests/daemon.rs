//! The background engine: `start` returns once the URL is known while the
//! app keeps running; `status`, `stop`, `shutdown` talk to the engine; an
//! engine killed with SIGKILL leaves a consistent state behind.

mod common;

use common::{cmd, launcher_repo};

use std::path::Path;
use std::process::Command as Std;
use std::time::{Duration, Instant};

use predicates::prelude::*;

fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let hostport = url
        .trim()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let Ok(mut s) = std::net::TcpStream::connect(&hostport) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n");
    let mut b = [0u8; 32];
    let n = s.read(&mut b).unwrap_or(0);
    String::from_utf8_lossy(&b[..n]).contains(" 200 ")
}

fn engine_pid(home: &Path) -> u32 {
    let text = std::fs::read_to_string(home.join("logs/engine.log")).unwrap();
    text.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("pinokio engine ")
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        })
        .expect("engine pid in the log")
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

#[test]
fn start_returns_with_a_url_status_stop_and_engine_kill() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    cmd(&home)
        .args(["install", &url, "--name", "demo"])
        .assert()
        .success();
    cmd(&home)
        .args(["start", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not installed"));

    // start returns while the app keeps running
    let out = cmd(&home).args(["start", "demo"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(web.starts_with("http://127.0.0.1:"), "{web}");
    assert!(http_ok(&web), "{web} does not answer");
    // a second start is a no-op that prints the same URL
    cmd(&home)
        .args(["start", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains(&web));
    cmd(&home).arg("status").assert().success().stdout(
        predicate::str::is_match(r"demo\s+running\s+http://127\.0\.0\.1:\d+\s+pids \d+").unwrap(),
    );
    // the menu is evaluated against the live engine's state
    cmd(&home).args(["menu", "demo"]).assert().success().stdout(
        predicate::str::contains("Open Web UI").and(predicate::str::contains(web.as_str())),
    );

    // stop: the server is gone, no orphan
    cmd(&home)
        .args(["stop", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("stopped demo"));
    assert!(!http_ok(&web));
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"demo\s+stopped").unwrap());

    // start again, then kill the engine with SIGKILL
    let out = cmd(&home).args(["start", "demo"]).output().unwrap();
    assert!(out.status.success());
    let web2 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(http_ok(&web2));
    let pid = engine_pid(&home);
    Std::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    while alive(pid) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // the app outlives its engine: a supervisor owns its terminal
    assert!(http_ok(&web2), "the app died with its engine");
    let requests = |home: &Path| {
        let out = cmd(home)
            .args(["logs", "demo", "--lines", "500"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .matches("\"GET / HTTP/1.0\" 200")
            .count()
    };
    let before = requests(&home);
    assert!(http_ok(&web2));
    // ... and keeps logging: the request above is in the app's log
    let t0 = Instant::now();
    while requests(&home) <= before && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        requests(&home) > before,
        "no log line for a request made without an engine"
    );
    // the state store still knows it runs
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"demo\s+running").unwrap());
    // a new engine (started on demand) re-adopts it: same URL, no restart
    let out = cmd(&home).args(["start", "demo"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web2);
    let engine_log = std::fs::read_to_string(home.join("logs/engine.log")).unwrap();
    assert!(
        engine_log.contains("re-adopted 1 shell(s) of 1 script(s)"),
        "{engine_log}"
    );
    assert_ne!(engine_pid(&home), pid);
    let out = cmd(&home).arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        predicate::str::is_match(r"demo\s+running\s+http://127\.0\.0\.1:\d+\s+pids \d+")
            .unwrap()
            .eval(&status),
        "{status}"
    );
    let server: u32 = status
        .split("pids ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .expect("a pid in the status line");
    assert!(alive(server));
    // stop still kills it, with no orphan
    cmd(&home)
        .args(["stop", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("stopped demo"));
    assert!(!http_ok(&web2));
    assert!(!alive(server), "the re-adopted server survived stop");
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"demo\s+stopped").unwrap());
    // a new engine starts on demand and runs the app again
    let out = cmd(&home).args(["start", "demo"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web3 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(http_ok(&web3));
    cmd(&home).arg("shutdown").assert().success();
    let t0 = Instant::now();
    while http_ok(&web3) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!http_ok(&web3), "shutdown left the app running");
}

#[test]
fn two_apps_run_at_once_in_the_background_engine() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    for name in ["one", "two"] {
        cmd(&home)
            .args(["install", &url, "--name", name])
            .assert()
            .success();
    }
    let start = |name: &str| {
        let out = cmd(&home).args(["start", name]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (a, b) = (start("one"), start("two"));
    assert_ne!(a, b, "both apps got the same port");
    assert!(http_ok(&a) && http_ok(&b));
    let status =
        String::from_utf8_lossy(&cmd(&home).arg("status").output().unwrap().stdout).to_string();
    assert!(
        status.contains(&format!("one                          running     {a}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("two                          running     {b}")),
        "{status}"
    );
    cmd(&home).args(["stop", "one"]).assert().success();
    assert!(!http_ok(&a));
    assert!(http_ok(&b), "stopping one app stopped the other");
    cmd(&home).arg("shutdown").assert().success();
    let t0 = Instant::now();
    while http_ok(&b) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!http_ok(&b));
}

/// A stand-in `cloudflared` that prints what the real one prints.
fn fake_cloudflared(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("cloudflared");
    std::fs::write(
        &p,
        "#!/bin/sh\n\
         echo '2026-11-21T10:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...' >&2\n\
         echo '2026-11-21T10:00:01Z INF |  https://fake-demo-tunnel.trycloudflare.com                                      |' >&2\n\
         exec sleep 300\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn start_exposes_through_the_platform_proxy_and_expose_opens_a_tunnel() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    let tools = t.path().join("tools");
    fake_cloudflared(&tools);
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let run = |args: &[&str]| {
        cmd(&home)
            .env("PATH", &path)
            .env("RUNPOD_POD_ID", "pod42")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["install", &url, "--name", "demo"]).status.success());
    // on RunPod, start exposes through the platform's proxy by default
    let out = run(&["start", "demo"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let web = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = web.rsplit(':').next().unwrap().trim_end_matches('/');
    assert!(
        stderr.contains(&format!(
            "platform URL: https://pod42-{port}.proxy.runpod.net"
        )),
        "{stderr}"
    );
    // a tunnel on request; status lists it
    let out = run(&["expose", "demo", "--via", "cloudflare"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "https://fake-demo-tunnel.trycloudflare.com"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("anyone with this URL"));
    let out = run(&["unexpose", "demo"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped 2 exposure(s)"));
    // exposing an app that is not running is refused
    assert!(run(&["stop", "demo"]).status.success());
    let out = run(&["expose", "demo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    assert!(run(&["shutdown"]).status.success());
}
