//! Embed the Pinokio engine: build an [`Engine`] for a throw-away home, run a small JSON script
//! and print the events it reports (one JSON object per line, as `pinokio run --json` does).
//!
//! `cargo run -p pinokio-embed-example` (or `--bin pinokio-embed -- --keep` to keep the home).

use std::sync::Arc;

use pinokio_core::events::FnSink;
use pinokio_core::{Engine, Event, PinokioHome, RunRequest};

/// The script: a `local` variable, a templated `log` line and a shell command.
const SCRIPT: &str = r#"{
  "run": [
    { "method": "local.set", "params": { "greeting": "hello from {{platform}}/{{arch}}" } },
    { "method": "log", "params": { "text": "{{local.greeting}}" } },
    { "method": "shell.run", "params": { "message": "echo embedded shell says {{1 + 1}}" } }
  ]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keep = std::env::args().any(|a| a == "--keep");
    let dir = tempfile::Builder::new()
        .prefix("pinokio-embed-")
        .tempdir()?;
    let home = PinokioHome::new(dir.path().join("pinokio"));

    // Every event goes to this sink; the engine itself never prints.
    let sink = FnSink(|e: &Event| {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    });
    let engine = Engine::builder(home).sink(Arc::new(sink)).build()?;

    // A script is a file; an app would live in HOME/api/<app>/.
    let app = engine.home().api().join("embedded");
    std::fs::create_dir_all(&app)?;
    std::fs::write(app.join("hello.json"), SCRIPT)?;

    let outcome = engine.run(RunRequest::new("~/api/embedded/hello.json"));
    eprintln!("status: {:?}, ok: {}", outcome.status, outcome.ok());
    if keep {
        eprintln!("home kept at {}", dir.keep().display());
    }
    match outcome.error {
        Some(e) => Err(e.to_string().into()),
        None => Ok(()),
    }
}
