//! Re-adoption after an engine restart: shells started under supervisors
//! (see [`crate::process::shim`]) outlive the engine; the next engine finds
//! their supervisors in `HOME/run`, attaches to them, and takes over the
//! daemon scripts they belong to, with the `local` memory those scripts had
//! (so `status` shows the app's URL and `stop` kills its shells).
//!
//! A shell whose script was still executing steps when the engine died
//! (an install, a start that had not reached its URL yet) cannot go on: its
//! script's interpreter is gone. Such shells are stopped and their runs stay
//! `interrupted` (the state store's reconcile marks them), so the app can
//! be installed or started again cleanly.

use serde::Serialize;

use crate::engine::Engine;
use crate::process::Adoption;
use crate::state::RunStatus;

/// What [`Engine::readopt`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReadoptReport {
    /// Shells supervised again (shell ids).
    pub adopted: Vec<String>,
    /// Daemon scripts running again (script ids).
    pub scripts: Vec<String>,
    /// Shells of runs that were cut short, now stopped (shell ids).
    pub stopped: Vec<String>,
    /// Shells that ended while no engine was attached, with exit codes.
    pub ended: Vec<(String, Option<i32>)>,
    /// Supervisors that could not be reached.
    pub failed: Vec<String>,
}

impl ReadoptReport {
    pub fn is_empty(&self) -> bool {
        self.adopted.is_empty()
            && self.stopped.is_empty()
            && self.ended.is_empty()
            && self.failed.is_empty()
    }
}

impl Engine {
    /// Attach to every supervised shell an earlier engine left behind.
    /// Call after [`crate::state::StateStore::reconcile`].
    pub fn readopt(&self) -> ReadoptReport {
        let mut report = ReadoptReport::default();
        let store = self.state().cloned();
        for (path, meta) in self.processes().supervised() {
            if self
                .processes()
                .get(&meta.shell_id)
                .is_some_and(|r| r.running && r.pid == meta.pid)
            {
                continue; // started by this engine
            }
            let stored = store
                .as_ref()
                .and_then(|s| s.get_process(&meta.shell_id).ok().flatten());
            let run = match (&store, stored.as_ref().and_then(|p| p.run_id)) {
                (Some(s), Some(rid)) => s.get_run(rid).ok().flatten(),
                _ => None,
            };
            match self.processes().adopt(&path) {
                Ok(Adoption::Ended(m)) => {
                    let code = m.exit.and_then(|e| e.code);
                    if let Some(s) = &store {
                        let _ = s.process_exited(&m.shell_id, code);
                    }
                    report.ended.push((m.shell_id, code));
                }
                Ok(Adoption::Live(rec)) => {
                    // Without a record of its run (a rebuilt store) the
                    // shell is kept: never kill what we cannot account for.
                    let keep = run.as_ref().is_none_or(|r| r.status == RunStatus::Daemon);
                    if keep {
                        if let Some(s) = &store {
                            let _ = s.adopt_process(&rec.shell_id);
                        }
                        let started = run.as_ref().map_or(rec.started_ms, |r| r.started_at);
                        let local = run.as_ref().and_then(|r| r.local.clone());
                        if self.adopt_run(&rec.group, started, local) {
                            report.scripts.push(rec.group.clone());
                        }
                        report.adopted.push(rec.shell_id);
                    } else {
                        self.processes()
                            .kill_shell(&rec.shell_id, self.options().kill_grace);
                        if let Some(s) = &store {
                            let _ = s.process_killed(&rec.shell_id, None);
                        }
                        report.stopped.push(rec.shell_id);
                    }
                }
                Err(e) => report.failed.push(e.to_string()),
            }
        }
        report
    }
}
