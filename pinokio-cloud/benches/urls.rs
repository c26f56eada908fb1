//! URL detection and doctor benchmarks (`cargo bench -p pinokio-cloud
//! --bench urls`).
//!
//! Targets from issue 6: URL detection adds under 1 ms per log line;
//! `pinokio doctor` runs under 300 ms without a GPU. A plain timing harness
//! (no bench framework): medians of repeated runs, one line per benchmark
//! with PASS/FAIL against its target.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use pinokio_cloud::urls::{detect_line, UrlDetector};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    median(times)
}

fn report(name: &str, d: Duration, target: Duration) -> bool {
    let ok = d <= target;
    println!(
        "{name:<52} median {:>10.4} ms   target {:>8.3} ms   {}",
        d.as_secs_f64() * 1000.0,
        target.as_secs_f64() * 1000.0,
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

/// Every framework sample plus install noise, repeated to `n` lines.
fn corpus(n: usize) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs");
    let mut lines = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("log fixtures")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        lines.extend(
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    let base = lines.clone();
    while lines.len() < n {
        lines.extend(base.iter().cloned());
    }
    lines.truncate(n);
    lines
}

fn main() {
    let mut ok = true;
    let lines = corpus(20_000);

    // whole corpus through one detector per run: mean cost per line
    let total = time(15, || {
        let mut d = UrlDetector::new();
        for l in &lines {
            black_box(d.feed(l));
        }
    });
    ok &= report(
        "UrlDetector::feed, mean per line (20,000 mixed lines)",
        total / lines.len() as u32,
        Duration::from_millis(1),
    );

    // the slowest single line (median of its repeated runs)
    let uniq: std::collections::BTreeSet<&String> = lines.iter().collect();
    let mut worst = (Duration::ZERO, String::new());
    for l in uniq {
        let d = time(51, || {
            black_box(detect_line(l));
        });
        if d > worst.0 {
            worst = (d, l.clone());
        }
    }
    ok &= report(
        "detect_line, slowest single line",
        worst.0,
        Duration::from_millis(1),
    );
    println!(
        "    (slowest: {:?})",
        worst.1.chars().take(90).collect::<String>()
    );

    // ports of this process (one listener)
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pid = std::process::id();
    let d = time(51, || {
        black_box(pinokio_cloud::ports::listening_ports(pid));
    });
    assert!(pinokio_cloud::ports::listening_ports(pid).contains(&l.local_addr().unwrap()));
    report(
        "listening_ports(this process), info",
        d,
        Duration::from_millis(50),
    );

    // the doctor, in process (no GPU on the bench machine: NVML absent)
    let doc = pinokio_cloud::doctor::Doctor::system();
    let d = time(11, || {
        black_box(doc.run(None));
    });
    ok &= report(
        "Doctor::run (in process, tools in parallel)",
        d,
        Duration::from_millis(300),
    );

    if !ok {
        std::process::exit(1);
    }
}
