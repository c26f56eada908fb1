//! Rendering engine events: readable lines or JSON lines.
//!
//! The core never prints; this is the only place `pinokio run` writes what a
//! run does. Step headers and output go to stdout, warnings and errors to
//! stderr. Write errors (a closed pipe) are ignored rather than panicking.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pinokio_core::{Event, EventKind};
use serde_json::Value;

/// Where a rendered line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One piece of rendered text. `Raw` is written as-is (script output);
/// `Line` is a whole line (a newline is added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Raw(String),
    Line(Stream, String),
}

/// Renders events for a terminal or a pipe.
pub struct Renderer {
    json: bool,
    /// The step marker: `▸` on a terminal, `>` otherwise.
    arrow: &'static str,
    /// Did the last raw output end a line? (headers start on a fresh line)
    at_line_start: Mutex<bool>,
    /// Called once when stdout is closed (a pipe reader went away).
    on_closed: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    closed: AtomicBool,
}

impl Renderer {
    pub fn new(json: bool) -> Self {
        let arrow = if std::io::stdout().is_terminal() {
            "▸"
        } else {
            ">"
        };
        Renderer {
            json,
            arrow,
            at_line_start: Mutex::new(true),
            on_closed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Call `f` (once) when writing to stdout fails because it was closed.
    pub fn on_stdout_closed(&self, f: impl FnOnce() + Send + 'static) {
        if let Ok(mut slot) = self.on_closed.lock() {
            *slot = Some(Box::new(f));
        }
    }

    /// Look at a stdout write result: a closed stdout fires the hook.
    fn check(&self, r: std::io::Result<()>) {
        if let Err(e) = r {
            if e.kind() == std::io::ErrorKind::BrokenPipe
                && !self.closed.swap(true, Ordering::SeqCst)
            {
                let hook = self.on_closed.lock().ok().and_then(|mut s| s.take());
                if let Some(f) = hook {
                    f();
                }
            }
        }
    }

    /// Render and write one event.
    pub fn emit(&self, ev: &Event) {
        if self.json {
            if let Ok(line) = serde_json::to_string(ev) {
                let mut out = std::io::stdout().lock();
                self.check(writeln!(out, "{line}").and_then(|_| out.flush()));
            }
            return;
        }
        let pieces = human(ev, self.arrow);
        if pieces.is_empty() {
            return;
        }
        let mut at_start = self.at_line_start.lock().unwrap_or_else(|p| p.into_inner());
        let mut stdout = std::io::stdout().lock();
        for p in pieces {
            match p {
                Piece::Raw(text) => {
                    if text.is_empty() {
                        continue;
                    }
                    self.check(stdout.write_all(text.as_bytes()));
                    *at_start = text.ends_with('\n');
                }
                Piece::Line(stream, line) => {
                    if !*at_start {
                        self.check(stdout.write_all(b"\n"));
                        *at_start = true;
                    }
                    match stream {
                        Stream::Stdout => {
                            self.check(writeln!(stdout, "{line}"));
                        }
                        Stream::Stderr => {
                            self.check(stdout.flush());
                            let mut err = std::io::stderr().lock();
                            let _ = writeln!(err, "{line}");
                            let _ = err.flush();
                        }
                    }
                }
            }
        }
        self.check(stdout.flush());
    }

    /// Write a status line on stderr (starting a fresh line on stdout first
    /// when script output left one open).
    pub fn status(&self, line: &str) {
        if !self.json {
            let mut at_start = self.at_line_start.lock().unwrap_or_else(|p| p.into_inner());
            if !*at_start {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(b"\n");
                let _ = out.flush();
                *at_start = true;
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    }
}

/// Compact JSON of a value (for params, forms, `when`).
pub fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

fn file_name(script: &str) -> String {
    Path::new(script)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| script.to_string())
}

/// The readable form of an event.
pub fn human(ev: &Event, arrow: &str) -> Vec<Piece> {
    let indent = "  ".repeat(ev.depth);
    // nested scripts name their file in warnings
    let whose = if ev.depth > 0 {
        format!("{}: ", file_name(&ev.script))
    } else {
        String::new()
    };
    let out = |s: String| vec![Piece::Line(Stream::Stdout, s)];
    let err = |s: String| vec![Piece::Line(Stream::Stderr, s)];
    match &ev.kind {
        EventKind::RunStart { path, .. } if ev.depth > 0 => {
            out(format!("{indent}{arrow} {}", file_name(path)))
        }
        EventKind::StepStart { index, method, .. } => {
            out(format!("{indent}{arrow} [{index}] {method}"))
        }
        EventKind::StepSkipped { index, when, .. } => {
            let w = when.as_ref().map(compact).unwrap_or_default();
            out(format!("{indent}  [{index}] skipped (when: {w})"))
        }
        EventKind::Output { text, .. } => vec![Piece::Raw(text.clone())],
        EventKind::Warning { index, message } => match index {
            Some(i) => err(format!("warning: {whose}step {i}: {message}")),
            None => err(format!("warning: {whose}{message}")),
        },
        EventKind::StepError {
            index,
            method,
            message,
        } => {
            let m = method
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            err(format!("error: {}: step {index}{m}: {message}", ev.script))
        }
        EventKind::Notify { message, href, .. } => {
            let h = href.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
            out(format!("{indent}notify: {message}{h}"))
        }
        EventKind::OpenUrl { url, .. } => out(format!("{indent}open: {url}")),
        EventKind::Modal { params, .. } => out(format!("{indent}modal: {}", compact(params))),
        EventKind::InputRequest { index, form } => err(format!(
            "input: {whose}step {index} asks for input: {}",
            compact(form)
        )),
        // step results and run ends are summarised by the command itself
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(depth: usize, kind: EventKind) -> Event {
        Event {
            script: "/h/api/app/start.json".into(),
            depth,
            time_ms: 0,
            kind,
        }
    }

    #[test]
    fn step_start_and_output() {
        let e = ev(
            0,
            EventKind::StepStart {
                index: 2,
                id: None,
                method: "shell.run".into(),
                when: None,
                params: None,
                input: None,
                args: None,
                local: json!({}),
                global: json!({}),
            },
        );
        assert_eq!(
            human(&e, ">"),
            vec![Piece::Line(Stream::Stdout, "> [2] shell.run".into())]
        );
        let e = ev(
            0,
            EventKind::Output {
                index: Some(0),
                text: "hi".into(),
            },
        );
        assert_eq!(human(&e, ">"), vec![Piece::Raw("hi".into())]);
    }

    #[test]
    fn errors_and_warnings_go_to_stderr() {
        let e = ev(
            0,
            EventKind::StepError {
                index: 1,
                method: Some("nope".into()),
                message: "unknown method".into(),
            },
        );
        assert_eq!(
            human(&e, ">"),
            vec![Piece::Line(
                Stream::Stderr,
                "error: /h/api/app/start.json: step 1 (nope): unknown method".into()
            )]
        );
        let e = ev(
            1,
            EventKind::Warning {
                index: Some(0),
                message: "w".into(),
            },
        );
        assert_eq!(
            human(&e, ">"),
            vec![Piece::Line(
                Stream::Stderr,
                "warning: start.json: step 0: w".into()
            )]
        );
    }
}
