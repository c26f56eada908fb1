//! Archive extraction (zip, tar, tar.gz, tar.xz, tar.bz2, tar.zst, 7z) with
//! every entry checked: absolute paths, `..` and links that leave the target
//! folder are refused and nothing is left behind. Entries are unpacked into a
//! temporary folder beside `dest`, then moved into `dest`.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("unsupported archive format: {format}")]
    Unsupported { format: String },
    #[error("archive entry escapes the target folder: {entry}")]
    Escape { entry: String },
    #[error("extracting {archive}: {message}")]
    Archive { archive: String, message: String },
    #[error("extract io error: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Zip,
    Tar,
    TarGz,
    TarXz,
    TarBz2,
    TarZst,
    SevenZ,
}

fn detect(archive: &Path) -> Result<Format, ExtractError> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let table: &[(&str, Format)] = &[
        (".tar.gz", Format::TarGz),
        (".tgz", Format::TarGz),
        (".tar.xz", Format::TarXz),
        (".txz", Format::TarXz),
        (".tar.bz2", Format::TarBz2),
        (".tbz2", Format::TarBz2),
        (".tar.zst", Format::TarZst),
        (".tzst", Format::TarZst),
        (".tar", Format::Tar),
        (".zip", Format::Zip),
        (".7z", Format::SevenZ),
    ];
    table
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, f)| *f)
        .ok_or_else(|| ExtractError::Unsupported {
            format: match name.rfind('.') {
                Some(i) => name[i..].to_string(),
                None => name.clone(),
            },
        })
}

/// Whether `archive`'s file name has an extension [`extract`] handles.
pub fn is_archive(archive: &Path) -> bool {
    detect(archive).is_ok()
}

/// Extract `archive` into `dest` (created if missing). Returns the paths
/// written under `dest`, in archive order.
pub fn extract(archive: &Path, dest: &Path) -> Result<Vec<PathBuf>, ExtractError> {
    let format = detect(archive)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(".pinokio-extract-{}-{nanos}", std::process::id()));
    fs::create_dir(&tmp)?;
    let result = (|| {
        let mut sink = Sink {
            root: tmp.clone(),
            entries: Vec::new(),
        };
        unpack(format, archive, &mut sink)?;
        sink.check_links()?;
        fs::create_dir_all(dest)?;
        move_into(&tmp, dest)?;
        Ok(sink.entries.iter().map(|r| dest.join(r)).collect())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

fn archive_err(archive: &Path, e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Archive {
        archive: archive.display().to_string(),
        message: e.to_string(),
    }
}

fn unpack(format: Format, archive: &Path, sink: &mut Sink) -> Result<(), ExtractError> {
    let file = BufReader::new(File::open(archive)?);
    match format {
        Format::Tar => unpack_tar(archive, file, sink),
        Format::TarGz => unpack_tar(archive, flate2::read::MultiGzDecoder::new(file), sink),
        Format::TarXz => unpack_tar(archive, lzma_rust2::XzReader::new(file, true), sink),
        Format::TarBz2 => unpack_tar(archive, bzip2::read::MultiBzDecoder::new(file), sink),
        Format::TarZst => {
            let dec = ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| archive_err(archive, e))?;
            unpack_tar(archive, dec, sink)
        }
        Format::Zip => unpack_zip(archive, file, sink),
        Format::SevenZ => unpack_7z(archive, sink),
    }
}

fn unpack_tar(archive: &Path, r: impl Read, sink: &mut Sink) -> Result<(), ExtractError> {
    use tar::EntryType;
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries().map_err(|e| archive_err(archive, e))? {
        let mut entry = entry.map_err(|e| archive_err(archive, e))?;
        let raw = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = safe_rel(&name)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().ok();
        match kind {
            EntryType::Directory => sink.dir(&name, &rel)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                sink.file(&name, &rel, &mut entry, mode)?
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| archive_err(archive, e))?
                    .unwrap_or_default()
                    .into_owned();
                sink.symlink(&name, &rel, &target)?
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let target_rel = safe_rel(&target).map_err(|_| ExtractError::Escape {
                    entry: name.clone(),
                })?;
                sink.hardlink(&name, &rel, &target_rel)?
            }
            // PAX/GNU headers are consumed by the tar crate; skip the rest
            // (devices, fifos).
            _ => {}
        }
    }
    Ok(())
}

fn unpack_zip(
    archive: &Path,
    r: impl Read + io::Seek,
    sink: &mut Sink,
) -> Result<(), ExtractError> {
    let mut zip = zip::ZipArchive::new(r).map_err(|e| archive_err(archive, e))?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| archive_err(archive, e))?;
        let name = f.name().map_err(|e| archive_err(archive, e))?.into_owned();
        let rel = safe_rel(&name)?;
        let mode = f.unix_mode();
        if f.is_dir() {
            sink.dir(&name, &rel)?;
        } else if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            let mut target = String::new();
            f.read_to_string(&mut target)?;
            sink.symlink(&name, &rel, Path::new(&target))?;
        } else {
            sink.file(&name, &rel, &mut f, mode)?;
        }
    }
    Ok(())
}

fn unpack_7z(archive: &Path, sink: &mut Sink) -> Result<(), ExtractError> {
    let mut reader = sevenz_rust2::ArchiveReader::open(archive, sevenz_rust2::Password::empty())
        .map_err(|e| archive_err(archive, e))?;
    let mut failure: Option<ExtractError> = None;
    reader
        .for_each_entries(|entry, r| {
            let name = entry.name().to_string();
            let res = safe_rel(&name).and_then(|rel| {
                if entry.is_directory() {
                    sink.dir(&name, &rel)
                } else {
                    sink.file(&name, &rel, r, None)
                }
            });
            match res {
                Ok(()) => Ok(true),
                Err(e) => {
                    failure = Some(e);
                    Ok(false)
                }
            }
        })
        .map_err(|e| archive_err(archive, e))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `name` as a relative path with only normal components, or `Escape`.
fn safe_rel(name: &str) -> Result<PathBuf, ExtractError> {
    let escape = || ExtractError::Escape {
        entry: name.to_string(),
    };
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for c in Path::new(&unified).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(out)
}

struct Sink {
    root: PathBuf,
    entries: Vec<PathBuf>,
}

impl Sink {
    /// Create the parents of `rel` under root, refusing to go through a
    /// symlink that an earlier entry created.
    fn prepare(&self, name: &str, rel: &Path) -> Result<PathBuf, ExtractError> {
        let mut cur = self.root.clone();
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ExtractError::Escape {
                        entry: name.to_string(),
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => fs::remove_file(&cur).and_then(|_| fs::create_dir(&cur))?,
                Err(_) => fs::create_dir(&cur)?,
            }
        }
        let full = self.root.join(rel);
        if let Ok(m) = fs::symlink_metadata(&full) {
            if !m.is_dir() {
                fs::remove_file(&full)?;
            }
        }
        Ok(full)
    }

    fn dir(&mut self, name: &str, rel: &Path) -> Result<(), ExtractError> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let full = self.prepare(name, rel)?;
        if !full.is_dir() {
            fs::create_dir(&full)?;
        }
        self.entries.push(rel.to_path_buf());
        Ok(())
    }

    fn file(
        &mut self,
        name: &str,
        rel: &Path,
        r: &mut dyn Read,
        mode: Option<u32>,
    ) -> Result<(), ExtractError> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        let full = self.prepare(name, rel)?;
        let mut out = File::create(&full)?;
        io::copy(r, &mut out)?;
        drop(out);
        set_mode(&full, mode)?;
        self.entries.push(rel.to_path_buf());
        Ok(())
    }

    fn symlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<(), ExtractError> {
        let escape = || ExtractError::Escape {
            entry: name.to_string(),
        };
        // Lexically resolve the target against the link's folder.
        let mut depth: Vec<Component> = rel
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
            .collect();
        for c in target.components() {
            match c {
                Component::Normal(_) => depth.push(c),
                Component::CurDir => {}
                Component::ParentDir => {
                    depth.pop().ok_or_else(escape)?;
                }
                Component::RootDir | Component::Prefix(_) => return Err(escape()),
            }
        }
        let full = self.prepare(name, rel)?;
        make_symlink(target, &full)?;
        self.entries.push(rel.to_path_buf());
        Ok(())
    }

    fn hardlink(&mut self, name: &str, rel: &Path, target: &Path) -> Result<(), ExtractError> {
        let src = self.root.join(target);
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(ExtractError::Escape {
                    entry: name.to_string(),
                })
            }
        }
        let full = self.prepare(name, rel)?;
        fs::copy(&src, &full)?;
        self.entries.push(rel.to_path_buf());
        Ok(())
    }

    /// Every symlink that resolves must resolve inside the root (catches
    /// chains such as `a -> .` then `b -> a/..`).
    fn check_links(&self) -> Result<(), ExtractError> {
        let root = fs::canonicalize(&self.root)?;
        for rel in &self.entries {
            let full = self.root.join(rel);
            let is_link = fs::symlink_metadata(&full)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link {
                if let Ok(real) = fs::canonicalize(&full) {
                    if !real.starts_with(&root) {
                        return Err(ExtractError::Escape {
                            entry: rel.display().to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match mode {
        Some(m) => fs::set_permissions(path, fs::Permissions::from_mode(m & 0o777)),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: Option<u32>) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// Move everything in `from` into `to`, merging folders and replacing files.
fn move_into(from: &Path, to: &Path) -> io::Result<()> {
    for e in fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let src_is_dir = e.file_type()?.is_dir();
        match fs::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() && src_is_dir => {
                move_into(&src, &dst)?;
                continue;
            }
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dst)?,
            Ok(_) => fs::remove_file(&dst)?,
            Err(_) => {}
        }
        fs::rename(&src, &dst)?;
    }
    Ok(())
}
