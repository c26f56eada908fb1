//! Bounded per-client queues: the engine side pushes without ever waiting
//! (a full queue drops its oldest item and counts it), the client's stream
//! thread takes what is there.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One Server-Sent Event: `id` (when replayable), `event` name, JSON data.
#[derive(Debug, Clone)]
pub struct SseItem {
    pub id: Option<u64>,
    pub event: Arc<str>,
    pub data: Arc<str>,
}

impl SseItem {
    pub fn new(id: Option<u64>, event: &str, data: impl Into<Arc<str>>) -> Self {
        SseItem {
            id,
            event: Arc::from(event),
            data: data.into(),
        }
    }

    /// The event in the wire format (ends with the blank line).
    pub fn wire(&self) -> String {
        let mut s = String::with_capacity(self.data.len() + 32);
        if let Some(id) = self.id {
            s.push_str(&format!("id: {id}\n"));
        }
        s.push_str("event: ");
        s.push_str(&self.event);
        s.push('\n');
        // JSON data has no raw line breaks; be safe anyway
        for line in self.data.split('\n') {
            s.push_str("data: ");
            s.push_str(line.trim_end_matches('\r'));
            s.push('\n');
        }
        s.push('\n');
        s
    }
}

#[derive(Default)]
struct Inner {
    items: VecDeque<SseItem>,
    dropped: u64,
    closed: bool,
}

/// A bounded queue of events for one client.
pub struct Queue {
    cap: usize,
    inner: Mutex<Inner>,
    cond: Condvar,
}

/// What [`Queue::take`] found.
#[derive(Default)]
pub struct Taken {
    /// Items dropped (oldest first) since the last take; they came before
    /// `items`.
    pub dropped: u64,
    pub items: Vec<SseItem>,
    /// No more items will come.
    pub closed: bool,
}

impl Queue {
    pub fn new(cap: usize) -> Arc<Queue> {
        Arc::new(Queue {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
            cond: Condvar::new(),
        })
    }

    /// Add an item; never blocks for long (drops the oldest when full).
    pub fn push(&self, item: SseItem) {
        let Ok(mut q) = self.inner.lock() else {
            return;
        };
        if q.closed {
            return;
        }
        if q.items.len() >= self.cap {
            q.items.pop_front();
            q.dropped += 1;
        }
        q.items.push_back(item);
        drop(q);
        self.cond.notify_one();
    }

    /// Add a last item and close the queue.
    pub fn close_with(&self, last: Option<SseItem>) {
        let Ok(mut q) = self.inner.lock() else {
            return;
        };
        if q.closed {
            return;
        }
        if let Some(item) = last {
            if q.items.len() >= self.cap {
                q.items.pop_front();
                q.dropped += 1;
            }
            q.items.push_back(item);
        }
        q.closed = true;
        drop(q);
        self.cond.notify_all();
    }

    /// Wait up to `timeout` for items (or the close), then take them all.
    pub fn take(&self, timeout: Duration) -> Taken {
        let Ok(q) = self.inner.lock() else {
            return Taken {
                closed: true,
                ..Taken::default()
            };
        };
        let (mut q, _) = match self.cond.wait_timeout_while(q, timeout, |q| {
            q.items.is_empty() && q.dropped == 0 && !q.closed
        }) {
            Ok(r) => r,
            Err(_) => {
                return Taken {
                    closed: true,
                    ..Taken::default()
                }
            }
        };
        Taken {
            dropped: std::mem::take(&mut q.dropped),
            items: q.items.drain(..).collect(),
            closed: q.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let q = Queue::new(3);
        for i in 0..5 {
            q.push(SseItem::new(Some(i), "x", format!("{i}")));
        }
        let t = q.take(Duration::from_millis(1));
        assert_eq!(t.dropped, 2);
        let ids: Vec<u64> = t.items.iter().filter_map(|i| i.id).collect();
        assert_eq!(ids, vec![2, 3, 4]);
        q.close_with(Some(SseItem::new(None, "end", "{}")));
        let t = q.take(Duration::from_millis(1));
        assert!(t.closed);
        assert_eq!(&*t.items[0].event, "end");
    }

    #[test]
    fn wire_format() {
        let w = SseItem::new(Some(7), "output", "{\"a\":1}").wire();
        assert_eq!(w, "id: 7\nevent: output\ndata: {\"a\":1}\n\n");
    }
}
