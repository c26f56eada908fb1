use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::*;

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn user_version(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

fn proc_rec(shell_id: &str, pid: u32, started_ms: u64) -> ProcessRecord {
    ProcessRecord {
        shell_id: shell_id.into(),
        group: "/home/api/app/start.js".into(),
        pid,
        pgid: pid,
        command: "python app.py".into(),
        cwd: PathBuf::from("/home/api/app"),
        started_ms,
        log_path: Some(PathBuf::from("/home/api/app/logs/shell/start.js.log")),
        running: true,
        exit_code: None,
    }
}

/// A pid that just exited (and was reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert!(pid_start_ms(pid).is_none(), "pid {pid} was reused at once");
    pid
}

fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, pid_start_ms(pid).unwrap())
}

/// A store that acts as an engine that is no longer running.
fn store_of_dead_engine(home: &Path) -> StateStore {
    let mut s = StateStore::open(home).unwrap();
    s.set_engine_identity(dead_pid(), now_ms() - 10_000);
    s
}

#[test]
fn state_migrates_an_empty_database() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    let path = h.path().join(DB_FILE);
    assert_eq!(s.path(), path);
    assert_eq!(user_version(&path), schema_version());
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let mut tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables.sort();
    assert_eq!(tables, ["apps", "processes", "runs", "tunnels"]);
    let fk: i64 = s
        .with("test", |c| {
            c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        })
        .unwrap();
    assert_eq!(fk, 1);
    let timeout: i64 = s
        .with("test", |c| {
            c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        })
        .unwrap();
    assert_eq!(timeout, 5000);
}

#[test]
fn state_migrates_from_an_older_version() {
    let h = home();
    let path = h.path().join(DB_FILE);
    // A database at version 0 with unrelated content.
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE other (x INTEGER); INSERT INTO other VALUES (7);")
        .unwrap();
    StateStore::open(h.path()).unwrap();
    assert_eq!(user_version(&path), schema_version());
    let c = Connection::open(&path).unwrap();
    let x: i64 = c
        .query_row("SELECT x FROM other", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, 7);
}

#[test]
fn state_reopening_keeps_data() {
    let h = home();
    let run = {
        let s = StateStore::open(h.path()).unwrap();
        s.upsert_app(&AppRecord::new(
            "comfy",
            h.path().join("api/comfy"),
            AppState::Installed,
        ))
        .unwrap();
        s.start_run(Some("comfy"), "start.js", Some(&json!({"port": 8188})))
            .unwrap()
    };
    let s = StateStore::open(h.path()).unwrap();
    let app = s.get_app("comfy").unwrap().unwrap();
    assert_eq!(app.state, AppState::Installed);
    assert_eq!(app.path, h.path().join("api/comfy"));
    let r = s.get_run(run).unwrap().unwrap();
    assert_eq!(r.args, Some(json!({"port": 8188})));
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(user_version(s.path()), schema_version());
}

#[test]
fn state_refuses_a_newer_schema() {
    let h = home();
    let path = h.path().join(DB_FILE);
    StateStore::open(h.path()).unwrap();
    let newer = schema_version() + 1;
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {newer}"))
        .unwrap();
    let err = StateStore::open(h.path()).unwrap_err();
    assert!(
        matches!(err, StateError::TooNew { found, supported, .. } if found == newer && supported == schema_version()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer pinokio"), "{msg}");
    assert!(!err.is_corruption());
    // open_or_rebuild must not throw a newer database away.
    let err = StateStore::open_or_rebuild(h.path(), Vec::new).unwrap_err();
    assert!(matches!(err, StateError::TooNew { .. }), "{err:?}");
    assert_eq!(user_version(&path), newer);
    let aside = std::fs::read_dir(h.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(aside, 0);
}

#[test]
fn state_app_round_trip() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    assert_eq!(s.get_app("a").unwrap(), None);
    let mut a = AppRecord::new("a", "/p/a", AppState::Installing);
    a.source_url = Some("https://github.com/x/a.git".into());
    let stored = s.upsert_app(&a).unwrap();
    assert_eq!(stored.installed_at, None);
    assert!(stored.updated_at > 0);
    assert_eq!(
        stored.source_url.as_deref(),
        Some("https://github.com/x/a.git")
    );

    assert!(s.set_app_state("a", AppState::Installed, None).unwrap());
    let got = s.get_app("a").unwrap().unwrap();
    assert_eq!(got.state, AppState::Installed);
    let installed_at = got.installed_at.expect("installed_at set");

    assert!(s
        .set_app_state("a", AppState::Failed, Some("boom"))
        .unwrap());
    let got = s.get_app("a").unwrap().unwrap();
    assert_eq!(got.state, AppState::Failed);
    assert_eq!(got.last_error.as_deref(), Some("boom"));
    assert_eq!(got.installed_at, Some(installed_at));
    assert!(!s.set_app_state("nope", AppState::Failed, None).unwrap());

    // Upsert updates in place and keeps installed_at.
    let mut b = got.clone();
    b.git_commit = Some("abc123".into());
    b.version = Some("1.2".into());
    b.state = AppState::Installed;
    b.last_error = None;
    b.installed_at = None;
    let stored = s.upsert_app(&b).unwrap();
    assert_eq!(stored.git_commit.as_deref(), Some("abc123"));
    assert_eq!(stored.version.as_deref(), Some("1.2"));
    assert_eq!(stored.installed_at, Some(installed_at));
    assert_eq!(stored.last_error, None);

    s.upsert_app(&AppRecord::new("0first", "/p/0", AppState::Stopped))
        .unwrap();
    let ids: Vec<String> = s.list_apps().unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["0first", "a"]);

    s.add_tunnel(&NewTunnel {
        app_id: Some("a".into()),
        kind: "cloudflared".into(),
        local_url: "http://127.0.0.1:7860".into(),
        public_url: None,
        pid: None,
        state: TunnelState::Starting,
    })
    .unwrap();
    assert!(s.remove_app("a").unwrap());
    assert!(!s.remove_app("a").unwrap());
    assert_eq!(s.get_app("a").unwrap(), None);
    assert!(s.tunnels(Some("a")).unwrap().is_empty());
    assert_eq!(s.list_apps().unwrap().len(), 1);
}

#[test]
fn state_run_round_trip() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    let r1 = s.start_run(Some("a"), "install.js", None).unwrap();
    let r2 = s
        .start_run(Some("a"), "start.js", Some(&json!(["x", 1])))
        .unwrap();
    let r3 = s.start_run(None, "/tmp/loose.json", None).unwrap();
    assert!(r1 < r2 && r2 < r3);

    assert!(s
        .end_run(r1, RunStatus::Error, Some("step 2 failed"))
        .unwrap());
    assert!(s.end_run(r2, RunStatus::Daemon, None).unwrap());
    assert!(!s.end_run(9999, RunStatus::Finished, None).unwrap());

    let runs = s.runs_of("a", 10).unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [r2, r1]);
    assert_eq!(runs[0].status, RunStatus::Daemon);
    assert_eq!(runs[0].ended_at, None);
    assert_eq!(runs[0].args, Some(json!(["x", 1])));
    assert_eq!(runs[0].engine_pid, Some(std::process::id()));
    assert_eq!(runs[1].status, RunStatus::Error);
    assert!(runs[1].ended_at.is_some());
    assert_eq!(runs[1].exit_reason.as_deref(), Some("step 2 failed"));
    assert_eq!(runs[1].script, "install.js");
    assert_eq!(s.runs_of("a", 1).unwrap().len(), 1);

    let active: Vec<RunId> = s.active_runs().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(active, [r2, r3]);
    s.end_run(r2, crate::events::RunStatus::Stopped.into(), None)
        .unwrap();
    assert_eq!(s.get_run(r2).unwrap().unwrap().status, RunStatus::Stopped);
}

#[test]
fn state_process_round_trip() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    let run = s.start_run(Some("a"), "start.js", None).unwrap();
    s.record_process(&proc_rec("sh1", 4242, 1_000), Some("a"), Some(run))
        .unwrap();
    s.record_process(&proc_rec("sh2", 4243, 2_000), Some("a"), None)
        .unwrap();
    let live = s.live_processes().unwrap();
    assert_eq!(live.len(), 2);
    let p = &live[0];
    assert_eq!(p.shell_id, "sh1");
    assert_eq!(p.pid, 4242);
    assert_eq!(p.pgid, 4242);
    assert_eq!(p.run_id, Some(run));
    assert_eq!(p.script, "/home/api/app/start.js");
    assert_eq!(p.command, "python app.py");
    assert_eq!(p.cwd, PathBuf::from("/home/api/app"));
    assert_eq!(p.started_at, 1_000);
    assert_eq!(p.state, ProcState::Running);
    assert!(p.log_path.is_some());

    assert!(s.process_exited("sh1", Some(3)).unwrap());
    assert!(s.process_killed("sh2", None).unwrap());
    assert!(!s.process_exited("nope", None).unwrap());
    assert!(s.live_processes().unwrap().is_empty());
    let p = s.get_process("sh1").unwrap().unwrap();
    assert_eq!((p.state, p.exit_code), (ProcState::Exited, Some(3)));
    assert!(p.ended_at.is_some());
    assert_eq!(
        s.get_process("sh2").unwrap().unwrap().state,
        ProcState::Killed
    );
    assert_eq!(s.processes_of("a").unwrap().len(), 2);

    // Shell ids are reused: recording again replaces the row.
    s.record_process(&proc_rec("sh1", 5000, 3_000), Some("a"), None)
        .unwrap();
    let p = s.get_process("sh1").unwrap().unwrap();
    assert_eq!(
        (p.pid, p.state, p.exit_code),
        (5000, ProcState::Running, None)
    );

    // Recording again without a run keeps the run an earlier record had
    // (the engine records a shell with its run, the control server again
    // without): a restarted engine needs it to find the run's memory.
    s.record_process(&proc_rec("sh1", 5000, 3_000), Some("a"), Some(run))
        .unwrap();
    s.record_process(&proc_rec("sh1", 5000, 3_000), None, None)
        .unwrap();
    let p = s.get_process("sh1").unwrap().unwrap();
    assert_eq!((p.run_id, p.app_id.as_deref()), (Some(run), Some("a")));

    // A daemon run's `local` memory is kept for re-adoption.
    assert!(s
        .set_run_local(run, &serde_json::json!({"url": "http://127.0.0.1:7860"}))
        .unwrap());
    assert_eq!(
        s.get_run(run).unwrap().unwrap().local,
        Some(serde_json::json!({"url": "http://127.0.0.1:7860"}))
    );
    assert!(!s.set_run_local(run + 100, &serde_json::json!({})).unwrap());

    // A record of an exited shell.
    let mut done = proc_rec("sh3", 77, 4_000);
    done.running = false;
    done.exit_code = Some(0);
    s.record_process(&done, None, None).unwrap();
    assert_eq!(
        s.get_process("sh3").unwrap().unwrap().state,
        ProcState::Exited
    );

    // The run must exist (foreign key).
    let err = s
        .record_process(&proc_rec("sh4", 1, 1), None, Some(run + 100))
        .unwrap_err();
    assert!(err.to_string().contains("record shell \"sh4\""), "{err}");
}

#[test]
fn state_tunnel_round_trip() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    let id = s
        .add_tunnel(&NewTunnel {
            app_id: Some("a".into()),
            kind: "cloudflared".into(),
            local_url: "http://127.0.0.1:7860".into(),
            public_url: None,
            pid: Some(std::process::id()),
            state: TunnelState::Starting,
        })
        .unwrap();
    assert!(s
        .set_tunnel(id, TunnelState::Up, Some("https://x.trycloudflare.com"))
        .unwrap());
    let t = &s.tunnels(None).unwrap()[0];
    assert_eq!(t.state, TunnelState::Up);
    assert_eq!(t.public_url.as_deref(), Some("https://x.trycloudflare.com"));
    assert_eq!(t.pid, Some(std::process::id()));
    assert_eq!(t.ended_at, None);
    assert!(s.set_tunnel(id, TunnelState::Stopped, None).unwrap());
    let t = &s.tunnels(Some("a")).unwrap()[0];
    assert_eq!(t.public_url.as_deref(), Some("https://x.trycloudflare.com"));
    assert!(t.ended_at.is_some());
    assert!(s.tunnels(Some("b")).unwrap().is_empty());
    assert!(s.remove_tunnel(id).unwrap());
    assert!(!s.remove_tunnel(id).unwrap());
}

#[test]
fn state_reconcile_dead_live_and_reused_pids() {
    let h = home();
    let old = store_of_dead_engine(h.path());
    let (my_pid, my_start) = me();
    let dead = dead_pid();

    let run_dead = old.start_run(Some("a"), "start.js", None).unwrap();
    let run_live = old.start_run(Some("b"), "start.js", None).unwrap();
    let run_reused = old.start_run(Some("c"), "start.js", None).unwrap();
    old.end_run(run_live, RunStatus::Daemon, None).unwrap();
    old.end_run(run_reused, RunStatus::Daemon, None).unwrap();
    old.record_process(&proc_rec("dead", dead, now_ms()), Some("a"), Some(run_dead))
        .unwrap();
    old.record_process(
        &proc_rec("live", my_pid, my_start),
        Some("b"),
        Some(run_live),
    )
    .unwrap();
    // This process's pid, but recorded a minute before it started: reused.
    old.record_process(
        &proc_rec("reused", my_pid, my_start - 60_000),
        Some("c"),
        Some(run_reused),
    )
    .unwrap();
    drop(old);

    let s = StateStore::open(h.path()).unwrap();
    let report = s.reconcile(process_alive).unwrap();

    let ids = |v: &[StoredProcess]| v.iter().map(|p| p.shell_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&report.live), ["live"]);
    let mut lost = ids(&report.lost);
    lost.sort();
    assert_eq!(lost, ["dead", "reused"]);
    assert!(report.owned.is_empty());
    let mut interrupted = report.interrupted_runs.clone();
    interrupted.sort();
    assert_eq!(interrupted, [run_dead, run_reused]);

    for shell in ["dead", "reused"] {
        let p = s.get_process(shell).unwrap().unwrap();
        assert_eq!(p.state, ProcState::Lost, "{shell}");
        assert!(p.ended_at.is_some(), "{shell}");
    }
    assert_eq!(
        s.get_process("live").unwrap().unwrap().state,
        ProcState::Running
    );
    for run in [run_dead, run_reused] {
        let r = s.get_run(run).unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Interrupted);
        assert_eq!(r.exit_reason.as_deref(), Some(REASON_PROCESS_LOST));
        assert!(r.ended_at.is_some());
    }
    // The daemon whose shell is alive stays, ready to be adopted.
    assert_eq!(
        s.get_run(run_live).unwrap().unwrap().status,
        RunStatus::Daemon
    );

    // Adopting makes this engine the owner: a second pass leaves it alone.
    assert!(s.adopt_process("live").unwrap());
    let again = s.reconcile(process_alive).unwrap();
    assert!(again.is_clean(), "{again:?}");
    assert!(again.live.is_empty());
    assert_eq!(ids(&again.owned), ["live"]);
    assert_eq!(
        s.get_run(run_live).unwrap().unwrap().engine_pid,
        Some(my_pid)
    );
}

#[test]
fn state_reconcile_leaves_a_live_engine_alone() {
    let h = home();
    // This test process is the engine: alive.
    let s = StateStore::open(h.path()).unwrap();
    let dead = dead_pid();
    let run = s.start_run(Some("a"), "install.js", None).unwrap();
    s.upsert_app(&AppRecord::new("a", "/p/a", AppState::Installing))
        .unwrap();
    s.record_process(&proc_rec("sh", dead, now_ms()), Some("a"), Some(run))
        .unwrap();
    let report = s.reconcile(process_alive).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s.get_run(run).unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(s.get_app("a").unwrap().unwrap().state, AppState::Installing);
    assert_eq!(
        s.get_process("sh").unwrap().unwrap().state,
        ProcState::Running
    );

    // The same rows seen by a checker that says everything is dead.
    let report = s.reconcile(|_, _| false).unwrap();
    assert_eq!(report.interrupted_runs, [run]);
    assert_eq!(report.failed_apps, ["a"]);
}

#[test]
fn state_interrupted_install_is_marked_failed() {
    let h = home();
    let old = store_of_dead_engine(h.path());
    old.upsert_app(&AppRecord::new("a", "/p/a", AppState::Installing))
        .unwrap();
    let install = old.start_run(Some("a"), "install.js", None).unwrap();
    // An update killed before its run was recorded.
    old.upsert_app(&AppRecord::new("u", "/p/u", AppState::Updating))
        .unwrap();
    // A "running" app whose daemon is gone.
    old.upsert_app(&AppRecord::new("r", "/p/r", AppState::Running))
        .unwrap();
    let daemon = old.start_run(Some("r"), "start.js", None).unwrap();
    old.end_run(daemon, RunStatus::Daemon, None).unwrap();
    // An installed app is not touched.
    old.upsert_app(&AppRecord::new("ok", "/p/ok", AppState::Installed))
        .unwrap();
    drop(old);

    let s = StateStore::open(h.path()).unwrap();
    let report = s.reconcile(process_alive).unwrap();
    assert_eq!(report.failed_apps, ["a", "u"]);
    assert_eq!(report.stopped_apps, ["r"]);
    let a = s.get_app("a").unwrap().unwrap();
    assert_eq!(a.state, AppState::Failed);
    assert_eq!(a.last_error.as_deref(), Some(ERROR_INSTALL_INTERRUPTED));
    let u = s.get_app("u").unwrap().unwrap();
    assert_eq!(u.last_error.as_deref(), Some(ERROR_UPDATE_INTERRUPTED));
    assert_eq!(s.get_app("r").unwrap().unwrap().state, AppState::Stopped);
    assert_eq!(s.get_app("ok").unwrap().unwrap().state, AppState::Installed);
    let r = s.get_run(install).unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Interrupted);
    assert_eq!(r.exit_reason.as_deref(), Some(REASON_ENGINE_GONE));
    assert_eq!(
        s.get_run(daemon).unwrap().unwrap().status,
        RunStatus::Interrupted
    );

    // `pinokio install` can redo it.
    s.set_app_state("a", AppState::Installing, None).unwrap();
    assert!(s.reconcile(process_alive).unwrap().is_clean());
    s.set_app_state("a", AppState::Installed, None).unwrap();
    let a = s.get_app("a").unwrap().unwrap();
    assert_eq!((a.state, a.last_error), (AppState::Installed, None));
}

#[test]
fn state_reconcile_marks_dead_tunnels_lost() {
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    let mk = |pid| NewTunnel {
        app_id: None,
        kind: "cloudflared".into(),
        local_url: "http://127.0.0.1:1".into(),
        public_url: None,
        pid: Some(pid),
        state: TunnelState::Up,
    };
    let live = s.add_tunnel(&mk(std::process::id())).unwrap();
    let dead = s.add_tunnel(&mk(dead_pid())).unwrap();
    let report = s.reconcile(process_alive).unwrap();
    assert_eq!(report.lost_tunnels, [dead]);
    let states: Vec<_> = s
        .tunnels(None)
        .unwrap()
        .iter()
        .map(|t| (t.id, t.state))
        .collect();
    assert_eq!(states, [(live, TunnelState::Up), (dead, TunnelState::Lost)]);
}

fn scan_two(home: &Path) -> impl Fn() -> Vec<RecoveredApp> + '_ {
    move || {
        let mut b = RecoveredApp::new("b", home.join("api/b"));
        b.source_url = Some("https://github.com/x/b.git".into());
        vec![RecoveredApp::new("a", home.join("api/a")), b]
    }
}

fn corrupt_copies(home: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(home)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("library.sqlite.corrupt-") && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn state_garbage_file_is_rebuilt_from_the_scan() {
    let h = home();
    let path = h.path().join(DB_FILE);
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    // A stale WAL must not be replayed into the new database.
    std::fs::write(h.path().join("library.sqlite-wal"), b"stale wal").unwrap();

    let err = StateStore::open(h.path()).unwrap_err();
    assert!(err.is_corruption(), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));

    let (s, report) = StateStore::open_or_rebuild(h.path(), scan_two(h.path())).unwrap();
    assert!(report.rebuilt);
    assert_eq!(report.recovered, ["a", "b"]);
    assert!(
        report.reason.as_deref().unwrap().contains("not a database"),
        "{report:?}"
    );
    let copy = report.corrupt_copy.clone().unwrap();
    assert_eq!(corrupt_copies(h.path()), std::slice::from_ref(&copy));
    assert_eq!(std::fs::read(&copy).unwrap(), garbage);
    // SQLite drops an invalid WAL when the connection closes; a leftover
    // one is moved aside with the database. Either way the new database
    // does not use it.
    let wal = std::fs::read(h.path().join("library.sqlite-wal")).unwrap_or_default();
    assert!(!wal.starts_with(b"stale wal"));

    let apps = s.list_apps().unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].state, AppState::Installed);
    assert_eq!(apps[0].path, h.path().join("api/a"));
    assert!(apps[0].installed_at.is_some());
    assert_eq!(
        apps[1].source_url.as_deref(),
        Some("https://github.com/x/b.git")
    );
    drop(s);

    // The rebuilt database is healthy: opening again changes nothing.
    let (s, report) = StateStore::open_or_rebuild(h.path(), || panic!("no scan")).unwrap();
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(s.list_apps().unwrap().len(), 2);
    assert_eq!(corrupt_copies(h.path()).len(), 1);
}

#[test]
fn state_damaged_pages_are_rebuilt() {
    let h = home();
    let path = h.path().join(DB_FILE);
    {
        let s = StateStore::open(h.path()).unwrap();
        for i in 0..2000 {
            s.upsert_app(&AppRecord::new(
                format!("app{i:04}"),
                format!("/p/{i}"),
                AppState::Installed,
            ))
            .unwrap();
        }
        s.with("checkpoint", |c| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        })
        .unwrap();
    }
    // Keep the header (page 1) intact; scribble over the rest.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 16_384, "{}", bytes.len());
    for (i, b) in bytes.iter_mut().enumerate().skip(4096 + 100) {
        *b = (i % 253) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();

    let (s, report) = StateStore::open_or_rebuild(h.path(), scan_two(h.path())).unwrap();
    assert!(report.rebuilt, "{report:?}");
    assert_eq!(report.recovered, ["a", "b"]);
    assert_eq!(corrupt_copies(h.path()).len(), 1);
    assert_eq!(s.list_apps().unwrap().len(), 2);
    s.check_integrity().unwrap();
}

#[test]
fn state_healthy_database_is_not_rebuilt() {
    let h = home();
    StateStore::open(h.path())
        .unwrap()
        .upsert_app(&AppRecord::new("keep", "/p/keep", AppState::Installed))
        .unwrap();
    let (s, report) = StateStore::open_or_rebuild(h.path(), scan_two(h.path())).unwrap();
    assert!(!report.rebuilt);
    assert!(report.recovered.is_empty());
    let ids: Vec<String> = s.list_apps().unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["keep"]);
    // import_apps adds only what is missing.
    let added = s
        .import_apps(&[
            RecoveredApp::new("keep", "/elsewhere"),
            RecoveredApp::new("new", "/p/new"),
        ])
        .unwrap();
    assert_eq!(added, ["new"]);
    assert_eq!(
        s.get_app("keep").unwrap().unwrap().path,
        PathBuf::from("/p/keep")
    );
}

const WRITES: usize = 300;

/// What one writer does: `WRITES` rounds of app/run/process writes, each
/// with its own prefix.
fn write_many(s: &StateStore, prefix: &str) {
    for i in 0..WRITES {
        let app = format!("{prefix}-{}", i % 10);
        s.upsert_app(&AppRecord::new(app.clone(), "/p", AppState::Installed))
            .unwrap();
        let run = s
            .start_run(Some(&app), "start.js", Some(&json!({ "i": i })))
            .unwrap();
        let shell = format!("{prefix}-sh-{i}");
        s.record_process(&proc_rec(&shell, 1, 1), Some(&app), Some(run))
            .unwrap();
        s.process_exited(&shell, Some(0)).unwrap();
        s.end_run(run, RunStatus::Finished, None).unwrap();
    }
}

fn check_writers(s: &StateStore, prefixes: &[&str]) {
    s.check_integrity().unwrap();
    let runs: i64 = s
        .with("count", |c| {
            c.query_row(
                "SELECT COUNT(*) FROM runs WHERE status = 'finished'",
                [],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(runs as usize, WRITES * prefixes.len());
    let procs: i64 = s
        .with("count", |c| {
            c.query_row(
                "SELECT COUNT(*) FROM processes WHERE state = 'exited'",
                [],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(procs as usize, WRITES * prefixes.len());
    assert_eq!(s.list_apps().unwrap().len(), 10 * prefixes.len());
}

#[test]
fn state_concurrent_writers_in_threads() {
    let h = home();
    let root: Arc<PathBuf> = Arc::new(h.path().to_path_buf());
    let threads: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|prefix| {
            let root = root.clone();
            std::thread::spawn(move || {
                // Each thread has its own connection, like another process.
                let s = StateStore::open(&root).unwrap();
                write_many(&s, prefix);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    check_writers(&StateStore::open(h.path()).unwrap(), &["t1", "t2"]);
}

const CHILD_ENV: &str = "PINOKIO_STATE_TEST_CHILD_HOME";

/// Not a test on its own: the body of the child processes of
/// `state_concurrent_writers_in_processes` (does nothing unless the
/// environment names a home).
#[test]
fn state_child_writer() {
    let (Some(home), Ok(prefix)) = (
        std::env::var_os(CHILD_ENV),
        std::env::var("PINOKIO_STATE_TEST_CHILD_PREFIX"),
    ) else {
        return;
    };
    let s = StateStore::open(Path::new(&home)).unwrap();
    write_many(&s, &prefix);
}

#[test]
fn state_concurrent_writers_in_processes() {
    let h = home();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|prefix| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "state::tests::state_child_writer",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CHILD_ENV, h.path())
                .env("PINOKIO_STATE_TEST_CHILD_PREFIX", prefix)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the test (not filtered out).
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    check_writers(&StateStore::open(h.path()).unwrap(), &["p1", "p2"]);
}

#[test]
fn state_enums_round_trip_their_names() {
    for s in AppState::ALL {
        assert_eq!(s.as_str().parse::<AppState>().unwrap(), *s);
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    for s in RunStatus::ALL {
        assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
    }
    for s in ProcState::ALL {
        assert_eq!(s.as_str().parse::<ProcState>().unwrap(), *s);
    }
    for s in TunnelState::ALL {
        assert_eq!(s.as_str().parse::<TunnelState>().unwrap(), *s);
    }
    let h = home();
    let s = StateStore::open(h.path()).unwrap();
    s.upsert_app(&AppRecord::new("a", "/p", AppState::Installed))
        .unwrap();
    s.with("test", |c| c.execute("UPDATE apps SET state = 'weird'", []))
        .unwrap();
    let err = s.get_app("a").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("read app \"a\"") && msg.contains("weird"),
        "{msg}"
    );
}
