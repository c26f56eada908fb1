//! Load on `pinokio serve` (issue 7): 200 clients polling status plus 50
//! following an app's live logs while the app prints 5,000 lines per second.
//! Reports p50/p99 status latency, lines delivered to each follower (gaps =
//! lost lines), the server's peak RSS and its start-up time to a 200 on
//! `/api/v1/health`.
//!
//! Run: `cargo bench -p pinokio-cli --bench http_load` (release build).
//! Knobs: `PINOKIO_LOAD_SECS` (default 10), `PINOKIO_LOAD_POLLERS` (200),
//! `PINOKIO_LOAD_FOLLOWERS` (50), `PINOKIO_LOAD_RATE` (lines/s, 5000),
//! `PINOKIO_LOAD_POLL_MS` (pause between one poller's requests, 100).
//!
//! Clients are plain threads on raw sockets (HTTP/1.1 keep-alive for the
//! pollers, chunked SSE for the followers), so the client side costs little
//! of this 2-core machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A response: status and body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// Read one HTTP/1.1 response (Content-Length or chunked).
fn read_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = None;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if n == 0 {
                line.clear();
                r.read_line(&mut line)?;
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Reply { status, body })
}

fn request(
    r: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<Reply> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    r.get_mut().write_all(head.as_bytes())?;
    read_reply(r)
}

fn connect(port: u16) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn write_app(home: &Path, rate: u64) {
    let app = home.join("api").join("loadgen");
    std::fs::create_dir_all(&app).unwrap();
    // prints "ready <url>", then numbered lines at `rate` per second, paced
    // in 10 ms batches
    std::fs::write(
        app.join("emit.py"),
        format!(
            r#"import sys, time
rate = {rate}
print("ready http://127.0.0.1:9/", flush=True)
n = 0
t0 = time.monotonic()
while True:
    due = int((time.monotonic() - t0) * rate)
    out = []
    while n < due:
        out.append("line %d payload-payload-payload-payload" % n)
        n += 1
    if out:
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
    time.sleep(0.01)
"#
        ),
    )
    .unwrap();
    std::fs::write(
        app.join("start.json"),
        r#"{
  "daemon": true,
  "run": [
    { "method": "shell.run",
      "params": { "message": "python3 emit.py",
                  "on": [{ "event": "/ready (http:\\/\\/[0-9.]+:[0-9]+\\/)/", "done": true }] } },
    { "method": "local.set", "params": { "url": "{{input.event[1]}}" } }
  ]
}"#,
    )
    .unwrap();
    std::fs::write(
        app.join("pinokio.js"),
        r#"module.exports = { title: "loadgen", menu: async (kernel, info) => {
  if (info.running("start.json") && info.local("start.json").url) {
    return [{ default: true, text: "Open", href: info.local("start.json").url }]
  }
  return [{ default: true, text: "Start", href: "start.json" }]
} }"#,
    )
    .unwrap();
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut r) = connect(self.port) {
            let _ = request(&mut r, "POST", "/api/v1/apps/loadgen/stop", "{}");
        }
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let secs = env_num("PINOKIO_LOAD_SECS", 10);
    let pollers = env_num("PINOKIO_LOAD_POLLERS", 200);
    let followers = env_num("PINOKIO_LOAD_FOLLOWERS", 50);
    let rate = env_num("PINOKIO_LOAD_RATE", 5000);
    let poll_ms = env_num("PINOKIO_LOAD_POLL_MS", 100);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    write_app(&home, rate);
    let port = free_port();

    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_pinokio"))
        .arg("--home")
        .arg(&home)
        .args(["serve", "--port", &port.to_string()])
        .env_remove("PYTHONUNBUFFERED")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start pinokio serve");
    let server = Server { child, port };
    let startup = loop {
        if let Ok(mut r) = connect(port) {
            if let Ok(rep) = request(&mut r, "GET", "/api/v1/health", "") {
                if rep.status == 200 {
                    break t0.elapsed();
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "pinokio serve did not answer"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let pid = server.child.id();
    let idle_rss = rss_kib(pid);

    // start the app and wait until it runs
    let mut c = connect(port).unwrap();
    let rep = request(&mut c, "POST", "/api/v1/apps/loadgen/start", "{}").unwrap();
    assert_eq!(
        rep.status,
        202,
        "start: {}",
        String::from_utf8_lossy(&rep.body)
    );
    let job = json(&rep)["job"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rep = request(&mut c, "GET", &format!("/api/v1/runs/{job}"), "").unwrap();
        let state = json(&rep)["state"].as_str().unwrap_or("").to_string();
        if state == "succeeded" {
            break;
        }
        assert!(
            state == "running" && Instant::now() < deadline,
            "start job: {}",
            String::from_utf8_lossy(&rep.body)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    {
        let (stop, peak) = (stop.clone(), peak_rss.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    // followers: count lines, gaps in the numbering, and drop markers
    struct Follow {
        lines: u64,
        gaps: u64,
        dropped_events: u64,
        first: Option<u64>,
        last: Option<u64>,
    }
    let mut follow_threads = Vec::new();
    for _ in 0..followers {
        let stop = stop.clone();
        follow_threads.push(std::thread::spawn(move || {
            let mut f = Follow {
                lines: 0,
                gaps: 0,
                dropped_events: 0,
                first: None,
                last: None,
            };
            let Ok(mut r) = connect(port) else { return f };
            let _ = r
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(500)));
            let head = "GET /api/v1/apps/loadgen/logs/stream?lines=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
            if r.get_mut().write_all(head.as_bytes()).is_err() {
                return f;
            }
            let mut line = String::new();
            let mut event = String::new();
            if r.read_line(&mut line).is_ok() && !line.contains(" 200") {
                eprintln!("follower: {}", line.trim_end());
            }
            while !stop.load(Ordering::SeqCst) {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => {
                        eprintln!("follower: the server closed the stream");
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => continue,
                }
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = l.strip_prefix("data: ") {
                    if event == "dropped" {
                        f.dropped_events += 1;
                        f.last = None;
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(d) else {
                        continue;
                    };
                    let text = v["text"].as_str().unwrap_or("");
                    for t in text.split(['\n', '\r']) {
                        let Some(n) = t
                            .strip_prefix("line ")
                            .and_then(|r| r.split(' ').next())
                            .and_then(|n| n.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        f.lines += 1;
                        if let Some(last) = f.last {
                            if n > last + 1 {
                                f.gaps += n - last - 1;
                            }
                        }
                        f.first.get_or_insert(n);
                        f.last = Some(n);
                    }
                }
            }
            f
        }));
    }

    // pollers: GET /api/v1/apps on keep-alive connections
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut poll_threads = Vec::new();
    for i in 0..pollers {
        let (stop, lat, errors) = (stop.clone(), latencies.clone(), errors.clone());
        poll_threads.push(std::thread::spawn(move || {
            // spread the first requests over one poll interval
            std::thread::sleep(Duration::from_millis(poll_ms * i / pollers.max(1)));
            let mut mine = Vec::new();
            let mut conn: Option<BufReader<TcpStream>> = None;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let ok = (|| -> std::io::Result<bool> {
                    if conn.is_none() {
                        conn = Some(connect(port)?);
                    }
                    let rep = request(conn.as_mut().unwrap(), "GET", "/api/v1/apps", "")?;
                    Ok(rep.status == 200)
                })();
                match ok {
                    Ok(true) => mine.push(t.elapsed().as_micros() as u32),
                    _ => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        conn = None;
                    }
                }
                std::thread::sleep(Duration::from_millis(poll_ms));
            }
            lat.lock().unwrap().extend(mine);
        }));
    }

    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::SeqCst);
    for t in poll_threads {
        let _ = t.join();
    }
    let follows: Vec<Follow> = follow_threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .collect();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    let peak = peak_rss.load(Ordering::SeqCst);
    let lines: Vec<u64> = follows.iter().map(|f| f.lines).collect();
    let gaps: u64 = follows.iter().map(|f| f.gaps).sum();
    let dropped: u64 = follows.iter().map(|f| f.dropped_events).sum();
    let kept_up = follows.iter().filter(|f| f.dropped_events == 0).count();
    let lost_kept_up: u64 = follows
        .iter()
        .filter(|f| f.dropped_events == 0)
        .map(|f| f.gaps)
        .sum();
    println!(
        "load: {secs} s, {pollers} pollers every {poll_ms} ms, {followers} followers, app printing {rate} lines/s"
    );
    println!(
        "start-up to 200 on /api/v1/health              {:>8.1} ms   target < 200 ms   {}",
        startup.as_secs_f64() * 1000.0,
        verdict(startup < Duration::from_millis(200))
    );
    println!(
        "status requests: {} ok, {} errors; p50 {:.2} ms, p99 {:.2} ms (max {:.2} ms)   target p99 < 50 ms   {}",
        lat.len(),
        errors.load(Ordering::SeqCst),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        verdict(pct(0.99) < 50.0 && errors.load(Ordering::SeqCst) == 0)
    );
    let silent = follows.iter().filter(|f| f.lines == 0).count();
    println!(
        "followers: {} connected ({} got no line), lines per follower min {} max {} (~{} expected), {} kept up with {} lost lines, {} drop markers in all, {} gaps in all   target no lost lines   {}",
        follows.len(),
        silent,
        lines.iter().min().copied().unwrap_or(0),
        lines.iter().max().copied().unwrap_or(0),
        rate * secs,
        kept_up,
        lost_kept_up,
        dropped,
        gaps,
        verdict(follows.len() as u64 == followers && silent == 0 && kept_up > 0 && lost_kept_up == 0)
    );
    println!(
        "server RSS: idle {:.1} MB, peak under load {:.1} MB   target < 60 MB   {}",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        verdict(peak < 60 * 1024)
    );
    drop(server);
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}
