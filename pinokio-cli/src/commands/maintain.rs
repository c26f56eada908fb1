//! `pinokio logs`, `pinokio update`, `pinokio reset`: app maintenance that
//! needs no background engine.
//!
//! - `logs` reads the shell logs the process manager writes under
//!   `HOME/api/<app>/logs/shell` (see `pinokio_core::applogs`); `-f` polls
//!   them every 200 ms until Ctrl-C (exit 0).
//! - `update` runs the launcher's `update.js`/`update.json`, else
//!   `git pull --ff-only`, recording `updating` then `installed`/`failed`.
//! - `reset` stops the app (in the background engine too, when one runs)
//!   and runs `reset.js`/`reset.json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pinokio_core::applogs::{self, LogLine};
use pinokio_core::apps::{self, AppError, Updated};
use pinokio_core::control::Client;
use pinokio_core::state::{AppRecord, AppState};
use pinokio_core::{EngineOptions, PinokioHome};
use serde_json::json;

use super::apps::{engine, open_store};
use super::run::EXIT_OUTPUT_CLOSED;
use crate::cli::{LogsArgs, ResetArgs, UpdateArgs};

/// How often `logs -f` looks at the files.
const POLL: Duration = Duration::from_millis(200);

/// An installed app by name: `HOME/api/<name>`.
fn installed_app(home: &PinokioHome, app: &str) -> Result<(String, PathBuf)> {
    let api = home.api();
    let ok = !app.is_empty() && !app.contains('/') && app != "." && app != "..";
    let dir = api.join(app);
    if !ok || !dir.is_dir() {
        bail!(
            "unknown app {app:?}: it is not installed in {} (see `pinokio status`)",
            api.display()
        );
    }
    Ok((app.to_string(), dir))
}

/// Print lines as `[script] line`; false when stdout is closed.
fn print(lines: &[LogLine]) -> bool {
    let mut out = std::io::stdout().lock();
    for l in lines {
        if writeln!(out, "[{}] {}", l.script, l.text).is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

pub fn logs(home: PinokioHome, a: LogsArgs) -> Result<ExitCode> {
    let (name, dir) = installed_app(&home, &a.app)?;
    let filter = a.script.as_deref();
    let logs = applogs::selected_logs(&dir, filter);
    if logs.is_empty() {
        let all = applogs::script_logs(&dir);
        match filter {
            Some(s) if !all.is_empty() => {
                let names: Vec<String> = all.into_iter().map(|l| l.script).collect();
                let msg = format!(
                    "{name} has no logs for script {s:?}; scripts with logs: {}",
                    names.join(", ")
                );
                if !a.follow {
                    bail!(msg);
                }
                eprintln!("{msg}; waiting for it to log");
            }
            _ => eprintln!(
                "no logs yet for {name} ({})",
                applogs::log_dir(&dir).display()
            ),
        }
    }
    if !a.follow {
        let lines = applogs::tail(&dir, filter, a.lines)?;
        if !print(&lines) {
            return Ok(ExitCode::from(EXIT_OUTPUT_CLOSED));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let (lines, mut follower) = applogs::follow(&dir, filter, a.lines)?;
    if !print(&lines) {
        return Ok(ExitCode::from(EXIT_OUTPUT_CLOSED));
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
        if !print(&follower.poll()) {
            return Ok(ExitCode::from(EXIT_OUTPUT_CLOSED));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

pub fn update(home: PinokioHome, options: EngineOptions, a: UpdateArgs) -> Result<ExitCode> {
    let (name, dir) = installed_app(&home, &a.app)?;
    let engine = engine(home, options, true)?;
    let store = open_store(&engine)?;
    if store.get_app(&name)?.is_none() {
        store.upsert_app(&AppRecord::new(&name, &dir, AppState::Installed))?;
    }
    store.set_app_state(&name, AppState::Updating, None)?;
    let out = apps::update(&engine, &dir);
    engine.shutdown();
    match out {
        Ok(updated) => {
            store.set_app_state(&name, AppState::Installed, None)?;
            match updated {
                Updated::Script(o) => {
                    println!("updated {name} (ran {})", o.script.display())
                }
                Updated::Pulled { from, to } if from == to => {
                    println!("{name} is up to date ({})", short(&to))
                }
                Updated::Pulled { from, to } => {
                    println!("updated {name}: {}..{}", short(&from), short(&to))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            store.set_app_state(&name, AppState::Failed, Some(&e.to_string()))?;
            Err(e.into())
        }
    }
}

pub fn reset(home: PinokioHome, options: EngineOptions, a: ResetArgs) -> Result<ExitCode> {
    let (name, dir) = installed_app(&home, &a.app)?;
    // the background engine may be running the app: stop it there first
    if let Ok(client) = Client::connect(home.root()) {
        client
            .request(&json!({"op": "stop", "app": name}))
            .with_context(|| format!("cannot stop {name} in the background engine"))?;
    }
    let engine = engine(home, options, true)?;
    let store = open_store(&engine)?;
    let out = apps::reset(&engine, &dir);
    engine.shutdown();
    match out {
        Ok(o) => {
            if store
                .get_app(&name)?
                .is_some_and(|r| r.state == AppState::Running)
            {
                store.set_app_state(&name, AppState::Stopped, None)?;
            }
            println!("reset {name} (ran {})", o.script.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if matches!(e, AppError::RunFailed { .. } | AppError::Engine(_)) {
                store.set_app_state(&name, AppState::Failed, Some(&e.to_string()))?;
            }
            Err(e.into())
        }
    }
}
