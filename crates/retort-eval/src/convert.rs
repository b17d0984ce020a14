//! BFCL's Java and JavaScript type converters.
//!
//! For Java and JavaScript entries BFCL asks function-calling models for
//! every argument as a string in the language's own syntax (`"42L"`,
//! `"new ArrayList<>(Arrays.asList(1, 2))"`, `"{key: 'v'}"`), and its checker
//! converts that string back to a Python value before comparing. These are
//! rule-for-rule ports of `java_type_converter.py` and `js_type_converter.py`
//! of bfcl-eval 2026.3.23, including their fallbacks: a string the converter
//! does not recognise is returned unchanged (and then usually fails the type
//! check).

use std::sync::LazyLock;

use indexmap::IndexMap;
use regex::Regex;

use crate::py::{Py, py_float, py_inner, py_int, py_strip};

/// A type the converter does not implement (BFCL raises here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported {language} type {ty:?}")]
pub struct UnsupportedType {
    pub language: &'static str,
    pub ty: String,
}

fn re(p: &str) -> Regex {
    // The patterns are constants of this file; a typo is caught by the tests.
    Regex::new(p).unwrap_or_else(|e| unreachable!("bad built-in pattern {p}: {e}"))
}

// Python's `$` also matches before one trailing newline: `\n?\z`.
static INT: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d+\n?\z"));
static JAVA_FLOAT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]\n?\z"));
static JAVA_DOUBLE: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?\n?\z"));
static JAVA_LONG: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d+[lL]\n?\z"));
static ARRAYLIST_ASLIST: LazyLock<Regex> =
    LazyLock::new(|| re(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)"));
static ARRAYLIST_ADD: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?s)new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}"));
static ADD_CALL: LazyLock<Regex> = LazyLock::new(|| re(r"add\((.+?)\)"));
static ARRAYLIST_EMPTY: LazyLock<Regex> = LazyLock::new(|| re(r"new\s+ArrayList<\w*>\(\)"));
static JAVA_ARRAY: LazyLock<Regex> = LazyLock::new(|| re(r"new\s+\w+\[\]\s*\{(.*?)\}"));
static HASHMAP: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?s)new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}"));
static PUT_CALL: LazyLock<Regex> = LazyLock::new(|| re(r#"put\("(.*?)",\s*(.*?)\)"#));
static HASHMAP_EMPTY: LazyLock<Regex> = LazyLock::new(|| re(r"new\s+HashMap<.*?>\s*\(\)"));

static JS_FLOAT: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d+(\.\d+)?\n?\z"));
static JS_BIGINT: LazyLock<Regex> = LazyLock::new(|| re(r"^-?\d+n\n?\z"));
static JS_ARRAY_2D: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\))")
});
static JS_INNER_ARRAY: LazyLock<Regex> = LazyLock::new(|| re(r"\[(.*?)\]"));
static JS_ARRAY: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:\[(.*?)\]|\bnew\s+Array\((.*?)\))"));
static JS_DICT: LazyLock<Regex> = LazyLock::new(|| re(r"^\{(.*?)\}"));
static JS_PAIR: LazyLock<fancy_regex::Regex> = LazyLock::new(|| {
    fancy_regex::Regex::new(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)")
        .unwrap_or_else(|e| unreachable!("bad built-in pattern: {e}"))
});

/// Strip the `\n` that Python's `$` tolerates, for `int()`/`float()`.
fn num_text(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

/// Is `ty` a Java type BFCL's checker knows (`JAVA_TYPE_CONVERSION`)?
pub fn java_type_known(ty: &str) -> bool {
    matches!(
        ty,
        "byte"
            | "short"
            | "integer"
            | "float"
            | "double"
            | "long"
            | "boolean"
            | "char"
            | "Array"
            | "ArrayList"
            | "Set"
            | "HashMap"
            | "Hashtable"
            | "Queue"
            | "Stack"
            | "String"
            | "any"
    )
}

/// Port of `java_type_converter(value, expected_type, nested_type)`.
pub fn java(value: &str, ty: &str, nested: Option<&str>) -> Result<Py, UnsupportedType> {
    let unsupported = || UnsupportedType {
        language: "Java",
        ty: ty.to_string(),
    };
    let s = || Py::Str(value.to_string());
    Ok(match ty {
        "byte" | "short" | "integer" => {
            if INT.is_match(value) {
                py_int(num_text(value)).map_or_else(s, Py::Int)
            } else {
                s()
            }
        }
        "float" => {
            if JAVA_FLOAT.is_match(value) {
                let t = num_text(value);
                py_float(&t[..t.len() - 1]).map_or_else(s, Py::Float)
            } else {
                s()
            }
        }
        "double" => {
            if JAVA_DOUBLE.is_match(value) {
                py_float(num_text(value)).map_or_else(s, Py::Float)
            } else {
                s()
            }
        }
        "long" => {
            if JAVA_LONG.is_match(value) {
                let t = num_text(value);
                py_int(&t[..t.len() - 1]).map_or_else(s, Py::Int)
            } else {
                s()
            }
        }
        "boolean" => match value {
            "true" => Py::Bool(true),
            "false" => Py::Bool(false),
            _ => s(),
        },
        // BFCL's char pattern `^\'.$\'` can never match: the value is kept.
        "char" | "String" | "any" => s(),
        "ArrayList" => parse_arraylist(value, nested)?,
        "Array" => parse_array(value, nested)?,
        "HashMap" => parse_hashmap(value),
        _ => return Err(unsupported()),
    })
}

fn java_element(text: &str, nested: Option<&str>) -> Result<Py, UnsupportedType> {
    Ok(match nested {
        Some("char") | Some("String") => Py::Str(py_inner(text).to_string()),
        Some(n) => java(text, n, None)?,
        None => parse_java_value(text),
    })
}

fn parse_arraylist(input: &str, nested: Option<&str>) -> Result<Py, UnsupportedType> {
    if let Some(c) = ARRAYLIST_ASLIST.captures(input) {
        let inner = c.get(1).map_or("", |m| m.as_str());
        let mut out = Vec::new();
        for part in inner.split(',') {
            out.push(java_element(py_strip(part), nested)?);
        }
        return Ok(Py::List(out));
    }
    if let Some(c) = ARRAYLIST_ADD.captures(input) {
        let adds = c.get(1).map_or("", |m| m.as_str());
        let mut out = Vec::new();
        for m in ADD_CALL.captures_iter(adds) {
            let text = py_strip(m.get(1).map_or("", |m| m.as_str()));
            out.push(java_element(text, nested)?);
        }
        return Ok(Py::List(out));
    }
    if ARRAYLIST_EMPTY.is_match(input) {
        return Ok(Py::List(Vec::new()));
    }
    Ok(Py::Str(input.to_string()))
}

fn parse_array(input: &str, nested: Option<&str>) -> Result<Py, UnsupportedType> {
    let Some(c) = JAVA_ARRAY.captures(input) else {
        return Ok(Py::Str(input.to_string()));
    };
    let inner = c.get(1).map_or("", |m| m.as_str());
    let mut out = Vec::new();
    for part in inner.split(',') {
        let x = py_strip(part);
        if x.is_empty() {
            continue;
        }
        out.push(match nested {
            Some(n) => java(x, n, None)?,
            None => parse_java_value(x),
        });
    }
    Ok(Py::List(out))
}

fn parse_hashmap(input: &str) -> Py {
    if let Some(c) = HASHMAP.captures(input) {
        let puts = c.get(1).map_or("", |m| m.as_str());
        let mut out = IndexMap::new();
        if !py_strip(puts).is_empty() {
            for m in PUT_CALL.captures_iter(puts) {
                let key = m.get(1).map_or("", |m| m.as_str()).to_string();
                let val = py_strip(m.get(2).map_or("", |m| m.as_str()));
                out.insert(key, parse_java_value(val));
            }
        }
        return Py::Dict(out);
    }
    if HASHMAP_EMPTY.is_match(input) {
        return Py::Dict(IndexMap::new());
    }
    Py::Str(input.to_string())
}

/// Port of `parse_java_value`: a literal without type information.
pub fn parse_java_value(v: &str) -> Py {
    if v == "true" {
        return Py::Bool(true);
    }
    if v == "false" {
        return Py::Bool(false);
    }
    if v.starts_with('"') && v.ends_with('"') {
        return Py::Str(py_inner(v).to_string());
    }
    if JAVA_LONG.is_match(v) {
        let t = num_text(v);
        if let Some(i) = py_int(&t[..t.len() - 1]) {
            return Py::Int(i);
        }
    }
    if JAVA_FLOAT.is_match(v) {
        let t = num_text(v);
        if let Some(f) = py_float(&t[..t.len() - 1]) {
            return Py::Float(f);
        }
    }
    if let Some(i) = py_int(v) {
        return Py::Int(i);
    }
    if let Some(f) = py_float(v) {
        return Py::Float(f);
    }
    Py::Str(v.to_string())
}

/// Is `ty` a JavaScript type BFCL's checker knows (`JS_TYPE_CONVERSION`)?
pub fn js_type_known(ty: &str) -> bool {
    matches!(
        ty,
        "String" | "integer" | "float" | "Bigint" | "Boolean" | "dict" | "array" | "any"
    )
}

/// Port of `js_type_converter(value, expected_type, nested_type)`.
pub fn js(value: &str, ty: &str, nested: Option<&str>) -> Result<Py, UnsupportedType> {
    let s = || Py::Str(value.to_string());
    Ok(match ty {
        "String" => {
            let quoted = (value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\''));
            if quoted {
                Py::Str(py_inner(value).to_string())
            } else {
                s()
            }
        }
        "integer" => {
            if INT.is_match(value) {
                py_int(num_text(value)).map_or_else(s, Py::Int)
            } else {
                s()
            }
        }
        "float" => {
            if JS_FLOAT.is_match(value) {
                py_float(num_text(value)).map_or_else(s, Py::Float)
            } else {
                s()
            }
        }
        "Bigint" => {
            if JS_BIGINT.is_match(value) {
                let t = num_text(value);
                py_int(&t[..t.len() - 1]).map_or_else(s, Py::Int)
            } else {
                s()
            }
        }
        "Boolean" => match value {
            "true" => Py::Bool(true),
            "false" => Py::Bool(false),
            _ => s(),
        },
        "dict" => parse_js_dict(value),
        "array" => parse_js_array(value, nested),
        "any" => s(),
        _ => {
            return Err(UnsupportedType {
                language: "JavaScript",
                ty: ty.to_string(),
            });
        }
    })
}

fn parse_js_array(code: &str, nested: Option<&str>) -> Py {
    let code = py_strip(code);
    let fallback = || Py::Str(code.to_string());
    if let Some(m) = JS_ARRAY_2D.find(code) {
        let mut out = Vec::new();
        for (idx, c) in JS_INNER_ARRAY.captures_iter(m.as_str()).enumerate() {
            let mut inner = py_strip(c.get(1).map_or("", |m| m.as_str()));
            if idx == 0 && inner.starts_with('[') {
                inner = &inner[1..];
            }
            out.push(Py::List(
                inner
                    .split(',')
                    .map(|e| parse_js_value(py_strip(e)))
                    .collect(),
            ));
        }
        return Py::List(out);
    }
    let Some(c) = JS_ARRAY.captures(code) else {
        return fallback();
    };
    let elements_str = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
    let elements_str = py_strip(elements_str);
    let elements: Vec<&str> = if elements_str.is_empty() {
        Vec::new()
    } else {
        elements_str.split(',').collect()
    };
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        let e = py_strip(e);
        let v = match nested {
            Some(n) => {
                let quoted = e.starts_with('\'') || e.starts_with('"');
                // BFCL's `except:` turns any converter error into the raw code.
                match js(e, n, if quoted { Some("String") } else { None }) {
                    Ok(v) => v,
                    Err(_) => return fallback(),
                }
            }
            None => parse_js_value(e),
        };
        out.push(v);
    }
    Py::List(out)
}

fn strip_quotes(s: &str) -> &str {
    s.trim_matches(['\'', '"'])
}

fn parse_js_dict(code: &str) -> Py {
    let code = py_strip(code);
    if code == "{}" {
        return Py::Dict(IndexMap::new());
    }
    let Some(c) = JS_DICT.captures(code) else {
        return Py::Str(code.to_string());
    };
    let content = c.get(1).map_or("", |m| m.as_str());
    let mut out = IndexMap::new();
    for cap in JS_PAIR.captures_iter(content) {
        // The backtracking limit is far above anything a dict literal
        // needs; if it is ever hit, BFCL's `except` returns the raw code.
        let Ok(cap) = cap else {
            return Py::Str(code.to_string());
        };
        let key = strip_quotes(py_strip(cap.get(1).map_or("", |m| m.as_str())));
        let value = py_strip(cap.get(2).map_or("", |m| m.as_str()));
        let v = if value.starts_with('[') && value.ends_with(']') {
            parse_js_array(value, None)
        } else if value.starts_with('{') && value.ends_with('}') {
            parse_js_dict(value)
        } else {
            parse_js_value(strip_quotes(value))
        };
        out.insert(key.to_string(), v);
    }
    Py::Dict(out)
}

/// Port of `parse_js_value`.
pub fn parse_js_value(v: &str) -> Py {
    let v = py_strip(v);
    if v == "true" {
        return Py::Bool(true);
    }
    if v == "false" {
        return Py::Bool(false);
    }
    if (v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')) {
        return Py::Str(py_inner(v).to_string());
    }
    if let Some(i) = py_int(v) {
        return Py::Int(i);
    }
    if let Some(f) = py_float(v) {
        return Py::Float(f);
    }
    Py::Str(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::py::py_eq;
    use serde_json::json;

    fn eq(a: Py, b: serde_json::Value) -> bool {
        py_eq(&a, &Py::from_json(&b))
    }

    fn j(v: &str, t: &str, n: Option<&str>) -> Py {
        java(v, t, n).expect("supported")
    }

    // The cases of BFCL's own `test_java_type_converter`.
    #[test]
    fn java_converter_matches_bfcl_tests() {
        assert!(eq(j("true", "boolean", None), json!(true)));
        assert!(eq(j("-123", "integer", None), json!(-123)));
        assert!(eq(j("2.5f", "float", None), json!(2.5)));
        assert!(matches!(j("2.5", "float", None), Py::Str(_)));
        assert!(eq(j("3.14e-2", "double", None), json!(0.0314)));
        assert!(eq(j("-123L", "long", None), json!(-123)));
        assert!(matches!(j("123", "long", None), Py::Str(_)));
        assert!(eq(j("123", "any", None), json!("123")));
        assert!(eq(j("new int[]{1, 2, 3}", "Array", None), json!([1, 2, 3])));
        assert!(eq(j("new int[] { }", "Array", None), json!([])));
        assert!(eq(
            j(
                "new ArrayList<>(Arrays.asList(\"a\", \"b\"))",
                "ArrayList",
                None
            ),
            json!(["a", "b"])
        ));
        assert!(eq(
            j(
                "new ArrayList<Float>() {{ add(1.0f); add(2.0f); }}",
                "ArrayList",
                Some("float")
            ),
            json!([1.0, 2.0])
        ));
        assert!(eq(
            j(
                "new ArrayList<Character>() {{ add('a'); add('b'); }}",
                "ArrayList",
                Some("char")
            ),
            json!(["a", "b"])
        ));
        assert!(eq(j("new ArrayList<>()", "ArrayList", None), json!([])));
        assert!(eq(
            j("new long[]{1L, 2, 3L}", "Array", Some("long")),
            json!([1, "2", 3])
        ));
        assert!(eq(
            j(
                "new HashMap<String, Object>() {{ put(\"key1\", 123); put(\"key2\", true); }}",
                "HashMap",
                None
            ),
            json!({"key1": 123, "key2": true})
        ));
        assert!(eq(j("new HashMap<>() {{ }}", "HashMap", None), json!({})));
        assert!(eq(j("new HashMap<>()", "HashMap", None), json!({})));
        assert!(eq(j("not a map", "HashMap", None), json!("not a map")));
        assert!(java("x", "Set", None).is_err());
    }

    fn s(v: &str, t: &str, n: Option<&str>) -> Py {
        js(v, t, n).expect("supported")
    }

    // The cases of BFCL's own JavaScript converter tests.
    #[test]
    fn js_converter_matches_bfcl_tests() {
        assert!(eq(s("123n", "Bigint", None), json!(123)));
        assert!(eq(s("'abc'", "String", None), json!("abc")));
        assert!(eq(s("abc", "String", None), json!("abc")));
        assert!(eq(s("[1, 2, 3]", "array", None), json!([1, 2, 3])));
        assert!(eq(s("new Array(1, 2, 3)", "array", None), json!([1, 2, 3])));
        assert!(eq(
            s("{'key': 'value'}", "dict", None),
            json!({"key": "value"})
        ));
        assert!(eq(s("{'key': true}", "dict", None), json!({"key": true})));
        assert!(eq(
            s("[1, 'two', true]", "array", None),
            json!([1, "two", true])
        ));
        assert!(eq(
            s("[1.1, 2.2, 3.3]", "array", Some("float")),
            json!([1.1, 2.2, 3.3])
        ));
        assert!(eq(s("[1n, 2n]", "array", Some("Bigint")), json!([1, 2])));
        assert!(eq(
            s("[\"hello\", \"world\"]", "array", Some("String")),
            json!(["hello", "world"])
        ));
        assert!(eq(
            s(" [ [ 1, 2 ], [ 3,   4], [5, 6]]", "array", Some("array")),
            json!([[1, 2], [3, 4], [5, 6]])
        ));
        let d = s(
            "{\"initialState\": initialStateObject, \"reducers\": reducersMap, \"middlewares\": [\"loggerMiddleware\"], \"enhancers\": [\"applyMiddleware\", \"myMiddleWare\"]}",
            "dict",
            None,
        );
        assert!(eq(
            d,
            json!({"initialState": "initialStateObject", "reducers": "reducersMap",
                "middlewares": ["loggerMiddleware"], "enhancers": ["applyMiddleware", "myMiddleWare"]})
        ));
        assert!(eq(s("{}", "dict", None), json!({})));
        assert!(js("1", "object", None).is_err());
    }
}
