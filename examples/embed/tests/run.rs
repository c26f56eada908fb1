//! Runs the example binary and checks the events it prints.

use std::process::Command;

#[test]
fn the_example_runs_a_script_and_prints_its_events() {
    let out = Command::new(env!("CARGO_BIN_EXE_pinokio-embed"))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"run_start"), "{types:?}");
    assert_eq!(types.last(), Some(&"run_end"), "{types:?}");
    let output: String = events
        .iter()
        .filter(|e| e["type"] == "output")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(output.contains("hello from linux/"), "{output}");
    assert!(output.contains("embedded shell says 2"), "{output}");
    assert_eq!(events.last().unwrap()["status"], "finished");
}
