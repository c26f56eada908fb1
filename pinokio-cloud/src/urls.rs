//! Finding an app's web UI URL in what it prints.
//!
//! A pattern library for the servers launchers start (Gradio and its share
//! links, Streamlit, Uvicorn/FastAPI, Flask, Django, ComfyUI, A1111/Forge,
//! text-generation-webui, Ollama, Vite, Next.js, Node/Express, Jupyter,
//! TensorBoard, SillyTavern, Fooocus, KoboldCpp, InvokeAI, Cloudflare
//! quick tunnels) and a guarded generic `http://host:port`. Lines are
//! matched after ANSI escapes are removed (Vite colours the middle of its
//! URL). Wildcard listen addresses are normalised to a reachable host:
//! `0.0.0.0` to `127.0.0.1`, `[::]` to `[::1]`.
//!
//! [`UrlDetector`] keeps a little state: URLs already reported are not
//! reported again, and marker lines (`Launching Web UI with arguments`,
//! `Starting Text generation web UI`, `Jupyter Server ... is running at`)
//! name the app behind a plain Gradio or generic URL.
//!
//! Wiring into the engine: [`ShellWatchers`] (from [`shell_watchers`]) is
//! the engine's [`pinokio_core::urlwatch::UrlWatcherFactory`]: frontends
//! install it with `EngineBuilder::url_watchers`. Each shell gets a
//! [`ShellUrlWatcher`]: a [`UrlDetector`] fed in the shell's reader thread.
//! A framework's line is trusted at once; a generic `http://host:port` only
//! once the port is among the listening ports of the shell's process tree
//! ([`crate::ports::listening_ports`]); while a daemon script's shell has
//! shown no URL, its listening ports are polled and reported as
//! `listening` URLs.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pinokio_core::urlwatch::{FoundUrl, UrlSource, UrlWatcher, UrlWatcherFactory};

use regex::Regex;
use serde::Serialize;

/// Where a URL can be opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlKind {
    /// This machine (loopback or a wildcard listen address).
    Local,
    /// The local network or the container's own address.
    Network,
    /// The internet (share links, tunnels).
    Public,
}

/// How sure the match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// A framework's own "server is up" line.
    Framework,
    /// Some `http://host:port` in a line; confirm with the listening ports.
    Generic,
}

/// A URL found in a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectedUrl {
    /// Normalised URL to open (`http://127.0.0.1:7860`).
    pub url: String,
    /// The URL as printed (`http://0.0.0.0:7860`).
    pub printed: String,
    /// `gradio`, `streamlit`, `uvicorn`, ..., or `generic`.
    pub framework: &'static str,
    pub kind: UrlKind,
    pub confidence: Confidence,
    /// Host after normalisation (`127.0.0.1`, `[::1]`, `localhost`).
    pub host: String,
    /// The port (the scheme's default when none is printed).
    pub port: u16,
}

/// Which part of a match holds the address.
#[derive(Clone, Copy)]
enum Capture {
    /// `url`: a whole `http(s)://` URL.
    Url,
    /// `hostport`: `host:port` without scheme (http assumed).
    HostPort,
    /// `port`: only a port (`http://localhost:PORT`).
    Port,
}

struct Pattern {
    framework: &'static str,
    re: Regex,
    capture: Capture,
    /// The framework name may be replaced by a marker's (A1111 over gradio).
    generic_name: bool,
}

/// Marker lines naming the app whose URL comes next.
const MARKERS: &[(&str, &str)] = &[
    ("Launching Web UI with arguments", "a1111"),
    ("Starting Text generation web UI", "text-generation-webui"),
    ("Fooocus version", "fooocus"),
    ("is running at:", "jupyter"),
    ("Or copy and paste one of these URLs", "jupyter"),
];

const HOSTPORT: &str =
    r"(?P<hostport>\[[0-9A-Fa-f:]*\]:\d{1,5}|\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}|localhost:\d{1,5})";
const URL: &str = r"(?P<url>https?://\S+)";

fn patterns() -> &'static [Pattern] {
    static P: OnceLock<Vec<Pattern>> = OnceLock::new();
    P.get_or_init(|| {
        let p = |framework, re: &str, capture, generic_name| Pattern {
            framework,
            re: Regex::new(&re.replace("{URL}", URL).replace("{HOSTPORT}", HOSTPORT))
                .expect("URL pattern"),
            capture,
            generic_name,
        };
        use Capture::*;
        vec![
            p(
                "gradio",
                r"Running on (?:local|public) URL:\s*{URL}",
                Url,
                true,
            ),
            p(
                "streamlit",
                r"(?:Local|Network|External) URL:\s*{URL}",
                Url,
                false,
            ),
            p("uvicorn", r"Uvicorn running on {URL}", Url, false),
            p("invokeai", r"Invoke running on {URL}", Url, false),
            p("flask", r"^\s*\* Running on {URL}", Url, false),
            p("django", r"development server at {URL}", Url, false),
            p("comfyui", r"To see the GUI go to:\s*{URL}", Url, false),
            p(
                "ollama",
                r"Listening on {HOSTPORT} \(version",
                HostPort,
                false,
            ),
            p("vite", r"➜\s+(?:Local|Network):\s+{URL}", Url, false),
            p("nextjs", r"^\s*-\s+(?:Local|Network):\s+{URL}", Url, false),
            p("nextjs", r"started server on \S+, url: {URL}", Url, false),
            p("tensorboard", r"TensorBoard \S+ at {URL}", Url, false),
            p(
                "jupyter",
                r"\[[IWDE] [^\]]*(?:ServerApp|NotebookApp|LabApp)\]\s+{URL}",
                Url,
                false,
            ),
            p(
                "sillytavern",
                r"Go to: {URL} to open SillyTavern",
                Url,
                false,
            ),
            p(
                "sillytavern",
                r"SillyTavern is listening on:?\s*{URL}",
                Url,
                false,
            ),
            p(
                "sillytavern",
                r"SillyTavern is listening on(?: IPv[46])?:?\s*{HOSTPORT}",
                HostPort,
                false,
            ),
            p("fooocus", r"Use the app with {URL}", Url, false),
            p(
                "koboldcpp",
                r"connect to custom endpoint at {URL}",
                Url,
                false,
            ),
            p("node", r"Server running at {URL}", Url, false),
            p(
                "express",
                r"(?i)\blistening on (?:port\s*:?\s*|:)(?P<port>\d{2,5})\b",
                Port,
                true,
            ),
            p(
                "cloudflared",
                r"(?P<url>https://[a-z0-9-]+\.trycloudflare\.com)",
                Url,
                false,
            ),
        ]
    })
}

fn generic() -> &'static Regex {
    static G: OnceLock<Regex> = OnceLock::new();
    G.get_or_init(|| {
        Regex::new(
            r"(?P<url>https?://(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]|[A-Za-z0-9][A-Za-z0-9-]*):\d{2,5}(?:[/?#]\S*)?)",
        )
        .expect("generic URL pattern")
    })
}

/// Words that make a generic URL someone else's (a proxy, a download, a
/// client connection) rather than this app's server.
const NOT_OURS: &[&str] = &[
    "proxy",
    "connect",
    "download",
    "fetch",
    "request",
    "error",
    "refused",
    "failed",
    "retry",
    "timed out",
    "upstream",
    "redis",
    "postgres",
    "mongodb",
];

/// Remove ANSI escape sequences (CSI such as colours, OSC such as terminal
/// hyperlinks). Borrowed when there are none.
pub fn strip_ansi(s: &str) -> Cow<'_, str> {
    if !s.contains('\x1b') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                // parameters and intermediates, then one final byte @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                // until BEL or ESC \
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Public hosts of share links and tunnels.
const PUBLIC_SUFFIXES: &[&str] = &[
    ".gradio.live",
    ".trycloudflare.com",
    ".ngrok-free.app",
    ".ngrok.app",
    ".ngrok.io",
    ".loca.lt",
    ".proxy.runpod.net",
];

fn kind_of(host: &str) -> UrlKind {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare == "localhost" {
        return UrlKind::Local;
    }
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() || ip.is_unspecified() {
            UrlKind::Local
        } else {
            UrlKind::Network
        };
    }
    if PUBLIC_SUFFIXES.iter().any(|s| bare.ends_with(s)) || bare.contains('.') {
        UrlKind::Public
    } else {
        // a dotless name: the container's or machine's hostname
        UrlKind::Network
    }
}

/// Split and normalise a URL: wildcard hosts become reachable ones
/// (`0.0.0.0` -> `127.0.0.1`, `[::]` -> `[::1]`), trailing punctuation is
/// dropped. Returns `(url, host, port)`.
pub fn normalize_url(raw: &str) -> Option<(String, String, u16)> {
    let mut raw = raw.trim_end_matches(['.', ',', ';', ')', '}', '\'', '"', '`', '>']);
    // a "]" closes an IPv6 host, unless it closes a bracket around the URL
    while raw.ends_with(']') && raw.matches(']').count() > raw.matches('[').count() {
        raw = raw[..raw.len() - 1].trim_end_matches(['.', ',', ';', ')']);
    }
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (inside, after) = h.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let host = match host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_string(),
        "[::]" | "[0:0:0:0:0:0:0:0]" => "[::1]".to_string(),
        _ => host,
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let port_n = port.unwrap_or(default);
    let url = match port {
        Some(p) => format!("{scheme}://{host}:{p}{tail}"),
        None => format!("{scheme}://{host}{tail}"),
    };
    Some((url, host, port_n))
}

fn build(printed: &str, framework: &'static str, confidence: Confidence) -> Option<DetectedUrl> {
    let (url, host, port) = normalize_url(printed)?;
    let printed = printed
        .trim_end_matches(['.', ',', ';', ')', '}', '\'', '"', '`', '>'])
        .to_string();
    Some(DetectedUrl {
        kind: kind_of(&host),
        url,
        printed,
        framework,
        confidence,
        host,
        port,
    })
}

/// The URL in one line, without state (no marker names, no de-duplication).
pub fn detect_line(line: &str) -> Option<DetectedUrl> {
    detect_clean(&strip_ansi(line), None)
}

fn detect_clean(line: &str, hint: Option<&'static str>) -> Option<DetectedUrl> {
    if !(line.contains("http") || line.contains("istening")) {
        return None;
    }
    if line.contains("<<PINOKIO_SHELL>>") {
        // the echoed command line, not the app's output
        return None;
    }
    for p in patterns() {
        let Some(c) = p.re.captures(line) else {
            continue;
        };
        let framework = match (p.generic_name, hint) {
            (true, Some(h)) => h,
            _ => p.framework,
        };
        let printed = match p.capture {
            Capture::Url => c["url"].to_string(),
            Capture::HostPort => format!("http://{}", &c["hostport"]),
            Capture::Port => format!("http://localhost:{}", &c["port"]),
        };
        if let Some(d) = build(&printed, framework, Confidence::Framework) {
            return Some(d);
        }
    }
    let lower = line.to_ascii_lowercase();
    if NOT_OURS.iter().any(|w| lower.contains(w)) {
        return None;
    }
    let c = generic().captures(line)?;
    build(&c["url"], hint.unwrap_or("generic"), Confidence::Generic)
}

/// Feeds on an app's output, line by line, and reports each new URL once.
#[derive(Debug, Default)]
pub struct UrlDetector {
    seen: HashSet<String>,
    found: Vec<DetectedUrl>,
    hint: Option<&'static str>,
    partial: String,
}

impl UrlDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// One complete line (ANSI escapes allowed). A URL not reported before
    /// is returned and remembered.
    pub fn feed(&mut self, line: &str) -> Option<DetectedUrl> {
        let clean = strip_ansi(line);
        let clean = clean.trim_end_matches(['\r', '\n']);
        self.note_marker(clean);
        let d = detect_clean(clean, self.hint)?;
        // `http://h:1` and `http://h:1/` are one URL
        if !self.seen.insert(d.url.trim_end_matches('/').to_string()) {
            return None;
        }
        self.found.push(d.clone());
        Some(d)
    }

    /// A chunk of output as it arrives (any number of lines, `\r` or `\n`
    /// separated, the last one possibly unfinished: it is kept for the next
    /// chunk). Returns the new URLs.
    pub fn feed_text(&mut self, chunk: &str) -> Vec<DetectedUrl> {
        self.partial.push_str(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find(['\n', '\r']) {
            let line: String = self.partial.drain(..=i).collect();
            out.extend(self.feed(&line));
        }
        // an endless line (a progress bar without newlines) is cut
        if self.partial.len() > 64 * 1024 {
            let line = std::mem::take(&mut self.partial);
            out.extend(self.feed(&line));
        }
        out
    }

    fn note_marker(&mut self, line: &str) {
        if let Some(v) = line.strip_prefix("Version: f") {
            if v.starts_with(|c: char| c.is_ascii_digit()) {
                self.hint = Some("forge");
                return;
            }
        }
        for (needle, name) in MARKERS {
            if line.contains(needle) {
                // Forge also prints A1111's launch line: keep the more precise name
                if !(*name == "a1111" && self.hint == Some("forge")) {
                    self.hint = Some(name);
                }
                return;
            }
        }
    }

    /// Every URL reported so far, in order.
    pub fn found(&self) -> &[DetectedUrl] {
        &self.found
    }

    /// The URL to open on this machine: a local one before a network one,
    /// a framework's before a generic guess, the first seen on ties. Public
    /// URLs are left to [`UrlDetector::public`].
    pub fn best(&self) -> Option<&DetectedUrl> {
        self.found
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind != UrlKind::Public)
            .min_by_key(|(i, d)| (d.kind, d.confidence, *i))
            .map(|(_, d)| d)
    }

    /// The first public URL (a share link or tunnel the app printed).
    pub fn public(&self) -> Option<&DetectedUrl> {
        self.found.iter().find(|d| d.kind == UrlKind::Public)
    }
}

/// Tuning of [`ShellUrlWatcher`]s (tests shrink the times and point
/// `proc_root` elsewhere).
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How often the listening ports of a daemon shell that has shown no
    /// URL are polled.
    pub poll_every: Duration,
    /// How often generic URLs waiting for confirmation are checked.
    pub confirm_every: Duration,
    /// How long a generic URL may wait for its port to listen.
    pub confirm_for: Duration,
    /// The `/proc` to read.
    pub proc_root: PathBuf,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_every: Duration::from_secs(2),
            confirm_every: Duration::from_millis(500),
            confirm_for: Duration::from_secs(120),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// The engine's URL watcher factory: one [`ShellUrlWatcher`] per shell.
#[derive(Debug, Clone, Default)]
pub struct ShellWatchers {
    pub opts: WatchOptions,
}

impl UrlWatcherFactory for ShellWatchers {
    fn watcher(&self, pid: u32) -> Box<dyn UrlWatcher> {
        Box::new(ShellUrlWatcher::new(pid, self.opts.clone()))
    }
}

/// Watchers with the default tuning, ready for
/// `EngineBuilder::url_watchers`.
pub fn shell_watchers() -> Arc<ShellWatchers> {
    Arc::new(ShellWatchers::default())
}

/// One shell's watcher: its output through a [`UrlDetector`], generic
/// URLs confirmed by the listening ports of the shell's process tree.
#[derive(Debug)]
pub struct ShellUrlWatcher {
    pid: u32,
    opts: WatchOptions,
    detector: UrlDetector,
    /// Generic URLs waiting for their port, with when they were seen.
    pending: Vec<(DetectedUrl, Instant)>,
    last_scan: Option<Instant>,
    last_poll: Option<Instant>,
    /// URLs reported (normalised, without a trailing `/`).
    reported: HashSet<String>,
}

impl ShellUrlWatcher {
    pub fn new(pid: u32, opts: WatchOptions) -> Self {
        ShellUrlWatcher {
            pid,
            opts,
            detector: UrlDetector::new(),
            pending: Vec::new(),
            last_scan: None,
            last_poll: None,
            reported: HashSet::new(),
        }
    }

    fn report(
        &mut self,
        url: String,
        framework: &str,
        public: bool,
        source: UrlSource,
    ) -> Option<FoundUrl> {
        let key = url.trim_end_matches('/').to_string();
        if !self.reported.insert(key) {
            return None;
        }
        Some(FoundUrl {
            url,
            framework: framework.to_string(),
            public,
            source,
        })
    }

    /// Read the tree's listening ports; confirm pending generic URLs.
    fn scan(&mut self) -> (Vec<std::net::SocketAddr>, Vec<FoundUrl>) {
        let now = Instant::now();
        self.last_scan = Some(now);
        let listening = crate::ports::listening_ports_in(&self.opts.proc_root, self.pid);
        let ports: HashSet<u16> = listening.iter().map(|a| a.port()).collect();
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        for (d, seen) in pending {
            if ports.contains(&d.port) {
                out.extend(self.report(
                    d.url.clone(),
                    d.framework,
                    d.kind == UrlKind::Public,
                    UrlSource::Confirmed,
                ));
            } else if now.duration_since(seen) < self.opts.confirm_for {
                self.pending.push((d, seen));
            }
        }
        (listening, out)
    }
}

impl UrlWatcher for ShellUrlWatcher {
    fn feed(&mut self, text: &str) -> Vec<FoundUrl> {
        let mut out = Vec::new();
        let mut new_generic = false;
        for d in self.detector.feed_text(text) {
            match d.confidence {
                Confidence::Framework => {
                    out.extend(self.report(
                        d.url.clone(),
                        d.framework,
                        d.kind == UrlKind::Public,
                        UrlSource::Framework,
                    ));
                }
                Confidence::Generic => {
                    // a bounded queue: a log full of URLs costs nothing
                    if self.pending.len() < 32 {
                        self.pending.push((d, Instant::now()));
                        new_generic = true;
                    }
                }
            }
        }
        // confirm at once, unless a scan just ran (the next tick will)
        if new_generic
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
        {
            out.extend(self.scan().1);
        }
        out
    }

    fn tick(&mut self, poll_ports: bool) -> Vec<FoundUrl> {
        let due = |t: Option<Instant>, every: Duration| t.is_none_or(|t| t.elapsed() >= every);
        let poll = poll_ports && due(self.last_poll, self.opts.poll_every);
        let confirm = !self.pending.is_empty() && due(self.last_scan, self.opts.confirm_every);
        if !(poll || confirm) {
            return Vec::new();
        }
        let (listening, mut out) = self.scan();
        if poll {
            self.last_poll = self.last_scan;
            for addr in listening {
                let url = crate::ports::reachable_url(addr);
                out.extend(self.report(url, "listening", false, UrlSource::Port));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = normalize_url;
        assert_eq!(
            n("http://0.0.0.0:7860/").unwrap(),
            ("http://127.0.0.1:7860/".into(), "127.0.0.1".into(), 7860)
        );
        assert_eq!(
            n("http://[::]:8188").unwrap(),
            ("http://[::1]:8188".into(), "[::1]".into(), 8188)
        );
        assert_eq!(n("https://abc.gradio.live").unwrap().2, 443);
        assert_eq!(
            n("http://localhost:5173/.").unwrap().0,
            "http://localhost:5173/"
        );
        assert_eq!(n("ftp://x:1"), None);
        assert_eq!(n("http://host:notaport"), None);
    }

    #[test]
    fn ansi_is_removed_even_inside_urls() {
        let s = "  \x1b[32m➜\x1b[39m  \x1b[1mLocal\x1b[22m:   \x1b[36mhttp://localhost:\x1b[1m5173\x1b[22m/\x1b[39m";
        assert_eq!(strip_ansi(s), "  ➜  Local:   http://localhost:5173/");
        let osc = "\x1b]8;;http://x\x07link\x1b]8;;\x07 done";
        assert_eq!(strip_ansi(osc), "link done");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("127.0.0.1"), UrlKind::Local);
        assert_eq!(kind_of("[::1]"), UrlKind::Local);
        assert_eq!(kind_of("172.17.0.2"), UrlKind::Network);
        assert_eq!(kind_of("c0ffee123456"), UrlKind::Network);
        assert_eq!(kind_of("abc.gradio.live"), UrlKind::Public);
    }
}
