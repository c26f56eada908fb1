//! The `{{ }}` template interpreter, with Pinokio's exact rules
//! (`research/pinokio-semantics.md` section 2):
//!
//! - a string that is exactly one `{{expr}}` keeps the value's type;
//! - `{{{ }}}` strings are left alone and finally rewritten to `{{ }}`;
//! - anything else interpolates every `{{expr}}` with `String(value)`,
//!   using JavaScript `replaceAll` substitution rules (`$&`, `$$`...);
//! - `undefined` results and run-time errors leave the literal text in place;
//! - a whole-value syntax error leaves the nearest enclosing object
//!   completely unrendered; an interpolated syntax error leaves the string;
//! - object keys are templates too; a key rendering to `null`/`false` drops
//!   the entry;
//! - up to four passes while any `{{...}}` remains.
//!
//! Expressions are evaluated by the [`JsRuntime`] in
//! the scope installed with `set_scope`. Every silent upstream fallback is
//! also reported as a warning.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::js::{EvalMode, EvalResult, JsRuntime};

/// Anything that can evaluate an expression (the JS runtime, or a fake).
pub trait Evaluator {
    fn eval(&self, expr: &str, mode: EvalMode) -> EvalResult;
}

impl Evaluator for JsRuntime {
    fn eval(&self, expr: &str, mode: EvalMode) -> EvalResult {
        self.evaluate(expr, mode)
    }
}

/// A template error that escapes rendering (only possible outside an object,
/// e.g. the second evaluation of `when`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template syntax error in {template:?}: {message}")]
pub struct SyntaxError {
    pub template: String,
    pub message: String,
}

const LINE: &str = r"[^\n\r\u{2028}\u{2029}]";

fn re_raw() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(&format!(r"^\{{\{{\{{({LINE}+)\}}\}}\}}$")).expect("regex"))
}
fn re_whole() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(&format!(r"^\{{\{{({LINE}+)\}}\}}$")).expect("regex"))
}
fn re_interp() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(&format!(r"\{{\{{({LINE}+?)\}}\}}")).expect("regex"))
}
fn re_triple() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(&format!(r"\{{\{{\{{({LINE}+?)\}}\}}\}}")).expect("regex"))
}

/// Does this string contain a template?
pub fn has_template(s: &str) -> bool {
    re_interp().is_match(s)
}

/// How a string is treated by the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class<'a> {
    /// `{{{...}}}` as the whole string: untouched.
    Raw,
    /// `{{expr}}` as the whole string: typed value.
    Whole(&'a str),
    /// Anything else: interpolation.
    Interpolated,
}

/// Classify a string as the renderer does.
pub fn classify(s: &str) -> Class<'_> {
    if re_raw().is_match(s) {
        return Class::Raw;
    }
    if let Some(c) = re_whole().captures(s) {
        return Class::Whole(c.get(1).map(|m| m.as_str()).unwrap_or(""));
    }
    Class::Interpolated
}

/// The renderer: evaluates templates with an [`Evaluator`] and collects warnings.
pub struct Renderer<'e> {
    eval: &'e dyn Evaluator,
    warnings: Vec<String>,
    /// In "undefined allowed" mode a whole-value `undefined` is returned as
    /// `None` (used by the second evaluation of `when`).
    allow_undefined: bool,
}

/// Outcome of rendering one string.
enum Rendered {
    Value(Value),
    Undefined,
}

impl<'e> Renderer<'e> {
    pub fn new(eval: &'e dyn Evaluator) -> Self {
        Renderer {
            eval,
            warnings: Vec::new(),
            allow_undefined: false,
        }
    }

    /// Warnings collected so far.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Take the warnings.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Render a whole step (or any value) the way the runner does before each
    /// step: up to four passes, then the `{{{ }}}` rewrite.
    pub fn render_step(&mut self, raw: &Value) -> Value {
        let mut current = raw.clone();
        for _pass in 0..4 {
            self.warnings.clear();
            current = match self.render_value(&current) {
                Ok(v) => v,
                Err(e) => {
                    self.warnings
                        .push(format!("{e}; the value was left unrendered"));
                    current
                }
            };
            if !contains_template(&current) {
                break;
            }
        }
        rewrite_triple(current)
    }

    /// Render one value in a single pass. An error is a whole-value syntax
    /// error not caught by an enclosing object.
    pub fn render_value(&mut self, v: &Value) -> Result<Value, SyntaxError> {
        match v {
            Value::String(s) => match self.render_string(s)? {
                Rendered::Value(v) => Ok(v),
                // only reachable in allow_undefined mode; the caller decides
                Rendered::Undefined => Ok(Value::String(s.clone())),
            },
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.render_value(item)?);
                }
                Ok(Value::Array(out))
            }
            Value::Object(map) => Ok(self.render_object(map)),
            other => Ok(other.clone()),
        }
    }

    fn render_object(&mut self, map: &Map<String, Value>) -> Value {
        let mut out = Map::with_capacity(map.len());
        for (k, v) in map {
            let key = match self.render_key(k) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(e) => return self.object_left_raw(map, e),
            };
            match self.render_value(v) {
                Ok(v) => {
                    out.insert(key, v);
                }
                Err(e) => return self.object_left_raw(map, e),
            }
        }
        Value::Object(out)
    }

    fn object_left_raw(&mut self, map: &Map<String, Value>, e: SyntaxError) -> Value {
        let keys: Vec<&str> = map.keys().map(|k| k.as_str()).take(6).collect();
        self.warnings.push(format!(
            "{e}; the whole enclosing object (keys: {}) was left unrendered, as Pinokio does",
            keys.join(", ")
        ));
        Value::Object(map.clone())
    }

    /// A rendered key: `None` drops the entry.
    fn render_key(&mut self, k: &str) -> Result<Option<String>, SyntaxError> {
        if !k.contains("{{") {
            return Ok(Some(k.to_string()));
        }
        match self.render_string(k)? {
            Rendered::Value(Value::Null) | Rendered::Value(Value::Bool(false)) => Ok(None),
            Rendered::Value(Value::String(s)) => Ok(Some(s)),
            Rendered::Value(other) => Ok(Some(js_string(&other))),
            Rendered::Undefined => Ok(Some(k.to_string())),
        }
    }

    fn render_string(&mut self, s: &str) -> Result<Rendered, SyntaxError> {
        if !s.contains("{{") {
            return Ok(Rendered::Value(Value::String(s.to_string())));
        }
        match classify(s) {
            Class::Raw => Ok(Rendered::Value(Value::String(s.to_string()))),
            Class::Whole(expr) => match self.eval.eval(expr, EvalMode::Whole) {
                EvalResult::Value(v) => Ok(Rendered::Value(v)),
                EvalResult::Undefined => {
                    if self.allow_undefined {
                        return Ok(Rendered::Undefined);
                    }
                    self.warnings
                        .push(format!("template {s:?} is undefined; left as literal text"));
                    Ok(Rendered::Value(Value::String(s.to_string())))
                }
                EvalResult::RuntimeError(m) => {
                    self.warnings
                        .push(format!("template {s:?} failed ({m}); left as literal text"));
                    Ok(Rendered::Value(Value::String(s.to_string())))
                }
                EvalResult::SyntaxError(m) => Err(SyntaxError {
                    template: s.to_string(),
                    message: m,
                }),
            },
            Class::Interpolated => Ok(Rendered::Value(Value::String(self.interpolate(s)))),
        }
    }

    fn interpolate(&mut self, s: &str) -> String {
        let mut seen: Vec<&str> = Vec::new();
        let mut result = s.to_string();
        for c in re_interp().captures_iter(s) {
            let whole = c.get(0).map(|m| m.as_str()).unwrap_or("");
            if seen.contains(&whole) {
                continue;
            }
            seen.push(whole);
            let expr = c.get(1).map(|m| m.as_str()).unwrap_or("");
            match self.eval.eval(expr, EvalMode::Text) {
                EvalResult::Value(Value::String(text)) => {
                    result = js_replace_all(&result, whole, &text);
                }
                EvalResult::Value(other) => {
                    result = js_replace_all(&result, whole, &js_string(&other));
                }
                EvalResult::Undefined => self.warnings.push(format!(
                    "template {whole:?} in {s:?} is undefined; left as literal text"
                )),
                EvalResult::RuntimeError(m) => self.warnings.push(format!(
                    "template {whole:?} in {s:?} failed ({m}); left as literal text"
                )),
                EvalResult::SyntaxError(m) => {
                    self.warnings.push(format!(
                        "template {whole:?} in {s:?} does not parse ({m}); the string was left unrendered"
                    ));
                    return s.to_string();
                }
            }
        }
        result
    }

    /// The second evaluation of `when` ("undefined allowed"): returns the
    /// truthiness. A syntax error escapes (the runner makes it a step error).
    pub fn when_truthy(&mut self, rendered_when: &Value) -> Result<bool, SyntaxError> {
        if !truthy(rendered_when) {
            return Ok(false);
        }
        self.allow_undefined = true;
        let out = match rendered_when {
            Value::String(s) => self.render_string(s).map(|r| match r {
                Rendered::Undefined => false,
                Rendered::Value(v) => truthy(&v),
            }),
            other => self.render_value(other).map(|v| truthy(&v)),
        };
        self.allow_undefined = false;
        out
    }
}

/// JavaScript truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().map(|f| f != 0.0 && !f.is_nan()).unwrap_or(true),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript `String(value)` for a JSON value.
pub fn js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("Buffer") {
                if let Some(Value::Array(data)) = o.get("data") {
                    let bytes: Vec<u8> = data
                        .iter()
                        .filter_map(|b| b.as_u64())
                        .map(|b| b as u8)
                        .collect();
                    return String::from_utf8_lossy(&bytes).into_owned();
                }
            }
            "[object Object]".into()
        }
    }
}

fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// `haystack.replaceAll(pattern, replacement)` with a string pattern, using
/// ECMAScript GetSubstitution rules for `$$`, `$&`, `` $` `` and `$'`.
pub fn js_replace_all(haystack: &str, pattern: &str, replacement: &str) -> String {
    if pattern.is_empty() {
        return haystack.to_string();
    }
    let positions: Vec<usize> = haystack.match_indices(pattern).map(|(i, _)| i).collect();
    if positions.is_empty() {
        return haystack.to_string();
    }
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for pos in positions {
        out.push_str(&haystack[last..pos]);
        let end = pos + pattern.len();
        let mut chars = replacement.char_indices().peekable();
        while let Some((_, ch)) = chars.next() {
            if ch != '$' {
                out.push(ch);
                continue;
            }
            match chars.peek().map(|(_, c)| *c) {
                Some('$') => {
                    out.push('$');
                    chars.next();
                }
                Some('&') => {
                    out.push_str(pattern);
                    chars.next();
                }
                Some('`') => {
                    out.push_str(&haystack[..pos]);
                    chars.next();
                }
                Some('\'') => {
                    out.push_str(&haystack[end..]);
                    chars.next();
                }
                _ => out.push('$'),
            }
        }
        last = end;
    }
    out.push_str(&haystack[last..]);
    out
}

/// Does any string value or key still hold a template?
pub fn contains_template(v: &Value) -> bool {
    match v {
        Value::String(s) => has_template(s),
        Value::Array(a) => a.iter().any(contains_template),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| has_template(k) || contains_template(v)),
        _ => false,
    }
}

/// Rewrite every `{{{X}}}` to `{{X}}` in string values and keys.
pub fn rewrite_triple(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("{{{") => {
            Value::String(re_triple().replace_all(&s, "{{$1}}").into_owned())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rewrite_triple).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| {
                    let k = if k.contains("{{{") {
                        re_triple().replace_all(&k, "{{$1}}").into_owned()
                    } else {
                        k
                    };
                    (k, rewrite_triple(v))
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    /// A fake evaluator over a fixed table, so these tests pin the renderer's
    /// rules independently of QuickJS.
    struct Table(HashMap<&'static str, EvalResult>);
    impl Evaluator for Table {
        fn eval(&self, expr: &str, mode: EvalMode) -> EvalResult {
            let r = self
                .0
                .get(expr)
                .cloned()
                .unwrap_or(EvalResult::RuntimeError(format!(
                    "ReferenceError: {expr} is not defined"
                )));
            match (mode, r) {
                (EvalMode::Text, EvalResult::Value(v)) => {
                    EvalResult::Value(Value::String(js_string(&v)))
                }
                (_, r) => r,
            }
        }
    }
    fn table() -> Table {
        let mut m = HashMap::new();
        m.insert("a", EvalResult::Value(json!(1)));
        m.insert("b", EvalResult::Value(json!(2)));
        m.insert("list", EvalResult::Value(json!([1, 2])));
        m.insert("obj", EvalResult::Value(json!({"k": 1})));
        m.insert("n", EvalResult::Value(Value::Null));
        m.insert("f", EvalResult::Value(json!(false)));
        m.insert("u", EvalResult::Undefined);
        m.insert("dollar", EvalResult::Value(json!("a$&b")));
        m.insert("tpl", EvalResult::Value(json!("{{a}}")));
        m.insert(
            "a}} {{b",
            EvalResult::SyntaxError("SyntaxError: unexpected token".into()),
        );
        m.insert(
            "a}}{{b",
            EvalResult::SyntaxError("SyntaxError: unexpected token".into()),
        );
        m.insert(
            "{a",
            EvalResult::SyntaxError("SyntaxError: unexpected token".into()),
        );
        Table(m)
    }

    fn render(v: Value) -> (Value, Vec<String>) {
        let t = table();
        let mut r = Renderer::new(&t);
        let out = r.render_step(&v);
        (out, r.take_warnings())
    }

    #[test]
    fn whole_value_keeps_type_and_interpolation_stringifies() {
        let (v, w) = render(json!({
            "a": "{{a}}", "list": "{{list}}", "n": "{{n}}",
            "x": "x{{list}}", "o": "x{{obj}}", "xn": "x {{n}}",
            "lead": " {{a}}", "two": "x {{a}} {{b}}", "text": "{{a}} and text"
        }));
        assert_eq!(
            v,
            json!({"a": 1, "list": [1, 2], "n": null, "x": "x1,2", "o": "x[object Object]",
                   "xn": "x null", "lead": " 1", "two": "x 1 2", "text": "1 and text"})
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn undefined_and_errors_stay_literal_with_warnings() {
        let (v, w) = render(
            json!({"u": "{{u}}", "ui": "pre {{u}} post", "e": "{{nope}}", "m": "{{a}} and {{u}}!"}),
        );
        assert_eq!(
            v,
            json!({"u": "{{u}}", "ui": "pre {{u}} post", "e": "{{nope}}", "m": "1 and {{u}}!"})
        );
        assert!(w.iter().any(|m| m.contains("undefined")), "{w:?}");
        assert!(w.iter().any(|m| m.contains("nope")), "{w:?}");
    }

    #[test]
    fn syntax_error_leaves_enclosing_object_raw_but_siblings_render() {
        let (v, w) = render(json!({
            "method": "{{a}}",
            "params": {"message": "{{a}} {{b}}", "path": "{{a}}"}
        }));
        assert_eq!(
            v,
            json!({"method": 1, "params": {"message": "{{a}} {{b}}", "path": "{{a}}"}})
        );
        assert!(w.iter().any(|m| m.contains("left unrendered")), "{w:?}");
        // through an array up to the object
        let (v, _) = render(json!({"p": {"list": ["{{a}}{{b}}", "{{a}}"]}, "q": "{{b}}"}));
        assert_eq!(v, json!({"p": {"list": ["{{a}}{{b}}", "{{a}}"]}, "q": 2}));
    }

    #[test]
    fn interpolated_syntax_error_keeps_the_string() {
        let (v, _) = render(json!({"s": "x {{{a}} {{b}}"}));
        assert_eq!(v, json!({"s": "x {{{a}} {{b}}"}));
    }

    #[test]
    fn dollar_patterns_compound_over_passes() {
        let (v, _) = render(json!({"d": "pw={{dollar}}"}));
        assert_eq!(v, json!({"d": "pw=aaaa{{dollar}}bbbb"}));
    }

    #[test]
    fn values_containing_templates_render_on_the_next_pass() {
        let (v, _) = render(json!({"t": "{{tpl}}", "s": "v={{tpl}}"}));
        assert_eq!(v, json!({"t": 1, "s": "v=1"}));
    }

    #[test]
    fn triple_braces_reach_the_method_as_double() {
        let (v, _) = render(json!({"raw": "{{{a}}}", "mixed": "x {{{a}}} y", "key {{{a}}}": 1}));
        assert_eq!(
            v,
            json!({"raw": "{{a}}", "mixed": "x {{a}} y", "key {{a}}": 1})
        );
    }

    #[test]
    fn keys_render_and_null_or_false_drop_the_entry() {
        let (v, _) = render(json!({"{{n}}": "gone", "{{f}}": "gone", "k{{a}}": 1, "{{a}}": 2}));
        assert_eq!(v, json!({"k1": 1, "1": 2}));
    }

    #[test]
    fn newline_inside_braces_is_plain_text() {
        assert_eq!(classify("{{\n a}}"), Class::Interpolated);
        let (v, _) = render(json!({"s": "{{\n a}}"}));
        assert_eq!(v, json!({"s": "{{\n a}}"}));
    }

    #[test]
    fn when_second_pass() {
        let t = table();
        let mut r = Renderer::new(&t);
        assert!(!r.when_truthy(&json!("{{u}}")).unwrap());
        assert!(r.when_truthy(&json!("{{nope}}")).unwrap());
        assert!(r.when_truthy(&json!("false")).unwrap());
        assert!(!r.when_truthy(&json!(0)).unwrap());
        assert!(!r.when_truthy(&json!("")).unwrap());
        assert!(r.when_truthy(&json!("{{a}}")).unwrap());
        assert!(r.when_truthy(&json!("{{a}} {{b}}")).is_err());
    }

    #[test]
    fn replace_all_follows_get_substitution() {
        assert_eq!(js_replace_all("x{{a}}y{{a}}", "{{a}}", "$$"), "x$y$");
        assert_eq!(js_replace_all("x{{a}}y", "{{a}}", "<$&>"), "x<{{a}}>y");
        assert_eq!(js_replace_all("x{{a}}y", "{{a}}", "$`|$'"), "xx|yy");
        assert_eq!(js_replace_all("x{{a}}", "{{a}}", "$1"), "x$1");
    }

    #[test]
    fn js_string_matches_javascript() {
        assert_eq!(js_string(&json!(null)), "null");
        assert_eq!(js_string(&json!([1, null, "a"])), "1,,a");
        assert_eq!(
            js_string(&json!(0.30000000000000004)),
            "0.30000000000000004"
        );
        assert_eq!(
            js_string(&json!({"type": "Buffer", "data": [104, 105]})),
            "hi"
        );
    }

    #[test]
    fn truthiness() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!(0.0)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!("false"), json!("0"), json!([]), json!({}), json!(-1)] {
            assert!(truthy(&v), "{v}");
        }
    }
}
