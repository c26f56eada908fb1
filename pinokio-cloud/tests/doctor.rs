//! The doctor's report and advice on described machines (fixture host,
//! scripted tools, fixed GPU answers).

use std::sync::Arc;
use std::time::Duration;

use pinokio_cloud::command::ScriptedRunner;
use pinokio_cloud::doctor::{Doctor, Level};
use pinokio_cloud::gpu::{GpuBackend, GpuDevice, GpuError, GpuProber, GpuSource, NvidiaSmi};
use pinokio_cloud::source::FixtureHost;

struct Fails(GpuSource, &'static str);

impl GpuBackend for Fails {
    fn source(&self) -> GpuSource {
        self.0
    }
    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError> {
        Err(GpuError::Nvml(self.1.into()))
    }
}

fn all_tools() -> ScriptedRunner {
    ScriptedRunner::new()
        .answer("git --version", 0, "git version 2.43.0\n")
        .answer("python3 --version", 0, "Python 3.10.12\n")
        .answer("uv --version", 0, "uv 0.5.4\n")
        .answer("node --version", 0, "v20.18.0\n")
        .answer("micromamba --version", 0, "2.0.2\n")
        .answer(
            "ffmpeg -version",
            0,
            "ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers\n",
        )
        .answer(
            "cloudflared --version",
            0,
            "cloudflared version 2024.11.0 (built 2024-11-04-1420 UTC)\n",
        )
}

fn doctor(host: FixtureHost, runner: ScriptedRunner, nvidia_smi: ScriptedRunner) -> Doctor {
    Doctor {
        src: Arc::new(host),
        runner: Arc::new(runner),
        gpus: GpuProber {
            nvidia: vec![
                Box::new(Fails(
                    GpuSource::Nvml,
                    "a libloading error occurred: libnvidia-ml.so.1: cannot open shared object file",
                )),
                Box::new(NvidiaSmi { runner: nvidia_smi }),
            ],
            amd: Vec::new(),
        },
        tool_limit: Duration::from_millis(200),
    }
}

fn meminfo(total_gib: u64) -> String {
    format!(
        "MemTotal:       {} kB\nMemAvailable:   {} kB\n",
        total_gib << 20,
        (total_gib << 20) / 2
    )
}

#[test]
fn healthy_runpod_h100() {
    let fix = |n: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/gpu")
                .join(n),
        )
        .unwrap()
    };
    let host = FixtureHost::new()
        .env("RUNPOD_POD_ID", "k3x9z2abcd1234")
        .mount("/workspace", 200, 180)
        .file("/dev/nvidiactl", "")
        .file("/proc/meminfo", &meminfo(251));
    let smi = ScriptedRunner::new()
        .answer(
            &format!(
                "nvidia-smi --query-gpu={} --format=csv,noheader,nounits",
                pinokio_cloud::gpu::NVIDIA_SMI_FIELDS
            ),
            0,
            &fix("nvidia-smi-h100.csv"),
        )
        .answer("nvidia-smi", 0, &fix("nvidia-smi-h100-banner.txt"));
    let r = doctor(host, all_tools(), smi).run(None);
    assert_eq!(r.platform.platform.id(), "runpod");
    assert_eq!(r.layout.home.display().to_string(), "/workspace/pinokio");
    assert_eq!(r.facts["gpu"], "nvidia");
    assert_eq!(r.facts["gpu_model"], "nvidia h100 80gb hbm3");
    assert_eq!(r.gpus.gpus[0].cuda_version.as_deref(), Some("12.4"));
    let conda = r.tools.iter().find(|t| t.name == "conda").unwrap();
    assert_eq!(conda.program.as_deref(), Some("micromamba"));
    assert_eq!(conda.version.as_deref(), Some("2.0.2"));
    // nothing is wrong: only the note that NVML could not be loaded
    let levels: Vec<(Level, &str)> = r
        .fixes
        .iter()
        .map(|f| (f.level, f.message.as_str()))
        .collect();
    assert!(r.fixes.iter().all(|f| f.level == Level::Info), "{levels:?}");
    assert!(
        r.fixes
            .iter()
            .any(|f| f.message.contains("GPU facts come from nvidia-smi")),
        "{levels:?}"
    );
    assert!(
        !r.fixes.iter().any(|f| f.message.contains("tunnel")),
        "{levels:?}"
    );
}

#[test]
fn broken_driver_low_memory_colab_without_tunnel() {
    let host = FixtureHost::new()
        .env("COLAB_RELEASE_TAG", "release-colab_20261110")
        .dir("/content")
        .file("/dev/nvidia0", "")
        .file("/dev/nvidiactl", "")
        .file("/proc/meminfo", &meminfo(12))
        .file("/sys/fs/cgroup/memory.max", "4294967296\n");
    let runner = ScriptedRunner::new().answer("git --version", 0, "git version 2.34.1\n");
    let r = doctor(host, runner, ScriptedRunner::new()).run(None);
    assert_eq!(r.facts["gpu"], "none");
    let levels: Vec<(Level, &str)> = r
        .fixes
        .iter()
        .map(|f| (f.level, f.message.as_str()))
        .collect();
    let first = &r.fixes[0];
    assert_eq!(first.level, Level::Error, "{levels:?}");
    assert!(first.message.starts_with("python is missing"), "{levels:?}");
    let driver = r
        .fixes
        .iter()
        .find(|f| f.message.starts_with("NVIDIA device files exist"))
        .unwrap_or_else(|| panic!("{levels:?}"));
    assert_eq!(driver.level, Level::Error);
    assert!(
        driver.message.contains("libnvidia-ml.so.1"),
        "{}",
        driver.message
    );
    assert!(
        driver.message.contains("nvidia-smi is not installed"),
        "{}",
        driver.message
    );
    let warnings: Vec<&str> = r
        .fixes
        .iter()
        .filter(|f| f.level == Level::Warning)
        .map(|f| f.message.as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Google Colab has no proxy")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("drive.mount")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("4.0 GiB of memory (container limit)")),
        "{warnings:?}"
    );
    // errors, then warnings, then infos
    let order: Vec<Level> = r.fixes.iter().map(|f| f.level).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn amd_device_without_rocm_smi() {
    let host = FixtureHost::new()
        .file("/dev/kfd", "")
        .file("/proc/meminfo", &meminfo(64));
    let r = doctor(host, all_tools(), ScriptedRunner::new()).run(None);
    let w = r
        .fixes
        .iter()
        .find(|f| f.message.starts_with("/dev/kfd exists"))
        .expect("AMD advice");
    assert_eq!(w.level, Level::Warning);
}
