//! `shell.run`, `shell.start`, `shell.enter`, `shell.write`, `shell.stop`
//! (section 4.1 of the semantics note) on the PTY process manager.
//!
//! Each command runs as `bash --noprofile --norc -c '<activation> && <message>'`
//! in its own pseudo-terminal and process group. Output is matched live
//! against the step's `on` handlers (JS-syntax regexes through `regress`)
//! and Pinokio's default error patterns; the exact failure policy is in
//! ARCHITECTURE.md ("shell.run failure policy").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{MethodCx, MethodError, Registry};
use crate::events::EventKind;
use crate::process::{ShellEvent, SpawnSpec};
use crate::template::{js_string, truthy, Renderer};

pub fn register(r: &mut Registry) {
    r.register("shell.run", run);
    r.register("shell.start", start);
    r.register("shell.enter", |cx: &mut MethodCx<'_>, p: Value| {
        enter(cx, p, true)
    });
    r.register("shell.write", |cx: &mut MethodCx<'_>, p: Value| {
        enter(cx, p, false)
    });
    r.register("shell.stop", stop);
}

/// The prompt text pinokiod's shells show (`PS1`).
pub const PROMPT: &str = "<<PINOKIO_SHELL>> ";
/// Text kept for matching `on` handlers live (pinokiod keeps 300 characters).
const WINDOW: usize = 4096;
/// Most terminal text kept for the result's `stdout` and the final error scan.
const TRANSCRIPT_MAX: usize = 256 * 1024;

static SHELL_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh shell id (pinokiod uses random UUIDs).
pub fn new_shell_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SHELL_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (nanos as u64)
        ^ ((std::process::id() as u64) << 32)
        ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (mixed >> 32) as u32,
        (mixed >> 16) as u16,
        n & 0xfff,
        (nanos as u64 >> 8) & 0xfff,
        (nanos as u64) & 0xffff_ffff_ffff
    )
}

// ------------------------------------------------------------------ params

fn invalid(cx: &MethodCx<'_>, message: impl Into<String>) -> MethodError {
    MethodError::InvalidParams {
        method: cx.method.to_string(),
        message: message.into(),
    }
}

fn str_of(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Quote a word for bash (single quotes).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An argv-object message (`{_: [...], flag: value}`) as a quoted command
/// line. Multi-line values go through `PINOKIO_ARG_<n>` variables.
fn argv_message(o: &Map<String, Value>, extra_env: &mut BTreeMap<String, String>) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = |s: String, words: &mut Vec<String>| {
        if s.contains('\n') {
            let name = format!("PINOKIO_ARG_{}", extra_env.len());
            extra_env.insert(name.clone(), s);
            words.push(format!("\"${name}\""));
        } else {
            words.push(quote(&s));
        }
    };
    let unresolved = |v: &Value| matches!(v, Value::String(s) if crate::template::classify(s) != crate::template::Class::Interpolated && s.starts_with("{{"));
    if let Some(Value::Array(pos)) = o.get("_") {
        for p in pos {
            if p.is_null() || unresolved(p) {
                continue;
            }
            word(js_string(p), &mut words);
        }
    }
    fn flags(prefix: &str, o: &Map<String, Value>, out: &mut Vec<(String, Option<String>)>) {
        for (k, v) in o {
            if k == "_" && prefix.is_empty() {
                continue;
            }
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Null => {}
                Value::Bool(true) => out.push((key, None)),
                Value::Bool(false) => out.push((format!("no-{key}"), None)),
                Value::Array(a) => {
                    for x in a {
                        out.push((key.clone(), Some(js_string(x))));
                    }
                }
                Value::Object(inner) => flags(&key, inner, out),
                other => out.push((key, Some(js_string(other)))),
            }
        }
    }
    let mut fl = Vec::new();
    flags("", o, &mut fl);
    for (k, v) in fl {
        if let Some(Value::String(s)) = o.get(&k) {
            if unresolved(&Value::String(s.clone())) {
                continue;
            }
        }
        let flag = if k.starts_with('-') {
            k
        } else if k.chars().count() == 1 {
            format!("-{k}")
        } else {
            format!("--{k}")
        };
        word(flag, &mut words);
        if let Some(v) = v {
            word(v, &mut words);
        }
    }
    words.join(" ")
}

/// The message entries to run (empty ones dropped), each a command line.
fn messages(
    cx: &MethodCx<'_>,
    p: &Map<String, Value>,
    extra_env: &mut BTreeMap<String, String>,
) -> Result<Vec<String>, MethodError> {
    let entry = |v: &Value, extra_env: &mut BTreeMap<String, String>| -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => Some(argv_message(o, extra_env)).filter(|s| !s.trim().is_empty()),
            Value::Bool(false) => None,
            other => Some(js_string(other)),
        }
    };
    let list: Vec<String> = match p.get("message") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| entry(v, extra_env)).collect(),
        Some(v) => entry(v, extra_env).into_iter().collect(),
    };
    let chain = p.get("chain").filter(|c| truthy(c));
    if let Some(c) = chain {
        if list.is_empty() {
            return Ok(list);
        }
        let sep = match c.as_str() {
            Some("|") => " || ",
            Some("*") => " ; ",
            _ => " && ",
        };
        return Ok(vec![list.join(sep)]);
    }
    let _ = cx;
    Ok(list)
}

// ------------------------------------------------------------- on handlers

/// One compiled `on` handler.
pub struct Handler {
    pub index: Option<usize>,
    pub source: String,
    pub re: regress::Regex,
    pub done: bool,
    pub kill: bool,
    /// `Some(true)`: matches are errors; `Some(false)`: whitelist.
    pub brk: Option<bool>,
    pub ret: Option<Value>,
    pub once: bool,
    fired: bool,
    last_end: usize,
}

/// Parse `"/pattern/flags"` (the last `/` separates the flags).
pub fn parse_js_regex(s: &str) -> Result<(String, String), String> {
    let s = s.trim();
    if !s.starts_with('/') || s.len() < 2 {
        return Err(format!("{s:?} is not a /pattern/flags regular expression"));
    }
    let last = s.rfind('/').unwrap_or(0);
    if last == 0 {
        return Err(format!("{s:?} has no closing /"));
    }
    let pattern = &s[1..last];
    let flags = &s[last + 1..];
    if let Some(bad) = flags.chars().find(|c| !"dgimsuyv".contains(*c)) {
        return Err(format!("{s:?} has an unknown flag {bad:?}"));
    }
    // g is implied; d and y do not change what we match here
    let flags: String = flags.chars().filter(|c| "imsuv".contains(*c)).collect();
    Ok((pattern.to_string(), flags))
}

fn compile(source: &str, index: Option<usize>) -> Result<regress::Regex, String> {
    let (pattern, flags) = parse_js_regex(source)?;
    regress::Regex::with_flags(&pattern, flags.as_str()).map_err(|e| {
        let which = index
            .map(|i| format!("on[{i}]"))
            .unwrap_or_else(|| "a default handler".into());
        format!("{which}: invalid regular expression {source:?}: {e}")
    })
}

/// The step's handlers followed by Pinokio's three defaults.
pub fn handlers(on: Option<&Value>) -> Result<Vec<Handler>, String> {
    let mut out = Vec::new();
    let list = match on {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(_)) => vec![on.cloned().unwrap_or(Value::Null)],
        Some(other) => return Err(format!("`on` must be an array of handlers (got {other})")),
    };
    for (i, h) in list.iter().enumerate() {
        let Some(o) = h.as_object() else {
            return Err(format!("on[{i}] must be an object with an `event` regex"));
        };
        let Some(ev) = o.get("event") else {
            return Err(format!("on[{i}] has no `event` (a /regex/ string)"));
        };
        let Some(source) = ev.as_str() else {
            return Err(format!(
                "on[{i}].event must be a /regex/ string (got {ev}); `event: null` (\"at the prompt\") is not supported"
            ));
        };
        let re = compile(source, Some(i)).map_err(|e| {
            if e.starts_with("on[") {
                e
            } else {
                format!("on[{i}]: {e}")
            }
        })?;
        out.push(Handler {
            index: Some(i),
            source: source.to_string(),
            re,
            done: o.get("done").map(truthy).unwrap_or(false),
            kill: o.get("kill").map(truthy).unwrap_or(false),
            brk: o.get("break").and_then(|b| b.as_bool()),
            ret: o.get("return").cloned(),
            once: o.get("once").map(truthy).unwrap_or(false),
            fired: false,
            last_end: 0,
        });
    }
    for (src, brk) in [
        ("/error:/i", true),
        ("/errno /i", true),
        ("/error:.*triton/i", false),
    ] {
        out.push(Handler {
            index: None,
            source: src.into(),
            re: compile(src, None)?,
            done: false,
            kill: false,
            brk: Some(brk),
            ret: None,
            once: false,
            fired: false,
            last_end: 0,
        });
    }
    Ok(out)
}

/// A JS-style match array: `[whole, group1, ...]` (null for unmatched groups).
fn match_array(text: &str, m: &regress::Match) -> Value {
    let mut arr = vec![json!(text[m.range()].to_string())];
    for g in m.captures.iter() {
        arr.push(match g {
            Some(r) => json!(text[r.clone()].to_string()),
            None => Value::Null,
        });
    }
    Value::Array(arr)
}

/// What a shell step ended with.
enum Ending {
    Exited(Option<i32>),
    Done,
    Killed,
    ErrorBreak,
    Return(Value),
}

/// Live matching state of one shell.
struct Watch {
    handlers: Vec<Handler>,
    transcript: String,
    /// absolute offset of `window[0]`
    window_start: usize,
    window: String,
    event: Option<Value>,
    live_errors: bool,
    return_mode: bool,
}

impl Watch {
    fn new(handlers: Vec<Handler>, echo: &str, live_errors: bool, return_mode: bool) -> Self {
        Watch {
            handlers,
            transcript: echo.to_string(),
            window_start: 0,
            window: echo.to_string(),
            event: None,
            live_errors,
            return_mode,
        }
    }

    fn push(&mut self, chunk: &str) {
        self.transcript.push_str(chunk);
        if self.transcript.len() > TRANSCRIPT_MAX {
            let cut = floor_boundary(&self.transcript, self.transcript.len() - TRANSCRIPT_MAX / 2);
            self.transcript.drain(..cut);
        }
        self.window.push_str(chunk);
        if self.window.len() > WINDOW {
            let cut = floor_boundary(&self.window, self.window.len() - WINDOW);
            self.window.drain(..cut);
            self.window_start += cut;
        }
    }

    /// Check handlers against the window; return an ending when one fires.
    fn check(&mut self) -> Option<Ending> {
        // whitelisted spans (break: false)
        let mut white: Vec<std::ops::Range<usize>> = Vec::new();
        for h in self.handlers.iter().filter(|h| h.brk == Some(false)) {
            white.extend(h.re.find_iter(&self.window).map(|m| m.range()));
        }
        for hi in 0..self.handlers.len() {
            let h = &self.handlers[hi];
            if h.brk == Some(false) || (h.once && h.fired) {
                continue;
            }
            if h.brk == Some(true) && !self.live_errors {
                continue;
            }
            let start = self.window_start;
            let mut new_matches: Vec<regress::Match> = h
                .re
                .find_iter(&self.window)
                .filter(|m| m.range().end + start > h.last_end && m.range().end > m.range().start)
                .collect();
            if h.brk == Some(true) {
                new_matches.retain(|m| {
                    !white
                        .iter()
                        .any(|w| w.start < m.range().end && m.range().start < w.end)
                });
            }
            let Some(first) = new_matches.first().cloned() else {
                continue;
            };
            let last_end = new_matches
                .last()
                .map(|m| m.range().end + start)
                .unwrap_or(0);
            let arr = match_array(&self.window, &first);
            let all: Vec<Value> = new_matches
                .iter()
                .map(|m| match_array(&self.window, m))
                .collect();
            let h = &mut self.handlers[hi];
            h.last_end = last_end;
            h.fired = true;
            if h.brk == Some(true) {
                return Some(Ending::ErrorBreak);
            }
            self.event = Some(arr);
            if self.return_mode {
                if let Some(r) = &h.ret {
                    let ev = json!({ "matches": all });
                    return Some(Ending::Return(json!({"__return": r, "event": ev})));
                }
                continue;
            }
            if h.kill {
                return Some(Ending::Killed);
            }
            if h.done {
                return Some(Ending::Done);
            }
        }
        None
    }

    /// Pinokio's final scan: the whole text without line breaks, whitelisted
    /// text erased, every error pattern collected (unique, shortest first).
    fn final_errors(&self) -> Vec<String> {
        let flat: String = self
            .transcript
            .chars()
            .filter(|c| *c != '\n' && *c != '\r')
            .collect();
        let mut erased = flat.clone();
        for h in self.handlers.iter().filter(|h| h.brk == Some(false)) {
            let ranges: Vec<_> = h.re.find_iter(&flat).map(|m| m.range()).collect();
            for r in ranges.into_iter().rev() {
                if erased.len() == flat.len() || r.end <= erased.len() {
                    erased.replace_range(r, "");
                }
            }
        }
        let mut found: Vec<String> = Vec::new();
        for h in self.handlers.iter().filter(|h| h.brk == Some(true)) {
            for m in h.re.find_iter(&erased) {
                let s = erased[m.range()].to_string();
                if !s.is_empty() && !found.contains(&s) {
                    found.push(s);
                }
            }
        }
        found.sort_by_key(|s| s.len());
        found
    }

    fn stdout(&self) -> String {
        let lines: Vec<&str> = self.transcript.lines().collect();
        let start = lines.len().saturating_sub(1000);
        lines[start..].join("\n")
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

// -------------------------------------------------------------- environment

fn is_identifier(k: &str) -> bool {
    let mut ch = k.chars();
    matches!(ch.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && ch.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The environment of a shell (section 4.1.6, with our deviations: `*SSL*`,
/// `*SSH*` and `CUDA*` variables are kept, and no conda base is forced).
pub fn shell_env(
    cx: &MethodCx<'_>,
    params_env: Option<&Map<String, Value>>,
    minus: &[String],
) -> BTreeMap<String, String> {
    let home = cx.engine.home().root().to_path_buf();
    let mut env = cx.engine.env_for(cx.run.app_root.as_deref());
    // HF_HOME, TORCH_HOME, ... into HOME/cache when no layer sets them
    crate::drive::fill_shared_caches(&home, &mut env);
    for (k, v) in [
        ("CONDA_SHORTCUTS", "0"),
        ("CMAKE_OBJECT_PATH_MAX", "1024"),
        ("PYTORCH_ENABLE_MPS_FALLBACK", "1"),
        ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1"),
        ("PYTHONNOUSERSITE", "1"),
        ("CONDA_AUTO_ACTIVATE_BASE", "false"),
        ("TERM", "xterm-256color"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.remove("PYTHONPATH");
    env.remove("CMAKE_MAKE_PROGRAM");
    env.remove("CMAKE_GENERATOR");
    env.insert("PS1".into(), PROMPT.into());
    // ENVIRONMENT folders are created (upstream: init_folders)
    for (k, v) in env.iter() {
        if matches!(k.as_str(), "PIP_CONFIG_FILE" | "CONDARC" | "HF_TOKEN_PATH") {
            continue;
        }
        if v.starts_with(&*home.to_string_lossy())
            && (k.ends_with("_HOME")
                || k.ends_with("_DIR")
                || k.starts_with("TMP")
                || k == "TEMP"
                || k.starts_with("XDG_"))
        {
            let _ = std::fs::create_dir_all(v);
        }
    }
    let bin = cx.engine.home().bin();
    let base_path = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.insert("PATH".into(), format!("{base_path}:{}", bin.display()));
    let hist = home.join("history");
    let _ = std::fs::create_dir_all(&hist);
    env.insert(
        "HISTFILE".into(),
        hist.join("bash_history").display().to_string(),
    );
    env.entry("HF_HUB_DISABLE_UPDATE_CHECK".into())
        .or_insert_with(|| "1".into());
    env.entry("UV_PYTHON_PREFERENCE".into())
        .or_insert_with(|| "system".into());
    if let Ok(gxx) = which::which("g++") {
        env.entry("NVCC_PREPEND_FLAGS".into())
            .or_insert_with(|| format!("-ccbin {}", gxx.display()));
    }
    if let Some(pe) = params_env {
        for (k, v) in pe {
            match v {
                Value::Array(items) => {
                    let joined: Vec<String> = items.iter().map(js_string).collect();
                    let key = if k.eq_ignore_ascii_case("path") {
                        "PATH".to_string()
                    } else {
                        k.clone()
                    };
                    let prepend = joined.join(":");
                    let value = match env.get(&key) {
                        Some(old) if !old.is_empty() => format!("{prepend}:{old}"),
                        _ => prepend,
                    };
                    env.insert(key, value);
                }
                Value::Null => {
                    env.insert(k.clone(), "null".into());
                }
                other => {
                    env.insert(k.clone(), js_string(other));
                }
            }
        }
    }
    env.retain(|k, _| is_identifier(k));
    for v in env.values_mut() {
        if v.contains('\n') {
            *v = v.replace(['\n', '\r'], " ");
        }
    }
    for m in minus {
        env.remove(m);
    }
    env
}

/// A command on the `PATH` of `env`.
pub fn find_in_path(env: &BTreeMap<String, String>, name: &str) -> Option<PathBuf> {
    let path = env.get("PATH")?;
    which::which_in(name, Some(path), "/").ok()
}

/// Make sure `uv` is available (PATH or `HOME/bin`), installing it from
/// PyPI into `HOME/bin` when it is missing.
pub fn ensure_uv(
    cx: &MethodCx<'_>,
    env: &BTreeMap<String, String>,
) -> Result<PathBuf, MethodError> {
    let bin = cx.engine.home().bin();
    if find_in_path(env, "uv").is_none() && !bin.join("uv").exists() {
        cx.output(format!(
            "uv not found: installing it from PyPI into {}\n",
            bin.display()
        ));
    }
    provide_uv(&bin, env).map_err(MethodError::Failed)
}

/// `uv` from PATH, else `<bin>/uv`, else installed there from PyPI with
/// the first `python3` on PATH (`pip install --target`, then a symlink).
pub fn provide_uv(bin: &Path, env: &BTreeMap<String, String>) -> Result<PathBuf, String> {
    if let Some(p) = find_in_path(env, "uv") {
        return Ok(p);
    }
    let target = bin.join("uv-pypi");
    let link = bin.join("uv");
    if link.exists() {
        return Ok(link);
    }
    let python = find_in_path(env, "python3")
        .or_else(|| find_in_path(env, "python"))
        .ok_or_else(|| "uv is missing and no python3 was found to install it from PyPI; install uv (pip install uv)".to_string())?;
    std::fs::create_dir_all(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let out = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&target)
        .arg("uv")
        .env_remove("PIP_REQUIRE_VIRTUALENV")
        .output()
        .map_err(|e| format!("cannot run {} -m pip: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "installing uv from PyPI failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let installed = target.join("bin").join("uv");
    if !installed.exists() {
        return Err(format!(
            "pip installed uv but {} is missing",
            installed.display()
        ));
    }
    std::os::unix::fs::symlink(&installed, &link)
        .map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(link)
}

// ------------------------------------------------------------- activation

fn conda_tool(env: &BTreeMap<String, String>, home: &Path) -> Option<(String, PathBuf)> {
    for name in ["conda", "mamba", "micromamba"] {
        if let Some(p) = find_in_path(env, name) {
            return Some((name.to_string(), p));
        }
    }
    for p in ["bin/miniforge/bin/conda", "bin/miniconda/bin/conda"] {
        let p = home.join(p);
        if p.exists() {
            return Some(("conda".into(), p));
        }
    }
    None
}

fn python_spec(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => format!("python={n}"),
        Some(Value::String(s))
            if s.chars()
                .next()
                .map(|c| c.is_ascii_digit())
                .unwrap_or(false) =>
        {
            format!("python={s}")
        }
        Some(Value::String(s)) => s.clone(),
        _ => "python=3.10".into(),
    }
}

/// The conda part of the activation (empty when no conda env is asked for).
fn conda_activation(
    cx: &MethodCx<'_>,
    p: &Map<String, Value>,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, MethodError> {
    let conda = match p.get("conda") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) if o.get("skip").map(truthy).unwrap_or(false) => {
            return Ok(Vec::new())
        }
        Some(Value::Object(o)) if o.get("name").and_then(|n| n.as_str()) == Some("base") => {
            return Ok(Vec::new())
        }
        Some(c) => c.clone(),
    };
    let (target, python, args, activate) = match &conda {
        Value::String(s) => (Some(("path", s.clone())), None, None, None),
        Value::Object(o) => {
            let t = if let Some(p) = o.get("path").and_then(|v| v.as_str()) {
                Some(("path", p.to_string()))
            } else {
                o.get("name")
                    .and_then(|v| v.as_str())
                    .map(|n| ("name", n.to_string()))
            };
            if t.is_none() {
                return Err(invalid(
                    cx,
                    "when specifying conda as an object, conda.name or conda.path must exist",
                ));
            }
            (
                t,
                o.get("python")
                    .cloned()
                    .or_else(|| p.get("conda_python").cloned()),
                o.get("args").cloned(),
                o.get("activate").cloned(),
            )
        }
        other => {
            return Err(invalid(
                cx,
                format!("conda must be a path or an object (got {other})"),
            ))
        }
    };
    let (kind, value) = target.unwrap_or(("name", "base".into()));
    let Some((tool, exe)) = conda_tool(env, cx.engine.home().root()) else {
        return Err(MethodError::Failed(format!(
            "this step asks for the conda environment {value:?} but no conda, mamba or micromamba was found on the machine; install Miniforge (https://conda-forge.org/download/) or micromamba, or drop `conda` from the step"
        )));
    };
    let exe_q = quote(&exe.display().to_string());
    let hook = if tool == "micromamba" {
        format!("eval \"$({exe_q} shell hook -s bash)\"")
    } else {
        format!("eval \"$({exe_q} shell.bash hook)\"")
    };
    if let Some(Value::Array(cmds)) = activate {
        return Ok(cmds.iter().map(js_string).collect());
    }
    let pyspec = python_spec(python.as_ref());
    let extra = args
        .map(|a| format!(" {}", js_string(&a)))
        .unwrap_or_default();
    let mut out = vec![hook];
    match kind {
        "path" => {
            let abs = crate::home::normalize(&cwd.join(&value));
            let q = quote(&abs.display().to_string());
            if !abs.exists() {
                out.push(format!("{tool} create -y -p {q} {pyspec}{extra}"));
            }
            out.push(format!("{tool} activate {q}"));
        }
        _ => {
            let q = quote(&value);
            out.push(format!("({tool} env list | grep -q -E '^{value}[[:space:]]' || {tool} create -y -n {q} {pyspec}{extra})"));
            out.push(format!("{tool} activate {q}"));
        }
    }
    Ok(out)
}

/// The venv part: create when missing, then activate.
fn venv_activation(
    cx: &MethodCx<'_>,
    p: &Map<String, Value>,
    cwd: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, MethodError> {
    let (path, python) = match p.get("venv") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => (s.clone(), str_of(p.get("venv_python"))),
        Some(Value::Object(o)) => match o.get("path").and_then(|v| v.as_str()) {
            Some(path) => (
                path.to_string(),
                str_of(o.get("python")).or_else(|| str_of(p.get("venv_python"))),
            ),
            None => return Err(invalid(cx, "venv as an object needs a `path`")),
        },
        Some(Value::Bool(false)) => return Ok(Vec::new()),
        Some(other) => {
            return Err(invalid(
                cx,
                format!("venv must be a folder path (got {other})"),
            ))
        }
    };
    let abs = crate::home::normalize(&cwd.join(&path));
    let q = quote(&abs.display().to_string());
    let activate = format!(
        "source {}",
        quote(&abs.join("bin").join("activate").display().to_string())
    );
    if abs.join("bin").join("activate").is_file() {
        return Ok(vec![activate]);
    }
    if abs.exists() && !abs.is_dir() {
        return Err(MethodError::Failed(format!(
            "venv path {} exists and is not a folder",
            abs.display()
        )));
    }
    let create = match python {
        Some(v) => {
            let uv = ensure_uv(cx, env)?;
            format!(
                "{} venv --seed {q} --python {}",
                quote(&uv.display().to_string()),
                quote(&v)
            )
        }
        None => match find_in_path(env, "uv").or_else(|| {
            let l = cx.engine.home().bin().join("uv");
            l.exists().then_some(l)
        }) {
            Some(uv) => format!("{} venv --seed {q}", quote(&uv.display().to_string())),
            None => {
                let py = if find_in_path(env, "python3").is_some() {
                    "python3"
                } else if find_in_path(env, "python").is_some() {
                    "python"
                } else {
                    return Err(MethodError::Failed(
                        "this step needs a Python virtual environment but neither uv nor python3 was found; install Python 3 (or uv)".into(),
                    ));
                };
                format!("{py} -m venv {q}")
            }
        },
    };
    // guarded, so array entries sharing one activation create the venv once
    let guard = format!(
        "(test -f {} || {create})",
        quote(&abs.join("bin").join("activate").display().to_string())
    );
    Ok(vec![guard, activate])
}

// ------------------------------------------------------------------ running

/// Everything needed to launch one command.
struct Launch {
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    prefix: Vec<String>,
    shell: String,
}

fn prepare(
    cx: &MethodCx<'_>,
    p: &Map<String, Value>,
    extra_env: &BTreeMap<String, String>,
) -> Result<Launch, MethodError> {
    let cwd = match p.get("path") {
        Some(Value::String(s)) if !s.is_empty() => cx.resolve(s)?,
        Some(Value::Null) | None => cx.run.cwd.clone(),
        Some(Value::String(_)) => cx.run.cwd.clone(),
        Some(other) => return Err(invalid(cx, format!("path must be a folder (got {other})"))),
    };
    if cwd.exists() && !cwd.is_dir() {
        return Err(MethodError::Failed(format!(
            "path {} is a file, not a folder",
            cwd.display()
        )));
    }
    std::fs::create_dir_all(&cwd).map_err(|e| MethodError::io(&cwd, e))?;
    let minus: Vec<String> = p
        .get("-env")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(js_string).collect())
        .unwrap_or_default();
    let params_env = match p.get("env") {
        Some(Value::Object(o)) => Some(o),
        None | Some(Value::Null) => None,
        Some(other) => return Err(invalid(cx, format!("env must be an object (got {other})"))),
    };
    let mut env = shell_env(cx, params_env, &minus);
    for (k, v) in extra_env {
        env.insert(k.clone(), v.clone());
    }
    let mut prefix = conda_activation(cx, p, &cwd, &env)?;
    prefix.extend(venv_activation(cx, p, &cwd, &env)?);
    let shell = match p.get("shell").and_then(|s| s.as_str()) {
        Some(s) if !s.is_empty() => find_in_path(&env, s)
            .ok_or_else(|| MethodError::Failed(format!("shell {s:?} was not found on PATH")))?
            .display()
            .to_string(),
        _ => "bash".into(),
    };
    Ok(Launch {
        env,
        cwd,
        prefix,
        shell,
    })
}

fn command_line(l: &Launch, message: &str) -> String {
    if l.prefix.is_empty() {
        message.to_string()
    } else {
        format!("{} && {message}", l.prefix.join(" && "))
    }
}

/// The app log of a script's shells: `<app>/logs/shell/<script>.log`.
fn app_log(cx: &MethodCx<'_>) -> PathBuf {
    match &cx.run.app_root {
        Some(app) => {
            let rel = cx.run.path.strip_prefix(app).unwrap_or(&cx.run.path);
            app.join("logs")
                .join("shell")
                .join(format!("{}.log", rel.display()))
        }
        None => {
            let flat: String = cx
                .run
                .id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            cx.engine
                .home()
                .logs()
                .join("scripts")
                .join(format!("{flat}.log"))
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run one command line in its own shell and wait as the handlers say.
#[allow(clippy::too_many_arguments)]
fn run_one(
    cx: &mut MethodCx<'_>,
    launch: &Launch,
    message: &str,
    shell_id: &str,
    handlers_v: Option<&Value>,
    live_errors: bool,
) -> Result<Value, MethodError> {
    let handlers = handlers(handlers_v).map_err(|e| invalid(cx, e))?;
    let line = command_line(launch, message);
    let argv = vec![
        launch.shell.clone(),
        "--noprofile".into(),
        "--norc".into(),
        "-c".into(),
        line.clone(),
    ];
    let argv = if launch.shell.ends_with("bash") {
        argv
    } else {
        vec![launch.shell.clone(), "-c".into(), line.clone()]
    };
    let echo = format!("{PROMPT}{message}\n");
    cx.output(echo.clone());
    let spec = SpawnSpec {
        shell_id: shell_id.to_string(),
        group: cx.run.id.clone(),
        step: Some(cx.index),
        depth: cx.run.depth,
        argv,
        cwd: launch.cwd.clone(),
        env: launch.env.clone(),
        cols: 100,
        rows: 30,
        app_log: Some(app_log(cx)),
        command_label: message.to_string(),
    };
    let handle = cx
        .engine
        .processes()
        .spawn(spec)
        .map_err(|e| MethodError::Failed(e.to_string()))?;
    record_shell(cx, shell_id);
    let mut watch = Watch::new(handlers, &echo, live_errors, false);
    let ending = wait(cx, &handle.events, &mut watch, shell_id)?;
    finish_shell(cx, shell_id, watch, ending)
}

/// Record a new shell in the state store (so a restarted engine finds it).
fn record_shell(cx: &MethodCx<'_>, shell_id: &str) {
    if let (Some(st), Some(rec)) = (cx.engine.state(), cx.engine.processes().get(shell_id)) {
        let app = cx.engine.app_id_of(cx.run.app_root.as_deref());
        let _ = st.record_process(&rec, app.as_deref(), cx.run.run_id);
    }
}

fn wait(
    cx: &MethodCx<'_>,
    events: &std::sync::mpsc::Receiver<ShellEvent>,
    watch: &mut Watch,
    shell_id: &str,
) -> Result<Ending, MethodError> {
    loop {
        if cx.stopped() {
            cx.engine
                .processes()
                .kill_shell(shell_id, cx.engine.options().kill_grace);
            return Err(MethodError::Stopped);
        }
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(ShellEvent::Output(text)) => {
                watch.push(&text);
                // drain what is already queued before matching (bursty output)
                while let Ok(ev) = events.try_recv() {
                    match ev {
                        ShellEvent::Output(t) => watch.push(&t),
                        ShellEvent::Exited(code) => {
                            if let Some(e) = watch.check() {
                                return Ok(e);
                            }
                            return Ok(Ending::Exited(code));
                        }
                    }
                }
                if let Some(e) = watch.check() {
                    return Ok(e);
                }
            }
            Ok(ShellEvent::Exited(code)) => return Ok(Ending::Exited(code)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(Ending::Exited(None)),
        }
    }
}

fn finish_shell(
    cx: &mut MethodCx<'_>,
    shell_id: &str,
    watch: Watch,
    ending: Ending,
) -> Result<Value, MethodError> {
    let mut exit_code = None;
    match &ending {
        Ending::Killed => cx
            .engine
            .processes()
            .kill_shell(shell_id, cx.engine.options().kill_grace),
        Ending::Exited(code) => {
            exit_code = *code;
            cx.emit(EventKind::ShellExit {
                index: cx.index,
                shell_id: shell_id.to_string(),
                code: *code,
            });
        }
        _ => {}
    }
    let errors = watch.final_errors();
    let stdout = watch.stdout();
    if !errors.is_empty() {
        let tail: Vec<&str> = stdout
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(MethodError::Failed(format!(
            "the output matched Pinokio's error pattern(s) {} (add an `on` handler with `break: false` to tolerate known-harmless lines); last lines:\n{}",
            serde_json::to_string(&errors).unwrap_or_default(),
            tail.join("\n")
        )));
    }
    if matches!(ending, Ending::ErrorBreak) {
        return Err(MethodError::Failed(format!(
            "the output matched an error pattern; last lines:\n{stdout}"
        )));
    }
    if let Some(code) = exit_code.filter(|c| *c != 0) {
        if cx.engine.options().strict_exit_codes {
            return Err(MethodError::Failed(format!(
                "the command exited with status {code} (strict exit-code mode)"
            )));
        }
    }
    let mut result = json!({ "id": shell_id, "stdout": stdout, "response": stdout });
    if let Some(e) = watch.event {
        result["event"] = e;
    }
    if let Some(code) = exit_code.filter(|c| *c != 0) {
        result["exit_code"] = json!(code);
    }
    if exit_code.is_none() && matches!(ending, Ending::Exited(_)) {
        result["exit_code"] = Value::Null;
    }
    if let Ending::Return(r) = ending {
        return Ok(r);
    }
    Ok(result)
}

fn params_map(cx: &MethodCx<'_>, p: Value) -> Result<Map<String, Value>, MethodError> {
    match p {
        Value::Object(o) => Ok(o),
        Value::Null => Ok(Map::new()),
        other => Err(invalid(
            cx,
            format!("params must be an object (got {other})"),
        )),
    }
}

fn run(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let p = params_map(cx, p)?;
    let mut extra_env = BTreeMap::new();
    let mut list = messages(cx, &p, &mut extra_env)?;
    if p.get("sudo").map(truthy).unwrap_or(false) && !is_root() {
        let env_path = std::env::var("PATH").unwrap_or_default();
        if which::which_in("sudo", Some(env_path), "/").is_err() {
            return Err(MethodError::Failed(
                "this step asks for sudo, but the engine is not root and `sudo` is not installed"
                    .into(),
            ));
        }
        list = list
            .into_iter()
            .map(|m| format!("sudo -n -E bash -c {}", quote(&m)))
            .collect();
    }
    // validate handlers before running anything
    handlers(p.get("on")).map_err(|e| invalid(cx, e))?;
    let needs_uv = list.iter().any(|m| {
        m.split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-')
            .any(|w| w == "uv")
    });
    if needs_uv {
        ensure_uv(cx, &shell_env(cx, None, &[]))?;
    }
    let launch = prepare(cx, &p, &extra_env)?;
    if list.is_empty() {
        cx.output("(shell.run: no command to run)\n");
        return Ok(Some(
            json!({ "id": new_shell_id(), "stdout": "", "response": "" }),
        ));
    }
    let live_errors = !p.get("input").map(truthy).unwrap_or(false);
    let mut last = Value::Null;
    for m in &list {
        let id = match p.get("id").and_then(|v| v.as_str()) {
            Some(i) if list.len() == 1 => i.to_string(),
            _ => new_shell_id(),
        };
        last = run_one(cx, &launch, m, &id, p.get("on"), live_errors)?;
    }
    Ok(Some(last))
}

fn default_id(cx: &MethodCx<'_>, p: &Map<String, Value>) -> String {
    p.get("id")
        .and_then(|v| v.as_str())
        .map(String::from)
        .unwrap_or_else(|| cx.run.cwd.display().to_string())
}

/// `shell.start`: a persistent interactive shell; resolves with its id
/// (pinokiod 5.3.28 never resolves: conformance case 18).
fn start(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let p = params_map(cx, p)?;
    let id = default_id(cx, &p);
    if cx.engine.processes().is_running(&id) {
        return Ok(Some(json!(id)));
    }
    let mut extra_env = BTreeMap::new();
    let list = messages(cx, &p, &mut extra_env)?;
    let launch = prepare(cx, &p, &extra_env)?;
    let spec = SpawnSpec {
        shell_id: id.clone(),
        group: cx.run.id.clone(),
        step: Some(cx.index),
        depth: cx.run.depth,
        argv: vec![
            launch.shell.clone(),
            "--noprofile".into(),
            "--norc".into(),
            "-i".into(),
        ],
        cwd: launch.cwd.clone(),
        env: launch.env.clone(),
        cols: 100,
        rows: 30,
        app_log: Some(app_log(cx)),
        command_label: format!("{} (interactive)", launch.shell),
    };
    cx.engine
        .processes()
        .spawn(spec)
        .map_err(|e| MethodError::Failed(e.to_string()))?;
    record_shell(cx, &id);
    let mut first = launch.prefix.clone();
    first.extend(list);
    if !first.is_empty() {
        let line = format!("{}\n", first.join(" && "));
        cx.engine
            .processes()
            .write(&id, line.as_bytes())
            .map_err(|e| MethodError::Failed(e.to_string()))?;
    }
    Ok(Some(json!(id)))
}

/// `shell.enter` (with a newline) / `shell.write` (without): type into a
/// live shell and wait for an `on` handler with `return`.
fn enter(cx: &mut MethodCx<'_>, p: Value, newline: bool) -> Result<Option<Value>, MethodError> {
    let p = params_map(cx, p)?;
    let id = default_id(cx, &p);
    let handle = cx.engine.processes().subscribe(&id).ok_or_else(|| {
        MethodError::Failed(format!("{}: no running shell with id {id:?}", cx.method))
    })?;
    let handlers = handlers(p.get("on")).map_err(|e| invalid(cx, e))?;
    let has_return = handlers.iter().any(|h| h.ret.is_some());
    let text = match p.get("message") {
        Some(Value::Null) | None => String::new(),
        Some(v) => js_string(v),
    };
    let data = if newline { format!("{text}\n") } else { text };
    cx.engine
        .processes()
        .write(&id, data.as_bytes())
        .map_err(|e| MethodError::Failed(e.to_string()))?;
    if !has_return {
        return Ok(None);
    }
    let mut watch = Watch::new(handlers, "", false, true);
    match wait(cx, &handle, &mut watch, &id)? {
        Ending::Return(v) => {
            let template = v["__return"].clone();
            let event = v["event"].clone();
            cx.js
                .set_scope(&["event"], &json!({ "event": event }), &[], &cx.run.cwd)
                .map_err(|e| MethodError::Failed(e.to_string()))?;
            let mut r = Renderer::new(cx.js);
            Ok(Some(r.render_step(&template)))
        }
        Ending::Exited(code) => Err(MethodError::Failed(format!(
            "shell {id:?} exited (status {code:?}) before any `return` handler matched"
        ))),
        _ => Ok(None),
    }
}

/// `shell.stop`: kill a shell by id (default: the script folder) or every
/// shell of a `group` (a script path).
fn stop(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let p = params_map(cx, p)?;
    let grace = cx.engine.options().kill_grace;
    if let Some(g) = p.get("group").and_then(|v| v.as_str()) {
        let path = cx.resolve(g)?;
        cx.engine
            .processes()
            .kill_group(&path.display().to_string(), grace);
        return Ok(None);
    }
    let id = default_id(cx, &p);
    cx.engine.processes().kill_shell(&id, grace);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_regex_strings() {
        assert_eq!(
            parse_js_regex("/http:\\/\\/\\S+/").unwrap(),
            ("http:\\/\\/\\S+".into(), "".into())
        );
        assert_eq!(parse_js_regex("/a/gi").unwrap(), ("a".into(), "i".into()));
        assert!(parse_js_regex("plain text").is_err());
        assert!(parse_js_regex("/a/q").is_err());
        let e = handlers(Some(&json!([{"event": "/(unclosed/"}])))
            .err()
            .unwrap();
        assert!(
            e.contains("on[0]") && e.contains("invalid regular expression"),
            "{e}"
        );
    }

    #[test]
    fn lookbehind_and_groups_work() {
        let re = compile("/(?<=port )(\\d+)/", None).unwrap();
        let text = "listening on port 7860";
        let m = re.find(text).unwrap();
        assert_eq!(match_array(text, &m), json!(["7860", "7860"]));
    }

    #[test]
    fn argv_messages_quote_and_flag() {
        let mut env = BTreeMap::new();
        let o = json!({"_": ["python", "app.py"], "port": 7860, "share": true, "x": false, "v": ["a", "b"], "n": null, "p": 1, "multi": "a\nb"});
        let s = argv_message(o.as_object().unwrap(), &mut env);
        assert_eq!(
            s,
            "'python' 'app.py' '--port' '7860' '--share' '--no-x' '-v' 'a' '-v' 'b' '-p' '1' '--multi' \"$PINOKIO_ARG_0\""
        );
        assert_eq!(env.get("PINOKIO_ARG_0").unwrap(), "a\nb");
    }

    #[test]
    fn watch_done_then_final_scan() {
        let hs = handlers(Some(&json!([{"event": "/ready (\\d+)/", "done": true}]))).unwrap();
        let mut w = Watch::new(hs, "<<PINOKIO_SHELL>> cmd\n", true, false);
        w.push("loading\n");
        assert!(w.check().is_none());
        w.push("ready 42\n");
        assert!(matches!(w.check(), Some(Ending::Done)));
        assert_eq!(w.event, Some(json!(["ready 42", "42"])));
        assert!(w.final_errors().is_empty());
    }

    #[test]
    fn error_patterns_and_whitelist() {
        let hs = handlers(Some(&json!([{"event": "/ERROR: boom/", "break": false}]))).unwrap();
        let mut w = Watch::new(hs, "", true, false);
        w.push("Something went wrong, ERROR: boom\n");
        assert!(w.check().is_none());
        assert!(w.final_errors().is_empty());
        let mut w = Watch::new(handlers(None).unwrap(), "", true, false);
        w.push("OSError: [Errno 2] nope\n");
        assert!(matches!(w.check(), Some(Ending::ErrorBreak)));
        assert_eq!(
            w.final_errors(),
            vec!["Error:".to_string(), "Errno ".to_string()]
        );
        let mut w = Watch::new(handlers(None).unwrap(), "", true, false);
        w.push("error: failed to load triton kernels\n");
        assert!(w.check().is_none(), "triton errors are whitelisted");
    }

    #[test]
    fn echoed_command_counts_in_final_scan() {
        let w = Watch::new(
            handlers(None).unwrap(),
            "<<PINOKIO_SHELL>> echo ok # note error: x\n",
            true,
            false,
        );
        assert_eq!(w.final_errors(), vec!["error:".to_string()]);
    }

    #[test]
    fn shell_ids_are_unique() {
        let a = new_shell_id();
        let b = new_shell_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }
}
