//! Input forms: a script's `input` step asks the engine's
//! [`pinokio_core::engine::InputAnswers`] (the hub), which registers the form
//! here and waits (up to 10 minutes) for `POST /api/v1/inputs/{id}` or a
//! cancel. Stopping an app cancels its forms.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// How long an `input` step waits for an answer.
pub const INPUT_TIMEOUT: Duration = Duration::from_secs(600);

enum Answer {
    Waiting,
    Values(Map<String, Value>),
    Cancelled,
}

struct Pending {
    app: Option<String>,
    script: String,
    job: Option<String>,
    form: Value,
    answer: Answer,
}

/// The forms waiting for an answer.
pub struct Inputs {
    state: Mutex<(u64, BTreeMap<u64, Pending>)>,
    cond: Condvar,
    timeout: Mutex<Duration>,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            state: Mutex::new((0, BTreeMap::new())),
            cond: Condvar::new(),
            timeout: Mutex::new(INPUT_TIMEOUT),
        }
    }
}

impl Inputs {
    /// Change how long forms wait (tests).
    pub fn set_timeout(&self, t: Duration) {
        if let Ok(mut x) = self.timeout.lock() {
            *x = t;
        }
    }

    /// Register a form and wait for its answer (`None`: cancelled or timed
    /// out).
    pub fn wait(
        &self,
        app: Option<String>,
        script: &str,
        job: Option<String>,
        form: &Value,
    ) -> Option<Map<String, Value>> {
        let timeout = self.timeout.lock().map(|t| *t).unwrap_or(INPUT_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().ok()?;
        st.0 += 1;
        let id = st.0;
        st.1.insert(
            id,
            Pending {
                app,
                script: script.to_string(),
                job,
                form: form.clone(),
                answer: Answer::Waiting,
            },
        );
        loop {
            let done = !matches!(st.1.get(&id).map(|p| &p.answer), Some(Answer::Waiting));
            let now = Instant::now();
            if done || now >= deadline {
                break;
            }
            st = match self.cond.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return None,
            };
        }
        match st.1.remove(&id).map(|p| p.answer) {
            Some(Answer::Values(v)) => Some(v),
            _ => None,
        }
    }

    /// `{"inputs": [...]}` of `GET /api/v1/inputs`.
    pub fn list(&self) -> Vec<Value> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        st.1.iter()
            .filter(|(_, p)| matches!(p.answer, Answer::Waiting))
            .map(|(id, p)| {
                json!({
                    "id": id.to_string(),
                    "app": p.app,
                    "script": p.script,
                    "job": p.job,
                    "form": p.form,
                })
            })
            .collect()
    }

    fn resolve(&self, id: &str, answer: Answer) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        match st.1.get_mut(&id) {
            Some(p) if matches!(p.answer, Answer::Waiting) => {
                p.answer = answer;
                drop(st);
                self.cond.notify_all();
                true
            }
            _ => false,
        }
    }

    /// Answer a pending form; false when it is not pending (any more).
    pub fn answer(&self, id: &str, values: Map<String, Value>) -> bool {
        self.resolve(id, Answer::Values(values))
    }

    /// Cancel a pending form (the step goes on without answers).
    pub fn cancel(&self, id: &str) -> bool {
        self.resolve(id, Answer::Cancelled)
    }

    /// Cancel every pending form of an app.
    pub fn cancel_app(&self, app: &str) {
        self.cancel_where(|p| p.app.as_deref() == Some(app));
    }

    /// Cancel every pending form.
    pub fn cancel_all(&self) {
        self.cancel_where(|_| true);
    }

    fn cancel_where(&self, f: impl Fn(&Pending) -> bool) {
        if let Ok(mut st) = self.state.lock() {
            for p in st.1.values_mut() {
                if matches!(p.answer, Answer::Waiting) && f(p) {
                    p.answer = Answer::Cancelled;
                }
            }
        }
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_form_waits_for_its_answer() {
        let inputs = Arc::new(Inputs::default());
        let i2 = inputs.clone();
        let t = std::thread::spawn(move || {
            i2.wait(Some("a".into()), "/s.js", None, &json!({"form": []}))
        });
        let id = loop {
            if let Some(f) = inputs.list().first() {
                break f["id"].as_str().unwrap().to_string();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!inputs.answer("999", Map::new()));
        let mut m = Map::new();
        m.insert("name".into(), json!("x"));
        assert!(inputs.answer(&id, m.clone()));
        assert!(!inputs.answer(&id, m.clone()));
        assert_eq!(t.join().unwrap(), Some(m));
        assert!(inputs.list().is_empty());
    }

    #[test]
    fn cancel_and_timeout() {
        let inputs = Arc::new(Inputs::default());
        inputs.set_timeout(Duration::from_millis(50));
        assert_eq!(inputs.wait(None, "/s", None, &json!({})), None);
        inputs.set_timeout(Duration::from_secs(30));
        let i2 = inputs.clone();
        let t = std::thread::spawn(move || i2.wait(Some("a".into()), "/s", None, &json!({})));
        while inputs.list().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        inputs.cancel_app("b");
        assert_eq!(inputs.list().len(), 1);
        inputs.cancel_app("a");
        assert_eq!(t.join().unwrap(), None);
    }
}
