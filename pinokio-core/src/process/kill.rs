//! Process-tree discovery through `/proc` and tree termination.
//!
//! A shell's tree is everything that is, or descends from, one of:
//! the shell's leader (while it has not been reaped), a member of its
//! process group or session (the leader is a session leader, so
//! `pgid == sid == leader pid`), or a holder of the shell's PTY slave
//! (which finds `setsid` daemons whose parent already exited).
//!
//! Termination: each leader whose tree has other members is first frozen
//! (SIGSTOP), so a `bash -c 'a; b'` cannot start `b` once `a` died; every
//! other member gets SIGTERM (+SIGCONT for stopped jobs); a leader gets
//! SIGTERM and SIGCONT once the rest of its tree is gone (or half the grace
//! passed), so that a dying shell does not hang up (SIGHUP) its foreground
//! job before that job had a chance to shut down cleanly. A leader that
//! ignores SIGTERM but not SIGHUP (an interactive bash) also gets SIGHUP.
//! After the grace everything left is SIGKILLed, and the tree is polled for
//! up to one more second.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `/proc/<pid>/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub state: char,
    /// Start time in clock ticks since boot (field 22 of `stat`).
    pub start: u64,
}

impl ProcInfo {
    /// Zombies (and dead entries) cannot be signalled any further.
    pub(crate) fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse the content of `/proc/<pid>/stat`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcInfo> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    let sid = f.next()?.parse().ok()?;
    // fields 7..21, then starttime (22)
    let start = f.nth(15).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        sid,
        state,
        start,
    })
}

/// One process, or `None` when it is gone.
pub(crate) fn proc_info(pid: i32) -> Option<ProcInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every process visible in `/proc`.
pub(crate) fn scan() -> HashMap<i32, ProcInfo> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(info) = proc_info(pid) {
            out.insert(pid, info);
        }
    }
    out
}

/// Whether `pid` has a file descriptor open on `tty`.
fn holds(pid: i32, tty: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|target| target == tty))
}

/// Bit mask of a signal in `/proc/<pid>/status` `SigIgn`/`SigCgt`.
fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// The `SigIgn` mask of a process.
fn ignored_signals(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// One shell's tree, as far as the manager knows it.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The shell's leader pid.
    pub leader: i32,
    /// Whether the leader has not been reaped yet (its pid is still ours).
    pub leader_ours: bool,
    /// Its process group (== session id, == leader pid).
    pub pgid: i32,
    /// The PTY slave path, only while the master is still open (after that
    /// the name may belong to another terminal).
    pub tty: Option<PathBuf>,
}

fn excluded(pid: i32) -> bool {
    pid <= 1 || pid as u32 == std::process::id()
}

/// The alive members of `tree` in the snapshot `procs`.
///
/// `cutoff`: seeds found by group, session or terminal must have started
/// no later than this (clock ticks since boot). Once a shell's terminal is
/// closed its name can be given to another shell, and a dead leader's pid
/// can be reused: processes that appeared after the kill began belong to
/// someone else (this tree's own new children are still found through
/// their parents).
pub(crate) fn collect(
    tree: &Tree,
    procs: &HashMap<i32, ProcInfo>,
    children: &HashMap<i32, Vec<i32>>,
    fds: bool,
    cutoff: Option<u64>,
) -> BTreeSet<i32> {
    let old_enough = |p: &ProcInfo| cutoff.is_none_or(|c| p.start <= c);
    let mut seeds: Vec<i32> = Vec::new();
    if tree.leader_ours && procs.get(&tree.leader).is_some_and(ProcInfo::alive) {
        seeds.push(tree.leader);
    }
    for p in procs.values() {
        if p.alive() && old_enough(p) && (p.pgid == tree.pgid || p.sid == tree.pgid) {
            seeds.push(p.pid);
        }
    }
    if fds {
        if let Some(tty) = &tree.tty {
            let known: HashSet<i32> = seeds.iter().copied().collect();
            for p in procs.values() {
                if p.alive()
                    && old_enough(p)
                    && !known.contains(&p.pid)
                    && !excluded(p.pid)
                    && holds(p.pid, tty)
                {
                    seeds.push(p.pid);
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    while let Some(pid) = seeds.pop() {
        if excluded(pid) || !out.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            for k in kids {
                if procs.get(k).is_some_and(ProcInfo::alive) {
                    seeds.push(*k);
                }
            }
        }
    }
    out
}

/// Parent pid -> children pids.
pub(crate) fn children_map(procs: &HashMap<i32, ProcInfo>) -> HashMap<i32, Vec<i32>> {
    let mut m: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs.values() {
        m.entry(p.ppid).or_default().push(p.pid);
    }
    m
}

/// The alive members of several trees (one scan).
pub(crate) fn members(trees: &[Tree], fds: bool) -> BTreeSet<i32> {
    let procs = scan();
    let children = children_map(&procs);
    trees
        .iter()
        .flat_map(|t| collect(t, &procs, &children, fds, None))
        .collect()
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a
    // positive pid we found in /proc (never 0 or -1, never ourselves).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// What a termination did.
#[derive(Debug, Default, Clone)]
pub(crate) struct KillReport {
    /// Every pid that was part of a tree at some point during the kill.
    pub seen: BTreeSet<i32>,
    /// Pids still alive when we gave up (normally empty).
    pub survivors: BTreeSet<i32>,
    /// Whether SIGKILL had to be used.
    pub hard: bool,
}

/// Terminate every process of `trees`; see the module documentation.
pub(crate) fn terminate(trees: &[Tree], grace: Duration) -> KillReport {
    let start = Instant::now();
    let term_deadline = start + grace;
    let leader_deadline = start + grace / 2;
    let leaders: HashSet<i32> = trees
        .iter()
        .filter(|t| t.leader_ours)
        .map(|t| t.leader)
        .collect();
    let mut report = KillReport::default();
    let mut termed: HashSet<i32> = HashSet::new();
    let mut frozen: HashSet<i32> = HashSet::new();
    let mut hard_since: Option<Instant> = None;
    let mut iteration = 0u32;
    let mut cutoff: Option<u64> = None;
    loop {
        let now = Instant::now();
        if hard_since.is_none() && now >= term_deadline {
            hard_since = Some(now);
            report.hard = true;
        }
        let procs = scan();
        let children = children_map(&procs);
        // the newest process that existed when the kill began
        let cutoff = *cutoff
            .get_or_insert_with(|| procs.values().map(|p| p.start).max().unwrap_or(u64::MAX));
        // The PTY-holder scan reads every process's fd table: do it on the
        // first pass, every tenth pass and when switching to SIGKILL.
        let fds = iteration.is_multiple_of(10) || hard_since == Some(now);
        let per_tree: Vec<BTreeSet<i32>> = trees
            .iter()
            .map(|t| collect(t, &procs, &children, fds, Some(cutoff)))
            .collect();
        let mut current: BTreeSet<i32> = per_tree.iter().flatten().copied().collect();
        // Members seen before stay targets while alive, even if they moved
        // out of the group or lost their parent.
        for pid in &report.seen {
            if procs.get(pid).is_some_and(ProcInfo::alive) {
                current.insert(*pid);
            }
        }
        report.seen.extend(current.iter().copied());
        if current.is_empty() {
            break;
        }
        if let Some(since) = hard_since {
            for pid in &current {
                signal(*pid, libc::SIGKILL);
            }
            if now >= since + Duration::from_secs(1) {
                report.survivors = current;
                break;
            }
        } else {
            for mine in &per_tree {
                let others_left = mine.iter().any(|p| !leaders.contains(p));
                // Leaders first: a leader whose tree still has other members
                // is frozen, so a shell cannot go on to its next command
                // while its current one is shutting down.
                for pid in mine.iter().filter(|p| leaders.contains(p)) {
                    if termed.contains(pid) {
                        continue;
                    }
                    if others_left && now < leader_deadline {
                        if frozen.insert(*pid) {
                            signal(*pid, libc::SIGSTOP);
                        }
                        continue;
                    }
                    termed.insert(*pid);
                    signal(*pid, libc::SIGTERM);
                    let ign = ignored_signals(*pid);
                    if ign & sig_bit(libc::SIGTERM) != 0 && ign & sig_bit(libc::SIGHUP) == 0 {
                        signal(*pid, libc::SIGHUP);
                    }
                    signal(*pid, libc::SIGCONT);
                }
                for pid in mine.iter().filter(|p| !leaders.contains(p)) {
                    if termed.insert(*pid) {
                        signal(*pid, libc::SIGTERM);
                        signal(*pid, libc::SIGCONT);
                    }
                }
            }
            // Seen earlier but no longer in any tree's collection.
            for pid in &current {
                if !leaders.contains(pid) && termed.insert(*pid) {
                    signal(*pid, libc::SIGTERM);
                    signal(*pid, libc::SIGCONT);
                }
            }
        }
        iteration += 1;
        let pause = if iteration < 10 { 10 } else { 25 };
        let mut wake = Instant::now() + Duration::from_millis(pause);
        if hard_since.is_none() && wake > term_deadline {
            wake = term_deadline.max(Instant::now());
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let p = parse_stat("1234 (my (weird) prog) S 1 1234 1234 34816 1234 4194560 0 0").unwrap();
        assert_eq!(
            p,
            ProcInfo {
                pid: 1234,
                ppid: 1,
                pgid: 1234,
                sid: 1234,
                state: 'S',
                start: 0,
            }
        );
        // a full line: starttime is field 22
        let full = parse_stat(
            "42 (python3) S 1 42 42 34817 42 4194560 100 0 0 0 5 1 0 0 20 0 1 0 987654 12345 678",
        )
        .unwrap();
        assert_eq!(full.start, 987654);
        assert!(p.alive());
        let z = parse_stat("7 (a) Z 1 7 7 0").unwrap();
        assert!(!z.alive());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn scan_sees_ourselves() {
        let me = std::process::id() as i32;
        let procs = scan();
        assert!(procs.contains_key(&me));
        assert!(excluded(me));
        assert!(excluded(1));
    }
}
