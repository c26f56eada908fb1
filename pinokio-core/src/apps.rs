//! Apps: launchers installed under `HOME/api/<name>`. Cloning (git CLI,
//! shallow, with mirror rewrites), picking and running the install item the
//! way desktop Pinokio does, and the "one-click" loop that runs the menu's
//! default item until it points at a web UI (section 5.5 of the semantics
//! note).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::engine::{
    stringify_menu_params, Engine, EngineError, Menu, MenuItem, RunOutcome, RunRequest,
};
use crate::events::RunStatus;
use crate::home::PinokioHome;

/// Errors of app management.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("app {0:?} is already installed in {1}; use `pinokio update` or uninstall it first")]
    AlreadyInstalled(String, PathBuf),
    #[error("app {0:?} is not installed (no folder {1})")]
    NotInstalled(String, PathBuf),
    #[error("invalid app name {0:?}: use letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("git is not installed; install git to download launchers")]
    NoGit,
    #[error("cloning {url} failed (git exit status {code:?}): {message}")]
    Clone {
        url: String,
        code: Option<i32>,
        message: String,
    },
    #[error("{url} is not a Pinokio launcher: it has no pinokio.js, install.js or install.json")]
    NotALauncher { url: String },
    #[error("{0}: nothing to install: the menu has no default script item and there is no install.js/install.json")]
    NoInstallScript(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{script} failed: {message}")]
    RunFailed { script: PathBuf, message: String },
    #[error("{0:?} is not a git URL, a launcher folder, or an app id in the catalog")]
    UnknownSource(String),
    #[error("{id}: {problem}; it cannot be installed")]
    NotInstallable { id: String, problem: String },
    #[error("unknown app {id:?}; did you mean: {}?", suggestions.join(", "))]
    UnknownApp {
        id: String,
        suggestions: Vec<String>,
    },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("{0}: the launcher kept asking to run scripts without showing a web UI (gave up after {1} rounds)")]
    NoWebUi(PathBuf, usize),
}

/// A git URL rewrite, like git's `url.<to>.insteadOf <from>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub from: String,
    pub to: String,
}

impl Mirror {
    /// Parse `FROM=TO`.
    pub fn parse(s: &str) -> Option<Mirror> {
        let (from, to) = s.split_once('=')?;
        (!from.is_empty() && !to.is_empty()).then(|| Mirror {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

/// Apply the longest matching mirror prefix.
pub fn rewrite_url(url: &str, mirrors: &[Mirror]) -> String {
    mirrors
        .iter()
        .filter(|m| url.starts_with(&m.from))
        .max_by_key(|m| m.from.len())
        .map(|m| format!("{}{}", m.to, &url[m.from.len()..]))
        .unwrap_or_else(|| url.to_string())
}

/// Mirrors from `HOME/git-mirrors` (one `FROM=TO` per line, `#` comments)
/// followed by the given ones.
pub fn mirrors_for(engine: &Engine, extra: &[Mirror]) -> Vec<Mirror> {
    let mut out: Vec<Mirror> = std::fs::read_to_string(engine.home().root().join("git-mirrors"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(Mirror::parse)
        .collect();
    out.extend(extra.iter().cloned());
    out
}

/// The default folder name for a git URL: its last path segment without `.git`.
pub fn name_from_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    last.trim_end_matches(".git").to_string()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Does an install source look like a git URL (`http(s)://`, `file://`,
/// `git@`, `ssh://`)?
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("file://")
        || s.starts_with("git@")
        || s.starts_with("ssh://")
}

/// Where an install comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git URL to clone.
    Git(String),
    /// A launcher folder on this machine to copy.
    Folder(PathBuf),
}

impl Source {
    /// The app name when none is given: the URL's last segment, or the
    /// folder's name.
    pub fn default_name(&self) -> String {
        match self {
            Source::Git(url) => name_from_url(url),
            Source::Folder(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "app".into()),
        }
    }

    /// What the state store records as the app's source.
    pub fn shown(&self) -> String {
        match self {
            Source::Git(u) => u.clone(),
            Source::Folder(p) => p.display().to_string(),
        }
    }
}

/// The clone URL of a catalog app id. An id the catalog does not know is
/// `None`; an entry that cannot be installed (missing repository, not a
/// launcher) is an error saying so; an unknown id with close matches is an
/// error suggesting them.
pub fn catalog_clone_url(home: &PinokioHome, id: &str) -> Result<Option<String>, AppError> {
    let catalog = crate::catalog::Catalog::for_home(home)?;
    match catalog.get(id) {
        Some(app) => {
            if let Some(problem) = app.status.problem() {
                return Err(AppError::NotInstallable {
                    id: id.to_string(),
                    problem: problem.to_string(),
                });
            }
            Ok(Some(app.clone_url.clone()))
        }
        None => {
            let suggestions = catalog.suggest(id);
            if suggestions.is_empty() {
                Ok(None)
            } else {
                Err(AppError::UnknownApp {
                    id: id.to_string(),
                    suggestions,
                })
            }
        }
    }
}

/// An install source: a git URL, a launcher folder, or a catalog app id.
pub fn resolve_source(home: &PinokioHome, source: &str) -> Result<Source, AppError> {
    if is_url(source) {
        return Ok(Source::Git(source.to_string()));
    }
    let p = Path::new(source);
    if p.is_dir() {
        return std::path::absolute(p)
            .map(Source::Folder)
            .map_err(|e| AppError::Io {
                path: p.to_path_buf(),
                source: e,
            });
    }
    if let Some(url) = catalog_clone_url(home, source)? {
        return Ok(Source::Git(url));
    }
    Err(AppError::UnknownSource(source.to_string()))
}

/// Put the launcher into `HOME/api/<name>` (clone with the home's mirrors
/// plus `mirrors`, or copy a folder); returns the folder.
pub fn fetch(
    engine: &Engine,
    source: &Source,
    name: &str,
    mirrors: &[Mirror],
) -> Result<PathBuf, AppError> {
    match source {
        Source::Git(url) => clone(engine, url, name, &mirrors_for(engine, mirrors)),
        Source::Folder(dir) => {
            if !is_launcher(dir) {
                return Err(AppError::NotALauncher {
                    url: dir.display().to_string(),
                });
            }
            let dest = engine.home().api().join(name);
            if dest.exists() {
                return Err(AppError::AlreadyInstalled(name.to_string(), dest));
            }
            if let Err(e) = copy_dir(dir, &dest) {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(AppError::Io {
                    path: dest,
                    source: std::io::Error::new(
                        e.kind(),
                        format!("cannot copy {} here: {e}", dir.display()),
                    ),
                });
            }
            Ok(dest)
        }
    }
}

/// Copy a folder tree (symlinks as links; `.git` left out).
pub fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        if name == ".git" {
            continue;
        }
        let to = dst.join(&name);
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Is this folder a launcher (something Pinokio can run)?
pub fn is_launcher(dir: &Path) -> bool {
    let root = crate::loader::launcher_root(dir);
    [
        "pinokio.js",
        "install.js",
        "install.json",
        "start.js",
        "start.json",
    ]
    .iter()
    .any(|f| root.join(f).is_file())
}

/// Clone `url` (after mirror rewrites) into `HOME/api/<name>`, shallow.
/// The clone goes to a temporary folder first, so a failed clone leaves
/// nothing behind.
pub fn clone(
    engine: &Engine,
    url: &str,
    name: &str,
    mirrors: &[Mirror],
) -> Result<PathBuf, AppError> {
    if !valid_name(name) {
        return Err(AppError::BadName(name.to_string()));
    }
    let dest = engine.home().api().join(name);
    if dest.exists() {
        return Err(AppError::AlreadyInstalled(name.to_string(), dest));
    }
    let git = which::which("git").map_err(|_| AppError::NoGit)?;
    let real = rewrite_url(url, mirrors);
    let tmp = engine
        .home()
        .api()
        .join(format!(".{name}.cloning-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new(git)
        .args([
            "clone",
            "--depth",
            "1",
            "--recurse-submodules",
            "--shallow-submodules",
            "--quiet",
        ])
        .arg(&real)
        .arg(&tmp)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GCM_INTERACTIVE", "never")
        .output()
        .map_err(|e| AppError::Io {
            path: tmp.clone(),
            source: e,
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(AppError::Clone {
            url: if real == url {
                real
            } else {
                format!("{url} (as {real})")
            },
            code: out.status.code(),
            message,
        });
    }
    if !is_launcher(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(AppError::NotALauncher {
            url: url.to_string(),
        });
    }
    std::fs::rename(&tmp, &dest).map_err(|e| AppError::Io {
        path: dest.clone(),
        source: e,
    })?;
    exclude_generated(&dest);
    Ok(dest)
}

/// Keep generated files out of `git status`/`git pull` (as pinokiod does).
fn exclude_generated(app: &Path) {
    let info = app.join(".git").join("info");
    if std::fs::create_dir_all(&info).is_err() {
        return;
    }
    let path = info.join("exclude");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    for line in ["ENVIRONMENT", "/logs", "/cache", "/.pinokio-temp"] {
        if !text.lines().any(|l| l.trim() == line) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    let _ = std::fs::write(path, text);
}

/// The script a menu item runs, with the input desktop Pinokio would give it
/// (menu params travel as strings).
pub fn item_request(item: &MenuItem) -> Option<RunRequest> {
    let script = item.script.as_ref()?;
    let mut req = RunRequest::new(script.display().to_string());
    req.input = item.params.as_ref().map(stringify_menu_params);
    Some(req)
}

/// What to run to install an app now: the menu's default script item, else
/// `install.js`/`install.json` in the launcher root.
pub fn install_request(engine: &Engine, app: &Path) -> Result<RunRequest, AppError> {
    let menu = engine.menu(app)?;
    if let Some(req) = menu.default_item().and_then(item_request) {
        return Ok(req);
    }
    for f in ["install.js", "install.json"] {
        let p = menu.root.join(f);
        if p.is_file() {
            return Ok(RunRequest::new(p.display().to_string()));
        }
    }
    Err(AppError::NoInstallScript(app.to_path_buf()))
}

fn checked(out: RunOutcome) -> Result<RunOutcome, AppError> {
    if out.ok() && out.status != RunStatus::Stopped {
        return Ok(out);
    }
    let message = match (&out.error, out.status) {
        (Some(e), _) => e.to_string(),
        (None, RunStatus::Stopped) => "stopped".into(),
        (None, s) => format!("ended with status {s:?}"),
    };
    Err(AppError::RunFailed {
        script: out.script.clone(),
        message,
    })
}

/// Run the app's install item.
pub fn install(engine: &Engine, app: &Path) -> Result<RunOutcome, AppError> {
    let req = install_request(engine, app)?;
    checked(engine.run(req))
}

/// How `up` ended.
#[derive(Debug, Clone)]
pub struct Up {
    /// The web UI the menu points at.
    pub url: String,
    /// Scripts that were run, in order.
    pub ran: Vec<PathBuf>,
}

/// Desktop Pinokio's one-click flow: evaluate the menu, run its default
/// script item (unless it is already running), re-evaluate, until the
/// default item is a web page. Daemon scripts (servers) keep running.
pub fn up(engine: &Engine, app: &Path, max_rounds: usize) -> Result<Up, AppError> {
    let mut ran = Vec::new();
    for _ in 0..max_rounds {
        let menu: Menu = engine.menu(app)?;
        let Some(item) = menu.default_item() else {
            if ran.is_empty() {
                // no default item at all: fall back to install then start scripts
                let req = install_request(engine, app)?;
                ran.push(PathBuf::from(&req.uri));
                checked(engine.run(req))?;
                continue;
            }
            break;
        };
        if let Some(url) = &item.url {
            return Ok(Up {
                url: url.clone(),
                ran,
            });
        }
        let Some(req) = item_request(item) else { break };
        let path = PathBuf::from(&req.uri);
        if engine.is_running(&req.uri) {
            // running but no URL yet: nothing else will change the menu
            break;
        }
        if ran.iter().filter(|p| **p == path).count() >= 2 {
            break;
        }
        ran.push(path);
        checked(engine.run(req))?;
    }
    // A launcher that never sets local.url: the URL its running servers
    // showed (crate::urlwatch), when the engine detects URLs.
    if let Some(url) = engine.wait_detected_url(app, engine.options().url_wait) {
        return Ok(Up { url, ran });
    }
    Err(AppError::NoWebUi(app.to_path_buf(), max_rounds))
}

/// Remove an app: stop its scripts and shells, then delete its folder.
/// Shared drive data (`HOME/drive`) is never touched: links into it are
/// removed as links.
pub fn uninstall(engine: &Engine, name: &str) -> Result<PathBuf, AppError> {
    if !valid_name(name) {
        return Err(AppError::BadName(name.to_string()));
    }
    let dir = engine.home().api().join(name);
    if !dir.is_dir() {
        return Err(AppError::NotInstalled(name.to_string(), dir));
    }
    crate::control::stop_app(engine, &dir);
    // remove_dir_all does not follow symlinks, so drive data stays
    std::fs::remove_dir_all(&dir).map_err(|e| AppError::Io {
        path: dir.clone(),
        source: e,
    })?;
    Ok(dir)
}

/// Installed apps: folders under `HOME/api` that look like launchers.
pub fn installed(engine: &Engine) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(engine.home().api()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() && is_launcher(&p) {
                out.push((name, p));
            }
        }
    }
    out.sort();
    out
}

/// An app folder by name (`HOME/api/<name>`), or a path to a folder.
pub fn app_dir(engine: &Engine, name_or_path: &str) -> Result<PathBuf, AppError> {
    let p = Path::new(name_or_path);
    if (p.is_absolute() || name_or_path.contains('/')) && p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let dir = engine.home().api().join(name_or_path);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(AppError::NotInstalled(name_or_path.to_string(), dir))
    }
}

/// `local` memory of the app's scripts (for status displays).
pub fn app_locals(engine: &Engine, app: &Path) -> Vec<(String, Value)> {
    let prefix = format!("{}/", app.display());
    engine
        .memory()
        .keys(false)
        .into_iter()
        .filter(|id| id.starts_with(&prefix))
        .map(|id| {
            let v = engine.memory().local(&id);
            (id, v)
        })
        .collect()
}

/// A failure of an app operation that is not an I/O error of its own
/// (reported as `<app folder>: <message>`).
fn app_failure(app: &Path, message: String) -> AppError {
    AppError::Io {
        path: app.to_path_buf(),
        source: std::io::Error::other(message),
    }
}

/// A script of the launcher root by base name (`update` finds `update.js`,
/// else `update.json`).
pub fn launcher_script(app: &Path, base: &str) -> Option<PathBuf> {
    let root = crate::loader::launcher_root(app);
    ["js", "json"]
        .iter()
        .map(|ext| root.join(format!("{base}.{ext}")))
        .find(|p| p.is_file())
}

/// How `update` updated an app.
#[derive(Debug)]
pub enum Updated {
    /// The launcher's `update.js`/`update.json` ran.
    Script(RunOutcome),
    /// `git pull --ff-only` ran; the commits before and after.
    Pulled { from: String, to: String },
}

fn git_in(app: &Path, args: &[&str]) -> Result<std::process::Output, AppError> {
    let git = which::which("git").map_err(|_| AppError::NoGit)?;
    Command::new(git)
        .args(args)
        .current_dir(app)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GCM_INTERACTIVE", "never")
        .output()
        .map_err(|e| AppError::Io {
            path: app.to_path_buf(),
            source: e,
        })
}

fn git_head(app: &Path) -> Result<String, AppError> {
    let out = git_in(app, &["rev-parse", "HEAD"])?;
    if !out.status.success() {
        return Err(app_failure(
            app,
            format!(
                "cannot read the current commit: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Update an app: run the launcher's `update.js`/`update.json` when it has
/// one, else `git pull --ff-only` in the app folder (the git CLI, never
/// prompting for credentials).
pub fn update(engine: &Engine, app: &Path) -> Result<Updated, AppError> {
    if let Some(script) = launcher_script(app, "update") {
        let req = RunRequest::new(script.display().to_string());
        return checked(engine.run(req)).map(Updated::Script);
    }
    if !app.join(".git").exists() {
        return Err(app_failure(
            app,
            "this launcher has no update script and is not a git checkout".into(),
        ));
    }
    let from = git_head(app)?;
    let out = git_in(app, &["pull", "--ff-only", "--quiet"])?;
    if !out.status.success() {
        let code = out
            .status
            .code()
            .map_or_else(|| "a signal".to_string(), |c| c.to_string());
        return Err(app_failure(
            app,
            format!(
                "git pull --ff-only failed (exit status {code}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let to = git_head(app)?;
    Ok(Updated::Pulled { from, to })
}

/// Reset an app: stop its scripts, then run the launcher's
/// `reset.js`/`reset.json`.
pub fn reset(engine: &Engine, app: &Path) -> Result<RunOutcome, AppError> {
    let script = launcher_script(app, "reset").ok_or_else(|| {
        app_failure(
            app,
            "this launcher has no reset script (reset.js or reset.json)".into(),
        )
    })?;
    crate::control::stop_app(engine, app);
    checked(engine.run(RunRequest::new(script.display().to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rewrite_the_longest_prefix() {
        let m = vec![
            Mirror::parse("https://github.com/=file:///mirror/gh/").unwrap(),
            Mirror::parse("https://github.com/special/=file:///special/").unwrap(),
        ];
        assert_eq!(
            rewrite_url("https://github.com/a/b.git", &m),
            "file:///mirror/gh/a/b.git"
        );
        assert_eq!(
            rewrite_url("https://github.com/special/x", &m),
            "file:///special/x"
        );
        assert_eq!(
            rewrite_url("https://gitlab.com/a/b", &m),
            "https://gitlab.com/a/b"
        );
        assert!(Mirror::parse("nothing").is_none());
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url("https://github.com/x/ComfyUI.git"), "ComfyUI");
        assert_eq!(name_from_url("https://github.com/x/foo/"), "foo");
        assert_eq!(name_from_url("git@github.com:x/bar.git"), "bar");
        assert!(valid_name("comfy.pinokio"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
    }
}
