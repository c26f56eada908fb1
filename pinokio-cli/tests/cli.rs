//! End-to-end tests of the `pinokio` binary. Every test uses its own
//! temporary `--home` and runs in a temporary folder, so script paths on the
//! command line are relative (as a user types them).

mod common;

use common::{Env, BIN};

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_flag() {
    Command::new(BIN)
        .arg("--version")
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("pinokio ")
                .and(predicate::str::contains(env!("CARGO_PKG_VERSION"))),
        );
}

#[test]
fn run_prints_log_output_and_uses_home() {
    let e = Env::new();
    e.write(
        "hello.json",
        r#"{"run": [{"method": "log", "params": {"raw": "hello from log"}}, {"method": "log", "params": {"text": "second"}}]}"#,
    );
    e.cmd()
        .args(["run", "hello.json"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("hello from log\n")
                .and(predicate::str::contains("second\n"))
                .and(predicate::str::contains("[0] log"))
                .and(predicate::str::contains("[1] log")),
        )
        .stderr(predicate::str::contains("finished:"));
    // --home was created and used
    assert!(e.home().join("api").is_dir());
    assert!(e.home().join("ENVIRONMENT").is_file());
}

#[test]
fn pinokio_home_env_is_used_without_flag() {
    let e = Env::new();
    e.write(
        "s.json",
        r#"{"run": [{"method": "log", "params": {"raw": "x"}}]}"#,
    );
    let env_home = e.path().join("envhome");
    Command::new(BIN)
        .current_dir(e.path())
        .env("PINOKIO_HOME", &env_home)
        .args(["run", "s.json"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    assert!(env_home.join("api").is_dir());
    assert!(!e.home().exists());
}

#[test]
fn json_lines_parse_and_end_with_run_end() {
    let e = Env::new();
    e.write(
        "hello.json",
        r#"{"run": [{"method": "log", "params": {"raw": "hi"}}]}"#,
    );
    let out = e
        .cmd()
        .args(["run", "hello.json", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<Value> = stdout_of(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON: {l:?}: {err}")))
        .collect();
    assert!(events.len() >= 4, "{events:?}");
    assert_eq!(events[0]["type"], "run_start");
    assert!(events
        .iter()
        .any(|ev| ev["type"] == "output" && ev["text"] == "hi\n"));
    let last = events.last().unwrap();
    assert_eq!(last["type"], "run_end");
    assert_eq!(last["status"], "finished");
    assert!(last["script"].as_str().unwrap().ends_with("hello.json"));
}

#[test]
fn args_are_parsed_as_json_or_text() {
    let e = Env::new();
    e.write(
        "args.json",
        r#"{"run": [{"method": "log", "params": {"raw": "n+1={{args.n + 1}} flag={{typeof args.flag}}:{{args.flag}} name={{args.name.toUpperCase()}} s={{typeof args.s}} tags={{args.tags.length}}:{{args.tags[1]}} obj={{args.o.a[0]}}"}}]}"#,
    );
    e.cmd()
        .args(["run", "args.json"])
        .args(["--arg", "n=5", "--arg", "flag=true", "--arg", "name=bob"])
        .args(["--arg", "s=\"5\"", "--arg", "tags=a", "--arg", "tags=b"])
        .args(["--arg", r#"o={"a":[7]}"#])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "n+1=6 flag=boolean:true name=BOB s=string tags=2:b obj=7",
        ));
}

#[test]
fn malformed_arg_is_a_usage_error() {
    let e = Env::new();
    e.write(
        "s.json",
        r#"{"run": [{"method": "log", "params": {"raw": "x"}}]}"#,
    );
    e.cmd()
        .args(["run", "s.json", "--arg", "novalue"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("KEY=VALUE"));
}

#[test]
fn broken_json_names_file_and_line() {
    let e = Env::new();
    e.write(
        "broken.json",
        "{\"run\": [\n  {\"method\": \"log\",\n   \"params\": }\n]}\n",
    );
    e.cmd()
        .args(["run", "broken.json"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("broken.json:3:")
                .and(predicate::str::contains("invalid JSON"))
                .and(predicate::str::contains(
                    e.path().join("broken.json").display().to_string(),
                )),
        );
}

#[test]
fn unknown_method_names_step_and_method() {
    let e = Env::new();
    e.write(
        "unk.json",
        r#"{"run": [{"method": "log", "params": {"raw": "first"}}, {"method": "frobnicate"}]}"#,
    );
    e.cmd()
        .args(["run", "unk.json"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("first"))
        .stderr(
            predicate::str::contains("unk.json: step 1 (frobnicate)")
                .and(predicate::str::contains("unknown method")),
        );
}

#[test]
fn missing_script_fails() {
    let e = Env::new();
    e.cmd()
        .args(["run", "missing.json"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("missing.json").and(predicate::str::contains("not found")),
        );
}

#[test]
fn runaway_js_load_hits_the_time_limit() {
    let e = Env::new();
    e.write("loop.js", "while (true) {}\nmodule.exports = { run: [] }\n");
    let started = Instant::now();
    e.cmd()
        .env("PINOKIO_LOAD_LIMIT_MS", "500")
        .args(["run", "loop.js"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("loop.js")
                .and(predicate::str::contains("500ms"))
                .and(
                    predicate::str::contains("time limit")
                        .or(predicate::str::contains("took longer")),
                ),
        );
    // the default limit is 10 s: the variable must have shortened it
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_load_limit_is_reported() {
    let e = Env::new();
    e.write(
        "s.json",
        r#"{"run": [{"method": "log", "params": {"raw": "x"}}]}"#,
    );
    e.cmd()
        .env("PINOKIO_LOAD_LIMIT_MS", "soon")
        .args(["run", "s.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("PINOKIO_LOAD_LIMIT_MS"));
}

const PLATFORM_SCRIPT: &str = r#"{"run": [
  {"when": "{{platform === 'win32'}}", "method": "log", "params": {"raw": "win {{gpu}} {{args.v}}"}},
  {"when": "{{platform !== 'win32'}}", "method": "log", "params": {"raw": "other"}}
]}"#;

#[test]
fn plan_json_for_win32_nvidia() {
    let e = Env::new();
    e.write("plat.json", PLATFORM_SCRIPT);
    let out = e
        .cmd()
        .args([
            "plan",
            "plat.json",
            "--platform",
            "win32",
            "--gpu",
            "nvidia",
            "--arg",
            "v=3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let plan: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert!(plan["script"].as_str().unwrap().ends_with("plat.json"));
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["runs"], true);
    assert_eq!(steps[0]["method"], "log");
    assert_eq!(steps[0]["params"]["raw"], "win nvidia 3");
    assert_eq!(steps[1]["runs"], false);

    // another platform flips both
    let out = e
        .cmd()
        .args([
            "plan",
            "plat.json",
            "--platform",
            "linux",
            "--gpu",
            "none",
            "--json",
        ])
        .output()
        .unwrap();
    let plan: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(plan["steps"][0]["runs"], false);
    assert_eq!(plan["steps"][1]["runs"], true);
}

#[test]
fn plan_readable_listing() {
    let e = Env::new();
    e.write("plat.json", PLATFORM_SCRIPT);
    e.cmd()
        .args([
            "plan",
            "plat.json",
            "--platform",
            "win32",
            "--gpu",
            "nvidia",
            "--gpu-model",
            "RTX 4090",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("[0] log  runs")
                .and(predicate::str::contains("[1] log  skipped"))
                .and(predicate::str::contains(
                    r#"params: {"raw":"win nvidia {{args.v}}"}"#,
                ))
                .and(predicate::str::contains("gpu nvidia (rtx 4090)")),
        );
}

#[test]
fn plan_rejects_unknown_platform_and_reports_load_errors() {
    let e = Env::new();
    e.write("plat.json", PLATFORM_SCRIPT);
    e.cmd()
        .args(["plan", "plat.json", "--platform", "beos"])
        .assert()
        .code(2);
    e.write("bad.json", "{\"run\": [");
    e.cmd().args(["plan", "bad.json"]).assert().code(1).stderr(
        predicate::str::contains("bad.json:1:").and(predicate::str::contains("invalid JSON")),
    );
}

const MENU_APP: &str = r#"module.exports = {
  title: "Demo App",
  version: "1.2",
  menu: async (kernel, info) => {
    const installed = await Promise.resolve(false)
    return [
      { default: true, text: installed ? "Start" : "Install", href: "install.json" },
      { html: "<b>Open</b> Web UI", href: "http://127.0.0.1:7860" },
      { text: "Advanced", menu: [{ text: "Reset", href: "reset.js" }] }
    ]
  }
}
"#;

#[test]
fn menu_async_function() {
    let e = Env::new();
    e.write("app/pinokio.js", MENU_APP);
    let install = e.path().join("app").join("install.json");
    e.cmd().args(["menu", "app"]).assert().success().stdout(
        predicate::str::contains("Demo App (1.2)")
            .and(predicate::str::contains(format!(
                "  Install -> {} [default]",
                install.display()
            )))
            .and(predicate::str::contains(
                "  Open Web UI -> http://127.0.0.1:7860",
            ))
            .and(predicate::str::contains("\n    Reset -> ")),
    );
    let out = e.cmd().args(["menu", "app", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let menu: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(menu["title"], "Demo App");
    assert_eq!(menu["items"][0]["text"], "Install");
    assert_eq!(menu["items"][0]["default"], true);
    assert_eq!(menu["items"][2]["menu"][0]["text"], "Reset");
}

#[test]
fn menu_errors_name_the_folder() {
    let e = Env::new();
    e.cmd().args(["menu", "nowhere"]).assert().code(1).stderr(
        predicate::str::contains("nowhere").and(predicate::str::contains("no such folder")),
    );
    e.write(
        "bad/pinokio.js",
        "module.exports = { menu: async () => { throw new Error('boom') } }\n",
    );
    e.cmd()
        .args(["menu", "bad"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("pinokio.js").and(predicate::str::contains("boom")));
}

/// Read a child's stdout on a thread, line by line.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // keep draining so the child never blocks on a full pipe
                continue;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, want: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l == want => return,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("no {want:?} line on stdout");
            }
        }
    }
}

fn send_signal(child: &Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Wait for the child to exit within `secs`; returns its exit code.
fn exit_within(child: &mut Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pinokio did not exit within {secs}s after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

const DAEMON: &str = r#"{"daemon": true, "run": [{"method": "log", "params": {"raw": "up"}}]}"#;

#[test]
fn daemon_runs_until_sigint_then_exits_zero() {
    let e = Env::new();
    e.write("daemon.json", DAEMON);
    let mut child = e.spawn(&["run", "daemon.json"]);
    let rx = lines_of(&mut child);
    wait_for_line(&rx, "up", &mut child);
    // it keeps running after its last step
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon exited on its own"
    );
    send_signal(&child, "INT");
    assert_eq!(exit_within(&mut child, 10), Some(0));
    let err = stderr_of(&mut child);
    assert!(
        err.contains("daemon running; press Ctrl-C to stop"),
        "{err}"
    );
}

#[test]
fn daemon_stops_on_sigterm_with_json_events() {
    let e = Env::new();
    e.write("daemon.json", DAEMON);
    let mut child = e.spawn(&["run", "daemon.json", "--json"]);
    let rx = lines_of(&mut child);
    // wait for the daemon's run_end, then stop it
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no run_end event");
        let v: Value = serde_json::from_str(&l).unwrap();
        if v["type"] == "run_end" {
            assert_eq!(v["status"], "daemon");
            break;
        }
    }
    send_signal(&child, "TERM");
    assert_eq!(exit_within(&mut child, 10), Some(0));
    // the stop is reported as an event too
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("\"status\":\"stopped\"")),
        "{rest:?}"
    );
}

#[test]
fn sigint_stops_a_running_script_with_130() {
    let e = Env::new();
    // loops forever: step 0 goes back to step 0
    e.write(
        "forever.json",
        r#"{"run": [{"method": "log", "params": {"raw": "tick"}, "next": 0}]}"#,
    );
    let mut child = e.spawn(&["run", "forever.json"]);
    let rx = lines_of(&mut child);
    wait_for_line(&rx, "tick", &mut child);
    send_signal(&child, "INT");
    assert_eq!(exit_within(&mut child, 10), Some(130));
    let err = stderr_of(&mut child);
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn closed_stdout_stops_the_run() {
    let e = Env::new();
    e.write(
        "forever.json",
        r#"{"run": [{"method": "log", "params": {"raw": "tick"}, "next": 0}]}"#,
    );
    let mut child = e.spawn(&["run", "forever.json"]);
    {
        // read a little, then close the pipe (like `pinokio run ... | head`)
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "tick" {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "no tick");
        }
    }
    assert_eq!(exit_within(&mut child, 10), Some(141));
}

#[test]
fn shell_output_streams_and_strict_exit_mode_fails() {
    let e = Env::new();
    e.write(
        "sh.json",
        r#"{"run": [{"method": "shell.run", "params": {"message": "echo from-the-shell; exit 5"}}]}"#,
    );
    e.cmd()
        .args(["run", "sh.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("from-the-shell"));
    e.cmd()
        .env("PINOKIO_STRICT_EXIT", "1")
        .args(["run", "sh.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exited with status 5"));
}

#[test]
fn ctrl_c_on_a_daemon_server_kills_the_server() {
    let e = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    e.write(
        "srv.json",
        &format!(
            r#"{{"daemon": true, "run": [{{"method": "shell.run", "params": {{
                "message": "python3 -m http.server {port} --bind 127.0.0.1",
                "on": [{{"event": "/(http:\\/\\/[0-9.]+:[0-9]+)/", "done": true}}]}}}},
              {{"method": "log", "params": {{"raw": "ready {{{{input.event[1]}}}}"}}}}]}}"#
        ),
    );
    let mut child = e.spawn(&["run", "srv.json"]);
    let rx = lines_of(&mut child);
    wait_for_line(&rx, &format!("ready http://127.0.0.1:{port}"), &mut child);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    send_signal(&child, "INT");
    assert_eq!(exit_within(&mut child, 20), Some(0));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server survived Ctrl-C"
    );
}

#[test]
fn up_installs_starts_and_prints_a_working_url_then_ctrl_c_stops_it() {
    let e = Env::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webui");
    let mut child = e.spawn(&["up", example.to_str().unwrap()]);
    let rx = lines_of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(180);
    let url = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if l.starts_with("http://127.0.0.1:") => break l,
            Ok(_) => {}
            Err(_) => {
                send_signal(&child, "INT");
                let _ = exit_within(&mut child, 20);
                panic!("no URL printed: {}", stderr_of(&mut child));
            }
        }
    };
    let hostport = url.trim_start_matches("http://").to_string();
    let body = {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&hostport).unwrap();
        write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(
        body.contains(" 200 ") && body.contains("Hello from PinokioCloud"),
        "{body}"
    );
    assert!(e.home().join("api/webui/env/pyvenv.cfg").is_file());
    send_signal(&child, "INT");
    assert_eq!(exit_within(&mut child, 30), Some(0));
    assert!(
        std::net::TcpStream::connect(&hostport).is_err(),
        "the web UI survived Ctrl-C"
    );
}

/// `pinokio search x | head -1`: commands that only print end quietly (by
/// SIGPIPE, as other Unix tools) when the reader has gone, without a panic.
#[test]
fn print_only_commands_end_quietly_on_a_closed_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    for args in [&["search", "a"][..], &["doctor"][..]] {
        let mut child = env.spawn(args);
        // the reader goes away before the first line is printed
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
