//! GPUs: NVIDIA through NVML (loaded at run time, so a machine without the
//! driver works), with `nvidia-smi` as the fallback (static builds cannot
//! dlopen; broken driver installs), and AMD through `rocm-smi`. No GPU is a
//! normal answer: an empty list, with the reason each source gave.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::command::{CommandError, CommandRunner, SystemRunner};

/// How long `nvidia-smi` and `rocm-smi` may take (a wedged driver can hang
/// them for minutes).
pub const TOOL_LIMIT: Duration = Duration::from_secs(10);

/// Errors from one GPU source.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("NVML is not available: {0}")]
    Nvml(String),
    #[error("{0} is not installed")]
    Missing(&'static str),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{tool} failed (exit {code:?}): {message}")]
    Failed {
        tool: &'static str,
        code: Option<i32>,
        message: String,
    },
    #[error("cannot read the output of {tool}: {message}")]
    Parse { tool: &'static str, message: String },
}

/// GPU maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
    Amd,
}

impl GpuVendor {
    /// The lowercased vendor string upstream's `gpus[].name` holds.
    pub fn upstream_name(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "nvidia corporation",
            GpuVendor::Amd => "advanced micro devices, inc. [amd/ati]",
        }
    }
}

/// Which source answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSource {
    Nvml,
    NvidiaSmi,
    RocmSmi,
}

impl GpuSource {
    pub fn label(self) -> &'static str {
        match self {
            GpuSource::Nvml => "NVML",
            GpuSource::NvidiaSmi => "nvidia-smi",
            GpuSource::RocmSmi => "rocm-smi",
        }
    }
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuDevice {
    pub index: u32,
    pub vendor: GpuVendor,
    /// Model as the driver names it (`NVIDIA H100 80GB HBM3`).
    pub model: String,
    pub vram_total_mib: Option<u64>,
    pub vram_free_mib: Option<u64>,
    pub driver: Option<String>,
    /// Highest CUDA version the driver supports (`12.4`), NVIDIA only.
    pub cuda_version: Option<String>,
    /// Compute capability (`9.0`), NVIDIA only.
    pub compute_cap: Option<String>,
    /// ROCm target (`gfx942`), AMD only.
    pub gfx_target: Option<String>,
    pub pci_bus_id: Option<String>,
    pub source: GpuSource,
}

impl GpuDevice {
    /// The engine's (upstream-shaped) view of this GPU.
    pub fn to_info(&self) -> pinokio_core::facts::GpuInfo {
        pinokio_core::facts::GpuInfo {
            name: self.vendor.upstream_name().into(),
            model: self.model.to_lowercase(),
            driver: self.driver.clone(),
            vram_mib: self.vram_total_mib,
            compute_cap: self.compute_cap.clone(),
        }
    }
}

/// One GPU source's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub source: GpuSource,
    /// `found N`, `no GPU`, `skipped: ...` or the error.
    pub outcome: String,
}

/// Every GPU found, and what each source said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct GpuReport {
    pub gpus: Vec<GpuDevice>,
    pub attempts: Vec<Attempt>,
}

/// A way of listing GPUs.
pub trait GpuBackend: Send + Sync {
    fn source(&self) -> GpuSource;
    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError>;
}

/// NVIDIA Management Library, dlopened at run time.
#[derive(Debug, Clone, Copy, Default)]
pub struct NvmlBackend;

impl GpuBackend for NvmlBackend {
    fn source(&self) -> GpuSource {
        GpuSource::Nvml
    }

    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError> {
        use nvml_wrapper::Nvml;
        let e = |e: nvml_wrapper::error::NvmlError| GpuError::Nvml(e.to_string());
        let nvml = Nvml::init().map_err(e)?;
        let driver = nvml.sys_driver_version().ok();
        let cuda = nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        });
        let count = nvml.device_count().map_err(e)?;
        let mut out = Vec::new();
        for i in 0..count {
            let d = nvml.device_by_index(i).map_err(e)?;
            let mem = d.memory_info().ok();
            out.push(GpuDevice {
                index: i,
                vendor: GpuVendor::Nvidia,
                model: d.name().map_err(e)?,
                vram_total_mib: mem.as_ref().map(|m| m.total >> 20),
                vram_free_mib: mem.as_ref().map(|m| m.free >> 20),
                driver: driver.clone(),
                cuda_version: cuda.clone(),
                compute_cap: d
                    .cuda_compute_capability()
                    .ok()
                    .map(|c| format!("{}.{}", c.major, c.minor)),
                gfx_target: None,
                pci_bus_id: d.pci_info().ok().map(|p| p.bus_id),
                source: GpuSource::Nvml,
            });
        }
        Ok(out)
    }
}

/// The `nvidia-smi` query asked for (with `compute_cap`; drivers before
/// 510 do not know that field, so it is asked again without it).
pub const NVIDIA_SMI_FIELDS: &str =
    "index,pci.bus_id,name,driver_version,memory.total,memory.free,compute_cap";
const NVIDIA_SMI_FIELDS_OLD: &str = "index,pci.bus_id,name,driver_version,memory.total,memory.free";

/// `nvidia-smi` through a [`CommandRunner`].
pub struct NvidiaSmi<R: CommandRunner = SystemRunner> {
    pub runner: R,
}

impl<R: CommandRunner> NvidiaSmi<R> {
    fn query(&self, tool: &std::path::Path, fields: &str) -> Result<String, GpuError> {
        let q = format!("--query-gpu={fields}");
        let o = self
            .runner
            .run(tool, &[&q, "--format=csv,noheader,nounits"], TOOL_LIMIT)?;
        if !o.success() {
            let text = if o.stdout.trim().is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            return Err(GpuError::Failed {
                tool: "nvidia-smi",
                code: o.code,
                message: text.trim().to_string(),
            });
        }
        Ok(o.stdout)
    }
}

impl<R: CommandRunner> GpuBackend for NvidiaSmi<R> {
    fn source(&self) -> GpuSource {
        GpuSource::NvidiaSmi
    }

    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError> {
        let tool = self
            .runner
            .find("nvidia-smi")
            .ok_or(GpuError::Missing("nvidia-smi"))?;
        // the CUDA version is only in the banner of the plain command; ask
        // for it while the query runs
        let cuda = std::thread::scope(|s| {
            let banner = s.spawn(|| {
                self.runner
                    .run(&tool, &[], TOOL_LIMIT)
                    .ok()
                    .and_then(|o| parse_cuda_version(&o.stdout))
            });
            let csv = match self.query(&tool, NVIDIA_SMI_FIELDS) {
                Err(GpuError::Failed { message, .. }) if message.contains("compute_cap") => {
                    self.query(&tool, NVIDIA_SMI_FIELDS_OLD)
                }
                other => other,
            };
            (csv, banner.join().ok().flatten())
        });
        let (csv, cuda) = cuda;
        let mut gpus = parse_nvidia_smi_csv(&csv?)?;
        for g in &mut gpus {
            g.cuda_version = cuda.clone();
        }
        Ok(gpus)
    }
}

/// Parse `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`
/// (the last field, `compute_cap`, may be absent).
pub fn parse_nvidia_smi_csv(text: &str) -> Result<Vec<GpuDevice>, GpuError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < 6 {
            return Err(GpuError::Parse {
                tool: "nvidia-smi",
                message: format!("line {}: expected 6 or 7 fields: {line:?}", n + 1),
            });
        }
        // "[N/A]", "[Not Supported]", "N/A" mean unknown
        let field = |i: usize| {
            cols.get(i)
                .filter(|c| !c.is_empty() && !c.starts_with('[') && **c != "N/A")
                .map(|c| c.to_string())
        };
        let mib = |i: usize| field(i).and_then(|c| c.parse::<u64>().ok());
        out.push(GpuDevice {
            index: field(0)
                .and_then(|c| c.parse().ok())
                .unwrap_or(out.len() as u32),
            vendor: GpuVendor::Nvidia,
            model: field(2).unwrap_or_else(|| "NVIDIA GPU".into()),
            vram_total_mib: mib(4),
            vram_free_mib: mib(5),
            driver: field(3),
            cuda_version: None,
            compute_cap: field(6),
            gfx_target: None,
            pci_bus_id: field(1),
            source: GpuSource::NvidiaSmi,
        });
    }
    Ok(out)
}

/// The `CUDA Version: 12.4` of `nvidia-smi`'s banner (or of
/// `nvidia-smi --version`).
pub fn parse_cuda_version(text: &str) -> Option<String> {
    let i = text.find("CUDA Version")?;
    let rest = text[i + "CUDA Version".len()..].trim_start_matches([' ', ':']);
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// `rocm-smi` through a [`CommandRunner`].
pub struct RocmSmi<R: CommandRunner = SystemRunner> {
    pub runner: R,
}

/// The arguments given to `rocm-smi`.
pub const ROCM_SMI_ARGS: &[&str] = &[
    "--showproductname",
    "--showmeminfo",
    "vram",
    "--showdriverversion",
    "--json",
];

impl<R: CommandRunner> GpuBackend for RocmSmi<R> {
    fn source(&self) -> GpuSource {
        GpuSource::RocmSmi
    }

    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError> {
        let tool = self
            .runner
            .find("rocm-smi")
            .ok_or(GpuError::Missing("rocm-smi"))?;
        let o = self.runner.run(&tool, ROCM_SMI_ARGS, TOOL_LIMIT)?;
        if !o.success() {
            return Err(GpuError::Failed {
                tool: "rocm-smi",
                code: o.code,
                message: format!("{}{}", o.stdout.trim(), o.stderr.trim()),
            });
        }
        parse_rocm_smi_json(&o.stdout)
    }
}

/// Parse `rocm-smi --showproductname --showmeminfo vram --showdriverversion
/// --json`. Key names changed case between ROCm releases (`Card series`,
/// `Card Series`), so keys are matched ignoring case; warnings printed
/// before the JSON are skipped.
pub fn parse_rocm_smi_json(text: &str) -> Result<Vec<GpuDevice>, GpuError> {
    let start = text.find('{').ok_or_else(|| GpuError::Parse {
        tool: "rocm-smi",
        message: "no JSON object in the output".into(),
    })?;
    let v: Value = serde_json::from_str(text[start..].trim()).map_err(|e| GpuError::Parse {
        tool: "rocm-smi",
        message: e.to_string(),
    })?;
    let obj = v.as_object().ok_or_else(|| GpuError::Parse {
        tool: "rocm-smi",
        message: "the JSON is not an object".into(),
    })?;
    let get = |card: &Value, key: &str| -> Option<String> {
        card.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| match v {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty() && s != "N/A")
    };
    let system_driver = obj.get("system").and_then(|s| get(s, "Driver version"));
    let mut cards: Vec<(u32, &Value)> = obj
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("card")?.parse::<u32>().ok()?, v)))
        .collect();
    cards.sort_by_key(|(i, _)| *i);
    Ok(cards
        .into_iter()
        .map(|(index, c)| {
            let bytes = |k: &str| get(c, k).and_then(|s| s.parse::<u64>().ok());
            let total = bytes("VRAM Total Memory (B)");
            let used = bytes("VRAM Total Used Memory (B)");
            let model = get(c, "Card Series")
                .or_else(|| get(c, "Card SKU"))
                .or_else(|| get(c, "Card Model"))
                .unwrap_or_else(|| "AMD GPU".into());
            GpuDevice {
                index,
                vendor: GpuVendor::Amd,
                model,
                vram_total_mib: total.map(|b| b >> 20),
                vram_free_mib: total.zip(used).map(|(t, u)| t.saturating_sub(u) >> 20),
                driver: get(c, "Driver version").or_else(|| system_driver.clone()),
                cuda_version: None,
                compute_cap: None,
                gfx_target: get(c, "GFX Version").filter(|g| g.starts_with("gfx")),
                pci_bus_id: get(c, "PCI Bus"),
                source: GpuSource::RocmSmi,
            }
        })
        .collect())
}

/// Asks NVIDIA sources in order (the first that answers wins) and AMD's.
pub struct GpuProber {
    pub nvidia: Vec<Box<dyn GpuBackend>>,
    pub amd: Vec<Box<dyn GpuBackend>>,
}

impl GpuProber {
    /// NVML, then `nvidia-smi`; `rocm-smi`.
    pub fn system() -> Self {
        GpuProber {
            nvidia: vec![
                Box::new(NvmlBackend),
                Box::new(NvidiaSmi {
                    runner: SystemRunner,
                }),
            ],
            amd: vec![Box::new(RocmSmi {
                runner: SystemRunner,
            })],
        }
    }

    /// Probe every vendor (NVIDIA and AMD in parallel).
    pub fn probe(&self) -> GpuReport {
        let run = |backends: &[Box<dyn GpuBackend>]| {
            let mut attempts = Vec::new();
            for (i, b) in backends.iter().enumerate() {
                match b.probe() {
                    Ok(g) if !g.is_empty() => {
                        attempts.push(Attempt {
                            source: b.source(),
                            outcome: format!("found {}", g.len()),
                        });
                        for later in &backends[i + 1..] {
                            attempts.push(Attempt {
                                source: later.source(),
                                outcome: format!("skipped: {} answered", b.source().label()),
                            });
                        }
                        return (g, attempts);
                    }
                    Ok(_) => attempts.push(Attempt {
                        source: b.source(),
                        outcome: "no GPU".into(),
                    }),
                    Err(e) => attempts.push(Attempt {
                        source: b.source(),
                        outcome: e.to_string(),
                    }),
                }
            }
            (Vec::new(), attempts)
        };
        let ((mut gpus, mut attempts), (amd, amd_attempts)) = std::thread::scope(|s| {
            let a = s.spawn(|| run(&self.amd));
            let n = run(&self.nvidia);
            (n, a.join().unwrap_or_default())
        });
        gpus.extend(amd);
        attempts.extend(amd_attempts);
        GpuReport { gpus, attempts }
    }
}
