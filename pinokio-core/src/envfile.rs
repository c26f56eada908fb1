//! Pinokio `ENVIRONMENT` files: parsing, `./` resolution, in-place editing and defaults.
//!
//! Pinokio keeps two layers of `KEY=value` files (spec section 1.7): the system file
//! `HOME/ENVIRONMENT` and the app file `<app root>/ENVIRONMENT` (or
//! `<app root>/pinokio/ENVIRONMENT`). This module reproduces how pinokiod reads them
//! (dotenv 16 rules, then `Environment.get` post-processing), how `env.set` / `env.switch`
//! edit them (spec 4.17), and the built-in defaults written when a file is created.
//!
//! The parser is a hand-written emulation of dotenv 16's line regular expression, including
//! its backtracking corner cases (quoted values that fail to close fall back to the unquoted
//! form, comment lines swallowed after a value, `\s` spanning newlines between `=` and a
//! quote, and so on), so the engine sees the same variables Pinokio would.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors from reading or writing an `ENVIRONMENT` file.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// An I/O operation on `path` failed.
    #[error("ENVIRONMENT file {}: {source}", path.display())]
    Io {
        /// The file (or its temporary sibling) being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `set_keys` was asked to write a key that cannot be represented on one line
    /// (empty, or containing `=`, `\n` or `\r`).
    #[error("ENVIRONMENT file {}: invalid key {key:?}", path.display())]
    InvalidKey {
        /// The file being edited.
        path: PathBuf,
        /// The rejected key.
        key: String,
    },
}

impl EnvFileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            EnvFileError::Io { path, .. } | EnvFileError::InvalidKey { path, .. } => path,
        }
    }
}

fn io_err(path: &Path, source: io::Error) -> EnvFileError {
    EnvFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Character classes (JavaScript semantics)
// ---------------------------------------------------------------------------------------------

/// JavaScript `\s` (also the set `String.prototype.trim` removes).
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// JavaScript line terminators (what `^`/`$` in multiline mode and `.` care about).
fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// dotenv key characters: `[\w.-]` with ASCII-only `\w`.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// `String.prototype.trim`.
fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_space)
}

/// Horizontal whitespace as pinokiod's `update_env` defines it: `[^\S\r\n]`.
fn is_h_space(c: char) -> bool {
    is_js_space(c) && c != '\n' && c != '\r'
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parse dotenv text with dotenv 16 rules.
///
/// One `KEY=value` per line; `#` comment lines; an unquoted value ends at `#` (so ` #` starts
/// an inline comment) and is trimmed; single, double or backtick quotes; double-quoted values
/// may span lines and have `\n` / `\r` expanded; an `export ` prefix and `KEY: value` are
/// accepted; keys match `[\w.-]+`; the last occurrence of a key wins; `${VAR}` is not
/// expanded. Returns the pairs in order of first appearance, each with its last value.
pub fn parse(text: &str) -> Vec<(String, String)> {
    // dotenv first turns `\r\n` and lone `\r` into `\n`.
    let src: Vec<char> = normalise_newlines(text).chars().collect();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut pos = 0;
    while let Some(start) = next_line_start(&src, pos) {
        match match_assignment(&src, start) {
            Some((key, raw, end)) => {
                let value = finish_value(&raw);
                match index.get(&key) {
                    Some(&i) => out[i].1 = value,
                    None => {
                        index.insert(key.clone(), out.len());
                        out.push((key, value));
                    }
                }
                // A match always consumes at least the key, so this makes progress.
                pos = end.max(start + 1);
            }
            None => pos = start + 1,
        }
    }
    out
}

fn normalise_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// The first position `>= from` where a multiline `^` holds.
fn next_line_start(src: &[char], from: usize) -> Option<usize> {
    (from..=src.len()).find(|&i| i == 0 || is_line_terminator(src[i - 1]))
}

fn skip_js_space(src: &[char], mut i: usize) -> usize {
    while i < src.len() && is_js_space(src[i]) {
        i += 1;
    }
    i
}

/// Try the dotenv line pattern at line start `p`.
/// Returns the key, the raw captured value (before trimming/unquoting) and the match end.
fn match_assignment(src: &[char], p: usize) -> Option<(String, String, usize)> {
    let s = skip_js_space(src, p);
    // `(?:export\s+)?` is tried first; if the rest fails with it, without it.
    let export: Vec<char> = "export".chars().collect();
    if src.len() > s + export.len()
        && src[s..s + export.len()] == export[..]
        && is_js_space(src[s + export.len()])
    {
        let k = skip_js_space(src, s + export.len());
        if let Some(m) = match_key_and_value(src, k) {
            return Some(m);
        }
    }
    match_key_and_value(src, s)
}

fn match_key_and_value(src: &[char], k: usize) -> Option<(String, String, usize)> {
    let mut e = k;
    while e < src.len() && is_key_char(src[e]) {
        e += 1;
    }
    if e == k {
        return None;
    }
    let key: String = src[k..e].iter().collect();
    // Separator `\s*=\s*?` ...
    let f = skip_js_space(src, e);
    let value_start = if f < src.len() && src[f] == '=' {
        f + 1
    } else if e + 1 < src.len() && src[e] == ':' && is_js_space(src[e + 1]) {
        // ... or `:\s+?`
        e + 2
    } else {
        return None;
    };
    // The lazy whitespace after the separator never needs to grow: the value group (or its
    // absence) always lets the rest of the pattern match at the first position.
    let (raw, end) = match_value(src, value_start);
    Some((key, raw, end))
}

/// The optional value group followed by `\s*(?:#.*)?$`.
fn match_value(src: &[char], q: usize) -> (String, usize) {
    for quote in ['\'', '"', '`'] {
        let o = skip_js_space(src, q);
        if o < src.len() && src[o] == quote {
            if let Some((close, end)) = match_quoted(src, o, quote) {
                return (src[q..=close].iter().collect(), end);
            }
        }
    }
    if q < src.len() && !matches!(src[q], '#' | '\r' | '\n') {
        let mut r = q;
        while r < src.len() && !matches!(src[r], '#' | '\r' | '\n') {
            r += 1;
        }
        // The longest run always ends where the tail matches (`#`, a newline, or the end).
        let end = match_tail(src, r).unwrap_or(r);
        return (src[q..r].iter().collect(), end);
    }
    (String::new(), match_tail(src, q).unwrap_or(q))
}

/// `Q(?:\\Q|[^Q])*Q` followed by the tail, with the regex engine's backtracking order: the
/// closing quote candidates are tried from the furthest to the nearest.
fn match_quoted(src: &[char], open: usize, quote: char) -> Option<(usize, usize)> {
    let escaped = |j: usize| j >= open + 2 && src[j - 1] == '\\';
    let mut candidates = Vec::new();
    for (j, &c) in src.iter().enumerate().skip(open + 1) {
        if c == quote {
            candidates.push(j);
            if !escaped(j) {
                // An unescaped quote cannot be part of the body: it is the last candidate.
                break;
            }
        }
    }
    candidates
        .into_iter()
        .rev()
        .find_map(|c| match_tail(src, c + 1).map(|end| (c, end)))
}

/// `\s*(?:#.*)?$` (multiline) at `r`; returns where the match ends.
fn match_tail(src: &[char], r: usize) -> Option<usize> {
    let m = skip_js_space(src, r);
    if m == src.len() {
        return Some(m);
    }
    if src[m] == '#' {
        let mut end = m;
        while end < src.len() && !is_line_terminator(src[end]) {
            end += 1;
        }
        return Some(end);
    }
    // Backtrack the whitespace to the last line terminator, where `$` holds.
    (r..m).rev().find(|&s| is_line_terminator(src[s]))
}

/// dotenv's value post-processing: trim, strip matching outer quotes, expand `\n`/`\r` in
/// values that started with a double quote.
fn finish_value(raw: &str) -> String {
    let trimmed = js_trim(raw);
    let double_quoted = trimmed.starts_with('"');
    let unquoted = strip_quotes(trimmed);
    if double_quoted {
        expand_escapes(&unquoted)
    } else {
        unquoted
    }
}

/// `value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2')`.
fn strip_quotes(value: &str) -> String {
    let v: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    let mut i = 0;
    while i < v.len() {
        let at_line_start = i == 0 || is_line_terminator(v[i - 1]);
        if at_line_start && matches!(v[i], '\'' | '"' | '`') {
            let q = v[i];
            let close = (i + 1..v.len())
                .rev()
                .find(|&j| v[j] == q && (j + 1 == v.len() || is_line_terminator(v[j + 1])));
            if let Some(j) = close {
                out.extend(&v[copied..i]);
                out.extend(&v[i + 1..j]);
                copied = j + 1;
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out.extend(&v[copied..]);
    out
}

fn expand_escapes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('r') => {
                    chars.next();
                    out.push('\r');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Decode file bytes the way pinokiod's `parse_env` does: UTF-8 (lossy) first; if that parses
/// to nothing, UTF-16LE, then UTF-16BE. Returns the chosen text and its pairs.
fn decode(buf: &[u8]) -> (String, Vec<(String, String)>) {
    let utf8 = String::from_utf8_lossy(buf).into_owned();
    let pairs = parse(&utf8);
    if !pairs.is_empty() || buf.is_empty() {
        return (utf8, pairs);
    }
    for big_endian in [false, true] {
        let text = decode_utf16(buf, big_endian);
        let pairs = parse(&text);
        if !pairs.is_empty() {
            return (text, pairs);
        }
    }
    (utf8, pairs)
}

fn decode_utf16(buf: &[u8], big_endian: bool) -> String {
    let units: Vec<u16> = buf
        .chunks_exact(2)
        .map(|b| {
            if big_endian {
                u16::from_be_bytes([b[0], b[1]])
            } else {
                u16::from_le_bytes([b[0], b[1]])
            }
        })
        .collect();
    let mut text = String::from_utf16_lossy(&units);
    if text.starts_with('\u{FEFF}') {
        text.remove(0);
    }
    text
}

/// Read and parse an `ENVIRONMENT` file: UTF-8; if that yields no pairs, UTF-16LE and then
/// UTF-16BE (a byte-order mark is dropped). A missing file reads as empty.
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    match fs::read(path) {
        Ok(buf) => Ok(decode(&buf).1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Post-processing and layering
// ---------------------------------------------------------------------------------------------

/// `Environment.get` post-processing: a value starting with `./` becomes an absolute path
/// resolved against `base` (like Node's `path.resolve`, so `.` and `..` are normalised and a
/// trailing slash dropped); keys whose value is empty or whitespace-only are removed.
///
/// `base` is `HOME` for the system file and the app root for an app file (even when the file
/// lives in `<app root>/pinokio`).
pub fn resolve(pairs: Vec<(String, String)>, base: &Path) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter(|(_, v)| !js_trim(v).is_empty())
        .map(|(k, v)| {
            if v.starts_with("./") {
                let abs = resolve_path(base, &v);
                (k, abs.to_string_lossy().into_owned())
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Node's `path.resolve(base, rel)` on Unix-like paths.
fn resolve_path(base: &Path, rel: &str) -> PathBuf {
    let base = if base.is_absolute() {
        base.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(base))
            .unwrap_or_else(|_| base.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Read a file and apply [`resolve`]: what `Environment.get` returns for that file.
pub fn load(path: &Path, base: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    Ok(resolve(read_file(path)?, base))
}

/// Where an app's `ENVIRONMENT` lives: `<app root>/pinokio/ENVIRONMENT` when
/// `<app root>/pinokio` exists, else `<app root>/ENVIRONMENT` (`Environment.get_root`).
/// Note that `env.set` always writes `<app root>/ENVIRONMENT` regardless (spec 4.17).
pub fn app_file_path(app_root: &Path) -> PathBuf {
    let nested = app_root.join("pinokio");
    if nested.exists() {
        nested.join("ENVIRONMENT")
    } else {
        app_root.join("ENVIRONMENT")
    }
}

/// Merge layers like `Object.assign({}, a, b, ...)`: later layers win, keys keep the position
/// of their first appearance.
pub fn merge_layers(layers: &[&[(String, String)]]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for layer in layers {
        for (k, v) in layer.iter() {
            match index.get(k) {
                Some(&i) => out[i].1 = v.clone(),
                None => {
                    index.insert(k.clone(), out.len());
                    out.push((k.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// Convert pairs to an insertion-ordered JSON object of strings (for templates' `env`).
pub fn to_json_map(pairs: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// Keys whose (path) values are not `mkdir -p`-ed when a shell starts (`init_folders`).
pub const NO_MKDIR_KEYS: [&str; 3] = ["PIP_CONFIG_FILE", "CONDARC", "HF_TOKEN_PATH"];

/// Folders Pinokio creates when a shell starts for these (already [`resolve`]d) values:
/// every absolute value except [`NO_MKDIR_KEYS`].
pub fn folders_to_create(resolved: &[(String, String)]) -> Vec<PathBuf> {
    resolved
        .iter()
        .filter(|(k, v)| !NO_MKDIR_KEYS.contains(&k.as_str()) && Path::new(v).is_absolute())
        .map(|(_, v)| PathBuf::from(v))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Editing (env.set / env.switch)
// ---------------------------------------------------------------------------------------------

/// `env.set`: update the file in place. Every line assigning `KEY` (`KEY=...`, optionally
/// surrounded by horizontal whitespace; not `export KEY=` or `KEY: v`) gets the new value,
/// keeping the text before the value and trailing whitespace; otherwise `KEY=value` is
/// appended (with a blank line before the first appended key, as pinokiod does). Values are
/// written with newlines as the two characters `\n` (`\r` likewise) and trimmed. All other
/// lines are preserved; line endings become `\n`. The write is atomic (temporary file in the
/// same folder, then rename); a missing file is created.
pub fn set_keys(path: &Path, updates: &[(String, String)]) -> Result<(), EnvFileError> {
    for (key, _) in updates {
        if key.is_empty() || key.contains(['=', '\n', '\r']) {
            return Err(EnvFileError::InvalidKey {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
    }
    let (original, existed) = match fs::read(path) {
        Ok(buf) => (buf, true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
        Err(e) => return Err(io_err(path, e)),
    };
    let text = normalise_newlines(&decode(&original).0);
    let updated = apply_updates(text, updates);
    if existed && updated.as_bytes() == original.as_slice() {
        return Ok(());
    }
    atomic_write(path, updated.as_bytes())
}

/// The text transformation behind [`set_keys`] (pinokiod's `update_env`), on `\n` text.
fn apply_updates(mut text: String, updates: &[(String, String)]) -> String {
    let mut appended = false;
    for (key, raw_value) in updates {
        let value = raw_value.replace('\n', "\\n").replace('\r', "\\r");
        let value = js_trim(&value);
        let mut found = false;
        let lines: Vec<String> = text
            .split('\n')
            .map(|line| match replace_assignment(line, key, value) {
                Some(new_line) => {
                    found = true;
                    new_line
                }
                None => line.to_string(),
            })
            .collect();
        if found {
            text = lines.join("\n");
            continue;
        }
        let assignment = format!("{key}={value}");
        text = if text.is_empty() {
            appended = true;
            format!("{assignment}\n")
        } else if !text.ends_with('\n') {
            let sep = if appended { "\n" } else { "\n\n" };
            appended = true;
            format!("{text}{sep}{assignment}")
        } else if !appended {
            appended = true;
            format!("{text}\n{assignment}\n")
        } else {
            format!("{text}{assignment}\n")
        };
    }
    text
}

/// If `line` is `h* KEY h* = ...`, return it with the value replaced.
fn replace_assignment(line: &str, key: &str, value: &str) -> Option<String> {
    let rest = line.trim_start_matches(is_h_space);
    let after_key = rest.strip_prefix(key)?;
    let after_ws = after_key.trim_start_matches(is_h_space);
    let after_eq = after_ws.strip_prefix('=')?;
    let old_value = after_eq.trim_start_matches(is_h_space);
    let prefix = &line[..line.len() - old_value.len()];
    if old_value.is_empty() {
        return Some(format!("{prefix}{value}"));
    }
    let trailing = &old_value[old_value.trim_end_matches(is_h_space).len()..];
    Some(format!("{prefix}{value}{trailing}"))
}

/// `env.switch` against the values currently in the file at `path` (raw, unresolved; empty
/// values count as unset). See [`switch_updates`] for the rule.
pub fn switch_keys(path: &Path, switches: &[(String, Vec<String>)]) -> Result<(), EnvFileError> {
    let current = read_file(path)?;
    switch_keys_with(path, switches, &current)
}

/// `env.switch` where the current values come from the caller. pinokiod compares against the
/// merged environment (`Environment.get2`: process env + resolved system file + resolved app
/// file), so the engine should pass that; the result is written to `path` with [`set_keys`].
pub fn switch_keys_with(
    path: &Path,
    switches: &[(String, Vec<String>)],
    current: &[(String, String)],
) -> Result<(), EnvFileError> {
    let updates = switch_updates(current, switches);
    if updates.is_empty() {
        return Ok(());
    }
    set_keys(path, &updates)
}

/// The updates `env.switch` makes: for each `(KEY, options)`, an unset (or empty) key gets the
/// first option; a value equal to one of the options advances to the next (wrapping);
/// anything else is left alone. Empty option lists are ignored.
pub fn switch_updates(
    current: &[(String, String)],
    switches: &[(String, Vec<String>)],
) -> Vec<(String, String)> {
    let lookup = |key: &str| {
        current
            .iter()
            .rev()
            .find(|(k, v)| k == key && !js_trim(v).is_empty())
            .map(|(_, v)| v.as_str())
    };
    switches
        .iter()
        .filter(|(_, options)| !options.is_empty())
        .filter_map(|(key, options)| {
            let next = match lookup(key) {
                None => &options[0],
                Some(v) => {
                    let i = options.iter().position(|o| o == v)?;
                    &options[(i + 1) % options.len()]
                }
            };
            Some((key.clone(), next.clone()))
        })
        .collect()
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `data` to `path` through a temporary file in the same folder and a rename. Symlinks
/// are followed so the link itself survives; existing permissions are kept.
fn atomic_write(path: &Path, data: &[u8]) -> Result<(), EnvFileError> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ENVIRONMENT".to_string());
    let permissions = fs::metadata(&target).ok().map(|m| m.permissions());

    let (tmp_path, mut file) = loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = dir.join(format!(".{name}.{}.{nanos}.{n}.tmp", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => break (candidate, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&candidate, e)),
        }
    };
    let result = (|| {
        file.write_all(data)?;
        if let Some(p) = permissions {
            file.set_permissions(p)?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_err(&target, e));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Built-in defaults
// ---------------------------------------------------------------------------------------------

struct DefaultVar {
    key: &'static str,
    raw: &'static str,
    system: bool,
    app: bool,
    /// Explanatory lines written above the assignment (our wording, not pinokiod's).
    comment: &'static [&'static str],
}

/// Which files a default belongs to: `(system, app)`.
type Scope = (bool, bool);

const fn var(key: &'static str, raw: &'static str, scope: Scope) -> DefaultVar {
    doc(key, raw, scope, &[])
}

const fn doc(
    key: &'static str,
    raw: &'static str,
    scope: Scope,
    comment: &'static [&'static str],
) -> DefaultVar {
    DefaultVar {
        key,
        raw,
        system: scope.0,
        app: scope.1,
        comment,
    }
}

const S: Scope = (true, false);
const A: Scope = (false, true);
const SA: Scope = (true, true);

/// pinokiod's `ENVS` table, in its order.
const DEFAULTS: &[DefaultVar] = &[
    var("HOMEBREW_CACHE", "./cache/HOMEBREW_CACHE", S),
    var("XDG_CACHE_HOME", "./cache/XDG_CACHE_HOME", S),
    var("PIP_CACHE_DIR", "./cache/PIP_CACHE_DIR", S),
    var("UV_CACHE_DIR", "./cache/UV_CACHE_DIR", S),
    var("PIP_TMPDIR", "./cache/PIP_TMPDIR", S),
    var("TMPDIR", "./cache/TMPDIR", S),
    var("TEMP", "./cache/TEMP", S),
    var("TMP", "./cache/TMP", S),
    var("XDG_DATA_HOME", "./cache/XDG_DATA_HOME", S),
    var("XDG_CONFIG_HOME", "./cache/XDG_CONFIG_HOME", S),
    var("XDG_STATE_HOME", "./cache/XDG_STATE_HOME", S),
    var("PIP_CONFIG_FILE", "./pipconfig", S),
    var("CONDARC", "./condarc", S),
    var("PS1", "<<PINOKIO_SHELL>> ", S),
    var("GRADIO_ANALYTICS_ENABLED", "False", S),
    doc(
        "GRADIO_ALLOWED_PATHS",
        "./",
        S,
        &["# GRADIO_ALLOWED_PATHS: folders Gradio apps may serve files from."],
    ),
    doc(
        "PINOKIO_SCRIPT_AUTOLAUNCH",
        "",
        A,
        &["# PINOKIO_SCRIPT_AUTOLAUNCH: script (relative path) to start when Pinokio starts."],
    ),
    doc(
        "PINOKIO_SCRIPT_REQUIRES",
        "",
        A,
        &["# PINOKIO_SCRIPT_REQUIRES: comma-separated app ids to launch before autolaunch."],
    ),
    doc(
        "PINOKIO_SHARE_VAR",
        "url",
        S,
        &["# PINOKIO_SHARE_VAR: the local variable whose value is shared when set."],
    ),
    doc(
        "PINOKIO_SHARE_CLOUDFLARE",
        "false",
        SA,
        &["# PINOKIO_SHARE_CLOUDFLARE: true to share the app through a Cloudflare tunnel."],
    ),
    doc(
        "PINOKIO_SHARE_PASSCODE",
        "",
        A,
        &["# PINOKIO_SHARE_PASSCODE: passcode protecting a shared tunnel."],
    ),
    doc(
        "PINOKIO_SCRIPT_DEFAULT",
        "true",
        SA,
        &["# PINOKIO_SCRIPT_DEFAULT: false stops menu items marked default from auto-running."],
    ),
    doc(
        "PINOKIO_DRIVE",
        "./drive",
        S,
        &["# PINOKIO_DRIVE: root of the shared virtual drive (absolute paths allowed)."],
    ),
    doc(
        "GRADIO_TEMP_DIR",
        "./cache/GRADIO_TEMP_DIR",
        SA,
        &["# GRADIO_TEMP_DIR: Gradio uploads. Delete the line to use the shared cache."],
    ),
    doc(
        "HF_HOME",
        "./cache/HF_HOME",
        SA,
        &["# HF_HOME: Hugging Face cache. Delete the line to use the shared cache."],
    ),
    doc(
        "TORCH_HOME",
        "./cache/TORCH_HOME",
        SA,
        &["# TORCH_HOME: Torch hub cache. Delete the line to use the shared cache."],
    ),
    doc(
        "PINOKIO_SHARE_LOCAL",
        "false",
        SA,
        &["# PINOKIO_SHARE_LOCAL: true to share the app on the local network."],
    ),
    doc(
        "PINOKIO_SHARE_LOCAL_PORT",
        "",
        SA,
        &["# PINOKIO_SHARE_LOCAL_PORT: fixed port for local sharing (random if empty)."],
    ),
];

/// Proxy keys pinokiod writes into the system file at every start-up (from its settings store,
/// usually empty) with [`set_keys`]. They are not part of [`system_defaults`], so apps inherit
/// them when non-empty.
pub const PROXY_KEYS: [&str; 3] = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"];

/// Keys pinokiod rewrites to `./cache/<KEY>` in the system file at every start-up.
pub const STARTUP_CACHE_KEYS: [&str; 6] = [
    "TMP",
    "TEMP",
    "TMPDIR",
    "PIP_TMPDIR",
    "UV_CACHE_DIR",
    "PIP_CACHE_DIR",
];

/// The updates to apply to the system file at every start-up (`./cache/<KEY>` for
/// [`STARTUP_CACHE_KEYS`]).
pub fn startup_cache_updates() -> Vec<(String, String)> {
    STARTUP_CACHE_KEYS
        .iter()
        .map(|k| (k.to_string(), format!("./cache/{k}")))
        .collect()
}

/// System-file defaults (`HOME/ENVIRONMENT`) as `(key, raw value)` in pinokiod's order,
/// including keys whose default is empty (written as `KEY=`). Proxy keys are not included.
pub fn system_defaults() -> Vec<(&'static str, String)> {
    DEFAULTS
        .iter()
        .filter(|d| d.system)
        .map(|d| (d.key, d.raw.to_string()))
        .collect()
}

/// App-file defaults as `(key, raw value)` in pinokiod's order.
pub fn app_defaults() -> Vec<(&'static str, String)> {
    DEFAULTS
        .iter()
        .filter(|d| d.app)
        .map(|d| (d.key, d.raw.to_string()))
        .collect()
}

/// Keys that only belong in the system file; they are never copied into app files.
pub fn is_system_only(key: &str) -> bool {
    DEFAULTS.iter().any(|d| d.key == key && !d.app)
}

fn render_entry(d: &DefaultVar, value: &str) -> String {
    if d.comment.is_empty() {
        format!("{}={value}", d.key)
    } else {
        format!("\n#\n{}\n#\n{}={value}", d.comment.join("\n"), d.key)
    }
}

/// Text of a new system `ENVIRONMENT` file (written when `HOME/ENVIRONMENT` is missing).
/// No trailing newline, like pinokiod; follow it with `set_keys` for [`PROXY_KEYS`].
pub fn system_file_text() -> String {
    DEFAULTS
        .iter()
        .filter(|d| d.system)
        .map(|d| render_entry(d, d.raw))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text of a new app `ENVIRONMENT` file (`Environment.init`): the `_ENVIRONMENT` text if
/// given, three newlines, then the app defaults block. A default key with a non-empty value in
/// the system file takes the system file's raw value; every other non-empty system key that is
/// not system-only is appended as `KEY=value`. `system_pairs` is the raw (unresolved) parse
/// of the system file.
pub fn new_app_file_text(
    underscore_env: Option<&str>,
    system_pairs: &[(String, String)],
) -> String {
    let system: Vec<(String, String)> = merge_layers(&[system_pairs])
        .into_iter()
        .filter(|(_, v)| !js_trim(v).is_empty())
        .collect();
    let mut used: HashSet<&str> = HashSet::new();
    let mut lines: Vec<String> = Vec::new();
    for d in DEFAULTS.iter().filter(|d| d.app) {
        let value = match system.iter().find(|(k, _)| k == d.key) {
            Some((_, v)) => {
                used.insert(d.key);
                v.as_str()
            }
            None => d.raw,
        };
        lines.push(render_entry(d, value));
    }
    for (k, v) in &system {
        if !used.contains(k.as_str()) && !is_system_only(k) {
            lines.push(format!("{k}={v}"));
        }
    }
    let block = lines.join("\n");
    match underscore_env {
        Some(prefix) => format!("{prefix}\n\n\n{block}"),
        None => block,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    // --- parse ---------------------------------------------------------------------------

    #[test]
    fn basic_lines_and_comments() {
        let text = "# comment\nA=1\n\n  B = two  \n#C=3\n   # D=4\nE=\n";
        assert_eq!(parse(text), p(&[("A", "1"), ("B", "two"), ("E", "")]));
    }

    #[test]
    fn inline_comments_end_unquoted_values() {
        assert_eq!(parse("A=hello # world"), p(&[("A", "hello")]));
        // dotenv 16 stops an unquoted value at any `#`, even without a space before it.
        assert_eq!(parse("A=abc#def"), p(&[("A", "abc")]));
        assert_eq!(parse("A=# only comment\nB=2"), p(&[("A", ""), ("B", "2")]));
        // Inside quotes `#` is literal.
        assert_eq!(parse("A=\"x # y\" # c"), p(&[("A", "x # y")]));
    }

    #[test]
    fn quoting_styles() {
        let text = "S='single \\n kept'\nD=\"double\"\nB=`back tick`\nU=  spaced out  \n";
        assert_eq!(
            parse(text),
            p(&[
                ("S", "single \\n kept"),
                ("D", "double"),
                ("B", "back tick"),
                ("U", "spaced out"),
            ])
        );
        // Whitespace inside quotes survives.
        assert_eq!(parse("A=' x '"), p(&[("A", " x ")]));
        // Escaped quotes stay escaped (dotenv does not unescape them).
        assert_eq!(parse(r#"A="say \"hi\"""#), p(&[("A", r#"say \"hi\""#)]));
        // Mismatched quotes are kept verbatim.
        assert_eq!(parse("A='abc\"\nB=2"), p(&[("A", "'abc\""), ("B", "2")]));
    }

    #[test]
    fn double_quotes_expand_escapes_and_span_lines() {
        assert_eq!(parse(r#"A="l1\nl2\rl3""#), p(&[("A", "l1\nl2\rl3")]));
        let text = "KEY=\"first\nsecond\n# not a comment\"\nNEXT=1";
        assert_eq!(
            parse(text),
            p(&[("KEY", "first\nsecond\n# not a comment"), ("NEXT", "1")])
        );
        // Single and backtick quotes span lines too but do not expand.
        assert_eq!(parse("A='x\ny\\n'"), p(&[("A", "x\ny\\n")]));
        assert_eq!(parse("A=`x\ny`"), p(&[("A", "x\ny")]));
    }

    #[test]
    fn unterminated_quote_falls_back_to_unquoted() {
        // The opening quote never closes on a line that ends the match, so the value is
        // read unquoted and the next line is still parsed.
        assert_eq!(
            parse("A=\"abc\nB=\"def\""),
            p(&[("A", "\"abc"), ("B", "def")])
        );
        // Text after a closing quote makes the quoted form fail too.
        assert_eq!(parse("A='a' b'"), p(&[("A", "a' b")]));
    }

    #[test]
    fn export_prefix_and_colon_form() {
        assert_eq!(parse("export A=1"), p(&[("A", "1")]));
        assert_eq!(parse("export   B=\"x\""), p(&[("B", "x")]));
        // `export` alone is an ordinary key.
        assert_eq!(parse("export=3"), p(&[("export", "3")]));
        assert_eq!(parse("export =4"), p(&[("export", "4")]));
        assert_eq!(parse("C: some value"), p(&[("C", "some value")]));
        // The colon form needs whitespace after the colon.
        assert_eq!(parse("D:nope\nE=1"), p(&[("E", "1")]));
    }

    #[test]
    fn key_characters() {
        assert_eq!(
            parse("a.b-c_D9=1\nbad key=2\nü=3\n"),
            p(&[("a.b-c_D9", "1")])
        );
    }

    #[test]
    fn last_duplicate_wins_in_first_position() {
        assert_eq!(parse("A=1\nB=2\nA=3\n"), p(&[("A", "3"), ("B", "2")]));
    }

    #[test]
    fn no_variable_expansion_and_crlf() {
        assert_eq!(
            parse("A=${HOME}/x\r\nB=2\r\n"),
            p(&[("A", "${HOME}/x"), ("B", "2")])
        );
        assert_eq!(parse("A=\"x\\ny\"\rB=2"), p(&[("A", "x\ny"), ("B", "2")]));
    }

    #[test]
    fn whitespace_quirks() {
        // `\s` after `=` crosses a newline into a quoted value on the next line.
        assert_eq!(parse("A=\n\"q\"\nB=1"), p(&[("A", "q"), ("B", "1")]));
        // But not into an unquoted one.
        assert_eq!(parse("A=\nfoo\nB=1"), p(&[("A", ""), ("B", "1")]));
        // A leading byte-order mark is whitespace.
        assert_eq!(parse("\u{FEFF}A=1"), p(&[("A", "1")]));
        // Nothing parsable.
        assert!(parse("just text\n\n   \n").is_empty());
        assert!(parse("").is_empty());
    }

    // --- read_file -----------------------------------------------------------------------

    fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
        let mut units: Vec<u16> = Vec::new();
        if bom {
            units.push(0xFEFF);
        }
        units.extend(text.encode_utf16());
        units
            .iter()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn read_file_encodings() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# c\nA=1\nB=\"two\"\n";
        let want = p(&[("A", "1"), ("B", "two")]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("utf8", text.as_bytes().to_vec()),
            (
                "utf8bom",
                [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            ),
            ("le", utf16(text, false, false)),
            ("lebom", utf16(text, false, true)),
            ("be", utf16(text, true, false)),
            ("bebom", utf16(text, true, true)),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            assert_eq!(read_file(&path).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn read_file_missing_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_file(&dir.path().join("nope")).unwrap().is_empty());
        // A directory cannot be read as a file.
        let err = read_file(dir.path()).unwrap_err();
        assert_eq!(err.path(), dir.path());
        assert!(matches!(err, EnvFileError::Io { .. }));
    }

    // --- resolve / layering --------------------------------------------------------------

    #[test]
    fn resolve_dot_paths_and_drop_empty() {
        let base = Path::new("/home/u/pinokio/api/app");
        let pairs = p(&[
            ("HF_HOME", "./cache/HF_HOME"),
            ("ROOT", "./"),
            ("UP", "./a/../b//c/"),
            ("EMPTY", ""),
            ("BLANK", "  \t "),
            ("REL", "../x"),
            ("DOTFILE", ".hidden"),
            ("ABS", "/opt/x"),
        ]);
        assert_eq!(
            resolve(pairs, base),
            p(&[
                ("HF_HOME", "/home/u/pinokio/api/app/cache/HF_HOME"),
                ("ROOT", "/home/u/pinokio/api/app"),
                ("UP", "/home/u/pinokio/api/app/b/c"),
                ("REL", "../x"),
                ("DOTFILE", ".hidden"),
                ("ABS", "/opt/x"),
            ])
        );
        assert_eq!(
            resolve(p(&[("X", "./../../..")]), Path::new("/a")),
            p(&[("X", "/")])
        );
    }

    #[test]
    fn load_resolves_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        fs::write(&path, "A=./x\nB=\nC=c\n").unwrap();
        let got = load(&path, Path::new("/base")).unwrap();
        assert_eq!(got, p(&[("A", "/base/x"), ("C", "c")]));
    }

    #[test]
    fn merge_and_json() {
        let a = p(&[("A", "1"), ("B", "1")]);
        let b = p(&[("C", "2"), ("A", "2")]);
        let merged = merge_layers(&[&a, &b]);
        assert_eq!(merged, p(&[("A", "2"), ("B", "1"), ("C", "2")]));
        let json = to_json_map(&merged);
        assert_eq!(
            serde_json::Value::Object(json).to_string(),
            r#"{"A":"2","B":"1","C":"2"}"#
        );
    }

    #[test]
    fn app_file_location() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(app_file_path(dir.path()), dir.path().join("ENVIRONMENT"));
        fs::create_dir(dir.path().join("pinokio")).unwrap();
        assert_eq!(
            app_file_path(dir.path()),
            dir.path().join("pinokio").join("ENVIRONMENT")
        );
    }

    #[test]
    fn folders_skip_file_keys() {
        let resolved = p(&[
            ("HF_HOME", "/h/cache/HF_HOME"),
            ("PIP_CONFIG_FILE", "/h/pipconfig"),
            ("CONDARC", "/h/condarc"),
            ("FLAG", "true"),
        ]);
        assert_eq!(
            folders_to_create(&resolved),
            vec![PathBuf::from("/h/cache/HF_HOME")]
        );
    }

    // --- set_keys ------------------------------------------------------------------------

    fn tmp_entries(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn set_keys_replaces_every_assignment_and_keeps_other_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        let before = "# header\nA=1\n# middle\n  A = old value  \nMY_A=keep\nA_B=keep\nB=2\nA=3";
        fs::write(&path, before).unwrap();
        set_keys(&path, &p(&[("A", "new")])).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            "# header\nA=new\n# middle\n  A = new  \nMY_A=keep\nA_B=keep\nB=2\nA=new"
        );
        assert_eq!(get(&read_file(&path).unwrap(), "A"), Some("new"));
        assert!(tmp_entries(dir.path()).is_empty());
    }

    #[test]
    fn set_keys_appends_like_pinokiod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        // No trailing newline: blank line, then appended keys without a final newline.
        fs::write(&path, "A=1").unwrap();
        set_keys(&path, &p(&[("B", "2"), ("C", "3")])).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=1\n\nB=2\nC=3");

        // Trailing newline: blank line, each appended key ends with a newline.
        fs::write(&path, "A=1\n").unwrap();
        set_keys(&path, &p(&[("B", "2"), ("C", "3")])).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=1\n\nB=2\nC=3\n");

        // Empty file.
        fs::write(&path, "").unwrap();
        set_keys(&path, &p(&[("B", "2"), ("C", "3")])).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "B=2\nC=3\n");
    }

    #[test]
    fn set_keys_creates_missing_file_and_escapes_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        set_keys(&path, &p(&[("A", "  line1\nline2\r\n  "), ("P", "a$1b")])).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "A=line1\\nline2\\r\\n\nP=a$1b\n"
        );
        // Unquoted, so dotenv reads the escapes back literally.
        assert_eq!(
            get(&read_file(&path).unwrap(), "A"),
            Some("line1\\nline2\\r\\n")
        );
        assert!(tmp_entries(dir.path()).is_empty());
    }

    #[test]
    fn set_keys_ignores_export_and_colon_lines_and_normalises_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        fs::write(&path, "export A=1\r\nA: 2\r\n").unwrap();
        set_keys(&path, &p(&[("A", "9")])).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "export A=1\nA: 2\n\nA=9\n"
        );
        assert_eq!(get(&read_file(&path).unwrap(), "A"), Some("9"));
    }

    #[test]
    fn set_keys_rewrites_utf16_files_as_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        fs::write(&path, utf16("A=1\n", false, true)).unwrap();
        set_keys(&path, &p(&[("A", "2")])).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=2\n");
    }

    #[test]
    fn set_keys_rejects_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        for key in ["", "A=B", "A\nB"] {
            let err = set_keys(&path, &p(&[(key, "1")])).unwrap_err();
            assert!(matches!(err, EnvFileError::InvalidKey { .. }), "{key:?}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails after the temp file was written.
        let path = dir.path().join("ENVIRONMENT");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = atomic_write(&path, b"A=1\n").unwrap_err();
        assert_eq!(err.path(), path.as_path());
        assert!(tmp_entries(dir.path()).is_empty());
        assert!(set_keys(&path, &p(&[("A", "1")])).is_err());
        assert!(tmp_entries(dir.path()).is_empty());
        assert_eq!(fs::read_to_string(path.join("inside")).unwrap(), "x");
    }

    #[cfg(unix)]
    #[test]
    fn set_keys_follows_symlinks_and_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, "A=1\n").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("ENVIRONMENT");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_keys(&link, &p(&[("A", "2")])).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "A=2\n");
        let mode = fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // --- switch --------------------------------------------------------------------------

    #[test]
    fn switch_updates_rules() {
        let current = p(&[("A", "x"), ("B", "z"), ("C", "q"), ("E", "  ")]);
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let switches = vec![
            ("A".to_string(), opts(&["x", "y", "z"])),
            ("B".to_string(), opts(&["x", "y", "z"])),
            ("C".to_string(), opts(&["x", "y"])),
            ("D".to_string(), opts(&["first", "second"])),
            ("E".to_string(), opts(&["e1", "e2"])),
            ("F".to_string(), opts(&[])),
        ];
        assert_eq!(
            switch_updates(&current, &switches),
            p(&[("A", "y"), ("B", "x"), ("D", "first"), ("E", "e1")])
        );
    }

    #[test]
    fn switch_keys_cycles_through_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ENVIRONMENT");
        fs::write(&path, "# flags\nMODE=other\n").unwrap();
        let sw = vec![
            (
                "FLAG".to_string(),
                vec!["true".to_string(), "false".to_string()],
            ),
            ("MODE".to_string(), vec!["a".to_string()]),
        ];
        let mut seen = Vec::new();
        for _ in 0..3 {
            switch_keys(&path, &sw).unwrap();
            let pairs = read_file(&path).unwrap();
            seen.push(get(&pairs, "FLAG").unwrap().to_string());
            assert_eq!(get(&pairs, "MODE"), Some("other"));
        }
        assert_eq!(seen, ["true", "false", "true"]);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# flags\nMODE=other\n\nFLAG=true\n"
        );
        assert!(tmp_entries(dir.path()).is_empty());
    }

    // --- defaults ------------------------------------------------------------------------

    #[test]
    fn defaults_tables() {
        let sys = system_defaults();
        assert_eq!(sys.len(), 25);
        assert_eq!(
            sys[0],
            ("HOMEBREW_CACHE", "./cache/HOMEBREW_CACHE".to_string())
        );
        for key in [
            "PIP_CACHE_DIR",
            "TMP",
            "HF_HOME",
            "GRADIO_TEMP_DIR",
            "XDG_STATE_HOME",
        ] {
            let v = sys.iter().find(|(k, _)| *k == key).unwrap();
            assert_eq!(v.1, format!("./cache/{key}"));
        }
        assert!(sys.contains(&("GRADIO_ALLOWED_PATHS", "./".to_string())));
        assert!(sys.contains(&("PINOKIO_SHARE_LOCAL_PORT", String::new())));
        assert!(sys.iter().all(|(k, _)| !PROXY_KEYS.contains(k)));
        assert!(!sys.iter().any(|(k, _)| *k == "PINOKIO_SHARE_PASSCODE"));

        let app: Vec<&str> = app_defaults().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            app,
            [
                "PINOKIO_SCRIPT_AUTOLAUNCH",
                "PINOKIO_SCRIPT_REQUIRES",
                "PINOKIO_SHARE_CLOUDFLARE",
                "PINOKIO_SHARE_PASSCODE",
                "PINOKIO_SCRIPT_DEFAULT",
                "GRADIO_TEMP_DIR",
                "HF_HOME",
                "TORCH_HOME",
                "PINOKIO_SHARE_LOCAL",
                "PINOKIO_SHARE_LOCAL_PORT",
            ]
        );
        assert!(is_system_only("PS1"));
        assert!(!is_system_only("HF_HOME"));
        assert!(!is_system_only("HTTP_PROXY"));
    }

    #[test]
    fn system_file_round_trips() {
        let text = system_file_text();
        assert!(!text.ends_with('\n'));
        let parsed = parse(&text);
        let want: Vec<(String, String)> = system_defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), js_trim(&v).to_string()))
            .collect();
        // PS1's trailing space is lost on read, as with pinokiod.
        assert_eq!(get(&parsed, "PS1"), Some("<<PINOKIO_SHELL>>"));
        assert_eq!(parsed, want);
        let resolved = resolve(parsed, Path::new("/pk"));
        assert_eq!(get(&resolved, "GRADIO_ALLOWED_PATHS"), Some("/pk"));
        assert_eq!(get(&resolved, "PINOKIO_SHARE_LOCAL_PORT"), None);
    }

    #[test]
    fn startup_updates() {
        let u = startup_cache_updates();
        assert_eq!(u.len(), 6);
        assert!(u.contains(&("TMPDIR".to_string(), "./cache/TMPDIR".to_string())));
    }

    #[test]
    fn new_app_file_uses_system_values_and_inherits_custom_keys() {
        let system = parse(&format!(
            "{}\nHF_HOME=/big/disk/hf\nHTTP_PROXY=http://proxy:3128\nNO_PROXY=\nCUSTOM=1\nPINOKIO_SHARE_CLOUDFLARE=true\n",
            system_file_text()
        ));
        let text = new_app_file_text(Some("HF_HOME=/from/underscore\nMY_APP=2"), &system);
        assert!(text.starts_with("HF_HOME=/from/underscore\nMY_APP=2\n\n\n"));
        let app = parse(&text);
        // The generated block comes later, so it wins over `_ENVIRONMENT`.
        assert_eq!(get(&app, "HF_HOME"), Some("/big/disk/hf"));
        assert_eq!(get(&app, "MY_APP"), Some("2"));
        assert_eq!(get(&app, "PINOKIO_SHARE_CLOUDFLARE"), Some("true"));
        assert_eq!(get(&app, "TORCH_HOME"), Some("./cache/TORCH_HOME"));
        assert_eq!(get(&app, "PINOKIO_SCRIPT_AUTOLAUNCH"), Some(""));
        assert_eq!(get(&app, "HTTP_PROXY"), Some("http://proxy:3128"));
        assert_eq!(get(&app, "CUSTOM"), Some("1"));
        // Empty system values and system-only keys are not inherited.
        assert_eq!(get(&app, "NO_PROXY"), None);
        for key in ["PS1", "TMPDIR", "PINOKIO_DRIVE", "GRADIO_ALLOWED_PATHS"] {
            assert_eq!(get(&app, key), None, "{key}");
        }
        // Without `_ENVIRONMENT` the block starts the file.
        let plain = new_app_file_text(None, &[]);
        assert!(!plain.starts_with("\n\n\n"));
        let plain_pairs = parse(&plain);
        let want: Vec<(String, String)> = app_defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(plain_pairs, want);
    }
}
