//! Catalog benchmarks (`cargo bench -p pinokio-core --bench catalog`).
//!
//! Target from the issue: a catalog search over the 284 apps takes under
//! 10 ms. A plain timing harness (no external bench framework): each
//! measurement is repeated and the median is printed, one line per
//! benchmark, plus a PASS/FAIL against its target.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pinokio_core::catalog::Catalog;

/// (label, text, category, tag)
type Query = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, d: Duration, target: Duration) -> bool {
    let ok = d <= target;
    println!(
        "{name:<48} median {:>10.3} ms   target {:>8.3} ms   {}",
        d.as_secs_f64() * 1000.0,
        target.as_secs_f64() * 1000.0,
        if ok { "PASS" } else { "FAIL" }
    );
    ok
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

fn main() {
    let mut all_ok = true;

    // parse + validate the embedded catalog (first call, then cached)
    let t = Instant::now();
    let catalog = Catalog::builtin();
    let first = t.elapsed();
    assert_eq!(catalog.len(), 284);
    report(
        "(info) parse the built-in catalog (first call)",
        first,
        Duration::from_millis(50),
    );
    let d = time(50, || {
        black_box(Catalog::builtin());
    });
    report(
        "(info) Catalog::builtin() again (cached clone)",
        d,
        Duration::from_millis(10),
    );

    let queries: &[Query] = &[
        ("search \"comfyui\" (exact id)", Some("comfyui"), None, None),
        (
            "search \"flux\" (prefixes, names, tags)",
            Some("flux"),
            None,
            None,
        ),
        (
            "search \"e\" (almost everything matches)",
            Some("e"),
            None,
            None,
        ),
        (
            "search \"text to speech\" (multi-word)",
            Some("text to speech"),
            None,
            None,
        ),
        (
            "search \"zzzz-no-match\"",
            Some("zzzz-no-match"),
            None,
            None,
        ),
        (
            "search --category AUDIO --tag TTS",
            None,
            Some("AUDIO"),
            Some("TTS"),
        ),
        ("search (no text: all 284)", None, None, None),
    ];
    for (name, text, category, tag) in queries {
        let d = time(200, || {
            black_box(catalog.search(black_box(*text), *category, *tag));
        });
        all_ok &= report(name, d, Duration::from_millis(10));
    }
    let d = time(200, || {
        black_box(catalog.suggest(black_box("comfy-ui")));
    });
    all_ok &= report("suggest \"comfy-ui\"", d, Duration::from_millis(10));

    if !all_ok {
        println!("some targets were missed");
    }
}
