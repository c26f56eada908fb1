//! `log`: print `raw`, `text`, `json` or `json2` (first present wins).

use serde_json::Value;

use super::{MethodCx, MethodError, Registry};
use crate::template::js_string;

pub fn register(r: &mut Registry) {
    r.register("log", log);
}

fn log(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p = params.as_object().cloned().unwrap_or_default();
    let text = if let Some(v) = p.get("raw") {
        js_string(v)
    } else if let Some(v) = p.get("text") {
        js_string(v)
    } else if let Some(v) = p.get("json") {
        serde_json::to_string(v).unwrap_or_default()
    } else if let Some(v) = p.get("json2") {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        String::new()
    };
    cx.output(format!("{text}\n"));
    Ok(None)
}
