//! The HTTP API of docs/api.md over real HTTP on 127.0.0.1, with a real
//! engine running a real launcher (cloned from a bare git repository by its
//! catalog id, serving HTTP with Python).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const MIN: Duration = Duration::from_secs(60);

#[test]
fn request_rules_on_a_loopback_bind() {
    let f = Fixture::new();
    let token = f.token();
    let port = f.addr.port();
    let mut bodies: Vec<String> = Vec::new();
    let mut keep = |r: &Resp| bodies.push(r.text());

    // health: no token, says whether this client needs one
    let r = f.get("/api/v1/health");
    keep(&r);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], true);
    assert_eq!(r.json()["auth"], "loopback");
    assert_eq!(r.header("Content-Type"), Some("application/json"));

    // the token file: created on first use, private
    let tp = f.home.join("http-token");
    assert_eq!(
        std::fs::metadata(&tp).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&tp).unwrap().trim(), token);
    assert_eq!(token.len(), 64);

    // the web UI
    let r = f.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("/ui/app.js"));
    assert_eq!(f.get("/ui/app.js").status, 200);
    assert_eq!(f.get("/ui/style.css").status, 200);
    assert_eq!(f.get("/ui/nope.js").status, 404);
    let r = f.get("/?token=wrong");
    assert_eq!(r.status, 200);
    assert!(r.header("Set-Cookie").is_none());
    let r = f.get(&format!("/?token={token}"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/"));
    let cookie = r.header("Set-Cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("pinokio_token={token};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));

    // loopback names need no token
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let r = request(f.addr, "GET", "/api/v1/apps", &[("Host", &host)], None);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.json(), json!({"apps": []}));
    }
    // a tunnel's Host needs the token (DNS rebinding, public URLs)
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; pinokio_token={token}");
    for host in [
        "abc-def.trycloudflare.com",
        "127.0.0.1.nip.io",
        "localhost.evil.com",
    ] {
        let r = request(f.addr, "GET", "/api/v1/apps", &[("Host", host)], None);
        keep(&r);
        assert_eq!(r.status, 421, "{host}");
        assert_eq!(r.kind(), "bad_host");
        let r = request(
            f.addr,
            "GET",
            "/api/v1/apps",
            &[("Host", host), ("Authorization", "Bearer nope")],
            None,
        );
        assert_eq!(r.status, 421);
        let r = request(
            f.addr,
            "GET",
            "/api/v1/apps",
            &[("Host", host), ("Authorization", &bearer)],
            None,
        );
        assert_eq!(r.status, 200, "{host}");
        let r = request(
            f.addr,
            "GET",
            "/api/v1/apps",
            &[("Host", host), ("Cookie", &cookie)],
            None,
        );
        assert_eq!(r.status, 200, "{host}");
        // health answers anyone, and tells them the token is needed
        let r = request(f.addr, "GET", "/api/v1/health", &[("Host", host)], None);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["auth"], "token");
    }
    // ?token= works only on event streams
    let r = request(
        f.addr,
        "GET",
        &format!("/api/v1/apps?token={token}"),
        &[("Host", "x.trycloudflare.com")],
        None,
    );
    assert_eq!(r.status, 421);
    let r = request(
        f.addr,
        "GET",
        &format!("/api/v1/runs/77/events?token={token}"),
        &[("Host", "x.trycloudflare.com")],
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.kind(), "not_found");

    // cross-origin state changes are refused, same-origin ones are not
    let own = format!("http://127.0.0.1:{port}");
    for (h, v) in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Origin", "http://127.0.0.1:1"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = request(
            f.addr,
            "POST",
            "/api/v1/apps/hello/install",
            &[(h, v), ("Authorization", &bearer)],
            Some(b"{}"),
        );
        keep(&r);
        assert_eq!(r.status, 403, "{h}: {v}");
        assert_eq!(r.kind(), "cross_origin");
    }
    assert!(!f.app_dir().exists(), "a refused install ran");
    let r = request(
        f.addr,
        "POST",
        "/api/v1/apps/nothere/stop",
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        Some(b"{}"),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.kind(), "not_found");

    // ids and paths
    for path in [
        "/api/v1/apps/%2e%2e",
        "/api/v1/apps/%2E%2E/menu",
        "/api/v1/apps/..",
        "/api/v1/apps/../../etc/passwd",
        "/api/v1/apps/a%2Fb/menu",
        "/api/v1/apps/..%2F..%2Fetc/logs",
        "/api/v1/apps/hello%00/logs",
        "/api/v1/catalog/%2e%2e",
        "/api/v1/runs?app=..",
    ] {
        let r = f.get(path);
        keep(&r);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.kind(), "bad_path", "{path}");
    }
    let long = "a".repeat(129);
    assert_eq!(f.get(&format!("/api/v1/apps/{long}")).kind(), "bad_path");
    for (path, body) in [
        ("/api/v1/apps/%2e%2e/install", json!({})),
        ("/api/v1/apps/..%2f..%2ftmp/install", json!({})),
        ("/api/v1/apps/x/install", json!({"source": "../../etc"})),
        ("/api/v1/apps/x/install", json!({"source": "%2e%2e"})),
    ] {
        let r = f.post(path, body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.kind(), "bad_path");
    }
    assert!(std::fs::read_dir(f.home.join("api"))
        .unwrap()
        .next()
        .is_none());

    // bodies
    let big = vec![b' '; 1024 * 1024 + 10];
    let r = request(f.addr, "POST", "/api/v1/apps/x/stop", &[], Some(&big));
    assert_eq!(r.status, 413);
    assert_eq!(r.kind(), "too_large");
    let mut big_json = b"{\"source\":\"".to_vec();
    big_json.extend(vec![b'a'; 2 * 1024 * 1024]);
    big_json.extend(b"\"}");
    let r = request(f.addr, "POST", "/api/v1/login", &[], Some(&big_json));
    assert_eq!(r.kind(), "too_large");
    let r = request(
        f.addr,
        "POST",
        "/api/v1/apps/x/install",
        &[],
        Some(b"{nope"),
    );
    assert_eq!((r.status, r.kind().as_str()), (400, "bad_request"));
    let r = request(f.addr, "POST", "/api/v1/apps/x/install", &[], Some(b"[1]"));
    assert_eq!(r.kind(), "bad_request");
    let r = f.post("/api/v1/apps/x/install", json!({"run": "yes"}));
    assert_eq!(r.kind(), "bad_request");

    // methods and unknown paths
    let r = f.get("/api/v1/apps/hello/install");
    assert_eq!((r.status, r.kind().as_str()), (405, "method_not_allowed"));
    assert_eq!(f.post("/api/v1/apps", json!({})).status, 405);
    assert_eq!(f.post("/api/v1/health", json!({})).status, 405);
    let r = f.get("/api/v1/nope");
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    assert_eq!(f.get("/api/v1/apps/hello/nope").status, 404);
    assert_eq!(f.get("/api/v2/apps").status, 404);
    let r = f.get("/api/v1/apps/hello");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("hello"));

    // session
    let r = f.post("/api/v1/login", json!({"token": "wrong"}));
    keep(&r);
    assert_eq!((r.status, r.kind().as_str()), (401, "unauthorized"));
    let r = f.post("/api/v1/login", json!({"token": token}));
    assert_eq!(r.status, 204);
    assert!(r.header("Set-Cookie").unwrap().contains(&token));
    let r = request(
        f.addr,
        "POST",
        "/api/v1/login",
        &[("Origin", "https://evil.example")],
        Some(json!({"token": token}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 403);
    let r = f.post("/api/v1/logout", json!({}));
    assert_eq!(r.status, 204);
    assert!(r.header("Set-Cookie").unwrap().contains("Max-Age=0"));

    // the token never appears in a body
    for b in &bodies {
        assert!(!b.contains(&token), "token echoed: {b}");
    }
}

#[test]
fn a_non_loopback_bind_always_needs_the_token() {
    let f = Fixture::on("0.0.0.0");
    let token = f.token();
    let bearer = format!("Bearer {token}");
    assert!(f.server.as_ref().unwrap().token_always);
    let r = f.get("/api/v1/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["auth"], "token");
    // connected through 127.0.0.1 with a loopback Host: still refused
    for path in [
        "/api/v1/apps",
        "/api/v1/catalog",
        "/api/v1/runs",
        "/api/v1/inputs",
    ] {
        let r = f.get(path);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.kind(), "unauthorized");
        assert!(!r.text().contains(&token));
    }
    let r = f.post("/api/v1/apps/hello/install", json!({}));
    assert_eq!(r.status, 401);
    assert!(!f.app_dir().exists());
    let r = request(
        f.addr,
        "GET",
        "/api/v1/apps",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.status, 200);
    let r = request(
        f.addr,
        "GET",
        "/api/v1/apps",
        &[("Cookie", &format!("pinokio_token={token}"))],
        None,
    );
    assert_eq!(r.status, 200);
    let r = request(
        f.addr,
        "GET",
        "/api/v1/apps",
        &[("Authorization", "Bearer x")],
        None,
    );
    assert_eq!(r.status, 401);
    // ?token= on event streams only
    assert_eq!(f.get(&format!("/api/v1/apps?token={token}")).status, 401);
    assert_eq!(f.get("/api/v1/runs/5/events").status, 401);
    let r = f.get(&format!("/api/v1/runs/5/events?token={token}"));
    assert_eq!(r.status, 404, "{}", r.text());
    // the page itself is served (it shows the login form)
    assert_eq!(f.get("/").status, 200);
}

#[test]
fn catalog_endpoints() {
    let f = Fixture::new();
    let v = f.get("/api/v1/catalog").json();
    assert_eq!(v["total"], 3);
    assert_eq!(v["categories"], json!(["IMAGE", "UTILITY"]));
    let ids: Vec<&str> = v["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["broken", "hello", "other-image"]);
    let hello = &v["apps"][1];
    for k in [
        "id",
        "name",
        "category",
        "tags",
        "author",
        "summary",
        "repo_url",
        "status",
        "installable",
        "installed",
    ] {
        assert!(hello.get(k).is_some(), "{k} missing: {hello}");
    }
    assert_eq!(hello["installable"], true);
    assert_eq!(hello["installed"], false);
    assert_eq!(v["apps"][0]["installable"], false);
    assert_eq!(v["apps"][0]["status"], "missing");

    let v = f.get("/api/v1/catalog?q=hello").json();
    assert_eq!(v["apps"][0]["id"], "hello");
    let v = f.get("/api/v1/catalog?q=Hello+web").json();
    assert_eq!(v["apps"][0]["id"], "hello");
    let v = f.get("/api/v1/catalog?category=image").json();
    assert_eq!(v["total"], 1);
    assert_eq!(v["apps"][0]["id"], "other-image");
    let v = f.get("/api/v1/catalog?tag=web&limit=1&offset=1").json();
    assert_eq!(v["total"], 3);
    assert_eq!(v["apps"].as_array().unwrap().len(), 1);
    assert_eq!(v["apps"][0]["id"], "hello");
    assert_eq!(f.get("/api/v1/catalog?limit=x").kind(), "bad_request");
    let v = f.get("/api/v1/catalog?limit=100000").json();
    assert_eq!(v["apps"].as_array().unwrap().len(), 3);

    let v = f.get("/api/v1/catalog/hello").json();
    assert_eq!(v["name"], "Hello web");
    let r = f.get("/api/v1/catalog/helo");
    assert_eq!(r.status, 404);
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(m.contains("did you mean") && m.contains("hello"), "{m}");

    // installs that cannot work are refused before any job
    let r = f.post("/api/v1/apps/broken/install", json!({}));
    assert_eq!((r.status, r.kind().as_str()), (422, "failed"));
    let r = f.post("/api/v1/apps/zzzzzzzz/install", json!({}));
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    assert_eq!(f.get("/api/v1/runs").json(), json!({"runs": []}));

    f.install();
    let v = f.get("/api/v1/catalog/hello").json();
    assert_eq!(v["installed"], true);
}

fn kinds(evs: &[Ev]) -> Vec<String> {
    evs.iter().map(|e| e.event.clone()).collect()
}

#[test]
fn app_lifecycle_end_to_end() {
    let f = Fixture::new();

    // install by catalog id; three clients follow the job's events
    let job = f.action(APP, "install", json!({}));
    let path = format!("/api/v1/runs/{job}/events");
    let mut followers: Vec<Sse> = (0..3).map(|_| Sse::open(f.addr, &path, &[])).collect();
    let mut seen = Vec::new();
    for s in &mut followers {
        assert_eq!(s.status, 200);
        let ct = s
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .unwrap();
        assert!(ct.1.starts_with("text/event-stream"));
        let (evs, ended) = s.until(MIN, |e| e.event == "end");
        assert!(ended, "no end event: {:?}", kinds(&evs));
        // the stream closes after `end`
        assert!(s.next(Duration::from_secs(5)).is_none());
        seen.push(evs);
    }
    let evs = &seen[0];
    let k = kinds(evs);
    for want in ["run_start", "step_start", "output", "run_end", "job", "end"] {
        assert!(k.contains(&want.to_string()), "{want} missing: {k:?}");
    }
    let end = evs.last().unwrap().json();
    assert_eq!(end["state"], "succeeded", "{end}");
    assert_eq!(end["action"], "install");
    assert!(evs.iter().any(|e| e.event == "output"
        && e.json()["text"]
            .as_str()
            .unwrap()
            .contains("installing hello")));
    // numbered, in order, the same for every client
    let ids: Vec<u64> = evs
        .iter()
        .filter_map(|e| e.id.as_ref()?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(ids[0], 1);
    for e in evs.iter().filter(|e| e.id.is_some()) {
        assert_eq!(e.json()["seq"].to_string(), *e.id.as_ref().unwrap());
        assert!(e.json()["script"].is_string());
        assert_eq!(e.json()["type"], e.event);
    }
    for other in &seen[1..] {
        assert_eq!(
            other.iter().map(|e| &e.data).collect::<Vec<_>>(),
            evs.iter().map(|e| &e.data).collect::<Vec<_>>()
        );
    }
    // replay after an id, by header or query, and as JSON
    let mut s = Sse::open(f.addr, &path, &[("Last-Event-ID", "2")]);
    let (re, _) = s.until(MIN, |e| e.event == "end");
    assert_eq!(re[0].id.as_deref(), Some("3"));
    let mut s = Sse::open(f.addr, &format!("{path}?after=3"), &[]);
    assert_eq!(s.next(MIN).unwrap().id.as_deref(), Some("4"));
    let v = f.get(&format!("{path}?format=json&after=1")).json();
    assert_eq!(v["done"], true);
    assert_eq!(v["events"][0]["seq"], 2);
    let last = *ids.last().unwrap();
    assert_eq!(v["next"], last);
    assert_eq!(v["events"].as_array().unwrap().len() as u64, last - 1);
    let v = f.get(&format!("/api/v1/runs/{job}")).json();
    assert_eq!(v["events"], last);
    assert_eq!(v["app"], APP);
    assert!(v["ended_ms"].as_u64().unwrap() >= v["started_ms"].as_u64().unwrap());

    // the app object
    let v = f.get("/api/v1/apps").json();
    assert_eq!(v["apps"].as_array().unwrap().len(), 1);
    let a = f.get("/api/v1/apps/hello").json();
    assert_eq!(a["id"], APP);
    assert_eq!(a["state"], "installed");
    assert_eq!(a["title"], "Hello web");
    assert_eq!(a["icon"], "icon.png");
    assert_eq!(a["job"], Value::Null);
    assert_eq!(a["url"], Value::Null);
    assert!(a["source_url"]
        .as_str()
        .unwrap()
        .ends_with("fixtures/hello.git"));
    assert_eq!(a["path"], f.app_dir().display().to_string());
    assert!(f.app_dir().join("installed.txt").is_file());
    let r = f.post("/api/v1/apps/hello/install", json!({}));
    assert_eq!((r.status, r.kind().as_str()), (409, "conflict"));

    // the menu, scripts relative to the app
    let m = f.get("/api/v1/apps/hello/menu").json()["menu"].clone();
    assert_eq!(m["title"], "Hello web");
    assert_eq!(m["items"][0]["text"], "Start");
    assert_eq!(m["items"][0]["script"], "start.json");
    assert_eq!(m["items"][0]["default"], true);
    assert_eq!(m["items"][0]["running"], false);

    // start: a job that finds the web UI
    let t0 = Instant::now();
    let url = f.start();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(app_get(&url, "/"), Some(200));
    let a = f.get("/api/v1/apps/hello").json();
    assert_eq!(a["state"], "running");
    assert_eq!(a["url"], url.as_str());
    assert_eq!(a["running"], json!(["start.json"]));
    let pids: Vec<u32> = a["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert!(!pids.is_empty());
    let m = f.get("/api/v1/apps/hello/menu").json()["menu"].clone();
    assert_eq!(m["items"][0]["url"], url.as_str());
    assert_eq!(m["items"][1]["running"], true);
    // a second start finds it running
    assert_eq!(f.start(), url);

    // logs from the files
    let v = f.get("/api/v1/apps/hello/logs?lines=500").json();
    let lines = v["lines"].as_array().unwrap();
    let serving = lines
        .iter()
        .find(|l| l["text"].as_str().unwrap().contains("serving on http://"))
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(serving["script"], "start.json");
    assert!(serving["time"].as_str().unwrap().starts_with("20"));
    assert!(!serving["text"].as_str().unwrap().starts_with("20"));
    let v = f.get("/api/v1/apps/hello/logs?script=install.json").json();
    assert!(v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["script"] == "install.json"));
    assert!(!v["lines"].as_array().unwrap().is_empty());
    let v = f.get("/api/v1/apps/hello/logs?lines=1").json();
    assert_eq!(v["lines"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.get("/api/v1/apps/hello/logs?script=../x").kind(),
        "bad_path"
    );

    // runs, newest first
    let v = f.get("/api/v1/runs?app=hello").json();
    let actions: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["start", "start", "install"]);
    assert_eq!(v["runs"][0]["url"], url.as_str());
    assert_eq!(f.get("/api/v1/runs?app=other").json(), json!({"runs": []}));
    assert_eq!(f.get("/api/v1/runs/999").status, 404);
    assert_eq!(f.get("/api/v1/runs/999/events").status, 404);

    // exposure: this engine has no exposer, which is a clear failure
    let r = f.post("/api/v1/apps/hello/expose", json!({"via": "cloudflare"}));
    assert_eq!((r.status, r.kind().as_str()), (422, "failed"));
    assert_eq!(
        f.post("/api/v1/apps/hello/unexpose", json!({})).json(),
        json!({"stopped": []})
    );
    assert_eq!(f.get("/api/v1/exposures").json(), json!({"exposures": []}));
    assert_eq!(f.post("/api/v1/apps/nope/expose", json!({})).status, 404);

    // scripts must be files inside the app
    for script in ["../../etc/passwd", "/etc/passwd", "nope.json", "..", "logs"] {
        let r = f.post("/api/v1/apps/hello/start", json!({ "script": script }));
        assert_eq!(r.status, 400, "{script}: {}", r.text());
        assert_eq!(r.kind(), "bad_path");
    }
    let r = f.post("/api/v1/apps/hello/start", json!({ "args": [1] }));
    assert_eq!(r.kind(), "bad_request");

    // stop: the server and its shell are gone
    let id = f.action(APP, "stop", json!({}));
    let j = f.wait_job(&id, MIN);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(app_get(&url, "/"), None);
    wait_for(
        Duration::from_secs(10),
        "the app's processes to end",
        || pids.iter().all(|p| dead(*p)),
    );
    let a = f.get("/api/v1/apps/hello").json();
    assert_eq!(a["state"], "stopped");
    assert_eq!(a["url"], Value::Null);
    assert_eq!(a["pids"], json!([]));

    // update: git pull of a new commit
    std::fs::write(f.work.join("NEWS.md"), "new\n").unwrap();
    git(&f.work, &["add", "-A"]);
    git(&f.work, &["commit", "-q", "-m", "second"]);
    git(&f.work, &["push", "-q", "origin", "main"]);
    let id = f.action(APP, "update", json!({}));
    let j = f.wait_job(&id, MIN);
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(f.app_dir().join("NEWS.md").is_file());

    // reset: the launcher's reset script
    let id = f.action(APP, "reset", json!({}));
    assert_eq!(f.wait_job(&id, MIN)["state"], "succeeded");
    assert!(!f.app_dir().join("installed.txt").exists());
    assert_eq!(f.get("/api/v1/apps/hello").json()["state"], "installed");

    // uninstall
    let id = f.action(APP, "uninstall", json!({}));
    assert_eq!(f.wait_job(&id, MIN)["state"], "succeeded");
    assert!(!f.app_dir().exists());
    assert_eq!(f.get("/api/v1/apps/hello").status, 404);
    assert_eq!(f.get("/api/v1/apps").json(), json!({"apps": []}));
    for action in ["start", "stop", "update", "reset", "uninstall"] {
        let r = f.post(&format!("/api/v1/apps/hello/{action}"), json!({}));
        assert_eq!(r.status, 404, "{action}");
    }
    // install again, from a URL this time, without running the installer
    let bare = f.dir.path().join("repos/hello.git");
    let id = f.action(
        "hello2",
        "install",
        json!({"source": format!("file://{}", bare.display()), "run": false}),
    );
    assert_eq!(f.wait_job(&id, MIN)["state"], "succeeded");
    assert!(f.home.join("api/hello2/start.json").is_file());
    assert!(!f.home.join("api/hello2/installed.txt").exists());
}

fn set_rcvbuf(s: &TcpStream, bytes: i32) {
    // SAFETY: setsockopt on an open socket with a valid int.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

fn is_end(text: &str) -> bool {
    text.starts_with("SAY ") && text.ends_with(" end")
}

/// What one follower of the live log saw: (text, wall-clock ms at arrival),
/// and how many lines it was told it missed. `flood_done` counts the
/// followers that have seen the end of the flood.
fn follow(mut s: Sse, flood_done: Arc<AtomicUsize>) -> (Vec<(String, u64)>, u64) {
    let mut got = Vec::new();
    let mut dropped = 0;
    while let Some(e) = s.next(Duration::from_secs(120)) {
        let at = now_ms();
        match e.event.as_str() {
            "log" => {
                let text = e.json()["text"].as_str().unwrap_or("").to_string();
                if text.starts_with("FLOOD-END big") {
                    flood_done.fetch_add(1, Ordering::SeqCst);
                }
                let done = is_end(&text);
                got.push((text, at));
                if done {
                    break;
                }
            }
            "dropped" => dropped += e.json()["count"].as_u64().unwrap(),
            _ => {}
        }
    }
    (got, dropped)
}

#[test]
fn live_logs_reach_many_clients_fast_and_a_slow_client_stalls_nobody() {
    let f = Fixture::new();
    f.install();
    let url = f.start();
    let stream = "/api/v1/apps/hello/logs/stream?lines=0";

    // a client that does not read until the end, with a small receive buffer
    let slow = TcpStream::connect(f.addr).unwrap();
    set_rcvbuf(&slow, 64 * 1024);
    let mut slow = Sse::open_on(slow, f.addr, stream, &[]);
    assert_eq!(slow.status, 200);

    // the tail comes first
    let mut s = Sse::open(f.addr, "/api/v1/apps/hello/logs/stream?lines=5", &[]);
    let (tail, ok) = s.until(MIN, |e| {
        e.event == "log" && e.json()["text"].as_str().unwrap().contains("serving on")
    });
    assert!(ok, "{tail:?}");
    assert!(tail.len() <= 5);
    assert!(tail[0].json()["time"].is_string());
    drop(s);

    // five fast followers, each on its own thread
    let flood_done = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = (0..5)
        .map(|_| {
            let s = Sse::open(f.addr, stream, &[]);
            assert_eq!(s.status, 200);
            let done = flood_done.clone();
            std::thread::spawn(move || follow(s, done))
        })
        .collect();

    // lines printed by the app arrive within 100 ms
    for i in 0..5 {
        assert_eq!(app_get(&url, &format!("/say?first{i}")), Some(200));
        std::thread::sleep(Duration::from_millis(150));
    }
    // a flood that the slow client cannot take
    let t0 = Instant::now();
    assert_eq!(app_get(&url, "/flood?n=60000&tag=big"), Some(200));
    let flood_secs = t0.elapsed().as_secs_f64();
    eprintln!("flood printed in {flood_secs:.1} s");
    assert!(flood_secs < 60.0, "the app was slowed down: {flood_secs} s");
    // once the fast followers have the whole flood (the slow one is
    // stuck), lines still arrive at once
    wait_for(MIN, "the fast followers to get the flood", || {
        flood_done.load(Ordering::SeqCst) == 5
    });
    eprintln!(
        "fast followers have the flood after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    for i in 0..3 {
        assert_eq!(app_get(&url, &format!("/say?after{i}")), Some(200));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_eq!(app_get(&url, "/say?end"), Some(200));

    let mut all_latencies = Vec::new();
    for (n, h) in followers.into_iter().enumerate() {
        let (got, dropped) = h.join().unwrap();
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        let mut lat = Vec::new();
        for (t, at) in &got {
            if let Some(rest) = t.strip_prefix("SAY ") {
                let ms: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                lat.push(at.saturating_sub(ms));
            }
        }
        assert!(
            texts.iter().any(|t| t.starts_with("FLOOD-END big")),
            "follower {n} missed the end of the flood (dropped {dropped})"
        );
        let flood = texts.iter().filter(|t| t.starts_with("FLOOD big ")).count() as u64;
        assert!(
            flood + dropped >= 60_000,
            "follower {n}: {flood} lines + {dropped} dropped"
        );
        let afters = texts.iter().filter(|t| t.contains("after")).count();
        assert_eq!(afters, 3, "follower {n} missed lines after the flood");
        assert!(lat.len() >= 8, "follower {n}: {lat:?}");
        all_latencies.extend(lat);
    }
    all_latencies.sort();
    let median = all_latencies[all_latencies.len() / 2];
    let worst = *all_latencies.last().unwrap();
    eprintln!("log line latency: median {median} ms, worst {worst} ms");
    assert!(
        median <= 100,
        "median latency {median} ms: {all_latencies:?}"
    );
    assert!(worst <= 2000, "worst latency {worst} ms");

    eprintln!("followers done after {:.1} s", t0.elapsed().as_secs_f64());
    // the slow client: what it missed is reported, then the newest lines
    let mut dropped = 0;
    let mut last = String::new();
    while let Some(e) = slow.next(Duration::from_secs(10)) {
        match e.event.as_str() {
            "dropped" => dropped += e.json()["count"].as_u64().unwrap(),
            "log" => {
                last = e.json()["text"].as_str().unwrap().to_string();
                if is_end(&last) {
                    break;
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "slow client caught up after {:.1} s (dropped {dropped})",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        dropped > 0,
        "the slow client was never told it missed lines"
    );
    assert!(
        last.ends_with(" end"),
        "the slow client did not catch up: {last}"
    );
    // the engine kept going: the app answers and its status is right
    assert_eq!(f.get("/api/v1/apps/hello").json()["state"], "running");
}

#[test]
fn input_forms_over_the_api() {
    let f = Fixture::new();
    f.install();
    let wait_form = |job: &str| -> Value {
        let t0 = Instant::now();
        loop {
            let v = f.get("/api/v1/inputs").json();
            if let Some(x) = v["inputs"].as_array().unwrap().first() {
                return x.clone();
            }
            let j = f.get(&format!("/api/v1/runs/{job}")).json();
            assert_eq!(j["state"], "running", "{j}");
            assert!(t0.elapsed() < MIN, "no form");
            std::thread::sleep(Duration::from_millis(30));
        }
    };

    // answered
    let job = f.action(APP, "start", json!({"script": "ask.json"}));
    let form = wait_form(&job);
    assert_eq!(form["app"], APP);
    assert_eq!(form["job"], job.as_str());
    assert!(form["script"]
        .as_str()
        .unwrap()
        .ends_with("/api/hello/ask.json"));
    assert_eq!(form["form"]["title"], "Who?");
    assert_eq!(form["form"]["form"][0]["key"], "name");
    let id = form["id"].as_str().unwrap().to_string();
    // the job's events show the request
    let v = f
        .get(&format!("/api/v1/runs/{job}/events?format=json"))
        .json();
    assert!(v["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "input_request"));
    assert_eq!(v["done"], false);
    assert_eq!(
        f.post("/api/v1/inputs/999", json!({"values": {}})).status,
        404
    );
    assert_eq!(
        f.post(&format!("/api/v1/inputs/{id}"), json!({"values": 3}))
            .kind(),
        "bad_request"
    );
    // busy: no other action while the job runs (stop is allowed)
    let r = f.post("/api/v1/apps/hello/update", json!({}));
    assert_eq!((r.status, r.kind().as_str()), (409, "conflict"));
    assert_eq!(f.get("/api/v1/apps/hello").json()["job"], job.as_str());
    let r = f.post(
        &format!("/api/v1/inputs/{id}"),
        json!({"values": {"name": "Ada"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"ok": true}));
    let j = f.wait_job(&job, MIN);
    assert_eq!(j["state"], "succeeded", "{j}");
    let v = f
        .get(&format!("/api/v1/runs/{job}/events?format=json"))
        .json();
    assert!(v.to_string().contains("ANSWER=hi-Ada"), "{v}");
    assert_eq!(
        f.post(&format!("/api/v1/inputs/{id}"), json!({"values": {}}))
            .status,
        404
    );

    // cancelled: the step goes on without answers (and fails: no default)
    let job = f.action(APP, "start", json!({"script": "ask.json"}));
    let id = wait_form(&job)["id"].as_str().unwrap().to_string();
    assert_eq!(
        f.post(&format!("/api/v1/inputs/{id}/cancel"), json!({}))
            .status,
        200
    );
    assert_eq!(
        f.post(&format!("/api/v1/inputs/{id}/cancel"), json!({}))
            .status,
        404
    );
    let j = f.wait_job(&job, MIN);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("name"), "{j}");

    // stopping the app cancels its forms; the job ends as stopped
    let job = f.action(APP, "start", json!({"script": "ask.json"}));
    wait_form(&job);
    let stop = f.action(APP, "stop", json!({}));
    assert_eq!(f.wait_job(&stop, MIN)["state"], "succeeded");
    let j = f.wait_job(&job, MIN);
    assert_eq!(j["state"], "stopped", "{j}");
    assert_eq!(f.get("/api/v1/inputs").json(), json!({"inputs": []}));
}

#[test]
fn secrets_are_not_echoed() {
    let f = Fixture::new();
    f.install();
    let secret = "hf_Sup3rSecretValue0123456789";
    let env = f.app_dir().join("ENVIRONMENT");
    let mut text = std::fs::read_to_string(&env).unwrap_or_default();
    text.push_str(&format!("\nHF_TOKEN={secret}\n"));
    std::fs::write(&env, text).unwrap();
    let job = f.action(APP, "start", json!({"script": "secret.json"}));
    let j = f.wait_job(&job, MIN);
    assert_eq!(j["state"], "succeeded", "{j}");
    // the shell did print it (the app's own log file has it) ...
    let raw = std::fs::read_to_string(f.app_dir().join("logs/shell/secret.json.log")).unwrap();
    assert!(raw.contains(secret));
    // ... but no answer of the server does
    let token = f.token();
    let mut sse = Sse::open(f.addr, &format!("/api/v1/runs/{job}/events"), &[]);
    let (evs, _) = sse.until(MIN, |e| e.event == "end");
    let streamed: String = evs.iter().map(|e| e.data.clone()).collect();
    assert!(streamed.contains("the token is ***"), "{streamed}");
    let mut logs = Sse::open(f.addr, "/api/v1/apps/hello/logs/stream?lines=50", &[]);
    let (log_evs, _) = logs.until(Duration::from_secs(3), |_| false);
    let streamed_logs: String = log_evs.iter().map(|e| e.data.clone()).collect();
    assert!(
        streamed_logs.contains("the token is ***"),
        "{streamed_logs}"
    );
    for path in [
        format!("/api/v1/runs/{job}/events?format=json"),
        format!("/api/v1/runs/{job}"),
        "/api/v1/apps/hello/logs?lines=100".to_string(),
        "/api/v1/apps".to_string(),
        "/api/v1/system".to_string(),
        "/api/v1/health".to_string(),
    ] {
        let body = f.get(&path).text();
        assert!(!body.contains(secret), "{path} shows the secret: {body}");
        assert!(!body.contains(&token), "{path} shows the API token");
    }
    for s in [&streamed, &streamed_logs] {
        assert!(!s.contains(secret) && !s.contains(&token));
    }
    let v = f.get("/api/v1/apps/hello/logs?lines=100").json();
    assert!(v.to_string().contains("the token is ***"));
}

#[test]
fn system_reports_the_machine_like_doctor() {
    let f = Fixture::new();
    let v = f.get("/api/v1/system").json();
    for k in ["platform", "layout", "resources", "gpus", "tools", "fixes"] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    assert_eq!(v["home"], f.home.display().to_string());
    assert_eq!(v["engine_pid"], std::process::id());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_stream_survives_a_client_that_goes_away() {
    // clients that disconnect mid-stream are noticed and do not break others
    let f = Fixture::new();
    f.install();
    let url = f.start();
    let stream = "/api/v1/apps/hello/logs/stream?lines=0";
    for _ in 0..20 {
        let mut s = TcpStream::connect(f.addr).unwrap();
        write!(s, "GET {stream} HTTP/1.1\r\nHost: {}\r\n\r\n", f.addr).unwrap();
        drop(s);
    }
    let mut keep = Sse::open(f.addr, stream, &[]);
    assert_eq!(app_get(&url, "/say?still-here"), Some(200));
    let (_, ok) = keep.until(MIN, |e| e.data.contains("still-here"));
    assert!(ok);
}
