//! `fs.download` (section 4.2 of the semantics note) on top of
//! [`crate::download`]: `url`/`uri` (one or a list), `path` or `dir`, plus
//! our `sha256`, `md5`, `connections`, `retries`, `extract` (`true` or a
//! folder) and `keep`. Result: undefined.
//!
//! Progress: [`EventKind::Progress`] events plus a plain output line every
//! few seconds (`ProgressReporter`, shared with `hf.download`). The
//! Hugging Face token (from the run's environment, as `hf` reads it) is
//! only sent to the Hub.

use std::cell::Cell;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::net::client_for;
use super::{parse_params, MethodCx, MethodError, Registry};
use crate::download::{self, redact, DownloadError, DownloadOptions, Progress};
use crate::events::EventKind;
use crate::template::js_string;

pub fn register(r: &mut Registry) {
    r.register("fs.download", fs_download);
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    url: Option<Value>,
    uri: Option<Value>,
    path: Option<String>,
    dir: Option<String>,
    sha256: Option<String>,
    md5: Option<String>,
    connections: Option<usize>,
    retries: Option<u32>,
    /// `true` (into `dir`, or the file's folder) or a folder to extract into.
    extract: Option<Value>,
    keep: Option<bool>,
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// How often a download emits a [`EventKind::Progress`] event.
const EVENT_EVERY: Duration = Duration::from_millis(500);
/// How often a plain progress line goes to the run's output (logs,
/// frontends that do not draw bars).
const TEXT_EVERY: Duration = Duration::from_secs(5);

/// Reports one file's download for a step: `Progress` events (at most
/// every [`EVENT_EVERY`], and a final `done` one) and a plain
/// `downloading ...` output line every [`TEXT_EVERY`].
pub(crate) struct ProgressReporter<'a, 'b> {
    cx: &'a MethodCx<'b>,
    name: String,
    last_event: Cell<Option<Instant>>,
    last_text: Cell<Instant>,
    latest: Cell<Option<Progress>>,
    text: bool,
}

impl<'a, 'b> ProgressReporter<'a, 'b> {
    /// `text: false` leaves out the plain output lines (quiet steps).
    pub(crate) fn new(cx: &'a MethodCx<'b>, name: impl Into<String>, text: bool) -> Self {
        ProgressReporter {
            cx,
            name: name.into(),
            last_event: Cell::new(None),
            last_text: Cell::new(Instant::now()),
            latest: Cell::new(None),
            text,
        }
    }

    fn event(&self, p: &Progress, done: bool) {
        self.cx.emit(EventKind::Progress {
            index: self.cx.index,
            name: self.name.clone(),
            bytes: p.done,
            total: p.total,
            rate: p.rate as u64,
            eta: p.eta.map(|e| e.as_secs()),
            done,
        });
    }

    /// A report from the downloader.
    pub(crate) fn report(&self, p: Progress) {
        self.latest.set(Some(p));
        let due = self
            .last_event
            .get()
            .is_none_or(|t| t.elapsed() >= EVENT_EVERY);
        if due {
            self.last_event.set(Some(Instant::now()));
            self.event(&p, false);
        }
        if self.text && self.last_text.get().elapsed() >= TEXT_EVERY {
            self.last_text.set(Instant::now());
            self.cx.output(format!(
                "{}\n",
                download::progress_text(
                    &self.name,
                    p.done,
                    p.total,
                    p.rate as u64,
                    p.eta.map(|e| e.as_secs())
                )
            ));
        }
    }

    /// The file is complete (`bytes` long). Only downloads that reported
    /// progress get a final event.
    pub(crate) fn finish(&self, bytes: u64) {
        if let Some(last) = self.latest.get() {
            self.event(
                &Progress {
                    done: bytes,
                    total: Some(bytes),
                    rate: last.rate,
                    eta: Some(Duration::ZERO),
                },
                true,
            );
        }
    }
}

fn fs_download(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Params = parse_params(cx.method, params)?;
    let invalid = |m: &str| MethodError::InvalidParams {
        method: cx.method.to_string(),
        message: m.to_string(),
    };
    let urls: Vec<String> = match p.url.as_ref().or(p.uri.as_ref()) {
        None | Some(Value::Null) => return Err(invalid("`url` or `uri` is required")),
        Some(Value::Array(a)) => a.iter().map(js_string).collect(),
        Some(v) => vec![js_string(v)],
    };
    if p.path.is_none() && p.dir.is_none() {
        return Err(invalid("`path` or `dir` is required"));
    }
    if urls.len() > 1 && p.dir.is_none() {
        return Err(invalid("a list of URLs needs `dir`"));
    }
    // The token and endpoint the run's environment gives `hf`.
    let hf = crate::hf::HfConfig::from_env(
        &cx.engine.env_for(cx.run.app_root.as_deref()),
        cx.engine.home().cache().join("HF_HOME"),
    );
    let opts = DownloadOptions {
        sha256: p.sha256.clone(),
        md5: p.md5.clone(),
        connections: p.connections,
        retries: p.retries,
        hf_token: hf.token.clone(),
        hf_endpoint: Some(hf.endpoint.clone()),
        ..Default::default()
    };
    let cancel = cx.run.stop.clone();
    for url in urls {
        let shown = redact(&url);
        let parsed = Url::parse(&url)
            .map_err(|e| MethodError::Failed(format!("fs.download {shown}: invalid url: {e}")))?;
        let client = client_for(&parsed, None)
            .map_err(|e| MethodError::Failed(format!("fs.download {shown}: {e}")))?;
        let to_err = |e: DownloadError| match e {
            DownloadError::Cancelled => MethodError::Stopped,
            e => MethodError::Failed(format!("fs.download failed: {e}")),
        };
        let probe = download::probe(&client, &url, &opts, &cancel).map_err(to_err)?;
        let dest = match (&p.path, &p.dir) {
            (Some(path), _) => cx.resolve(path)?,
            (None, Some(dir)) => cx
                .resolve(dir)?
                .join(download::file_name_for(&parsed, Some(&probe))),
            (None, None) => unreachable!(),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reporter = ProgressReporter::new(cx, name.clone(), true);
        let progress = |pr: Progress| reporter.report(pr);
        let out =
            download::download_probed(&client, &url, &probe, &dest, &opts, &progress, &cancel)
                .map_err(to_err)?;
        if out.skipped {
            cx.output(format!("{name} is already downloaded\n"));
        } else {
            reporter.finish(out.bytes);
            cx.output(format!("downloaded {name} ({})\n", mib(out.bytes)));
        }
        let into = match &p.extract {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::String(folder)) => Some(cx.resolve(folder)?),
            Some(_) => Some(match &p.dir {
                Some(dir) => cx.resolve(dir)?,
                None => dest.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
            }),
        };
        if let Some(into) = into {
            let files = crate::extract::extract(&dest, &into)
                .map_err(|e| MethodError::Failed(format!("fs.download {name}: {e}")))?;
            cx.output(format!("extracted {name} ({} entries)\n", files.len()));
            if !p.keep.unwrap_or(false) {
                let _ = std::fs::remove_file(&dest);
            }
        }
    }
    Ok(None)
}
