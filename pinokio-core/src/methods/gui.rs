//! Headless forms of the desktop GUI methods (sections 4.6, 4.11, 4.15,
//! 4.16, 4.21, 4.22): they become events for whatever frontend listens, and
//! never wait for a window that does not exist. `input` is answered from the
//! run's args, then a frontend's answers, then the fields' defaults.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::events::EventKind;
use crate::template::{js_string, truthy};

pub fn register(r: &mut Registry) {
    r.register("notify", notify);
    r.register("push", push);
    r.register("browser.open", browser_open);
    r.register("web.open", web_open);
    r.register("tab.open", tab_open);
    r.register("uri.open", uri_open);
    r.register("web.close", close);
    r.register("browser.close", close);
    r.register("modal", modal);
    r.register("htmlmodal.open", htmlmodal);
    r.register("htmlmodal.update", htmlmodal);
    r.register("htmlmodal.close", htmlmodal);
    r.register("loading.start", loading);
    r.register("loading.end", loading);
    r.register("proxy.start", proxy_start);
    r.register("proxy.stop", proxy_stop);
    r.register("input", input);
}

/// A param as a string (`None` for absent or `null`).
fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().filter(|x| !x.is_null()).map(js_string)
}

fn required(cx: &MethodCx<'_>, v: &Option<Value>, name: &str) -> Result<String, MethodError> {
    text(v)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| MethodError::InvalidParams {
            method: cx.method.into(),
            message: format!("`{name}` is required"),
        })
}

// ---------------------------------------------------------------------------
// notify, push
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct NotifyParams {
    html: Option<Value>,
    href: Option<Value>,
    uri: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
}

fn notify(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    // never fails: odd params still give a (possibly empty) notification
    let p: NotifyParams = parse_params(cx.method, params).unwrap_or_default();
    cx.emit(EventKind::Notify {
        index: cx.index,
        message: text(&p.html).unwrap_or_default(),
        href: text(&p.href).or_else(|| text(&p.uri)),
        kind: text(&p.kind),
    });
    Ok(None)
}

#[derive(Debug, Default, Deserialize)]
struct PushParams {
    title: Option<Value>,
    subtitle: Option<Value>,
    message: Option<Value>,
}

fn push(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: PushParams = parse_params(cx.method, params).unwrap_or_default();
    let parts: Vec<String> = [text(&p.title), text(&p.subtitle), text(&p.message)]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    cx.emit(EventKind::Notify {
        index: cx.index,
        message: parts.join(": "),
        href: None,
        kind: None,
    });
    Ok(None)
}

// ---------------------------------------------------------------------------
// browser.open, web.open, tab.open, uri.open, web.close, browser.close
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct OpenParams {
    uri: Option<Value>,
    url: Option<Value>,
    target: Option<Value>,
    params: Option<Value>,
}

fn open_url(cx: &MethodCx<'_>, url: String, target: Option<String>) {
    cx.output(format!("Open: {url}\n"));
    cx.emit(EventKind::OpenUrl {
        index: cx.index,
        url,
        target,
    });
}

fn browser_open(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params)?;
    let uri = required(cx, &p.uri, "uri")?;
    open_url(cx, uri, text(&p.target));
    Ok(None)
}

fn web_open(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params)?;
    let uri = required(cx, &p.uri, "uri")?;
    let url = if uri.starts_with("http://") || uri.starts_with("https://") {
        uri
    } else {
        // a local path: a Pinokio page upstream, a file URL here
        format!("file://{}", cx.resolve(&uri)?.display())
    };
    open_url(cx, url, text(&p.target));
    Ok(None)
}

fn tab_open(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params)?;
    let url = match text(&p.url).filter(|s| !s.trim().is_empty()) {
        Some(u) => u,
        None => required(cx, &p.uri, "url")?,
    };
    open_url(cx, url, text(&p.target));
    Ok(None)
}

fn uri_open(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params)?;
    let uri = required(cx, &p.uri, "uri")?;
    let uri = append_query(uri.trim(), p.params.as_ref());
    open_url(cx, uri.clone(), None);
    Ok(Some(json!({ "uri": uri, "result": "event" })))
}

/// Append an object as a query string (arrays repeat the key, objects travel
/// as JSON, `null` is dropped), before any `#fragment`.
fn append_query(uri: &str, params: Option<&Value>) -> String {
    let Some(Value::Object(o)) = params else {
        return uri.to_string();
    };
    let mut entries = Vec::new();
    for (k, v) in o {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for it in items.into_iter().filter(|x| !x.is_null()) {
            let s = match it {
                Value::Object(_) | Value::Array(_) => it.to_string(),
                other => js_string(other),
            };
            entries.push(format!("{}={}", encode_component(k), encode_component(&s)));
        }
    }
    if entries.is_empty() {
        return uri.to_string();
    }
    let (base, hash) = match uri.find('#') {
        Some(i) => uri.split_at(i),
        None => (uri, ""),
    };
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    format!("{base}{sep}{}{hash}", entries.join("&"))
}

/// JavaScript's `encodeURIComponent`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn close(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params).unwrap_or_default();
    let target = text(&p.target)
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    cx.output(format!(
        "{}{target}: no desktop window to close on a headless server\n",
        cx.method
    ));
    Ok(None)
}

// ---------------------------------------------------------------------------
// modal, htmlmodal.*, loading.*
// ---------------------------------------------------------------------------

fn modal(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let params: Map<String, Value> = parse_params(cx.method, params)?;
    cx.emit(EventKind::Modal {
        index: cx.index,
        params: Value::Object(params),
    });
    Ok(Some(json!({})))
}

fn htmlmodal(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let params: Map<String, Value> = parse_params(cx.method, params)?;
    let mut shown = params.clone();
    shown.insert(
        "action".into(),
        json!(cx.method.trim_start_matches("htmlmodal.")),
    );
    cx.emit(EventKind::Modal {
        index: cx.index,
        params: Value::Object(shown),
    });
    Ok(Some(Value::Object(params)))
}

#[derive(Debug, Default, Deserialize)]
struct LoadingParams {
    message: Option<Value>,
    title: Option<Value>,
    description: Option<Value>,
}

fn loading(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: LoadingParams = parse_params(cx.method, params).unwrap_or_default();
    let detail = [text(&p.title), text(&p.message), text(&p.description)]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let line = match (cx.method, detail.is_empty()) {
        ("loading.start", true) => "Loading...\n".to_string(),
        ("loading.start", false) => format!("Loading: {detail}\n"),
        (_, true) => "Loading finished\n".to_string(),
        (_, false) => format!("Loading finished: {detail}\n"),
    };
    cx.output(line);
    Ok(None)
}

// ---------------------------------------------------------------------------
// proxy.start, proxy.stop
// ---------------------------------------------------------------------------
//
// Desktop Pinokio ignores `proxy.start` steps (deprecated list) and uses
// its LAN proxy only for the `local.set` sharing hook. Headless, a launcher
// asking to proxy its web UI is asking for it to be reachable, so
// `proxy.start {uri, name}` asks the engine's exposer (platform proxy, or
// an opted-in tunnel) to expose `uri` for the script's app, and
// `proxy.stop {uri}` unexposes it. The exposure is closed when the script
// stops. Where nothing can expose it (no exposer, a local machine, a
// platform without a proxy and no tunnel opt-in), the step says why in a
// warning and resolves `undefined`, as upstream does.
//
// Result of `proxy.start` when exposed: the exposure
// `{app, via, local_url, public_url, state, note}` plus `name` (the
// param) and `uri` (the public URL, as `cloudflare.tunnel` returns it).
// `proxy.stop` resolves `undefined`.

#[derive(Debug, Default, Deserialize)]
struct ProxyParams {
    uri: Option<Value>,
    url: Option<Value>,
    name: Option<Value>,
}

/// The app an exposure belongs to: the script's app folder name, else its
/// folder's name.
fn proxy_app(cx: &MethodCx<'_>) -> String {
    cx.engine
        .app_id_of(cx.run.app_root.as_deref())
        .or_else(|| {
            cx.run
                .cwd
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".into())
}

/// `uri` as a local URL to expose: `http(s)://...`, wildcard hosts made
/// reachable. `Err` says what is wrong with it.
fn proxy_uri(p: &ProxyParams) -> Result<String, String> {
    let raw = text(&p.uri)
        .or_else(|| text(&p.url))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "`uri` is required".to_string())?;
    if !(raw.starts_with("http://") || raw.starts_with("https://")) || raw.contains("{{") {
        return Err(format!("`uri` is not a URL: {raw:?}"));
    }
    Ok(raw
        .replacen("://0.0.0.0", "://127.0.0.1", 1)
        .replacen("://[::]", "://[::1]", 1))
}

fn proxy_start(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: ProxyParams = parse_params(cx.method, params)?;
    let warn = |cx: &MethodCx<'_>, message: String| {
        cx.emit(EventKind::Warning {
            index: Some(cx.index),
            message,
        })
    };
    let uri = match proxy_uri(&p) {
        Ok(u) => u,
        Err(e) => {
            warn(cx, format!("proxy.start: nothing exposed: {e}"));
            return Ok(None);
        }
    };
    let app = proxy_app(cx);
    let name = text(&p.name);
    match cx.engine.exposer().expose(&app, &uri, None) {
        Ok(e) => {
            cx.engine.track_exposure(cx.script_id(), &app, &uri);
            let public = e.public_url.clone().unwrap_or_else(|| "-".into());
            cx.output(format!(
                "proxy.start: {}{uri} is reachable at {public} ({}){}\n",
                name.as_deref()
                    .map(|n| format!("{n}: "))
                    .unwrap_or_default(),
                e.via,
                e.note
                    .as_deref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default()
            ));
            let mut v = serde_json::to_value(&e).unwrap_or_else(|_| json!({}));
            if let Value::Object(m) = &mut v {
                m.insert(
                    "name".into(),
                    name.map(Value::String).unwrap_or(Value::Null),
                );
                m.insert(
                    "uri".into(),
                    e.public_url.map(Value::String).unwrap_or(Value::Null),
                );
            }
            Ok(Some(v))
        }
        Err(reason) => {
            warn(cx, format!("proxy.start: {uri} was not exposed: {reason}"));
            Ok(None)
        }
    }
}

fn proxy_stop(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: ProxyParams = parse_params(cx.method, params)?;
    let uri = match proxy_uri(&p) {
        Ok(u) => u,
        Err(e) => {
            cx.emit(EventKind::Warning {
                index: Some(cx.index),
                message: format!("proxy.stop: nothing stopped: {e}"),
            });
            return Ok(None);
        }
    };
    let app = proxy_app(cx);
    let stopped = cx.engine.exposer().unexpose_url(&app, &uri);
    cx.engine.untrack_exposure(&app, &uri);
    if stopped.is_empty() {
        cx.output(format!("proxy.stop: {uri} was not exposed\n"));
    } else {
        let what: Vec<String> = stopped
            .iter()
            .map(|e| format!("{} {}", e.via, e.public_url.as_deref().unwrap_or("-")))
            .collect();
        cx.output(format!(
            "proxy.stop: {uri} no longer exposed ({})\n",
            what.join(", ")
        ));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// input
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct InputParams {
    #[serde(default)]
    form: Option<Vec<Value>>,
}

struct Field {
    key: String,
    checkbox: bool,
    default: Option<Value>,
}

fn input(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let form_params = if params.is_null() {
        json!({})
    } else {
        params.clone()
    };
    let p: InputParams = parse_params(cx.method, params)?;
    let fields: Vec<Field> = p
        .form
        .unwrap_or_default()
        .iter()
        .filter_map(|f| {
            let o = f.as_object()?;
            let key = o.get("key").filter(|k| !k.is_null()).map(js_string)?;
            let kind = o.get("type").map(js_string).unwrap_or_default();
            Some(Field {
                key,
                checkbox: kind.eq_ignore_ascii_case("checkbox"),
                default: o.get("default").filter(|d| !d.is_null()).cloned(),
            })
        })
        .collect();

    let args = cx.run.args.as_ref().and_then(|a| a.as_object());
    let mut values: Map<String, Value> = Map::new();
    for f in &fields {
        if let Some(v) = args.and_then(|a| a.get(&f.key)).filter(|v| !v.is_null()) {
            values.insert(f.key.clone(), coerce(f, v));
        }
    }
    if fields.iter().any(|f| !values.contains_key(&f.key)) {
        cx.emit(EventKind::InputRequest {
            index: cx.index,
            form: form_params.clone(),
        });
        if let Some(answer) = cx.engine.answers().answer(cx.script_id(), &form_params) {
            for f in &fields {
                if values.contains_key(&f.key) {
                    continue;
                }
                if let Some(v) = answer.get(&f.key).filter(|v| !v.is_null()) {
                    values.insert(f.key.clone(), coerce(f, v));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for f in &fields {
        if values.contains_key(&f.key) {
            continue;
        }
        match (&f.default, f.checkbox) {
            (Some(d), _) => {
                values.insert(f.key.clone(), coerce(f, d));
            }
            // an unchecked box is a value: the form would send false
            (None, true) => {
                values.insert(f.key.clone(), Value::Bool(false));
            }
            (None, false) => missing.push(f.key.clone()),
        }
    }
    if !missing.is_empty() {
        let names = missing
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let how = missing
            .iter()
            .map(|k| format!("--arg {k}=VALUE"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(MethodError::Failed(format!(
            "input: no value for field{} {names} (not in the run's args, not answered, no default); provide {} with {how}",
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() == 1 { "it" } else { "them" },
        )));
    }
    // keep form order
    let mut out = Map::new();
    for f in &fields {
        if let Some(v) = values.remove(&f.key) {
            out.insert(f.key.clone(), v);
        }
    }
    Ok(Some(Value::Object(out)))
}

/// What the desktop form hands back: booleans for checkboxes, strings for
/// everything else (even `number` fields).
fn coerce(f: &Field, v: &Value) -> Value {
    if f.checkbox {
        return Value::Bool(match v {
            Value::String(s) => !matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "" | "false" | "0" | "off" | "no" | "unchecked"
            ),
            other => truthy(other),
        });
    }
    Value::String(js_string(v))
}
