//! App lifecycle on a fixture launcher kept as a local bare git repository
//! (cloned over file://): install, menu in each state, up (URL answers),
//! two apps at once, mirror rewrites, bad input, uninstall.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pinokio_core::apps::{self, AppError, Mirror};
use pinokio_core::events::NullSink;
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare repository holding a copy of `src`; returns its file:// URL.
fn bare_repo(root: &Path, src: &Path, name: &str) -> String {
    let work = root.join(format!("{name}-work"));
    copy(src, &work);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "launcher"]);
    let bare = root.join(format!("{name}.git"));
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    format!("file://{}", bare.display())
}

fn copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/launchers/webdemo")
}

fn engine(home: &Path) -> Engine {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.remove("PYTHONUNBUFFERED");
    Engine::builder(PinokioHome::new(home))
        .facts(Facts::cpu_only())
        .env(env)
        .options(EngineOptions {
            kill_grace: Duration::from_secs(2),
            ..EngineOptions::default()
        })
        .sink(Arc::new(NullSink))
        .build()
        .unwrap()
}

fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let hostport = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let Ok(mut s) = std::net::TcpStream::connect(&hostport) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).contains(" 200 ")
}

fn menu_texts(e: &Engine, app: &Path) -> Vec<String> {
    e.menu(app)
        .unwrap()
        .items
        .iter()
        .map(|i| i.text.clone())
        .collect()
}

#[test]
fn install_menu_up_two_apps_and_uninstall() {
    let t = tempfile::tempdir().unwrap();
    let url = bare_repo(t.path(), &fixture(), "webdemo");
    let e = engine(&t.path().join("home"));

    let a = apps::clone(&e, &url, "demo-a", &[]).unwrap();
    assert!(a.join(".git").is_dir());
    let shallow = Command::new("git")
        .args(["rev-parse", "--is-shallow-repository"])
        .current_dir(&a)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shallow.stdout).trim(), "true");
    assert_eq!(menu_texts(&e, &a), vec!["Install"]);

    apps::install(&e, &a).unwrap();
    // menu params reach the script as strings, as from the desktop menu
    assert_eq!(
        std::fs::read_to_string(a.join("installed.txt")).unwrap(),
        "fast=true type=string\n"
    );
    assert_eq!(menu_texts(&e, &a), vec!["Start", "Reset"]);

    let up = apps::up(&e, &a, 6).unwrap();
    assert!(up.url.starts_with("http://127.0.0.1:"), "{}", up.url);
    assert!(http_ok(&up.url), "web UI does not answer at {}", up.url);
    assert_eq!(menu_texts(&e, &a), vec!["Open Web UI", "Terminal"]);

    // a second app at once, on its own port
    let b = apps::clone(&e, &url, "demo-b", &[]).unwrap();
    let up_b = apps::up(&e, &b, 6).unwrap();
    assert_ne!(up_b.url, up.url);
    assert!(http_ok(&up_b.url));
    assert!(http_ok(&up.url));
    assert_eq!(up_b.ran.len(), 2, "install then start: {:?}", up_b.ran);

    let installed: Vec<String> = apps::installed(&e).into_iter().map(|(n, _)| n).collect();
    assert_eq!(installed, vec!["demo-a", "demo-b"]);

    // uninstall stops the server and removes the folder, not the drive
    std::fs::create_dir_all(e.home().drive().join("models")).unwrap();
    std::fs::write(e.home().drive().join("models/keep.bin"), "x").unwrap();
    std::os::unix::fs::symlink(e.home().drive().join("models"), a.join("models")).unwrap();
    apps::uninstall(&e, "demo-a").unwrap();
    assert!(!a.exists());
    assert!(
        !http_ok(&up.url),
        "server of an uninstalled app still answers"
    );
    assert!(
        e.home().drive().join("models/keep.bin").is_file(),
        "drive data was touched"
    );
    assert!(http_ok(&up_b.url), "the other app was stopped");
    e.shutdown();
    assert!(!http_ok(&up_b.url));
}

#[test]
fn install_through_a_mirror_rewrite() {
    let t = tempfile::tempdir().unwrap();
    let url = bare_repo(t.path(), &fixture(), "webdemo");
    let e = engine(&t.path().join("home"));
    let mirror_root = url.trim_end_matches("webdemo.git").to_string();
    std::fs::write(
        e.home().root().join("git-mirrors"),
        format!("# corporate mirror\nhttps://github.com/pinokiofactory/={mirror_root}\n"),
    )
    .unwrap();
    let mirrors = apps::mirrors_for(&e, &[]);
    assert_eq!(mirrors.len(), 1);
    let dir = apps::clone(
        &e,
        "https://github.com/pinokiofactory/webdemo.git",
        "viamirror",
        &mirrors,
    )
    .unwrap();
    assert!(dir.join("pinokio.js").is_file());
    // without the mirror the (unreachable) upstream URL fails cleanly
    let err = apps::clone(
        &e,
        "file:///nonexistent/repo.git",
        "nothere",
        &[Mirror::parse("x=y").unwrap()],
    )
    .unwrap_err();
    assert!(matches!(err, AppError::Clone { .. }), "{err}");
    assert!(!e.home().api().join("nothere").exists());
    assert!(
        std::fs::read_dir(e.home().api())
            .unwrap()
            .flatten()
            .all(|x| !x.file_name().to_string_lossy().contains("cloning")),
        "a failed clone left a temporary folder"
    );
}

#[test]
fn bad_input_is_reported_and_nothing_is_half_registered() {
    let t = tempfile::tempdir().unwrap();
    let e = engine(&t.path().join("home"));
    // a repository that is not a launcher
    let plain = t.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("README.md"), "not a launcher").unwrap();
    let url = bare_repo(t.path(), &plain, "plain");
    let err = apps::clone(&e, &url, "plain", &[]).unwrap_err();
    assert!(matches!(err, AppError::NotALauncher { .. }), "{err}");
    assert!(!e.home().api().join("plain").exists());
    // bad names and double installs
    assert!(matches!(
        apps::clone(&e, &url, "../evil", &[]),
        Err(AppError::BadName(_))
    ));
    let demo = bare_repo(t.path(), &fixture(), "webdemo");
    apps::clone(&e, &demo, "demo", &[]).unwrap();
    assert!(matches!(
        apps::clone(&e, &demo, "demo", &[]),
        Err(AppError::AlreadyInstalled(..))
    ));
    // unknown apps
    assert!(matches!(
        apps::uninstall(&e, "nope"),
        Err(AppError::NotInstalled(..))
    ));
    assert!(matches!(
        apps::app_dir(&e, "nope"),
        Err(AppError::NotInstalled(..))
    ));
}

#[test]
fn runs_and_shells_are_recorded_in_the_state_store() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    PinokioHome::new(&home).ensure().unwrap();
    let store = Arc::new(pinokio_core::state::StateStore::open(&home).unwrap());
    let e = Engine::builder(PinokioHome::new(&home))
        .facts(Facts::cpu_only())
        .state(store.clone())
        .sink(Arc::new(NullSink))
        .build()
        .unwrap();
    let app = e.home().api().join("rec");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("s.json"),
        r#"{"run":[{"method":"shell.run","params":{"message":"echo hi; exit 2"}},{"method":"no.such"}]}"#,
    )
    .unwrap();
    let out = e.run(pinokio_core::RunRequest::new("~/api/rec/s.json"));
    assert!(!out.ok());
    let runs = store.runs_of("rec", 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, pinokio_core::state::RunStatus::Error);
    assert!(
        runs[0]
            .exit_reason
            .as_deref()
            .unwrap_or("")
            .contains("no.such"),
        "{:?}",
        runs[0]
    );
    let procs = store.processes_of("rec").unwrap();
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].exit_code, Some(2));
    assert_ne!(procs[0].state, pinokio_core::state::ProcState::Running);
}
