//! `pinokio doctor`: platform (with evidence), the chosen layout, GPUs,
//! memory, CPUs, disks, tools with versions, and what to fix. GPUs and
//! tool versions are probed in parallel so the whole report stays fast.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::command::{CommandRunner, SystemRunner};
use crate::gpu::{GpuProber, GpuReport, GpuSource};
use crate::layout::{self, Layout, LayoutRequest, Persistence};
use crate::platform::{self, Detection, Platform};
use crate::probe;
use crate::source::{HostSource, RealHost};
use crate::system::{self, Resources};
use crate::tools::{self, Tool, ToolStatus};

/// Default time the tool version commands may take together.
pub const TOOL_LIMIT: Duration = Duration::from_millis(250);

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Launchers will fail until it is fixed.
    Error,
    /// Works, but something will be lost or slow.
    Warning,
    /// Worth knowing.
    Info,
}

/// Something to fix (or know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub level: Level,
    pub message: String,
}

/// Everything `pinokio doctor` shows.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub platform: Detection,
    pub layout: Layout,
    pub resources: Resources,
    pub gpus: GpuReport,
    /// What templates see (`gpu`, `gpus`, `gpu_model`, `platform`, `arch`...).
    pub facts: Value,
    pub tools: Vec<Tool>,
    pub fixes: Vec<Fix>,
    /// How long the checks took.
    pub elapsed_ms: u64,
}

/// The machine the doctor examines.
pub struct Doctor {
    pub src: Arc<dyn HostSource>,
    pub runner: Arc<dyn CommandRunner>,
    pub gpus: GpuProber,
    /// Time limit for the tool version commands.
    pub tool_limit: Duration,
}

impl Doctor {
    /// This machine.
    pub fn system() -> Self {
        Doctor {
            src: Arc::new(RealHost),
            runner: Arc::new(SystemRunner),
            gpus: GpuProber::system(),
            tool_limit: TOOL_LIMIT,
        }
    }

    /// Examine the machine; `flag_home` is `--home`.
    pub fn run(&self, flag_home: Option<&Path>) -> DoctorReport {
        let start = Instant::now();
        let src = self.src.as_ref();
        let detection = platform::detect(src);
        let layout = layout::plan(&detection, src, &LayoutRequest::from_env(src, flag_home));
        let extra: Vec<PathBuf> = vec![
            layout.home.join("bin"),
            layout.home.join("bin/miniforge/bin"),
        ];
        let (gpus, tools) = std::thread::scope(|s| {
            let g = s.spawn(|| self.gpus.probe());
            let t = tools::probe_tools(self.runner.clone(), &extra, self.tool_limit);
            (g.join().unwrap_or_default(), t)
        });
        let resources = system::resources(src);
        let facts = probe::template_facts(&probe::facts_with(&gpus.gpus));
        let fixes = advise(&detection, &layout, &resources, &gpus, &tools, src);
        DoctorReport {
            platform: detection,
            layout,
            resources,
            gpus,
            facts,
            tools,
            fixes,
            elapsed_ms: start.elapsed().as_millis() as u64,
        }
    }
}

/// Platforms without a proxy of their own: a tunnel is the only way in.
fn needs_tunnel(p: Platform) -> bool {
    matches!(p, Platform::Colab | Platform::Kaggle)
}

/// What to fix, most serious first.
pub fn advise(
    d: &Detection,
    layout: &Layout,
    res: &Resources,
    gpus: &GpuReport,
    tools: &[Tool],
    src: &dyn HostSource,
) -> Vec<Fix> {
    let mut fixes = Vec::new();
    let mut add = |level, message: String| fixes.push(Fix { level, message });

    for t in tools {
        match t.status {
            ToolStatus::Missing if t.required => add(
                Level::Error,
                format!(
                    "{} is missing (needed for {}); {}",
                    t.name, t.purpose, t.install
                ),
            ),
            ToolStatus::Missing if matches!(t.name, "cloudflared" | "ngrok") => {}
            ToolStatus::Missing => add(
                Level::Info,
                format!(
                    "{} is not installed (for {}); {}",
                    t.name, t.purpose, t.install
                ),
            ),
            ToolStatus::NoVersion => add(
                Level::Info,
                format!(
                    "{} was found but its version is unknown: {}",
                    t.name,
                    t.problem.as_deref().unwrap_or("no answer")
                ),
            ),
            ToolStatus::Found => {}
        }
    }
    let tunnel = tools
        .iter()
        .any(|t| matches!(t.name, "cloudflared" | "ngrok") && t.status != ToolStatus::Missing);
    if !tunnel {
        let level = if needs_tunnel(d.platform) {
            Level::Warning
        } else {
            Level::Info
        };
        let why = if needs_tunnel(d.platform) {
            format!(
                "{} has no proxy for app ports: reaching an app from your browser needs a tunnel",
                d.platform.name()
            )
        } else {
            "only needed to reach apps through a public tunnel".to_string()
        };
        add(
            level,
            format!("no tunnel tool (cloudflared, ngrok) found; {why}"),
        );
    }

    for n in &layout.notes {
        let level = if layout.persistence == Persistence::Ephemeral {
            Level::Warning
        } else {
            Level::Info
        };
        add(level, n.clone());
    }

    let nvidia_nodes = ["/dev/nvidiactl", "/dev/nvidia0"]
        .iter()
        .any(|p| src.exists(Path::new(p)));
    let has = |v: crate::gpu::GpuVendor| gpus.gpus.iter().any(|g| g.vendor == v);
    let said = |s: GpuSource| {
        gpus.attempts
            .iter()
            .find(|a| a.source == s)
            .map(|a| format!("{}: {}", s.label(), a.outcome))
    };
    if nvidia_nodes && !has(crate::gpu::GpuVendor::Nvidia) {
        let why: Vec<String> = [GpuSource::Nvml, GpuSource::NvidiaSmi]
            .into_iter()
            .filter_map(said)
            .collect();
        add(
            Level::Error,
            format!(
                "NVIDIA device files exist but no GPU answered ({}): the driver libraries are \
                 missing from this container (start it with --gpus all, or install the driver \
                 utilities); apps would install CPU builds",
                why.join("; ")
            ),
        );
    } else if src.exists(Path::new("/dev/kfd")) && !has(crate::gpu::GpuVendor::Amd) {
        add(
            Level::Warning,
            format!(
                "/dev/kfd exists (an AMD GPU) but rocm-smi gave no GPU ({}): install ROCm's rocm-smi so apps install ROCm builds",
                said(GpuSource::RocmSmi).unwrap_or_default()
            ),
        );
    } else if gpus.gpus.is_empty() && d.platform.is_cloud() {
        add(
            Level::Info,
            "no GPU: apps will choose their CPU builds (gpu = \"none\")".into(),
        );
    }
    if has(crate::gpu::GpuVendor::Nvidia) && !gpus.gpus.iter().any(|g| g.source == GpuSource::Nvml)
    {
        if let Some(nvml) = said(GpuSource::Nvml) {
            add(
                Level::Info,
                format!("{nvml}; GPU facts come from nvidia-smi instead"),
            );
        }
    }

    let ram = res.ram_limit_mib.unwrap_or(res.ram_total_mib);
    if ram > 0 && ram < 8 * 1024 {
        add(
            Level::Warning,
            format!(
                "only {:.1} GiB of memory{}: most image and LLM apps need 8 GiB or more",
                ram as f64 / 1024.0,
                if res.ram_limit_mib.is_some() {
                    " (container limit)"
                } else {
                    ""
                }
            ),
        );
    }
    fixes.sort_by_key(|f| f.level);
    fixes
}
