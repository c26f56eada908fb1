//! Venv linking: `fs.link` with `venv` (section 6.4), done natively from the
//! `*.dist-info` folders instead of upstream's Python helper app.
//!
//! Each installed distribution gets a namespace: `<name>/<version>` for
//! index installs, and for PEP 610 direct-URL installs
//! `<version>-f-<sha256[..4]>` (archive with a sha256), `<version>-<hash[..4]>`
//! (another hash), `<version>-<vcs>-<commit[..4]>`, `<version>-d-<sha256(url)[..4]>`
//! (local folder). Its top-level site-packages entries (from `RECORD`) move to
//! `D/drives/pip/<namespace>/lib/pythonX.Y/site-packages/<entry>`, replacing
//! the drive's copy, and are linked back; files it installed outside
//! site-packages (console scripts) are copied to `D/drives/pip/<namespace>/`.
//!
//! Entries several distributions share (namespace packages such as
//! `google/` or `nvidia/`) are not moved whole: their second-level entries
//! owned by one distribution are. `__pycache__` at the top is never moved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::journal::{Hook, Txn};
use super::registry::{record_links, LinkKind, LinkRecord};
use super::{canonical_lenient, now_ms, relative_path, Drive, DriveError};
use crate::home::normalize;

/// The result of [`Drive::link_venv`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VenvLinkReport {
    pub venv: PathBuf,
    /// `X.Y` from `pyvenv.cfg`.
    pub python: Option<String>,
    /// Set when nothing was done, saying why.
    pub notice: Option<String>,
    /// `(namespace, entry)` moved into the drive and linked.
    pub linked: Vec<(String, String)>,
    /// Entries already linked to the drive.
    pub already: usize,
    /// Files outside site-packages copied into the drive.
    pub copied: usize,
    /// `(distribution, reason)` left alone.
    pub skipped: Vec<(String, String)>,
    /// Journals of interrupted operations that were cleaned up first.
    pub recovered: Vec<PathBuf>,
}

/// One installed distribution.
#[derive(Debug, Clone)]
struct Dist {
    name: String,
    namespace: Result<String, String>,
    /// Site-packages relative paths from RECORD.
    files: Vec<PathBuf>,
    /// Venv-relative paths of files outside site-packages.
    outside: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct DirectUrl {
    url: String,
    #[serde(default)]
    vcs_info: Option<VcsInfo>,
    #[serde(default)]
    archive_info: Option<ArchiveInfo>,
    #[serde(default)]
    dir_info: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct VcsInfo {
    vcs: String,
    commit_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

fn first4(s: &str) -> String {
    s.chars().take(4).collect()
}

/// The namespace of a distribution (see the module docs).
fn namespace(name: &str, version: &str, direct: Option<&str>) -> Result<String, String> {
    let safe = |s: &str| {
        !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != ".." && !s.starts_with('.')
    };
    if !safe(name) || !safe(version) {
        return Err(format!("unusable name or version {name:?} {version:?}"));
    }
    let base = format!("{name}/{version}");
    let Some(text) = direct else {
        return Ok(base);
    };
    let d: DirectUrl =
        serde_json::from_str(text).map_err(|e| format!("unreadable direct_url.json: {e}"))?;
    if let Some(v) = d.vcs_info {
        if v.commit_id.is_empty() || !safe(&v.vcs) {
            return Err("a VCS install without a commit".into());
        }
        return Ok(format!("{base}-{}-{}", v.vcs, first4(&v.commit_id)));
    }
    if let Some(a) = d.archive_info {
        let legacy = a.hash.as_deref().and_then(|h| h.split_once('='));
        if let Some(h) = a.hashes.get("sha256") {
            return Ok(format!("{base}-f-{}", first4(h)));
        }
        if let Some(("sha256", h)) = legacy {
            return Ok(format!("{base}-f-{}", first4(h)));
        }
        if let Some(h) = a.hashes.values().next() {
            return Ok(format!("{base}-{}", first4(h)));
        }
        if let Some((_, h)) = legacy {
            return Ok(format!("{base}-{}", first4(h)));
        }
        return Err("an archive install without a hash".into());
    }
    if d.dir_info.is_some() {
        let h = hex(&Sha256::digest(d.url.as_bytes()));
        return Ok(format!("{base}-d-{}", first4(&h)));
    }
    Err("direct_url.json names no archive, VCS or folder".into())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Name` and `Version` from a METADATA file's headers.
fn metadata(text: &str) -> (Option<String>, Option<String>) {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        let value = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(v) = line.strip_prefix("Name:") {
            name = name.or_else(|| value(v));
        } else if let Some(v) = line.strip_prefix("Version:") {
            version = version.or_else(|| value(v));
        }
    }
    (name, version)
}

/// The first field of a RECORD (CSV) line.
fn record_path(line: &str) -> Option<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    Some(line.split(',').next().unwrap_or("").to_string())
}

/// `(major.minor)` from `pyvenv.cfg` (`version` or uv's `version_info`).
fn python_version(venv: &Path) -> Option<String> {
    let text = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if matches!(k.trim(), "version" | "version_info") {
            let mut parts = v.trim().split('.');
            let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
                continue;
            };
            if major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit())
            {
                return Some(format!("{major}.{minor}"));
            }
        }
    }
    None
}

fn read_dists(site: &Path, venv: &Path) -> Result<Vec<Dist>, DriveError> {
    let mut dists = Vec::new();
    let rd = std::fs::read_dir(site).map_err(|e| DriveError::io("listing", site, e))?;
    let mut infos: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension().map(|x| x == "dist-info").unwrap_or(false)
                && std::fs::symlink_metadata(p)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
        })
        .collect();
    infos.sort();
    for info in infos {
        let meta = std::fs::read_to_string(info.join("METADATA")).unwrap_or_default();
        let (name, version) = metadata(&meta);
        let stem = info
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.unwrap_or_else(|| stem.split('-').next().unwrap_or("").to_string());
        let namespace = match version {
            None => Err("no version".to_string()),
            Some(v) => {
                let direct = std::fs::read_to_string(info.join("direct_url.json")).ok();
                namespace(&name, &v, direct.as_deref())
            }
        };
        let record = std::fs::read_to_string(info.join("RECORD")).unwrap_or_default();
        let mut files = Vec::new();
        let mut outside = Vec::new();
        for p in record.lines().filter_map(record_path) {
            let rel = Path::new(&p);
            if rel.is_absolute() {
                continue;
            }
            match rel.components().next() {
                Some(Component::ParentDir) => {
                    let abs = normalize(&site.join(rel));
                    if let Ok(r) = abs.strip_prefix(venv) {
                        outside.push(r.to_path_buf());
                    }
                }
                Some(Component::Normal(_))
                    if rel.components().all(|c| matches!(c, Component::Normal(_))) =>
                {
                    files.push(rel.to_path_buf());
                }
                _ => {}
            }
        }
        dists.push(Dist {
            name,
            namespace,
            files,
            outside,
        });
    }
    Ok(dists)
}

/// The entries each distribution owns alone: `(dist index, site-relative entry)`.
fn owned_entries(dists: &[Dist]) -> Vec<(usize, PathBuf)> {
    let mut top: BTreeMap<PathBuf, BTreeSet<usize>> = BTreeMap::new();
    let mut second: BTreeMap<PathBuf, BTreeSet<usize>> = BTreeMap::new();
    for (i, d) in dists.iter().enumerate() {
        for f in &d.files {
            let mut comps = f.components();
            let Some(t) = comps.next() else { continue };
            let t = PathBuf::from(t.as_os_str());
            top.entry(t.clone()).or_default().insert(i);
            if let Some(s) = comps.next() {
                second.entry(t.join(s.as_os_str())).or_default().insert(i);
            }
        }
    }
    let mut out = Vec::new();
    for (t, owners) in &top {
        if t.as_os_str() == "__pycache__" {
            continue;
        }
        if owners.len() == 1 {
            out.push((*owners.iter().next().unwrap_or(&0), t.clone()));
            continue;
        }
        for (s, sown) in second.range(t.clone()..) {
            if !s.starts_with(t) {
                break;
            }
            if sown.len() == 1 && s.file_name().map(|n| n != "__pycache__").unwrap_or(false) {
                out.push((*sown.iter().next().unwrap_or(&0), s.clone()));
            }
        }
    }
    out
}

fn same_contents(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Drive {
    /// Move a venv's packages into versioned venv drives and link them back
    /// (see the module docs). A folder that is not a venv, or has no
    /// site-packages, is left alone with a `notice`. `hook` is called before
    /// every change; any failure undoes everything this call changed.
    pub fn link_venv(
        &self,
        venv: &Path,
        app: Option<&Path>,
        hook: Hook<'_>,
    ) -> Result<VenvLinkReport, DriveError> {
        let venv = normalize(venv);
        let mut report = VenvLinkReport {
            venv: venv.clone(),
            ..Default::default()
        };
        let Some(py) = python_version(&venv) else {
            report.notice = Some(format!(
                "{} is not a Python venv (no readable version in pyvenv.cfg); nothing to link",
                venv.display()
            ));
            return Ok(report);
        };
        let lib = format!("python{py}");
        report.python = Some(py);
        let site = venv.join("lib").join(&lib).join("site-packages");
        if !site.is_dir() {
            report.notice = Some(format!(
                "{} has no site-packages folder; nothing to link",
                site.display()
            ));
            return Ok(report);
        }
        let real_site =
            canonical_lenient(&site).map_err(|e| DriveError::io("resolving", &site, e))?;
        let real_pip = canonical_lenient(&self.pip_dir())
            .map_err(|e| DriveError::io("resolving", self.pip_dir(), e))?;
        if real_site.starts_with(&real_pip) || real_pip.starts_with(&real_site) {
            return Err(DriveError::Circular {
                link: site,
                target: self.pip_dir(),
            });
        }
        let dists = read_dists(&site, &venv)?;
        for d in &dists {
            if let Err(why) = &d.namespace {
                report.skipped.push((d.name.clone(), why.clone()));
            }
        }
        let owned = owned_entries(&dists);
        let lock = self.lock()?;
        report.recovered = lock.recovered.clone();
        let txn = Txn::begin(self, hook)?;
        let pip = self.pip_dir();
        let (linked, already, copied) = txn.run(|txn| {
            let mut linked = Vec::new();
            let mut already = Vec::new();
            let mut copied = 0;
            for (i, entry) in &owned {
                let Ok(ns) = &dists[*i].namespace else {
                    continue;
                };
                let s = site.join(entry);
                let d = pip
                    .join(ns)
                    .join("lib")
                    .join(&lib)
                    .join("site-packages")
                    .join(entry);
                let meta = match std::fs::symlink_metadata(&s) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                if meta.file_type().is_symlink() {
                    let here = std::fs::canonicalize(&s).ok();
                    if here.is_some() && here == std::fs::canonicalize(&d).ok() {
                        already.push((ns.clone(), entry.clone(), d));
                    }
                    continue;
                }
                if let Some(parent) = d.parent() {
                    txn.mkdir_all(parent)?;
                }
                if std::fs::symlink_metadata(&d).is_ok() {
                    txn.trash(&d)?;
                }
                txn.move_entry(&s, &d)?;
                let parent = s.parent().unwrap_or(Path::new("/"));
                let real_parent = std::fs::canonicalize(parent)
                    .map_err(|e| DriveError::io("resolving", parent, e))?;
                let real_d =
                    std::fs::canonicalize(&d).map_err(|e| DriveError::io("resolving", &d, e))?;
                txn.symlink(&s, &relative_path(&real_parent, &real_d))?;
                linked.push((ns.clone(), entry.clone(), d));
            }
            for dist in &dists {
                let Ok(ns) = &dist.namespace else { continue };
                for rel in &dist.outside {
                    let src = venv.join(rel);
                    let is_file = std::fs::symlink_metadata(&src)
                        .map(|m| m.is_file())
                        .unwrap_or(false);
                    if !is_file {
                        continue;
                    }
                    let dest = pip.join(ns).join(rel);
                    if same_contents(&src, &dest) {
                        continue;
                    }
                    if let Some(parent) = dest.parent() {
                        txn.mkdir_all(parent)?;
                    }
                    if std::fs::symlink_metadata(&dest).is_ok() {
                        txn.trash(&dest)?;
                    }
                    txn.copy(&src, &dest)?;
                    copied += 1;
                }
            }
            Ok((linked, already, copied))
        })?;
        let created = now_ms();
        let records = linked
            .iter()
            .chain(already.iter())
            .map(|(ns, entry, d)| LinkRecord {
                link: site.join(entry),
                target: d.clone(),
                kind: LinkKind::Venv,
                app: app.map(Path::to_path_buf),
                drive_path: None,
                namespace: Some(ns.clone()),
                created,
            })
            .collect();
        record_links(self, records)?;
        report.already = already.len();
        report.copied = copied;
        report.linked = linked
            .into_iter()
            .map(|(ns, e, _)| (ns, e.display().to_string()))
            .collect();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_pep_610() {
        assert_eq!(namespace("torch", "2.1.0", None).unwrap(), "torch/2.1.0");
        assert_eq!(
            namespace(
                "x",
                "1.0",
                Some(r#"{"url":"https://h/x.whl","archive_info":{"hashes":{"sha256":"abcdef"}}}"#)
            )
            .unwrap(),
            "x/1.0-f-abcd"
        );
        assert_eq!(
            namespace(
                "x",
                "1.0",
                Some(r#"{"url":"https://h/x.whl","archive_info":{"hash":"md5=9876aa"}}"#)
            )
            .unwrap(),
            "x/1.0-9876"
        );
        assert_eq!(
            namespace(
                "x",
                "1.0",
                Some(r#"{"url":"https://g/x","vcs_info":{"vcs":"git","commit_id":"0123abc"}}"#)
            )
            .unwrap(),
            "x/1.0-git-0123"
        );
        let d = namespace(
            "x",
            "1.0",
            Some(r#"{"url":"file:///src/x","dir_info":{"editable":true}}"#),
        )
        .unwrap();
        let h = hex(&Sha256::digest(b"file:///src/x"));
        assert_eq!(d, format!("x/1.0-d-{}", &h[..4]));
        assert!(namespace("x", "1.0", Some(r#"{"url":"u","archive_info":{}}"#)).is_err());
        assert!(namespace("../x", "1.0", None).is_err());
    }

    #[test]
    fn record_lines_and_metadata() {
        assert_eq!(record_path("a/b.py,sha256=x,12").unwrap(), "a/b.py");
        assert_eq!(record_path("\"a,\"\"b\"\".py\",,").unwrap(), "a,\"b\".py");
        assert_eq!(
            metadata("Metadata-Version: 2.1\nName: Foo\nVersion: 1.2\n\nName: body"),
            (Some("Foo".into()), Some("1.2".into()))
        );
    }

    #[test]
    fn shared_top_levels_split_one_level_down() {
        let d = |name: &str, files: &[&str]| Dist {
            name: name.into(),
            namespace: Ok(format!("{name}/1")),
            files: files.iter().map(PathBuf::from).collect(),
            outside: vec![],
        };
        let dists = vec![
            d(
                "a",
                &[
                    "google/a/x.py",
                    "google/__init__.py",
                    "a-1.dist-info/RECORD",
                    "__pycache__/s.pyc",
                ],
            ),
            d("b", &["google/b/y.py", "google/__init__.py", "b.py"]),
        ];
        let got: Vec<(usize, String)> = owned_entries(&dists)
            .into_iter()
            .map(|(i, p)| (i, p.display().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "a-1.dist-info".to_string()),
                (1, "b.py".to_string()),
                (0, "google/a".to_string()),
                (1, "google/b".to_string()),
            ]
        );
    }
}
