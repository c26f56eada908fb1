//! The Hugging Face Hub client behind `hf.download`: list a repository's
//! files at a revision (`/api/{models|datasets|spaces}/{repo}/revision/{rev}
//! ?blobs=true`, which also reports each file's size, git blob id and LFS
//! sha256), filter them with `include`/`exclude` globs (Python `fnmatch`
//! rules, as `huggingface_hub` filters), and download each one with
//! [`crate::download`] (resumable, segmented, retried, sha256-checked for
//! LFS files).
//!
//! Two destinations, as `huggingface_hub` lays them out so Python apps find
//! the files:
//! - a local folder (`local-dir`): `<dir>/<path>`, plus
//!   `<dir>/.cache/huggingface/download/<path>.metadata` (commit, etag,
//!   time) so an unchanged file is skipped without hashing it again;
//! - the cache (no `local-dir`): `<hub cache>/<type>s--<org>--<name>/`
//!   `blobs/<etag>` (the LFS sha256, else the git blob id),
//!   `snapshots/<commit>/<path>` (relative symlinks to the blobs) and
//!   `refs/<revision>` (the commit).
//!
//! Offline mode (`HF_HUB_OFFLINE=1`) never touches the network: it succeeds
//! from what is on disk or fails naming what is missing. The token is sent
//! (as `Authorization: Bearer`) only to the endpoint's host and never
//! appears in errors or events.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Client;
use reqwest::header::{AUTHORIZATION, USER_AGENT};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::download::{self, redact, DownloadError, DownloadOptions, Progress};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What kind of repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepoType {
    #[default]
    Model,
    Dataset,
    Space,
}

impl RepoType {
    /// `model`, `dataset`, `space` (plural forms accepted too).
    pub fn parse(s: &str) -> Option<RepoType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "model" | "models" => Some(RepoType::Model),
            "dataset" | "datasets" => Some(RepoType::Dataset),
            "space" | "spaces" => Some(RepoType::Space),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
            RepoType::Space => "space",
        }
    }
    /// The API path segment and cache folder prefix (`models`...).
    fn plural(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
            RepoType::Space => "spaces",
        }
    }
    /// The prefix of `resolve` URLs (`""`, `datasets/`, `spaces/`).
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
            RepoType::Space => "spaces/",
        }
    }
}

/// Where and how to talk to the Hub.
#[derive(Debug, Clone)]
pub struct HfConfig {
    /// `HF_ENDPOINT` without a trailing slash.
    pub endpoint: String,
    /// `HF_TOKEN` and friends (see [`token_from_env`]).
    pub token: Option<String>,
    /// `HF_HUB_CACHE` (default `HF_HOME/hub`).
    pub hub_cache: PathBuf,
    /// `HF_HUB_OFFLINE`.
    pub offline: bool,
    /// Retries of API calls and per download segment (default 5).
    pub retries: u32,
    /// First retry delay (doubles per attempt).
    pub backoff: Duration,
}

impl HfConfig {
    /// The configuration a process with environment `env` gets: endpoint,
    /// token, cache and offline mode. `default_home` is `HF_HOME` when the
    /// environment has none.
    pub fn from_env(env: &BTreeMap<String, String>, default_home: PathBuf) -> HfConfig {
        let get = |k: &str| env.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let home = get("HF_HOME")
            .map(|h| expand_user(h, env))
            .unwrap_or(default_home);
        let hub_cache = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(|h| expand_user(h, env))
            .unwrap_or_else(|| home.join("hub"));
        HfConfig {
            endpoint: get("HF_ENDPOINT")
                .unwrap_or(DEFAULT_ENDPOINT)
                .trim_end_matches('/')
                .to_string(),
            token: token_from_env(env, &home),
            hub_cache,
            offline: get("HF_HUB_OFFLINE").is_some_and(truthy),
            retries: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// `huggingface_hub`'s truthy environment values.
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

fn expand_user(p: &str, env: &BTreeMap<String, String>) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => env
            .get("HOME")
            .map(PathBuf::from)
            .or_else(dirs::home_dir)
            .map(|h| h.join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

/// The token a process with environment `env` uses: `HF_TOKEN`, else
/// `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH`, else
/// `<hf_home>/token`. Empty values count as none.
pub fn token_from_env(env: &BTreeMap<String, String>, hf_home: &Path) -> Option<String> {
    let clean = |s: &str| Some(s.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
        .iter()
        .find_map(|k| env.get(*k).and_then(|v| clean(v)))
    {
        return Some(t);
    }
    let file = env
        .get("HF_TOKEN_PATH")
        .filter(|p| !p.trim().is_empty())
        .map(|p| expand_user(p.trim(), env))
        .unwrap_or_else(|| hf_home.join("token"));
    fs::read_to_string(file).ok().and_then(|t| clean(&t))
}

/// One `hf.download` request.
#[derive(Debug, Clone, Default)]
pub struct HfRequest {
    /// `org/name`.
    pub repo_id: String,
    pub repo_type: RepoType,
    /// A branch, tag or commit (default `main`).
    pub revision: String,
    /// Files to download (include/exclude are ignored when given).
    pub filenames: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Download into this folder instead of the cache.
    pub local_dir: Option<PathBuf>,
    /// Download again even when the file is present.
    pub force: bool,
    /// Only list what would be downloaded.
    pub dry_run: bool,
    /// Parallel connections for large files.
    pub connections: Option<usize>,
}

/// A file of a repository, as the Hub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: Option<u64>,
    /// The git blob id (sha1).
    pub blob_id: Option<String>,
    /// The LFS sha256 (LFS files only).
    pub sha256: Option<String>,
}

impl RepoFile {
    /// The cache's blob name: the LFS sha256, else the git blob id.
    pub fn etag(&self) -> Option<&str> {
        self.sha256.as_deref().or(self.blob_id.as_deref())
    }
}

/// A repository at a revision.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    /// The commit the revision points at.
    pub commit: String,
    pub files: Vec<RepoFile>,
}

/// What happens during [`download()`].
#[derive(Debug)]
pub enum HfEvent<'a> {
    /// The files to fetch are known.
    Plan {
        commit: &'a str,
        files: &'a [RepoFile],
    },
    /// Bytes of one file.
    Progress { path: &'a str, progress: Progress },
    /// One file is in place (`skipped`: it already was).
    FileDone {
        path: &'a str,
        bytes: u64,
        skipped: bool,
    },
}

/// The result of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    pub path: String,
    /// Where it is now (the snapshot link in cache mode).
    pub local: PathBuf,
    pub bytes: u64,
    pub skipped: bool,
}

/// What [`download()`] did.
#[derive(Debug, Clone)]
pub struct HfOutcome {
    /// The folder (local dir or snapshot), or the file when exactly one
    /// file name was asked for: what `hf download` prints.
    pub path: PathBuf,
    /// `None` offline with a local dir (no commit is known).
    pub commit: Option<String>,
    pub files: Vec<FileOutcome>,
}

/// Why `hf.download` failed. Messages name the repository and file and
/// never carry the token.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("invalid repository id `{repo}`: expected `name` or `org/name`")]
    InvalidRepo { repo: String },
    #[error(
        "{kind} repository `{repo}` not found at {endpoint}{}",
        if *.authenticated { "" } else { " (if it is private or gated, set HF_TOKEN)" }
    )]
    RepoNotFound {
        repo: String,
        kind: &'static str,
        endpoint: String,
        authenticated: bool,
    },
    #[error("revision `{revision}` not found in {repo}")]
    RevisionNotFound { repo: String, revision: String },
    #[error("`{file}` not found in {repo} at revision {revision}")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("{repo}{}: {}", file_suffix(.file), if *.authenticated {
        "access denied with the configured Hugging Face token (HTTP 401): check HF_TOKEN"
    } else {
        "this repository needs a Hugging Face token (HTTP 401): set HF_TOKEN in the app's ENVIRONMENT or the engine's environment"
    })]
    Unauthorized {
        repo: String,
        file: Option<String>,
        authenticated: bool,
    },
    #[error("{repo}{}: the repository is gated (HTTP 403): accept its terms at {url} with the account of HF_TOKEN", file_suffix(.file))]
    Gated {
        repo: String,
        file: Option<String>,
        url: String,
    },
    #[error("{repo}{}: {message}", file_suffix(.file))]
    Http {
        repo: String,
        file: Option<String>,
        message: String,
    },
    #[error("{repo}: unexpected answer from {url}: {message}")]
    BadResponse {
        repo: String,
        url: String,
        message: String,
    },
    #[error("{repo}: unsafe file path `{path}` in the repository listing")]
    UnsafePath { repo: String, path: String },
    #[error("{repo}: {file}: {source}")]
    Download {
        repo: String,
        file: String,
        source: DownloadError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HF_HUB_OFFLINE is set and {repo} is not fully on disk: missing {}", .missing.join(", "))]
    Offline { repo: String, missing: Vec<String> },
    #[error("download stopped")]
    Cancelled,
}

fn file_suffix(f: &Option<String>) -> String {
    f.as_ref().map(|f| format!(": {f}")).unwrap_or_default()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HfError + '_ {
    move |source| HfError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ------------------------------------------------------------------ globs

/// Python `fnmatch.fnmatch` on POSIX (case-sensitive): `*` matches any
/// run of characters (`/` included), `?` one character, `[seq]`/`[!seq]`
/// a set with ranges. An unclosed `[` is a literal.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    // Backtracking point: the position after the last `*` and the name
    // position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                '?' => Some(pi + 1),
                '[' => match class(&p, pi) {
                    Some((matches, next)) => matches(n[ni]).then_some(next),
                    None => (n[ni] == '[').then_some(pi + 1),
                },
                c => (c == n[ni]).then_some(pi + 1),
            }
        } else {
            None
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

type ClassFn = Box<dyn Fn(char) -> bool>;

/// Parse the set starting at `p[at] == '['`: its matcher and the index
/// after its `]`, or `None` when it is not closed.
fn class(p: &[char], at: usize) -> Option<(ClassFn, usize)> {
    let mut i = at + 1;
    let negate = i < p.len() && p[i] == '!';
    if negate {
        i += 1;
    }
    let start = i;
    // A `]` right after `[` or `[!` is a member.
    if i < p.len() && p[i] == ']' {
        i += 1;
    }
    while i < p.len() && p[i] != ']' {
        i += 1;
    }
    if i >= p.len() {
        return None;
    }
    let body: Vec<char> = p[start..i].to_vec();
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut j = 0;
    while j < body.len() {
        if j + 2 < body.len() && body[j + 1] == '-' {
            ranges.push((body[j], body[j + 2]));
            j += 3;
        } else {
            ranges.push((body[j], body[j]));
            j += 1;
        }
    }
    let f = move |c: char| ranges.iter().any(|(a, b)| *a <= c && c <= *b) != negate;
    Some((Box::new(f), i + 1))
}

/// `huggingface_hub`'s pattern rule: a pattern ending in `/` means the
/// folder's contents.
fn matches_any(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|pat| {
        if pat.ends_with('/') {
            fnmatch(&format!("{pat}*"), path)
        } else {
            fnmatch(pat, path)
        }
    })
}

/// Keep the paths allowed by `include` (all when empty) and not matched by
/// `exclude`.
pub fn filter_paths<'a, T>(
    items: &'a [T],
    path: impl Fn(&T) -> &str,
    include: &[String],
    exclude: &[String],
) -> Vec<&'a T> {
    items
        .iter()
        .filter(|it| {
            let p = path(it);
            (include.is_empty() || matches_any(include, p)) && !matches_any(exclude, p)
        })
        .collect()
}

// ------------------------------------------------------------------ paths

/// The cache folder of a repository: `models--org--name`.
pub fn repo_folder_name(repo_type: RepoType, repo_id: &str) -> String {
    let mut s = repo_type.plural().to_string();
    for part in repo_id.split('/') {
        s.push_str("--");
        s.push_str(part);
    }
    s
}

fn check_repo_id(repo: &str) -> Result<(), HfError> {
    let bad = || HfError::InvalidRepo {
        repo: repo.to_string(),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if repo.is_empty() || parts.len() > 2 {
        return Err(bad());
    }
    for p in parts {
        if p.is_empty()
            || p == "."
            || p == ".."
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// A repository path that stays inside its folder: relative, no `..`.
fn safe_rel(repo: &str, p: &str) -> Result<PathBuf, HfError> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && !p.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(HfError::UnsafePath {
            repo: repo.to_string(),
            path: p.to_string(),
        })
    }
}

/// Percent-encode one path segment (RFC 3986 unreserved characters kept).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

fn metadata_path(local_dir: &Path, rel: &Path) -> PathBuf {
    let mut p = local_dir
        .join(".cache/huggingface/download")
        .join(rel)
        .into_os_string();
    p.push(".metadata");
    PathBuf::from(p)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// ------------------------------------------------------------------ client

/// Talks to one endpoint.
pub struct Hub<'a> {
    pub client: &'a Client,
    pub config: &'a HfConfig,
    pub cancel: &'a AtomicBool,
}

#[derive(Deserialize)]
struct ApiRevision {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    sha256: Option<String>,
    size: Option<u64>,
}

impl Hub<'_> {
    fn endpoint_url(&self) -> Option<Url> {
        Url::parse(&self.config.endpoint).ok()
    }

    /// Does `url` belong to the endpoint (same host and port)?
    pub fn is_endpoint_host(&self, url: &Url) -> bool {
        self.endpoint_url().is_some_and(|e| {
            e.host_str()
                .zip(url.host_str())
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
                && e.port_or_known_default() == url.port_or_known_default()
        })
    }

    fn authenticated(&self) -> bool {
        self.config.token.is_some()
    }

    /// Classify a failed Hub answer.
    fn status_error(
        &self,
        req: &HfRequest,
        file: Option<&str>,
        status: StatusCode,
        code: Option<&str>,
        message: &str,
    ) -> HfError {
        let repo = req.repo_id.clone();
        let file_s = file.map(str::to_string);
        match (status.as_u16(), code) {
            (_, Some("RepoNotFound")) | (404, None) if file.is_none() => HfError::RepoNotFound {
                repo,
                kind: req.repo_type.as_str(),
                endpoint: self.config.endpoint.clone(),
                authenticated: self.authenticated(),
            },
            (_, Some("RevisionNotFound")) => HfError::RevisionNotFound {
                repo,
                revision: req.revision.clone(),
            },
            (_, Some("EntryNotFound")) | (404, _) if file.is_some() => HfError::FileNotFound {
                repo,
                revision: req.revision.clone(),
                file: file.unwrap_or_default().to_string(),
            },
            (_, Some("GatedRepo")) | (403, _) => HfError::Gated {
                url: format!(
                    "{}/{}{}",
                    self.config.endpoint,
                    req.repo_type.url_prefix(),
                    req.repo_id
                ),
                repo,
                file: file_s,
            },
            (401, _) => HfError::Unauthorized {
                repo,
                file: file_s,
                authenticated: self.authenticated(),
            },
            _ => HfError::Http {
                repo,
                file: file_s,
                message: if message.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {message}")
                },
            },
        }
    }

    fn sleep(&self, attempt: u32) -> Result<(), HfError> {
        let d = self
            .config
            .backoff
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(30));
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(HfError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The repository's files at the request's revision.
    pub fn repo_info(&self, req: &HfRequest) -> Result<RepoInfo, HfError> {
        check_repo_id(&req.repo_id)?;
        let url = format!(
            "{}/api/{}/{}/revision/{}?blobs=true",
            self.config.endpoint,
            req.repo_type.plural(),
            req.repo_id,
            encode_segment(&req.revision)
        );
        let parsed = Url::parse(&url).map_err(|e| HfError::BadResponse {
            repo: req.repo_id.clone(),
            url: redact(&url),
            message: e.to_string(),
        })?;
        let mut attempt = 0u32;
        let resp = loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(HfError::Cancelled);
            }
            let mut rb = self
                .client
                .get(parsed.clone())
                .header(USER_AGENT, crate::methods::net::USER_AGENT)
                .timeout(Duration::from_secs(60));
            if let Some(t) = &self.config.token {
                if self.is_endpoint_host(&parsed) {
                    rb = rb.header(AUTHORIZATION, format!("Bearer {t}"));
                }
            }
            let retry = match rb.send() {
                Ok(r) => {
                    let s = r.status();
                    if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS {
                        format!("HTTP {s}")
                    } else {
                        break r;
                    }
                }
                Err(e) => {
                    let m = crate::methods::net::error_chain(&e);
                    m.replace(parsed.as_str(), &redact(parsed.as_str()))
                }
            };
            attempt += 1;
            if attempt > self.config.retries {
                return Err(HfError::Http {
                    repo: req.repo_id.clone(),
                    file: None,
                    message: format!(
                        "{} ({retry}, after {attempt} attempts)",
                        redact(parsed.as_str())
                    ),
                });
            }
            self.sleep(attempt)?;
        };
        let status = resp.status();
        if !status.is_success() {
            let code = resp
                .headers()
                .get("x-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let msg = resp
                .headers()
                .get("x-error-message")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_default();
            return Err(self.status_error(req, None, status, code.as_deref(), &msg));
        }
        let mut body = String::new();
        let mut r = resp;
        r.read_to_string(&mut body).map_err(|e| HfError::Http {
            repo: req.repo_id.clone(),
            file: None,
            message: format!("{}: {e}", redact(&url)),
        })?;
        let api: ApiRevision = serde_json::from_str(&body).map_err(|e| HfError::BadResponse {
            repo: req.repo_id.clone(),
            url: redact(&url),
            message: e.to_string(),
        })?;
        let commit = api
            .sha
            .filter(|s| !s.is_empty())
            .ok_or_else(|| HfError::BadResponse {
                repo: req.repo_id.clone(),
                url: redact(&url),
                message: "no commit sha in the answer".into(),
            })?;
        if commit.contains(['/', '\\', '.']) {
            return Err(HfError::BadResponse {
                repo: req.repo_id.clone(),
                url: redact(&url),
                message: format!("invalid commit `{commit}`"),
            });
        }
        let files = api
            .siblings
            .into_iter()
            .map(|s| {
                let sha256 = s.lfs.as_ref().and_then(|l| l.sha256.clone());
                let size = s.size.or(s.lfs.as_ref().and_then(|l| l.size));
                RepoFile {
                    path: s.rfilename,
                    size,
                    blob_id: s.blob_id,
                    sha256: sha256.map(|h| h.to_ascii_lowercase()),
                }
            })
            .collect();
        Ok(RepoInfo { commit, files })
    }

    /// The `resolve` URL of a file at a commit.
    pub fn resolve_url(&self, req: &HfRequest, commit: &str, path: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            self.config.endpoint,
            req.repo_type.url_prefix(),
            req.repo_id,
            encode_segment(commit),
            encode_path(path)
        )
    }

    fn download_options(&self, req: &HfRequest, sha256: Option<&str>) -> DownloadOptions {
        DownloadOptions {
            sha256: sha256.map(str::to_string),
            connections: req.connections,
            retries: Some(self.config.retries),
            hf_token: self.config.token.clone(),
            hf_endpoint: Some(self.config.endpoint.clone()),
            backoff: self.config.backoff,
            ..Default::default()
        }
    }

    /// Fetch one file to `dest` (verified against the LFS sha256 when the
    /// Hub reported one).
    fn fetch(
        &self,
        req: &HfRequest,
        commit: &str,
        file: &RepoFile,
        dest: &Path,
        on: &dyn Fn(HfEvent),
    ) -> Result<download::DownloadOutcome, HfError> {
        let url = self.resolve_url(req, commit, &file.path);
        let opts = self.download_options(req, file.sha256.as_deref());
        let map = |e: DownloadError| self.map_download_error(req, &file.path, e);
        let probe = download::probe(self.client, &url, &opts, self.cancel).map_err(map)?;
        let progress = |p: Progress| {
            on(HfEvent::Progress {
                path: &file.path,
                progress: p,
            })
        };
        download::download_probed(
            self.client,
            &url,
            &probe,
            dest,
            &opts,
            &progress,
            self.cancel,
        )
        .map_err(map)
    }

    fn map_download_error(&self, req: &HfRequest, file: &str, e: DownloadError) -> HfError {
        match e {
            DownloadError::Cancelled => HfError::Cancelled,
            DownloadError::Failed { ref message, .. } => {
                // The downloader reports HTTP failures as "HTTP <status>".
                let status = message
                    .strip_prefix("HTTP ")
                    .and_then(|s| s.get(..3))
                    .and_then(|s| s.parse::<u16>().ok())
                    .and_then(|s| StatusCode::from_u16(s).ok());
                match status {
                    Some(s) if s.is_client_error() => {
                        self.status_error(req, Some(file), s, None, "")
                    }
                    _ => HfError::Download {
                        repo: req.repo_id.clone(),
                        file: file.to_string(),
                        source: e,
                    },
                }
            }
        }
    }
}

// ---------------------------------------------------------------- download

/// Download what `req` asks for. See the module docs.
pub fn download(
    hub: &Hub<'_>,
    req: &HfRequest,
    on: &dyn Fn(HfEvent),
) -> Result<HfOutcome, HfError> {
    check_repo_id(&req.repo_id)?;
    if hub.config.offline {
        return offline(hub.config, req);
    }
    let info = hub.repo_info(req)?;
    let chosen: Vec<RepoFile> = if req.filenames.is_empty() {
        filter_paths(&info.files, |f| f.path.as_str(), &req.include, &req.exclude)
            .into_iter()
            .cloned()
            .collect()
    } else {
        req.filenames
            .iter()
            .map(|name| {
                let name = name.trim_start_matches("./");
                info.files
                    .iter()
                    .find(|f| f.path == name)
                    .cloned()
                    .ok_or_else(|| HfError::FileNotFound {
                        repo: req.repo_id.clone(),
                        revision: req.revision.clone(),
                        file: name.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?
    };
    for f in &chosen {
        safe_rel(&req.repo_id, &f.path)?;
    }
    on(HfEvent::Plan {
        commit: &info.commit,
        files: &chosen,
    });
    let single = req.filenames.len() == 1;
    match &req.local_dir {
        Some(dir) => {
            let mut outs = Vec::new();
            for f in &chosen {
                if req.dry_run {
                    outs.push(planned(dir, f));
                    continue;
                }
                outs.push(to_local_dir(hub, req, &info.commit, f, dir, on)?);
            }
            let path = match (single, outs.first()) {
                (true, Some(o)) => o.local.clone(),
                _ => dir.clone(),
            };
            Ok(HfOutcome {
                path,
                commit: Some(info.commit),
                files: outs,
            })
        }
        None => {
            let repo_dir = hub
                .config
                .hub_cache
                .join(repo_folder_name(req.repo_type, &req.repo_id));
            let snapshot = repo_dir.join("snapshots").join(&info.commit);
            let mut outs = Vec::new();
            if !req.dry_run {
                write_ref(&req.repo_id, &repo_dir, &req.revision, &info.commit)?;
            }
            for f in &chosen {
                if req.dry_run {
                    outs.push(planned(&snapshot, f));
                    continue;
                }
                outs.push(to_cache(hub, req, &info.commit, f, &repo_dir, on)?);
            }
            let path = match (single, outs.first()) {
                (true, Some(o)) => o.local.clone(),
                _ => snapshot,
            };
            Ok(HfOutcome {
                path,
                commit: Some(info.commit),
                files: outs,
            })
        }
    }
}

fn planned(dir: &Path, f: &RepoFile) -> FileOutcome {
    let local = dir.join(&f.path);
    FileOutcome {
        skipped: local.exists(),
        path: f.path.clone(),
        local,
        bytes: f.size.unwrap_or(0),
    }
}

fn write_ref(repo: &str, repo_dir: &Path, revision: &str, commit: &str) -> Result<(), HfError> {
    if revision == commit {
        return Ok(());
    }
    let rel = safe_rel(repo, revision)?;
    let path = repo_dir.join("refs").join(rel);
    if fs::read_to_string(&path).ok().as_deref() == Some(commit) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    fs::write(&path, commit).map_err(io_err(&path))
}

fn to_cache(
    hub: &Hub<'_>,
    req: &HfRequest,
    commit: &str,
    f: &RepoFile,
    repo_dir: &Path,
    on: &dyn Fn(HfEvent),
) -> Result<FileOutcome, HfError> {
    let rel = safe_rel(&req.repo_id, &f.path)?;
    let link = repo_dir.join("snapshots").join(commit).join(&rel);
    let blobs = repo_dir.join("blobs");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let (blob_name, bytes, skipped) = match f.etag() {
        Some(etag) => {
            let etag = etag.trim_matches('"').to_string();
            safe_rel(&req.repo_id, &etag)?;
            let blob = blobs.join(&etag);
            let have = fs::metadata(&blob)
                .ok()
                .filter(|m| m.is_file() && f.size.is_none_or(|s| s == m.len()));
            match have {
                Some(m) if !req.force => (etag, m.len(), true),
                _ => {
                    if req.force {
                        let _ = fs::remove_file(&blob);
                    }
                    let out = hub.fetch(req, commit, f, &blob, on)?;
                    (etag, out.bytes, out.skipped)
                }
            }
        }
        None => {
            // No blob id from the Hub (some mirrors): name the blob by the
            // sha256 of its content.
            let tmp = blobs.join(format!("incoming-{}", f.path.replace(['/', '\\'], "--")));
            let out = hub.fetch(req, commit, f, &tmp, on)?;
            let sha = sha256_file(&tmp)?;
            let blob = blobs.join(&sha);
            fs::rename(&tmp, &blob).map_err(io_err(&blob))?;
            (sha, out.bytes, false)
        }
    };
    let depth = rel.components().count().saturating_sub(1);
    let target = PathBuf::from(format!("{}blobs/{blob_name}", "../".repeat(2 + depth)));
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        match fs::symlink_metadata(&link) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&link).map_err(io_err(&link))?,
            Ok(_) => fs::remove_file(&link).map_err(io_err(&link))?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, &link).map_err(io_err(&link))?;
    }
    on(HfEvent::FileDone {
        path: &f.path,
        bytes,
        skipped,
    });
    Ok(FileOutcome {
        path: f.path.clone(),
        local: link,
        bytes,
        skipped,
    })
}

/// `(commit, etag, timestamp)` of a local-dir metadata file.
fn read_metadata(path: &Path) -> Option<(String, String, f64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut l = text.lines();
    let commit = l.next()?.trim().to_string();
    let etag = l.next()?.trim().to_string();
    let ts = l.next()?.trim().parse().ok()?;
    Some((commit, etag, ts))
}

fn write_metadata(local_dir: &Path, rel: &Path, commit: &str, etag: &str) -> Result<(), HfError> {
    let meta = metadata_path(local_dir, rel);
    if let Some(parent) = meta.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let ignore = local_dir.join(".cache/huggingface/.gitignore");
    if !ignore.exists() {
        let _ = fs::write(&ignore, "*\n");
    }
    fs::write(&meta, format!("{commit}\n{etag}\n{}\n", now_secs())).map_err(io_err(&meta))
}

fn sha256_file(path: &Path) -> Result<String, HfError> {
    use sha2::{Digest, Sha256};
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn to_local_dir(
    hub: &Hub<'_>,
    req: &HfRequest,
    commit: &str,
    f: &RepoFile,
    dir: &Path,
    on: &dyn Fn(HfEvent),
) -> Result<FileOutcome, HfError> {
    let rel = safe_rel(&req.repo_id, &f.path)?;
    let dest = dir.join(&rel);
    let etag = f.etag().map(|e| e.trim_matches('"').to_string());
    let md = fs::metadata(&dest).ok().filter(|m| m.is_file());
    if req.force {
        if md.is_some() {
            fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
    } else if let Some(m) = &md {
        let size_ok = f.size.is_none_or(|s| s == m.len());
        // Fast path: recorded as this very blob, and not modified since.
        let recorded = read_metadata(&metadata_path(dir, &rel)).is_some_and(|(_, e, ts)| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(f64::MAX);
            Some(&e) == etag.as_ref() && mtime - 1.0 <= ts
        });
        let verified = size_ok
            && (recorded
                || f.sha256
                    .as_deref()
                    .is_some_and(|want| sha256_file(&dest).ok().as_deref() == Some(want)));
        if verified {
            if !recorded {
                if let Some(e) = &etag {
                    write_metadata(dir, &rel, commit, e)?;
                }
            }
            on(HfEvent::FileDone {
                path: &f.path,
                bytes: m.len(),
                skipped: true,
            });
            return Ok(FileOutcome {
                path: f.path.clone(),
                local: dest,
                bytes: m.len(),
                skipped: true,
            });
        }
        // Wrong content: replace it (the downloader would keep a file of
        // the right size without a checksum).
        if size_ok && f.sha256.is_none() && !recorded {
            fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
    }
    let out = hub.fetch(req, commit, f, &dest, on)?;
    if let Some(e) = &etag {
        write_metadata(dir, &rel, commit, e)?;
    }
    on(HfEvent::FileDone {
        path: &f.path,
        bytes: out.bytes,
        skipped: out.skipped,
    });
    Ok(FileOutcome {
        path: f.path.clone(),
        local: dest,
        bytes: out.bytes,
        skipped: out.skipped,
    })
}

// ----------------------------------------------------------------- offline

/// Every file under `root` (relative, `/`-separated), skipping `skip`.
fn walk(root: &Path, skip: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if Some(p.as_path()) == skip {
                continue;
            }
            // Follow symlinks (snapshot entries point at blobs).
            match fs::metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(_) => {
                    if let Ok(rel) = p.strip_prefix(root) {
                        out.push(rel.to_string_lossy().replace('\\', "/"));
                    }
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

fn offline(config: &HfConfig, req: &HfRequest) -> Result<HfOutcome, HfError> {
    let missing = |m: Vec<String>| HfError::Offline {
        repo: req.repo_id.clone(),
        missing: m,
    };
    let (root, commit, candidates) = match &req.local_dir {
        Some(dir) => {
            let meta_root = dir.join(".cache/huggingface/download");
            let recorded: Vec<String> = walk(&meta_root, None)
                .into_iter()
                .filter_map(|p| p.strip_suffix(".metadata").map(str::to_string))
                .collect();
            let files = if recorded.is_empty() {
                walk(dir, Some(&dir.join(".cache")))
            } else {
                recorded
            };
            (dir.clone(), None, files)
        }
        None => {
            let repo_dir = config
                .hub_cache
                .join(repo_folder_name(req.repo_type, &req.repo_id));
            let commit = if is_commit(&req.revision) {
                req.revision.clone()
            } else {
                let r = repo_dir
                    .join("refs")
                    .join(safe_rel(&req.repo_id, &req.revision)?);
                match fs::read_to_string(&r) {
                    Ok(c) => c.trim().to_string(),
                    Err(_) => {
                        return Err(missing(vec![format!(
                            "revision `{}` (no {} in the cache {})",
                            req.revision,
                            Path::new("refs").join(&req.revision).display(),
                            repo_dir.display()
                        )]))
                    }
                }
            };
            let snap = repo_dir.join("snapshots").join(&commit);
            if !snap.is_dir() {
                return Err(missing(vec![format!(
                    "snapshot {commit} (not in the cache {})",
                    repo_dir.display()
                )]));
            }
            let files = walk(&snap, None);
            (snap, Some(commit), files)
        }
    };
    let wanted: Vec<String> = if req.filenames.is_empty() {
        let f: Vec<String> = filter_paths(&candidates, |s| s.as_str(), &req.include, &req.exclude)
            .into_iter()
            .cloned()
            .collect();
        if f.is_empty() {
            let mut what = String::from("every file");
            if !req.include.is_empty() {
                what.push_str(&format!(" matching {}", req.include.join(" ")));
            }
            return Err(missing(vec![format!(
                "{what} (nothing in {})",
                root.display()
            )]));
        }
        f
    } else {
        req.filenames
            .iter()
            .map(|f| f.trim_start_matches("./").to_string())
            .collect()
    };
    let mut absent = Vec::new();
    let mut files = Vec::new();
    for f in &wanted {
        let rel = safe_rel(&req.repo_id, f)?;
        let local = root.join(&rel);
        match fs::metadata(&local) {
            Ok(m) if m.is_file() => files.push(FileOutcome {
                path: f.clone(),
                local,
                bytes: m.len(),
                skipped: true,
            }),
            _ => absent.push(f.clone()),
        }
    }
    if !absent.is_empty() {
        return Err(missing(absent));
    }
    let path = match (req.filenames.len(), files.first()) {
        (1, Some(o)) => o.local.clone(),
        _ => root,
    };
    Ok(HfOutcome {
        path,
        commit,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_follows_python() {
        assert!(fnmatch("*.json", "config.json"));
        assert!(fnmatch("*.json", "sub/config.json"));
        assert!(!fnmatch("*.json", "config.jsonl"));
        assert!(fnmatch(
            "model-?????-of-*.safetensors",
            "model-00001-of-00002.safetensors"
        ));
        assert!(fnmatch("vae/*", "vae/diffusion_pytorch_model.bin"));
        assert!(!fnmatch("vae/*", "unet/vae/x"));
        assert!(fnmatch("[abc]x", "bx"));
        assert!(!fnmatch("[!abc]x", "bx"));
        assert!(fnmatch("[a-c]*", "c.txt"));
        assert!(fnmatch("[]]", "]"));
        assert!(fnmatch("a[", "a["));
        assert!(fnmatch("*", ""));
        assert!(!fnmatch("?", ""));
        assert!(fnmatch("**/*.bin", "a/b/c.bin"));
        assert!(!fnmatch("*.BIN", "x.bin"));
        assert!(fnmatch("*a*b*c", "xxaybbzc"));
    }

    #[test]
    fn include_exclude_and_folder_patterns() {
        let files: Vec<String> = ["a.json", "b.safetensors", "vae/c.bin", "vae/d.json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pick = |inc: &[&str], exc: &[&str]| -> Vec<String> {
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            let exc: Vec<String> = exc.iter().map(|s| s.to_string()).collect();
            filter_paths(&files, |s| s.as_str(), &inc, &exc)
                .into_iter()
                .cloned()
                .collect()
        };
        assert_eq!(pick(&[], &[]).len(), 4);
        assert_eq!(pick(&["*.json"], &[]), vec!["a.json", "vae/d.json"]);
        assert_eq!(pick(&["vae/"], &["*.json"]), vec!["vae/c.bin"]);
        assert_eq!(
            pick(&[], &["*.bin", "*.safetensors"]),
            vec!["a.json", "vae/d.json"]
        );
    }

    #[test]
    fn folder_names_ids_and_paths() {
        assert_eq!(
            repo_folder_name(RepoType::Model, "org/name"),
            "models--org--name"
        );
        assert_eq!(
            repo_folder_name(RepoType::Dataset, "squad"),
            "datasets--squad"
        );
        assert!(check_repo_id("org/na.me-1_x").is_ok());
        for bad in ["", "a/b/c", "../x", "a//b", "a b", "org/.."] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        assert!(safe_rel("r", "a/b.bin").is_ok());
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(safe_rel("r", bad).is_err(), "{bad}");
        }
        assert_eq!(encode_path("a b/c#d.bin"), "a%20b/c%23d.bin");
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
    }

    #[test]
    fn config_from_env_and_token_order() {
        let t = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        let home = t.path().join("hf");
        env.insert("HF_HOME".to_string(), home.display().to_string());
        env.insert("HF_ENDPOINT".to_string(), "http://127.0.0.1:9/".to_string());
        let c = HfConfig::from_env(&env, PathBuf::from("/unused"));
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.hub_cache, home.join("hub"));
        assert_eq!(c.token, None);
        assert!(!c.offline);
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("token"), "from-file\n").unwrap();
        assert_eq!(token_from_env(&env, &home).as_deref(), Some("from-file"));
        env.insert("HUGGING_FACE_HUB_TOKEN".into(), "legacy".into());
        assert_eq!(token_from_env(&env, &home).as_deref(), Some("legacy"));
        env.insert("HF_TOKEN".into(), " tok ".into());
        assert_eq!(token_from_env(&env, &home).as_deref(), Some("tok"));
        env.insert("HF_HUB_OFFLINE".into(), "yes".into());
        env.insert("HF_HUB_CACHE".into(), "/c".into());
        let c = HfConfig::from_env(&env, PathBuf::from("/unused"));
        assert!(c.offline);
        assert_eq!(c.hub_cache, PathBuf::from("/c"));
        env.remove("HF_HOME");
        env.remove("HF_HUB_CACHE");
        let c = HfConfig::from_env(&env, PathBuf::from("/d"));
        assert_eq!(c.hub_cache, PathBuf::from("/d/hub"));
    }

    #[test]
    fn errors_never_show_the_token_and_name_the_repo() {
        let e = HfError::Unauthorized {
            repo: "org/private".into(),
            file: Some("w.bin".into()),
            authenticated: false,
        };
        let m = e.to_string();
        assert!(
            m.contains("org/private: w.bin") && m.contains("HF_TOKEN"),
            "{m}"
        );
        let e = HfError::RepoNotFound {
            repo: "org/x".into(),
            kind: "dataset",
            endpoint: "http://h".into(),
            authenticated: true,
        };
        assert_eq!(
            e.to_string(),
            "dataset repository `org/x` not found at http://h"
        );
    }
}
