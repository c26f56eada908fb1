//! The two registries of a drive.
//!
//! - `D/drives.json` is upstream's, kept in its exact format so a home can
//!   move between the desktop app and the cloud:
//!   `{ "<git url>": { "<drive path>": "<absolute drive folder>" } }`.
//! - `D/links.json` is ours: one record per symlink this engine made
//!   (`{"version":1,"links":[{link,target,kind,app,drive_path?,namespace?,created}]}`),
//!   so links can be listed, checked and undone.
//!
//! Both are read and written under the drive lock, written atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{write_atomic, Drive, DriveError};

/// `drives.json`: git URL -> drive path -> absolute drive folder. Key order
/// is kept as read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrivesFile {
    pub entries: Vec<(String, Vec<(String, String)>)>,
}

impl DrivesFile {
    pub fn load(drive: &Drive) -> Result<Self, DriveError> {
        let path = drive.drives_json();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(DriveError::io("reading", &path, e)),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| DriveError::Registry {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let bad = |m: &str| DriveError::Registry {
            path: path.clone(),
            message: m.to_string(),
        };
        let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let mut entries = Vec::new();
        for (url, paths) in obj {
            let paths = paths
                .as_object()
                .ok_or_else(|| bad("each git URL must map to an object"))?;
            let mut list = Vec::new();
            for (r, folder) in paths {
                let folder = folder
                    .as_str()
                    .ok_or_else(|| bad("drive folders must be strings"))?;
                list.push((r.clone(), folder.to_string()));
            }
            entries.push((url.clone(), list));
        }
        Ok(DrivesFile { entries })
    }

    pub fn save(&self, drive: &Drive) -> Result<(), DriveError> {
        let mut obj = serde_json::Map::new();
        for (url, paths) in &self.entries {
            let mut inner = serde_json::Map::new();
            for (r, folder) in paths {
                inner.insert(r.clone(), serde_json::Value::String(folder.clone()));
            }
            obj.insert(url.clone(), serde_json::Value::Object(inner));
        }
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(obj))
            .unwrap_or_else(|_| "{}".into());
        write_atomic(&drive.drives_json(), text.as_bytes())
    }

    /// The entry of `url` (exact, else equal after [`normalize_url`]).
    pub fn get(&self, url: &str) -> Option<&Vec<(String, String)>> {
        self.entries
            .iter()
            .find(|(u, _)| u == url)
            .or_else(|| {
                let n = normalize_url(url);
                self.entries.iter().find(|(u, _)| normalize_url(u) == n)
            })
            .map(|(_, p)| p)
    }

    /// The folder recorded for drive path `r` under `url`.
    pub fn folder(&self, url: &str, r: &str) -> Option<&str> {
        self.get(url)?
            .iter()
            .find(|(k, _)| k == r)
            .map(|(_, f)| f.as_str())
    }

    /// Record `r -> folder` under `url` (added or replaced).
    pub fn set(&mut self, url: &str, r: &str, folder: &str) {
        let n = normalize_url(url);
        let idx = match self
            .entries
            .iter()
            .position(|(u, _)| u == url)
            .or_else(|| self.entries.iter().position(|(u, _)| normalize_url(u) == n))
        {
            Some(i) => i,
            None => {
                self.entries.push((url.to_string(), Vec::new()));
                self.entries.len() - 1
            }
        };
        let paths = &mut self.entries[idx].1;
        match paths.iter_mut().find(|(k, _)| k == r) {
            Some(slot) => slot.1 = folder.to_string(),
            None => paths.push((r.to_string(), folder.to_string())),
        }
    }
}

/// A git URL for comparison: lower case, without a trailing `/` or `.git`.
pub fn normalize_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_ascii_lowercase();
    if let Some(s) = u.strip_suffix(".git") {
        u = s.to_string();
    }
    u
}

/// What made a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// `fs.link` with `drive`: an app folder linked to a folder drive.
    Drive,
    /// `fs.link` with `venv`: a package entry linked to a venv drive.
    Venv,
    /// `pinokio drive dedupe`: a file linked (across file systems) to its
    /// copy in the drive.
    Dedupe,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Drive => "drive",
            LinkKind::Venv => "venv",
            LinkKind::Dedupe => "dedupe",
        })
    }
}

/// One link made by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Where the symlink is.
    pub link: PathBuf,
    /// The absolute drive path it points to.
    pub target: PathBuf,
    pub kind: LinkKind,
    /// The app (or script folder) that asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<PathBuf>,
    /// For [`LinkKind::Drive`]: the drive path (`R`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_path: Option<String>,
    /// For [`LinkKind::Venv`]: the package namespace (`<name>/<version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// When it was made (ms since the epoch).
    pub created: u64,
}

/// The state of a recorded link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LinkStatus {
    /// The link points to its target, which exists.
    Ok,
    /// The link is there but its target vanished.
    TargetMissing,
    /// Following the link loops.
    Circular,
    /// The link itself is gone (an uninstalled app, a deleted venv).
    LinkMissing,
    /// Something else is at the link path now (a real folder, or a link to
    /// elsewhere).
    Replaced { now: String },
}

impl LinkStatus {
    /// A link that should work and does not.
    pub fn is_broken(&self) -> bool {
        matches!(
            self,
            LinkStatus::TargetMissing | LinkStatus::Circular | LinkStatus::Replaced { .. }
        )
    }
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkStatus::Ok => f.write_str("ok"),
            LinkStatus::TargetMissing => f.write_str("broken: the target is gone"),
            LinkStatus::Circular => f.write_str("broken: circular link"),
            LinkStatus::LinkMissing => f.write_str("gone: the link was removed"),
            LinkStatus::Replaced { now } => write!(f, "replaced: {now}"),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LinksFile {
    version: u32,
    links: Vec<LinkRecord>,
}

/// Every recorded link.
pub fn load_links(drive: &Drive) -> Result<Vec<LinkRecord>, DriveError> {
    let path = drive.links_json();
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
        Ok(text) => serde_json::from_str::<LinksFile>(&text)
            .map(|f| f.links)
            .map_err(|e| DriveError::Registry {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(DriveError::io("reading", &path, e)),
    }
}

/// Replace the recorded links.
pub fn save_links(drive: &Drive, links: &[LinkRecord]) -> Result<(), DriveError> {
    let file = LinksFile {
        version: 1,
        links: links.to_vec(),
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| DriveError::Registry {
        path: drive.links_json(),
        message: e.to_string(),
    })?;
    write_atomic(&drive.links_json(), text.as_bytes())
}

/// Add records, replacing any with the same link path.
pub fn record_links(drive: &Drive, new: Vec<LinkRecord>) -> Result<(), DriveError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut links = load_links(drive)?;
    for rec in new {
        match links.iter_mut().find(|l| l.link == rec.link) {
            Some(slot) => *slot = rec,
            None => links.push(rec),
        }
    }
    save_links(drive, &links)
}

/// Check one record against the disk.
pub fn check(rec: &LinkRecord) -> LinkStatus {
    let meta = match std::fs::symlink_metadata(&rec.link) {
        Ok(m) => m,
        Err(_) => return LinkStatus::LinkMissing,
    };
    if !meta.file_type().is_symlink() {
        return LinkStatus::Replaced {
            now: if meta.is_dir() {
                "a real folder".into()
            } else {
                "a real file".into()
            },
        };
    }
    match std::fs::metadata(&rec.link) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return LinkStatus::Circular,
        Err(_) => return LinkStatus::TargetMissing,
    }
    let here = std::fs::canonicalize(&rec.link).ok();
    let there = std::fs::canonicalize(&rec.target).ok();
    match (here, there) {
        (Some(a), Some(b)) if a == b => LinkStatus::Ok,
        (Some(a), _) => LinkStatus::Replaced {
            now: format!("a link to {}", a.display()),
        },
        _ => LinkStatus::TargetMissing,
    }
}

/// Every record with its state.
pub fn check_all(drive: &Drive) -> Result<Vec<(LinkRecord, LinkStatus)>, DriveError> {
    Ok(load_links(drive)?
        .into_iter()
        .map(|r| {
            let s = check(&r);
            (r, s)
        })
        .collect())
}

/// Drop the records whose link is gone; returns them.
pub fn prune(drive: &Drive) -> Result<Vec<LinkRecord>, DriveError> {
    let _lock = drive.lock()?;
    let (gone, keep): (Vec<_>, Vec<_>) = load_links(drive)?
        .into_iter()
        .partition(|r| check(r) == LinkStatus::LinkMissing);
    if !gone.is_empty() {
        save_links(drive, &keep)?;
    }
    Ok(gone)
}

/// Undo a link: replace it by a copy of what it points to (the drive keeps
/// its data) and forget the record. The copy is made beside the link first,
/// so a failure leaves the link as it was.
pub fn unlink(drive: &Drive, link: &Path) -> Result<LinkRecord, DriveError> {
    let _lock = drive.lock()?;
    let link = crate::home::normalize(link);
    let mut links = load_links(drive)?;
    let idx = links
        .iter()
        .position(|r| r.link == link)
        .ok_or_else(|| DriveError::NotALink { path: link.clone() })?;
    let rec = links[idx].clone();
    let status = check(&rec);
    if status != LinkStatus::Ok {
        return Err(DriveError::CannotUnlink { path: link, status });
    }
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.pinokio-unlink-{}", std::process::id()));
    let _ = super::journal::remove_any(&tmp);
    let real = std::fs::canonicalize(&link).map_err(|e| DriveError::io("resolving", &link, e))?;
    super::journal::copy_tree(&real, &tmp).inspect_err(|_| {
        let _ = super::journal::remove_any(&tmp);
    })?;
    let target = std::fs::read_link(&link).map_err(|e| DriveError::io("reading", &link, e))?;
    if tmp.is_dir() {
        // A folder cannot be renamed over a symlink: remove the link, then
        // put it back if the rename fails.
        std::fs::remove_file(&link).map_err(|e| DriveError::io("removing", &link, e))?;
        if let Err(e) = std::fs::rename(&tmp, &link) {
            let _ = std::os::unix::fs::symlink(&target, &link);
            let _ = super::journal::remove_any(&tmp);
            return Err(DriveError::io("replacing", &link, e));
        }
    } else {
        std::fs::rename(&tmp, &link).map_err(|e| {
            let _ = super::journal::remove_any(&tmp);
            DriveError::io("replacing", &link, e)
        })?;
    }
    links.remove(idx);
    save_links(drive, &links)?;
    Ok(rec)
}

/// Drive folders recorded in `drives.json`, by drive name
/// (`D/drives/peers/<name>`), with the URLs that use them.
pub fn peer_drives(drive: &Drive) -> Result<BTreeMap<String, Vec<String>>, DriveError> {
    let file = DrivesFile::load(drive)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (url, paths) in &file.entries {
        for (r, folder) in paths {
            if let Some(name) = drive_name_of(Path::new(folder), r) {
                let urls = out.entry(name).or_default();
                if !urls.contains(url) {
                    urls.push(url.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The drive name in a recorded folder `.../drives/peers/<name>/<r>`.
pub fn drive_name_of(folder: &Path, r: &str) -> Option<String> {
    let comps: Vec<String> = folder
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let r_len = Path::new(r).components().count();
    if comps.len() < r_len + 3 {
        return None;
    }
    let name_idx = comps.len() - r_len - 1;
    if comps[name_idx - 2] == "drives" && comps[name_idx - 1] == "peers" {
        Some(comps[name_idx].clone())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_file_round_trip_keeps_order_and_format() {
        let t = tempfile::tempdir().unwrap();
        let d = Drive::new(t.path());
        std::fs::write(
            d.drives_json(),
            r#"{"https://github.com/b/x.git":{"loras":"/h/drive/drives/peers/d2/loras"},"https://github.com/a/y.git":{"checkpoints":"/h/drive/drives/peers/d1/checkpoints"}}"#,
        )
        .unwrap();
        let mut f = DrivesFile::load(&d).unwrap();
        assert_eq!(
            f.folder("https://github.com/A/y", "checkpoints"),
            Some("/h/drive/drives/peers/d1/checkpoints")
        );
        f.set(
            "https://github.com/a/y.git",
            "vae",
            "/h/drive/drives/peers/d1/vae",
        );
        f.save(&d).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.drives_json()).unwrap()).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["https://github.com/b/x.git", "https://github.com/a/y.git"]
        );
        assert_eq!(
            v["https://github.com/a/y.git"]["vae"],
            "/h/drive/drives/peers/d1/vae"
        );
    }

    #[test]
    fn drive_names_from_folders() {
        assert_eq!(
            drive_name_of(
                Path::new("/h/drive/drives/peers/d17/models/sd"),
                "models/sd"
            ),
            Some("d17".into())
        );
        assert_eq!(drive_name_of(Path::new("/elsewhere/x"), "x"), None);
    }
}
