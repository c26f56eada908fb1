//! The embedded JavaScript runtime (QuickJS through rquickjs).
//!
//! One [`JsRuntime`] serves `.js` scripts, `pinokio.js` menus and `{{ }}`
//! templates. It is not `Send`: each run owns one on its own thread. Every
//! evaluation runs under a wall-clock deadline, so a runaway script
//! (`while (true) {}`) is interrupted instead of hanging the engine.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{Array, Context, Ctx, Function, Object, Runtime};
use serde_json::Value;

const PRELUDE: &str = include_str!("prelude.js");
const VENDOR_PATH: &str = include_str!("vendor/path.js");
const VENDOR_LODASH: &str = include_str!("vendor/lodash.min.js");

/// What the JavaScript side may ask of the engine (`kernel.*`, `info.*`,
/// template helpers). Implemented by the engine; tests can fake it.
pub trait KernelHost: Send + Sync {
    /// Is the script with this absolute path (or id) running?
    fn running(&self, script: &str) -> bool;
    /// Has the script reached the end of its last run (daemon or not)?
    fn ready(&self, script: &str) -> bool;
    /// `local` memory of a script, if any.
    fn local(&self, script: &str) -> Option<Value>;
    /// `global` memory of a script, if any.
    fn global(&self, script: &str) -> Option<Value>;
    /// Ids of scripts that have local (or global) memory.
    fn memory_keys(&self, global: bool) -> Vec<String>;
    /// Absolute path of a command on PATH.
    fn which(&self, name: &str) -> Option<String>;
    /// A free TCP port at or above 42003.
    fn port(&self) -> u16;
    /// Key store entry (`HOME/key.json`).
    fn key(&self, host: &str) -> Option<Value>;
    /// Resolve a git URI (`https://host/owner/repo.git/file`) to a local path.
    fn resolve_git(&self, uri: &str) -> Option<String>;
    /// Environment for a folder (system + app ENVIRONMENT).
    fn env_for(&self, dir: &str) -> Value;
    /// Python environments under a folder.
    fn venvs(&self, dir: &str) -> Vec<String>;
    /// A console message from JavaScript.
    fn console(&self, level: &str, text: &str);
}

/// Errors from the JavaScript runtime.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum JsError {
    #[error("{0}")]
    Exception(String),
    #[error("JavaScript evaluation exceeded the time limit of {0:?} (runaway loop?)")]
    Timeout(Duration),
    #[error("JavaScript runtime error: {0}")]
    Engine(String),
}

/// Result of evaluating one template expression.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalResult {
    /// A value (for text mode, a JSON string with `String(value)`).
    Value(Value),
    /// The expression produced `undefined`.
    Undefined,
    /// The expression threw at run time (ReferenceError, TypeError...).
    RuntimeError(String),
    /// The expression does not parse.
    SyntaxError(String),
}

/// How a template result is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    /// The value itself, type kept.
    Whole,
    /// `String(value)`, as interpolation does.
    Text,
}

/// Machine facts and paths the JS world sees (`kernel.platform`, `os.homedir()`...).
#[derive(Debug, Clone, serde::Serialize)]
pub struct JsFacts {
    pub home: String,
    pub platform: String,
    pub arch: String,
    pub gpu: String,
    pub gpus: Value,
    pub gpu_model: Option<String>,
    pub gpu_driver: Option<String>,
    pub gpu_target: Option<String>,
    pub vram: u64,
    pub ram: u64,
    pub envs: Value,
}

/// Default time limit for loading a script or evaluating a menu.
pub const DEFAULT_LOAD_LIMIT: Duration = Duration::from_secs(10);
/// Default time limit for one template expression.
pub const DEFAULT_TEMPLATE_LIMIT: Duration = Duration::from_secs(2);

/// A QuickJS runtime with the Pinokio prelude loaded.
pub struct JsRuntime {
    rt: Runtime,
    ctx: Context,
    deadline: Rc<Cell<Option<Instant>>>,
    template_limit: Duration,
    load_limit: Duration,
    names_cache: std::cell::RefCell<(usize, String)>,
    sticky_sent: std::cell::RefCell<std::collections::HashMap<String, u64>>,
}

/// A scope value that rarely changes (`self`, `env`): re-sent to JavaScript
/// only when `token` differs from the last one sent.
pub struct StickyValue<'a> {
    pub name: &'static str,
    pub token: u64,
    pub value: &'a Value,
}

fn js_err(ctx: &Ctx<'_>, e: rquickjs::Error) -> JsError {
    if let rquickjs::Error::Exception = e {
        let v = ctx.catch();
        if let Some(obj) = v.as_object() {
            if let Some(ex) = rquickjs::Exception::from_object(obj.clone()) {
                let msg = ex.message().unwrap_or_default();
                let name: String = obj
                    .get::<_, Option<String>>("name")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "Error".into());
                if msg.contains("interrupted") {
                    return JsError::Exception("interrupted".into());
                }
                return JsError::Exception(format!("{name}: {msg}"));
            }
        }
        let s: Option<String> = v.get().ok();
        return JsError::Exception(s.unwrap_or_else(|| format!("{v:?}")));
    }
    JsError::Engine(e.to_string())
}

impl JsRuntime {
    /// Create a runtime bound to a kernel host.
    pub fn new(host: Arc<dyn KernelHost>, sys: &Value) -> Result<Self, JsError> {
        let rt = Runtime::new().map_err(|e| JsError::Engine(e.to_string()))?;
        rt.set_memory_limit(512 * 1024 * 1024);
        rt.set_max_stack_size(4 * 1024 * 1024);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || match d.get() {
            Some(t) => Instant::now() >= t,
            None => false,
        })));
        let ctx = Context::full(&rt).map_err(|e| JsError::Engine(e.to_string()))?;
        let sys_text = sys.to_string();
        ctx.with(|ctx| -> Result<(), JsError> {
            let h = Object::new(ctx.clone()).map_err(|e| js_err(&ctx, e))?;
            install_host(&ctx, &h, host, sys_text).map_err(|e| js_err(&ctx, e))?;
            ctx.globals()
                .set("__host", h)
                .map_err(|e| js_err(&ctx, e))?;
            ctx.eval::<(), _>(PRELUDE).map_err(|e| js_err(&ctx, e))?;
            Ok(())
        })?;
        Ok(JsRuntime {
            rt,
            ctx,
            deadline,
            template_limit: DEFAULT_TEMPLATE_LIMIT,
            load_limit: DEFAULT_LOAD_LIMIT,
            names_cache: Default::default(),
            sticky_sent: Default::default(),
        })
    }

    /// Change the time limits (template evaluation, script load / menu).
    pub fn set_limits(&mut self, template: Duration, load: Duration) {
        self.template_limit = template;
        self.load_limit = load;
    }

    /// Publish machine facts for `kernel.*`.
    pub fn set_facts(&self, facts: &JsFacts) -> Result<(), JsError> {
        let text = serde_json::to_string(facts).map_err(|e| JsError::Engine(e.to_string()))?;
        self.call_pk("setFacts", (text,), self.load_limit)
            .map(|_: ()| ())
    }

    fn call_pk<A, R>(&self, name: &str, args: A, limit: Duration) -> Result<R, JsError>
    where
        A: for<'js> rquickjs::function::IntoArgs<'js>,
        R: for<'js> rquickjs::FromJs<'js>,
    {
        self.deadline.set(Some(Instant::now() + limit));
        let out = self.ctx.with(|ctx| {
            let pk: Object = ctx.globals().get("__pk").map_err(|e| js_err(&ctx, e))?;
            let f: Function = pk.get(name).map_err(|e| js_err(&ctx, e))?;
            f.call::<A, R>(args).map_err(|e| js_err(&ctx, e))
        });
        self.deadline.set(None);
        out.map_err(|e| match e {
            JsError::Exception(m) if m == "interrupted" => JsError::Timeout(limit),
            other => other,
        })
    }

    /// Run a `__pk` function that reports through a slot array, driving
    /// promises until it has reported.
    fn call_slot(&self, name: &str, args: Vec<String>, limit: Duration) -> Result<Value, JsError> {
        let start = Instant::now();
        self.deadline.set(Some(start + limit));
        let result = self.call_slot_inner(name, args, start, limit);
        self.deadline.set(None);
        let (status, text) = result.map_err(|e| match e {
            JsError::Exception(m) if m == "interrupted" => JsError::Timeout(limit),
            other => other,
        })?;
        if status == "err" {
            if text.contains("interrupted") {
                return Err(JsError::Timeout(limit));
            }
            return Err(JsError::Exception(text));
        }
        Ok(decode_result(&text))
    }

    fn call_slot_inner(
        &self,
        name: &str,
        args: Vec<String>,
        start: Instant,
        limit: Duration,
    ) -> Result<(String, String), JsError> {
        self.ctx.with(|ctx| -> Result<(), JsError> {
            let pk: Object = ctx.globals().get("__pk").map_err(|e| js_err(&ctx, e))?;
            let f: Function = pk.get(name).map_err(|e| js_err(&ctx, e))?;
            let slot = Array::new(ctx.clone()).map_err(|e| js_err(&ctx, e))?;
            ctx.globals()
                .set("__slot", slot.clone())
                .map_err(|e| js_err(&ctx, e))?;
            let mut call_args = rquickjs::function::Args::new(ctx.clone(), args.len() + 1);
            for a in args {
                call_args.push_arg(a).map_err(|e| js_err(&ctx, e))?;
            }
            call_args.push_arg(slot).map_err(|e| js_err(&ctx, e))?;
            f.call_arg::<()>(call_args).map_err(|e| js_err(&ctx, e))
        })?;
        loop {
            let filled = self
                .ctx
                .with(|ctx| -> Result<Option<(String, String)>, JsError> {
                    let slot: Array = ctx.globals().get("__slot").map_err(|e| js_err(&ctx, e))?;
                    if slot.len() >= 2 {
                        let status: String = slot.get(0).map_err(|e| js_err(&ctx, e))?;
                        let text: String = slot.get(1).map_err(|e| js_err(&ctx, e))?;
                        return Ok(Some((status, text)));
                    }
                    Ok(None)
                })?;
            if let Some(done) = filled {
                return Ok(done);
            }
            if Instant::now() >= start + limit {
                return Err(JsError::Exception("interrupted".into()));
            }
            match self.rt.execute_pending_job() {
                Ok(true) => continue,
                Ok(false) => {
                    return Err(JsError::Exception(
                        "the script's promise never settled (it waits for something that cannot happen headless)"
                            .into(),
                    ))
                }
                Err(_) => {
                    return Err(JsError::Exception(
                        "a JavaScript job failed while settling the script's promise".into(),
                    ))
                }
            }
        }
    }

    /// Load a `.js` script (or `pinokio.js`), call it if it exports a function,
    /// and return its export as JSON (functions become `{"$function": key}`,
    /// `undefined` becomes `Value::Null` with `defined == false`).
    pub fn load_script(&self, file: &Path, root: &Path) -> Result<Option<Value>, JsError> {
        let v = self.call_slot(
            "loadScript",
            vec![file.display().to_string(), root.display().to_string()],
            self.load_limit,
        )?;
        Ok(unwrap_undefined(v))
    }

    /// Call a function-valued key (`run`, `menu`) of the last loaded script
    /// with `(kernel, info, ctx)`. A non-function value is returned as is.
    pub fn call_exported(
        &self,
        key: &str,
        root: &Path,
        ctx: Option<&Value>,
    ) -> Result<Option<Value>, JsError> {
        let ctx_text = ctx.map(|c| c.to_string()).unwrap_or_default();
        let v = self.call_slot(
            "callExported",
            vec![key.to_string(), root.display().to_string(), ctx_text],
            self.load_limit,
        )?;
        Ok(unwrap_undefined(v))
    }

    /// Install the template scope: `names` in order, data values from `data`
    /// (a JSON object; names missing from it are provided by the prelude:
    /// `_`, `os`, `path`, `kernel`, `exists`, `running`, `ready`, `which`,
    /// `key`, `script`, `proxy`, `pip`). Sticky values (`self`, `env`) are
    /// only sent when their token changed since the last call.
    pub fn set_scope(
        &self,
        names: &[&str],
        data: &Value,
        sticky: &[StickyValue<'_>],
        root: &Path,
    ) -> Result<(), JsError> {
        let mut names_text = self.names_cache.borrow_mut();
        if names_text.0 != names.len() {
            *names_text = (
                names.len(),
                serde_json::to_string(names).map_err(|e| JsError::Engine(e.to_string()))?,
            );
        }
        let mut sent = self.sticky_sent.borrow_mut();
        let mut sticky_obj = serde_json::Map::new();
        for s in sticky {
            if sent.get(s.name) != Some(&s.token) {
                sticky_obj.insert(s.name.to_string(), s.value.clone());
                sent.insert(s.name.to_string(), s.token);
            }
        }
        let sticky_text = if sticky_obj.is_empty() {
            String::new()
        } else {
            Value::Object(sticky_obj).to_string()
        };
        self.call_pk(
            "setScope",
            (
                names_text.1.clone(),
                data.to_string(),
                sticky_text,
                root.display().to_string(),
            ),
            self.load_limit,
        )
    }

    /// Evaluate one template expression in the current scope.
    pub fn evaluate(&self, expr: &str, mode: EvalMode) -> EvalResult {
        let m = match mode {
            EvalMode::Whole => "w",
            EvalMode::Text => "t",
        };
        match self.call_pk::<_, String>("evaluate", (expr, m), self.template_limit) {
            Ok(s) => decode_eval(&s, mode),
            Err(JsError::Timeout(d)) => {
                EvalResult::RuntimeError(format!("evaluation exceeded the time limit of {d:?}"))
            }
            Err(e) => EvalResult::RuntimeError(e.to_string()),
        }
    }

    /// `new RegExp(source, flags).exec(text)` as a JSON array of strings (null for unmatched groups).
    pub fn regex_exec(
        &self,
        source: &str,
        flags: &str,
        text: &str,
    ) -> Result<Option<Value>, JsError> {
        let s: String = self.call_pk("regexExec", (source, flags, text), self.template_limit)?;
        if s.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| JsError::Engine(e.to_string()))
    }
}

fn decode_eval(s: &str, mode: EvalMode) -> EvalResult {
    let (tag, rest) = s.split_at(1.min(s.len()));
    match tag {
        "u" => EvalResult::Undefined,
        "e" => EvalResult::RuntimeError(rest.to_string()),
        "s" => EvalResult::SyntaxError(rest.to_string()),
        "v" => match mode {
            EvalMode::Text => EvalResult::Value(Value::String(rest.to_string())),
            EvalMode::Whole => match serde_json::from_str::<Value>(rest) {
                Ok(v) => EvalResult::Value(normalise_numbers(v)),
                Err(e) => EvalResult::RuntimeError(format!("result is not representable: {e}")),
            },
        },
        _ => EvalResult::RuntimeError(format!("unexpected evaluation result {s:?}")),
    }
}

fn decode_result(text: &str) -> Value {
    if text == "u" {
        return Value::String("\u{0}undefined".into());
    }
    match text.strip_prefix('v') {
        Some(rest) => serde_json::from_str(rest)
            .map(normalise_numbers)
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

fn unwrap_undefined(v: Value) -> Option<Value> {
    match &v {
        Value::String(s) if s == "\u{0}undefined" => None,
        _ => Some(v),
    }
}

/// QuickJS hands integral numbers back as floats in some paths; keep `42` as `42`.
pub fn normalise_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 {
                    return Value::from(f as i64);
                }
            }
            Value::Number(n)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalise_numbers).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, normalise_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

fn install_host<'js>(
    ctx: &Ctx<'js>,
    h: &Object<'js>,
    host: Arc<dyn KernelHost>,
    sys_text: String,
) -> rquickjs::Result<()> {
    h.set("sys", Function::new(ctx.clone(), move || sys_text.clone())?)?;
    h.set(
        "vendor",
        Function::new(ctx.clone(), |name: String| match name.as_str() {
            "path" => VENDOR_PATH.to_string(),
            "lodash" => VENDOR_LODASH.to_string(),
            _ => String::new(),
        })?,
    )?;
    h.set(
        "readFile",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, p: String| -> rquickjs::Result<String> {
                std::fs::read(&p)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| {
                        rquickjs::Exception::throw_message(
                            &ctx,
                            &format!("ENOENT: cannot read '{p}': {e}"),
                        )
                    })
            },
        )?,
    )?;
    h.set(
        "readFileBytes",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, p: String| -> rquickjs::Result<String> {
                match std::fs::read(&p) {
                    Ok(b) => {
                        let mut s = String::with_capacity(b.len() * 2);
                        for x in b {
                            s.push_str(&format!("{x:02x}"));
                        }
                        Ok(s)
                    }
                    Err(e) => Err(rquickjs::Exception::throw_message(
                        &ctx,
                        &format!("ENOENT: cannot read '{p}': {e}"),
                    )),
                }
            },
        )?,
    )?;
    h.set(
        "stat",
        Function::new(ctx.clone(), |p: String| -> String {
            match std::fs::symlink_metadata(&p) {
                Ok(lm) => {
                    let m = std::fs::metadata(&p).unwrap_or(lm.clone());
                    let mtime = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    serde_json::json!({
                        "isFile": m.is_file(),
                        "isDirectory": m.is_dir(),
                        "isSymbolicLink": lm.file_type().is_symlink(),
                        "size": m.len(),
                        "mtimeMs": mtime,
                    })
                    .to_string()
                }
                Err(_) => String::new(),
            }
        })?,
    )?;
    h.set(
        "readdir",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, p: String| -> rquickjs::Result<String> {
                let rd = std::fs::read_dir(&p).map_err(|e| {
                    rquickjs::Exception::throw_message(
                        &ctx,
                        &format!("ENOENT: cannot read directory '{p}': {e}"),
                    )
                })?;
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                Ok(serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()))
            },
        )?,
    )?;
    let hl = host.clone();
    h.set(
        "log",
        Function::new(ctx.clone(), move |level: String, text: String| {
            hl.console(&level, &text);
        })?,
    )?;
    let hk = host;
    h.set(
        "kernel",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, op: String, args: String| -> rquickjs::Result<String> {
                let args: Vec<Value> = serde_json::from_str(&args).unwrap_or_default();
                let s0 = || {
                    args.first()
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                let out: Option<Value> = match op.as_str() {
                    "running" | "running_mark" => Some(Value::Bool(hk.running(&s0()))),
                    "ready" => Some(Value::Bool(hk.ready(&s0()))),
                    "local" => hk.local(&s0()),
                    "global" => hk.global(&s0()),
                    "local_keys" => Some(serde_json::json!(hk.memory_keys(false))),
                    "global_keys" => Some(serde_json::json!(hk.memory_keys(true))),
                    "running_mark_keys" => Some(serde_json::json!(hk.memory_keys(false))),
                    "which" => hk.which(&s0()).map(Value::String),
                    "port" => Some(Value::from(hk.port())),
                    "ports" => {
                        let n = args.first().and_then(|v| v.as_u64()).unwrap_or(1).min(64);
                        let mut ports = Vec::new();
                        for _ in 0..n {
                            ports.push(Value::from(hk.port()));
                        }
                        Some(Value::Array(ports))
                    }
                    "key" => hk.key(&s0()),
                    "resolve_git" => hk.resolve_git(&s0()).map(Value::String),
                    "env_for" => Some(hk.env_for(&s0())),
                    "venvs" => Some(serde_json::json!(hk.venvs(&s0()))),
                    other => {
                        return Err(rquickjs::Exception::throw_message(
                            &ctx,
                            &format!("unknown kernel operation {other}"),
                        ))
                    }
                };
                Ok(out.map(|v| v.to_string()).unwrap_or_default())
            },
        )?,
    )?;
    Ok(())
}
