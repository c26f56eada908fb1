//! Folder linking: `fs.link` with `drive` (and `peers`), section 6.4.
//!
//! For each entry `R -> L...`: the drive folder is the one `drives.json`
//! records for `R` under the first of the peers, then the app's own git URL;
//! else a new `D/drives/peers/<name>/R`, where `<name>` is the drive of the
//! first candidate that has any entry (so one app and its peers share one
//! drive), else `d<ms>`. Each app folder `L` that is not a symlink yet is
//! moved into the drive folder (folders merge; on a clash the drive's copy
//! stays and the app's goes), then replaced by a relative symlink. All of it
//! runs in one journalled transaction.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::{Hook, Txn};
use super::registry::{drive_name_of, record_links, DrivesFile, LinkKind, LinkRecord};
use super::{canonical_lenient, now_ms, relative_path, Drive, DriveError};
use crate::home::normalize;

/// How app folder contents move into the drive (upstream's move options;
/// when a script passes `options`, keys it leaves out are `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MoveOptions {
    /// Merge folders present on both sides, recursively.
    pub merge: bool,
    /// On a clash the app's copy replaces the drive's (else the drive's
    /// copy stays).
    pub overwrite: bool,
    /// Delete the app's copies that lost a clash (else they are kept beside
    /// the link as `<name>.drive-conflicts-<ms>`).
    pub purge: bool,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            merge: true,
            overwrite: false,
            purge: true,
        }
    }
}

impl MoveOptions {
    /// Options given by a script: missing keys are `false`.
    pub fn given(merge: Option<bool>, overwrite: Option<bool>, purge: Option<bool>) -> Self {
        MoveOptions {
            merge: merge.unwrap_or(false),
            overwrite: overwrite.unwrap_or(false),
            purge: purge.unwrap_or(false),
        }
    }
}

/// What to link.
#[derive(Debug, Clone)]
pub struct FolderLinkRequest {
    /// The app folder; its git `origin` URL keys the registry.
    pub app: PathBuf,
    /// The folder app paths are relative to (the script's folder).
    pub base: PathBuf,
    /// `(drive path, app folders)`, in the script's order.
    pub entries: Vec<(String, Vec<String>)>,
    /// Git URLs of apps whose drive may be reused.
    pub peers: Vec<String>,
    pub options: MoveOptions,
}

/// What happened to one app folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FolderOutcome {
    /// Moved into the drive and replaced by a link.
    Linked {
        path: PathBuf,
        moved: usize,
        conflicts: usize,
        kept_conflicts: Option<PathBuf>,
    },
    /// Already a link to the drive folder.
    Already { path: PathBuf },
    /// Left alone, with the reason.
    Skipped { path: String, reason: String },
}

/// One `R -> L...` entry.
#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub drive_path: String,
    pub folder: PathBuf,
    pub folders: Vec<FolderOutcome>,
}

/// The result of [`Drive::link_folders`].
#[derive(Debug, Clone, Serialize)]
pub struct FolderLinkReport {
    pub entries: Vec<EntryReport>,
    /// The registry keys the drive paths were recorded under.
    pub urls: Vec<String>,
    /// Whether the app has a git remote (without one it is keyed by
    /// `file://<app folder>`).
    pub has_remote: bool,
    /// Journals of interrupted operations that were cleaned up first.
    pub recovered: Vec<PathBuf>,
}

/// Check a drive path: relative, not starting with `.`, no `..`.
pub fn validate_drive_path(r: &str) -> Result<(), DriveError> {
    let bad = |reason| DriveError::InvalidDrivePath {
        path: r.to_string(),
        reason,
    };
    if r.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if Path::new(r).is_absolute() {
        return Err(bad("it must be relative"));
    }
    if r.starts_with('.') {
        return Err(bad("it must not start with '.'"));
    }
    if r.split(['/', '\\']).any(|part| part == "..") {
        return Err(bad("it must not contain '..'"));
    }
    Ok(())
}

impl Drive {
    /// Link app folders into folder drives (see the module docs). `hook` is
    /// called before every change; an error from it (or any failure) undoes
    /// everything this call changed.
    pub fn link_folders(
        &self,
        req: &FolderLinkRequest,
        hook: Hook<'_>,
    ) -> Result<FolderLinkReport, DriveError> {
        for (r, _) in &req.entries {
            validate_drive_path(r)?;
        }
        let lock = self.lock()?;
        let remote = crate::home::origin_url(&req.app);
        let own = remote
            .clone()
            .unwrap_or_else(|| format!("file://{}", req.app.display()));
        let mut candidates: Vec<String> = req.peers.clone();
        candidates.push(own);
        let mut drives = DrivesFile::load(self)?;
        let txn = Txn::begin(self, hook)?;
        let entries = txn.run(|txn| {
            let mut out = Vec::new();
            for (r, folders) in &req.entries {
                let folder = self.choose_folder(&drives, &candidates, r);
                let mut outcomes = Vec::new();
                for l in folders {
                    if Path::new(l).is_absolute() || l.starts_with('.') {
                        outcomes.push(FolderOutcome::Skipped {
                            path: l.clone(),
                            reason: "app folders must be relative and not start with '.'".into(),
                        });
                        continue;
                    }
                    let path = normalize(&req.base.join(l));
                    outcomes.push(link_one(txn, &path, &folder, req.options)?);
                }
                if folders.is_empty() {
                    txn.mkdir_all(&folder)?;
                }
                let shown = folder.display().to_string();
                for url in &candidates {
                    drives.set(url, r, &shown);
                }
                out.push(EntryReport {
                    drive_path: r.clone(),
                    folder,
                    folders: outcomes,
                });
            }
            Ok(out)
        })?;
        drives.save(self)?;
        let created = now_ms();
        let records = entries
            .iter()
            .flat_map(|e| {
                e.folders.iter().filter_map(move |o| match o {
                    FolderOutcome::Linked { path, .. } | FolderOutcome::Already { path } => {
                        Some(LinkRecord {
                            link: path.clone(),
                            target: e.folder.clone(),
                            kind: LinkKind::Drive,
                            app: Some(req.app.clone()),
                            drive_path: Some(e.drive_path.clone()),
                            namespace: None,
                            created,
                        })
                    }
                    FolderOutcome::Skipped { .. } => None,
                })
            })
            .collect();
        record_links(self, records)?;
        Ok(FolderLinkReport {
            entries,
            urls: candidates,
            has_remote: remote.is_some(),
            recovered: lock.recovered.clone(),
        })
    }

    /// The drive folder for drive path `r` (see the module docs).
    fn choose_folder(&self, drives: &DrivesFile, candidates: &[String], r: &str) -> PathBuf {
        for c in candidates {
            if let Some(f) = drives.folder(c, r) {
                return self.locate(Path::new(f), r);
            }
        }
        let existing = candidates.iter().find_map(|c| {
            drives
                .get(c)?
                .iter()
                .find_map(|(k, f)| drive_name_of(Path::new(f), k))
        });
        let name = existing.unwrap_or_else(|| {
            let mut t = now_ms();
            while self.peers_dir().join(format!("d{t}")).exists() {
                t += 1;
            }
            format!("d{t}")
        });
        self.peers_dir().join(name).join(r)
    }

    /// A recorded folder, or the same drive under this drive root when the
    /// recorded path does not exist here (a home moved from another machine).
    fn locate(&self, recorded: &Path, r: &str) -> PathBuf {
        if recorded.is_absolute() && recorded.exists() {
            return recorded.to_path_buf();
        }
        match drive_name_of(recorded, r) {
            Some(name) => self.peers_dir().join(name).join(r),
            None => recorded.to_path_buf(),
        }
    }
}

/// Move `l` into `folder` and link it (section 6.4 step 3).
fn link_one(
    txn: &mut Txn<'_>,
    l: &Path,
    folder: &Path,
    opts: MoveOptions,
) -> Result<FolderOutcome, DriveError> {
    let meta = match std::fs::symlink_metadata(l) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(DriveError::io("checking", l, e)),
    };
    if let Some(m) = &meta {
        if m.file_type().is_symlink() {
            let here = std::fs::canonicalize(l).ok();
            let there = std::fs::canonicalize(folder).ok();
            return Ok(match (here, there) {
                (Some(a), Some(b)) if a == b => FolderOutcome::Already { path: l.into() },
                (Some(a), _) => FolderOutcome::Skipped {
                    path: l.display().to_string(),
                    reason: format!("already a link to {}", a.display()),
                },
                (None, _) => FolderOutcome::Skipped {
                    path: l.display().to_string(),
                    reason: "already a link, whose target is missing".into(),
                },
            });
        }
        if !m.is_dir() {
            return Err(DriveError::NotAFolder { path: l.into() });
        }
    }
    // Circular: the link and its drive folder must not contain each other
    // (a drive inside the app folder being linked, a folder reached through
    // a link into its own drive folder, a symlink loop).
    let circular = || DriveError::Circular {
        link: l.into(),
        target: folder.into(),
    };
    let fc = canonical_lenient(folder).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => circular(),
        _ => DriveError::io("resolving", folder, e),
    })?;
    let lc = canonical_lenient(l).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => circular(),
        _ => DriveError::io("resolving", l, e),
    })?;
    if fc == lc || fc.starts_with(&lc) || lc.starts_with(&fc) {
        return Err(circular());
    }
    txn.mkdir_all(folder)?;
    let mut moved = 0;
    let mut conflicts = 0;
    let mut kept_conflicts = None;
    if meta.is_some() {
        let aside = txn.staging_beside(l, "link");
        txn.rename(l, &aside)?;
        merge(txn, &aside, folder, opts, &mut moved, &mut conflicts)?;
        if conflicts > 0 && !opts.purge {
            let name = l
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let keep = l.with_file_name(format!("{name}.drive-conflicts-{}", now_ms()));
            txn.rename(&aside, &keep)?;
            kept_conflicts = Some(keep);
        } else {
            txn.discard(&aside)?;
        }
    } else if let Some(parent) = l.parent() {
        txn.mkdir_all(parent)?;
    }
    let parent = l.parent().unwrap_or(Path::new("/"));
    let real_parent =
        std::fs::canonicalize(parent).map_err(|e| DriveError::io("resolving", parent, e))?;
    let real_folder =
        std::fs::canonicalize(folder).map_err(|e| DriveError::io("resolving", folder, e))?;
    txn.symlink(l, &relative_path(&real_parent, &real_folder))?;
    Ok(FolderOutcome::Linked {
        path: l.into(),
        moved,
        conflicts,
        kept_conflicts,
    })
}

/// Move the contents of `src` into `dst` (which exists).
fn merge(
    txn: &mut Txn<'_>,
    src: &Path,
    dst: &Path,
    opts: MoveOptions,
    moved: &mut usize,
    conflicts: &mut usize,
) -> Result<(), DriveError> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| DriveError::io("listing", src, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| DriveError::io("listing", src, e))?;
    names.sort();
    for name in names {
        let s = src.join(&name);
        let d = dst.join(&name);
        match std::fs::symlink_metadata(&d) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                txn.move_entry(&s, &d)?;
                *moved += 1;
            }
            Err(e) => return Err(DriveError::io("checking", &d, e)),
            Ok(dm) => {
                let sm =
                    std::fs::symlink_metadata(&s).map_err(|e| DriveError::io("checking", &s, e))?;
                if opts.merge && dm.is_dir() && sm.is_dir() {
                    merge(txn, &s, &d, opts, moved, conflicts)?;
                } else if opts.overwrite {
                    txn.trash(&d)?;
                    txn.move_entry(&s, &d)?;
                    *moved += 1;
                } else {
                    *conflicts += 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_paths_are_checked() {
        assert!(validate_drive_path("checkpoints").is_ok());
        assert!(validate_drive_path("models/sd").is_ok());
        for bad in ["", "/abs", ".hidden", "a/../../x", "a/.."] {
            assert!(validate_drive_path(bad).is_err(), "{bad}");
        }
    }
}
