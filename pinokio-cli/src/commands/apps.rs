//! `pinokio install`, `pinokio up`, `pinokio uninstall`: apps by name.
//!
//! There is no background engine yet: `up` stays attached while the app
//! runs and stops it on Ctrl-C (like `run` with a daemon script).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pinokio_core::apps;
use pinokio_core::events::{EventKind, FnSink};
use pinokio_core::state::{AppRecord, AppState, RecoveredApp, StateStore};
use pinokio_core::{Engine, EngineOptions, PinokioHome};

use crate::cli::{InstallArgs, StatusArgs, UninstallArgs, UpArgs};
use crate::render::ProgressView;

/// Open `HOME/library.sqlite`, rebuilding it from `HOME/api` when it is
/// corrupt (and saying so), and reconciling what died while no engine ran.
pub fn open_store(engine: &Engine) -> Result<StateStore> {
    let scan = || {
        apps::installed(engine)
            .into_iter()
            .map(|(name, path)| RecoveredApp::new(name, path))
            .collect()
    };
    let (store, report) = StateStore::open_or_rebuild(engine.home().root(), scan)
        .context("cannot open the state store")?;
    if report.rebuilt {
        eprintln!(
            "warning: the state store was damaged ({}); it was rebuilt{}; recovered apps: {}",
            report.reason.as_deref().unwrap_or("unknown reason"),
            report
                .corrupt_copy
                .as_ref()
                .map(|p| format!(" (the old file is kept as {})", p.display()))
                .unwrap_or_default(),
            if report.recovered.is_empty() {
                "none".to_string()
            } else {
                report.recovered.join(", ")
            }
        );
    }
    let _ = store.reconcile(pinokio_core::state::process_alive);
    Ok(store)
}

/// An engine for the app commands. Script output and step headers are
/// printed when `verbose`; downloads are always shown (bars on a terminal,
/// plain lines every few seconds otherwise), warnings and errors too.
pub(crate) fn engine(home: PinokioHome, options: EngineOptions, verbose: bool) -> Result<Engine> {
    let progress = std::sync::Mutex::new(ProgressView::for_stderr());
    let sink = FnSink(move |e: &pinokio_core::Event| {
        let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
        match &e.kind {
            EventKind::Progress { .. } => {
                for line in progress.on_progress(e, std::time::Instant::now()) {
                    eprintln!("{line}");
                }
            }
            EventKind::Output { text, .. } if verbose && !progress.hides_output(e) => progress
                .suspend(|| {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }),
            EventKind::StepStart { index, method, .. } if verbose => {
                let name = Path::new(&e.script)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                progress.suspend(|| println!("> {name} [{index}] {method}"));
            }
            EventKind::Warning { message, .. } => {
                progress.suspend(|| eprintln!("warning: {message}"))
            }
            EventKind::StepError {
                index,
                method,
                message,
            } => {
                progress.after(e);
                eprintln!(
                    "error: {}: step {index} ({}): {message}",
                    e.script,
                    method.as_deref().unwrap_or("?")
                )
            }
            _ => {}
        }
        progress.after(e);
    });
    let mut b = Engine::builder(home.clone())
        .probe(pinokio_cloud::default_probe())
        .options(options)
        .sink(Arc::new(sink));
    if home.ensure().is_ok() {
        if let Ok(store) = StateStore::open(home.root()) {
            b = b.state(Arc::new(store));
        }
    }
    b = b.exposer(Arc::new(pinokio_cloud::expose::exposer_for(
        home.root(),
        None,
    )));
    // web UI URLs from every shell's output and listening ports
    b = b.url_watchers(pinokio_cloud::urls::shell_watchers());
    b.build().context("cannot start the engine")
}

pub fn install(home: PinokioHome, options: EngineOptions, a: InstallArgs) -> Result<ExitCode> {
    let engine = engine(home, options, true)?;
    let source = apps::resolve_source(engine.home(), &a.source)?;
    let name = a.name.clone().unwrap_or_else(|| source.default_name());
    let store = open_store(&engine)?;
    let dir = apps::fetch(&engine, &source, &name, &a.git_mirror)?;
    println!("downloaded {name} into {}", dir.display());
    let mut rec = AppRecord::new(&name, &dir, AppState::Installing);
    rec.source_url = Some(source.shown());
    store.upsert_app(&rec)?;
    if a.no_run {
        store.set_app_state(&name, AppState::Installed, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = apps::install(&engine, &dir);
    engine.shutdown();
    match out {
        Ok(_) => {
            store.set_app_state(&name, AppState::Installed, None)?;
            println!("installed {name}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            store.set_app_state(&name, AppState::Failed, Some(&e.to_string()))?;
            Err(e.into())
        }
    }
}

pub fn uninstall(home: PinokioHome, options: EngineOptions, a: UninstallArgs) -> Result<ExitCode> {
    let engine = engine(home, options, false)?;
    let store = open_store(&engine)?;
    let dir = apps::uninstall(&engine, &a.app)?;
    store.remove_app(&a.app)?;
    println!(
        "removed {} (shared drive data was not touched)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Install if needed, then run the menu's default items until it shows a web
/// UI; print the URL and keep the app running until Ctrl-C.
pub fn up(home: PinokioHome, options: EngineOptions, a: UpArgs) -> Result<ExitCode> {
    let engine = engine(home, options, a.verbose)?;
    let store = open_store(&engine)?;
    let dir = match apps::app_dir(&engine, &a.app) {
        Ok(d) if d.starts_with(engine.home().api()) => d,
        _ => {
            let source = apps::resolve_source(engine.home(), &a.app)?;
            let name = a.name.clone().unwrap_or_else(|| source.default_name());
            let existing = engine.home().api().join(&name);
            if existing.is_dir() {
                existing
            } else {
                println!("installing {name}...");
                let dir = apps::fetch(&engine, &source, &name, &a.git_mirror)?;
                let mut rec = AppRecord::new(&name, &dir, AppState::Installing);
                rec.source_url = Some(source.shown());
                store.upsert_app(&rec)?;
                dir
            }
        }
    };
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if store.get_app(&id)?.is_none() {
        store.upsert_app(&AppRecord::new(&id, &dir, AppState::Installed))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let engine = engine.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("stopping... (press Ctrl-C again to exit at once)");
            engine.stop_all();
        });
    }
    let (tx, rx) = mpsc::channel();
    {
        let engine = engine.clone();
        let dir = dir.clone();
        std::thread::spawn(move || {
            let _ = tx.send(apps::up(&engine, &dir, 8));
        });
    }
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => break r,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the engine thread ended unexpectedly")
            }
        }
    };
    if stop.load(Ordering::SeqCst) {
        engine.shutdown();
        return Ok(ExitCode::from(130));
    }
    let up = match result {
        Ok(up) => up,
        Err(e) => {
            engine.shutdown();
            store.set_app_state(&id, AppState::Failed, Some(&e.to_string()))?;
            return Err(e.into());
        }
    };
    store.set_app_state(&id, AppState::Running, None)?;
    println!("{}", up.url);
    // on a cloud platform, also the URL the browser can open
    if engine.exposer().expose_by_default() {
        let reply = match engine.exposer().expose(&id, &up.url, None) {
            Ok(e) => serde_json::json!({ "exposure": e }),
            Err(e) => serde_json::json!({ "expose_error": e }),
        };
        crate::commands::daemon::print_exposure(&reply);
    }
    eprintln!("{} is running; press Ctrl-C to stop it", dir.display());
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    engine.shutdown();
    store.set_app_state(&id, AppState::Stopped, None)?;
    Ok(ExitCode::SUCCESS)
}

/// `pinokio status`: one line per app (state store plus the folders on disk).
pub fn status(home: PinokioHome, options: EngineOptions, a: StatusArgs) -> Result<ExitCode> {
    let engine = engine(home, options, false)?;
    let store = open_store(&engine)?;
    let mut rows = store.list_apps()?;
    for (name, path) in apps::installed(&engine) {
        if !rows.iter().any(|r| r.id == name) {
            rows.push(AppRecord::new(name, path, AppState::Installed));
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no apps installed in {}", engine.home().api().display());
    }
    let live = crate::commands::daemon::live_status(engine.home().root()).unwrap_or_default();
    for r in rows {
        let err = r
            .last_error
            .as_deref()
            .map(|e| format!("  ({})", e.lines().next().unwrap_or("")))
            .unwrap_or_default();
        match live.iter().find(|l| l["app"] == r.id.as_str()) {
            Some(l) => {
                let pids: Vec<String> = l["pids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p.to_string())
                    .collect();
                println!(
                    "{:<28} {:<11} {}  pids {}  up {}s",
                    r.id,
                    "running",
                    l["url"].as_str().unwrap_or("-"),
                    if pids.is_empty() {
                        "-".to_string()
                    } else {
                        pids.join(",")
                    },
                    l["uptime_s"]
                );
            }
            None => {
                // Without a live engine, a `running` app is running if its
                // supervised shells outlived the engine (the next engine
                // re-adopts them); otherwise the record is stale.
                if r.state == AppState::Running {
                    let procs: Vec<_> = store
                        .processes_of(&r.id)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| {
                            p.state == pinokio_core::state::ProcState::Running
                                && pinokio_core::state::process_alive(p.pid, p.started_at)
                        })
                        .collect();
                    if !procs.is_empty() {
                        let url = procs
                            .iter()
                            .filter_map(|p| store.get_run(p.run_id?).ok().flatten())
                            .find_map(|run| run.local?.get("url")?.as_str().map(String::from));
                        let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
                        println!(
                            "{:<28} {:<11} {}  pids {}  (engine not running)",
                            r.id,
                            "running",
                            url.as_deref().unwrap_or("-"),
                            pids.join(",")
                        );
                        continue;
                    }
                }
                let state = if r.state == AppState::Running {
                    AppState::Stopped
                } else {
                    r.state
                };
                println!(
                    "{:<28} {:<11} {}{err}",
                    r.id,
                    state.as_str(),
                    r.path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
