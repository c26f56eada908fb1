//! Is a recorded process still the same process? Process start times from
//! `/proc`, so that a pid reused by an unrelated process is not mistaken
//! for the one the store recorded.

use std::path::Path;

/// How far a process's start time (from `/proc`) may be from the recorded
/// start time and still count as the same process. `/proc/stat`'s boot
/// time has a one-second resolution and the recorded time is taken just
/// after the spawn, so a few seconds absorb both.
pub const START_TOLERANCE_MS: u64 = 3_000;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The boot time in unix milliseconds (`btime` of `/proc/stat`).
fn boot_time_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s * 1000)
}

/// `(state, start ticks after boot)` from `/proc/<pid>/stat` text: the
/// state is field 3, the start time field 22 (counted from 1, after the
/// parenthesised command name, which may itself contain spaces and `)`).
fn parse_state_and_start(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn stat_of(pid: u32) -> Option<(char, u64)> {
    if pid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, ticks) = parse_state_and_start(&text)?;
    let boot = boot_time_ms()?;
    Some((state, boot + ticks * 1000 / clock_ticks()))
}

/// When process `pid` started, in unix milliseconds, or `None` when there
/// is no such process (or no `/proc`).
pub fn pid_start_ms(pid: u32) -> Option<u64> {
    stat_of(pid).map(|(_, start)| start)
}

/// The default liveness check for [`StateStore::reconcile`](super::StateStore::reconcile):
/// `pid` exists, is not a zombie, and started within
/// [`START_TOLERANCE_MS`] of `started_ms` (otherwise the pid was reused).
/// Without `/proc` it falls back to `kill(pid, 0)` and cannot detect reuse.
pub fn process_alive(pid: u32, started_ms: u64) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match stat_of(pid) {
        Some((state, start)) => {
            !matches!(state, 'Z' | 'X' | 'x') && start.abs_diff(started_ms) <= START_TOLERANCE_MS
        }
        None if Path::new("/proc/self/stat").exists() => false,
        None => {
            // SAFETY: signal 0 only checks that the process exists.
            let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
            r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_parses_stat_with_odd_command_names() {
        let mut text = String::from("42 (a) b (c)) S");
        // fields 4..=21 (18 values), then field 22 = 12345.
        for i in 4..=21 {
            text.push_str(&format!(" {i}"));
        }
        text.push_str(" 12345 99 100\n");
        assert_eq!(parse_state_and_start(&text), Some(('S', 12345)));
    }

    #[test]
    fn state_own_start_time_is_plausible() {
        let start = pid_start_ms(std::process::id()).expect("/proc is mounted");
        let now = crate::events::now_ms();
        assert!(start <= now + START_TOLERANCE_MS, "{start} > {now}");
        // The test binary started less than an hour ago.
        let age = now.saturating_sub(start);
        assert!(age < 3_600_000, "started {age} ms ago");
        assert!(process_alive(std::process::id(), start));
        assert!(!process_alive(std::process::id(), start - 60_000));
        assert!(!process_alive(0, start));
    }
}
