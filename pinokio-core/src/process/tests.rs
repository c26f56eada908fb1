//! Real-process tests of the process manager (PTY, kills, logs).

use super::kill::{proc_info, scan};
use super::*;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        now_ms()
    )
}

/// The test process's environment, without `PYTHONUNBUFFERED` (which this
/// machine sets and which would hide buffering bugs), plus a terminal type.
fn base_env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k != "PYTHONUNBUFFERED")
        .collect();
    env.insert("TERM".into(), "xterm-256color".into());
    env
}

#[derive(Default)]
struct Recorder {
    raw: Mutex<String>,
    exits: Mutex<Vec<(String, Option<i32>, bool)>>,
}

impl OutputSink for Recorder {
    fn output(&self, _rec: &ProcessRecord, _step: Option<usize>, _depth: usize, raw: &str) {
        lock(&self.raw).push_str(raw);
    }
    fn exited(&self, rec: &ProcessRecord, _step: Option<usize>, _depth: usize, code: Option<i32>) {
        lock(&self.exits).push((rec.shell_id.clone(), code, rec.running));
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    pm: ProcessManager,
    sink: Arc<Recorder>,
}

fn fixture_with(opts: ManagerOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let pm = ProcessManager::with_options(dir.path().join("logs/shell.log"), sink.clone(), opts);
    Fixture { dir, pm, sink }
}

fn fixture() -> Fixture {
    fixture_with(ManagerOptions::default())
}

impl Fixture {
    fn spec(&self, id: &str, argv: &[&str]) -> SpawnSpec {
        SpawnSpec {
            shell_id: id.to_string(),
            group: "/scripts/app/start.js".to_string(),
            step: Some(2),
            depth: 0,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: self.dir.path().to_path_buf(),
            env: base_env(),
            cols: 100,
            rows: 30,
            app_log: None,
            command_label: argv.last().unwrap_or(&"").to_string(),
        }
    }

    fn bash(&self, id: &str, script: &str) -> SpawnSpec {
        self.spec(id, &["bash", "--noprofile", "--norc", "-c", script])
    }
}

/// Collect events until `Exited` (or the timeout); returns (text, exit).
fn drain(rx: &Receiver<ShellEvent>, timeout: Duration) -> (String, Option<Option<i32>>) {
    let deadline = Instant::now() + timeout;
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ShellEvent::Output(t)) => text.push_str(&t),
            Ok(ShellEvent::Exited(c)) => {
                // nothing may follow Exited
                assert!(
                    rx.recv_timeout(Duration::from_millis(50)).is_err(),
                    "event after Exited"
                );
                return (text, Some(c));
            }
            Err(_) => return (text, None),
        }
    }
}

/// Read events until `text` contains `needle`; false on timeout or exit.
fn wait_for(rx: &Receiver<ShellEvent>, text: &mut String, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !text.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ShellEvent::Output(t)) => text.push_str(&t),
            Ok(ShellEvent::Exited(_)) | Err(_) => return text.contains(needle),
        }
    }
    true
}

/// Pids of every process whose environment holds `MARK=value`: an
/// independent way (not the manager's) to find a tree, setsid daemons
/// included.
fn marked(value: &str) -> BTreeSet<i32> {
    let needle = format!("PK_TEST_MARK={value}");
    scan()
        .into_values()
        .filter(|p| p.alive())
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .map(|e| e.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Gone, or a zombie (dead; only waiting for its parent to reap it).
fn dead(pid: i32) -> bool {
    proc_info(pid).is_none_or(|p| !p.alive())
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn process_output_then_exit_code() {
    let fx = fixture();
    let id = unique("exit");
    let h = fx.pm.spawn(fx.bash(&id, "echo hi; exit 3")).unwrap();
    assert_eq!(h.id, id);
    assert!(h.pid > 0);
    // the PTY child is its own session and process-group leader
    assert_eq!(h.pgid, h.pid);
    let (text, code) = drain(&h.events, Duration::from_secs(10));
    assert_eq!(code, Some(Some(3)));
    assert_eq!(text, "hi\n");
    let rec = fx.pm.get(&id).unwrap();
    assert!(!rec.running);
    assert_eq!(rec.exit_code, Some(3));
    assert!(!fx.pm.is_running(&id));
    let exits = lock(&fx.sink.exits).clone();
    assert_eq!(exits, vec![(id.clone(), Some(3), false)]);
    assert_eq!(fx.pm.wait_exit(&id, Duration::ZERO), Some(Some(3)));
}

#[test]
fn process_sink_gets_raw_ansi_and_channel_gets_normalised_text() {
    let fx = fixture();
    let id = unique("ansi");
    let h = fx
        .pm
        .spawn(fx.bash(&id, r"printf '\033[31mred\033[0m\r\n50%%\r100%%\n'"))
        .unwrap();
    let (text, code) = drain(&h.events, Duration::from_secs(10));
    assert_eq!(code, Some(Some(0)));
    assert_eq!(text, "red\n50%\n100%\n");
    let raw = lock(&fx.sink.raw).clone();
    assert!(raw.contains("\x1b[31mred\x1b[0m"), "{raw:?}");
    // the PTY's ONLCR turned \n into \r\n in the raw stream
    assert!(raw.ends_with("100%\r\n"), "{raw:?}");
}

#[test]
fn process_exit_by_signal_is_none() {
    let fx = fixture();
    let h = fx
        .pm
        .spawn(fx.bash(&unique("sig"), "echo x; kill -KILL $$"))
        .unwrap();
    let (text, code) = drain(&h.events, Duration::from_secs(10));
    assert_eq!(text, "x\n");
    assert_eq!(code, Some(None));
}

#[test]
fn process_runs_in_a_pty_and_python_output_is_not_buffered() {
    let fx = fixture();
    let id = unique("pty");
    let mut spec = fx.bash(
        &id,
        "env -u PYTHONUNBUFFERED python3 -c \"import sys,time; print('isatty', sys.stdout.isatty()); print('http://127.0.0.1:1234'); time.sleep(30)\"",
    );
    assert!(!spec.env.contains_key("PYTHONUNBUFFERED"));
    spec.env.remove("PYTHONUNBUFFERED");
    let start = Instant::now();
    let h = fx.pm.spawn(spec).unwrap();
    let mut text = String::new();
    let got = wait_for(
        &h.events,
        &mut text,
        "http://127.0.0.1:1234",
        Duration::from_secs(2),
    );
    assert!(got, "URL not seen within 2 s: {text:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(text.contains("isatty True\n"), "{text:?}");
    // and the process is still alive
    assert!(fx.pm.is_running(&id));
    assert!(!dead(h.pid as i32));
    let tree = kill::members(
        &[Tree {
            leader: h.pid as i32,
            leader_ours: true,
            pgid: h.pgid as i32,
            tty: None,
        }],
        false,
    );
    assert!(
        tree.iter().any(|p| comm(*p).starts_with("python")),
        "{tree:?}"
    );
    fx.pm.kill_shell(&id, Duration::from_secs(3));
    assert!(!fx.pm.is_running(&id));
    for p in tree {
        assert!(dead(p), "pid {p} survived");
    }
}

#[test]
fn process_kill_shell_leaves_no_process_of_the_tree() {
    let fx = fixture();
    let id = unique("tree");
    let mark = unique("mark");
    let mut spec = fx.bash(&id, "sleep 300 & (setsid sleep 300 &) ; sleep 300");
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    // wait for the three sleeps
    let mut pids = BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pids = marked(&mark);
            pids.iter().filter(|p| comm(**p) == "sleep").count() == 3
        }),
        "sleeps did not start: {pids:?}"
    );
    assert!(pids.contains(&(h.pid as i32)));
    // one of them really left the session (so the test can fail)
    let detached: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|p| proc_info(*p).is_some_and(|i| i.sid != h.pid as i32))
        .collect();
    assert_eq!(detached.len(), 1, "expected one setsid sleep: {pids:?}");
    let start = Instant::now();
    fx.pm.kill_shell(&id, Duration::from_secs(5));
    // polite kill: no need to wait for the grace
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    for p in &pids {
        assert!(dead(*p), "pid {p} ({}) survived", comm(*p));
    }
    assert!(marked(&mark).is_empty());
    assert!(!fx.pm.is_running(&id));
    let (_, code) = drain(&h.events, Duration::from_secs(2));
    assert!(code.is_some(), "no Exited event");
}

#[test]
fn process_term_ignoring_tree_is_sigkilled_after_grace() {
    let fx = fixture();
    let id = unique("stubborn");
    let mark = unique("mark");
    // HUP ignored too, or the shell's exit would hang up the sleep
    let mut spec = fx.bash(&id, "trap '' TERM HUP; sleep 300");
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    let mut pids = BTreeSet::new();
    assert!(wait_until(Duration::from_secs(5), || {
        pids = marked(&mark);
        pids.iter().any(|p| comm(*p) == "sleep")
    }));
    let grace = Duration::from_millis(700);
    let start = Instant::now();
    fx.pm.kill_shell(&id, grace);
    let took = start.elapsed();
    assert!(took >= grace, "killed before the grace: {took:?}");
    assert!(took < grace + Duration::from_millis(1500), "took {took:?}");
    for p in &pids {
        assert!(dead(*p), "pid {p} survived");
    }
    let (_, code) = drain(&h.events, Duration::from_secs(2));
    assert_eq!(code, Some(None), "SIGKILLed leader has no exit code");
}

#[test]
fn process_trap_term_shell_is_gone_within_grace() {
    let fx = fixture();
    let id = unique("trapterm");
    let mark = unique("mark");
    let mut spec = fx.bash(&id, "trap '' TERM; sleep 300");
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    let mut pids = BTreeSet::new();
    assert!(wait_until(Duration::from_secs(5), || {
        pids = marked(&mark);
        pids.iter().any(|p| comm(*p) == "sleep")
    }));
    let grace = Duration::from_millis(800);
    let start = Instant::now();
    fx.pm.kill_shell(&id, grace);
    assert!(start.elapsed() < grace + Duration::from_millis(1100));
    for p in &pids {
        assert!(dead(*p), "pid {p} survived");
    }
    assert!(drain(&h.events, Duration::from_secs(2)).1.is_some());
}

#[test]
fn process_interactive_bash_write_and_echo() {
    let fx = fixture();
    let id = unique("interactive");
    let mut spec = fx.spec(&id, &["bash", "--noprofile", "--norc", "-i"]);
    spec.env.insert("PS1".into(), "<<PK>> ".into());
    let h = fx.pm.spawn(spec).unwrap();
    let mut text = String::new();
    assert!(
        wait_for(&h.events, &mut text, "<<PK>> ", Duration::from_secs(5)),
        "no prompt: {text:?}"
    );
    fx.pm.write(&id, b"echo hel''lo-$((6*7))\n").unwrap();
    assert!(
        wait_for(&h.events, &mut text, "hello-42\n", Duration::from_secs(5)),
        "{text:?}"
    );
    // the typed line was echoed by the terminal
    assert!(text.contains("echo hel''lo-$((6*7))"), "{text:?}");
    // a second subscriber sees what comes next
    let sub = fx.pm.subscribe(&id).unwrap();
    fx.pm.write(&id, b"exit 5\n").unwrap();
    let (_, code) = drain(&h.events, Duration::from_secs(5));
    assert_eq!(code, Some(Some(5)));
    let (_, code2) = drain(&sub, Duration::from_secs(5));
    assert_eq!(code2, Some(Some(5)));
    assert!(fx.pm.subscribe(&id).is_none());
    assert!(matches!(
        fx.pm.write(&id, b"x"),
        Err(ProcessError::NotRunning(_))
    ));
}

#[test]
fn process_kill_interactive_bash_does_not_wait_for_the_grace() {
    // An interactive bash ignores SIGTERM; the manager hangs it up.
    let fx = fixture();
    let id = unique("ikill");
    let mark = unique("mark");
    let mut spec = fx.spec(&id, &["bash", "--noprofile", "--norc", "-i"]);
    spec.env.insert("PS1".into(), "$ ".into());
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    let mut text = String::new();
    assert!(wait_for(&h.events, &mut text, "$ ", Duration::from_secs(5)));
    fx.pm.write(&id, b"sleep 300 &\n").unwrap();
    let mut pids = BTreeSet::new();
    assert!(wait_until(Duration::from_secs(5), || {
        pids = marked(&mark);
        pids.iter().any(|p| comm(*p) == "sleep")
    }));
    let start = Instant::now();
    fx.pm.kill_shell(&id, Duration::from_secs(10));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    for p in &pids {
        assert!(dead(*p), "pid {p} survived");
    }
}

#[test]
fn process_kill_group_and_kill_all() {
    let fx = fixture();
    let mark = unique("mark");
    let mut handles = Vec::new();
    for (i, group) in ["/a.js", "/a.js", "/b.js"].iter().enumerate() {
        // `; true` keeps bash from exec'ing sleep: two processes per shell
        let mut spec = fx.bash(&unique(&format!("g{i}")), "sleep 300; true");
        spec.group = group.to_string();
        spec.env
            .insert("PK_TEST_MARK".into(), format!("{mark}{group}"));
        handles.push(fx.pm.spawn(spec).unwrap());
    }
    assert!(wait_until(Duration::from_secs(5), || marked(&format!(
        "{mark}/a.js"
    ))
    .len()
        == 4
        && marked(&format!("{mark}/b.js")).len() == 2));
    assert_eq!(fx.pm.shells_of("/a.js").len(), 2);
    fx.pm.kill_group("/a.js", Duration::from_secs(3));
    assert!(marked(&format!("{mark}/a.js")).is_empty());
    assert_eq!(marked(&format!("{mark}/b.js")).len(), 2);
    assert!(fx.pm.shells_of("/a.js").iter().all(|r| !r.running));
    assert!(fx.pm.shells_of("/b.js").iter().all(|r| r.running));
    fx.pm.kill_all(Duration::from_secs(3));
    assert!(marked(&format!("{mark}/b.js")).is_empty());
    assert_eq!(fx.pm.list().len(), 3);
    assert!(fx.pm.list().iter().all(|r| !r.running));
}

#[test]
fn process_background_job_outliving_the_shell_is_still_killed() {
    let fx = fixture();
    let id = unique("bg");
    let mark = unique("mark");
    // A plain `sleep &` dies of the hang-up when bash exits; this one
    // ignores SIGHUP and keeps the terminal open.
    let mut spec = fx.bash(
        &id,
        "(trap '' HUP; exec sleep 300) & echo started; sleep 0.2",
    );
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    let start = Instant::now();
    let (text, code) = drain(&h.events, Duration::from_secs(5));
    assert_eq!(text, "started\n");
    assert_eq!(code, Some(Some(0)));
    // Exited came without waiting for the terminal to close
    assert!(start.elapsed() < Duration::from_secs(2));
    let pids = marked(&mark);
    assert_eq!(pids.len(), 1, "the background sleep holds the terminal");
    assert!(!fx.pm.is_running(&id));
    fx.pm.kill_shell(&id, Duration::from_secs(3));
    assert!(marked(&mark).is_empty());
}

#[test]
fn process_group_member_that_left_the_terminal_is_still_killed() {
    let fx = fixture();
    let id = unique("nohup");
    let mark = unique("mark");
    let mut spec = fx.bash(
        &id,
        "nohup sleep 300 </dev/null >/dev/null 2>&1 & sleep 0.3",
    );
    spec.env.insert("PK_TEST_MARK".into(), mark.clone());
    let h = fx.pm.spawn(spec).unwrap();
    assert_eq!(drain(&h.events, Duration::from_secs(5)).1, Some(Some(0)));
    let pids = marked(&mark);
    assert_eq!(pids.len(), 1, "nohup sleep survives the hang-up: {pids:?}");
    fx.pm.kill_shell(&id, Duration::from_secs(3));
    assert!(marked(&mark).is_empty());
}

#[test]
fn process_tail_reads_the_ring_buffer() {
    let fx = fixture();
    let id = unique("tail");
    let h = fx
        .pm
        .spawn(fx.bash(
            &id,
            "for i in $(seq 1 1500); do echo line$i; done; printf 'prompt> '",
        ))
        .unwrap();
    let (_, code) = drain(&h.events, Duration::from_secs(10));
    assert_eq!(code, Some(Some(0)));
    assert_eq!(fx.pm.tail(&id, 3), vec!["line1499", "line1500", "prompt> "]);
    let all = fx.pm.tail(&id, 5000);
    assert_eq!(all.len(), 1001);
    assert_eq!(all[0], "line501");
    assert!(fx.pm.tail(&id, 0).is_empty());
    assert!(fx.pm.tail("nope", 3).is_empty());
}

#[test]
fn process_logs_have_header_timestamps_and_prefixes() {
    let fx = fixture();
    let id = unique("log");
    let app_log = fx.dir.path().join("api/app/logs/shell.log");
    let mut spec = fx.bash(&id, "echo one; echo two");
    spec.app_log = Some(app_log.clone());
    spec.command_label = "echo one; echo two".into();
    let h = fx.pm.spawn(spec).unwrap();
    assert_eq!(drain(&h.events, Duration::from_secs(10)).1, Some(Some(0)));
    let app = std::fs::read_to_string(&app_log).unwrap();
    let lines: Vec<&str> = app.lines().collect();
    assert_eq!(lines.len(), 4, "{app}");
    let ts = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ").unwrap();
    assert!(lines.iter().all(|l| ts.is_match(l)), "{app}");
    assert!(
        lines[0].contains(&format!("### shell {id} started")),
        "{app}"
    );
    assert!(lines[0].contains("group /scripts/app/start.js"));
    assert!(lines[0].contains(&fx.dir.path().display().to_string()));
    assert!(lines[0].ends_with(": echo one; echo two"));
    assert!(lines[1].ends_with("Z one"));
    assert!(lines[2].ends_with("Z two"));
    assert!(lines[3].ends_with(&format!("### shell {id} exited with code 0")));
    let global = std::fs::read_to_string(fx.dir.path().join("logs/shell.log")).unwrap();
    assert!(
        global.contains(&format!("Z [/scripts/app/start.js] [{id}] one\n")),
        "{global}"
    );
    assert_eq!(fx.pm.log_errors(), 0);
}

#[test]
fn process_logs_rotate_past_the_limit() {
    let fx = fixture_with(ManagerOptions {
        log_limit: 4096,
        ..Default::default()
    });
    let id = unique("rotate");
    let app_log = fx.dir.path().join("app.log");
    let mut spec = fx.bash(&id, "seq 1 2000");
    spec.app_log = Some(app_log.clone());
    let h = fx.pm.spawn(spec).unwrap();
    assert_eq!(drain(&h.events, Duration::from_secs(10)).1, Some(Some(0)));
    let old = fx.dir.path().join("app.log.1");
    assert!(old.exists());
    assert!(std::fs::metadata(&app_log).unwrap().len() <= 4096);
    assert!(std::fs::metadata(&old).unwrap().len() <= 4096);
    let current = std::fs::read_to_string(&app_log).unwrap();
    assert!(current.contains("Z 2000\n"), "{current}");
    assert!(current.trim_end().ends_with("exited with code 0"));
    // one old file only
    let logs: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("app.log"))
        .collect();
    assert_eq!(logs.len(), 2);
    assert!(fx.dir.path().join("logs/shell.log.1").exists());
}

#[test]
fn process_log_errors_do_not_stop_the_shell() {
    let fx = fixture();
    let blocker = fx.dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let mut spec = fx.bash(&unique("logerr"), "echo fine");
    spec.app_log = Some(blocker.join("cannot/app.log"));
    let h = fx.pm.spawn(spec).unwrap();
    let (text, code) = drain(&h.events, Duration::from_secs(10));
    assert_eq!((text.as_str(), code), ("fine\n", Some(Some(0))));
    assert!(fx.pm.log_errors() > 0);
}

#[test]
fn process_chatty_shell_does_not_stall_others() {
    let fx = fixture();
    let chatty = unique("chatty");
    let quiet = unique("quiet");
    let t0 = Instant::now();
    let a = fx
        .pm
        .spawn(fx.bash(&chatty, "yes | head -n 200000"))
        .unwrap();
    let b = fx
        .pm
        .spawn(fx.bash(&quiet, "sleep 0.2; echo marker; sleep 0.5; echo end"))
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1), "spawn blocked");
    // read the chatty shell on another thread, counting lines
    let reader = std::thread::spawn(move || {
        let (text, code) = drain(&a.events, Duration::from_secs(60));
        (text.matches("y\n").count(), text.len(), code)
    });
    let mut text = String::new();
    assert!(
        wait_for(
            &b.events,
            &mut text,
            "marker\n",
            Duration::from_millis(1500)
        ),
        "quiet shell starved: {text:?}"
    );
    let marker_at = t0.elapsed();
    let (count, len, code) = reader.join().unwrap();
    assert_eq!(code, Some(Some(0)));
    assert_eq!(count, 200_000);
    assert_eq!(len, 400_000, "nothing but the y lines");
    assert!(marker_at < Duration::from_millis(1500), "{marker_at:?}");
    assert_eq!(drain(&b.events, Duration::from_secs(5)).1, Some(Some(0)));
}

#[test]
fn process_spawn_errors_are_clear() {
    let fx = fixture();
    let err = fx
        .pm
        .spawn(fx.spec("missing", &["definitely-not-a-program-xyz", "arg"]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    assert!(msg.contains("definitely-not-a-program-xyz"), "{msg}");
    let mut spec = fx.bash("badcwd", "true");
    spec.cwd = fx.dir.path().join("no/such/folder");
    let msg = fx.pm.spawn(spec).unwrap_err().to_string();
    assert!(
        msg.contains("no/such/folder") && msg.contains("working directory"),
        "{msg}"
    );
    assert!(matches!(
        fx.pm.spawn(fx.spec("empty", &[])),
        Err(ProcessError::EmptyCommand)
    ));
    assert!(matches!(
        fx.pm.write("nope", b"x"),
        Err(ProcessError::NotFound(_))
    ));
    assert!(fx.pm.list().is_empty());
}

#[test]
fn process_duplicate_running_id_is_refused_and_exited_id_reused() {
    let fx = fixture();
    let id = unique("dup");
    let h = fx.pm.spawn(fx.bash(&id, "sleep 300")).unwrap();
    assert!(matches!(
        fx.pm.spawn(fx.bash(&id, "true")),
        Err(ProcessError::AlreadyRunning(_))
    ));
    fx.pm.kill_shell(&id, Duration::from_secs(2));
    assert!(drain(&h.events, Duration::from_secs(2)).1.is_some());
    let h2 = fx.pm.spawn(fx.bash(&id, "exit 7")).unwrap();
    assert_eq!(drain(&h2.events, Duration::from_secs(5)).1, Some(Some(7)));
    assert!(wait_until(Duration::from_secs(2), || fx.pm.list().len() == 1));
    assert_eq!(fx.pm.get(&id).unwrap().exit_code, Some(7));
}

#[test]
fn process_env_is_exactly_the_given_one() {
    let fx = fixture();
    let mut spec = fx.bash(
        &unique("env"),
        "echo \"[$ONLY_THIS][$HOME_LIKE][${HOME-unset}]\"; pwd",
    );
    spec.env = BTreeMap::from([
        ("PATH".to_string(), std::env::var("PATH").unwrap()),
        ("ONLY_THIS".to_string(), "yes".to_string()),
        ("HOME_LIKE".to_string(), "x y".to_string()),
    ]);
    let h = fx.pm.spawn(spec).unwrap();
    let (text, _) = drain(&h.events, Duration::from_secs(5));
    let cwd = fx.dir.path().canonicalize().unwrap();
    assert_eq!(text, format!("[yes][x y][unset]\n{}\n", cwd.display()));
}

#[test]
fn process_dropping_the_manager_kills_its_shells() {
    let mark = unique("mark");
    {
        let fx = fixture();
        let mut spec = fx.bash(&unique("drop"), "sleep 300; true");
        spec.env.insert("PK_TEST_MARK".into(), mark.clone());
        let _h = fx.pm.spawn(spec).unwrap();
        assert!(wait_until(Duration::from_secs(5), || marked(&mark).len() == 2));
    }
    assert!(marked(&mark).is_empty());
}

#[test]
fn process_killed_shell_does_not_go_on_to_its_next_command() {
    let fx = fixture();
    let id = unique("next");
    let h = fx
        .pm
        .spawn(fx.bash(&id, "echo go; sleep 300; echo after > after.txt; sleep 300"))
        .unwrap();
    let mut text = String::new();
    assert!(wait_for(
        &h.events,
        &mut text,
        "go\n",
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_millis(100));
    fx.pm.kill_shell(&id, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !fx.dir.path().join("after.txt").exists(),
        "the shell ran its next command"
    );
    assert!(drain(&h.events, Duration::from_secs(2)).1.is_some());
}
