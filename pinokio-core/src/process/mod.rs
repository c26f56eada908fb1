//! The process manager behind `shell.run`: every shell runs in its own
//! pseudo-terminal (as Pinokio does with node-pty), one reader thread per
//! shell turns its output into events, logs and a ring buffer, and kills
//! take the whole process tree down.
//!
//! - [`ProcessManager::spawn`] starts `argv` in a PTY with exactly the given
//!   environment. The child is a session and process-group leader
//!   (`pgid == pid`).
//! - Output goes, per read (up to 64 KiB), to the [`OutputSink`] (raw text,
//!   ANSI kept), through the [`Normalizer`] to the subscribers' channels
//!   ([`ShellEvent::Output`]), to a ring buffer of the last lines
//!   ([`ProcessManager::tail`]) and to timestamped transcripts (the shell's
//!   `app_log` and the manager's global log; see [`log`]).
//! - [`ShellEvent::Exited`] is always the last event of a channel, after all
//!   output the shell produced before it exited.
//! - [`ProcessManager::kill_shell`] / [`kill_group`](ProcessManager::kill_group)
//!   / [`kill_all`](ProcessManager::kill_all) terminate whole trees (see
//!   [`kill`]).

pub mod kill;
pub mod log;
pub mod normalize;
pub mod shim;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

use self::kill::Tree;
use self::log::{now_ms, LogFile, LogRegistry, Transcript, DEFAULT_LOG_LIMIT};
use self::normalize::LineAssembler;
pub use self::normalize::{normalize, Normalizer, Utf8Decoder};
use self::shim::{ShimMeta, ShimSpec};
use self::wire::FrameReader;

/// How to start one shell.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Caller-chosen unique id.
    pub shell_id: String,
    /// The script id (absolute script path) owning the shell.
    pub group: String,
    /// The step index that started it (for event attribution).
    pub step: Option<usize>,
    /// Run nesting depth (for event attribution).
    pub depth: usize,
    /// Program and arguments.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment (nothing is inherited).
    pub env: BTreeMap<String, String>,
    pub cols: u16,
    pub rows: u16,
    /// Transcript file for this shell's output (appended to).
    pub app_log: Option<PathBuf>,
    /// The command line shown in records and log headers.
    pub command_label: String,
}

/// What a shell's channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEvent {
    /// Normalised text: ANSI stripped, `\r\n` and lone `\r` turned into `\n`.
    Output(String),
    /// The shell's leader exited: its exit code, `None` if a signal killed
    /// it. Always the last event.
    Exited(Option<i32>),
}

/// A started shell.
#[derive(Debug)]
pub struct ShellHandle {
    pub id: String,
    pub pid: u32,
    pub pgid: u32,
    pub events: Receiver<ShellEvent>,
}

/// What the manager knows about one shell.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProcessRecord {
    pub shell_id: String,
    pub group: String,
    pub pid: u32,
    pub pgid: u32,
    pub command: String,
    pub cwd: PathBuf,
    pub started_ms: u64,
    pub log_path: Option<PathBuf>,
    pub running: bool,
    pub exit_code: Option<i32>,
}

/// Receives the raw output (lossy UTF-8, ANSI kept, for colour terminals)
/// of every shell, with its record.
///
/// Called from the shells' reader threads: implementations must be quick
/// and must not call back into the manager's kill functions. Output that
/// processes left behind by an exited shell (background jobs still holding
/// the terminal) keep producing arrives after `exited`.
pub trait OutputSink: Send + Sync {
    fn output(&self, rec: &ProcessRecord, step: Option<usize>, depth: usize, raw: &str);
    fn exited(&self, rec: &ProcessRecord, step: Option<usize>, depth: usize, code: Option<i32>);
    /// The shell's URL watcher (see [`crate::urlwatch`]) found a web UI
    /// URL. Called before the output that showed it reaches the shell's
    /// subscribers (`on` handlers).
    fn url_found(
        &self,
        _rec: &ProcessRecord,
        _step: Option<usize>,
        _depth: usize,
        _found: &crate::urlwatch::FoundUrl,
    ) {
    }
    /// Should a shell that has shown no URL yet have its listening ports
    /// polled? (The engine says yes for shells of idle daemon scripts.)
    fn poll_ports(&self, _rec: &ProcessRecord) -> bool {
        false
    }
}

/// An [`OutputSink`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullOutputSink;

impl OutputSink for NullOutputSink {
    fn output(&self, _: &ProcessRecord, _: Option<usize>, _: usize, _: &str) {}
    fn exited(&self, _: &ProcessRecord, _: Option<usize>, _: usize, _: Option<i32>) {}
}

/// Process manager errors.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{command}` in {}: {source}", cwd.display())]
    Spawn {
        command: String,
        cwd: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a shell: the command line is empty")]
    EmptyCommand,
    #[error("a shell with id {0:?} is already running")]
    AlreadyRunning(String),
    #[error("no shell with id {0:?}")]
    NotFound(String),
    #[error("shell {0:?} is not running any more")]
    NotRunning(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Tuning knobs (the defaults suit the engine; tests shrink them).
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Rotate a log file when it would grow past this many bytes.
    pub log_limit: u64,
    /// Normalised lines kept per shell for [`ProcessManager::tail`].
    pub ring_lines: usize,
    /// Exited shells kept in [`ProcessManager::list`].
    pub keep_exited: usize,
    /// When the last clone of the manager is dropped, kill every shell
    /// with this grace (`None`: leave them running).
    pub kill_on_drop: Option<Duration>,
    /// Run each shell under a supervisor process that owns its terminal,
    /// so shells outlive this process and can be re-adopted (see
    /// [`shim`]). `None`: the terminals live in this process.
    pub supervisor: Option<Supervisor>,
    /// One URL watcher per shell, fed in its reader thread (see
    /// [`crate::urlwatch`]). `None`: no URL detection.
    pub url_watchers: Option<crate::urlwatch::UrlWatchers>,
}

/// How to start shell supervisors.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// The program (the `pinokio` binary, or any binary that calls
    /// [`shim::main_from_stdin`] when given `args`).
    pub program: PathBuf,
    /// Arguments that make `program` a supervisor (`["__shim"]`).
    pub args: Vec<String>,
    /// Where supervisors keep their sockets and meta files (`HOME/run`).
    pub run_dir: PathBuf,
}

/// What [`ProcessManager::adopt`] found.
#[derive(Debug, Clone)]
pub enum Adoption {
    /// The shell is supervised again: output, input and kills work as for
    /// a shell this manager started.
    Live(ProcessRecord),
    /// The shell ended while nobody was attached (its meta file is removed).
    Ended(ShimMeta),
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            log_limit: DEFAULT_LOG_LIMIT,
            ring_lines: 1000,
            keep_exited: 256,
            kill_on_drop: Some(Duration::from_secs(2)),
            supervisor: None,
            url_watchers: None,
        }
    }
}

/// Longest line kept in the ring buffer and logs; longer lines are cut.
const MAX_LINE_CHARS: usize = 8192;
/// Read size.
const CHUNK: usize = 64 * 1024;
/// After the leader exited, how long output may keep arriving (from
/// processes still holding the terminal) before `Exited` is sent anyway.
const MAX_DRAIN: Duration = Duration::from_millis(500);
/// After the leader exited, a pause this long in the output ends the drain.
const DRAIN_QUIET_MS: i32 = 30;
/// Poll timeout while the leader runs (exit is usually seen as EOF first).
const IDLE_POLL_MS: i32 = 100;
/// How long a supervisor may take to start and answer.
const SUPERVISOR_START: Duration = Duration::from_secs(20);
/// How often a shell's URL watcher is ticked (it rate-limits its own
/// port scans).
const URL_TICK: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    partial: String,
}

struct ShellState {
    record: ProcessRecord,
    subscribers: Vec<Sender<ShellEvent>>,
    /// `Exited` went out (record.running is false from then on).
    exited_sent: bool,
    /// The leader was reaped: its pid is no longer ours.
    reaped: bool,
    /// The reader saw EOF: nothing holds the PTY any more.
    reader_done: bool,
    /// After EOF, processes of the shell's group/session were still alive.
    lingering: bool,
    exited_at: Option<Instant>,
}

struct Shell {
    id: String,
    group: String,
    tty: Option<PathBuf>,
    state: Mutex<ShellState>,
    cond: Condvar,
    ring: Mutex<Ring>,
    writer: Mutex<Option<ShellWriter>>,
    master: Mutex<Option<Box<dyn MasterPty + Send>>>,
}

/// Where typed input goes.
enum ShellWriter {
    /// The terminal, owned by this process.
    Pty(File),
    /// The shell's supervisor.
    Shim(UnixStream),
}

impl Shell {
    /// A running shell with a fresh state.
    fn new(
        record: &ProcessRecord,
        tty: Option<PathBuf>,
        subscribers: Vec<Sender<ShellEvent>>,
        writer: ShellWriter,
        master: Option<Box<dyn MasterPty + Send>>,
    ) -> Arc<Shell> {
        Arc::new(Shell {
            id: record.shell_id.clone(),
            group: record.group.clone(),
            tty,
            state: Mutex::new(ShellState {
                record: record.clone(),
                subscribers,
                exited_sent: false,
                reaped: false,
                reader_done: false,
                lingering: false,
                exited_at: None,
            }),
            cond: Condvar::new(),
            ring: Mutex::new(Ring::default()),
            writer: Mutex::new(Some(writer)),
            master: Mutex::new(master),
        })
    }

    fn st(&self) -> MutexGuard<'_, ShellState> {
        lock(&self.state)
    }

    fn record(&self) -> ProcessRecord {
        self.st().record.clone()
    }

    /// Whether processes of this shell may still exist.
    fn active(&self) -> bool {
        let st = self.st();
        !st.reader_done || st.lingering || !st.reaped
    }

    fn tree(&self) -> Tree {
        let st = self.st();
        Tree {
            leader: st.record.pid as i32,
            leader_ours: !st.reaped,
            pgid: st.record.pgid as i32,
            tty: if st.reader_done {
                None
            } else {
                self.tty.clone()
            },
        }
    }
}

struct Inner {
    global_log: Arc<Mutex<LogFile>>,
    global_log_path: PathBuf,
    logs: LogRegistry,
    sink: Arc<dyn OutputSink>,
    /// In spawn order; an id may appear more than once (the newest wins for
    /// lookups, older ones are kept while they may have processes).
    shells: Mutex<Vec<Arc<Shell>>>,
    opts: ManagerOptions,
}

/// Kills every shell when the last [`ProcessManager`] clone goes away.
struct DropGuard {
    inner: Arc<Inner>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(grace) = self.inner.opts.kill_on_drop {
            let all = lock(&self.inner.shells).clone();
            kill_shells(all, grace);
        }
    }
}

/// Starts, tracks, logs and kills shells. Cheap to clone; all clones share
/// the same shells.
#[derive(Clone)]
pub struct ProcessManager {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager")
            .field("shells", &lock(&self.inner.shells).len())
            .finish()
    }
}

impl ProcessManager {
    /// A manager logging every shell's output to `global_log`.
    pub fn new(global_log: PathBuf, sink: Arc<dyn OutputSink>) -> Self {
        Self::with_options(global_log, sink, ManagerOptions::default())
    }

    pub fn with_options(
        global_log: PathBuf,
        sink: Arc<dyn OutputSink>,
        opts: ManagerOptions,
    ) -> Self {
        let logs = LogRegistry::new(opts.log_limit);
        let global_log_path = global_log;
        let global_log = logs.get(&global_log_path);
        let inner = Arc::new(Inner {
            global_log,
            global_log_path,
            logs,
            sink,
            shells: Mutex::new(Vec::new()),
            opts,
        });
        ProcessManager {
            _guard: Arc::new(DropGuard {
                inner: inner.clone(),
            }),
            inner,
        }
    }

    fn find(&self, shell_id: &str) -> Option<Arc<Shell>> {
        lock(&self.inner.shells)
            .iter()
            .rev()
            .find(|s| s.id == shell_id)
            .cloned()
    }

    /// Start a shell. Output flows as described in the module docs; the
    /// returned handle's channel ends with [`ShellEvent::Exited`].
    pub fn spawn(&self, spec: SpawnSpec) -> Result<ShellHandle, ProcessError> {
        if spec.argv.is_empty() {
            return Err(ProcessError::EmptyCommand);
        }
        let spawn_err = |source: std::io::Error| ProcessError::Spawn {
            command: spec.command_label.clone(),
            cwd: spec.cwd.clone(),
            source,
        };
        if !spec.cwd.is_dir() {
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the working directory does not exist or is not a folder",
            )));
        }
        if self.is_running(&spec.shell_id) {
            return Err(ProcessError::AlreadyRunning(spec.shell_id));
        }
        if let Some(sup) = self.inner.opts.supervisor.clone() {
            return self.spawn_supervised(spec, &sup);
        }

        let pair = native_pty_system()
            .openpty(PtySize {
                rows: spec.rows.max(1),
                cols: spec.cols.max(1),
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| ProcessError::Io {
                context: "cannot open a pseudo-terminal".into(),
                source: std::io::Error::other(format!("{e:#}")),
            })?;
        let mut cmd = CommandBuilder::from_argv(spec.argv.iter().map(OsString::from).collect());
        cmd.env_clear();
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.cwd(&spec.cwd);
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| spawn_err(anyhow_to_io(e)))?;
        // Our copy of the slave must go, or EOF never comes.
        drop(pair.slave);
        let master = pair.master;
        let child = KillOnFail(Some(child));

        let pid = child.get().process_id().unwrap_or(0);
        // SAFETY: getpgid has no memory-safety preconditions.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        let pgid = if pgid > 0 { pgid as u32 } else { pid };
        let tty = master.tty_name();
        let fd = master.as_raw_fd().ok_or_else(|| ProcessError::Io {
            context: "the pseudo-terminal has no file descriptor".into(),
            source: std::io::Error::other("no fd"),
        })?;
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source| ProcessError::Io { context, source }
        };
        let reader = dup_fd(fd).map_err(io_err("cannot duplicate the terminal descriptor"))?;
        let writer = dup_fd(fd).map_err(io_err("cannot duplicate the terminal descriptor"))?;

        let record = ProcessRecord {
            shell_id: spec.shell_id.clone(),
            group: spec.group.clone(),
            pid,
            pgid,
            command: spec.command_label.clone(),
            cwd: spec.cwd.clone(),
            started_ms: now_ms(),
            log_path: spec.app_log.clone(),
            running: true,
            exit_code: None,
        };
        let (tx, rx) = channel();
        let shell = Shell::new(
            &record,
            tty,
            vec![tx],
            ShellWriter::Pty(writer),
            Some(master),
        );
        self.register(&shell)?;
        let transcript = Transcript {
            app: spec.app_log.as_deref().map(|p| self.inner.logs.get(p)),
            global: self.inner.global_log.clone(),
            group: spec.group.clone(),
            shell_id: spec.shell_id.clone(),
        };
        let ctx = Reader {
            d: Delivery::new(
                self.inner.clone(),
                shell.clone(),
                record,
                spec.step,
                spec.depth,
                Some(transcript),
            ),
            child,
            file: reader,
        };
        let name = format!("pty-{}", spec.shell_id.chars().take(40).collect::<String>());
        // If the thread cannot start, dropping `ctx` kills the child.
        let started = std::thread::Builder::new()
            .name(name)
            .spawn(move || ctx.run());
        if let Err(e) = started {
            lock(&self.inner.shells).retain(|s| !Arc::ptr_eq(s, &shell));
            return Err(ProcessError::Io {
                context: "cannot start the shell's reader thread".into(),
                source: e,
            });
        }
        Ok(ShellHandle {
            id: spec.shell_id,
            pid,
            pgid,
            events: rx,
        })
    }

    /// Add a new shell, unless one with its id is running.
    fn register(&self, shell: &Arc<Shell>) -> Result<(), ProcessError> {
        let mut shells = lock(&self.inner.shells);
        if shells
            .iter()
            .rev()
            .find(|s| s.id == shell.id)
            .is_some_and(|s| s.st().record.running)
        {
            return Err(ProcessError::AlreadyRunning(shell.id.clone()));
        }
        shells.push(shell.clone());
        Ok(())
    }

    /// Start a shell under a supervisor process (see [`shim`]).
    fn spawn_supervised(
        &self,
        spec: SpawnSpec,
        sup: &Supervisor,
    ) -> Result<ShellHandle, ProcessError> {
        let spawn_err = |msg: String| ProcessError::Spawn {
            command: spec.command_label.clone(),
            cwd: spec.cwd.clone(),
            source: std::io::Error::other(msg),
        };
        let io_err = |context: String| move |source| ProcessError::Io { context, source };
        std::fs::create_dir_all(&sup.run_dir).map_err(io_err(format!(
            "cannot create the supervisor folder {}",
            sup.run_dir.display()
        )))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&sup.run_dir, std::fs::Permissions::from_mode(0o700));
        }
        let key = shim_key(&spec.shell_id);
        let socket = sup.run_dir.join(format!("{key}.sock"));
        // sun_path holds 108 bytes including the terminating NUL
        if socket.as_os_str().len() > 107 {
            return Err(spawn_err(format!(
                "the supervisor socket path {} is longer than the 107 bytes Unix sockets allow; \
                 use a shorter PINOKIO_HOME",
                socket.display()
            )));
        }
        let meta_path = sup.run_dir.join(format!("{key}.json"));
        let shim_spec = ShimSpec {
            shell_id: spec.shell_id.clone(),
            group: spec.group.clone(),
            argv: spec.argv.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            cols: spec.cols,
            rows: spec.rows,
            app_log: spec.app_log.clone(),
            global_log: self.inner.global_log_path.clone(),
            log_limit: self.inner.opts.log_limit,
            command_label: spec.command_label.clone(),
            socket: socket.clone(),
            meta: meta_path.clone(),
        };
        let mut cmd = std::process::Command::new(&sup.program);
        cmd.args(&sup.args)
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: setsid is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            spawn_err(format!(
                "cannot start the shell supervisor {}: {e}",
                sup.program.display()
            ))
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let ready = (|| {
            let mut stdin = stdin.ok_or("no pipe to the supervisor")?;
            let text = serde_json::to_vec(&shim_spec).map_err(|e| e.to_string())?;
            stdin
                .write_all(&text)
                .map_err(|e| format!("cannot talk to the supervisor: {e}"))?;
            drop(stdin);
            let stdout = stdout.ok_or("no pipe from the supervisor")?;
            read_line_within(stdout, SUPERVISOR_START)
        })();
        // The supervisor lives on in its own session; reap it when it ends.
        let _ = std::thread::Builder::new()
            .name("shim-reaper".into())
            .spawn(move || {
                let _ = child.wait();
            });
        match ready {
            Ok(line) if line.trim() == "ready" => {}
            Ok(line) => {
                let line = line.trim();
                return Err(spawn_err(
                    line.strip_prefix("error: ")
                        .unwrap_or(if line.is_empty() {
                            "the shell supervisor ended without a word"
                        } else {
                            line
                        })
                        .to_string(),
                ));
            }
            Err(e) => return Err(spawn_err(e)),
        }
        let (stream, frames, hello) = attach(&socket, true)
            .map_err(|e| spawn_err(format!("cannot reach the shell supervisor: {e}")))?;
        let meta = match hello {
            shim::Hello {
                ok: true,
                meta: Some(meta),
                ..
            } => meta,
            shim::Hello { error, .. } => {
                let _ = std::fs::remove_file(&meta_path);
                return Err(spawn_err(
                    error.unwrap_or_else(|| "the shell supervisor refused".into()),
                ));
            }
        };
        let (tx, rx) = channel();
        let record = self.adopt_shell(
            meta,
            meta_path,
            stream,
            frames,
            spec.step,
            spec.depth,
            vec![tx],
            &[],
        )?;
        Ok(ShellHandle {
            id: spec.shell_id,
            pid: record.pid,
            pgid: record.pgid,
            events: rx,
        })
    }

    /// Re-attach to a shell whose supervisor was started by an earlier
    /// engine (its meta file in the supervisor folder). The recent output
    /// the supervisor kept fills the ring buffer; everything after flows as
    /// for any shell. Logs were written by the supervisor all along.
    pub fn adopt(&self, meta_path: &Path) -> Result<Adoption, ProcessError> {
        let io_err = |context: String| move |source| ProcessError::Io { context, source };
        let meta = shim::read_meta(meta_path).map_err(io_err(format!(
            "cannot read the supervisor record {}",
            meta_path.display()
        )))?;
        if meta.done {
            let _ = std::fs::remove_file(meta_path);
            return Ok(Adoption::Ended(meta));
        }
        if self.is_running(&meta.shell_id) {
            return Err(ProcessError::AlreadyRunning(meta.shell_id));
        }
        let (mut stream, mut frames, hello) = match attach(&meta.socket, false) {
            Ok(v) => v,
            Err(e) => {
                // The supervisor is gone. Did it finish, or die?
                let again = shim::read_meta(meta_path).unwrap_or(meta);
                if again.done || !state_alive(again.shim_pid) {
                    let _ = std::fs::remove_file(meta_path);
                    let _ = std::fs::remove_file(&again.socket);
                    return Ok(Adoption::Ended(again));
                }
                return Err(ProcessError::Io {
                    context: format!(
                        "cannot reach the supervisor of shell {:?} at {}",
                        again.shell_id,
                        again.socket.display()
                    ),
                    source: e,
                });
            }
        };
        // The backlog fills the ring buffer before anyone asks for a tail.
        let mut replay = Vec::new();
        if hello.backlog > 0 {
            let _ = stream.set_read_timeout(Some(SUPERVISOR_START));
            if let Ok(Some((wire::REPLAY, bytes))) = frames.read_frame(&mut stream) {
                replay = bytes;
            }
            let _ = stream.set_read_timeout(None);
        }
        let meta = hello.meta.unwrap_or(meta);
        let record = self.adopt_shell(
            meta,
            meta_path.to_path_buf(),
            stream,
            frames,
            None,
            0,
            Vec::new(),
            &replay,
        )?;
        Ok(Adoption::Live(record))
    }

    /// Supervisor meta files in `run_dir` (see [`shim::list_metas`]).
    pub fn supervised(&self) -> Vec<(PathBuf, ShimMeta)> {
        match &self.inner.opts.supervisor {
            Some(sup) => shim::list_metas(&sup.run_dir),
            None => Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn adopt_shell(
        &self,
        meta: ShimMeta,
        meta_path: PathBuf,
        stream: UnixStream,
        frames: FrameReader,
        step: Option<usize>,
        depth: usize,
        subscribers: Vec<Sender<ShellEvent>>,
        replay: &[u8],
    ) -> Result<ProcessRecord, ProcessError> {
        let writer = stream.try_clone().map_err(|source| ProcessError::Io {
            context: "cannot share the supervisor connection".into(),
            source,
        })?;
        let record = ProcessRecord {
            shell_id: meta.shell_id.clone(),
            group: meta.group.clone(),
            pid: meta.pid,
            pgid: meta.pgid,
            command: meta.command.clone(),
            cwd: meta.cwd.clone(),
            started_ms: meta.started_ms,
            log_path: meta.log_path.clone(),
            running: true,
            exit_code: None,
        };
        let shell = Shell::new(
            &record,
            meta.tty.clone(),
            subscribers,
            ShellWriter::Shim(writer),
            None,
        );
        self.register(&shell)?;
        let mut d = Delivery::new(
            self.inner.clone(),
            shell.clone(),
            record.clone(),
            step,
            depth,
            None,
        );
        if !replay.is_empty() {
            d.replay(replay);
        }
        let ctx = ShimReader {
            d,
            stream,
            frames,
            meta_path,
            meta,
        };
        let name = format!(
            "shim-{}",
            ctx.meta.shell_id.chars().take(40).collect::<String>()
        );
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || ctx.run())
        {
            lock(&self.inner.shells).retain(|s| !Arc::ptr_eq(s, &shell));
            return Err(ProcessError::Io {
                context: "cannot start the shell's reader thread".into(),
                source: e,
            });
        }
        Ok(record)
    }

    /// Another channel on a running shell's output, from now on (ends with
    /// [`ShellEvent::Exited`]). `None` if the shell is unknown or exited.
    pub fn subscribe(&self, shell_id: &str) -> Option<Receiver<ShellEvent>> {
        let shell = self.find(shell_id)?;
        let mut st = shell.st();
        if st.exited_sent {
            return None;
        }
        let (tx, rx) = channel();
        st.subscribers.push(tx);
        Some(rx)
    }

    /// Type `data` into the shell's terminal.
    pub fn write(&self, shell_id: &str, data: &[u8]) -> Result<(), ProcessError> {
        let shell = self
            .find(shell_id)
            .ok_or_else(|| ProcessError::NotFound(shell_id.into()))?;
        if !shell.st().record.running {
            return Err(ProcessError::NotRunning(shell_id.into()));
        }
        let mut w = lock(&shell.writer);
        let w = w
            .as_mut()
            .ok_or_else(|| ProcessError::NotRunning(shell_id.into()))?;
        match w {
            ShellWriter::Pty(f) => f.write_all(data).and_then(|_| f.flush()),
            ShellWriter::Shim(s) => wire::write_frame(s, wire::INPUT, data),
        }
        .map_err(|source| ProcessError::Io {
            context: format!("cannot write to shell {shell_id:?}"),
            source,
        })
    }

    /// Change the terminal size of a shell.
    pub fn resize(&self, shell_id: &str, cols: u16, rows: u16) -> Result<(), ProcessError> {
        let shell = self
            .find(shell_id)
            .ok_or_else(|| ProcessError::NotFound(shell_id.into()))?;
        if let Some(ShellWriter::Shim(s)) = lock(&shell.writer).as_mut() {
            return wire::write_frame(s, wire::RESIZE, &wire::resize_payload(cols, rows)).map_err(
                |source| ProcessError::Io {
                    context: format!("cannot resize shell {shell_id:?}"),
                    source,
                },
            );
        }
        let m = lock(&shell.master);
        let m = m
            .as_ref()
            .ok_or_else(|| ProcessError::NotRunning(shell_id.into()))?;
        m.resize(PtySize {
            rows: rows.max(1),
            cols: cols.max(1),
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| ProcessError::Io {
            context: format!("cannot resize shell {shell_id:?}"),
            source: anyhow_to_io(e),
        })
    }

    /// SIGTERM the shell's whole tree, SIGKILL what is left after `grace`;
    /// returns once the tree is gone and `Exited` was sent, or after
    /// `grace` + 1 s. Unknown ids are ignored.
    pub fn kill_shell(&self, shell_id: &str, grace: Duration) {
        let targets: Vec<Arc<Shell>> = lock(&self.inner.shells)
            .iter()
            .filter(|s| s.id == shell_id)
            .cloned()
            .collect();
        kill_shells(targets, grace);
    }

    /// Kill every shell of a script (concurrently, one grace for all).
    pub fn kill_group(&self, group: &str, grace: Duration) {
        let targets: Vec<Arc<Shell>> = lock(&self.inner.shells)
            .iter()
            .filter(|s| s.group == group)
            .cloned()
            .collect();
        kill_shells(targets, grace);
    }

    /// Kill every shell.
    pub fn kill_all(&self, grace: Duration) {
        let targets = lock(&self.inner.shells).clone();
        kill_shells(targets, grace);
    }

    /// Running and recently exited shells (the newest per id), oldest first.
    pub fn list(&self) -> Vec<ProcessRecord> {
        self.records(|_| true)
    }

    /// The shells of one script (newest per id), oldest first.
    pub fn shells_of(&self, group: &str) -> Vec<ProcessRecord> {
        self.records(|s| s.group == group)
    }

    fn records(&self, keep: impl Fn(&Shell) -> bool) -> Vec<ProcessRecord> {
        let shells = lock(&self.inner.shells);
        let mut out = Vec::new();
        for (i, s) in shells.iter().enumerate() {
            let newest = !shells[i + 1..].iter().any(|later| later.id == s.id);
            if newest && keep(s) {
                out.push(s.record());
            }
        }
        out
    }

    /// The record of one shell.
    pub fn get(&self, shell_id: &str) -> Option<ProcessRecord> {
        self.find(shell_id).map(|s| s.record())
    }

    /// The last `lines` normalised lines of a shell (the unfinished last
    /// line included), from its ring buffer.
    pub fn tail(&self, shell_id: &str, lines: usize) -> Vec<String> {
        let Some(shell) = self.find(shell_id) else {
            return Vec::new();
        };
        let ring = lock(&shell.ring);
        let partial = usize::from(!ring.partial.is_empty());
        let from_ring = lines.saturating_sub(partial).min(ring.lines.len());
        let mut out: Vec<String> = ring
            .lines
            .iter()
            .skip(ring.lines.len() - from_ring)
            .cloned()
            .collect();
        if partial == 1 && lines > 0 {
            out.push(ring.partial.clone());
        }
        out
    }

    /// Whether the shell's leader is still running (until `Exited` is sent).
    pub fn is_running(&self, shell_id: &str) -> bool {
        self.find(shell_id).is_some_and(|s| s.st().record.running)
    }

    /// Wait up to `timeout` for a shell to exit; its exit code (`Some(None)`
    /// for a signal), or `None` if it is unknown or still running.
    pub fn wait_exit(&self, shell_id: &str, timeout: Duration) -> Option<Option<i32>> {
        let shell = self.find(shell_id)?;
        let deadline = Instant::now() + timeout;
        let mut st = shell.st();
        while !st.exited_sent {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = match shell.cond.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        Some(st.record.exit_code)
    }

    /// How many log writes failed so far (they never stop a shell).
    pub fn log_errors(&self) -> u64 {
        self.inner.logs.errors.load(Ordering::Relaxed)
    }
}

/// Kill the trees of `targets` together, then wait (within grace + 1 s) for
/// their readers to report the exit.
fn kill_shells(targets: Vec<Arc<Shell>>, grace: Duration) {
    let start = Instant::now();
    let deadline = start + grace + Duration::from_secs(1);
    let targets: Vec<Arc<Shell>> = targets.into_iter().filter(|s| s.active()).collect();
    if targets.is_empty() {
        return;
    }
    let trees: Vec<Tree> = targets.iter().map(|s| s.tree()).collect();
    let report = kill::terminate(&trees, grace);
    for s in &targets {
        let mut st = s.st();
        while !(st.exited_sent && st.reader_done) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = match s.cond.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        if st.reader_done && report.survivors.is_empty() {
            st.lingering = false;
        }
    }
}

/// `portable-pty` reports errors through `anyhow`; keep the whole chain.
fn anyhow_to_io(e: impl std::fmt::Display + std::fmt::Debug) -> std::io::Error {
    let text = format!("{e:#}");
    std::io::Error::other(text)
}

/// Our own duplicate of a descriptor (close-on-exec).
fn dup_fd(fd: RawFd) -> std::io::Result<File> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor we own; the result is
    // a fresh descriptor that the returned File takes ownership of.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a valid, open descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// Owns the spawned child; kills and reaps it if dropped before it was
/// reaped (`spawn` failing half-way, or a reader thread unwinding).
struct KillOnFail(Option<Box<dyn Child + Send + Sync>>);

impl KillOnFail {
    fn get(&self) -> &(dyn Child + Send + Sync) {
        match &self.0 {
            Some(c) => c.as_ref(),
            None => unreachable!("child taken before use"),
        }
    }
}

impl Drop for KillOnFail {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Some(pid) = c.process_id() {
                // SAFETY: the child is a process-group leader we started.
                unsafe {
                    libc::killpg(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

enum Poll {
    Ready,
    Timeout,
    Interrupted,
    Failed,
}

fn poll_in(fd: RawFd, timeout_ms: i32) -> Poll {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, length 1.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r > 0 {
        Poll::Ready
    } else if r == 0 {
        Poll::Timeout
    } else if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
        Poll::Interrupted
    } else {
        Poll::Failed
    }
}

fn exit_code(st: &portable_pty::ExitStatus) -> Option<i32> {
    if st.signal().is_some() {
        None
    } else {
        Some(st.exit_code() as i32)
    }
}

/// Output delivery for one shell: sink, normaliser, ring buffer,
/// subscribers and (for shells whose terminal this process owns) the
/// transcript.
struct Delivery {
    inner: Arc<Inner>,
    shell: Arc<Shell>,
    /// The reader's copy of the record (given to the sink).
    rec: ProcessRecord,
    step: Option<usize>,
    depth: usize,
    /// `None` when a supervisor writes the transcript.
    transcript: Option<Transcript>,
    dec: Utf8Decoder,
    norm: Normalizer,
    lines: LineAssembler,
    exited_sent: bool,
    /// The shell's URL watcher, if the manager has watchers.
    watcher: Option<Box<dyn crate::urlwatch::UrlWatcher>>,
    /// A local URL was reported (port polling stops).
    shown_url: bool,
    last_tick: Instant,
}

impl Delivery {
    fn new(
        inner: Arc<Inner>,
        shell: Arc<Shell>,
        rec: ProcessRecord,
        step: Option<usize>,
        depth: usize,
        transcript: Option<Transcript>,
    ) -> Self {
        let watcher = inner
            .opts
            .url_watchers
            .as_ref()
            .map(|w| w.0.watcher(rec.pid));
        Delivery {
            inner,
            shell,
            rec,
            step,
            depth,
            transcript,
            dec: Utf8Decoder::new(),
            norm: Normalizer::new(),
            lines: LineAssembler::new(MAX_LINE_CHARS),
            exited_sent: false,
            watcher,
            shown_url: false,
            last_tick: Instant::now(),
        }
    }

    /// Feed the URL watcher (before subscribers see the text, so a URL is
    /// known when an `on` handler ends the step).
    fn watch(&mut self, text: &str) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        // a watcher that panics is dropped; the shell's output goes on
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.feed(text))) {
            Ok(found) => self.report_urls(found),
            Err(_) => self.watcher = None,
        }
    }

    fn report_urls(&mut self, found: Vec<crate::urlwatch::FoundUrl>) {
        for f in found {
            if !f.public {
                self.shown_url = true;
            }
            let (rec, step, depth) = (&self.rec, self.step, self.depth);
            self.guarded(|s| s.url_found(rec, step, depth, &f));
        }
    }

    /// Let the URL watcher confirm guesses and poll ports (rate-limited).
    fn tick(&mut self) {
        if self.watcher.is_none() || self.exited_sent || self.last_tick.elapsed() < URL_TICK {
            return;
        }
        self.last_tick = Instant::now();
        let poll = !self.shown_url && {
            let sink = self.inner.sink.clone();
            let rec = &self.rec;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.poll_ports(rec)))
                .unwrap_or(false)
        };
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.tick(poll))) {
            Ok(found) => self.report_urls(found),
            Err(_) => self.watcher = None,
        }
    }

    fn guarded(&self, f: impl FnOnce(&dyn OutputSink)) {
        let sink = self.inner.sink.clone();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(sink.as_ref())));
    }

    fn deliver_bytes(&mut self, bytes: &[u8]) {
        let raw = self.dec.push(bytes);
        self.deliver_raw(raw);
    }

    fn deliver_raw(&mut self, raw: String) {
        if raw.is_empty() {
            return;
        }
        let (rec, step, depth) = (&self.rec, self.step, self.depth);
        self.guarded(|s| s.output(rec, step, depth, &raw));
        let text = self.norm.push(&raw);
        self.deliver_text(text);
    }

    /// Output sent again by a supervisor to a re-attached engine: it goes
    /// to the ring buffer only (logs, sinks and subscribers had it).
    fn replay(&mut self, bytes: &[u8]) {
        let raw = self.dec.push(bytes);
        let text = self.norm.push(&raw);
        let mut done = Vec::new();
        self.lines.push(&text, &mut done);
        self.ring(&done);
        // the URL an adopted app printed before this engine attached
        self.watch(&text);
    }

    fn ring(&self, done: &[String]) {
        let mut ring = lock(&self.shell.ring);
        let cap = self.inner.opts.ring_lines.max(1);
        for l in done {
            if ring.lines.len() >= cap {
                ring.lines.pop_front();
            }
            ring.lines.push_back(l.clone());
        }
        ring.partial.clear();
        ring.partial.push_str(self.lines.partial());
    }

    fn deliver_text(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        let mut done = Vec::new();
        self.lines.push(&text, &mut done);
        self.ring(&done);
        if let Some(t) = &self.transcript {
            t.lines(&done);
        }
        self.watch(&text);
        if !self.exited_sent {
            let mut st = self.shell.st();
            st.subscribers
                .retain(|tx| tx.send(ShellEvent::Output(text.clone())).is_ok());
        }
    }

    fn log_note(&self, note: &str) {
        if let Some(t) = &self.transcript {
            t.note(note);
        }
    }

    fn header(&self) {
        let r = &self.rec;
        self.log_note(&format!(
            "shell {} started (group {}, pid {}, cwd {}): {}",
            r.shell_id,
            r.group,
            r.pid,
            r.cwd.display(),
            r.command
        ));
    }

    /// The end of the output: flush what the decoders hold.
    fn end_of_output(&mut self) {
        let rest = self.dec.finish();
        self.deliver_raw(rest);
        let tail = self.norm.finish();
        self.deliver_text(tail);
        if let Some(last) = self.lines.finish() {
            if let Some(t) = &self.transcript {
                t.lines(&[last]);
            }
        }
    }

    fn send_exited(&mut self, code: Option<i32>) {
        // A `\r` held back at the end is a line break now.
        let tail = self.norm.finish();
        self.deliver_text(tail);
        self.exited_sent = true;
        self.rec.running = false;
        self.rec.exit_code = code;
        // The transcript is complete before anyone hears of the exit.
        let how = match code {
            Some(c) => format!("exited with code {c}"),
            None => "was killed by a signal".to_string(),
        };
        self.log_note(&format!("shell {} {how}", self.rec.shell_id));
        let (rec, step, depth) = (&self.rec, self.step, self.depth);
        self.guarded(|s| s.exited(rec, step, depth, code));
        {
            let mut st = self.shell.st();
            st.reaped = true;
            st.record.running = false;
            st.record.exit_code = code;
            st.exited_sent = true;
            st.exited_at = Some(Instant::now());
            for tx in st.subscribers.drain(..) {
                let _ = tx.send(ShellEvent::Exited(code));
            }
        }
        self.shell.cond.notify_all();
    }

    fn finish(self) {
        *lock(&self.shell.writer) = None;
        *lock(&self.shell.master) = None;
        // Processes of the group/session that let go of the terminal?
        let tree = Tree {
            leader: self.rec.pid as i32,
            leader_ours: false,
            pgid: self.rec.pgid as i32,
            tty: None,
        };
        let lingering = !kill::members(std::slice::from_ref(&tree), false).is_empty();
        {
            let mut st = self.shell.st();
            st.reader_done = true;
            st.lingering = lingering;
        }
        self.shell.cond.notify_all();
        prune(&self.inner);
    }
}

/// One shell's reader thread (the terminal is ours).
struct Reader {
    d: Delivery,
    child: KillOnFail,
    file: File,
}

impl Reader {
    fn run(mut self) {
        self.d.header();
        let fd = self.file.as_raw_fd();
        let mut buf = vec![0u8; CHUNK];
        let mut exit: Option<(Option<i32>, Instant)> = None;
        loop {
            self.d.tick();
            if exit.is_none() {
                if let Some(code) = self.try_reap() {
                    exit = Some((code, Instant::now()));
                }
            }
            if let Some((code, at)) = exit {
                if !self.d.exited_sent && at.elapsed() >= MAX_DRAIN {
                    self.d.send_exited(code);
                }
            }
            let draining = exit.is_some() && !self.d.exited_sent;
            match poll_in(
                fd,
                if draining {
                    DRAIN_QUIET_MS
                } else {
                    IDLE_POLL_MS
                },
            ) {
                Poll::Ready => match self.file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.d.deliver_bytes(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                        ) => {}
                    // EIO: every holder of the slave side is gone.
                    Err(_) => break,
                },
                Poll::Timeout => {
                    if let (Some((code, _)), true) = (exit, draining) {
                        self.d.send_exited(code);
                    }
                }
                Poll::Interrupted => {}
                Poll::Failed => break,
            }
        }
        self.d.end_of_output();
        let code = match exit {
            Some((code, _)) => code,
            None => self.wait_child(),
        };
        if !self.d.exited_sent {
            self.d.send_exited(code);
        }
        self.d.finish();
    }

    fn try_reap(&mut self) -> Option<Option<i32>> {
        let child = self.child.0.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                self.child.0 = None;
                self.d.shell.st().reaped = true;
                Some(exit_code(&st))
            }
            _ => None,
        }
    }

    fn wait_child(&mut self) -> Option<i32> {
        let code = match self.child.0.take() {
            Some(mut c) => c.wait().ok().and_then(|st| exit_code(&st)),
            None => None,
        };
        self.d.shell.st().reaped = true;
        code
    }
}

/// One supervised shell's reader thread: frames from its supervisor.
struct ShimReader {
    d: Delivery,
    stream: UnixStream,
    frames: FrameReader,
    meta_path: PathBuf,
    meta: ShimMeta,
}

impl ShimReader {
    fn run(mut self) {
        let mut reattached = 0;
        loop {
            if !self.pump() {
                break;
            }
            // The connection dropped. A supervisor that is still there
            // (it dropped a stalled reader) is attached again.
            let meta = shim::read_meta(&self.meta_path).unwrap_or_else(|_| self.meta.clone());
            if meta.done || !state_alive(meta.shim_pid) || reattached >= 3 {
                break;
            }
            reattached += 1;
            match attach(&meta.socket, false) {
                Ok((stream, frames, _)) => {
                    if let Ok(w) = stream.try_clone() {
                        *lock(&self.d.shell.writer) = Some(ShellWriter::Shim(w));
                    }
                    self.stream = stream;
                    self.frames = frames;
                }
                Err(_) => break,
            }
        }
        self.d.end_of_output();
        if !self.d.exited_sent {
            // The supervisor vanished without reporting an exit.
            let code = shim::read_meta(&self.meta_path)
                .ok()
                .and_then(|m| m.exit)
                .and_then(|e| e.code);
            self.d.send_exited(code);
        }
        let _ = std::fs::remove_file(&self.meta_path);
        self.d.finish();
    }

    /// Handle frames until the connection ends; `true` when it ended
    /// without the supervisor closing it at the end of the shell.
    fn pump(&mut self) -> bool {
        let fd = self.stream.as_raw_fd();
        loop {
            self.d.tick();
            match poll_in(fd, IDLE_POLL_MS) {
                Poll::Ready => match self.frames.fill(&mut self.stream) {
                    Ok(wire::ReadStatus::Data) => loop {
                        match self.frames.next_frame() {
                            Ok(Some((kind, payload))) => self.frame(kind, &payload),
                            Ok(None) => break,
                            Err(_) => return true,
                        }
                    },
                    Ok(wire::ReadStatus::Eof) => return true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return true,
                },
                Poll::Timeout | Poll::Interrupted => {}
                Poll::Failed => return true,
            }
        }
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) {
        match kind {
            wire::OUTPUT => self.d.deliver_bytes(payload),
            wire::REPLAY => self.d.replay(payload),
            wire::EXITED if !self.d.exited_sent => {
                self.d.send_exited(wire::parse_exit(payload));
            }
            _ => {}
        }
    }
}

/// A short, unique name for a supervisor's socket and meta file.
fn shim_key(shell_id: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    shell_id.hash(&mut h);
    std::process::id().hash(&mut h);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Is there a live (not zombie) process `pid`?
fn state_alive(pid: u32) -> bool {
    kill::proc_info(pid as i32).is_some_and(|p| p.alive())
}

/// Read one line from a pipe within `timeout`.
fn read_line_within(mut pipe: impl Read + AsRawFd, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the shell supervisor did not start within {} s",
                timeout.as_secs()
            ));
        }
        match poll_in(pipe.as_raw_fd(), left.as_millis().min(1000) as i32) {
            Poll::Ready => match pipe.read(&mut byte) {
                Ok(0) => return Ok(String::from_utf8_lossy(&line).into_owned()),
                Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read from the shell supervisor: {e}")),
            },
            Poll::Timeout | Poll::Interrupted => {}
            Poll::Failed => return Err("cannot wait for the shell supervisor".into()),
        }
    }
}

/// Connect to a supervisor and read its HELLO.
fn attach(socket: &Path, live: bool) -> std::io::Result<(UnixStream, FrameReader, shim::Hello)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_read_timeout(Some(SUPERVISOR_START))?;
    wire::write_frame(&mut stream, wire::ATTACH, &[u8::from(live)])?;
    let mut frames = FrameReader::new();
    let hello = match frames.read_frame(&mut stream)? {
        Some((wire::HELLO, p)) => serde_json::from_slice::<shim::Hello>(&p)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        Some(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the supervisor did not greet first",
            ))
        }
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the supervisor closed the connection",
            ))
        }
    };
    stream.set_read_timeout(None)?;
    Ok((stream, frames, hello))
}

/// Forget the oldest finished shells beyond `keep_exited`, and finished
/// shells shadowed by a newer shell with the same id.
fn prune(inner: &Inner) {
    let mut shells = lock(&inner.shells);
    let finished = |s: &Shell| {
        let st = s.st();
        st.reader_done && !st.lingering && st.exited_sent
    };
    let n = shells.len();
    let mut remove = vec![false; n];
    for i in 0..n {
        if finished(&shells[i]) && shells[i + 1..].iter().any(|l| l.id == shells[i].id) {
            remove[i] = true;
        }
    }
    let mut done: Vec<(Instant, usize)> = (0..n)
        .filter(|&i| !remove[i] && finished(&shells[i]))
        .map(|i| (shells[i].st().exited_at.unwrap_or_else(Instant::now), i))
        .collect();
    if done.len() > inner.opts.keep_exited {
        done.sort();
        let extra = done.len() - inner.opts.keep_exited;
        for (_, i) in done.into_iter().take(extra) {
            remove[i] = true;
        }
    }
    let mut i = 0;
    shells.retain(|_| {
        let keep = !remove[i];
        i += 1;
        keep
    });
}
