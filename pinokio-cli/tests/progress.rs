//! Download progress in `pinokio run` when stderr is not a terminal: plain
//! lines (no bar, no escape codes), and `progress` events in `--json`.
//! The file comes from an HTTP server on 127.0.0.1 started here.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use common::Env;

const SIZE: usize = 3 * 1024 * 1024;

/// Serves `SIZE` bytes at any path (HEAD and GET, no ranges).
fn serve() -> String {
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
                    let _ = c.write_all(&vec![7u8; SIZE]);
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
