//! Snapshot tests (insta) of what the engine shows: a rendered plan for
//! another platform and an evaluated menu. Paths, ports and times are
//! redacted so the snapshots are stable.

use std::path::Path;
use std::sync::Arc;

use pinokio_core::events::NullSink;
use pinokio_core::facts::{Facts, GpuInfo};
use pinokio_core::{Engine, PinokioHome};

fn redact(text: &str, home: &Path, repo: &Path) -> String {
    let text = text
        .replace(&home.display().to_string(), "[HOME]")
        .replace(&repo.display().to_string(), "[REPO]");
    let port = regex::Regex::new(r"\b4[2-9]\d{3}\b").unwrap();
    let date = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z").unwrap();
    date.replace_all(&port.replace_all(&text, "[PORT]"), "[DATE]")
        .into_owned()
}

fn engine(home: &Path, facts: Facts) -> Engine {
    Engine::builder(PinokioHome::new(home))
        .facts(facts)
        .sink(Arc::new(NullSink))
        .build()
        .unwrap()
}

#[test]
fn plan_of_the_hello_example_on_an_nvidia_linux_box() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let facts = Facts {
        platform: "linux".into(),
        arch: "x64".into(),
        gpus: vec![GpuInfo {
            name: "nvidia corporation".into(),
            model: "nvidia h100 80gb hbm3".into(),
            driver: Some("550.54.15".into()),
            vram_mib: Some(81559),
            compute_cap: Some("9.0".into()),
        }],
        ram: 64,
        gpu_override: None,
        gpu_model_override: None,
    };
    let e = engine(tmp.path(), facts);
    let plan = e
        .plan(
            &repo
                .join("examples/hello/install.json")
                .display()
                .to_string(),
            None,
        )
        .unwrap();
    let text = serde_json::to_string_pretty(&plan).unwrap();
    insta::assert_snapshot!(redact(&text, e.home().root(), &repo));
}

#[test]
fn menu_of_the_hello_example_before_install() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let e = engine(tmp.path(), Facts::cpu_only());
    let menu = e.menu(&repo.join("examples/hello")).unwrap();
    let text = serde_json::to_string_pretty(&menu).unwrap();
    insta::assert_snapshot!(redact(&text, e.home().root(), &repo));
}
