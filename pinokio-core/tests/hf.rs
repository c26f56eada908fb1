//! `hf.download` against a stand-in for the Hugging Face Hub written here:
//! the revision API (file list, blob ids, LFS sha256), `resolve` URLs that
//! serve small files and redirect LFS files to a second "CDN" server on
//! another loopback address (127.0.0.2), private repositories that need a
//! token, and a switch that corrupts an LFS file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pinokio_core::events::{CollectSink, EventKind};
use pinokio_core::{Engine, Facts, PinokioHome, RunOutcome, RunRequest};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TOKEN: &str = "hf_SECRET_token_123";

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x: u32 = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

#[derive(Clone)]
struct File {
    path: String,
    body: Vec<u8>,
    lfs: bool,
}

impl File {
    fn new(path: &str, body: Vec<u8>, lfs: bool) -> File {
        File {
            path: path.into(),
            body,
            lfs,
        }
    }
    /// A stand-in git blob id (40 hex).
    fn blob_id(&self) -> String {
        sha(&[b"blob ".as_slice(), &self.body].concat())[..40].to_string()
    }
}

#[derive(Clone)]
struct Repo {
    /// `model`, `dataset`, `space`.
    kind: &'static str,
    id: &'static str,
    private: bool,
    /// revision name -> commit
    refs: BTreeMap<String, String>,
    /// commit -> files
    commits: BTreeMap<String, Vec<File>>,
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    auth: Option<String>,
}

#[derive(Default)]
struct State {
    repos: Vec<Repo>,
    /// sha256 -> bytes served by the CDN
    blobs: BTreeMap<String, Vec<u8>>,
    /// Serve wrong bytes for this sha256.
    corrupt: Option<String>,
    hub_log: Vec<Req>,
    cdn_log: Vec<Req>,
}

struct Hub {
    endpoint: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Hub {
    fn hub_log(&self) -> Vec<Req> {
        self.state.lock().unwrap().hub_log.clone()
    }
    fn cdn_log(&self) -> Vec<Req> {
        self.state.lock().unwrap().cdn_log.clone()
    }
    fn resolve_gets(&self) -> usize {
        self.hub_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/resolve/"))
            .count()
            + self.cdn_log().iter().filter(|r| r.method == "GET").count()
    }
}

fn start(repos: Vec<Repo>) -> Hub {
    let mut st = State {
        repos,
        ..Default::default()
    };
    for r in &st.repos {
        for files in r.commits.values() {
            for f in files.iter().filter(|f| f.lfs) {
                st.blobs.insert(sha(&f.body), f.body.clone());
            }
        }
    }
    let state = Arc::new(Mutex::new(st));
    let stop = Arc::new(AtomicBool::new(false));
    let cdn = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let cdn_base = format!("http://{}", cdn.local_addr().unwrap());
    let hub = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hub.local_addr().unwrap());
    for (l, is_hub) in [(hub, true), (cdn, false)] {
        let (state, cdn_base) = (state.clone(), cdn_base.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (state, cdn_base) = (state.clone(), cdn_base.clone());
                std::thread::spawn(move || {
                    let _ = handle(c, &state, is_hub, &cdn_base);
                });
            }
        });
    }
    Hub {
        endpoint,
        state,
        stop,
    }
}

fn reply(
    c: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    head_only: bool,
) {
    let mut h = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let _ = c.write_all(h.as_bytes());
    if !head_only {
        let _ = c.write_all(body);
    }
}

fn serve_bytes(c: &mut TcpStream, body: &[u8], range: Option<(u64, Option<u64>)>, head: bool) {
    let len = body.len() as u64;
    let mut headers = vec![("Accept-Ranges", "bytes".to_string())];
    match range {
        Some((a, b)) => {
            let end = b.map(|b| b + 1).unwrap_or(len).min(len);
            headers.push((
                "Content-Range",
                format!("bytes {a}-{}/{len}", end.saturating_sub(1)),
            ));
            reply(
                c,
                "206 Partial Content",
                &headers,
                &body[a as usize..end as usize],
                head,
            );
        }
        None => reply(c, "200 OK", &headers, body, head),
    }
}

fn handle(
    mut c: TcpStream,
    state: &Mutex<State>,
    is_hub: bool,
    cdn_base: &str,
) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut range = None;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        let v = v.trim();
        if k.eq_ignore_ascii_case("range") {
            let (a, b) = v.trim_start_matches("bytes=").split_once('-').unwrap();
            range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().ok()));
        } else if k.eq_ignore_ascii_case("authorization") {
            auth = Some(v.to_string());
        }
    }
    let head = method == "HEAD";
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut st = state.lock().unwrap();
    let req = Req {
        method: method.clone(),
        path: target.clone(),
        auth: auth.clone(),
    };
    if !is_hub {
        st.cdn_log.push(req);
        let sha = path.trim_start_matches("/blob/").to_string();
        let Some(mut body) = st.blobs.get(&sha).cloned() else {
            reply(&mut c, "404 Not Found", &[], b"", head);
            return Ok(());
        };
        if st.corrupt.as_deref() == Some(sha.as_str()) {
            body[0] ^= 0xff;
        }
        drop(st);
        serve_bytes(&mut c, &body, range, head);
        return Ok(());
    }
    st.hub_log.push(req);
    let authorized = auth.as_deref() == Some(&format!("Bearer {TOKEN}"));
    let err = |c: &mut TcpStream, status: &str, code: &str| {
        reply(
            c,
            status,
            &[("X-Error-Code", code.to_string())],
            b"{}",
            head,
        )
    };
    // /api/{kind}s/{org}/{name}/revision/{rev}
    if let Some(rest) = path.strip_prefix("/api/") {
        let segs: Vec<&str> = rest.splitn(5, '/').collect();
        let (kind, id, rev) = match segs.as_slice() {
            [k, org, name, "revision", rev] => {
                (k.trim_end_matches('s'), format!("{org}/{name}"), *rev)
            }
            _ => {
                err(&mut c, "400 Bad Request", "BadRequest");
                return Ok(());
            }
        };
        let rev = pinokio_core::download::percent_decode(rev);
        assert!(target.contains("blobs=true"), "{target}");
        let Some(repo) = st.repos.iter().find(|r| r.kind == kind && r.id == id) else {
            err(&mut c, "401 Unauthorized", "RepoNotFound");
            return Ok(());
        };
        if repo.private && !authorized {
            err(&mut c, "401 Unauthorized", "RepoNotFound");
            return Ok(());
        }
        let commit = repo.refs.get(&rev).cloned().unwrap_or(rev.clone());
        let Some(files) = repo.commits.get(&commit) else {
            err(&mut c, "404 Not Found", "RevisionNotFound");
            return Ok(());
        };
        let siblings: Vec<Value> = files
            .iter()
            .map(|f| {
                let mut s =
                    json!({ "rfilename": f.path, "size": f.body.len(), "blobId": f.blob_id() });
                if f.lfs {
                    s["lfs"] =
                        json!({ "sha256": sha(&f.body), "size": f.body.len(), "pointerSize": 134 });
                }
                s
            })
            .collect();
        let body = json!({ "id": id, "sha": commit, "siblings": siblings }).to_string();
        reply(
            &mut c,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
            head,
        );
        return Ok(());
    }
    // /[datasets/|spaces/]{org}/{name}/resolve/{commit}/{path}
    let (kind, rest) = if let Some(r) = path.strip_prefix("/datasets/") {
        ("dataset", r)
    } else if let Some(r) = path.strip_prefix("/spaces/") {
        ("space", r)
    } else {
        ("model", &path[1..])
    };
    let segs: Vec<&str> = rest.splitn(5, '/').collect();
    let [org, name, "resolve", commit, file] = segs.as_slice() else {
        err(&mut c, "404 Not Found", "EntryNotFound");
        return Ok(());
    };
    let id = format!("{org}/{name}");
    let file = pinokio_core::download::percent_decode(file);
    let Some(repo) = st.repos.iter().find(|r| r.kind == kind && r.id == id) else {
        err(&mut c, "401 Unauthorized", "RepoNotFound");
        return Ok(());
    };
    if repo.private && !authorized {
        err(&mut c, "401 Unauthorized", "RepoNotFound");
        return Ok(());
    }
    let Some(f) = repo
        .commits
        .get(*commit)
        .and_then(|fs| fs.iter().find(|f| f.path == file))
        .cloned()
    else {
        err(&mut c, "404 Not Found", "EntryNotFound");
        return Ok(());
    };
    drop(st);
    if f.lfs {
        let loc = format!("{cdn_base}/blob/{}?X-Amz-Signature=SIGNED", sha(&f.body));
        reply(&mut c, "302 Found", &[("Location", loc)], b"", head);
    } else {
        serve_bytes(&mut c, &f.body, range, head);
    }
    Ok(())
}

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

fn model_repo() -> (Repo, Vec<File>, Vec<File>) {
    let main = vec![
        File::new("config.json", br#"{"a": 1}"#.to_vec(), false),
        File::new("model.safetensors", data(300_000, 1), true),
        File::new("sub/vae/x.bin", data(70_000, 2), true),
        File::new("notes.txt", b"hello\n".to_vec(), false),
    ];
    let v2 = vec![
        File::new("config.json", br#"{"a": 2}"#.to_vec(), false),
        File::new("model.safetensors", data(120_000, 3), true),
        File::new("sub/vae/x.bin", data(50_000, 4), true),
        File::new("sub/readme.md", b"# v2\n".to_vec(), false),
    ];
    let repo = Repo {
        kind: "model",
        id: "org/model",
        private: false,
        refs: [
            ("main".to_string(), C1.to_string()),
            ("v2".into(), C2.into()),
        ]
        .into(),
        commits: [(C1.to_string(), main.clone()), (C2.to_string(), v2.clone())].into(),
    };
    (repo, main, v2)
}

fn dataset_repo() -> (Repo, File) {
    let csv = File::new("data/train.csv", b"a,b\n1,2\n".to_vec(), false);
    let repo = Repo {
        kind: "dataset",
        id: "org/data",
        private: false,
        refs: [("main".to_string(), C1.to_string())].into(),
        commits: [(
            C1.to_string(),
            vec![csv.clone(), File::new("big.parquet", data(40_000, 5), true)],
        )]
        .into(),
    };
    (repo, csv)
}

fn private_repo() -> (Repo, File) {
    let w = File::new("w.bin", data(90_000, 6), true);
    let repo = Repo {
        kind: "model",
        id: "org/private",
        private: true,
        refs: [("main".to_string(), C1.to_string())].into(),
        commits: [(C1.to_string(), vec![w.clone()])].into(),
    };
    (repo, w)
}

struct H {
    dir: tempfile::TempDir,
    engine: Engine,
    sink: Arc<CollectSink>,
}

impl H {
    /// An engine whose process environment has `HF_ENDPOINT` and `extra`.
    fn new(endpoint: &str, extra: &[(&str, &str)]) -> H {
        let dir = tempfile::tempdir().unwrap();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for k in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(k) {
                env.insert(k.into(), v);
            }
        }
        env.insert("HF_ENDPOINT".into(), endpoint.into());
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        let sink = Arc::new(CollectSink::new());
        let engine = Engine::builder(PinokioHome::new(dir.path().join("home")))
            .facts(Facts::cpu_only())
            .env(env)
            .sink(sink.clone())
            .build()
            .unwrap();
        H { dir, engine, sink }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn app(&self) -> PathBuf {
        self.home().join("api/app")
    }
    fn run(&self, steps: Value) -> RunOutcome {
        std::fs::create_dir_all(self.app()).unwrap();
        std::fs::write(
            self.app().join("x.json"),
            json!({ "run": steps }).to_string(),
        )
        .unwrap();
        self.sink.take();
        self.engine.run(RunRequest::new("~/api/app/x.json"))
    }
    fn hf(&self, params: Value) -> RunOutcome {
        self.run(json!([{ "method": "hf.download", "params": params }]))
    }
    fn events_json(&self) -> String {
        serde_json::to_string(&self.sink.events()).unwrap()
    }
    fn progress(&self) -> Vec<(String, u64, Option<u64>, bool)> {
        self.sink
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Progress {
                    name,
                    bytes,
                    total,
                    done,
                    ..
                } => Some((name.clone(), *bytes, *total, *done)),
                _ => None,
            })
            .collect()
    }
}

fn no_part_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            assert!(!p.to_string_lossy().contains(".part"), "{}", p.display());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
}

#[test]
fn cache_layout_symlinks_refs_and_skip_on_second_run() {
    let (repo, main, _) = model_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(json!({ "_": ["org/model"] }));
    assert!(o.ok(), "{o:?}");
    // HF_HOME comes from the run's environment: the system ENVIRONMENT
    // points it at HOME/cache/HF_HOME.
    let repo_dir = h.home().join("cache/HF_HOME/hub/models--org--model");
    let snap = repo_dir.join("snapshots").join(C1);
    assert_eq!(
        o.result,
        Some(json!({ "path": snap.display().to_string() }))
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        C1
    );
    for f in &main {
        let link = snap.join(&f.path);
        let target = std::fs::read_link(&link).unwrap();
        assert!(target.is_relative(), "{}", target.display());
        let blob_name = if f.lfs { sha(&f.body) } else { f.blob_id() };
        let depth = f.path.matches('/').count();
        assert_eq!(
            target,
            PathBuf::from(format!("{}blobs/{blob_name}", "../".repeat(2 + depth)))
        );
        assert_eq!(std::fs::read(&link).unwrap(), f.body, "{}", f.path);
    }
    no_part_files(&repo_dir);
    // Progress events for the LFS file, ending with a complete one.
    let p = h.progress();
    let last = p
        .iter()
        .rfind(|(n, ..)| n == "model.safetensors")
        .expect("progress for model.safetensors");
    assert_eq!(
        last,
        &("model.safetensors".into(), 300_000, Some(300_000), true)
    );
    // Second run: everything is in the cache, nothing is fetched again.
    let gets = hub.resolve_gets();
    let o = h.hf(json!({ "_": "org/model" }));
    assert!(o.ok(), "{o:?}");
    assert_eq!(hub.resolve_gets(), gets);
    assert!(h.progress().is_empty());
}

#[test]
fn local_dir_include_exclude_revision_and_metadata() {
    let (repo, _, v2) = model_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(json!({
        "path": "work",
        "_": ["org/model"],
        "local-dir": "out",
        "revision": "v2",
        "include": ["*.json", "sub/"],
        "exclude": "*.md"
    }));
    assert!(o.ok(), "{o:?}");
    let out = h.app().join("work/out");
    assert_eq!(o.result, Some(json!({ "path": out.display().to_string() })));
    let get = |p: &str| std::fs::read(out.join(p)).ok();
    assert_eq!(get("config.json").unwrap(), v2[0].body);
    assert_eq!(get("sub/vae/x.bin").unwrap(), v2[2].body);
    assert!(get("model.safetensors").is_none());
    assert!(get("sub/readme.md").is_none());
    let meta =
        std::fs::read_to_string(out.join(".cache/huggingface/download/sub/vae/x.bin.metadata"))
            .unwrap();
    let mut lines = meta.lines();
    assert_eq!(lines.next(), Some(C2));
    assert_eq!(lines.next(), Some(sha(&v2[2].body).as_str()));
    // Tampered with (same size): found by its sha256 and fetched again;
    // untouched files are not.
    let mut bad = v2[2].body.clone();
    bad[10] ^= 1;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(out.join("sub/vae/x.bin"), &bad).unwrap();
    let before = hub.resolve_gets();
    let o = h.hf(json!({
        "path": "work", "_": ["org/model"], "local-dir": "out",
        "revision": "v2", "include": "*.json sub/", "exclude": ["*.md"]
    }));
    assert!(o.ok(), "{o:?}");
    assert_eq!(get("sub/vae/x.bin").unwrap(), v2[2].body);
    // One file again: the Hub's redirect and the CDN's body.
    assert_eq!(hub.resolve_gets() - before, 2, "{:?}", hub.cdn_log());
    no_part_files(&out);
}

#[test]
fn dataset_repo_type_and_single_file() {
    let (repo, csv) = dataset_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(
        json!({ "_": ["org/data", "data/train.csv"], "repo-type": "dataset", "local-dir": "d" }),
    );
    assert!(o.ok(), "{o:?}");
    let f = h.app().join("d/data/train.csv");
    assert_eq!(o.result, Some(json!({ "path": f.display().to_string() })));
    assert_eq!(std::fs::read(&f).unwrap(), csv.body);
    assert!(!h.app().join("d/big.parquet").exists());
    let log = hub.hub_log();
    assert!(log
        .iter()
        .any(|r| r.path.starts_with("/api/datasets/org/data/revision/main")));
    assert!(log.iter().any(|r| r
        .path
        .starts_with(&format!("/datasets/org/data/resolve/{C1}/data/train.csv"))));
    // The same name as a model is not found, and the error says so.
    let o = h.hf(json!({ "_": ["org/data"] }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(
        m.contains("model repository `org/data` not found") && m.contains("HF_TOKEN"),
        "{m}"
    );
    // A file that is not in the repository.
    let o = h.hf(json!({ "_": ["org/data", "nope.csv"], "repo-type": "dataset" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("`nope.csv` not found in org/data"), "{m}");
    // An unknown revision.
    let o = h.hf(json!({ "_": ["org/data"], "repo-type": "dataset", "revision": "nope" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("revision `nope` not found in org/data"), "{m}");
}

#[test]
fn private_repo_needs_token_sent_only_to_the_hub_host() {
    let (repo, w) = private_repo();
    let hub = start(vec![repo]);
    // Without a token: a clear error naming the repository.
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(json!({ "_": ["org/private"], "local-dir": "m" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(
        m.contains("org/private") && m.contains("set HF_TOKEN"),
        "{m}"
    );
    let anonymous = hub.hub_log().len();
    // With HF_TOKEN in the environment.
    let h = H::new(&hub.endpoint, &[("HF_TOKEN", TOKEN)]);
    let o = h.hf(json!({ "_": ["org/private"], "local-dir": "m" }));
    assert!(o.ok(), "{o:?}");
    assert_eq!(std::fs::read(h.app().join("m/w.bin")).unwrap(), w.body);
    let bearer = format!("Bearer {TOKEN}");
    let hub_reqs = hub.hub_log()[anonymous..].to_vec();
    assert!(hub_reqs.len() >= 2);
    assert!(
        hub_reqs
            .iter()
            .all(|r| r.auth.as_deref() == Some(bearer.as_str())),
        "{hub_reqs:?}"
    );
    let cdn = hub.cdn_log();
    assert!(!cdn.is_empty());
    assert!(cdn.iter().all(|r| r.auth.is_none()), "{cdn:?}");
    assert!(!h.events_json().contains(TOKEN));
}

#[test]
fn token_file_under_hf_home_is_used() {
    let (repo, w) = private_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    let hf_home = h.dir.path().join("hfhome");
    std::fs::create_dir_all(&hf_home).unwrap();
    std::fs::write(hf_home.join("token"), format!("{TOKEN}\n")).unwrap();
    let o =
        h.hf(json!({ "_": ["org/private"], "env": { "HF_HOME": hf_home.display().to_string() } }));
    assert!(o.ok(), "{o:?}");
    let blob = hf_home
        .join("hub/models--org--private/blobs")
        .join(sha(&w.body));
    assert_eq!(std::fs::read(blob).unwrap(), w.body);
}

#[test]
fn wrong_content_fails_the_checksum_and_leaves_nothing() {
    let (repo, main, _) = model_repo();
    let hub = start(vec![repo]);
    let target = sha(&main[1].body);
    hub.state.lock().unwrap().corrupt = Some(target.clone());
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(json!({ "_": ["org/model", "model.safetensors"], "local-dir": "m" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(
        m.contains("org/model") && m.contains("model.safetensors") && m.contains("sha256 mismatch"),
        "{m}"
    );
    assert!(!m.contains("SIGNED"), "{m}");
    assert!(!h.app().join("m/model.safetensors").exists());
    no_part_files(&h.app().join("m"));
    // The same in the cache: no blob under its final name.
    let o = h.hf(json!({ "_": ["org/model", "model.safetensors"] }));
    assert!(!o.ok());
    let blobs = h.home().join("cache/HF_HOME/hub/models--org--model/blobs");
    assert!(!blobs.join(&target).exists());
    no_part_files(&blobs);
    // Fixed upstream: the download now succeeds.
    hub.state.lock().unwrap().corrupt = None;
    let o = h.hf(json!({ "_": ["org/model", "model.safetensors"] }));
    assert!(o.ok(), "{o:?}");
    assert_eq!(std::fs::read(blobs.join(&target)).unwrap(), main[1].body);
}

#[test]
fn offline_mode_uses_the_disk_or_names_what_is_missing() {
    let (repo, main, _) = model_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    assert!(h
        .hf(json!({ "_": ["org/model"], "include": "*.json" }))
        .ok());
    assert!(h
        .hf(json!({ "_": ["org/model", "notes.txt"], "local-dir": "l" }))
        .ok());
    let requests = hub.hub_log().len() + hub.cdn_log().len();
    let off = json!({ "HF_HUB_OFFLINE": "1" });
    // Cached files: found without the network.
    let o = h.hf(json!({ "_": ["org/model"], "include": "*.json", "env": off.clone() }));
    assert!(o.ok(), "{o:?}");
    let snap = h
        .home()
        .join("cache/HF_HOME/hub/models--org--model/snapshots")
        .join(C1);
    assert_eq!(
        o.result,
        Some(json!({ "path": snap.display().to_string() }))
    );
    let o = h.hf(json!({ "_": ["org/model", "config.json"], "env": off.clone() }));
    assert!(o.ok(), "{o:?}");
    assert_eq!(
        std::fs::read(snap.join("config.json")).unwrap(),
        main[0].body
    );
    let o = h.hf(json!({ "_": ["org/model", "notes.txt"], "local-dir": "l", "env": off.clone() }));
    assert!(o.ok(), "{o:?}");
    // Missing: named.
    let o = h.hf(json!({ "_": ["org/model", "model.safetensors"], "env": off.clone() }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(
        m.contains("HF_HUB_OFFLINE") && m.contains("model.safetensors"),
        "{m}"
    );
    let o = h.hf(json!({ "_": ["org/other"], "env": off.clone() }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(
        m.contains("org/other") && m.contains("revision `main`"),
        "{m}"
    );
    let o =
        h.hf(json!({ "_": ["org/model", "config.json"], "local-dir": "l", "env": off.clone() }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("missing config.json"), "{m}");
    assert_eq!(hub.hub_log().len() + hub.cdn_log().len(), requests);
}

#[test]
fn invalid_params_fail_clearly() {
    let (repo, _, _) = model_repo();
    let hub = start(vec![repo]);
    let h = H::new(&hub.endpoint, &[]);
    let o = h.hf(json!({ "_": ["org/model"], "venv": "env" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("unrecognized option `venv`"), "{m}");
    let o = h.hf(json!({ "local-dir": "x" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("repository id is required"), "{m}");
    let o = h.hf(json!({ "_": ["org/model"], "repo-type": "wheel" }));
    let m = o.error.map(|e| e.message).unwrap_or_default();
    assert!(m.contains("expected model, dataset or space"), "{m}");
    assert!(hub.hub_log().is_empty());
}
