//! Server-Sent Event streams written by hand: the connection is taken from
//! tiny_http (`Request::into_writer`), the status line and headers are
//! written here with `Transfer-Encoding: chunked`, and every batch of
//! events is one chunk, flushed at once (tiny_http's own responses buffer
//! chunks). A write error means the client has gone.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::queue::{Queue, SseItem};

/// A comment line is sent after this long without data.
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// How often a waiting stream looks at the server's stop flag.
const POLL: Duration = Duration::from_millis(500);

pub struct SseWriter {
    w: Box<dyn Write + Send>,
    last: Instant,
}

impl SseWriter {
    /// Take over the connection and send the response head.
    pub fn start(req: tiny_http::Request) -> io::Result<SseWriter> {
        let mut w = req.into_writer();
        w.write_all(
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/event-stream; charset=utf-8\r\n\
              Cache-Control: no-store\r\n\
              X-Accel-Buffering: no\r\n\
              X-Content-Type-Options: nosniff\r\n\
              Connection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )?;
        let mut s = SseWriter {
            w,
            last: Instant::now(),
        };
        // a first chunk so clients see the stream open at once
        s.chunk(b": stream\n\n")?;
        Ok(s)
    }

    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        write!(self.w, "{:X}\r\n", data.len())?;
        self.w.write_all(data)?;
        self.w.write_all(b"\r\n")?;
        self.w.flush()?;
        self.last = Instant::now();
        Ok(())
    }

    /// Send events as one chunk.
    pub fn send(&mut self, items: &[SseItem]) -> io::Result<()> {
        let mut buf = String::new();
        for it in items {
            buf.push_str(&it.wire());
        }
        self.chunk(buf.as_bytes())
    }

    fn ping(&mut self) -> io::Result<()> {
        self.chunk(b": ping\n\n")
    }

    /// End the stream (the last chunk).
    pub fn finish(mut self) {
        let _ = self.w.write_all(b"0\r\n\r\n");
        let _ = self.w.flush();
    }

    /// Send what the queue receives until it closes, the client goes away
    /// or the server stops. `Ok(true)`: the queue closed.
    pub fn pump(&mut self, q: &Queue, stopping: &AtomicBool) -> io::Result<bool> {
        loop {
            if stopping.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let t = q.take(POLL);
            let mut out = Vec::with_capacity(t.items.len() + 1);
            if t.dropped > 0 {
                out.push(SseItem::new(
                    None,
                    "dropped",
                    format!("{{\"count\":{}}}", t.dropped),
                ));
            }
            out.extend(t.items);
            if !out.is_empty() {
                self.send(&out)?;
            } else if self.last.elapsed() >= PING_EVERY {
                self.ping()?;
            }
            if t.closed {
                return Ok(true);
            }
        }
    }
}
