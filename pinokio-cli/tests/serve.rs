//! `pinokio serve` end to end: the HTTP API answers fast, the token is
//! printed once, the CLI's `start`/`status`/`stop` talk to the same engine,
//! a second engine is refused, and `shutdown` (or SIGTERM) stops the apps
//! and the server.

mod common;

use common::{cmd, launcher_repo, BIN};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::{json, Value};

/// A `pinokio serve` child, killed if the test fails half-way.
struct Serve {
    child: Child,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request; (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn json_of(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, text) = http(port, method, path, body).expect("the server answers");
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn spawn_serve(home: &Path, port: u16, extra: &[&str]) -> (Serve, Instant) {
    let t0 = Instant::now();
    let child = Command::new(BIN)
        .env_remove("PINOKIO_HOME")
        .env_remove("PYTHONUNBUFFERED")
        .arg("--home")
        .arg(home)
        .args(["serve", "--port", &port.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (Serve { child, port }, t0)
}

/// Wait for a 200 on /api/v1/health; how long it took.
fn wait_health(s: &mut Serve, t0: Instant) -> Duration {
    loop {
        if let Some((200, _)) = http(s.port, "GET", "/api/v1/health", None) {
            return t0.elapsed();
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            let mut err = String::new();
            let _ = s.child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("pinokio serve exited ({status}): {err}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no health answer");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first `n` lines of the child's stdout.
fn stdout_lines(s: &mut Serve, n: usize) -> Vec<String> {
    let out = s.child.stdout.take().unwrap();
    let mut r = BufReader::new(out);
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        lines.push(l.trim_end().to_string());
    }
    // keep reading in the background so the child never blocks on a pipe
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    lines
}

fn wait_exit(s: &mut Serve, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = s.child.try_wait() {
            return status;
        }
        assert!(t0.elapsed() < limit, "pinokio serve did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dead(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => true,
    }
}

fn wait_job(port: u16, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let j = json_of(port, "GET", &format!("/api/v1/runs/{id}"), None);
        if j["state"] != "running" {
            return j;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "job {id}: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_the_engine_the_cli_talks_to() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    let port = free_port();

    let (mut s, t0) = spawn_serve(&home, port, &[]);
    let startup = wait_health(&mut s, t0);
    eprintln!("pinokio serve: 200 on /api/v1/health after {startup:?}");
    assert!(startup < Duration::from_secs(5), "{startup:?}");
    // the URL and the new token on stdout
    let lines = stdout_lines(&mut s, 3);
    assert_eq!(lines[0], format!("http://127.0.0.1:{port}/"));
    let token = std::fs::read_to_string(home.join("http-token")).unwrap();
    let token = token.trim();
    assert_eq!(lines[1], format!("token: {token}"));
    assert!(lines[2].ends_with(&format!("?token={token}")));
    let health = json_of(port, "GET", "/api/v1/health", None);
    assert_eq!(health["auth"], "loopback");

    // a second engine for the same home is refused
    cmd(&home)
        .args(["serve", "--port", &free_port().to_string()])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already running"));
    cmd(&home)
        .arg("engine")
        .timeout(Duration::from_secs(20))
        .assert()
        .failure();

    // install over HTTP (a git URL), start with the CLI: the same engine
    let v = json_of(
        port,
        "POST",
        "/api/v1/apps/demo/install",
        Some(json!({ "source": url })),
    );
    let job = v["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(wait_job(port, &job)["state"], "succeeded");
    let out = cmd(&home).args(["start", "demo"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(web.starts_with("http://127.0.0.1:"), "{web}");
    let app = json_of(port, "GET", "/api/v1/apps/demo", None);
    assert_eq!(app["state"], "running");
    assert_eq!(app["url"], web.as_str());
    let pids: Vec<u64> = app["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(!pids.is_empty());
    cmd(&home).arg("status").assert().success().stdout(
        predicate::str::is_match(r"demo\s+running\s+http://127\.0\.0\.1:\d+\s+pids \d+").unwrap(),
    );
    // stopped from the CLI: the HTTP API sees it
    cmd(&home)
        .args(["stop", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("stopped demo"));
    assert_eq!(
        json_of(port, "GET", "/api/v1/apps/demo", None)["state"],
        "stopped"
    );

    // started over HTTP, then `pinokio shutdown`: apps and server end
    let v = json_of(port, "POST", "/api/v1/apps/demo/start", Some(json!({})));
    let job = v["job"]["id"].as_str().unwrap().to_string();
    let j = wait_job(port, &job);
    assert_eq!(j["state"], "succeeded", "{j}");
    let pids: Vec<u64> = json_of(port, "GET", "/api/v1/apps/demo", None)["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    cmd(&home)
        .arg("shutdown")
        .assert()
        .success()
        .stdout(predicate::str::contains("shutting down"));
    let status = wait_exit(&mut s, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(http(port, "GET", "/api/v1/health", None).is_none());
    assert!(!home.join("engine.sock").exists());
    let t1 = Instant::now();
    while !pids.iter().all(|p| dead(*p)) {
        assert!(
            t1.elapsed() < Duration::from_secs(15),
            "app processes survived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // again: the token is not printed unless asked; SIGTERM stops it
    let (mut s, t0) = spawn_serve(&home, port, &[]);
    wait_health(&mut s, t0);
    let lines = stdout_lines(&mut s, 1);
    assert_eq!(lines, vec![format!("http://127.0.0.1:{port}/")]);
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGTERM);
    }
    assert!(wait_exit(&mut s, Duration::from_secs(30)).success());
    let (mut s, t0) = spawn_serve(&home, port, &["--show-token"]);
    wait_health(&mut s, t0);
    let lines = stdout_lines(&mut s, 2);
    assert_eq!(lines[1], format!("token: {token}"));
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGINT);
    }
    assert!(wait_exit(&mut s, Duration::from_secs(30)).success());
    let _ = s.port;
}
