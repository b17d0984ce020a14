//! Python value semantics, as BFCL's checker sees decoded model output.
//!
//! BFCL's checker runs on Python objects: `json.loads` turns `1` into an
//! `int` and `1.0` into a `float`, `type(x) == int` is false for `True`, and
//! `==` treats `1 == 1.0 == True` as equal. [`Py`] keeps exactly those
//! distinctions so the checker can be reproduced rule for rule.

use indexmap::IndexMap;
use serde_json::{Number, Value};

/// A Python value as produced by `json.loads` or by BFCL's Java/JavaScript
/// type converters.
#[derive(Debug, Clone)]
pub enum Py {
    None,
    Bool(bool),
    /// Python `int` (bounded here to i128, far beyond any JSON integer).
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Dict(IndexMap<String, Py>),
}

/// The Python type of a value (`type(x)`), for BFCL's strict type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyType {
    NoneType,
    Bool,
    Int,
    Float,
    Str,
    List,
    Dict,
    /// Python `set` (BFCL's Java `Set`); no value ever has this type.
    Set,
}

impl PyType {
    pub fn name(self) -> &'static str {
        match self {
            PyType::NoneType => "NoneType",
            PyType::Bool => "bool",
            PyType::Int => "int",
            PyType::Float => "float",
            PyType::Str => "str",
            PyType::List => "list",
            PyType::Dict => "dict",
            PyType::Set => "set",
        }
    }
}

impl Py {
    /// `json.loads` semantics: integers stay `int`, anything with a fraction
    /// or exponent is a `float`.
    pub fn from_json(v: &Value) -> Py {
        match v {
            Value::Null => Py::None,
            Value::Bool(b) => Py::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Py::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Py::Int(i128::from(u))
                } else {
                    Py::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Py::Str(s.clone()),
            Value::Array(a) => Py::List(a.iter().map(Py::from_json).collect()),
            Value::Object(o) => Py::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), Py::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Back to JSON (non-finite floats and out-of-range ints become strings).
    pub fn to_json(&self) -> Value {
        match self {
            Py::None => Value::Null,
            Py::Bool(b) => Value::Bool(*b),
            Py::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            Py::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(py_float_repr(*f))),
            Py::Str(s) => Value::String(s.clone()),
            Py::List(l) => Value::Array(l.iter().map(Py::to_json).collect()),
            Py::Dict(d) => Value::Object(d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    pub fn ty(&self) -> PyType {
        match self {
            Py::None => PyType::NoneType,
            Py::Bool(_) => PyType::Bool,
            Py::Int(_) => PyType::Int,
            Py::Float(_) => PyType::Float,
            Py::Str(_) => PyType::Str,
            Py::List(_) => PyType::List,
            Py::Dict(_) => PyType::Dict,
        }
    }

    /// Python's `str(x)` for scalars (used where BFCL falls back to a string).
    pub fn py_str(&self) -> String {
        match self {
            Py::None => "None".to_string(),
            Py::Bool(true) => "True".to_string(),
            Py::Bool(false) => "False".to_string(),
            Py::Int(i) => i.to_string(),
            Py::Float(f) => py_float_repr(*f),
            Py::Str(s) => s.clone(),
            // Not needed for BFCL's data; a JSON rendering is close enough.
            other => other.to_json().to_string(),
        }
    }

    fn as_number(&self) -> Option<Num> {
        match self {
            Py::Bool(b) => Some(Num::Int(i128::from(*b))),
            Py::Int(i) => Some(Num::Int(*i)),
            Py::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }
}

enum Num {
    Int(i128),
    Float(f64),
}

/// Python `==`: numbers (and booleans) compare by value, lists in order,
/// dicts by key set and values.
pub fn py_eq(a: &Py, b: &Py) -> bool {
    if let (Some(x), Some(y)) = (a.as_number(), b.as_number()) {
        return match (x, y) {
            (Num::Int(x), Num::Int(y)) => x == y,
            (Num::Float(x), Num::Float(y)) => x == y,
            (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => int_eq_float(i, f),
        };
    }
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Str(x), Py::Str(y)) => x == y,
        (Py::List(x), Py::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Py::Dict(x), Py::Dict(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

fn int_eq_float(i: i128, f: f64) -> bool {
    // Exact comparison as Python does it: f must be integral and equal.
    f.is_finite() && f.fract() == 0.0 && f.abs() < 1.7e38 && (f as i128) == i
}

/// Python `x in list`.
pub fn py_in(x: &Py, list: &[Py]) -> bool {
    list.iter().any(|y| py_eq(x, y))
}

/// BFCL's `standardize_string`: delete ` ,./-_*^`, lowercase, `'` -> `"`.
pub fn standardize_string(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | ',' | '.' | '/' | '-' | '_' | '*' | '^'))
        .collect();
    kept.to_lowercase().replace('\'', "\"")
}

/// Python's `str.isspace` for one character.
pub fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// Python's `s[1:-1]`.
pub fn py_inner(s: &str) -> &str {
    let mut it = s.char_indices();
    let start = match it.nth(1) {
        Some((i, _)) => i,
        None => return "",
    };
    match s.char_indices().next_back() {
        Some((end, _)) if end > start => &s[start..end],
        _ => "",
    }
}

/// Remove underscores that Python's numeric literals allow between digits.
fn strip_digit_underscores(s: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let before = i > 0 && chars[i - 1].is_ascii_digit();
            let after = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Python's `int(s)` for a string (base 10); `None` where Python raises.
/// Only ASCII digits are accepted (Python also takes other Unicode digits).
pub fn py_int(s: &str) -> Option<i128> {
    let t = strip_digit_underscores(py_strip(s))?;
    let digits = t.strip_prefix(['+', '-']).unwrap_or(&t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i128>().ok()
}

/// Python's `float(s)`; `None` where Python raises.
pub fn py_float(s: &str) -> Option<f64> {
    let t = strip_digit_underscores(py_strip(s))?;
    let body = t.strip_prefix(['+', '-']).unwrap_or(&t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return t.parse::<f64>().ok().or(match lower.as_str() {
            "nan" => Some(f64::NAN),
            _ if t.starts_with('-') => Some(f64::NEG_INFINITY),
            _ => Some(f64::INFINITY),
        });
    }
    // Python accepts digits, one '.', an exponent; Rust's parser accepts the
    // same grammar once the special words are handled above.
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Python's `repr(float)` (shortest round-trip, `.0` for integral values,
/// exponent form outside [1e-4, 1e16)).
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust's `{:e}` gives the shortest digits: 1e-5, 1.5e20.
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_types_follow_json_loads() {
        assert_eq!(Py::from_json(&json!(1)).ty(), PyType::Int);
        assert_eq!(Py::from_json(&json!(1.0)).ty(), PyType::Float);
        assert_eq!(Py::from_json(&json!(true)).ty(), PyType::Bool);
        assert_eq!(Py::from_json(&json!({"a": [1]})).ty(), PyType::Dict);
    }

    #[test]
    fn equality_is_pythons() {
        let p = |v| Py::from_json(&v);
        assert!(py_eq(&p(json!(1)), &p(json!(1.0))));
        assert!(py_eq(&p(json!(true)), &p(json!(1))));
        assert!(!py_eq(&p(json!("1")), &p(json!(1))));
        assert!(py_eq(&p(json!([1, "a"])), &p(json!([1.0, "a"]))));
        assert!(!py_eq(&p(json!([1, 2])), &p(json!([2, 1]))));
        assert!(py_eq(
            &p(json!({"a": 1, "b": 2})),
            &p(json!({"b": 2, "a": 1}))
        ));
        assert!(!py_eq(&Py::Float(f64::NAN), &Py::Float(f64::NAN)));
    }

    #[test]
    fn standardize_matches_bfcl() {
        assert_eq!(standardize_string("April 1, 2024"), "april12024");
        assert_eq!(standardize_string("New-York_City./*^"), "newyorkcity");
        assert_eq!(standardize_string("it's"), "it\"s");
    }

    #[test]
    fn python_number_parsing() {
        assert_eq!(py_int(" 12 "), Some(12));
        assert_eq!(py_int("1_000"), Some(1000));
        assert_eq!(py_int("1.0"), None);
        assert_eq!(py_int("_1"), None);
        assert_eq!(py_float("1e3"), Some(1000.0));
        assert_eq!(py_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(py_float("abc"), None);
        assert_eq!(py_float(""), None);
    }

    #[test]
    fn float_repr_is_pythons() {
        assert_eq!(py_float_repr(30.0), "30.0");
        assert_eq!(py_float_repr(20.5), "20.5");
        assert_eq!(py_float_repr(1e-5), "1e-05");
        assert_eq!(py_float_repr(1.5e20), "1.5e+20");
        assert_eq!(py_float_repr(0.1), "0.1");
    }

    #[test]
    fn inner_slices_like_python() {
        assert_eq!(py_inner("\"abc\""), "abc");
        assert_eq!(py_inner("\""), "");
        assert_eq!(py_inner("ab"), "");
        assert_eq!(py_inner("'é'"), "é");
    }
}
