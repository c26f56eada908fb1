//! A local HTTP server for tests (no test needs the internet): fixed
//! answers per path, and a record of every request (method, path, headers,
//! body).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

pub struct TestServer {
    pub base: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serve `routes` (path -> (status, body)); other paths are 404.
pub fn serve(routes: Vec<(&str, u16, Vec<u8>)>) -> TestServer {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let routes: HashMap<String, (u16, Vec<u8>)> = routes
        .into_iter()
        .map(|(p, s, b)| (p.to_string(), (s, b)))
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let seen = seen.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_ascii_lowercase(),
                            h.value.as_str().to_string(),
                        )
                    })
                    .collect();
                let path = req.url().to_string();
                seen.lock().unwrap().push(Seen {
                    method: req.method().as_str().to_string(),
                    path: path.clone(),
                    headers,
                    body,
                });
                let (status, bytes) = routes
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, b"not found".to_vec()));
                let resp = tiny_http::Response::from_data(bytes).with_status_code(status);
                let _ = req.respond(resp);
            }
        });
    }
    TestServer {
        base: format!("http://127.0.0.1:{port}"),
        seen,
        stop,
    }
}
