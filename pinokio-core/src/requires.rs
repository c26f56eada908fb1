//! Script-level prerequisites, checked before a user starts a script
//! (sections 1.8 and 1.9 of the semantics note):
//!
//! - `pre` (or `env` as an array): environment variables that must be set.
//!   A missing one with a `default` is written to the app's ENVIRONMENT;
//!   otherwise the start fails with the list of what to set and where.
//! - `requires`: `{bundle: "ai"}` or an array of tool items. Bundle tools
//!   are checked on PATH (`git`, `python3`, `uv`, `node`, `ffmpeg`, ...);
//!   `uv` is installed from PyPI into `HOME/bin` when missing; other missing
//!   bundle tools are reported as warnings, because launchers declare the
//!   whole desktop bundle while most steps need only part of it. Items of
//!   the array form are required: a missing one that cannot be installed
//!   stops the start with a clear list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::facts::Facts;

/// The outcome of a prerequisite check.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Check {
    /// Problems that stop the start.
    pub missing: Vec<String>,
    /// Things worth telling the user (bundle tools not found...).
    pub warnings: Vec<String>,
    /// What was done to satisfy requirements (installed uv, wrote defaults).
    pub done: Vec<String>,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Tools each bundle of the desktop app provides (Linux), as commands.
pub fn bundle_tools(bundle: &str) -> Option<&'static [&'static str]> {
    Some(match bundle {
        "ai" => &["git", "python3", "uv", "node", "ffmpeg", "7z"],
        "dev" => &["git", "python3", "uv", "node", "ffmpeg", "7z"],
        "python" => &["git", "python3", "uv"],
        "javascript" => &["git", "node"],
        "advanced_dev" => &["git", "python3", "uv", "node", "ffmpeg", "caddy"],
        "prod_dev" | "network" | "connect" => &["git", "python3", "uv", "node", "caddy"],
        "git" => &["git"],
        _ => return None,
    })
}

fn matches_machine(item: &serde_json::Map<String, Value>, facts: &Facts) -> bool {
    let ok = |key: &str, value: &str| match item.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s == value,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(value)),
        Some(_) => true,
    };
    ok("platform", &facts.platform) && ok("arch", &facts.arch) && ok("gpu", &facts.gpu())
}

/// Check `requires` and `pre` of a script object against the machine.
/// `find` locates a command (PATH lookup); `install_uv` tries to provide
/// uv and returns where it is.
pub fn check(
    script: &Value,
    facts: &Facts,
    env: &BTreeMap<String, String>,
    env_file: Option<&Path>,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    install_uv: &dyn Fn() -> Result<PathBuf, String>,
) -> Check {
    let mut c = Check::default();
    check_env(script, env, env_file, &mut c);
    match script.get("requires") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            if let Some(b) = o.get("bundle").and_then(|b| b.as_str()) {
                check_bundle(b, find, install_uv, &mut c);
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                let Some(o) = item.as_object() else { continue };
                if !matches_machine(o, facts) {
                    continue;
                }
                check_item(o, find, install_uv, &mut c);
            }
        }
        Some(other) => c.warnings.push(format!(
            "`requires` must be an object or an array (got {other}); ignored"
        )),
    }
    c
}

fn check_bundle(
    bundle: &str,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    install_uv: &dyn Fn() -> Result<PathBuf, String>,
    c: &mut Check,
) {
    let Some(tools) = bundle_tools(bundle) else {
        c.warnings
            .push(format!("unknown requires bundle {bundle:?}; ignored"));
        return;
    };
    for t in tools {
        if find(t).is_some() {
            continue;
        }
        if *t == "uv" {
            match install_uv() {
                Ok(p) => c
                    .done
                    .push(format!("installed uv from PyPI at {}", p.display())),
                Err(e) => c
                    .warnings
                    .push(format!("uv is missing and could not be installed: {e}")),
            }
            continue;
        }
        c.warnings.push(format!(
            "the {bundle:?} bundle lists `{t}`, which is not installed; steps that use it will fail ({})",
            install_hint(t)
        ));
    }
}

fn check_item(
    o: &serde_json::Map<String, Value>,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    install_uv: &dyn Fn() -> Result<PathBuf, String>,
    c: &mut Check,
) {
    let Some(name) = o.get("name").and_then(|n| n.as_str()) else {
        return;
    };
    let kind = o.get("type").and_then(|t| t.as_str()).unwrap_or("");
    match kind {
        "conda" => {
            if find("conda").or_else(|| find("mamba")).or_else(|| find("micromamba")).is_none() {
                c.missing.push(format!(
                    "conda package `{name}`: no conda, mamba or micromamba on this machine (install Miniforge or micromamba)"
                ));
            } else {
                c.warnings.push(format!(
                    "conda package `{name}` is not checked; PinokioCloud does not manage a conda base environment"
                ));
            }
        }
        "pip" => c.warnings.push(format!(
            "pip package `{name}` is expected in Pinokio's base environment; install it inside the app's venv if a step needs it"
        )),
        "brew" => {}
        _ => {
            let cmd = tool_command(name);
            if find(cmd).is_some() {
                return;
            }
            if cmd == "uv" {
                match install_uv() {
                    Ok(p) => c.done.push(format!("installed uv from PyPI at {}", p.display())),
                    Err(e) => c.missing.push(format!("uv: {e}")),
                }
                return;
            }
            c.missing.push(format!("`{cmd}` ({})", install_hint(cmd)));
        }
    }
}

/// The command a desktop tool module provides.
fn tool_command(module: &str) -> &str {
    match module {
        "python" | "py" => "python3",
        "zip" => "7z",
        "huggingface" => "hf",
        "gxx" => "g++",
        "cuda" => "nvcc",
        "conda" => "conda",
        other => other,
    }
}

fn install_hint(cmd: &str) -> &'static str {
    match cmd {
        "git" => "apt-get install git",
        "python3" => "apt-get install python3 python3-venv",
        "node" | "npm" => "apt-get install nodejs npm",
        "ffmpeg" => "apt-get install ffmpeg",
        "7z" => "apt-get install p7zip-full",
        "caddy" => "apt-get install caddy",
        "hf" => "pip install huggingface_hub",
        "g++" => "apt-get install g++",
        "nvcc" => "install the CUDA toolkit",
        _ => "install it with the system package manager",
    }
}

fn check_env(
    script: &Value,
    env: &BTreeMap<String, String>,
    env_file: Option<&Path>,
    c: &mut Check,
) {
    let list = match (script.get("pre"), script.get("env")) {
        (Some(Value::Array(a)), _) => a,
        (_, Some(Value::Array(a))) => a,
        _ => return,
    };
    let mut defaults: Vec<(String, String)> = Vec::new();
    for item in list {
        let Some(o) = item.as_object() else { continue };
        let Some(key) = o
            .get("env")
            .or_else(|| o.get("key"))
            .and_then(|k| k.as_str())
        else {
            continue;
        };
        if env.get(key).map(|v| !v.trim().is_empty()).unwrap_or(false) {
            continue;
        }
        match o
            .get("default")
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty())
        {
            Some(d) => defaults.push((key.to_string(), d.to_string())),
            None => {
                let title = o.get("title").and_then(|t| t.as_str()).unwrap_or(key);
                let desc = o
                    .get("description")
                    .and_then(|t| t.as_str())
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                let whereto = env_file
                    .map(|f| format!("add `{key}=...` to {}", f.display()))
                    .unwrap_or_else(|| format!("set {key} in the environment"));
                c.missing.push(format!(
                    "environment variable {key} ({title}{desc}); {whereto}"
                ));
            }
        }
    }
    if let (Some(file), false) = (env_file, defaults.is_empty()) {
        match crate::envfile::set_keys(file, &defaults) {
            Ok(()) => {
                for (k, v) in &defaults {
                    c.done
                        .push(format!("set {k}={v} (its default) in {}", file.display()));
                }
            }
            Err(e) => c
                .missing
                .push(format!("cannot write defaults to {}: {e}", file.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finder(have: &'static [&'static str]) -> impl Fn(&str) -> Option<PathBuf> {
        move |n: &str| {
            have.contains(&n)
                .then(|| PathBuf::from(format!("/usr/bin/{n}")))
        }
    }

    #[test]
    fn bundles_warn_and_install_uv() {
        let f = finder(&["git", "python3"]);
        let c = check(
            &json!({"requires": {"bundle": "ai"}}),
            &Facts::cpu_only(),
            &BTreeMap::new(),
            None,
            &f,
            &|| Ok(PathBuf::from("/h/bin/uv")),
        );
        assert!(c.ok());
        assert!(c.done.iter().any(|d| d.contains("installed uv")));
        assert!(
            c.warnings.iter().any(|w| w.contains("`ffmpeg`")),
            "{:?}",
            c.warnings
        );
        assert!(!c.warnings.iter().any(|w| w.contains("`git`")));
    }

    #[test]
    fn array_items_are_required_and_filtered_by_machine() {
        let f = finder(&["git"]);
        let script = json!({"requires": [
            {"name": "ffmpeg"},
            {"name": "git"},
            {"name": "cuda", "gpu": "nvidia"},
            {"name": "brewthing", "platform": "darwin"}
        ]});
        let c = check(
            &script,
            &Facts::cpu_only(),
            &BTreeMap::new(),
            None,
            &f,
            &|| Err("offline".into()),
        );
        assert_eq!(c.missing.len(), 1, "{:?}", c.missing);
        assert!(c.missing[0].contains("ffmpeg") && c.missing[0].contains("apt-get install ffmpeg"));
    }

    #[test]
    fn pre_env_defaults_are_written_and_missing_ones_listed() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("ENVIRONMENT");
        let script = json!({"pre": [
            {"env": "MODEL", "default": "sd15"},
            {"env": "OPENAI_API_KEY", "title": "API key", "description": "for prompts"},
            {"key": "SET_ALREADY"}
        ]});
        let mut env = BTreeMap::new();
        env.insert("SET_ALREADY".to_string(), "1".to_string());
        let c = check(
            &script,
            &Facts::cpu_only(),
            &env,
            Some(&file),
            &finder(&[]),
            &|| Err("x".into()),
        );
        assert_eq!(c.missing.len(), 1);
        assert!(
            c.missing[0].contains("OPENAI_API_KEY (API key: for prompts)"),
            "{}",
            c.missing[0]
        );
        assert!(std::fs::read_to_string(&file)
            .unwrap()
            .contains("MODEL=sd15"));
    }
}
