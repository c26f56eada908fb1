//! Archive extraction for every supported format, escape refusal, and
//! `fs.download` with `extract: true` against a 127.0.0.1 server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pinokio_core::extract::{extract, ExtractError};
use pinokio_core::{Engine, PinokioHome, RunRequest};

/// A tar with `top/run.sh` (0755), `top/data.txt` and `top/sub/`.
fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("top/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    add("top/data.txt", b"hello", 0o644);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_cksum();
    b.append_data(&mut h, "top/sub/", std::io::empty()).unwrap();
    b.into_inner().unwrap()
}

fn check(dest: &Path, exec: bool) {
    assert_eq!(std::fs::read(dest.join("top/data.txt")).unwrap(), b"hello");
    let run = dest.join("top/run.sh");
    assert_eq!(std::fs::read(&run).unwrap(), b"#!/bin/sh\necho hi\n");
    if exec {
        let mode = std::fs::metadata(&run).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "mode {mode:o}");
    }
    assert!(dest.join("top/sub").is_dir());
}

fn only_entry(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn roundtrip(name: &str, bytes: Vec<u8>, exec: bool) {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join(name);
    std::fs::write(&a, bytes).unwrap();
    let dest = t.path().join("out");
    let files = extract(&a, &dest).unwrap();
    assert!(files.contains(&dest.join("top/run.sh")), "{files:?}");
    check(&dest, exec);
    // The temporary folder is gone.
    assert_eq!(only_entry(t.path()), vec![name.to_string(), "out".into()]);
}

#[test]
fn tar_family() {
    let tar = tar_bytes();
    roundtrip("a.tar", tar.clone(), true);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    roundtrip("a.tgz", gz.finish().unwrap(), true);

    let mut xz =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    xz.write_all(&tar).unwrap();
    roundtrip("a.tar.xz", xz.finish().unwrap(), true);

    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    roundtrip("a.tar.bz2", bz.finish().unwrap(), true);

    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    roundtrip("a.tar.zst", zst, true);
}

#[test]
fn zip_keeps_modes() {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("top/run.sh", o.unix_permissions(0o755))
        .unwrap();
    w.write_all(b"#!/bin/sh\necho hi\n").unwrap();
    w.start_file("top/data.txt", o.unix_permissions(0o644))
        .unwrap();
    w.write_all(b"hello").unwrap();
    w.add_directory("top/sub/", o).unwrap();
    roundtrip("a.zip", w.finish().unwrap().into_inner(), true);
}

#[test]
fn sevenz() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("top/sub")).unwrap();
    std::fs::write(src.join("top/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(src.join("top/data.txt"), b"hello").unwrap();
    let a = t.path().join("a.7z");
    sevenz_rust2::compress_to_path(&src, &a).unwrap();
    roundtrip("a.7z", std::fs::read(&a).unwrap(), false);
}

fn raw_tar(path: &[u8], link: Option<(&[u8], tar::EntryType)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.set_size(if link.is_some() { 0 } else { 4 });
    h.set_mode(0o644);
    {
        let raw = h.as_old_mut();
        raw.name[..path.len()].copy_from_slice(path);
        if let Some((target, kind)) = link {
            raw.linkname[..target.len()].copy_from_slice(target);
            raw.linkflag = [kind.as_byte()];
        }
    }
    h.set_cksum();
    let data: &[u8] = if link.is_some() { b"" } else { b"evil" };
    // A harmless entry first, so "nothing left behind" is meaningful.
    let mut ok = tar::Header::new_gnu();
    ok.set_size(2);
    ok.set_mode(0o644);
    ok.set_cksum();
    b.append_data(&mut ok, "fine.txt", &b"ok"[..]).unwrap();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

fn refused(bytes: Vec<u8>) {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("bad.tar");
    std::fs::write(&a, bytes).unwrap();
    let dest = t.path().join("out");
    let e = extract(&a, &dest).unwrap_err();
    assert!(matches!(e, ExtractError::Escape { .. }), "{e:?}");
    assert_eq!(only_entry(t.path()), vec!["bad.tar".to_string()]);
}

#[test]
fn escaping_entries_are_refused_and_leave_nothing() {
    refused(raw_tar(b"../evil", None));
    refused(raw_tar(b"/tmp/evil-abs", None));
    refused(raw_tar(b"a/../../evil", None));
    refused(raw_tar(
        b"link",
        Some((b"../outside", tar::EntryType::Symlink)),
    ));
    refused(raw_tar(
        b"link",
        Some((b"/etc/passwd", tar::EntryType::Symlink)),
    ));
    refused(raw_tar(
        b"hard",
        Some((b"../outside", tar::EntryType::Link)),
    ));
}

#[test]
fn unknown_extension_errors_clearly() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("x.rar");
    std::fs::write(&a, b"x").unwrap();
    let e = extract(&a, &t.path().join("o")).unwrap_err();
    assert!(
        matches!(&e, ExtractError::Unsupported { format } if format == ".rar"),
        "{e:?}"
    );
    assert!(e.to_string().contains(".rar"));
}

#[test]
fn fs_download_extract_true_via_engine() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            if line.starts_with("GET") {
                let _ = c.write_all(&body);
            }
        }
    });
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("api/app");
    std::fs::create_dir_all(&dir).unwrap();
    let script = serde_json::json!({ "run": [{ "method": "fs.download", "params": {
        "url": format!("{base}/files/pkg.tar.gz"), "dir": "models", "extract": true } }] });
    std::fs::write(dir.join("x.json"), script.to_string()).unwrap();
    let engine = Engine::builder(PinokioHome::new(t.path()))
        .facts(pinokio_core::Facts::cpu_only())
        .build()
        .unwrap();
    let o = engine.run(RunRequest::new("~/api/app/x.json"));
    assert!(o.ok(), "{o:?}");
    let models = dir.join("models");
    check(&models, true);
    assert!(!models.join("pkg.tar.gz").exists(), "archive removed");
    assert_eq!(
        only_entry(&dir),
        vec!["models".to_string(), "x.json".into()]
    );
}
