//! Write-ahead journal for drive changes.
//!
//! A [`Txn`] writes each [`Op`] as one JSON line to `D/.journal/<txn>.jsonl`
//! *before* doing it. [`Txn::commit`] appends `{"op":"commit"}`, deletes what
//! was set aside ([`Op::Discard`]) and removes the journal; [`Txn::rollback`]
//! undoes the ops in reverse order. Undo steps look at the disk before acting,
//! so a journal whose last op was written but never done, or one being undone
//! a second time, is handled: [`recover`] (run whenever the drive lock is
//! taken) rolls back every uncommitted journal left by a crash and finishes
//! committed ones.
//!
//! Nothing is deleted before commit: a folder being linked is first renamed
//! aside (same parent, so an atomic rename), and a drive entry being replaced
//! goes to `D/.trash/<txn>/`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{now_ms, Drive, DriveError};

/// One journalled step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `from` renamed to `to`. Undo: rename back.
    Rename { from: PathBuf, to: PathBuf },
    /// A folder created. Undo: remove it when empty.
    Mkdir { path: PathBuf },
    /// `from` copied to `to` (across file systems, through a temporary
    /// name). Undo: remove `to`.
    Copy { from: PathBuf, to: PathBuf },
    /// A symlink at `path` pointing to `target`. Undo: remove the symlink.
    Symlink { path: PathBuf, target: PathBuf },
    /// Something set aside, deleted at commit. Undo: nothing.
    Discard { path: PathBuf },
    /// Everything before this line is done; only discards remain.
    Commit,
}

impl Op {
    /// A short description ("rename a -> b").
    pub fn describe(&self) -> String {
        match self {
            Op::Rename { from, to } => format!("rename {} -> {}", from.display(), to.display()),
            Op::Mkdir { path } => format!("mkdir {}", path.display()),
            Op::Copy { from, to } => format!("copy {} -> {}", from.display(), to.display()),
            Op::Symlink { path, target } => {
                format!("symlink {} -> {}", path.display(), target.display())
            }
            Op::Discard { path } => format!("discard {}", path.display()),
            Op::Commit => "commit".to_string(),
        }
    }
}

/// Called before each op; an `Err` stops the transaction there (the caller
/// rolls back). Used for the stop flag, progress, and tests.
pub type Hook<'a> = &'a mut dyn FnMut(&Op) -> Result<(), String>;

/// A journalled set of changes.
pub struct Txn<'a> {
    id: String,
    path: PathBuf,
    file: File,
    ops: Vec<Op>,
    trash: PathBuf,
    counter: usize,
    hook: Hook<'a>,
}

impl<'a> Txn<'a> {
    /// Start a transaction on `drive` (whose lock the caller holds).
    pub fn begin(drive: &Drive, hook: Hook<'a>) -> Result<Txn<'a>, DriveError> {
        let dir = drive.journal_dir();
        std::fs::create_dir_all(&dir).map_err(|e| DriveError::io("creating", &dir, e))?;
        let id = format!("{}-{}-{}", now_ms(), std::process::id(), next_seq());
        let path = dir.join(format!("{id}.jsonl"));
        let file = File::options()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| DriveError::io("creating the journal", &path, e))?;
        Ok(Txn {
            trash: drive.trash_dir().join(&id),
            id,
            path,
            file,
            ops: Vec::new(),
            counter: 0,
            hook,
        })
    }

    /// The transaction id (also used in staging names).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn log(&mut self, op: Op) -> Result<(), DriveError> {
        (self.hook)(&op).map_err(|reason| DriveError::Aborted {
            step: op.describe(),
            reason,
        })?;
        self.append(&op)?;
        self.ops.push(op);
        Ok(())
    }

    fn append(&mut self, op: &Op) -> Result<(), DriveError> {
        let mut line = serde_json::to_string(op).map_err(|e| DriveError::Registry {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| DriveError::io("writing the journal", &self.path, e))
    }

    /// A fresh name beside `near` (same folder, so renames stay atomic).
    pub fn staging_beside(&mut self, near: &Path, tag: &str) -> PathBuf {
        self.counter += 1;
        let name = near
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        near.with_file_name(format!(
            ".{name}.pinokio-{tag}-{}-{}",
            self.id, self.counter
        ))
    }

    /// A fresh path under `D/.trash/<txn>/`.
    pub fn trash_slot(&mut self) -> PathBuf {
        self.counter += 1;
        self.trash.join(self.counter.to_string())
    }

    /// Rename `from` to `to` (which must not exist).
    pub fn rename(&mut self, from: &Path, to: &Path) -> Result<(), DriveError> {
        self.log(Op::Rename {
            from: from.into(),
            to: to.into(),
        })?;
        std::fs::rename(from, to).map_err(|e| DriveError::io("moving", from, e))
    }

    /// Create `path` and its missing parents, one journalled folder each.
    pub fn mkdir_all(&mut self, path: &Path) -> Result<(), DriveError> {
        let mut missing = Vec::new();
        let mut cur = path.to_path_buf();
        loop {
            match std::fs::symlink_metadata(&cur) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(cur.clone());
                    if !cur.pop() {
                        break;
                    }
                }
                Err(e) => return Err(DriveError::io("checking", &cur, e)),
            }
        }
        for dir in missing.into_iter().rev() {
            self.log(Op::Mkdir { path: dir.clone() })?;
            std::fs::create_dir(&dir).map_err(|e| DriveError::io("creating", &dir, e))?;
        }
        Ok(())
    }

    /// Make a symlink at `path` pointing to `target` (kept as given).
    pub fn symlink(&mut self, path: &Path, target: &Path) -> Result<(), DriveError> {
        self.log(Op::Symlink {
            path: path.into(),
            target: target.into(),
        })?;
        std::os::unix::fs::symlink(target, path).map_err(|e| DriveError::io("linking", path, e))
    }

    /// Copy a file, symlink or folder tree `from` to `to` (which must not
    /// exist), through a temporary name beside `to`.
    pub fn copy(&mut self, from: &Path, to: &Path) -> Result<(), DriveError> {
        self.log(Op::Copy {
            from: from.into(),
            to: to.into(),
        })?;
        let tmp = copy_tmp_name(to);
        copy_tree(from, &tmp).inspect_err(|_| {
            let _ = remove_any(&tmp);
        })?;
        std::fs::rename(&tmp, to).map_err(|e| {
            let _ = remove_any(&tmp);
            DriveError::io("moving into place", to, e)
        })
    }

    /// Move `from` to `to`: a rename, or across file systems a copy whose
    /// source is set aside and deleted at commit.
    pub fn move_entry(&mut self, from: &Path, to: &Path) -> Result<(), DriveError> {
        self.log(Op::Rename {
            from: from.into(),
            to: to.into(),
        })?;
        match std::fs::rename(from, to) {
            Ok(()) => Ok(()),
            Err(e) if is_cross_device(&e) => {
                // The rename did not happen; its undo finds nothing to do.
                let aside = self.staging_beside(from, "moved");
                self.rename(from, &aside)?;
                self.copy(&aside, to)?;
                self.discard(&aside)
            }
            Err(e) => Err(DriveError::io("moving", from, e)),
        }
    }

    /// Mark `path` for deletion at commit.
    pub fn discard(&mut self, path: &Path) -> Result<(), DriveError> {
        self.log(Op::Discard { path: path.into() })
    }

    /// Set a drive entry aside in the trash (deleted at commit).
    pub fn trash(&mut self, path: &Path) -> Result<(), DriveError> {
        let slot = self.trash_slot();
        self.mkdir_all(slot.parent().unwrap_or(&slot))?;
        self.rename(path, &slot)?;
        self.discard(&slot)
    }

    /// Make the changes final: delete what was set aside, then the journal.
    pub fn commit(mut self) -> Result<(), DriveError> {
        self.append(&Op::Commit)?;
        finish(&self.ops);
        let _ = std::fs::remove_dir_all(&self.trash);
        if let Some(parent) = self.trash.parent() {
            // only when no other operation uses it
            let _ = std::fs::remove_dir(parent);
        }
        let _ = std::fs::remove_file(&self.path);
        Ok(())
    }

    /// Undo every op, newest first. Returns the undo steps that failed (the
    /// journal is then kept so that the next lock retries them).
    pub fn rollback(self) -> Vec<String> {
        let failures = undo_all(&self.ops);
        if failures.is_empty() {
            let _ = std::fs::remove_dir_all(&self.trash);
            let _ = std::fs::remove_file(&self.path);
        }
        failures
    }

    /// Run `work` in this transaction: commit on success, roll back on error.
    pub fn run<T>(
        mut self,
        work: impl FnOnce(&mut Txn<'a>) -> Result<T, DriveError>,
    ) -> Result<T, DriveError> {
        match work(&mut self) {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(cause) => {
                let undo_failures = self.rollback();
                Err(DriveError::RolledBack {
                    cause: Box::new(cause),
                    undo_failures,
                })
            }
        }
    }
}

fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn copy_tmp_name(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    to.with_file_name(format!(".{name}.pinokio-copy-{}", std::process::id()))
}

pub(crate) fn is_cross_device(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EXDEV)
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Remove a file, a symlink or a folder tree (never following links).
pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copy a file, symlink (as a symlink) or folder tree. Permissions are kept.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), DriveError> {
    let m = std::fs::symlink_metadata(from).map_err(|e| DriveError::io("reading", from, e))?;
    if m.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| DriveError::io("reading", from, e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| DriveError::io("linking", to, e))
    } else if m.is_dir() {
        std::fs::create_dir(to).map_err(|e| DriveError::io("creating", to, e))?;
        let rd = std::fs::read_dir(from).map_err(|e| DriveError::io("listing", from, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| DriveError::io("listing", from, e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, m.permissions())
            .map_err(|e| DriveError::io("setting permissions", to, e))
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| DriveError::io("copying", from, e))
    }
}

fn undo_one(op: &Op) -> Result<(), String> {
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    match op {
        Op::Rename { from, to } => {
            if exists(to) && !exists(from) {
                std::fs::rename(to, from).map_err(|e| fail("moving back", to, e))?;
            }
        }
        Op::Mkdir { path } => {
            if let Err(e) = std::fs::remove_dir(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(fail("removing", path, e));
                }
            }
        }
        Op::Copy { from, to } => {
            let _ = remove_any(&copy_tmp_name(to));
            // Only the copy goes; the source is still in place.
            if exists(from) {
                remove_any(to).map_err(|e| fail("removing the copy", to, e))?;
            }
        }
        Op::Symlink { path, target } => {
            if std::fs::read_link(path).ok().as_deref() == Some(target.as_path()) {
                std::fs::remove_file(path).map_err(|e| fail("removing the link", path, e))?;
            }
        }
        Op::Discard { .. } | Op::Commit => {}
    }
    Ok(())
}

fn undo_all(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .rev()
        .filter_map(|op| undo_one(op).err())
        .collect()
}

fn finish(ops: &[Op]) {
    for op in ops {
        if let Op::Discard { path } = op {
            let _ = remove_any(path);
        }
    }
}

/// Finish or undo the journals left in `D/.journal` (the caller holds the
/// drive lock, so none of them belongs to a live operation). Returns the
/// journals handled.
pub fn recover(drive: &Drive) -> Result<Vec<PathBuf>, DriveError> {
    let dir = drive.journal_dir();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DriveError::io("listing", &dir, e)),
    };
    let mut journals: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().map(|x| x == "jsonl").unwrap_or(false))
        .collect();
    journals.sort();
    let mut handled = Vec::new();
    for path in journals {
        let file = File::open(&path).map_err(|e| DriveError::io("reading", &path, e))?;
        // A torn last line (a crash while writing it) is ignored: its op was
        // never started.
        let ops: Vec<Op> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .map_while(|l| serde_json::from_str::<Op>(&l).ok())
            .collect();
        let committed = ops.contains(&Op::Commit);
        let failures = if committed {
            finish(&ops);
            Vec::new()
        } else {
            undo_all(&ops)
        };
        if failures.is_empty() {
            if let Some(stem) = path.file_stem() {
                let _ = std::fs::remove_dir_all(drive.trash_dir().join(stem));
            }
            let _ = std::fs::remove_file(&path);
        }
        handled.push(path);
    }
    Ok(handled)
}
