//! `pinokio doctor`: what this machine is and what to fix, as text or JSON
//! (the report itself is built by `pinokio_cloud::doctor`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use pinokio_cloud::doctor::{Doctor, DoctorReport, Level};
use pinokio_cloud::layout::{HomeFrom, Persistence};
use pinokio_cloud::source::DiskSpace;
use pinokio_cloud::tools::ToolStatus;

use crate::cli::DoctorArgs;

pub fn doctor(flag_home: Option<&Path>, a: DoctorArgs) -> Result<ExitCode> {
    let mut d = Doctor::system();
    d.tool_limit = Duration::from_millis(a.tool_timeout_ms);
    let report = d.run(flag_home);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / DiskSpace::GIB as f64)
}

fn space(s: &Option<DiskSpace>) -> String {
    match s {
        Some(s) => format!("{} free of {}", gib(s.available), gib(s.total)),
        None => "free space unknown".into(),
    }
}

/// The report as aligned text.
pub fn render(r: &DoctorReport) -> String {
    let mut o = String::new();
    let mut line = |label: &str, text: String| {
        o.push_str(&format!("{label:<10} {text}\n"));
    };
    let p = &r.platform;
    let evidence: Vec<String> = p.evidence.iter().map(|e| e.to_string()).collect();
    let mut plat = p.platform.name().to_string();
    if !evidence.is_empty() {
        plat.push_str(&format!(" ({})", evidence.join(", ")));
    }
    if p.container && p.platform != pinokio_cloud::platform::Platform::Docker {
        plat.push_str(", in a container");
    }
    line("Platform", plat);

    let l = &r.layout;
    let from = match l.home_from {
        HomeFrom::Flag => "--home",
        HomeFrom::Env => "PINOKIO_HOME",
        HomeFrom::Platform => "platform",
        HomeFrom::Existing => "existing",
        HomeFrom::Default => "default",
    };
    let kept = match l.persistence {
        Persistence::Persistent => "persistent",
        Persistence::Ephemeral => "NOT persistent",
        Persistence::Unknown => "persistence unknown",
    };
    line(
        "Home",
        format!("{} [{from}; {kept}] {}", l.home.display(), l.home_reason),
    );
    line(
        "Caches",
        format!(
            "{}{} ({})",
            l.cache.display(),
            if l.cache_relocated {
                " <- HOME/cache"
            } else {
                ""
            },
            l.cache_reason
        ),
    );
    for (i, d) in l.disks.iter().enumerate() {
        line(
            if i == 0 { "Disks" } else { "" },
            format!("{:<8} {}: {}", d.role, d.path.display(), space(&d.space)),
        );
    }

    if r.gpus.gpus.is_empty() {
        let why: Vec<String> = r
            .gpus
            .attempts
            .iter()
            .map(|a| format!("{}: {}", a.source.label(), a.outcome))
            .collect();
        line("GPUs", format!("none ({})", why.join("; ")));
    }
    for (i, g) in r.gpus.gpus.iter().enumerate() {
        let mut t = format!("{}: {}", g.index, g.model);
        match (g.vram_free_mib, g.vram_total_mib) {
            (Some(f), Some(tot)) => t.push_str(&format!(
                ", {:.1}/{:.1} GiB free",
                f as f64 / 1024.0,
                tot as f64 / 1024.0
            )),
            (None, Some(tot)) => t.push_str(&format!(", {:.1} GiB", tot as f64 / 1024.0)),
            _ => {}
        }
        if let Some(d) = &g.driver {
            t.push_str(&format!(", driver {d}"));
        }
        if let Some(c) = &g.cuda_version {
            t.push_str(&format!(", CUDA {c}"));
        }
        if let Some(c) = &g.compute_cap {
            t.push_str(&format!(", compute {c}"));
        }
        if let Some(x) = &g.gfx_target {
            t.push_str(&format!(", {x}"));
        }
        t.push_str(&format!(" [{}]", g.source.label()));
        line(if i == 0 { "GPUs" } else { "" }, t);
    }
    let f = &r.facts;
    line(
        "Facts",
        format!(
            "gpu={} gpu_model={} platform={} arch={} vram={} ram={}",
            f["gpu"], f["gpu_model"], f["platform"], f["arch"], f["vram"], f["ram"]
        ),
    );
    let res = &r.resources;
    let mut mem = format!(
        "{} total, {} available",
        gib(res.ram_total_mib << 20),
        gib(res.ram_available_mib << 20)
    );
    if let Some(l) = res.ram_limit_mib {
        mem.push_str(&format!(", container limit {}", gib(l << 20)));
    }
    line("Memory", mem);
    line("CPUs", res.cpus.to_string());

    for (i, t) in r.tools.iter().enumerate() {
        let text = match t.status {
            ToolStatus::Missing => format!("{:<12} missing", t.name),
            _ => {
                let program = t
                    .program
                    .as_deref()
                    .filter(|p| *p != t.name)
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                format!(
                    "{:<12} {:<16} {}{program}",
                    t.name,
                    t.version.as_deref().unwrap_or("?"),
                    t.path
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )
            }
        };
        line(if i == 0 { "Tools" } else { "" }, text);
    }

    if r.fixes.is_empty() {
        o.push_str("\nNothing to fix.\n");
    } else {
        o.push_str("\nTo fix:\n");
        for x in &r.fixes {
            let level = match x.level {
                Level::Error => "error",
                Level::Warning => "warning",
                Level::Info => "info",
            };
            o.push_str(&format!("  {level}: {}\n", x.message));
        }
    }
    o.push_str(&format!("\nChecked in {} ms.\n", r.elapsed_ms));
    o
}
