//! A small parser for Python literals (`'str'`, `3`, `True`, `None`, lists,
//! tuples, dicts) and for API-Bank's call syntax `[Api(key='v', n=3)]`.
//!
//! API-Bank writes its calls and tool descriptions as Python `repr`s, and
//! ToolAlpaca stores Python lists and dicts as strings; both come through
//! here into `serde_json::Value`s.

use serde_json::{Map, Number, Value};

use retort_core::Call;

/// Where and why a Python literal did not parse (`pos` is a byte offset).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at byte {pos}: {message}")]
pub struct PyLitError {
    pub pos: usize,
    pub message: String,
}

/// Deepest nesting accepted, to keep recursion bounded on hostile input.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, PyLitError> {
        Err(PyLitError {
            pos: self.pos,
            message: message.into(),
        })
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn expect(&mut self, c: char) -> Result<(), PyLitError> {
        self.ws();
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            let got = self
                .peek()
                .map_or("end of input".to_string(), |g| format!("{g:?}"));
            self.err(format!("expected {c:?}, got {got}"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, PyLitError> {
        if depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        self.ws();
        match self.peek() {
            None => self.err("expected a value, got end of input"),
            Some('\'') | Some('"') => self.string().map(Value::String),
            Some('[') => {
                self.bump();
                self.seq(']', depth).map(Value::Array)
            }
            Some('(') => {
                self.bump();
                self.seq(')', depth).map(Value::Array)
            }
            Some('{') => {
                self.bump();
                self.dict(depth)
            }
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word = self.ident();
                match word {
                    "True" | "true" => Ok(Value::Bool(true)),
                    "False" | "false" => Ok(Value::Bool(false)),
                    "None" | "null" => Ok(Value::Null),
                    w => self.err(format!("unexpected name {w:?}")),
                }
            }
            Some(c) => self.err(format!("unexpected character {c:?}")),
        }
    }

    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn string(&mut self) -> Result<String, PyLitError> {
        let quote = match self.bump() {
            Some(q) => q,
            None => return self.err("expected a string"),
        };
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return self.err("unterminated string"),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.bump() {
                    None => return self.err("unterminated escape"),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('0') => out.push('\0'),
                    Some('u') => {
                        let start = self.pos;
                        let hex = self.rest().get(..4).unwrap_or("");
                        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) if hex.len() == 4 => {
                                self.pos = start + 4;
                                out.push(ch);
                            }
                            _ => return self.err("invalid \\u escape"),
                        }
                    }
                    Some('x') => {
                        let start = self.pos;
                        let hex = self.rest().get(..2).unwrap_or("");
                        match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) if hex.len() == 2 => {
                                self.pos = start + 2;
                                out.push(ch);
                            }
                            _ => return self.err("invalid \\x escape"),
                        }
                    }
                    Some(c @ ('\\' | '\'' | '"')) => out.push(c),
                    // Python keeps unknown escapes as written.
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Value, PyLitError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'))
        {
            self.bump();
        }
        let text: String = self.s[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.pos = start;
                self.err(format!("invalid number {text:?}"))
            }
        }
    }

    fn seq(&mut self, close: char, depth: usize) -> Result<Vec<Value>, PyLitError> {
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.bump();
                return Ok(out);
            }
            out.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                _ => return self.err(format!("expected ',' or {close:?}")),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, PyLitError> {
        let mut m = Map::new();
        loop {
            self.ws();
            if self.peek() == Some('}') {
                self.bump();
                return Ok(Value::Object(m));
            }
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.expect(':')?;
            let v = self.value(depth + 1)?;
            m.insert(key, v);
            self.ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }
}

/// Parse one Python literal; the whole input must be consumed.
pub fn parse_literal(s: &str) -> Result<Value, PyLitError> {
    let mut p = Parser { s, pos: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.pos != s.len() {
        return p.err("trailing characters after the value");
    }
    Ok(v)
}

/// Parse API-Bank's call syntax: `[Api(key='v', n=3)]`, optionally prefixed
/// with `API-Request:`; several calls may be listed inside the brackets.
///
/// API-Bank's teacher sometimes leaves out the brackets
/// (`API-Request: Api(key='v')`) or the quotes of a string value
/// (`location=New York`); both are accepted: a bare value runs to the next
/// top-level `,` or `)` and is read as a string unless it is a literal.
pub fn parse_api_request(s: &str) -> Result<Vec<Call>, PyLitError> {
    let body = s.trim();
    let offset = s.len() - s.trim_start().len();
    let (body, offset) = match body.strip_prefix("API-Request:") {
        Some(rest) => (rest, offset + "API-Request:".len()),
        None => (body, offset),
    };
    let mut p = Parser {
        s: &s[..offset + body.len()],
        pos: offset,
    };
    p.ws();
    let bracketed = p.peek() == Some('[');
    if bracketed {
        p.bump();
    }
    let mut calls = Vec::new();
    loop {
        p.ws();
        if bracketed && p.peek() == Some(']') {
            p.bump();
            break;
        }
        if !bracketed && p.peek().is_none() && !calls.is_empty() {
            break;
        }
        let name = p.ident().to_string();
        if name.is_empty() {
            return p.err("expected a function name");
        }
        p.expect('(')?;
        let mut args = Map::new();
        loop {
            p.ws();
            if p.peek() == Some(')') {
                p.bump();
                break;
            }
            let key = p.ident().to_string();
            if key.is_empty() {
                return p.err("expected an argument name");
            }
            p.expect('=')?;
            let v = p.arg_value()?;
            args.insert(key, v);
            p.ws();
            match p.peek() {
                Some(',') => {
                    p.bump();
                }
                Some(')') => {}
                _ => return p.err("expected ',' or ')'"),
            }
        }
        calls.push(Call::new(name, args));
        p.ws();
        if p.peek() == Some(',') {
            p.bump();
        } else if !bracketed {
            break;
        }
    }
    p.ws();
    if p.pos != p.s.len() {
        return p.err("trailing characters after the call list");
    }
    Ok(calls)
}

impl Parser<'_> {
    /// A call argument: a literal, or a bare word run read as a string.
    fn arg_value(&mut self) -> Result<Value, PyLitError> {
        self.ws();
        let start = self.pos;
        if let Ok(v) = self.value(0) {
            let save = self.pos;
            self.ws();
            if matches!(self.peek(), Some(',') | Some(')')) {
                self.pos = save;
                return Ok(v);
            }
        }
        self.pos = start;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth == 0 => break,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 0 => break,
                _ => {}
            }
            self.bump();
        }
        let text = self.s[start..self.pos].trim();
        if text.is_empty() {
            return self.err("expected a value");
        }
        Ok(Value::String(text.to_string()))
    }
}

/// Render a JSON value as a Python literal (the inverse of [`parse_literal`]
/// for values without floats that lose precision). Used by tests and to
/// write calls back in API-Bank's syntax.
pub fn to_python(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(to_python).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), to_python(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn literals() {
        assert_eq!(
            parse_literal("{'a': [1, -2.5, True, None], \"b\": ('x', 'it\\'s')}").expect("ok"),
            json!({"a": [1, -2.5, true, null], "b": ["x", "it's"]})
        );
        assert_eq!(parse_literal(" [ ] ").expect("ok"), json!([]));
        assert!(parse_literal("[1, 2").is_err());
        assert!(parse_literal("{'a' 1}").is_err());
        assert!(parse_literal("'abc").is_err());
        assert!(parse_literal("1 2").is_err());
        assert!(parse_literal("foo").is_err());
    }

    #[test]
    fn api_requests() {
        let calls = parse_api_request(
            "API-Request: [HealthcareProviderAppointmentChecker(specialty='cardiologist', location='Los Angeles')]",
        )
        .expect("ok");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "HealthcareProviderAppointmentChecker");
        assert_eq!(
            Value::Object(calls[0].arguments.clone()),
            json!({"specialty": "cardiologist", "location": "Los Angeles"})
        );
        let two = parse_api_request("[A(x=1, y=[1, 'a']), B()]").expect("ok");
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].name, "B");
        assert!(two[1].arguments.is_empty());
        let bare =
            parse_api_request("API-Request: PharmacyLocator(location=New York, n=3)").expect("ok");
        assert_eq!(bare[0].arguments["location"], "New York");
        assert_eq!(bare[0].arguments["n"], 3);
        for bad in [
            "[A(x=1]",
            "[A(=1)]",
            "[A(x=)]",
            "[A(x=1)] tail",
            "[(x=1)]",
            "",
            "A(x=1) B",
        ] {
            assert!(parse_api_request(bad).is_err(), "{bad}");
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn literal_roundtrip(v in arb_value()) {
            prop_assert_eq!(parse_literal(&to_python(&v)).expect("own output parses"), v);
        }

        #[test]
        fn api_request_roundtrip(
            name in "[A-Za-z][A-Za-z0-9_]{0,10}",
            args in prop::collection::btree_map("[a-z_][a-z0-9_]{0,6}", arb_value(), 0..4),
        ) {
            let text = format!(
                "API-Request: [{name}({})]",
                args.iter().map(|(k, v)| format!("{k}={}", to_python(v))).collect::<Vec<_>>().join(", ")
            );
            let calls = parse_api_request(&text).expect("parses");
            prop_assert_eq!(calls.len(), 1);
            prop_assert_eq!(&calls[0].name, &name);
            let want: Map<String, Value> = args.into_iter().collect();
            prop_assert_eq!(&calls[0].arguments, &want);
        }

        #[test]
        fn never_panics(s in ".{0,64}") {
            let _ = parse_literal(&s);
            let _ = parse_api_request(&s);
        }

        #[test]
        fn never_panics_on_near_valid(s in "[\\[\\]\\(\\)\\{\\}'\",=:a-z0-9 \\\\-]{0,40}") {
            let _ = parse_literal(&s);
            let _ = parse_api_request(&s);
        }
    }
}
