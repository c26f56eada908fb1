//! The subcommands and what they share (home folder, engine options, paths).

pub mod apps;
pub mod catalog;
pub mod daemon;
pub mod doctor;
pub mod drive;
pub mod maintain;
pub mod menu;
pub mod plan;
pub mod run;
pub mod serve;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use pinokio_core::{EngineOptions, PinokioHome};

use crate::cli::{Cli, Command};

/// Environment variable that shortens or lengthens the JS load time limit.
pub const LOAD_LIMIT_ENV: &str = "PINOKIO_LOAD_LIMIT_MS";
/// Environment variable that turns on strict exit codes for `shell.run`.
pub const STRICT_EXIT_ENV: &str = "PINOKIO_STRICT_EXIT";

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    if let Command::Doctor(a) = cli.command {
        // reports the layout without creating anything
        return doctor::doctor(cli.home.as_deref(), a);
    }
    let home = locate_home(cli.home.as_deref())?;
    let options = engine_options()?;
    match cli.command {
        Command::Run(a) => run::run(home, options, a),
        Command::Plan(a) => plan::plan(home, options, a),
        Command::Menu(a) => menu::menu(home, options, a),
        Command::Search(a) => catalog::search(home, a),
        Command::Info(a) => catalog::info(home, options, a),
        Command::Catalog(a) => catalog::catalog(home, a),
        Command::Install(a) => apps::install(home, options, a),
        Command::Up(a) => apps::up(home, options, a),
        Command::Uninstall(a) => apps::uninstall(home, options, a),
        Command::Drive(a) => drive::drive(home, a),
        Command::Status(a) => apps::status(home, options, a),
        Command::Logs(a) => maintain::logs(home, a),
        Command::Update(a) => maintain::update(home, options, a),
        Command::Reset(a) => maintain::reset(home, options, a),
        Command::Start(a) => daemon::start(home, a),
        Command::Stop(a) => daemon::stop(home, a),
        Command::Expose(a) => daemon::expose(home, a),
        Command::Unexpose(a) => daemon::unexpose(home, a),
        Command::Tools(a) => tools::tools(home, a),
        Command::Engine(a) => daemon::engine(home, options, a),
        Command::Serve(a) => serve::serve(home, options, a),
        Command::Shutdown => daemon::shutdown(home),
        Command::Doctor(_) => unreachable!("handled above"),
    }
}

/// `--home`, else `PINOKIO_HOME`, else the platform's layout
/// (`pinokio_cloud::layout`: persistent storage on cloud machines, today's
/// `~/pinokio` on a local one). A layout with a relocated cache
/// (`PINOKIO_CACHE_DIR`, small or slow persistent storage) links
/// `HOME/cache` to it; a new platform home is announced on stderr.
fn locate_home(explicit: Option<&Path>) -> Result<PinokioHome> {
    let env = std::env::var("PINOKIO_HOME")
        .ok()
        .filter(|h| !h.trim().is_empty());
    let given = explicit.is_some() || env.is_some();
    if given && std::env::var_os(pinokio_cloud::layout::CACHE_ENV).is_none() {
        return PinokioHome::locate(explicit, env.as_deref())
            .context("cannot locate the Pinokio home folder");
    }
    let layout = pinokio_cloud::layout::Layout::for_this_machine(explicit);
    if let Some(notice) = layout.first_use_notice() {
        eprintln!("{notice}");
    }
    if layout.cache_relocated {
        layout
            .apply()
            .context("cannot prepare the Pinokio home folder")?;
    }
    Ok(PinokioHome::new(&layout.home))
}

/// Default options, with `PINOKIO_LOAD_LIMIT_MS` applied.
fn engine_options() -> Result<EngineOptions> {
    let mut o = EngineOptions::default();
    if let Some(raw) = std::env::var_os(LOAD_LIMIT_ENV) {
        let text = raw.to_string_lossy();
        let ms: u64 = text
            .trim()
            .parse()
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                anyhow!("{LOAD_LIMIT_ENV} must be a positive whole number of milliseconds (got {text:?})")
            })?;
        o.load_limit = Duration::from_millis(ms);
    }
    if let Ok(v) = std::env::var(STRICT_EXIT_ENV) {
        o.strict_exit_codes = matches!(v.trim(), "1" | "true" | "yes" | "on");
    }
    Ok(o)
}

/// Make a command-line path absolute (relative to the current folder).
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.as_os_str().is_empty() {
        bail!("the path is empty");
    }
    std::path::absolute(p)
        .with_context(|| format!("{}: cannot make the path absolute", p.display()))
}

/// Attach the file to an error whose message does not name it already.
fn naming(e: impl std::error::Error + Send + Sync + 'static, path: &Path) -> anyhow::Error {
    let shown = path.display().to_string();
    if e.to_string().contains(&shown) {
        anyhow::Error::new(e)
    } else {
        anyhow::Error::new(e).context(shown)
    }
}
