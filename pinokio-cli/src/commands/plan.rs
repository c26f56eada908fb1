//! `pinokio plan`: render every step of a script for a chosen machine.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome};
use serde_json::Value;

use super::{absolute, naming};
use crate::cli::PlanArgs;
use crate::render::compact;

pub fn plan(home: PinokioHome, options: EngineOptions, a: PlanArgs) -> Result<ExitCode> {
    let path = absolute(&a.script)?;
    let mut facts = Facts::cpu_only();
    if let Some(p) = &a.platform {
        facts.platform = p.clone();
    }
    if let Some(arch) = &a.arch {
        facts.arch = arch.clone();
    }
    facts.gpu_override = a.gpu.clone();
    facts.gpu_model_override = a.gpu_model.clone();
    let engine = Engine::builder(home)
        .facts(facts)
        .options(options)
        .build()
        .context("cannot start the engine")?;
    let plan = engine
        .plan(&path.display().to_string(), a.args.to_object())
        .map_err(|e| naming(e, &path))?;

    let mut out = std::io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&plan).context("cannot serialise the plan")?;
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let f = engine.facts();
    let _ = writeln!(out, "plan: {}", plan.script.display());
    let _ = writeln!(
        out,
        "for: platform {}, arch {}, gpu {}{}",
        f.platform,
        f.arch,
        f.gpu(),
        f.gpu_model().map(|m| format!(" ({m})")).unwrap_or_default()
    );
    for step in &plan.steps {
        for line in step_lines(step) {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The readable lines of one plan entry.
fn step_lines(step: &Value) -> Vec<String> {
    let index = step.get("index").map(compact).unwrap_or_else(|| "?".into());
    if step.get("null").and_then(Value::as_bool) == Some(true) {
        return vec![format!("[{index}] (null step, skipped)")];
    }
    let method = match step.get("method") {
        Some(Value::String(m)) => m.clone(),
        Some(Value::Null) | None => "(no method)".into(),
        Some(other) => compact(other),
    };
    let runs = match step.get("runs") {
        Some(Value::Bool(true)) => "runs".to_string(),
        Some(Value::Bool(false)) => "skipped".to_string(),
        Some(Value::String(e)) => format!("when fails: {e}"),
        Some(other) => compact(other),
        None => "runs".into(),
    };
    let mut lines = vec![format!("[{index}] {method}  {runs}")];
    if let Some(id) = step.get("id").filter(|v| !v.is_null()) {
        lines.push(format!("    id: {}", compact(id)));
    }
    if let Some(w) = step.get("when").filter(|v| !v.is_null()) {
        lines.push(format!("    when: {}", compact(w)));
    }
    if let Some(p) = step.get("params").filter(|v| !v.is_null()) {
        lines.push(format!("    params: {}", compact(p)));
    }
    if let Some(n) = step.get("next") {
        lines.push(format!("    next: {}", compact(n)));
    }
    if let Some(Value::Array(ws)) = step.get("warnings") {
        for w in ws {
            let w = w.as_str().map(String::from).unwrap_or_else(|| compact(w));
            lines.push(format!("    warning: {w}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readable_entry() {
        let lines = step_lines(&json!({
            "index": 0, "id": null, "method": "log", "when": true, "runs": true,
            "params": {"raw": "hi"}, "next": null
        }));
        assert_eq!(
            lines,
            vec![
                "[0] log  runs",
                "    when: true",
                "    params: {\"raw\":\"hi\"}",
                "    next: null"
            ]
        );
        assert_eq!(
            step_lines(&json!({"index": 3, "null": true})),
            vec!["[3] (null step, skipped)"]
        );
    }
}
