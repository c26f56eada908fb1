//! `process.wait` (section 4.13), `exec` (4.18) and `load` (4.19).

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::net::{client_for, error_chain, interruptible, js_number};
use super::{parse_params, MethodCx, MethodError, Registry};
use crate::events::EventKind;
use crate::loader::{self, ScriptKind};
use crate::template::{js_string, truthy};

pub fn register(r: &mut Registry) {
    r.register("process.wait", wait);
    r.register("exec", exec);
    r.register("load", load);
}

/// How often long waits look at the stop flag.
const SLICE: Duration = Duration::from_millis(25);
/// How often a waiting step prints that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Sleep `d`, returning `Stopped` as soon as the run is stopped.
fn sleep_stoppable(cx: &MethodCx<'_>, d: Duration) -> Result<(), MethodError> {
    let end = Instant::now() + d;
    loop {
        if cx.stopped() {
            return Err(MethodError::Stopped);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep(SLICE.min(end - now));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// process.wait
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct WaitParams {
    sec: Option<Value>,
    min: Option<Value>,
    uri: Option<Value>,
    url: Option<Value>,
    /// Seconds between URL checks (default 1).
    interval: Option<Value>,
    /// Ours: give up on a URL after this many seconds (default: never).
    timeout: Option<Value>,
    on: Option<Value>,
    message: Option<Value>,
    app: Option<Value>,
    id: Option<Value>,
    name: Option<Value>,
}

fn is_truthy(v: &Option<Value>) -> bool {
    v.as_ref().map(truthy).unwrap_or(false)
}

fn wait(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: WaitParams = parse_params(cx.method, params)?;
    if is_truthy(&p.app) || is_truthy(&p.id) || is_truthy(&p.name) {
        return Err(MethodError::Unsupported {
            method: cx.method.into(),
            reason: "waiting for a desktop application (app/id/name) is GUI-only".into(),
        });
    }
    if let Some(m) = p.message.as_ref().filter(|m| truthy(m)) {
        cx.output(format!("{}\n", js_string(m)));
    }
    if is_truthy(&p.sec) || is_truthy(&p.min) {
        let ms = if is_truthy(&p.sec) {
            p.sec.as_ref().and_then(js_number).unwrap_or(0.0) * 1000.0
        } else {
            p.min.as_ref().and_then(js_number).unwrap_or(0.0) * 60_000.0
        };
        let d = Duration::from_millis(ms.max(0.0) as u64);
        sleep_stoppable(cx, d)?;
        return Ok(None);
    }
    let target = if is_truthy(&p.uri) {
        p.uri.clone()
    } else if is_truthy(&p.url) {
        p.url.clone()
    } else {
        None
    };
    if let Some(u) = target {
        wait_url(cx, &js_string(&u), &p)?;
        return Ok(None);
    }
    if is_truthy(&p.on) {
        wait_on(cx, p.on.unwrap_or(Value::Null))?;
        return Ok(None);
    }
    let zero = |v: &Option<Value>| v.as_ref().map(|x| !x.is_null()).unwrap_or(false);
    if zero(&p.sec) || zero(&p.min) {
        // upstream waits forever on `sec: 0` (a falsy value); a headless run
        // would hang, so treat it as no wait at all
        cx.emit(EventKind::Warning {
            index: Some(cx.index),
            message: "process.wait with sec/min 0: not waiting (Pinokio would wait until the script is stopped)"
                .into(),
        });
        return Ok(None);
    }
    cx.output("process.wait: no sec, min, url or on given; waiting until the script is stopped\n");
    loop {
        sleep_stoppable(cx, Duration::from_secs(3600))?;
    }
}

fn wait_url(cx: &MethodCx<'_>, raw: &str, p: &WaitParams) -> Result<(), MethodError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| MethodError::Failed(format!("process.wait: invalid url {raw:?}: {e}")))?;
    let interval = p
        .interval
        .as_ref()
        .and_then(js_number)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(1));
    let limit = p
        .timeout
        .as_ref()
        .and_then(js_number)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    // upstream uses the interval as the request timeout; keep at least 1 s
    let per_request = interval.max(Duration::from_secs(1));
    let client = client_for(&url, Some(per_request))
        .map_err(|e| MethodError::Failed(format!("process.wait: {e}")))?;
    cx.output(format!(
        "Waiting for {url} to answer (every {:.1}s{})\n",
        interval.as_secs_f64(),
        limit
            .map(|l| format!(", for up to {}", secs(l)))
            .unwrap_or_default()
    ));
    let start = Instant::now();
    let mut last_progress = start;
    loop {
        let c = client.clone();
        let u = url.clone();
        let last = interruptible(cx, move || match c.get(u).send() {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Err(error_chain(&e)),
        })?;
        let last = match last {
            Ok(()) => {
                cx.output(format!("{url} is up\n"));
                return Ok(());
            }
            Err(e) => e,
        };
        let elapsed = start.elapsed();
        if let Some(l) = limit {
            if elapsed >= l {
                return Err(MethodError::Failed(format!(
                    "process.wait: {url} did not answer with a 2xx status within {} (last: {last})",
                    secs(l)
                )));
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            cx.output(format!(
                "Still waiting for {url} ({}, last: {last})\n",
                secs(elapsed)
            ));
        }
        let mut pause = interval;
        if let Some(l) = limit {
            pause = pause.min(l.saturating_sub(start.elapsed()));
        }
        sleep_stoppable(cx, pause)?;
    }
}

/// The `wait-on` options we honour.
#[derive(Debug, Deserialize)]
struct WaitOn {
    #[serde(default)]
    resources: Vec<String>,
    /// Milliseconds (default: forever).
    timeout: Option<Value>,
    /// Milliseconds between checks (default 250).
    interval: Option<Value>,
    /// Milliseconds before the first check.
    delay: Option<Value>,
    /// Wait for the resources to become unavailable.
    #[serde(default)]
    reverse: bool,
    #[serde(rename = "tcpTimeout")]
    tcp_timeout: Option<Value>,
    #[serde(rename = "httpTimeout")]
    http_timeout: Option<Value>,
}

fn ms_opt(v: &Option<Value>) -> Option<Duration> {
    v.as_ref()
        .and_then(js_number)
        .filter(|m| *m > 0.0)
        .map(|m| Duration::from_millis(m as u64))
}

fn wait_on(cx: &MethodCx<'_>, on: Value) -> Result<(), MethodError> {
    let o: WaitOn = serde_json::from_value(on).map_err(|e| MethodError::InvalidParams {
        method: cx.method.into(),
        message: format!("`on` must be a wait-on object {{resources: [...], timeout}}: {e}"),
    })?;
    if o.resources.is_empty() {
        return Err(MethodError::InvalidParams {
            method: cx.method.into(),
            message: "`on.resources` must list at least one resource".into(),
        });
    }
    let interval = ms_opt(&o.interval).unwrap_or(Duration::from_millis(250));
    let limit = ms_opt(&o.timeout);
    let tcp_timeout = ms_opt(&o.tcp_timeout).unwrap_or(Duration::from_millis(300));
    let http_timeout = ms_opt(&o.http_timeout).unwrap_or(Duration::from_secs(2));
    cx.output(format!("Waiting for: {}\n", o.resources.join(", ")));
    if let Some(d) = ms_opt(&o.delay) {
        sleep_stoppable(cx, d)?;
    }
    let start = Instant::now();
    let mut last_progress = start;
    let mut pending: Vec<String> = o.resources.clone();
    loop {
        let mut still = Vec::new();
        for r in &pending {
            let up = check_resource(cx, r, tcp_timeout, http_timeout)?;
            if up == o.reverse {
                still.push(r.clone());
            }
        }
        pending = still;
        if pending.is_empty() {
            cx.output("Wait finished\n");
            return Ok(());
        }
        let elapsed = start.elapsed();
        if let Some(l) = limit {
            if elapsed >= l {
                return Err(MethodError::Failed(format!(
                    "process.wait: timed out after {} ms waiting for: {}",
                    l.as_millis(),
                    pending.join(", ")
                )));
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            cx.output(format!(
                "Still waiting ({}) for: {}\n",
                secs(elapsed),
                pending.join(", ")
            ));
        }
        let mut pause = interval;
        if let Some(l) = limit {
            pause = pause.min(l.saturating_sub(start.elapsed()));
        }
        sleep_stoppable(cx, pause)?;
    }
}

/// Is one wait-on resource available now?
fn check_resource(
    cx: &MethodCx<'_>,
    r: &str,
    tcp_timeout: Duration,
    http_timeout: Duration,
) -> Result<bool, MethodError> {
    if let Some(rest) = r.strip_prefix("tcp:") {
        let addr = match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => format!("{host}:{port}"),
            _ => format!("localhost:{}", rest.trim_start_matches(':')),
        };
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| MethodError::Failed(format!("process.wait: bad resource {r:?}: {e}")))?
            .collect();
        return Ok(addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, tcp_timeout).is_ok()));
    }
    for (prefix, get, scheme) in [
        ("http-get://", true, "http://"),
        ("https-get://", true, "https://"),
        ("http://", false, "http://"),
        ("https://", false, "https://"),
    ] {
        if let Some(rest) = r.strip_prefix(prefix) {
            let raw = format!("{scheme}{rest}");
            let url = reqwest::Url::parse(&raw).map_err(|e| {
                MethodError::Failed(format!("process.wait: bad resource {r:?}: {e}"))
            })?;
            let client = client_for(&url, Some(http_timeout))
                .map_err(|e| MethodError::Failed(format!("process.wait: {e}")))?;
            let verb = if get {
                reqwest::Method::GET
            } else {
                reqwest::Method::HEAD
            };
            return interruptible(cx, move || {
                client
                    .request(verb, url)
                    .send()
                    .map(|resp| resp.status().is_success())
                    .unwrap_or(false)
            });
        }
    }
    if let Some(rest) = r.strip_prefix("socket:") {
        return Ok(std::os::unix::net::UnixStream::connect(rest).is_ok());
    }
    let file = r.strip_prefix("file:").unwrap_or(r);
    let path = cx.resolve(file)?;
    Ok(path.exists())
}

// ---------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct ExecParams {
    message: Option<Value>,
    path: Option<String>,
    cwd: Option<String>,
    env: Option<Map<String, Value>>,
    /// Shell to run the command with (default `/bin/sh`).
    shell: Option<String>,
    /// Milliseconds; the command is sent SIGTERM when it runs longer.
    timeout: Option<Value>,
}

fn exec(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: ExecParams = parse_params(cx.method, params)?;
    let message = match &p.message {
        Some(m) if truthy(m) => js_string(m),
        _ => return Ok(None),
    };
    let cwd = match p
        .cwd
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(p.path.as_deref().filter(|s| !s.is_empty()))
    {
        Some(d) => cx.resolve(d)?,
        None => cx.cwd().to_path_buf(),
    };
    let mut env = cx.engine.env_for(cx.run.app_root.as_deref());
    for (k, v) in p.env.iter().flatten() {
        if !v.is_null() {
            env.insert(k.clone(), js_string(v));
        }
    }
    let shell = p
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    let timeout = ms_opt(&p.timeout);
    cx.output(format!("Exec: {message}\n"));

    let spawned = {
        use std::os::unix::process::CommandExt;
        Command::new(&shell)
            .arg("-c")
            .arg(&message)
            .current_dir(&cwd)
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => json!("ENOENT"),
                std::io::ErrorKind::PermissionDenied => json!("EACCES"),
                _ => Value::Null,
            };
            return Ok(Some(json!({
                "stdout": "",
                "stderr": "",
                "error": {
                    "code": code,
                    "message": format!("spawn {shell} in {}: {e}", cwd.display()),
                    "cmd": message,
                },
            })));
        }
    };
    let reader = |s: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut s) = s {
                let _ = s.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pid = child.id();
    let kill_group = |signal: &str| {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let start = Instant::now();
    let mut killed = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        if cx.stopped() {
            kill_group("-KILL");
            let _ = child.kill();
            let _ = child.wait();
            return Err(MethodError::Stopped);
        }
        if let Some(t) = timeout {
            if !killed && start.elapsed() >= t {
                killed = true;
                kill_group("-TERM");
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let error = match status {
        Some(st) if st.success() => Value::Null,
        Some(st) => {
            use std::os::unix::process::ExitStatusExt;
            let signal = st.signal().map(signal_name);
            json!({
                "code": st.code(),
                "killed": killed || signal.is_some(),
                "signal": signal,
                "cmd": message,
                "message": format!("Command failed: {message}\n{stderr}"),
            })
        }
        None => {
            json!({"code": null, "cmd": message, "message": format!("Command failed: {message}")})
        }
    };
    Ok(Some(
        json!({ "stdout": stdout, "stderr": stderr, "error": error }),
    ))
}

fn signal_name(n: i32) -> String {
    match n {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        3 => "SIGQUIT".into(),
        6 => "SIGABRT".into(),
        9 => "SIGKILL".into(),
        13 => "SIGPIPE".into(),
        15 => "SIGTERM".into(),
        other => format!("SIG{other}"),
    }
}

// ---------------------------------------------------------------------------
// load
// ---------------------------------------------------------------------------

fn load(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Map<String, Value> = parse_params(cx.method, params)?;
    let mut out = Map::new();
    for (name, v) in p {
        let value = match &v {
            Value::String(s) if !s.is_empty() => match load_one(cx, s) {
                Ok(v) => v,
                Err(e) => {
                    cx.emit(EventKind::Warning {
                        index: Some(cx.index),
                        message: format!("load: {name}: {e}"),
                    });
                    Value::Null
                }
            },
            _ => Value::Null,
        };
        out.insert(name, value);
    }
    Ok(Some(Value::Object(out)))
}

fn load_one(cx: &MethodCx<'_>, p: &str) -> Result<Value, String> {
    let path: PathBuf = cx.resolve(p).map_err(|e| e.to_string())?;
    if !path.is_file() {
        return Err(format!("{} does not exist", path.display()));
    }
    match ScriptKind::of(Path::new(&path)) {
        Some(ScriptKind::Js) => loader::load_script(&path, cx.js)
            .map(|s| s.body)
            .map_err(|e| e.to_string()),
        _ => loader::read_json(&path).map_err(|e| e.to_string()),
    }
}
