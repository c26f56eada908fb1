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

/// A temporary folder with a `home/` Pinokio home; commands run inside it,
/// so script paths on the command line are relative, as a user types them.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    /// `pinokio --home <tmp>/home ...`, run in the temp folder.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path())
            .env_remove("PINOKIO_HOME")
            .env_remove("PINOKIO_LOAD_LIMIT_MS")
            .arg("--home")
            .arg(self.home())
            .timeout(Duration::from_secs(60));
        c
    }
    /// The same, as a std child process with piped output.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Std::new(BIN)
            .current_dir(self.path())
            .env_remove("PINOKIO_HOME")
            .arg("--home")
            .arg(self.home())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
