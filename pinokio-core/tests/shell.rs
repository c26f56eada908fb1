//! `shell.*` with real processes in real PTYs: venvs, pip installs, servers
//! caught by `on` handlers, kill/break/error policy, stop without leaks.
//! `PYTHONUNBUFFERED` is removed from the engine's environment so the
//! tests prove the PTY (not the variable) delivers output promptly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::{json, Value};

fn env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.remove("PYTHONUNBUFFERED");
    env
}

fn engine(dir: &Path) -> (Engine, CollectSink) {
    let sink = CollectSink::new();
    let options = EngineOptions {
        kill_grace: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    let e = Engine::builder(PinokioHome::new(dir))
        .facts(Facts::cpu_only())
        .env(env())
        .options(options)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    (e, sink)
}

fn script(e: &Engine, rel: &str, v: Value) -> String {
    let p = e.home().api().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    format!("~/api/{rel}")
}

fn output(sink: &CollectSink) -> String {
    sink.events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn results(sink: &CollectSink) -> Vec<(usize, Option<Value>)> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepResult { index, result } => Some((index, result)),
            _ => None,
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .split_whitespace()
            .nth(2)
            .map(|st| st == "Z")
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    let mut s =
        std::net::TcpStream::connect_timeout(&hostport.parse().ok()?, Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn server_caught_by_on_done_serves_until_the_daemon_is_stopped() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let port = free_port();
    let uri = script(
        &e,
        "srv/start.json",
        json!({"daemon": true, "run": [
            {"method": "shell.run", "params": {
                "message": format!("python3 -c \"import sys,http.server; print('tty', sys.stdout.isatty()); s=http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler); print('serving on http://127.0.0.1:{port}'); s.serve_forever()\""),
                "on": [{"event": "/(http:\\/\\/[0-9.]+:[0-9]+)/", "done": true}]
            }},
            {"method": "local.set", "params": {"url": "{{input.event[1]}}"}}
        ]}),
    );
    let t0 = Instant::now();
    let out = e.run(RunRequest::new(&uri));
    assert_eq!(out.status, RunStatus::Daemon, "{:?}", out.error);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        output(&sink).contains("tty True"),
        "not a PTY: {}",
        output(&sink)
    );
    let id = e.home().api().join("srv/start.json").display().to_string();
    let url = e.memory().local(&id)["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    // the machine may be busy (other tests install packages): allow time
    let t0 = Instant::now();
    let mut status = http_status(&url);
    while status != Some(200) && t0.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        status = http_status(&url);
    }
    let pids: Vec<u32> = e.processes().shells_of(&id).iter().map(|r| r.pid).collect();
    assert_eq!(
        status,
        Some(200),
        "server pids {pids:?} alive: {:?}; output: {}",
        pids.iter().map(|p| pid_alive(*p)).collect::<Vec<_>>(),
        output(&sink)
    );
    assert_eq!(pids.len(), 1);
    e.stop(&id);
    assert_eq!(http_status(&url), None, "server still answers after stop");
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}

#[test]
fn non_daemon_run_kills_its_servers_at_the_end() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let uri = script(
        &e,
        "nd/start.json",
        json!({"run": [
            {"method": "shell.run", "params": {"message": "echo up; sleep 300", "on": [{"event": "/up/", "done": true}]}},
            {"method": "log", "params": {"raw": "next"}}
        ]}),
    );
    let id = e.home().api().join("nd/start.json").display().to_string();
    let e2 = e.clone();
    let id2 = id.clone();
    let pids = std::thread::spawn(move || {
        let out = e2.run(RunRequest::new(&uri));
        assert_eq!(out.status, RunStatus::Finished);
        e2.processes()
            .list()
            .into_iter()
            .filter(|r| r.group == id2)
            .map(|r| r.pid)
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert!(!pids.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| !pid_alive(*p)),
        "shells survived the end of a non-daemon run"
    );
    assert!(e.processes().shells_of(&id).iter().all(|r| !r.running));
}

#[test]
fn venv_is_created_activated_and_pip_installs_into_it() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let uri = script(
        &e,
        "py/install.json",
        json!({"run": [
            {"method": "shell.run", "params": {"venv": "env", "path": "app", "message": [
                "python -c 'import sys; print(\"prefix=\" + sys.prefix)'",
                "python -m pip install --disable-pip-version-check -q six==1.16.0",
                "python -c 'import six; print(\"six=\" + six.__version__)'"
            ]}},
            {"method": "shell.run", "params": {"venv": "env", "path": "app", "message": "python -c 'import sys; print(\"again=\" + sys.prefix)'"}}
        ]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}\n{}", out.error, output(&sink));
    let venv = e.home().api().join("py/app/env");
    assert!(venv.join("pyvenv.cfg").is_file());
    let text = output(&sink);
    assert!(
        text.contains(&format!("prefix={}", venv.display())),
        "{text}"
    );
    assert!(text.contains("six=1.16.0"), "{text}");
    assert!(
        text.contains(&format!("again={}", venv.display())),
        "{text}"
    );
}

#[test]
fn array_messages_run_in_separate_shells_and_chain_joins_them() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let uri = script(
        &e,
        "arr/s.json",
        json!({"run": [
            {"method": "shell.run", "params": {"message": ["export V=1", "", null, "echo \"v=[$V]\" > sep.txt"]}},
            {"method": "shell.run", "params": {"chain": true, "message": ["export V=2", "echo \"v=[$V]\" > chain.txt"]}},
            {"method": "shell.run", "params": {"chain": "|", "message": ["false", "echo or > or.txt"]}},
            {"method": "shell.run", "params": {"message": "false; (exit 3)"}}
        ]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}", out.error);
    let dir = e.home().api().join("arr");
    assert_eq!(
        std::fs::read_to_string(dir.join("sep.txt")).unwrap(),
        "v=[]\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("chain.txt")).unwrap(),
        "v=[2]\n"
    );
    assert_eq!(std::fs::read_to_string(dir.join("or.txt")).unwrap(), "or\n");
    // the exit code is reported, not fatal
    assert_eq!(out.result.unwrap()["exit_code"], json!(3));
}

#[test]
fn strict_exit_code_mode_fails_non_zero_exits() {
    let t = tempfile::tempdir().unwrap();
    let sink = CollectSink::new();
    let e = Engine::builder(PinokioHome::new(t.path()))
        .facts(Facts::cpu_only())
        .env(env())
        .options(EngineOptions {
            strict_exit_codes: true,
            ..EngineOptions::default()
        })
        .sink(Arc::new(sink))
        .build()
        .unwrap();
    let uri = script(
        &e,
        "x/s.json",
        json!({"run": [{"method": "shell.run", "params": {"message": "exit 4"}}]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert_eq!(out.status, RunStatus::Error);
    assert!(out.error.unwrap().message.contains("status 4"));
}

#[test]
fn env_values_and_path_arrays_reach_the_shell() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let tools = e.home().api().join("envc/tools");
    std::fs::create_dir_all(&tools).unwrap();
    let tool = tools.join("mytool");
    std::fs::write(&tool, "#!/bin/sh\necho mytool ran\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&tool).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = script(
        &e,
        "envc/s.json",
        json!({"run": [{"method": "shell.run", "params": {
            "env": {"GREETING": "hi {{platform}}", "MYLIST": ["a", "b"], "PATH": ["{{cwd}}/tools"], "N": 5},
            "path": "work/dir",
            "message": "echo \"G=$GREETING L=$MYLIST N=$N\" > out.txt; mytool >> out.txt; pwd >> out.txt; echo \"SSL=${SSL_CERT_FILE:-unset}\" >> out.txt"
        }}]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}", out.error);
    let text = std::fs::read_to_string(e.home().api().join("envc/work/dir/out.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("G=hi linux L=a:b N=5"));
    assert_eq!(lines[1], "mytool ran");
    assert_eq!(
        lines[2],
        e.home().api().join("envc/work/dir").display().to_string()
    );
    let expected_ssl = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "unset".into());
    assert_eq!(
        lines[3],
        format!("SSL={expected_ssl}"),
        "*SSL* variables are kept"
    );
}

#[test]
fn on_kill_kills_the_tree_and_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let uri = script(
        &e,
        "k/s.json",
        json!({"run": [
            {"method": "shell.run", "params": {
                "message": "echo start > k.txt; python3 -c \"import time; print('KILL' + 'ME-7'); time.sleep(3); open('k.txt','a').write('survived')\"; echo after >> k.txt",
                "on": [{"event": "/KILLME-(\\d)/", "kill": true}]
            }},
            {"method": "log", "params": {"raw": "event={{JSON.stringify(input.event)}}"}}
        ]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}", out.error);
    assert!(output(&sink).contains("event=[\"KILLME-7\",\"7\"]"));
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        std::fs::read_to_string(e.home().api().join("k/k.txt")).unwrap(),
        "start\n"
    );
}

#[test]
fn error_output_fails_the_step_break_false_tolerates_and_break_true_stops() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let fail = script(
        &e,
        "err/fail.json",
        json!({"run": [
            {"method": "shell.run", "params": {"message": "python3 -c \"print('Something went wrong, ' + 'ERR' + 'OR: boom')\""}},
            {"method": "log", "params": {"raw": "never"}}
        ]}),
    );
    let out = e.run(RunRequest::new(&fail));
    assert_eq!(out.status, RunStatus::Error);
    let err = out.error.unwrap();
    assert_eq!(err.step, Some(0));
    assert!(err.message.contains("ERROR:"), "{}", err.message);
    assert!(!output(&sink).contains("never"));

    let tolerate = script(
        &e,
        "err/tolerate.json",
        json!({"run": [{"method": "shell.run", "params": {
            "message": "python3 -c \"print('Something went wrong, ' + 'ERR' + 'OR: boom')\"",
            "on": [{"event": "/ERROR: boom/", "break": false}]
        }}]}),
    );
    assert!(e.run(RunRequest::new(&tolerate)).ok());

    let brk = script(
        &e,
        "err/break.json",
        json!({"run": [{"method": "shell.run", "params": {
            "message": "echo 'CUDA out of memory'; sleep 300",
            "on": [{"event": "/out of memory/", "break": true}]
        }}]}),
    );
    let t0 = Instant::now();
    let out = e.run(RunRequest::new(&brk));
    assert_eq!(out.status, RunStatus::Error);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "break did not stop the wait"
    );
}

#[test]
fn stop_kills_grandchildren_and_leaves_no_orphans() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    // a unique duration marks the setsid child, which leaves our process tree
    let marker = format!("301.{}", std::process::id());
    let uri = script(
        &e,
        "g/s.json",
        json!({"run": [{"method": "shell.run", "params": {
            "message": format!("sleep 300 & (setsid sleep {marker} &) ; bash -c 'sleep 302; true' ; sleep 303")
        }}]}),
    );
    let id = e.home().api().join("g/s.json").display().to_string();
    let e2 = e.clone();
    let h = std::thread::spawn(move || e2.run(RunRequest::new(&uri)));
    let t0 = Instant::now();
    while e.processes().shells_of(&id).is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let root = e.processes().shells_of(&id)[0].pid;
    let tree = descendants(root, &marker);
    assert!(
        tree.len() >= 4,
        "expected a tree of processes, got {tree:?}"
    );
    e.stop(&id);
    let out = h.join().unwrap();
    assert_eq!(out.status, RunStatus::Stopped);
    for p in tree.iter().chain(std::iter::once(&root)) {
        assert!(!pid_alive(*p), "process {p} survived the stop");
    }
}

/// Every process whose ancestry leads to `root`, or that has `root`'s
/// session id (setsid children are re-parented but keep a trace in /proc).
fn descendants(root: u32, marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            if let Some(pp) = fields.get(1).and_then(|x| x.parse::<u32>().ok()) {
                parent.insert(pid, pp);
            }
            if let Ok(cmd) = std::fs::read_to_string(format!("/proc/{pid}/cmdline")) {
                if cmd == format!("sleep\u{0}{marker}\u{0}") {
                    out.push(pid);
                }
            }
        }
    }
    for (&pid, _) in parent.iter() {
        let mut cur = pid;
        for _ in 0..64 {
            match parent.get(&cur) {
                Some(&pp) if pp == root => {
                    out.push(pid);
                    break;
                }
                Some(&pp) if pp > 1 => cur = pp,
                _ => break,
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_command_that_never_ends_is_stoppable() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let uri = script(
        &e,
        "n/s.json",
        json!({"run": [{"method": "shell.run", "params": {"message": "tail -f /dev/null"}}]}),
    );
    let id = e.home().api().join("n/s.json").display().to_string();
    let e2 = e.clone();
    let h = std::thread::spawn(move || e2.run(RunRequest::new(&uri)));
    std::thread::sleep(Duration::from_millis(700));
    let pid = e.processes().shells_of(&id)[0].pid;
    e.stop(&id);
    assert_eq!(h.join().unwrap().status, RunStatus::Stopped);
    assert!(!pid_alive(pid));
}

#[test]
fn bad_input_gives_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    std::fs::create_dir_all(e.home().api().join("bad")).unwrap();
    std::fs::write(e.home().api().join("bad/afile"), "x").unwrap();
    let cases = [
        (json!({"path": "afile", "message": "echo hi"}), "is a file"),
        (
            json!({"message": "echo hi", "on": [{"event": "/(unclosed/", "done": true}]}),
            "on[0]: invalid regular expression",
        ),
        (
            json!({"message": "echo hi", "on": [{"event": "no slashes", "done": true}]}),
            "not a /pattern/flags",
        ),
        (
            json!({"message": "echo hi", "shell": "no-such-shell-xyz"}),
            "no-such-shell-xyz",
        ),
        (
            json!({"message": "echo hi", "conda": {"path": "cenv"}}),
            "no conda, mamba or micromamba",
        ),
        (
            json!({"message": "echo hi", "env": {"PATH": "not-an-array"}}),
            "",
        ),
    ];
    for (i, (params, needle)) in cases.iter().enumerate() {
        let uri = script(
            &e,
            &format!("bad/s{i}.json"),
            json!({"run": [{"method": "shell.run", "params": params}]}),
        );
        let out = e.run(RunRequest::new(&uri));
        if needle.is_empty() {
            continue;
        }
        assert_eq!(out.status, RunStatus::Error, "case {i}");
        let msg = out.error.unwrap().to_string();
        assert!(msg.contains(needle), "case {i}: {msg}");
        assert!(msg.contains("step 0 (shell.run)"), "case {i}: {msg}");
    }
}

#[test]
fn shell_enter_types_into_a_live_shell_and_returns_the_rendered_value() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let uri = script(
        &e,
        "sess/s.json",
        json!({"run": [
            {"method": "shell.run", "params": {
                "message": "echo \"LOOP\"\"READY\"; while read n; do echo \"ANS\"\"WER=$((n * 7))\"; done",
                "on": [{"event": "/LOOPREADY/", "done": true}]
            }},
            {"method": "shell.enter", "params": {
                "id": "{{input.id}}", "message": "6",
                "on": [{"event": "/ANSWER=(\\d+)/", "return": "{{event.matches[0][1]}}"}]
            }},
            {"method": "shell.start", "params": {"id": "calc"}},
            {"method": "shell.enter", "params": {
                "id": "calc", "message": "echo \"X\"\"=$((6 * 9))\"",
                "on": [{"event": "/X=(\\d+)/", "return": "{{Number(event.matches[0][1])}}"}]
            }},
            {"method": "log", "params": {"raw": "typed={{input}}"}}
        ]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}\n{}", out.error, output(&sink));
    let r = results(&sink);
    assert_eq!(r[1].1, Some(json!("42")));
    assert_eq!(r[2].1, Some(json!("calc")));
    assert_eq!(r[3].1, Some(json!(54)));
    assert!(
        e.processes().list().iter().all(|p| !p.running),
        "shells left running"
    );
}

#[test]
fn uv_is_installed_from_pypi_when_missing_and_uv_pip_works_in_the_venv() {
    let t = tempfile::tempdir().unwrap();
    let mut env = env();
    // a PATH without uv, but with python3
    let py = which_dir("python3");
    env.insert("PATH".into(), format!("{py}:/usr/bin:/bin"));
    let sink = CollectSink::new();
    let e = Engine::builder(PinokioHome::new(t.path()))
        .facts(Facts::cpu_only())
        .env(env)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let uri = script(
        &e,
        "uvapp/install.json",
        json!({"run": [{"method": "shell.run", "params": {"venv": "env", "message": [
            "uv pip install -q six==1.16.0",
            "python -c 'import six, sys; print(\"ok\", six.__version__, sys.prefix)'"
        ]}}]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}\n{}", out.error, output(&sink));
    assert!(e.home().bin().join("uv").exists());
    let venv = e.home().api().join("uvapp/env");
    assert!(
        output(&sink).contains(&format!("ok 1.16.0 {}", venv.display())),
        "{}",
        output(&sink)
    );
}

fn which_dir(name: &str) -> String {
    let out = std::process::Command::new(name)
        .arg("-c")
        .arg("import sys, os; print(os.path.dirname(os.path.realpath(sys.executable)))")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn conda_env_is_created_and_activated_with_a_conda_found_on_path() {
    // a stand-in conda that behaves like the real one for what shell.run uses:
    // `shell.bash hook` defines a shell function, `create -p` makes an env,
    // `activate` sets CONDA_PREFIX/CONDA_DEFAULT_ENV and puts the env first on PATH
    let t = tempfile::tempdir().unwrap();
    let tools = t.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let conda = tools.join("conda");
    std::fs::write(
        &conda,
        r#"#!/bin/bash
case "$1" in
  shell.bash)
    cat <<'EOS'
conda() {
  case "$1" in
    activate) export CONDA_PREFIX="$2"; export CONDA_DEFAULT_ENV="$2"; export PATH="$2/bin:$PATH" ;;
    *) command conda "$@" ;;
  esac
}
EOS
    ;;
  create)
    while [ $# -gt 0 ]; do [ "$1" = "-p" ] && p="$2"; shift; done
    mkdir -p "$p/bin" && printf '#!/bin/sh\necho fake-python "$@"\n' > "$p/bin/python" && chmod +x "$p/bin/python"
    echo "created $p"
    ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&conda, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut env = env();
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), format!("{}:{path}", tools.display()));
    let sink = CollectSink::new();
    let e = Engine::builder(PinokioHome::new(t.path().join("home")))
        .facts(Facts::cpu_only())
        .env(env)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let uri = script(
        &e,
        "c/s.json",
        json!({"run": [
            {"method": "shell.run", "params": {"conda": {"path": "cenv", "python": "3.11"}, "message": "echo \"prefix=$CONDA_PREFIX\"; python --version"}},
            {"method": "shell.run", "params": {"conda": "cenv", "message": "echo \"again=$CONDA_DEFAULT_ENV\""}}
        ]}),
    );
    let out = e.run(RunRequest::new(&uri));
    assert!(out.ok(), "{:?}\n{}", out.error, output(&sink));
    let cenv = e.home().api().join("c/cenv");
    let text = output(&sink);
    assert!(
        text.contains(&format!("created {}", cenv.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("prefix={}", cenv.display())),
        "{text}"
    );
    assert!(text.contains("fake-python --version"), "{text}");
    assert!(
        text.contains(&format!("again={}", cenv.display())),
        "{text}"
    );
    assert_eq!(
        text.matches("created ").count(),
        1,
        "the env was created twice: {text}"
    );
}
