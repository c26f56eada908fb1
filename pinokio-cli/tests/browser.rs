//! The web UI in a real browser: `pinokio serve` on a temporary home whose
//! catalog holds a fixture app (`tests/launchers/browserdemo`, cloned from a
//! local bare repository through `HOME/git-mirrors`), driven by headless
//! Chromium through `tests/browser/e2e.mjs` (playwright-core): search the
//! catalog, install, start, follow the logs, see the URL, open the tunnels,
//! stop.
//!
//! Needs `/usr/bin/chromium` (or `$PINOKIO_CHROMIUM`), node and
//! `tests/browser/node_modules`; `bash scripts/browser-deps.sh` (called by
//! `.ci/run`) installs them. `PINOKIO_SKIP_BROWSER=1` skips the test.
//! `PINOKIO_SCREENSHOTS=DIR` keeps the screenshots (discover.png,
//! library.png, terminal.png, tunnels.png) in DIR.

mod common;

use common::{launcher_repo_with, BIN};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = "browserdemo";
/// The fixture's catalog URLs, rewritten to the local bare repository by
/// `HOME/git-mirrors`.
const FAKE_OWNER: &str = "https://github.com/pinokiocloud-fixtures/";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("PINOKIO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the test needs that this machine lacks.
fn missing_deps(browser_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !node_ok {
        missing.push("node".into());
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{} (npm ci)",
            browser_dir.join("node_modules").display()
        ));
    }
    missing
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGTERM first: the engine stops its apps on the way out
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(15);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
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

/// `GET path` on 127.0.0.1:port; the status line and body, or None.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// `HOME/catalog.json`: the built-in catalog plus the fixture app.
fn write_catalog(home: &Path) {
    let builtin = std::fs::read_to_string(repo_root().join("catalog/apps.json")).unwrap();
    let mut catalog: serde_json::Value = serde_json::from_str(&builtin).unwrap();
    catalog["apps"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": APP,
            "name": "Browser Demo",
            "repo_url": format!("{FAKE_OWNER}{APP}"),
            "clone_url": format!("{FAKE_OWNER}{APP}.git"),
            "category": "UTILITY",
            "tags": ["demo", "test"],
            "author": "pinokiocloud",
            "installer_type": "json",
            "has_install_js": false,
            "has_install_json": true,
            "has_pinokio_js": true,
            "status": "ok",
            "summary": "The fixture of the real-browser test: a tiny Python web server"
        }));
    std::fs::write(
        home.join("catalog.json"),
        serde_json::to_string_pretty(&catalog).unwrap(),
    )
    .unwrap();
}

#[test]
fn web_ui_in_a_real_browser() {
    let browser_dir = repo_root().join("tests/browser");
    if std::env::var("PINOKIO_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("browser test skipped: PINOKIO_SKIP_BROWSER=1");
        return;
    }
    let missing = missing_deps(&browser_dir);
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run `bash .ci/run` (it installs them through \
         scripts/browser-deps.sh), or `bash scripts/browser-deps.sh`; set \
         PINOKIO_SKIP_BROWSER=1 to skip it",
        missing.join(", ")
    );
    let started = Instant::now();

    // a home whose catalog knows the fixture, cloned from a local bare repo
    let t = tempfile::tempdir().unwrap();
    launcher_repo_with(t.path(), APP, &[]);
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("git-mirrors"),
        format!("{FAKE_OWNER}=file://{}/\n", t.path().display()),
    )
    .unwrap();
    write_catalog(&home);

    // pinokio serve
    let port = free_port();
    let serve_out = t.path().join("serve.out");
    let serve_err = t.path().join("serve.err");
    let server = Command::new(BIN)
        .env_remove("PINOKIO_HOME")
        // a RunPod pod id: the platform proxy gives exposures a public URL
        // (computed, no network), so the Tunnels step has one to show
        .env("RUNPOD_POD_ID", "browsertest")
        .args(["serve", "--home"])
        .arg(&home)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&serve_out).unwrap())
        .stderr(std::fs::File::create(&serve_err).unwrap())
        .spawn()
        .expect("run pinokio serve");
    let mut server = Guard(server);
    let server_log = |what: &str| {
        format!(
            "{what}\n--- pinokio serve stdout ---\n{}\n--- pinokio serve stderr ---\n{}",
            tail(&serve_out, 4000),
            tail(&serve_err, 8000)
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = http_get(port, "/api/v1/health") {
            if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200") {
                break;
            }
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("{}", server_log(&format!("pinokio serve exited: {status}")));
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            server_log("pinokio serve did not answer /api/v1/health within 60 s")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // the browser
    let shots = std::env::var_os("PINOKIO_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| t.path().join("screenshots"));
    let node_out = t.path().join("node.out");
    let node_file = std::fs::File::create(&node_out).unwrap();
    let mut node = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .env("PINOKIO_E2E_APP", APP)
        .env("PINOKIO_E2E_QUERY", "browser demo")
        .env("PINOKIO_E2E_LOG_TEXT", "Serving HTTP")
        .env("PINOKIO_E2E_EXPOSE", "1")
        .env("PINOKIO_E2E_EXPECT_COLOUR", "1")
        .env("PINOKIO_SCREENSHOTS", &shots)
        .env("PINOKIO_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(node_file.try_clone().unwrap())
        .stderr(node_file)
        .spawn()
        .expect("run node");
    let deadline = Instant::now() + Duration::from_secs(480);
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&node_out).unwrap_or_default();
    let ok = status.map(|s| s.success()).unwrap_or(false);
    assert!(
        ok,
        "{}",
        server_log(&format!(
            "the browser test failed ({}); screenshots in {}\n--- node tests/browser/e2e.mjs ---\n{output}",
            status.map_or("timed out after 480 s".to_string(), |s| s.to_string()),
            shots.display()
        ))
    );
    println!("{output}");
    println!(
        "browser test passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}
