//! Rendering engine events: readable lines or JSON lines.
//!
//! The core never prints; this is the only place `pinokio run` writes what a
//! run does. Step headers and output go to stdout, warnings and errors to
//! stderr. Write errors (a closed pipe) are ignored rather than panicking.
//!
//! Download progress (`Progress` events) is drawn as progress bars on stderr
//! when stderr is a terminal, and printed as plain lines on stderr every few
//! seconds otherwise (pipes, notebook cells, logs). While a download is
//! shown that way, the step's own periodic `downloading ...` output lines
//! are left out so they do not repeat it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pinokio_core::download::progress_text;
use pinokio_core::{Event, EventKind};
use serde_json::Value;

/// How often a plain progress line is printed per download.
pub const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How download progress is shown.
enum ProgressMode {
    /// indicatif bars on stderr (a terminal).
    Bars(MultiProgress),
    /// A plain line on stderr at most this often per download.
    Lines(Duration),
    /// Nothing (JSON output carries the events themselves).
    Off,
}

/// A bar with the plain progress text beside it (cut to the terminal's
/// width), or a spinner when the size is unknown.
fn bar_style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{prefix}[{bar:24}] {wide_msg}"
    } else {
        "{prefix}{spinner} {wide_msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One download being shown: (script, step index, file name).
type ProgressKey = (String, usize, String);

struct Shown {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

/// The downloads being shown and how.
pub struct ProgressView {
    mode: ProgressMode,
    active: HashMap<ProgressKey, Shown>,
}

impl ProgressView {
    /// Bars on a terminal, else plain lines every [`PLAIN_PROGRESS_EVERY`].
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::bars(ProgressDrawTarget::stderr())
        } else {
            Self::lines(PLAIN_PROGRESS_EVERY)
        }
    }
    pub fn bars(target: ProgressDrawTarget) -> Self {
        ProgressView {
            mode: ProgressMode::Bars(MultiProgress::with_draw_target(target)),
            active: HashMap::new(),
        }
    }
    pub fn lines(every: Duration) -> Self {
        ProgressView {
            mode: ProgressMode::Lines(every),
            active: HashMap::new(),
        }
    }
    pub fn off() -> Self {
        ProgressView {
            mode: ProgressMode::Off,
            active: HashMap::new(),
        }
    }

    /// Take a `Progress` event; returns the plain lines to print on stderr
    /// now (always empty with bars).
    pub fn on_progress(&mut self, ev: &Event, now: Instant) -> Vec<String> {
        let EventKind::Progress {
            index,
            name,
            bytes,
            total,
            rate,
            eta,
            done,
        } = &ev.kind
        else {
            return Vec::new();
        };
        let indent = "  ".repeat(ev.depth);
        let text = progress_text(name, *bytes, *total, *rate, *eta);
        let key = (ev.script.clone(), *index, name.clone());
        match &self.mode {
            ProgressMode::Off => Vec::new(),
            ProgressMode::Lines(every) => {
                let every = *every;
                let shown = self.active.entry(key.clone()).or_insert(Shown {
                    bar: None,
                    last_line: None,
                });
                let due = *done
                    || shown
                        .last_line
                        .is_none_or(|t| now.duration_since(t) >= every);
                if due {
                    shown.last_line = Some(now);
                }
                if *done {
                    self.active.remove(&key);
                }
                if due {
                    vec![format!("{indent}{text}")]
                } else {
                    Vec::new()
                }
            }
            ProgressMode::Bars(multi) => {
                let shown = self.active.entry(key.clone()).or_insert_with(|| {
                    // Styled before it is added, so its first frame is ours.
                    let bar = ProgressBar::hidden().with_style(bar_style(total.is_some()));
                    Shown {
                        bar: Some(multi.add(bar)),
                        last_line: None,
                    }
                });
                if let Some(bar) = &shown.bar {
                    if let Some(t) = total {
                        if bar.length() != Some(*t) {
                            bar.set_length(*t);
                        }
                    }
                    bar.set_prefix(indent);
                    bar.set_position(*bytes);
                    bar.set_message(text);
                    if *done {
                        bar.finish_and_clear();
                        multi.remove(bar);
                    }
                }
                if *done {
                    self.active.remove(&key);
                }
                Vec::new()
            }
        }
    }

    /// Is this the step's own plain progress line for a download shown here?
    pub fn hides_output(&self, ev: &Event) -> bool {
        let EventKind::Output {
            index: Some(index),
            text,
        } = &ev.kind
        else {
            return false;
        };
        self.active.keys().any(|(script, i, name)| {
            *script == ev.script
                && i == index
                && text.starts_with(&format!("downloading {name}: "))
                && text.trim_end().lines().count() == 1
        })
    }

    /// After any event: a step's result or error, or a run's end, clears
    /// the downloads it had shown.
    pub fn after(&mut self, ev: &Event) {
        match &ev.kind {
            EventKind::StepResult { index, .. } | EventKind::StepError { index, .. } => {
                self.end(&ev.script, Some(*index))
            }
            EventKind::RunEnd { .. } => self.end(&ev.script, None),
            _ => {}
        }
    }

    /// A step (`Some(index)`) or a whole run (`None`) ended: forget its
    /// downloads (a failed one never sends `done`).
    fn end(&mut self, script: &str, index: Option<usize>) {
        let gone: Vec<ProgressKey> = self
            .active
            .keys()
            .filter(|(s, i, _)| s == script && index.is_none_or(|x| x == *i))
            .cloned()
            .collect();
        for k in gone {
            if let Some(Shown { bar: Some(bar), .. }) = self.active.remove(&k) {
                bar.finish_and_clear();
                if let ProgressMode::Bars(multi) = &self.mode {
                    multi.remove(&bar);
                }
            }
        }
    }

    /// Run `f` with the bars hidden (so printed lines do not tear them).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.mode {
            ProgressMode::Bars(multi) if !self.active.is_empty() => multi.suspend(f),
            _ => f(),
        }
    }
}

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
    progress: Mutex<ProgressView>,
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
            progress: Mutex::new(if json {
                ProgressView::off()
            } else {
                ProgressView::for_stderr()
            }),
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
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let pieces = match &ev.kind {
            EventKind::Progress { .. } => progress
                .on_progress(ev, Instant::now())
                .into_iter()
                .map(|l| Piece::Line(Stream::Stderr, l))
                .collect(),
            EventKind::Output { .. } if progress.hides_output(ev) => Vec::new(),
            _ => human(ev, self.arrow),
        };
        progress.after(ev);
        if pieces.is_empty() {
            return;
        }
        progress.suspend(|| self.write_pieces(pieces));
    }

    fn write_pieces(&self, pieces: Vec<Piece>) {
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
        EventKind::UrlDetected {
            url,
            framework,
            public,
            ..
        } => err(format!(
            "{indent}{} detected: {url} ({framework})",
            if *public { "public URL" } else { "web UI" }
        )),
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

    fn progress(index: usize, name: &str, bytes: u64, total: Option<u64>, done: bool) -> Event {
        ev(
            0,
            EventKind::Progress {
                index,
                name: name.into(),
                bytes,
                total,
                rate: 2 * 1024 * 1024,
                eta: total.map(|t| (t - bytes) / (2 * 1024 * 1024)),
                done,
            },
        )
    }

    #[test]
    fn plain_progress_lines_every_few_seconds_and_when_done() {
        let mut v = ProgressView::lines(Duration::from_secs(5));
        let t0 = Instant::now();
        let mib = 1024 * 1024;
        let total = Some(40 * mib);
        assert_eq!(
            v.on_progress(&progress(3, "m.bin", 0, total, false), t0),
            vec!["downloading m.bin: 0.0 MiB / 40.0 MiB (0%), 2.0 MiB/s, ETA 20s"]
        );
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(v
            .on_progress(&progress(3, "m.bin", 2 * mib, total, false), at(1))
            .is_empty());
        assert!(v
            .on_progress(&progress(3, "m.bin", 8 * mib, total, false), at(4))
            .is_empty());
        assert_eq!(
            v.on_progress(&progress(3, "m.bin", 12 * mib, total, false), at(5)),
            vec!["downloading m.bin: 12.0 MiB / 40.0 MiB (30%), 2.0 MiB/s, ETA 14s"]
        );
        // The step's own progress line is hidden while the download is shown.
        let own = ev(
            0,
            EventKind::Output {
                index: Some(3),
                text: "downloading m.bin: 12.0 MiB / 40.0 MiB (30%), 2.0 MiB/s\n".into(),
            },
        );
        let other = ev(
            0,
            EventKind::Output {
                index: Some(3),
                text: "downloaded other.bin (1.0 MiB)\n".into(),
            },
        );
        assert!(v.hides_output(&own));
        assert!(!v.hides_output(&other));
        assert_eq!(
            v.on_progress(&progress(3, "m.bin", 40 * mib, total, true), at(6)),
            vec!["downloading m.bin: 40.0 MiB / 40.0 MiB (100%), 2.0 MiB/s, ETA 0s"]
        );
        assert!(!v.hides_output(&own));
        // Unknown size; a failed step forgets its download.
        assert_eq!(
            v.on_progress(&progress(4, "x", mib, None, false), at(7)),
            vec!["downloading x: 1.0 MiB, 2.0 MiB/s"]
        );
        v.end("/h/api/app/start.json", Some(4));
        assert!(v.active.is_empty());
    }

    #[test]
    fn progress_bars_draw_nothing_as_lines() {
        let mut v = ProgressView::bars(indicatif::ProgressDrawTarget::hidden());
        let t0 = Instant::now();
        assert!(v
            .on_progress(&progress(1, "a", 5, Some(10), false), t0)
            .is_empty());
        assert_eq!(v.active.len(), 1);
        let bar = v.active.values().next().unwrap().bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (5, Some(10)));
        v.on_progress(&progress(1, "a", 10, Some(10), true), t0);
        assert!(v.active.is_empty() && bar.is_finished());
        let mut off = ProgressView::off();
        assert!(off
            .on_progress(&progress(1, "a", 5, Some(10), false), t0)
            .is_empty());
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
