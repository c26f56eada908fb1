//! Reading an app's shell logs: the transcripts the process manager writes
//! to `<app>/logs/shell/<script path relative to the app>.log` (one
//! `<ISO time> <line>` per output line, `<ISO time> ### <note>` for shell
//! starts and exits; rotated to `<name>.log.1` at 10 MiB, see
//! [`crate::process`]).
//!
//! [`tail`] gives the last lines of every script's log merged by time,
//! reading files backwards so a big log is not read whole. [`Follower`]
//! polls the files for lines appended later, following rotations (the file
//! renamed to `.1` and replaced) and truncations.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How much is read per step when reading a file backwards.
const CHUNK: u64 = 64 * 1024;

/// One line of an app log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The script, relative to the app folder (`install.json`, `pinokio/start.js`).
    pub script: String,
    /// The line's timestamp; a line without one takes the time of the line
    /// before it (so every file's lines stay in order when merged).
    pub ts: String,
    /// The line as written (timestamp included), without its line break.
    pub text: String,
}

/// A script's log file (the current one; `<path>.1` is the rotated one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLog {
    pub script: String,
    pub path: PathBuf,
}

/// `<app>/logs/shell`.
pub fn log_dir(app: &Path) -> PathBuf {
    app.join("logs").join("shell")
}

/// `<path>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".1");
    PathBuf::from(s)
}

/// Every script with a log (current or rotated), sorted by script.
pub fn script_logs(app: &Path) -> Vec<ScriptLog> {
    let root = log_dir(app);
    let mut found = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name
                .strip_suffix(".log")
                .or_else(|| name.strip_suffix(".log.1"));
            let Some(base) = base else { continue };
            if base.is_empty() {
                continue;
            }
            let current = dir.join(format!("{base}.log"));
            let rel = current.strip_prefix(&root).unwrap_or(&current);
            let script = rel.to_string_lossy();
            let script = script.strip_suffix(".log").unwrap_or(&script).to_string();
            found.insert(script, current);
        }
    }
    found
        .into_iter()
        .map(|(script, path)| ScriptLog { script, path })
        .collect()
}

/// Does `script` (a path relative to the app) answer to what the user typed:
/// the whole relative path, its file name, or its file name without the
/// extension (`install` for `install.json`)?
pub fn matches_script(script: &str, wanted: &str) -> bool {
    let wanted = wanted.trim_start_matches("./");
    if script == wanted {
        return true;
    }
    let file = script.rsplit('/').next().unwrap_or(script);
    if file == wanted {
        return true;
    }
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    !wanted.contains('/') && stem == wanted
}

/// The logs of the app, only those matching `filter` when given.
pub fn selected_logs(app: &Path, filter: Option<&str>) -> Vec<ScriptLog> {
    script_logs(app)
        .into_iter()
        .filter(|l| filter.is_none_or(|f| matches_script(&l.script, f)))
        .collect()
}

/// The `2024-05-01T12:34:56.789Z` timestamp a log line starts with.
pub fn timestamp(line: &str) -> Option<&str> {
    let ts = line.get(..24)?;
    let ok = ts.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    let followed = matches!(line.as_bytes().get(24), None | Some(b' '));
    (ok && followed).then_some(ts)
}

/// The end of a file, read backwards.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// The last complete lines (at most the number asked for).
    pub lines: Vec<String>,
    /// Text after the last line break (a line being written).
    pub partial: String,
    /// Offset just after the last complete line.
    pub end: u64,
    /// Device and inode of the file that was read.
    pub id: (u64, u64),
    /// Bytes read to find the lines.
    pub bytes_read: u64,
}

/// The last `n` complete lines of a file, reading it backwards in chunks.
pub fn tail_file(path: &Path, n: usize) -> std::io::Result<Tail> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let len = meta.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    let mut newlines = 0usize;
    // n lines need n line breaks plus the one before the first of them
    while start > 0 && newlines <= n {
        let step = CHUNK.min(start);
        start -= step;
        f.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0u8; step as usize];
        f.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|b| **b == b'\n').count();
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let partial = String::from_utf8_lossy(&buf[complete..]).into_owned();
    let mut lines: Vec<String> = buf[..complete]
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    lines.pop(); // the empty piece after the last line break
    let skip = lines.len().saturating_sub(n);
    lines.drain(..skip);
    Ok(Tail {
        lines,
        partial,
        end: start + complete as u64,
        id: (meta.dev(), meta.ino()),
        bytes_read: len - start,
    })
}

/// Give lines their script and (monotone) timestamps.
fn stamp(script: &str, last_ts: &mut String, lines: Vec<String>) -> Vec<LogLine> {
    lines
        .into_iter()
        .map(|text| {
            if let Some(ts) = timestamp(&text) {
                if ts > last_ts.as_str() {
                    *last_ts = ts.to_string();
                }
            }
            LogLine {
                script: script.to_string(),
                ts: last_ts.clone(),
                text,
            }
        })
        .collect()
}

/// Merge lines from several scripts by time; each script's lines keep their
/// order (their timestamps never go back, see [`LogLine::ts`]).
pub fn merge(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by(|a, b| a.ts.cmp(&b.ts));
    lines
}

/// The last `n` lines of one script's log: from the current file, then
/// from the rotated one when the current file has fewer. Also returns where
/// the current file's complete lines end, for following.
fn tail_script(log: &ScriptLog, n: usize) -> std::io::Result<(Vec<LogLine>, Option<Tail>)> {
    let current = match tail_file(&log.path, n) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let have = current.as_ref().map_or(0, |t| t.lines.len());
    let mut raw = Vec::new();
    if have < n {
        match tail_file(&rotated(&log.path), n - have) {
            Ok(mut old) => {
                // a rotated file never ends in the middle of a line on purpose
                if !old.partial.is_empty() {
                    old.lines.push(std::mem::take(&mut old.partial));
                    let skip = old.lines.len().saturating_sub(n - have);
                    old.lines.drain(..skip);
                }
                raw.extend(old.lines);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = &current {
        raw.extend(t.lines.iter().cloned());
    }
    let mut last = String::new();
    Ok((stamp(&log.script, &mut last, raw), current))
}

/// The last `n` lines of the app's logs (only scripts matching `filter`
/// when given), merged by time, oldest first. A line still being written
/// (no line break yet) is included.
pub fn tail(app: &Path, filter: Option<&str>, n: usize) -> std::io::Result<Vec<LogLine>> {
    let mut all = Vec::new();
    for log in selected_logs(app, filter) {
        let (mut lines, current) = tail_script(&log, n)?;
        if let Some(t) = current.filter(|t| !t.partial.is_empty()) {
            let last = lines.last().map(|l| l.ts.clone()).unwrap_or_default();
            lines.extend(stamp(&log.script, &mut last.clone(), vec![t.partial]));
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        all.extend(lines);
    }
    let mut all = merge(all);
    let skip = all.len().saturating_sub(n);
    all.drain(..skip);
    Ok(all)
}

/// Where following one log file stands.
#[derive(Debug)]
struct Cursor {
    script: String,
    path: PathBuf,
    /// The file being read (device, inode); `None` before it exists.
    id: Option<(u64, u64)>,
    /// Bytes of it consumed.
    pos: u64,
    /// Bytes after the last line break.
    partial: Vec<u8>,
    last_ts: String,
}

impl Cursor {
    /// Read from `pos` to the end of `path`, emitting complete lines.
    fn read_from(&mut self, path: &Path, out: &mut Vec<LogLine>) -> std::io::Result<()> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(self.pos))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        self.pos += data.len() as u64;
        self.partial.extend_from_slice(&data);
        if let Some(i) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(i + 1);
            let done = std::mem::replace(&mut self.partial, rest);
            let mut lines: Vec<String> = done
                .split(|b| *b == b'\n')
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            lines.pop();
            out.extend(stamp(&self.script, &mut self.last_ts, lines));
        }
        Ok(())
    }

    /// The rest of the old file after a rotation (or a half line left in it).
    fn finish_old(&mut self, out: &mut Vec<LogLine>) {
        let Some(id) = self.id else { return };
        let old = rotated(&self.path);
        if let Ok(m) = std::fs::metadata(&old) {
            if (m.dev(), m.ino()) == id && m.len() >= self.pos {
                let _ = self.read_from(&old, out);
            }
        }
        if !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            out.extend(stamp(&self.script, &mut self.last_ts, vec![text]));
        }
    }

    fn poll(&mut self, out: &mut Vec<LogLine>) {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(_) => {
                // renamed away, the new file not created yet: drain the old one
                let Some(id) = self.id else { return };
                let old = rotated(&self.path);
                if let Ok(m) = std::fs::metadata(&old) {
                    if (m.dev(), m.ino()) == id && m.len() > self.pos {
                        let _ = self.read_from(&old, out);
                    }
                }
                return;
            }
        };
        let id = (meta.dev(), meta.ino());
        if self.id != Some(id) {
            // replaced (rotated): finish the old file, start the new one
            self.finish_old(out);
            self.id = Some(id);
            self.pos = 0;
        } else if meta.len() < self.pos {
            // truncated in place
            self.partial.clear();
            self.pos = 0;
        }
        if meta.len() > self.pos {
            let _ = self.read_from(&self.path.clone(), out);
        }
    }
}

/// Follows an app's logs: lines appended after it started, scripts whose
/// logs appear later included.
#[derive(Debug)]
pub struct Follower {
    app: PathBuf,
    filter: Option<String>,
    cursors: BTreeMap<String, Cursor>,
}

impl Follower {
    /// Print nothing of what is there now; report what comes next.
    pub fn new(app: &Path, filter: Option<&str>) -> std::io::Result<Follower> {
        Ok(follow(app, filter, 0)?.1)
    }

    /// New complete lines since the last poll, merged by time.
    pub fn poll(&mut self) -> Vec<LogLine> {
        for log in selected_logs(&self.app, self.filter.as_deref()) {
            self.cursors.entry(log.script.clone()).or_insert(Cursor {
                script: log.script,
                path: log.path,
                id: None,
                pos: 0,
                partial: Vec::new(),
                last_ts: String::new(),
            });
        }
        let mut out = Vec::new();
        for c in self.cursors.values_mut() {
            c.poll(&mut out);
        }
        merge(out)
    }

    /// The scripts being followed.
    pub fn scripts(&self) -> Vec<String> {
        self.cursors.keys().cloned().collect()
    }
}

/// The last `n` complete lines (as [`tail`]) and a [`Follower`] that reports
/// every line written after them.
pub fn follow(
    app: &Path,
    filter: Option<&str>,
    n: usize,
) -> std::io::Result<(Vec<LogLine>, Follower)> {
    let mut all = Vec::new();
    let mut cursors = BTreeMap::new();
    for log in selected_logs(app, filter) {
        let (lines, current) = tail_script(&log, n)?;
        let last_ts = lines.last().map(|l| l.ts.clone()).unwrap_or_default();
        all.extend(lines);
        let (id, pos) = match current {
            Some(t) => (Some(t.id), t.end),
            None => (None, 0),
        };
        cursors.insert(
            log.script.clone(),
            Cursor {
                script: log.script,
                path: log.path,
                id,
                pos,
                partial: Vec::new(),
                last_ts,
            },
        );
    }
    let mut all = merge(all);
    let skip = all.len().saturating_sub(n);
    all.drain(..skip);
    Ok((
        all,
        Follower {
            app: app.to_path_buf(),
            filter: filter.map(str::to_string),
            cursors,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ts(sec: u32) -> String {
        format!("2024-05-01T12:00:{sec:02}.000Z")
    }

    fn append(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("[{}] {}", l.script, l.text))
            .collect()
    }

    #[test]
    fn timestamps_are_recognised() {
        assert_eq!(
            timestamp("2024-05-01T12:34:56.789Z hello"),
            Some("2024-05-01T12:34:56.789Z")
        );
        assert_eq!(
            timestamp("2024-05-01T12:34:56.789Z"),
            Some("2024-05-01T12:34:56.789Z")
        );
        assert_eq!(timestamp("2024-05-01T12:34:56.789Zx"), None);
        assert_eq!(timestamp("hello world, not a time at all"), None);
        assert_eq!(timestamp("short"), None);
    }

    #[test]
    fn tail_of_a_big_file_reads_only_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        // a 1 GiB sparse file, then three lines
        let f = File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        drop(f);
        append(&path, "a\nb\nc\nhalf");
        let t = tail_file(&path, 2).unwrap();
        assert_eq!(t.lines, vec!["b", "c"]);
        assert_eq!(t.partial, "half");
        assert_eq!(t.end, (1 << 30) + 6);
        assert!(t.bytes_read <= CHUNK, "read {} bytes", t.bytes_read);

        // lines spread over several chunks
        let path = dir.path().join("many.log");
        let body: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &body).unwrap();
        let t = tail_file(&path, 3).unwrap();
        assert_eq!(t.lines, vec!["line 19997", "line 19998", "line 19999"]);
        assert!(t.bytes_read <= CHUNK);
        let t = tail_file(&path, 15_000).unwrap();
        assert_eq!(t.lines.len(), 15_000);
        assert_eq!(t.lines[0], "line 5000");
        assert_eq!(t.end, body.len() as u64);
        let t = tail_file(&path, 50_000).unwrap();
        assert_eq!(t.lines.len(), 20_000);
        assert_eq!(t.lines[0], "line 0");
        assert!(tail_file(&path, 0).unwrap().lines.is_empty());
    }

    #[test]
    fn tail_reaches_into_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let log = log_dir(app).join("start.js.log");
        append(&rotated(&log), &format!("{} old1\n{} old2\n", ts(1), ts(2)));
        append(&log, &format!("{} new1\n", ts(3)));
        let got = tail(app, None, 2).unwrap();
        assert_eq!(
            texts(&got),
            vec![
                format!("[start.js] {} old2", ts(2)),
                format!("[start.js] {} new1", ts(3))
            ]
        );
        // only the rotated file left
        std::fs::remove_file(&log).unwrap();
        assert_eq!(tail(app, None, 5).unwrap().len(), 2);
        assert_eq!(script_logs(app).len(), 1);
    }

    #[test]
    fn scripts_merge_by_time_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let d = log_dir(app);
        append(
            &d.join("install.json.log"),
            &format!("{} i1\n{} i2\ncontinued\n{} i3\n", ts(1), ts(4), ts(6)),
        );
        append(
            &d.join("pinokio/start.js.log"),
            &format!("{} s1\n{} s2\n", ts(2), ts(5)),
        );
        let got = tail(app, None, 100).unwrap();
        let order: Vec<&str> = got
            .iter()
            .map(|l| l.text.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(order, vec!["i1", "s1", "i2", "continued", "s2", "i3"]);
        assert_eq!(got[1].script, "pinokio/start.js");
        assert_eq!(got[3].ts, ts(4));
        // the last N over all scripts
        let got = tail(app, None, 2).unwrap();
        assert_eq!(got[0].text, format!("{} s2", ts(5)));
        // one script, by path, file name or stem
        for f in ["pinokio/start.js", "start.js", "start"] {
            let got = tail(app, Some(f), 100).unwrap();
            assert_eq!(got.len(), 2, "{f}");
            assert!(got.iter().all(|l| l.script == "pinokio/start.js"));
        }
        assert!(tail(app, Some("nothing"), 100).unwrap().is_empty());
        assert!(!matches_script("pinokio/start.js", "other/start"));
    }

    #[test]
    fn follower_sees_appends_rotation_truncation_and_new_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let d = log_dir(app);
        let log = d.join("start.js.log");
        append(&log, &format!("{} before\n{} half", ts(1), ts(2)));
        let (first, mut f) = follow(app, None, 10).unwrap();
        assert_eq!(texts(&first), vec![format!("[start.js] {} before", ts(1))]);
        assert!(f.poll().is_empty());
        // the half line is completed
        append(&log, " done\n");
        assert_eq!(
            texts(&f.poll()),
            vec![format!("[start.js] {} half done", ts(2))]
        );
        // rotation: a last line goes into the old file, then it is renamed
        // and a new file is started
        append(&log, &format!("{} last old\n", ts(3)));
        std::fs::rename(&log, rotated(&log)).unwrap();
        assert_eq!(
            texts(&f.poll()),
            vec![format!("[start.js] {} last old", ts(3))]
        );
        append(&log, &format!("{} first new\n", ts(4)));
        assert_eq!(
            texts(&f.poll()),
            vec![format!("[start.js] {} first new", ts(4))]
        );
        // rotation between two polls
        append(&log, &format!("{} x\n", ts(5)));
        std::fs::rename(&log, rotated(&log)).unwrap();
        append(&log, &format!("{} y\n", ts(6)));
        assert_eq!(
            texts(&f.poll()),
            vec![
                format!("[start.js] {} x", ts(5)),
                format!("[start.js] {} y", ts(6))
            ]
        );
        // truncation in place
        std::fs::write(&log, "").unwrap();
        assert!(f.poll().is_empty());
        append(&log, &format!("{} z\n", ts(7)));
        assert_eq!(texts(&f.poll()), vec![format!("[start.js] {} z", ts(7))]);
        // a script that starts logging later is read from its beginning
        append(
            &d.join("install.json.log"),
            &format!("{} new script\n", ts(8)),
        );
        append(&log, &format!("{} more\n", ts(9)));
        assert_eq!(
            texts(&f.poll()),
            vec![
                format!("[install.json] {} new script", ts(8)),
                format!("[start.js] {} more", ts(9))
            ]
        );
        assert_eq!(f.scripts(), vec!["install.json", "start.js"]);
        assert!(f.poll().is_empty());
    }

    #[test]
    fn follower_with_a_filter_ignores_other_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let d = log_dir(app);
        let mut f = Follower::new(app, Some("install")).unwrap();
        append(&d.join("start.js.log"), &format!("{} s\n", ts(1)));
        append(&d.join("install.json.log"), &format!("{} i\n", ts(2)));
        assert_eq!(
            texts(&f.poll()),
            vec![format!("[install.json] {} i", ts(2))]
        );
    }
}
