//! `jump` and `goto` (identical): set where execution continues, passing
//! `params.params` (or `params.input`) as the next step's `input`.

use serde_json::Value;

use super::{JumpTarget, MethodCx, MethodError, Registry};
use crate::template::truthy;

pub fn register(r: &mut Registry) {
    r.register("jump", jump);
    r.register("goto", jump);
}

fn jump(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p = params.as_object().cloned().unwrap_or_default();
    if let Some(i) = p.get("index") {
        cx.jump = Some(JumpTarget::Index(i.clone()));
    } else if let Some(id) = p.get("id") {
        let id = match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        cx.jump = Some(JumpTarget::Id(id));
    } else {
        return Err(MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: "needs `index` or `id`".into(),
        });
    }
    // upstream: `params.params || params.input`
    let pass = match p.get("params") {
        Some(v) if truthy(v) => Some(v.clone()),
        _ => p.get("input").filter(|v| truthy(v)).cloned(),
    };
    Ok(pass)
}
