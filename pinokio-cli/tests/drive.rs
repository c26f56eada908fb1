//! `pinokio drive dedupe|stats|links|unlink` and `uninstall` keeping the
//! drive's data, end to end with a temporary home.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{launcher_repo_with, Env};
use predicates::prelude::*;

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

fn write_bytes(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 253) as u8))
        .collect()
}

#[test]
fn dedupe_dry_run_then_link_then_nothing_left() {
    let env = Env::new();
    let home = env.home();
    let same = data(1, 3 << 20);
    let a = home.join("api/a/models/m.safetensors");
    let b = home.join("api/b/app/m.safetensors");
    write_bytes(&a, &same);
    write_bytes(&b, &same);
    write_bytes(&home.join("api/b/app/other.bin"), &data(2, 3 << 20));
    let dry = env
        .cmd()
        .args(["drive", "dedupe", "--dry-run"])
        .assert()
        .success();
    let text = stdout(&dry);
    assert!(
        text.contains("would link 1 files and save 3.0 MiB; nothing was changed"),
        "{text}"
    );
    assert!(text.contains("hashed 3 files (9.0 MiB)"), "{text}");
    assert_ne!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
    let real = env.cmd().args(["drive", "dedupe"]).assert().success();
    let text = stdout(&real);
    assert!(text.contains("linked 1 files, saved 3.0 MiB"), "{text}");
    assert!(text.contains("hard link"), "{text}");
    assert!(text.contains("3 hashes from the cache"), "{text}");
    assert_eq!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
    assert_eq!(std::fs::read(&b).unwrap(), same);
    let again = env
        .cmd()
        .args(["drive", "dedupe", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(v["saved_bytes"], 0);
    assert_eq!(v["hashed_files"], 0);
    assert_eq!(v["groups"].as_array().unwrap().len(), 0);
    // above the min size nothing is even scanned
    let big = env
        .cmd()
        .args(["drive", "dedupe", "--min-size", "4M"])
        .assert()
        .success();
    assert!(stdout(&big).contains("scanned 0 files of 4.0 MiB"));
    env.cmd()
        .args(["drive", "dedupe", "--min-size", "lots"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected a size"));
}

#[test]
fn links_are_listed_checked_undone_and_pruned() {
    let env = Env::new();
    let home = env.home();
    env.write("home/api/app/models/m.bin", "weights");
    env.write("home/api/app/loras/l.bin", "lora");
    env.write(
        "home/api/app/link.json",
        r#"{"run":[{"method":"fs.link","params":{"drive":{"models":"models","loras":"loras"}}}]}"#,
    );
    env.cmd()
        .args(["run", "home/api/app/link.json"])
        .assert()
        .success();
    let ok = env.cmd().args(["drive", "links"]).assert().success();
    let text = stdout(&ok);
    assert!(
        text.contains("drive   api/app/models -> drive/drives/peers/d"),
        "{text}"
    );
    assert_eq!(text.matches("[ok]").count(), 2, "{text}");

    // stats: the drive holds the data, the app reaches it through links
    let s = env.cmd().args(["drive", "stats"]).assert().success();
    let text = stdout(&s);
    let app_row = text.lines().find(|l| l.starts_with("app ")).unwrap();
    assert!(app_row.trim_end().ends_with("11 B"), "{text}");
    let drive_row = text.lines().find(|l| l.starts_with("peers/d")).unwrap();
    assert!(
        drive_row.contains("11 B") && drive_row.ends_with("app"),
        "{text}"
    );

    // the target of one link vanishes: reported, exit status 1
    let target = std::fs::canonicalize(home.join("api/app/loras")).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    let bad = env.cmd().args(["drive", "links"]).assert().code(1);
    let text = stdout(&bad);
    assert!(text.contains("[broken: the target is gone]"), "{text}");
    assert!(text.contains("1 broken links"), "{text}");

    // undo the good one: a real folder again
    env.cmd()
        .args(["drive", "unlink", "home/api/app/models"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "api/app/models is now a copy of drive/drives/peers/d",
        ));
    assert!(!std::fs::symlink_metadata(home.join("api/app/models"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(home.join("api/app/models/m.bin")).unwrap(),
        "weights"
    );
    env.cmd()
        .args(["drive", "unlink", "home/api/app/models"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a registered drive link"));

    // remove the broken link: gone, then pruned
    std::fs::remove_file(home.join("api/app/loras")).unwrap();
    let gone = env.cmd().args(["drive", "links"]).assert().success();
    assert!(stdout(&gone).contains("[gone: the link was removed]"));
    let pruned = env
        .cmd()
        .args(["drive", "links", "--prune"])
        .assert()
        .success();
    let text = stdout(&pruned);
    assert!(text.contains("forgot 1 links"), "{text}");
    assert!(text.contains("no links in drive/links.json"), "{text}");
}

#[test]
fn uninstall_keeps_drive_data_linked_merged_and_hard_linked() {
    let env = Env::new();
    let home = env.home();
    let (url, _) = launcher_repo_with(env.path(), "webdemo", &[]);
    env.cmd()
        .args(["install", &url, "--name", "demo", "--no-run"])
        .assert()
        .success();
    // a drive the app's models merge into, and a file dedupe hard-links
    env.write("home/api/demo/models/from-app.bin", "app data");
    env.write(
        "home/api/demo/link.json",
        r#"{"run":[{"method":"fs.link","params":{"drive":{"models":"models"}}}]}"#,
    );
    env.cmd()
        .args(["run", "home/api/demo/link.json"])
        .assert()
        .success();
    let same = data(5, 2 << 20);
    write_bytes(&home.join("api/demo/weights.bin"), &same);
    write_bytes(&home.join("drive/drives/peers/keep/weights.bin"), &same);
    env.cmd()
        .args(["drive", "dedupe"])
        .assert()
        .success()
        .stdout(predicate::str::contains("linked 1 files"));
    let merged = std::fs::canonicalize(home.join("api/demo/models"))
        .unwrap()
        .join("from-app.bin");
    env.cmd()
        .args(["uninstall", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "shared drive data was not touched",
        ));
    assert!(!home.join("api/demo").exists());
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), "app data");
    assert_eq!(
        std::fs::read(home.join("drive/drives/peers/keep/weights.bin")).unwrap(),
        same
    );
    let links = env.cmd().args(["drive", "links"]).assert().success();
    assert!(stdout(&links).contains("1 links are gone"));
}
