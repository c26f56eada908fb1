//! Terminal output to plain text: lossy UTF-8 decoding that survives
//! multi-byte characters split across reads, and the normaliser that strips
//! ANSI escape sequences and turns `\r\n` and lone `\r` into `\n` (the
//! semantics note, 4.1.7).

/// Incremental lossy UTF-8 decoder: an incomplete multi-byte sequence at the
/// end of a chunk is held back until the next chunk completes it; invalid
/// bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one chunk; returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let joined;
        let mut input: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(bytes);
            joined = v;
            &joined
        };
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&input[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            input = &input[valid + bad..];
                        }
                        None => {
                            // Incomplete sequence at the end: keep it for later.
                            self.pending = input[valid..].to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// End of stream: an incomplete sequence left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".to_string()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// ESC followed by intermediate bytes (`ESC ( B`, `ESC # 8`).
    EscInter,
    /// Control Sequence (`ESC [` or C1 CSI) until a final byte.
    Csi,
    /// Operating System Command (`ESC ]`) until BEL or ST.
    Osc,
    /// ESC seen inside an OSC (maybe the start of ST).
    OscEsc,
    /// DCS / SOS / PM / APC strings until ST.
    Str,
    /// ESC seen inside such a string.
    StrEsc,
}

/// Longest escape sequence body kept swallowing text; a stray `ESC ]`
/// without terminator must not hide the rest of the output forever.
const MAX_SEQ: usize = 4096;

/// Streaming normaliser: strips CSI/OSC/DCS and other ESC sequences (an
/// incomplete escape at the end of a chunk is held back in the state),
/// turns `\r\n` and lone `\r` into `\n` (a run of `\r` counts once), applies backspace within a chunk
/// and drops other control characters (tab and newline are kept).
///
/// A `\r` at the end of a chunk is held back until the next visible
/// character decides whether it was part of `\r\n`; escape sequences between
/// the `\r` and the `\n` do not count (the text is stripped first, then the
/// line breaks are rewritten, as upstream does).
#[derive(Debug, Default, Clone)]
pub struct Normalizer {
    state: State,
    cr: bool,
    seq_len: usize,
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalise one chunk; returns the text ready so far.
    pub fn push(&mut self, chunk: &str) -> String {
        let mut out = String::with_capacity(chunk.len());
        for c in chunk.chars() {
            self.step(c, &mut out);
        }
        out
    }

    /// End of stream: a held-back `\r` becomes `\n`; an unfinished escape
    /// sequence is dropped.
    pub fn finish(&mut self) -> String {
        let out = if self.cr {
            "\n".to_string()
        } else {
            String::new()
        };
        *self = Self::default();
        out
    }

    fn enter(&mut self, st: State) {
        self.state = st;
        self.seq_len = 0;
    }

    fn step(&mut self, c: char, out: &mut String) {
        match self.state {
            State::Ground => self.ground(c, out),
            State::Esc => match c {
                '[' => self.enter(State::Csi),
                ']' => self.enter(State::Osc),
                'P' | 'X' | '^' | '_' => self.enter(State::Str),
                ' '..='/' => self.enter(State::EscInter),
                '\x1b' => self.enter(State::Esc),
                // Anything else is the final byte of a two-character escape
                // (ESC 7, ESC M, ESC =, ...) or a cancel (CAN, SUB).
                _ => self.enter(State::Ground),
            },
            State::EscInter => match c {
                ' '..='/' => self.bump(),
                '\x1b' => self.enter(State::Esc),
                _ => self.enter(State::Ground),
            },
            State::Csi => match c {
                '\x40'..='\x7e' | '\x18' | '\x1a' => self.enter(State::Ground),
                '\x1b' => self.enter(State::Esc),
                _ => self.bump(),
            },
            State::Osc => match c {
                '\x07' | '\u{9c}' | '\x18' | '\x1a' => self.enter(State::Ground),
                '\x1b' => self.state = State::OscEsc,
                _ => self.bump(),
            },
            State::Str => match c {
                '\u{9c}' | '\x18' | '\x1a' => self.enter(State::Ground),
                '\x1b' => self.state = State::StrEsc,
                _ => self.bump(),
            },
            State::OscEsc | State::StrEsc => {
                if c == '\\' {
                    self.enter(State::Ground);
                } else {
                    // ESC not followed by `\`: the string ended and a new
                    // escape sequence starts with this character.
                    self.enter(State::Esc);
                    self.step(c, out);
                }
            }
        }
    }

    fn bump(&mut self) {
        self.seq_len += 1;
        if self.seq_len > MAX_SEQ {
            self.enter(State::Ground);
        }
    }

    fn resolve_cr(&mut self, out: &mut String) {
        if self.cr {
            self.cr = false;
            out.push('\n');
        }
    }

    fn ground(&mut self, c: char, out: &mut String) {
        match c {
            '\x1b' => self.enter(State::Esc),
            '\u{9b}' => self.enter(State::Csi),
            '\u{9d}' => self.enter(State::Osc),
            '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => self.enter(State::Str),
            '\n' => {
                self.cr = false;
                out.push('\n');
            }
            // A run of `\r` is one line break (`\r\r\n`, which a PTY makes of
            // a program's own `\r\n`, shows as one line end on a terminal).
            '\r' => self.cr = true,
            '\t' => {
                self.resolve_cr(out);
                out.push('\t');
            }
            '\x08' => {
                if !self.cr && out.chars().next_back().is_some_and(|l| l != '\n') {
                    out.pop();
                }
            }
            c if c < ' ' || c == '\x7f' || ('\u{80}'..'\u{a0}').contains(&c) => {}
            c => {
                self.resolve_cr(out);
                out.push(c);
            }
        }
    }
}

/// Normalise `chunk` with the streaming state `state` (same as
/// [`Normalizer::push`]).
pub fn normalize(state: &mut Normalizer, chunk: &str) -> String {
    state.push(chunk)
}

/// Splits normalised text into complete lines, keeping the unfinished last
/// line. Lines longer than `max_chars` are cut (the rest continues on the
/// next line) so one endless line cannot eat memory.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    partial: String,
    partial_chars: usize,
    max_chars: usize,
}

impl LineAssembler {
    pub(crate) fn new(max_chars: usize) -> Self {
        Self {
            partial: String::new(),
            partial_chars: 0,
            max_chars: max_chars.max(1),
        }
    }

    /// Feed normalised text; complete lines are appended to `lines`.
    pub(crate) fn push(&mut self, text: &str, lines: &mut Vec<String>) {
        for piece in text.split_inclusive('\n') {
            let (body, ends) = match piece.strip_suffix('\n') {
                Some(b) => (b, true),
                None => (piece, false),
            };
            let mut rest = body;
            while !rest.is_empty() {
                let room = self.max_chars - self.partial_chars;
                let cut = rest
                    .char_indices()
                    .nth(room)
                    .map(|(i, _)| i)
                    .unwrap_or(rest.len());
                let (head, tail) = rest.split_at(cut);
                self.partial.push_str(head);
                self.partial_chars += head.chars().count();
                rest = tail;
                if self.partial_chars >= self.max_chars {
                    lines.push(self.take());
                }
            }
            if ends {
                lines.push(self.take());
            }
        }
    }

    fn take(&mut self) -> String {
        self.partial_chars = 0;
        std::mem::take(&mut self.partial)
    }

    /// The unfinished last line.
    pub(crate) fn partial(&self) -> &str {
        &self.partial
    }

    /// End of stream: the unfinished line, if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            None
        } else {
            Some(self.take())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm_all(chunks: &[&str]) -> String {
        let mut n = Normalizer::new();
        let mut out: String = chunks.iter().map(|c| normalize(&mut n, c)).collect();
        out.push_str(&n.finish());
        out
    }

    #[test]
    fn strips_colour_codes() {
        assert_eq!(
            norm_all(&["\x1b[1;31mred\x1b[0m plain \x1b[38;5;208morange\x1b[m\n"]),
            "red plain orange\n"
        );
        // 8-bit CSI and `tput sgr0` style `ESC ( B`.
        assert_eq!(norm_all(&["\u{9b}32mg\x1b(B\x1b[mx"]), "gx");
    }

    #[test]
    fn strips_cursor_moves_and_erases() {
        assert_eq!(
            norm_all(&["\x1b[2K\x1b[1Gabc\x1b[3A\x1b[?25l\x1b[?25hdef\x1b7\x1b8\x1bM!"]),
            "abcdef!"
        );
    }

    #[test]
    fn strips_osc_title_and_hyperlinks() {
        assert_eq!(norm_all(&["\x1b]0;my title\x07text"]), "text");
        assert_eq!(norm_all(&["\x1b]2;t\x1b\\x"]), "x");
        assert_eq!(
            norm_all(&["\x1b]8;;http://example.com\x1b\\link\x1b]8;;\x1b\\ done"]),
            "link done"
        );
        // DCS string
        assert_eq!(norm_all(&["a\x1bPq#0;2;0;0;0\x1b\\b"]), "ab");
    }

    #[test]
    fn escape_split_across_chunks_is_held_back() {
        let mut n = Normalizer::new();
        assert_eq!(n.push("a\x1b"), "a");
        assert_eq!(n.push("[3"), "");
        assert_eq!(n.push("1mb"), "b");
        assert_eq!(n.push("\x1b]0;ti"), "");
        assert_eq!(n.push("tle\x1b"), "");
        assert_eq!(n.push("\\c"), "c");
    }

    #[test]
    fn crlf_and_lone_cr() {
        assert_eq!(norm_all(&["a\r\nb\rc\n"]), "a\nb\nc\n");
        // a PTY turns a program's own \r\n into \r\r\n: still one line end
        assert_eq!(norm_all(&["a\r\r\nb\r\rc"]), "a\nb\nc");
        // \r\n split across chunks gives one newline
        let mut n = Normalizer::new();
        assert_eq!(n.push("line\r"), "line");
        assert_eq!(n.push("\nnext"), "\nnext");
        // \r then escape then \n: stripped first, so still one newline
        assert_eq!(norm_all(&["abc\r\x1b[K\n"]), "abc\n");
        // trailing \r flushed at the end
        assert_eq!(norm_all(&["x\r"]), "x\n");
    }

    #[test]
    fn tqdm_style_progress_updates() {
        let chunks = [
            "\r  0%|          | 0/3 [00:00<?, ?it/s]",
            "\r 33%|###3      | 1/3 [00:01<00:02,  1.00it/s]",
            "\r100%|##########| 3/3 [00:03<00:00,  1.00it/s]",
            "\n",
        ];
        let out = norm_all(&chunks);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            vec![
                "",
                "  0%|          | 0/3 [00:00<?, ?it/s]",
                " 33%|###3      | 1/3 [00:01<00:02,  1.00it/s]",
                "100%|##########| 3/3 [00:03<00:00,  1.00it/s]",
            ]
        );
        // pip style: \r + erase line between updates
        assert_eq!(
            norm_all(&["\x1b[?25l 10%\r\x1b[K 50%\r\x1b[K100%\x1b[?25h\n"]),
            " 10%\n 50%\n100%\n"
        );
    }

    #[test]
    fn control_characters() {
        assert_eq!(norm_all(&["a\x07b\tc\x00d\x7f"]), "ab\tcd");
        assert_eq!(norm_all(&["abc\x08\x08X"]), "aX");
    }

    #[test]
    fn unterminated_osc_gives_up() {
        let long = "y".repeat(MAX_SEQ + 10);
        let out = norm_all(&["\x1b]0;", &long, "\nvisible"]);
        assert!(out.ends_with("\nvisible"), "{out:?}");
    }

    #[test]
    fn utf8_split_across_reads() {
        let bytes = "héllo 日本 🎉".as_bytes();
        for cut in 0..bytes.len() {
            let mut d = Utf8Decoder::new();
            let mut s = d.push(&bytes[..cut]);
            s.push_str(&d.push(&bytes[cut..]));
            s.push_str(&d.finish());
            assert_eq!(s, "héllo 日本 🎉", "cut at {cut}");
        }
        // byte by byte
        let mut d = Utf8Decoder::new();
        let s: String = bytes.iter().map(|b| d.push(&[*b])).collect();
        assert_eq!(s, "héllo 日本 🎉");
    }

    #[test]
    fn utf8_invalid_bytes_are_replaced() {
        let mut d = Utf8Decoder::new();
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push(b"c\xe6\x97"), "c");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn line_assembler_keeps_partial_and_cuts_long_lines() {
        let mut la = LineAssembler::new(5);
        let mut lines = Vec::new();
        la.push("ab\ncd", &mut lines);
        assert_eq!(lines, vec!["ab"]);
        assert_eq!(la.partial(), "cd");
        la.push("efghij\n", &mut lines);
        assert_eq!(lines, vec!["ab", "cdefg", "hij"]);
        la.push("日本語のテキスト", &mut lines);
        assert_eq!(lines.last().unwrap(), "日本語のテ");
        assert_eq!(la.finish().as_deref(), Some("キスト"));
        assert_eq!(la.finish(), None);
    }
}
