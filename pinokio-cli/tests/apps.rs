//! `pinokio install`, `status`, `menu APP`, `uninstall` end to end on a
//! launcher served from a local bare git repository (file://), plus state
//! store recovery.

mod common;

use common::{cmd, git, launcher_repo};

use predicates::prelude::*;

#[test]
fn install_status_menu_uninstall() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    cmd(&home)
        .args(["install", &url, "--name", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("installed demo"));
    assert_eq!(
        std::fs::read_to_string(home.join("api/demo/installed.txt")).unwrap(),
        "fast=true type=string\n"
    );
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"demo\s+installed").unwrap());
    cmd(&home)
        .args(["menu", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Start"));
    // a second install of the same name is refused, nothing changes
    cmd(&home)
        .args(["install", &url, "--name", "demo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already installed"));
    cmd(&home).args(["uninstall", "demo"]).assert().success();
    assert!(!home.join("api/demo").exists());
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("no apps installed"));
}

#[test]
fn failed_clone_and_non_launcher_leave_nothing_registered() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    cmd(&home)
        .args(["install", "file:///definitely/not/here.git"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cloning file:///definitely/not/here.git failed",
        ));
    cmd(&home)
        .args(["install", "no-such-app-id-xyz"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such-app-id-xyz"));
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("no apps installed"));
}

#[test]
fn a_corrupt_state_store_is_rebuilt_from_the_app_folders() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    let home = t.path().join("home");
    cmd(&home)
        .args(["install", &url, "--name", "demo", "--no-run"])
        .assert()
        .success();
    std::fs::write(
        home.join("library.sqlite"),
        b"this is not a database at all, just garbage bytes",
    )
    .unwrap();
    let _ = std::fs::remove_file(home.join("library.sqlite-wal"));
    let _ = std::fs::remove_file(home.join("library.sqlite-shm"));
    cmd(&home)
        .arg("status")
        .assert()
        .success()
        .stderr(predicate::str::contains("rebuilt").and(predicate::str::contains("demo")))
        .stdout(predicate::str::is_match(r"demo\s+installed").unwrap());
}

#[test]
fn install_by_catalog_id_through_a_mirror_and_refuse_non_launchers() {
    let t = tempfile::tempdir().unwrap();
    let url = launcher_repo(t.path());
    // serve the fixture under the catalog entry's repository name
    let mirror = t.path().join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let bare = url.trim_start_matches("file://");
    git(
        t.path(),
        &[
            "clone",
            "-q",
            "--bare",
            bare,
            mirror.join("VibeVoice-Pinokio.git").to_str().unwrap(),
        ],
    );
    let home = t.path().join("home");
    cmd(&home)
        .args([
            "install",
            "vibevoice-pinokio",
            "--no-run",
            "--git-mirror",
            &format!(
                "https://github.com/SUP3RMASS1VE/=file://{}/",
                mirror.display()
            ),
        ])
        .assert()
        .success();
    assert!(home.join("api/VibeVoice-Pinokio/pinokio.js").is_file());
    cmd(&home)
        .args(["install", "allegro-txt2vid"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no launcher script"));
    cmd(&home)
        .args(["install", "vibevoice-pinoki"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("did you mean")
                .and(predicate::str::contains("vibevoice-pinokio")),
        );
}
