//! A small blocking HTTP/1.1 `GET` for the downloader's segment bodies.
//!
//! reqwest's blocking client runs hyper on a runtime thread and hands each
//! body chunk over a channel: every byte is copied once more in user space
//! and every chunk wakes two threads. Segments move gigabytes, so their
//! bodies are read here instead: the request goes out on a plain or rustls
//! stream (the same platform certificate verifier reqwest uses) and
//! [`Response::read`] receives the body straight into the caller's buffer.
//!
//! Anything this reader does not handle (a proxy in the environment, a
//! chunked or encoded body, a body without a length, a redirect without a
//! usable `Location`) is reported as [`Http1Error::Unsupported`] and the
//! downloader makes that attempt with reqwest. Redirects are followed here;
//! the caller chooses the headers per URL, and `Authorization` never leaves
//! the origin first asked (as with reqwest), so a token meant for one host
//! is never sent to the next.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_REDIRECTS: usize = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that delivers nothing for this long is given up (and the
/// downloader retries from the bytes it has).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) enum Http1Error {
    /// Not something this reader does: make the request with reqwest (the
    /// reason is for tests and `Debug` output).
    #[allow(dead_code)]
    Unsupported(String),
    /// A network or protocol failure (worth retrying).
    Net(String),
    /// A failure a retry will not fix.
    Fatal(String),
}

/// Where TLS settings come from.
#[derive(Clone, Default)]
pub(crate) struct Http1 {
    /// None: the platform verifier (as reqwest's), built once per process.
    tls: Option<Arc<ClientConfig>>,
    read_timeout: Option<Duration>,
}

impl Http1 {
    /// With a TLS configuration of its own (tests trust a local CA).
    #[cfg(test)]
    pub(crate) fn with_tls(tls: Arc<ClientConfig>) -> Http1 {
        Http1 {
            tls: Some(tls),
            read_timeout: None,
        }
    }

    /// With a shorter read timeout (tests of stalled servers).
    #[cfg(test)]
    pub(crate) fn read_timeout(mut self, d: Duration) -> Http1 {
        self.read_timeout = Some(d);
        self
    }

    fn tls(&self) -> Result<Arc<ClientConfig>, Http1Error> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        static PLATFORM: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
        PLATFORM
            .get_or_init(|| {
                use rustls_platform_verifier::BuilderVerifierExt;
                crate::methods::net::ensure_crypto_provider();
                let mut c = ClientConfig::builder()
                    .with_platform_verifier()
                    .map_err(|e| format!("TLS setup: {e}"))?
                    .with_no_client_auth();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(c))
            })
            .clone()
            .map_err(Http1Error::Unsupported)
    }

    /// `GET url`, following redirects; `headers` gives the request headers
    /// for each URL asked (`Host`, `Accept-Encoding`, `Connection` are set
    /// here). Non-2xx answers are returned, not errors; their bodies are not
    /// read.
    pub(crate) fn get(
        &self,
        url: &Url,
        headers: &dyn Fn(&Url) -> Vec<(&'static str, String)>,
    ) -> Result<Response, Http1Error> {
        let origin = url.origin();
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            if !usable(&url) {
                return Err(Http1Error::Unsupported(
                    "a proxy applies to this URL".into(),
                ));
            }
            let mut h = headers(&url);
            if url.origin() != origin {
                // as reqwest (and browsers): credentials stay with the
                // origin they were meant for
                h.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
            }
            let r = self.get_once(&url, &h)?;
            if !matches!(r.status, 301 | 302 | 303 | 307 | 308) {
                return Ok(r);
            }
            let next = r
                .header("location")
                .and_then(|l| url.join(l).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    Http1Error::Unsupported("a redirect without a usable Location".into())
                })?;
            url = next;
        }
        Err(Http1Error::Fatal(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    fn get_once(
        &self,
        url: &Url,
        headers: &[(&'static str, String)],
    ) -> Result<Response, Http1Error> {
        let host = url
            .host_str()
            .ok_or_else(|| Http1Error::Fatal("the URL has no host".into()))?;
        let mut req = String::with_capacity(512);
        req.push_str("GET ");
        req.push_str(url.path());
        if let Some(q) = url.query() {
            req.push('?');
            req.push_str(q);
        }
        req.push_str(" HTTP/1.1\r\nHost: ");
        req.push_str(host);
        if let Some(p) = url.port() {
            req.push_str(&format!(":{p}"));
        }
        req.push_str("\r\n");
        for (k, v) in headers {
            if v.contains(['\r', '\n']) {
                return Err(Http1Error::Unsupported(format!(
                    "the {k} header has a line break"
                )));
            }
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n");

        let mut conn = self.connect(url)?;
        conn.write_all(req.as_bytes())
            .and_then(|()| conn.flush())
            .map_err(|e| net("cannot send the request", &e))?;
        read_head(conn)
    }

    fn connect(&self, url: &Url) -> Result<Conn, Http1Error> {
        let addrs = url
            .socket_addrs(|| None)
            .map_err(|e| net("cannot resolve the host", &e))?;
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match (tcp, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(net("cannot connect", &e)),
            (None, None) => return Err(Http1Error::Net("the host has no address".into())),
        };
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(self.read_timeout.unwrap_or(READ_TIMEOUT)))
            .and_then(|()| tcp.set_write_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| net("cannot set up the connection", &e))?;
        if url.scheme() != "https" {
            return Ok(Conn::Plain(tcp));
        }
        let host = url.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(bare.to_string())
                .map_err(|e| Http1Error::Fatal(format!("bad host name: {e}")))?,
        };
        let tls = ClientConnection::new(self.tls()?, name)
            .map_err(|e| Http1Error::Net(format!("TLS: {e}")))?;
        Ok(Conn::Tls(Box::new(StreamOwned::new(tls, tcp))))
    }
}

/// Whether the built-in reader may make this request: http(s), and no
/// proxy from the environment applies (loopback never goes through one,
/// as in `net::client_for`); with a proxy, reqwest does the work.
pub(crate) fn usable(url: &Url) -> bool {
    usable_with(url, |k| std::env::var(k).ok())
}

fn usable_with(url: &Url, env: impl Fn(&str) -> Option<String>) -> bool {
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    if crate::methods::net::is_loopback(url) {
        return true;
    }
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let scheme = if url.scheme() == "https" {
        ["HTTPS_PROXY", "https_proxy"]
    } else {
        ["HTTP_PROXY", "http_proxy"]
    };
    !scheme
        .iter()
        .chain(["ALL_PROXY", "all_proxy"].iter())
        .any(|k| set(k))
}

fn net(what: &str, e: &io::Error) -> Http1Error {
    Http1Error::Net(format!("{what}: {e}"))
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// An answer; reading it reads the body (exactly `Content-Length` bytes,
/// an early close is an error).
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    conn: Conn,
    /// Body bytes that arrived with the head.
    pending: Vec<u8>,
    at: usize,
    left: u64,
}

impl Response {
    /// The first value of a header (names compare without case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = if self.at < self.pending.len() {
            let n = max.min(self.pending.len() - self.at);
            buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
            self.at += n;
            n
        } else {
            self.conn.read(&mut buf[..max])?
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection closed with {} bytes of the body missing",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn read_head(mut conn: Conn) -> Result<Response, Http1Error> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() >= MAX_HEAD {
                return Err(Http1Error::Net("the response head is too large".into()));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = conn
            .read(&mut buf[len..])
            .map_err(|e| net("cannot read the response", &e))?;
        if n == 0 {
            return Err(Http1Error::Net(
                "the connection closed before a response".into(),
            ));
        }
        len += n;
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut slots);
        let head_len = match parsed.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(h)) => h,
            Ok(httparse::Status::Partial) => continue,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Http1Error::Unsupported("more than 64 headers".into()))
            }
            Err(e) => return Err(Http1Error::Net(format!("a malformed response: {e}"))),
        };
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        let mut r = Response {
            status,
            headers,
            conn,
            pending: buf[head_len..len].to_vec(),
            at: 0,
            left: 0,
        };
        if (100..200).contains(&status) {
            return Err(Http1Error::Unsupported(format!(
                "an interim answer ({status})"
            )));
        }
        if (200..300).contains(&status) && status != 204 {
            r.left = body_length(&r)?;
        }
        return Ok(r);
    }
}

/// The body length of a 2xx answer; what is not a plain `Content-Length`
/// body is left to reqwest.
fn body_length(r: &Response) -> Result<u64, Http1Error> {
    if r.header("transfer-encoding").is_some() {
        return Err(Http1Error::Unsupported("a chunked body".into()));
    }
    if r.header("content-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(Http1Error::Unsupported("an encoded body".into()));
    }
    let mut lengths = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<u64>());
    match (lengths.next(), lengths.next()) {
        (None, _) => Err(Http1Error::Unsupported("a body without a length".into())),
        (Some(Ok(n)), None) => Ok(n),
        (Some(Ok(n)), Some(Ok(m))) if n == m => Ok(n),
        _ => Err(Http1Error::Net("a bad Content-Length".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::path::Path;
    use std::sync::Mutex;

    /// A server on 127.0.0.1 answering every connection with `reply(head)`
    /// (the request head as text); the heads it saw are kept.
    struct Server {
        base: String,
        heads: Arc<Mutex<Vec<String>>>,
    }

    fn serve(reply: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let (seen, reply) = (seen.clone(), reply.clone());
                std::thread::spawn(move || {
                    let head = read_request(&mut c);
                    seen.lock().unwrap().push(head.clone());
                    reply(&head, &mut c);
                });
            }
        });
        Server { base, heads }
    }

    fn read_request(c: &mut impl Read) -> String {
        let mut r = std::io::BufReader::new(c);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                return head;
            }
            head.push_str(&line);
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn body(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn no_headers(_: &Url) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn read_all(r: &mut Response) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn body_arrives_byte_exact_with_bytes_sent_alongside_the_head() {
        let data = body(3 << 20);
        let d = data.clone();
        let s = serve(move |_, c| {
            // head and the first body bytes in one write
            let mut first = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes 0-{}/{}\r\n\r\n",
                d.len(),
                d.len() - 1,
                d.len()
            )
            .into_bytes();
            first.extend_from_slice(&d[..1000]);
            c.write_all(&first).unwrap();
            c.write_all(&d[1000..]).unwrap();
        });
        let headers = |_: &Url| vec![("Range", "bytes=0-".to_string())];
        let mut r = Http1::default()
            .get(&url(&format!("{}/f.bin?x=1", s.base)), &headers)
            .unwrap();
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), Some("bytes 0-3145727/3145728"));
        assert_eq!(read_all(&mut r).unwrap(), data);
        let head = s.heads.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /f.bin?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Range: bytes=0-\r\n"), "{head}");
        assert!(head.contains("Accept-Encoding: identity\r\n"), "{head}");
        assert!(
            head.contains(&format!("Host: {}\r\n", &s.base[7..])),
            "{head}"
        );
    }

    #[test]
    fn an_early_close_is_an_error_not_a_short_body() {
        let s = serve(|_, c| {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
                .unwrap();
            c.write_all(&[1u8; 1200]).unwrap();
        });
        let mut r = Http1::default().get(&url(&s.base), &no_headers).unwrap();
        let e = read_all(&mut r).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("3800 bytes"), "{e}");
    }

    #[test]
    fn redirects_are_followed_and_headers_chosen_per_host() {
        let cdn = serve(|_, c| {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        });
        let target = format!("{}/blob?sig=1", cdn.base);
        let hub = serve(move |head, c| {
            let loc = match head.starts_with("GET /start ") {
                true => "/next".to_string(),
                false => target.clone(),
            };
            let r = format!("HTTP/1.1 302 Found\r\nLocation: {loc}\r\nContent-Length: 0\r\n\r\n");
            c.write_all(r.as_bytes()).unwrap();
        });
        let hub_port = url(&hub.base).port();
        let headers = move |u: &Url| {
            let mut h = vec![("Authorization", "Bearer SECRET".to_string())];
            if u.port() == hub_port {
                h.push(("X-Hub", "1".to_string()));
            }
            h
        };
        let mut r = Http1::default()
            .get(&url(&format!("{}/start", hub.base)), &headers)
            .unwrap();
        assert_eq!(read_all(&mut r).unwrap(), b"hello");
        let hub_heads = hub.heads.lock().unwrap().clone();
        assert_eq!(hub_heads.len(), 2);
        assert!(hub_heads[1].starts_with("GET /next "), "{hub_heads:?}");
        assert!(hub_heads.iter().all(|h| h.contains("Bearer SECRET")));
        let cdn_heads = cdn.heads.lock().unwrap().clone();
        assert!(
            cdn_heads[0].starts_with("GET /blob?sig=1 "),
            "{cdn_heads:?}"
        );
        // another origin: no token even though the caller offered one
        assert!(!cdn_heads[0].contains("Authorization"), "{cdn_heads:?}");
        assert!(!cdn_heads[0].contains("X-Hub"), "{cdn_heads:?}");
    }

    #[test]
    fn a_redirect_loop_is_final() {
        let s = serve(|_, c| {
            c.write_all(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap();
        });
        match Http1::default().get(&url(&s.base), &no_headers) {
            Err(Http1Error::Fatal(m)) => assert!(m.contains("redirects"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.status)),
        }
        assert_eq!(s.heads.lock().unwrap().len(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn what_the_reader_does_not_do_is_handed_back() {
        for head in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
            "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n",
        ] {
            let s = serve(move |_, c| c.write_all(head.as_bytes()).unwrap());
            match Http1::default().get(&url(&s.base), &no_headers) {
                Err(Http1Error::Unsupported(_)) => {}
                other => panic!("{head:?}: {:?}", other.map(|r| r.status)),
            }
        }
    }

    #[test]
    fn error_answers_come_back_with_their_headers() {
        let s = serve(|_, c| {
            c.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap();
        });
        let r = Http1::default().get(&url(&s.base), &no_headers).unwrap();
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("7")));
    }

    #[test]
    fn a_stalled_server_times_out_and_a_refused_port_is_a_network_error() {
        let s = serve(|_, c| {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
                .unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let w = Http1::default().read_timeout(Duration::from_millis(200));
        let mut r = w.get(&url(&s.base), &no_headers).unwrap();
        let t0 = std::time::Instant::now();
        let e = read_all(&mut r).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(2));

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match w.get(&url(&format!("http://127.0.0.1:{port}/")), &no_headers) {
            Err(Http1Error::Net(m)) => assert!(m.contains("cannot connect"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.status)),
        }
    }

    #[test]
    fn header_values_with_line_breaks_are_not_sent() {
        let s = serve(|_, c| {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let headers = |_: &Url| vec![("User-Agent", "x\r\nEvil: 1".to_string())];
        assert!(matches!(
            Http1::default().get(&url(&s.base), &headers),
            Err(Http1Error::Unsupported(_))
        ));
        assert!(s.heads.lock().unwrap().is_empty());
    }

    #[test]
    fn proxies_in_the_environment_leave_the_request_to_reqwest() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let remote = url("https://example.com/x");
        let local = url("http://127.0.0.1:8080/x");
        assert!(usable_with(&remote, env(&[])));
        assert!(!usable_with(
            &remote,
            env(&[("https_proxy", "http://p:3128")])
        ));
        assert!(!usable_with(&remote, env(&[("ALL_PROXY", "socks5://p")])));
        // the other scheme's proxy, an empty value, loopback: no proxy
        assert!(usable_with(
            &remote,
            env(&[("HTTP_PROXY", "http://p:3128")])
        ));
        assert!(usable_with(&remote, env(&[("HTTPS_PROXY", " ")])));
        assert!(usable_with(&local, env(&[("HTTP_PROXY", "http://p:3128")])));
        assert!(!usable_with(&url("ftp://example.com/x"), env(&[])));
    }

    #[test]
    fn https_is_verified_and_read_through_rustls() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        crate::methods::net::ensure_crypto_provider();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        let certs = vec![CertificateDer::from_pem_file(dir.join("localhost.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("localhost.key")).unwrap();
        let server = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let data = body(1 << 20);
        let d = data.clone();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let (server, d) = (server.clone(), d.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(server).unwrap();
                    let mut tls = StreamOwned::new(conn, c);
                    let head = read_request(&mut tls);
                    if head.is_empty() {
                        return; // the client refused the certificate
                    }
                    let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", d.len());
                    let _ = tls.write_all(r.as_bytes());
                    let _ = tls.write_all(&d);
                    let _ = tls.flush();
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
            .unwrap();
        let trusting = Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        for host in ["localhost", "127.0.0.1"] {
            let u = url(&format!("https://{host}:{port}/model.bin"));
            let mut r = Http1::with_tls(trusting.clone())
                .get(&u, &no_headers)
                .unwrap();
            assert_eq!(read_all(&mut r).unwrap(), data, "{host}");
        }
        // the platform's roots do not know the test CA
        let u = url(&format!("https://localhost:{port}/model.bin"));
        match Http1::default().get(&u, &no_headers) {
            Err(Http1Error::Net(m)) => assert!(m.to_lowercase().contains("certificate"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.status)),
        }
    }
}
