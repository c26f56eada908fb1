//! The virtual drive (section 6.4 of the semantics note): shared folders that
//! apps link into with `fs.link`/`fs.share`, the registry of those links,
//! content-addressed dedupe across apps, usage statistics, and the shared
//! cache variables given to shells.
//!
//! On-disk layout of the drive root `D` (`PINOKIO_DRIVE`, default
//! `HOME/drive`):
//!
//! ```text
//! D/drives.json              upstream's registry: { "<git url>": { "<drive path>": "<abs folder>" } }
//! D/links.json               ours: every symlink we made (link, target, kind, app), for
//!                            `pinokio drive links` (check, prune, unlink)
//! D/drives/peers/<name>/<R>  folder drives (`fs.link` with `drive`), <name> = d<ms>
//! D/drives/pip/<name>/<version>[-<tag>]/lib/pythonX.Y/site-packages/<entry>
//!                            venv drives (`fs.link` with `venv`)
//! D/.lock                    flock held while the drive is changed
//! D/.journal/<txn>.jsonl     write-ahead journal of an operation in progress
//! D/.trash/<txn>/            drive entries replaced by an operation, removed at commit
//! ```
//!
//! Dedupe keeps its hash cache in `HOME/cache/drive-hashes.sqlite`.
//!
//! Every change to the file system goes through a [`journal::Txn`]: each step
//! is written to the journal before it is done, so an error (or a stop, or a
//! crash followed by the next operation on the drive) undoes what was done.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub mod dedupe;
pub mod journal;
pub mod link;
pub mod registry;
pub mod stats;
pub mod venv;

pub use dedupe::{dedupe, hash_file, DedupeOptions, DedupeProgress, DedupeReport};
pub use journal::{Op, Txn};
pub use link::{FolderLinkReport, FolderLinkRequest, MoveOptions};
pub use registry::{LinkKind, LinkRecord, LinkStatus};
pub use stats::{stats, DriveStats};
pub use venv::VenvLinkReport;

/// Why a drive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid drive path {path:?}: {reason}")]
    InvalidDrivePath { path: String, reason: &'static str },
    #[error("circular link: {link} and its drive folder {target} contain each other")]
    Circular { link: PathBuf, target: PathBuf },
    #[error("{path} is not a folder; only folders can be linked into the drive")]
    NotAFolder { path: PathBuf },
    #[error("{path}: {message}")]
    Registry { path: PathBuf, message: String },
    #[error("hash cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("stopped before {step}: {reason}")]
    Aborted { step: String, reason: String },
    #[error("{cause}; everything it changed was put back{}", undo_note(.undo_failures))]
    RolledBack {
        cause: Box<DriveError>,
        undo_failures: Vec<String>,
    },
    #[error("{path} is not a registered drive link")]
    NotALink { path: PathBuf },
    #[error("{path}: cannot undo the link: {status}")]
    CannotUnlink { path: PathBuf, status: LinkStatus },
}

fn undo_note(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(
            " except: {} (the journal is kept; the next drive operation retries)",
            failures.join("; ")
        )
    }
}

impl DriveError {
    pub(crate) fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DriveError::Io {
            step,
            path: path.into(),
            source,
        }
    }

    /// The error under a rollback wrapper.
    pub fn cause(&self) -> &DriveError {
        match self {
            DriveError::RolledBack { cause, .. } => cause.cause(),
            other => other,
        }
    }
}

/// A drive root and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    root: PathBuf,
}

impl Drive {
    /// A drive rooted at `root` (made absolute lexically).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|d| d.join(&root))
                .unwrap_or(root)
        };
        Drive {
            root: crate::home::normalize(&root),
        }
    }

    /// The drive named by `PINOKIO_DRIVE` in `env` (already resolved by the
    /// ENVIRONMENT layers): an absolute value as is, a relative one against
    /// `app_root` (else the home), empty or unset: `HOME/drive`.
    pub fn from_env(home: &Path, app_root: Option<&Path>, env: &BTreeMap<String, String>) -> Self {
        match env.get("PINOKIO_DRIVE").map(|v| v.trim()) {
            Some(v) if !v.is_empty() => {
                let p = Path::new(v);
                if p.is_absolute() {
                    Drive::new(p)
                } else {
                    Drive::new(app_root.unwrap_or(home).join(p))
                }
            }
            _ => Drive::new(home.join("drive")),
        }
    }

    /// The system drive of a home: `PINOKIO_DRIVE` from `HOME/ENVIRONMENT`,
    /// else `HOME/drive`.
    pub fn for_home(home: &crate::PinokioHome) -> Self {
        let env: BTreeMap<String, String> =
            crate::envfile::load(&home.root().join("ENVIRONMENT"), home.root())
                .map(|pairs| pairs.into_iter().collect())
                .unwrap_or_default();
        Drive::from_env(home.root(), None, &env)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `D/drives.json`, upstream's registry.
    pub fn drives_json(&self) -> PathBuf {
        self.root.join("drives.json")
    }
    /// `D/links.json`, our registry of links.
    pub fn links_json(&self) -> PathBuf {
        self.root.join("links.json")
    }
    /// `D/drives/peers`: folder drives.
    pub fn peers_dir(&self) -> PathBuf {
        self.root.join("drives").join("peers")
    }
    /// `D/drives/pip`: venv drives.
    pub fn pip_dir(&self) -> PathBuf {
        self.root.join("drives").join("pip")
    }
    pub(crate) fn journal_dir(&self) -> PathBuf {
        self.root.join(".journal")
    }
    pub(crate) fn trash_dir(&self) -> PathBuf {
        self.root.join(".trash")
    }

    /// Take the drive's lock (an exclusive `flock` on `D/.lock`, waiting for
    /// other holders), after which journals left by an interrupted
    /// operation are rolled back (or, when they were committed, finished).
    pub fn lock(&self) -> Result<DriveLock, DriveError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| DriveError::io("creating the drive", &self.root, e))?;
        let path = self.root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DriveError::io("opening the drive lock", &path, e))?;
        flock(&file).map_err(|e| DriveError::io("locking the drive", &path, e))?;
        let recovered = journal::recover(self)?;
        Ok(DriveLock {
            _file: file,
            recovered,
        })
    }
}

/// The drive's lock; released when dropped.
#[derive(Debug)]
pub struct DriveLock {
    _file: File,
    /// Journals of interrupted operations that were finished or undone.
    pub recovered: Vec<PathBuf>,
}

fn flock(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: the descriptor is open for the lifetime of `f`.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Cache variables that shells get pointing into `HOME/cache` when no layer
/// sets them.
pub const SHARED_CACHE_KEYS: [&str; 5] = [
    "HF_HOME",
    "TORCH_HOME",
    "GRADIO_TEMP_DIR",
    "PIP_CACHE_DIR",
    "UV_CACHE_DIR",
];

/// Point each of [`SHARED_CACHE_KEYS`] that `env` leaves unset (or empty) at
/// `HOME/cache/<KEY>`, the value pinokiod's system ENVIRONMENT gives them.
/// `env` is the shell's environment after the user's environment and the
/// system and app ENVIRONMENT files; a script's `params.env` is applied
/// after this and still wins. Returns the keys that were filled.
pub fn fill_shared_caches(home: &Path, env: &mut BTreeMap<String, String>) -> Vec<&'static str> {
    let mut filled = Vec::new();
    for key in SHARED_CACHE_KEYS {
        let unset = env.get(key).map(|v| v.trim().is_empty()).unwrap_or(true);
        if unset {
            env.insert(
                key.to_string(),
                home.join("cache").join(key).display().to_string(),
            );
            filled.push(key);
        }
    }
    filled
}

/// `to` relative to the folder `from` (both absolute, normalised).
pub(crate) fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The canonical form of `p`, which need not exist: its deepest existing
/// ancestor is canonicalised and the rest appended.
pub(crate) fn canonical_lenient(p: &Path) -> std::io::Result<PathBuf> {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        match std::fs::canonicalize(&cur) {
            Ok(c) => {
                let mut out = c;
                for r in rest.iter().rev() {
                    out.push(r);
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = cur.file_name().map(|n| n.to_os_string()) else {
                    return Err(e);
                };
                rest.push(name);
                if !cur.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Write `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DriveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DriveError::io("creating", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| DriveError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DriveError::io("replacing", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/h/api/a/app"), Path::new("/h/drive/x")),
            Path::new("../../../drive/x")
        );
        assert_eq!(
            relative_path(Path::new("/h"), Path::new("/h/a")),
            Path::new("a")
        );
        assert_eq!(
            relative_path(Path::new("/h"), Path::new("/h")),
            Path::new(".")
        );
    }

    #[test]
    fn drive_root_from_env() {
        let home = Path::new("/h");
        let mut env = BTreeMap::new();
        assert_eq!(
            Drive::from_env(home, None, &env).root(),
            Path::new("/h/drive")
        );
        env.insert("PINOKIO_DRIVE".into(), "/big/drive".into());
        assert_eq!(
            Drive::from_env(home, Some(Path::new("/h/api/a")), &env).root(),
            Path::new("/big/drive")
        );
        env.insert("PINOKIO_DRIVE".into(), "shared".into());
        assert_eq!(
            Drive::from_env(home, Some(Path::new("/h/api/a")), &env).root(),
            Path::new("/h/api/a/shared")
        );
        env.insert("PINOKIO_DRIVE".into(), "  ".into());
        assert_eq!(
            Drive::from_env(home, None, &env).root(),
            Path::new("/h/drive")
        );
    }

    #[test]
    fn shared_caches_fill_only_unset_keys() {
        let mut env = BTreeMap::new();
        env.insert("HF_HOME".to_string(), "/mine/hf".to_string());
        env.insert("TORCH_HOME".to_string(), " ".to_string());
        let filled = fill_shared_caches(Path::new("/h"), &mut env);
        assert_eq!(
            filled,
            [
                "TORCH_HOME",
                "GRADIO_TEMP_DIR",
                "PIP_CACHE_DIR",
                "UV_CACHE_DIR"
            ]
        );
        assert_eq!(env["HF_HOME"], "/mine/hf");
        assert_eq!(env["TORCH_HOME"], "/h/cache/TORCH_HOME");
        assert_eq!(env["UV_CACHE_DIR"], "/h/cache/UV_CACHE_DIR");
    }
}
