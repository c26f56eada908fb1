//! `net` (section 4.7 of the semantics note): an axios-like HTTP request.
//! The step result is the response body: parsed JSON when it parses, else
//! the text. Non-2xx answers and network errors are step errors.
//!
//! Header values are never printed or put in error messages (they often
//! carry `Authorization` tokens).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Once;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::template::js_string;

pub fn register(r: &mut Registry) {
    r.register("net", net);
}

/// The User-Agent sent unless the script sets one (upstream sends a
/// desktop browser's).
pub(crate) const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// Install rustls' ring provider once per process (reqwest is built without
/// a provider of its own).
pub(crate) fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: another provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A blocking client for `url`: proxies from the process environment apply,
/// except for loopback addresses.
pub fn client_for(url: &Url, timeout: Option<Duration>) -> Result<Client, String> {
    ensure_crypto_provider();
    let mut b = Client::builder().timeout(timeout);
    if is_loopback(url) {
        b = b.no_proxy();
    }
    b.build().map_err(|e| error_chain(&e))
}

/// GET `url` (redirects followed) and return its status code: health
/// checks of public URLs (tunnels, platform proxies).
pub fn probe_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let u = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let c = client_for(&u, Some(timeout))?;
    c.get(u)
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| error_chain(&e))
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            host.eq_ignore_ascii_case("localhost")
                || host.to_ascii_lowercase().ends_with(".localhost")
        }
    }
}

/// An error with its sources (`error sending request ...: connection refused`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Run `f` on a helper thread, returning [`MethodError::Stopped`] as soon as
/// the run is stopped (the helper finishes on its own and is forgotten).
pub(crate) fn interruptible<T: Send + 'static>(
    cx: &MethodCx<'_>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MethodError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pinokio-net".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| MethodError::Failed(format!("cannot start a thread: {e}")))?;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => return Ok(v),
            Err(RecvTimeoutError::Timeout) => {
                if cx.stopped() {
                    return Err(MethodError::Stopped);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(MethodError::Failed(
                    "the request thread ended unexpectedly".into(),
                ))
            }
        }
    }
}

/// A number the way JavaScript's `Number(v)` reads it (`None`: NaN).
pub(crate) fn js_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Some(0.0)
            } else {
                t.parse::<f64>().ok().filter(|f| f.is_finite())
            }
        }
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        _ => None,
    }
}

#[derive(Debug, Default, Deserialize)]
struct NetParams {
    url: Option<Value>,
    #[serde(rename = "baseURL")]
    base_url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    data: Option<Value>,
    params: Option<Value>,
    /// Milliseconds; 0 or absent: no limit (axios' default).
    timeout: Option<Value>,
    /// `text` keeps the body a string; anything else parses JSON when it can.
    #[serde(rename = "responseType")]
    response_type: Option<String>,
    auth: Option<BasicAuth>,
}

#[derive(Debug, Deserialize)]
struct BasicAuth {
    username: String,
    #[serde(default)]
    password: Option<String>,
}

/// What came back (moved out of the request thread).
struct Answer {
    status: u16,
    reason: String,
    body: String,
}

fn net(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: NetParams = parse_params(cx.method, params)?;
    let raw_url = match &p.url {
        Some(Value::Null) | None => {
            return Err(MethodError::InvalidParams {
                method: cx.method.into(),
                message: "`url` is required".into(),
            })
        }
        Some(v) => js_string(v),
    };
    let absolute = raw_url.contains("://");
    let full = match &p.base_url {
        Some(base) if !absolute => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            raw_url.trim_start_matches('/')
        ),
        _ => raw_url.clone(),
    };
    let mut url = Url::parse(&full)
        .map_err(|e| MethodError::Failed(format!("net: invalid url {full:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MethodError::Failed(format!(
            "net: unsupported url scheme {:?} in {raw_url:?} (http and https only)",
            url.scheme()
        )));
    }
    if let Some(Value::Object(q)) = &p.params {
        append_axios_query(&mut url, q);
    }
    let verb = p
        .method
        .as_deref()
        .unwrap_or("get")
        .trim()
        .to_ascii_uppercase();
    let verb = reqwest::Method::from_bytes(verb.as_bytes())
        .map_err(|_| MethodError::Failed(format!("net: invalid HTTP method {verb:?}")))?;
    let timeout = p
        .timeout
        .as_ref()
        .and_then(js_number)
        .filter(|ms| *ms > 0.0)
        .map(|ms| Duration::from_millis(ms as u64));

    let mut headers = reqwest::header::HeaderMap::new();
    let has = |name: &str| {
        p.headers
            .as_ref()
            .map(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)))
            .unwrap_or(false)
    };
    let has_ua = has("user-agent");
    let has_ct = has("content-type");
    let has_accept = has("accept");
    if let Some(h) = &p.headers {
        for (k, v) in h {
            if v.is_null() {
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| MethodError::Failed(format!("net: invalid header name {k:?}")))?;
            // never echo the value: it may be a secret
            let value = HeaderValue::from_str(&js_string(v))
                .map_err(|_| MethodError::Failed(format!("net: invalid value for header {k:?}")))?;
            headers.append(name, value);
        }
    }
    if !has_ua {
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
    }
    if !has_accept {
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json, text/plain, */*"),
        );
    }
    let body: Option<(Vec<u8>, &'static str)> = match &p.data {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some((s.clone().into_bytes(), "application/x-www-form-urlencoded"))
        }
        Some(v) => Some((
            serde_json::to_vec(v).unwrap_or_default(),
            "application/json",
        )),
    };
    if let Some((_, ct)) = &body {
        if !has_ct {
            headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
    }

    let client = client_for(&url, timeout).map_err(|e| MethodError::Failed(format!("net: {e}")))?;
    let mut req = client.request(verb.clone(), url.clone()).headers(headers);
    if let Some(a) = &p.auth {
        req = req.basic_auth(&a.username, a.password.as_ref());
    }
    if let Some((bytes, _)) = body {
        req = req.body(bytes);
    }
    let shown = url.to_string();
    let answer = interruptible(cx, move || -> Result<Answer, String> {
        let resp = req.send().map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = resp.text().map_err(|e| error_chain(&e))?;
        Ok(Answer {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            body,
        })
    })?;
    let answer = answer.map_err(|e| {
        let e = if e.contains("timed out") {
            match timeout {
                Some(t) => format!("timeout of {}ms exceeded ({e})", t.as_millis()),
                None => e,
            }
        } else {
            e
        };
        MethodError::Failed(format!("net: {verb} {shown} failed: {e}"))
    })?;
    if !(200..300).contains(&answer.status) {
        let mut snippet: String = answer.body.chars().take(300).collect();
        if answer.body.chars().count() > 300 {
            snippet.push_str("...");
        }
        let snippet = snippet.trim();
        return Err(MethodError::Failed(format!(
            "net: {verb} {shown} failed: Request failed with status code {} {}{}",
            answer.status,
            answer.reason,
            if snippet.is_empty() {
                String::new()
            } else {
                format!(": {snippet}")
            }
        )));
    }
    let text_only = p.response_type.as_deref() == Some("text");
    if text_only || answer.body.trim().is_empty() {
        return Ok(Some(Value::String(answer.body)));
    }
    Ok(Some(
        serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::String(answer.body)),
    ))
}

/// axios' default query serialisation: arrays repeat `key[]`, objects and
/// dates travel as JSON, `null` entries are dropped.
fn append_axios_query(url: &mut Url, q: &Map<String, Value>) {
    if q.values().all(Value::is_null) {
        return;
    }
    let mut pairs = url.query_pairs_mut();
    for (k, v) in q {
        match v {
            Value::Null => {}
            Value::Array(items) => {
                let key = format!("{k}[]");
                for it in items.iter().filter(|x| !x.is_null()) {
                    pairs.append_pair(&key, &query_value(it));
                }
            }
            other => {
                pairs.append_pair(k, &query_value(other));
            }
        }
    }
}

fn query_value(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
        other => js_string(other),
    }
}
