//! `pinokio drive dedupe|stats|links|unlink`: the shared model drive
//! (`PINOKIO_DRIVE` from `HOME/ENVIRONMENT`, default `HOME/drive`).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pinokio_core::drive::{self, registry, DedupeOptions, DedupeProgress, Drive};
use pinokio_core::PinokioHome;

use crate::cli::{DriveArgs, DriveCommand};

pub fn drive(home: PinokioHome, a: DriveArgs) -> Result<ExitCode> {
    home.ensure()
        .with_context(|| format!("cannot use the Pinokio home {}", home.root().display()))?;
    let d = Drive::for_home(&home);
    match a.command {
        DriveCommand::Dedupe {
            dry_run,
            min_size,
            json,
        } => dedupe(&home, &d, dry_run, min_size, json),
        DriveCommand::Stats { json } => stats(&home, &d, json),
        DriveCommand::Links { prune, json } => links(&home, &d, prune, json),
        DriveCommand::Unlink { path } => unlink(&home, &d, &path),
    }
}

/// `1536` -> `1.5 KiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A path relative to the home when inside it.
fn shown(home: &PinokioHome, p: &Path) -> String {
    p.strip_prefix(home.root())
        .map(|r| r.display().to_string())
        .unwrap_or_else(|_| p.display().to_string())
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).context("cannot serialise the result")?;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    Ok(())
}

fn dedupe(
    home: &PinokioHome,
    d: &Drive,
    dry_run: bool,
    min_size: u64,
    json: bool,
) -> Result<ExitCode> {
    let opts = DedupeOptions {
        dry_run,
        min_size,
        threads: 0,
    };
    let tty = std::io::stderr().is_terminal();
    let progress = |p: &DedupeProgress| {
        if !tty {
            return;
        }
        match p {
            DedupeProgress::Scanned { files, to_hash } => {
                eprintln!("scanned {files} files; {to_hash} to hash")
            }
            DedupeProgress::Hashing {
                done_bytes,
                total_bytes,
            } => eprint!(
                "\rhashing {} / {}   ",
                human(*done_bytes),
                human(*total_bytes)
            ),
        }
    };
    let r = drive::dedupe(home, d, &opts, &progress).context("dedupe failed")?;
    if tty {
        eprint!("\r\x1b[K");
    }
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "scanned {} files of {} or more under {} and {}",
        r.scanned_files,
        human(min_size),
        shown(home, &home.api()),
        shown(home, d.root())
    );
    let _ = writeln!(
        out,
        "hashed {} files ({}), {} hashes from the cache",
        r.hashed_files,
        human(r.hashed_bytes),
        r.cached_files
    );
    for (p, why) in &r.unreadable {
        let _ = writeln!(out, "cannot read {}: {why}", shown(home, p));
    }
    for g in &r.groups {
        let _ = writeln!(
            out,
            "{:>10}  sha256 {}  kept {}",
            human(g.size),
            &g.sha256[..12],
            shown(home, &g.kept)
        );
        for (p, how) in &g.linked {
            let how = match how {
                drive::dedupe::LinkMethod::HardLink => "hard link",
                drive::dedupe::LinkMethod::Symlink => "symlink",
            };
            let _ = writeln!(out, "{:>10}  {how:<9} {}", "", shown(home, p));
        }
        for (p, why) in &g.skipped {
            let _ = writeln!(out, "{:>10}  skipped   {} ({why})", "", shown(home, p));
        }
    }
    if dry_run {
        let _ = writeln!(
            out,
            "would link {} files and save {}; nothing was changed (dry run)",
            r.linked_files,
            human(r.saved_bytes)
        );
    } else {
        let _ = writeln!(
            out,
            "linked {} files, saved {}",
            r.linked_files,
            human(r.saved_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(home: &PinokioHome, d: &Drive, json: bool) -> Result<ExitCode> {
    let s = drive::stats(home, d).context("cannot measure the apps and the drive")?;
    if json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    let w = s
        .apps
        .iter()
        .map(|a| a.name.len())
        .chain(s.drives.iter().map(|d| d.name.len()))
        .chain([5])
        .max()
        .unwrap_or(5);
    let _ = writeln!(
        out,
        "{:<w$}  {:>10}  {:>10}  {:>10}",
        "APP", "SIZE", "SHARED", "LINKED"
    );
    for a in &s.apps {
        let _ = writeln!(
            out,
            "{:<w$}  {:>10}  {:>10}  {:>10}",
            a.name,
            human(a.bytes),
            human(a.shared_bytes),
            human(a.linked_bytes)
        );
    }
    if s.apps.is_empty() {
        let _ = writeln!(out, "(no apps)");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<w$}  {:>10}  {:>8}  USED BY",
        "DRIVE", "SIZE", "FILES"
    );
    for r in &s.drives {
        let _ = writeln!(
            out,
            "{:<w$}  {:>10}  {:>8}  {}",
            r.name,
            human(r.bytes),
            r.files,
            if r.used_by.is_empty() {
                "-".to_string()
            } else {
                r.used_by.join(", ")
            }
        );
    }
    if s.drives.is_empty() {
        let _ = writeln!(out, "(the drive {} is empty)", d.root().display());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "total on disk: {} (apps and drive, each file once; SHARED: hard-linked with another app or the drive; LINKED: drive data reached through links, not in SIZE)",
        human(s.total_bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn links(home: &PinokioHome, d: &Drive, prune: bool, json: bool) -> Result<ExitCode> {
    let pruned = if prune {
        registry::prune(d).context("cannot prune the link registry")?
    } else {
        Vec::new()
    };
    let checks = registry::check_all(d).context("cannot read the link registry")?;
    let broken = checks.iter().filter(|(_, s)| s.is_broken()).count();
    if json {
        let rows: Vec<serde_json::Value> = checks
            .iter()
            .map(|(r, s)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["state"] = serde_json::to_value(s).unwrap_or_default();
                v
            })
            .collect();
        print_json(&rows)?;
    } else {
        let mut out = std::io::stdout().lock();
        if !pruned.is_empty() {
            let _ = writeln!(out, "forgot {} links whose link is gone", pruned.len());
        }
        if checks.is_empty() {
            let _ = writeln!(out, "no links in {}", shown(home, &d.links_json()));
        }
        for (r, s) in &checks {
            let _ = writeln!(
                out,
                "{:<6}  {} -> {}  [{s}]",
                r.kind.to_string(),
                shown(home, &r.link),
                shown(home, &r.target)
            );
        }
        let gone = checks
            .iter()
            .filter(|(_, s)| *s == registry::LinkStatus::LinkMissing)
            .count();
        if gone > 0 {
            let _ = writeln!(
                out,
                "{gone} links are gone (an uninstalled app?); `pinokio drive links --prune` forgets them"
            );
        }
        if broken > 0 {
            let _ = writeln!(out, "{broken} broken links");
        }
    }
    Ok(if broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn unlink(home: &PinokioHome, d: &Drive, path: &Path) -> Result<ExitCode> {
    let abs = std::path::absolute(path)
        .with_context(|| format!("{}: cannot make the path absolute", path.display()))?;
    let rec = registry::unlink(d, &abs)?;
    println!(
        "{} is now a copy of {} (the drive keeps its data)",
        shown(home, &rec.link),
        shown(home, &rec.target)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
