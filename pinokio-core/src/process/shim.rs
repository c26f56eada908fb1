//! The shell supervisor (`pinokio __shim`): one small process per shell
//! that owns the shell's pseudo-terminal, so that the shell survives the
//! engine that started it.
//!
//! The engine starts the supervisor in its own session with a [`ShimSpec`]
//! on stdin. The supervisor binds `spec.socket`, prints `ready`, and waits
//! for the engine to connect. On the first [`wire::ATTACH`] it starts the
//! shell in a new PTY and answers [`wire::HELLO`] with the shell's
//! [`ShimMeta`] (pid, process group, terminal), which it also keeps in
//! `spec.meta` so a later engine can find it. From then on it:
//!
//! - reads the terminal and writes the shell's transcript (app log and
//!   global log) itself, attached engine or not;
//! - keeps the last [`BACKLOG`] bytes, forwards output to the attached
//!   engine ([`wire::OUTPUT`]), types [`wire::INPUT`] into the terminal and
//!   applies [`wire::RESIZE`];
//! - reaps the shell, waits for its last output as the in-process reader
//!   does, records the exit in the meta file and sends [`wire::EXITED`];
//! - accepts a new engine at any time (the newest connection wins): it
//!   gets the meta, a [`wire::REPLAY`] of the backlog, and the exit if
//!   there was one;
//! - ends when nothing holds the terminal any more, marking the meta file
//!   `done` and removing its socket.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use serde::{Deserialize, Serialize};

use super::log::{now_ms, LogRegistry, Transcript};
use super::normalize::LineAssembler;
use super::wire::{self, FrameReader, ReadStatus};
use super::{
    dup_fd, exit_code, Normalizer, Utf8Decoder, DRAIN_QUIET_MS, IDLE_POLL_MS, MAX_DRAIN,
    MAX_LINE_CHARS,
};

/// The hidden first argument that turns the `pinokio` binary into a
/// supervisor.
pub const SHIM_ARG: &str = "__shim";

/// Bytes of recent output kept for an engine that attaches later.
pub const BACKLOG: usize = 256 * 1024;

/// How long the supervisor waits for the engine's first connection.
const FIRST_ATTACH: Duration = Duration::from_secs(30);

/// What the engine asks a supervisor to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub shell_id: String,
    pub group: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub cols: u16,
    pub rows: u16,
    pub app_log: Option<PathBuf>,
    pub global_log: PathBuf,
    pub log_limit: u64,
    pub command_label: String,
    pub socket: PathBuf,
    pub meta: PathBuf,
}

/// How the shell's leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimExit {
    /// `None`: killed by a signal.
    pub code: Option<i32>,
    pub at_ms: u64,
}

/// What a supervisor tells about its shell (the HELLO payload and the meta
/// file next to its socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimMeta {
    pub shell_id: String,
    pub group: String,
    pub command: String,
    pub cwd: PathBuf,
    pub log_path: Option<PathBuf>,
    pub pid: u32,
    pub pgid: u32,
    pub shim_pid: u32,
    pub tty: Option<PathBuf>,
    pub started_ms: u64,
    pub socket: PathBuf,
    pub exit: Option<ShimExit>,
    /// The terminal closed and the supervisor ended.
    pub done: bool,
}

/// The HELLO payload.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub ok: bool,
    pub error: Option<String>,
    pub meta: Option<ShimMeta>,
    /// Bytes of backlog sent right after this frame.
    #[serde(default)]
    pub backlog: usize,
}

/// Read a meta file.
pub fn read_meta(path: &Path) -> std::io::Result<ShimMeta> {
    let text = std::fs::read(path)?;
    serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Write a meta file atomically (temporary file, then rename).
pub(crate) fn write_meta(path: &Path, meta: &ShimMeta) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Every supervisor meta file in `run_dir` (unreadable ones skipped).
pub fn list_metas(run_dir: &Path) -> Vec<(PathBuf, ShimMeta)> {
    let Ok(dir) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, ShimMeta)> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| read_meta(&p).ok().map(|m| (p, m)))
        .collect();
    out.sort_by(|a, b| (a.1.started_ms, &a.1.shell_id).cmp(&(b.1.started_ms, &b.1.shell_id)));
    out
}

/// `pinokio __shim`: read the spec from stdin and supervise. Returns the
/// process exit code. Must be called before any other thread exists.
pub fn main_from_stdin() -> i32 {
    // SAFETY: setting signal dispositions before any thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let mut text = Vec::new();
    let spec: Result<ShimSpec, String> = std::io::stdin()
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read the supervisor spec: {e}"))
        .and_then(|_| {
            serde_json::from_slice(&text).map_err(|e| format!("bad supervisor spec: {e}"))
        });
    let spec = match spec {
        Ok(s) => s,
        Err(e) => {
            ready_line(&format!("error: {e}"));
            return 2;
        }
    };
    match Shim::bind(spec) {
        Ok(shim) => {
            ready_line("ready");
            shim.serve();
            0
        }
        Err(e) => {
            ready_line(&format!("error: {e}"));
            1
        }
    }
}

/// Tell the engine (on stdout) how the start went, then let go of stdout.
fn ready_line(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto the standard descriptors with a valid source.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

struct Conn {
    stream: UnixStream,
    frames: FrameReader,
}

struct Running {
    child: Option<Box<dyn Child + Send + Sync>>,
    master: Box<dyn MasterPty + Send>,
    pty: File,
    pty_w: File,
}

struct Shim {
    spec: ShimSpec,
    listener: UnixListener,
    transcript: Transcript,
    meta: Option<ShimMeta>,
    conn: Option<Conn>,
    backlog: VecDeque<u8>,
    dec: Utf8Decoder,
    norm: Normalizer,
    lines: LineAssembler,
    exit: Option<(Option<i32>, Instant)>,
    exited_sent: bool,
}

impl Shim {
    fn bind(spec: ShimSpec) -> std::io::Result<Shim> {
        if let Some(dir) = spec.socket.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(&spec.socket);
        let listener = UnixListener::bind(&spec.socket).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", spec.socket.display()),
            )
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&spec.socket, std::fs::Permissions::from_mode(0o600))?;
        }
        let logs = LogRegistry::new(spec.log_limit);
        let transcript = Transcript {
            app: spec.app_log.as_deref().map(|p| logs.get(p)),
            global: logs.get(&spec.global_log),
            group: spec.group.clone(),
            shell_id: spec.shell_id.clone(),
        };
        Ok(Shim {
            spec,
            listener,
            transcript,
            meta: None,
            conn: None,
            backlog: VecDeque::new(),
            dec: Utf8Decoder::new(),
            norm: Normalizer::new(),
            lines: LineAssembler::new(MAX_LINE_CHARS),
            exit: None,
            exited_sent: false,
        })
    }

    /// Wait for the engine, start the shell, supervise it to the end.
    fn serve(mut self) {
        let Some(mut conn) = self.first_attach() else {
            let _ = std::fs::remove_file(&self.spec.socket);
            return;
        };
        let mut run = match self.start() {
            Ok(run) => run,
            Err(e) => {
                let hello = Hello {
                    ok: false,
                    error: Some(e),
                    meta: None,
                    backlog: 0,
                };
                let _ = wire::write_frame(
                    &mut conn.stream,
                    wire::HELLO,
                    &serde_json::to_vec(&hello).unwrap_or_default(),
                );
                let _ = std::fs::remove_file(&self.spec.socket);
                return;
            }
        };
        self.header();
        self.send_hello(&mut conn, true);
        self.conn = Some(conn);
        self.supervise(&mut run);
        self.finish(&mut run);
    }

    fn first_attach(&mut self) -> Option<Conn> {
        let deadline = Instant::now() + FIRST_ATTACH;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match poll(
                &[(self.listener.as_raw_fd(), true)],
                left.as_millis() as i32,
            ) {
                Some(r) if r[0] => {
                    if let Some((conn, _live)) = self.accept() {
                        return Some(conn);
                    }
                }
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Accept one engine and read its ATTACH frame.
    fn accept(&mut self) -> Option<(Conn, bool)> {
        let (mut stream, _) = self.listener.accept().ok()?;
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut frames = FrameReader::new();
        let live = match frames.read_frame(&mut stream) {
            Ok(Some((wire::ATTACH, p))) => p.first() == Some(&1),
            _ => return None,
        };
        stream.set_read_timeout(None).ok()?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        Some((Conn { stream, frames }, live))
    }

    fn start(&mut self) -> Result<Running, String> {
        let spec = &self.spec;
        if spec.argv.is_empty() {
            return Err("the command line is empty".into());
        }
        if !spec.cwd.is_dir() {
            return Err(format!(
                "cannot start `{}` in {}: the working directory does not exist or is not a folder",
                spec.command_label,
                spec.cwd.display()
            ));
        }
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: spec.rows.max(1),
                cols: spec.cols.max(1),
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| format!("cannot open a pseudo-terminal: {e:#}"))?;
        let mut cmd = CommandBuilder::from_argv(spec.argv.iter().map(OsString::from).collect());
        cmd.env_clear();
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.cwd(&spec.cwd);
        let child = pair.slave.spawn_command(cmd).map_err(|e| {
            format!(
                "cannot start `{}` in {}: {e:#}",
                spec.command_label,
                spec.cwd.display()
            )
        })?;
        drop(pair.slave);
        let master = pair.master;
        let pid = child.process_id().unwrap_or(0);
        // SAFETY: getpgid has no memory-safety preconditions.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        let pgid = if pgid > 0 { pgid as u32 } else { pid };
        let fd = master
            .as_raw_fd()
            .ok_or_else(|| "the pseudo-terminal has no file descriptor".to_string())?;
        let pty = dup_fd(fd).map_err(|e| format!("cannot duplicate the terminal: {e}"))?;
        let pty_w = dup_fd(fd).map_err(|e| format!("cannot duplicate the terminal: {e}"))?;
        let meta = ShimMeta {
            shell_id: spec.shell_id.clone(),
            group: spec.group.clone(),
            command: spec.command_label.clone(),
            cwd: spec.cwd.clone(),
            log_path: spec.app_log.clone(),
            pid,
            pgid,
            shim_pid: std::process::id(),
            tty: master.tty_name(),
            started_ms: now_ms(),
            socket: spec.socket.clone(),
            exit: None,
            done: false,
        };
        let _ = write_meta(&spec.meta, &meta);
        self.meta = Some(meta);
        Ok(Running {
            child: Some(child),
            master,
            pty,
            pty_w,
        })
    }

    fn header(&self) {
        if let Some(m) = &self.meta {
            self.transcript.note(&format!(
                "shell {} started (group {}, pid {}, cwd {}): {}",
                m.shell_id,
                m.group,
                m.pid,
                m.cwd.display(),
                m.command
            ));
        }
    }

    fn send_hello(&mut self, conn: &mut Conn, live: bool) -> bool {
        let backlog: Vec<u8> = self.backlog.iter().copied().collect();
        let hello = Hello {
            ok: true,
            error: None,
            meta: self.meta.clone(),
            backlog: backlog.len(),
        };
        let mut ok = wire::write_frame(
            &mut conn.stream,
            wire::HELLO,
            &serde_json::to_vec(&hello).unwrap_or_default(),
        )
        .is_ok();
        if ok && !backlog.is_empty() {
            let kind = if live { wire::OUTPUT } else { wire::REPLAY };
            ok = wire::write_frame(&mut conn.stream, kind, &backlog).is_ok();
        }
        if ok && self.exited_sent {
            let code = self.exit.and_then(|(c, _)| c);
            ok = wire::write_frame(&mut conn.stream, wire::EXITED, &wire::exit_payload(code))
                .is_ok();
        }
        ok
    }

    fn send(&mut self, kind: u8, payload: &[u8]) {
        if let Some(c) = &mut self.conn {
            if wire::write_frame(&mut c.stream, kind, payload).is_err() {
                self.conn = None;
            }
        }
    }

    fn supervise(&mut self, run: &mut Running) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.exit.is_none() {
                if let Some(code) = try_reap(run) {
                    self.exit = Some((code, Instant::now()));
                }
            }
            if let Some((code, at)) = self.exit {
                if !self.exited_sent && at.elapsed() >= MAX_DRAIN {
                    self.send_exited(code);
                }
            }
            let draining = self.exit.is_some() && !self.exited_sent;
            let mut fds = vec![
                (run.pty.as_raw_fd(), true),
                (self.listener.as_raw_fd(), true),
            ];
            if let Some(c) = &self.conn {
                fds.push((c.stream.as_raw_fd(), true));
            }
            let timeout = if draining {
                DRAIN_QUIET_MS
            } else {
                IDLE_POLL_MS
            };
            let Some(ready) = poll(&fds, timeout) else {
                break;
            };
            if ready.iter().all(|r| !r) {
                if let (Some((code, _)), true) = (self.exit, draining) {
                    self.send_exited(code);
                }
                continue;
            }
            // The current engine first: accepting replaces it.
            if ready.get(2).copied().unwrap_or(false) {
                self.engine_frames(run);
            }
            if ready[1] {
                if let Some((mut conn, live)) = self.accept() {
                    if self.send_hello(&mut conn, live) {
                        self.conn = Some(conn);
                    }
                }
            }
            if ready[0] {
                match run.pty.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.output(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                        ) => {}
                    // EIO: every holder of the terminal is gone.
                    Err(_) => break,
                }
            }
        }
    }

    fn engine_frames(&mut self, run: &mut Running) {
        let Some(c) = &mut self.conn else { return };
        match c.frames.fill(&mut c.stream) {
            Ok(ReadStatus::Data) => {}
            Ok(ReadStatus::Eof) | Err(_) => {
                self.conn = None;
                return;
            }
        }
        loop {
            let frame = match c.frames.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    self.conn = None;
                    return;
                }
            };
            match frame {
                (wire::INPUT, data) => {
                    let _ = run.pty_w.write_all(&data).and_then(|_| run.pty_w.flush());
                }
                (wire::RESIZE, p) => {
                    if let Some((cols, rows)) = wire::parse_resize(&p) {
                        let _ = run.master.resize(PtySize {
                            rows: rows.max(1),
                            cols: cols.max(1),
                            pixel_width: 0,
                            pixel_height: 0,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn output(&mut self, bytes: &[u8]) {
        self.backlog.extend(bytes);
        if self.backlog.len() > BACKLOG {
            let extra = self.backlog.len() - BACKLOG;
            self.backlog.drain(..extra);
        }
        let raw = self.dec.push(bytes);
        let text = self.norm.push(&raw);
        self.log_text(&text);
        self.send(wire::OUTPUT, bytes);
    }

    fn log_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut done = Vec::new();
        self.lines.push(text, &mut done);
        self.transcript.lines(&done);
    }

    fn send_exited(&mut self, code: Option<i32>) {
        let tail = self.norm.finish();
        self.log_text(&tail);
        self.exited_sent = true;
        let how = match code {
            Some(c) => format!("exited with code {c}"),
            None => "was killed by a signal".to_string(),
        };
        self.transcript
            .note(&format!("shell {} {how}", self.spec.shell_id));
        if let Some(m) = &mut self.meta {
            m.exit = Some(ShimExit {
                code,
                at_ms: now_ms(),
            });
            let _ = write_meta(&self.spec.meta, m);
        }
        self.send(wire::EXITED, &wire::exit_payload(code));
    }

    fn finish(&mut self, run: &mut Running) {
        let rest = self.dec.finish();
        let text = self.norm.push(&rest);
        self.log_text(&text);
        let tail = self.norm.finish();
        self.log_text(&tail);
        if let Some(last) = self.lines.finish() {
            self.transcript.lines(&[last]);
        }
        let code = match self.exit {
            Some((code, _)) => code,
            None => run
                .child
                .take()
                .and_then(|mut c| c.wait().ok())
                .and_then(|st| exit_code(&st)),
        };
        if !self.exited_sent {
            self.exit = Some((code, Instant::now()));
            self.send_exited(code);
        }
        if let Some(m) = &mut self.meta {
            m.done = true;
            let _ = write_meta(&self.spec.meta, m);
        }
        let _ = std::fs::remove_file(&self.spec.socket);
        // Closing the connection tells the engine the terminal is gone.
        self.conn = None;
    }
}

fn try_reap(run: &mut Running) -> Option<Option<i32>> {
    let child = run.child.as_mut()?;
    match child.try_wait() {
        Ok(Some(st)) => {
            run.child = None;
            Some(exit_code(&st))
        }
        _ => None,
    }
}

/// Poll descriptors for input (or hang-up); `None` when poll itself fails.
fn poll(fds: &[(i32, bool)], timeout_ms: i32) -> Option<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, _)| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: a valid array of pollfd of the given length.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Some(p.iter().map(|x| x.revents != 0).collect());
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}
