//! End-to-end tests of `pinokio search`, `pinokio info` and
//! `pinokio catalog update`. Every test uses its own temporary `--home`.

mod common;

use common::Env;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use predicates::prelude::*;
use serde_json::Value;

/// A small upstream-format list (the cleaned app list's shape).
const UPSTREAM: &str = r#"{
  "tts-one": {"name": "TTS One", "description": "A sentence that must not be copied.",
    "repo_url": "https://github.com/alice/tts-one", "clone_url": "https://github.com/alice/tts-one.git",
    "category": "AUDIO", "tags": ["pinokio-tagged", "TTS"], "author": "alice", "stars": 0,
    "has_install_js": true, "has_install_json": false, "has_pinokio_js": true,
    "installer_type": "js", "is_pinokio_app": true, "source": "test"},
  "omnisvg": {"name": "OmniSVG", "repo_url": "https://github.com/6Morpheus6/OmniSVG",
    "clone_url": "https://github.com/6Morpheus6/OmniSVG.git", "category": "IMAGE",
    "tags": ["SVG"], "author": "6Morpheus6", "installer_type": "js"}
}"#;

fn env_json(e: &Env, args: &[&str]) -> Value {
    let out = e.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn search_without_text_lists_the_whole_catalog() {
    let env = Env::new();
    let out = env.cmd().arg("search").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(
        lines[0].contains("CATEGORY") && lines[0].contains("NAME") && lines[0].contains("STATUS")
    );
    // header + 284 rows + footer
    assert_eq!(lines.len(), 286, "{text}");
    assert!(
        lines[285].starts_with("284 apps; 13 marked !"),
        "{}",
        lines[285]
    );
    let marked: Vec<&str> = lines[1..285]
        .iter()
        .filter(|l| l.contains("! "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(marked.len(), 13);
    assert!(marked.contains(&"framepack") && marked.contains(&"kittentts"));
    let kitten = lines.iter().find(|l| l.starts_with("kittentts ")).unwrap();
    assert!(kitten.ends_with("! not a launcher"), "{kitten}");
    let fp = lines.iter().find(|l| l.starts_with("framepack ")).unwrap();
    assert!(fp.ends_with("! missing"), "{fp}");
}

#[test]
fn search_ranks_and_filters() {
    let env = Env::new();
    let v = env_json(&env, &["search", "comfyui", "--json"]);
    assert_eq!(ids(&v)[0], "comfyui");
    // filters ignore case; every hit is an AUDIO app tagged TTS
    let v = env_json(
        &env,
        &["search", "--category", "audio", "--tag", "tts", "--json"],
    );
    let hits = v.as_array().unwrap();
    assert!(hits.len() > 5);
    for a in hits {
        assert_eq!(a["category"], "AUDIO");
        assert!(a["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().eq_ignore_ascii_case("tts")));
        assert!(a["status"].is_string() && a["summary"].is_string());
    }
    // several words: all must match somewhere
    let v = env_json(&env, &["search", "flux", "webui", "--json"]);
    assert!(ids(&v).contains(&"flux-webui".to_string()));
    // nothing: an empty list, exit 0
    let v = env_json(&env, &["search", "no-such-app-anywhere", "--json"]);
    assert_eq!(v, Value::Array(vec![]));
    env.cmd()
        .args(["search", "no-such-app-anywhere"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("no apps match"));
}

#[test]
fn info_shows_catalog_facts() {
    let env = Env::new();
    env.cmd()
        .args(["info", "comfyui"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("comfyui")
                .and(predicate::str::contains(
                    "https://github.com/cocktailpeanutlabs/comfyui",
                ))
                .and(predicate::str::contains("category     IMAGE"))
                .and(predicate::str::contains("status       ok"))
                .and(predicate::str::contains("installed    no"))
                .and(predicate::str::contains("launcher:").not()),
        );
    let v = env_json(&env, &["info", "kittentts", "--json"]);
    assert_eq!(v["status"], "not_a_launcher");
    assert_eq!(v["installed"], false);
    assert_eq!(v["launcher"], Value::Null);
    env.cmd()
        .args(["info", "ilaria-rvc"])
        .assert()
        .success()
        .stdout(predicate::str::contains("! missing"));
}

#[test]
fn info_of_an_installed_app_shows_its_launcher() {
    let env = Env::new();
    env.write(
        "home/api/comfyui/pinokio.js",
        r#"module.exports = {
  title: "My Comfy",
  description: "launcher text",
  menu: async (kernel, info) => [
    { default: true, text: "Install", href: "install.json" },
    { text: "Docs", href: "https://example.com/docs" }
  ]
}"#,
    );
    env.write("home/api/comfyui/install.json", r#"{"run": []}"#);
    env.cmd()
        .args(["info", "comfyui"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("installed    yes")
                .and(predicate::str::contains("title        My Comfy"))
                .and(predicate::str::contains("description  launcher text"))
                .and(predicate::str::contains("Install -> "))
                .and(predicate::str::contains("[default]"))
                .and(predicate::str::contains("Docs -> https://example.com/docs")),
        );
    let v = env_json(&env, &["info", "comfyui", "--json"]);
    assert_eq!(v["installed"], true);
    assert_eq!(v["launcher"]["title"], "My Comfy");
    assert_eq!(v["launcher"]["description"], "launcher text");
    assert_eq!(v["launcher"]["menu"][0]["text"], "Install");
    assert!(v["path"].as_str().unwrap().ends_with("comfyui"));
}

#[test]
fn info_of_an_unknown_id_suggests_close_ones() {
    let env = Env::new();
    env.cmd()
        .args(["info", "comfy-ui"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("unknown app id \"comfy-ui\"")
                .and(predicate::str::contains("did you mean"))
                .and(predicate::str::contains("comfyui")),
        );
    env.cmd()
        .args(["info", "qqqqqqqqqqqqqqq"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("unknown app id")
                .and(predicate::str::contains("did you mean").not()),
        );
}

#[test]
fn catalog_update_from_a_file_replaces_the_catalog() {
    let env = Env::new();
    env.write("cleaned.json", UPSTREAM);
    env.cmd()
        .args(["catalog", "update", "--from", "cleaned.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "catalog updated: 2 apps (1 missing, 0 not launchers)",
        ));
    let stored = std::fs::read_to_string(env.home().join("catalog.json")).unwrap();
    assert!(stored.contains("pinokio-catalog/1"));
    assert!(!stored.contains("must not be copied"));
    let v = env_json(&env, &["search", "--json"]);
    assert_eq!(ids(&v), vec!["omnisvg", "tts-one"]);
    assert_eq!(v[0]["status"], "missing");
    let v = env_json(&env, &["info", "tts-one", "--json"]);
    assert_eq!(v["tags"], serde_json::json!(["TTS"]));
    assert_eq!(v["summary"], "Audio app by alice (TTS)");
    env.cmd()
        .args(["search"])
        .assert()
        .success()
        .stdout(predicate::str::contains("[catalog: "));

    // a bad file: exit 1 naming it, the catalog stays as it was
    env.write("bad.json", r#"{"schema": "pinokio-catalog/1", "apps": []}"#);
    env.cmd()
        .args(["catalog", "update", "--from", "bad.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad.json").and(predicate::str::contains("no apps")));
    assert_eq!(
        std::fs::read_to_string(env.home().join("catalog.json")).unwrap(),
        stored
    );
    env.cmd()
        .args(["catalog", "update", "--from", "absent.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("absent.json"));
    assert_eq!(ids(&env_json(&env, &["search", "--json"])).len(), 2);
}

#[test]
fn catalog_update_from_a_url() {
    let env = Env::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut s = reader.into_inner();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{UPSTREAM}",
            UPSTREAM.len()
        )
        .unwrap();
        first
    });
    let url = format!("http://{addr}/cleaned_pinokio_apps.json");
    env.cmd()
        .args(["catalog", "update", "--from", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains("2 apps"));
    assert!(server
        .join()
        .unwrap()
        .starts_with("GET /cleaned_pinokio_apps.json "));
    assert_eq!(
        ids(&env_json(&env, &["search", "--json"])),
        vec!["omnisvg", "tts-one"]
    );

    // nothing listens there any more: exit 1 naming the URL
    env.cmd()
        .args(["catalog", "update", "--from", &url])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(url.as_str()));
    assert_eq!(ids(&env_json(&env, &["search", "--json"])).len(), 2);
}
