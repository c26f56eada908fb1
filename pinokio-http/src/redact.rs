//! Secrets never leave the server: the API token, and the values of
//! secret-looking variables (`HF_TOKEN`, `NGROK_AUTHTOKEN`,
//! `PINOKIO_SHARE_PASSCODE`, `*_API_KEY`, ...) from the process environment
//! and the ENVIRONMENT files, are replaced by `***` in every response and
//! event the server writes.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a scan of the ENVIRONMENT files is reused (every job start
/// rescans too).
const REFRESH: Duration = Duration::from_millis(500);

/// Values shorter than this are not treated as secrets (`1`, `true`...).
const MIN_LEN: usize = 6;

pub const MASK: &str = "***";

/// Is a variable with this name a secret?
pub fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "TOKEN", "SECRET", "PASSWORD", "PASSCODE", "API_KEY", "APIKEY",
    ]
    .iter()
    .any(|w| k.contains(w))
}

pub struct Redactor {
    home: PathBuf,
    token: RwLock<Option<String>>,
    cache: Mutex<Option<(Instant, Vec<String>)>>,
}

impl Redactor {
    pub fn new(home: &Path) -> Self {
        Redactor {
            home: home.to_path_buf(),
            token: RwLock::new(None),
            cache: Mutex::new(None),
        }
    }

    pub fn set_token(&self, token: &str) {
        if let Ok(mut t) = self.token.write() {
            *t = Some(token.to_string());
        }
    }

    /// Forget the cached scan (an ENVIRONMENT file changed).
    pub fn refresh(&self) {
        if let Ok(mut c) = self.cache.lock() {
            *c = None;
        }
    }

    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(t) = self.token.read() {
            out.extend(t.clone());
        }
        let Ok(mut c) = self.cache.lock() else {
            return out;
        };
        match &*c {
            Some((at, s)) if at.elapsed() < REFRESH => out.extend(s.iter().cloned()),
            _ => {
                let s = self.scan();
                out.extend(s.iter().cloned());
                *c = Some((Instant::now(), s));
            }
        }
        out
    }

    fn scan(&self) -> Vec<String> {
        let mut values: Vec<String> = std::env::vars()
            .filter(|(k, _)| secret_name(k))
            .map(|(_, v)| v)
            .collect();
        let mut files = vec![self.home.join("ENVIRONMENT")];
        if let Ok(rd) = std::fs::read_dir(self.home.join("api")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    files.push(p.join("ENVIRONMENT"));
                    files.push(p.join("pinokio").join("ENVIRONMENT"));
                }
            }
        }
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            values.extend(
                pinokio_core::envfile::parse(&text)
                    .into_iter()
                    .filter(|(k, _)| secret_name(k))
                    .map(|(_, v)| v),
            );
        }
        let mut values: Vec<String> = values
            .into_iter()
            .map(|v| v.trim().to_string())
            .filter(|v| v.len() >= MIN_LEN)
            .collect();
        // longest first, so a secret containing another is masked whole
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        values
    }

    /// `text` with every secret (raw, or as escaped inside a JSON string)
    /// replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in self.secrets() {
            let escaped = serde_json::to_string(&s).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            for needle in [s.as_str(), escaped] {
                if !needle.is_empty() && out.contains(needle) {
                    out = Cow::Owned(out.replace(needle, MASK));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_token_and_environment_secrets() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("api/app")).unwrap();
        std::fs::write(
            t.path().join("api/app/ENVIRONMENT"),
            "HF_TOKEN=hf_abcdefghijkl\nPORT=123456\nSHORT_TOKEN=ab\n",
        )
        .unwrap();
        let r = Redactor::new(t.path());
        r.set_token("tok123456789");
        let s = r.redact("a hf_abcdefghijkl b tok123456789 c 123456 ab");
        assert_eq!(s, "a *** b *** c 123456 ab");
        assert!(matches!(r.redact("nothing"), Cow::Borrowed(_)));
        assert!(secret_name("NGROK_AUTHTOKEN"));
        assert!(secret_name("PINOKIO_SHARE_PASSCODE"));
        assert!(!secret_name("PINOKIO_SHARE_CLOUDFLARE"));
    }
}
