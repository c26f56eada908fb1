//! `script.start` (alias `script.run`), `script.stop`, `script.return`,
//! `script.ready` (section 4.9).

use serde::Deserialize;
use serde_json::Value;

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::engine::RunRequest;
use crate::events::RunStatus;

pub fn register(r: &mut Registry) {
    r.register("script.start", start);
    r.register("script.run", start);
    r.register("script.stop", stop);
    r.register("script.return", |_cx: &mut MethodCx<'_>, p: Value| {
        Ok(Some(p))
    });
    r.register("script.ready", ready);
}

#[derive(Deserialize)]
struct StartParams {
    uri: String,
    #[serde(default)]
    params: Option<Value>,
}

fn start(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let p: StartParams = parse_params(cx.method, p)?;
    let path = cx.resolve(&p.uri).map_err(|e| {
        if p.uri.starts_with("http") {
            MethodError::Unsupported {
                method: cx.method.to_string(),
                reason: format!("{e}; install the launcher first with `pinokio install`"),
            }
        } else {
            e
        }
    })?;
    if !path.is_file() {
        // upstream waits forever here; a sane engine says what is missing
        return Err(MethodError::Failed(format!(
            "script {} (from uri {:?}) does not exist",
            path.display(),
            p.uri
        )));
    }
    let id = path.display().to_string();
    if cx.engine.is_running(&id) {
        cx.output(format!("{} already running. Continuing...\n", p.uri));
        return Ok(None);
    }
    let req = RunRequest {
        uri: id,
        input: p.params,
        base: None,
        action: None,
    };
    let out = cx.engine.run_with(cx.js, req, cx.run.depth + 1);
    match out.status {
        RunStatus::Error => Err(MethodError::Failed(format!(
            "child script failed: {}",
            out.error.map(|e| e.to_string()).unwrap_or_default()
        ))),
        RunStatus::Stopped => {
            if cx.stopped() {
                Err(MethodError::Stopped)
            } else {
                Ok(None)
            }
        }
        RunStatus::Finished | RunStatus::Daemon => Ok(out.result),
    }
}

fn uris(cx: &MethodCx<'_>, v: Option<&Value>) -> Result<Vec<String>, MethodError> {
    match v {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => Ok(a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()),
        None => Ok(vec![cx.run.path.display().to_string()]),
        Some(other) => Err(MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: format!("uri must be a string or an array of strings (got {other})"),
        }),
    }
}

/// Stops each script. Relative uris resolve against the calling script's
/// folder (upstream crashes on them; see ARCHITECTURE.md, deviations).
fn stop(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let list = uris(cx, p.get("uri"))?;
    for uri in list {
        let path = cx.resolve(&uri)?;
        cx.engine.stop(&path.display().to_string());
        cx.output(format!("Stopped {uri}\n"));
    }
    Ok(None)
}

fn ready(cx: &mut MethodCx<'_>, p: Value) -> Result<Option<Value>, MethodError> {
    let uri = match &p {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => ["uri", "path", "script"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_str()).map(String::from)),
        _ => None,
    };
    let path = match uri {
        Some(u) => cx.resolve(&u)?,
        None => cx.run.path.clone(),
    };
    Ok(Some(Value::Bool(
        cx.engine.memory().is_ready(&path.display().to_string()),
    )))
}
