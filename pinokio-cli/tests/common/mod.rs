//! Helpers shared by the CLI end-to-end tests: git fixtures and the
//! `pinokio` command with a temporary home.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as Std;
use std::time::Duration;

use assert_cmd::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_pinokio");

/// Run git in `dir` with a fixed identity; panic with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Std::new("git")
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

/// A launcher from `tests/launchers/<fixture>` (minus `skip`) committed in a
/// work tree and pushed to a bare repository. Returns (clone URL, work tree).
pub fn launcher_repo_with(root: &Path, fixture: &str, skip: &[&str]) -> (String, PathBuf) {
    let work = root.join(format!("{fixture}-work"));
    std::fs::create_dir_all(&work).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/launchers")
        .join(fixture);
    for e in std::fs::read_dir(src).unwrap().flatten() {
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        std::fs::copy(e.path(), work.join(e.file_name())).unwrap();
    }
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "x"]);
    let bare = root.join(format!("{fixture}.git"));
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
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    (format!("file://{}", bare.display()), work)
}

/// The `webdemo` launcher as a bare repository; its file:// URL.
pub fn launcher_repo(root: &Path) -> String {
    launcher_repo_with(root, "webdemo", &[]).0
}

/// `pinokio --home <home>` with a generous time limit.
pub fn cmd(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("PINOKIO_HOME")
        .env_remove("PYTHONUNBUFFERED")
        .arg("--home")
        .arg(home)
        .timeout(Duration::from_secs(120));
    c
}
