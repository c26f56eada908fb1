//! Web UI URLs found while shells run (issue 6: URL detection).
//!
//! The pattern library and the `/proc` port reader live in `pinokio-cloud`
//! (`urls`, `ports`); the engine only knows these traits. A frontend
//! installs a [`UrlWatcherFactory`] with
//! [`crate::engine::EngineBuilder::url_watchers`]; the process manager then
//! gives every shell its own [`UrlWatcher`], fed in the shell's reader
//! thread with the normalised output (before `on` handlers see it), and
//! ticked a few times a second so it can confirm guesses against the ports
//! the shell's process tree listens on.
//!
//! What the engine does with a URL (Pinokio semantics first): the
//! launcher's own `on` handlers and `local.url` are what menus and `up`
//! use. A detected URL is only a fallback where the engine needs a web UI
//! URL and the launcher gave none (`apps::up` when a running daemon script
//! never set `local.url`, the background engine's `status`/`expose`), plus
//! an [`crate::events::EventKind::UrlDetected`] event. It is never written
//! into `local`. URLs of a shell are forgotten when the shell exits.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// How a URL was found (most trusted first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlSource {
    /// A framework's own "server is up" line (Gradio, Uvicorn, ...).
    Framework,
    /// A generic `http://host:port` in the output, confirmed by a port the
    /// shell's process tree listens on.
    Confirmed,
    /// A port the shell's process tree listens on (nothing printed).
    Port,
}

/// A web UI URL found in a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundUrl {
    /// What to open on this machine (`0.0.0.0` made `127.0.0.1`).
    pub url: String,
    /// `gradio`, `uvicorn`, ..., `generic`, or `listening` for a port.
    pub framework: String,
    /// A share link or tunnel (reachable from the internet), not a local
    /// address.
    pub public: bool,
    pub source: UrlSource,
}

/// Watches one shell. Runs in the shell's reader thread: `feed` must be
/// cheap (well under a millisecond per line).
pub trait UrlWatcher: Send {
    /// Normalised output (ANSI stripped, line breaks `\n`), in whatever
    /// chunks it arrives. Returns the URLs it made certain now.
    fn feed(&mut self, text: &str) -> Vec<FoundUrl>;
    /// Called a few times a second while the shell runs. Confirms pending
    /// generic URLs; with `poll_ports` (the shell has shown no URL and its
    /// script is an idle daemon) also reports the ports the shell's process
    /// tree listens on. Implementations rate-limit their own scans.
    fn tick(&mut self, poll_ports: bool) -> Vec<FoundUrl>;
}

/// Makes a watcher for each new shell.
pub trait UrlWatcherFactory: Send + Sync {
    /// A watcher for a shell whose leader is `pid` (its process tree is
    /// the leader and its descendants).
    fn watcher(&self, pid: u32) -> Box<dyn UrlWatcher>;
}

/// A shared factory (what [`crate::process::ManagerOptions`] carries).
#[derive(Clone)]
pub struct UrlWatchers(pub Arc<dyn UrlWatcherFactory>);

impl std::fmt::Debug for UrlWatchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlWatchers")
    }
}

#[derive(Debug, Clone)]
struct Entry {
    script: String,
    shell_id: String,
    found: FoundUrl,
}

/// The URLs detected in the engine's live shells.
#[derive(Debug, Default)]
pub struct DetectedUrls {
    entries: Mutex<Vec<Entry>>,
}

impl DetectedUrls {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remember a URL of a shell; `false` if that shell had reported it.
    pub fn add(&self, script: &str, shell_id: &str, found: &FoundUrl) -> bool {
        let mut e = self.lock();
        if e.iter()
            .any(|x| x.shell_id == shell_id && x.found.url == found.url)
        {
            return false;
        }
        e.push(Entry {
            script: script.to_string(),
            shell_id: shell_id.to_string(),
            found: found.clone(),
        });
        true
    }

    /// Forget a shell's URLs (it exited).
    pub fn forget_shell(&self, shell_id: &str) {
        self.lock().retain(|x| x.shell_id != shell_id);
    }

    /// Every URL of a script's shells, in the order found.
    pub fn of_script(&self, script: &str) -> Vec<FoundUrl> {
        self.lock()
            .iter()
            .filter(|x| x.script == script)
            .map(|x| x.found.clone())
            .collect()
    }

    /// Every URL of the shells of scripts whose id starts with `prefix`
    /// (an app folder followed by `/`).
    pub fn under(&self, prefix: &str) -> Vec<FoundUrl> {
        self.lock()
            .iter()
            .filter(|x| x.script.starts_with(prefix))
            .map(|x| x.found.clone())
            .collect()
    }

    /// The URL to open among `found`: local addresses only, a framework's
    /// line before a confirmed guess before a bare port, the first found on
    /// ties.
    pub fn best(found: &[FoundUrl]) -> Option<&FoundUrl> {
        found
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.public)
            .min_by_key(|(i, f)| (f.source, *i))
            .map(|(_, f)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(url: &str, source: UrlSource, public: bool) -> FoundUrl {
        FoundUrl {
            url: url.into(),
            framework: "x".into(),
            public,
            source,
        }
    }

    #[test]
    fn best_prefers_framework_lines_and_skips_public_links() {
        let d = DetectedUrls::default();
        assert!(d.add(
            "/a/start.js",
            "s1",
            &f("http://127.0.0.1:1", UrlSource::Port, false)
        ));
        assert!(!d.add(
            "/a/start.js",
            "s1",
            &f("http://127.0.0.1:1", UrlSource::Port, false)
        ));
        d.add(
            "/a/start.js",
            "s1",
            &f("https://x.gradio.live", UrlSource::Framework, true),
        );
        d.add(
            "/a/start.js",
            "s2",
            &f("http://127.0.0.1:2", UrlSource::Framework, false),
        );
        d.add(
            "/b/start.js",
            "s3",
            &f("http://127.0.0.1:3", UrlSource::Framework, false),
        );
        let all = d.under("/a/");
        assert_eq!(all.len(), 3);
        assert_eq!(DetectedUrls::best(&all).unwrap().url, "http://127.0.0.1:2");
        d.forget_shell("s2");
        let all = d.of_script("/a/start.js");
        assert_eq!(DetectedUrls::best(&all).unwrap().url, "http://127.0.0.1:1");
        d.forget_shell("s1");
        assert!(DetectedUrls::best(&d.under("/a/")).is_none());
    }
}
