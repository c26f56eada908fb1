//! URL detection on log samples in each framework's own output format
//! (`tests/fixtures/logs/*.log`, ANSI colours where the framework prints
//! them).

use pinokio_cloud::urls::{detect_line, Confidence, DetectedUrl, UrlDetector, UrlKind};

fn sample(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn detect_all(name: &str) -> (UrlDetector, Vec<DetectedUrl>) {
    let mut d = UrlDetector::new();
    let mut found = Vec::new();
    for line in sample(name).lines() {
        found.extend(d.feed(line));
    }
    (d, found)
}

/// (url, framework, kind) of one reported URL.
type Seen = (String, &'static str, UrlKind);

/// (url, framework, kind) of each URL reported, in order.
fn summary(found: &[DetectedUrl]) -> Vec<Seen> {
    found
        .iter()
        .map(|d| (d.url.clone(), d.framework, d.kind))
        .collect()
}

fn s(url: &str, fw: &'static str, kind: UrlKind) -> Seen {
    (url.to_string(), fw, kind)
}

use UrlKind::{Local, Network, Public};

#[test]
fn every_framework_sample() {
    let tok = "5c0e3f1a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c";
    let jupyter_local = format!("http://127.0.0.1:8888/lab?token={tok}");
    let jupyter_host = format!("http://9f3c2a1b7d6e:8888/lab?token={tok}");
    // (sample, URLs reported in order, best URL)
    let cases: Vec<(&str, Vec<Seen>, String)> = vec![
        (
            "gradio.log",
            vec![
                s("http://127.0.0.1:7860", "gradio", Local),
                s("https://1f2e3d4c5b6a7980ab.gradio.live", "gradio", Public),
            ],
            "http://127.0.0.1:7860".into(),
        ),
        (
            "streamlit.log",
            vec![
                s("http://localhost:8501", "streamlit", Local),
                s("http://172.17.0.2:8501", "streamlit", Network),
                s("http://34.123.45.67:8501", "streamlit", Network),
            ],
            "http://localhost:8501".into(),
        ),
        (
            "uvicorn.log",
            vec![s("http://127.0.0.1:8000", "uvicorn", Local)],
            "http://127.0.0.1:8000".into(),
        ),
        (
            "flask.log",
            vec![
                s("http://127.0.0.1:5000", "flask", Local),
                s("http://172.17.0.2:5000", "flask", Network),
            ],
            "http://127.0.0.1:5000".into(),
        ),
        (
            "django.log",
            vec![s("http://127.0.0.1:8000/", "django", Local)],
            "http://127.0.0.1:8000/".into(),
        ),
        (
            "comfyui.log",
            vec![
                s("http://127.0.0.1:8188", "comfyui", Local),
                s("http://[::1]:8188", "comfyui", Local),
            ],
            "http://127.0.0.1:8188".into(),
        ),
        (
            "a1111.log",
            vec![s("http://127.0.0.1:7860", "a1111", Local)],
            "http://127.0.0.1:7860".into(),
        ),
        (
            "forge.log",
            vec![s("http://127.0.0.1:7860", "forge", Local)],
            "http://127.0.0.1:7860".into(),
        ),
        (
            "text-generation-webui.log",
            vec![s("http://127.0.0.1:7860", "text-generation-webui", Local)],
            "http://127.0.0.1:7860".into(),
        ),
        (
            // the config dump names OLLAMA_HOST among proxy settings (not
            // taken); the "Listening on" line is the server's own
            "ollama.log",
            vec![s("http://[::1]:11434", "ollama", Local)],
            "http://[::1]:11434".into(),
        ),
        (
            "vite.log",
            vec![s("http://localhost:5173/", "vite", Local)],
            "http://localhost:5173/".into(),
        ),
        (
            "nextjs.log",
            vec![
                s("http://localhost:3000", "nextjs", Local),
                s("http://172.17.0.2:3000", "nextjs", Network),
            ],
            "http://localhost:3000".into(),
        ),
        (
            "express.log",
            vec![s("http://localhost:3000", "express", Local)],
            "http://localhost:3000".into(),
        ),
        (
            "node.log",
            vec![s("http://127.0.0.1:3000/", "node", Local)],
            "http://127.0.0.1:3000/".into(),
        ),
        (
            "jupyter.log",
            vec![
                (jupyter_host.clone(), "jupyter", Network),
                (jupyter_local.clone(), "jupyter", Local),
            ],
            jupyter_local.clone(),
        ),
        (
            "tensorboard.log",
            vec![s("http://localhost:6006/", "tensorboard", Local)],
            "http://localhost:6006/".into(),
        ),
        (
            "sillytavern.log",
            vec![s("http://127.0.0.1:8000", "sillytavern", Local)],
            "http://127.0.0.1:8000".into(),
        ),
        (
            "fooocus.log",
            vec![s("http://127.0.0.1:7865/", "fooocus", Local)],
            "http://127.0.0.1:7865/".into(),
        ),
        (
            "koboldcpp.log",
            vec![
                s("http://localhost:5001/api/", "generic", Local),
                s("http://localhost:5001/v1/", "generic", Local),
                s("http://localhost:5001", "koboldcpp", Local),
            ],
            "http://localhost:5001".into(),
        ),
        (
            "http-server.log",
            vec![s("http://127.0.0.1:8000/", "generic", Local)],
            "http://127.0.0.1:8000/".into(),
        ),
    ];
    let mut frameworks = std::collections::BTreeSet::new();
    for (file, want, best) in &cases {
        let (d, found) = detect_all(file);
        assert_eq!(&summary(&found), want, "{file}");
        assert_eq!(
            d.best().map(|b| b.url.as_str()),
            Some(best.as_str()),
            "{file}: best"
        );
        frameworks.extend(found.iter().map(|f| f.framework));
    }
    frameworks.remove("generic");
    assert!(frameworks.len() >= 18, "{frameworks:?}");
}

#[test]
fn printed_form_and_confidence_are_kept() {
    let (d, _) = detect_all("comfyui.log");
    let first = &d.found()[0];
    assert_eq!(first.printed, "http://0.0.0.0:8188");
    assert_eq!(first.host, "127.0.0.1");
    assert_eq!(first.port, 8188);
    assert_eq!(first.confidence, Confidence::Framework);
    let (d, _) = detect_all("http-server.log");
    assert_eq!(d.found()[0].printed, "http://0.0.0.0:8000/");
    assert_eq!(d.found()[0].confidence, Confidence::Generic);
}

#[test]
fn gradio_share_link_is_the_public_url() {
    let (d, _) = detect_all("gradio.log");
    assert_eq!(
        d.public().unwrap().url,
        "https://1f2e3d4c5b6a7980ab.gradio.live"
    );
    let (d, _) = detect_all("cloudflared.log");
    assert_eq!(d.found().len(), 1, "{:?}", d.found());
    assert_eq!(
        d.public().unwrap().url,
        "https://seasonal-deck-organisms-sf.trycloudflare.com"
    );
    assert_eq!(d.best(), None);
}

#[test]
fn install_noise_finds_nothing() {
    let (_, found) = detect_all("noise.log");
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn each_url_is_reported_once() {
    let mut d = UrlDetector::new();
    assert!(d
        .feed("Running on local URL:  http://127.0.0.1:7860")
        .is_some());
    assert!(d
        .feed("Running on local URL:  http://127.0.0.1:7860")
        .is_none());
    assert!(d
        .feed("Running on local URL:  http://127.0.0.1:7860/")
        .is_none());
    assert_eq!(d.found().len(), 1);
}

#[test]
fn chunks_split_anywhere() {
    let text = sample("vite.log");
    for cut in [1, 7, 64, 200, 333] {
        let mut d = UrlDetector::new();
        let mut found = Vec::new();
        let bytes: Vec<char> = text.chars().collect();
        for piece in bytes.chunks(cut) {
            found.extend(d.feed_text(&piece.iter().collect::<String>()));
        }
        assert_eq!(
            summary(&found),
            vec![s("http://localhost:5173/", "vite", Local)],
            "cut {cut}"
        );
    }
    // a carriage-return progress line followed by the URL
    let mut d = UrlDetector::new();
    let got =
        d.feed_text("Loading 10%\rLoading 100%\rTo see the GUI go to: http://0.0.0.0:8188\r\n");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].url, "http://127.0.0.1:8188");
}

#[test]
fn stateless_line_detection() {
    let d = detect_line("\x1b[32mINFO\x1b[0m:     Uvicorn running on \x1b[1mhttp://0.0.0.0:8000\x1b[0m (Press CTRL+C to quit)").unwrap();
    assert_eq!(
        (d.url.as_str(), d.framework),
        ("http://127.0.0.1:8000", "uvicorn")
    );
    assert!(detect_line("plain text").is_none());
    assert_eq!(
        detect_line("Listening on port 8080").unwrap().url,
        "http://localhost:8080"
    );
}
