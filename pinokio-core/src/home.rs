//! The Pinokio home folder (`PINOKIO_HOME`) and script path resolution.
//!
//! Layout (created on first use): `api/` (one folder per app), `bin/`,
//! `cache/`, `drive/`, `logs/`, plus the system `ENVIRONMENT` file and
//! `key.json`.

use std::path::{Component, Path, PathBuf};

use crate::envfile;

/// Errors about the home folder and path resolution.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot create Pinokio home folder {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no home folder: set PINOKIO_HOME or pass --home")]
    NoHome,
    #[error("uri must be either an http uri, an absolute path or start with ~/ (got {0:?})")]
    RelativeWithoutBase(String),
    #[error("git uri {0:?} does not contain .git")]
    GitUriWithoutGit(String),
    #[error("no installed app has a git remote matching {0:?}")]
    GitUriNotInstalled(String),
}

/// The Pinokio home folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinokioHome {
    root: PathBuf,
}

/// Sub-folders created in every home.
pub const HOME_DIRS: &[&str] = &["api", "bin", "cache", "drive", "logs"];

impl PinokioHome {
    /// Use `root` as the home (made absolute, not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|d| d.join(&root))
                .unwrap_or(root)
        };
        PinokioHome {
            root: normalize(&root),
        }
    }

    /// `explicit` (from `--home`), else `PINOKIO_HOME`, else `~/pinokio`.
    pub fn locate(explicit: Option<&Path>, env_home: Option<&str>) -> Result<Self, HomeError> {
        if let Some(p) = explicit {
            return Ok(Self::new(p));
        }
        if let Some(h) = env_home.filter(|h| !h.trim().is_empty()) {
            return Ok(Self::new(h));
        }
        let user = dirs::home_dir().ok_or(HomeError::NoHome)?;
        Ok(Self::new(user.join("pinokio")))
    }

    /// Create the folder layout and the system ENVIRONMENT file when missing.
    pub fn ensure(&self) -> Result<(), HomeError> {
        for d in std::iter::once(&self.root as &Path)
            .map(PathBuf::from)
            .chain(HOME_DIRS.iter().map(|d| self.root.join(d)))
        {
            std::fs::create_dir_all(&d).map_err(|source| HomeError::Create {
                path: d.clone(),
                source,
            })?;
        }
        let env = self.root.join("ENVIRONMENT");
        if !env.exists() {
            let mut text = String::new();
            for (k, v) in envfile::system_defaults() {
                text.push_str(&format!("{k}={v}\n"));
            }
            std::fs::write(&env, text).map_err(|source| HomeError::Create {
                path: env.clone(),
                source,
            })?;
        }
        let key = self.root.join("key.json");
        if !key.exists() {
            std::fs::write(&key, "{}").map_err(|source| HomeError::Create {
                path: key.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn api(&self) -> PathBuf {
        self.root.join("api")
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn drive(&self) -> PathBuf {
        self.root.join("drive")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Resolve a script URI or path (section 1.5 of the semantics note):
    /// `http...` git URIs map to an installed app by its remote, `~/x` is
    /// `HOME/x`, absolute paths stay, anything else is relative to `base`
    /// (an error when there is no base).
    pub fn resolve(&self, uri: &str, base: Option<&Path>) -> Result<PathBuf, HomeError> {
        if uri.starts_with("http") {
            return self.resolve_git(uri);
        }
        if let Some(rest) = uri.strip_prefix("~/") {
            return Ok(normalize(&self.root.join(rest)));
        }
        if uri == "~" {
            return Ok(self.root.clone());
        }
        let p = Path::new(uri);
        if p.is_absolute() {
            return Ok(normalize(p));
        }
        match base {
            Some(b) => Ok(normalize(&b.join(p))),
            None => Err(HomeError::RelativeWithoutBase(uri.to_string())),
        }
    }

    /// Map a git URI to a folder under `HOME/api` by matching each app's
    /// `remote.origin.url` as a substring of the URI (first match in folder
    /// name order); text after the remote is a path inside that app.
    pub fn resolve_git(&self, uri: &str) -> Result<PathBuf, HomeError> {
        if !uri.contains(".git") {
            return Err(HomeError::GitUriWithoutGit(uri.to_string()));
        }
        for (remote, folder) in self.git_remotes() {
            let with_git = if remote.ends_with(".git") {
                remote.clone()
            } else {
                format!("{remote}.git")
            };
            if uri == remote || uri == with_git {
                return Ok(folder);
            }
            for r in [&with_git, &remote] {
                if let Some(pos) = uri.find(r.as_str()) {
                    let rest = &uri[pos + r.len()..];
                    let rest = rest.get(1..).unwrap_or("");
                    if rest.is_empty() {
                        return Ok(folder);
                    }
                    return Ok(normalize(&folder.join(rest)));
                }
            }
        }
        Err(HomeError::GitUriNotInstalled(uri.to_string()))
    }

    /// `(remote url, app folder)` for every app under `api/` that is a git
    /// repository with an `origin` remote, in folder name order.
    pub fn git_remotes(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.api()) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            if let Some(url) = read_origin_url(&d.join(".git").join("config")) {
                out.push((url, d));
            }
        }
        out
    }

    /// The app folder that contains `path` (`HOME/api/<id>`), if any.
    pub fn app_root_of(&self, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix(self.api()).ok()?;
        let first = rel.components().next()?;
        Some(self.api().join(first.as_os_str()))
    }

    /// `name` in templates: the script folder relative to `HOME/api`.
    pub fn app_relative_name(&self, dir: &Path) -> Option<String> {
        dir.strip_prefix(self.api())
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    }
}

/// The `origin` remote URL of the git repository at `dir` (read from
/// `dir/.git/config`; no git needed).
pub fn origin_url(dir: &Path) -> Option<String> {
    read_origin_url(&dir.join(".git").join("config"))
}

/// Read `remote "origin"` `url` from a git config file (no git needed).
fn read_origin_url(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    let mut in_origin = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let inner = t.trim_start_matches('[').trim_end_matches(']');
            in_origin = inner
                .replace(['"', '\''], "")
                .split_whitespace()
                .collect::<Vec<_>>()
                == ["remote", "origin"];
            continue;
        }
        if in_origin {
            if let Some((k, v)) = t.split_once('=') {
                if k.trim() == "url" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// Lexically normalise a path (`a/./b/../c` -> `a/c`) without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_layout_and_environment() {
        let t = tempfile::tempdir().unwrap();
        let h = PinokioHome::new(t.path().join("home"));
        h.ensure().unwrap();
        for d in HOME_DIRS {
            assert!(h.root().join(d).is_dir(), "{d} missing");
        }
        let env = std::fs::read_to_string(h.root().join("ENVIRONMENT")).unwrap();
        assert!(env.contains("PIP_CACHE_DIR=./cache/PIP_CACHE_DIR"));
        // a second ensure keeps user edits
        std::fs::write(h.root().join("ENVIRONMENT"), "X=1\n").unwrap();
        h.ensure().unwrap();
        assert_eq!(
            std::fs::read_to_string(h.root().join("ENVIRONMENT")).unwrap(),
            "X=1\n"
        );
    }

    #[test]
    fn locate_prefers_flag_then_env() {
        let a = PinokioHome::locate(Some(Path::new("/a")), Some("/b")).unwrap();
        assert_eq!(a.root(), Path::new("/a"));
        let b = PinokioHome::locate(None, Some("/b")).unwrap();
        assert_eq!(b.root(), Path::new("/b"));
        let c = PinokioHome::locate(None, None).unwrap();
        assert!(c.root().ends_with("pinokio"));
    }

    #[test]
    fn resolve_forms() {
        let h = PinokioHome::new("/h");
        assert_eq!(
            h.resolve("~/api/x/start.js", None).unwrap(),
            Path::new("/h/api/x/start.js")
        );
        assert_eq!(
            h.resolve("/abs/s.json", None).unwrap(),
            Path::new("/abs/s.json")
        );
        assert_eq!(
            h.resolve("../b/s.json", Some(Path::new("/h/api/a")))
                .unwrap(),
            Path::new("/h/api/b/s.json")
        );
        assert!(matches!(
            h.resolve("start.js", None),
            Err(HomeError::RelativeWithoutBase(_))
        ));
    }

    #[test]
    fn resolve_git_uri_by_remote() {
        let t = tempfile::tempdir().unwrap();
        let h = PinokioHome::new(t.path());
        h.ensure().unwrap();
        let app = h.api().join("comfy.git");
        std::fs::create_dir_all(app.join(".git")).unwrap();
        std::fs::write(
            app.join(".git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://github.com/a/comfy.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
        )
        .unwrap();
        assert_eq!(
            h.resolve("https://github.com/a/comfy.git/start.js", None)
                .unwrap(),
            app.join("start.js")
        );
        assert_eq!(
            h.resolve("https://github.com/a/comfy.git", None).unwrap(),
            app
        );
        assert!(matches!(
            h.resolve("https://github.com/a/other.git/x.js", None),
            Err(HomeError::GitUriNotInstalled(_))
        ));
        assert!(matches!(
            h.resolve("https://github.com/a/comfy", None),
            Err(HomeError::GitUriWithoutGit(_))
        ));
    }

    #[test]
    fn app_root_and_name() {
        let h = PinokioHome::new("/h");
        assert_eq!(
            h.app_root_of(Path::new("/h/api/app/sub/x.json")).unwrap(),
            Path::new("/h/api/app")
        );
        assert_eq!(h.app_root_of(Path::new("/elsewhere/x.json")), None);
        assert_eq!(
            h.app_relative_name(Path::new("/h/api/app/sub")).unwrap(),
            "app/sub"
        );
    }
}
