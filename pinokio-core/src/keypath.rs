//! Key paths over [`serde_json::Value`], as Pinokio's `json.set`, `json.rm`,
//! `local.set`, `local.rm` (and `global.*`, `self.*`, `set`, `rm`) use them.
//!
//! # Which rules, and why they are not plain lodash
//!
//! pinokiod does **not** call lodash's `_.set` / `_.unset` for these methods.
//! Its own walkers (`kernel/api/set/index.js` and `kernel/api/rm/index.js`,
//! unchanged from 2024-12 through 8.0.40) behave as follows, and [`set`] and
//! [`unset`] reproduce them:
//!
//! * [`set`], key **not** starting with `[`: the key is split on every `.`
//!   (brackets are *not* parsed: `a[0].b` creates the literal key `"a[0]"`).
//!   Each intermediate name that is missing (JS `name in obj` is false) is
//!   created as an **object**, never as an array, even when the next segment
//!   is numeric. A numeric segment indexes into an *existing* array, and an
//!   index past the end extends the array (JS holes, written to JSON as
//!   `null`). Walking into a primitive (string, number, bool, null) throws in
//!   JS, and pinokiod swallows the error: that key is skipped, which [`set`]
//!   reports by returning `false`.
//! * [`set`], key starting with `[`: pinokiod evaluates `old<key> = val` as a
//!   JS member expression (`[0].name`, `["x.y"].z`, `['a'][1]`). Nothing is
//!   created: every intermediate must already exist, else the key is skipped.
//!   Brackets may hold string and number literals (legacy octal `[017]`,
//!   BigInt `[5n]` and `1_000` separators included); anything else that JS
//!   would evaluate (variables, array literals) is not supported and skipped.
//! * [`unset`]: the key is split on every `.` (even when it starts with `[`);
//!   intermediates are read, never created. A final segment of ASCII digits
//!   (`/^[0-9]+$/`, so `"01"` counts and means index 1) removes that element
//!   from an array with `splice` semantics (later elements shift left; case 10
//!   records `items: ["a","b","c"]` minus `items.1` as `["a","c"]`); on an
//!   object such a digit key is **left in place**. Any other final segment is
//!   deleted from an object, keeping the order of the remaining keys.
//!
//! Both operate on a root that is an object or array; any other root is left
//! alone and the call returns `false` (pinokiod only replaces a *falsy* loaded
//! file with `{}`; callers should do the same before calling).
//!
//! New keys are inserted where a JS object would put them: canonical
//! array-index names (`"0"`, `"42"`) before all other names, in ascending
//! numeric order; other names at the end; an existing key keeps its position.
//!
//! [`get`] and [`parse_path`] follow lodash 4.17 (`_.get` / `_.toPath`) for
//! reading values; [`set`] and [`unset`] do not use them.
//! [`query`] runs a JSONPath query; note that pinokiod itself has no JSONPath
//! support in set/rm, and keys starting with `$` are ordinary keys there
//! (pinokiod stores `local.$share`).
//!
//! [`set`], [`unset`], [`get`] and [`parse_path`] were checked against
//! pinokiod 8.0.40's walkers and lodash 4.17.21 under node on randomly
//! generated roots and paths; the only differences found are listed below.
//!
//! # Known differences from pinokiod
//!
//! * JS arrays keep holes; a `Value` cannot, so a hole is `null`. Within one
//!   `local` store, pinokiod would later treat a hole as missing (and create
//!   an object there), where [`set`] sees a `null` and skips the key.
//! * An index more than [`MAX_ARRAY_GAP`] past the end of an array is refused
//!   (returns `false`) instead of allocating that many `null`s; pinokiod would
//!   fail later when it serialises the array.
//! * Assignments that JS performs but `JSON.stringify` cannot show (named
//!   properties on arrays, writes to inherited members such as
//!   `constructor`, `__proto__`) change nothing here and return `false`.
//! * [`get`] returns only stored values: lodash's `_.get` would also yield
//!   computed ones (`list.length`, `"str"[0]`, inherited methods).

use std::borrow::Cow;

use jsonpath_rust::JsonPath;
use serde_json::{Map, Value};

/// Largest number of `null`s that one assignment may add to an array to reach
/// an index past its end (JS would create a sparse array instead).
pub const MAX_ARRAY_GAP: usize = 1 << 20;

/// Largest JS array index (`2^32 - 2`); larger numeric names are plain
/// property names in JS.
const MAX_JS_ARRAY_INDEX: u64 = 4_294_967_294;

/// Names that every JS object inherits from `Object.prototype`, so that
/// `name in {}` is true even though the object has no such own key.
const OBJECT_PROTOTYPE_NAMES: &[&str] = &[
    "__proto__",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
];

/// One step of a parsed key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A property name.
    Key(String),
    /// A canonical non-negative integer (lodash `isIndex`): an array index on
    /// an array, the key `"<n>"` on an object.
    Index(usize),
}

impl Segment {
    /// The segment as a property name (`Index(3)` is `"3"`).
    pub fn as_key(&self) -> Cow<'_, str> {
        match self {
            Segment::Key(k) => Cow::Borrowed(k),
            Segment::Index(i) => Cow::Owned(i.to_string()),
        }
    }

    fn from_piece(piece: String) -> Segment {
        match lodash_index(&piece) {
            Some(i) => Segment::Index(i),
            None => Segment::Key(piece),
        }
    }
}

/// Errors from [`query`].
#[derive(Debug, thiserror::Error)]
pub enum KeyPathError {
    /// The JSONPath expression could not be parsed.
    #[error("invalid JSONPath {path:?}: {message}")]
    InvalidJsonPath { path: String, message: String },
}

/// Splits a key path the way lodash's `_.toPath` does.
///
/// `a.b.c`, `a[0].b`, `a["x.y"]`, `[0].name` and `list.3` all work; quoted
/// brackets keep dots, and a backslash inside quotes escapes the next
/// character. Empty segments are kept (`a..b` gives `a`, `""`, `b`; a leading
/// `.` gives a leading `""`). Canonical non-negative integers become
/// [`Segment::Index`]; `"01"`, `"-1"` and `"1.5"` stay keys.
pub fn parse_path(path: &str) -> Vec<Segment> {
    let chars: Vec<char> = path.chars().collect();
    let mut out = Vec::new();
    if chars.first() == Some(&'.') {
        out.push(Segment::Key(String::new()));
    }
    let mut pos = 0;
    while pos < chars.len() {
        let c = chars[pos];
        if !matches!(c, '.' | '[' | ']') {
            let start = pos;
            while pos < chars.len() && !matches!(chars[pos], '.' | '[' | ']') {
                pos += 1;
            }
            out.push(Segment::from_piece(chars[start..pos].iter().collect()));
            continue;
        }
        if c == '[' {
            if let Some((piece, end)) = lodash_bracket(&chars, pos) {
                out.push(Segment::from_piece(piece));
                pos = end;
                continue;
            }
        }
        // lodash's empty match: a `.` or `[]` followed by another one or the end.
        let sep_len = |at: usize| -> Option<usize> {
            match chars.get(at) {
                Some('.') => Some(1),
                Some('[') if chars.get(at + 1) == Some(&']') => Some(2),
                _ => None,
            }
        };
        if let Some(len) = sep_len(pos) {
            if pos + len == chars.len() || sep_len(pos + len).is_some() {
                out.push(Segment::Key(String::new()));
            }
        }
        pos += 1;
    }
    out
}

/// Sets `value` at `path` inside `root`, as pinokiod's `set` does for one key
/// (see the module docs). Returns `true` when the assignment was made, and
/// `false` when pinokiod would have skipped it: `root` is not an object or
/// array, an intermediate is a primitive or (for `[`-paths) missing, the
/// final container is a primitive, or the assignment would not be visible in
/// JSON.
pub fn set(root: &mut Value, path: &str, value: Value) -> bool {
    if !is_container(root) {
        return false;
    }
    if path.starts_with('[') {
        set_member_expression(root, path, value)
    } else {
        set_dotted(root, path, value)
    }
}

/// Removes `path` from `root`, as pinokiod's `rm` does for one key (see the
/// module docs). Returns `true` when something was removed.
pub fn unset(root: &mut Value, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, intermediates)) = parts.split_last() else {
        return false;
    };
    let mut cur = root;
    for part in intermediates {
        cur = match cur {
            Value::Object(map) => match map.get_mut(*part) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(items) => match js_array_index(part).and_then(|i| items.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        // `/^[0-9]+$/`: only ever an array splice, never an object delete.
        return match cur {
            Value::Array(items) => {
                let index = last.parse::<usize>().unwrap_or(usize::MAX);
                if index < items.len() {
                    items.remove(index);
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
    }
    match cur {
        Value::Object(map) => map.shift_remove(*last).is_some(),
        _ => false,
    }
}

/// Reads the value at `path`, like lodash's `_.get`.
///
/// As in lodash, a path that is a plain word, has no `.` or bracket group, or
/// is an own key of `root`, is looked up as one key. Otherwise it is split by
/// [`parse_path`]. Values that JS would compute (`length`, characters of a
/// string) are not available and give `None`, as does an empty path list.
pub fn get<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let single_key = path.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || !lodash_is_deep(path)
        || root.as_object().is_some_and(|m| m.contains_key(path));
    if single_key {
        return step(root, &Segment::from_piece(path.to_owned()));
    }
    let segments = parse_path(path);
    if segments.is_empty() {
        return None;
    }
    segments.iter().try_fold(root, step)
}

/// Runs a JSONPath query (jsonpath-rust 1.x syntax, e.g. `$.a.b`,
/// `$..name`, `$.list[?@.on]`) against `root`.
///
/// Returns the matched value itself when exactly one node matches, and an
/// array of all matched values (in document order as jsonpath-rust returns
/// them) when zero or several nodes match. A path that does not parse gives
/// [`KeyPathError::InvalidJsonPath`].
pub fn query(root: &Value, jsonpath: &str) -> Result<Value, KeyPathError> {
    let found = root
        .query(jsonpath)
        .map_err(|e| KeyPathError::InvalidJsonPath {
            path: jsonpath.to_owned(),
            message: e.to_string(),
        })?;
    Ok(match found.as_slice() {
        [one] => (*one).clone(),
        many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
    })
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

/// `set` for keys split on `.`: missing intermediates become objects.
fn set_dotted(root: &mut Value, path: &str, value: Value) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, intermediates)) = parts.split_last() else {
        return false;
    };
    let mut cur = root;
    for part in intermediates {
        cur = match cur {
            Value::Object(map) => {
                if !map.contains_key(*part) {
                    if OBJECT_PROTOTYPE_NAMES.contains(part) {
                        // `in` finds the inherited member; writes below it never reach JSON.
                        return false;
                    }
                    insert_js_ordered(map, (*part).to_owned(), Value::Object(Map::new()));
                }
                match map.get_mut(*part) {
                    Some(next) => next,
                    None => return false,
                }
            }
            Value::Array(items) => {
                // A non-index name is `length`, an inherited method, or an own
                // property that JSON never shows: nothing visible can follow.
                let Some(index) = js_array_index(part) else {
                    return false;
                };
                if index >= items.len() && !set_array_index(items, index, Value::Object(Map::new()))
                {
                    return false;
                }
                &mut items[index]
            }
            // `name in <primitive>` throws a TypeError, which pinokiod ignores.
            _ => return false,
        };
    }
    assign(cur, last, value)
}

/// `set` for keys starting with `[`: `old<key> = val` as a JS member expression.
fn set_member_expression(root: &mut Value, path: &str, value: Value) -> bool {
    let Some(keys) = parse_member_expression(path) else {
        return false;
    };
    let Some((last, intermediates)) = keys.split_last() else {
        return false;
    };
    let mut cur = root;
    for key in intermediates {
        cur = match cur {
            Value::Object(map) => match map.get_mut(key.as_str()) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(items) => match js_array_index(key).and_then(|i| items.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    assign(cur, last, value)
}

/// The final `target[key] = value` of a set.
fn assign(target: &mut Value, key: &str, value: Value) -> bool {
    match target {
        Value::Object(map) => {
            if key == "__proto__" {
                return false;
            }
            insert_js_ordered(map, key.to_owned(), value);
            true
        }
        Value::Array(items) => match js_array_index(key) {
            Some(index) => set_array_index(items, index, value),
            None if key == "length" => set_array_length(items, &value),
            None => false,
        },
        // Assigning a property of a primitive is a silent no-op in sloppy JS.
        _ => false,
    }
}

fn set_array_index(items: &mut Vec<Value>, index: usize, value: Value) -> bool {
    if index < items.len() {
        items[index] = value;
        return true;
    }
    if index - items.len() > MAX_ARRAY_GAP {
        return false;
    }
    items.resize(index, Value::Null);
    items.push(value);
    true
}

/// `array.length = value`: truncates or pads; a value that is not a valid
/// length throws a RangeError in JS, and the key is skipped.
fn set_array_length(items: &mut Vec<Value>, value: &Value) -> bool {
    let number = js_to_number(value);
    let Some(n) = number else {
        return false;
    };
    if !(n >= 0.0 && n.fract() == 0.0 && n <= MAX_JS_ARRAY_INDEX as f64 + 1.0) {
        return false;
    }
    // `n` is a non-negative integer no larger than 2^32 - 1 (checked above).
    let new_len = n as usize;
    if new_len > items.len() && new_len - items.len() > MAX_ARRAY_GAP {
        return false;
    }
    items.resize(new_len, Value::Null);
    true
}

/// JS `ToNumber` for a JSON value; `None` stands for `NaN`.
fn js_to_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Null => Some(0.0),
        Value::String(s) => js_string_to_number(s),
        // An array converts through its string form: `[]` is `""`, `[7]` is `"7"`.
        Value::Array(items) => match items.as_slice() {
            [] => Some(0.0),
            [Value::Null] => Some(0.0),
            [Value::Bool(_)] | [Value::Object(_)] => None,
            [one] => js_to_number(one),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// JS `Number(string)`: trimmed decimal, `0x`/`0o`/`0b` integers, `""` is 0.
fn js_string_to_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix).ok().map(|n| n as f64);
        }
    }
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    match body {
        "Infinity" => {
            return Some(if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        _ if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') => return None,
        _ => {}
    }
    t.parse::<f64>().ok()
}

/// Inserts or replaces `key`, placing a new canonical array-index key before
/// all other keys, in numeric order, as JS property order does.
fn insert_js_ordered(map: &mut Map<String, Value>, key: String, value: Value) {
    if let Some(slot) = map.get_mut(&key) {
        *slot = value;
        return;
    }
    match js_array_index(&key) {
        Some(n) => {
            let at = map
                .keys()
                .take_while(|k| js_array_index(k).is_some_and(|m| m < n))
                .count();
            map.shift_insert(at, key, value);
        }
        None => {
            map.insert(key, value);
        }
    }
}

/// A canonical decimal integer name that JS treats as an array index.
fn js_array_index(s: &str) -> Option<usize> {
    let canonical =
        s == "0" || (!s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()));
    if !canonical || s.len() > 10 {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    if n > MAX_JS_ARRAY_INDEX {
        return None;
    }
    usize::try_from(n).ok()
}

/// lodash `isIndex` for a string segment: canonical and below 2^53 - 1.
fn lodash_index(s: &str) -> Option<usize> {
    let canonical =
        s == "0" || (!s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()));
    if !canonical || s.len() > 16 {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    if n >= (1u64 << 53) - 1 {
        return None;
    }
    usize::try_from(n).ok()
}

fn step<'a>(cur: &'a Value, segment: &Segment) -> Option<&'a Value> {
    match (cur, segment) {
        (Value::Object(map), seg) => map.get(seg.as_key().as_ref()),
        (Value::Array(items), Segment::Index(i)) => items.get(*i),
        _ => None,
    }
}

/// lodash's bracket group at `chars[open] == '['`: `[-1.5]` or `["..."]` /
/// `['...']`. Returns the piece and the position after `]`.
fn lodash_bracket(chars: &[char], open: usize) -> Option<(String, usize)> {
    let mut pos = open + 1;
    match chars.get(pos)? {
        '"' | '\'' => {
            let quote = chars[pos];
            pos += 1;
            let mut piece = String::new();
            loop {
                let c = *chars.get(pos)?;
                if c == quote {
                    return (chars.get(pos + 1) == Some(&']')).then_some((piece, pos + 2));
                }
                if c == '\\' {
                    let next = *chars.get(pos + 1)?;
                    if matches!(next, '\n' | '\r' | '\u{2028}' | '\u{2029}') {
                        return None;
                    }
                    // lodash unescapes `\\` to `\` and drops any other backslash.
                    piece.push(next);
                    pos += 2;
                } else {
                    piece.push(c);
                    pos += 1;
                }
            }
        }
        _ => {
            let start = pos;
            if chars.get(pos) == Some(&'-') {
                pos += 1;
            }
            let digits = |from: usize| {
                chars[from.min(chars.len())..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count()
            };
            let int_len = digits(pos);
            if int_len == 0 {
                return None;
            }
            pos += int_len;
            if chars.get(pos) == Some(&'.') {
                let frac_len = digits(pos + 1);
                if frac_len > 0 {
                    pos += 1 + frac_len;
                }
            }
            (chars.get(pos) == Some(&']')).then(|| (chars[start..pos].iter().collect(), pos + 1))
        }
    }
}

/// lodash `reIsDeepProp`: a `.`, or a bracket group `[...]` without inner
/// brackets, or a bracketed quoted string.
fn lodash_is_deep(path: &str) -> bool {
    if path.contains('.') {
        return true;
    }
    let chars: Vec<char> = path.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if c != '[' {
            return false;
        }
        let rest = &chars[i + 1..];
        if let Some(&b) = rest.iter().find(|c| matches!(c, '[' | ']')) {
            if b == ']' {
                return true;
            }
        }
        match rest.first() {
            Some(&q) if q == '"' || q == '\'' => {
                let mut j = 1;
                while let Some(&c) = rest.get(j) {
                    if c == q {
                        return rest.get(j + 1) == Some(&']');
                    }
                    if c == '\\' {
                        match rest.get(j + 1) {
                            Some('\n' | '\r' | '\u{2028}' | '\u{2029}') | None => return false,
                            Some(_) => j += 2,
                        }
                    } else {
                        j += 1;
                    }
                }
                false
            }
            _ => false,
        }
    })
}

/// Parses a JS member-expression tail such as `[0].name["x.y"]['z']` into
/// property names (numbers canonicalised as JS would, `[1.50]` is `"1.5"`).
/// Returns `None` for anything else: pinokiod's `new Function` would throw
/// on it, or it would depend on JS variables, and the key is skipped.
fn parse_member_expression(path: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = path.chars().collect();
    let mut pos = 0;
    let mut keys = Vec::new();
    let skip_ws = |pos: &mut usize| {
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
    };
    loop {
        skip_ws(&mut pos);
        match chars.get(pos) {
            None => break,
            Some('[') => {
                pos += 1;
                skip_ws(&mut pos);
                let key = match chars.get(pos)? {
                    '"' | '\'' => js_string_literal(&chars, &mut pos)?,
                    _ => js_number_literal(&chars, &mut pos)?,
                };
                skip_ws(&mut pos);
                if chars.get(pos) != Some(&']') {
                    return None;
                }
                pos += 1;
                keys.push(key);
            }
            Some('.') => {
                pos += 1;
                skip_ws(&mut pos);
                let start = pos;
                let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
                if chars.get(pos).is_none_or(|c| c.is_ascii_digit()) {
                    return None;
                }
                while chars.get(pos).is_some_and(|&c| is_ident(c)) {
                    pos += 1;
                }
                if pos == start {
                    return None;
                }
                keys.push(chars[start..pos].iter().collect());
            }
            Some(_) => return None,
        }
    }
    (!keys.is_empty()).then_some(keys)
}

/// A JS string literal starting at `chars[*pos]` (a quote).
fn js_string_literal(chars: &[char], pos: &mut usize) -> Option<String> {
    let quote = chars[*pos];
    *pos += 1;
    let mut units: Vec<u16> = Vec::new();
    let push = |units: &mut Vec<u16>, c: char| {
        let mut buf = [0u16; 2];
        units.extend_from_slice(c.encode_utf16(&mut buf));
    };
    let hex = |chars: &[char], from: usize, len: usize| -> Option<u32> {
        let s: String = chars.get(from..from + len)?.iter().collect();
        if s.chars().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(&s, 16).ok()
        } else {
            None
        }
    };
    loop {
        let c = *chars.get(*pos)?;
        *pos += 1;
        if c == quote {
            return String::from_utf16(&units).ok();
        }
        if c == '\n' || c == '\r' {
            return None;
        }
        if c != '\\' {
            push(&mut units, c);
            continue;
        }
        let e = *chars.get(*pos)?;
        *pos += 1;
        match e {
            'n' => push(&mut units, '\n'),
            't' => push(&mut units, '\t'),
            'r' => push(&mut units, '\r'),
            'b' => push(&mut units, '\u{8}'),
            'f' => push(&mut units, '\u{c}'),
            'v' => push(&mut units, '\u{b}'),
            '0' if !chars.get(*pos).is_some_and(|c| c.is_ascii_digit()) => push(&mut units, '\0'),
            '1'..='9' | '0' => return None, // legacy octal escapes: not supported
            'x' => {
                let v = hex(chars, *pos, 2)?;
                *pos += 2;
                units.push(u16::try_from(v).ok()?);
            }
            'u' if chars.get(*pos) == Some(&'{') => {
                let close = chars[*pos..].iter().position(|&c| c == '}')? + *pos;
                let v = hex(chars, *pos + 1, close - *pos - 1)?;
                *pos = close + 1;
                push(&mut units, char::from_u32(v)?);
            }
            'u' => {
                let v = hex(chars, *pos, 4)?;
                *pos += 4;
                units.push(u16::try_from(v).ok()?);
            }
            '\r' => {
                if chars.get(*pos) == Some(&'\n') {
                    *pos += 1;
                }
            }
            '\n' | '\u{2028}' | '\u{2029}' => {}
            other => push(&mut units, other),
        }
    }
}

/// A decimal JS number literal (optionally negated) starting at `chars[*pos]`,
/// returned as the property name JS would use. Hex, exponents, fractions after a multi-digit leading zero, and
/// numbers JS would print in exponent form are not supported.
fn js_number_literal(chars: &[char], pos: &mut usize) -> Option<String> {
    let negative = chars.get(*pos) == Some(&'-');
    if negative {
        *pos += 1;
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
    }
    let sign = |magnitude: String| {
        if negative && magnitude != "0" {
            format!("-{magnitude}")
        } else {
            magnitude
        }
    };
    // Digits with `_` separators between them (`1_000`).
    let take_digits = |pos: &mut usize| {
        let mut out = String::new();
        while let Some(&c) = chars.get(*pos) {
            if c.is_ascii_digit() {
                out.push(c);
            } else if !(c == '_'
                && !out.is_empty()
                && chars.get(*pos + 1).is_some_and(|c| c.is_ascii_digit()))
            {
                break;
            }
            *pos += 1;
        }
        out
    };
    let int_start = *pos;
    let digits = take_digits(pos);
    if digits.len() > 1 && digits.starts_with('0') {
        if *pos - int_start != digits.len() {
            return None; // no separators in legacy literals
        }
        // Sloppy-mode legacy literal: `017` is octal 15, `08` is decimal 8.
        if chars
            .get(*pos)
            .is_some_and(|&c| c == '.' || c.is_alphanumeric())
        {
            return None;
        }
        let radix = if digits.bytes().all(|b| b < b'8') {
            8
        } else {
            10
        };
        return Some(sign(u64::from_str_radix(&digits, radix).ok()?.to_string()));
    }
    if !digits.is_empty() && chars.get(*pos) == Some(&'n') {
        // BigInt literal: `5n` names the property "5".
        *pos += 1;
        return Some(sign(digits));
    }
    let mut text = digits;
    if chars.get(*pos) == Some(&'.') {
        text.push('.');
        *pos += 1;
        text.push_str(&take_digits(pos));
    }
    if !text.contains(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let n: f64 = text.parse().ok()?;
    if n == 0.0 {
        return Some("0".to_owned());
    }
    if !(1e-6..1e21).contains(&n) {
        return None;
    }
    Some(sign(format!("{n}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: &str) -> Segment {
        Segment::Key(s.to_owned())
    }

    fn set_all(root: &mut Value, pairs: &Value) {
        for (k, v) in pairs.as_object().expect("object of pairs") {
            set(root, k, v.clone());
        }
    }

    fn rm_all(root: &mut Value, keys: &[&str]) {
        for k in keys {
            unset(root, k);
        }
    }

    // ---- parse_path (lodash toPath) ----

    #[test]
    fn parse_dotted_and_numeric() {
        assert_eq!(parse_path("a.b.c"), vec![key("a"), key("b"), key("c")]);
        assert_eq!(parse_path("list.3"), vec![key("list"), Segment::Index(3)]);
    }

    #[test]
    fn parse_brackets() {
        assert_eq!(
            parse_path("a[0].b"),
            vec![key("a"), Segment::Index(0), key("b")]
        );
        assert_eq!(parse_path(r#"a["x.y"]"#), vec![key("a"), key("x.y")]);
        assert_eq!(
            parse_path("a['x.y'].z"),
            vec![key("a"), key("x.y"), key("z")]
        );
        assert_eq!(parse_path("[0].name"), vec![Segment::Index(0), key("name")]);
        assert_eq!(parse_path("a[b]"), vec![key("a"), key("b")]);
        assert_eq!(parse_path("a[-1]"), vec![key("a"), key("-1")]);
        assert_eq!(parse_path("a[1.5]"), vec![key("a"), key("1.5")]);
    }

    #[test]
    fn parse_quoted_escapes() {
        assert_eq!(parse_path(r#"["a\"b"]"#), vec![key("a\"b")]);
        assert_eq!(parse_path(r#"["a\\b"]"#), vec![key("a\\b")]);
        assert_eq!(parse_path(r#"["[x]"]"#), vec![key("[x]")]);
        // A quote not followed by `]` is no bracket group: the text is a plain name.
        assert_eq!(parse_path(r#"a["x"y]"#), vec![key("a"), key(r#""x"y"#)]);
        assert_eq!(parse_path(r#"a["x]"#), vec![key("a"), key(r#""x"#)]);
    }

    #[test]
    fn parse_empty_segments_and_non_canonical_numbers() {
        assert_eq!(parse_path("a..b"), vec![key("a"), key(""), key("b")]);
        assert_eq!(parse_path(".a"), vec![key(""), key("a")]);
        assert_eq!(parse_path("a."), vec![key("a"), key("")]);
        assert_eq!(parse_path("a[]"), vec![key("a"), key("")]);
        assert_eq!(parse_path(""), Vec::<Segment>::new());
        assert_eq!(parse_path("x.01"), vec![key("x"), key("01")]);
        assert_eq!(Segment::Index(7).as_key(), "7");
    }

    // ---- set: dotted keys ----

    #[test]
    fn set_creates_nested_objects() {
        let mut v = json!({});
        assert!(set(&mut v, "a.b.c", json!("deep")));
        assert_eq!(v, json!({"a": {"b": {"c": "deep"}}}));
    }

    #[test]
    fn set_missing_intermediate_is_object_even_before_numeric_segment() {
        let mut v = json!({});
        assert!(set(&mut v, "list.0.name", json!("x")));
        assert_eq!(v, json!({"list": {"0": {"name": "x"}}}));
    }

    #[test]
    fn set_numeric_segment_indexes_existing_array() {
        let mut v = json!({"list": [{"n": 1}, {"n": 2}]});
        assert!(set(&mut v, "list.1.n", json!(20)));
        assert!(set(&mut v, "list.0", json!("first")));
        assert_eq!(v, json!({"list": ["first", {"n": 20}]}));
    }

    #[test]
    fn set_index_past_end_extends_with_nulls() {
        let mut v = json!({"list": [1, 2]});
        assert!(set(&mut v, "list.4", json!(100)));
        assert_eq!(v, json!({"list": [1, 2, null, null, 100]}));
    }

    #[test]
    fn set_missing_array_element_intermediate_is_created_as_object() {
        let mut v = json!({"list": [1]});
        assert!(set(&mut v, "list.2.a", json!(true)));
        assert_eq!(v, json!({"list": [1, null, {"a": true}]}));
    }

    #[test]
    fn set_huge_gap_is_refused() {
        let mut v = json!({"list": []});
        assert!(!set(&mut v, "list.99999999", json!(1)));
        assert_eq!(v, json!({"list": []}));
    }

    #[test]
    fn set_through_primitive_is_skipped() {
        for prim in [json!("str"), json!(5), json!(true), Value::Null] {
            let mut v = json!({ "p": prim.clone() });
            assert!(!set(&mut v, "p.x", json!(1)), "final on {prim}");
            assert!(!set(&mut v, "p.x.y", json!(1)), "intermediate {prim}");
            assert_eq!(v, json!({ "p": prim }));
        }
    }

    #[test]
    fn set_on_primitive_root_is_skipped() {
        for prim in [json!("s"), json!(1), json!(false), Value::Null] {
            let mut v = prim.clone();
            assert!(!set(&mut v, "a", json!(1)));
            assert!(!set(&mut v, "[0]", json!(1)));
            assert_eq!(v, prim);
        }
    }

    #[test]
    fn set_does_not_parse_brackets_inside_dotted_keys() {
        let mut v = json!({"a": [1, 2]});
        assert!(set(&mut v, "b[0].c", json!(1)));
        assert_eq!(v, json!({"a": [1, 2], "b[0]": {"c": 1}}));
    }

    #[test]
    fn set_named_property_on_array_is_invisible() {
        let mut v = json!({"list": [1]});
        assert!(!set(&mut v, "list.foo", json!(1)));
        assert!(!set(&mut v, "list.foo.bar", json!(1)));
        assert!(!set(&mut v, "list.01", json!(1)));
        assert_eq!(v, json!({"list": [1]}));
    }

    #[test]
    fn set_array_length_truncates_and_pads() {
        let mut v = json!({"list": [1, 2, 3]});
        assert!(set(&mut v, "list.length", json!(1)));
        assert_eq!(v, json!({"list": [1]}));
        assert!(set(&mut v, "list.length", json!("3")));
        assert_eq!(v, json!({"list": [1, null, null]}));
        assert!(set(&mut v, "list.length", json!([2])));
        assert_eq!(v, json!({"list": [1, null]}));
        assert!(set(&mut v, "list.length", json!("0x3")));
        assert_eq!(v, json!({"list": [1, null, null]}));
        assert!(!set(&mut v, "list.length", json!(-1)));
        assert!(!set(&mut v, "list.length", json!("inf")));
        assert!(!set(&mut v, "list.length", json!({})));
        assert!(!set(&mut v, "list.length", json!(1.5)));
        assert_eq!(v, json!({"list": [1, null, null]}));
        assert!(set(&mut v, "list.length", json!([])));
        assert_eq!(v, json!({"list": []}));
    }

    #[test]
    fn set_replaces_existing_key_in_place_and_appends_new_keys() {
        let mut v = json!({"x": 1, "y": 2});
        assert!(set(&mut v, "x", json!(10)));
        assert!(set(&mut v, "z", json!(3)));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"x":10,"y":2,"z":3}"#
        );
    }

    #[test]
    fn set_integer_keys_go_first_in_numeric_order() {
        let mut v = json!({"b": 1});
        assert!(set(&mut v, "10", json!("ten")));
        assert!(set(&mut v, "2", json!("two")));
        assert!(set(&mut v, "a", json!("a")));
        assert!(set(&mut v, "02", json!("not an index")));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"2":"two","10":"ten","b":1,"a":"a","02":"not an index"}"#
        );
    }

    #[test]
    fn set_inherited_object_member_names() {
        let mut v = json!({});
        assert!(!set(&mut v, "constructor.x", json!(1)));
        assert!(!set(&mut v, "__proto__", json!({"a": 1})));
        assert_eq!(v, json!({}));
        // As a final segment an inherited name becomes an own key.
        assert!(set(&mut v, "toString", json!(1)));
        assert_eq!(v, json!({"toString": 1}));
        // An own key of that name is walked like any other.
        assert!(set(&mut v, "constructor", json!({})));
        assert!(set(&mut v, "constructor.x", json!(2)));
        assert_eq!(v, json!({"toString": 1, "constructor": {"x": 2}}));
    }

    #[test]
    fn set_empty_segments_are_keys() {
        let mut v = json!({});
        assert!(set(&mut v, "a..b", json!(1)));
        assert!(set(&mut v, "", json!(2)));
        assert_eq!(v, json!({"a": {"": {"b": 1}}, "": 2}));
    }

    #[test]
    fn set_on_root_array() {
        let mut v = json!([{"a": 1}]);
        assert!(set(&mut v, "0.a", json!(2)));
        assert!(set(&mut v, "2", json!("x")));
        assert!(!set(&mut v, "name", json!(1)));
        assert_eq!(v, json!([{"a": 2}, null, "x"]));
    }

    #[test]
    fn set_dollar_keys_are_plain_keys() {
        let mut v = json!({});
        assert!(set(&mut v, "$share.local", json!({"u": "v"})));
        assert_eq!(v, json!({"$share": {"local": {"u": "v"}}}));
    }

    // ---- set: keys starting with `[` (JS member expression) ----

    #[test]
    fn set_member_expression_on_existing_paths() {
        let mut v = json!([{"name": "a"}, {"name": "b"}]);
        assert!(set(&mut v, "[1].name", json!("B")));
        assert!(set(&mut v, "[0]['x.y']", json!(1)));
        assert!(set(&mut v, r#"[0]["q"]"#, json!(2)));
        assert!(set(&mut v, "[3]", json!("pad")));
        assert_eq!(
            v,
            json!([{"name": "a", "x.y": 1, "q": 2}, {"name": "B"}, null, "pad"])
        );
    }

    #[test]
    fn set_member_expression_never_creates_intermediates() {
        let mut v = json!({});
        assert!(!set(&mut v, "[0].name", json!("x")));
        assert!(!set(&mut v, r#"["a"]["b"]"#, json!(1)));
        assert_eq!(v, json!({}));
        // The final segment alone is a plain assignment.
        assert!(set(&mut v, "[0]", json!("zero")));
        assert!(set(&mut v, r#"["a.b"]"#, json!(1)));
        assert_eq!(v, json!({"0": "zero", "a.b": 1}));
    }

    #[test]
    fn set_member_expression_literals() {
        let mut v = json!({});
        assert!(set(&mut v, "[ 1.50 ]", json!(1)));
        assert!(set(&mut v, "[-2]", json!(2)));
        assert!(set(&mut v, "[017]", json!("octal")));
        assert!(set(&mut v, "[08]", json!("decimal")));
        assert!(set(&mut v, "[1_2n]", json!("bigint")));
        assert!(set(&mut v, "[- 3]", json!(-3)));
        assert!(set(&mut v, r#"["\u0041\x42\n"]"#, json!(3)));
        assert!(!set(&mut v, "['a'] .b", json!(4)));
        assert_eq!(
            v,
            json!({"8": "decimal", "12": "bigint", "15": "octal", "1.5": 1, "-2": 2, "AB\n": 3, "-3": -3})
        );
    }

    #[test]
    fn set_member_expression_unsupported_syntax_is_skipped() {
        let mut v = json!({"a": {}});
        for bad in [
            "[a]", "[0", "[\"x]", "[0].1", "[0]x", "[]", "[0].", "[01.5]", "[0x1]",
        ] {
            assert!(!set(&mut v, bad, json!(1)), "{bad}");
        }
        assert_eq!(v, json!({"a": {}}));
    }

    #[test]
    fn set_member_expression_with_identifier_tail() {
        let mut v = json!({"a": {"list": [0, 1]}});
        assert!(set(&mut v, "[\"a\"].list[1]", json!("one")));
        assert!(set(&mut v, "['a'].$x_1", json!(true)));
        assert_eq!(v, json!({"a": {"list": [0, "one"], "$x_1": true}}));
    }

    // ---- unset ----

    #[test]
    fn unset_removes_keys_and_nested_keys_keeping_order() {
        let mut v = json!({"a": 1, "b": {"x": 1, "y": 2, "z": 3}, "c": 3});
        assert!(unset(&mut v, "a"));
        assert!(unset(&mut v, "b.y"));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"b":{"x":1,"z":3},"c":3}"#
        );
    }

    #[test]
    fn unset_array_index_splices() {
        let mut v = json!({"items": ["a", "b", "c"]});
        assert!(unset(&mut v, "items.0"));
        assert_eq!(v, json!({"items": ["b", "c"]}));
        assert!(!unset(&mut v, "items.5"));
        // Any run of digits counts: `01` is index 1.
        assert!(unset(&mut v, "items.01"));
        assert_eq!(v, json!({"items": ["b"]}));
        assert!(!unset(&mut v, "items.99999999999999999999999"));
        assert_eq!(v, json!({"items": ["b"]}));
    }

    #[test]
    fn unset_digit_key_on_object_is_left_alone() {
        let mut v = json!({"m": {"1": "one", "x": 2}});
        assert!(!unset(&mut v, "m.1"));
        assert_eq!(v, json!({"m": {"1": "one", "x": 2}}));
    }

    #[test]
    fn unset_missing_or_through_primitive_is_noop() {
        let mut v = json!({"a": "str", "b": null, "c": [1]});
        let before = v.clone();
        for path in [
            "nope", "nope.x", "a.x", "a.0", "b.x", "c.foo", "c.-1", "c.5.x", "[0]",
        ] {
            assert!(!unset(&mut v, path), "{path}");
        }
        assert_eq!(v, before);
        let mut prim = json!(3);
        assert!(!unset(&mut prim, "a"));
        assert_eq!(prim, json!(3));
    }

    #[test]
    fn unset_nested_array_element() {
        let mut v = json!({"a": [[1, 2], [3, 4]]});
        assert!(unset(&mut v, "a.1.0"));
        assert_eq!(v, json!({"a": [[1, 2], [4]]}));
    }

    // ---- get ----

    #[test]
    fn get_paths() {
        let v = json!({"a": {"b": [10, {"c": "deep"}]}, "x.y": 1, "w": {"x.y": 2}});
        assert_eq!(get(&v, "a.b.1.c"), Some(&json!("deep")));
        assert_eq!(get(&v, "a.b[1].c"), Some(&json!("deep")));
        assert_eq!(get(&v, "a.b[0]"), Some(&json!(10)));
        assert_eq!(get(&v, "x.y"), Some(&json!(1)));
        assert_eq!(get(&v, r#"w["x.y"]"#), Some(&json!(2)));
        assert_eq!(get(&v, "a.b.2"), None);
        assert_eq!(get(&v, "a.b.length"), None);
        assert_eq!(get(&v, "a.zz"), None);
        assert_eq!(get(&v, "."), None);
        let arr = json!([{"name": "n"}]);
        assert_eq!(get(&arr, "[0].name"), Some(&json!("n")));
        assert_eq!(get(&arr, "0"), Some(&json!({"name": "n"})));
    }

    #[test]
    fn get_literal_key_wins_and_reads_back_dotted_set() {
        let mut v = json!({});
        set(&mut v, "b[0].c", json!(1));
        assert_eq!(get(&v, "b[0]"), Some(&json!({"c": 1})));
        set(&mut v, "k.0.z", json!(2));
        assert_eq!(get(&v, "k.0.z"), Some(&json!(2)));
        let e = json!({"": 5});
        assert_eq!(get(&e, ""), Some(&json!(5)));
    }

    // ---- query ----

    #[test]
    fn query_single_match_is_unwrapped() {
        let v = json!({"a": {"b": [1, 2]}});
        assert_eq!(query(&v, "$.a.b").unwrap(), json!([1, 2]));
        assert_eq!(query(&v, "$.a.b[1]").unwrap(), json!(2));
    }

    #[test]
    fn query_several_or_no_matches_give_an_array() {
        let v = json!({"list": [{"n": 1}, {"n": 2}], "o": {"n": 3}});
        assert_eq!(query(&v, "$.list[*].n").unwrap(), json!([1, 2]));
        assert_eq!(query(&v, "$.missing").unwrap(), json!([]));
        assert_eq!(query(&v, "$..n").unwrap(), json!([1, 2, 3]));
        assert_eq!(
            query(&v, "$.list[?@.n > 1]").unwrap(),
            json!({"n": 2}),
            "a filter with one match is unwrapped too"
        );
    }

    #[test]
    fn query_invalid_path_is_an_error() {
        let err = query(&json!({}), "$[").unwrap_err();
        let KeyPathError::InvalidJsonPath { path, message } = &err;
        assert_eq!(path, "$[");
        assert!(!message.is_empty());
        assert!(err.to_string().starts_with("invalid JSONPath \"$[\": "));
    }

    // ---- conformance case 08-local-set-and-rm ----

    #[test]
    fn conformance_08_local_set_and_rm() {
        let mut local = json!({});
        set_all(
            &mut local,
            &json!({"x": "first", "n": 1, "a.b": "nested", "list": [1, 2]}),
        );
        assert_eq!(
            serde_json::to_string_pretty(&local).unwrap(),
            "{\n  \"x\": \"first\",\n  \"n\": 1,\n  \"a\": {\n    \"b\": \"nested\"\n  },\n  \"list\": [\n    1,\n    2\n  ]\n}"
        );
        // Step 1's params as rendered by the template engine.
        set_all(
            &mut local,
            &json!({"x": "first-second", "n": 2, "y": "first", "a.c": 3, "list": [1, 2, 3]}),
        );
        assert_eq!(
            serde_json::to_string_pretty(&local).unwrap(),
            "{\n  \"x\": \"first-second\",\n  \"n\": 2,\n  \"a\": {\n    \"b\": \"nested\",\n    \"c\": 3\n  },\n  \"list\": [\n    1,\n    2,\n    3\n  ],\n  \"y\": \"first\"\n}"
        );
        rm_all(&mut local, &["y", "a.b"]);
        assert_eq!(
            serde_json::to_string(&local).unwrap(),
            r#"{"x":"first-second","n":2,"a":{"c":3},"list":[1,2,3]}"#
        );
    }

    // ---- conformance case 10-json-set-get-rm ----

    #[test]
    fn conformance_10_json_set_and_rm() {
        let mut config: Value = serde_json::from_str(
            r#"{ "name": "demo", "keep": true, "drop": "me",
                 "items": [ "a", "b", "c" ], "deep": { "x": 1, "y": 2 } }"#,
        )
        .unwrap();
        set_all(
            &mut config,
            &json!({"name": "changed", "deep.z": 3, "count": 3}),
        );
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"name":"changed","keep":true,"drop":"me","items":["a","b","c"],"deep":{"x":1,"y":2,"z":3},"count":3}"#
        );

        let mut fresh = json!({});
        set_all(&mut fresh, &json!({"created": true, "a.b.c": "deep"}));
        assert_eq!(
            serde_json::to_string_pretty(&fresh).unwrap(),
            "{\n  \"created\": true,\n  \"a\": {\n    \"b\": {\n      \"c\": \"deep\"\n    }\n  }\n}"
        );

        rm_all(&mut config, &["drop", "deep.y", "items.1"]);
        assert_eq!(
            serde_json::to_string_pretty(&config).unwrap(),
            "{\n  \"name\": \"changed\",\n  \"keep\": true,\n  \"items\": [\n    \"a\",\n    \"c\"\n  ],\n  \"deep\": {\n    \"x\": 1,\n    \"z\": 3\n  },\n  \"count\": 3\n}"
        );
    }
}
