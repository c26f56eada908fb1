//! Installing tunnel programs into HOME/bin from a local stand-in release
//! server (`PINOKIO_CLOUDFLARED_URL` / `PINOKIO_NGROK_URL`): the binary is
//! downloaded, made executable, run once, and only then put in place; a
//! program that does not run or a failed download leaves nothing behind;
//! a program already found is not downloaded again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use pinokio_cloud::install::{self, InstallError, Tool};

const FAKE_CLOUDFLARED: &str = "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo 'cloudflared version 2026.1.1 (built 2026-01-10-1200 UTC)'; exit 0; fi\nsleep 300\n";

fn arch() -> &'static str {
    install::release_arch().expect("a machine with a release")
}

fn env_for(base: &str, key: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
    env.insert(key.to_string(), format!("{base}/dl"));
    env
}

fn leftovers(bin: &Path) -> Vec<String> {
    std::fs::read_dir(bin)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".install-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cloudflared_is_downloaded_checked_and_placed_in_home_bin() {
    let asset = format!("/dl/cloudflared-linux-{}", arch());
    let server = common::serve(vec![(&asset, 200, FAKE_CLOUDFLARED.as_bytes().to_vec())]);
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("home/bin");
    let env = env_for(&server.base, "PINOKIO_CLOUDFLARED_URL");
    assert!(install::find(Tool::Cloudflared, &bin, &env).is_none());
    let done = install::ensure(Tool::Cloudflared, &bin, &env, &|_, _| {}).unwrap();
    assert_eq!(done.path, bin.join("cloudflared"));
    assert_eq!(
        done.version,
        "cloudflared version 2026.1.1 (built 2026-01-10-1200 UTC)"
    );
    assert_eq!(
        done.url.as_deref(),
        Some(format!("{}{asset}", server.base).as_str())
    );
    // executable, and found from now on
    let out = Command::new(&done.path).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        install::find(Tool::Cloudflared, &bin, &env),
        Some(done.path.clone())
    );
    assert!(leftovers(&bin).is_empty(), "{:?}", leftovers(&bin));
    assert!(server.seen.lock().unwrap().iter().all(|s| s.path == asset));

    // found: no second download
    let before = server.seen.lock().unwrap().len();
    let again = install::ensure(Tool::Cloudflared, &bin, &env, &|_, _| {}).unwrap();
    assert_eq!(again.url, None);
    assert_eq!(server.seen.lock().unwrap().len(), before);
}

#[test]
fn a_program_that_does_not_run_is_not_installed() {
    let asset = format!("/dl/cloudflared-linux-{}", arch());
    let server = common::serve(vec![(
        &asset,
        200,
        b"#!/bin/sh\necho broken >&2\nexit 3\n".to_vec(),
    )]);
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    let env = env_for(&server.base, "PINOKIO_CLOUDFLARED_URL");
    let err = install::install(Tool::Cloudflared, &bin, &env, &|_, _| {}).unwrap_err();
    assert!(matches!(err, InstallError::DoesNotRun { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("does not run") && msg.contains("broken"),
        "{msg}"
    );
    assert!(!bin.join("cloudflared").exists());
    assert!(leftovers(&bin).is_empty());
}

#[test]
fn a_failed_download_says_where_from_and_leaves_nothing() {
    let server = common::serve(vec![]);
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    let env = env_for(&server.base, "PINOKIO_CLOUDFLARED_URL");
    let err = install::install(Tool::Cloudflared, &bin, &env, &|_, _| {}).unwrap_err();
    assert!(matches!(err, InstallError::Download { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("cloudflared-linux-") && msg.contains("404"),
        "{msg}"
    );
    assert!(!bin.join("cloudflared").exists());
    assert!(leftovers(&bin).is_empty());
}

#[test]
fn ngrok_is_unpacked_from_its_archive() {
    let t = tempfile::tempdir().unwrap();
    // the release archive holds one file, `ngrok`
    let stage = t.path().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let prog = stage.join("ngrok");
    std::fs::write(
        &prog,
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo 'ngrok version 3.20.0'; exit 0; fi\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tgz = t.path().join("ngrok.tgz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&stage)
        .arg("ngrok")
        .status()
        .unwrap();
    assert!(st.success());
    let asset = format!("/dl/ngrok-v3-stable-linux-{}.tgz", arch());
    let server = common::serve(vec![(&asset, 200, std::fs::read(&tgz).unwrap())]);
    let bin = t.path().join("bin");
    let env = env_for(&server.base, "PINOKIO_NGROK_URL");
    let done = install::install(Tool::Ngrok, &bin, &env, &|_, _| {}).unwrap();
    assert_eq!(done.path, bin.join("ngrok"));
    assert_eq!(done.version, "ngrok version 3.20.0");
    assert!(leftovers(&bin).is_empty());
}
