//! Where detection reads the machine from: environment variables, files and
//! free space, behind [`HostSource`] so tests describe a whole platform as
//! a fixture ([`FixtureHost`]) and the real machine is [`RealHost`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Size and free space of the file system holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskSpace {
    pub total: u64,
    /// Space an unprivileged user may still write (`f_bavail`).
    pub available: u64,
}

impl DiskSpace {
    pub const GIB: u64 = 1 << 30;

    /// Whole GiB available (rounded down).
    pub fn available_gib(&self) -> u64 {
        self.available / Self::GIB
    }
}

/// Read access to the machine: environment, files and disks.
pub trait HostSource: Send + Sync {
    /// One environment variable (`None` when unset or not valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// Every environment variable (for prefix scans like `VAST_TCP_PORT_`).
    fn vars(&self) -> Vec<(String, String)>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether the current user may create files in the folder.
    fn writable(&self, path: &Path) -> bool;
    fn read_to_string(&self, path: &Path) -> Option<String>;
    /// Space of the file system holding `path`, or of its nearest existing
    /// ancestor when `path` does not exist yet.
    fn disk_space(&self, path: &Path) -> Option<DiskSpace>;
    /// The OS user's home folder.
    fn user_home(&self) -> Option<PathBuf>;
}

/// The machine this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostSource for RealHost {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn writable(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `c` is a valid NUL-terminated string for the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    }
    fn read_to_string(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
    fn disk_space(&self, path: &Path) -> Option<DiskSpace> {
        let existing = path.ancestors().find(|p| p.exists())?;
        statvfs(existing)
    }
    fn user_home(&self) -> Option<PathBuf> {
        dirs::home_dir()
    }
}

/// `statvfs(2)` of an existing path.
// the field types are narrower than u64 on 32-bit targets
#[allow(clippy::unnecessary_cast)]
pub fn statvfs(path: &Path) -> Option<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and `st` points to writable memory of
    // the right type; the struct is only read when the call succeeded.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = if st.f_frsize > 0 {
        st.f_frsize as u64
    } else {
        st.f_bsize as u64
    };
    Some(DiskSpace {
        total: (st.f_blocks as u64).saturating_mul(frsize),
        available: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

/// A described machine for tests: environment, folders, files and mounts
/// with their sizes. Paths not listed do not exist.
#[derive(Debug, Clone, Default)]
pub struct FixtureHost {
    env: BTreeMap<String, String>,
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, String>,
    read_only: Vec<PathBuf>,
    mounts: Vec<(PathBuf, DiskSpace)>,
    home: Option<PathBuf>,
}

impl FixtureHost {
    /// An empty machine with `/` as a 100 GiB disk, 50 GiB available, and
    /// `/root` as the user's home.
    pub fn new() -> Self {
        FixtureHost {
            home: Some(PathBuf::from("/root")),
            ..Default::default()
        }
        .dir("/root")
        .mount("/", 100, 50)
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    /// A folder (and its parents).
    pub fn dir(mut self, p: &str) -> Self {
        for a in Path::new(p).ancestors() {
            if !self.dirs.iter().any(|d| d == a) {
                self.dirs.push(a.to_path_buf());
            }
        }
        self
    }
    /// A file (its folder is created too).
    pub fn file(mut self, p: &str, text: &str) -> Self {
        if let Some(parent) = Path::new(p).parent() {
            self = self.dir(&parent.display().to_string());
        }
        self.files.insert(p.into(), text.into());
        self
    }
    /// A folder the user cannot write.
    pub fn read_only(mut self, p: &str) -> Self {
        self = self.dir(p);
        self.read_only.push(p.into());
        self
    }
    /// A file system mounted at `p` (also a folder), sizes in GiB.
    pub fn mount(mut self, p: &str, total_gib: u64, available_gib: u64) -> Self {
        self = self.dir(p);
        self.mounts.retain(|(m, _)| m != Path::new(p));
        self.mounts.push((
            p.into(),
            DiskSpace {
                total: total_gib * DiskSpace::GIB,
                available: available_gib * DiskSpace::GIB,
            },
        ));
        self
    }
    pub fn user_home_at(mut self, p: &str) -> Self {
        self = self.dir(p);
        self.home = Some(p.into());
        self
    }
}

impl HostSource for FixtureHost {
    fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn vars(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn exists(&self, path: &Path) -> bool {
        self.is_dir(path) || self.files.contains_key(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| d == path)
    }
    fn writable(&self, path: &Path) -> bool {
        self.is_dir(path) && !self.read_only.iter().any(|r| path.starts_with(r))
    }
    fn read_to_string(&self, path: &Path) -> Option<String> {
        self.files.get(path).cloned()
    }
    fn disk_space(&self, path: &Path) -> Option<DiskSpace> {
        self.mounts
            .iter()
            .filter(|(m, _)| path.starts_with(m))
            .max_by_key(|(m, _)| m.components().count())
            .map(|(_, s)| *s)
    }
    fn user_home(&self) -> Option<PathBuf> {
        self.home.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_mounts_pick_the_longest_prefix() {
        let h = FixtureHost::new().mount("/workspace", 200, 150);
        assert_eq!(
            h.disk_space(Path::new("/workspace/pinokio/cache"))
                .unwrap()
                .available_gib(),
            150
        );
        assert_eq!(h.disk_space(Path::new("/tmp")).unwrap().available_gib(), 50);
        assert!(h.is_dir(Path::new("/workspace")));
        assert!(!h.exists(Path::new("/workspace/pinokio")));
    }

    #[test]
    fn real_statvfs_of_a_temp_folder() {
        let t = tempfile::tempdir().unwrap();
        let s = RealHost
            .disk_space(&t.path().join("not/yet/there"))
            .unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        assert!(RealHost.writable(t.path()));
        assert!(!RealHost.writable(&t.path().join("missing")));
    }
}
