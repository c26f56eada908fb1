//! The engine's facts probe: OS facts plus every GPU NVML, `nvidia-smi` or
//! `rocm-smi` reports, in upstream's shapes (`gpu`, `gpus`, `gpu_model`...),
//! so a cloud GPU without `lspci` is still `gpu: "nvidia"`.

use serde_json::{json, Value};

use pinokio_core::facts::{Facts, FactsProbe};

use crate::gpu::{GpuDevice, GpuProber};

/// The full probe.
pub struct CloudProbe {
    pub gpus: GpuProber,
}

impl CloudProbe {
    /// NVML, `nvidia-smi`, `rocm-smi` on this machine.
    pub fn system() -> Self {
        CloudProbe {
            gpus: GpuProber::system(),
        }
    }
}

impl FactsProbe for CloudProbe {
    fn probe(&self) -> Facts {
        facts_with(&self.gpus.probe().gpus)
    }
}

/// This machine's OS facts with these GPUs.
pub fn facts_with(gpus: &[GpuDevice]) -> Facts {
    Facts {
        gpus: gpus.iter().map(GpuDevice::to_info).collect(),
        ..Facts::cpu_only()
    }
}

/// The values templates see (`platform`, `arch`, `gpu`, `gpus`,
/// `gpu_model`, `gpu_driver`, `gpu_target`, `vram`, `ram`), as JSON.
pub fn template_facts(f: &Facts) -> Value {
    json!({
        "platform": f.platform,
        "arch": f.arch,
        "gpu": f.gpu(),
        "gpus": f.gpus_value(),
        "gpu_model": f.gpu_model(),
        "gpu_driver": f.gpu_driver(),
        "gpu_target": f.gpu_target(),
        "vram": f.vram(),
        "ram": f.ram,
    })
}
