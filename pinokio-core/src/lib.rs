//! `pinokio-core`: the headless engine that runs unmodified Pinokio launcher
//! scripts.
//!
//! Data flow: [`loader`] reads a script (JSON, or JavaScript through the
//! embedded QuickJS in [`js`]), [`engine`] renders each step with
//! [`template`] just before it runs, calls the method from the
//! [`methods::Registry`], keeps [`memory`], and reports everything as
//! [`events`]. The core never prints.
//!
//! ```no_run
//! use pinokio_core::{Engine, PinokioHome, RunRequest};
//! let engine = Engine::builder(PinokioHome::new("/tmp/pinokio")).build().unwrap();
//! let outcome = engine.run(RunRequest::new("~/api/myapp/install.json"));
//! assert!(outcome.ok());
//! ```

pub mod activity;
pub mod adopt;
pub mod applogs;
pub mod apps;
pub mod catalog;
pub mod control;
pub mod download;
pub mod drive;
pub mod engine;
pub mod envfile;
pub mod events;
pub mod expose;
pub mod extract;
pub mod facts;
pub mod hf;
pub mod home;
mod http1;
pub mod js;
pub mod keypath;
pub mod loader;
pub mod memory;
pub mod methods;
pub mod process;
pub mod requires;
pub mod state;
pub mod template;
pub mod urlwatch;

pub use engine::{Engine, EngineBuilder, EngineError, EngineOptions, RunOutcome, RunRequest};
pub use events::{Event, EventKind, EventSink, RunStatus};
pub use facts::Facts;
pub use home::PinokioHome;
