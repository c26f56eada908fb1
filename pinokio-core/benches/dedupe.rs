//! Dedupe hashing benchmark (`cargo bench -p pinokio-core --bench dedupe`).
//!
//! Target from the issue: hashing for dedupe runs at least 0.8x the speed of
//! `sha256sum` on the same files. Both hash the same files, one after the
//! other on one thread, from the page cache (a warm-up pass reads them
//! first); the best of 5 runs is kept for each. Also printed: a whole
//! `dedupe` dry run over two apps (cold hash cache, all CPUs) and a second
//! run answered from the hash cache.
//!
//! `DEDUPE_BENCH_MIB` sets the size of each of the 4 files (default 128).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pinokio_core::drive::{self, DedupeOptions, Drive};
use pinokio_core::PinokioHome;

fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Pseudo-random bytes (xorshift), so nothing compresses or repeats.
fn fill(path: &Path, len: usize, mut seed: u64) {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        buf.extend_from_slice(&seed.to_le_bytes());
    }
    buf.truncate(len);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, buf).unwrap();
}

fn main() {
    let mib: usize = std::env::var("DEDUPE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let dir = tempfile::tempdir().unwrap();
    let home = PinokioHome::new(dir.path().join("home"));
    home.ensure().unwrap();
    // two apps with the same two files: 4 files, every one a dedupe candidate
    let mut files: Vec<PathBuf> = Vec::new();
    for app in ["a", "b"] {
        for (i, seed) in [(0u64, 0x9e37_79b9_7f4a_7c15u64), (1, 0xdead_beef_cafe_f00d)] {
            let p = home.api().join(app).join(format!("models/m{i}.bin"));
            fill(&p, mib << 20, seed);
            files.push(p);
        }
    }
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    // warm the page cache
    for f in &files {
        drive::hash_file(f).unwrap();
    }
    let ours = best(5, || {
        for f in &files {
            std::hint::black_box(drive::hash_file(f).unwrap());
        }
    });
    let have_sha256sum = Command::new("sha256sum").arg("--version").output().is_ok();
    println!(
        "hashing {} files of {mib} MiB ({:.0} MiB), one thread, page cache warm, best of 5",
        files.len(),
        total as f64 / 1048576.0
    );
    println!(
        "{:<40} {:>8.1} ms  {:>8.0} MiB/s",
        "pinokio drive::hash_file",
        ours.as_secs_f64() * 1000.0,
        mib_s(total, ours)
    );
    let mut pass = true;
    if have_sha256sum {
        let theirs = best(5, || {
            let out = Command::new("sha256sum").args(&files).output().unwrap();
            assert!(out.status.success());
        });
        let ratio = mib_s(total, ours) / mib_s(total, theirs);
        pass = ratio >= 0.8;
        println!(
            "{:<40} {:>8.1} ms  {:>8.0} MiB/s",
            "sha256sum (coreutils)",
            theirs.as_secs_f64() * 1000.0,
            mib_s(total, theirs)
        );
        println!(
            "{:<40} {:>8.2}x   target >= 0.80x   {}",
            "speed relative to sha256sum",
            ratio,
            if pass { "PASS" } else { "FAIL" }
        );
    } else {
        println!("sha256sum not found: no comparison");
    }
    let d = Drive::for_home(&home);
    let dry = DedupeOptions {
        dry_run: true,
        ..Default::default()
    };
    let t = Instant::now();
    let r = drive::dedupe(&home, &d, &dry, &|_| {}).unwrap();
    let cold = t.elapsed();
    assert_eq!(r.hashed_files, 4);
    let t = Instant::now();
    let r2 = drive::dedupe(&home, &d, &dry, &|_| {}).unwrap();
    let warm = t.elapsed();
    assert_eq!(r2.cached_files, 4);
    println!(
        "{:<40} {:>8.1} ms  {:>8.0} MiB/s  ({} threads)",
        "dedupe --dry-run, cold hash cache",
        cold.as_secs_f64() * 1000.0,
        mib_s(total, cold),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<40} {:>8.1} ms",
        "dedupe --dry-run, second run (cache)",
        warm.as_secs_f64() * 1000.0
    );
    if !pass {
        std::process::exit(1);
    }
}
