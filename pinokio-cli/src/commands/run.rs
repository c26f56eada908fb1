//! `pinokio run`: run a script on a worker thread, stream its events, and
//! handle Ctrl-C (SIGINT) and SIGTERM.
//!
//! - A running (non-daemon) script is stopped with `Engine::stop` on the first
//!   signal (exit 130); a second signal exits at once. A signal that races
//!   with the end of the run does not turn a finished run into a failure.
//! - Closing stdout (`pinokio run x | head`) stops the run too (exit 141).
//! - A daemon that finished its steps keeps running until a signal, which
//!   stops it (exit 0).

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pinokio_core::engine::RunError;
use pinokio_core::events::FnSink;
use pinokio_core::{Engine, EngineOptions, PinokioHome, RunOutcome, RunRequest, RunStatus};

use super::absolute;
use crate::cli::RunArgs;
use crate::render::Renderer;

/// Exit status after Ctrl-C, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout was closed, as shells report SIGPIPE.
pub const EXIT_OUTPUT_CLOSED: u8 = 141;

enum Msg {
    Done(Box<RunOutcome>),
    Panicked,
    Signal,
    /// stdout was closed (`pinokio run x | head`): stop like a signal.
    OutputClosed,
}

pub fn run(home: PinokioHome, options: EngineOptions, a: RunArgs) -> Result<ExitCode> {
    let path = absolute(&a.script)?;
    let uri = path.display().to_string();
    let renderer = Arc::new(Renderer::new(a.json));
    let sink = {
        let r = renderer.clone();
        FnSink(move |ev: &pinokio_core::Event| r.emit(ev))
    };
    // `proxy.start` steps expose through the platform's proxy (or an
    // opted-in tunnel) while the run lasts
    let exposer = pinokio_cloud::expose::exposer_for(home.root(), None);
    let engine = Engine::builder(home)
        .probe(pinokio_cloud::default_probe())
        .options(options)
        .sink(Arc::new(sink))
        .url_watchers(pinokio_cloud::urls::shell_watchers())
        .exposer(Arc::new(exposer))
        .build()
        .context("cannot start the engine")?;
    // the id the engine gives the run (its resolved absolute path)
    let id = engine
        .resolve_uri(&uri, None)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| uri.clone());

    let (tx, rx) = mpsc::channel::<Msg>();
    {
        let tx = tx.clone();
        ctrlc::set_handler(move || {
            let _ = tx.send(Msg::Signal);
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    {
        let tx = tx.clone();
        renderer.on_stdout_closed(move || {
            let _ = tx.send(Msg::OutputClosed);
        });
    }
    let req = RunRequest::new(uri);
    let req = match a.args.to_object() {
        Some(args) => req.input(args),
        None => req,
    };
    let started = Instant::now();
    {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("pinokio-run".into())
            .spawn(move || {
                let msg = match std::panic::catch_unwind(AssertUnwindSafe(|| engine.run(req))) {
                    Ok(out) => Msg::Done(Box::new(out)),
                    Err(_) => Msg::Panicked,
                };
                let _ = tx.send(msg);
            })
            .context("cannot start the run thread")?;
    }

    // wait for the run, stopping it on a signal
    let mut interrupted = false;
    let mut output_closed = false;
    let outcome = loop {
        let msg = if interrupted {
            // a signal that came before the run was marked running must not
            // be lost: repeat the stop until the run ends
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    engine.stop(&id);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break None,
            }
        };
        match msg {
            Msg::Done(out) => break Some(*out),
            Msg::Panicked => break None,
            Msg::Signal if interrupted => {
                renderer.status("interrupted again; exiting without waiting for the run to stop");
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
            Msg::OutputClosed => {
                output_closed = true;
                interrupted = true;
                engine.stop(&id);
            }
            Msg::Signal => {
                interrupted = true;
                renderer.status("stopping... (press Ctrl-C again to exit at once)");
                engine.stop(&id);
            }
        }
    };
    let Some(outcome) = outcome else {
        renderer.status("error: internal error: the engine stopped unexpectedly (panic); the run did not finish");
        return Ok(ExitCode::FAILURE);
    };

    // a signal that raced with the end of the run leaves a finished run
    // finished and a daemon ready (it is stopped below without waiting)
    if interrupted && matches!(outcome.status, RunStatus::Stopped | RunStatus::Error) {
        engine.stop(&id);
        engine.stop_all();
        if output_closed {
            return Ok(ExitCode::from(EXIT_OUTPUT_CLOSED));
        }
        if let Some(e) = outcome.error.as_ref().filter(|e| e.step.is_none()) {
            renderer.status(&format!("error: {}", load_error_message(e)));
        }
        renderer.status(&format!(
            "stopped: {} (interrupted)",
            outcome.script.display()
        ));
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    match outcome.status {
        RunStatus::Finished => {
            if !a.json {
                renderer.status(&format!(
                    "finished: {} ({} step{}, {:.1}s)",
                    outcome.script.display(),
                    outcome.visited.len(),
                    if outcome.visited.len() == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunStatus::Daemon => {
            if !interrupted {
                renderer.status("daemon running; press Ctrl-C to stop");
                // wait for a signal; nothing else ends a daemon here
                loop {
                    match rx.recv() {
                        Ok(Msg::Signal | Msg::OutputClosed) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            }
            engine.stop(&id);
            engine.stop_all();
            renderer.status(&format!("stopped: {}", outcome.script.display()));
            Ok(ExitCode::SUCCESS)
        }
        RunStatus::Error => {
            match &outcome.error {
                // the step error was rendered from its event; say it again
                // only in JSON mode, where stdout is for machines
                Some(e) if e.step.is_some() => {
                    if a.json {
                        renderer.status(&format!("error: {e}"));
                    } else {
                        renderer.status(&format!("failed: {}", outcome.script.display()));
                    }
                }
                Some(e) => renderer.status(&format!("error: {}", load_error_message(e))),
                None => renderer.status(&format!(
                    "error: {}: the run failed",
                    outcome.script.display()
                )),
            }
            Ok(ExitCode::FAILURE)
        }
        RunStatus::Stopped => {
            renderer.status(&format!(
                "error: {}: the run was stopped before it finished (script.stop?)",
                outcome.script.display()
            ));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A start failure's message, naming the script once.
fn load_error_message(e: &RunError) -> String {
    let shown = e.script.display().to_string();
    if e.message.contains(&shown) {
        e.message.clone()
    } else {
        format!("{shown}: {}", e.message)
    }
}
