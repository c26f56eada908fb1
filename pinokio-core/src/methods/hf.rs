//! `hf.download` (section 4.12 of the semantics note) without the `hf`
//! CLI: the Hub API lists the files, [`crate::hf`] downloads them with the
//! engine's downloader.
//!
//! Params as upstream, which turns every key but `path` and `env` into an
//! `hf download` flag: `_` (the repo id, then optional file names; a list
//! or a space-separated string, which may also carry `--flag value`
//! tokens), `local-dir` (`local_dir`, `--local-dir`), `include`/`exclude`
//! (a glob, a list, or space-separated globs), `repo-type`
//! (model|dataset|space), `revision` (default `main`), `cache-dir`,
//! `token`, `force-download`, `dry-run`, `quiet`, `max-workers`
//! (connections per large file). `path` is the working folder (default:
//! the script folder; `local-dir` is relative to it), `env` adds variables
//! as it does for `shell.run`. Other keys fail the step, as `hf` rejects
//! unknown flags.
//!
//! The environment is the one `hf` would see in the step's shell:
//! `HF_ENDPOINT`, `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`, `HF_TOKEN_PATH`,
//! `HF_HOME/token`), `HF_HOME`/`HF_HUB_CACHE` and `HF_HUB_OFFLINE`.
//!
//! Result: `{ path }`, the folder (local dir or cache snapshot), or the file
//! when one file name was given; what `hf download` prints. (Upstream
//! returns the `shell.run` result of `hf download ...; ls`.)

use std::cell::RefCell;
use std::path::PathBuf;

use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::download::{mib, ProgressReporter};
use super::net::client_for;
use super::{parse_params, MethodCx, MethodError, Registry};
use crate::events::EventKind;
use crate::hf::{self, HfConfig, HfError, HfEvent, HfRequest, Hub, RepoType};
use crate::template::js_string;

pub fn register(r: &mut Registry) {
    r.register("hf.download", hf_download);
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    path: Option<String>,
    env: Option<Map<String, Value>>,
    #[serde(rename = "_")]
    positional: Option<Value>,
    /// Every other key is an `hf download` flag.
    #[serde(flatten)]
    flags: Map<String, Value>,
}

/// `hf download`'s arguments.
#[derive(Debug, Default, PartialEq)]
struct Args {
    positional: Vec<String>,
    local_dir: Option<String>,
    include: Vec<String>,
    exclude: Vec<String>,
    repo_type: Option<String>,
    revision: Option<String>,
    cache_dir: Option<String>,
    token: Option<String>,
    max_workers: Option<usize>,
    force_download: bool,
    dry_run: bool,
    quiet: bool,
    /// Deprecated flags that were accepted and ignored.
    ignored: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Arity {
    Switch,
    One,
    Many,
}

const FLAGS: &[(&str, Arity)] = &[
    ("local-dir", Arity::One),
    ("include", Arity::Many),
    ("exclude", Arity::Many),
    ("repo-type", Arity::One),
    ("revision", Arity::One),
    ("cache-dir", Arity::One),
    ("token", Arity::One),
    ("max-workers", Arity::One),
    ("force-download", Arity::Switch),
    ("dry-run", Arity::Switch),
    ("quiet", Arity::Switch),
    // Older `huggingface-cli download` flags: accepted, no effect.
    ("resume-download", Arity::Switch),
    ("local-dir-use-symlinks", Arity::One),
];

fn arity(name: &str) -> Option<Arity> {
    FLAGS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// A flag name as written (`--local-dir`, `local_dir`) in its CLI form.
fn flag_name(key: &str) -> String {
    key.trim_start_matches('-').replace('_', "-")
}

fn unknown(name: &str) -> String {
    let known: Vec<String> = FLAGS[..FLAGS.len() - 2]
        .iter()
        .map(|(n, _)| format!("--{n}"))
        .collect();
    format!(
        "unrecognized option `{name}` for hf download (known: path, env, _, {})",
        known.join(", ")
    )
}

impl Args {
    fn set(&mut self, name: &str, values: Vec<String>) -> Result<(), String> {
        let one = |v: Vec<String>| -> Result<String, String> {
            v.into_iter()
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))
        };
        match name {
            "local-dir" => self.local_dir = Some(one(values)?),
            "include" => self.include.extend(values),
            "exclude" => self.exclude.extend(values),
            "repo-type" => self.repo_type = Some(one(values)?),
            "revision" => self.revision = Some(one(values)?),
            "cache-dir" => self.cache_dir = Some(one(values)?),
            "token" => self.token = Some(one(values)?),
            "max-workers" => {
                let v = one(values)?;
                self.max_workers = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| format!("--max-workers: `{v}` is not a number"))?,
                )
            }
            "force-download" => self.force_download = true,
            "dry-run" => self.dry_run = true,
            "quiet" => self.quiet = true,
            "resume-download" | "local-dir-use-symlinks" => self.ignored.push(format!("--{name}")),
            other => return Err(unknown(other)),
        }
        Ok(())
    }

    /// Command-line tokens (`_`): positionals and `--flag [value...]`.
    fn parse_tokens(&mut self, tokens: Vec<String>) -> Result<(), String> {
        let mut it = tokens.into_iter().peekable();
        let mut only_positional = false;
        while let Some(t) = it.next() {
            if only_positional || !t.starts_with("--") {
                self.positional.push(t);
                continue;
            }
            if t == "--" {
                only_positional = true;
                continue;
            }
            let (name, inline) = match t[2..].split_once('=') {
                Some((n, v)) => (flag_name(n), Some(v.to_string())),
                None => (flag_name(&t[2..]), None),
            };
            let a = arity(&name).ok_or_else(|| unknown(&format!("--{name}")))?;
            let values = match (a, inline) {
                (_, Some(v)) => vec![v],
                (Arity::Switch, None) => vec![],
                (Arity::One, None) => it.next().into_iter().collect(),
                (Arity::Many, None) => {
                    let mut v = Vec::new();
                    while let Some(n) = it.next_if(|n| !n.starts_with("--")) {
                        v.push(n);
                    }
                    v
                }
            };
            self.set(&name, values)?;
        }
        Ok(())
    }

    /// A params key and its value.
    fn apply(&mut self, key: &str, value: &Value) -> Result<(), String> {
        let name = flag_name(key);
        let a = arity(&name).ok_or_else(|| unknown(key))?;
        let items: Vec<String> = match value {
            Value::Null | Value::Bool(false) => return Ok(()),
            Value::Bool(true) if a == Arity::Switch => vec![],
            Value::Array(items) => items.iter().map(js_string).collect(),
            v => vec![js_string(v)],
        };
        if a == Arity::Many {
            // Unquoted on upstream's command line: spaces separate globs.
            let globs = items
                .iter()
                .flat_map(|s| s.split_whitespace().map(str::to_string))
                .collect();
            return self.set(&name, globs);
        }
        if a == Arity::Switch && !items.is_empty() {
            return self.set(&name, vec![]);
        }
        self.set(&name, items)
    }

    fn from_params(p: &Params) -> Result<Args, String> {
        let mut a = Args::default();
        let tokens: Vec<String> = match &p.positional {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .flat_map(|v| {
                    js_string(v)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect(),
            Some(v) => js_string(v)
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        };
        a.parse_tokens(tokens)?;
        for (k, v) in &p.flags {
            a.apply(k, v)?;
        }
        Ok(a)
    }
}

fn hf_download(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Params = parse_params(cx.method, params)?;
    let invalid = |m: String| MethodError::InvalidParams {
        method: cx.method.to_string(),
        message: m,
    };
    let args = Args::from_params(&p).map_err(invalid)?;
    let mut positional = args.positional.iter();
    let repo_id = positional
        .next()
        .cloned()
        .ok_or_else(|| invalid("a repository id is required (`_: [\"org/name\"]`)".into()))?;
    let repo_type = match &args.repo_type {
        None => RepoType::Model,
        Some(t) => RepoType::parse(t).ok_or_else(|| {
            invalid(format!(
                "--repo-type `{t}`: expected model, dataset or space"
            ))
        })?,
    };
    for flag in &args.ignored {
        cx.emit(EventKind::Warning {
            index: Some(cx.index),
            message: format!("hf.download: {flag} is obsolete and has no effect"),
        });
    }
    let filenames: Vec<String> = positional.cloned().collect();
    if !filenames.is_empty() && (!args.include.is_empty() || !args.exclude.is_empty()) {
        cx.emit(EventKind::Warning {
            index: Some(cx.index),
            message: "hf.download: include/exclude are ignored when file names are given".into(),
        });
    }
    let cwd = match &p.path {
        Some(path) => cx.resolve(path)?,
        None => cx.cwd().to_path_buf(),
    };
    let at = |s: &str| crate::home::normalize(&cwd.join(s));

    let env = super::shell::shell_env(cx, p.env.as_ref(), &[]);
    let mut config = HfConfig::from_env(&env, default_hf_home(cx, &env));
    if let Some(t) = args.token.as_ref().filter(|t| !t.trim().is_empty()) {
        config.token = Some(t.trim().to_string());
    }
    if let Some(c) = &args.cache_dir {
        config.hub_cache = at(c);
    }
    let req = HfRequest {
        repo_id: repo_id.clone(),
        repo_type,
        revision: args.revision.clone().unwrap_or_else(|| "main".into()),
        filenames,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        local_dir: args.local_dir.as_deref().map(at),
        force: args.force_download,
        dry_run: args.dry_run,
        connections: args.max_workers.map(|n| n.clamp(1, 16)),
    };

    let endpoint = Url::parse(&config.endpoint)
        .map_err(|e| MethodError::Failed(format!("hf.download: HF_ENDPOINT: {e}")))?;
    let client = client_for(&endpoint, None)
        .map_err(|e| MethodError::Failed(format!("hf.download {repo_id}: {e}")))?;
    let cancel = cx.run.stop.clone();
    let hub = Hub {
        client: &client,
        config: &config,
        cancel: &cancel,
    };
    let text = !args.quiet;
    let cxr: &MethodCx<'_> = cx;
    if config.offline && text {
        cxr.output(format!(
            "hf.download {repo_id}: HF_HUB_OFFLINE is set, using the files on disk\n"
        ));
    }
    let current: RefCell<Option<(String, ProgressReporter)>> = RefCell::new(None);
    let on = |ev: HfEvent| match ev {
        HfEvent::Plan { commit, files } => {
            if text {
                let bytes: u64 = files.iter().filter_map(|f| f.size).sum();
                let short = commit.get(..12).unwrap_or(commit);
                cxr.output(format!(
                    "hf.download {repo_id} ({}) at {short}: {} file{}, {}{}\n",
                    repo_type.as_str(),
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    mib(bytes),
                    if req.dry_run { " (dry run)" } else { "" },
                ));
            }
        }
        HfEvent::Progress { path, progress } => {
            let mut cur = current.borrow_mut();
            if cur.as_ref().is_none_or(|(p, _)| p != path) {
                *cur = Some((path.to_string(), ProgressReporter::new(cxr, path, text)));
            }
            if let Some((_, r)) = cur.as_ref() {
                r.report(progress);
            }
        }
        HfEvent::FileDone {
            path,
            bytes,
            skipped,
        } => {
            let mut cur = current.borrow_mut();
            if let Some((p, r)) = cur.take() {
                if p == path && !skipped {
                    r.finish(bytes);
                }
            }
            if text {
                if skipped {
                    cxr.output(format!("{path} is already downloaded\n"));
                } else {
                    cxr.output(format!("downloaded {path} ({})\n", mib(bytes)));
                }
            }
        }
    };
    let out = hf::download(&hub, &req, &on).map_err(|e| match e {
        HfError::Cancelled => MethodError::Stopped,
        e => MethodError::Failed(format!("hf.download failed: {e}")),
    })?;
    if text && req.dry_run {
        for f in &out.files {
            cxr.output(format!(
                "  {} ({}){}\n",
                f.path,
                mib(f.bytes),
                if f.skipped { ", present" } else { "" }
            ));
        }
    }
    if text {
        cxr.output(format!("{}\n", out.path.display()));
    }
    Ok(Some(json!({ "path": out.path.display().to_string() })))
}

/// `HF_HOME` when the environment has none: the engine's shared
/// `HOME/cache/HF_HOME` when it exists, else `$XDG_CACHE_HOME/huggingface`,
/// else `~/.cache/huggingface` (`huggingface_hub`'s default).
fn default_hf_home(cx: &MethodCx<'_>, env: &std::collections::BTreeMap<String, String>) -> PathBuf {
    let shared = cx.engine.home().cache().join("HF_HOME");
    if shared.is_dir() {
        return shared;
    }
    if let Some(x) = env.get("XDG_CACHE_HOME").filter(|x| !x.trim().is_empty()) {
        return PathBuf::from(x.trim()).join("huggingface");
    }
    env.get("HOME")
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| cx.engine.home().root().to_path_buf())
        .join(".cache/huggingface")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Result<Args, String> {
        let p: Params = serde_json::from_value(v).unwrap();
        Args::from_params(&p)
    }

    #[test]
    fn corpus_shapes_parse() {
        let a = args(json!({
            "path": "app/models",
            "_": ["stabilityai/sd-turbo", "model.safetensors"],
            "local-dir": "sd"
        }))
        .unwrap();
        assert_eq!(
            a.positional,
            vec!["stabilityai/sd-turbo", "model.safetensors"]
        );
        assert_eq!(a.local_dir.as_deref(), Some("sd"));
        let a = args(json!({
            "_": "org/name",
            "--local-dir": "x",
            "include": ["*.json", "vae/*"],
            "exclude": "*.bin *.pt",
            "repo-type": "dataset",
            "revision": "v1.0"
        }))
        .unwrap();
        assert_eq!(a.positional, vec!["org/name"]);
        assert_eq!(a.local_dir.as_deref(), Some("x"));
        assert_eq!(a.include, vec!["*.json", "vae/*"]);
        assert_eq!(a.exclude, vec!["*.bin", "*.pt"]);
        assert_eq!(a.repo_type.as_deref(), Some("dataset"));
        assert_eq!(a.revision.as_deref(), Some("v1.0"));
        let a = args(
            json!({ "local_dir": "y", "_": ["org/n"], "force-download": true, "quiet": false }),
        )
        .unwrap();
        assert_eq!(a.local_dir.as_deref(), Some("y"));
        assert!(a.force_download && !a.quiet);
    }

    #[test]
    fn flags_inside_positionals() {
        let a = args(json!({
            "_": ["org/n", "a.json", "--local-dir", "d", "--include", "*.x", "*.y", "--revision=dev", "--dry-run"]
        }))
        .unwrap();
        assert_eq!(a.positional, vec!["org/n", "a.json"]);
        assert_eq!(a.local_dir.as_deref(), Some("d"));
        assert_eq!(a.include, vec!["*.x", "*.y"]);
        assert_eq!(a.revision.as_deref(), Some("dev"));
        assert!(a.dry_run);
        let a = args(json!({ "_": "org/n --max-workers 4" })).unwrap();
        assert_eq!(a.max_workers, Some(4));
    }

    #[test]
    fn unknown_flags_fail_like_hf() {
        let e = args(json!({ "_": ["org/n"], "venv": "env" })).unwrap_err();
        assert!(e.contains("`venv`") && e.contains("--local-dir"), "{e}");
        let e = args(json!({ "_": ["org/n", "--nope"] })).unwrap_err();
        assert!(e.contains("--nope"), "{e}");
        let e = args(json!({ "_": ["org/n", "--local-dir"] })).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let a = args(json!({ "_": ["org/n"], "resume-download": true })).unwrap();
        assert_eq!(a.ignored, vec!["--resume-download"]);
    }
}
