//! CPU count, memory (with the container's cgroup limit) and disk space.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::source::{DiskSpace, HostSource};

/// Memory and CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// CPUs this process may use (cgroup quota and affinity applied).
    pub cpus: usize,
    /// `MemTotal` of `/proc/meminfo`, MiB.
    pub ram_total_mib: u64,
    /// `MemAvailable`, MiB.
    pub ram_available_mib: u64,
    /// The container's memory limit (cgroup v2 `memory.max` or v1
    /// `memory.limit_in_bytes`) when it is below `ram_total_mib`.
    pub ram_limit_mib: Option<u64>,
}

/// The disk of one folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub path: PathBuf,
    pub space: Option<DiskSpace>,
}

/// Read `/proc/meminfo` and the cgroup limit through `src`.
pub fn resources(src: &dyn HostSource) -> Resources {
    let meminfo = src
        .read_to_string(Path::new("/proc/meminfo"))
        .unwrap_or_default();
    let (total, available) = parse_meminfo(&meminfo);
    let limit = cgroup_limit(src)
        .map(|b| b >> 20)
        .filter(|l| total == 0 || *l < total);
    Resources {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        ram_total_mib: total,
        ram_available_mib: available,
        ram_limit_mib: limit,
    }
}

/// `(MemTotal, MemAvailable)` in MiB (0 when missing).
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("MemTotal:") / 1024, kib("MemAvailable:") / 1024)
}

fn cgroup_limit(src: &dyn HostSource) -> Option<u64> {
    for p in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Some(t) = src.read_to_string(Path::new(p)) {
            let t = t.trim();
            // "max" (v2) or a huge page-rounded number (v1) mean no limit
            if let Ok(n) = t.parse::<u64>() {
                if n < (1u64 << 62) {
                    return Some(n);
                }
            }
        }
    }
    None
}

/// Free space of each folder.
pub fn disks(src: &dyn HostSource, paths: &[PathBuf]) -> Vec<Disk> {
    paths
        .iter()
        .map(|p| Disk {
            path: p.clone(),
            space: src.disk_space(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FixtureHost, RealHost};

    const MEMINFO: &str = "MemTotal:       24556016 kB\nMemFree:         1204224 kB\nMemAvailable:   17316548 kB\nBuffers:          513844 kB\n";

    #[test]
    fn meminfo_and_cgroup_limit() {
        let h = FixtureHost::new()
            .file("/proc/meminfo", MEMINFO)
            .file("/sys/fs/cgroup/memory.max", "8589934592\n");
        let r = resources(&h);
        assert_eq!(r.ram_total_mib, 23980);
        assert_eq!(r.ram_available_mib, 16910);
        assert_eq!(r.ram_limit_mib, Some(8192));
        assert!(r.cpus >= 1);
        let h = FixtureHost::new()
            .file("/proc/meminfo", MEMINFO)
            .file("/sys/fs/cgroup/memory.max", "max\n");
        assert_eq!(resources(&h).ram_limit_mib, None);
    }

    #[test]
    fn real_machine_has_memory_and_cpus() {
        let r = resources(&RealHost);
        assert!(r.ram_total_mib > 0 && r.ram_available_mib <= r.ram_total_mib);
        assert!(r.cpus >= 1);
    }
}
