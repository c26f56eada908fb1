//! Platform detection and path layout for every platform, from fixtures
//! describing each machine's environment, folders and disks.

use std::path::{Path, PathBuf};

use pinokio_cloud::layout::{plan, HomeFrom, Layout, LayoutRequest, Persistence};
use pinokio_cloud::platform::{detect, EvidenceKind, Platform};
use pinokio_cloud::source::FixtureHost;

fn layout(h: &FixtureHost) -> Layout {
    plan(&detect(h), h, &LayoutRequest::default())
}

/// Each platform as it looks from inside (documented variables first).
fn colab() -> FixtureHost {
    FixtureHost::new()
        .env("COLAB_RELEASE_TAG", "release-colab_20261110-060103_RC00")
        .env("COLAB_GPU", "1")
        .dir("/content/sample_data")
        .mount("/", 225, 190)
        .file("/.dockerenv", "")
}
fn kaggle() -> FixtureHost {
    FixtureHost::new()
        .env("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
        .env("KAGGLE_DATA_PROXY_URL", "https://dp.kaggle.net")
        .env("KAGGLE_USER_SECRETS_TOKEN", "eyJhbGciOi-hidden-7731")
        // Kaggle images carry Colab's packages and variables too
        .env("COLAB_GPU", "")
        .dir("/kaggle/input")
        .mount("/kaggle/working", 20, 19)
        .dir("/kaggle/temp")
        .mount("/", 73, 60)
}
fn runpod() -> FixtureHost {
    FixtureHost::new()
        .env("RUNPOD_POD_ID", "k3x9z2abcd1234")
        .env("RUNPOD_API_KEY", "rpa_hidden_5521")
        .env("RUNPOD_GPU_COUNT", "1")
        .mount("/workspace", 100, 98)
        .mount("/", 50, 40)
        .file("/.dockerenv", "")
}
fn runpod_no_volume() -> FixtureHost {
    FixtureHost::new()
        .env("RUNPOD_POD_ID", "k3x9z2abcd1234")
        .mount("/", 50, 40)
}
fn vast() -> FixtureHost {
    FixtureHost::new()
        .env("VAST_CONTAINERLABEL", "C.12345678")
        .env("CONTAINER_API_KEY", "hidden-9913")
        .env("PUBLIC_IPADDR", "203.0.113.7")
        .env("VAST_TCP_PORT_8080", "41234")
        .env("DATA_DIRECTORY", "/workspace/")
        .mount("/", 200, 180)
        .dir("/workspace")
}
fn lightning() -> FixtureHost {
    FixtureHost::new()
        .env("LIGHTNING_CLOUD_SPACE_ID", "01jabcdefghijk")
        .env("LIGHTNING_CLOUD_PROJECT_ID", "01jproject")
        .mount("/teamspace/studios/this_studio", 400, 380)
        .user_home_at("/teamspace/studios/this_studio")
}
fn paperspace() -> FixtureHost {
    FixtureHost::new()
        .env(
            "PAPERSPACE_FQDN",
            "nabc123xyz.clg07azjl.paperspacegradient.com",
        )
        .env("PAPERSPACE_NOTEBOOK_ID", "nabc123xyz")
        .mount("/notebooks", 50, 15)
        .mount("/storage", 200, 150)
        .mount("/", 8, 5)
}
fn studiolab() -> FixtureHost {
    FixtureHost::new()
        .env("HOME", "/home/studio-lab-user")
        .env(
            "SAGEMAKER_INTERNAL_IMAGE_URI",
            "public.ecr.aws/studio-lab/base:latest",
        )
        .user_home_at("/home/studio-lab-user")
        .mount("/home/studio-lab-user", 15, 12)
        .mount("/tmp", 60, 55)
}
fn docker() -> FixtureHost {
    FixtureHost::new()
        .file("/.dockerenv", "")
        .file("/proc/1/cgroup", "0::/\n")
        .file(
            "/proc/self/mountinfo",
            "812 790 0:160 / / rw,relatime master:381 - overlay overlay rw\n833 812 259:1 /var/lib/docker/containers/0f1e2d/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw\n",
        )
}

#[test]
fn every_platform_from_env() {
    let cases: Vec<(FixtureHost, Platform, &str)> = vec![
        (colab(), Platform::Colab, "COLAB_RELEASE_TAG"),
        (kaggle(), Platform::Kaggle, "KAGGLE_KERNEL_RUN_TYPE"),
        (runpod(), Platform::RunPod, "RUNPOD_POD_ID"),
        (vast(), Platform::Vast, "VAST_CONTAINERLABEL"),
        (lightning(), Platform::Lightning, "LIGHTNING_CLOUD_SPACE_ID"),
        (paperspace(), Platform::Paperspace, "PAPERSPACE_FQDN"),
        (studiolab(), Platform::StudioLab, "HOME"),
    ];
    for (h, want, first) in cases {
        let d = detect(&h);
        assert_eq!(d.platform, want, "{:?}", d.evidence);
        assert_eq!(d.evidence[0].kind, EvidenceKind::Env);
        assert_eq!(d.evidence[0].what, first);
        assert!(want.is_cloud());
    }
}

#[test]
fn kaggle_wins_over_colab_and_secrets_stay_hidden() {
    let d = detect(&kaggle().env("COLAB_RELEASE_TAG", "release-colab"));
    assert_eq!(d.platform, Platform::Kaggle);
    let shown: Vec<String> = d.evidence.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "$KAGGLE_KERNEL_RUN_TYPE=Interactive",
            "$KAGGLE_DATA_PROXY_URL is set",
            "$KAGGLE_USER_SECRETS_TOKEN is set",
        ]
    );
    let json = serde_json::to_string(&d).unwrap();
    assert!(!json.contains("7731"), "{json}");
    let json = serde_json::to_string(&detect(&runpod())).unwrap();
    assert!(!json.contains("5521"), "{json}");
    assert!(json.contains("k3x9z2abcd1234"), "{json}");
}

#[test]
fn paths_when_variables_are_missing() {
    let cases: Vec<(FixtureHost, Platform, Vec<&str>)> = vec![
        (
            FixtureHost::new()
                .dir("/kaggle/working")
                .dir("/kaggle/input")
                .dir("/content/sample_data"),
            Platform::Kaggle,
            vec!["/kaggle/working", "/kaggle/input"],
        ),
        (
            FixtureHost::new().dir("/content/sample_data"),
            Platform::Colab,
            vec!["/content/sample_data"],
        ),
        (
            FixtureHost::new().dir("/content/drive/MyDrive"),
            Platform::Colab,
            vec!["/content/drive/MyDrive"],
        ),
        (
            FixtureHost::new().dir("/teamspace/studios/this_studio"),
            Platform::Lightning,
            vec!["/teamspace/studios/this_studio"],
        ),
        (
            FixtureHost::new().dir("/notebooks").dir("/storage"),
            Platform::Paperspace,
            vec!["/notebooks", "/storage"],
        ),
        (
            FixtureHost::new().dir("/home/studio-lab-user"),
            Platform::StudioLab,
            vec!["/home/studio-lab-user"],
        ),
    ];
    for (h, want, paths) in cases {
        let d = detect(&h);
        assert_eq!(d.platform, want);
        let got: Vec<&str> = d.evidence.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(got, paths);
        assert!(d.evidence.iter().all(|e| e.kind == EvidenceKind::Path));
    }
    // /notebooks alone is not Paperspace
    assert_eq!(
        detect(&FixtureHost::new().dir("/notebooks")).platform,
        Platform::Local
    );
}

#[test]
fn vast_from_port_variables_only() {
    let d = detect(
        &FixtureHost::new()
            .env("VAST_TCP_PORT_22", "40022")
            .env("VAST_TCP_PORT_8188", "40188"),
    );
    assert_eq!(d.platform, Platform::Vast);
    let got: Vec<&str> = d.evidence.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(got, vec!["VAST_TCP_PORT_22", "VAST_TCP_PORT_8188"]);
}

#[test]
fn containers_and_local() {
    let d = detect(&docker());
    assert_eq!(d.platform, Platform::Docker);
    assert!(d.container);
    let shown: Vec<String> = d.evidence.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "/.dockerenv exists",
            "/proc/self/mountinfo mentions \"/docker/containers/\""
        ]
    );
    let d =
        detect(&FixtureHost::new().file("/proc/1/cgroup", "12:memory:/kubepods/besteffort/pod1\n"));
    assert_eq!(d.platform, Platform::Docker);
    let d = detect(&FixtureHost::new().env("container", "podman"));
    assert_eq!(d.platform, Platform::Docker);
    assert_eq!(d.evidence[0].to_string(), "$container=podman");
    // a cloud platform inside a container is still the platform
    let d = detect(&runpod());
    assert_eq!(d.platform, Platform::RunPod);
    assert!(d.container);
    let d = detect(&FixtureHost::new().file("/proc/1/cgroup", "0::/init.scope\n"));
    assert_eq!(d.platform, Platform::Local);
    assert!(!d.container);
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn layout_of_every_platform() {
    // (machine, home, persistence, cache)
    let cases: Vec<(&str, FixtureHost, &str, Persistence, &str)> = vec![
        (
            "colab without drive",
            colab(),
            "/content/pinokio",
            Persistence::Ephemeral,
            "/content/pinokio/cache",
        ),
        (
            "colab with drive",
            colab().mount("/content/drive/MyDrive", 15, 10),
            "/content/drive/MyDrive/pinokio",
            Persistence::Persistent,
            "/content/pinokio-cache",
        ),
        (
            "kaggle",
            kaggle(),
            "/kaggle/working/pinokio",
            Persistence::Persistent,
            "/kaggle/temp/pinokio-cache",
        ),
        (
            "runpod",
            runpod(),
            "/workspace/pinokio",
            Persistence::Persistent,
            "/workspace/pinokio/cache",
        ),
        (
            "runpod, small volume",
            runpod().mount("/workspace", 20, 10),
            "/workspace/pinokio",
            Persistence::Persistent,
            "/root/.cache/pinokio",
        ),
        (
            "runpod without volume",
            runpod_no_volume(),
            "/root/pinokio",
            Persistence::Ephemeral,
            "/root/pinokio/cache",
        ),
        (
            "vast",
            vast(),
            "/workspace/pinokio",
            Persistence::Persistent,
            "/workspace/pinokio/cache",
        ),
        (
            "lightning",
            lightning(),
            "/teamspace/studios/this_studio/pinokio",
            Persistence::Persistent,
            "/teamspace/studios/this_studio/pinokio/cache",
        ),
        (
            "paperspace",
            paperspace(),
            "/notebooks/pinokio",
            Persistence::Persistent,
            "/storage/pinokio-cache",
        ),
        (
            "studio lab",
            studiolab(),
            "/home/studio-lab-user/pinokio",
            Persistence::Persistent,
            "/tmp/pinokio-cache",
        ),
        (
            "docker",
            docker(),
            "/root/pinokio",
            Persistence::Unknown,
            "/root/pinokio/cache",
        ),
        (
            "docker with /workspace",
            docker().mount("/workspace", 500, 400),
            "/workspace/pinokio",
            Persistence::Unknown,
            "/workspace/pinokio/cache",
        ),
        (
            "docker with read-only /workspace",
            docker().read_only("/workspace"),
            "/root/pinokio",
            Persistence::Unknown,
            "/root/pinokio/cache",
        ),
        (
            "local",
            FixtureHost::new(),
            "/root/pinokio",
            Persistence::Persistent,
            "/root/pinokio/cache",
        ),
    ];
    for (name, h, home, persistence, cache) in cases {
        let l = layout(&h);
        assert_eq!(l.home, p(home), "{name}");
        assert_eq!(l.persistence, persistence, "{name}");
        assert_eq!(l.cache, p(cache), "{name}: {}", l.cache_reason);
        assert_eq!(l.cache_relocated, !cache.starts_with(home), "{name}");
        assert!(!l.home_reason.is_empty() && !l.cache_reason.is_empty());
        assert_eq!(l.disks[0].role, "home");
        assert!(l.disks[0].space.is_some(), "{name}");
    }
}

#[test]
fn reasons_and_notes_are_shown() {
    let l = layout(&colab());
    assert!(
        l.home_reason.contains("Google Drive is not mounted"),
        "{}",
        l.home_reason
    );
    assert!(l
        .notes
        .iter()
        .any(|n| n.contains("drive.mount('/content/drive')")));
    let l = layout(&kaggle());
    assert!(l.cache_reason.contains("20 GB"), "{}", l.cache_reason);
    assert!(
        l.notes.iter().any(|n| n.contains("19 GiB free")),
        "{:?}",
        l.notes
    );
    let l = layout(&runpod().mount("/workspace", 20, 10));
    assert!(l.cache_reason.contains("10 GiB free"), "{}", l.cache_reason);
    let scratch: Vec<&Path> = l
        .disks
        .iter()
        .filter(|d| d.role == "scratch")
        .map(|d| d.path.as_path())
        .collect();
    assert_eq!(scratch, vec![Path::new("/root/.cache/pinokio")]);
    assert_eq!(l.home_from, HomeFrom::Platform);
    let l = layout(&FixtureHost::new());
    assert_eq!(l.home_from, HomeFrom::Default);
}

#[test]
fn home_and_cache_overrides_win() {
    let h = runpod();
    let d = detect(&h);
    let req = LayoutRequest {
        flag_home: Some(p("/data/ph")),
        env_home: Some("/env/ph".into()),
        env_cache: None,
    };
    let l = plan(&d, &h, &req);
    assert_eq!(
        (l.home.clone(), l.home_from),
        (p("/data/ph"), HomeFrom::Flag)
    );
    assert_eq!(l.cache, p("/data/ph/cache"));
    let req = LayoutRequest {
        flag_home: None,
        env_home: Some("/workspace/other".into()),
        env_cache: Some("/mnt/fast/cache".into()),
    };
    let l = plan(&d, &h, &req);
    assert_eq!(
        (l.home.clone(), l.home_from),
        (p("/workspace/other"), HomeFrom::Env)
    );
    assert_eq!(l.persistence, Persistence::Persistent);
    assert_eq!(l.cache, p("/mnt/fast/cache"));
    assert!(l.cache_relocated);
    assert_eq!(l.cache_reason, "given with PINOKIO_CACHE_DIR");
    let from_env = LayoutRequest::from_env(
        &FixtureHost::new()
            .env("PINOKIO_HOME", "  ")
            .env("PINOKIO_CACHE_DIR", "/c"),
        None,
    );
    assert_eq!(from_env.env_home, None);
    assert_eq!(from_env.env_cache.as_deref(), Some("/c"));
}

#[test]
fn an_existing_home_is_kept() {
    let h = runpod().dir("/root/pinokio/api/comfy");
    let l = layout(&h);
    assert_eq!(l.home, p("/root/pinokio"));
    assert_eq!(l.home_from, HomeFrom::Existing);
    assert!(
        l.notes[0].contains("move /root/pinokio to /workspace/pinokio"),
        "{:?}",
        l.notes
    );
    // once the platform home exists, it is used
    let l = layout(&h.dir("/workspace/pinokio"));
    assert_eq!(l.home, p("/workspace/pinokio"));
}

#[test]
fn apply_links_a_relocated_cache_once() {
    let t = tempfile::tempdir().unwrap();
    let mut l = layout(&runpod().mount("/workspace", 20, 10));
    l.home = t.path().join("ws/pinokio");
    l.cache = t.path().join("scratch/cache");
    let done = l.apply().unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    let link = l.home.join("cache");
    assert_eq!(std::fs::read_link(&link).unwrap(), l.cache);
    std::fs::write(link.join("x"), "1").unwrap();
    assert!(l.cache.join("x").is_file());
    assert!(l.apply().unwrap().is_empty());
    // an existing real cache folder is left alone
    let mut l2 = l.clone();
    l2.home = t.path().join("other");
    std::fs::create_dir_all(l2.home.join("cache")).unwrap();
    assert!(l2.apply().unwrap().is_empty());
    assert!(std::fs::read_link(l2.home.join("cache")).is_err());
    // the notice names the layout until the home exists
    let mut l3 = layout(&runpod());
    l3.home = t.path().join("new-home");
    let n = l3.first_use_notice().unwrap();
    assert!(n.contains("RunPod detected"), "{n}");
    assert!(n.contains("PINOKIO_HOME"), "{n}");
    l3.apply().unwrap();
    assert_eq!(l3.first_use_notice(), None);
}
