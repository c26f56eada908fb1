//! Script memory (section 3.13): `local` per running script, `global` per
//! script id (kept across stops), running marks and the "ready" state.
//! Everything is keyed by script id (the absolute script path).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};

/// A running script's handle.
#[derive(Debug, Clone)]
pub struct Running {
    pub stop: Arc<AtomicBool>,
    pub started_ms: u64,
    pub daemon_idle: bool,
    /// Nesting depth of the run (0: started by a frontend).
    pub depth: usize,
}

#[derive(Debug, Default)]
struct Inner {
    local: BTreeMap<String, Value>,
    global: BTreeMap<String, Value>,
    running: BTreeMap<String, Running>,
    ready: BTreeSet<String>,
}

/// Shared memory of every script.
#[derive(Debug, Default)]
pub struct Memory {
    inner: Mutex<Inner>,
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `local` of a script (`{}` when it has none).
    pub fn local(&self, id: &str) -> Value {
        self.lock()
            .local
            .get(id)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
    /// `local` if the script has any.
    pub fn local_opt(&self, id: &str) -> Option<Value> {
        self.lock().local.get(id).cloned()
    }
    /// Change a script's `local` in place.
    pub fn update_local<R>(&self, id: &str, f: impl FnOnce(&mut Value) -> R) -> R {
        let mut g = self.lock();
        let v = g
            .local
            .entry(id.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        f(v)
    }
    pub fn clear_local(&self, id: &str) {
        self.lock().local.remove(id);
    }

    pub fn global(&self, id: &str) -> Value {
        self.lock()
            .global
            .get(id)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
    pub fn global_opt(&self, id: &str) -> Option<Value> {
        self.lock().global.get(id).cloned()
    }
    pub fn update_global<R>(&self, id: &str, f: impl FnOnce(&mut Value) -> R) -> R {
        let mut g = self.lock();
        let v = g
            .global
            .entry(id.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        f(v)
    }

    /// Ids with local (or global) memory.
    pub fn keys(&self, global: bool) -> Vec<String> {
        let g = self.lock();
        if global {
            g.global.keys().cloned().collect()
        } else {
            g.local.keys().cloned().collect()
        }
    }

    /// Mark a script running; `None` if it already is.
    pub fn start(&self, id: &str, started_ms: u64, depth: usize) -> Option<Arc<AtomicBool>> {
        let mut g = self.lock();
        if g.running.contains_key(id) {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        g.running.insert(
            id.to_string(),
            Running {
                stop: stop.clone(),
                started_ms,
                daemon_idle: false,
                depth,
            },
        );
        g.ready.remove(id);
        Some(stop)
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.lock().running.contains_key(id)
    }

    pub fn running(&self) -> BTreeMap<String, Running> {
        self.lock().running.clone()
    }

    /// A daemon finished its steps: it stays running, and is ready.
    pub fn mark_daemon_idle(&self, id: &str) {
        let mut g = self.lock();
        if let Some(r) = g.running.get_mut(id) {
            r.daemon_idle = true;
        }
        g.ready.insert(id.to_string());
    }

    /// Is the script a daemon that finished its steps and keeps running?
    pub fn is_daemon_idle(&self, id: &str) -> bool {
        self.lock().running.get(id).is_some_and(|r| r.daemon_idle)
    }

    /// The run reached its end normally (non-daemon).
    pub fn mark_ready(&self, id: &str) {
        self.lock().ready.insert(id.to_string());
    }

    pub fn is_ready(&self, id: &str) -> bool {
        self.lock().ready.contains(id)
    }

    /// Stop bookkeeping (section 3.14): signal the run, drop the running mark
    /// and `local`. `global` stays. Returns whether it was running.
    pub fn stop(&self, id: &str) -> bool {
        let mut g = self.lock();
        g.local.remove(id);
        match g.running.remove(id) {
            Some(r) => {
                r.stop.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// A user stop also clears the ready state.
    pub fn clear_ready(&self, id: &str) {
        self.lock().ready.remove(id);
    }
}
