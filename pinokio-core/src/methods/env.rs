//! `env.set` and `env.switch` (section 4.17): edit the app's ENVIRONMENT
//! file. The next step's `env` sees the change (it is re-read each step).

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::engine::app_env_file;
use crate::envfile;
use crate::template::js_string;

pub fn register(r: &mut Registry) {
    r.register("env.set", env_set);
    r.register("env.switch", env_switch);
}

/// The app ENVIRONMENT file of the running script (the script folder stands
/// in for the app root outside `HOME/api`).
fn env_file(cx: &MethodCx<'_>) -> PathBuf {
    let root = cx
        .run
        .app_root
        .clone()
        .unwrap_or_else(|| cx.cwd().to_path_buf());
    app_env_file(&root)
}

fn env_set(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Map<String, Value> = parse_params(cx.method, params)?;
    let mut updates = Vec::new();
    for (k, v) in p {
        if v.is_null() {
            // upstream throws on `null.toString()`
            return Err(MethodError::InvalidParams {
                method: cx.method.into(),
                message: format!("the value of {k:?} is null"),
            });
        }
        updates.push((k, js_string(&v)));
    }
    if updates.is_empty() {
        return Ok(None);
    }
    let file = env_file(cx);
    envfile::set_keys(&file, &updates).map_err(|e| MethodError::Failed(e.to_string()))?;
    Ok(None)
}

fn env_switch(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Map<String, Value> = parse_params(cx.method, params)?;
    let mut switches = Vec::new();
    for (k, v) in p {
        let Value::Array(options) = v else {
            return Err(MethodError::InvalidParams {
                method: cx.method.into(),
                message: format!("the value of {k:?} must be an array of options"),
            });
        };
        switches.push((k, options.iter().map(js_string).collect::<Vec<_>>()));
    }
    if switches.is_empty() {
        return Ok(None);
    }
    let current: Vec<(String, String)> = cx
        .engine
        .env_for(cx.run.app_root.as_deref())
        .into_iter()
        .collect();
    let file = env_file(cx);
    envfile::switch_keys_with(&file, &switches, &current)
        .map_err(|e| MethodError::Failed(e.to_string()))?;
    Ok(None)
}
