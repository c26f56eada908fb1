//! The framing between the engine and a shell supervisor ([`super::shim`])
//! on the supervisor's Unix socket: `[kind: u8][len: u32 LE][payload]`.
//!
//! Supervisor to engine: [`HELLO`] (JSON [`super::shim::ShimMeta`]),
//! [`OUTPUT`] (raw terminal bytes, live), [`REPLAY`] (recent bytes sent
//! again to an engine that re-attaches; for its ring buffer only),
//! [`EXITED`] (the leader's exit). Engine to supervisor: [`ATTACH`] (first
//! frame: `1` to receive everything still buffered as live output, `0` for
//! a replay), [`INPUT`] (bytes to type), [`RESIZE`] (cols, rows as u16 LE).

use std::io::{Read, Write};

pub const HELLO: u8 = 1;
pub const OUTPUT: u8 = 2;
pub const REPLAY: u8 = 3;
pub const EXITED: u8 = 4;
pub const ATTACH: u8 = 5;
pub const INPUT: u8 = 6;
pub const RESIZE: u8 = 7;

/// Largest payload accepted (a corrupt header must not allocate gigabytes).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Write one frame in a single `write_all`.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// The payload of an [`EXITED`] frame: `None` when a signal killed it.
pub fn exit_payload(code: Option<i32>) -> [u8; 5] {
    let mut p = [0u8; 5];
    if let Some(c) = code {
        p[0] = 1;
        p[1..].copy_from_slice(&c.to_le_bytes());
    }
    p
}

pub fn parse_exit(p: &[u8]) -> Option<i32> {
    match p {
        [1, a, b, c, d] => Some(i32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let mut p = [0u8; 4];
    p[..2].copy_from_slice(&cols.to_le_bytes());
    p[2..].copy_from_slice(&rows.to_le_bytes());
    p
}

pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    match p {
        [a, b, c, d] => Some((u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d]))),
        _ => None,
    }
}

/// Accumulates bytes read from a stream and splits them into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Some bytes arrived (maybe no whole frame yet).
    Data,
    /// The peer closed the stream.
    Eof,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Read what is available (one `read` call).
    pub fn fill(&mut self, r: &mut impl Read) -> std::io::Result<ReadStatus> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => return Ok(ReadStatus::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(ReadStatus::Data);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is larger than {MAX_FRAME}"),
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }

    /// Block until one whole frame arrived (`None` at end of stream).
    pub fn read_frame(&mut self, r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok(Some(f));
            }
            if self.fill(r)? == ReadStatus::Eof {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_split_reads() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, OUTPUT, b"hello").unwrap();
        write_frame(&mut bytes, EXITED, &exit_payload(Some(-3))).unwrap();
        write_frame(&mut bytes, EXITED, &exit_payload(None)).unwrap();
        write_frame(&mut bytes, RESIZE, &resize_payload(120, 40)).unwrap();
        write_frame(&mut bytes, INPUT, b"").unwrap();
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        // feed one byte at a time
        for b in bytes {
            r.fill(&mut &[b][..]).unwrap();
            while let Some(f) = r.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 5);
        assert_eq!(out[0], (OUTPUT, b"hello".to_vec()));
        assert_eq!(parse_exit(&out[1].1), Some(-3));
        assert_eq!(parse_exit(&out[2].1), None);
        assert_eq!(parse_resize(&out[3].1), Some((120, 40)));
        assert_eq!(out[4], (INPUT, Vec::new()));
        assert_eq!(r.fill(&mut &[][..]).unwrap(), ReadStatus::Eof);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut r = FrameReader::new();
        let mut head = vec![OUTPUT];
        head.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        r.fill(&mut &head[..]).unwrap();
        assert!(r.next_frame().is_err());
    }
}
