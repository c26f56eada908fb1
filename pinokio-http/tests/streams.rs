//! Many event streams opened at the same moment all start at once (tiny_http's
//! connection pool used to queue some of them behind long-lived streams until
//! another connection ended; see vendor/tiny_http/PATCHED.md).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Fixture, Sse};

#[test]
fn streams_opened_together_all_answer_at_once() {
    let f = Fixture::new();
    f.install();
    let path = format!(
        "/api/v1/apps/{}/logs/stream?lines=0",
        f.app_dir().file_name().unwrap().to_string_lossy()
    );
    for round in 0..3 {
        let n = 40;
        let barrier = Arc::new(Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, path, addr) = (barrier.clone(), path.clone(), f.addr);
                std::thread::spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    let s = Sse::open(addr, &path, &[]);
                    (s.status, t.elapsed(), s)
                })
            })
            .collect();
        let opened: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (status, took, _) in &opened {
            assert_eq!(*status, 200, "round {round}");
            assert!(
                *took < Duration::from_secs(3),
                "round {round}: a stream took {took:?} to start"
            );
        }
        // the streams stay open while the next round connects
        std::mem::forget(opened);
    }
}
