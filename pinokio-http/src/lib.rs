//! `pinokio-http`: the HTTP API and web UI of the PinokioCloud engine
//! (`pinokio serve`). The contract is `docs/api.md`.
//!
//! - [`Hub`] is built before the engine and installed in it as its event
//!   sink and input answerer: it attributes events to apps and jobs and fans
//!   them out to Server-Sent Event clients through bounded queues, so a slow
//!   client never blocks the engine or other clients.
//! - [`Server::start`] binds the address, loads (or creates) the API token
//!   and serves requests from a small pool of worker threads on tiny_http;
//!   every event stream gets a thread of its own.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pinokio_core::{Engine, PinokioHome};
//! use pinokio_http::{Hub, Server, ServerConfig};
//!
//! let home = PinokioHome::new("/tmp/pinokio");
//! let hub = Hub::new(&home);
//! let engine = Engine::builder(home)
//!     .sink(hub.clone())
//!     .answers(hub.clone())
//!     .build()
//!     .unwrap();
//! let server = Server::start(engine, hub, ServerConfig::new("127.0.0.1", 42000)).unwrap();
//! println!("{}", server.url());
//! server.stop();
//! ```

mod api;
mod auth;
mod hub;
mod inputs;
mod jobs;
mod queue;
mod redact;
mod sse;
mod ui;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pinokio_core::Engine;

pub use auth::{load_or_create_token, token_path, TOKEN_FILE};
pub use hub::Hub;
pub use jobs::{JobState, JobView};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: not an address to listen on")]
    BadAddress { addr: String },
    #[error("the API token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(String),
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to bind (`127.0.0.1`, `0.0.0.0`, `::1`...).
    pub host: String,
    /// The port (0: any free one; [`ServerHandle::addr`] tells which).
    pub port: u16,
    /// Worker threads answering ordinary requests.
    pub workers: usize,
}

impl ServerConfig {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ServerConfig {
            host: host.into(),
            port,
            workers: 8,
        }
    }

    fn bind_string(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The HTTP server.
pub struct Server;

/// A running server.
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The API token (from `HOME/http-token`).
    pub token: String,
    /// Whether the token file was created by this start.
    pub token_created: bool,
    /// Whether requests need the token whatever their `Host` (a
    /// non-loopback bind).
    pub token_always: bool,
    ctx: Arc<api::Ctx>,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Bind `config.host:config.port`, load or create the API token and
    /// serve until [`ServerHandle::stop`].
    pub fn start(
        engine: Engine,
        hub: Arc<Hub>,
        config: ServerConfig,
    ) -> Result<ServerHandle, HttpError> {
        let shown = config.bind_string();
        let addrs: Vec<SocketAddr> = shown
            .to_socket_addrs()
            .map_err(|_| HttpError::BadAddress {
                addr: shown.clone(),
            })?
            .collect();
        let first = *addrs.first().ok_or_else(|| HttpError::BadAddress {
            addr: shown.clone(),
        })?;
        let listener = TcpListener::bind(&addrs[..]).map_err(|source| HttpError::Bind {
            addr: shown.clone(),
            source,
        })?;
        let addr = listener.local_addr().unwrap_or(first);
        let home = engine.home().root().to_path_buf();
        let (token, token_created) =
            load_or_create_token(&home).map_err(|source| HttpError::Token {
                path: token_path(&home),
                source,
            })?;
        hub.redactor().set_token(&token);
        let token_always = !auth::is_loopback_bind(&config.host, &addr);
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| HttpError::Server(e.to_string()))?;
        let server = Arc::new(server);
        let ctx = Arc::new(api::Ctx::new(
            engine,
            hub,
            token.clone(),
            token_always,
            config.host.clone(),
        ));
        let workers = (0..config.workers.max(1))
            .map(|i| {
                let server = server.clone();
                let ctx = ctx.clone();
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || {
                        while !ctx.stopping.load(Ordering::SeqCst) {
                            match server.recv_timeout(Duration::from_millis(250)) {
                                Ok(Some(req)) => api::handle(&ctx, req),
                                Ok(None) => {}
                                Err(_) => std::thread::sleep(Duration::from_millis(50)),
                            }
                        }
                    })
                    .expect("spawn an HTTP worker")
            })
            .collect();
        Ok(ServerHandle {
            addr,
            token,
            token_created,
            token_always,
            ctx,
            server,
            workers,
        })
    }
}

impl ServerHandle {
    /// `http://host:port/` to open in a browser (loopback for a wildcard bind).
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr {
                SocketAddr::V4(_) => "127.0.0.1".to_string(),
                SocketAddr::V6(_) => "[::1]".to_string(),
            }
        } else {
            match self.addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        format!("http://{ip}:{}/", self.addr.port())
    }

    /// A flag that is set once the server stops.
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.ctx.stopping_flag()
    }

    /// Stop serving: the workers end, event streams close, pending input
    /// forms are cancelled (the engine itself is left running).
    pub fn stop(self) {
        self.ctx.stopping.store(true, Ordering::SeqCst);
        self.ctx.hub.inputs().cancel_all();
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}
