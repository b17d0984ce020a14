//! The answer key as a prediction: the first acceptable value of every
//! parameter. A parameter with `""` among its acceptable values is left out
//! unless the schema requires it (then its first other value is taken, or
//! `""` itself when there is none). A self-check of the scorer.
//!
//! For Java and JavaScript entries the values are written as the strings a
//! function-calling model is asked for (`"42L"`, `"new int[]{1, 2}"`,
//! `"{key: 'v'}"`), so they go through BFCL's converters like any output.

use retort_core::Call;
use serde_json::{Map, Value};

use crate::category::{Language, Scoring};
use crate::loader::Entry;
use crate::py::{Py, py_float_repr};

/// The calls the answer key describes, or `None` for `live_relevance`,
/// which has no key. Irrelevance entries give no call.
pub fn gold_calls(entry: &Entry) -> Option<Vec<Call>> {
    match entry.category.scoring() {
        Scoring::Irrelevance => return Some(Vec::new()),
        Scoring::Relevance => return None,
        _ => {}
    }
    let answer = entry.answer.as_ref()?;
    let lang = entry.category.language();
    let mut calls = Vec::with_capacity(answer.len());
    for item in answer {
        let (name, params) = item.as_object()?.iter().next()?;
        let desc = entry
            .functions
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some(name.as_str()));
        let props = desc
            .and_then(|d| d.get("parameters"))
            .and_then(|p| p.get("properties"));
        let required: Vec<&str> = desc
            .and_then(|d| d.get("parameters"))
            .and_then(|p| p.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut args = Map::new();
        for (k, vals) in params.as_object()? {
            let Some(vals) = vals.as_array() else {
                continue;
            };
            let blank = |v: &&Value| v.as_str() == Some("");
            // `""` among the acceptable values: the parameter may be left
            // out, and is, unless the schema requires it.
            if vals.iter().any(|v| blank(&v)) && !required.contains(&k.as_str()) {
                continue;
            }
            // A required parameter whose only acceptable value is `""`
            // gets `""` itself.
            let Some(first) = vals.iter().find(|v| !blank(v)).or(vals.first()) else {
                continue;
            };
            let detail = props.and_then(|p| p.get(k));
            let ty = detail
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let nested = detail
                .and_then(|d| d.get("items"))
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str);
            let v = match lang {
                Language::Python => python_value(first, ty, nested),
                Language::Java => Value::String(java_value(first, ty, nested)),
                Language::JavaScript => Value::String(js_value(first, ty, nested)),
            };
            args.insert(k.clone(), v);
        }
        calls.push(Call::new(name.clone(), args));
    }
    Some(calls)
}

/// A dict parameter's answer holds `{key: [acceptable values]}`: take the
/// first of each, dropping keys that may be left out (`""` acceptable).
/// BFCL indexes the container as a Python sequence, so where the key holds a
/// bare string instead of a list (simple_java_64) its first character is
/// what BFCL accepts, and what is taken.
fn first_of_dict(d: &Map<String, Value>) -> Map<String, Value> {
    d.iter()
        .filter_map(|(k, vals)| {
            let first = match vals {
                Value::Array(a) => {
                    if a.iter().any(|v| v.as_str() == Some("")) {
                        return None;
                    }
                    a.first()?.clone()
                }
                Value::String(s) => Value::String(s.chars().next()?.to_string()),
                other => other.clone(),
            };
            Some((k.clone(), first))
        })
        .collect()
}

fn python_value(v: &Value, ty: &str, nested: Option<&str>) -> Value {
    match (ty, v) {
        ("dict", Value::Object(d)) => Value::Object(first_of_dict(d)),
        ("array", Value::Array(items)) if nested == Some("dict") => Value::Array(
            items
                .iter()
                .map(|i| match i {
                    Value::Object(d) => Value::Object(first_of_dict(d)),
                    other => other.clone(),
                })
                .collect(),
        ),
        _ => v.clone(),
    }
}

fn py_str(v: &Value) -> String {
    Py::from_json(v).py_str()
}

fn float_of(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A Java literal that BFCL's `parse_java_value` reads back as `v`.
fn java_literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => py_float_repr(n.as_f64().unwrap_or(0.0)),
        other => py_str(other),
    }
}

fn java_value(v: &Value, ty: &str, nested: Option<&str>) -> String {
    if let Value::String(s) = v {
        return s.clone();
    }
    match ty {
        "long" if v.is_i64() || v.is_u64() => format!("{}L", py_str(v)),
        "float" => float_of(v).map_or_else(|| py_str(v), |f| format!("{}f", py_float_repr(f))),
        "double" => float_of(v).map_or_else(|| py_str(v), py_float_repr),
        "boolean" => match v {
            Value::Bool(b) => b.to_string(),
            other => py_str(other),
        },
        "Array" => match v {
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match nested {
                        Some(n) => java_value(i, n, None),
                        None => java_literal(i),
                    })
                    .collect();
                format!("new Object[]{{{}}}", parts.join(", "))
            }
            other => py_str(other),
        },
        "ArrayList" => match v {
            Value::Array(items) if items.is_empty() => "new ArrayList<>()".to_string(),
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match (nested, i) {
                        (Some("char"), _) => format!("'{}'", py_str(i)),
                        (Some("String"), _) => format!("\"{}\"", py_str(i)),
                        (Some(n), _) => java_value(i, n, None),
                        (None, _) => java_literal(i),
                    })
                    .collect();
                format!("new ArrayList<>(Arrays.asList({}))", parts.join(", "))
            }
            other => py_str(other),
        },
        "HashMap" => match v {
            Value::Object(d) => {
                let d = first_of_dict(d);
                if d.is_empty() {
                    return "new HashMap<>()".to_string();
                }
                let puts: Vec<String> = d
                    .iter()
                    .map(|(k, v)| format!("put(\"{k}\", {});", java_literal(v)))
                    .collect();
                format!("new HashMap<String, Object>() {{{{ {} }}}}", puts.join(" "))
            }
            other => py_str(other),
        },
        _ => py_str(v),
    }
}

/// A JavaScript literal that BFCL's `parse_js_value` reads back as `v`.
fn js_literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => format!("{}", n.as_f64().unwrap_or(0.0)),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(js_literal).collect();
            format!("[{}]", parts.join(", "))
        }
        other => py_str(other),
    }
}

fn js_value(v: &Value, ty: &str, nested: Option<&str>) -> String {
    match (ty, v) {
        ("String", Value::String(s)) => format!("\"{s}\""),
        (_, Value::String(s)) => s.clone(),
        ("Bigint", _) if v.is_i64() || v.is_u64() => format!("{}n", py_str(v)),
        ("float", Value::Number(n)) => format!("{}", n.as_f64().unwrap_or(0.0)),
        ("Boolean", Value::Bool(b)) => b.to_string(),
        ("dict", Value::Object(d)) => {
            let d = first_of_dict(d);
            if d.is_empty() {
                return "{}".to_string();
            }
            let pairs: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("\"{k}\": {}", js_literal(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        ("array", Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match (nested, i) {
                    (Some("String"), _) => format!("\"{}\"", py_str(i)),
                    (Some(n), _) if n != "any" => js_value(i, n, None),
                    _ => js_literal(i),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        _ => py_str(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;
    use crate::py::py_eq;
    use serde_json::json;

    fn roundtrip_java(v: Value, ty: &str, nested: Option<&str>) {
        let text = java_value(&v, ty, nested);
        let back = convert::java(&text, ty, nested).expect("supported");
        assert!(py_eq(&back, &Py::from_json(&v)), "{ty}: {text} -> {back:?}");
    }

    fn roundtrip_js(v: Value, ty: &str, nested: Option<&str>) {
        let text = js_value(&v, ty, nested);
        let back = convert::js(&text, ty, nested).expect("supported");
        assert!(py_eq(&back, &Py::from_json(&v)), "{ty}: {text} -> {back:?}");
    }

    #[test]
    fn java_rendering_converts_back() {
        roundtrip_java(json!(42), "long", None);
        roundtrip_java(json!(42), "integer", None);
        roundtrip_java(json!(1.5), "float", None);
        roundtrip_java(json!(0.5), "double", None);
        roundtrip_java(json!(true), "boolean", None);
        roundtrip_java(json!("abc"), "String", None);
        roundtrip_java(json!([1, 2]), "Array", Some("integer"));
        roundtrip_java(json!(["a", "b"]), "Array", Some("String"));
        roundtrip_java(json!([101, 202]), "ArrayList", Some("long"));
        roundtrip_java(json!(["GC pause"]), "ArrayList", Some("String"));
        roundtrip_java(json!([]), "ArrayList", Some("String"));
        let text = java_value(&json!({"limit": [50], "f": ["public"]}), "HashMap", None);
        let back = convert::java(&text, "HashMap", None).expect("supported");
        assert!(py_eq(
            &back,
            &Py::from_json(&json!({"limit": 50, "f": "public"}))
        ));
    }

    #[test]
    fn js_rendering_converts_back() {
        roundtrip_js(json!("abc"), "String", None);
        roundtrip_js(json!(3), "integer", None);
        roundtrip_js(json!(2.5), "float", None);
        roundtrip_js(json!(7), "Bigint", None);
        roundtrip_js(json!(false), "Boolean", None);
        roundtrip_js(json!(["a", "b"]), "array", Some("String"));
        roundtrip_js(json!([1.5, 2.0]), "array", Some("float"));
        let text = js_value(&json!({"method": ["GET"], "n": [3]}), "dict", None);
        let back = convert::js(&text, "dict", None).expect("supported");
        assert!(py_eq(
            &back,
            &Py::from_json(&json!({"method": "GET", "n": 3}))
        ));
    }
}
