//! Routing, the request rules (host, origin, token, body size, ids and
//! paths) and the handlers of docs/api.md.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use pinokio_core::apps::{self, AppError};
use pinokio_core::catalog::{Catalog, CatalogApp};
use pinokio_core::control::{self, StartRequest};
use pinokio_core::engine::{Menu, MenuItem};
use pinokio_core::state::{AppState, StateStore};
use pinokio_core::{applogs, Engine};
use serde_json::{json, Map, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::auth;
use crate::hub::{Busy, Hub, CLIENT_QUEUE};
use crate::jobs::{self, Action, Job};
use crate::queue::SseItem;
use crate::sse::SseWriter;
use crate::ui;

/// The largest request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// An app's title and icon, with the modification times they were read at.
type Meta = (Vec<Option<SystemTime>>, String, Option<String>);

/// Shared by the workers.
pub(crate) struct Ctx {
    pub engine: Engine,
    pub hub: Arc<Hub>,
    token: String,
    token_always: bool,
    bound_host: String,
    pub stopping: Arc<AtomicBool>,
    meta: Mutex<HashMap<String, Meta>>,
}

impl Ctx {
    pub fn new(
        engine: Engine,
        hub: Arc<Hub>,
        token: String,
        token_always: bool,
        bound_host: String,
    ) -> Ctx {
        Ctx {
            engine,
            hub,
            token,
            token_always,
            bound_host: auth::host_name(&bound_host),
            stopping: Arc::new(AtomicBool::new(false)),
            meta: Mutex::new(HashMap::new()),
        }
    }

    pub fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    fn token_ok(&self, t: &str) -> bool {
        auth::constant_time_eq(t.trim().as_bytes(), self.token.as_bytes())
    }
}

/// An error answer: `{"error": {"kind", "message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: u16,
    kind: &'static str,
    message: String,
}

fn err(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        kind,
        message: message.into(),
    }
}
fn bad_request(m: impl Into<String>) -> ApiError {
    err(400, "bad_request", m)
}
fn bad_path(m: impl Into<String>) -> ApiError {
    err(400, "bad_path", m)
}
fn not_found(m: impl Into<String>) -> ApiError {
    err(404, "not_found", m)
}
fn conflict(m: impl Into<String>) -> ApiError {
    err(409, "conflict", m)
}
fn failed(m: impl Into<String>) -> ApiError {
    err(422, "failed", m)
}
fn internal(m: impl Into<String>) -> ApiError {
    err(500, "internal", m)
}

/// What a handler answers.
enum Reply {
    Json(u16, Value),
    Asset(&'static str, &'static str),
    /// 303 to `/`, setting the session cookie.
    Login,
    NoContent(Vec<(&'static str, String)>),
    Stream(Stream),
}

enum Stream {
    Job {
        job: Arc<Job>,
        after: u64,
    },
    Logs {
        app: String,
        dir: PathBuf,
        lines: usize,
    },
}

type Res = Result<Reply, ApiError>;

fn ok(v: Value) -> Res {
    Ok(Reply::Json(200, v))
}

/// The parts of a request the handlers look at.
struct Req {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    host: Option<String>,
    origin: Option<String>,
    fetch_site: Option<String>,
    bearer: Option<String>,
    cookie: Option<String>,
    last_event_id: Option<String>,
    content_length: Option<usize>,
}

impl Req {
    fn of(r: &Request) -> Req {
        fn header(r: &Request, name: &'static str) -> Option<String> {
            r.headers()
                .iter()
                .find(|x| x.field.equiv(name))
                .map(|x| x.value.as_str().to_string())
        }
        let h = |name: &'static str| header(r, name);
        let url = r.url();
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        Req {
            method: r.method().clone(),
            path: path.to_string(),
            query: parse_query(q),
            host: h("Host"),
            origin: h("Origin"),
            fetch_site: h("Sec-Fetch-Site"),
            bearer: h("Authorization").and_then(|a| {
                let (scheme, t) = a.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| t.trim().to_string())
            }),
            cookie: h("Cookie").and_then(|c| auth::cookie(&c, auth::COOKIE).map(String::from)),
            last_event_id: h("Last-Event-ID"),
            content_length: h("Content-Length").and_then(|l| l.trim().parse().ok()),
        }
    }

    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn host_name(&self) -> String {
        auth::host_name(self.host.as_deref().unwrap_or(""))
    }

    fn changes_state(&self) -> bool {
        matches!(
            self.method,
            Method::Post | Method::Put | Method::Delete | Method::Patch
        )
    }
}

fn pct_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((pct_decode(k, true)?, pct_decode(v, true)?))
        })
        .collect()
}

/// App ids: `[A-Za-z0-9._-]{1,128}`, not `.` or `..`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn check_id(id: &str) -> Result<&str, ApiError> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(bad_path(format!(
            "invalid app id {id:?}: use 1 to 128 letters, digits, '.', '_' and '-' (not \".\" or \"..\")"
        )))
    }
}

/// A relative path with plain components only.
fn relative_ok(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && !p.contains('\\')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A script named by a request: a file inside the app folder.
fn check_script(dir: &Path, script: &str) -> Result<String, ApiError> {
    let refuse = || {
        bad_path(format!(
            "script {script:?} must name a file inside the app's folder"
        ))
    };
    if !relative_ok(script) {
        return Err(refuse());
    }
    let full = dir.join(script);
    let (Ok(full), Ok(root)) = (std::fs::canonicalize(&full), std::fs::canonicalize(dir)) else {
        return Err(refuse());
    };
    if !full.starts_with(&root) || !full.is_file() {
        return Err(refuse());
    }
    Ok(script.to_string())
}

fn body_json(req: &mut Request, r: &Req) -> Result<Map<String, Value>, ApiError> {
    let too_large = || err(413, "too_large", "the request body is over 1 MiB");
    if r.content_length.is_some_and(|n| n > BODY_LIMIT) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    req.as_reader()
        .take(BODY_LIMIT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad_request(format!("cannot read the body: {e}")))?;
    if buf.len() > BODY_LIMIT {
        return Err(too_large());
    }
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&buf) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request("the body must be a JSON object")),
        Err(e) => Err(bad_request(format!("unreadable JSON: {e}"))),
    }
}

fn opt_str<'a>(b: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_request(format!("\"{key}\" must be a string"))),
    }
}

fn opt_bool(b: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(x)) => Ok(Some(*x)),
        Some(_) => Err(bad_request(format!("\"{key}\" must be true or false"))),
    }
}

fn num_param(r: &Req, key: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match r.q(key) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| bad_request(format!("{key} must be a whole number"))),
    }
}

// ---------------------------------------------------------------------------
// Entry point

pub(crate) fn handle(ctx: &Arc<Ctx>, mut req: Request) {
    // what the user does (not what an open page polls) counts as activity
    // for the idle policy (`pinokio_cloud::idle`)
    if *req.method() != tiny_http::Method::Get {
        ctx.engine.activity().touch();
    }
    let r = Req::of(&req);
    let result = route(ctx, &mut req, &r);
    match result {
        Ok(Reply::Json(status, v)) => send_json(ctx, req, status, &v, Vec::new()),
        Ok(Reply::Asset(body, ctype)) => send(
            req,
            200,
            body.as_bytes().to_vec(),
            ctype,
            vec![("X-Frame-Options", "DENY".into())],
        ),
        Ok(Reply::Login) => send(
            req,
            303,
            Vec::new(),
            "text/plain",
            vec![
                ("Location", "/".into()),
                ("Set-Cookie", auth::login_cookie(&ctx.token)),
            ],
        ),
        Ok(Reply::NoContent(headers)) => {
            let mut resp = Response::empty(204);
            for (k, v) in headers {
                if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                    resp.add_header(h);
                }
            }
            let _ = req.respond(resp);
        }
        Ok(Reply::Stream(s)) => {
            let ctx = ctx.clone();
            let _ = std::thread::Builder::new()
                .name("http-sse".into())
                .spawn(move || stream(&ctx, req, s));
        }
        Err(e) => {
            let v = json!({"error": {"kind": e.kind, "message": e.message}});
            send_json(ctx, req, e.status, &v, Vec::new());
        }
    }
}

fn common_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Cache-Control", "no-store".into()),
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "no-referrer".into()),
    ]
}

fn send(req: Request, status: u16, body: Vec<u8>, ctype: &str, extra: Vec<(&str, String)>) {
    let mut resp = Response::from_data(body).with_status_code(status);
    let mut headers = common_headers();
    headers.push(("Content-Type", ctype.to_string()));
    headers.extend(extra);
    for (k, v) in headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    let _ = req.respond(resp);
}

fn send_json(ctx: &Ctx, req: Request, status: u16, v: &Value, extra: Vec<(&str, String)>) {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    let text = ctx.hub.redactor().redact(&text).into_owned();
    send(req, status, text.into_bytes(), "application/json", extra);
}

fn route(ctx: &Arc<Ctx>, req: &mut Request, r: &Req) -> Res {
    // the web UI: served to anyone (its API calls need the token)
    if r.path == "/" || r.path.starts_with("/ui/") || r.path == "/index.html" {
        if r.method != Method::Get && r.method != Method::Head {
            return Err(err(405, "method_not_allowed", "only GET is allowed here"));
        }
        if r.path == "/" {
            if let Some(t) = r.q("token") {
                if ctx.token_ok(t) {
                    // the cookie is set; the token leaves the address bar
                    return Ok(Reply::Login);
                }
            }
        }
        return match ui::asset(&r.path) {
            Some((body, ctype)) => Ok(Reply::Asset(body, ctype)),
            None => Err(not_found(format!("no such file {}", r.path))),
        };
    }
    let Some(rest) = r.path.strip_prefix("/api/v1/") else {
        return Err(not_found(format!("no such endpoint {}", r.path)));
    };
    let mut seg = Vec::new();
    for s in rest.split('/') {
        let d =
            pct_decode(s, false).ok_or_else(|| bad_path("a path segment is not valid UTF-8"))?;
        if d == ".." || d == "." || d.contains('/') || d.contains('\0') {
            return Err(bad_path(format!("path segment {d:?} is not allowed")));
        }
        seg.push(d);
    }
    if seg.last().is_some_and(|s| s.is_empty()) && seg.len() > 1 {
        seg.pop();
    }
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();

    // request rules
    let host = r.host_name();
    let loopback_host = auth::is_loopback_name(&host);
    let stream_path = matches!(
        seg.as_slice(),
        ["runs", _, "events"] | ["apps", _, "logs", "stream"]
    );
    let authed = r.bearer.as_deref().is_some_and(|t| ctx.token_ok(t))
        || r.cookie.as_deref().is_some_and(|t| ctx.token_ok(t))
        || (stream_path
            && r.method == Method::Get
            && r.q("token").is_some_and(|t| ctx.token_ok(t)));
    let open = matches!(seg.as_slice(), ["health"] | ["login"] | ["logout"]);
    if !open && !loopback_host && host != ctx.bound_host && !authed {
        return Err(err(
            421,
            "bad_host",
            format!(
                "Host {:?} is not allowed without the token",
                r.host.as_deref().unwrap_or("")
            ),
        ));
    }
    if r.changes_state() {
        let own = |o: &str| {
            let o = o.trim().to_ascii_lowercase();
            let h = r.host.as_deref().unwrap_or("").trim().to_ascii_lowercase();
            !h.is_empty() && (o == format!("http://{h}") || o == format!("https://{h}"))
        };
        if r.origin.as_deref().is_some_and(|o| !own(o))
            || r.fetch_site
                .as_deref()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site"))
        {
            return Err(err(
                403,
                "cross_origin",
                "cross-origin requests may not change anything",
            ));
        }
    }
    let needs_token = ctx.token_always || !loopback_host;
    if !open && needs_token && !authed {
        return Err(err(
            401,
            "unauthorized",
            "this request needs the API token (Authorization: Bearer TOKEN; see HOME/http-token or `pinokio serve --show-token`)",
        ));
    }

    let get = r.method == Method::Get;
    let post = r.method == Method::Post;
    let mna = || {
        Err(err(
            405,
            "method_not_allowed",
            format!("{} is not allowed on this path", r.method),
        ))
    };
    match seg.as_slice() {
        ["health"] => {
            if !get {
                return mna();
            }
            ok(json!({
                "ok": true,
                "version": env!("CARGO_PKG_VERSION"),
                "auth": if needs_token { "token" } else { "loopback" },
            }))
        }
        ["login"] => {
            if !post {
                return mna();
            }
            let b = body_json(req, r)?;
            let t = opt_str(&b, "token")?.unwrap_or("");
            if !ctx.token_ok(t) {
                return Err(err(401, "unauthorized", "wrong token"));
            }
            Ok(Reply::NoContent(vec![(
                "Set-Cookie",
                auth::login_cookie(&ctx.token),
            )]))
        }
        ["logout"] => {
            if !post {
                return mna();
            }
            Ok(Reply::NoContent(vec![(
                "Set-Cookie",
                auth::logout_cookie(),
            )]))
        }
        ["system"] => {
            if !get {
                return mna();
            }
            system(ctx)
        }
        ["catalog"] => {
            if !get {
                return mna();
            }
            catalog(ctx, r)
        }
        ["catalog", id] => {
            if !get {
                return mna();
            }
            catalog_app(ctx, check_id(id)?)
        }
        ["apps"] => {
            if !get {
                return mna();
            }
            let mut ids: Vec<String> = apps::installed(&ctx.engine)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            for j in ctx.hub.jobs(None) {
                if j.is_running() && j.action == "install" && !ids.contains(&j.app) {
                    ids.push(j.app.clone());
                }
            }
            ids.sort();
            let store = store(ctx);
            let list: Vec<Value> = ids
                .iter()
                .filter_map(|id| app_object(ctx, store.as_deref(), id))
                .collect();
            ok(json!({ "apps": list }))
        }
        ["apps", id] => {
            if !get {
                return mna();
            }
            let id = check_id(id)?;
            let store = store(ctx);
            app_object(ctx, store.as_deref(), id)
                .map(|a| Reply::Json(200, a))
                .ok_or_else(|| not_installed(id))
        }
        ["apps", id, "menu"] => {
            if !get {
                return mna();
            }
            let (id, dir) = installed(ctx, id)?;
            let menu = control::menu(&ctx.engine, id).map_err(failed)?;
            ok(json!({ "menu": menu_json(&menu, &dir) }))
        }
        ["apps", id, "logs"] => {
            if !get {
                return mna();
            }
            let (_, dir) = installed(ctx, id)?;
            let n = num_param(r, "lines", 200, 10_000)?;
            let script = match r.q("script") {
                Some(s) if !s.is_empty() => {
                    if !relative_ok(s) {
                        return Err(bad_path(format!("script {s:?} is not allowed")));
                    }
                    Some(s)
                }
                _ => None,
            };
            let lines = applogs::tail(&dir, script, n)
                .map_err(|e| internal(format!("cannot read the logs: {e}")))?;
            ok(json!({ "lines": lines.iter().map(log_line).collect::<Vec<_>>() }))
        }
        ["apps", id, "logs", "stream"] => {
            if !get {
                return mna();
            }
            let (id, dir) = installed(ctx, id)?;
            let lines = num_param(r, "lines", 100, 10_000)?;
            Ok(Reply::Stream(Stream::Logs {
                app: id.to_string(),
                dir,
                lines,
            }))
        }
        ["apps", id, "expose"] => {
            if !post {
                return mna();
            }
            let b = body_json(req, r)?;
            let (id, _) = installed(ctx, id)?;
            let via = opt_str(&b, "via")?;
            let e = control::expose(&ctx.engine, id, via).map_err(failed)?;
            ok(json!({ "exposure": e }))
        }
        ["apps", id, "unexpose"] => {
            if !post {
                return mna();
            }
            let _ = body_json(req, r)?;
            let (id, _) = installed(ctx, id)?;
            ok(json!({ "stopped": ctx.engine.exposer().unexpose(id) }))
        }
        ["apps", id, action] => {
            if !matches!(
                *action,
                "install" | "start" | "stop" | "update" | "reset" | "uninstall"
            ) {
                return Err(not_found(format!("no such endpoint {}", r.path)));
            }
            if !post {
                return mna();
            }
            let b = body_json(req, r)?;
            let id = check_id(id)?;
            app_action(ctx, id, action, &b)
        }
        ["exposures"] => {
            if !get {
                return mna();
            }
            ok(json!({ "exposures": ctx.engine.exposer().exposures() }))
        }
        ["runs"] => {
            if !get {
                return mna();
            }
            let app = match r.q("app") {
                Some(a) if !a.is_empty() => Some(check_id(a)?),
                _ => None,
            };
            let runs: Vec<_> = ctx.hub.jobs(app).iter().map(|j| j.view()).collect();
            ok(json!({ "runs": runs }))
        }
        ["runs", id] => {
            if !get {
                return mna();
            }
            ok(json!(job(ctx, id)?.view()))
        }
        ["runs", id, "events"] => {
            if !get {
                return mna();
            }
            let job = job(ctx, id)?;
            let after = match r.q("after").or(r.last_event_id.as_deref()) {
                Some(a) if !a.trim().is_empty() => a
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| bad_request("after must be a whole number"))?,
                _ => 0,
            };
            if r.q("format") == Some("json") {
                return ok(job.events_json(after));
            }
            Ok(Reply::Stream(Stream::Job { job, after }))
        }
        ["inputs"] => {
            if !get {
                return mna();
            }
            ok(json!({ "inputs": ctx.hub.inputs().list() }))
        }
        ["inputs", id] => {
            if !post {
                return mna();
            }
            let b = body_json(req, r)?;
            let values = match b.get("values") {
                Some(Value::Object(m)) => m.clone(),
                None | Some(Value::Null) => Map::new(),
                Some(_) => return Err(bad_request("\"values\" must be an object")),
            };
            if ctx.hub.inputs().answer(id, values) {
                ok(json!({"ok": true}))
            } else {
                Err(not_found(format!("no pending input {id:?}")))
            }
        }
        ["inputs", id, "cancel"] => {
            if !post {
                return mna();
            }
            let _ = body_json(req, r)?;
            if ctx.hub.inputs().cancel(id) {
                ok(json!({"ok": true}))
            } else {
                Err(not_found(format!("no pending input {id:?}")))
            }
        }
        _ => Err(not_found(format!("no such endpoint {}", r.path))),
    }
}

fn not_installed(id: &str) -> ApiError {
    not_found(format!("no app {id:?} is installed"))
}

/// An installed app by id: (id, folder).
fn installed<'a>(ctx: &Ctx, id: &'a str) -> Result<(&'a str, PathBuf), ApiError> {
    let id = check_id(id)?;
    let dir = ctx.engine.home().api().join(id);
    if dir.is_dir() && apps::is_launcher(&dir) {
        Ok((id, dir))
    } else {
        Err(not_installed(id))
    }
}

fn job(ctx: &Ctx, id: &str) -> Result<Arc<Job>, ApiError> {
    ctx.hub
        .job(id)
        .ok_or_else(|| not_found(format!("no run {id:?}")))
}

fn store(ctx: &Ctx) -> Option<Arc<StateStore>> {
    ctx.engine.state().cloned().or_else(|| {
        StateStore::open(ctx.engine.home().root())
            .ok()
            .map(Arc::new)
    })
}

// ---------------------------------------------------------------------------
// Handlers

fn system(ctx: &Ctx) -> Res {
    let report = pinokio_cloud::doctor::Doctor::system().run(Some(ctx.engine.home().root()));
    let mut v = serde_json::to_value(&report).map_err(|e| internal(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("home".into(), json!(ctx.engine.home().root()));
        m.insert("engine_pid".into(), json!(std::process::id()));
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    }
    ok(v)
}

fn load_catalog(ctx: &Ctx) -> Result<Catalog, ApiError> {
    Catalog::for_home(ctx.engine.home()).map_err(|e| failed(e.to_string()))
}

fn catalog_json(ctx: &Ctx, a: &CatalogApp) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "category": a.category,
        "tags": a.tags,
        "author": a.author,
        "summary": a.summary,
        "repo_url": a.repo_url,
        "status": a.status.as_str(),
        "installable": a.installable(),
        "installed": ctx.engine.home().api().join(&a.id).is_dir(),
    })
}

fn catalog(ctx: &Ctx, r: &Req) -> Res {
    let cat = load_catalog(ctx)?;
    let nonempty = |k: &str| r.q(k).filter(|v| !v.trim().is_empty());
    let hits = cat.search(nonempty("q"), nonempty("category"), nonempty("tag"));
    let limit = num_param(r, "limit", 50, 500)?;
    let offset = num_param(r, "offset", 0, usize::MAX)?;
    let page: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| catalog_json(ctx, a))
        .collect();
    ok(json!({
        "total": hits.len(),
        "categories": cat.categories(),
        "apps": page,
    }))
}

fn catalog_app(ctx: &Ctx, id: &str) -> Res {
    let cat = load_catalog(ctx)?;
    match cat.get(id) {
        Some(a) => ok(catalog_json(ctx, a)),
        None => {
            let close = cat.suggest(id);
            Err(not_found(if close.is_empty() {
                format!("unknown app id {id:?}")
            } else {
                format!("unknown app id {id:?}; did you mean: {}?", close.join(", "))
            }))
        }
    }
}

fn log_line(l: &applogs::LogLine) -> Value {
    let text = l
        .text
        .strip_prefix(l.ts.as_str())
        .filter(|_| !l.ts.is_empty())
        .map(|t| t.strip_prefix(' ').unwrap_or(t))
        .unwrap_or(&l.text);
    json!({"script": l.script, "time": l.ts, "text": text})
}

fn menu_item_json(it: &MenuItem, dir: &Path) -> Value {
    let script = it
        .script
        .as_ref()
        .and_then(|s| s.strip_prefix(dir).ok().map(|p| p.display().to_string()));
    json!({
        "text": it.text,
        "html": it.html,
        "icon": it.icon,
        "href": it.href,
        "script": script,
        "url": it.url,
        "params": it.params,
        "default": it.default,
        "running": it.running,
        "popout": it.popout,
        "menu": it.menu.iter().map(|m| menu_item_json(m, dir)).collect::<Vec<_>>(),
    })
}

fn menu_json(m: &Menu, dir: &Path) -> Value {
    json!({
        "title": m.title,
        "description": m.description,
        "icon": m.icon,
        "version": m.version,
        "items": m.items.iter().map(|i| menu_item_json(i, dir)).collect::<Vec<_>>(),
        "warnings": m.warnings,
    })
}

/// Title and icon from the launcher metadata, cached until its files change.
fn meta(ctx: &Ctx, id: &str, dir: &Path) -> (String, Option<String>) {
    let root = pinokio_core::loader::launcher_root(dir);
    let stamp: Vec<Option<SystemTime>> = ["pinokio.js", "pinokio_meta.json", "pinokio.json"]
        .iter()
        .map(|f| {
            std::fs::metadata(root.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect();
    if let Ok(cache) = ctx.meta.lock() {
        if let Some((s, title, icon)) = cache.get(id) {
            if *s == stamp {
                return (title.clone(), icon.clone());
            }
        }
    }
    let (title, icon) = match ctx
        .engine
        .js_runtime()
        .ok()
        .and_then(|js| pinokio_core::loader::load_launcher(dir, &js).ok())
    {
        Some(l) => (l.title(), l.str_field("icon")),
        None => (id.to_string(), None),
    };
    if let Ok(mut cache) = ctx.meta.lock() {
        cache.insert(id.to_string(), (stamp, title.clone(), icon.clone()));
    }
    (title, icon)
}

/// The app object of docs/api.md; `None` when the app is neither installed
/// nor being installed.
fn app_object(ctx: &Ctx, store: Option<&StateStore>, id: &str) -> Option<Value> {
    let dir = ctx.engine.home().api().join(id);
    let is_installed = dir.is_dir() && apps::is_launcher(&dir);
    let job = ctx.hub.active_job(id);
    if !is_installed && job.as_ref().is_none_or(|j| j.action != "install") {
        return None;
    }
    let rec = store.and_then(|s| s.get_app(id).ok().flatten());
    let live = if is_installed {
        control::live(&ctx.engine, id, &dir)
    } else {
        None
    };
    let state = match job.as_ref().map(|j| j.action.as_str()) {
        Some("install") => "installing".to_string(),
        Some("update") => "updating".to_string(),
        Some("uninstall") => "uninstalling".to_string(),
        _ if live.is_some() => "running".to_string(),
        _ => match rec.as_ref().map(|r| r.state) {
            Some(AppState::Running) | None => {
                if rec.is_some() {
                    "stopped".to_string()
                } else {
                    "installed".to_string()
                }
            }
            Some(s) => s.as_str().to_string(),
        },
    };
    let (title, icon) = if is_installed {
        meta(ctx, id, &dir)
    } else {
        (id.to_string(), None)
    };
    let field = |k: &str| live.as_ref().and_then(|l| l.get(k).cloned());
    let exposures = field("exposures").unwrap_or_else(|| {
        json!(ctx
            .engine
            .exposer()
            .exposures()
            .into_iter()
            .filter(|e| e.app == id)
            .collect::<Vec<_>>())
    });
    Some(json!({
        "id": id,
        "state": state,
        "path": dir,
        "source_url": rec.as_ref().and_then(|r| r.source_url.clone()),
        "url": field("url").unwrap_or(Value::Null),
        "running": field("scripts").unwrap_or_else(|| json!([])),
        "pids": field("pids").unwrap_or_else(|| json!([])),
        "exposures": exposures,
        "job": job.map(|j| j.id.clone()),
        "last_error": rec.as_ref().and_then(|r| r.last_error.clone()),
        "title": title,
        "icon": icon,
    }))
}

fn app_action(ctx: &Arc<Ctx>, id: &str, action: &str, b: &Map<String, Value>) -> Res {
    let dir = ctx.engine.home().api().join(id);
    let action = match action {
        "install" => {
            let run = opt_bool(b, "run")?.unwrap_or(true);
            let source = opt_str(b, "source")?.unwrap_or(id);
            if dir.exists() {
                return Err(conflict(format!("app {id:?} is already installed")));
            }
            let url = if apps::is_url(source) {
                source.to_string()
            } else {
                check_id(source)?;
                match apps::catalog_clone_url(ctx.engine.home(), source) {
                    Ok(Some(u)) => u,
                    Ok(None) => {
                        return Err(not_found(format!(
                            "unknown app id {source:?}: it is not in the catalog"
                        )))
                    }
                    Err(e @ AppError::UnknownApp { .. }) => return Err(not_found(e.to_string())),
                    Err(e) => return Err(failed(e.to_string())),
                }
            };
            Action::Install { url, run }
        }
        other => {
            if !(dir.is_dir() && apps::is_launcher(&dir)) {
                return Err(not_installed(id));
            }
            match other {
                "start" => {
                    let script = match opt_str(b, "script")? {
                        Some(s) => Some(check_script(&dir, s)?),
                        None => None,
                    };
                    let args = match b.get("args") {
                        None | Some(Value::Null) => None,
                        Some(v @ Value::Object(_)) => Some(v.clone()),
                        Some(_) => return Err(bad_request("\"args\" must be an object")),
                    };
                    Action::Start(StartRequest {
                        app: id.to_string(),
                        script,
                        args,
                        expose: opt_bool(b, "expose")?,
                        via: opt_str(b, "via")?.map(String::from),
                    })
                }
                "stop" => Action::Stop,
                "update" => Action::Update,
                "reset" => Action::Reset,
                _ => Action::Uninstall,
            }
        }
    };
    let job = ctx
        .hub
        .new_job(id, action.name())
        .map_err(|Busy::Job(j)| conflict(format!("{id} is busy with job {j}")))?;
    let view = job.view();
    let ctx2 = ctx.clone();
    std::thread::Builder::new()
        .name(format!("job-{}", job.id))
        .spawn(move || jobs::run(&ctx2.engine, &ctx2.hub, &job, action))
        .map_err(|e| internal(format!("cannot start the job: {e}")))?;
    Ok(Reply::Json(202, json!({ "job": view })))
}

// ---------------------------------------------------------------------------
// Event streams

fn stream(ctx: &Ctx, req: Request, s: Stream) {
    // subscribe before the client sees the stream open: nothing printed
    // after that is missed
    let stopping = ctx.stopping.clone();
    let res = match s {
        Stream::Job { job, after } => {
            let sub = job.subscribe(after, CLIENT_QUEUE);
            let Ok(mut w) = SseWriter::start(req) else {
                return;
            };
            let mut first = Vec::new();
            if sub.missed > 0 {
                first.push(SseItem::new(
                    None,
                    "dropped",
                    format!("{{\"count\":{}}}", sub.missed),
                ));
            }
            let mut res = w.send(&first);
            for chunk in sub.replay.chunks(256) {
                if res.is_err() {
                    break;
                }
                let items: Vec<SseItem> = chunk.iter().map(|r| r.item()).collect();
                res = w.send(&items);
            }
            let res = match (res, sub.queue) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(q)) => w.pump(&q, &stopping).map(|_| ()),
                (Ok(()), None) => {
                    let data = serde_json::to_string(&sub.view).unwrap_or_default();
                    let data = ctx.hub.redactor().redact(&data).into_owned();
                    w.send(&[SseItem::new(None, "end", data)])
                }
            };
            res.map(|()| w)
        }
        Stream::Logs { app, dir, lines } => {
            let q = ctx.hub.subscribe_logs(&app);
            let Ok(mut w) = SseWriter::start(req) else {
                return;
            };
            let tail = applogs::tail(&dir, None, lines).unwrap_or_default();
            let items: Vec<SseItem> = tail
                .iter()
                .map(|l| {
                    let data = log_line(l).to_string();
                    SseItem::new(None, "log", ctx.hub.redactor().redact(&data).into_owned())
                })
                .collect();
            let mut res = Ok(());
            for chunk in items.chunks(256) {
                res = w.send(chunk);
                if res.is_err() {
                    break;
                }
            }
            res.and_then(|()| w.pump(&q, &stopping).map(|_| ()))
                .map(|()| w)
        }
    };
    if let Ok(w) = res {
        w.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths() {
        assert!(valid_id("comfy.ui-2_x"));
        assert!(!valid_id(".."));
        assert!(!valid_id("."));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(129)));
        assert!(relative_ok("start.js"));
        assert!(relative_ok("pinokio/start.js"));
        assert!(!relative_ok("../x.js"));
        assert!(!relative_ok("a/../../x.js"));
        assert!(!relative_ok("/etc/passwd"));
        assert_eq!(pct_decode("%2e%2E", false).as_deref(), Some(".."));
        assert_eq!(pct_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(pct_decode("%zz", false), None);
    }
}
