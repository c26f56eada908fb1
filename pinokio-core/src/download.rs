//! The downloader behind `fs.download`: resumable (a `<dest>.part` file and
//! a `<dest>.part.json` sidecar survive restarts), segmented over HTTP
//! Range when the server allows it, retried with backoff, verified (size and
//! optional checksums) and renamed into place only when complete.
//!
//! Tokens are only sent to the Hugging Face host and never appear in errors
//! or progress; URLs in messages lose their query string and user info.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, RANGE, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

/// Files above this size get several segments by default.
const SEGMENT_THRESHOLD: u64 = 16 * 1024 * 1024;
const DEFAULT_SEGMENTS: usize = 4;
const DEFAULT_RETRIES: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bytes gathered per segment before one positioned write.
const WRITE_BUFFER: usize = 2 << 20;
/// Longest time received bytes wait in that buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Bytes written per segment between two writeback hints.
const WRITEBACK_EVERY: u64 = 16 << 20;
/// Buffers per segment: one being filled from the connection while the
/// others are written (direct writes wait for the disk).
const WRITE_BUFFERS: usize = 2;
/// Alignment of direct (`O_DIRECT`) writes: offsets, lengths and memory.
const DIRECT_ALIGN: usize = 4096;
/// Files from this size on are written with direct I/O where the file
/// system allows it (`PINOKIO_DOWNLOAD_DIRECT=0` turns it off).
const DIRECT_MIN_SIZE: u64 = 64 << 20;

/// Knobs for one download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Expected SHA-256 (hex).
    pub sha256: Option<String>,
    /// Expected MD5 (hex).
    pub md5: Option<String>,
    /// Parallel range requests (default: 4 above 16 MiB, else 1).
    pub connections: Option<usize>,
    /// Consecutive failed attempts allowed per segment (default 5).
    pub retries: Option<u32>,
    /// `HF_TOKEN`: sent as a bearer token to the Hugging Face host only.
    pub hf_token: Option<String>,
    /// `HF_ENDPOINT`: a second host that gets the token.
    pub hf_endpoint: Option<String>,
    /// First backoff delay (doubles per attempt, with jitter).
    pub backoff: Duration,
    pub user_agent: String,
    /// Read segment bodies with the built-in HTTP/1.1 reader (`http1.rs`:
    /// no extra copy, no runtime thread) where it applies: http(s) without
    /// a proxy from the environment. False, or `PINOKIO_DOWNLOAD_BUILTIN_HTTP=0`:
    /// reqwest for everything.
    pub builtin_http: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            sha256: None,
            md5: None,
            connections: None,
            retries: None,
            hf_token: None,
            hf_endpoint: None,
            backoff: Duration::from_millis(500),
            user_agent: crate::methods::net::USER_AGENT.to_string(),
            builtin_http: true,
        }
    }
}

/// A progress report.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    /// Bytes per second (recent average).
    pub rate: f64,
    pub eta: Option<Duration>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The plain progress line of a download, as the run's output and
/// non-terminal frontends print it:
/// `downloading x: 12.0 MiB / 40.0 MiB (30%), 8.1 MiB/s, ETA 3s`.
pub fn progress_text(
    name: &str,
    bytes: u64,
    total: Option<u64>,
    rate: u64,
    eta_secs: Option<u64>,
) -> String {
    let mut s = format!("downloading {name}: {}", mib(bytes));
    if let Some(t) = total {
        let pct = (bytes.saturating_mul(100)).checked_div(t).unwrap_or(100);
        s.push_str(&format!(" / {} ({pct}%)", mib(t)));
    }
    s.push_str(&format!(", {}/s", mib(rate)));
    if let Some(e) = eta_secs {
        s.push_str(&format!(", ETA {e}s"));
    }
    s
}

/// What a download did.
#[derive(Debug, Clone)]
pub struct DownloadOutcome {
    pub path: PathBuf,
    pub bytes: u64,
    /// The destination was already complete.
    pub skipped: bool,
    /// Bytes reused from an earlier partial download.
    pub resumed_from: u64,
}

/// Why a download failed. Messages name the URL without secrets.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download stopped")]
    Cancelled,
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
}

/// What a HEAD (or range probe) learned.
#[derive(Debug, Clone)]
pub struct Probe {
    /// After redirects.
    pub final_url: Url,
    pub size: Option<u64>,
    /// From Content-Disposition.
    pub filename: Option<String>,
    pub ranges: bool,
    pub etag: Option<String>,
}

/// A URL for messages: no user info, no query, no fragment.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or("").to_string(),
    }
}

fn fail(url: &str, message: impl Into<String>) -> DownloadError {
    DownloadError::Failed {
        url: redact(url),
        message: message.into(),
    }
}

fn is_hf_host(url: &Url, opts: &DownloadOptions) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    if host == "huggingface.co" || host.ends_with(".huggingface.co") {
        return true;
    }
    opts.hf_endpoint
        .as_deref()
        .and_then(|e| Url::parse(e).ok())
        .and_then(|e| e.host_str().map(|h| h.eq_ignore_ascii_case(&host)))
        .unwrap_or(false)
}

/// The headers of a download request to `url` besides Range: the user
/// agent, and the token for the Hugging Face host only.
fn request_headers(url: &Url, opts: &DownloadOptions) -> Vec<(&'static str, String)> {
    let mut h = vec![("User-Agent", opts.user_agent.clone())];
    if let Some(tok) = opts.hf_token.as_deref().filter(|t| !t.is_empty()) {
        if is_hf_host(url, opts) {
            h.push(("Authorization", format!("Bearer {tok}")));
        }
    }
    h
}

fn request(
    client: &Client,
    method: reqwest::Method,
    url: &Url,
    opts: &DownloadOptions,
) -> RequestBuilder {
    let mut rb = client.request(method, url.clone());
    for (k, v) in request_headers(url, opts) {
        rb = rb.header(k, v);
    }
    rb
}

fn header_str(r: &Response, name: reqwest::header::HeaderName) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The file name of a `Content-Disposition` header (`filename*=` first).
pub fn disposition_filename(h: &str) -> Option<String> {
    let mut plain = None;
    for part in h.split(';') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        if k == "filename*" {
            // charset'lang'percent-encoded
            let enc = v.splitn(3, '\'').nth(2).unwrap_or(v);
            let name = percent_decode(enc.trim_matches('"'));
            if !name.is_empty() {
                return Some(name);
            }
        } else if k == "filename" && plain.is_none() {
            let name = v.trim_matches('"').to_string();
            if !name.is_empty() {
                plain = Some(name);
            }
        }
    }
    plain
}

/// Decode `%xx` escapes (invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hexd = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hexd.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A safe file name: the last path component, trailing dots removed.
pub fn sanitize_filename(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let base = base.trim().trim_end_matches('.');
    if base.is_empty() || base == ".." || base.contains('\0') {
        None
    } else {
        Some(base.to_string())
    }
}

/// The file name for a `dir` download: Content-Disposition, else the last
/// URL path segment, else `<host>.html`.
pub fn file_name_for(url: &Url, probe: Option<&Probe>) -> String {
    if let Some(n) = probe
        .and_then(|p| p.filename.as_deref())
        .and_then(sanitize_filename)
    {
        return n;
    }
    for u in [Some(url), probe.map(|p| &p.final_url)]
        .into_iter()
        .flatten()
    {
        if let Some(seg) = u
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        {
            if let Some(n) = sanitize_filename(&percent_decode(seg)) {
                return n;
            }
        }
    }
    format!("{}.html", url.host_str().unwrap_or("download"))
}

enum Attempt {
    Fatal(String),
    Retry {
        msg: String,
        after: Option<Duration>,
    },
}

fn status_attempt(r: &Response) -> Attempt {
    status_attempt_of(r.status(), header_str(r, RETRY_AFTER).as_deref())
}

/// What a non-2xx answer means for the attempt: 5xx, 429 and 408 are
/// retried (after `Retry-After` seconds when given), the rest are final.
fn status_attempt_of(s: StatusCode, retry_after: Option<&str>) -> Attempt {
    let msg = format!("HTTP {s}");
    if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT
    {
        Attempt::Retry {
            msg,
            after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(300))),
        }
    } else {
        Attempt::Fatal(msg)
    }
}

fn net_attempt(e: &reqwest::Error) -> Attempt {
    let mut m = crate::methods::net::error_chain(e);
    // reqwest prints the URL (with its query) in some errors: drop it.
    if let Some(u) = e.url() {
        m = m.replace(u.as_str(), &redact(u.as_str()));
    }
    Attempt::Retry {
        msg: m,
        after: None,
    }
}

/// Sleep in small slices; false when cancelled.
fn sleep_cancellable(d: Duration, cancel: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if cancel.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(25)));
    }
    !cancel.load(Ordering::SeqCst)
}

fn backoff(opts: &DownloadOptions, attempt: u32, after: Option<Duration>) -> Duration {
    if let Some(a) = after {
        return a;
    }
    let base = opts
        .backoff
        .saturating_mul(1u32 << attempt.min(10).saturating_sub(1));
    let base = base.min(MAX_BACKOFF);
    // Jitter: up to +50%, from the clock's low bits.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64((nanos % 1000) as f64 / 2000.0)
}

fn parse_total_from_content_range(v: &str) -> Option<u64> {
    v.rsplit('/').next().and_then(|t| t.trim().parse().ok())
}

/// Learn size, name and range support (HEAD, then a `bytes=0-0` probe).
pub fn probe(
    client: &Client,
    url: &str,
    opts: &DownloadOptions,
    cancel: &AtomicBool,
) -> Result<Probe, DownloadError> {
    let parsed = Url::parse(url).map_err(|e| fail(url, format!("invalid url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(fail(url, "only http and https URLs can be downloaded"));
    }
    let retries = opts.retries.unwrap_or(DEFAULT_RETRIES);
    let mut failures = 0;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(DownloadError::Cancelled);
        }
        match probe_once(client, &parsed, opts) {
            Ok(p) => return Ok(p),
            Err(Attempt::Fatal(m)) => return Err(fail(url, m)),
            Err(Attempt::Retry { msg, after }) => {
                failures += 1;
                if failures > retries {
                    return Err(fail(url, format!("{msg} (after {failures} attempts)")));
                }
                if !sleep_cancellable(backoff(opts, failures, after), cancel) {
                    return Err(DownloadError::Cancelled);
                }
            }
        }
    }
}

fn probe_once(client: &Client, url: &Url, opts: &DownloadOptions) -> Result<Probe, Attempt> {
    let mut p = Probe {
        final_url: url.clone(),
        size: None,
        filename: None,
        ranges: false,
        etag: None,
    };
    let head = request(client, reqwest::Method::HEAD, url, opts)
        .send()
        .map_err(|e| net_attempt(&e))?;
    let head_ok = head.status().is_success();
    if head_ok {
        p.final_url = head.url().clone();
        p.size = header_str(&head, CONTENT_LENGTH).and_then(|v| v.parse().ok());
        p.filename = header_str(&head, CONTENT_DISPOSITION).and_then(|h| disposition_filename(&h));
        p.etag = header_str(&head, ETAG);
        p.ranges =
            header_str(&head, ACCEPT_RANGES).is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        if p.ranges && p.size.is_some() {
            return Ok(p);
        }
    } else if let Attempt::Retry { msg, after } = status_attempt(&head) {
        return Err(Attempt::Retry { msg, after });
    }
    // Range probe (also the fallback for servers that reject HEAD).
    let target = if head_ok {
        p.final_url.clone()
    } else {
        url.clone()
    };
    let r = request(client, reqwest::Method::GET, &target, opts)
        .header(RANGE, "bytes=0-0")
        .send()
        .map_err(|e| net_attempt(&e))?;
    if !r.status().is_success() {
        return Err(status_attempt(&r));
    }
    p.final_url = r.url().clone();
    if p.filename.is_none() {
        p.filename = header_str(&r, CONTENT_DISPOSITION).and_then(|h| disposition_filename(&h));
    }
    if p.etag.is_none() {
        p.etag = header_str(&r, ETAG);
    }
    if r.status() == StatusCode::PARTIAL_CONTENT {
        p.ranges = true;
        if let Some(t) =
            header_str(&r, CONTENT_RANGE).and_then(|v| parse_total_from_content_range(&v))
        {
            p.size = Some(t);
        }
    } else {
        p.ranges = false;
        if p.size.is_none() {
            p.size = header_str(&r, CONTENT_LENGTH).and_then(|v| v.parse().ok());
        }
    }
    Ok(p)
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    url: String,
    size: Option<u64>,
    etag: Option<String>,
    segments: Vec<SegRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegRecord {
    start: u64,
    end: Option<u64>,
    done: u64,
}

struct Seg {
    start: u64,
    end: Option<u64>,
    done: AtomicU64,
}

struct Shared {
    client: Client,
    /// Segment bodies are read with the built-in reader (`http1.rs`) unless
    /// the options or the environment say otherwise.
    http1: Option<crate::http1::Http1>,
    url: Url,
    opts: DownloadOptions,
    ranges: bool,
    file: File,
    /// The same `.part` file opened with `O_DIRECT` (big files on Linux):
    /// aligned blocks skip the page cache, which halves the kernel's work
    /// per byte and keeps multi-GB checkpoints from evicting everything
    /// else; unaligned heads and tails go through `file`.
    direct: Option<File>,
    segs: Vec<Seg>,
    cancel: Arc<AtomicBool>,
    /// Serializes the restart-from-zero of a single stream.
    reset: Mutex<()>,
}

impl Shared {
    fn done(&self) -> u64 {
        self.segs
            .iter()
            .map(|s| s.done.load(Ordering::SeqCst))
            .sum()
    }
}

fn part_paths(dest: &Path) -> (PathBuf, PathBuf) {
    let mut p = dest.as_os_str().to_owned();
    p.push(".part");
    let part = PathBuf::from(p);
    let mut j = part.as_os_str().to_owned();
    j.push(".json");
    (part, PathBuf::from(j))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Check the expected checksums of a file; `Err` names the mismatch.
fn verify_checksums(path: &Path, opts: &DownloadOptions) -> Result<(), String> {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    let want_sha = opts
        .sha256
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase());
    let want_md5 = opts.md5.as_deref().map(|s| s.trim().to_ascii_lowercase());
    if want_sha.is_none() && want_md5.is_none() {
        return Ok(());
    }
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sha = Sha256::new();
    let mut md = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        if want_sha.is_some() {
            sha.update(&buf[..n]);
        }
        if want_md5.is_some() {
            md.update(&buf[..n]);
        }
    }
    if let Some(w) = want_sha {
        let got = hex(&sha.finalize());
        if got != w {
            return Err(format!("sha256 mismatch: expected {w}, got {got}"));
        }
    }
    if let Some(w) = want_md5 {
        let got = hex(&md.finalize());
        if got != w {
            return Err(format!("md5 mismatch: expected {w}, got {got}"));
        }
    }
    Ok(())
}

/// Download `url` to `dest` (an exact file path). See the module docs.
pub fn download(
    client: &Client,
    url: &str,
    dest: &Path,
    opts: &DownloadOptions,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<DownloadOutcome, DownloadError> {
    let p = probe(client, url, opts, cancel)?;
    download_probed(client, url, &p, dest, opts, progress, cancel)
}

/// [`download`] with a [`probe`] already made.
pub fn download_probed(
    client: &Client,
    url: &str,
    probe: &Probe,
    dest: &Path,
    opts: &DownloadOptions,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<DownloadOutcome, DownloadError> {
    let io = |path: &Path, e: std::io::Error| fail(url, format!("{}: {e}", path.display()));
    // Already complete?
    if let Ok(md) = fs::metadata(dest) {
        if md.is_file() {
            let complete = match probe.size {
                Some(s) => md.len() == s && verify_checksums(dest, opts).is_ok(),
                None => {
                    (opts.sha256.is_some() || opts.md5.is_some())
                        && verify_checksums(dest, opts).is_ok()
                }
            };
            if complete {
                return Ok(DownloadOutcome {
                    path: dest.to_path_buf(),
                    bytes: md.len(),
                    skipped: true,
                    resumed_from: 0,
                });
            }
        }
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let (part, side) = part_paths(dest);
    let key = redact(url);

    // Resume from an earlier attempt when it is the same file.
    let mut segs: Option<Vec<SegRecord>> = None;
    if let (Ok(text), Ok(md)) = (fs::read_to_string(&side), fs::metadata(&part)) {
        if let Ok(sc) = serde_json::from_str::<Sidecar>(&text) {
            let same =
                sc.url == key && sc.size == probe.size && sc.etag == probe.etag && probe.ranges;
            if same && !sc.segments.is_empty() {
                let mut recs = sc.segments;
                if recs.len() == 1 {
                    recs[0].done = recs[0].done.min(md.len());
                    segs = Some(recs);
                } else if Some(md.len()) == probe.size {
                    segs = Some(recs);
                }
            }
        }
    }
    let resuming = segs.is_some();
    let recs = match segs {
        Some(r) => r,
        None => {
            let _ = fs::remove_file(&part);
            let n = match (probe.ranges, probe.size) {
                (true, Some(size)) if size > 0 => opts
                    .connections
                    .unwrap_or(if size > SEGMENT_THRESHOLD {
                        DEFAULT_SEGMENTS
                    } else {
                        1
                    })
                    .clamp(1, 64)
                    .min(size as usize),
                _ => 1,
            };
            match probe.size {
                Some(size) if n > 1 => {
                    // aligned boundaries, so every segment can write directly
                    let chunk = size
                        .div_ceil(n as u64)
                        .next_multiple_of(DIRECT_ALIGN as u64);
                    (0..n as u64)
                        .map(|i| SegRecord {
                            start: i * chunk,
                            end: Some(((i + 1) * chunk).min(size)),
                            done: 0,
                        })
                        .filter(|s| s.end.unwrap() > s.start)
                        .collect()
                }
                size => vec![SegRecord {
                    start: 0,
                    end: size,
                    done: 0,
                }],
            }
        }
    };
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&part)
        .map_err(|e| io(&part, e))?;
    if recs.len() > 1 {
        if let Some(size) = probe.size {
            file.set_len(size).map_err(|e| io(&part, e))?;
        }
    } else {
        file.set_len(recs[0].done).map_err(|e| io(&part, e))?;
    }
    let direct = probe
        .size
        .filter(|s| *s >= DIRECT_MIN_SIZE)
        .and_then(|_| open_direct(&part));
    let resumed_from: u64 = if resuming {
        recs.iter().map(|r| r.done).sum()
    } else {
        0
    };
    // Token only for the Hugging Face host: ask the final URL directly when
    // that is the Hub, else the original URL (reqwest drops Authorization on
    // cross-host redirects).
    let target = if is_hf_host(&probe.final_url, opts) {
        probe.final_url.clone()
    } else {
        Url::parse(url).map_err(|e| fail(url, format!("invalid url: {e}")))?
    };
    let cancel_flag = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        client: client.clone(),
        http1: builtin_http(opts).then(crate::http1::Http1::default),
        url: target,
        opts: opts.clone(),
        ranges: probe.ranges,
        file,
        direct,
        segs: recs
            .iter()
            .map(|r| Seg {
                start: r.start,
                end: r.end,
                done: AtomicU64::new(r.done),
            })
            .collect(),
        cancel: cancel_flag.clone(),
        reset: Mutex::new(()),
    });
    let save_sidecar = |sh: &Shared| {
        let sc = Sidecar {
            url: key.clone(),
            size: probe.size,
            etag: probe.etag.clone(),
            segments: sh
                .segs
                .iter()
                .map(|s| SegRecord {
                    start: s.start,
                    end: s.end,
                    done: s.done.load(Ordering::SeqCst),
                })
                .collect(),
        };
        if let Ok(t) = serde_json::to_string(&sc) {
            let _ = fs::write(&side, t);
        }
    };
    save_sidecar(&shared);

    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    for i in 0..shared.segs.len() {
        let sh = shared.clone();
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("pinokio-download".into())
            .spawn(move || {
                let _ = tx.send(run_segment(&sh, i));
            })
            .map_err(|e| fail(url, format!("cannot start a thread: {e}")))?;
    }
    drop(tx);

    let started = Instant::now();
    let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let mut last_save = Instant::now();
    let mut remaining = shared.segs.len();
    let mut first_err: Option<String> = None;
    let report = |window: &mut std::collections::VecDeque<(Instant, u64)>| {
        let now = Instant::now();
        let done = shared.done();
        window.push_back((now, done));
        while window.len() > 2 && now.duration_since(window[0].0) > Duration::from_secs(5) {
            window.pop_front();
        }
        let (t0, d0) = window[0];
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = if secs > 0.0 {
            (done - d0) as f64 / secs
        } else {
            0.0
        };
        let eta = probe
            .size
            .filter(|_| rate > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(done) as f64 / rate));
        progress(Progress {
            done,
            total: probe.size,
            rate,
            eta,
        });
    };
    window.push_back((started, resumed_from));
    while remaining > 0 {
        if cancel.load(Ordering::SeqCst) {
            cancel_flag.store(true, Ordering::SeqCst);
            save_sidecar(&shared);
            return Err(DownloadError::Cancelled);
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => {
                remaining -= 1;
                if let Err(e) = r {
                    cancel_flag.store(true, Ordering::SeqCst);
                    first_err.get_or_insert(e);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        report(&mut window);
        if last_save.elapsed() > Duration::from_secs(1) {
            save_sidecar(&shared);
            last_save = Instant::now();
        }
    }
    save_sidecar(&shared);
    if let Some(e) = first_err {
        if e == CANCELLED {
            return Err(DownloadError::Cancelled);
        }
        return Err(fail(url, e));
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(DownloadError::Cancelled);
    }
    let done = shared.done();
    let _ = shared.file.sync_all();
    drop(shared);
    let discard = || {
        let _ = fs::remove_file(&part);
        let _ = fs::remove_file(&side);
    };
    let len = fs::metadata(&part).map_err(|e| io(&part, e))?.len();
    if let Some(size) = probe.size {
        if len != size || done != size {
            discard();
            return Err(fail(
                url,
                format!("size mismatch: expected {size} bytes, got {len}"),
            ));
        }
    }
    if let Err(m) = verify_checksums(&part, opts) {
        discard();
        return Err(fail(url, m));
    }
    fs::rename(&part, dest).map_err(|e| io(dest, e))?;
    let _ = fs::remove_file(&side);
    Ok(DownloadOutcome {
        path: dest.to_path_buf(),
        bytes: len,
        skipped: false,
        resumed_from,
    })
}

const CANCELLED: &str = "\u{0}cancelled";

/// A write buffer aligned for direct I/O, in huge pages where the kernel
/// gives them (`MADV_HUGEPAGE`): the socket copies into it and direct
/// writes pin it with a handful of page lookups instead of hundreds.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: the buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

/// Alignment of full-size write buffers: one huge page.
const BUFFER_ALIGN: usize = 2 << 20;

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let huge = len >= BUFFER_ALIGN;
        let align = if huge { BUFFER_ALIGN } else { DIRECT_ALIGN };
        let layout =
            std::alloc::Layout::from_size_align(len.max(1), align).expect("a valid buffer layout");
        // SAFETY: the layout has a non-zero size; the memory is zeroed
        // below before any slice of it exists.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if huge {
            // SAFETY: advice on memory this buffer owns; failure is harmless.
            unsafe {
                libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE);
            }
        }
        // SAFETY: `raw` is valid for `layout.size()` bytes.
        unsafe { std::ptr::write_bytes(raw, 0, layout.size()) };
        AlignedBuf { ptr, layout }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: owned, initialized memory of this size.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: owned, initialized memory of this size, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Open the `.part` file a second time for direct writes, when the file
/// system supports them (not tmpfs, not most FUSE mounts).
#[cfg(target_os = "linux")]
fn open_direct(part: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::env::var("PINOKIO_DOWNLOAD_DIRECT").is_ok_and(|v| v == "0") {
        return None;
    }
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(part)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_part: &Path) -> Option<File> {
    None
}

/// Write `data` at `at`: the aligned part directly when the segment writes
/// directly, the rest (and everything else) through the page cache.
fn write_block(file: &File, direct: Option<&File>, data: &[u8], at: u64) -> std::io::Result<()> {
    if let Some(d) = direct {
        let n = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        let aligned = at.is_multiple_of(DIRECT_ALIGN as u64)
            && (data.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
        if aligned && n > 0 {
            match d.write_all_at(&data[..n], at) {
                Ok(()) => {
                    return match data.len() > n {
                        true => file.write_all_at(&data[n..], at + n as u64),
                        false => Ok(()),
                    }
                }
                // refused after all (a file system that takes the flag but
                // not the write): the page cache path below
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
    }
    file.write_all_at(data, at)
}

/// Ask the kernel to start writing a range of the file to disk now, without
/// waiting for it, so the `fsync` before the final rename has little left
/// to do.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; errors are ignored
    // (it is only a hint).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn run_segment(sh: &Shared, i: usize) -> Result<(), String> {
    let retries = sh.opts.retries.unwrap_or(DEFAULT_RETRIES);
    let mut failures = 0u32;
    loop {
        if sh.cancel.load(Ordering::SeqCst) {
            return Err(CANCELLED.into());
        }
        let before = sh.segs[i].done.load(Ordering::SeqCst);
        match fetch_segment(sh, i) {
            Ok(()) => return Ok(()),
            Err(Attempt::Fatal(m)) => return Err(m),
            Err(Attempt::Retry { msg, after }) => {
                if sh.segs[i].done.load(Ordering::SeqCst) > before {
                    failures = 0;
                }
                failures += 1;
                if failures > retries {
                    return Err(format!("{msg} (after {failures} attempts)"));
                }
                if !sleep_cancellable(backoff(&sh.opts, failures, after), &sh.cancel) {
                    return Err(CANCELLED.into());
                }
            }
        }
    }
}

fn fetch_segment(sh: &Shared, i: usize) -> Result<(), Attempt> {
    let seg = &sh.segs[i];
    let pos = seg.start + seg.done.load(Ordering::SeqCst);
    if let Some(end) = seg.end {
        if pos >= end {
            return Ok(());
        }
    }
    let single = sh.segs.len() == 1;
    let ranged = sh.ranges && (pos > 0 || !single);
    let range = ranged.then(|| match seg.end {
        Some(e) => format!("bytes={pos}-{}", e - 1),
        None => format!("bytes={pos}-"),
    });
    let mut body = open_body(sh, range.as_deref())?;
    let st = body.status;
    if !st.is_success() {
        return Err(status_attempt_of(st, body.retry_after.as_deref()));
    }
    if st == StatusCode::PARTIAL_CONTENT {
        let start = body
            .content_range
            .as_deref()
            .and_then(|v| v.trim().strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if start.is_some_and(|s| s != pos) {
            return Err(Attempt::Fatal(format!(
                "asked for bytes from {pos}, the server sent {}",
                body.content_range.as_deref().unwrap_or_default()
            )));
        }
    }
    let mut pos = pos;
    if st != StatusCode::PARTIAL_CONTENT && pos > 0 {
        // The server sent the whole file.
        if !single {
            return Err(Attempt::Fatal(
                "the server ignored the range request".into(),
            ));
        }
        let _g = sh.reset.lock();
        seg.done.store(0, Ordering::SeqCst);
        let _ = sh.file.set_len(0);
        pos = 0;
    }
    // Chunks from the connection are gathered into large buffers; a writer
    // thread writes each full buffer with one positioned write (or when the
    // body ends, or a slow connection has kept bytes waiting for a while, so
    // progress stays live) while the next one fills. `done` counts written
    // bytes only, so a resume never trusts bytes that did not reach the file.
    let direct = sh.direct.is_some();
    std::thread::scope(|scope| {
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(AlignedBuf, usize, u64)>(1);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<AlignedBuf>();
        // no bigger than what is left of the segment (small files)
        let left = seg
            .end
            .map_or(WRITE_BUFFER as u64, |e| e.saturating_sub(pos));
        let len = (left.min(WRITE_BUFFER as u64) as usize)
            .next_multiple_of(DIRECT_ALIGN)
            .max(DIRECT_ALIGN);
        for _ in 0..WRITE_BUFFERS {
            let _ = free_tx.send(AlignedBuf::new(len));
        }
        let writer = scope.spawn(move || -> Result<(), String> {
            let mut written_from = None;
            for (buf, len, at) in work_rx {
                write_block(&sh.file, sh.direct.as_ref(), &buf.as_slice()[..len], at)
                    .map_err(|e| format!("cannot write: {e}"))?;
                seg.done.fetch_add(len as u64, Ordering::SeqCst);
                if !direct {
                    let from = *written_from.get_or_insert(at);
                    let to = at + len as u64;
                    if to - from >= WRITEBACK_EVERY {
                        start_writeback(&sh.file, from, to - from);
                        written_from = Some(to);
                    }
                }
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let received = receive(sh, seg, &mut body.reader, pos, direct, &work_tx, &free_rx);
        drop(work_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err("the writer thread panicked".into()));
        match (written, received) {
            (Err(m), _) => Err(Attempt::Fatal(m)),
            (Ok(()), r) => r,
        }
    })
}

/// An answer to a segment request, from either client.
struct Body {
    status: StatusCode,
    retry_after: Option<String>,
    content_range: Option<String>,
    reader: Box<dyn Read + Send>,
}

fn builtin_http(opts: &DownloadOptions) -> bool {
    opts.builtin_http && !std::env::var("PINOKIO_DOWNLOAD_BUILTIN_HTTP").is_ok_and(|v| v == "0")
}

/// Send a segment's request: with the built-in reader when it can, else
/// (or when it hands back what it does not do) with reqwest.
fn open_body(sh: &Shared, range: Option<&str>) -> Result<Body, Attempt> {
    use crate::http1::Http1Error;
    if let Some(w) = &sh.http1 {
        let headers = |u: &Url| {
            let mut h = request_headers(u, &sh.opts);
            if let Some(r) = range {
                h.push(("Range", r.to_string()));
            }
            h
        };
        match w.get(&sh.url, &headers) {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status).map_err(|_| Attempt::Retry {
                    msg: format!("a bad status code {}", r.status),
                    after: None,
                })?;
                return Ok(Body {
                    status,
                    retry_after: r.header("retry-after").map(str::to_string),
                    content_range: r.header("content-range").map(str::to_string),
                    reader: Box::new(r),
                });
            }
            Err(Http1Error::Unsupported(_)) => {}
            Err(Http1Error::Net(msg)) => return Err(Attempt::Retry { msg, after: None }),
            Err(Http1Error::Fatal(m)) => return Err(Attempt::Fatal(m)),
        }
    }
    let mut rb = request(&sh.client, reqwest::Method::GET, &sh.url, &sh.opts);
    if let Some(r) = range {
        rb = rb.header(RANGE, r);
    }
    let resp = rb.send().map_err(|e| net_attempt(&e))?;
    Ok(Body {
        status: resp.status(),
        retry_after: header_str(&resp, RETRY_AFTER),
        content_range: header_str(&resp, CONTENT_RANGE),
        reader: Box::new(resp),
    })
}

/// Read the body into buffers handed to the writer; the file offset after
/// the last byte received.
fn receive(
    sh: &Shared,
    seg: &Seg,
    resp: &mut dyn Read,
    mut pos: u64,
    direct: bool,
    work: &std::sync::mpsc::SyncSender<(AlignedBuf, usize, u64)>,
    free: &std::sync::mpsc::Receiver<AlignedBuf>,
) -> Result<(), Attempt> {
    // the writer is gone: it failed, and says why when joined
    let writer_gone = || Attempt::Retry {
        msg: "the writer stopped".into(),
        after: None,
    };
    let mut ended = false;
    let mut flushed = Instant::now();
    while !ended {
        if sh.cancel.load(Ordering::SeqCst) {
            return Err(Attempt::Fatal(CANCELLED.into()));
        }
        let mut buf = free.recv().map_err(|_| writer_gone())?;
        let space = buf.as_mut_slice();
        let mut want = match seg.end {
            Some(e) => (e.saturating_sub(pos) as usize).min(space.len()),
            None => space.len(),
        };
        // after an unaligned resume or a timed flush: get back onto the
        // alignment direct writes need
        let misaligned = pos as usize % DIRECT_ALIGN;
        if direct && misaligned != 0 {
            want = want.min(DIRECT_ALIGN - misaligned);
        }
        let mut filled = 0;
        let mut lost = None;
        while filled < want {
            match resp.read(&mut space[filled..want]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    lost = Some(e);
                    break;
                }
            }
            if sh.cancel.load(Ordering::SeqCst) || flushed.elapsed() >= FLUSH_EVERY {
                break;
            }
        }
        flushed = Instant::now();
        if filled > 0 {
            work.send((buf, filled, pos)).map_err(|_| writer_gone())?;
            pos += filled as u64;
        }
        if let Some(e) = lost {
            return Err(Attempt::Retry {
                msg: format!("connection lost: {e}"),
                after: None,
            });
        }
        if seg.end.is_some_and(|e| pos >= e) {
            return Ok(());
        }
    }
    match seg.end {
        Some(e) if pos < e => Err(Attempt::Retry {
            msg: format!("connection closed after {pos} of {e} bytes"),
            after: None,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Direct writes (aligned blocks), page-cache writes (unaligned heads
    /// and tails) and their mix land byte-exactly.
    #[test]
    fn direct_and_buffered_writes_assemble_the_file() {
        let t = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let part = t.path().join("f.part");
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .unwrap();
        let direct = open_direct(&part);
        let size = 3 * WRITE_BUFFER + 12_345;
        file.set_len(size as u64).unwrap();
        let want = pattern(size, 7);
        let mut buf = AlignedBuf::new(WRITE_BUFFER);
        // an aligned full block, a block with an unaligned tail, an
        // unaligned small piece, then the rest from an unaligned offset
        let pieces = [
            (0usize, WRITE_BUFFER),
            (WRITE_BUFFER, WRITE_BUFFER - 100),
            (2 * WRITE_BUFFER - 100, 4096 + 100 - 7),
            (
                2 * WRITE_BUFFER + 4096 - 7,
                size - (2 * WRITE_BUFFER + 4096 - 7),
            ),
        ];
        for (at, len) in pieces {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(WRITE_BUFFER);
                buf.as_mut_slice()[..n].copy_from_slice(&want[at + done..at + done + n]);
                write_block(
                    &file,
                    direct.as_ref(),
                    &buf.as_slice()[..n],
                    (at + done) as u64,
                )
                .unwrap();
                done += n;
            }
        }
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&part).unwrap(), want);
        assert_eq!(buf.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
    }
}
