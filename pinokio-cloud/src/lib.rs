//! `pinokio-cloud`: knowing the machine a launcher runs on.
//!
//! This crate will hold platform detection (Colab, Kaggle, Vast.ai, RunPod,
//! Lightning, Paperspace, SageMaker, Docker, local), persistent-storage path
//! mapping, GPU/RAM/disk probing through NVML with an `nvidia-smi`
//! fallback, web-UI URL detection and exposure (platform proxy URLs and
//! tunnels). It is being built; today the engine uses the plain probe in
//! [`pinokio_core::facts`], which this crate re-exports so frontends depend
//! on one place for machine facts.

pub use pinokio_core::facts::{Facts, FactsProbe, GpuInfo, HostProbe};

/// The best facts probe available in this build.
pub fn default_probe() -> HostProbe {
    HostProbe
}
