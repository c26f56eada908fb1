//! Listening ports of a process tree: a captured `/proc` layout, this
//! process, and a real grandchild process listening on 127.0.0.1:0.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinokio_cloud::ports::{listening_ports, listening_ports_in, parse_proc_net_tcp, process_tree};

/// `/proc/net/tcp` as the kernel prints it: a server on 0.0.0.0:7860, one
/// on 127.0.0.1:8188, and an established connection (not listening).
const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1EB4 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4811501 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1FFC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4811502 1 0000000000000000 100 0 0 10 0
   2: 0100007F:D1C0 0100007F:1EB4 01 00000000:00000000 00:00000000 00000000     0        0 4811503 1 0000000000000000 20 4 30 10 -1
";
/// `/proc/net/tcp6`: [::]:11434 and [::1]:5173.
const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4811601 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1435 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4811602 1 0000000000000000 100 0 0 10 0
";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn proc_net_tcp_parsing() {
    assert_eq!(
        parse_proc_net_tcp(TCP, false),
        vec![
            (4811501, addr("0.0.0.0:7860")),
            (4811502, addr("127.0.0.1:8188"))
        ]
    );
    assert_eq!(
        parse_proc_net_tcp(TCP6, true),
        vec![(4811601, addr("[::]:11434")), (4811602, addr("[::1]:5173"))]
    );
}

/// A fake `/proc`: shell 100 -> python 101 -> worker 102 (holding the
/// sockets 4811501 and 4811601), and an unrelated 200 holding 4811502.
#[test]
fn captured_proc_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let proc_entry = |pid: u32, ppid: u32, comm: &str, sockets: &[u64]| {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(d.join("fd")).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", d.join("fd/0")).unwrap();
        for (i, s) in sockets.iter().enumerate() {
            std::os::unix::fs::symlink(format!("socket:[{s}]"), d.join(format!("fd/{}", i + 3)))
                .unwrap();
        }
    };
    proc_entry(100, 1, "bash", &[]);
    proc_entry(101, 100, "python (main)", &[4811503]);
    proc_entry(102, 101, "python", &[4811501, 4811601]);
    proc_entry(200, 1, "other", &[4811502]);
    std::fs::create_dir_all(root.join("100/net")).unwrap();
    std::fs::write(root.join("100/net/tcp"), TCP).unwrap();
    std::fs::write(root.join("100/net/tcp6"), TCP6).unwrap();

    assert_eq!(process_tree(root, 100), vec![100, 101, 102]);
    assert_eq!(
        listening_ports_in(root, 100),
        vec![addr("0.0.0.0:7860"), addr("[::]:11434")]
    );
    assert!(listening_ports_in(root, 999).is_empty());
}

#[test]
fn this_process_listening() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mine = l.local_addr().unwrap();
    // a connection is not a listening socket
    let _client = TcpStream::connect(mine).unwrap();
    let found = listening_ports(std::process::id());
    assert!(found.contains(&mine), "{found:?} lacks {mine}");
    assert!(found.iter().all(|a| a.port() != 0));
    drop(l);
    let found = listening_ports(std::process::id());
    assert!(!found.contains(&mine), "{found:?}");
}

/// Helper run in a child: listen, print the address and pid, wait.
#[test]
#[ignore = "helper: started by real_grandchild_listening"]
fn listener_helper() {
    if std::env::var_os("PORTS_HELPER").is_none() {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    println!(
        "LISTENING {} {}",
        l.local_addr().unwrap(),
        std::process::id()
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn real_grandchild_listening() {
    let exe = std::env::current_exe().unwrap();
    // sh forks the helper (`&`), so the listener is sh's child, not sh itself
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" --exact listener_helper --ignored --nocapture --test-threads=1 & wait")
        .arg(&exe)
        .env("PORTS_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sh.stdout.take().unwrap()).lines();
    let (listen, helper_pid) = loop {
        let line = lines.next().expect("helper output").unwrap();
        // libtest may print "test listener_helper ... " before it
        if let Some((_, rest)) = line.split_once("LISTENING ") {
            let (a, p) = rest.split_once(' ').unwrap();
            break (addr(a), p.trim().parse::<u32>().unwrap());
        }
    };
    assert_ne!(helper_pid, sh.id());
    let start = Instant::now();
    let found = listening_ports(sh.id());
    let took = start.elapsed();
    // SAFETY: plain kill(2) of the helper this test started
    unsafe {
        libc::kill(helper_pid as i32, libc::SIGKILL);
    }
    let _ = sh.kill();
    let _ = sh.wait();
    assert_eq!(found, vec![listen], "tree of {}", sh.id());
    assert!(took < Duration::from_millis(500), "{took:?}");
}
