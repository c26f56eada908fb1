//! Running the machine's tools (`nvidia-smi`, `rocm-smi`, `git --version`)
//! behind [`CommandRunner`], with a time limit, so tests script the
//! answers ([`ScriptedRunner`]) and the real one ([`SystemRunner`]) never
//! hangs a probe.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors running a tool.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program}: cannot start: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program}: no answer within {} ms (stopped)", .limit.as_millis())]
    Timeout { program: String, limit: Duration },
}

/// What a finished tool printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Finds and runs programs.
pub trait CommandRunner: Send + Sync {
    /// The program's path when it is installed (on `PATH`).
    fn find(&self, program: &str) -> Option<PathBuf>;
    /// Run it, stopping it after `limit`.
    fn run(
        &self,
        program: &Path,
        args: &[&str],
        limit: Duration,
    ) -> Result<CommandOutput, CommandError>;
}

/// Real processes, found on `PATH`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn find(&self, program: &str) -> Option<PathBuf> {
        which::which(program).ok()
    }

    fn run(
        &self,
        program: &Path,
        args: &[&str],
        limit: Duration,
    ) -> Result<CommandOutput, CommandError> {
        let name = program.display().to_string();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn {
                program: name.clone(),
                source,
            })?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let out_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let err_t = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() >= limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CommandError::Timeout {
                        program: name,
                        limit,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(source) => {
                    return Err(CommandError::Spawn {
                        program: name,
                        source,
                    })
                }
            }
        };
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        Ok(CommandOutput {
            code: status.code(),
            stdout: text(out_t.join().unwrap_or_default()),
            stderr: text(err_t.join().unwrap_or_default()),
        })
    }
}

/// Canned answers for tests: programs that "exist" and what each command
/// line prints. A command line without an answer fails to start.
#[derive(Debug, Clone, Default)]
pub struct ScriptedRunner {
    programs: BTreeMap<String, PathBuf>,
    answers: BTreeMap<String, Result<CommandOutput, Duration>>,
}

impl ScriptedRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// `program` is installed at `/usr/bin/<program>`.
    pub fn program(mut self, program: &str) -> Self {
        self.programs
            .insert(program.into(), PathBuf::from("/usr/bin").join(program));
        self
    }

    /// `program args...` prints `stdout` and exits with `code` (the program
    /// is installed too).
    pub fn answer(mut self, command_line: &str, code: i32, stdout: &str) -> Self {
        let program = command_line.split(' ').next().unwrap_or_default();
        self = self.program(program);
        self.answers.insert(
            command_line.into(),
            Ok(CommandOutput {
                code: Some(code),
                stdout: stdout.into(),
                stderr: String::new(),
            }),
        );
        self
    }

    /// `program args...` never answers (it times out).
    pub fn hang(mut self, command_line: &str) -> Self {
        let program = command_line.split(' ').next().unwrap_or_default();
        self = self.program(program);
        self.answers
            .insert(command_line.into(), Err(Duration::from_secs(3600)));
        self
    }
}

impl CommandRunner for ScriptedRunner {
    fn find(&self, program: &str) -> Option<PathBuf> {
        self.programs.get(program).cloned()
    }

    fn run(
        &self,
        program: &Path,
        args: &[&str],
        limit: Duration,
    ) -> Result<CommandOutput, CommandError> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let line = std::iter::once(name.as_str())
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        match self.answers.get(&line) {
            Some(Ok(o)) => Ok(o.clone()),
            Some(Err(_)) => Err(CommandError::Timeout {
                program: name,
                limit,
            }),
            None => Err(CommandError::Spawn {
                program: line,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_runner_captures_output_and_exit_code() {
        let sh = SystemRunner.find("sh").expect("sh on PATH");
        let o = SystemRunner
            .run(
                &sh,
                &["-c", "echo out; echo err >&2; exit 3"],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert_eq!(o.code, Some(3));
    }

    #[test]
    fn real_runner_stops_a_hanging_tool() {
        let sh = SystemRunner.find("sh").unwrap();
        let t = Instant::now();
        let e = SystemRunner
            .run(&sh, &["-c", "exec sleep 30"], Duration::from_millis(100))
            .unwrap_err();
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_program() {
        assert!(SystemRunner.find("surely-not-a-real-tool-7f3a").is_none());
        let e = SystemRunner
            .run(Path::new("/nonexistent/tool"), &[], Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }));
    }
}
