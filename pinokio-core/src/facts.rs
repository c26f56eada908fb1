//! Machine facts as templates see them (`platform`, `arch`, `gpu`, `gpus`,
//! `gpu_model`, ... in upstream's shapes, section 7 of the semantics note).
//!
//! The core only holds the values; probing lives behind [`FactsProbe`] so
//! tests and `pinokio plan` inject their own. `pinokio-cloud` provides the
//! full probe (NVML, rocm-smi); [`HostProbe`] here is the plain fallback
//! (OS facts plus `nvidia-smi`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One graphics controller, as upstream's `gpus` entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GpuInfo {
    /// Lowercased vendor, e.g. `"nvidia corporation"`.
    pub name: String,
    /// Lowercased model, e.g. `"nvidia h100 80gb hbm3"`.
    pub model: String,
    /// Driver version, if known.
    pub driver: Option<String>,
    /// VRAM in MiB, if known (not part of upstream's object; used for `vram`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram_mib: Option<u64>,
    /// Compute capability such as `"9.0"` (NVIDIA), for `gpu_target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_cap: Option<String>,
}

/// Facts published to templates and `kernel.*`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// Node's `os.platform()`: `linux`, `darwin`, `win32`.
    pub platform: String,
    /// Node's `os.arch()`: `x64`, `arm64`...
    pub arch: String,
    pub gpus: Vec<GpuInfo>,
    /// Whole GB of system memory.
    pub ram: u64,
    /// Overrides the computed `gpu` (for `pinokio plan --gpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_override: Option<String>,
    /// Overrides the computed `gpu_model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model_override: Option<String>,
}

/// Something that can tell the machine's facts.
pub trait FactsProbe: Send + Sync {
    fn probe(&self) -> Facts;
}

/// Node's names for the current OS and CPU.
pub fn node_platform() -> &'static str {
    match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        "windows" => "win32",
        "freebsd" => "freebsd",
        other => other,
    }
}

/// Node's `os.arch()` for the current CPU.
pub fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        "arm" => "arm",
        other => other,
    }
}

impl Facts {
    /// Facts of a machine without GPU.
    pub fn cpu_only() -> Self {
        Facts {
            platform: node_platform().into(),
            arch: node_arch().into(),
            gpus: Vec::new(),
            ram: total_ram_gb(),
            gpu_override: None,
            gpu_model_override: None,
        }
    }

    /// `gpu`: nvidia, then amd, then apple, then the first vendor, else "none".
    pub fn gpu(&self) -> String {
        if let Some(g) = &self.gpu_override {
            return g.clone();
        }
        let any = |re: &dyn Fn(&str) -> bool| self.gpus.iter().any(|g| re(&g.name));
        if any(&|n| n.contains("nvidia")) {
            return "nvidia".into();
        }
        if any(&|n| n.contains("amd") || n.contains("advanced micro devices")) {
            return "amd".into();
        }
        if any(&|n| n.contains("apple")) {
            return "apple".into();
        }
        self.gpus
            .first()
            .map(|g| g.name.clone())
            .unwrap_or_else(|| "none".into())
    }

    fn chosen(&self) -> Option<&GpuInfo> {
        let gpu = self.gpu();
        let matches = |g: &&GpuInfo| match gpu.as_str() {
            "nvidia" => g.name.contains("nvidia"),
            "amd" => g.name.contains("amd") || g.name.contains("advanced micro devices"),
            "apple" => g.name.contains("apple"),
            other => g.name == other,
        };
        if gpu == "amd" {
            return self
                .gpus
                .iter()
                .filter(matches)
                .max_by_key(|g| g.vram_mib.unwrap_or(0));
        }
        self.gpus.iter().find(matches)
    }

    /// `gpu_model`: lowercased model of the chosen controller.
    pub fn gpu_model(&self) -> Option<String> {
        if let Some(m) = &self.gpu_model_override {
            return Some(m.to_lowercase());
        }
        self.chosen().map(|g| g.model.to_lowercase())
    }

    pub fn gpu_driver(&self) -> Option<String> {
        self.chosen().and_then(|g| g.driver.clone())
    }

    /// `gpu_target`: `sm_XY` for NVIDIA from the compute capability.
    pub fn gpu_target(&self) -> Option<String> {
        let g = self.chosen()?;
        if !g.name.contains("nvidia") {
            return None;
        }
        let cap = g.compute_cap.as_ref()?;
        Some(format!("sm_{}", cap.replace('.', "")))
    }

    /// `vram`: whole GB of the chosen controller.
    pub fn vram(&self) -> u64 {
        self.chosen()
            .and_then(|g| g.vram_mib)
            .map(|m| ((m as f64) / 1024.0).round() as u64)
            .unwrap_or(0)
    }

    /// `gpus` as upstream's objects `{name, model, driver}`.
    pub fn gpus_value(&self) -> Value {
        if let (Some(g), true) = (&self.gpu_override, self.gpus.is_empty()) {
            if g == "none" {
                return json!([]);
            }
            let vendor = match g.as_str() {
                "nvidia" => "nvidia corporation",
                "amd" => "advanced micro devices, inc. [amd/ati]",
                "apple" => "apple",
                other => other,
            };
            return json!([{ "name": vendor, "model": self.gpu_model().unwrap_or_default(), "driver": null }]);
        }
        Value::Array(
            self.gpus
                .iter()
                .map(|g| json!({"name": g.name, "model": g.model, "driver": g.driver}))
                .collect(),
        )
    }
}

/// The built-in probe: OS facts plus `nvidia-smi` when it is on PATH.
pub struct HostProbe;

impl FactsProbe for HostProbe {
    fn probe(&self) -> Facts {
        let mut f = Facts::cpu_only();
        f.gpus = nvidia_smi_gpus();
        f
    }
}

/// Query `nvidia-smi` (no GPU or no tool: empty list).
pub fn nvidia_smi_gpus() -> Vec<GpuInfo> {
    let Ok(tool) = which::which("nvidia-smi") else {
        return Vec::new();
    };
    let out = std::process::Command::new(tool)
        .args([
            "--query-gpu=name,driver_version,memory.total,compute_cap",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let Ok(out) = out else { return Vec::new() };
    if !out.status.success() {
        return Vec::new();
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

/// Parse `nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader,nounits`.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(',').map(|c| c.trim()).collect();
            let field = |i: usize| {
                cols.get(i)
                    .filter(|c| !c.is_empty() && !c.starts_with('['))
                    .map(|c| c.to_string())
            };
            GpuInfo {
                name: "nvidia corporation".into(),
                model: field(0).unwrap_or_default().to_lowercase(),
                driver: field(1),
                vram_mib: field(2).and_then(|m| m.parse().ok()),
                compute_cap: field(3),
            }
        })
        .collect()
}

/// Total RAM in whole GB (Linux `/proc/meminfo`; 0 when unknown).
pub fn total_ram_gb() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("MemTotal:") {
            let kb: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return ((kb as f64) / 1024.0 / 1024.0).round() as u64;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_parsing_and_derived_values() {
        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0\n");
        let f = Facts {
            gpus,
            ..Facts::cpu_only()
        };
        assert_eq!(f.gpu(), "nvidia");
        assert_eq!(f.gpu_model().unwrap(), "nvidia h100 80gb hbm3");
        assert_eq!(f.gpu_driver().unwrap(), "550.54.15");
        assert_eq!(f.gpu_target().unwrap(), "sm_90");
        assert_eq!(f.vram(), 80);
        assert_eq!(
            f.gpus_value(),
            json!([{"name": "nvidia corporation", "model": "nvidia h100 80gb hbm3", "driver": "550.54.15"}])
        );
    }

    #[test]
    fn no_gpu_is_none() {
        let f = Facts::cpu_only();
        assert_eq!(f.gpu(), "none");
        assert_eq!(f.gpu_model(), None);
        assert_eq!(f.vram(), 0);
        assert_eq!(f.gpus_value(), json!([]));
    }

    #[test]
    fn overrides_for_plan() {
        let f = Facts {
            gpu_override: Some("nvidia".into()),
            gpu_model_override: Some("NVIDIA GeForce RTX 5090".into()),
            ..Facts::cpu_only()
        };
        assert_eq!(f.gpu(), "nvidia");
        assert_eq!(f.gpu_model().unwrap(), "nvidia geforce rtx 5090");
        assert_eq!(f.gpus_value()[0]["name"], "nvidia corporation");
    }

    #[test]
    fn vendor_priority() {
        let g = |n: &str| GpuInfo {
            name: n.into(),
            model: "m".into(),
            driver: None,
            vram_mib: None,
            compute_cap: None,
        };
        let f = Facts {
            gpus: vec![
                g("intel corporation"),
                g("advanced micro devices, inc. [amd/ati]"),
            ],
            ..Facts::cpu_only()
        };
        assert_eq!(f.gpu(), "amd");
        let f = Facts {
            gpus: vec![g("intel corporation")],
            ..Facts::cpu_only()
        };
        assert_eq!(f.gpu(), "intel corporation");
    }
}
