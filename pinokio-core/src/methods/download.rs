//! `fs.download` (section 4.2 of the semantics note) on top of
//! [`crate::download`]: `url`/`uri` (one or a list), `path` or `dir`, plus
//! our `sha256`, `md5`, `connections`, `retries`, `extract` (`true` or a
//! folder) and `keep`. Result: undefined.

use std::cell::Cell;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::net::client_for;
use super::{parse_params, MethodCx, MethodError, Registry};
use crate::download::{self, redact, DownloadError, DownloadOptions, Progress};
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

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// "downloading x: 12.0 MiB / 40.0 MiB (30%), 8.1 MiB/s, ETA 3s"
pub(crate) fn progress_line(name: &str, p: &Progress) -> String {
    let mut s = format!("downloading {name}: {}", mib(p.done));
    if let Some(t) = p.total {
        let pct = (p.done * 100).checked_div(t).unwrap_or(100);
        s.push_str(&format!(" / {} ({pct}%)", mib(t)));
    }
    s.push_str(&format!(", {}/s", mib(p.rate as u64)));
    if let Some(e) = p.eta {
        s.push_str(&format!(", ETA {}s", e.as_secs()));
    }
    s
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
    let opts = DownloadOptions {
        sha256: p.sha256.clone(),
        md5: p.md5.clone(),
        connections: p.connections,
        retries: p.retries,
        hf_token: std::env::var("HF_TOKEN").ok(),
        hf_endpoint: std::env::var("HF_ENDPOINT").ok(),
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
        let last = Cell::new(Instant::now());
        let progress = |pr: Progress| {
            if last.get().elapsed() >= Duration::from_secs(2) {
                last.set(Instant::now());
                cx.output(format!("{}\n", progress_line(&name, &pr)));
            }
        };
        let out =
            download::download_probed(&client, &url, &probe, &dest, &opts, &progress, &cancel)
                .map_err(to_err)?;
        if out.skipped {
            cx.output(format!("{name} is already downloaded\n"));
        } else {
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
