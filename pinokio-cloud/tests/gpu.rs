//! GPU probing: captured `nvidia-smi`/`rocm-smi` output
//! (`tests/fixtures/gpu/`), the NVML -> nvidia-smi fallback, NVML absent on
//! this machine, and the facts the engine's templates see.

use std::sync::Mutex;

use pinokio_cloud::command::ScriptedRunner;
use pinokio_cloud::gpu::{
    parse_cuda_version, parse_nvidia_smi_csv, parse_rocm_smi_json, GpuBackend, GpuDevice, GpuError,
    GpuProber, GpuSource, GpuVendor, NvidiaSmi, NvmlBackend, RocmSmi, NVIDIA_SMI_FIELDS,
};
use pinokio_cloud::probe::{facts_with, template_facts, CloudProbe};
use pinokio_cloud::FactsProbe;
use serde_json::json;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gpu")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn query_line() -> String {
    format!("nvidia-smi --query-gpu={NVIDIA_SMI_FIELDS} --format=csv,noheader,nounits")
}

fn rocm_line() -> String {
    format!("rocm-smi {}", pinokio_cloud::gpu::ROCM_SMI_ARGS.join(" "))
}

#[test]
fn nvidia_smi_h100() {
    let g = parse_nvidia_smi_csv(&fixture("nvidia-smi-h100.csv")).unwrap();
    assert_eq!(
        g,
        vec![GpuDevice {
            index: 0,
            vendor: GpuVendor::Nvidia,
            model: "NVIDIA H100 80GB HBM3".into(),
            vram_total_mib: Some(81559),
            vram_free_mib: Some(81008),
            driver: Some("550.54.15".into()),
            cuda_version: None,
            compute_cap: Some("9.0".into()),
            gfx_target: None,
            pci_bus_id: Some("00000000:18:00.0".into()),
            source: GpuSource::NvidiaSmi,
        }]
    );
    assert_eq!(
        parse_cuda_version(&fixture("nvidia-smi-h100-banner.txt")).as_deref(),
        Some("12.4")
    );
    assert_eq!(
        parse_cuda_version(&fixture("nvidia-smi-t4-banner.txt")).as_deref(),
        Some("11.4")
    );
    assert_eq!(parse_cuda_version("no banner"), None);
}

#[test]
fn nvidia_smi_several_gpus_and_unknown_fields() {
    let g = parse_nvidia_smi_csv(&fixture("nvidia-smi-4x-a100.csv")).unwrap();
    assert_eq!(g.len(), 4);
    assert_eq!(g[3].index, 3);
    assert_eq!(g[3].pci_bus_id.as_deref(), Some("00000000:4E:00.0"));
    assert_eq!(g[2].vram_free_mib, Some(60112));
    let g = parse_nvidia_smi_csv(&fixture("nvidia-smi-gh200-na.csv")).unwrap();
    assert_eq!(g[0].vram_total_mib, None);
    assert_eq!(g[0].compute_cap.as_deref(), Some("9.0"));
    let g = parse_nvidia_smi_csv(&fixture("nvidia-smi-t4-no-compute-cap.csv")).unwrap();
    assert_eq!(g[0].compute_cap, None);
    assert_eq!(g[0].model, "Tesla T4");
    assert!(matches!(
        parse_nvidia_smi_csv("garbage"),
        Err(GpuError::Parse { .. })
    ));
    assert!(parse_nvidia_smi_csv("").unwrap().is_empty());
}

#[test]
fn nvidia_smi_backend_adds_the_cuda_version() {
    let runner = ScriptedRunner::new()
        .answer(&query_line(), 0, &fixture("nvidia-smi-h100.csv"))
        .answer("nvidia-smi", 0, &fixture("nvidia-smi-h100-banner.txt"));
    let g = NvidiaSmi { runner }.probe().unwrap();
    assert_eq!(g[0].cuda_version.as_deref(), Some("12.4"));
    assert_eq!(g[0].source, GpuSource::NvidiaSmi);
}

#[test]
fn old_driver_without_compute_cap_is_asked_again() {
    let old = "nvidia-smi --query-gpu=index,pci.bus_id,name,driver_version,memory.total,memory.free --format=csv,noheader,nounits";
    let runner = ScriptedRunner::new()
        .answer(
            &query_line(),
            2,
            &fixture("nvidia-smi-old-driver-error.txt"),
        )
        .answer(old, 0, &fixture("nvidia-smi-t4-no-compute-cap.csv"))
        .answer("nvidia-smi", 0, &fixture("nvidia-smi-t4-banner.txt"));
    let g = NvidiaSmi { runner }.probe().unwrap();
    assert_eq!(g[0].model, "Tesla T4");
    assert_eq!(g[0].cuda_version.as_deref(), Some("11.4"));
    assert_eq!(g[0].compute_cap, None);
}

#[test]
fn nvidia_smi_without_driver_or_tool() {
    let runner = ScriptedRunner::new()
        .answer(&query_line(), 9, &fixture("nvidia-smi-no-driver.txt"))
        .answer("nvidia-smi", 9, &fixture("nvidia-smi-no-driver.txt"));
    let e = NvidiaSmi { runner }.probe().unwrap_err();
    assert!(
        e.to_string()
            .contains("couldn't communicate with the NVIDIA driver"),
        "{e}"
    );
    let e = NvidiaSmi {
        runner: ScriptedRunner::new(),
    }
    .probe()
    .unwrap_err();
    assert!(matches!(e, GpuError::Missing("nvidia-smi")));
    let e = NvidiaSmi {
        runner: ScriptedRunner::new().hang(&query_line()),
    }
    .probe()
    .unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
}

#[test]
fn rocm_smi_rocm6_mi300x() {
    let g = parse_rocm_smi_json(&fixture("rocm-smi-mi300x.json")).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].vendor, GpuVendor::Amd);
    assert_eq!(g[0].model, "AMD Instinct MI300X");
    assert_eq!(g[0].vram_total_mib, Some(196288));
    assert_eq!(g[0].vram_free_mib, Some(196006));
    assert_eq!(g[1].vram_free_mib, Some(184287));
    assert_eq!(g[0].gfx_target.as_deref(), Some("gfx942"));
    assert_eq!(g[1].driver.as_deref(), Some("6.8.5"));
    assert_eq!(g[1].index, 1);
}

#[test]
fn rocm_smi_rocm5_lowercase_keys_after_a_warning() {
    let runner =
        ScriptedRunner::new().answer(&rocm_line(), 0, &fixture("rocm-smi-rx7900xtx-rocm5.json"));
    let g = RocmSmi { runner }.probe().unwrap();
    assert_eq!(g[0].model, "Navi 31 [Radeon RX 7900 XT/7900 XTX]");
    assert_eq!(g[0].vram_total_mib, Some(24560));
    assert_eq!(g[0].driver.as_deref(), Some("6.2.0-39-generic"));
    assert_eq!(g[0].gfx_target, None);
    assert!(parse_rocm_smi_json("ERROR: no GPU").is_err());
    assert!(parse_rocm_smi_json("{}").unwrap().is_empty());
}

/// A backend with a fixed answer, counting its calls.
struct Fixed {
    source: GpuSource,
    answer: Result<Vec<GpuDevice>, String>,
    calls: Mutex<u32>,
}

impl Fixed {
    fn boxed(source: GpuSource, answer: Result<Vec<GpuDevice>, String>) -> Box<Self> {
        Box::new(Fixed {
            source,
            answer,
            calls: Mutex::new(0),
        })
    }
}

impl GpuBackend for Fixed {
    fn source(&self) -> GpuSource {
        self.source
    }
    fn probe(&self) -> Result<Vec<GpuDevice>, GpuError> {
        *self.calls.lock().unwrap() += 1;
        self.answer.clone().map_err(GpuError::Nvml)
    }
}

fn h100() -> Vec<GpuDevice> {
    parse_nvidia_smi_csv(&fixture("nvidia-smi-h100.csv")).unwrap()
}

#[test]
fn nvml_failure_falls_back_to_nvidia_smi() {
    let prober = GpuProber {
        nvidia: vec![
            Fixed::boxed(
                GpuSource::Nvml,
                Err("libnvidia-ml.so.1: cannot open shared object file".into()),
            ),
            Box::new(NvidiaSmi {
                runner: ScriptedRunner::new()
                    .answer(&query_line(), 0, &fixture("nvidia-smi-h100.csv"))
                    .answer("nvidia-smi", 0, &fixture("nvidia-smi-h100-banner.txt")),
            }),
        ],
        amd: vec![Box::new(RocmSmi {
            runner: ScriptedRunner::new(),
        })],
    };
    let r = prober.probe();
    assert_eq!(r.gpus.len(), 1);
    assert_eq!(r.gpus[0].source, GpuSource::NvidiaSmi);
    let outcomes: Vec<(GpuSource, &str)> = r
        .attempts
        .iter()
        .map(|a| (a.source, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (
                GpuSource::Nvml,
                "NVML is not available: libnvidia-ml.so.1: cannot open shared object file"
            ),
            (GpuSource::NvidiaSmi, "found 1"),
            (GpuSource::RocmSmi, "rocm-smi is not installed"),
        ]
    );
}

#[test]
fn nvml_answer_skips_nvidia_smi_and_amd_is_added() {
    let mut nvml = h100();
    nvml[0].source = GpuSource::Nvml;
    let smi = Fixed::boxed(GpuSource::NvidiaSmi, Ok(h100()));
    let prober = GpuProber {
        nvidia: vec![Fixed::boxed(GpuSource::Nvml, Ok(nvml)), smi],
        amd: vec![Box::new(RocmSmi {
            runner: ScriptedRunner::new().answer(&rocm_line(), 0, &fixture("rocm-smi-mi300x.json")),
        })],
    };
    let r = prober.probe();
    assert_eq!(r.gpus.len(), 3);
    assert_eq!(r.gpus[0].source, GpuSource::Nvml);
    assert_eq!(r.attempts[1].outcome, "skipped: NVML answered");
    assert_eq!(r.attempts[2].outcome, "found 2");
}

#[test]
fn no_gpu_is_a_normal_answer() {
    let prober = GpuProber {
        nvidia: vec![
            Fixed::boxed(GpuSource::Nvml, Err("no driver".into())),
            Box::new(NvidiaSmi {
                runner: ScriptedRunner::new(),
            }),
        ],
        amd: vec![Box::new(RocmSmi {
            runner: ScriptedRunner::new(),
        })],
    };
    let r = prober.probe();
    assert!(r.gpus.is_empty());
    assert_eq!(r.attempts.len(), 3);
    let f = template_facts(&facts_with(&r.gpus));
    assert_eq!(f["gpu"], "none");
    assert_eq!(f["gpus"], json!([]));
    assert_eq!(f["gpu_model"], json!(null));
}

/// On this machine: NVML is loaded at run time, so no driver is an error
/// value (never a crash), and with a driver it lists the GPUs.
#[test]
fn real_nvml_on_this_machine() {
    let driver = std::path::Path::new("/dev/nvidiactl").exists();
    match NvmlBackend.probe() {
        Ok(g) => assert!(driver, "NVML answered without a driver: {g:?}"),
        Err(e) => {
            assert!(!driver, "NVML failed with a driver present: {e}");
            assert!(matches!(e, GpuError::Nvml(_)), "{e}");
        }
    }
    // the whole system probe answers either way
    let r = GpuProber::system().probe();
    assert_eq!(r.attempts[0].source, GpuSource::Nvml);
    if !driver {
        assert!(r.gpus.iter().all(|g| g.vendor != GpuVendor::Nvidia));
    }
}

#[test]
fn facts_in_upstream_shapes() {
    let f = template_facts(&facts_with(&h100()));
    assert_eq!(f["gpu"], "nvidia");
    assert_eq!(
        f["gpus"],
        json!([{"name": "nvidia corporation", "model": "nvidia h100 80gb hbm3", "driver": "550.54.15"}])
    );
    assert_eq!(f["gpu_model"], "nvidia h100 80gb hbm3");
    assert_eq!(f["gpu_target"], "sm_90");
    assert_eq!(f["vram"], 80);
    assert_eq!(f["platform"], "linux");
    assert!(f["arch"] == "x64" || f["arch"] == "arm64");

    let rtx = parse_nvidia_smi_csv(&fixture("nvidia-smi-rtx5090.csv")).unwrap();
    let f = template_facts(&facts_with(&rtx));
    assert_eq!(f["gpu_model"], "nvidia geforce rtx 5090");
    assert_eq!(f["gpu_target"], "sm_120");

    let amd = parse_rocm_smi_json(&fixture("rocm-smi-mi300x.json")).unwrap();
    let f = template_facts(&facts_with(&amd));
    assert_eq!(f["gpu"], "amd");
    assert_eq!(
        f["gpus"][0],
        json!({"name": "advanced micro devices, inc. [amd/ati]", "model": "amd instinct mi300x", "driver": "6.8.5"})
    );
    assert_eq!(f["gpu_target"], json!(null));
    assert_eq!(f["vram"], 192);
}

/// The engine, given the cloud probe, renders a torch.js-style script for
/// the GPU it found.
#[test]
fn engine_templates_see_the_probed_gpu() {
    let t = tempfile::tempdir().unwrap();
    let home = pinokio_core::PinokioHome::new(t.path().join("home"));
    home.ensure().unwrap();
    let script = t.path().join("torch.json");
    std::fs::write(
        &script,
        r#"{"run": [{"method": "log", "params": {
            "gpu": "{{gpu}}", "model": "{{gpu_model}}", "vendor": "{{gpus[0].name}}",
            "rtx50": "{{/ 50.+/.test(gpu_model)}}", "index": "{{platform === 'linux' && gpu === 'nvidia' ? 'cu128' : 'cpu'}}"
        }}]}"#,
    )
    .unwrap();
    let rtx = parse_nvidia_smi_csv(&fixture("nvidia-smi-rtx5090.csv")).unwrap();
    let probe = CloudProbe {
        gpus: GpuProber {
            nvidia: vec![Fixed::boxed(GpuSource::Nvml, Ok(rtx))],
            amd: Vec::new(),
        },
    };
    assert_eq!(probe.probe().gpu(), "nvidia");
    let engine = pinokio_core::Engine::builder(home)
        .probe(probe)
        .build()
        .unwrap();
    let plan = engine.plan(&script.display().to_string(), None).unwrap();
    let text = serde_json::to_string(&plan.steps).unwrap();
    for want in [
        r#""gpu":"nvidia""#,
        r#""model":"nvidia geforce rtx 5090""#,
        r#""vendor":"nvidia corporation""#,
        r#""rtx50":true"#,
        r#""index":"cu128""#,
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
}
