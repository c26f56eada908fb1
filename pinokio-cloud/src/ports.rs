//! The TCP ports a process tree listens on (Linux `/proc`): the socket
//! inodes in `/proc/<pid>/fd` of the process and its descendants, matched
//! against the listening sockets of `/proc/<pid>/net/tcp` and `tcp6` (the
//! tree's own network namespace).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Listening addresses of `pid` and its descendants (empty when the
/// process is gone or nothing listens).
pub fn listening_ports(pid: u32) -> Vec<SocketAddr> {
    listening_ports_in(Path::new("/proc"), pid)
}

/// [`listening_ports`] with another `/proc` (tests).
pub fn listening_ports_in(proc_root: &Path, pid: u32) -> Vec<SocketAddr> {
    let tree = process_tree(proc_root, pid);
    let mut inodes = HashSet::new();
    for p in &tree {
        let Ok(rd) = std::fs::read_dir(proc_root.join(p.to_string()).join("fd")) else {
            continue;
        };
        for e in rd.flatten() {
            if let Some(i) = std::fs::read_link(e.path())
                .ok()
                .and_then(|t| socket_inode(&t.to_string_lossy()))
            {
                inodes.insert(i);
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let net = proc_root.join(pid.to_string()).join("net");
    let mut out = BTreeSet::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(net.join(file)) else {
            continue;
        };
        for (inode, addr) in parse_proc_net_tcp(&text, v6) {
            if inodes.contains(&inode) {
                out.insert(addr);
            }
        }
    }
    out.into_iter().collect()
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `pid` and every descendant, found through the parent ids in
/// `/proc/*/stat` (works without `CONFIG_PROC_CHILDREN`).
pub fn process_tree(proc_root: &Path, pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir(proc_root) {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| parent_of(&s))
            {
                children.entry(pp).or_default().push(p);
            }
        }
    }
    if !proc_root.join(pid.to_string()).exists() {
        return Vec::new();
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            for k in c {
                if !out.contains(k) {
                    out.push(*k);
                }
            }
        }
        i += 1;
    }
    out
}

/// The parent pid from a `/proc/<pid>/stat` line (`pid (comm) S ppid ...`;
/// `comm` may hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Listening sockets of `/proc/net/tcp` (`v6 = false`) or `tcp6`, as
/// `(inode, address)`.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<(u64, SocketAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != TCP_LISTEN {
                return None;
            }
            let (ip_hex, port_hex) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let ip = if v6 {
                IpAddr::V6(parse_v6(ip_hex)?)
            } else {
                IpAddr::V4(parse_v4(ip_hex)?)
            };
            Some((f[9].parse().ok()?, SocketAddr::new(ip, port)))
        })
        .collect()
}

/// `st` of an established connection.
const TCP_ESTABLISHED: &str = "01";

/// Established connections of `/proc/net/tcp` (`v6 = false`) or `tcp6`,
/// as `(local, remote)` addresses.
pub fn parse_established(text: &str, v6: bool) -> Vec<(SocketAddr, SocketAddr)> {
    let addr = |s: &str| -> Option<SocketAddr> {
        let (ip_hex, port_hex) = s.split_once(':')?;
        let port = u16::from_str_radix(port_hex, 16).ok()?;
        let ip = if v6 {
            IpAddr::V6(parse_v6(ip_hex)?)
        } else {
            IpAddr::V4(parse_v4(ip_hex)?)
        };
        Some(SocketAddr::new(ip, port))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != TCP_ESTABLISHED {
                return None;
            }
            Some((addr(f[1])?, addr(f[2])?))
        })
        .collect()
}

/// Established connections (this network namespace, `{proc_root}/net`)
/// whose local port is one of `ports`: clients of servers listening there.
pub fn established_to(proc_root: &Path, ports: &HashSet<u16>) -> Vec<(SocketAddr, SocketAddr)> {
    if ports.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(proc_root.join("net").join(file)) else {
            continue;
        };
        out.extend(
            parse_established(&text, v6)
                .into_iter()
                .filter(|(local, _)| ports.contains(&local.port())),
        );
    }
    out
}

/// The kernel prints the address as host-order 32-bit words.
fn parse_v4(hex: &str) -> Option<Ipv4Addr> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(n.to_ne_bytes()))
}

fn parse_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let n = u32::from_str_radix(&hex[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&n.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// An `http://` URL that reaches a listening address from this machine
/// (wildcards become loopback; an IPv4-mapped address becomes IPv4).
pub fn reachable_url(addr: SocketAddr) -> String {
    let port = addr.port();
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("http://127.0.0.1:{port}"),
        IpAddr::V4(ip) => format!("http://{ip}:{port}"),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("http://[::1]:{port}"),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("http://{v4}:{port}"),
            None => format!("http://[{ip}]:{port}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        assert_eq!(parent_of("42 (python3) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("43 (a b) (c)) R 9 1 1"), Some(9));
    }

    #[test]
    fn urls_for_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable_url(a("0.0.0.0:7860")), "http://127.0.0.1:7860");
        assert_eq!(reachable_url(a("[::]:8188")), "http://[::1]:8188");
        assert_eq!(
            reachable_url(a("[::ffff:127.0.0.1]:80")),
            "http://127.0.0.1:80"
        );
        assert_eq!(reachable_url(a("127.0.0.1:5000")), "http://127.0.0.1:5000");
    }
}
