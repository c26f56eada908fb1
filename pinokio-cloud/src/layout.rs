//! Where the Pinokio home and the big caches go on each platform.
//!
//! The home goes on the platform's persistent storage when there is one
//! (`/workspace`, `/teamspace/studios/this_studio`, `/notebooks`,
//! `/kaggle/working`, Google Drive when mounted on Colab). Caches (pip, uv,
//! Hugging Face: `HOME/cache`) move to a bigger scratch disk when the
//! persistent one is small or slow. `--home` and `PINOKIO_HOME` win over
//! the platform; `PINOKIO_CACHE_DIR` places the cache. Every choice carries
//! its reason so it is shown, never silent.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::platform::{Detection, Platform};
use crate::source::{DiskSpace, HostSource};

/// Environment variable naming the folder for big caches.
pub const CACHE_ENV: &str = "PINOKIO_CACHE_DIR";
/// Below this much free space, persistent storage counts as small and
/// caches go to a bigger scratch disk when there is one.
pub const SMALL_FREE: u64 = 50 * DiskSpace::GIB;

/// Errors applying a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot link {link} to {target}: {source}")]
    Link {
        link: PathBuf,
        target: PathBuf,
        source: std::io::Error,
    },
}

/// Who chose the home folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeFrom {
    /// `--home`.
    Flag,
    /// `PINOKIO_HOME`.
    Env,
    /// The platform's persistent storage.
    Platform,
    /// An existing `~/pinokio` kept instead of the platform's choice.
    Existing,
    /// Today's default, `~/pinokio`.
    Default,
}

/// Whether what is in the home survives the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    Persistent,
    /// Lost when the session, runtime or container ends.
    Ephemeral,
    /// Depends on how the container was started (a volume or not).
    Unknown,
}

/// One folder of the layout with its disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathSpace {
    /// `home`, `cache` or `scratch`.
    pub role: &'static str,
    pub path: PathBuf,
    pub space: Option<DiskSpace>,
}

/// The chosen folders and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub platform: Platform,
    pub home: PathBuf,
    pub home_from: HomeFrom,
    pub persistence: Persistence,
    /// Why this home (one sentence).
    pub home_reason: String,
    /// Where big caches go: `HOME/cache` unless relocated.
    pub cache: PathBuf,
    /// Whether `cache` is outside the home (`HOME/cache` links to it).
    pub cache_relocated: bool,
    pub cache_reason: String,
    /// Free space of the home, the cache and the scratch candidates.
    pub disks: Vec<PathSpace>,
    /// What the user may want to do about it.
    pub notes: Vec<String>,
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct LayoutRequest {
    /// `--home`.
    pub flag_home: Option<PathBuf>,
    /// `PINOKIO_HOME`.
    pub env_home: Option<String>,
    /// `PINOKIO_CACHE_DIR`.
    pub env_cache: Option<String>,
}

impl LayoutRequest {
    /// The request from this process's environment, with an optional flag.
    pub fn from_env(src: &dyn HostSource, flag_home: Option<&Path>) -> Self {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        LayoutRequest {
            flag_home: flag_home.map(Path::to_path_buf),
            env_home: nonempty(src.var("PINOKIO_HOME")),
            env_cache: nonempty(src.var(CACHE_ENV)),
        }
    }
}

/// The platform's persistent root for the home, its persistence and why.
struct Target {
    root: PathBuf,
    persistence: Persistence,
    reason: String,
    notes: Vec<String>,
    /// Scratch folders for caches, best first.
    scratch: Vec<PathBuf>,
    /// Caches always go to scratch (slow or capped persistent storage).
    force_scratch: Option<String>,
}

fn user_home(src: &dyn HostSource) -> PathBuf {
    src.user_home().unwrap_or_else(|| PathBuf::from("/root"))
}

fn platform_target(d: &Detection, src: &dyn HostSource) -> Target {
    let dir = |p: &str| src.is_dir(Path::new(p));
    let home = user_home(src);
    let user_cache = home.join(".cache/pinokio");
    let simple = |root: &str, reason: &str, scratch: Vec<PathBuf>| Target {
        root: root.into(),
        persistence: Persistence::Persistent,
        reason: reason.into(),
        notes: Vec::new(),
        scratch,
        force_scratch: None,
    };
    match d.platform {
        Platform::Colab if dir("/content/drive/MyDrive") => Target {
            root: "/content/drive/MyDrive".into(),
            persistence: Persistence::Persistent,
            reason: "Google Drive is mounted: apps survive the Colab runtime".into(),
            notes: Vec::new(),
            scratch: vec!["/content/pinokio-cache".into()],
            force_scratch: Some(
                "Google Drive is a slow network mount with a small quota: caches stay on the local disk"
                    .into(),
            ),
        },
        Platform::Colab => Target {
            root: "/content".into(),
            persistence: Persistence::Ephemeral,
            reason: "Colab's local disk (Google Drive is not mounted)".into(),
            notes: vec![
                "everything is lost when the Colab runtime ends: mount Google Drive first \
                 (from google.colab import drive; drive.mount('/content/drive')) to keep apps"
                    .into(),
            ],
            scratch: Vec::new(),
            force_scratch: None,
        },
        Platform::Kaggle => Target {
            root: "/kaggle/working".into(),
            persistence: Persistence::Persistent,
            reason: "/kaggle/working is saved with the notebook's output".into(),
            notes: Vec::new(),
            scratch: vec!["/kaggle/temp/pinokio-cache".into(), "/tmp/pinokio-cache".into()],
            force_scratch: Some(
                "/kaggle/working keeps at most 20 GB: caches go to scratch space".into(),
            ),
        },
        Platform::RunPod | Platform::Vast => {
            let data = src
                .var("DATA_DIRECTORY")
                .or_else(|| src.var("WORKSPACE"))
                .filter(|p| d.platform == Platform::Vast && src.is_dir(Path::new(p)));
            if let Some(p) = data {
                let p = p.trim_end_matches('/').to_string();
                return simple(
                    &p,
                    "the instance's data directory ($DATA_DIRECTORY/$WORKSPACE)",
                    vec![user_cache],
                );
            }
            if dir("/workspace") {
                let reason = if d.platform == Platform::RunPod {
                    "/workspace is the pod's volume: it survives restarts (the container disk does not)"
                } else {
                    "/workspace survives stopping the instance (deleted on destroy)"
                };
                return simple("/workspace", reason, vec![user_cache]);
            }
            Target {
                root: home.clone(),
                persistence: Persistence::Ephemeral,
                reason: "no /workspace volume: the user's home on the container disk".into(),
                notes: vec![
                    "no /workspace volume: apps are lost when the container is reset; add a volume at /workspace"
                        .into(),
                ],
                scratch: Vec::new(),
                force_scratch: None,
            }
        }
        Platform::Lightning => simple(
            "/teamspace/studios/this_studio",
            "the Studio's home survives stops and machine switches",
            vec!["/tmp/pinokio-cache".into()],
        ),
        Platform::Paperspace => simple(
            "/notebooks",
            "/notebooks is persisted with the notebook",
            vec!["/storage/pinokio-cache".into(), "/tmp/pinokio-cache".into()],
        ),
        Platform::StudioLab => simple(
            crate::platform::STUDIO_LAB_HOME,
            "the Studio Lab home is the persistent storage (15 GB)",
            vec!["/tmp/pinokio-cache".into()],
        ),
        Platform::Docker if dir("/workspace") && src.writable(Path::new("/workspace")) => Target {
            root: "/workspace".into(),
            persistence: Persistence::Unknown,
            reason: "/workspace is the usual volume of GPU containers".into(),
            notes: Vec::new(),
            scratch: vec![user_cache],
            force_scratch: None,
        },
        Platform::Docker => Target {
            root: home.clone(),
            persistence: Persistence::Unknown,
            reason: "a container without /workspace: the user's home".into(),
            notes: vec![
                "in a container the home is lost with the container unless it is on a volume (set PINOKIO_HOME to a mounted folder)"
                    .into(),
            ],
            scratch: Vec::new(),
            force_scratch: None,
        },
        Platform::Local => Target {
            root: home.clone(),
            persistence: Persistence::Persistent,
            reason: "a local machine: ~/pinokio".into(),
            notes: Vec::new(),
            scratch: Vec::new(),
            force_scratch: None,
        },
    }
}

/// Plan the layout for a detected platform and a request.
pub fn plan(d: &Detection, src: &dyn HostSource, req: &LayoutRequest) -> Layout {
    let target = platform_target(d, src);
    let default_home = user_home(src).join("pinokio");
    let (home, home_from, persistence, home_reason, mut notes) = if let Some(p) = &req.flag_home {
        (
            p.clone(),
            HomeFrom::Flag,
            Persistence::Unknown,
            "given with --home".to_string(),
            Vec::new(),
        )
    } else if let Some(p) = &req.env_home {
        (
            PathBuf::from(p),
            HomeFrom::Env,
            Persistence::Unknown,
            "given with PINOKIO_HOME".to_string(),
            Vec::new(),
        )
    } else {
        let chosen = target.root.join("pinokio");
        let legacy = default_home.join("api");
        if chosen != default_home && src.is_dir(&legacy) && !src.exists(&chosen) {
            (
                default_home.clone(),
                HomeFrom::Existing,
                Persistence::Unknown,
                format!(
                    "{} already holds apps (the platform's choice would be {})",
                    default_home.display(),
                    chosen.display()
                ),
                vec![format!(
                    "move {} to {} (or set PINOKIO_HOME) to keep apps on {}",
                    default_home.display(),
                    chosen.display(),
                    d.platform.name()
                )],
            )
        } else {
            let from = if chosen == default_home {
                HomeFrom::Default
            } else {
                HomeFrom::Platform
            };
            (
                chosen,
                from,
                target.persistence,
                target.reason.clone(),
                target.notes.clone(),
            )
        }
    };
    let persistence = match (home_from, persistence) {
        // a user-given home on the platform's persistent root is persistent
        (HomeFrom::Flag | HomeFrom::Env | HomeFrom::Existing, _)
            if target.persistence == Persistence::Persistent && home.starts_with(&target.root) =>
        {
            Persistence::Persistent
        }
        (_, p) => p,
    };

    let home_space = src.disk_space(&home);
    let mut disks = vec![PathSpace {
        role: "home",
        path: home.clone(),
        space: home_space,
    }];
    let default_cache = home.join("cache");
    let (cache, cache_reason) = if let Some(c) = &req.env_cache {
        (PathBuf::from(c), format!("given with {CACHE_ENV}"))
    } else if matches!(home_from, HomeFrom::Flag | HomeFrom::Env) {
        (default_cache.clone(), "inside the home".to_string())
    } else {
        choose_cache(src, &target, &default_cache, home_space, &mut disks)
    };
    let cache_relocated = cache != default_cache;
    if cache_relocated && !disks.iter().any(|p| p.path == cache) {
        disks.push(PathSpace {
            role: "cache",
            path: cache.clone(),
            space: src.disk_space(&cache),
        });
    }
    if let Some(s) = home_space {
        if s.available < 20 * DiskSpace::GIB {
            notes.push(format!(
                "only {} GiB free for the home: one app with its models often needs 20-50 GiB",
                s.available_gib()
            ));
        }
    }
    Layout {
        platform: d.platform,
        home,
        home_from,
        persistence,
        home_reason,
        cache,
        cache_relocated,
        cache_reason,
        disks,
        notes,
    }
}

fn choose_cache(
    src: &dyn HostSource,
    target: &Target,
    default_cache: &Path,
    home_space: Option<DiskSpace>,
    disks: &mut Vec<PathSpace>,
) -> (PathBuf, String) {
    let candidates: Vec<(PathBuf, Option<DiskSpace>)> = target
        .scratch
        .iter()
        .filter(|p| {
            // creatable: its nearest existing folder (not `/`) is writable
            p.ancestors()
                .find(|a| src.is_dir(a))
                .is_some_and(|a| a.parent().is_some() && src.writable(a))
        })
        .map(|p| (p.clone(), src.disk_space(p)))
        .collect();
    for (p, s) in &candidates {
        disks.push(PathSpace {
            role: "scratch",
            path: p.clone(),
            space: *s,
        });
    }
    let best = candidates
        .iter()
        .max_by_key(|(_, s)| s.map(|s| s.available).unwrap_or(0));
    if let (Some(reason), Some((p, _))) = (&target.force_scratch, candidates.first()) {
        return (p.clone(), reason.clone());
    }
    let home_free = home_space.map(|s| s.available).unwrap_or(u64::MAX);
    if let Some((p, Some(s))) = best {
        if home_free < SMALL_FREE && s.available > home_free {
            return (
                p.clone(),
                format!(
                    "the home's disk has {} GiB free, {} has {} GiB: caches go there",
                    home_free / DiskSpace::GIB,
                    p.display(),
                    s.available_gib()
                ),
            );
        }
    }
    (default_cache.to_path_buf(), "inside the home".to_string())
}

impl Layout {
    /// Detect the platform of this machine and plan its layout.
    pub fn for_this_machine(flag_home: Option<&Path>) -> Layout {
        let src = crate::source::RealHost;
        let d = crate::platform::detect(&src);
        plan(&d, &src, &LayoutRequest::from_env(&src, flag_home))
    }

    /// A line for stderr when the platform chose a home the user has not
    /// seen yet (it does not exist), `None` otherwise.
    pub fn first_use_notice(&self) -> Option<String> {
        if !matches!(self.home_from, HomeFrom::Platform | HomeFrom::Existing) || self.home.exists()
        {
            return None;
        }
        let mut s = format!(
            "pinokio: {} detected; Pinokio home: {} ({})",
            self.platform.name(),
            self.home.display(),
            self.home_reason
        );
        if self.cache_relocated {
            s.push_str(&format!("; caches: {}", self.cache.display()));
        }
        s.push_str(". Set PINOKIO_HOME or --home to choose another folder; `pinokio doctor` shows the layout.");
        Some(s)
    }

    /// Create the home folder and, when the cache is relocated and
    /// `HOME/cache` does not exist yet, the cache folder with `HOME/cache`
    /// linked to it. An existing `HOME/cache` is left alone. Returns what
    /// was done.
    pub fn apply(&self) -> Result<Vec<String>, LayoutError> {
        let mut done = Vec::new();
        if !self.home.is_dir() {
            std::fs::create_dir_all(&self.home).map_err(|source| LayoutError::Create {
                path: self.home.clone(),
                source,
            })?;
            done.push(format!("created {}", self.home.display()));
        }
        let link = self.home.join("cache");
        if self.cache_relocated && std::fs::symlink_metadata(&link).is_err() {
            std::fs::create_dir_all(&self.cache).map_err(|source| LayoutError::Create {
                path: self.cache.clone(),
                source,
            })?;
            std::os::unix::fs::symlink(&self.cache, &link).map_err(|source| LayoutError::Link {
                link: link.clone(),
                target: self.cache.clone(),
                source,
            })?;
            done.push(format!(
                "linked {} to {}",
                link.display(),
                self.cache.display()
            ));
        }
        Ok(done)
    }
}
