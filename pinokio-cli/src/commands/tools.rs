//! `pinokio tools`: tunnel programs in `HOME/bin` (see
//! `pinokio_cloud::install`). Nothing is downloaded unless the user asks:
//! `pinokio tools install cloudflared|ngrok`, or `--install` on `expose`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pinokio_cloud::install::{self, Installed, Tool};
use pinokio_core::PinokioHome;

use crate::cli::{ToolsArgs, ToolsCommand};

pub fn tools(home: PinokioHome, a: ToolsArgs) -> Result<ExitCode> {
    match a.command {
        ToolsCommand::Install { tool, force } => {
            let tool = Tool::parse(&tool).context("unknown tool")?;
            home.ensure()?;
            let env: BTreeMap<String, String> = std::env::vars().collect();
            if !force {
                if let Some(path) = install::find(tool, &home.bin(), &env) {
                    println!("{}", path.display());
                    eprintln!(
                        "{} is installed already ({}); --force downloads it again",
                        tool.program(),
                        path.display()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let done = download(&home, tool, &env)?;
            println!("{}", done.path.display());
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::List => {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            for tool in Tool::ALL {
                match install::find(tool, &home.bin(), &env) {
                    Some(p) => println!("{:<12} {}", tool.program(), p.display()),
                    None => println!(
                        "{:<12} not installed: pinokio tools install {}",
                        tool.program(),
                        tool.program()
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The tool from PATH or HOME/bin, else installed now (the user asked for
/// it: `expose --install`).
pub(crate) fn ensure_tool(home: &PinokioHome, tool: Tool) -> Result<Installed> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(path) = install::find(tool, &home.bin(), &env) {
        return Ok(Installed {
            tool: tool.program(),
            path,
            version: String::new(),
            url: None,
        });
    }
    download(home, tool, &env)
}

fn download(home: &PinokioHome, tool: Tool, env: &BTreeMap<String, String>) -> Result<Installed> {
    let arch = install::release_arch().unwrap_or("amd64");
    eprintln!(
        "downloading {} from {}",
        tool.program(),
        install::download_url(tool, env, arch)
    );
    // a progress line every few seconds on slow links
    let last = Mutex::new(Instant::now());
    let progress = |done: u64, total: Option<u64>| {
        let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
        if l.elapsed() >= Duration::from_secs(3) {
            *l = Instant::now();
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            match total {
                Some(t) => eprintln!("  {:.1} / {:.1} MiB", mib(done), mib(t)),
                None => eprintln!("  {:.1} MiB", mib(done)),
            }
        }
    };
    let done = install::install(tool, &home.bin(), env, &progress)?;
    eprintln!(
        "installed {} into {}{}",
        tool.program(),
        done.path.display(),
        if done.version.is_empty() {
            String::new()
        } else {
            format!(" ({})", done.version)
        }
    );
    if tool == Tool::Ngrok {
        eprintln!("ngrok needs your auth token: set NGROK_AUTHTOKEN, or run `ngrok config add-authtoken TOKEN`");
    }
    Ok(done)
}
