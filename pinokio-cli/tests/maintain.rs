//! `pinokio logs`, `update`, `reset` end to end on launchers served from
//! local bare git repositories (file://).

mod common;

use common::{cmd, git, launcher_repo_with as launcher_repo, BIN};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Std, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

/// Commit a new file in the work tree and push it to the bare repository.
fn push_file(work: &Path, name: &str, text: &str) {
    std::fs::write(work.join(name), text).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "more"]);
    git(work, &["push", "-q", "origin", "main"]);
}

fn install(home: &Path, url: &str, name: &str) {
    cmd(home)
        .args(["install", url, "--name", name])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("installed {name}")));
}

fn stdout_of(c: &mut Command) -> String {
    let out = c.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

fn app_state(home: &Path, app: &str) -> String {
    let text = stdout_of(cmd(home).args(["status", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == app)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn logs_show_the_install_output() {
    let t = tempfile::tempdir().unwrap();
    let (url, _) = launcher_repo(t.path(), "updatable", &[]);
    let home = t.path().join("home");
    install(&home, &url, "up");
    let all = stdout_of(cmd(&home).args(["logs", "up"]));
    let lines: Vec<&str> = all.lines().collect();
    let one = lines
        .iter()
        .position(|l| l.starts_with("[install.json] ") && l.ends_with(" install-line-one"))
        .unwrap_or_else(|| panic!("no first install line in:\n{all}"));
    let two = lines
        .iter()
        .position(|l| l.starts_with("[install.json] ") && l.ends_with(" install-line-two"))
        .unwrap_or_else(|| panic!("no second install line in:\n{all}"));
    assert!(one < two, "{all}");
    // --lines 1: only the last line (the second shell's exit note)
    let last = stdout_of(cmd(&home).args(["logs", "up", "--lines", "1"]));
    assert_eq!(last.lines().count(), 1, "{last}");
    assert_eq!(last.trim_end(), *lines.last().unwrap());
    let last3 = stdout_of(cmd(&home).args(["logs", "up", "--lines", "3"]));
    assert_eq!(last3.lines().collect::<Vec<_>>(), lines[lines.len() - 3..]);
    // --script: by stem; a script without logs is an error naming those with logs
    let only = stdout_of(cmd(&home).args(["logs", "up", "--script", "install"]));
    assert_eq!(only, all);
    cmd(&home)
        .args(["logs", "up", "--script", "start"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no logs for script \"start\"; scripts with logs: install.json",
        ));
}

#[test]
fn logs_follow_prints_appended_lines_until_ctrl_c() {
    let t = tempfile::tempdir().unwrap();
    let (url, _) = launcher_repo(t.path(), "updatable", &[]);
    let home = t.path().join("home");
    install(&home, &url, "up");
    let mut child = Std::new(BIN)
        .env_remove("PINOKIO_HOME")
        .arg("--home")
        .arg(&home)
        .args(["logs", "up", "-f", "--lines", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} from logs -f"))
    };
    // the last line that is there now, then nothing until something is appended
    let first = next("first line");
    assert!(first.starts_with("[install.json] "), "{first}");
    assert!(rx.recv_timeout(Duration::from_millis(600)).is_err());
    let log = home.join("api/up/logs/shell/install.json.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "2099-01-01T00:00:00.000Z appended-after-start").unwrap();
    drop(f);
    let started = Instant::now();
    let got = next("appended line");
    assert_eq!(
        got,
        "[install.json] 2099-01-01T00:00:00.000Z appended-after-start"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // a script that logs for the first time is picked up as well
    let other = home.join("api/up/logs/shell/start.js.log");
    std::fs::write(&other, "2099-01-01T00:00:01.000Z from-a-new-script\n").unwrap();
    assert_eq!(
        next("new script's line"),
        "[start.js] 2099-01-01T00:00:01.000Z from-a-new-script"
    );
    let ok = Std::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("logs -f did not end after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn update_pulls_new_commits_when_there_is_no_update_script() {
    let t = tempfile::tempdir().unwrap();
    let (url, work) = launcher_repo(t.path(), "webdemo", &[]);
    let home = t.path().join("home");
    install(&home, &url, "demo");
    let app = home.join("api/demo");
    cmd(&home)
        .args(["update", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("demo is up to date"));
    push_file(&work, "NEWS.md", "new in version 2\n");
    assert!(!app.join("NEWS.md").exists());
    cmd(&home)
        .args(["update", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("updated demo: "));
    assert_eq!(
        std::fs::read_to_string(app.join("NEWS.md")).unwrap(),
        "new in version 2\n"
    );
    assert_eq!(app_state(&home, "demo"), "installed");

    // a local commit makes the next pull not a fast-forward: recorded as failed
    std::fs::write(app.join("local.txt"), "mine\n").unwrap();
    git(&app, &["add", "local.txt"]);
    git(&app, &["commit", "-q", "-m", "local"]);
    push_file(&work, "MORE.md", "v3\n");
    cmd(&home)
        .args(["update", "demo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("git pull --ff-only failed"));
    assert_eq!(app_state(&home, "demo"), "failed");
    assert!(!app.join("MORE.md").exists());
}

#[test]
fn update_runs_the_update_script_instead_of_pulling() {
    let t = tempfile::tempdir().unwrap();
    let (url, work) = launcher_repo(t.path(), "updatable", &[]);
    let home = t.path().join("home");
    install(&home, &url, "up");
    let app = home.join("api/up");
    push_file(&work, "NEWS.md", "v2\n");
    cmd(&home)
        .args(["update", "up"])
        .assert()
        .success()
        .stdout(predicate::str::contains("update-ran"))
        .stdout(predicate::str::contains("updated up (ran "));
    assert_eq!(
        std::fs::read_to_string(app.join("updated.txt")).unwrap(),
        "yes\n"
    );
    assert!(
        !app.join("NEWS.md").exists(),
        "update.json runs, not git pull"
    );
    assert_eq!(app_state(&home, "up"), "installed");
    let logs = stdout_of(cmd(&home).args(["logs", "up", "--script", "update.json"]));
    assert!(
        logs.lines()
            .any(|l| l.starts_with("[update.json] ") && l.ends_with(" update-ran")),
        "{logs}"
    );
}

#[test]
fn reset_runs_the_reset_script() {
    let t = tempfile::tempdir().unwrap();
    let (url, _) = launcher_repo(t.path(), "updatable", &[]);
    let home = t.path().join("home");
    install(&home, &url, "up");
    let app = home.join("api/up");
    assert!(app.join("installed.txt").exists());
    cmd(&home)
        .args(["reset", "up"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reset-ran"))
        .stdout(predicate::str::contains("reset up (ran "));
    assert!(!app.join("installed.txt").exists());
    assert!(app.join("install.json").exists());
}

#[test]
fn reset_without_a_reset_script_fails() {
    let t = tempfile::tempdir().unwrap();
    let (url, _) = launcher_repo(t.path(), "webdemo", &["reset.json"]);
    let home = t.path().join("home");
    install(&home, &url, "demo");
    cmd(&home)
        .args(["reset", "demo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "this launcher has no reset script",
        ));
    assert!(home.join("api/demo/installed.txt").exists());
    assert_eq!(app_state(&home, "demo"), "installed");
}

#[test]
fn unknown_apps_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for args in [
        vec!["logs", "ghost"],
        vec!["logs", "ghost", "-f"],
        vec!["update", "ghost"],
        vec!["reset", "ghost"],
        vec!["logs", "../ghost"],
    ] {
        cmd(&home)
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("unknown app"));
    }
    assert!(!home.join("api/ghost").exists());
}

/// Shuts the home's background engine down when the test ends, passed or not.
struct Shutdown(PathBuf);

impl Drop for Shutdown {
    fn drop(&mut self) {
        let _ = Std::new(BIN)
            .env_remove("PINOKIO_HOME")
            .arg("--home")
            .arg(&self.0)
            .arg("shutdown")
            .output();
    }
}

fn serving(url: &str) -> bool {
    use std::io::Read;
    let hostport = url.trim().trim_start_matches("http://");
    let hostport = hostport.split('/').next().unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(hostport) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n");
    let mut b = [0u8; 32];
    let n = s.read(&mut b).unwrap_or(0);
    String::from_utf8_lossy(&b[..n]).contains(" 200 ")
}

#[test]
fn reset_stops_an_app_running_in_the_background_engine() {
    let t = tempfile::tempdir().unwrap();
    let (url, _) = launcher_repo(t.path(), "webdemo", &[]);
    let home = t.path().join("home");
    install(&home, &url, "demo");
    let _guard = Shutdown(home.clone());
    let out = stdout_of(
        cmd(&home)
            .env_remove("PYTHONUNBUFFERED")
            .args(["start", "demo"]),
    );
    let web = out
        .lines()
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {out}"))
        .to_string();
    assert!(serving(&web), "{web} does not answer");
    cmd(&home)
        .args(["reset", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reset demo (ran "));
    assert!(!home.join("api/demo/installed.txt").exists());
    let deadline = Instant::now() + Duration::from_secs(15);
    while serving(&web) {
        assert!(Instant::now() < deadline, "{web} still answers after reset");
        std::thread::sleep(Duration::from_millis(100));
    }
}
