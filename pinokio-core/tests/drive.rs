//! The virtual drive on real folders in temporary homes: `fs.link` with
//! `drive`, `peers` and `venv` through the engine, idempotence, rollback at
//! every possible failure point (and after a crash), circular links, the
//! link registry (vanished targets, unlink, prune), dedupe and its hash
//! cache, usage stats, uninstall keeping drive data, and the shared cache
//! variables of shells.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pinokio_core::drive::dedupe::DEFAULT_MIN_SIZE;
use pinokio_core::drive::link::FolderOutcome;
use pinokio_core::drive::registry::{self, DrivesFile};
use pinokio_core::drive::{
    self as drive, DedupeOptions, Drive, DriveError, FolderLinkRequest, LinkKind, LinkStatus,
    MoveOptions, Op,
};
use pinokio_core::events::{CollectSink, Event, EventKind, RunStatus};
use pinokio_core::{Engine, Facts, PinokioHome, RunOutcome, RunRequest};
use serde_json::{json, Value};

const URL_A: &str = "https://github.com/example/comfy.git";
const URL_B: &str = "https://github.com/example/forge.git";

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    sink: Arc<CollectSink>,
}

impl Harness {
    fn new() -> Self {
        Self::with_env(BTreeMap::new())
    }

    fn with_env(extra: BTreeMap<String, String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(CollectSink::new());
        let mut env: BTreeMap<String, String> = ["PATH", "HOME", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        env.extend(extra);
        let engine = Engine::builder(PinokioHome::new(dir.path().join("home")))
            .facts(Facts::cpu_only())
            .sink(sink.clone())
            .env(env)
            .build()
            .unwrap();
        Harness { dir, engine, sink }
    }

    fn home(&self) -> PathBuf {
        self.engine.home().root().to_path_buf()
    }

    fn drive(&self) -> Drive {
        Drive::new(self.home().join("drive"))
    }

    /// `HOME/api/<name>`, a git repository with `url` as origin (if any).
    fn app(&self, name: &str, url: Option<&str>) -> PathBuf {
        let dir = self.home().join("api").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(url) = url {
            write(
                &dir.join(".git/config"),
                &format!("[core]\n\tbare = false\n[remote \"origin\"]\n\turl = {url}\n"),
            );
        }
        dir
    }

    /// Write `{"run": steps}` to `HOME/api/<app>/x.json` and run it.
    fn run(&self, app: &str, steps: Value) -> (RunOutcome, Vec<Event>) {
        let dir = self.home().join("api").join(app);
        write(
            &dir.join("x.json"),
            &serde_json::to_string_pretty(&json!({ "run": steps })).unwrap(),
        );
        self.sink.take();
        let out = self
            .engine
            .run(RunRequest::new(format!("~/api/{app}/x.json")));
        (out, self.sink.take())
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

fn output(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Every path under `root` (symlinks not followed) with what it is, minus
/// the drive's lock and journal folder.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.ends_with("drive/.lock") || rel.ends_with("drive/.journal") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link:{}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                format!(
                    "file:{}",
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                )
            };
            out.insert(rel, what);
        }
    }
    out
}

fn journals(d: &Drive) -> usize {
    std::fs::read_dir(d.root().join(".journal"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn peer_drives(d: &Drive) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.peers_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------- drive

#[test]
fn drive_links_move_files_and_record_both_registries() {
    let h = Harness::new();
    let app = h.app("comfy", Some(URL_A));
    write(
        &app.join("app/models/checkpoints/sd.safetensors"),
        "weights",
    );
    write(&app.join("app/models/checkpoints/sub/x.bin"), "x");
    let (out, ev) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "drive": {
            "checkpoints": "app/models/checkpoints",
            "loras": ["app/models/loras", "app/extra/loras"]
        }}}]),
    );
    assert_eq!(out.status, RunStatus::Finished, "{:?}", out.error);
    let d = h.drive();
    let names = peer_drives(&d);
    assert_eq!(
        names.len(),
        1,
        "one drive for all paths of the app: {names:?}"
    );
    let name = &names[0];
    assert!(name.starts_with('d') && name[1..].chars().all(|c| c.is_ascii_digit()));
    let ck = d.peers_dir().join(name).join("checkpoints");
    let ckl = app.join("app/models/checkpoints");
    assert!(is_link(&ckl));
    // relative links, like symlink-dir
    assert!(std::fs::read_link(&ckl).unwrap().is_relative());
    assert_eq!(
        std::fs::canonicalize(&ckl).unwrap(),
        std::fs::canonicalize(&ck).unwrap()
    );
    assert_eq!(read(&ck.join("sd.safetensors")), "weights");
    assert_eq!(read(&ckl.join("sub/x.bin")), "x");
    // missing app folders are created as links too
    for l in ["app/models/loras", "app/extra/loras"] {
        assert!(is_link(&app.join(l)), "{l}");
    }
    // drives.json in upstream's format
    let v: Value = serde_json::from_str(&read(&d.drives_json())).unwrap();
    assert_eq!(
        v,
        json!({ URL_A: {
            "checkpoints": ck.display().to_string(),
            "loras": d.peers_dir().join(name).join("loras").display().to_string(),
        }})
    );
    // links.json: three drive links
    let links = registry::load_links(&d).unwrap();
    assert_eq!(links.len(), 3);
    assert!(links.iter().all(|l| l.kind == LinkKind::Drive
        && l.app.as_deref() == Some(app.as_path())
        && registry::check(l) == LinkStatus::Ok));
    assert!(output(&ev).contains("moved 2 entries"), "{}", output(&ev));
    assert_eq!(journals(&d), 0);
    assert!(!d.root().join(".trash").exists());
}

#[test]
fn drive_linking_is_idempotent() {
    let h = Harness::new();
    let app = h.app("comfy", Some(URL_A));
    write(&app.join("app/models/checkpoints/a.bin"), "a");
    let steps = json!([{ "method": "fs.share", "params": { "drive": { "checkpoints": "app/models/checkpoints" } } }]);
    let (out, _) = h.run("comfy", steps.clone());
    assert!(out.ok());
    let before = snapshot(&h.home());
    let (out, ev) = h.run("comfy", steps);
    assert!(out.ok());
    assert!(output(&ev).contains("is already linked"), "{}", output(&ev));
    // only links.json's timestamps move
    let mut after = snapshot(&h.home());
    after.remove("drive/links.json");
    let mut before = before;
    before.remove("drive/links.json");
    assert_eq!(before, after);
    assert_eq!(peer_drives(&h.drive()).len(), 1);
    assert_eq!(registry::load_links(&h.drive()).unwrap().len(), 1);
}

#[test]
fn peers_reuse_a_drive_and_merge_keeping_the_drive_copy() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    write(&a.join("models/checkpoints/shared.bin"), "from comfy");
    write(&a.join("models/checkpoints/sub/one.bin"), "1");
    let (out, _) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "drive": { "checkpoints": "models/checkpoints" } } }]),
    );
    assert!(out.ok());
    let b = h.app("forge", Some(URL_B));
    write(&b.join("m/ckpt/shared.bin"), "from forge");
    write(&b.join("m/ckpt/sub/two.bin"), "2");
    write(&b.join("m/ckpt/own.bin"), "forge only");
    write(&b.join("m/vae/v.bin"), "vae");
    let (out, ev) = h.run(
        "forge",
        json!([{ "method": "fs.link", "params": {
            "drive": { "checkpoints": "m/ckpt", "vae": "m/vae" },
            "peers": [URL_A]
        }}]),
    );
    assert!(out.ok(), "{:?}", out.error);
    let d = h.drive();
    let names = peer_drives(&d);
    assert_eq!(names.len(), 1, "the peer's drive is reused: {names:?}");
    let ck = d.peers_dir().join(&names[0]).join("checkpoints");
    assert_eq!(
        std::fs::canonicalize(b.join("m/ckpt")).unwrap(),
        std::fs::canonicalize(&ck).unwrap()
    );
    // a clash keeps the drive's copy; everything else merges
    assert_eq!(read(&ck.join("shared.bin")), "from comfy");
    assert_eq!(read(&ck.join("own.bin")), "forge only");
    assert_eq!(read(&ck.join("sub/one.bin")), "1");
    assert_eq!(read(&ck.join("sub/two.bin")), "2");
    assert_eq!(read(&a.join("models/checkpoints/own.bin")), "forge only");
    // a new path of a peer lands in the peer's drive too
    assert_eq!(
        std::fs::canonicalize(b.join("m/vae")).unwrap(),
        std::fs::canonicalize(d.peers_dir().join(&names[0]).join("vae")).unwrap()
    );
    assert!(output(&ev).contains("1 already in the drive, kept the drive's copy"));
    // recorded for the app URL and the peer URL
    let f = DrivesFile::load(&d).unwrap();
    assert_eq!(f.folder(URL_B, "checkpoints"), Some(ck.to_str().unwrap()));
    assert!(f.folder(URL_A, "vae").is_some());
    // nothing of the app's folder is left beside the link
    let leftovers: Vec<_> = std::fs::read_dir(b.join("m"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn purge_false_keeps_the_apps_losing_copies() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    write(&a.join("ck/x.bin"), "drive");
    assert!(h
        .run(
            "comfy",
            json!([{ "method": "fs.link", "params": { "drive": { "ck": "ck" } } }])
        )
        .0
        .ok());
    let b = h.app("forge", Some(URL_B));
    write(&b.join("ck/x.bin"), "app");
    let (out, _) = h.run(
        "forge",
        json!([{ "method": "fs.link", "params": {
            "drive": { "ck": "ck" }, "peers": [URL_A],
            "options": { "merge": true, "purge": false }
        }}]),
    );
    assert!(out.ok());
    let kept: Vec<PathBuf> = std::fs::read_dir(&b)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("ck.drive-conflicts-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(read(&kept[0].join("x.bin")), "app");
    assert_eq!(read(&b.join("ck/x.bin")), "drive");
}

#[test]
fn app_without_remote_keeps_one_drive_and_skips_dot_paths() {
    let h = Harness::new();
    let app = h.app("local", None);
    let steps = json!([{ "method": "fs.link", "params": { "drive": {
        "models": ["models", "./dotted", "/abs/path"]
    }}}]);
    let (out, ev) = h.run("local", steps.clone());
    assert!(out.ok());
    assert!(h.run("local", steps).0.ok());
    // upstream makes a new drive on every call here; we key by the folder
    assert_eq!(peer_drives(&h.drive()).len(), 1);
    let f = DrivesFile::load(&h.drive()).unwrap();
    assert!(f
        .folder(&format!("file://{}", app.display()), "models")
        .is_some());
    let w = warnings(&ev);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("./dotted"));
    assert!(!h.home().join("api/local/dotted").exists());
}

#[test]
fn invalid_drive_paths_fail_before_anything_changes() {
    let h = Harness::new();
    let app = h.app("comfy", Some(URL_A));
    write(&app.join("a/f"), "x");
    for bad in ["../escape", ".hidden", "/abs"] {
        let (out, _) = h.run(
            "comfy",
            json!([{ "method": "fs.link", "params": { "drive": { "ok": "a", (bad): "b" } } }]),
        );
        assert_eq!(out.status, RunStatus::Error, "{bad}");
        let msg = out.error.unwrap().to_string();
        assert!(msg.contains("invalid drive path"), "{msg}");
        assert!(!is_link(&app.join("a")));
    }
    let (out, _) = h.run("comfy", json!([{ "method": "fs.link", "params": {} }]));
    assert!(out
        .error
        .unwrap()
        .to_string()
        .contains("`drive` or `venv` is required"));
}

#[test]
fn pinokio_drive_from_the_app_environment_moves_the_drive() {
    let h = Harness::new();
    let other = h.dir.path().join("bigdisk/drive");
    let app = h.app("comfy", Some(URL_A));
    write(
        &app.join("ENVIRONMENT"),
        &format!("PINOKIO_DRIVE={}\n", other.display()),
    );
    write(&app.join("models/m.bin"), "m");
    let (out, _) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "drive": { "models": "models" } } }]),
    );
    assert!(out.ok());
    let d = Drive::new(&other);
    assert_eq!(peer_drives(&d).len(), 1);
    assert!(d.drives_json().is_file());
    assert!(!h.drive().drives_json().exists());
    assert_eq!(read(&app.join("models/m.bin")), "m");
}

// ------------------------------------------------------------- rollback

/// A home with a registered peer drive holding a clashing file and a
/// subfolder, an app with files to merge, and a request with two entries.
fn rollback_scene(root: &Path) -> (PinokioHome, Drive, FolderLinkRequest) {
    let home = PinokioHome::new(root.join("home"));
    home.ensure().unwrap();
    let d = Drive::new(home.root().join("drive"));
    let folder = d.peers_dir().join("d1/checkpoints");
    write(&folder.join("clash.bin"), "drive copy");
    write(&folder.join("sub/old.bin"), "old");
    let mut f = DrivesFile::default();
    f.set(URL_B, "checkpoints", folder.to_str().unwrap());
    f.save(&d).unwrap();
    let app = home.api().join("comfy");
    write(
        &app.join(".git/config"),
        &format!("[remote \"origin\"]\n\turl = {URL_A}\n"),
    );
    write(&app.join("ck/clash.bin"), "app copy");
    write(&app.join("ck/sub/new.bin"), "new");
    write(&app.join("ck/sub/deeper/z.bin"), "z");
    write(&app.join("ck/top.bin"), "top");
    let req = FolderLinkRequest {
        app: app.clone(),
        base: app.clone(),
        entries: vec![
            ("checkpoints".into(), vec!["ck".into()]),
            ("vae".into(), vec!["vae/a".into(), "vae/b".into()]),
        ],
        peers: vec![URL_B.into()],
        options: MoveOptions::default(),
    };
    (home, d, req)
}

#[test]
fn a_failure_at_any_step_puts_everything_back() {
    // count the steps of a successful run
    let t = tempfile::tempdir().unwrap();
    let (_, d, req) = rollback_scene(t.path());
    let mut ops: Vec<Op> = Vec::new();
    d.link_folders(&req, &mut |op: &Op| {
        ops.push(op.clone());
        Ok(())
    })
    .unwrap();
    let kinds: Vec<&str> = ops
        .iter()
        .map(|o| match o {
            Op::Rename { .. } => "rename",
            Op::Mkdir { .. } => "mkdir",
            Op::Symlink { .. } => "symlink",
            Op::Discard { .. } => "discard",
            Op::Copy { .. } => "copy",
            Op::Commit => "commit",
        })
        .collect();
    for k in ["rename", "mkdir", "symlink", "discard"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(ops.len() >= 10, "{kinds:?}");
    for fail_at in 0..ops.len() {
        let t = tempfile::tempdir().unwrap();
        let (home, d, req) = rollback_scene(t.path());
        let before = snapshot(home.root());
        let mut n = 0;
        let err = d
            .link_folders(&req, &mut |_: &Op| {
                n += 1;
                if n > fail_at {
                    Err("forced failure".into())
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        match &err {
            DriveError::RolledBack {
                cause,
                undo_failures,
            } => {
                assert!(undo_failures.is_empty(), "{undo_failures:?}");
                assert!(matches!(**cause, DriveError::Aborted { .. }), "{cause}");
            }
            other => panic!("step {fail_at}: {other}"),
        }
        assert_eq!(
            before,
            snapshot(home.root()),
            "after a failure at step {fail_at}"
        );
        assert_eq!(journals(&d), 0);
    }
}

#[test]
fn a_crash_mid_way_is_rolled_back_by_the_next_lock() {
    let t = tempfile::tempdir().unwrap();
    let (home, d, req) = rollback_scene(t.path());
    let before = snapshot(home.root());
    let mut n = 0;
    // a panic in the hook stands for a crash: no rollback runs
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.link_folders(&req, &mut |_: &Op| {
            n += 1;
            if n == 7 {
                panic!("crash");
            }
            Ok(())
        })
    }));
    assert!(r.is_err());
    assert_ne!(before, snapshot(home.root()));
    assert_eq!(journals(&d), 1);
    let lock = d.lock().unwrap();
    assert_eq!(lock.recovered.len(), 1);
    drop(lock);
    assert_eq!(before, snapshot(home.root()));
    assert_eq!(journals(&d), 0);
    // and the operation then succeeds
    let r = d.link_folders(&req, &mut |_: &Op| Ok(())).unwrap();
    assert!(matches!(
        r.entries[0].folders[0],
        FolderOutcome::Linked { .. }
    ));
}

#[test]
fn stopping_the_script_undoes_the_link() {
    let t = tempfile::tempdir().unwrap();
    let (home, d, req) = rollback_scene(t.path());
    let before = snapshot(home.root());
    let err = d
        .link_folders(&req, &mut |op: &Op| match op {
            Op::Symlink { .. } => Err("the script was stopped".into()),
            _ => Ok(()),
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("everything it changed was put back"),
        "{err}"
    );
    assert_eq!(before, snapshot(home.root()));
}

// ------------------------------------------------------------- circular

#[test]
fn circular_links_are_detected_and_nothing_changes() {
    // the drive inside the folder being linked
    let t = tempfile::tempdir().unwrap();
    let app = t.path().join("app");
    write(&app.join("models/m.bin"), "m");
    let d = Drive::new(app.join("models/.drive"));
    let req = FolderLinkRequest {
        app: app.clone(),
        base: app.clone(),
        entries: vec![("models".into(), vec!["models".into()])],
        peers: vec![],
        options: MoveOptions::default(),
    };
    let before = snapshot(&app);
    let err = d.link_folders(&req, &mut |_: &Op| Ok(())).unwrap_err();
    assert!(matches!(err.cause(), DriveError::Circular { .. }), "{err}");
    let mut after = snapshot(&app);
    after.retain(|k, _| !k.starts_with("models/.drive"));
    assert_eq!(before, after);

    // a recorded drive folder that is a symlink loop, through the engine
    let h = Harness::new();
    let app = h.app("comfy", Some(URL_A));
    write(&app.join("ck/x.bin"), "x");
    let d = h.drive();
    let looped = d.peers_dir().join("d5/ck");
    std::fs::create_dir_all(looped.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let mut f = DrivesFile::default();
    f.set(URL_A, "ck", looped.to_str().unwrap());
    f.save(&d).unwrap();
    let (out, ev) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "drive": { "ck": "ck" } } }]),
    );
    assert!(out.ok(), "upstream only logs link errors: {:?}", out.error);
    let w = warnings(&ev);
    assert!(w.iter().any(|m| m.contains("circular link")), "{w:?}");
    assert!(!is_link(&app.join("ck")));
    assert_eq!(read(&app.join("ck/x.bin")), "x");
}

// ------------------------------------------------------------- registry

#[test]
fn vanished_targets_are_reported_and_links_can_be_undone_and_pruned() {
    let h = Harness::new();
    let app = h.app("comfy", Some(URL_A));
    write(&app.join("a/x.bin"), "x");
    write(&app.join("b/y.bin"), "y");
    write(&app.join("c/z.bin"), "z");
    assert!(h
        .run(
            "comfy",
            json!([{ "method": "fs.link", "params": { "drive": { "a": "a", "b": "b", "c": "c" } } }])
        )
        .0
        .ok());
    let d = h.drive();
    let status = |p: &str| {
        registry::check_all(&d)
            .unwrap()
            .into_iter()
            .find(|(r, _)| r.link == app.join(p))
            .map(|(_, s)| s)
            .unwrap()
    };
    assert_eq!(status("a"), LinkStatus::Ok);
    // the target vanishes
    let target_b = std::fs::canonicalize(app.join("b")).unwrap();
    std::fs::remove_dir_all(&target_b).unwrap();
    assert_eq!(status("b"), LinkStatus::TargetMissing);
    assert!(status("b").is_broken());
    // unlink: a real folder with a copy, the drive keeps its data
    let rec = registry::unlink(&d, &app.join("a")).unwrap();
    assert!(!is_link(&app.join("a")));
    assert_eq!(read(&app.join("a/x.bin")), "x");
    assert_eq!(read(&rec.target.join("x.bin")), "x");
    assert!(matches!(
        registry::unlink(&d, &app.join("a")),
        Err(DriveError::NotALink { .. })
    ));
    assert!(matches!(
        registry::unlink(&d, &app.join("b")),
        Err(DriveError::CannotUnlink { .. })
    ));
    // the link itself goes: gone, then pruned
    std::fs::remove_file(app.join("c")).unwrap();
    assert_eq!(status("c"), LinkStatus::LinkMissing);
    assert!(!status("c").is_broken());
    let pruned = registry::prune(&d).unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(registry::load_links(&d).unwrap().len(), 1);
    // replaced by a real folder
    std::fs::remove_file(app.join("b")).unwrap();
    std::fs::create_dir(app.join("b")).unwrap();
    assert!(matches!(status("b"), LinkStatus::Replaced { .. }));
}

// ----------------------------------------------------------------- venv

/// A fake installed distribution in `site`.
fn dist(site: &Path, name: &str, version: &str, files: &[(&str, &str)], direct: Option<&str>) {
    let info = site.join(format!("{name}-{version}.dist-info"));
    write(
        &info.join("METADATA"),
        &format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n"),
    );
    let mut record = String::new();
    for (rel, text) in files {
        write(&site.join(rel), text);
        record.push_str(&format!("{rel},sha256=x,1\n"));
    }
    record.push_str(&format!("{name}-{version}.dist-info/METADATA,,\n"));
    record.push_str(&format!("{name}-{version}.dist-info/RECORD,,\n"));
    if let Some(d) = direct {
        write(&info.join("direct_url.json"), d);
        record.push_str(&format!("{name}-{version}.dist-info/direct_url.json,,\n"));
    }
    write(&info.join("RECORD"), &record);
}

fn venv(root: &Path, cfg: &str, py: &str, marker: &str) -> PathBuf {
    write(&root.join("pyvenv.cfg"), cfg);
    let site = root.join(format!("lib/python{py}/site-packages"));
    dist(
        &site,
        "foo",
        "1.0",
        &[
            ("foo/__init__.py", marker),
            ("foo/core.py", "core"),
            ("../../../bin/foo", "#!/venv/bin/python\n"),
        ],
        None,
    );
    dist(
        &site,
        "nsa",
        "2.0",
        &[("google/__init__.py", ""), ("google/a/x.py", "a")],
        None,
    );
    dist(
        &site,
        "nsb",
        "3.0",
        &[("google/__init__.py", ""), ("google/b/y.py", "b")],
        None,
    );
    dist(
        &site,
        "gitpkg",
        "0.1",
        &[("gitpkg.py", "g")],
        Some(
            r#"{"url":"https://github.com/x/gitpkg","vcs_info":{"vcs":"git","commit_id":"abcdef12"}}"#,
        ),
    );
    dist(&site, "noversion", "", &[("nov.py", "n")], None);
    site
}

#[test]
fn venv_packages_move_to_versioned_drives_and_link_back() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    let site = venv(
        &a.join("env"),
        "home = /usr/bin\nversion = 3.10.12\n",
        "3.10",
        "from comfy",
    );
    let (out, ev) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "venv": "env" } }]),
    );
    assert!(out.ok(), "{:?}", out.error);
    let pip = h.drive().pip_dir();
    let foo = pip.join("foo/1.0/lib/python3.10/site-packages/foo");
    assert!(is_link(&site.join("foo")));
    assert_eq!(
        std::fs::canonicalize(site.join("foo")).unwrap(),
        std::fs::canonicalize(&foo).unwrap()
    );
    assert_eq!(read(&site.join("foo/__init__.py")), "from comfy");
    assert!(is_link(&site.join("foo-1.0.dist-info")));
    // console scripts are copied, not linked
    assert_eq!(read(&pip.join("foo/1.0/bin/foo")), "#!/venv/bin/python\n");
    // shared namespace folders split one level down
    assert!(!is_link(&site.join("google")));
    assert!(is_link(&site.join("google/a")));
    assert!(is_link(&site.join("google/b")));
    assert!(pip
        .join("nsa/2.0/lib/python3.10/site-packages/google/a/x.py")
        .is_file());
    // a git install gets its commit in the namespace
    assert!(pip
        .join("gitpkg/0.1-git-abcd/lib/python3.10/site-packages/gitpkg.py")
        .is_file());
    // no version: left in the venv
    assert!(!is_link(&site.join("nov.py")));
    assert!(
        output(&ev).contains("left noversion in the venv: no version"),
        "{}",
        output(&ev)
    );
    let venv_links = registry::load_links(&h.drive())
        .unwrap()
        .into_iter()
        .filter(|l| l.kind == LinkKind::Venv)
        .count();
    assert!(venv_links >= 7, "{venv_links}");

    // idempotent
    let before = snapshot(&h.home());
    let (out, ev) = h.run(
        "comfy",
        json!([{ "method": "fs.link", "params": { "venv": "env" } }]),
    );
    assert!(out.ok());
    assert!(output(&ev).contains("linked 0 entries"), "{}", output(&ev));
    let mut after = snapshot(&h.home());
    let mut before = before;
    before.remove("drive/links.json");
    after.remove("drive/links.json");
    assert_eq!(before, after);

    // a second app with the same package: its copy replaces the drive's,
    // and the first app's link keeps working
    let b = h.app("forge", Some(URL_B));
    let site_b = venv(&b.join("venv"), "version = 3.10.4\n", "3.10", "from forge");
    let (out, _) = h.run(
        "forge",
        json!([{ "method": "fs.link", "params": { "venv": "venv" } }]),
    );
    assert!(out.ok());
    assert_eq!(read(&site.join("foo/__init__.py")), "from forge");
    assert_eq!(read(&site_b.join("foo/__init__.py")), "from forge");
    assert_eq!(journals(&h.drive()), 0);
    assert!(!h.drive().root().join(".trash").exists());
}

#[test]
fn uv_venvs_of_other_pythons_and_non_venvs() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    let site = venv(
        &a.join(".venv"),
        "home = /usr/bin\nimplementation = CPython\nuv = 0.5.0\nversion_info = 3.12.3\n",
        "3.12",
        "x",
    );
    std::fs::create_dir_all(a.join("notavenv")).unwrap();
    let (out, ev) = h.run(
        "comfy",
        json!([
            { "method": "fs.link", "params": { "venv": ".venv" } },
            { "method": "fs.link", "params": { "venv": "notavenv" } }
        ]),
    );
    assert!(out.ok(), "{:?}", out.error);
    assert!(is_link(&site.join("foo")));
    assert!(h
        .drive()
        .pip_dir()
        .join("foo/1.0/lib/python3.12/site-packages/foo/core.py")
        .is_file());
    assert!(
        output(&ev).contains("is not a Python venv"),
        "{}",
        output(&ev)
    );
}

#[test]
fn venv_linking_rolls_back_at_any_step() {
    let scene = |root: &Path| {
        let d = Drive::new(root.join("drive"));
        // a drive copy that this venv's copy replaces
        write(
            &d.pip_dir()
                .join("foo/1.0/lib/python3.10/site-packages/foo/__init__.py"),
            "old drive copy",
        );
        venv(
            &root.join("app/env"),
            "version = 3.10.1\n",
            "3.10",
            "venv copy",
        );
        d
    };
    let t = tempfile::tempdir().unwrap();
    let d = scene(t.path());
    let mut count = 0;
    d.link_venv(&t.path().join("app/env"), None, &mut |_: &Op| {
        count += 1;
        Ok(())
    })
    .unwrap();
    assert!(count > 10);
    for fail_at in (0..count).step_by(3) {
        let t = tempfile::tempdir().unwrap();
        let d = scene(t.path());
        let before = snapshot(t.path());
        let mut n = 0;
        let err = d
            .link_venv(&t.path().join("app/env"), None, &mut |_: &Op| {
                n += 1;
                if n > fail_at {
                    Err("forced".into())
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, DriveError::RolledBack { .. }), "{err}");
        assert_eq!(before, snapshot(t.path()), "failure at step {fail_at}");
    }
}

// ---------------------------------------------------------------- dedupe

fn big(byte: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| byte.wrapping_add((i % 251) as u8))
        .collect()
}

#[test]
fn dedupe_links_identical_files_keeps_the_drive_copy_and_caches_hashes() {
    let t = tempfile::tempdir().unwrap();
    let home = PinokioHome::new(t.path().join("home"));
    home.ensure().unwrap();
    let d = Drive::for_home(&home);
    let size = 2 << 20;
    let same = big(7, size);
    let other = big(9, size);
    let files = [
        home.api().join("a/models/m.bin"),
        home.api().join("b/x/m-copy.bin"),
        d.root().join("drives/peers/d1/ck/m.bin"),
    ];
    for f in &files {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, &same).unwrap();
    }
    // same size, other content; identical but small; inside .git
    std::fs::write(home.api().join("a/models/other.bin"), &other).unwrap();
    write(&home.api().join("a/small.txt"), "tiny");
    write(&home.api().join("b/small.txt"), "tiny");
    std::fs::create_dir_all(home.api().join("b/.git")).unwrap();
    std::fs::write(home.api().join("b/.git/pack.bin"), &same).unwrap();

    let before = snapshot(home.root());
    let dry = drive::dedupe(
        &home,
        &d,
        &DedupeOptions {
            dry_run: true,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(dry.groups.len(), 1);
    assert_eq!(dry.saved_bytes, 2 * size as u64);
    assert_eq!(dry.groups[0].kept, files[2], "the drive copy is kept");
    assert_eq!(dry.hashed_files, 4);
    let mut after_dry = snapshot(home.root());
    after_dry.remove("cache/drive-hashes.sqlite");
    assert_eq!(before, after_dry, "a dry run changes nothing");

    let kept_ino = std::fs::metadata(&files[2]).unwrap().ino();
    let r = drive::dedupe(&home, &d, &DedupeOptions::default(), &|_| {}).unwrap();
    assert_eq!(r.linked_files, 2);
    assert_eq!(r.saved_bytes, 2 * size as u64);
    assert_eq!(r.cached_files, 4, "hashes come from the dry run's cache");
    assert_eq!(r.hashed_files, 0);
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().ino(),
            kept_ino,
            "{}",
            f.display()
        );
        assert_eq!(std::fs::read(f).unwrap(), same);
    }
    assert_ne!(
        std::fs::metadata(home.api().join("b/.git/pack.bin"))
            .unwrap()
            .ino(),
        kept_ino
    );
    assert_ne!(
        std::fs::metadata(home.api().join("a/small.txt"))
            .unwrap()
            .ino(),
        std::fs::metadata(home.api().join("b/small.txt"))
            .unwrap()
            .ino()
    );
    // no temporary names left
    let names: Vec<String> = snapshot(home.root()).into_keys().collect();
    assert!(
        !names.iter().any(|n| n.contains("pinokio-dedupe")),
        "{names:?}"
    );

    // a second run finds nothing new and hashes nothing
    let again = drive::dedupe(&home, &d, &DedupeOptions::default(), &|_| {}).unwrap();
    assert_eq!(again.groups.len(), 0);
    assert_eq!(again.hashed_files, 0);
    assert_eq!(again.saved_bytes, 0);

    // smaller min size: the small pair is linked too
    let small = drive::dedupe(
        &home,
        &d,
        &DedupeOptions {
            min_size: 1,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(small.linked_files, 1);
    assert_eq!(small.saved_bytes, 4);
    assert_eq!(DEFAULT_MIN_SIZE, 1 << 20);
}

#[test]
fn dedupe_skips_changed_permissions_and_hashes_like_sha256sum() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let home = PinokioHome::new(t.path().join("home"));
    home.ensure().unwrap();
    let d = Drive::for_home(&home);
    let data = big(1, 1 << 20);
    let a = home.api().join("a/tool");
    let b = home.api().join("b/tool");
    for f in [&a, &b] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, &data).unwrap();
    }
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = drive::dedupe(&home, &d, &DedupeOptions::default(), &|_| {}).unwrap();
    assert_eq!(r.linked_files, 0);
    assert_eq!(r.groups[0].skipped.len(), 1);
    assert!(r.groups[0].skipped[0].1.contains("permissions"));
    // the hash is SHA-256 of the contents (sha256sum, when installed, agrees)
    let h = drive::hash_file(&a).unwrap();
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.groups[0].sha256, hex);
    if let Ok(out) = std::process::Command::new("sha256sum").arg(&a).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().next(), Some(hex.as_str()));
    }
}

// ----------------------------------------------------------------- stats

#[test]
fn stats_count_hard_links_once_and_symlinks_as_linked() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    let b = h.app("forge", Some(URL_B));
    write(&a.join("ck/m.bin"), &"m".repeat(1000));
    write(&a.join("own.bin"), &"o".repeat(100));
    std::fs::hard_link(a.join("own.bin"), b.join("own-link.bin")).unwrap();
    assert!(h
        .run(
            "comfy",
            json!([{ "method": "fs.link", "params": { "drive": { "ck": "ck" } } }])
        )
        .0
        .ok());
    let home = h.engine.home();
    let s = drive::stats(home, &h.drive()).unwrap();
    let row = |n: &str| s.apps.iter().find(|r| r.name == n).unwrap().clone();
    let ca = row("comfy");
    let fb = row("forge");
    // the linked folder counts for the drive, shown as linked for the app
    assert_eq!(ca.linked_bytes, 1000);
    assert!(ca.bytes < 1000, "{ca:?}");
    assert_eq!(ca.shared_bytes, 100);
    assert_eq!(fb.shared_bytes, 100);
    let drive_row = s
        .drives
        .iter()
        .find(|r| r.name.starts_with("peers/"))
        .unwrap();
    assert_eq!(drive_row.bytes, 1000);
    assert_eq!(drive_row.used_by, ["comfy"]);
    // the hard-linked file once in the total
    assert_eq!(s.total_bytes, s.rows_bytes - 100);
}

// -------------------------------------------------------------- uninstall

#[test]
fn uninstall_never_touches_shared_drive_data() {
    let h = Harness::new();
    let a = h.app("comfy", Some(URL_A));
    write(&a.join("pinokio.js"), "module.exports = { menu: [] }");
    write(&a.join("ck/merged.bin"), "merged from the app");
    let site = venv(&a.join("env"), "version = 3.10.12\n", "3.10", "pkg");
    assert!(h
        .run(
            "comfy",
            json!([
                { "method": "fs.link", "params": { "drive": { "ck": "ck" } } },
                { "method": "fs.link", "params": { "venv": "env" } }
            ])
        )
        .0
        .ok());
    let d = h.drive();
    // a file hard-linked between the app and the drive by dedupe
    let data = big(3, 1 << 20);
    std::fs::write(a.join("copy.bin"), &data).unwrap();
    let in_drive = d.root().join("drives/peers/extra/copy.bin");
    std::fs::create_dir_all(in_drive.parent().unwrap()).unwrap();
    std::fs::write(&in_drive, &data).unwrap();
    let r = drive::dedupe(h.engine.home(), &d, &DedupeOptions::default(), &|_| {}).unwrap();
    assert_eq!(r.linked_files, 1);
    assert_eq!(std::fs::metadata(&in_drive).unwrap().nlink(), 2);
    let foo = std::fs::canonicalize(site.join("foo")).unwrap();
    let merged = std::fs::canonicalize(a.join("ck"))
        .unwrap()
        .join("merged.bin");
    let drive_before = snapshot(d.root());

    pinokio_core::apps::uninstall(&h.engine, "comfy").unwrap();
    assert!(!a.exists());
    let mut drive_after = snapshot(d.root());
    drive_after.remove("links.json");
    let mut drive_before = drive_before;
    drive_before.remove("links.json");
    assert_eq!(drive_before, drive_after, "uninstall changed the drive");
    assert_eq!(read(&merged), "merged from the app");
    assert_eq!(read(&foo.join("__init__.py")), "pkg");
    assert_eq!(std::fs::read(&in_drive).unwrap(), data);
    assert_eq!(std::fs::metadata(&in_drive).unwrap().nlink(), 1);
    // the app's links are now reported gone, not broken
    let checks = registry::check_all(&d).unwrap();
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|(_, s)| *s == LinkStatus::LinkMissing));
}

// ----------------------------------------------------------- shared caches

#[test]
fn shells_get_shared_caches_unless_a_layer_sets_them() {
    let h = Harness::with_env(
        [("TORCH_HOME".to_string(), "/user/torch".to_string())]
            .into_iter()
            .collect(),
    );
    let home = h.home();
    // a system ENVIRONMENT without the cache keys (the defaults set them)
    write(&home.join("ENVIRONMENT"), "PINOKIO_SHARE_VAR=url\n");
    let app = h.app("comfy", None);
    write(
        &app.join("ENVIRONMENT"),
        "GRADIO_TEMP_DIR=./cache/GRADIO_TEMP_DIR\n",
    );
    let (out, ev) = h.run(
        "comfy",
        json!([{ "method": "shell.run", "params": {
            "message": "echo \"HF=$HF_HOME T=$TORCH_HOME G=$GRADIO_TEMP_DIR P=$PIP_CACHE_DIR U=$UV_CACHE_DIR\"",
            "env": { "UV_CACHE_DIR": "/script/uv" }
        }}]),
    );
    assert!(out.ok(), "{:?}", out.error);
    let text = output(&ev);
    let line = text
        .lines()
        .find(|l| l.starts_with("HF="))
        .unwrap_or_else(|| panic!("{text}"));
    let c = |k: &str| home.join("cache").join(k).display().to_string();
    assert_eq!(
        line.trim_end(),
        format!(
            "HF={} T=/user/torch G={} P={} U=/script/uv",
            c("HF_HOME"),
            app.join("cache/GRADIO_TEMP_DIR").display(),
            c("PIP_CACHE_DIR")
        )
    );
    assert!(home.join("cache/HF_HOME").is_dir());
    // with the default system ENVIRONMENT the system file's values apply
    std::fs::remove_file(home.join("ENVIRONMENT")).unwrap();
    h.engine.home().ensure().unwrap();
    let (_, ev) = h.run(
        "comfy",
        json!([{ "method": "shell.run", "params": { "message": "echo \"HF=$HF_HOME\"" } }]),
    );
    assert!(output(&ev).contains(&format!("HF={}", c("HF_HOME"))));
}

// ------------------------------------------------------ other file system

/// A folder on another file system than the temp dir (`/dev/shm`), if any.
fn other_fs(than: &Path) -> Option<tempfile::TempDir> {
    let d = tempfile::tempdir_in("/dev/shm").ok()?;
    let a = std::fs::metadata(d.path()).ok()?.dev();
    let b = std::fs::metadata(than).ok()?.dev();
    (a != b).then_some(d)
}

#[test]
fn a_drive_on_another_file_system_gets_copies_and_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let Some(shm) = other_fs(t.path()) else {
        eprintln!("no second file system (/dev/shm); skipped");
        return;
    };
    let app = t.path().join("app");
    write(&app.join("ck/a.bin"), "a");
    write(&app.join("ck/sub/b.bin"), "b");
    let d = Drive::new(shm.path().join("drive"));
    let req = FolderLinkRequest {
        app: app.clone(),
        base: app.clone(),
        entries: vec![("ck".into(), vec!["ck".into()])],
        peers: vec![],
        options: MoveOptions::default(),
    };
    // every failure point is undone across file systems too
    let mut ops = Vec::new();
    {
        let before_app = snapshot(&app);
        let mut n = 0;
        d.link_folders(&req, &mut |op: &Op| {
            ops.push(op.clone());
            Ok(())
        })
        .unwrap();
        assert!(ops.iter().any(|o| matches!(o, Op::Copy { .. })), "{ops:?}");
        let folder = std::fs::canonicalize(app.join("ck")).unwrap();
        assert!(folder.starts_with(std::fs::canonicalize(shm.path()).unwrap()));
        assert_eq!(read(&folder.join("sub/b.bin")), "b");
        // undo it and try again with failures
        registry::unlink(&d, &app.join("ck")).unwrap();
        std::fs::remove_dir_all(&folder).unwrap();
        assert_eq!(before_app, snapshot(&app));
        // fail at step 0, 1, 2... until a run gets through
        let mut fail_at = 0;
        loop {
            let before = (snapshot(&app), snapshot(d.root()));
            let mut seen = Vec::new();
            let r = d.link_folders(&req, &mut |op: &Op| {
                n += 1;
                seen.push(op.clone());
                if n > fail_at {
                    Err("forced".into())
                } else {
                    Ok(())
                }
            });
            n = 0;
            match r {
                Ok(_) => {
                    assert!(seen.iter().any(|o| matches!(o, Op::Copy { .. })));
                    break;
                }
                Err(err) => {
                    assert!(matches!(err, DriveError::RolledBack { .. }));
                    assert_eq!(
                        before,
                        (snapshot(&app), snapshot(d.root())),
                        "step {fail_at}"
                    );
                }
            }
            fail_at += 1;
        }
        assert!(fail_at >= 5, "{fail_at}");
        assert_eq!(read(&app.join("ck/a.bin")), "a");
    }

    // dedupe: an app's copy of a drive file becomes a symlink to it
    let home = PinokioHome::new(t.path().join("home"));
    home.ensure().unwrap();
    let bytes = big(4, 1 << 20);
    let in_app = home.api().join("x/m.bin");
    let in_drive = d.root().join("drives/peers/d9/m.bin");
    write_bytes(&in_app, &bytes);
    write_bytes(&in_drive, &bytes);
    let r = drive::dedupe(&home, &d, &DedupeOptions::default(), &|_| {}).unwrap();
    assert_eq!(r.linked_files, 1);
    assert_eq!(r.groups[0].kept, in_drive);
    assert_eq!(std::fs::read_link(&in_app).unwrap(), in_drive);
    assert_eq!(std::fs::read(&in_app).unwrap(), bytes);
    let rec = registry::load_links(&d)
        .unwrap()
        .into_iter()
        .find(|l| l.kind == LinkKind::Dedupe)
        .unwrap();
    assert_eq!(rec.link, in_app);
    assert_eq!(registry::check(&rec), LinkStatus::Ok);
}

fn write_bytes(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}
