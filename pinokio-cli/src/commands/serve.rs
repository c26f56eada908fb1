//! `pinokio serve`: the background engine plus the HTTP API and web UI
//! (`pinokio_http`, docs/api.md) in one process. The engine also serves
//! `HOME/engine.sock`, so `pinokio start/stop/status` run meanwhile use it.
//! Ctrl-C (or SIGTERM, or a control `shutdown`) stops the apps and exits.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pinokio_core::control::{self, Client};
use pinokio_core::{EngineOptions, PinokioHome};
use pinokio_http::{Hub, Server, ServerConfig};

use crate::cli::ServeArgs;
use crate::commands::daemon::{background_engine, print_readopt};

pub fn serve(home: PinokioHome, options: EngineOptions, a: ServeArgs) -> Result<ExitCode> {
    home.ensure()?;
    if let Ok(c) = Client::connect(home.root()) {
        let pid = c
            .request(&serde_json::json!({"op": "ping"}))
            .ok()
            .and_then(|v| v["pid"].as_u64())
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        bail!(
            "an engine is already running for {}{pid}; stop it with `pinokio shutdown` first",
            home.root().display()
        );
    }
    let hub = Hub::new(&home);
    let engine = background_engine(&home, options, |b| b.sink(hub.clone()).answers(hub.clone()))?;
    // idle shutdown, when PINOKIO_IDLE_MINUTES enables it (API actions count
    // as activity)
    let _idle = pinokio_cloud::idle::start_from_env(
        &engine,
        Arc::new(|n: &pinokio_cloud::idle::IdleNotice| eprintln!("idle: {n}")),
    )?;
    let server = Server::start(
        engine.clone(),
        hub.clone(),
        ServerConfig::new(a.host.clone(), a.port),
    )
    .context("cannot start the HTTP server")?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    // the control socket, on the same engine; it returns after stopping
    // every app (on `stop`, or a `shutdown` request)
    let control_thread = {
        let engine = engine.clone();
        let stop = stop.clone();
        std::thread::spawn(move || control::serve_reporting(engine, stop, print_readopt))
    };

    let url = server.url();
    println!("{url}");
    if server.token_created || a.show_token {
        println!("token: {}", server.token);
        println!("open: {url}?token={}", server.token);
    }
    eprintln!(
        "pinokio serve {} on {} (engine socket {}){}",
        std::process::id(),
        server.addr,
        control::socket_path(home.root()).display(),
        if server.token_always {
            "; every request needs the token".to_string()
        } else {
            "; loopback requests need no token".to_string()
        }
    );
    if !server.token_created && !a.show_token {
        eprintln!(
            "the API token is in {} (`pinokio serve --show-token` prints it)",
            pinokio_http::token_path(home.root()).display()
        );
    }

    let mut result = Ok(());
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if control_thread.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // stopping: forms waiting for answers give up so their runs can end
    stop.store(true, Ordering::SeqCst);
    hub.inputs().cancel_all();
    eprintln!("stopping...");
    match control_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => result = Err(anyhow::Error::new(e).context("the engine socket failed")),
        Err(_) => result = Err(anyhow::anyhow!("the engine thread panicked")),
    }
    server.stop();
    result.map(|()| ExitCode::SUCCESS)
}
