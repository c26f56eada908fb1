//! The state store: `HOME/library.sqlite`, what the engine remembers across
//! restarts (apps, runs, shells, tunnels).
//!
//! - SQLite in WAL mode with a 5 s busy timeout and foreign keys on, so
//!   several `pinokio` processes (CLI, HTTP server) can share it. Every
//!   write is one statement or one short `IMMEDIATE` transaction.
//! - The schema is versioned with `PRAGMA user_version`: [`MIGRATIONS`] is an
//!   ordered list of SQL batches, each applied in a transaction. A database
//!   written by a newer build is refused ([`StateError::TooNew`]), never
//!   touched.
//! - [`StateStore::open_or_rebuild`] moves a corrupt file aside
//!   (`library.sqlite.corrupt-<ms>`) and registers the apps the caller finds
//!   on disk.
//! - [`StateStore::reconcile`] runs when an engine starts: shells recorded
//!   as running whose process is gone (or whose pid now belongs to another
//!   process) become `lost` and their runs `interrupted`; installs whose
//!   engine died become `failed` ("install interrupted").
//!
//! Every row written by a process carries that engine's pid and start time
//! (`engine_pid`, `engine_started_ms`), so `reconcile` leaves alone what a
//! live engine (another `pinokio` process) still owns.
//!
//! Times are unix milliseconds.

mod liveness;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use liveness::{pid_start_ms, process_alive, START_TOLERANCE_MS};

use crate::events::now_ms;
use crate::process::ProcessRecord;

/// The database file inside the Pinokio home.
pub const DB_FILE: &str = "library.sqlite";
/// How long a statement waits for another process's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `exit_reason` of a run whose shell died while no engine was watching.
pub const REASON_PROCESS_LOST: &str = "engine was not running when the process ended";
/// `exit_reason` of a run whose engine exited before the run ended.
pub const REASON_ENGINE_GONE: &str = "engine exited before the run ended";
/// `last_error` of an app whose install was cut short.
pub const ERROR_INSTALL_INTERRUPTED: &str = "install interrupted";
/// `last_error` of an app whose update was cut short.
pub const ERROR_UPDATE_INTERRUPTED: &str = "update interrupted";

/// The schema, one SQL batch per version: applying `MIGRATIONS[i]` takes a
/// database from `user_version` `i` to `i + 1`. Append only; never edit a
/// released entry.
pub const MIGRATIONS: &[&str] = &[
    // 1: apps, runs, processes, tunnels.
    r#"
CREATE TABLE apps (
    id                TEXT PRIMARY KEY NOT NULL,
    source_url        TEXT,
    path              TEXT NOT NULL,
    state             TEXT NOT NULL,
    git_commit        TEXT,
    version           TEXT,
    installed_at      INTEGER,
    updated_at        INTEGER NOT NULL,
    last_error        TEXT,
    engine_pid        INTEGER,
    engine_started_ms INTEGER
);
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id            TEXT,
    script            TEXT NOT NULL,
    args              TEXT,
    status            TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    exit_reason       TEXT,
    engine_pid        INTEGER,
    engine_started_ms INTEGER
);
CREATE INDEX runs_app ON runs(app_id, id);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE processes (
    shell_id          TEXT PRIMARY KEY NOT NULL,
    app_id            TEXT,
    run_id            INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    script            TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    pgid              INTEGER NOT NULL,
    command           TEXT NOT NULL,
    cwd               TEXT NOT NULL,
    log_path          TEXT,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    exit_code         INTEGER,
    state             TEXT NOT NULL,
    engine_pid        INTEGER,
    engine_started_ms INTEGER
);
CREATE INDEX processes_state ON processes(state);
CREATE INDEX processes_run ON processes(run_id);
CREATE TABLE tunnels (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id            TEXT,
    kind              TEXT NOT NULL,
    local_url         TEXT NOT NULL,
    public_url        TEXT,
    pid               INTEGER,
    pid_started_ms    INTEGER,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    state             TEXT NOT NULL
);
CREATE INDEX tunnels_app ON tunnels(app_id);
"#,
    // 2: the `local` memory of a run that went daemon, so a restarted
    // engine that re-adopts its shells knows the app's URL and menu state.
    r#"
ALTER TABLE runs ADD COLUMN local TEXT;
"#,
];

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// State store errors: each names the database file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {}: cannot {op}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        op: String,
        source: rusqlite::Error,
    },
    #[error("state database {}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: String,
        source: std::io::Error,
    },
    #[error(
        "state database {} has schema version {found}, but this pinokio only knows up to \
         version {supported}: it was written by a newer pinokio. Upgrade pinokio, or move the \
         file aside to start over",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("state database {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
}

impl StateError {
    /// The database file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StateError::Sqlite { path, .. }
            | StateError::Io { path, .. }
            | StateError::TooNew { path, .. }
            | StateError::Corrupt { path, .. } => path,
        }
    }

    /// The file is not a database or SQLite found it damaged (as opposed to
    /// locked, unreadable or too new).
    pub fn is_corruption(&self) -> bool {
        match self {
            StateError::Corrupt { .. } => true,
            StateError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ),
            _ => false,
        }
    }
}

/// A stored value that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident ($kind:literal) { $($(#[$vm:meta])* $var:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vm])* $var,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var,)+];

            /// The stored (and serialised) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownValue| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

text_enum! {
    /// Where an app stands.
    AppState ("app state") {
        Installing = "installing",
        Installed = "installed",
        Updating = "updating",
        Failed = "failed",
        Running = "running",
        Stopped = "stopped",
        Uninstalled = "uninstalled",
    }
}

text_enum! {
    /// How a run ended (or that it has not).
    RunStatus ("run status") {
        /// Steps are running.
        Running = "running",
        /// Finished normally (non-daemon).
        Finished = "finished",
        /// A daemon: idle after its last step, its shells keep going.
        Daemon = "daemon",
        /// A step failed.
        Error = "error",
        /// Stopped from outside.
        Stopped = "stopped",
        /// The engine went away before the run ended ([`StateStore::reconcile`]).
        Interrupted = "interrupted",
    }
}

text_enum! {
    /// Where a recorded shell process stands.
    ProcState ("process state") {
        Running = "running",
        Exited = "exited",
        /// The engine killed it.
        Killed = "killed",
        /// It ended while no engine was watching.
        Lost = "lost",
    }
}

text_enum! {
    /// Where a tunnel (public exposure of a local URL) stands.
    TunnelState ("tunnel state") {
        Starting = "starting",
        Up = "up",
        Stopped = "stopped",
        Failed = "failed",
        /// Its process ended while no engine was watching.
        Lost = "lost",
    }
}

impl RunStatus {
    /// `Running` and `Daemon`: the run still holds its script (and shells).
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Daemon)
    }
}

impl From<crate::events::RunStatus> for RunStatus {
    fn from(s: crate::events::RunStatus) -> Self {
        use crate::events::RunStatus as E;
        match s {
            E::Finished => RunStatus::Finished,
            E::Daemon => RunStatus::Daemon,
            E::Error => RunStatus::Error,
            E::Stopped => RunStatus::Stopped,
        }
    }
}

/// One app (a folder of `HOME/api`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The folder name under `HOME/api`.
    pub id: String,
    /// Where it was installed from (a git URL), when known.
    pub source_url: Option<String>,
    pub path: PathBuf,
    pub state: AppState,
    pub git_commit: Option<String>,
    pub version: Option<String>,
    /// When it last became `installed`.
    pub installed_at: Option<u64>,
    /// Set by the store on every write.
    pub updated_at: u64,
    pub last_error: Option<String>,
}

impl AppRecord {
    /// A record with only the required fields set.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>, state: AppState) -> Self {
        AppRecord {
            id: id.into(),
            source_url: None,
            path: path.into(),
            state,
            git_commit: None,
            version: None,
            installed_at: None,
            updated_at: 0,
            last_error: None,
        }
    }
}

/// The id of a row of `runs`.
pub type RunId = i64;

/// One run of a script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub app_id: Option<String>,
    pub script: String,
    pub args: Option<Value>,
    pub status: RunStatus,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub exit_reason: Option<String>,
    /// The engine process that started it.
    pub engine_pid: Option<u32>,
    /// Its `local` memory when it went daemon (see [`StateStore::set_run_local`]).
    pub local: Option<Value>,
}

/// One recorded shell process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredProcess {
    pub shell_id: String,
    pub app_id: Option<String>,
    pub run_id: Option<RunId>,
    /// The script (process group) that started it.
    pub script: String,
    pub pid: u32,
    pub pgid: u32,
    pub command: String,
    pub cwd: PathBuf,
    pub log_path: Option<PathBuf>,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub exit_code: Option<i32>,
    pub state: ProcState,
    /// The engine process that owns it.
    pub engine_pid: Option<u32>,
}

/// What [`StateStore::add_tunnel`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTunnel {
    pub app_id: Option<String>,
    /// The provider (`cloudflared`, `ngrok`, ...).
    pub kind: String,
    pub local_url: String,
    pub public_url: Option<String>,
    /// The tunnel's process; its start time is read from `/proc` so that
    /// `reconcile` can tell when it is gone.
    pub pid: Option<u32>,
    pub state: TunnelState,
}

/// One tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelRecord {
    pub id: i64,
    pub app_id: Option<String>,
    pub kind: String,
    pub local_url: String,
    pub public_url: Option<String>,
    pub pid: Option<u32>,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub state: TunnelState,
}

/// An app found on disk by the caller's scan, registered when the database
/// is rebuilt ([`StateStore::open_or_rebuild`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredApp {
    pub id: String,
    pub path: PathBuf,
    pub source_url: Option<String>,
    pub git_commit: Option<String>,
    /// The state to register (usually `Installed`).
    pub state: AppState,
}

impl RecoveredApp {
    /// An installed app at `path`.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        RecoveredApp {
            id: id.into(),
            path: path.into(),
            source_url: None,
            git_commit: None,
            state: AppState::Installed,
        }
    }
}

/// What [`StateStore::open_or_rebuild`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The database was corrupt and has been recreated.
    pub rebuilt: bool,
    /// Why it was considered corrupt.
    pub reason: Option<String>,
    /// Where the corrupt file was moved.
    pub corrupt_copy: Option<PathBuf>,
    /// Ids of the apps registered from the scan.
    pub recovered: Vec<String>,
}

/// What [`StateStore::reconcile`] found and changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Recorded as running and alive, and the engine that started them is
    /// gone: candidates for re-adoption ([`StateStore::adopt_process`]).
    pub live: Vec<StoredProcess>,
    /// Alive and owned by a live engine (another `pinokio` process, or this
    /// one): left alone.
    pub owned: Vec<StoredProcess>,
    /// Recorded as running but gone (or the pid was reused): now `lost`.
    pub lost: Vec<StoredProcess>,
    /// Runs now `interrupted`.
    pub interrupted_runs: Vec<RunId>,
    /// Apps whose install/update was cut short: now `failed`.
    pub failed_apps: Vec<String>,
    /// Apps recorded as `running` with nothing left running: now `stopped`.
    pub stopped_apps: Vec<String>,
    /// Tunnels whose process is gone: now `lost`.
    pub lost_tunnels: Vec<i64>,
}

impl ReconcileReport {
    /// Nothing was changed.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.interrupted_runs.is_empty()
            && self.failed_apps.is_empty()
            && self.stopped_apps.is_empty()
            && self.lost_tunnels.is_empty()
    }
}

/// The state store. One SQLite connection behind a mutex: share it in an
/// `Arc`; other processes open their own.
pub struct StateStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// This engine: pid and process start time, written on every row it owns.
    engine: (u32, u64),
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sql_err(path: &Path, op: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StateError {
    let path = path.to_path_buf();
    let op = op.into();
    move |source| StateError::Sqlite { path, op, source }
}

fn io_err(path: &Path, op: impl Into<String>) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    let op = op.into();
    move |source| StateError::Io { path, op, source }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_ms(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const APP_COLS: &str =
    "id, source_url, path, state, git_commit, version, installed_at, updated_at, last_error";

fn app_from_row(r: &Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        id: r.get(0)?,
        source_url: r.get(1)?,
        path: PathBuf::from(r.get::<_, String>(2)?),
        state: r.get(3)?,
        git_commit: r.get(4)?,
        version: r.get(5)?,
        installed_at: opt_ms(r.get(6)?),
        updated_at: r.get::<_, i64>(7)?.max(0) as u64,
        last_error: r.get(8)?,
    })
}

const RUN_COLS: &str =
    "id, app_id, script, args, status, started_at, ended_at, exit_reason, engine_pid, local";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let args: Option<String> = r.get(3)?;
    let args = match args {
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?),
        None => None,
    };
    Ok(RunRecord {
        id: r.get(0)?,
        app_id: r.get(1)?,
        script: r.get(2)?,
        args,
        status: r.get(4)?,
        started_at: r.get::<_, i64>(5)?.max(0) as u64,
        ended_at: opt_ms(r.get(6)?),
        exit_reason: r.get(7)?,
        engine_pid: r.get(8)?,
        local: r
            .get::<_, Option<String>>(9)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

const PROC_COLS: &str = "shell_id, app_id, run_id, script, pid, pgid, command, cwd, log_path, \
                         started_at, ended_at, exit_code, state, engine_pid, engine_started_ms";

/// A process row plus its engine's start time (for the liveness check).
fn proc_from_row(r: &Row<'_>) -> rusqlite::Result<(StoredProcess, Option<u64>)> {
    Ok((
        StoredProcess {
            shell_id: r.get(0)?,
            app_id: r.get(1)?,
            run_id: r.get(2)?,
            script: r.get(3)?,
            pid: r.get(4)?,
            pgid: r.get(5)?,
            command: r.get(6)?,
            cwd: PathBuf::from(r.get::<_, String>(7)?),
            log_path: r.get::<_, Option<String>>(8)?.map(PathBuf::from),
            started_at: r.get::<_, i64>(9)?.max(0) as u64,
            ended_at: opt_ms(r.get(10)?),
            exit_code: r.get(11)?,
            state: r.get(12)?,
            engine_pid: r.get(13)?,
        },
        opt_ms(r.get(14)?),
    ))
}

const TUNNEL_COLS: &str =
    "id, app_id, kind, local_url, public_url, pid, started_at, ended_at, state, pid_started_ms";

fn tunnel_from_row(r: &Row<'_>) -> rusqlite::Result<(TunnelRecord, Option<u64>)> {
    Ok((
        TunnelRecord {
            id: r.get(0)?,
            app_id: r.get(1)?,
            kind: r.get(2)?,
            local_url: r.get(3)?,
            public_url: r.get(4)?,
            pid: r.get(5)?,
            started_at: r.get::<_, i64>(6)?.max(0) as u64,
            ended_at: opt_ms(r.get(7)?),
            state: r.get(8)?,
        },
        opt_ms(r.get(9)?),
    ))
}

/// Bring the schema up to date (or refuse a newer one).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let supported = schema_version();
    let read_version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    let too_new = |found| StateError::TooNew {
        path: path.to_path_buf(),
        found,
        supported,
    };
    let found = read_version(conn).map_err(sql_err(path, "read the schema version"))?;
    if found > supported {
        return Err(too_new(found));
    }
    if found == supported {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err(path, "start the schema migration"))?;
    // Another process may have migrated while we waited for the lock.
    let found = read_version(&tx).map_err(sql_err(path, "read the schema version"))?;
    if found > supported {
        return Err(too_new(found));
    }
    for (i, batch) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let to = i + 1;
        tx.execute_batch(batch)
            .map_err(sql_err(path, format!("migrate the schema to version {to}")))?;
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))
            .map_err(sql_err(path, format!("set the schema version to {to}")))?;
    }
    tx.commit()
        .map_err(sql_err(path, "commit the schema migration"))
}

impl StateStore {
    /// Open (creating when missing) `home/library.sqlite` and migrate it.
    pub fn open(home: &Path) -> Result<StateStore, StateError> {
        let path = home.join(DB_FILE);
        std::fs::create_dir_all(home).map_err(io_err(&path, "create the home folder"))?;
        Self::open_file(&path)
    }

    /// Open (creating when missing) the database at `path` and migrate it.
    pub fn open_file(path: &Path) -> Result<StateStore, StateError> {
        let mut conn = Connection::open(path).map_err(sql_err(path, "open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql_err(path, "set the busy timeout"))?;
        // Reading the journal mode is the first read of the file: a file that
        // is not a database fails here.
        // Switching to WAL needs an exclusive lock, and SQLite reports
        // SQLITE_BUSY for it without calling the busy handler while another
        // process is creating the same file: retry within the busy timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let _mode: String = loop {
            match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
                Ok(m) => break m,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(sql_err(path, "switch to WAL journal mode")(e)),
            }
        };
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(sql_err(path, "set connection options"))?;
        migrate(&mut conn, path)?;
        let me = std::process::id();
        Ok(StateStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            engine: (me, pid_start_ms(me).unwrap_or_else(now_ms)),
        })
    }

    /// Open `home/library.sqlite`; when it is not a database or fails
    /// `PRAGMA integrity_check`, move it aside to
    /// `library.sqlite.corrupt-<ms>` (with its `-wal`), create a fresh one
    /// and register the apps `scan` finds (`HOME/api/*`).
    ///
    /// Other failures (locked, unreadable, [`StateError::TooNew`]) are
    /// returned as errors and the file is left alone.
    pub fn open_or_rebuild(
        home: &Path,
        scan: impl Fn() -> Vec<RecoveredApp>,
    ) -> Result<(StateStore, RecoveryReport), StateError> {
        let path = home.join(DB_FILE);
        let reason = match Self::open_checked(home) {
            Ok(store) => return Ok((store, RecoveryReport::default())),
            Err(e) if e.is_corruption() => e.to_string(),
            Err(e) => return Err(e),
        };
        // One process at a time moves the file: another one may be
        // rebuilding right now, and its fresh database must not be moved.
        let _lock = FileLock::acquire(&home.join(format!("{DB_FILE}.lock")))
            .map_err(io_err(&path, "lock the database for rebuilding"))?;
        match Self::open_checked(home) {
            Ok(store) => return Ok((store, RecoveryReport::default())),
            Err(e) if e.is_corruption() => {}
            Err(e) => return Err(e),
        }
        let aside = home.join(format!("{DB_FILE}.corrupt-{}", now_ms()));
        std::fs::rename(&path, &aside).map_err(io_err(
            &path,
            format!("move the corrupt database to {}", aside.display()),
        ))?;
        // A stale WAL would be replayed into the fresh database.
        for suffix in ["-wal", "-shm"] {
            let side = home.join(format!("{DB_FILE}{suffix}"));
            if side.exists() {
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                std::fs::rename(&side, &to).map_err(io_err(
                    &side,
                    format!("move the corrupt database's {suffix} file aside"),
                ))?;
            }
        }
        let store = Self::open(home)?;
        let recovered = store.import_apps(&scan())?;
        Ok((
            store,
            RecoveryReport {
                rebuilt: true,
                reason: Some(reason),
                corrupt_copy: Some(aside),
                recovered,
            },
        ))
    }

    fn open_checked(home: &Path) -> Result<StateStore, StateError> {
        let store = Self::open(home)?;
        store.check_integrity()?;
        Ok(store)
    }

    /// `PRAGMA integrity_check`: [`StateError::Corrupt`] with SQLite's
    /// findings unless it says `ok`.
    pub fn check_integrity(&self) -> Result<(), StateError> {
        let findings = self.with("check integrity", |c| {
            let mut st = c.prepare("PRAGMA integrity_check")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if findings.len() == 1 && findings[0] == "ok" {
            Ok(())
        } else {
            Err(StateError::Corrupt {
                path: self.path.clone(),
                detail: findings.join("; "),
            })
        }
    }

    /// Register apps found on disk that the store does not know yet (known
    /// ones are left as they are). Returns the ids registered.
    pub fn import_apps(&self, apps: &[RecoveredApp]) -> Result<Vec<String>, StateError> {
        let (pid, started) = self.engine;
        self.with("register recovered apps", |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = ms(now_ms());
            let mut added = Vec::new();
            for a in apps {
                let installed_at = (a.state == AppState::Installed).then_some(now);
                let n = tx.execute(
                    "INSERT INTO apps (id, source_url, path, state, git_commit, installed_at, \
                     updated_at, engine_pid, engine_started_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(id) DO NOTHING",
                    params![
                        a.id,
                        a.source_url,
                        path_text(&a.path),
                        a.state,
                        a.git_commit,
                        installed_at,
                        now,
                        pid,
                        ms(started)
                    ],
                )?;
                if n > 0 {
                    added.push(a.id.clone());
                }
            }
            tx.commit()?;
            Ok(added)
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pretend to be another engine process (tests of `reconcile`).
    #[cfg(test)]
    pub(crate) fn set_engine_identity(&mut self, pid: u32, started_ms: u64) {
        self.engine = (pid, started_ms);
    }

    fn with<T>(
        &self,
        op: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(sql_err(&self.path, op))
    }

    // ----- apps -------------------------------------------------------------

    /// Insert or replace an app. `updated_at` is set to now; `installed_at`
    /// is the record's when given, else the stored one, else now when the
    /// state is `Installed`. Returns the stored record.
    pub fn upsert_app(&self, app: &AppRecord) -> Result<AppRecord, StateError> {
        let (pid, started) = self.engine;
        self.with(&format!("save app {:?}", app.id), |c| {
            let now = ms(now_ms());
            let installed_now = (app.state == AppState::Installed).then_some(now);
            let given = app.installed_at.map(ms);
            c.execute(
                "INSERT INTO apps (id, source_url, path, state, git_commit, version, installed_at, \
                 updated_at, last_error, engine_pid, engine_started_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, ?12), ?8, ?9, ?10, ?11) \
                 ON CONFLICT(id) DO UPDATE SET source_url = excluded.source_url, \
                 path = excluded.path, state = excluded.state, git_commit = excluded.git_commit, \
                 version = excluded.version, \
                 installed_at = COALESCE(?7, apps.installed_at, ?12), \
                 updated_at = excluded.updated_at, last_error = excluded.last_error, \
                 engine_pid = excluded.engine_pid, engine_started_ms = excluded.engine_started_ms",
                params![
                    app.id,
                    app.source_url,
                    path_text(&app.path),
                    app.state,
                    app.git_commit,
                    app.version,
                    given,
                    now,
                    app.last_error,
                    pid,
                    ms(started),
                    installed_now
                ],
            )?;
            c.query_row(
                &format!("SELECT {APP_COLS} FROM apps WHERE id = ?1"),
                [&app.id],
                app_from_row,
            )
        })
    }

    /// One app.
    pub fn get_app(&self, id: &str) -> Result<Option<AppRecord>, StateError> {
        self.with(&format!("read app {id:?}"), |c| {
            c.query_row(
                &format!("SELECT {APP_COLS} FROM apps WHERE id = ?1"),
                [id],
                app_from_row,
            )
            .optional()
        })
    }

    /// Every app, by id.
    pub fn list_apps(&self) -> Result<Vec<AppRecord>, StateError> {
        self.with("list apps", |c| {
            let mut st = c.prepare(&format!("SELECT {APP_COLS} FROM apps ORDER BY id"))?;
            let rows = st.query_map([], app_from_row)?;
            rows.collect()
        })
    }

    /// Change an app's state and `last_error` (`None` clears it). Becoming
    /// `Installed` after `Installing` (or for the first time) sets
    /// `installed_at`. Returns false when there is no such app.
    pub fn set_app_state(
        &self,
        id: &str,
        state: AppState,
        error: Option<&str>,
    ) -> Result<bool, StateError> {
        let (pid, started) = self.engine;
        self.with(&format!("set the state of app {id:?}"), |c| {
            let n = c.execute(
                "UPDATE apps SET \
                 installed_at = CASE WHEN ?2 = 'installed' \
                   AND (installed_at IS NULL OR state = 'installing') THEN ?4 \
                   ELSE installed_at END, \
                 state = ?2, last_error = ?3, updated_at = ?4, \
                 engine_pid = ?5, engine_started_ms = ?6 WHERE id = ?1",
                params![id, state, error, ms(now_ms()), pid, ms(started)],
            )?;
            Ok(n > 0)
        })
    }

    /// Forget an app and its tunnels (runs and processes stay as history).
    /// Returns false when there was no such app.
    pub fn remove_app(&self, id: &str) -> Result<bool, StateError> {
        self.with(&format!("remove app {id:?}"), |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM tunnels WHERE app_id = ?1", [id])?;
            let n = tx.execute("DELETE FROM apps WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    // ----- runs -------------------------------------------------------------

    /// Record a run that starts now (status `running`). `app` may name an
    /// app the store does not know (or none, for scripts outside `api/`).
    pub fn start_run(
        &self,
        app: Option<&str>,
        script: &str,
        args: Option<&Value>,
    ) -> Result<RunId, StateError> {
        let (pid, started) = self.engine;
        let args = args.map(Value::to_string);
        self.with(&format!("record a run of {script}"), |c| {
            c.execute(
                "INSERT INTO runs (app_id, script, args, status, started_at, engine_pid, \
                 engine_started_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    app,
                    script,
                    args,
                    RunStatus::Running,
                    ms(now_ms()),
                    pid,
                    ms(started)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Keep the `local` memory of a run (saved when it goes daemon).
    pub fn set_run_local(&self, run_id: RunId, local: &Value) -> Result<bool, StateError> {
        let text = local.to_string();
        self.with(&format!("record the memory of run {run_id}"), |c| {
            let n = c.execute(
                "UPDATE runs SET local = ?2 WHERE id = ?1",
                params![run_id, text],
            )?;
            Ok(n > 0)
        })
    }

    /// Record how a run ended. `Running`/`Daemon` leave `ended_at` empty.
    /// Returns false when there is no such run.
    pub fn end_run(
        &self,
        run_id: RunId,
        status: RunStatus,
        reason: Option<&str>,
    ) -> Result<bool, StateError> {
        self.with(&format!("record the end of run {run_id}"), |c| {
            let ended = (!status.is_active()).then(|| ms(now_ms()));
            let n = c.execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, exit_reason = ?4 WHERE id = ?1",
                params![run_id, status, ended, reason],
            )?;
            Ok(n > 0)
        })
    }

    /// One run.
    pub fn get_run(&self, run_id: RunId) -> Result<Option<RunRecord>, StateError> {
        self.with(&format!("read run {run_id}"), |c| {
            c.query_row(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                [run_id],
                run_from_row,
            )
            .optional()
        })
    }

    /// The newest `limit` runs of an app, newest first.
    pub fn runs_of(&self, app: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.with(&format!("list the runs of app {app:?}"), |c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE app_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![app, ms(limit as u64)], run_from_row)?;
            rows.collect()
        })
    }

    /// Runs still `running` or `daemon`, oldest first.
    pub fn active_runs(&self) -> Result<Vec<RunRecord>, StateError> {
        self.with("list active runs", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE status IN ('running', 'daemon') ORDER BY id"
            ))?;
            let rows = st.query_map([], run_from_row)?;
            rows.collect()
        })
    }

    // ----- processes --------------------------------------------------------

    /// Record (or replace: shell ids are reused) a shell started by this
    /// engine. `rec.group` is stored as the script; `running: false` is
    /// stored as `exited`.
    pub fn record_process(
        &self,
        rec: &ProcessRecord,
        app_id: Option<&str>,
        run_id: Option<RunId>,
    ) -> Result<(), StateError> {
        let (pid, started) = self.engine;
        let (state, ended) = if rec.running {
            (ProcState::Running, None)
        } else {
            (ProcState::Exited, Some(ms(now_ms())))
        };
        self.with(&format!("record shell {:?}", rec.shell_id), |c| {
            c.execute(
                // Recording a shell again keeps what an earlier record knew
                // (its app and run) unless this one knows better.
                &format!(
                    "INSERT INTO processes ({PROC_COLS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                     ON CONFLICT(shell_id) DO UPDATE SET \
                     app_id = COALESCE(excluded.app_id, processes.app_id), \
                     run_id = COALESCE(excluded.run_id, processes.run_id), \
                     script = excluded.script, pid = excluded.pid, pgid = excluded.pgid, \
                     command = excluded.command, cwd = excluded.cwd, \
                     log_path = excluded.log_path, started_at = excluded.started_at, \
                     ended_at = excluded.ended_at, exit_code = excluded.exit_code, \
                     state = excluded.state, engine_pid = excluded.engine_pid, \
                     engine_started_ms = excluded.engine_started_ms"
                ),
                params![
                    rec.shell_id,
                    app_id,
                    run_id,
                    rec.group,
                    rec.pid,
                    rec.pgid,
                    rec.command,
                    path_text(&rec.cwd),
                    rec.log_path.as_deref().map(path_text),
                    ms(rec.started_ms),
                    ended,
                    rec.exit_code,
                    state,
                    pid,
                    ms(started)
                ],
            )?;
            Ok(())
        })
    }

    fn end_process(
        &self,
        shell_id: &str,
        state: ProcState,
        code: Option<i32>,
    ) -> Result<bool, StateError> {
        self.with(&format!("record the end of shell {shell_id:?}"), |c| {
            let n = c.execute(
                "UPDATE processes SET state = ?2, exit_code = ?3, ended_at = ?4 \
                 WHERE shell_id = ?1",
                params![shell_id, state, code, ms(now_ms())],
            )?;
            Ok(n > 0)
        })
    }

    /// A shell exited (`code` is `None` when a signal ended it). Returns
    /// false when the shell is not recorded.
    pub fn process_exited(&self, shell_id: &str, code: Option<i32>) -> Result<bool, StateError> {
        self.end_process(shell_id, ProcState::Exited, code)
    }

    /// The engine killed a shell.
    pub fn process_killed(&self, shell_id: &str, code: Option<i32>) -> Result<bool, StateError> {
        self.end_process(shell_id, ProcState::Killed, code)
    }

    /// Take over a live shell left by an engine that is gone (from
    /// [`ReconcileReport::live`]): this engine now owns it.
    pub fn adopt_process(&self, shell_id: &str) -> Result<bool, StateError> {
        let (pid, started) = self.engine;
        self.with(&format!("adopt shell {shell_id:?}"), |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE processes SET engine_pid = ?2, engine_started_ms = ?3 \
                 WHERE shell_id = ?1 AND state = 'running'",
                params![shell_id, pid, ms(started)],
            )?;
            tx.execute(
                "UPDATE runs SET engine_pid = ?2, engine_started_ms = ?3 WHERE id = \
                 (SELECT run_id FROM processes WHERE shell_id = ?1) \
                 AND status IN ('running', 'daemon')",
                params![shell_id, pid, ms(started)],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// One recorded shell.
    pub fn get_process(&self, shell_id: &str) -> Result<Option<StoredProcess>, StateError> {
        self.with(&format!("read shell {shell_id:?}"), |c| {
            c.query_row(
                &format!("SELECT {PROC_COLS} FROM processes WHERE shell_id = ?1"),
                [shell_id],
                |r| proc_from_row(r).map(|(p, _)| p),
            )
            .optional()
        })
    }

    /// Shells recorded as running, oldest first.
    pub fn live_processes(&self) -> Result<Vec<StoredProcess>, StateError> {
        self.with("list running shells", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {PROC_COLS} FROM processes WHERE state = 'running' \
                 ORDER BY started_at, shell_id"
            ))?;
            let rows = st.query_map([], |r| proc_from_row(r).map(|(p, _)| p))?;
            rows.collect()
        })
    }

    /// Every recorded shell of an app, newest first.
    pub fn processes_of(&self, app: &str) -> Result<Vec<StoredProcess>, StateError> {
        self.with(&format!("list the shells of app {app:?}"), |c| {
            let mut st = c.prepare(&format!(
                "SELECT {PROC_COLS} FROM processes WHERE app_id = ?1 ORDER BY started_at DESC"
            ))?;
            let rows = st.query_map([app], |r| proc_from_row(r).map(|(p, _)| p))?;
            rows.collect()
        })
    }

    // ----- tunnels ----------------------------------------------------------

    /// Record a tunnel that starts now. Returns its id.
    pub fn add_tunnel(&self, t: &NewTunnel) -> Result<i64, StateError> {
        let pid_started = t.pid.and_then(pid_start_ms).map(ms);
        self.with(&format!("record a tunnel for {}", t.local_url), |c| {
            c.execute(
                "INSERT INTO tunnels (app_id, kind, local_url, public_url, pid, pid_started_ms, \
                 started_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    t.app_id,
                    t.kind,
                    t.local_url,
                    t.public_url,
                    t.pid,
                    pid_started,
                    ms(now_ms()),
                    t.state
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Change a tunnel's state (and its public URL when given). Leaving
    /// `starting`/`up` sets `ended_at`. Returns false when there is no such
    /// tunnel.
    pub fn set_tunnel(
        &self,
        id: i64,
        state: TunnelState,
        public_url: Option<&str>,
    ) -> Result<bool, StateError> {
        self.with(&format!("update tunnel {id}"), |c| {
            let ended =
                (!matches!(state, TunnelState::Starting | TunnelState::Up)).then(|| ms(now_ms()));
            let n = c.execute(
                "UPDATE tunnels SET state = ?2, public_url = COALESCE(?3, public_url), \
                 ended_at = ?4 WHERE id = ?1",
                params![id, state, public_url, ended],
            )?;
            Ok(n > 0)
        })
    }

    /// Tunnels (of one app, or all), oldest first.
    pub fn tunnels(&self, app: Option<&str>) -> Result<Vec<TunnelRecord>, StateError> {
        self.with("list tunnels", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {TUNNEL_COLS} FROM tunnels WHERE ?1 IS NULL OR app_id = ?1 ORDER BY id"
            ))?;
            let rows = st.query_map([app], |r| tunnel_from_row(r).map(|(t, _)| t))?;
            rows.collect()
        })
    }

    /// Forget a tunnel. Returns false when there was no such tunnel.
    pub fn remove_tunnel(&self, id: i64) -> Result<bool, StateError> {
        self.with(&format!("remove tunnel {id}"), |c| {
            Ok(c.execute("DELETE FROM tunnels WHERE id = ?1", [id])? > 0)
        })
    }

    // ----- reconcile --------------------------------------------------------

    /// Bring the store in line with the processes that actually exist; run it
    /// when an engine starts. `is_alive(pid, started_ms)` says whether the
    /// process recorded with that pid and start time still exists (use
    /// [`process_alive`]; tests inject their own).
    ///
    /// - A shell recorded as running: alive → `live` (its engine is gone:
    ///   adoptable) or `owned` (its engine is alive); dead and its engine
    ///   gone → `lost`, and its run, if still active, `interrupted`
    ///   ([`REASON_PROCESS_LOST`]). A dead shell of a live engine is left to
    ///   that engine.
    /// - A `running` run whose engine is gone can never go on: `interrupted`
    ///   ([`REASON_ENGINE_GONE`]); a `daemon` run whose engine is gone stays
    ///   while one of its shells is alive.
    /// - An app `installing`/`updating` whose engine is gone and that has no
    ///   active run of a live engine: `failed`, "install interrupted" (so the
    ///   install can be redone). An app `running` with nothing active left:
    ///   `stopped`.
    /// - A tunnel `starting`/`up` whose process is gone: `lost`.
    pub fn reconcile(
        &self,
        is_alive: impl Fn(u32, u64) -> bool,
    ) -> Result<ReconcileReport, StateError> {
        self.with("reconcile with running processes", |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = ms(now_ms());
            let mut report = ReconcileReport::default();
            let engine_alive = |pid: Option<u32>, started: Option<u64>| match (pid, started) {
                (Some(p), Some(s)) => is_alive(p, s),
                _ => false,
            };

            // Shells.
            let procs: Vec<(StoredProcess, Option<u64>)> = {
                let mut st = tx.prepare(&format!(
                    "SELECT {PROC_COLS} FROM processes WHERE state = 'running' \
                     ORDER BY started_at, shell_id"
                ))?;
                let rows = st.query_map([], proc_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (p, engine_started) in procs {
                let owner_alive = engine_alive(p.engine_pid, engine_started);
                if is_alive(p.pid, p.started_at) {
                    if owner_alive {
                        report.owned.push(p);
                    } else {
                        report.live.push(p);
                    }
                    continue;
                }
                if owner_alive {
                    continue;
                }
                tx.execute(
                    "UPDATE processes SET state = 'lost', ended_at = ?2 WHERE shell_id = ?1",
                    params![p.shell_id, now],
                )?;
                if let Some(run) = p.run_id {
                    let n = tx.execute(
                        "UPDATE runs SET status = 'interrupted', ended_at = ?2, exit_reason = ?3 \
                         WHERE id = ?1 AND status IN ('running', 'daemon')",
                        params![run, now, REASON_PROCESS_LOST],
                    )?;
                    if n > 0 {
                        report.interrupted_runs.push(run);
                    }
                }
                let mut p = p;
                p.state = ProcState::Lost;
                p.ended_at = Some(now as u64);
                report.lost.push(p);
            }

            // Runs whose engine is gone.
            let runs: Vec<(RunId, RunStatus, Option<u32>, Option<u64>)> = {
                let mut st = tx.prepare(
                    "SELECT id, status, engine_pid, engine_started_ms FROM runs \
                     WHERE status IN ('running', 'daemon') ORDER BY id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, opt_ms(r.get(3)?)))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, status, pid, started) in runs {
                if engine_alive(pid, started) {
                    continue;
                }
                let has_live_shell = report.live.iter().any(|p| p.run_id == Some(id));
                if status == RunStatus::Daemon && has_live_shell {
                    continue;
                }
                tx.execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = ?2, exit_reason = ?3 \
                     WHERE id = ?1",
                    params![id, now, REASON_ENGINE_GONE],
                )?;
                report.interrupted_runs.push(id);
            }

            // Apps.
            let apps: Vec<(String, AppState, Option<u32>, Option<u64>)> = {
                let mut st = tx.prepare(
                    "SELECT id, state, engine_pid, engine_started_ms FROM apps \
                     WHERE state IN ('installing', 'updating', 'running') ORDER BY id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, opt_ms(r.get(3)?)))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, state, pid, started) in apps {
                if engine_alive(pid, started) {
                    continue;
                }
                let active: Vec<(Option<u32>, Option<u64>)> = {
                    let mut st = tx.prepare(
                        "SELECT engine_pid, engine_started_ms FROM runs \
                         WHERE app_id = ?1 AND status IN ('running', 'daemon')",
                    )?;
                    let rows = st.query_map([&id], |r| Ok((r.get(0)?, opt_ms(r.get(1)?))))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                let (new_state, error) = match state {
                    AppState::Installing | AppState::Updating => {
                        if active.iter().any(|&(p, s)| engine_alive(p, s)) {
                            continue;
                        }
                        let error = if state == AppState::Installing {
                            ERROR_INSTALL_INTERRUPTED
                        } else {
                            ERROR_UPDATE_INTERRUPTED
                        };
                        (AppState::Failed, Some(error))
                    }
                    _ => {
                        let live_shell = report
                            .live
                            .iter()
                            .chain(&report.owned)
                            .any(|p| p.app_id.as_deref() == Some(&id));
                        if !active.is_empty() || live_shell {
                            continue;
                        }
                        (AppState::Stopped, None)
                    }
                };
                tx.execute(
                    "UPDATE apps SET state = ?2, last_error = COALESCE(?3, last_error), \
                     updated_at = ?4 WHERE id = ?1",
                    params![id, new_state, error, now],
                )?;
                if new_state == AppState::Failed {
                    report.failed_apps.push(id);
                } else {
                    report.stopped_apps.push(id);
                }
            }

            // Tunnels.
            let tunnels: Vec<(TunnelRecord, Option<u64>)> = {
                let mut st = tx.prepare(&format!(
                    "SELECT {TUNNEL_COLS} FROM tunnels WHERE state IN ('starting', 'up') \
                     AND pid IS NOT NULL ORDER BY id"
                ))?;
                let rows = st.query_map([], tunnel_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (t, pid_started) in tunnels {
                let Some(pid) = t.pid else { continue };
                if is_alive(pid, pid_started.unwrap_or(t.started_at)) {
                    continue;
                }
                tx.execute(
                    "UPDATE tunnels SET state = 'lost', ended_at = ?2 WHERE id = ?1",
                    params![t.id, now],
                )?;
                report.lost_tunnels.push(t.id);
            }

            tx.commit()?;
            Ok(report)
        })
    }
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> std::io::Result<FileLock> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            // SAFETY: a valid open descriptor.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
