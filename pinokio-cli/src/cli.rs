//! Command-line types (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

/// Environment variables, shown at the end of `--help`.
const ENV_HELP: &str = "\
Environment:
  PINOKIO_HOME            Pinokio home folder when --home is not given (default: the
                          platform's persistent storage on a cloud machine, e.g.
                          /workspace/pinokio on RunPod, else ~/pinokio; see `pinokio doctor`)
  PINOKIO_CACHE_DIR       folder for big caches (HOME/cache becomes a link to it)
  PINOKIO_LOAD_LIMIT_MS   time limit in milliseconds for loading a JavaScript script or
                          evaluating a menu (default: 10000); a load that runs longer is
                          stopped and reported as an error
  PINOKIO_STRICT_EXIT     1: a shell.run command that exits non-zero fails its step
                          (default: exit codes are reported, not fatal, as in Pinokio)

Exit status:
  0    the run finished (or a daemon was stopped with Ctrl-C)
  1    the script could not be loaded, a step failed, or the run was stopped otherwise
       (info: unknown app id; catalog update: the new catalog could not be read)
  2    invalid command line
  130  the run was interrupted with Ctrl-C (or SIGTERM)
  141  stdout was closed while the run was writing (the run is stopped)";

/// Run Pinokio launcher scripts headless.
#[derive(Debug, Parser)]
#[command(name = "pinokio", version, about, after_help = ENV_HELP)]
pub struct Cli {
    /// Pinokio home folder (default: $PINOKIO_HOME, else ~/pinokio).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script (.json or .js) and stream what it does.
    Run(RunArgs),
    /// Show what each step of a script would do on a given machine, without running it.
    Plan(PlanArgs),
    /// Show a launcher's menu (pinokio.js) as it evaluates now.
    Menu(MenuArgs),
    /// Search the app catalog (no TEXT: list every app).
    Search(SearchArgs),
    /// Show what the catalog knows about an app, and its launcher when installed.
    Info(InfoArgs),
    /// Manage the app catalog (HOME/catalog.json).
    Catalog(CatalogArgs),
    /// Download a launcher (catalog id, git URL or folder) into HOME/api and run its install item.
    Install(InstallArgs),
    /// Install if needed, start, wait for the web UI and print its URL; stops on Ctrl-C.
    Up(UpArgs),
    /// Stop an app and remove its folder (shared drive data is kept).
    Uninstall(UninstallArgs),
    /// The shared model drive: dedupe identical files, usage, links.
    Drive(DriveArgs),
    /// Print an app's shell logs: the last lines of its scripts, merged by time.
    Logs(LogsArgs),
    /// Update an app: run its update script, else `git pull --ff-only` in its folder.
    Update(UpdateArgs),
    /// Stop an app's scripts and run its reset script.
    Reset(ResetArgs),
    /// One line per installed app: state and folder (and URL, pids, uptime while it runs).
    Status(StatusArgs),
    /// Start an installed app in the background engine; print its URL and return.
    Start(StartArgs),
    /// Stop an app running in the background engine.
    Stop(StopArgs),
    /// Make a running app reachable from your browser: the platform's proxy, else a tunnel.
    Expose(ExposeArgs),
    /// Stop exposing an app (its tunnels stop).
    Unexpose(StopArgs),
    /// Tunnel programs in HOME/bin: `tools install cloudflared|ngrok`, `tools list`.
    Tools(ToolsArgs),
    /// Run the background engine in the foreground (started on demand by `start`).
    Engine(EngineArgs),
    /// Run the engine with the HTTP API and web UI (and the control socket).
    Serve(ServeArgs),
    /// Stop every app and the background engine.
    Shutdown,
    /// Show the platform, the chosen folders, GPUs, memory, disks and tools, and what to fix.
    Doctor(DoctorArgs),
}

impl Command {
    /// Commands that only print what they find (no processes, downloads or
    /// file changes to leave half done): a closed stdout may end them.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Plan(_)
                | Command::Menu(_)
                | Command::Search(_)
                | Command::Info(_)
                | Command::Status(_)
                | Command::Logs(_)
                | Command::Doctor(_)
        )
    }
}

/// `--arg KEY=VALUE`, repeatable.
#[derive(Debug, Args, Clone, Default)]
pub struct ScriptArgs {
    /// A script argument (`args.KEY` in templates). VALUE is parsed as JSON when
    /// it is valid JSON (5, true, null, "text", [1,2], {"a":1}), else taken as
    /// plain text. Repeating a KEY collects the values into an array.
    #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub args: Vec<(String, Value)>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Path of the script, relative to the current folder.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    #[command(flatten)]
    pub args: ScriptArgs,
    /// Print one JSON object per event on stdout instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Path of the script, relative to the current folder.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Platform to plan for (default: this machine's).
    #[arg(long, value_parser = ["linux", "win32", "darwin"])]
    pub platform: Option<String>,
    /// CPU architecture to plan for (default: this machine's).
    #[arg(long, value_parser = ["x64", "arm64"])]
    pub arch: Option<String>,
    /// GPU vendor to plan for (default: none).
    #[arg(long, value_parser = ["nvidia", "amd", "apple", "none"])]
    pub gpu: Option<String>,
    /// GPU model to plan for, e.g. "NVIDIA GeForce RTX 4090".
    #[arg(long, value_name = "NAME")]
    pub gpu_model: Option<String>,
    #[command(flatten)]
    pub args: ScriptArgs,
    /// Print the plan as one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MenuArgs {
    /// The app folder (holding pinokio.js), relative to the current folder,
    /// or the name of an installed app (HOME/api/<name>).
    #[arg(value_name = "APP_DIR|APP")]
    pub app_dir: PathBuf,
    /// Print the menu as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A catalog app id, a git URL, or a launcher folder.
    #[arg(value_name = "ID|GIT_URL|DIR")]
    pub source: String,
    /// Folder name under HOME/api (default: the repository name).
    #[arg(long)]
    pub name: Option<String>,
    /// Rewrite git URLs starting with FROM to start with TO (like git's
    /// insteadOf); repeatable. HOME/git-mirrors holds permanent ones.
    #[arg(long = "git-mirror", value_name = "FROM=TO", value_parser = parse_mirror)]
    pub git_mirror: Vec<pinokio_core::apps::Mirror>,
    /// Only download; do not run the install item.
    #[arg(long)]
    pub no_run: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// An installed app name, a catalog app id, a git URL, or a launcher folder.
    #[arg(value_name = "APP")]
    pub app: String,
    /// Folder name under HOME/api when the app gets installed.
    #[arg(long)]
    pub name: Option<String>,
    /// Rewrite git URLs (FROM=TO), as for `install`.
    #[arg(long = "git-mirror", value_name = "FROM=TO", value_parser = parse_mirror)]
    pub git_mirror: Vec<pinokio_core::apps::Mirror>,
    /// Also show the scripts' output and steps.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The installed app's name (its folder under HOME/api).
    #[arg(value_name = "APP")]
    pub app: String,
    /// Run this script of the app instead of following its menu (e.g. start.js).
    #[arg(long)]
    pub script: Option<String>,
    #[command(flatten)]
    pub args: ScriptArgs,
    /// Expose the web UI (default on cloud platforms: through the platform's proxy).
    #[arg(long, overrides_with = "no_expose")]
    pub expose: bool,
    /// Do not expose the web UI.
    #[arg(long)]
    pub no_expose: bool,
    /// How to expose it.
    #[arg(long, value_name = "HOW", value_parser = ["auto", "platform", "cloudflare", "ngrok", "localtunnel"])]
    pub via: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// The running app's name.
    #[arg(value_name = "APP")]
    pub app: String,
    /// How: the platform's proxy, or a public tunnel (default: the platform's
    /// proxy when there is one, else the first tunnel program found). A public
    /// tunnel lets anyone with its URL use the app.
    #[arg(long, value_name = "HOW", default_value = "auto", value_parser = ["auto", "platform", "cloudflare", "ngrok", "localtunnel"])]
    pub via: String,
    /// Install the tunnel program of `--via cloudflare|ngrok` into HOME/bin
    /// when it is not on PATH or in HOME/bin (official release download).
    #[arg(long)]
    pub install: bool,
}

#[derive(Debug, Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Download a tunnel program's official release into HOME/bin (the base
    /// URL is overridable: PINOKIO_CLOUDFLARED_URL, PINOKIO_NGROK_URL).
    Install {
        /// `cloudflared` or `ngrok`.
        #[arg(value_name = "TOOL", value_parser = ["cloudflared", "ngrok"])]
        tool: String,
        /// Install even when the program is found already.
        #[arg(long)]
        force: bool,
    },
    /// Where the tunnel programs are (PATH or HOME/bin), or how to install them.
    List,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The app's name.
    #[arg(value_name = "APP")]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct EngineArgs {}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; a non-loopback one (0.0.0.0) needs the
    /// token on every request.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port.
    #[arg(long, default_value_t = 42000)]
    pub port: u16,
    /// Print the API token (HOME/http-token) even when it already existed.
    #[arg(long)]
    pub show_token: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The installed app's name (its folder under HOME/api).
    #[arg(value_name = "APP")]
    pub app: String,
    /// Keep printing lines as they are written, until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the last lines to print.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub lines: usize,
    /// Only this script's log (a path relative to the app, a file name, or a
    /// name without extension: `install`).
    #[arg(long, value_name = "S")]
    pub script: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The installed app's name.
    #[arg(value_name = "APP")]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The installed app's name.
    #[arg(value_name = "APP")]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// How long the tools' version commands may take, in milliseconds
    /// (a tool that does not answer is shown without its version).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub tool_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The installed app's name (its folder under HOME/api).
    #[arg(value_name = "APP")]
    pub app: String,
}

#[derive(Debug, Args)]
pub struct DriveArgs {
    #[command(subcommand)]
    pub command: DriveCommand,
}

#[derive(Debug, Subcommand)]
pub enum DriveCommand {
    /// Find identical files across apps (HOME/api/*) and the drive by
    /// SHA-256 and keep one copy: the others become hard links (symlinks to
    /// the drive's copy across file systems). Reports the bytes saved.
    Dedupe {
        /// Only report what would be linked.
        #[arg(long)]
        dry_run: bool,
        /// Ignore smaller files: bytes, or with a K, M, G suffix (KiB...).
        #[arg(long, value_name = "N", default_value = "1M", value_parser = parse_size)]
        min_size: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disk usage per app and per drive (links not counted twice).
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the links made into the drive and check them; exit status 1
    /// when one is broken (its target vanished, a loop, replaced).
    Links {
        /// First forget links that no longer exist (uninstalled apps).
        #[arg(long)]
        prune: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo a link: replace it by a copy of what it points to (the drive
    /// keeps its data).
    Unlink {
        /// The link (a path listed by `pinokio drive links`).
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

/// `1048576`, `512K`, `1M`, `2G`, `1MiB`, `1.5G` -> bytes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a size such as 1048576, 512K, 1M or 2G, got {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    Ok((n * mult as f64) as u64)
}

fn parse_mirror(s: &str) -> Result<pinokio_core::apps::Mirror, String> {
    pinokio_core::apps::Mirror::parse(s).ok_or_else(|| format!("expected FROM=TO, got {s:?}"))
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to look for (ignoring case) in app ids, names, tags, authors,
    /// categories and summaries. Best matches first: exact id, id or name
    /// prefix, name, tag, anything else.
    #[arg(value_name = "TEXT")]
    pub text: Vec<String>,
    /// Only apps of this category (IMAGE, AUDIO, VIDEO, UTILITY, LLM, 3D).
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Only apps with this tag (e.g. TTS).
    #[arg(long, value_name = "T")]
    pub tag: Option<String>,
    /// Print the matching apps as a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The app id (see `pinokio search`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print the facts as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Replace HOME/catalog.json with a catalog from a file or an http(s) URL
    /// (this catalog's format or the upstream cleaned app list). The old
    /// catalog stays when the new one is not valid.
    Update {
        /// A catalog file or URL.
        #[arg(long, value_name = "FILE|URL")]
        from: String,
    },
}

/// Parse `KEY=VALUE`: VALUE as JSON when it parses, else as a string.
pub fn parse_key_value(s: &str) -> Result<(String, Value), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the key is empty in {s:?}; expected KEY=VALUE"));
    }
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

impl ScriptArgs {
    /// The arguments as one object (`None` when there are none). A key given
    /// more than once becomes an array of its values, in order.
    pub fn to_object(&self) -> Option<Value> {
        if self.args.is_empty() {
            return None;
        }
        let mut grouped: Vec<(String, Vec<Value>)> = Vec::new();
        for (k, v) in &self.args {
            match grouped.iter_mut().find(|(gk, _)| gk == k) {
                Some((_, vals)) => vals.push(v.clone()),
                None => grouped.push((k.clone(), vec![v.clone()])),
            }
        }
        let map = grouped
            .into_iter()
            .map(|(k, mut vals)| {
                let v = if vals.len() == 1 {
                    vals.remove(0)
                } else {
                    Value::Array(vals)
                };
                (k, v)
            })
            .collect();
        Some(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use serde_json::json;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn values_parse_as_json_or_text() {
        assert_eq!(parse_key_value("n=5").unwrap(), ("n".into(), json!(5)));
        assert_eq!(
            parse_key_value("f=true").unwrap(),
            ("f".into(), json!(true))
        );
        assert_eq!(
            parse_key_value("z=null").unwrap(),
            ("z".into(), Value::Null)
        );
        assert_eq!(
            parse_key_value("s=bob").unwrap(),
            ("s".into(), json!("bob"))
        );
        assert_eq!(
            parse_key_value("s=\"5\"").unwrap(),
            ("s".into(), json!("5"))
        );
        assert_eq!(
            parse_key_value("o={\"a\":[1]}").unwrap(),
            ("o".into(), json!({"a": [1]}))
        );
        assert_eq!(parse_key_value("e=").unwrap(), ("e".into(), json!("")));
        assert_eq!(
            parse_key_value("u=a=b").unwrap(),
            ("u".into(), json!("a=b"))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=1").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("x").is_err());
        assert!(parse_size("5Q").is_err());
    }

    #[test]
    fn repeated_keys_become_arrays() {
        let a = ScriptArgs {
            args: vec![
                ("x".into(), json!(1)),
                ("y".into(), json!("a")),
                ("x".into(), json!([2])),
            ],
        };
        assert_eq!(a.to_object().unwrap(), json!({"x": [1, [2]], "y": "a"}));
        assert_eq!(ScriptArgs::default().to_object(), None);
    }
}
