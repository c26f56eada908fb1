//! Shell benchmarks (`cargo bench -p pinokio-core --bench shell`).
//!
//! Targets from the issue (recorded in docs/benchmarks.md):
//! - overhead of a `shell.run` step over running the same command directly
//!   in bash: under 20 ms median (pinokiod: 1,256 ms)
//! - from a line printed by the child to the `on` handler firing and the
//!   next step starting: under 5 ms median (pinokiod: 8.6 ms)
//! - engine memory while 10 shells are running: under 40 MB RSS (pinokiod:
//!   183 MiB idle)

use std::sync::Arc;
use std::time::{Duration, Instant};

use pinokio_core::events::{CollectSink, EventKind, NullSink};
use pinokio_core::{Engine, Facts, PinokioHome, RunRequest};
use serde_json::json;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn line(name: &str, value: String, target: &str, ok: bool) {
    println!(
        "{name:<52} {value:>14}   target {target:>10}   {}",
        if ok { "PASS" } else { "FAIL" }
    );
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    env.remove("PYTHONUNBUFFERED");
    let engine = Engine::builder(PinokioHome::new(tmp.path().join("home")))
        .facts(Facts::cpu_only())
        .env(env.clone())
        .sink(Arc::new(NullSink))
        .build()
        .unwrap();
    let app = engine.home().api().join("bench");
    std::fs::create_dir_all(&app).unwrap();

    // 1. per-step overhead: 20 `shell.run` steps of `true` vs 20 direct bash runs
    let steps: Vec<_> = (0..20)
        .map(|_| json!({"method": "shell.run", "params": {"message": "true"}}))
        .collect();
    std::fs::write(app.join("true.json"), json!({ "run": steps }).to_string()).unwrap();
    let mut engine_runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        assert!(engine.run(RunRequest::new("~/api/bench/true.json")).ok());
        engine_runs.push(t.elapsed() / 20);
    }
    let mut direct = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..20 {
            std::process::Command::new("bash")
                .args(["--noprofile", "--norc", "-c", "true"])
                .status()
                .unwrap();
        }
        direct.push(t.elapsed() / 20);
    }
    let (e, d) = (median(engine_runs), median(direct));
    let overhead = e.saturating_sub(d);
    line(
        "shell.run step overhead over bash -c (median)",
        format!("{:.2} ms", overhead.as_secs_f64() * 1000.0),
        "20 ms",
        overhead < Duration::from_millis(20),
    );
    println!(
        "    (per step: engine {:.2} ms, direct bash {:.2} ms)",
        e.as_secs_f64() * 1000.0,
        d.as_secs_f64() * 1000.0
    );

    // 2. latency from a printed line to the next step starting
    let sink = CollectSink::new();
    let engine2 = Engine::builder(PinokioHome::new(tmp.path().join("home2")))
        .facts(Facts::cpu_only())
        .env(env)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let app2 = engine2.home().api().join("lat");
    std::fs::create_dir_all(&app2).unwrap();
    std::fs::write(
        app2.join("lat.json"),
        json!({"run": [
            {"method": "shell.run", "params": {
                "message": "python3 -c \"import time; time.sleep(0.3); print('T=%d' % time.time_ns()); time.sleep(30)\"",
                "on": [{"event": "/T=(\\d+)/", "done": true}]
            }},
            {"method": "log", "params": {"raw": "{{input.event[1]}}"}}
        ]})
        .to_string(),
    )
    .unwrap();
    let mut lat = Vec::new();
    for _ in 0..15 {
        sink.take();
        assert!(engine2.run(RunRequest::new("~/api/lat/lat.json")).ok());
        let events = sink.take();
        let printed: Option<u128> = events.iter().find_map(|e| match &e.kind {
            EventKind::Output {
                index: Some(1),
                text,
            } => text.trim().parse().ok(),
            _ => None,
        });
        let started = events.iter().find_map(|e| match &e.kind {
            EventKind::StepStart { index: 1, .. } => Some(e.time_ms as u128),
            _ => None,
        });
        if let (Some(p), Some(s)) = (printed, started) {
            let p_ms = p / 1_000_000;
            lat.push(Duration::from_millis(s.saturating_sub(p_ms) as u64));
        }
    }
    let l = median(lat);
    line(
        "printed line -> on handler -> next step (median)",
        format!("{} ms", l.as_millis()),
        "5 ms",
        l <= Duration::from_millis(5),
    );

    // 3. memory while 10 shells run
    for i in 0..10 {
        std::fs::write(
            app.join(format!("srv{i}.json")),
            json!({"daemon": true, "run": [
                {"method": "shell.run", "params": {"message": "echo up; sleep 600", "on": [{"event": "/up/", "done": true}]}}
            ]})
            .to_string(),
        )
        .unwrap();
        assert!(engine
            .run(RunRequest::new(format!("~/api/bench/srv{i}.json")))
            .ok());
    }
    std::thread::sleep(Duration::from_millis(300));
    let running = engine
        .processes()
        .list()
        .iter()
        .filter(|r| r.running)
        .count();
    let rss = rss_kib();
    line(
        &format!("engine RSS with {running} shells running"),
        format!("{:.1} MB", rss as f64 / 1024.0),
        "40 MB",
        rss < 40 * 1024,
    );
    engine.shutdown();
}
