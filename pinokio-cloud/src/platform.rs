//! Which platform this machine is: Google Colab, Kaggle, Vast.ai, RunPod,
//! Lightning.ai Studio, Paperspace Gradient, SageMaker Studio Lab, a generic
//! container, or a local machine.
//!
//! Signals (research note `peers-and-platforms.md` section 4): documented
//! environment variables first, for every platform, then paths; Kaggle is
//! checked before Colab (Kaggle images can carry Colab's packages). The
//! evidence used is kept so `pinokio doctor` can show why. Secret variables
//! (API keys, tokens) are recorded by name only, never by value.

use std::path::Path;

use serde::Serialize;

use crate::source::HostSource;

/// A platform PinokioCloud knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Colab,
    Kaggle,
    Vast,
    RunPod,
    Lightning,
    Paperspace,
    StudioLab,
    Docker,
    Local,
}

impl Platform {
    /// Short id (`colab`, `kaggle`, `vast`, `runpod`, `lightning`,
    /// `paperspace`, `studiolab`, `docker`, `local`).
    pub fn id(self) -> &'static str {
        match self {
            Platform::Colab => "colab",
            Platform::Kaggle => "kaggle",
            Platform::Vast => "vast",
            Platform::RunPod => "runpod",
            Platform::Lightning => "lightning",
            Platform::Paperspace => "paperspace",
            Platform::StudioLab => "studiolab",
            Platform::Docker => "docker",
            Platform::Local => "local",
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Colab => "Google Colab",
            Platform::Kaggle => "Kaggle",
            Platform::Vast => "Vast.ai",
            Platform::RunPod => "RunPod",
            Platform::Lightning => "Lightning.ai Studio",
            Platform::Paperspace => "Paperspace Gradient",
            Platform::StudioLab => "SageMaker Studio Lab",
            Platform::Docker => "container (Docker or similar)",
            Platform::Local => "local machine",
        }
    }

    /// A hosted cloud notebook or GPU rental (not a plain container or a
    /// local machine).
    pub fn is_cloud(self) -> bool {
        !matches!(self, Platform::Docker | Platform::Local)
    }
}

/// What kind of signal was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    /// An environment variable is set.
    Env,
    /// A path exists.
    Path,
    /// A file's content matched.
    File,
}

/// One signal that led to the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// The variable name or the path.
    pub what: String,
    /// The variable's value (non-secret variables only) or what matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.detail) {
            (EvidenceKind::Env, Some(d)) => write!(f, "${}={d}", self.what),
            (EvidenceKind::Env, None) => write!(f, "${} is set", self.what),
            (EvidenceKind::Path, _) => write!(f, "{} exists", self.what),
            (EvidenceKind::File, Some(d)) => write!(f, "{} mentions {d:?}", self.what),
            (EvidenceKind::File, None) => write!(f, "{}", self.what),
        }
    }
}

/// The answer: the platform, why, and whether we are in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub platform: Platform,
    /// Signals for `platform` (empty for a local machine).
    pub evidence: Vec<Evidence>,
    /// Whether this runs inside a container (any platform).
    pub container: bool,
    /// Signals for `container`.
    pub container_evidence: Vec<Evidence>,
}

/// Variables whose value may be shown (ids and versions, not credentials).
const SHOWN_VALUES: &[&str] = &[
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_URL_BASE",
    "COLAB_RELEASE_TAG",
    "COLAB_GPU",
    "COLAB_BACKEND_VERSION",
    "RUNPOD_POD_ID",
    "RUNPOD_POD_HOSTNAME",
    "RUNPOD_GPU_COUNT",
    "RUNPOD_DC_ID",
    "VAST_CONTAINERLABEL",
    "LIGHTNING_CLOUD_SPACE_ID",
    "LIGHTNING_CLOUD_PROJECT_ID",
    "LIGHTNING_CLUSTER_ID",
    "PAPERSPACE_FQDN",
    "PAPERSPACE_NOTEBOOK_ID",
    "HOME",
    "container",
];

/// Environment signals per platform, strongest first; any one is enough.
/// Order matters: Kaggle before Colab.
const ENV_RULES: &[(Platform, &[&str])] = &[
    (
        Platform::Kaggle,
        &[
            "KAGGLE_KERNEL_RUN_TYPE",
            "KAGGLE_DATA_PROXY_URL",
            "KAGGLE_URL_BASE",
            "KAGGLE_USER_SECRETS_TOKEN",
        ],
    ),
    (
        Platform::Colab,
        &["COLAB_RELEASE_TAG", "COLAB_GPU", "COLAB_BACKEND_VERSION"],
    ),
    (
        Platform::RunPod,
        &[
            "RUNPOD_POD_ID",
            "RUNPOD_POD_HOSTNAME",
            "RUNPOD_DC_ID",
            "RUNPOD_GPU_COUNT",
            "RUNPOD_API_KEY",
        ],
    ),
    (Platform::Vast, &["VAST_CONTAINERLABEL"]),
    (
        Platform::Lightning,
        &[
            "LIGHTNING_CLOUD_SPACE_ID",
            "LIGHTNING_CLOUD_PROJECT_ID",
            "LIGHTNING_CLUSTER_ID",
        ],
    ),
    (
        Platform::Paperspace,
        &["PAPERSPACE_FQDN", "PAPERSPACE_NOTEBOOK_ID"],
    ),
];

/// Path signals per platform, checked only when no variable matched. Each
/// entry is a set of paths that must all exist.
const PATH_RULES: &[(Platform, &[&str])] = &[
    (Platform::Kaggle, &["/kaggle/working", "/kaggle/input"]),
    (Platform::Colab, &["/content/sample_data"]),
    (Platform::Colab, &["/content/drive/MyDrive"]),
    (Platform::Lightning, &["/teamspace/studios/this_studio"]),
    (Platform::Paperspace, &["/notebooks", "/storage"]),
    (Platform::Paperspace, &["/notebooks", "/datasets"]),
    (Platform::StudioLab, &["/home/studio-lab-user"]),
];

/// The Studio Lab user's home.
pub const STUDIO_LAB_HOME: &str = "/home/studio-lab-user";

fn env_evidence(src: &dyn HostSource, name: &str) -> Option<Evidence> {
    let v = src.var(name).filter(|v| !v.is_empty())?;
    Some(Evidence {
        kind: EvidenceKind::Env,
        what: name.to_string(),
        detail: SHOWN_VALUES.contains(&name).then_some(v),
    })
}

fn path_evidence(p: &str) -> Evidence {
    Evidence {
        kind: EvidenceKind::Path,
        what: p.to_string(),
        detail: None,
    }
}

/// Detect the platform of the machine `src` describes.
pub fn detect(src: &dyn HostSource) -> Detection {
    let (container, container_evidence) = detect_container(src);
    let (platform, evidence) = detect_platform(src).unwrap_or_else(|| {
        if container {
            (Platform::Docker, container_evidence.clone())
        } else {
            (Platform::Local, Vec::new())
        }
    });
    Detection {
        platform,
        evidence,
        container,
        container_evidence,
    }
}

fn detect_platform(src: &dyn HostSource) -> Option<(Platform, Vec<Evidence>)> {
    for (platform, names) in ENV_RULES {
        let ev: Vec<Evidence> = names.iter().filter_map(|n| env_evidence(src, n)).collect();
        if !ev.is_empty() {
            return Some((*platform, ev));
        }
    }
    // Vast: documented per-port variables.
    let mut vast: Vec<Evidence> = src
        .vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with("VAST_TCP_PORT_") || k.starts_with("VAST_UDP_PORT_"))
        .map(|(k, _)| Evidence {
            kind: EvidenceKind::Env,
            what: k,
            detail: None,
        })
        .collect();
    if !vast.is_empty() {
        vast.sort_by(|a, b| a.what.cmp(&b.what));
        return Some((Platform::Vast, vast));
    }
    // Studio Lab: its user's home as $HOME, with the SageMaker image variable.
    if src.var("HOME").as_deref() == Some(STUDIO_LAB_HOME) {
        let mut ev = vec![env_evidence(src, "HOME").expect("HOME is set")];
        ev.extend(env_evidence(src, "SAGEMAKER_INTERNAL_IMAGE_URI"));
        return Some((Platform::StudioLab, ev));
    }
    for (platform, paths) in PATH_RULES {
        if paths.iter().all(|p| src.exists(Path::new(p))) {
            return Some((*platform, paths.iter().map(|p| path_evidence(p)).collect()));
        }
    }
    None
}

/// Container signals: `$container` (podman, systemd-nspawn),
/// `$KUBERNETES_SERVICE_HOST`, then `/.dockerenv`, `/run/.containerenv` and
/// container runtimes named in `/proc/1/cgroup` or `/proc/self/mountinfo`.
fn detect_container(src: &dyn HostSource) -> (bool, Vec<Evidence>) {
    let mut ev: Vec<Evidence> = ["container", "KUBERNETES_SERVICE_HOST"]
        .iter()
        .filter_map(|n| env_evidence(src, n))
        .collect();
    for p in ["/.dockerenv", "/run/.containerenv"] {
        if src.exists(Path::new(p)) {
            ev.push(path_evidence(p));
        }
    }
    let runtimes = ["docker", "kubepods", "containerd", "libpod", "lxc"];
    if let Some(text) = src.read_to_string(Path::new("/proc/1/cgroup")) {
        if let Some(r) = runtimes.iter().find(|r| text.contains(*r)) {
            ev.push(Evidence {
                kind: EvidenceKind::File,
                what: "/proc/1/cgroup".into(),
                detail: Some(r.to_string()),
            });
        }
    }
    if let Some(text) = src.read_to_string(Path::new("/proc/self/mountinfo")) {
        let markers = ["/docker/containers/", "/containerd/", "/kubelet/pods/"];
        if let Some(m) = markers.iter().find(|m| text.contains(*m)) {
            ev.push(Evidence {
                kind: EvidenceKind::File,
                what: "/proc/self/mountinfo".into(),
                detail: Some(m.to_string()),
            });
        }
    }
    (!ev.is_empty(), ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FixtureHost;

    #[test]
    fn local_machine_without_signals() {
        let d = detect(&FixtureHost::new());
        assert_eq!(d.platform, Platform::Local);
        assert!(d.evidence.is_empty());
        assert!(!d.container);
    }

    #[test]
    fn secrets_are_named_not_shown() {
        let d = detect(&FixtureHost::new().env("RUNPOD_API_KEY", "rpa_SECRET"));
        assert_eq!(d.platform, Platform::RunPod);
        assert_eq!(d.evidence[0].detail, None);
        assert_eq!(d.evidence[0].to_string(), "$RUNPOD_API_KEY is set");
    }
}
