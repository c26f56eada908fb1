//! `pinokio-cloud`: knowing the machine a launcher runs on.
//!
//! - [`platform`]: which platform this is (Colab, Kaggle, Vast.ai, RunPod,
//!   Lightning, Paperspace, SageMaker Studio Lab, a container, local), with
//!   the evidence used.
//! - [`layout`]: where the Pinokio home and big caches go on it, and the
//!   free space of each.
//! - [`gpu`], [`system`], [`probe`]: GPUs (NVML, `nvidia-smi`, `rocm-smi`),
//!   CPUs, memory, disks; [`CloudProbe`] feeds the engine's facts in
//!   upstream's shapes.
//! - [`tools`], [`doctor`]: tools with versions and `pinokio doctor`.
//! - [`urls`], [`ports`]: an app's web UI URL from its output and from the
//!   ports its process tree listens on; [`urls::shell_watchers`] is the
//!   engine's URL watcher factory (one detector per shell).
//!
//! The machine is read through small traits ([`source::HostSource`],
//! [`command::CommandRunner`], [`gpu::GpuBackend`]) so tests describe any
//! platform with fixtures.
//!
//! - [`expose`]: platform proxy URLs and tunnels ([`expose::TunnelManager`]
//!   is the engine's exposer).
//! - [`install`]: `cloudflared` and `ngrok` into `HOME/bin`, on request.
//! - [`idle`]: the optional idle policy (stop the apps, and the instance
//!   through the platform's API, after N minutes without use).

pub mod command;
pub mod doctor;
pub mod expose;
pub mod gpu;
pub mod idle;
pub mod install;
pub mod layout;
pub mod platform;
pub mod ports;
pub mod probe;
pub mod source;
pub mod system;
pub mod tools;
pub mod urls;

pub use pinokio_core::facts::{Facts, FactsProbe, GpuInfo, HostProbe};
pub use probe::CloudProbe;

/// The best facts probe available in this build: NVML, then `nvidia-smi`,
/// and `rocm-smi`.
pub fn default_probe() -> CloudProbe {
    CloudProbe::system()
}
