//! Runner behaviour across runs: concurrency, `queue`, refusing a second
//! start, daemons and stop, menus reading live memory, and the method index.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_core::events::{CollectSink, EventKind, RunStatus};
use pinokio_core::methods::Lookup;
use pinokio_core::{Engine, Facts, PinokioHome, RunRequest};
use serde_json::json;

fn engine(dir: &Path) -> (Engine, CollectSink) {
    let sink = CollectSink::new();
    let e = Engine::builder(PinokioHome::new(dir))
        .facts(Facts::cpu_only())
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    (e, sink)
}

fn write(e: &Engine, rel: &str, text: &str) -> String {
    let p = e.home().api().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn every_method_in_the_semantics_index_runs_or_fails_loudly() {
    // section 4.24 of the semantics note
    let names = "shell.run shell.start shell.enter shell.write shell.stop fs.read fs.write fs.append fs.rm fs.remove fs.copy fs.make fs.cat fs.open fs.download fs.link fs.share json.set json.rm json.get local.set local.rm local.import global.set global.rm self.set self.rm set rm log notify net gradio.predict script.start script.run script.download script.stop script.return script.restart script.ready jump goto input hf.download hf.upload hf.login hf.logout process.wait web.open web.close web.expose browser.open browser.close tab.open uri.open modal htmlmodal.open htmlmodal.update htmlmodal.close loading.start loading.end key.set key.get env.set env.switch exec load import push clipboard.copy clipboard.paste filepicker.open terminal.upload app.launch app.search app.info app.refresh app.download github.create github.fork proxy.start proxy.stop cloudflare.tunnel cloudflare.stop";
    let r = pinokio_core::methods::Registry::standard();
    let mut unknown = Vec::new();
    for n in names.split_whitespace() {
        if let Lookup::Unknown = r.lookup(n) {
            unknown.push(n);
        }
    }
    assert_eq!(names.split_whitespace().count(), 84);
    assert!(
        unknown.is_empty(),
        "methods neither implemented nor marked unsupported: {unknown:?}"
    );
    assert!(matches!(
        r.lookup("kernel.bin.install"),
        Lookup::Unsupported(_)
    ));
    assert!(matches!(r.lookup("fs.exists"), Lookup::Unknown));
}

#[test]
fn unsupported_method_fails_with_not_supported_yet() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    write(
        &e,
        "a/s.json",
        r#"{"run":[{"method":"gradio.predict","params":{"uri":"http://127.0.0.1:7860"}}]}"#,
    );
    let out = e.run(RunRequest::new("~/api/a/s.json"));
    assert_eq!(out.status, RunStatus::Error);
    let msg = out.error.unwrap().to_string();
    assert!(
        msg.contains("step 0 (gradio.predict): not supported yet: gradio.predict"),
        "{msg}"
    );
}

#[test]
fn queue_serialises_a_method_across_runs_and_other_runs_overlap() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let q = r#"{"run":[{"method":"process.wait","params":{"sec":0.4},"queue":true}]}"#;
    write(&e, "a/q1.json", q);
    write(&e, "a/q2.json", q);
    let start = Instant::now();
    let (e1, e2) = (e.clone(), e.clone());
    let h1 = std::thread::spawn(move || e1.run(RunRequest::new("~/api/a/q1.json")));
    let h2 = std::thread::spawn(move || e2.run(RunRequest::new("~/api/a/q2.json")));
    assert!(h1.join().unwrap().ok());
    assert!(h2.join().unwrap().ok());
    let queued = start.elapsed();
    assert!(
        queued >= Duration::from_millis(780),
        "queued runs overlapped: {queued:?}"
    );

    let p = r#"{"run":[{"method":"process.wait","params":{"sec":0.4}}]}"#;
    write(&e, "a/p1.json", p);
    write(&e, "a/p2.json", p);
    let start = Instant::now();
    let (e1, e2) = (e.clone(), e.clone());
    let h1 = std::thread::spawn(move || e1.run(RunRequest::new("~/api/a/p1.json")));
    let h2 = std::thread::spawn(move || e2.run(RunRequest::new("~/api/a/p2.json")));
    assert!(h1.join().unwrap().ok());
    assert!(h2.join().unwrap().ok());
    assert!(
        start.elapsed() < Duration::from_millis(780),
        "unqueued runs did not overlap"
    );
}

#[test]
fn a_running_script_cannot_be_started_twice_and_stop_ends_a_daemon() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let id = write(
        &e,
        "a/d.json",
        r#"{"daemon":true,"run":[{"method":"local.set","params":{"url":"http://127.0.0.1:{{port}}"}}]}"#,
    );
    let out = e.run(RunRequest::new("~/api/a/d.json"));
    assert_eq!(out.status, RunStatus::Daemon);
    assert!(e.is_running(&id));
    assert!(e.memory().is_ready(&id));
    let again = e.run(RunRequest::new("~/api/a/d.json"));
    assert_eq!(again.status, RunStatus::Error);
    assert!(again.error.unwrap().message.contains("already running"));
    assert!(e.stop(&id));
    assert!(!e.is_running(&id));
    assert_eq!(e.memory().local_opt(&id), None);
    let ends: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|ev| {
            ev.script == id
                && matches!(
                    ev.kind,
                    EventKind::RunEnd {
                        status: RunStatus::Stopped,
                        ..
                    }
                )
        })
        .collect();
    assert_eq!(ends.len(), 1);
}

#[test]
fn stop_interrupts_a_waiting_run() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    let id = write(
        &e,
        "a/w.json",
        r#"{"run":[{"method":"process.wait","params":{"sec":30}},{"method":"log","params":{"raw":"never"}}]}"#,
    );
    let e2 = e.clone();
    let h = std::thread::spawn(move || e2.run(RunRequest::new("~/api/a/w.json")));
    let t0 = Instant::now();
    while !e.is_running(&id) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    e.stop(&id);
    let out = h.join().unwrap();
    assert_eq!(out.status, RunStatus::Stopped);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn menu_follows_install_state_running_state_and_local_memory() {
    let t = tempfile::tempdir().unwrap();
    let (e, _) = engine(t.path());
    write(
        &e,
        "m/pinokio.js",
        r#"module.exports = {
  title: "M",
  menu: async (kernel, info) => {
    if (info.running("start.json")) {
      const l = info.local("start.json")
      return [{ text: "Terminal", href: "start.json" }].concat(l.url ? [{ default: true, text: "Open", href: l.url }] : [])
    }
    if (info.exists("installed.txt")) return [{ default: true, text: "Start", href: "start.json" }]
    return [{ default: true, text: "<b>Install</b>", href: "install.json", params: { fast: true } }]
  }
}"#,
    );
    write(
        &e,
        "m/install.json",
        r#"{"run":[{"method":"fs.write","params":{"path":"installed.txt","text":"yes"}}]}"#,
    );
    let sid = write(
        &e,
        "m/start.json",
        r#"{"daemon":true,"run":[{"method":"local.set","params":{"url":"http://127.0.0.1:7777"}}]}"#,
    );
    let app = e.home().api().join("m");
    let m = e.menu(&app).unwrap();
    assert_eq!(m.title, "M");
    let d = m.default_item().unwrap();
    assert_eq!(d.text, "Install");
    assert_eq!(d.params, Some(json!({"fast": true})));
    assert_eq!(
        pinokio_core::engine::stringify_menu_params(d.params.as_ref().unwrap()),
        json!({"fast": "true"})
    );
    assert!(e.run(RunRequest::new("~/api/m/install.json")).ok());
    assert_eq!(e.menu(&app).unwrap().default_item().unwrap().text, "Start");
    assert_eq!(
        e.run(RunRequest::new("~/api/m/start.json")).status,
        RunStatus::Daemon
    );
    let m = e.menu(&app).unwrap();
    assert!(m.items[0].running);
    assert_eq!(
        m.default_item().unwrap().url.as_deref(),
        Some("http://127.0.0.1:7777")
    );
    e.stop(&sid);
    assert_eq!(e.menu(&app).unwrap().default_item().unwrap().text, "Start");
}

#[test]
fn template_scope_has_kernel_helpers_and_globals() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    write(&e, "k/marker.txt", "x");
    write(
        &e,
        "k/s.json",
        r#"{"run":[{"method":"local.set","params":{
  "which_sh": "{{typeof which('sh') === 'string' && which('sh').endsWith('/sh')}}",
  "which_none": "{{which('definitely-not-a-command-xyz')}}",
  "kwhich": "{{kernel.which('sh') === which('sh')}}",
  "exists": "{{exists('marker.txt')}}",
  "kexists_promise": "{{typeof kernel.exists('x').then}}",
  "kport_promise": "{{typeof kernel.port().then}}",
  "kgpus": "{{Array.isArray(kernel.gpus) && kernel.gpus.length === gpus.length}}",
  "kplatform": "{{kernel.platform === platform}}",
  "home": "{{kernel.homedir === kernel.path()}}",
  "running": "{{running('s.json')}}",
  "buf": "{{Buffer.from('aGk=', 'base64').toString()}}",
  "enc": "{{encodeURIComponent('a b&c')}}",
  "date": "{{typeof Date.now()}}",
  "math": "{{Math.max(1, 7)}}",
  "lodash": "{{_.uniq([1, 1, 2]).length}}",
  "json": "{{JSON.stringify({a: 1})}}",
  "pathrel": "{{path.relative(cwd, path.join(cwd, 'a', 'b'))}}",
  "os": "{{os.platform() === platform && typeof os.homedir() === 'string'}}",
  "uri": "{{uri}}",
  "ports": "{{port >= 42003}}",
  "gpu": "{{gpu}}",
  "gpu_model": "{{gpu_model}}",
  "script_local": "{{JSON.stringify(kernel.script.local('~/api/k/s.json'))}}",
  "memory": "{{typeof kernel.memory.local}}"
}},{"method":"log","params":{"json":"{{local}}"}}]}"#,
    );
    let out = e.run(RunRequest::new("~/api/k/s.json"));
    assert!(out.ok(), "{:?}", out.error);
    let local = sink
        .events()
        .into_iter()
        .find_map(|ev| match ev.kind {
            EventKind::StepStart {
                index: 1, params, ..
            } => params,
            _ => None,
        })
        .unwrap()["json"]
        .clone();
    assert_eq!(
        local,
        json!({
            "which_sh": true, "which_none": null, "kwhich": true, "exists": true,
            "kexists_promise": "function", "kport_promise": "function", "kgpus": true,
            "kplatform": true, "home": true, "running": true, "buf": "hi", "enc": "a%20b%26c",
            "date": "number", "math": 7, "lodash": 2, "json": "{\"a\":1}", "pathrel": "a/b",
            "os": true, "uri": "~/api/k/s.json", "ports": true, "gpu": "none",
            "gpu_model": "{{gpu_model}}", "script_local": "{}", "memory": "object"
        })
    );
}

#[test]
fn console_output_of_a_js_script_is_attributed_to_its_run() {
    let t = tempfile::tempdir().unwrap();
    let (e, sink) = engine(t.path());
    let id = write(&e, "c/s.js", "console.log('loading', {a: 1})\nmodule.exports = { run: [{ method: 'log', params: { raw: 'x' } }] }");
    assert!(e.run(RunRequest::new("~/api/c/s.js")).ok());
    let hit = sink.events().into_iter().any(|ev| {
        ev.script == id && matches!(&ev.kind, EventKind::Output { text, .. } if text.contains("loading {\"a\":1}"))
    });
    assert!(hit, "console output not attributed");
}
