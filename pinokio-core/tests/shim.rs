//! Shells under supervisors (`process::shim`): they work like in-process
//! shells, outlive the process that started them, keep logging, and are
//! re-adopted (output, input, kill) by a later manager.
//!
//! This test binary is its own supervisor program (`<test> __shim`), and
//! plays a short-lived "engine" (`<test> __engine ...`) that starts a shell
//! and dies without stopping it. It runs without libtest's harness, so
//! `main` dispatches those modes and then runs the tests one by one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_core::process::shim::{self, SHIM_ARG};
use pinokio_core::process::{
    Adoption, ManagerOptions, NullOutputSink, ProcessError, ProcessManager, ShellEvent, SpawnSpec,
    Supervisor,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some(SHIM_ARG) => std::process::exit(shim::main_from_stdin()),
        Some("__engine") => {
            // __engine <root> <script>: start one shell, then die abruptly
            let root = PathBuf::from(&args[2]);
            let m = manager(&root);
            let h = m.spawn(spec(&root, "sh1", &args[3])).expect("spawn");
            println!("{}", h.pid);
            std::process::exit(0);
        }
        _ => {}
    }
    // Tests that only check the PTY must not be helped by this.
    std::env::remove_var("PYTHONUNBUFFERED");
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[
        (
            "supervised_shell_output_input_and_exit_code",
            supervised_shell_output_input_and_exit_code,
        ),
        (
            "supervised_spawn_errors_are_clear",
            supervised_spawn_errors_are_clear,
        ),
        (
            "supervised_resize_reaches_the_terminal",
            supervised_resize_reaches_the_terminal,
        ),
        (
            "shell_outlives_its_engine_and_is_readopted",
            shell_outlives_its_engine_and_is_readopted,
        ),
        (
            "shell_that_ended_while_detached_reports_its_exit",
            shell_that_ended_while_detached_reports_its_exit,
        ),
        (
            "supervised_kill_takes_the_tree_down",
            supervised_kill_takes_the_tree_down,
        ),
    ];
    let mut failed = Vec::new();
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let t0 = Instant::now();
        let ok = std::panic::catch_unwind(f).is_ok();
        println!(
            "test {name} ... {} ({:.1} s)",
            if ok { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}

fn supervisor(root: &Path) -> Supervisor {
    Supervisor {
        program: std::env::current_exe().unwrap(),
        args: vec![SHIM_ARG.into()],
        run_dir: root.join("run"),
    }
}

fn manager(root: &Path) -> ProcessManager {
    ProcessManager::with_options(
        root.join("logs/shell.log"),
        Arc::new(NullOutputSink),
        ManagerOptions {
            supervisor: Some(supervisor(root)),
            kill_on_drop: None,
            ..Default::default()
        },
    )
}

fn spec(root: &Path, id: &str, script: &str) -> SpawnSpec {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    env.insert("TERM".into(), "xterm-256color".into());
    SpawnSpec {
        shell_id: id.into(),
        group: root.join("app/start.js").display().to_string(),
        step: Some(0),
        depth: 0,
        argv: vec!["bash".into(), "-c".into(), script.into()],
        cwd: root.to_path_buf(),
        env,
        cols: 100,
        rows: 30,
        app_log: Some(root.join("logs/app.log")),
        command_label: script.into(),
    }
}

fn collect(
    rx: &std::sync::mpsc::Receiver<ShellEvent>,
    limit: Duration,
) -> (String, Option<Option<i32>>) {
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ShellEvent::Output(t)) => text.push_str(&t),
            Ok(ShellEvent::Exited(c)) => return (text, Some(c)),
            Err(_) => break,
        }
    }
    (text, None)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn metas(root: &Path) -> usize {
    shim::list_metas(&root.join("run")).len()
}

fn supervised_shell_output_input_and_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let m = manager(root);
    let h = m
        .spawn(spec(root, "a", "echo ready; read x; echo got $x; exit 3"))
        .unwrap();
    assert!(h.pid > 0 && h.pgid == h.pid);
    // the leader is not this process's child: it runs under the supervisor
    let ppid = std::fs::read_to_string(format!("/proc/{}/stat", h.pid))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u32>()
        .unwrap();
    assert_ne!(ppid, std::process::id());
    wait_for("ready", Duration::from_secs(10), || {
        m.tail("a", 5).iter().any(|l| l == "ready")
    });
    m.write("a", b"hello\n").unwrap();
    let (text, code) = collect(&h.events, Duration::from_secs(10));
    assert_eq!(code, Some(Some(3)), "{text}");
    assert!(
        text.contains("ready") && text.contains("got hello"),
        "{text}"
    );
    assert!(!m.is_running("a"));
    assert_eq!(m.get("a").unwrap().exit_code, Some(3));
    // the supervisor wrote both transcripts, start and exit notes included
    let app = read(&root.join("logs/app.log"));
    assert!(app.contains("### shell a started"), "{app}");
    assert!(app.contains(" got hello\n"), "{app}");
    assert!(app.contains("### shell a exited with code 3"), "{app}");
    let global = read(&root.join("logs/shell.log"));
    assert!(global.contains("] [a] got hello"), "{global}");
    // no line was written twice (the engine side does not log)
    assert_eq!(app.matches(" got hello").count(), 1, "{app}");
    // the supervisor cleans up after itself
    wait_for("meta file removed", Duration::from_secs(5), || {
        metas(root) == 0
    });
    wait_for("socket removed", Duration::from_secs(5), || {
        std::fs::read_dir(root.join("run")).unwrap().count() == 0
    });
}

fn supervised_spawn_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let m = manager(root);
    let mut s = spec(root, "b", "true");
    s.cwd = root.join("missing");
    let e = m.spawn(s).unwrap_err();
    assert!(matches!(e, ProcessError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let mut s = spec(root, "c", "true");
    s.argv = vec!["/no/such/program".into()];
    let e = m.spawn(s).unwrap_err().to_string();
    assert!(e.contains("/no/such/program"), "{e}");
    // a supervisor program that is not there
    let bad = ProcessManager::with_options(
        root.join("logs/shell.log"),
        Arc::new(NullOutputSink),
        ManagerOptions {
            supervisor: Some(Supervisor {
                program: root.join("no-pinokio"),
                args: vec![SHIM_ARG.into()],
                run_dir: root.join("run"),
            }),
            ..Default::default()
        },
    );
    let e = bad.spawn(spec(root, "d", "true")).unwrap_err().to_string();
    assert!(e.contains("supervisor"), "{e}");
    assert_eq!(metas(root), 0);
}

fn supervised_resize_reaches_the_terminal() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let m = manager(root);
    let h = m.spawn(spec(root, "r", "read x; stty size")).unwrap();
    m.resize("r", 120, 40).unwrap();
    m.write("r", b"go\n").unwrap();
    let (text, code) = collect(&h.events, Duration::from_secs(10));
    assert_eq!(code, Some(Some(0)));
    assert!(text.contains("40 120"), "{text}");
}

/// Start `script` from a separate "engine" process that then exits.
fn start_in_dying_engine(root: &Path, script: &str) -> u32 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["__engine", root.to_str().unwrap(), script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn shell_outlives_its_engine_and_is_readopted() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let pid = start_in_dying_engine(
        root,
        "i=0; while true; do i=$((i+1)); echo tick $i; read -t 0.1 line && echo typed $line; done",
    );
    // its engine is gone; the shell runs on and its log keeps growing
    assert!(alive(pid));
    let log = root.join("logs/app.log");
    let ticks = |s: &str| s.matches(" tick ").count();
    let before = ticks(&read(&log));
    wait_for("more ticks in the log", Duration::from_secs(10), || {
        ticks(&read(&log)) > before + 3
    });
    // a new manager finds and adopts it
    let m = manager(root);
    let found = m.supervised();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1.pid, pid);
    let rec = match m.adopt(&found[0].0).unwrap() {
        Adoption::Live(rec) => rec,
        other => panic!("{other:?}"),
    };
    assert_eq!((rec.pid, rec.shell_id.as_str()), (pid, "sh1"));
    assert!(m.is_running("sh1"));
    // the ring buffer was refilled from the supervisor's backlog
    assert!(m.tail("sh1", 3).iter().any(|l| l.starts_with("tick ")));
    // live output and input work again
    let rx = m.subscribe("sh1").unwrap();
    m.write("sh1", b"hello\n").unwrap();
    let t0 = Instant::now();
    let mut seen = String::new();
    while !seen.contains("typed hello") && t0.elapsed() < Duration::from_secs(10) {
        if let Ok(ShellEvent::Output(text)) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&text);
        }
    }
    assert!(seen.contains("typed hello"), "{seen}");
    // adopting twice is refused
    assert!(m.adopt(&found[0].0).is_err());
    // kill works: no process left, the exit is known, the meta is gone
    m.kill_shell("sh1", Duration::from_secs(2));
    assert!(!alive(pid));
    assert!(!m.is_running("sh1"));
    wait_for("meta file removed", Duration::from_secs(5), || {
        metas(root) == 0
    });
    let app = read(&log);
    assert!(app.contains("typed hello"), "{app}");
    assert!(app.contains("### shell sh1 "), "{app}");
}

fn shell_that_ended_while_detached_reports_its_exit() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let pid = start_in_dying_engine(root, "sleep 0.5; echo bye; exit 7");
    wait_for("the shell to end", Duration::from_secs(10), || !alive(pid));
    wait_for(
        "the supervisor to record it",
        Duration::from_secs(10),
        || {
            shim::list_metas(&root.join("run"))
                .first()
                .is_some_and(|(_, m)| m.done)
        },
    );
    let m = manager(root);
    let found = m.supervised();
    assert_eq!(found.len(), 1);
    match m.adopt(&found[0].0).unwrap() {
        Adoption::Ended(meta) => {
            assert_eq!(meta.exit.map(|e| e.code), Some(Some(7)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(metas(root), 0);
    let app = read(&root.join("logs/app.log"));
    assert!(app.contains(" bye\n"), "{app}");
    assert!(app.contains("exited with code 7"), "{app}");
}

fn supervised_kill_takes_the_tree_down() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let m = manager(root);
    let h = m
        .spawn(spec(
            root,
            "k",
            "sleep 300 & echo child $!; trap '' TERM; sleep 300",
        ))
        .unwrap();
    let mut child = 0u32;
    wait_for("child pid", Duration::from_secs(10), || {
        child = m
            .tail("k", 5)
            .iter()
            .find_map(|l| l.strip_prefix("child ")?.trim().parse().ok())
            .unwrap_or(0);
        child > 0
    });
    let shim_pid = shim::list_metas(&root.join("run"))[0].1.shim_pid;
    m.kill_shell("k", Duration::from_millis(500));
    assert!(!alive(h.pid), "leader survived");
    assert!(!alive(child), "background child survived");
    wait_for("the supervisor to end", Duration::from_secs(5), || {
        !alive(shim_pid)
    });
    assert_eq!(m.get("k").unwrap().exit_code, None);
}
