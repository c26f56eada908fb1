//! The downloader and `fs.download` against a real HTTP/1.1 server on
//! 127.0.0.1 written here.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinokio_core::download::{download, DownloadError, DownloadOptions};
use pinokio_core::{Engine, PinokioHome, RunRequest, RunStatus};
use reqwest::blocking::Client;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Cfg {
    data: Vec<u8>,
    ranges: bool,
    disposition: Option<String>,
    /// Close the connection mid-body for the first N GETs.
    faults: AtomicUsize,
    /// Answer 503 with Retry-After: 1 to the first N requests.
    unavailable: AtomicUsize,
    /// Send 1 KiB every 20 ms.
    slow: bool,
    /// Answer 503 with Retry-After: 1 to the first N GETs.
    unavailable_gets: AtomicUsize,
    /// Claim a range one byte later than the one asked for.
    wrong_range: bool,
}

#[derive(Default)]
struct Stats {
    gets: AtomicUsize,
    heads: AtomicUsize,
    body_bytes: AtomicU64,
    ranged_gets: AtomicUsize,
    /// GETs sent by the downloader's built-in HTTP/1.1 reader (it asks for
    /// `Accept-Encoding: identity`, spelled so; reqwest does not).
    builtin_gets: AtomicUsize,
    times: Mutex<Vec<Instant>>,
}

struct Server {
    base: String,
    stats: Arc<Stats>,
}

fn serve(cfg: Cfg) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let cfg = Arc::new(cfg);
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (cfg, st) = (cfg.clone(), st.clone());
            std::thread::spawn(move || {
                let _ = handle(c, &cfg, &st);
            });
        }
    });
    Server { base, stats }
}

fn handle(mut c: TcpStream, cfg: &Cfg, st: &Stats) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut range: Option<(u64, Option<u64>)> = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if h == "Accept-Encoding: identity\r\n" && method == "GET" {
            st.builtin_gets.fetch_add(1, Ordering::SeqCst);
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        if k.eq_ignore_ascii_case("range") {
            let v = v.trim().trim_start_matches("bytes=");
            let (a, b) = v.split_once('-').unwrap();
            range = Some((a.parse().unwrap(), b.parse().ok()));
        }
    }
    st.times.lock().unwrap().push(Instant::now());
    if method == "GET" {
        st.gets.fetch_add(1, Ordering::SeqCst);
    } else {
        st.heads.fetch_add(1, Ordering::SeqCst);
    }
    if cfg
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return c.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if method == "GET"
        && cfg
            .unavailable_gets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return c.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if path.starts_with("/redirect") {
        return c.write_all(
            b"HTTP/1.1 302 Found\r\nLocation: /files/data.bin?sig=SECRET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let len = cfg.data.len() as u64;
    let (status, start, end) = match range.filter(|_| cfg.ranges) {
        Some((a, b)) => {
            st.ranged_gets
                .fetch_add((method == "GET") as usize, Ordering::SeqCst);
            (
                "206 Partial Content",
                a,
                b.map(|b| b + 1).unwrap_or(len).min(len),
            )
        }
        None => ("200 OK", 0, len),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\nETag: \"v1\"\r\n",
        end - start
    );
    if cfg.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
        if status.starts_with("206") {
            head.push_str(&format!(
                "Content-Range: bytes {}-{}/{len}\r\n",
                start + cfg.wrong_range as u64,
                end - 1
            ));
        }
    }
    if let Some(d) = &cfg.disposition {
        head.push_str(&format!("Content-Disposition: {d}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes())?;
    if method != "GET" {
        return Ok(());
    }
    let body = &cfg.data[start as usize..end as usize];
    let body = if body.len() > 1000
        && cfg
            .faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let half = &body[..body.len() / 2];
        c.write_all(half)?;
        st.body_bytes.fetch_add(half.len() as u64, Ordering::SeqCst);
        c.flush()?;
        let _ = c.shutdown(std::net::Shutdown::Both);
        return Ok(());
    } else {
        body
    };
    if cfg.slow {
        for ch in body.chunks(1024) {
            c.write_all(ch)?;
            st.body_bytes.fetch_add(ch.len() as u64, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        c.write_all(body)?;
        st.body_bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
    }
    Ok(())
}

fn data(n: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().no_proxy().build().unwrap()
}

fn fast() -> DownloadOptions {
    DownloadOptions {
        backoff: Duration::from_millis(20),
        ..Default::default()
    }
}

/// [`fast`] with segment bodies read by the built-in reader or by reqwest.
fn fast_with(builtin: bool) -> DownloadOptions {
    DownloadOptions {
        builtin_http: builtin,
        ..fast()
    }
}

/// The segment GETs went through the client the case asked for.
fn check_client(s: &Server, builtin: bool) {
    let gets = s.stats.gets.load(Ordering::SeqCst);
    let by_builtin = s.stats.builtin_gets.load(Ordering::SeqCst);
    match builtin {
        true => assert!(by_builtin > 0, "no GET came from the built-in reader"),
        false => assert_eq!(by_builtin, 0, "{by_builtin} of {gets} GETs"),
    }
}

fn get(
    url: &str,
    dest: &Path,
    opts: &DownloadOptions,
) -> Result<pinokio_core::download::DownloadOutcome, DownloadError> {
    download(&client(), url, dest, opts, &|_| {}, &AtomicBool::new(false))
}

fn no_temp(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn resume_after_fault_reuses_part_data(builtin: bool) {
    let body = data(200_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        faults: AtomicUsize::new(1),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("f.bin");
    let opts = DownloadOptions {
        retries: Some(0),
        ..fast_with(builtin)
    };
    let e = get(&format!("{}/f.bin", s.base), &dest, &opts).unwrap_err();
    assert!(e.to_string().contains("/f.bin"), "{e}");
    assert!(!dest.exists());
    assert!(t.path().join("f.bin.part").exists());
    let out = get(&format!("{}/f.bin", s.base), &dest, &opts).unwrap();
    assert_eq!(out.resumed_from, 100_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(s.stats.body_bytes.load(Ordering::SeqCst), 200_000);
    assert_eq!(s.stats.ranged_gets.load(Ordering::SeqCst), 1);
    no_temp(t.path());
    check_client(&s, builtin);
}

fn segmented_download_is_identical(builtin: bool) {
    let body = data(3_000_001);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("seg.bin");
    let opts = DownloadOptions {
        connections: Some(4),
        sha256: Some(sha(&body)),
        ..fast_with(builtin)
    };
    get(&format!("{}/seg.bin", s.base), &dest, &opts).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(s.stats.ranged_gets.load(Ordering::SeqCst), 4);
    no_temp(t.path());
    check_client(&s, builtin);
}

fn segmented_download_retries_faults(builtin: bool) {
    let body = data(1_000_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        faults: AtomicUsize::new(3),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("seg.bin");
    let opts = DownloadOptions {
        connections: Some(4),
        ..fast_with(builtin)
    };
    get(&format!("{}/seg.bin", s.base), &dest, &opts).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(s.stats.body_bytes.load(Ordering::SeqCst), 1_000_000);
    check_client(&s, builtin);
}

fn sha256_mismatch_keeps_nothing_and_match_passes(builtin: bool) {
    let body = data(50_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("c.bin");
    let bad = DownloadOptions {
        sha256: Some("00".repeat(32)),
        ..fast_with(builtin)
    };
    let e = get(&format!("{}/c.bin?token=SECRET", s.base), &dest, &bad).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("sha256 mismatch") && !m.contains("SECRET"),
        "{m}"
    );
    assert!(!dest.exists());
    no_temp(t.path());
    let good = DownloadOptions {
        sha256: Some(sha(&body)),
        ..fast_with(builtin)
    };
    get(&format!("{}/c.bin", s.base), &dest, &good).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    check_client(&s, builtin);
}

#[test]
fn existing_complete_file_is_skipped() {
    let body = data(10_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("e.bin");
    std::fs::write(&dest, &body).unwrap();
    let out = get(&format!("{}/e.bin", s.base), &dest, &fast()).unwrap();
    assert!(out.skipped);
    assert_eq!(s.stats.gets.load(Ordering::SeqCst), 0);
    // A shorter file is not complete.
    std::fs::write(&dest, &body[..10]).unwrap();
    let out = get(&format!("{}/e.bin", s.base), &dest, &fast()).unwrap();
    assert!(!out.skipped);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

fn server_without_ranges_works_and_restarts_from_zero(builtin: bool) {
    let body = data(100_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: false,
        faults: AtomicUsize::new(1),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("n.bin");
    let opts = DownloadOptions {
        connections: Some(4),
        ..fast_with(builtin)
    };
    get(&format!("{}/n.bin", s.base), &dest, &opts).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(s.stats.ranged_gets.load(Ordering::SeqCst), 0);
    no_temp(t.path());
    check_client(&s, builtin);
}

fn unavailable_then_ok_honours_retry_after(builtin: bool) {
    let body = data(5_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        unavailable: AtomicUsize::new(1),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("u.bin");
    get(&format!("{}/u.bin", s.base), &dest, &fast_with(builtin)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let times = s.stats.times.lock().unwrap();
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    check_client(&s, builtin);
}

fn write_script(home: &Path, app: &str, script: serde_json::Value) -> String {
    let dir = home.join("api").join(app);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x.json"), script.to_string()).unwrap();
    format!("~/api/{app}/x.json")
}

fn engine(home: &Path) -> Engine {
    Engine::builder(PinokioHome::new(home))
        .facts(pinokio_core::Facts::cpu_only())
        .build()
        .unwrap()
}

#[test]
fn fs_download_into_dir_via_engine_with_redirect_and_disposition() {
    let body = data(40_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        disposition: Some("attachment; filename=\"model.safetensors\"".into()),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let uri = write_script(
        t.path(),
        "app",
        serde_json::json!({ "run": [{ "method": "fs.download", "params": {
            "url": [format!("{}/redirect", s.base)], "dir": "models", "sha256": sha(&body) } }] }),
    );
    let o = engine(t.path()).run(RunRequest::new(uri));
    assert!(o.ok(), "{o:?}");
    assert_eq!(o.result, None);
    let f = t.path().join("api/app/models/model.safetensors");
    assert_eq!(std::fs::read(f).unwrap(), body);
}

#[test]
fn fs_download_path_without_disposition_and_error_names_url() {
    let body = data(1_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let uri = write_script(
        t.path(),
        "app",
        serde_json::json!({ "run": [
            { "method": "fs.download", "params": { "uri": format!("{}/a/b/w.bin?x=1", s.base), "dir": "d" } },
            { "method": "fs.download", "params": { "url": format!("{}/bad.bin?token=SECRET", s.base), "path": "p.bin", "md5": "00" } }
        ] }),
    );
    let o = engine(t.path()).run(RunRequest::new(uri));
    assert_eq!(
        std::fs::read(t.path().join("api/app/d/w.bin")).unwrap(),
        body
    );
    let m = format!("{:?}", o.error);
    assert!(
        !o.ok() && m.contains("/bad.bin") && m.contains("md5") && !m.contains("SECRET"),
        "{m}"
    );
    assert!(!t.path().join("api/app/p.bin").exists());
}

#[test]
fn stop_cancels_download_promptly() {
    let body = data(2_000_000);
    let s = serve(Cfg {
        data: body,
        ranges: true,
        slow: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let uri = write_script(
        t.path(),
        "app",
        serde_json::json!({ "run": [{ "method": "fs.download", "params": {
            "url": format!("{}/slow.bin", s.base), "path": "slow.bin" } }] }),
    );
    let e = engine(t.path());
    let id = t
        .path()
        .join("api/app/x.json")
        .to_string_lossy()
        .into_owned();
    let e2 = e.clone();
    let runner = std::thread::spawn(move || e2.run(RunRequest::new(uri)));
    let start = Instant::now();
    while s.stats.body_bytes.load(Ordering::SeqCst) < 10_000 {
        assert!(start.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let at = Instant::now();
    assert!(e.stop(&id));
    let o = runner.join().unwrap();
    assert_eq!(o.status, RunStatus::Stopped, "{o:?}");
    assert!(at.elapsed() < Duration::from_secs(1), "{:?}", at.elapsed());
    assert!(!t.path().join("api/app/slow.bin").exists());
    assert!(t.path().join("api/app/slow.bin.part").exists());
}

/// A file big enough for direct writes, cut at unaligned offsets on one and
/// on four connections, resumes byte-exactly.
#[test]
fn large_file_resumes_byte_exactly_across_direct_writes() {
    let body = data(64 * 1024 * 1024 + 3 * 4097 + 5);
    for connections in [1, 4] {
        let s = serve(Cfg {
            data: body.clone(),
            ranges: true,
            faults: AtomicUsize::new(2),
            ..Default::default()
        });
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("big.bin");
        let opts = DownloadOptions {
            connections: Some(connections),
            retries: Some(0),
            sha256: Some(sha(&body)),
            ..fast()
        };
        let url = format!("{}/big.bin", s.base);
        get(&url, &dest, &opts).unwrap_err();
        assert!(!dest.exists());
        let opts = DownloadOptions {
            retries: Some(3),
            ..opts
        };
        let out = get(&url, &dest, &opts).unwrap();
        assert!(out.resumed_from > 0, "{connections}: nothing was resumed");
        assert_eq!(std::fs::read(&dest).unwrap(), body, "{connections}");
        no_temp(t.path());
    }
}

/// A GET answered 503 (after a good HEAD) is retried after Retry-After.
fn segment_unavailable_then_ok(builtin: bool) {
    let body = data(300_000);
    let s = serve(Cfg {
        data: body.clone(),
        ranges: true,
        unavailable_gets: AtomicUsize::new(1),
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("g.bin");
    get(&format!("{}/g.bin", s.base), &dest, &fast_with(builtin)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let times = s.stats.times.lock().unwrap().clone();
    // HEAD, the refused GET, then the GET a second later
    let gap = times[2] - times[1];
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    check_client(&s, builtin);
}

/// A server that sends a different range than the one asked for fails the
/// download instead of writing its bytes at the wrong place.
fn wrong_range_is_refused(builtin: bool) {
    let body = data(100_000);
    let s = serve(Cfg {
        data: body,
        ranges: true,
        wrong_range: true,
        ..Default::default()
    });
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("w.bin");
    let opts = DownloadOptions {
        connections: Some(2),
        ..fast_with(builtin)
    };
    let e = get(&format!("{}/w.bin", s.base), &dest, &opts).unwrap_err();
    assert!(e.to_string().contains("asked for bytes from"), "{e}");
    assert!(!dest.exists());
    check_client(&s, builtin);
}

/// The cases above, once with each client for segment bodies.
macro_rules! with_each_client {
    ($($case:ident),* $(,)?) => {
        mod builtin_reader {
            $( #[test] fn $case() { super::$case(true) } )*
        }
        mod reqwest_reader {
            $( #[test] fn $case() { super::$case(false) } )*
        }
    };
}

with_each_client!(
    resume_after_fault_reuses_part_data,
    segmented_download_is_identical,
    segmented_download_retries_faults,
    sha256_mismatch_keeps_nothing_and_match_passes,
    server_without_ranges_works_and_restarts_from_zero,
    unavailable_then_ok_honours_retry_after,
    segment_unavailable_then_ok,
    wrong_range_is_refused,
);
