//! Tunnel programs installed into `HOME/bin` on request (`pinokio tools
//! install cloudflared`, `pinokio expose APP --via cloudflare --install`):
//! never without the user asking, because they open public tunnels.
//!
//! - `cloudflared`: the official release binary,
//!   `https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-{amd64,arm64}`.
//! - `ngrok`: the official v3 archive,
//!   `https://bin.equinox.io/c/bNyj1mQVY4c/ngrok-v3-stable-linux-{amd64,arm64}.tgz`,
//!   unpacked with [`pinokio_core::extract`] (ngrok still needs the user's
//!   auth token: `NGROK_AUTHTOKEN` or `ngrok config add-authtoken`).
//!
//! The base URL of each is overridable (`PINOKIO_CLOUDFLARED_URL`,
//! `PINOKIO_NGROK_URL`: the asset name is appended), for mirrors and tests.
//! The download goes through the core downloader (retries, `.part` files)
//! into a folder inside `HOME/bin`; the program is made executable and run
//! once (`--version` / `version`), and only a program that runs is renamed
//! into place (atomic: a half-written or broken binary is never found).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A program this module installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Cloudflared,
    Ngrok,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::Cloudflared, Tool::Ngrok];

    /// `cloudflared`/`cloudflare`, `ngrok`.
    pub fn parse(s: &str) -> Option<Tool> {
        match s {
            "cloudflared" | "cloudflare" => Some(Tool::Cloudflared),
            "ngrok" => Some(Tool::Ngrok),
            _ => None,
        }
    }

    /// The program's file name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Cloudflared => "cloudflared",
            Tool::Ngrok => "ngrok",
        }
    }

    /// The variable that overrides the base URL.
    pub fn url_env(self) -> &'static str {
        match self {
            Tool::Cloudflared => "PINOKIO_CLOUDFLARED_URL",
            Tool::Ngrok => "PINOKIO_NGROK_URL",
        }
    }

    /// The official base URL.
    pub fn default_base(self) -> &'static str {
        match self {
            Tool::Cloudflared => {
                "https://github.com/cloudflare/cloudflared/releases/latest/download"
            }
            Tool::Ngrok => "https://bin.equinox.io/c/bNyj1mQVY4c",
        }
    }

    /// The release asset for an architecture (`amd64`, `arm64`).
    pub fn asset(self, arch: &str) -> String {
        match self {
            Tool::Cloudflared => format!("cloudflared-linux-{arch}"),
            Tool::Ngrok => format!("ngrok-v3-stable-linux-{arch}.tgz"),
        }
    }

    /// Arguments that print the version.
    fn version_args(self) -> &'static [&'static str] {
        match self {
            Tool::Cloudflared => &["--version"],
            Tool::Ngrok => &["version"],
        }
    }
}

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("unknown tool {0:?} (cloudflared, ngrok)")]
    UnknownTool(String),
    #[error("no {tool} release for this machine's architecture ({arch}); install it by hand into PATH or HOME/bin")]
    UnsupportedArch { tool: &'static str, arch: String },
    #[error("cannot download {tool}: {message}")]
    Download { tool: &'static str, message: String },
    #[error("cannot unpack {tool}: {message}")]
    Extract { tool: &'static str, message: String },
    #[error("the downloaded {tool} does not run ({message}); nothing was installed")]
    DoesNotRun { tool: &'static str, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`ensure`] or [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub tool: &'static str,
    pub path: PathBuf,
    /// The first line the program printed for its version (empty when it
    /// was found, not installed).
    pub version: String,
    /// Where it came from (`None`: it was already there).
    pub url: Option<String>,
}

/// The release architecture name of this machine.
pub fn release_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

/// Where `tool` is downloaded from: the override's base (from `env`) or
/// the official one, plus the asset for `arch`.
pub fn download_url(tool: Tool, env: &BTreeMap<String, String>, arch: &str) -> String {
    let base = env
        .get(tool.url_env())
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or(tool.default_base());
    format!("{}/{}", base.trim_end_matches('/'), tool.asset(arch))
}

/// The program on PATH (from `env`) or in `bin` (`HOME/bin`).
pub fn find(tool: Tool, bin: &Path, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let path = format!(
        "{}:{}",
        bin.display(),
        env.get("PATH").cloned().unwrap_or_default()
    );
    which::which_in(tool.program(), Some(path), "/").ok()
}

/// The program if it is found (see [`find`]), else [`install`] it.
pub fn ensure(
    tool: Tool,
    bin: &Path,
    env: &BTreeMap<String, String>,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<Installed, InstallError> {
    if let Some(path) = find(tool, bin, env) {
        return Ok(Installed {
            tool: tool.program(),
            path,
            version: String::new(),
            url: None,
        });
    }
    install(tool, bin, env, progress)
}

/// Download, check and place `tool` in `bin` (replacing what is there).
/// `progress` gets bytes so far and the size when known.
pub fn install(
    tool: Tool,
    bin: &Path,
    env: &BTreeMap<String, String>,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<Installed, InstallError> {
    let name = tool.program();
    let arch = release_arch().ok_or_else(|| InstallError::UnsupportedArch {
        tool: name,
        arch: std::env::consts::ARCH.into(),
    })?;
    let url = download_url(tool, env, arch);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { path, source }
    };
    std::fs::create_dir_all(bin).map_err(io(bin))?;
    // a work folder inside bin: the final rename stays on one file system
    let work = bin.join(format!(".install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let result = fetch_and_place(tool, &url, &work, bin, progress);
    let _ = std::fs::remove_dir_all(&work);
    let (path, version) = result?;
    Ok(Installed {
        tool: name,
        path,
        version,
        url: Some(url),
    })
}

fn fetch_and_place(
    tool: Tool,
    url: &str,
    work: &Path,
    bin: &Path,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<(PathBuf, String), InstallError> {
    let name = tool.program();
    let download_err = |message: String| InstallError::Download {
        tool: name,
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| download_err(format!("{url}: {e}")))?;
    let client = pinokio_core::methods::net::client_for(&parsed, None).map_err(download_err)?;
    let asset = work.join(tool.asset(release_arch().unwrap_or("amd64")));
    let cancel = AtomicBool::new(false);
    let opts = pinokio_core::download::DownloadOptions {
        // a small file: one connection, fewer retries than model weights
        connections: Some(1),
        retries: Some(3),
        ..Default::default()
    };
    pinokio_core::download::download(
        &client,
        url,
        &asset,
        &opts,
        &|p| progress(p.done, p.total),
        &cancel,
    )
    .map_err(|e| download_err(e.to_string()))?;
    let program = match tool {
        Tool::Cloudflared => asset,
        Tool::Ngrok => {
            let out = work.join("unpacked");
            let files = pinokio_core::extract::extract(&asset, &out).map_err(|e| {
                InstallError::Extract {
                    tool: name,
                    message: e.to_string(),
                }
            })?;
            files
                .into_iter()
                .find(|p| p.file_name().is_some_and(|n| n == name) && p.is_file())
                .ok_or_else(|| InstallError::Extract {
                    tool: name,
                    message: format!("the archive from {url} holds no `{name}` program"),
                })?
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| InstallError::Io {
                path: program.clone(),
                source,
            },
        )?;
    }
    let version =
        run_version(&program, tool.version_args(), Duration::from_secs(20)).map_err(|message| {
            InstallError::DoesNotRun {
                tool: name,
                message,
            }
        })?;
    let dest = bin.join(name);
    std::fs::rename(&program, &dest).map_err(|source| InstallError::Io {
        path: dest.clone(),
        source,
    })?;
    Ok((dest, version))
}

/// Run `program args` and return the first line it printed; an error
/// when it cannot start, exits non-zero or takes longer than `limit`.
fn run_version(program: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
    use crate::command::{CommandRunner, SystemRunner};
    let out = SystemRunner
        .run(program, args, limit)
        .map_err(|e| e.to_string())?;
    let first = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    if !out.success() {
        let code = out
            .code
            .map_or("a signal".to_string(), |c| format!("exit code {c}"));
        return Err(format!(
            "`{}` ended with {code}{}",
            args.join(" "),
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_and_overridden() {
        let mut env = BTreeMap::new();
        assert_eq!(
            download_url(Tool::Cloudflared, &env, "amd64"),
            "https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-amd64"
        );
        assert_eq!(
            download_url(Tool::Ngrok, &env, "arm64"),
            "https://bin.equinox.io/c/bNyj1mQVY4c/ngrok-v3-stable-linux-arm64.tgz"
        );
        env.insert(
            "PINOKIO_CLOUDFLARED_URL".to_string(),
            "http://127.0.0.1:9/dl/".to_string(),
        );
        assert_eq!(
            download_url(Tool::Cloudflared, &env, "arm64"),
            "http://127.0.0.1:9/dl/cloudflared-linux-arm64"
        );
        assert_eq!(Tool::parse("cloudflare"), Some(Tool::Cloudflared));
        assert_eq!(Tool::parse("lt"), None);
    }
}
