//! User activity, for idle policies (`pinokio-cloud`'s `idle`).
//!
//! [`Activity`] is a shared, cheap handle: frontends call
//! [`Activity::touch`] on every request a user makes (each HTTP API
//! request, a web UI page load). An idle watcher compares
//! [`Activity::touches`] between two looks, so it needs no common clock
//! with the frontends (tests drive it with a fake clock).
//! [`crate::Engine::activity`] gives the engine's handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Inner {
    touches: AtomicU64,
    last_ms: AtomicU64,
}

/// Counts user requests. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    inner: Arc<Inner>,
}

impl Activity {
    pub fn new() -> Self {
        Self::default()
    }

    /// A user did something now.
    pub fn touch(&self) {
        self.inner
            .last_ms
            .store(crate::events::now_ms(), Ordering::Relaxed);
        self.inner.touches.fetch_add(1, Ordering::Relaxed);
    }

    /// How many touches so far (changes whenever someone touched).
    pub fn touches(&self) -> u64 {
        self.inner.touches.load(Ordering::Relaxed)
    }

    /// When the last touch happened (ms since the Unix epoch), if ever.
    pub fn last_ms(&self) -> Option<u64> {
        match self.inner.last_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_touches() {
        let a = Activity::new();
        assert_eq!((a.touches(), a.last_ms()), (0, None));
        let b = a.clone();
        b.touch();
        b.touch();
        assert_eq!(a.touches(), 2);
        assert!(a.last_ms().is_some());
    }
}
