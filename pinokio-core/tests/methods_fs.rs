//! The `fs` namespace run through a real engine over a temporary home:
//! conformance cases 11 and 29 plus our own safety rules (fs.rm confined to
//! the home, symlinks never followed, atomic writes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pinokio_core::events::{CollectSink, Event, EventKind, RunStatus};
use pinokio_core::{Engine, Facts, PinokioHome, RunOutcome, RunRequest};
use serde_json::{json, Value};

struct Harness {
    _dir: tempfile::TempDir,
    engine: Engine,
    sink: Arc<CollectSink>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(CollectSink::new());
        // Nested, so that `..` escapes in the tests still land in the tempdir.
        let engine = Engine::builder(PinokioHome::new(dir.path().join("outer/inner/home")))
            .facts(Facts::cpu_only())
            .sink(sink.clone())
            .build()
            .expect("engine");
        Harness {
            _dir: dir,
            engine,
            sink,
        }
    }

    fn home(&self) -> PathBuf {
        self.engine.home().root().to_path_buf()
    }

    fn app(&self, app: &str) -> PathBuf {
        self.home().join("api").join(app)
    }

    /// Write `{"run": steps}` to `HOME/api/<app>/x.json` and run it.
    fn run(&self, app: &str, steps: Value) -> (RunOutcome, Vec<Event>) {
        let dir = self.app(app);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("x.json"),
            serde_json::to_string_pretty(&json!({ "run": steps })).unwrap(),
        )
        .unwrap();
        self.sink.take();
        let outcome = self
            .engine
            .run(RunRequest::new(format!("~/api/{app}/x.json")));
        (outcome, self.sink.take())
    }
}

/// Everything step `index` printed.
fn output(events: &[Event], index: usize) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Output {
                index: Some(i),
                text,
            } if *i == index => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The result of step `index` (`None`: the step did not finish; `Some(None)`:
/// undefined).
fn result(events: &[Event], index: usize) -> Option<Option<Value>> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::StepResult { index: i, result } if *i == index => Some(result.clone()),
        _ => None,
    })
}

fn error_message(outcome: &RunOutcome) -> String {
    outcome
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names in a folder, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn case_11_write_read_copy_rm() {
    let h = Harness::new();
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/cases/11-fs-write-read-copy-rm/app/fs.json"),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    .map(|v| v["run"].clone())
    // The case's script, inlined when the pack is not next to the tree.
    .unwrap_or_else(|| {
        json!([
            { "method": "fs.write", "params": { "path": "out/a.txt", "text": "line1\nline2" } },
            { "method": "fs.write", "params": { "path": "out/b.json", "json": { "k": 1, "list": [1, 2] } } },
            { "method": "fs.write", "params": { "path": "out/c.json", "json2": { "k": 1, "list": [1, 2] } } },
            { "method": "fs.append", "params": { "path": "out/a.txt", "text": "\nline3" } },
            { "method": "fs.read", "params": { "path": "out/a.txt", "encoding": "utf8" } },
            { "method": "log", "params": { "raw": "read utf8: {{JSON.stringify(input)}}" } },
            { "method": "fs.read", "params": { "path": "out/b.json" } },
            { "method": "log", "params": { "raw": "read without encoding: {{typeof input}} {{input}}" } },
            { "method": "fs.copy", "params": { "src": "out/a.txt", "dest": "copies/a-copy.txt" } },
            { "method": "fs.copy", "params": { "src": "out", "dest": "out2", "options": { "recursive": true } } },
            { "method": "fs.rm", "params": { "path": "out/b.json" } },
            { "method": "fs.rm", "params": { "path": "out2" } },
            { "method": "fs.write", "params": { "path": "out/empty.txt", "text": "" } },
            { "method": "fs.write", "params": { "path": "out/a.txt", "text": "overwritten" } },
            { "method": "fs.make", "params": { "path": "made/deep/dir" } }
        ])
    });
    let (outcome, events) = h.run("fscase", script);
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(outcome.status, RunStatus::Finished);
    assert_eq!(outcome.visited, (0..15).collect::<Vec<_>>());

    // Step results.
    for i in [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14] {
        assert_eq!(result(&events, i), Some(None), "step {i} result");
    }
    assert_eq!(result(&events, 4), Some(Some(json!("line1\nline2\nline3"))));
    let b_json = br#"{"k":1,"list":[1,2]}"#.to_vec();
    assert_eq!(
        result(&events, 6),
        Some(Some(json!({ "type": "Buffer", "data": b_json })))
    );
    assert_eq!(output(&events, 5), "read utf8: \"line1\\nline2\\nline3\"\n");

    // Printed paths.
    let app = h.app("fscase");
    let d = |p: &str| app.join(p).display().to_string();
    assert_eq!(
        output(&events, 8),
        format!(
            "\ncopying:\nfrom: {}\nto: {}\ndone\n",
            d("out/a.txt"),
            d("copies/a-copy.txt")
        )
    );
    assert_eq!(
        output(&events, 9),
        format!("\ncopying:\nfrom: {}\nto: {}\ndone\n", d("out"), d("out2"))
    );
    assert_eq!(
        output(&events, 10),
        format!("\nremoving:\n{}\ndone\n", d("out/b.json"))
    );
    assert_eq!(
        output(&events, 11),
        format!("\nremoving:\n{}\ndone\n", d("out2"))
    );

    // Files after the run (case.json `checks`).
    assert_eq!(read(&app.join("copies/a-copy.txt")), "line1\nline2\nline3");
    assert!(app.join("made/deep/dir").is_dir());
    assert_eq!(read(&app.join("out/a.txt")), "overwritten");
    assert_eq!(
        read(&app.join("out/c.json")),
        "{\n  \"k\": 1,\n  \"list\": [\n    1,\n    2\n  ]\n}"
    );
    assert!(!app.join("out/b.json").exists());
    assert!(!app.join("out2").exists());
    assert!(
        !app.join("out/empty.txt").exists(),
        "empty text writes no file"
    );
    assert_eq!(names(&app.join("out")), ["a.txt", "c.json"]);
    assert_eq!(names(&app), ["copies", "made", "out", "x.json"]);
}

#[test]
fn case_29_non_string_text_fails_the_step() {
    let h = Harness::new();
    let (outcome, events) = h.run(
        "numtext",
        json!([
            { "method": "fs.write", "params": { "path": "out/interpolated.txt", "text": "n={{40 + 2}}" } },
            { "method": "fs.write", "params": { "path": "out/number.txt", "text": "{{40 + 2}}" } },
            { "method": "fs.write", "params": { "path": "out/never.txt", "text": "not reached" } }
        ]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert_eq!(outcome.visited, vec![0, 1]);
    let err = outcome.error.clone().expect("an error");
    assert_eq!(err.step, Some(1));
    assert!(
        err.message.starts_with(
            "TypeError [ERR_INVALID_ARG_TYPE]: The \"data\" argument must be of type string or an instance of \
             Buffer, TypedArray, or DataView. Received type number (42)"
        ),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("number.txt"),
        "names the path: {}",
        err.message
    );
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::StepError { index: 1, .. })));
    let app = h.app("numtext");
    assert_eq!(read(&app.join("out/interpolated.txt")), "n=42");
    assert_eq!(names(&app.join("out")), ["interpolated.txt"]);
}

#[test]
fn failed_write_keeps_the_old_file() {
    let h = Harness::new();
    let app = h.app("keep");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("t.txt"), "old").unwrap();
    let (outcome, _) = h.run(
        "keep",
        json!([{ "method": "fs.write", "params": { "path": "t.txt", "text": { "a": 1 } } }]),
    );
    assert!(
        error_message(&outcome).contains("Received an instance of Object"),
        "{:?}",
        outcome.error
    );
    assert_eq!(read(&app.join("t.txt")), "old");
}

#[test]
fn rm_refuses_paths_outside_the_home() {
    let h = Harness::new();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();

    let (outcome, events) = h.run(
        "rmout",
        json!([{ "method": "fs.rm", "params": { "path": victim.display().to_string() } }]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert!(
        error_message(&outcome).contains("outside the Pinokio home"),
        "{:?}",
        outcome.error
    );
    assert!(error_message(&outcome).contains("victim.txt"));
    assert!(output(&events, 0).is_empty(), "nothing printed as removed");
    assert_eq!(read(&victim), "keep me");

    // The folder too, and through the alias.
    let (outcome, _) = h.run(
        "rmout",
        json!([{ "method": "fs.remove", "params": { "path": outside.path().display().to_string() } }]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert!(victim.exists());
}

#[test]
fn rm_refuses_escapes_the_home_and_api() {
    let h = Harness::new();
    let marker = h.home().join("ENVIRONMENT");
    assert!(marker.exists());
    let beside = h.home().parent().unwrap().join("beside.txt");
    std::fs::write(&beside, "beside").unwrap();
    for (path, why) in [
        ("../../..", "outside the Pinokio home"),
        ("../../../..", "outside the Pinokio home"),
        ("sub/../../../../etc", "outside the Pinokio home"),
        ("../..", "the Pinokio home itself"),
        ("~", "the Pinokio home itself"),
        ("..", "apps folder"),
        ("~/api", "apps folder"),
        ("~/api/", "apps folder"),
    ] {
        let (outcome, _) = h.run(
            "esc",
            json!([{ "method": "fs.rm", "params": { "path": path } }]),
        );
        assert_eq!(outcome.status, RunStatus::Error, "{path}");
        assert!(
            error_message(&outcome).contains(why),
            "{path}: {:?}",
            outcome.error
        );
    }
    assert!(marker.exists());
    assert!(beside.exists());
    assert!(h.app("esc").join("x.json").exists());

    // Inside the home is fine, and a missing path is not an error.
    let (outcome, events) = h.run(
        "esc",
        json!([
            { "method": "fs.make", "params": { "path": "~/cache/junk/deep" } },
            { "method": "fs.rm", "params": { "path": "../../cache/junk" } },
            { "method": "fs.rm", "params": { "path": "does/not/exist" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert!(!h.home().join("cache/junk").exists());
    assert!(h.home().join("cache").is_dir());
    assert_eq!(
        output(&events, 2),
        format!(
            "\nremoving:\n{}\ndone\n",
            h.app("esc").join("does/not/exist").display()
        )
    );
}

#[cfg(unix)]
#[test]
fn rm_removes_symlinks_without_following_them() {
    let h = Harness::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("data/sub")).unwrap();
    std::fs::write(outside.path().join("data/sub/f.txt"), "precious").unwrap();
    let app = h.app("links");
    std::fs::create_dir_all(app.join("tree/inner")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("data"), app.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("data"), app.join("tree/inner/link")).unwrap();
    std::fs::write(app.join("tree/inner/own.txt"), "x").unwrap();

    let (outcome, _) = h.run(
        "links",
        json!([
            { "method": "fs.rm", "params": { "path": "link" } },
            { "method": "fs.rm", "params": { "path": "tree" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert!(
        std::fs::symlink_metadata(app.join("link")).is_err(),
        "the link is gone"
    );
    assert!(!app.join("tree").exists(), "the tree is gone");
    assert_eq!(read(&outside.path().join("data/sub/f.txt")), "precious");
    assert_eq!(names(&outside.path().join("data")), ["sub"]);
}

#[test]
fn write_is_atomic_and_replaces_files_and_folders() {
    let h = Harness::new();
    let app = h.app("atomic");
    std::fs::create_dir_all(app.join("out/was-a-folder/x")).unwrap();
    std::fs::write(app.join("out/f.txt"), "old content that is longer").unwrap();
    let (outcome, _) = h.run(
        "atomic",
        json!([
            { "method": "fs.write", "params": { "path": "out/f.txt", "text": "new" } },
            { "method": "fs.write", "params": { "path": "out/was-a-folder", "json": [1, "two"] } },
            { "method": "fs.write", "params": { "path": "out/deep/er/g.json", "json2": { "a": [] }, "text": "ignored" } },
            { "method": "fs.write", "params": { "path": "out/h.txt", "json": 0, "json2": "", "text": "falls through" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(read(&app.join("out/f.txt")), "new");
    assert_eq!(read(&app.join("out/was-a-folder")), "[1,\"two\"]");
    assert_eq!(read(&app.join("out/deep/er/g.json")), "{\n  \"a\": []\n}");
    assert_eq!(read(&app.join("out/h.txt")), "falls through");
    // No temp files left behind.
    assert_eq!(
        names(&app.join("out")),
        ["deep", "f.txt", "h.txt", "was-a-folder"]
    );
    assert_eq!(names(&app.join("out/deep/er")), ["g.json"]);
}

#[test]
fn falsy_data_deletes_the_target_and_says_so() {
    let h = Harness::new();
    let app = h.app("falsy");
    std::fs::create_dir_all(&app).unwrap();
    for f in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(app.join(f), "old").unwrap();
    }
    let (outcome, events) = h.run(
        "falsy",
        json!([
            { "method": "fs.write", "params": { "path": "a.txt", "text": "" } },
            { "method": "fs.write", "params": { "path": "b.txt", "json": false, "buffer": null } },
            { "method": "fs.append", "params": { "path": "c.txt", "text": "" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert!(!app.join("a.txt").exists());
    assert!(!app.join("b.txt").exists());
    assert_eq!(
        read(&app.join("c.txt")),
        "old",
        "append with nothing leaves the file"
    );
    for i in 0..3 {
        assert!(
            output(&events, i).contains("nothing was written"),
            "step {i}: {:?}",
            output(&events, i)
        );
    }
}

#[test]
fn buffer_and_append_write_raw_bytes() {
    let h = Harness::new();
    let app = h.app("buf");
    let (outcome, _) = h.run(
        "buf",
        json!([
            { "method": "fs.write", "params": { "path": "s.bin", "buffer": "héllo" } },
            { "method": "fs.write", "params": { "path": "b.bin", "buffer": { "type": "Buffer", "data": [0, 255, 10, 128] } } },
            { "method": "fs.write", "params": { "path": "a.bin", "buffer": [1, 2, 3] } },
            { "method": "fs.append", "params": { "path": "a.bin", "buffer": { "type": "Buffer", "data": [4] } } },
            { "method": "fs.append", "params": { "path": "new/dir/app.txt", "json": { "x": true } } },
            { "method": "fs.append", "params": { "path": "new/dir/app.txt", "text": "!" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(
        std::fs::read(app.join("s.bin")).unwrap(),
        "héllo".as_bytes()
    );
    assert_eq!(
        std::fs::read(app.join("b.bin")).unwrap(),
        vec![0u8, 255, 10, 128]
    );
    assert_eq!(
        std::fs::read(app.join("a.bin")).unwrap(),
        vec![1u8, 2, 3, 4]
    );
    assert_eq!(read(&app.join("new/dir/app.txt")), "{\"x\":true}!");

    let (outcome, _) = h.run(
        "buf",
        json!([{ "method": "fs.write", "params": { "path": "bad.bin", "buffer": [1, 256] } }]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert!(
        error_message(&outcome).contains("256"),
        "{:?}",
        outcome.error
    );
    assert!(!app.join("bad.bin").exists());
}

#[test]
fn read_encodings_and_missing_file() {
    let h = Harness::new();
    let app = h.app("enc");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("bin"), [0xde, 0xad, 0xbe, 0xef, b'h', b'i']).unwrap();
    let (outcome, events) = h.run(
        "enc",
        json!([
            { "method": "fs.read", "params": { "path": "bin", "encoding": "base64" } },
            { "method": "fs.read", "params": { "path": "bin", "encoding": "hex" } },
            { "method": "fs.read", "params": { "path": "~/api/enc/bin" } },
            { "method": "fs.read", "params": { "path": "bin", "encoding": "latin1" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(result(&events, 0), Some(Some(json!("3q2+72hp"))));
    assert_eq!(result(&events, 1), Some(Some(json!("deadbeef6869"))));
    assert_eq!(
        result(&events, 2),
        Some(Some(
            json!({ "type": "Buffer", "data": [222, 173, 190, 239, 104, 105] })
        ))
    );
    assert_eq!(
        result(&events, 3),
        Some(Some(json!("\u{de}\u{ad}\u{be}\u{ef}hi")))
    );

    let (outcome, _) = h.run(
        "enc",
        json!([{ "method": "fs.read", "params": { "path": "nope.txt" } }]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert!(
        error_message(&outcome).contains(&app.join("nope.txt").display().to_string()),
        "{:?}",
        outcome.error
    );

    let (outcome, _) = h.run(
        "enc",
        json!([{ "method": "fs.read", "params": { "path": "bin", "encoding": "klingon" } }]),
    );
    assert!(
        error_message(&outcome).contains("unknown encoding"),
        "{:?}",
        outcome.error
    );
}

#[test]
fn copy_folder_needs_recursive() {
    let h = Harness::new();
    let app = h.app("cp");
    std::fs::create_dir_all(app.join("src/sub")).unwrap();
    std::fs::write(app.join("src/sub/f.txt"), "f").unwrap();
    let (outcome, events) = h.run(
        "cp",
        json!([{ "method": "fs.copy", "params": { "src": "src", "dest": "dst" } }]),
    );
    assert_eq!(outcome.status, RunStatus::Error);
    assert!(
        error_message(&outcome).contains("is a directory"),
        "{:?}",
        outcome.error
    );
    assert!(error_message(&outcome).contains(&app.join("src").display().to_string()));
    assert!(!app.join("dst").exists());
    assert!(output(&events, 0).is_empty());

    let (outcome, _) = h.run(
        "cp",
        json!([{ "method": "fs.copy", "params": { "src": "src", "dest": "src/sub/inside", "options": { "recursive": true } } }]),
    );
    assert!(
        error_message(&outcome).contains("subdirectory of itself"),
        "{:?}",
        outcome.error
    );

    let (outcome, _) = h.run(
        "cp",
        json!([{ "method": "fs.copy", "params": { "src": "missing", "dest": "x" } }]),
    );
    assert!(
        error_message(&outcome).contains(&app.join("missing").display().to_string()),
        "{:?}",
        outcome.error
    );
}

#[test]
fn copy_force_and_error_on_exist() {
    let h = Harness::new();
    let app = h.app("cpx");
    std::fs::create_dir_all(app.join("d")).unwrap();
    std::fs::write(app.join("a.txt"), "new").unwrap();
    std::fs::write(app.join("d/a.txt"), "old").unwrap();
    let (outcome, _) = h.run(
        "cpx",
        json!([{ "method": "fs.copy", "params": { "src": "a.txt", "dest": "d/a.txt", "options": { "force": false } } }]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(read(&app.join("d/a.txt")), "old", "force:false skips");
    let (outcome, _) = h.run(
        "cpx",
        json!([{ "method": "fs.copy", "params": { "src": "a.txt", "dest": "d/a.txt", "options": { "force": false, "errorOnExist": true } } }]),
    );
    assert!(
        error_message(&outcome).contains("already exists"),
        "{:?}",
        outcome.error
    );
    let (outcome, _) = h.run(
        "cpx",
        json!([{ "method": "fs.copy", "params": { "src": "a.txt", "dest": "d/a.txt" } }]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(read(&app.join("d/a.txt")), "new", "force defaults to true");
}

#[cfg(unix)]
#[test]
fn copy_keeps_symlinks_unless_dereference() {
    let h = Harness::new();
    let app = h.app("cpl");
    std::fs::create_dir_all(app.join("src/real")).unwrap();
    std::fs::write(app.join("src/real/f.txt"), "f").unwrap();
    std::os::unix::fs::symlink("real", app.join("src/link")).unwrap();
    let (outcome, _) = h.run(
        "cpl",
        json!([
            { "method": "fs.copy", "params": { "src": "src", "dest": "kept", "options": { "recursive": true } } },
            { "method": "fs.copy", "params": { "src": "src", "dest": "deref", "options": { "recursive": true, "dereference": true } } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    let kept = std::fs::symlink_metadata(app.join("kept/link")).unwrap();
    assert!(kept.file_type().is_symlink());
    // Like Node, a relative link target is resolved against the source folder.
    assert_eq!(
        std::fs::read_link(app.join("kept/link")).unwrap(),
        app.join("src/real")
    );
    let deref = std::fs::symlink_metadata(app.join("deref/link")).unwrap();
    assert!(deref.is_dir(), "dereference copies the folder");
    assert_eq!(read(&app.join("deref/link/f.txt")), "f");
}

#[test]
fn cat_make_and_open() {
    let h = Harness::new();
    let app = h.app("misc");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("c.txt"), b"cat \xff me").unwrap();
    let (outcome, events) = h.run(
        "misc",
        json!([
            { "method": "fs.cat", "params": { "path": "c.txt" } },
            { "method": "fs.make", "params": { "path": "m/n/o" } },
            { "method": "fs.make", "params": { "path": "m/n/o" } },
            { "method": "fs.open", "params": { "path": "m/n" } },
            { "method": "fs.open", "params": { "path": "c.txt", "action": "code" } }
        ]),
    );
    assert!(outcome.ok(), "{:?}", outcome.error);
    assert_eq!(output(&events, 0), "cat \u{fffd} me");
    assert!(app.join("m/n/o").is_dir());
    let opened: Vec<(usize, String, Option<String>)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::OpenUrl { index, url, target } => {
                Some((*index, url.clone(), target.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        opened,
        vec![
            (3, format!("file://{}", app.join("m/n").display()), None),
            (4, format!("file://{}", app.join("c.txt").display()), None),
        ]
    );
    assert!(output(&events, 3).contains(&app.join("m/n").display().to_string()));
    assert!(output(&events, 4).contains("code"));
    for i in [1, 2, 3, 4] {
        assert_eq!(result(&events, i), Some(None));
    }
}
