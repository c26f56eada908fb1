//! Transcript files: append-only, timestamped, rotated past a size limit
//! (`<name>` becomes `<name>.1`, one old file kept). Log I/O errors never
//! reach the shell: they are counted and the file is reopened next time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default rotation limit: 10 MiB.
pub const DEFAULT_LOG_LIMIT: u64 = 10 * 1024 * 1024;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2024-05-01T12:34:56.789Z` for a time in milliseconds since the epoch.
pub fn iso_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One append-only log file with size-based rotation.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    limit: u64,
    errors: Arc<AtomicU64>,
}

impl LogFile {
    pub(crate) fn new(path: PathBuf, limit: u64, errors: Arc<AtomicU64>) -> Self {
        Self {
            path,
            file: None,
            size: 0,
            limit: limit.max(1),
            errors,
        }
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("log file not open")),
        }
    }

    /// Other processes (shell supervisors, a second engine) append to the
    /// same files and may rotate them: follow the file now at `path` and
    /// its real size.
    fn sync(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Some(f) = &self.file {
            match (f.metadata(), std::fs::metadata(&self.path)) {
                (Ok(ours), Ok(now)) if ours.dev() == now.dev() && ours.ino() == now.ino() => {
                    self.size = ours.len();
                }
                _ => self.file = None,
            }
        }
    }

    /// Move the file to `<name>.1`. Writers in other processes rotate the
    /// same file: the rename happens under an exclusive lock on the file,
    /// and only if nobody rotated it in the meantime.
    fn rotate(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some(f) = self.file.take() else {
            return Ok(());
        };
        let _lock = Flock::exclusive(&f);
        let still_ours = match (f.metadata(), std::fs::metadata(&self.path)) {
            (Ok(ours), Ok(now)) => ours.dev() == now.dev() && ours.ino() == now.ino(),
            _ => false,
        };
        if still_ours {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, PathBuf::from(old))?;
        }
        self.size = 0;
        Ok(())
    }

    /// Append `text`; rotates first when the file would pass the limit.
    /// Errors are counted, never returned.
    pub(crate) fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Err(_e) = self.try_write(text) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.file = None;
        }
    }

    fn try_write(&mut self, mut text: &str) -> std::io::Result<()> {
        self.sync();
        while !text.is_empty() {
            self.open()?;
            let room = self.limit.saturating_sub(self.size) as usize;
            let take = if text.len() <= room {
                text.len()
            } else {
                // the whole lines that still fit
                match text.get(..room).and_then(|t| t.rfind('\n')) {
                    Some(i) => i + 1,
                    None if self.size > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    // one line longer than the limit: write it alone
                    None => text.find('\n').map_or(text.len(), |i| i + 1),
                }
            };
            let (now, rest) = text.split_at(take);
            let f = self.open()?;
            f.write_all(now.as_bytes())?;
            self.size += now.len() as u64;
            text = rest;
        }
        Ok(())
    }
}

/// An exclusive `flock` held until dropped.
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(f: &'a File) -> Flock<'a> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor owned by `f`.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Flock(f);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor owned by the borrowed file.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// A shell's transcript: timestamped lines in its app log and, prefixed
/// with the script and shell ids, in the global log.
pub(crate) struct Transcript {
    pub app: Option<Arc<Mutex<LogFile>>>,
    pub global: Arc<Mutex<LogFile>>,
    pub group: String,
    pub shell_id: String,
}

impl Transcript {
    /// Append finished lines.
    pub(crate) fn lines(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let ts = iso_utc(now_ms());
        if let Some(app) = &self.app {
            let mut s = String::new();
            for l in lines {
                s.push_str(&ts);
                s.push(' ');
                s.push_str(l);
                s.push('\n');
            }
            write_shared(app, &s);
        }
        let mut s = String::new();
        for l in lines {
            s.push_str(&ts);
            s.push_str(" [");
            s.push_str(&self.group);
            s.push_str("] [");
            s.push_str(&self.shell_id);
            s.push_str("] ");
            s.push_str(l);
            s.push('\n');
        }
        write_shared(&self.global, &s);
    }

    /// Append a `###` note (start, exit).
    pub(crate) fn note(&self, note: &str) {
        let ts = iso_utc(now_ms());
        if let Some(app) = &self.app {
            write_shared(app, &format!("{ts} ### {note}\n"));
        }
        write_shared(
            &self.global,
            &format!("{ts} [{}] [{}] ### {note}\n", self.group, self.shell_id),
        );
    }
}

/// Shared handles to log files by path, so shells writing the same
/// transcript share one rotation state. Files close when no shell uses them.
#[derive(Debug)]
pub(crate) struct LogRegistry {
    files: Mutex<HashMap<PathBuf, Weak<Mutex<LogFile>>>>,
    limit: u64,
    pub(crate) errors: Arc<AtomicU64>,
}

impl LogRegistry {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            files: Mutex::new(HashMap::new()),
            limit,
            errors: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn get(&self, path: &Path) -> Arc<Mutex<LogFile>> {
        let mut files = match self.files.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(f) = files.get(path).and_then(Weak::upgrade) {
            return f;
        }
        files.retain(|_, w| w.strong_count() > 0);
        let f = Arc::new(Mutex::new(LogFile::new(
            path.to_path_buf(),
            self.limit,
            self.errors.clone(),
        )));
        files.insert(path.to_path_buf(), Arc::downgrade(&f));
        f
    }
}

/// Write to a shared log file, tolerating a poisoned lock.
pub(crate) fn write_shared(file: &Mutex<LogFile>, text: &str) {
    let mut g = match file.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.write(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn log_file_rotates_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/app.log");
        let errors = Arc::new(AtomicU64::new(0));
        let mut log = LogFile::new(path.clone(), 100, errors.clone());
        let line = format!("{}\n", "x".repeat(39)); // 40 bytes
        log.write(&line);
        log.write(&line);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);
        log.write(&line); // 120 > 100: rotate first
        let old = dir.path().join("deep/er/app.log.1");
        assert_eq!(std::fs::read_to_string(&old).unwrap(), line.repeat(2));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
        for _ in 0..10 {
            log.write(&line);
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert!(std::fs::metadata(&old).unwrap().len() <= 100);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("deep/er"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn two_writers_share_one_rotation() {
        // two processes' worth of writers on the same file: neither loses
        // lines, and the file rotated by one is followed by the other
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.log");
        let errors = Arc::new(AtomicU64::new(0));
        let mut a = LogFile::new(path.clone(), 1000, errors.clone());
        let mut b = LogFile::new(path.clone(), 1000, errors.clone());
        let mut expected = Vec::new();
        for i in 0..30 {
            let line = format!("{i:04} {}\n", "y".repeat(30));
            if i % 2 == 0 {
                a.write(&line);
            } else {
                b.write(&line);
            }
            expected.push(line);
        }
        let old = std::fs::read_to_string(dir.path().join("shared.log.1")).unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(
            now.len() <= 1000 && old.len() <= 1000,
            "{} {}",
            old.len(),
            now.len()
        );
        let all = format!("{old}{now}");
        // both files together hold the newest lines in order
        let tail: String = expected[30 - all.lines().count()..].concat();
        assert_eq!(all, tail);
        assert!(all.lines().count() >= 25);
        assert_eq!(errors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn log_errors_are_counted_not_raised() {
        let dir = tempfile::tempdir().unwrap();
        // parent is a file: cannot create the folder
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let errors = Arc::new(AtomicU64::new(0));
        let mut log = LogFile::new(blocker.join("a.log"), 100, errors.clone());
        log.write("hello\n");
        log.write("hello\n");
        assert_eq!(errors.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn registry_shares_files_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LogRegistry::new(DEFAULT_LOG_LIMIT);
        let a = reg.get(&dir.path().join("x.log"));
        let b = reg.get(&dir.path().join("x.log"));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = reg.get(&dir.path().join("y.log"));
        // the dead entry was pruned
        assert_eq!(reg.files.lock().unwrap().len(), 1);
        drop(c);
    }
}
