//! The command-line tools launchers and exposure need, found with their
//! versions. Version commands run in parallel threads under one time limit
//! (a cold `node` or a pyenv shim can take 100 ms); a tool that does not
//! answer in time is reported as found without a version. Conda's version
//! is read from its `conda-meta` folder instead of starting Python.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Serialize;

use crate::command::{CommandError, CommandRunner};

/// A tool to look for.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    pub name: &'static str,
    /// Program names, first found wins.
    pub programs: &'static [&'static str],
    /// Arguments that print the version.
    pub version_args: &'static [&'static str],
    /// Missing means most launchers fail.
    pub required: bool,
    /// What it is for.
    pub purpose: &'static str,
    /// How to get it.
    pub install: &'static str,
}

/// Everything `pinokio doctor` checks.
pub const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "git",
        programs: &["git"],
        version_args: &["--version"],
        required: true,
        purpose: "installing and updating apps (git clone)",
        install: "apt-get install -y git",
    },
    ToolSpec {
        name: "python",
        programs: &["python3", "python"],
        version_args: &["--version"],
        required: true,
        purpose: "Python apps and their virtual environments",
        install: "apt-get install -y python3 python3-venv",
    },
    ToolSpec {
        name: "uv",
        programs: &["uv"],
        version_args: &["--version"],
        required: false,
        purpose: "fast venvs and installs",
        install: "nothing to do: it is installed into HOME/bin on first use",
    },
    ToolSpec {
        name: "node",
        programs: &["node"],
        version_args: &["--version"],
        required: false,
        purpose: "JavaScript apps (npm, pnpm)",
        install: "apt-get install -y nodejs npm (or conda install -c conda-forge nodejs)",
    },
    ToolSpec {
        name: "conda",
        programs: &["conda", "mamba", "micromamba"],
        version_args: &["--version"],
        required: false,
        purpose: "launchers that ask for a conda environment",
        install: "install Miniforge (https://conda-forge.org/download/)",
    },
    ToolSpec {
        name: "ffmpeg",
        programs: &["ffmpeg"],
        version_args: &["-version"],
        required: false,
        purpose: "audio and video apps",
        install: "apt-get install -y ffmpeg",
    },
    ToolSpec {
        name: "cloudflared",
        programs: &["cloudflared"],
        version_args: &["--version"],
        required: false,
        purpose: "a public URL through a Cloudflare quick tunnel",
        install: "pinokio tools install cloudflared (the official release binary, into HOME/bin)",
    },
    ToolSpec {
        name: "ngrok",
        programs: &["ngrok"],
        version_args: &["version"],
        required: false,
        purpose: "a public URL through ngrok (needs an auth token)",
        install: "pinokio tools install ngrok (into HOME/bin), then set NGROK_AUTHTOKEN",
    },
];

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Found,
    Missing,
    /// Found, but the version command failed or did not answer in time.
    NoVersion,
}

/// One tool's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub status: ToolStatus,
    /// The program found (`python3`, `micromamba`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why there is no version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub required: bool,
    pub purpose: &'static str,
    pub install: &'static str,
}

/// The first version number in a tool's banner (`git version 2.47.3`,
/// `Python 3.11.7`, `v20.11.1`, `ffmpeg version n7.0`, `uv 0.4.18 (...)`).
pub fn parse_version(text: &str) -> Option<String> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z][0-9A-Za-z.]*)?)").expect("version regex")
    });
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    re.captures(first).map(|c| c[1].to_string())
}

/// Conda's version from `<prefix>/conda-meta/conda-<version>-<build>.json`
/// for a `conda` at `<prefix>/bin/conda` or `<prefix>/condabin/conda`.
pub fn conda_version_from_meta(conda: &Path) -> Option<String> {
    let prefix = conda.parent()?.parent()?;
    let rd = std::fs::read_dir(prefix.join("conda-meta")).ok()?;
    rd.flatten().find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let rest = name.strip_prefix("conda-")?.strip_suffix(".json")?;
        let version = rest.split('-').next()?;
        version
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| version.to_string())
    })
}

fn locate(
    runner: &dyn CommandRunner,
    spec: &ToolSpec,
    extra_dirs: &[PathBuf],
) -> Option<(String, PathBuf)> {
    for p in spec.programs {
        if let Some(path) = runner.find(p) {
            return Some((p.to_string(), path));
        }
        for d in extra_dirs {
            let candidate = d.join(p);
            if candidate.is_file() {
                return Some((p.to_string(), candidate));
            }
        }
    }
    None
}

/// Look for every tool in [`TOOLS`]: on `PATH`, then in `extra_dirs`
/// (`HOME/bin`, `HOME/bin/miniforge/bin`). Version commands run in parallel;
/// the whole call returns within about `limit`.
pub fn probe_tools(
    runner: Arc<dyn CommandRunner>,
    extra_dirs: &[PathBuf],
    limit: Duration,
) -> Vec<Tool> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, Result<String, String>)>();
    let mut tools: Vec<Tool> = Vec::with_capacity(TOOLS.len());
    for (i, spec) in TOOLS.iter().enumerate() {
        let found = locate(runner.as_ref(), spec, extra_dirs);
        let mut tool = Tool {
            name: spec.name,
            status: ToolStatus::Missing,
            program: None,
            path: None,
            version: None,
            problem: None,
            required: spec.required,
            purpose: spec.purpose,
            install: spec.install,
        };
        if let Some((program, path)) = found {
            tool.status = ToolStatus::NoVersion;
            tool.program = Some(program.clone());
            tool.path = Some(path.clone());
            if program == "conda" {
                if let Some(v) = conda_version_from_meta(&path) {
                    tool.version = Some(v);
                    tool.status = ToolStatus::Found;
                }
            }
            if tool.version.is_none() {
                let runner = runner.clone();
                let tx = tx.clone();
                let args = spec.version_args;
                std::thread::spawn(move || {
                    let answer = match runner.run(&path, args, limit) {
                        Ok(o) => {
                            // python 2 prints its version on stderr
                            let text = if o.stdout.trim().is_empty() {
                                o.stderr
                            } else {
                                o.stdout
                            };
                            parse_version(&text).ok_or_else(|| {
                                format!("no version in the output of {program} {}", args.join(" "))
                            })
                        }
                        Err(CommandError::Timeout { limit, .. }) => {
                            Err(format!("no answer within {} ms", limit.as_millis()))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send((i, answer));
                });
            }
        }
        tools.push(tool);
    }
    drop(tx);
    let pending = tools
        .iter()
        .filter(|t| t.status == ToolStatus::NoVersion)
        .count();
    // a small margin past the limit for the runner to report its timeout
    let deadline = start + limit + Duration::from_millis(20);
    for _ in 0..pending {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Ok(v))) => {
                tools[i].version = Some(v);
                tools[i].status = ToolStatus::Found;
            }
            Ok((i, Err(e))) => tools[i].problem = Some(e),
            Err(_) => break,
        }
    }
    for t in &mut tools {
        if t.status == ToolStatus::NoVersion && t.problem.is_none() {
            t.problem = Some(format!("no answer within {} ms", limit.as_millis()));
        }
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_real_banners() {
        let cases = [
            ("git version 2.47.3\n", "2.47.3"),
            ("Python 3.11.7\n", "3.11.7"),
            ("v20.20.2\n", "20.20.2"),
            ("uv 0.4.18 (a6d6dc7 2024-10-07)\n", "0.4.18"),
            ("conda 24.1.2\n", "24.1.2"),
            ("micromamba 1.5.8\n", "1.5.8"),
            (
                "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 the FFmpeg developers\nbuilt with gcc 13",
                "6.1.1-3ubuntu5",
            ),
            ("ffmpeg version n7.0 Copyright (c) 2000-2024", "7.0"),
            (
                "cloudflared version 2024.6.1 (built 2024-06-12-1234 UTC)\n",
                "2024.6.1",
            ),
            ("ngrok version 3.10.0\n", "3.10.0"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_version(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(parse_version("no digits here"), None);
    }

    #[test]
    fn conda_version_from_conda_meta() {
        let t = tempfile::tempdir().unwrap();
        let meta = t.path().join("conda-meta");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::create_dir_all(t.path().join("bin")).unwrap();
        for f in [
            "conda-libmamba-solver-24.1.0-pyhd8ed1ab_0.json",
            "conda-package-handling-2.2.0-pyh38be061_0.json",
            "conda-24.1.2-py311h38be061_0.json",
            "python-3.11.7-hab00c5b_1_cpython.json",
        ] {
            std::fs::write(meta.join(f), "{}").unwrap();
        }
        assert_eq!(
            conda_version_from_meta(&t.path().join("bin/conda")).as_deref(),
            Some("24.1.2")
        );
        assert_eq!(
            conda_version_from_meta(Path::new("/nonexistent/bin/conda")),
            None
        );
    }
}
