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
    // without its engine the app's terminal is gone and so is the server
    let t0 = Instant::now();
    while http_ok(&web2) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!http_ok(&web2), "the app survived its engine");
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"demo\s+stopped").unwrap());
    cmd(&home).args(["stop", "demo"]).assert().success();
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
