//! `pinokio`: run unmodified Pinokio launcher scripts headless.
//!
//! Commands: `run` (stream a script's events), `plan` (render every step for
//! a chosen machine without running), `menu` (a launcher's menu), `search`,
//! `info` and `catalog update` (the app catalog). See
//! `pinokio --help` for the environment variables (`PINOKIO_HOME`,
//! `PINOKIO_LOAD_LIMIT_MS`) and exit codes.

mod cli;
mod commands;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A shell supervisor of the background engine (see
    // `pinokio_core::process::shim`): no CLI, no threads before it runs.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(pinokio_core::process::shim::SHIM_ARG))
    {
        return ExitCode::from(pinokio_core::process::shim::main_from_stdin() as u8);
    }
    let cli = cli::Cli::parse();
    if cli.command.only_prints() {
        // `pinokio doctor | head`: end quietly when the reader goes away,
        // as other Unix tools do, instead of failing on the next print.
        // SAFETY: restoring the default disposition of one signal before
        // any thread of ours exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
