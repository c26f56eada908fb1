//! The idle policy with a fake clock, fake activity, fake apps and fake
//! instance APIs; the real Vast.ai and RunPod clients against a local
//! server (request shape); the engine's own sources and apps with real
//! processes; the background thread.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinokio_cloud::idle::{
    self, ActivitySource, AppConnections, AppControl, Clock, FakeClock, IdleError, IdleNotice,
    IdlePolicy, IdleWatch, InstanceApi, InstancePlan, RunPodApi, RunningScripts, Touches, VastApi,
};
use pinokio_cloud::platform::Platform;
use pinokio_cloud::source::FixtureHost;
use pinokio_core::activity::Activity;
use pinokio_core::events::RunStatus;
use pinokio_core::{Engine, EngineOptions, Facts, PinokioHome, RunRequest};
use serde_json::json;

const MIN: Duration = Duration::from_secs(60);

/// Activity while it holds a reason.
#[derive(Clone, Default)]
struct Busy(Arc<Mutex<Option<String>>>);
impl Busy {
    fn set(&self, r: Option<&str>) {
        *self.0.lock().unwrap() = r.map(String::from);
    }
}
impl ActivitySource for Busy {
    fn active(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Default)]
struct FakeApps {
    running: Mutex<Vec<String>>,
    stops: Mutex<u32>,
}
impl AppControl for FakeApps {
    fn running_apps(&self) -> Vec<String> {
        self.running.lock().unwrap().clone()
    }
    fn stop_apps(&self) -> Vec<String> {
        *self.stops.lock().unwrap() += 1;
        std::mem::take(&mut *self.running.lock().unwrap())
    }
}

#[derive(Clone, Default)]
struct FakeApi {
    calls: Arc<Mutex<u32>>,
    fail: Option<&'static str>,
}
impl InstanceApi for FakeApi {
    fn platform(&self) -> &'static str {
        "Vast.ai"
    }
    fn instance_id(&self) -> &str {
        "4242"
    }
    fn stop_instance(&self) -> Result<(), IdleError> {
        *self.calls.lock().unwrap() += 1;
        match self.fail {
            Some(m) => Err(IdleError::Api {
                platform: "Vast.ai",
                status: Some(403),
                message: m.into(),
            }),
            None => Ok(()),
        }
    }
}

struct Rig {
    clock: Arc<FakeClock>,
    busy: Busy,
    apps: Arc<FakeApps>,
    notices: Arc<Mutex<Vec<IdleNotice>>>,
    watch: IdleWatch,
}

fn rig(minutes: u64, instance: InstancePlan) -> Rig {
    let clock = Arc::new(FakeClock::new());
    let busy = Busy::default();
    let apps = Arc::new(FakeApps::default());
    apps.running.lock().unwrap().push("comfy".into());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    let mut policy = IdlePolicy::new(Duration::from_secs(minutes * 60));
    policy.warn_before = MIN;
    let watch = IdleWatch::new(
        policy,
        clock.clone(),
        vec![Box::new(busy.clone())],
        apps.clone(),
        instance,
        Arc::new(move |x: &IdleNotice| n.lock().unwrap().push(x.clone())),
    );
    Rig {
        clock,
        busy,
        apps,
        notices,
        watch,
    }
}

impl Rig {
    /// Advance by `d` and look.
    fn after(&mut self, d: Duration) -> Vec<IdleNotice> {
        self.clock.advance(d);
        self.watch.check()
    }
    fn stops(&self) -> u32 {
        *self.apps.stops.lock().unwrap()
    }
}

#[test]
fn activity_resets_the_timer_and_a_warning_comes_first() {
    let mut r = rig(10, InstancePlan::Off);
    assert!(r.after(5 * MIN).is_empty());
    // one minute before: a warning, not a stop
    let n = r.after(4 * MIN);
    assert!(
        matches!(n.as_slice(), [IdleNotice::Soon { left, .. }] if *left == MIN),
        "{n:?}"
    );
    // used again: postponed
    r.busy.set(Some("1 request(s)"));
    let n = r.after(30 * Duration::from_secs(1));
    assert_eq!(
        n,
        vec![IdleNotice::Resumed {
            reason: "1 request(s)".into()
        }]
    );
    r.busy.set(None);
    assert!(r.after(8 * MIN).is_empty());
    assert_eq!(r.stops(), 0);
    assert!(matches!(r.after(MIN).as_slice(), [IdleNotice::Soon { .. }]));
    // ten minutes after the last use
    let n = r.after(MIN);
    assert!(
        matches!(n.as_slice(), [IdleNotice::StoppingApps { idle, apps }] if *idle == 10 * MIN && apps == &["comfy".to_string()]),
        "{n:?}"
    );
    assert_eq!(r.stops(), 1);
    assert_eq!(
        r.notices.lock().unwrap().len(),
        4,
        "every notice went to the callback too"
    );
}

#[test]
fn running_installs_block_shutdown() {
    let mut r = rig(10, InstancePlan::Off);
    r.busy.set(Some("running: comfy/install.js"));
    for _ in 0..60 {
        assert!(r.after(MIN).is_empty());
    }
    assert_eq!(r.stops(), 0, "an hour of installing is not idle");
    r.busy.set(None);
    r.after(9 * MIN);
    assert_eq!(r.stops(), 0);
    r.after(MIN);
    assert_eq!(r.stops(), 1);
    // nothing runs any more: nothing to stop, nothing said
    assert!(r.after(10 * MIN).is_empty());
}

#[test]
fn the_instance_is_stopped_only_when_enabled_after_the_apps() {
    // not enabled: apps stop, nothing else
    let mut r = rig(10, InstancePlan::Off);
    let n = r.after(10 * MIN);
    assert_eq!(n.len(), 1, "{n:?}");
    // enabled but impossible here: the same, the reason was said at start
    let mut r = rig(10, InstancePlan::Unavailable("no key".into()));
    assert!(matches!(
        r.watch.watching_notice(),
        IdleNotice::Watching { instance: None, instance_unavailable: Some(ref w), .. } if w == "no key"
    ));
    let n = r.after(10 * MIN);
    assert!(
        matches!(n.as_slice(), [IdleNotice::StoppingApps { .. }]),
        "{n:?}"
    );
    // enabled with an API: apps first, then the instance
    let api = FakeApi::default();
    let mut r = rig(10, InstancePlan::Api(Box::new(api.clone())));
    let w = r.watch.watching_notice();
    assert!(
        w.to_string()
            .contains("then the Vast.ai instance 4242 is stopped"),
        "{w}"
    );
    assert_eq!(*api.calls.lock().unwrap(), 0);
    r.after(9 * MIN + Duration::from_secs(59));
    assert_eq!(*api.calls.lock().unwrap(), 0);
    let n = r.after(Duration::from_secs(1));
    let ids = |p: &str, i: &str| (p.to_string(), i.to_string());
    assert_eq!(n.len(), 3, "{n:?}");
    assert!(matches!(&n[0], IdleNotice::StoppingApps { .. }));
    assert!(
        matches!(&n[1], IdleNotice::StoppingInstance { platform, id } if (platform.clone(), id.clone()) == ids("Vast.ai", "4242"))
    );
    assert!(matches!(&n[2], IdleNotice::InstanceStopped { .. }));
    assert_eq!(*api.calls.lock().unwrap(), 1);
    assert_eq!(r.stops(), 1);
}

#[test]
fn instance_api_errors_are_reported_and_retried_a_period_later() {
    let api = FakeApi {
        fail: Some("HTTP 403 Forbidden: bad key"),
        ..Default::default()
    };
    let mut r = rig(5, InstancePlan::Api(Box::new(api.clone())));
    let n = r.after(5 * MIN);
    let last = n.last().unwrap();
    assert!(
        matches!(last, IdleNotice::InstanceStopFailed { error, .. } if error.contains("403 Forbidden: bad key")),
        "{n:?}"
    );
    assert!(last.to_string().contains("keeps running"), "{last}");
    assert_eq!(*api.calls.lock().unwrap(), 1);
    r.after(4 * MIN);
    assert_eq!(*api.calls.lock().unwrap(), 1);
    r.after(MIN);
    assert_eq!(*api.calls.lock().unwrap(), 2, "tried again a period later");
}

#[test]
fn the_plan_needs_the_switch_a_supported_platform_a_key_and_an_id() {
    let mut policy = IdlePolicy::new(10 * MIN);
    let vast = FixtureHost::new()
        .env("VAST_API_KEY", "vk-1")
        .env("CONTAINER_ID", "4242");
    assert!(matches!(
        idle::instance_plan_for(&policy, Platform::Vast, &vast),
        InstancePlan::Off
    ));
    policy.stop_instance = true;
    match idle::instance_plan_for(&policy, Platform::Vast, &vast) {
        InstancePlan::Api(a) => assert_eq!((a.platform(), a.instance_id()), ("Vast.ai", "4242")),
        other => panic!("{other:?}"),
    }
    let runpod = FixtureHost::new()
        .env("RUNPOD_API_KEY", "rk")
        .env("RUNPOD_POD_ID", "pod9");
    match idle::instance_plan_for(&policy, Platform::RunPod, &runpod) {
        InstancePlan::Api(a) => assert_eq!((a.platform(), a.instance_id()), ("RunPod", "pod9")),
        other => panic!("{other:?}"),
    }
    let no_key = FixtureHost::new().env("CONTAINER_ID", "4242");
    assert!(matches!(
        idle::instance_plan_for(&policy, Platform::Vast, &no_key),
        InstancePlan::Unavailable(w) if w.contains("VAST_API_KEY")
    ));
    let no_id = FixtureHost::new().env("RUNPOD_API_KEY", "rk");
    assert!(matches!(
        idle::instance_plan_for(&policy, Platform::RunPod, &no_id),
        InstancePlan::Unavailable(w) if w.contains("RUNPOD_POD_ID")
    ));
    for p in [
        Platform::Colab,
        Platform::Kaggle,
        Platform::Lightning,
        Platform::Local,
    ] {
        assert!(matches!(
            idle::instance_plan_for(&policy, p, &vast),
            InstancePlan::Unavailable(w) if w.contains("Vast.ai and RunPod only")
        ));
    }
}

#[test]
fn policy_from_the_environment() {
    let from = |pairs: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        IdlePolicy::from_env(&move |k| m.get(k).cloned())
    };
    assert_eq!(from(&[]).unwrap(), None);
    assert_eq!(from(&[("PINOKIO_IDLE_MINUTES", "0")]).unwrap(), None);
    assert!(matches!(
        from(&[("PINOKIO_IDLE_MINUTES", "soon")]),
        Err(IdleError::BadMinutes(_))
    ));
    let p = from(&[("PINOKIO_IDLE_MINUTES", "30")]).unwrap().unwrap();
    assert_eq!((p.idle_after, p.stop_instance), (30 * MIN, false));
    assert_eq!(p.check_every, Duration::from_secs(30));
    let p = from(&[
        ("PINOKIO_IDLE_MINUTES", "15"),
        ("PINOKIO_IDLE_STOP_INSTANCE", "1"),
    ])
    .unwrap()
    .unwrap();
    assert!(p.stop_instance);
}

#[test]
fn vast_and_runpod_requests_have_the_documented_shape() {
    let server = common::serve(vec![
        (
            "/api/v0/instances/4242/",
            200,
            br#"{"success": true}"#.to_vec(),
        ),
        (
            "/api/v0/instances/13/",
            200,
            br#"{"success": false, "msg": "no such instance"}"#.to_vec(),
        ),
        (
            "/v1/pods/pod9/stop",
            200,
            br#"{"desiredStatus":"EXITED"}"#.to_vec(),
        ),
        ("/v1/pods/bad/stop", 401, b"unauthorized".to_vec()),
    ]);
    let vast = VastApi::new(
        "vk-secret",
        "4242",
        Some(&format!("{}/api/v0/", server.base)),
    );
    vast.stop_instance().unwrap();
    {
        let seen = server.seen.lock().unwrap();
        let s = &seen[0];
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            ("PUT", "/api/v0/instances/4242/")
        );
        assert_eq!(s.headers["authorization"], "Bearer vk-secret");
        assert_eq!(s.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body, json!({"state": "stopped"}));
    }
    let err = VastApi::new("vk-secret", "13", Some(&format!("{}/api/v0", server.base)))
        .stop_instance()
        .unwrap_err();
    assert!(err.to_string().contains("no such instance"), "{err}");

    let pod = RunPodApi::new("rk-secret", "pod9", Some(&format!("{}/v1", server.base)));
    pod.stop_instance().unwrap();
    {
        let seen = server.seen.lock().unwrap();
        let s = seen.last().unwrap();
        assert_eq!(
            (s.method.as_str(), s.path.as_str()),
            ("POST", "/v1/pods/pod9/stop")
        );
        assert_eq!(s.headers["authorization"], "Bearer rk-secret");
        assert!(s.body.is_empty());
    }
    let err = RunPodApi::new("rk-secret", "bad", Some(&format!("{}/v1", server.base)))
        .stop_instance()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            IdleError::Api {
                platform: "RunPod",
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("401") && msg.contains("unauthorized"), "{msg}");
    assert!(!msg.contains("rk-secret"), "the key never shows: {msg}");
    // the defaults are the platforms' own
    assert_eq!(VastApi::DEFAULT_BASE, "https://console.vast.ai/api/v0");
    assert_eq!(RunPodApi::DEFAULT_BASE, "https://rest.runpod.io/v1");
}

#[test]
fn touches_and_connections_count_as_use() {
    let a = Activity::new();
    let t = Touches::new(a.clone());
    assert_eq!(t.active(), None);
    a.touch();
    a.touch();
    assert_eq!(t.active().as_deref(), Some("2 request(s)"));
    assert_eq!(t.active(), None, "only touches since the last look");

    // /proc/net/tcp of a server on 7860 with one client, and a listening
    // socket (not a connection)
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    std::fs::create_dir_all(&net).unwrap();
    let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    let listen = "   0: 00000000:1EB4 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0\n";
    let conn = |port: &str| {
        format!("   1: 0100007F:1EB4 0100007F:{port} 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1\n")
    };
    let write =
        |body: &str| std::fs::write(net.join("tcp"), format!("{head}{listen}{body}")).unwrap();
    let clock = Arc::new(FakeClock::new());
    let c = AppConnections::with_ports(
        Box::new(|| HashSet::from([7860])),
        dir.path(),
        clock.clone(),
        10 * MIN,
    );
    write("");
    assert_eq!(c.active(), None, "a listening socket is nobody's use");
    write(&conn("C738"));
    assert_eq!(c.active().as_deref(), Some("1 connection(s) to port 7860"));
    // held open past the idle limit (a forgotten tab, a kept-alive tunnel
    // connection): no longer use
    clock.advance(10 * MIN);
    assert_eq!(c.active(), None);
    // a new connection is
    write(&format!("{}{}", conn("C738"), conn("C739")));
    assert!(c.active().is_some());
    // connections to other ports do not count
    let other = AppConnections::with_ports(
        Box::new(|| HashSet::from([8188])),
        dir.path(),
        clock.clone() as Arc<dyn Clock>,
        10 * MIN,
    );
    assert_eq!(other.active(), None);
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
        .build()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn the_engines_installs_block_and_its_idle_apps_are_stopped() {
    let t = tempfile::tempdir().unwrap();
    let e = engine(t.path());
    let dir = e.home().api().join("srv");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("install.json"),
        json!({"run": [{"method": "shell.run", "params": {"message": "sleep 1.5"}}]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("start.json"),
        json!({"daemon": true, "run": [{"method": "shell.run", "params": {
            "message": "echo ready; sleep 60", "on": [{"event": "/ready/", "done": true}]
        }}]})
        .to_string(),
    )
    .unwrap();
    let running = RunningScripts::new(&e);
    assert_eq!(running.active(), None);
    // an install in progress is use
    let install = dir.join("install.json").display().to_string();
    let th = {
        let e = e.clone();
        let install = install.clone();
        std::thread::spawn(move || e.run(RunRequest::new(&install)))
    };
    let t0 = Instant::now();
    while !e.is_running(&install) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        running.active().as_deref(),
        Some("running: srv/install.json")
    );
    assert_eq!(th.join().unwrap().status, RunStatus::Finished);
    assert_eq!(running.active(), None);
    // a started server (idle daemon) is not
    let start = dir.join("start.json").display().to_string();
    assert_eq!(e.run(RunRequest::new(&start)).status, RunStatus::Daemon);
    assert_eq!(running.active(), None);
    let pid = e.processes().shells_of(&start)[0].pid;

    let clock = Arc::new(FakeClock::new());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    let mut watch = IdleWatch::for_engine(
        &e,
        IdlePolicy::new(MIN),
        clock.clone(),
        InstancePlan::Off,
        Arc::new(move |x: &IdleNotice| n.lock().unwrap().push(x.clone())),
    );
    // a request through a frontend postpones
    clock.advance(50 * Duration::from_secs(1));
    e.activity().touch();
    assert!(watch.check().is_empty());
    clock.advance(50 * Duration::from_secs(1));
    let n = watch.check();
    assert!(matches!(n.as_slice(), [IdleNotice::Soon { .. }]), "{n:?}");
    clock.advance(10 * Duration::from_secs(1));
    let n = watch.check();
    assert!(
        matches!(n.as_slice(), [IdleNotice::StoppingApps { apps, .. }] if apps == &["srv".to_string()]),
        "{n:?}"
    );
    assert!(!e.is_running(&start));
    let t0 = Instant::now();
    while alive(pid) {
        assert!(t0.elapsed() < Duration::from_secs(10), "server still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_watcher_thread_says_it_watches_then_acts() {
    let clock = Arc::new(FakeClock::new());
    let apps = Arc::new(FakeApps::default());
    apps.running.lock().unwrap().push("comfy".into());
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    let mut policy = IdlePolicy::new(10 * MIN);
    policy.check_every = MIN;
    let watch = IdleWatch::new(
        policy,
        clock.clone(),
        Vec::new(),
        apps.clone(),
        InstancePlan::Off,
        Arc::new(move |x: &IdleNotice| n.lock().unwrap().push(x.clone())),
    );
    let handle = idle::spawn(watch).unwrap();
    let t0 = Instant::now();
    while *apps.stops.lock().unwrap() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{:?}",
            notices.lock().unwrap()
        );
        clock.advance(MIN);
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.stop();
    let all = notices.lock().unwrap().clone();
    assert!(matches!(all[0], IdleNotice::Watching { .. }), "{all:?}");
    assert!(all[0]
        .to_string()
        .starts_with("idle shutdown on: apps stop after 10 min"));
    assert!(all
        .iter()
        .any(|x| matches!(x, IdleNotice::StoppingApps { .. })));
}
