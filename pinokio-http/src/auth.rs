//! The API token (`HOME/http-token`), how a request proves it, and the
//! `Host` / `Origin` rules of docs/api.md.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file's name in the home.
pub const TOKEN_FILE: &str = "http-token";

/// The name of the session cookie.
pub const COOKIE: &str = "pinokio_token";

/// `HOME/http-token`.
pub fn token_path(home: &Path) -> PathBuf {
    home.join(TOKEN_FILE)
}

/// The home's API token, created (32 random bytes as hex, mode 0600) when
/// there is none; `true` when it was created now.
pub fn load_or_create_token(home: &Path) -> std::io::Result<(String, bool)> {
    let path = token_path(home);
    for _ in 0..3 {
        match std::fs::read_to_string(&path) {
            Ok(text) if valid_token(text.trim()) => {
                let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode != 0o600 {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                return Ok((text.trim().to_string(), false));
            }
            Ok(_) => {
                // empty or damaged: replace it
                std::fs::remove_file(&path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token = random_hex(32)?;
        std::fs::create_dir_all(home)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(format!("{token}\n").as_bytes())?;
                f.sync_all()?;
                return Ok((token, true));
            }
            // another process created it meanwhile: read that one
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("the token file keeps changing"))
}

fn valid_token(t: &str) -> bool {
    t.len() >= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `n` random bytes from the kernel, as lower-case hex.
fn random_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Whether the server listens on a loopback address only.
pub fn is_loopback_bind(host: &str, addr: &SocketAddr) -> bool {
    host.eq_ignore_ascii_case("localhost") || addr.ip().is_loopback()
}

/// The host name of a `Host` header, lower case, without the port
/// (`[::1]` keeps its brackets).
pub fn host_name(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if h.starts_with('[') {
        return match h.find(']') {
            Some(i) => h[..=i].to_string(),
            None => h,
        };
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => h,
    }
}

/// Is this `Host` name a loopback one (`localhost`, `127.0.0.1`, `[::1]`)?
pub fn is_loopback_name(name: &str) -> bool {
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// `Set-Cookie` value that stores the token for the browser.
pub fn login_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
}

/// `Set-Cookie` value that removes it.
pub fn logout_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("127.0.0.1:42000"), "127.0.0.1");
        assert_eq!(host_name("LocalHost"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("abc.trycloudflare.com"), "abc.trycloudflare.com");
        assert!(is_loopback_name(&host_name("localhost:1")));
        assert!(!is_loopback_name(&host_name("localhost.evil.com")));
        assert!(!is_loopback_name(&host_name("127.0.0.1.nip.io")));
    }

    #[test]
    fn cookies_and_compare() {
        assert_eq!(cookie("a=b; pinokio_token=xyz; c=d", COOKIE), Some("xyz"));
        assert_eq!(cookie("pinokio_tokenx=1", COOKIE), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn token_file_is_private_and_stable() {
        let t = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create_token(t.path()).unwrap();
        assert!(created);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(token_path(t.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = load_or_create_token(t.path()).unwrap();
        assert!(!created);
        assert_eq!(a, b);
    }
}
