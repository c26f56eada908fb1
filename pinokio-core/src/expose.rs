//! Exposure: how the user's browser reaches an app's local URL on a
//! rented machine (the platform's own proxy, or a tunnel). The engine only
//! knows this trait; `pinokio-cloud` implements it (platform detection,
//! tunnel processes) and frontends install it with
//! [`crate::engine::EngineBuilder::exposer`].

use serde::Serialize;

/// One way an app is reachable from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposure {
    pub app: String,
    /// `platform`, `cloudflare`, `ngrok` or `localtunnel`.
    pub via: String,
    pub local_url: String,
    /// What the browser opens (`None` while a tunnel starts).
    pub public_url: Option<String>,
    /// `up`, `starting`, `restarting`, `failed`, `stopped`.
    pub state: String,
    /// What the user should know (a port to open in a console, a tunnel
    /// password, that the app has no login of its own).
    pub note: Option<String>,
}

/// Makes local URLs reachable.
pub trait Exposer: Send + Sync {
    /// Expose `local_url` of `app`. `via`: `platform`, a tunnel provider,
    /// or `None` for the platform's proxy where there is one, else a tunnel.
    fn expose(&self, app: &str, local_url: &str, via: Option<&str>) -> Result<Exposure, String>;
    /// Stop exposing `app` (tunnels stopped); what was stopped.
    fn unexpose(&self, app: &str) -> Vec<Exposure>;
    /// Stop exposing one local URL of `app` (`proxy.stop`); what was
    /// stopped. The default suits exposers that keep one local URL per app:
    /// it unexposes the app when one of its exposures is for `local_url`.
    fn unexpose_url(&self, app: &str, local_url: &str) -> Vec<Exposure> {
        let same = |a: &str| a.trim_end_matches('/') == local_url.trim_end_matches('/');
        if self
            .exposures()
            .iter()
            .any(|e| e.app == app && same(&e.local_url))
        {
            self.unexpose(app)
        } else {
            Vec::new()
        }
    }
    /// Every current exposure.
    fn exposures(&self) -> Vec<Exposure>;
    /// Whether starting an app should expose it without being asked (on a
    /// cloud platform).
    fn expose_by_default(&self) -> bool;
}

/// No exposure (the default of an engine built without one).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoExposer;

impl Exposer for NoExposer {
    fn expose(&self, _: &str, _: &str, _: Option<&str>) -> Result<Exposure, String> {
        Err("this engine has no exposer (none was installed with EngineBuilder::exposer)".into())
    }
    fn unexpose(&self, _: &str) -> Vec<Exposure> {
        Vec::new()
    }
    fn exposures(&self) -> Vec<Exposure> {
        Vec::new()
    }
    fn expose_by_default(&self) -> bool {
        false
    }
}
