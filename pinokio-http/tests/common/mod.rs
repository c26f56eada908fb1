//! Helpers of the HTTP API tests: a fixture launcher in a bare git
//! repository reachable through the home's catalog (by id, through
//! `HOME/git-mirrors`), an engine + server on 127.0.0.1, and a raw HTTP/1.1
//! and Server-Sent Events client on plain sockets (so the tests control
//! every header).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome};
use pinokio_http::{Hub, Server, ServerConfig, ServerHandle};
use serde_json::{json, Value};

/// The fixture's catalog id.
pub const APP: &str = "hello";
const FAKE: &str = "https://example.invalid/fixtures/";

const PINOKIO_JS: &str = r#"module.exports = {
  title: "Hello web",
  icon: "icon.png",
  menu: async (kernel, info) => {
    if (info.running("install.json")) return [{ default: true, text: "Installing", href: "install.json" }]
    if (!info.exists("installed.txt")) return [{ default: true, text: "Install", href: "install.json" }]
    if (info.running("start.json")) {
      const local = info.local("start.json")
      if (local.url) return [{ default: true, text: "Open Web UI", href: local.url }, { text: "Terminal", href: "start.json" }]
      return [{ default: true, text: "Terminal", href: "start.json" }]
    }
    return [{ default: true, text: "Start", href: "start.json" }, { text: "Ask", href: "ask.json" }, { text: "Reset", href: "reset.json" }]
  }
}
"#;

const INSTALL: &str = r#"{ "run": [
  { "method": "shell.run", "params": { "message": "echo installing hello && echo yes > installed.txt" } }
] }"#;

const START: &str = r#"{ "daemon": true, "run": [
  { "method": "shell.run", "params": {
      "message": "python3 server.py {{port}}",
      "on": [{ "event": "/(http:\\/\\/[0-9.]+:[0-9]+)/", "done": true }] } },
  { "method": "local.set", "params": { "url": "{{input.event[1]}}" } }
] }"#;

const ASK: &str = r#"{ "run": [
  { "method": "input", "params": { "title": "Who?", "form": [
      { "key": "name", "title": "Name", "type": "text" },
      { "key": "greeting", "title": "Greeting", "default": "hi" } ] } },
  { "method": "shell.run", "params": { "message": "echo ANSWER={{input.greeting}}-{{input.name}}" } }
] }"#;

const SECRET: &str = r#"{ "run": [
  { "method": "shell.run", "params": { "message": "echo the token is $HF_TOKEN and {{env.HF_TOKEN}}" } }
] }"#;

const RESET: &str =
    r#"{ "run": [ { "method": "fs.rm", "params": { "path": "installed.txt" } } ] }"#;

/// A web server that prints on request: `/say?x` prints `SAY <ms> x`,
/// `/flood?n=N&tag=T` prints N long lines then `FLOOD-END T`.
const SERVER_PY: &str = r#"import http.server, sys, time, urllib.parse
port = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/say":
            print("SAY %d %s" % (time.time_ns() // 1000000, u.query), flush=True)
        elif u.path == "/flood":
            n = int(q["n"][0]); tag = q["tag"][0]; pad = "x" * 150
            out = sys.stdout
            for i in range(n):
                out.write("FLOOD %s %d %s\n" % (tag, i, pad))
            out.write("FLOOD-END %s\n" % tag)
            out.flush()
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
print("serving on http://127.0.0.1:%d" % port, flush=True)
srv.serve_forever()
"#;

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary home with the fixture in its catalog, and a running server.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    /// The launcher's work tree (push more commits from here).
    pub work: PathBuf,
    pub engine: Engine,
    pub hub: Arc<Hub>,
    pub server: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl Fixture {
    /// Bound to 127.0.0.1.
    pub fn new() -> Fixture {
        Fixture::on("127.0.0.1")
    }

    pub fn on(host: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        // the launcher, committed and pushed to a bare repository
        let work = root.join("hello-work");
        std::fs::create_dir_all(&work).unwrap();
        for (name, text) in [
            ("pinokio.js", PINOKIO_JS),
            ("install.json", INSTALL),
            ("start.json", START),
            ("ask.json", ASK),
            ("secret.json", SECRET),
            ("reset.json", RESET),
            ("server.py", SERVER_PY),
        ] {
            std::fs::write(work.join(name), text).unwrap();
        }
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);
        let repos = root.join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        let bare = repos.join("hello.git");
        git(
            &root,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        // the home: a catalog naming it, a mirror to the bare repository
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let entry = |id: &str, name: &str, status: &str| {
            json!({
                "id": id, "name": name,
                "repo_url": format!("{FAKE}{id}"),
                "clone_url": format!("{FAKE}{id}.git"),
                "category": "UTILITY", "tags": ["demo", "web"], "author": "tester",
                "status": status, "summary": format!("{name} for the HTTP tests"),
            })
        };
        let catalog = json!({
            "schema": "pinokio-catalog/1",
            "generated_from": "tests",
            "apps": [
                entry(APP, "Hello web", "ok"),
                entry("broken", "Broken app", "missing"),
                entry("other-image", "Other image", "ok"),
            ],
        });
        let mut cat = catalog.clone();
        cat["apps"][2]["category"] = json!("IMAGE");
        std::fs::write(home.join("catalog.json"), cat.to_string()).unwrap();
        std::fs::write(
            home.join("git-mirrors"),
            format!("{FAKE}=file://{}/\n", repos.display()),
        )
        .unwrap();

        let phome = PinokioHome::new(&home);
        phome.ensure().unwrap();
        let hub = Hub::new(&phome);
        let store = Arc::new(pinokio_core::state::StateStore::open(&home).unwrap());
        // engines of one process hand out ports from the same offset: give
        // each fixture its own start (a port the kernel just picked)
        let port_start = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .min(60_000);
        let options = EngineOptions {
            kill_grace: Duration::from_secs(3),
            port_start,
            ..EngineOptions::default()
        };
        let engine = Engine::builder(phome)
            .facts(Facts::cpu_only())
            .options(options)
            .state(store)
            .sink(hub.clone())
            .answers(hub.clone())
            .build()
            .unwrap();
        let server =
            Server::start(engine.clone(), hub.clone(), ServerConfig::new(host, 0)).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
        Fixture {
            dir,
            home,
            work,
            engine,
            hub,
            server: Some(server),
            addr,
        }
    }

    pub fn token(&self) -> String {
        self.server.as_ref().unwrap().token.clone()
    }

    pub fn app_dir(&self) -> PathBuf {
        self.home.join("api").join(APP)
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// POST an action; returns the job id (asserting 202).
    pub fn action(&self, app: &str, action: &str, body: Value) -> String {
        let r = self.post(&format!("/api/v1/apps/{app}/{action}"), body);
        assert_eq!(r.status, 202, "{action}: {}", r.text());
        r.json()["job"]["id"].as_str().unwrap().to_string()
    }

    /// Wait for a job to end; its final object.
    pub fn wait_job(&self, id: &str, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let j = self.get(&format!("/api/v1/runs/{id}")).json();
            if j["state"] != "running" {
                return j;
            }
            assert!(t0.elapsed() < limit, "job {id} still running: {j}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Install the fixture by its catalog id and check the job succeeded.
    pub fn install(&self) {
        let id = self.action(APP, "install", json!({}));
        let j = self.wait_job(&id, Duration::from_secs(60));
        assert_eq!(j["state"], "succeeded", "{j}");
    }

    /// Start the fixture; its web UI URL.
    pub fn start(&self) -> String {
        let id = self.action(APP, "start", json!({}));
        let j = self.wait_job(&id, Duration::from_secs(60));
        assert_eq!(j["state"], "succeeded", "{j}");
        j["url"].as_str().unwrap().to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        self.engine.shutdown();
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The error kind of an error answer.
    pub fn kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// One request on a new connection (`Host: 127.0.0.1:port` unless given).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // the server may answer (413) before reading it all
    let _ = s.write_all(body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    if chunked {
        let mut c = Chunked::new(r);
        c.read_to_end(&mut body).unwrap();
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// A chunked body reader.
pub struct Chunked<R: BufRead> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    pub fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                self.done = true;
                let mut end = String::new();
                let _ = self.inner.read_line(&mut end);
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// One Server-Sent Event, with the time it arrived.
#[derive(Debug, Clone)]
pub struct Ev {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub at: Instant,
}

impl Ev {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// An event-stream client.
pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: Option<BufReader<Chunked<BufReader<TcpStream>>>>,
    pub stream: TcpStream,
    line: String,
    pending: Option<Ev>,
}

impl Sse {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let s = TcpStream::connect(addr).unwrap();
        Sse::open_on(s, addr, path, headers)
    }

    pub fn open_on(s: TcpStream, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut w = s.try_clone().unwrap();
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let (status, headers) = read_head(&mut r);
        Sse {
            status,
            headers,
            reader: Some(BufReader::new(Chunked::new(r))),
            stream: s,
            line: String::new(),
            pending: None,
        }
    }

    /// The next event (comments skipped); `None` at the end of the stream
    /// or after `limit` (a partly read event is kept for the next call).
    pub fn next(&mut self, limit: Duration) -> Option<Ev> {
        let deadline = Instant::now() + limit;
        let r = self.reader.as_mut()?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match r.read_line(&mut self.line) {
                Ok(0) => {
                    self.reader = None;
                    return None;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(_) => {
                    self.reader = None;
                    return None;
                }
            }
            if !self.line.ends_with('\n') {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let l = line.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                if let Some(mut ev) = self.pending.take() {
                    ev.at = Instant::now();
                    return Some(ev);
                }
                continue;
            }
            if l.starts_with(':') {
                continue;
            }
            let ev = self.pending.get_or_insert_with(|| Ev {
                id: None,
                event: "message".into(),
                data: String::new(),
                at: Instant::now(),
            });
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            let v = v.strip_prefix(' ').unwrap_or(v);
            match k {
                "id" => ev.id = Some(v.to_string()),
                "event" => ev.event = v.to_string(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v)
                }
                _ => {}
            }
        }
    }

    /// Events until one matches `f` (included), or `limit`.
    pub fn until(&mut self, limit: Duration, f: impl Fn(&Ev) -> bool) -> (Vec<Ev>, bool) {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(e) = self.next(deadline.saturating_duration_since(Instant::now())) {
            let hit = f(&e);
            out.push(e);
            if hit {
                return (out, true);
            }
        }
        (out, false)
    }
}

/// Is this process gone (zombies count as gone: PID 1 here does not reap)?
pub fn dead(pid: u32) -> bool {
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

/// GET a URL of the app (`http://127.0.0.1:port/path`): the status, or
/// `None` when nothing answers.
pub fn app_get(url: &str, path: &str) -> Option<u16> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = hostport.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Wait until `f` holds.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
