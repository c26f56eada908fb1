//! `pinokio search`, `pinokio info`, `pinokio catalog update`: the app
//! catalog (the built-in one, or `HOME/catalog.json` when present).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use pinokio_core::catalog::{AppStatus, Catalog, CatalogApp, CatalogOrigin};
use pinokio_core::engine::Menu;
use pinokio_core::{Engine, EngineOptions, PinokioHome};
use serde_json::{json, Value};

use crate::cli::{CatalogArgs, CatalogCommand, InfoArgs, SearchArgs};

/// The catalog this home uses.
fn load(home: &PinokioHome) -> Result<Catalog> {
    Catalog::for_home(home).with_context(|| {
        format!(
            "cannot read the app catalog (remove {} to use the built-in one)",
            Catalog::override_path(home).display()
        )
    })
}

/// The status as shown in tables: not-ok entries carry a `!`.
fn status_label(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Ok => "ok",
        AppStatus::Missing => "! missing",
        AppStatus::NotALauncher => "! not a launcher",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

pub fn search(home: PinokioHome, a: SearchArgs) -> Result<ExitCode> {
    let catalog = load(&home)?;
    let text = a.text.join(" ");
    let text = Some(text.trim()).filter(|t| !t.is_empty());
    let hits = catalog.search(text, a.category.as_deref(), a.tag.as_deref());
    let mut out = std::io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&hits).context("cannot serialise the apps")?;
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        eprintln!("no apps match (pinokio search with no text lists all of them)");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = hits
        .iter()
        .map(|app| {
            [
                app.id.clone(),
                app.category.clone(),
                truncate(&app.name, 40),
                status_label(app.status).to_string(),
            ]
        })
        .collect();
    let head = ["ID", "CATEGORY", "NAME", "STATUS"];
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        )
    };
    let _ = writeln!(out, "{}", line(head));
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3]]).trim_end());
    }
    let bad = hits.iter().filter(|a| !a.installable()).count();
    let mut footer = format!(
        "{} app{}",
        hits.len(),
        if hits.len() == 1 { "" } else { "s" }
    );
    if bad > 0 {
        footer.push_str(&format!(
            "; {bad} marked ! cannot be installed (missing: no public repository; not a launcher: no launcher script)"
        ));
    }
    if let CatalogOrigin::File(p) = catalog.origin() {
        footer.push_str(&format!(" [catalog: {}]", p.display()));
    }
    let _ = writeln!(out, "{footer}");
    Ok(ExitCode::SUCCESS)
}

/// The app's folder under `HOME/api`: `<id>`, else the repository name
/// (the default folder name of `pinokio install`).
fn installed_dir(home: &PinokioHome, app: &CatalogApp) -> Option<PathBuf> {
    let by_id = home.api().join(&app.id);
    if by_id.is_dir() {
        return Some(by_id);
    }
    let url = if app.clone_url.is_empty() {
        &app.repo_url
    } else {
        &app.clone_url
    };
    let repo = url.trim_end_matches('/').rsplit('/').next()?;
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    if repo.is_empty() || repo == "." || repo == ".." {
        return None;
    }
    let by_repo = home.api().join(repo);
    by_repo.is_dir().then_some(by_repo)
}

pub fn info(home: PinokioHome, options: EngineOptions, a: InfoArgs) -> Result<ExitCode> {
    let catalog = load(&home)?;
    let Some(app) = catalog.get(&a.id) else {
        let near = catalog.suggest(&a.id);
        if near.is_empty() {
            bail!("unknown app id {:?} (pinokio search lists the apps)", a.id);
        }
        bail!(
            "unknown app id {:?}; did you mean: {}? (pinokio search lists the apps)",
            a.id,
            near.join(", ")
        );
    };
    let dir = installed_dir(&home, app);
    let menu: Option<Result<Menu>> = dir.as_ref().map(|d| {
        let engine = Engine::builder(home.clone())
            .probe(pinokio_cloud::default_probe())
            .options(options)
            .build()
            .context("cannot start the engine")?;
        engine
            .menu(d)
            .with_context(|| format!("{}: cannot read the launcher", d.display()))
    });
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut v = serde_json::to_value(app).context("cannot serialise the app")?;
        let o = v.as_object_mut().expect("an app is an object");
        o.insert("installed".into(), json!(dir.is_some()));
        o.insert(
            "path".into(),
            dir.as_ref()
                .map(|d| json!(d.display().to_string()))
                .unwrap_or(Value::Null),
        );
        match &menu {
            Some(Ok(m)) => {
                o.insert(
                    "launcher".into(),
                    json!({
                        "title": m.title,
                        "description": m.description,
                        "version": m.version,
                        "menu": m.items,
                        "warnings": m.warnings,
                    }),
                );
            }
            Some(Err(e)) => {
                o.insert("launcher".into(), Value::Null);
                o.insert("launcher_error".into(), json!(format!("{e:#}")));
            }
            None => {
                o.insert("launcher".into(), Value::Null);
            }
        }
        let text = serde_json::to_string_pretty(&v).context("cannot serialise the app")?;
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut lines = vec![format!("{} ({})", app.name, app.id)];
    let mut field = |k: &str, v: String| lines.push(format!("  {k:<12} {v}"));
    if !app.summary.is_empty() {
        field("summary", app.summary.clone());
    }
    field("category", app.category.clone());
    if !app.tags.is_empty() {
        field("tags", app.tags.join(", "));
    }
    if !app.author.is_empty() {
        field("author", app.author.clone());
    }
    field("repository", app.repo_url.clone());
    if !app.clone_url.is_empty() {
        field("clone url", app.clone_url.clone());
    }
    field(
        "installer",
        format!(
            "{} (install.js: {}, install.json: {}, pinokio.js: {})",
            if app.installer_type.is_empty() {
                "?"
            } else {
                &app.installer_type
            },
            yes_no(app.has_install_js),
            yes_no(app.has_install_json),
            yes_no(app.has_pinokio_js)
        ),
    );
    field(
        "status",
        match app.status.problem() {
            None => app.status.to_string(),
            Some(why) => format!("! {}: {why}; it cannot be installed", app.status),
        },
    );
    field(
        "installed",
        match &dir {
            Some(d) => format!("yes ({})", d.display()),
            None => "no".into(),
        },
    );
    match &menu {
        Some(Ok(m)) => {
            lines.push("launcher:".into());
            lines.push(format!("  {:<12} {}", "title", m.title));
            if let Some(d) = m.description.as_ref().filter(|d| !d.is_empty()) {
                lines.push(format!("  {:<12} {d}", "description"));
            }
            if let Some(v) = &m.version {
                lines.push(format!("  {:<12} {v}", "version"));
            }
            lines.push("  menu:".into());
            if m.items.is_empty() {
                lines.push("    (no menu items)".into());
            }
            for it in &m.items {
                super::menu::item_lines(it, 2, &mut lines);
            }
            for w in &m.warnings {
                eprintln!("warning: {w}");
            }
        }
        Some(Err(e)) => eprintln!("warning: {e:#}"),
        None => {}
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn catalog(home: PinokioHome, a: CatalogArgs) -> Result<ExitCode> {
    match a.command {
        CatalogCommand::Update { from } => {
            let c = Catalog::update_from(&home, &from)?;
            let missing = c
                .apps()
                .iter()
                .filter(|a| a.status == AppStatus::Missing)
                .count();
            let not_launchers = c
                .apps()
                .iter()
                .filter(|a| a.status == AppStatus::NotALauncher)
                .count();
            println!(
                "catalog updated: {} apps ({missing} missing, {not_launchers} not launchers) from {from} -> {}",
                c.len(),
                Catalog::override_path(&home).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
