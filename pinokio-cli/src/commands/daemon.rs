//! The background engine: `pinokio engine` (foreground), and `start` /
//! `stop` / `status`, which start it on demand and talk to it over
//! `HOME/engine.sock` (see `pinokio_core::control`).

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pinokio_core::control::{self, Client};
use pinokio_core::engine::EngineBuilder;
use pinokio_core::process::Supervisor;
use pinokio_core::{Engine, EngineOptions, PinokioHome};
use serde_json::{json, Value};

use crate::cli::{EngineArgs, ExposeArgs, StartArgs, StopArgs};

/// Build the background engine: shells under supervisors (`pinokio
/// __shim`), so apps keep running when this engine dies and the next engine
/// re-adopts them; the state store; the exposer. `customize` adds to the
/// builder (`pinokio serve`: the HTTP hub as event sink and input answers).
pub(crate) fn background_engine(
    home: &PinokioHome,
    options: EngineOptions,
    customize: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Result<Engine> {
    home.ensure()?;
    let exe = std::env::current_exe().context("cannot find the pinokio executable")?;
    let mut b = Engine::builder(home.clone())
        .probe(pinokio_cloud::default_probe())
        .options(options)
        .supervisor(Supervisor {
            program: exe,
            args: vec![pinokio_core::process::shim::SHIM_ARG.into()],
            run_dir: home.root().join("run"),
        });
    let store = pinokio_core::state::StateStore::open(home.root())
        .ok()
        .map(Arc::new);
    if let Some(store) = &store {
        b = b.state(store.clone());
    }
    b = b.exposer(Arc::new(pinokio_cloud::expose::exposer_for(
        home.root(),
        store,
    )));
    // web UI URLs from every shell's output and listening ports
    b = b.url_watchers(pinokio_cloud::urls::shell_watchers());
    customize(b).build().context("cannot start the engine")
}

/// Say what an engine re-adopted from an earlier one (stderr).
pub(crate) fn print_readopt(r: &pinokio_core::adopt::ReadoptReport) {
    if !r.is_empty() {
        eprintln!(
            "re-adopted {} shell(s) of {} script(s) left by an earlier engine; \
             stopped {} of interrupted runs; {} had ended{}",
            r.adopted.len(),
            r.scripts.len(),
            r.stopped.len(),
            r.ended.len(),
            if r.failed.is_empty() {
                String::new()
            } else {
                format!("; unreachable: {}", r.failed.join("; "))
            }
        );
    }
}

/// `pinokio engine`: run the background engine in the foreground until
/// Ctrl-C or a `shutdown` request.
pub fn engine(home: PinokioHome, options: EngineOptions, _a: EngineArgs) -> Result<ExitCode> {
    let engine = background_engine(&home, options, |b| b)?;
    // idle shutdown, when PINOKIO_IDLE_MINUTES enables it
    let _idle = pinokio_cloud::idle::start_from_env(
        &engine,
        Arc::new(|n: &pinokio_cloud::idle::IdleNotice| eprintln!("idle: {n}")),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    eprintln!(
        "pinokio engine {} serving {}",
        std::process::id(),
        control::socket_path(engine.home().root()).display()
    );
    control::serve_reporting(engine, stop, print_readopt)?;
    Ok(ExitCode::SUCCESS)
}

/// Connect to the home's background engine, starting one when none runs.
pub fn ensure_engine(home: &PinokioHome) -> Result<Client> {
    home.ensure()?;
    if let Ok(c) = Client::connect(home.root()) {
        return Ok(c);
    }
    let exe = std::env::current_exe().context("cannot find the pinokio executable")?;
    let log_path = home.logs().join("engine.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(home.root())
        .arg("engine")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // its own session: the engine outlives this command and its terminal
        // SAFETY: setsid is async-signal-safe and touches no Rust state.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().context("cannot start the background engine")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(c) = Client::connect(home.root()) {
            return Ok(c);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the background engine exited at once ({status}); see {}",
                log_path.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the background engine did not answer within 15 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tell where the app is exposed (stderr, so stdout stays the local URL).
pub(crate) fn print_exposure(reply: &Value) {
    if let Some(e) = reply.get("exposure").filter(|e| e.is_object()) {
        eprintln!(
            "{} URL: {}{}",
            e["via"].as_str().unwrap_or("public"),
            e["public_url"].as_str().unwrap_or("-"),
            e["note"]
                .as_str()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    if let Some(err) = reply.get("expose_error").and_then(|e| e.as_str()) {
        eprintln!("not exposed: {err}");
    }
}

/// `pinokio expose APP`: make a running app reachable; print the URL.
pub fn expose(home: PinokioHome, a: ExposeArgs) -> Result<ExitCode> {
    if a.install {
        // the user asked for the tunnel program: install it when missing
        let tool = pinokio_cloud::install::Tool::parse(&a.via)
            .ok_or_else(|| anyhow::anyhow!("--install needs --via cloudflare or --via ngrok"))?;
        home.ensure()?;
        super::tools::ensure_tool(&home, tool)?;
    }
    let client = ensure_engine(&home)?;
    let reply = client.request(&json!({"op": "expose", "app": a.app, "via": a.via}))?;
    let e = &reply["exposure"];
    println!("{}", e["public_url"].as_str().unwrap_or("-"));
    eprintln!(
        "{} exposed via {}{}",
        a.app,
        e["via"].as_str().unwrap_or("?"),
        e["note"]
            .as_str()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pinokio unexpose APP`.
pub fn unexpose(home: PinokioHome, a: StopArgs) -> Result<ExitCode> {
    let client = ensure_engine(&home)?;
    let reply = client.request(&json!({"op": "unexpose", "app": a.app}))?;
    let n = reply["stopped"].as_array().map_or(0, |v| v.len());
    if n == 0 {
        println!("{} was not exposed", a.app);
    } else {
        println!("stopped {n} exposure(s) of {}", a.app);
    }
    Ok(ExitCode::SUCCESS)
}

/// `pinokio start APP`: start the app in the background engine, print its URL, return.
pub fn start(home: PinokioHome, a: StartArgs) -> Result<ExitCode> {
    if !home.api().join(&a.app).is_dir() {
        bail!(
            "app {:?} is not installed (no folder {}); install it with `pinokio install` or use `pinokio up`",
            a.app,
            home.api().join(&a.app).display()
        );
    }
    let client = ensure_engine(&home)?;
    let mut req = json!({"op": "start", "app": a.app});
    if let Some(s) = &a.script {
        req["script"] = json!(s);
    }
    if let Some(args) = a.args.to_object() {
        req["args"] = args;
    }
    if a.expose || a.via.is_some() {
        req["expose"] = json!(true);
    } else if a.no_expose {
        req["expose"] = json!(false);
    }
    if let Some(via) = &a.via {
        req["via"] = json!(via);
    }
    let reply = client.request(&req)?;
    print_exposure(&reply);
    match reply.get("url").and_then(|u| u.as_str()) {
        Some(url) => {
            println!("{url}");
            if reply.get("already_running") == Some(&Value::Bool(true)) {
                eprintln!("{} was already running", a.app);
            }
        }
        None => eprintln!("{}: started (no web UI URL)", a.app),
    }
    Ok(ExitCode::SUCCESS)
}

/// `pinokio stop APP`.
pub fn stop(home: PinokioHome, a: StopArgs) -> Result<ExitCode> {
    let Ok(client) = Client::connect(home.root()) else {
        if !home.api().join(&a.app).is_dir() {
            bail!("app {:?} is not installed", a.app);
        }
        eprintln!("{} is not running (no background engine)", a.app);
        return Ok(ExitCode::SUCCESS);
    };
    let reply = client.request(&json!({"op": "stop", "app": a.app}))?;
    let stopped: Vec<&str> = reply["stopped"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if stopped.is_empty() {
        eprintln!("{} was not running", a.app);
    } else {
        println!("stopped {} ({})", a.app, stopped.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Live rows from the background engine, when one runs.
pub fn live_status(home: &Path) -> Option<Vec<Value>> {
    let c = Client::connect(home).ok()?;
    let reply = c.request(&json!({"op": "status"})).ok()?;
    reply["apps"].as_array().cloned()
}

/// `pinokio engine stop`-like shutdown used by tests and `pinokio shutdown`.
pub fn shutdown(home: PinokioHome) -> Result<ExitCode> {
    match Client::connect(home.root()) {
        Ok(c) => {
            c.request(&json!({"op": "shutdown"}))?;
            println!("the background engine is shutting down");
        }
        Err(_) => eprintln!("no background engine is running"),
    }
    Ok(ExitCode::SUCCESS)
}
