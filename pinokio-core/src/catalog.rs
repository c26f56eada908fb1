//! The app catalog: the Pinokio apps this project knows, with their facts
//! (repository, category, tags, author, installer type) and a `status`
//! saying whether they can be installed at all.
//!
//! The built-in catalog is the repository's `catalog/apps.json` (built by
//! `catalog/build.py`), embedded at compile time. A Pinokio home may hold an
//! override, `HOME/catalog.json`, written by [`Catalog::update_from`]
//! (`pinokio catalog update --from FILE|URL`); it is used when present.
//!
//! Two input formats are accepted: this catalog's own
//! (`{"schema": "pinokio-catalog/1", "apps": [...]}`) and the upstream
//! cleaned app list (an object keyed by app id), which is converted the way
//! `catalog/build.py` converts it (keep the two in step).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::home::PinokioHome;

/// The format tag of a catalog file.
pub const SCHEMA: &str = "pinokio-catalog/1";
/// The override file's name inside the Pinokio home.
pub const OVERRIDE_FILE: &str = "catalog.json";

/// The repository's catalog, embedded.
const BUILTIN_JSON: &str = include_str!("../../catalog/apps.json");

/// Repositories with no public snapshot (owner/repo, matched in `repo_url`).
pub const MISSING_REPOS: &[&str] = &[
    "Paxurux/higgs-audio-v2-ui",
    "6Morpheus6/OmniSVG",
    "FP-Studio/fp-studio",
    "6Morpheus6/Nemoml",
    "TheStingerX/Ilaria-RVC-Zero",
    "cocktailpeanutlabs/framepack",
    "cocktailpeanutlabs/CocktailPeanut",
    "pinokiofactory/Ilaria-RVC",
];

/// App ids whose repositories hold no script with a `run` list.
pub const NOT_A_LAUNCHER: &[&str] = &[
    "allegro-txt2vid",
    "breadboard",
    "generative-models",
    "kittentts",
    "streamdiffusion",
];

/// Tags that say nothing about the app (dropped when converting).
const META_TAGS: &[&str] = &["pinokio-tagged"];

/// Tags shown in a generated summary.
const SUMMARY_TAGS: usize = 3;

/// The largest catalog accepted from a URL.
const MAX_DOWNLOAD: u64 = 64 * 1024 * 1024;

/// How long a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors reading, downloading, validating or writing a catalog. Each names
/// the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read the catalog: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{origin}: the catalog is not valid JSON: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: not a valid catalog: {message}")]
    Invalid { origin: String, message: String },
    #[error("{url}: cannot download the catalog: {message}")]
    Fetch { url: String, message: String },
    #[error("{path}: cannot write the catalog: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Can the app be installed?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// A public launcher repository.
    Ok,
    /// The repository has no public snapshot.
    Missing,
    /// The repository exists but holds no launcher script.
    NotALauncher,
}

impl AppStatus {
    /// The JSON name (`ok`, `missing`, `not_a_launcher`).
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::Ok => "ok",
            AppStatus::Missing => "missing",
            AppStatus::NotALauncher => "not_a_launcher",
        }
    }

    /// Why an app with this status cannot be installed (`None`: it can).
    pub fn problem(self) -> Option<&'static str> {
        match self {
            AppStatus::Ok => None,
            AppStatus::Missing => Some("the repository has no public snapshot"),
            AppStatus::NotALauncher => Some("the repository holds no launcher script"),
        }
    }
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One app of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogApp {
    /// The app id (also its folder name under `HOME/api`).
    pub id: String,
    pub name: String,
    pub repo_url: String,
    pub clone_url: String,
    /// IMAGE, AUDIO, VIDEO, UTILITY, LLM or 3D.
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub author: String,
    /// `js` or `json`.
    #[serde(default)]
    pub installer_type: String,
    #[serde(default)]
    pub has_install_js: bool,
    #[serde(default)]
    pub has_install_json: bool,
    #[serde(default)]
    pub has_pinokio_js: bool,
    pub status: AppStatus,
    /// A short generated description ("Audio app by X (TTS, ...)").
    #[serde(default)]
    pub summary: String,
}

impl CatalogApp {
    /// Is the app expected to install (status `ok`)?
    pub fn installable(&self) -> bool {
        self.status == AppStatus::Ok
    }
}

/// A catalog file as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CatalogFile {
    schema: String,
    #[serde(default)]
    generated_from: String,
    apps: Vec<CatalogApp>,
}

/// Where a catalog came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogOrigin {
    /// The catalog embedded in the program.
    Builtin,
    /// A file (the home's override, or one given to [`Catalog::load`]).
    File(PathBuf),
}

impl std::fmt::Display for CatalogOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogOrigin::Builtin => f.write_str("built-in catalog"),
            CatalogOrigin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Lower-cased search fields of one app.
#[derive(Debug, Clone)]
struct Folded {
    id: String,
    name: String,
    tags: Vec<String>,
    author: String,
    category: String,
    summary: String,
}

impl Folded {
    fn of(a: &CatalogApp) -> Self {
        Folded {
            id: a.id.to_lowercase(),
            name: a.name.to_lowercase(),
            tags: a.tags.iter().map(|t| t.to_lowercase()).collect(),
            author: a.author.to_lowercase(),
            category: a.category.to_lowercase(),
            summary: a.summary.to_lowercase(),
        }
    }

    fn any_contains(&self, w: &str) -> bool {
        self.id.contains(w)
            || self.name.contains(w)
            || self.tags.iter().any(|t| t.contains(w))
            || self.author.contains(w)
            || self.category.contains(w)
            || self.summary.contains(w)
    }

    /// Rank of a match for the lower-cased query `q` (lower is better):
    /// 0 exact id, 1 id or name prefix, 2 name contains, 3 tag, 4 any other
    /// field, 5 every word of a multi-word query somewhere.
    fn rank(&self, q: &str) -> Option<u8> {
        if self.id == q {
            Some(0)
        } else if self.id.starts_with(q) || self.name.starts_with(q) {
            Some(1)
        } else if self.name.contains(q) {
            Some(2)
        } else if self.tags.iter().any(|t| t.contains(q)) {
            Some(3)
        } else if self.any_contains(q) {
            Some(4)
        } else {
            let words: Vec<&str> = q.split_whitespace().collect();
            (words.len() > 1 && words.iter().all(|w| self.any_contains(w))).then_some(5)
        }
    }
}

/// The app catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    apps: Vec<CatalogApp>,
    folded: Vec<Folded>,
    generated_from: String,
    origin: CatalogOrigin,
}

impl Catalog {
    /// The catalog embedded in the program (`catalog/apps.json`).
    pub fn builtin() -> Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                parse(BUILTIN_JSON, "built-in catalog", CatalogOrigin::Builtin)
                    .expect("the embedded catalog/apps.json is valid")
            })
            .clone()
    }

    /// Read a catalog file (this format, or the upstream cleaned list).
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|error| CatalogError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        parse(
            &text,
            &path.display().to_string(),
            CatalogOrigin::File(path.to_path_buf()),
        )
    }

    /// `HOME/catalog.json`.
    pub fn override_path(home: &PinokioHome) -> PathBuf {
        home.root().join(OVERRIDE_FILE)
    }

    /// The home's catalog: `HOME/catalog.json` when present, else the
    /// built-in one.
    pub fn for_home(home: &PinokioHome) -> Result<Catalog, CatalogError> {
        let p = Self::override_path(home);
        if p.is_file() {
            Self::load(&p)
        } else {
            Ok(Self::builtin())
        }
    }

    /// Replace `HOME/catalog.json` with the catalog read from `source`: a
    /// file path or an `http(s)://` URL, in this format or the upstream
    /// cleaned one. The new catalog is validated first; the old file is
    /// replaced atomically and only when the new one is valid.
    pub fn update_from(home: &PinokioHome, source: &str) -> Result<Catalog, CatalogError> {
        let source = source.trim();
        let (text, shown) = if is_url(source) {
            (download(source)?, source.to_string())
        } else {
            let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
            let text = std::fs::read_to_string(&path).map_err(|error| CatalogError::Read {
                path: path.clone(),
                error,
            })?;
            (text, path.display().to_string())
        };
        let target = Self::override_path(home);
        let mut cat = parse(&text, &shown, CatalogOrigin::File(target.clone()))?;
        if cat.generated_from.is_empty() {
            cat.generated_from = shown;
        }
        let file = CatalogFile {
            schema: SCHEMA.to_string(),
            generated_from: cat.generated_from.clone(),
            apps: cat.apps.clone(),
        };
        let mut json = serde_json::to_string_pretty(&file).map_err(|e| CatalogError::Write {
            path: target.clone(),
            error: std::io::Error::other(e),
        })?;
        json.push('\n');
        write_atomically(&target, json.as_bytes())?;
        Ok(cat)
    }

    /// All apps, sorted by id.
    pub fn apps(&self) -> &[CatalogApp] {
        &self.apps
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Where this catalog was read from.
    pub fn origin(&self) -> &CatalogOrigin {
        &self.origin
    }

    /// The file the catalog was generated from (its `generated_from`).
    pub fn generated_from(&self) -> &str {
        &self.generated_from
    }

    /// The categories, sorted, each once.
    pub fn categories(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.apps.iter().map(|a| a.category.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// The app with this id (exact, else ignoring case).
    pub fn get(&self, id: &str) -> Option<&CatalogApp> {
        let id = id.trim();
        self.apps.iter().find(|a| a.id == id).or_else(|| {
            let l = id.to_lowercase();
            self.apps
                .iter()
                .zip(&self.folded)
                .find(|(_, f)| f.id == l)
                .map(|(a, _)| a)
        })
    }

    /// Apps matching `text` (ignoring case, in id, name, tags, author,
    /// category and summary), in `category` and carrying `tag` when given
    /// (both ignoring case). Ranked: exact id, id or name prefix, name
    /// contains, tag match, other fields; ties by id. No text: every app
    /// that passes the filters, by id.
    pub fn search(
        &self,
        text: Option<&str>,
        category: Option<&str>,
        tag: Option<&str>,
    ) -> Vec<&CatalogApp> {
        let q = text.map(|t| t.trim().to_lowercase()).unwrap_or_default();
        let category = category.map(|c| c.trim().to_lowercase());
        let tag = tag.map(|t| t.trim().to_lowercase());
        let mut hits: Vec<(u8, &CatalogApp)> = self
            .apps
            .iter()
            .zip(&self.folded)
            .filter(|(_, f)| category.as_ref().is_none_or(|c| &f.category == c))
            .filter(|(_, f)| tag.as_ref().is_none_or(|t| f.tags.iter().any(|x| x == t)))
            .filter_map(|(a, f)| {
                if q.is_empty() {
                    Some((0, a))
                } else {
                    f.rank(&q).map(|r| (r, a))
                }
            })
            .collect();
        hits.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.id.cmp(&b.id)));
        hits.into_iter().map(|(_, a)| a).collect()
    }

    /// Ids close to `id` (edit distance, or one containing the other), best
    /// first, at most five: for "unknown app id, did you mean ...".
    pub fn suggest(&self, id: &str) -> Vec<String> {
        let q = id.trim().to_lowercase();
        if q.is_empty() {
            return Vec::new();
        }
        let qn = q.chars().count();
        let limit = (qn / 3).clamp(1, 3);
        let mut scored: Vec<(usize, &str)> = self
            .folded
            .iter()
            .zip(&self.apps)
            .filter_map(|(f, a)| {
                let d = edit_distance(&q, &f.id);
                let contains = (qn >= 3 && (f.id.contains(&q) || f.name.contains(&q)))
                    || (f.id.chars().count() >= 4 && q.contains(&f.id));
                (d <= limit || contains).then_some((d, a.id.as_str()))
            })
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(5)
            .map(|(_, id)| id.to_string())
            .collect()
    }

    fn from_apps(apps: Vec<CatalogApp>, generated_from: String, origin: CatalogOrigin) -> Self {
        let folded = apps.iter().map(Folded::of).collect();
        Catalog {
            apps,
            folded,
            generated_from,
            origin,
        }
    }
}

/// Parse and validate catalog text, in either format.
fn parse(text: &str, shown: &str, origin: CatalogOrigin) -> Result<Catalog, CatalogError> {
    let invalid = |message: String| CatalogError::Invalid {
        origin: shown.to_string(),
        message,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| CatalogError::Parse {
        origin: shown.to_string(),
        message: e.to_string(),
    })?;
    let Value::Object(obj) = value else {
        return Err(invalid(
            "expected an object (this catalog format, or the upstream list keyed by app id)".into(),
        ));
    };
    let (mut apps, generated_from) = if obj.contains_key("schema") || obj.contains_key("apps") {
        match obj.get("schema") {
            Some(Value::String(s)) if s == SCHEMA => {}
            Some(other) => {
                return Err(invalid(format!(
                    "unsupported schema {other} (expected {SCHEMA:?})"
                )))
            }
            None => return Err(invalid(format!("no \"schema\" (expected {SCHEMA:?})"))),
        }
        let file: CatalogFile = serde_json::from_value(Value::Object(obj))
            .map_err(|e| invalid(format!("bad catalog entry: {e}")))?;
        (file.apps, file.generated_from)
    } else {
        // a URL is kept whole, a file by its name
        let name = if is_url(shown) {
            shown.to_string()
        } else {
            Path::new(shown)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| shown.to_string())
        };
        (convert_upstream(&obj).map_err(invalid)?, name)
    };
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    validate(&apps).map_err(invalid)?;
    Ok(Catalog::from_apps(apps, generated_from, origin))
}

/// One entry of the upstream cleaned list (only the facts kept here).
#[derive(Debug, Deserialize)]
struct UpstreamApp {
    #[serde(default)]
    name: Option<String>,
    repo_url: String,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    tags: Vec<Value>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    installer_type: Option<String>,
    #[serde(default)]
    has_install_js: Option<bool>,
    #[serde(default)]
    has_install_json: Option<bool>,
    #[serde(default)]
    has_pinokio_js: Option<bool>,
}

/// Convert the upstream cleaned list (keyed by id) as `catalog/build.py`
/// does. Its `description` sentences are not kept.
fn convert_upstream(obj: &Map<String, Value>) -> Result<Vec<CatalogApp>, String> {
    if obj.is_empty() {
        return Err("no apps".into());
    }
    obj.iter()
        .map(|(id, v)| {
            let u: UpstreamApp = serde_json::from_value(v.clone())
                .map_err(|e| format!("app {id:?}: not an upstream app entry: {e}"))?;
            let tags: Vec<String> = u
                .tags
                .iter()
                .filter_map(|t| t.as_str())
                .filter(|t| !META_TAGS.contains(t))
                .map(str::to_string)
                .collect();
            let category = u.category.unwrap_or_default();
            let author = u.author.unwrap_or_default();
            let status = status_of(id, &u.repo_url);
            let summary = summary_of(&category, &author, &tags);
            Ok(CatalogApp {
                id: id.clone(),
                name: u
                    .name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| id.clone()),
                clone_url: u.clone_url.unwrap_or_default(),
                repo_url: u.repo_url,
                category,
                tags,
                author,
                installer_type: u.installer_type.unwrap_or_default(),
                has_install_js: u.has_install_js.unwrap_or(false),
                has_install_json: u.has_install_json.unwrap_or(false),
                has_pinokio_js: u.has_pinokio_js.unwrap_or(false),
                status,
                summary,
            })
        })
        .collect()
}

/// Reject catalogs the rest of the program cannot use.
fn validate(apps: &[CatalogApp]) -> Result<(), String> {
    if apps.is_empty() {
        return Err("no apps".into());
    }
    for w in apps.windows(2) {
        if w[0].id == w[1].id {
            return Err(format!("app id {:?} appears more than once", w[0].id));
        }
    }
    for a in apps {
        let ok_id = !a.id.is_empty()
            && a.id != "."
            && a.id != ".."
            && a.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_id {
            return Err(format!(
                "invalid app id {:?}: use letters, digits, '.', '-' and '_'",
                a.id
            ));
        }
        if a.name.trim().is_empty() {
            return Err(format!("app {:?}: the name is empty", a.id));
        }
        if !is_url(&a.repo_url) {
            return Err(format!(
                "app {:?}: repo_url must be an http(s) URL (got {:?})",
                a.id, a.repo_url
            ));
        }
        if !a.clone_url.is_empty() && !is_url(&a.clone_url) {
            return Err(format!(
                "app {:?}: clone_url must be an http(s) URL (got {:?})",
                a.id, a.clone_url
            ));
        }
        if a.category.trim().is_empty() {
            return Err(format!("app {:?}: the category is empty", a.id));
        }
    }
    Ok(())
}

fn is_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// `owner/repo` of a GitHub-style URL, lower case.
fn owner_repo(url: &str) -> Option<String> {
    let mut path = url.trim();
    for prefix in ["https://", "http://"] {
        if path.len() >= prefix.len() && path[..prefix.len()].eq_ignore_ascii_case(prefix) {
            path = &path[prefix.len()..];
        }
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() < 3 {
        return None;
    }
    let repo = parts[2];
    let repo = if repo.to_ascii_lowercase().ends_with(".git") {
        &repo[..repo.len() - 4]
    } else {
        repo
    };
    Some(format!("{}/{}", parts[1], repo).to_lowercase())
}

/// The status of an upstream entry: the known missing repositories and
/// non-launchers, else `ok`.
pub fn status_of(id: &str, repo_url: &str) -> AppStatus {
    let or = owner_repo(repo_url);
    if or.is_some_and(|or| MISSING_REPOS.iter().any(|m| m.eq_ignore_ascii_case(&or))) {
        AppStatus::Missing
    } else if NOT_A_LAUNCHER.contains(&id) {
        AppStatus::NotALauncher
    } else {
        AppStatus::Ok
    }
}

fn category_word(category: &str) -> String {
    match category {
        "IMAGE" => "Image".into(),
        "AUDIO" => "Audio".into(),
        "VIDEO" => "Video".into(),
        "UTILITY" => "Utility".into(),
        "LLM" => "LLM".into(),
        "3D" => "3D".into(),
        "" => "Uncategorised".into(),
        other => {
            // Python's str.capitalize()
            let mut cs = other.chars();
            let first = cs.next().map(|c| c.to_uppercase().collect::<String>());
            first.unwrap_or_default() + &cs.as_str().to_lowercase()
        }
    }
}

/// The generated summary: "Audio app by SUP3RMASS1VE (TTS, text-to-speech)".
pub fn summary_of(category: &str, author: &str, tags: &[String]) -> String {
    let mut s = format!("{} app", category_word(category));
    if !author.is_empty() {
        s.push_str(" by ");
        s.push_str(author);
    }
    let author_l = author.to_lowercase();
    let shown: Vec<&str> = tags
        .iter()
        .filter(|t| t.to_lowercase() != author_l)
        .take(SUMMARY_TAGS)
        .map(String::as_str)
        .collect();
    if !shown.is_empty() {
        s.push_str(" (");
        s.push_str(&shown.join(", "));
        s.push(')');
    }
    s
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// GET `url` and return the body as text.
fn download(url: &str) -> Result<String, CatalogError> {
    let fail = |message: String| CatalogError::Fetch {
        url: url.to_string(),
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| fail(format!("invalid URL: {e}")))?;
    let client = crate::methods::net::client_for(&parsed, Some(DOWNLOAD_TIMEOUT)).map_err(fail)?;
    let resp = client
        .get(parsed)
        .header(reqwest::header::USER_AGENT, crate::methods::net::USER_AGENT)
        .send()
        .map_err(|e| fail(crate::methods::net::error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("the server answered {status}")));
    }
    if resp.content_length().is_some_and(|n| n > MAX_DOWNLOAD) {
        return Err(fail(format!("larger than {MAX_DOWNLOAD} bytes")));
    }
    let mut body = Vec::new();
    resp.take(MAX_DOWNLOAD + 1)
        .read_to_end(&mut body)
        .map_err(|e| fail(format!("reading the answer failed: {e}")))?;
    if body.len() as u64 > MAX_DOWNLOAD {
        return Err(fail(format!("larger than {MAX_DOWNLOAD} bytes")));
    }
    String::from_utf8(body).map_err(|_| fail("the answer is not UTF-8 text".into()))
}

/// Write `bytes` to a temporary file beside `target`, then rename it over
/// `target`.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    let werr = |path: &Path, error: std::io::Error| CatalogError::Write {
        path: path.to_path_buf(),
        error,
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(target, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    fn ids(v: &[&CatalogApp]) -> Vec<String> {
        v.iter().map(|a| a.id.clone()).collect()
    }

    fn app(id: &str, name: &str, category: &str, tags: &[&str]) -> CatalogApp {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        CatalogApp {
            id: id.into(),
            name: name.into(),
            repo_url: format!("https://github.com/someone/{id}"),
            clone_url: format!("https://github.com/someone/{id}.git"),
            category: category.into(),
            summary: summary_of(category, "someone", &tags),
            tags,
            author: "someone".into(),
            installer_type: "js".into(),
            has_install_js: true,
            has_install_json: false,
            has_pinokio_js: true,
            status: AppStatus::Ok,
        }
    }

    fn small() -> Catalog {
        let mut apps = vec![
            app("flux", "Flux WebUI", "IMAGE", &["image-generation"]),
            app("fluxgym", "FluxGym", "IMAGE", &["training", "lora"]),
            app("comfy", "ComfyUI with flux", "IMAGE", &["node-editor"]),
            app("whisper", "Whisper", "AUDIO", &["flux-capacitor", "ASR"]),
            app("zonos", "Zonos", "AUDIO", &["TTS"]),
            app("reflux", "Re", "VIDEO", &["video"]),
        ];
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        Catalog::from_apps(apps, "test".into(), CatalogOrigin::Builtin)
    }

    const UPSTREAM: &str = r#"{
      "tts-one": {"name": "TTS One", "description": "Do not copy this sentence.",
        "repo_url": "https://github.com/alice/tts-one", "clone_url": "https://github.com/alice/tts-one.git",
        "category": "AUDIO", "tags": ["pinokio-tagged", "alice", "TTS", "voice"], "author": "alice",
        "stars": 3, "has_install_js": true, "has_install_json": false, "has_pinokio_js": true,
        "installer_type": "js", "is_pinokio_app": true, "source": "x"},
      "framepack": {"name": "FramePack", "description": "Also not copied.",
        "repo_url": "https://github.com/cocktailpeanutlabs/framepack", "category": "VIDEO", "tags": [],
        "author": "cocktailpeanutlabs", "installer_type": "json"},
      "kittentts": {"name": "KittenTTS", "repo_url": "https://github.com/bob/kittentts",
        "category": "AUDIO", "tags": ["pinokio-tagged"], "author": "bob"}
    }"#;

    #[test]
    fn builtin_catalog_is_complete_and_sorted() {
        let c = Catalog::builtin();
        assert_eq!(c.len(), 284);
        assert_eq!(c.origin(), &CatalogOrigin::Builtin);
        assert!(c.apps().windows(2).all(|w| w[0].id < w[1].id));
        assert!(c
            .apps()
            .iter()
            .all(|a| !a.tags.iter().any(|t| t == "pinokio-tagged")));
        assert!(c.apps().iter().all(|a| !a.summary.is_empty()));
        assert_eq!(
            c.categories(),
            vec!["3D", "AUDIO", "IMAGE", "LLM", "UTILITY", "VIDEO"]
        );
    }

    #[test]
    fn builtin_statuses() {
        let c = Catalog::builtin();
        let missing: Vec<&str> = c
            .apps()
            .iter()
            .filter(|a| a.status == AppStatus::Missing)
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(
            missing,
            vec![
                "cocktailpeanut",
                "fp-studio",
                "framepack",
                "higgs-audio-v2-ui",
                "ilaria-rvc",
                "ilaria-rvc-zero",
                "nemoml",
                "omnisvg"
            ]
        );
        // every listed repository is matched by owner/repo
        for m in MISSING_REPOS {
            let hit = c
                .apps()
                .iter()
                .find(|a| owner_repo(&a.repo_url).as_deref() == Some(m.to_lowercase().as_str()));
            assert_eq!(hit.map(|a| a.status), Some(AppStatus::Missing), "{m}");
        }
        for id in NOT_A_LAUNCHER {
            let a = c.get(id).unwrap();
            assert_eq!(a.status, AppStatus::NotALauncher, "{id}");
            assert!(!a.installable());
        }
        let ok = c.apps().iter().filter(|a| a.installable()).count();
        assert_eq!(ok, 284 - 8 - 5);
    }

    #[test]
    fn builtin_matches_the_rust_conversion_of_the_source() {
        // The committed apps.json and this module's converter agree (only
        // when the shared source file is present next to the repository).
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/catalog/cleaned_pinokio_apps.json");
        let Ok(text) = std::fs::read_to_string(&src) else {
            return;
        };
        let converted = parse(&text, "cleaned_pinokio_apps.json", CatalogOrigin::Builtin).unwrap();
        let builtin = Catalog::builtin();
        assert_eq!(converted.apps(), builtin.apps());
        assert_eq!(converted.generated_from(), builtin.generated_from());
    }

    #[test]
    fn search_ranks_exact_prefix_name_tag_other() {
        let c = small();
        // exact id, then id/name prefix, then name contains, then tag, then other fields
        assert_eq!(
            ids(&c.search(Some("flux"), None, None)),
            vec!["flux", "fluxgym", "comfy", "whisper", "reflux"]
        );
        assert_eq!(ids(&c.search(Some("FLUXGYM"), None, None)), vec!["fluxgym"]);
        // name prefix counts like an id prefix
        assert_eq!(ids(&c.search(Some("comfyui"), None, None)), vec!["comfy"]);
        // author/summary hits come last, by id
        let all = c.search(Some("someone"), None, None);
        assert_eq!(all.len(), 6);
        assert!(c.search(Some("nothing-like-this"), None, None).is_empty());
        // multi-word: every word somewhere
        assert_eq!(ids(&c.search(Some("zonos tts"), None, None)), vec!["zonos"]);
    }

    #[test]
    fn search_filters_by_category_and_tag() {
        let c = small();
        assert_eq!(
            ids(&c.search(None, Some("audio"), None)),
            vec!["whisper", "zonos"]
        );
        assert_eq!(
            ids(&c.search(Some("flux"), Some("IMAGE"), None)),
            vec!["flux", "fluxgym", "comfy"]
        );
        assert_eq!(ids(&c.search(None, None, Some("tts"))), vec!["zonos"]);
        // the tag filter is an exact (case-insensitive) tag, not a substring
        assert!(c.search(None, None, Some("flux")).is_empty());
        assert_eq!(
            ids(&c.search(Some("flux"), None, Some("LORA"))),
            vec!["fluxgym"]
        );
        assert_eq!(c.search(None, None, None).len(), 6);
        assert!(c.search(None, Some("3D"), None).is_empty());
    }

    #[test]
    fn search_the_builtin_catalog() {
        let c = Catalog::builtin();
        let hits = c.search(Some("comfyui"), None, None);
        assert_eq!(hits[0].id, "comfyui");
        let tts = c.search(None, Some("audio"), Some("tts"));
        assert!(!tts.is_empty());
        assert!(
            tts.iter()
                .all(|a| a.category == "AUDIO"
                    && a.tags.iter().any(|t| t.eq_ignore_ascii_case("tts")))
        );
        assert_eq!(c.get("VibeVoice-Pinokio").unwrap().id, "vibevoice-pinokio");
    }

    #[test]
    fn suggestions() {
        let c = small();
        assert_eq!(c.suggest("flx"), vec!["flux"]);
        let s = c.suggest("fluxgim");
        assert_eq!(s[0], "fluxgym");
        assert!(c.suggest("zzzzzzzzzz").is_empty());
        assert!(c.suggest("").is_empty());
        let b = Catalog::builtin();
        assert!(b.suggest("comfy").contains(&"comfyui".to_string()));
        assert!(b
            .suggest("vibevoice")
            .iter()
            .any(|s| s.starts_with("vibevoice")));
        assert!(b.suggest("x").len() <= 5);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flux", "flux"), 0);
    }

    #[test]
    fn summaries_are_generated_from_facts() {
        let tags = vec![
            "SUP3RMASS1VE".to_string(),
            "TTS".into(),
            "text-to-speech".into(),
            "voice".into(),
            "more".into(),
        ];
        assert_eq!(
            summary_of("AUDIO", "SUP3RMASS1VE", &tags),
            "Audio app by SUP3RMASS1VE (TTS, text-to-speech, voice)"
        );
        assert_eq!(summary_of("3D", "", &[]), "3D app");
        assert_eq!(summary_of("robots", "x", &[]), "Robots app by x");
    }

    #[test]
    fn update_from_an_upstream_file() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path().join("home"));
        let src = tmp.path().join("cleaned.json");
        std::fs::write(&src, UPSTREAM).unwrap();
        let c = Catalog::update_from(&home, src.to_str().unwrap()).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.generated_from(), "cleaned.json");
        let t = c.get("tts-one").unwrap();
        assert_eq!(t.tags, vec!["alice", "TTS", "voice"]);
        assert_eq!(t.summary, "Audio app by alice (TTS, voice)");
        assert_eq!(t.status, AppStatus::Ok);
        assert_eq!(c.get("framepack").unwrap().status, AppStatus::Missing);
        assert_eq!(c.get("kittentts").unwrap().status, AppStatus::NotALauncher);
        assert_eq!(c.get("kittentts").unwrap().clone_url, "");
        // written in this catalog's format, without the descriptions
        let written = std::fs::read_to_string(Catalog::override_path(&home)).unwrap();
        assert!(written.contains(SCHEMA));
        assert!(!written.contains("Do not copy"));
        let again = Catalog::for_home(&home).unwrap();
        assert_eq!(again.apps(), c.apps());
        assert_eq!(
            again.origin(),
            &CatalogOrigin::File(Catalog::override_path(&home))
        );
    }

    #[test]
    fn update_from_a_catalog_file() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path().join("home"));
        assert_eq!(Catalog::for_home(&home).unwrap().len(), 284);
        let small = small();
        let file = CatalogFile {
            schema: SCHEMA.into(),
            generated_from: "hand-made".into(),
            apps: small.apps().to_vec(),
        };
        let src = tmp.path().join("mine.json");
        std::fs::write(&src, serde_json::to_string(&file).unwrap()).unwrap();
        let c = Catalog::update_from(&home, &format!("file://{}", src.display())).unwrap();
        assert_eq!(c.apps(), small.apps());
        assert_eq!(c.generated_from(), "hand-made");
        let loaded = Catalog::for_home(&home).unwrap();
        assert_eq!(loaded.len(), 6);
        assert_eq!(Catalog::load(&src).unwrap().apps(), small.apps());
    }

    #[test]
    fn a_bad_file_leaves_the_old_catalog_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path().join("home"));
        let good = tmp.path().join("good.json");
        std::fs::write(&good, UPSTREAM).unwrap();
        Catalog::update_from(&home, good.to_str().unwrap()).unwrap();
        let before = std::fs::read(Catalog::override_path(&home)).unwrap();

        let cases: &[(&str, &str)] = &[
            ("{ not json", "not valid JSON"),
            ("[1, 2]", "expected an object"),
            (r#"{"schema": "other/2", "apps": []}"#, "unsupported schema"),
            (r#"{"schema": "pinokio-catalog/1", "apps": []}"#, "no apps"),
            (r#"{"apps": []}"#, "no \"schema\""),
            (r#"{"x": {"name": "no repo url"}}"#, "app \"x\""),
            (
                r#"{"../evil": {"repo_url": "https://github.com/a/b", "category": "IMAGE"}}"#,
                "invalid app id",
            ),
            (
                r#"{"x": {"repo_url": "ftp://github.com/a/b", "category": "IMAGE"}}"#,
                "repo_url",
            ),
            (
                r#"{"x": {"repo_url": "https://github.com/a/b"}}"#,
                "category",
            ),
        ];
        for (i, (text, needle)) in cases.iter().enumerate() {
            let bad = tmp.path().join(format!("bad{i}.json"));
            std::fs::write(&bad, text).unwrap();
            let e = Catalog::update_from(&home, bad.to_str().unwrap()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&bad.display().to_string()), "{msg}");
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
            assert_eq!(
                std::fs::read(Catalog::override_path(&home)).unwrap(),
                before
            );
        }
        let e = Catalog::update_from(&home, tmp.path().join("absent.json").to_str().unwrap())
            .unwrap_err();
        assert!(matches!(e, CatalogError::Read { .. }), "{e}");
        assert!(e.to_string().contains("absent.json"));
        assert_eq!(Catalog::for_home(&home).unwrap().len(), 3);
        // no temporary files left behind
        let names: Vec<String> = std::fs::read_dir(home.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![OVERRIDE_FILE.to_string()]);
    }

    #[test]
    fn a_broken_override_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path());
        std::fs::write(Catalog::override_path(&home), "{").unwrap();
        let e = Catalog::for_home(&home).unwrap_err();
        assert!(e.to_string().contains("catalog.json"), "{e}");
    }

    /// Serve `answers` (status line, body), one per connection, on
    /// 127.0.0.1; returns the base URL.
    fn serve(answers: Vec<(&'static str, String)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = std::io::BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn update_from_a_url() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path().join("home"));
        let url = serve(vec![
            ("200 OK", UPSTREAM.to_string()),
            ("404 Not Found", "gone".to_string()),
            ("200 OK", "{ broken".to_string()),
        ]);
        let c = Catalog::update_from(&home, &format!("{url}/apps.json")).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.generated_from(), format!("{url}/apps.json"));
        let before = std::fs::read(Catalog::override_path(&home)).unwrap();

        let e = Catalog::update_from(&home, &format!("{url}/missing.json")).unwrap_err();
        assert!(matches!(e, CatalogError::Fetch { .. }), "{e}");
        assert!(e.to_string().contains("404"), "{e}");
        assert!(e.to_string().contains("/missing.json"), "{e}");
        let e = Catalog::update_from(&home, &format!("{url}/broken.json")).unwrap_err();
        assert!(matches!(e, CatalogError::Parse { .. }), "{e}");
        assert_eq!(
            std::fs::read(Catalog::override_path(&home)).unwrap(),
            before
        );
    }

    #[test]
    fn an_unreachable_url_is_a_fetch_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let tmp = tempfile::tempdir().unwrap();
        let home = PinokioHome::new(tmp.path());
        let url = format!("http://127.0.0.1:{port}/apps.json");
        let e = Catalog::update_from(&home, &url).unwrap_err();
        assert!(matches!(e, CatalogError::Fetch { .. }), "{e}");
        assert!(e.to_string().contains(&url), "{e}");
        assert!(!Catalog::override_path(&home).exists());
    }
}
