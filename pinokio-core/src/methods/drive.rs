//! `fs.link` and its alias `fs.share` (sections 4.2 and 6.4 of the
//! semantics note) on top of [`crate::drive`]:
//!
//! - `{ drive: { "<drive path>": "<app folder>" | ["<app folder>", ...] }, peers?: [git urls], options? }`
//! - `{ venv: "<venv folder>" }`
//!
//! App folders and the venv are resolved with plain `path.resolve(cwd, p)`.
//! The drive root is `PINOKIO_DRIVE` from the ENVIRONMENT layers (default
//! `HOME/drive`). Result: undefined.
//!
//! Failure policy: an invalid drive path fails the step before anything is
//! touched (upstream silently drops the remaining entries). Any other
//! failure undoes everything the call changed and is reported as a warning;
//! the step goes on, as upstream only logs these errors (the app keeps
//! working with normal folders). Stopping the script mid-way also undoes the
//! call.

use std::sync::atomic::Ordering;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{parse_params, MethodCx, MethodError, Registry};
use crate::drive::link::FolderOutcome;
use crate::drive::{Drive, DriveError, FolderLinkRequest, MoveOptions, Op};
use crate::events::EventKind;

pub fn register(r: &mut Registry) {
    r.register("fs.link", fs_link);
    r.register("fs.share", fs_link);
}

#[derive(Debug, Deserialize)]
struct Params {
    #[serde(default)]
    drive: Option<DriveEntries>,
    #[serde(default)]
    peers: Option<OneOrMany>,
    #[serde(default)]
    venv: Option<String>,
    #[serde(default)]
    options: Option<OptionsParam>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
struct OptionsParam {
    #[serde(default)]
    merge: Option<bool>,
    #[serde(default)]
    overwrite: Option<bool>,
    #[serde(default)]
    purge: Option<bool>,
}

/// `drive` entries in the script's key order.
#[derive(Debug)]
struct DriveEntries(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for DriveEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DriveEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object mapping drive paths to an app folder or a list of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, OneOrMany>()? {
                    out.push((k, v.into_vec()));
                }
                Ok(DriveEntries(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn fs_link(cx: &mut MethodCx<'_>, params: Value) -> Result<Option<Value>, MethodError> {
    let p: Params = parse_params(cx.method, params)?;
    if p.drive.is_none() && p.venv.is_none() {
        return Err(MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: "`drive` or `venv` is required".into(),
        });
    }
    let app_root = cx.run.app_root.clone();
    let env = cx.engine.env_for(app_root.as_deref());
    let drive = Drive::from_env(cx.engine.home().root(), app_root.as_deref(), &env);
    let stop = cx.run.stop.clone();
    let mut hook = move |_: &Op| {
        if stop.load(Ordering::SeqCst) {
            Err("the script was stopped".to_string())
        } else {
            Ok(())
        }
    };
    if let Some(entries) = p.drive {
        let options = match &p.options {
            Some(o) => MoveOptions::given(o.merge, o.overwrite, o.purge),
            None => MoveOptions::default(),
        };
        let req = FolderLinkRequest {
            app: app_root.clone().unwrap_or_else(|| cx.cwd().to_path_buf()),
            base: cx.cwd().to_path_buf(),
            entries: entries.0,
            peers: p.peers.map(OneOrMany::into_vec).unwrap_or_default(),
            options,
        };
        match drive.link_folders(&req, &mut hook) {
            Ok(report) => {
                if !report.recovered.is_empty() {
                    cx.output(format!(
                        "{}: finished {} interrupted drive operation(s)\n",
                        cx.method,
                        report.recovered.len()
                    ));
                }
                for e in &report.entries {
                    for o in &e.folders {
                        match o {
                            FolderOutcome::Linked {
                                path,
                                moved,
                                conflicts,
                                kept_conflicts,
                            } => {
                                let mut line = format!(
                                    "{}: {} -> {} (moved {moved} entr{})",
                                    cx.method,
                                    path.display(),
                                    e.folder.display(),
                                    if *moved == 1 { "y" } else { "ies" }
                                );
                                if *conflicts > 0 {
                                    match kept_conflicts {
                                        Some(k) => line.push_str(&format!(
                                            "; {conflicts} already in the drive, the app's copies kept in {}",
                                            k.display()
                                        )),
                                        None => line.push_str(&format!(
                                            "; {conflicts} already in the drive, kept the drive's copy"
                                        )),
                                    }
                                }
                                cx.output(format!("{line}\n"));
                            }
                            FolderOutcome::Already { path } => cx.output(format!(
                                "{}: {} is already linked to {}\n",
                                cx.method,
                                path.display(),
                                e.folder.display()
                            )),
                            FolderOutcome::Skipped { path, reason } => {
                                cx.emit(EventKind::Warning {
                                    index: Some(cx.index),
                                    message: format!("{}: skipped {path}: {reason}", cx.method),
                                });
                            }
                        }
                    }
                }
            }
            Err(e) => report_failure(cx, e)?,
        }
    }
    if let Some(v) = &p.venv {
        let venv = cx.resolve_plain(v);
        match drive.link_venv(&venv, app_root.as_deref(), &mut hook) {
            Ok(r) => {
                if let Some(n) = &r.notice {
                    cx.output(format!("{}: {n}\n", cx.method));
                } else {
                    let packages: std::collections::BTreeSet<&str> =
                        r.linked.iter().map(|(ns, _)| ns.as_str()).collect();
                    cx.output(format!(
                        "{}: linked {} entries of {} packages of {} into {} ({} already linked, {} files copied)\n",
                        cx.method,
                        r.linked.len(),
                        packages.len(),
                        venv.display(),
                        drive.pip_dir().display(),
                        r.already,
                        r.copied
                    ));
                }
                for (dist, why) in &r.skipped {
                    cx.output(format!("{}: left {dist} in the venv: {why}\n", cx.method));
                }
            }
            Err(e) => report_failure(cx, e)?,
        }
    }
    Ok(None)
}

/// A stop is a stop, an invalid drive path fails the step, anything else
/// (already undone) is a warning.
fn report_failure(cx: &MethodCx<'_>, e: DriveError) -> Result<(), MethodError> {
    if cx.stopped() {
        return Err(MethodError::Stopped);
    }
    if let DriveError::InvalidDrivePath { .. } = e.cause() {
        return Err(MethodError::InvalidParams {
            method: cx.method.to_string(),
            message: e.to_string(),
        });
    }
    let message = format!(
        "{} failed: {e}; the folders stay as they were (not shared)",
        cx.method
    );
    cx.output(format!("{message}\n"));
    cx.emit(EventKind::Warning {
        index: Some(cx.index),
        message,
    });
    Ok(())
}
