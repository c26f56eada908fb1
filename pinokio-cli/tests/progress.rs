//! Download progress in `pinokio run` and `pinokio install`: plain lines (no
//! bar, no escape codes) when stderr is not a terminal, a drawn bar in a
//! real terminal (a PTY), and `progress` events in `--json`. The file comes
//! from an HTTP server on 127.0.0.1 started here.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use common::Env;

const SIZE: usize = 3 * 1024 * 1024;

/// Serves `SIZE` bytes at any path (HEAD and GET, no ranges).
fn serve() -> String {
    serve_paced(None)
}

/// [`serve`], sending the body in 64 KiB pieces `pause` apart.
fn serve_paced(pause: Option<std::time::Duration>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
                );
                let _ = c.write_all(head.as_bytes());
                if line.starts_with("GET") {
                    let body = vec![7u8; SIZE];
                    for piece in body.chunks(64 * 1024) {
                        if c.write_all(piece).is_err() {
                            return;
                        }
                        if let Some(p) = pause {
                            std::thread::sleep(p);
                        }
                    }
                }
            });
        }
    });
    base
}

fn script(env: &Env, base: &str) {
    env.write(
        "dl.json",
        &format!(
            r#"{{"run": [{{"method": "fs.download", "params": {{"url": "{base}/f.bin", "path": "f.bin"}}}}]}}"#
        ),
    );
}

#[test]
fn plain_progress_lines_on_a_pipe() {
    let env = Env::new();
    script(&env, &serve());
    let out = env.cmd().args(["run", "dl.json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        std::fs::metadata(env.path().join("f.bin")).unwrap().len(),
        SIZE as u64
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("downloading f.bin: "))
        .collect();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("downloading f.bin: 3.0 MiB / 3.0 MiB (100%), ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    assert!(stdout.contains("downloaded f.bin (3.0 MiB)"), "{stdout}");
}

#[test]
fn json_output_carries_progress_events() {
    let env = Env::new();
    script(&env, &serve());
    let out = env
        .cmd()
        .args(["run", "dl.json", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = events
        .iter()
        .rfind(|e| e["type"] == "progress")
        .expect("a progress event");
    assert_eq!(last["name"], "f.bin");
    assert_eq!(last["bytes"], SIZE as u64);
    assert_eq!(last["total"], SIZE as u64);
    assert_eq!(last["done"], true);
    assert_eq!(last["index"], 0);
    // No plain progress lines on stderr in JSON mode.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("downloading f.bin"));
}

/// A launcher folder whose install script downloads `f.bin`.
fn launcher(env: &Env, base: &str) -> String {
    env.write(
        "dl-app/install.json",
        &format!(
            r#"{{"run": [{{"method": "fs.download", "params": {{"url": "{base}/f.bin", "path": "f.bin"}}}}]}}"#
        ),
    );
    env.path().join("dl-app").to_string_lossy().into_owned()
}

#[test]
fn install_prints_plain_progress_lines_on_a_pipe() {
    let env = Env::new();
    let app = launcher(&env, &serve());
    let out = env.cmd().args(["install", &app]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("downloading f.bin: "))
        .unwrap_or_default();
    assert!(
        last.starts_with("downloading f.bin: 3.0 MiB / 3.0 MiB (100%), "),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert_eq!(
        std::fs::metadata(env.home().join("api/dl-app/f.bin"))
            .unwrap()
            .len(),
        SIZE as u64
    );
}

/// Run `pinokio <args>` in a real terminal and return all it wrote.
fn in_terminal(env: &Env, args: &[&str]) -> (bool, String) {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(common::BIN);
    cmd.cwd(env.path());
    cmd.env_remove("PINOKIO_HOME");
    cmd.env("TERM", "xterm-256color");
    cmd.arg("--home");
    cmd.arg(env.home());
    for a in args {
        cmd.arg(a);
    }
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let text = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all); // EIO once the child is gone
        String::from_utf8_lossy(&all).into_owned()
    });
    let status = child.wait().unwrap();
    drop(pair.master);
    (status.success(), text.join().unwrap())
}

#[test]
fn a_terminal_gets_a_progress_bar_in_run_and_install() {
    let env = Env::new();
    // 3 MiB in 48 pieces 40 ms apart: about 2 s, many frames of the bar
    let base = serve_paced(Some(std::time::Duration::from_millis(40)));
    script(&env, &base);
    let app = launcher(&env, &base);
    let bar = regex::Regex::new(r"\[=+>? *\] downloading f\.bin: ").unwrap();
    for args in [vec!["run", "dl.json"], vec!["install", app.as_str()]] {
        let (ok, text) = in_terminal(&env, &args);
        assert!(ok, "{args:?}: {text}");
        // a bar: `[===>   ]` drawn in place with escape codes, beside the
        // progress text
        assert!(bar.is_match(&text), "{args:?}: {text:?}");
        assert!(text.contains('\x1b'), "{args:?}: {text:?}");
        // the step's own plain lines are not printed beside the bar
        assert!(
            !text.contains("\ndownloading f.bin: 3.0 MiB / 3.0 MiB (100%)"),
            "{args:?}: {text:?}"
        );
    }
}
