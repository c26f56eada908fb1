//! `pinokio menu`: a launcher's menu as it evaluates now.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use pinokio_core::engine::MenuItem;
use pinokio_core::{Engine, EngineOptions, PinokioHome};

use super::{absolute, naming};
use crate::cli::MenuArgs;
use crate::render::compact;

pub fn menu(home: PinokioHome, options: EngineOptions, a: MenuArgs) -> Result<ExitCode> {
    let mut dir = absolute(&a.app_dir)?;
    // an installed app's name works too (HOME/api/<name>)
    let by_name = home.api().join(&a.app_dir);
    if !dir.exists() && a.app_dir.components().count() == 1 && by_name.is_dir() {
        dir = by_name;
    }
    if !dir.exists() {
        bail!("{}: no such folder", dir.display());
    }
    if !dir.is_dir() {
        bail!(
            "{}: not a folder (pass the app folder that holds pinokio.js)",
            dir.display()
        );
    }
    let engine = Engine::builder(home)
        .probe(pinokio_cloud::default_probe())
        .options(options)
        .build()
        .context("cannot start the engine")?;
    // while the background engine runs, the menu must see its live state
    let live = if dir.starts_with(engine.home().api()) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        pinokio_core::control::Client::connect(engine.home().root())
            .ok()
            .and_then(|c| {
                c.request(&serde_json::json!({"op": "menu", "app": name}))
                    .ok()
            })
            .and_then(|r| serde_json::from_value(r["menu"].clone()).ok())
    } else {
        None
    };
    let menu = match live {
        Some(m) => m,
        None => engine.menu(&dir).map_err(|e| naming(e, &dir))?,
    };
    for w in &menu.warnings {
        eprintln!("warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&menu).context("cannot serialise the menu")?;
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut head = menu.title.clone();
    if let Some(v) = &menu.version {
        head.push_str(&format!(" ({v})"));
    }
    let _ = writeln!(out, "{head}");
    if let Some(d) = menu.description.as_ref().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "{d}");
    }
    if menu.items.is_empty() {
        let _ = writeln!(out, "  (no menu items)");
    }
    let mut lines = Vec::new();
    for it in &menu.items {
        item_lines(it, 1, &mut lines);
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One item (and its sub-items, indented) as readable lines.
pub(crate) fn item_lines(it: &MenuItem, depth: usize, out: &mut Vec<String>) {
    let mut line = format!(
        "{}{}",
        "  ".repeat(depth),
        if it.text.is_empty() {
            "(no label)"
        } else {
            &it.text
        }
    );
    if let Some(s) = &it.script {
        line.push_str(&format!(" -> {}", s.display()));
    } else if let Some(u) = &it.url {
        line.push_str(&format!(" -> {u}"));
    } else if let Some(h) = &it.href {
        line.push_str(&format!(" -> {h}"));
    }
    if let Some(p) = it.params.as_ref().filter(|p| !p.is_null()) {
        line.push_str(&format!(" params {}", compact(p)));
    }
    if it.default {
        line.push_str(" [default]");
    }
    if it.running {
        line.push_str(" [running]");
    }
    out.push(line);
    for sub in &it.menu {
        item_lines(sub, depth + 1, out);
    }
}
