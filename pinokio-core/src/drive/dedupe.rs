//! Content-addressed dedupe across apps (`HOME/api/*`) and the drive.
//!
//! 1. Walk every app folder and the drive without following symlinks
//!    (skipping `.git` folders and the drive's journal and trash); keep the
//!    regular files of at least `min_size` bytes.
//! 2. Group them by size; paths that share an inode are one copy already.
//!    Only sizes with two or more distinct inodes are hashed (SHA-256), on
//!    several threads; hashes are cached in `HOME/cache/drive-hashes.sqlite`
//!    by (path, size, mtime), so a second run only hashes what changed.
//! 3. For each set of identical inodes, keep one: a copy in the drive first,
//!    then the one with most hard links, then the oldest. Every other path is
//!    replaced, through a temporary name and a rename, by a hard link to the
//!    kept copy when on the same file system; on another file system by a
//!    symlink to it when it is in the drive (an app's copy could be
//!    uninstalled), else to the best copy on its own file system. A file
//!    whose metadata changed since it was hashed, or whose permissions differ
//!    from the kept copy's, is left alone. The kept file is never modified.
//!
//! Bytes saved count the copies whose every link was replaced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::registry::{record_links, LinkKind, LinkRecord};
use super::stats::walk;
use super::venv::hex;
use super::{now_ms, Drive, DriveError};
use crate::PinokioHome;

/// Default `min_size`: 1 MiB.
pub const DEFAULT_MIN_SIZE: u64 = 1 << 20;

/// How to dedupe.
#[derive(Debug, Clone)]
pub struct DedupeOptions {
    /// Only report what would be linked.
    pub dry_run: bool,
    /// Ignore files smaller than this.
    pub min_size: u64,
    /// Hashing threads (0: one per CPU).
    pub threads: usize,
}

impl Default for DedupeOptions {
    fn default() -> Self {
        DedupeOptions {
            dry_run: false,
            min_size: DEFAULT_MIN_SIZE,
            threads: 0,
        }
    }
}

/// Progress reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeProgress {
    /// The walk is done.
    Scanned { files: u64, to_hash: u64 },
    /// Bytes hashed so far (cache hits excluded).
    Hashing { done_bytes: u64, total_bytes: u64 },
}

/// How a duplicate was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMethod {
    HardLink,
    Symlink,
}

/// One set of identical files.
#[derive(Debug, Clone, Serialize)]
pub struct DupGroup {
    pub sha256: String,
    pub size: u64,
    pub kept: PathBuf,
    /// Paths replaced (or, in a dry run, to replace) by links.
    pub linked: Vec<(PathBuf, LinkMethod)>,
    /// Paths left alone, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    pub saved_bytes: u64,
}

/// The result of [`dedupe`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct DedupeReport {
    pub dry_run: bool,
    /// Regular files of at least `min_size` bytes.
    pub scanned_files: u64,
    /// Files hashed this run, and their bytes.
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Hashes taken from the cache.
    pub cached_files: u64,
    pub groups: Vec<DupGroup>,
    pub linked_files: u64,
    pub saved_bytes: u64,
    /// Files that could not be read.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[derive(Debug, Clone)]
struct FileInfo {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    nlink: u64,
    mode: u32,
    uid: u32,
    in_drive: bool,
}

fn info(path: &Path, m: &std::fs::Metadata, in_drive: bool) -> FileInfo {
    FileInfo {
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        nlink: m.nlink(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        in_drive,
    }
}

/// All paths of one inode.
#[derive(Debug, Clone)]
struct Inode {
    first: FileInfo,
    paths: Vec<PathBuf>,
}

/// The hash cache (`HOME/cache/drive-hashes.sqlite`).
struct Cache {
    conn: Connection,
    path: PathBuf,
}

impl Cache {
    fn open(path: &Path) -> Result<Cache, DriveError> {
        let err = |source| DriveError::Cache {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DriveError::io("creating", dir, e))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS hashes (
                path TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                sha256 TEXT NOT NULL
            );",
        )
        .map_err(err)?;
        Ok(Cache {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> DriveError {
        DriveError::Cache {
            path: self.path.clone(),
            source,
        }
    }

    fn get(&self, f: &FileInfo) -> Result<Option<String>, DriveError> {
        self.conn
            .prepare_cached(
                "SELECT sha256 FROM hashes WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![f.path.to_string_lossy(), f.size as i64, f.mtime_ns],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .map_err(|e| self.err(e))
    }

    fn put_all(&mut self, rows: &[(FileInfo, String)]) -> Result<(), DriveError> {
        let tx = self.conn.transaction().map_err(|e| DriveError::Cache {
            path: self.path.clone(),
            source: e,
        })?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO hashes (path, size, mtime_ns, sha256) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| DriveError::Cache {
                    path: self.path.clone(),
                    source: e,
                })?;
            for (f, h) in rows {
                st.execute(params![
                    f.path.to_string_lossy(),
                    f.size as i64,
                    f.mtime_ns,
                    h
                ])
                .map_err(|e| DriveError::Cache {
                    path: self.path.clone(),
                    source: e,
                })?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Forget rows of paths that were not seen in this scan.
    fn prune(&mut self, seen: &HashSet<String>) -> Result<(), DriveError> {
        let stale: Vec<String> = {
            let mut st = self
                .conn
                .prepare("SELECT path FROM hashes")
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?;
            rows.filter_map(Result::ok)
                .filter(|p| !seen.contains(p))
                .collect()
        };
        if stale.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(|e| DriveError::Cache {
            path: self.path.clone(),
            source: e,
        })?;
        for p in &stale {
            tx.execute("DELETE FROM hashes WHERE path = ?1", params![p])
                .map_err(|e| DriveError::Cache {
                    path: self.path.clone(),
                    source: e,
                })?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

/// Where the hash cache lives.
pub fn cache_path(home: &PinokioHome) -> PathBuf {
    home.cache().join("drive-hashes.sqlite")
}

/// Regular files of at least `min_size` under the apps and the drive.
fn scan(home: &PinokioHome, drive: &Drive, min_size: u64) -> Vec<FileInfo> {
    let droot = drive.root().to_path_buf();
    let journal = drive.journal_dir();
    let trash = drive.trash_dir();
    let skip = |p: &Path| {
        p == droot
            || p == journal
            || p == trash
            || p.file_name().map(|n| n == ".git").unwrap_or(false)
    };
    let mut out = Vec::new();
    let mut roots: Vec<(PathBuf, bool)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(home.api()) {
        let mut apps: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        apps.sort();
        roots.extend(apps.into_iter().map(|a| (a, false)));
    }
    roots.push((droot.clone(), true));
    for (root, in_drive) in roots {
        let mut visit = |p: &Path, m: &std::fs::Metadata| {
            if m.is_file() && m.len() >= min_size.max(1) {
                out.push(info(p, m, in_drive));
            }
        };
        if in_drive {
            walk(
                &root,
                &|p| {
                    p == journal
                        || p == trash
                        || p.file_name().map(|n| n == ".git").unwrap_or(false)
                },
                &mut visit,
            );
        } else {
            walk(&root, &skip, &mut visit);
        }
    }
    out
}

/// Hash `files` on `threads` threads; results in input order.
fn hash_all(
    files: &[FileInfo],
    threads: usize,
    progress: &dyn Fn(&DedupeProgress),
) -> Vec<Result<String, String>> {
    let total: u64 = files.iter().map(|f| f.size).sum();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<String, String>)>();
    let mut out: Vec<Result<String, String>> = vec![Err(String::new()); files.len()];
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                let r = hash_file(&f.path)
                    .map(|h| hex(&h))
                    .map_err(|e| e.to_string());
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = 0u64;
        let mut last = std::time::Instant::now();
        for (i, r) in rx {
            done += files[i].size;
            out[i] = r;
            if last.elapsed() >= std::time::Duration::from_millis(500) {
                last = std::time::Instant::now();
                progress(&DedupeProgress::Hashing {
                    done_bytes: done,
                    total_bytes: total,
                });
            }
        }
    });
    out
}

/// Find identical files and link them (see the module docs).
pub fn dedupe(
    home: &PinokioHome,
    drive: &Drive,
    opts: &DedupeOptions,
    progress: &dyn Fn(&DedupeProgress),
) -> Result<DedupeReport, DriveError> {
    let _lock = drive.lock()?;
    let mut report = DedupeReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let files = scan(home, drive, opts.min_size);
    report.scanned_files = files.len() as u64;
    // inodes by size
    let mut by_size: BTreeMap<u64, Vec<Inode>> = BTreeMap::new();
    {
        let mut index: HashMap<(u64, u64), (u64, usize)> = HashMap::new();
        for f in files.iter() {
            let key = (f.dev, f.ino);
            match index.get(&key) {
                Some(&(size, i)) => by_size.get_mut(&size).expect("indexed")[i]
                    .paths
                    .push(f.path.clone()),
                None => {
                    let list = by_size.entry(f.size).or_default();
                    index.insert(key, (f.size, list.len()));
                    list.push(Inode {
                        first: f.clone(),
                        paths: vec![f.path.clone()],
                    });
                }
            }
        }
    }
    by_size.retain(|_, v| v.len() >= 2);
    let candidates: Vec<&Inode> = by_size.values().flatten().collect();
    let mut cache = Cache::open(&cache_path(home))?;
    let mut hashes: HashMap<(u64, u64), String> = HashMap::new();
    let mut to_hash: Vec<FileInfo> = Vec::new();
    for inode in &candidates {
        let mut hit = None;
        for p in &inode.paths {
            let mut f = inode.first.clone();
            f.path = p.clone();
            if let Some(h) = cache.get(&f)? {
                hit = Some(h);
                break;
            }
        }
        match hit {
            Some(h) => {
                report.cached_files += 1;
                hashes.insert((inode.first.dev, inode.first.ino), h);
            }
            None => to_hash.push(inode.first.clone()),
        }
    }
    progress(&DedupeProgress::Scanned {
        files: report.scanned_files,
        to_hash: to_hash.len() as u64,
    });
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.threads
    };
    let results = hash_all(&to_hash, threads, progress);
    let mut fresh = Vec::new();
    for (f, r) in to_hash.into_iter().zip(results) {
        match r {
            Ok(h) => {
                report.hashed_files += 1;
                report.hashed_bytes += f.size;
                hashes.insert((f.dev, f.ino), h.clone());
                fresh.push((f, h));
            }
            Err(e) => report.unreadable.push((f.path.clone(), e)),
        }
    }
    cache.put_all(&fresh)?;
    let seen: HashSet<String> = files
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect();
    cache.prune(&seen)?;
    // identical sets
    let mut symlinks = Vec::new();
    for (size, inodes) in &by_size {
        let mut by_hash: BTreeMap<&str, Vec<&Inode>> = BTreeMap::new();
        for inode in inodes {
            if let Some(h) = hashes.get(&(inode.first.dev, inode.first.ino)) {
                by_hash.entry(h.as_str()).or_default().push(inode);
            }
        }
        for (h, set) in by_hash {
            if set.len() < 2 {
                continue;
            }
            let group = link_group(h, *size, set, opts.dry_run, &mut symlinks);
            report.linked_files += group.linked.len() as u64;
            report.saved_bytes += group.saved_bytes;
            report.groups.push(group);
        }
    }
    if !opts.dry_run {
        let created = now_ms();
        record_links(
            drive,
            symlinks
                .into_iter()
                .map(|(link, target)| LinkRecord {
                    link,
                    target,
                    kind: LinkKind::Dedupe,
                    app: None,
                    drive_path: None,
                    namespace: None,
                    created,
                })
                .collect(),
        )?;
    }
    Ok(report)
}

/// Order for keeping: in the drive, most links, oldest, first path.
fn keep_order(a: &Inode, b: &Inode) -> std::cmp::Ordering {
    b.first
        .in_drive
        .cmp(&a.first.in_drive)
        .then(b.first.nlink.cmp(&a.first.nlink))
        .then(a.first.mtime_ns.cmp(&b.first.mtime_ns))
        .then(a.first.path.cmp(&b.first.path))
}

fn link_group(
    sha: &str,
    size: u64,
    mut set: Vec<&Inode>,
    dry_run: bool,
    symlinks: &mut Vec<(PathBuf, PathBuf)>,
) -> DupGroup {
    set.sort_by(|a, b| keep_order(a, b));
    let anchor = set[0];
    let mut group = DupGroup {
        sha256: sha.to_string(),
        size,
        kept: anchor.first.path.clone(),
        linked: Vec::new(),
        skipped: Vec::new(),
        saved_bytes: 0,
    };
    // the kept copy of each file system
    let mut kept_on: HashMap<u64, &Inode> = HashMap::new();
    for inode in &set {
        kept_on.entry(inode.first.dev).or_insert(inode);
    }
    for inode in &set[1..] {
        let (target, method) = if inode.first.dev == anchor.first.dev {
            (anchor, LinkMethod::HardLink)
        } else if anchor.first.in_drive {
            (anchor, LinkMethod::Symlink)
        } else {
            // no drive copy: stay within this file system
            let local = kept_on[&inode.first.dev];
            if std::ptr::eq(local, *inode) {
                continue;
            }
            (local, LinkMethod::HardLink)
        };
        if inode.first.mode != target.first.mode || inode.first.uid != target.first.uid {
            for p in &inode.paths {
                group
                    .skipped
                    .push((p.clone(), "permissions differ from the kept copy".into()));
            }
            continue;
        }
        if inode.first.nlink > inode.paths.len() as u64 {
            for p in &inode.paths {
                group.skipped.push((
                    p.clone(),
                    "also hard-linked outside the apps and the drive".into(),
                ));
            }
            continue;
        }
        let mut replaced = 0;
        for p in &inode.paths {
            if dry_run {
                group.linked.push((p.clone(), method));
                replaced += 1;
                continue;
            }
            match replace(p, inode, target, method) {
                Ok(m) => {
                    if m == LinkMethod::Symlink {
                        symlinks.push((p.clone(), target.first.path.clone()));
                    }
                    group.linked.push((p.clone(), m));
                    replaced += 1;
                }
                Err(why) => group.skipped.push((p.clone(), why)),
            }
        }
        if replaced == inode.paths.len() {
            group.saved_bytes += size;
        }
    }
    group
}

/// Same file as when it was scanned?
fn unchanged(p: &Path, f: &FileInfo) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            m.is_file()
                && m.dev() == f.dev
                && m.ino() == f.ino
                && m.len() == f.size
                && m.mtime() * 1_000_000_000 + m.mtime_nsec() == f.mtime_ns
        }
        Err(_) => false,
    }
}

/// Replace `p` (a path of `dup`) by a link to `target`, through a temporary
/// name and a rename. A hard link that the file system refuses (a bind
/// mount, too many links) falls back to a symlink when the target is in the
/// drive.
fn replace(
    p: &Path,
    dup: &Inode,
    target: &Inode,
    method: LinkMethod,
) -> Result<LinkMethod, String> {
    if !unchanged(p, &dup.first) || !unchanged(&target.first.path, &target.first) {
        return Err("changed since it was hashed".into());
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = p.with_file_name(format!(".{name}.pinokio-dedupe-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let made = match method {
        LinkMethod::HardLink => match std::fs::hard_link(&target.first.path, &tmp) {
            Ok(()) => Ok(LinkMethod::HardLink),
            Err(_) if target.first.in_drive => {
                std::os::unix::fs::symlink(&target.first.path, &tmp).map(|_| LinkMethod::Symlink)
            }
            Err(e) => Err(e),
        },
        LinkMethod::Symlink => {
            std::os::unix::fs::symlink(&target.first.path, &tmp).map(|_| LinkMethod::Symlink)
        }
    }
    .map_err(|e| format!("cannot link: {e}"))?;
    std::fs::rename(&tmp, p).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot replace: {e}")
    })?;
    Ok(made)
}
