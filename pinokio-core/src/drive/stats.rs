//! Disk usage per app and per drive. Sizes are apparent sizes (file
//! lengths). Symlinks are never followed while walking, so a folder linked
//! into the drive counts for the drive only (and is shown as `linked` for the
//! app); a file with several hard links counts once in the total.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::registry::load_links;
use super::{Drive, DriveError};
use crate::PinokioHome;

/// Walk `root` without following symlinks, calling `visit` for every entry
/// (files, folders, symlinks) below it. Folders for which `skip` returns true
/// are not entered. Unreadable folders are skipped.
pub(crate) fn walk(
    root: &Path,
    skip: &dyn Fn(&Path) -> bool,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata),
) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            visit(&p, &m);
            if m.is_dir() && !skip(&p) {
                stack.push(p);
            }
        }
    }
}

/// One app's usage.
#[derive(Debug, Clone, Serialize)]
pub struct AppUsage {
    pub name: String,
    pub path: PathBuf,
    /// Bytes of the files in the app folder (a hard-linked file once).
    pub bytes: u64,
    pub files: u64,
    /// Of `bytes`, those in files also hard-linked from another app or the
    /// drive.
    pub shared_bytes: u64,
    /// Bytes in the drive that the app reaches through symlinks (not part
    /// of `bytes`).
    pub linked_bytes: u64,
}

/// One drive's usage.
#[derive(Debug, Clone, Serialize)]
pub struct DriveUsage {
    /// `peers/<name>`, `pip`, or `other` (anything else under the drive root).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub files: u64,
    /// Apps with a registered link into it.
    pub used_by: Vec<String>,
}

/// The result of [`stats`].
#[derive(Debug, Clone, Serialize)]
pub struct DriveStats {
    pub drive: PathBuf,
    pub apps: Vec<AppUsage>,
    pub drives: Vec<DriveUsage>,
    /// Bytes on disk for apps and drive together, each file once.
    pub total_bytes: u64,
    /// The sum of the app and drive rows (counts hard-linked files once per
    /// row).
    pub rows_bytes: u64,
}

#[derive(Default)]
struct Tally {
    bytes: u64,
    files: u64,
    /// Hard-linked inodes seen in this row.
    inodes: BTreeSet<(u64, u64)>,
}

/// Owners of hard-linked inodes: inode -> (size, rows).
type Shared = HashMap<(u64, u64), (u64, BTreeSet<usize>)>;

fn tally(
    root: &Path,
    row: usize,
    skip: &dyn Fn(&Path) -> bool,
    exclude: &dyn Fn(&Path) -> bool,
    shared: &mut Shared,
) -> Tally {
    let mut t = Tally::default();
    walk(root, skip, &mut |p, m| {
        if !m.is_file() || exclude(p) {
            return;
        }
        if m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            if !t.inodes.insert(key) {
                return;
            }
            shared
                .entry(key)
                .or_insert((m.len(), BTreeSet::new()))
                .1
                .insert(row);
        }
        t.bytes += m.len();
        t.files += 1;
    });
    t
}

/// Usage of every app under `HOME/api` and every drive.
pub fn stats(home: &PinokioHome, drive: &Drive) -> Result<DriveStats, DriveError> {
    let droot = drive.root().to_path_buf();
    let skip_drive = |p: &Path| p == droot;
    let mut shared: Shared = HashMap::new();
    let mut unique_total = 0u64;
    // rows: apps first, then drives
    let mut apps: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(home.api()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            apps.push((name, e.path()));
        }
    }
    apps.sort();
    let mut drive_rows: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(drive.peers_dir()) {
        let mut v: Vec<_> = rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| {
                (
                    format!("peers/{}", e.file_name().to_string_lossy()),
                    e.path(),
                )
            })
            .collect();
        v.sort();
        drive_rows.extend(v);
    }
    if drive.pip_dir().is_dir() {
        drive_rows.push(("pip".into(), drive.pip_dir()));
    }
    let mut tallies = Vec::new();
    for (i, (_, path)) in apps.iter().enumerate() {
        tallies.push(tally(path, i, &skip_drive, &|_| false, &mut shared));
    }
    for (j, (_, path)) in drive_rows.iter().enumerate() {
        tallies.push(tally(
            path,
            apps.len() + j,
            &|_| false,
            &|_| false,
            &mut shared,
        ));
    }
    // the rest of the drive root, without the registries and the lock
    let skipped = [
        drive.peers_dir(),
        drive.pip_dir(),
        drive.journal_dir(),
        drive.trash_dir(),
    ];
    let own_files = [
        drive.drives_json(),
        drive.links_json(),
        drive.root().join(".lock"),
    ];
    let other_row = apps.len() + drive_rows.len();
    let other = tally(
        drive.root(),
        other_row,
        &|p| skipped.iter().any(|s| s == p),
        &|p| own_files.iter().any(|f| f == p),
        &mut shared,
    );
    if other.files > 0 {
        drive_rows.push(("other".into(), drive.root().to_path_buf()));
        tallies.push(other);
    }
    let rows_bytes: u64 = tallies.iter().map(|t| t.bytes).sum();
    for t in &tallies {
        let single: u64 = t.bytes
            - t.inodes
                .iter()
                .map(|k| shared.get(k).map(|s| s.0).unwrap_or(0))
                .sum::<u64>();
        unique_total += single;
    }
    unique_total += shared.values().map(|(size, _)| *size).sum::<u64>();
    // linked bytes: symlinks in each app that resolve into the drive
    let real_drive = std::fs::canonicalize(drive.root()).unwrap_or(droot.clone());
    let mut target_sizes: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut app_rows = Vec::new();
    for (i, (name, path)) in apps.iter().enumerate() {
        let mut linked = 0u64;
        walk(path, &skip_drive, &mut |p, m| {
            if !m.file_type().is_symlink() {
                return;
            }
            let Ok(real) = std::fs::canonicalize(p) else {
                return;
            };
            if !real.starts_with(&real_drive) {
                return;
            }
            let size = *target_sizes.entry(real.clone()).or_insert_with(|| {
                let meta = std::fs::metadata(&real);
                match meta {
                    Ok(m) if m.is_dir() => {
                        let mut s = 0;
                        walk(&real, &|_| false, &mut |_, m| {
                            if m.is_file() {
                                s += m.len();
                            }
                        });
                        s
                    }
                    Ok(m) => m.len(),
                    Err(_) => 0,
                }
            });
            linked += size;
        });
        let t = &tallies[i];
        let shared_bytes = t
            .inodes
            .iter()
            .filter_map(|k| shared.get(k))
            .filter(|(_, rows)| rows.len() > 1)
            .map(|(size, _)| *size)
            .sum();
        app_rows.push(AppUsage {
            name: name.clone(),
            path: path.clone(),
            bytes: t.bytes,
            files: t.files,
            shared_bytes,
            linked_bytes: linked,
        });
    }
    let links = load_links(drive)?;
    let mut drive_usage = Vec::new();
    for (j, (name, path)) in drive_rows.iter().enumerate() {
        let t = &tallies[apps.len() + j];
        let mut used_by: Vec<String> = links
            .iter()
            .filter(|l| name != "other" && l.target.starts_with(path))
            .filter_map(|l| l.app.as_ref())
            .filter_map(|a| a.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        used_by.sort();
        used_by.dedup();
        drive_usage.push(DriveUsage {
            name: name.clone(),
            path: path.clone(),
            bytes: t.bytes,
            files: t.files,
            used_by,
        });
    }
    Ok(DriveStats {
        drive: drive.root().to_path_buf(),
        apps: app_rows,
        drives: drive_usage,
        total_bytes: unique_total,
        rows_bytes,
    })
}
