//! The `fs` namespace (section 4.2 of the semantics note): `fs.write`,
//! `fs.append`, `fs.read`, `fs.rm` (alias `fs.remove`), `fs.copy`,
//! `fs.make`, `fs.cat` and a headless `fs.open`.
//!
//! Our policy beyond upstream:
//! - `fs.write` is atomic (temp file in the same folder, then rename).
//! - `fs.rm` (and `fs.write` replacing a folder) refuses targets outside the
//!   Pinokio home, the home itself and `HOME/api`; symlinks are removed,
//!   never followed.
//! - A `text`/`buffer` of the wrong type is checked before anything is
//!   deleted, so a failing `fs.write` leaves the old file in place.
//! - `fs.open` never spawns a desktop opener: it emits an `OpenUrl` event.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::events::EventKind;
use crate::home::normalize;
use crate::template::{js_string, truthy};

pub fn register(r: &mut Registry) {
    r.register("fs.write", |cx: &mut MethodCx<'_>, p: Value| {
        fs_write(cx, p, false)
    });
    r.register("fs.append", |cx: &mut MethodCx<'_>, p: Value| {
        fs_write(cx, p, true)
    });
    r.register("fs.read", fs_read);
    r.register("fs.rm", fs_rm);
    r.register("fs.remove", fs_rm);
    r.register("fs.copy", fs_copy);
    r.register("fs.make", fs_make);
    r.register("fs.cat", fs_cat);
    r.register("fs.open", fs_open);
}

// ------------------------------------------------------------------ params

#[derive(Debug, Deserialize)]
struct WriteParams {
    path: String,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    json2: Option<Value>,
    #[serde(default)]
    buffer: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct PathParams {
    path: String,
}

#[derive(Debug, Deserialize)]
struct ReadParams {
    path: String,
    #[serde(default)]
    encoding: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct CopyParams {
    src: String,
    dest: String,
    #[serde(default)]
    options: Option<CopyOptions>,
}

/// The subset of Node's `fs.promises.cp` options that a JSON script can
/// pass (`filter` is a function and cannot).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CopyOptions {
    recursive: bool,
    force: bool,
    error_on_exist: bool,
    dereference: bool,
    verbatim_symlinks: bool,
    preserve_timestamps: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            recursive: false,
            force: true,
            error_on_exist: false,
            dereference: false,
            verbatim_symlinks: false,
            preserve_timestamps: false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct OpenParams {
    path: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    command: Option<String>,
}

// ------------------------------------------------------------ write/append

/// What `fs.write`/`fs.append` write: the first truthy of `json`, `json2`,
/// `buffer`, `text`; `None` when all are falsy or missing.
fn pick_data(p: &WriteParams) -> Result<Option<Vec<u8>>, MethodError> {
    let pick = |v: &Option<Value>| v.as_ref().filter(|v| truthy(v)).cloned();
    if let Some(v) = pick(&p.json) {
        let s = serde_json::to_string(&v).map_err(|e| MethodError::Failed(e.to_string()))?;
        return Ok(Some(s.into_bytes()));
    }
    if let Some(v) = pick(&p.json2) {
        let s = serde_json::to_string_pretty(&v).map_err(|e| MethodError::Failed(e.to_string()))?;
        return Ok(Some(s.into_bytes()));
    }
    if let Some(v) = pick(&p.buffer) {
        return buffer_bytes(&v).map(Some);
    }
    if let Some(v) = pick(&p.text) {
        return match v {
            Value::String(s) => Ok(Some(s.into_bytes())),
            other => Err(MethodError::Failed(invalid_data_type(&other))),
        };
    }
    Ok(None)
}

/// Node's `ERR_INVALID_ARG_TYPE` message for a `data` argument that is not a
/// string or a Buffer.
fn invalid_data_type(v: &Value) -> String {
    let received = match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("type boolean ({b})"),
        Value::Number(_) => format!("type number ({})", js_string(v)),
        Value::String(s) => format!("type string ('{s}')"),
        Value::Array(_) => "an instance of Array".to_string(),
        Value::Object(_) => "an instance of Object".to_string(),
    };
    format!(
        "TypeError [ERR_INVALID_ARG_TYPE]: The \"data\" argument must be of type string or an \
         instance of Buffer, TypedArray, or DataView. Received {received}"
    )
}

/// Bytes of a `buffer` value: a string (UTF-8), Node's Buffer JSON shape
/// `{"type":"Buffer","data":[...]}`, or an array of bytes.
fn buffer_bytes(v: &Value) -> Result<Vec<u8>, MethodError> {
    let arr = match v {
        Value::String(s) => return Ok(s.as_bytes().to_vec()),
        Value::Array(a) => a,
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Buffer") => {
            match o.get("data") {
                Some(Value::Array(a)) => a,
                _ => return Err(MethodError::Failed(invalid_data_type(v))),
            }
        }
        other => return Err(MethodError::Failed(invalid_data_type(other))),
    };
    arr.iter()
        .map(|b| {
            b.as_u64()
                .filter(|n| *n <= 255)
                .map(|n| n as u8)
                .ok_or_else(|| MethodError::Failed(format!("buffer: {b} is not a byte (0-255)")))
        })
        .collect()
}

fn fs_write(
    cx: &mut MethodCx<'_>,
    params: Value,
    append: bool,
) -> Result<Option<Value>, MethodError> {
    let p: WriteParams = parse_params(cx.method, params)?;
    let path = cx.resolve(&p.path)?;
    // Check the data before touching anything on disk.
    let data = pick_data(&p).map_err(|e| match e {
        MethodError::Failed(m) => MethodError::Failed(format!("{m} (writing {})", path.display())),
        other => other,
    })?;
    if append {
        let Some(bytes) = data else {
            cx.output(format!(
                "{}: nothing was written to {} (no truthy json, json2, buffer or text)\n",
                cx.method,
                path.display()
            ));
            return Ok(None);
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MethodError::io(dir, e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| MethodError::io(&path, e))?;
        f.write_all(&bytes).map_err(|e| MethodError::io(&path, e))?;
        return Ok(None);
    }
    // Upstream deletes whatever is at `path` first (even a folder tree).
    // A file or a symlink is replaced by the rename; a real folder has to go.
    let existing = std::fs::symlink_metadata(&path).ok();
    let is_dir = existing.as_ref().map(|m| m.is_dir()).unwrap_or(false);
    match data {
        Some(bytes) => {
            if is_dir {
                check_removable(cx, &path)?;
                remove_path(&path)?;
            }
            super::json::write_atomic(&path, &bytes)?;
        }
        None => {
            if is_dir {
                check_removable(cx, &path)?;
            }
            let removed = remove_path(&path)?;
            cx.output(format!(
                "{}: nothing was written to {} (no truthy json, json2, buffer or text){}\n",
                cx.method,
                path.display(),
                if removed {
                    "; the old file was removed"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(None)
}

// -------------------------------------------------------------------- read

fn fs_read(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: ReadParams = parse_params(cx.method, params)?;
    let path = cx.resolve(&p.path)?;
    let encoding = match &p.encoding {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(MethodError::InvalidParams {
                method: cx.method.to_string(),
                message: format!("encoding must be a string, got {other}"),
            })
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| MethodError::io(&path, e))?;
    match encoding {
        None => Ok(Some(buffer_json(&bytes))),
        Some(enc) => decode(&bytes, &enc)
            .map(|s| Some(Value::String(s)))
            .ok_or_else(|| {
                MethodError::Failed(format!(
                    "fs.read {}: unknown encoding {enc:?}",
                    path.display()
                ))
            }),
    }
}

/// Node's `Buffer.prototype.toJSON()` shape.
fn buffer_json(bytes: &[u8]) -> Value {
    json!({ "type": "Buffer", "data": bytes })
}

/// `buf.toString(encoding)`; `None` for an encoding Node does not know.
fn decode(bytes: &[u8], encoding: &str) -> Option<String> {
    Some(match encoding.to_ascii_lowercase().as_str() {
        "utf8" | "utf-8" => String::from_utf8_lossy(bytes).into_owned(),
        "base64" => base64(bytes, false),
        "base64url" => base64(bytes, true),
        "hex" => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        "latin1" | "binary" => bytes.iter().map(|&b| char::from(b)).collect(),
        // Node unsets the high bit before decoding as latin1.
        "ascii" => bytes.iter().map(|&b| char::from(b & 0x7f)).collect(),
        "utf16le" | "utf-16le" | "ucs2" | "ucs-2" => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => return None,
    })
}

fn base64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(table[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------- rm

/// Our safety rule for deleting: the target must be inside the Pinokio home
/// (after lexical normalisation) and be neither the home nor `HOME/api`.
fn check_removable(cx: &MethodCx<'_>, path: &Path) -> Result<(), MethodError> {
    let home = normalize(cx.engine.home().root());
    let target = normalize(path);
    if !target.starts_with(&home) {
        return Err(MethodError::Failed(format!(
            "refusing to remove {}: it is outside the Pinokio home {}",
            target.display(),
            home.display()
        )));
    }
    if target == home {
        return Err(MethodError::Failed(format!(
            "refusing to remove the Pinokio home itself ({})",
            target.display()
        )));
    }
    if target == home.join("api") {
        return Err(MethodError::Failed(format!(
            "refusing to remove the apps folder {}",
            target.display()
        )));
    }
    Ok(())
}

/// Remove a file, a symlink (never followed) or a folder tree (symlinks
/// inside are removed as links, not descended into). Returns whether
/// something was there.
fn remove_path(path: &Path) -> Result<bool, MethodError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(MethodError::io(path, e)),
    };
    let res = if meta.is_dir() {
        // `remove_dir_all` does not follow symlinks inside the tree.
        std::fs::remove_dir_all(path)
    } else {
        // A file or a symlink (to a file or a folder: on Windows a folder
        // link needs `remove_dir`).
        std::fs::remove_file(path).or_else(|e| {
            if meta.file_type().is_symlink() {
                std::fs::remove_dir(path)
            } else {
                Err(e)
            }
        })
    };
    match res {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(MethodError::io(path, e)),
    }
}

fn fs_rm(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: PathParams = parse_params(cx.method, params)?;
    let path = normalize(&cx.resolve(&p.path)?);
    check_removable(cx, &path)?;
    remove_path(&path)?;
    cx.output(format!("\nremoving:\n{}\ndone\n", path.display()));
    Ok(None)
}

// -------------------------------------------------------------------- copy

fn fs_copy(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: CopyParams = parse_params(cx.method, params)?;
    let src = normalize(&cx.resolve(&p.src)?);
    let dest = normalize(&cx.resolve(&p.dest)?);
    let opts = p.options.unwrap_or_default();
    copy_tree(&src, &dest, &opts)?;
    cx.output(format!(
        "\ncopying:\nfrom: {}\nto: {}\ndone\n",
        src.display(),
        dest.display()
    ));
    Ok(None)
}

fn stat(path: &Path, follow: bool) -> std::io::Result<std::fs::Metadata> {
    if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    }
}

/// Node's `fs.promises.cp(src, dest, options)`.
fn copy_tree(src: &Path, dest: &Path, opts: &CopyOptions) -> Result<(), MethodError> {
    let meta = stat(src, opts.dereference).map_err(|e| MethodError::io(src, e))?;
    if src == dest {
        return Err(MethodError::Failed(format!(
            "src and dest cannot be the same: {}",
            src.display()
        )));
    }
    if meta.is_dir() && !opts.recursive {
        return Err(MethodError::Failed(format!(
            "Path is a directory: cp returned EISDIR ({0} is a directory (not copied)) {0}; \
             copying a folder needs options: {{ \"recursive\": true }}",
            src.display()
        )));
    }
    if meta.is_dir() && dest.starts_with(src) {
        return Err(MethodError::Failed(format!(
            "cannot copy {} to a subdirectory of itself, {}",
            src.display(),
            dest.display()
        )));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| MethodError::io(parent, e))?;
    }
    copy_entry(src, dest, &meta, opts, 0)
}

const MAX_DEPTH: usize = 256;

fn copy_entry(
    src: &Path,
    dest: &Path,
    meta: &std::fs::Metadata,
    opts: &CopyOptions,
    depth: usize,
) -> Result<(), MethodError> {
    if depth > MAX_DEPTH {
        return Err(MethodError::Failed(format!(
            "{}: too many nested folders (a symlink loop?)",
            src.display()
        )));
    }
    let ft = meta.file_type();
    let dest_meta = std::fs::symlink_metadata(dest).ok();
    // Whether dest is (or points to) a folder.
    let dest_is_dir = std::fs::metadata(dest).map(|m| m.is_dir()).unwrap_or(false);
    if ft.is_dir() {
        let created = match &dest_meta {
            None => {
                std::fs::create_dir(dest).map_err(|e| MethodError::io(dest, e))?;
                true
            }
            Some(_) if dest_is_dir => false,
            Some(_) => {
                return Err(MethodError::Failed(format!(
                    "cannot overwrite non-directory {} with directory {}",
                    dest.display(),
                    src.display()
                )))
            }
        };
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| MethodError::io(src, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| MethodError::io(src, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let s = entry.path();
            let d = dest.join(entry.file_name());
            let m = stat(&s, opts.dereference).map_err(|e| MethodError::io(&s, e))?;
            copy_entry(&s, &d, &m, opts, depth + 1)?;
        }
        if created {
            // Like Node: the new folder gets the source's mode at the end.
            std::fs::set_permissions(dest, meta.permissions())
                .map_err(|e| MethodError::io(dest, e))?;
        }
        return Ok(());
    }
    if ft.is_file() {
        if dest_meta.is_some() {
            if dest_is_dir
                && !dest_meta
                    .as_ref()
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
            {
                return Err(MethodError::Failed(format!(
                    "cannot overwrite directory {} with non-directory {}",
                    dest.display(),
                    src.display()
                )));
            }
            if !may_replace(dest, opts)? {
                return Ok(());
            }
            // Unlink first so a symlink at dest is replaced, not written through.
            std::fs::remove_file(dest).map_err(|e| MethodError::io(dest, e))?;
        }
        std::fs::copy(src, dest).map_err(|e| MethodError::io(dest, e))?;
        if opts.preserve_timestamps {
            let times = std::fs::FileTimes::new()
                .set_accessed(meta.accessed().map_err(|e| MethodError::io(src, e))?)
                .set_modified(meta.modified().map_err(|e| MethodError::io(src, e))?);
            std::fs::File::options()
                .write(true)
                .open(dest)
                .and_then(|f| f.set_times(times))
                .map_err(|e| MethodError::io(dest, e))?;
        }
        return Ok(());
    }
    if ft.is_symlink() {
        let mut target = std::fs::read_link(src).map_err(|e| MethodError::io(src, e))?;
        if !opts.verbatim_symlinks && target.is_relative() {
            // Node resolves relative link targets against the source folder.
            target = normalize(&src.parent().unwrap_or(Path::new("/")).join(&target));
        }
        if let Some(dm) = &dest_meta {
            if dm.is_dir() {
                return Err(MethodError::Failed(format!(
                    "cannot overwrite directory {} with symlink {}",
                    dest.display(),
                    src.display()
                )));
            }
            if !may_replace(dest, opts)? {
                return Ok(());
            }
            remove_path(dest)?;
        }
        return make_symlink(&target, dest);
    }
    Err(MethodError::Failed(format!(
        "cannot copy {}: not a file, folder or symlink",
        src.display()
    )))
}

/// An existing `dest`: replace it (`force`), fail (`errorOnExist`) or skip.
fn may_replace(dest: &Path, opts: &CopyOptions) -> Result<bool, MethodError> {
    if opts.force {
        Ok(true)
    } else if opts.error_on_exist {
        Err(MethodError::Failed(format!(
            "{} already exists",
            dest.display()
        )))
    } else {
        Ok(false)
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> Result<(), MethodError> {
    std::os::unix::fs::symlink(target, link).map_err(|e| MethodError::io(link, e))
}

#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> Result<(), MethodError> {
    let res = if std::fs::metadata(target)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        std::os::windows::fs::symlink_dir(target, link)
    } else {
        std::os::windows::fs::symlink_file(target, link)
    };
    res.map_err(|e| MethodError::io(link, e))
}

// ---------------------------------------------------------------- make/cat

fn fs_make(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: PathParams = parse_params(cx.method, params)?;
    let path = cx.resolve(&p.path)?;
    // Upstream ignores errors here; we do too, but say so.
    if let Err(e) = std::fs::create_dir_all(&path) {
        cx.emit(EventKind::Warning {
            index: Some(cx.index),
            message: format!("fs.make: could not create {}: {e}", path.display()),
        });
    }
    Ok(None)
}

fn fs_cat(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: PathParams = parse_params(cx.method, params)?;
    let path = cx.resolve(&p.path)?;
    let bytes = std::fs::read(&path).map_err(|e| MethodError::io(&path, e))?;
    cx.output(String::from_utf8_lossy(&bytes).into_owned());
    Ok(None)
}

// -------------------------------------------------------------------- open

/// `file://` URL for an absolute path (percent-encoding what a URL path
/// cannot hold).
fn file_url(path: &Path) -> String {
    let s = path.to_string_lossy().replace('\\', "/");
    let mut out = String::from("file://");
    if !s.starts_with('/') {
        out.push('/');
    }
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~:@!$&'()*+,;=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn fs_open(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: OpenParams = parse_params(cx.method, params)?;
    let path = cx.resolve_plain(&p.path);
    let action = p
        .action
        .or(p.command)
        .or(p.mode)
        .unwrap_or_else(|| "view".to_string());
    cx.emit(EventKind::OpenUrl {
        index: cx.index,
        url: file_url(&path),
        target: None,
    });
    let note = match action.as_str() {
        "view" | "open" => String::new(),
        other => format!(" (headless: `{other}` is not run on the server)"),
    };
    cx.output(format!("open ({action}): {}{note}\n", path.display()));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_node() {
        assert_eq!(base64(b"", false), "");
        assert_eq!(base64(b"f", false), "Zg==");
        assert_eq!(base64(b"fo", false), "Zm8=");
        assert_eq!(base64(b"foo", false), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff], false), "+/8=");
        assert_eq!(base64(&[0xfb, 0xff], true), "-_8");
    }

    #[test]
    fn decode_encodings() {
        assert_eq!(decode(&[0x68, 0xe9], "latin1").as_deref(), Some("hé"));
        assert_eq!(decode(&[0x68, 0xe9], "ascii").as_deref(), Some("hi"));
        assert_eq!(decode(&[0x00, 0xff], "HEX").as_deref(), Some("00ff"));
        assert_eq!(
            decode(&[0x68, 0x00, 0x69, 0x00], "utf16le").as_deref(),
            Some("hi")
        );
        assert_eq!(decode(b"x", "klingon"), None);
    }

    #[test]
    fn type_error_message_like_node() {
        assert!(invalid_data_type(&json!(42)).ends_with("Received type number (42)"));
        assert!(invalid_data_type(&json!({"a": 1})).ends_with("Received an instance of Object"));
    }

    #[test]
    fn file_urls_are_encoded() {
        assert_eq!(file_url(Path::new("/a b/c#d")), "file:///a%20b/c%23d");
        assert_eq!(file_url(Path::new("/x/y.txt")), "file:///x/y.txt");
    }
}
