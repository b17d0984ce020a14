//! Turn the loose, Python-flavoured parameter descriptions of the teacher
//! corpora (`"str"`, `"int, optional"`, `"List[str]"`, `"date"`, property-level
//! `required: true`, `example` annotations) into standard JSON schema before
//! the strict parser of `retort-core` sees them.
//!
//! Only the spellings listed here are rewritten; anything else is passed on
//! unchanged, so a genuinely unsupported feature (`$ref`, `oneOf`, an unknown
//! type) still fails in `retort_core::Schema::parse` and is counted as a drop.

use serde_json::{Map, Value, json};

/// Annotation keys some corpora put on parameters, with no constraint meaning.
const DROP_KEYS: &[&str] = &[
    "example",
    "example_values",
    "unit",
    "optional",
    "possible_values",
    "in",
    "style",
    "explode",
];

/// Map a loose type name to a JSON-schema fragment (`type` and maybe `items`).
/// Returns `None` for a name it does not know; the caller keeps it as written.
pub fn loose_type(name: &str) -> Option<Value> {
    let t = name.trim();
    let t = t
        .strip_suffix(", optional")
        .or_else(|| t.strip_suffix(",optional"))
        .unwrap_or(t)
        .trim();
    let lower = t.to_ascii_lowercase();
    let simple = match lower.as_str() {
        "str" | "string" | "text" | "date" | "datetime" | "time" | "email" | "url" | "uri"
        | "char" => Some("string"),
        "int" | "integer" | "long" => Some("integer"),
        "float" | "number" | "double" | "decimal" => Some("number"),
        "bool" | "boolean" => Some("boolean"),
        "list" | "array" | "tuple" | "set" => Some("array"),
        "dict" | "object" | "map" | "json" => Some("object"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(json!({"type": s}));
    }
    // "Date (yyyy-mm-dd)", "Enum" (values given separately).
    if lower.starts_with("date") || lower == "enum" {
        return Some(json!({"type": "string"}));
    }
    if lower == "any" {
        return Some(json!({}));
    }
    // List[str], list[int], Tuple[float, float], List[List[int]], array[string]
    // list(str): API-Bank's spelling of List[str].
    if let Some(inner) = lower
        .strip_prefix("list(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let item = loose_type(inner).unwrap_or_else(|| json!({}));
        return Some(json!({"type": "array", "items": item}));
    }
    for prefix in ["list[", "array[", "set[", "tuple["] {
        if lower.starts_with(prefix) && lower.ends_with(']') {
            let inner_orig = &t[prefix.len()..t.len() - 1];
            let parts = split_top_level(inner_orig);
            let item = if parts.len() == 1 {
                loose_type(parts[0]).unwrap_or_else(|| json!({}))
            } else {
                // Tuple of mixed types: items are only typed when all agree.
                let types: Vec<Option<Value>> = parts.iter().map(|p| loose_type(p)).collect();
                match types.first() {
                    Some(Some(f)) if types.iter().all(|x| x.as_ref() == Some(f)) => f.clone(),
                    _ => json!({}),
                }
            };
            return Some(json!({"type": "array", "items": item}));
        }
    }
    for prefix in ["dict[", "map["] {
        if lower.starts_with(prefix) && lower.ends_with(']') {
            return Some(json!({"type": "object"}));
        }
    }
    None
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// Normalise one parameter schema (recursively). `required: true|false` on the
/// property itself is removed and reported through the returned flag.
pub fn fix_param(v: &Value) -> (Value, Option<bool>) {
    let Some(obj) = v.as_object() else {
        // `{"city": "string"}` style: the value is just the type name.
        if let Some(t) = v.as_str() {
            return (loose_type(t).unwrap_or_else(|| json!({"type": t})), None);
        }
        return (v.clone(), None);
    };
    let mut out = Map::new();
    let mut required = None;
    if let Some(Value::String(t)) = obj.get("type")
        && t.contains("optional")
    {
        required = Some(false);
    }
    for (k, val) in obj {
        match k.as_str() {
            "type" => match val {
                Value::String(t) => match loose_type(t) {
                    Some(Value::Object(m)) => {
                        for (mk, mv) in m {
                            // An explicit `items` written by the corpus wins.
                            if mk == "items" && obj.contains_key("items") {
                                continue;
                            }
                            out.insert(mk, mv);
                        }
                    }
                    _ => {
                        out.insert(k.clone(), val.clone());
                    }
                },
                other => {
                    out.insert(k.clone(), other.clone());
                }
            },
            "required" => match val {
                Value::Bool(b) => required = Some(*b),
                other => {
                    out.insert(k.clone(), other.clone());
                }
            },
            "properties" => {
                if let Value::Object(props) = val {
                    let (p, req) = fix_properties(props);
                    out.insert("properties".into(), p);
                    if !req.is_empty() && !obj.contains_key("required") {
                        out.insert("required".into(), json!(req));
                    }
                } else {
                    out.insert(k.clone(), val.clone());
                }
            }
            "items" => {
                out.insert(k.clone(), fix_param(val).0);
            }
            "choices" | "allowed_values" => {
                if let Value::Array(a) = val
                    && !a.is_empty()
                {
                    out.insert("enum".into(), val.clone());
                }
            }
            "default_value" => {
                out.insert("default".into(), val.clone());
            }
            "desc" => {
                out.insert("description".into(), val.clone());
            }
            key if DROP_KEYS.contains(&key) => {}
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    // An empty-string default on a typed, non-string parameter is a corpus
    // artefact ("default": ""), not a real default.
    if out.get("default") == Some(&Value::String(String::new()))
        && out.get("type").and_then(Value::as_str) != Some("string")
    {
        out.remove("default");
    }
    (Value::Object(out), required)
}

/// Normalise a `properties` map, returning it and the names that declared
/// themselves required with a property-level `required: true`.
pub fn fix_properties(props: &Map<String, Value>) -> (Value, Vec<String>) {
    let mut out = Map::new();
    let mut req = Vec::new();
    for (k, v) in props {
        let (p, r) = fix_param(v);
        if r == Some(true) {
            req.push(k.clone());
        }
        out.insert(k.clone(), p);
    }
    (Value::Object(out), req)
}

/// Build an object schema from a loose `properties` map and an optional
/// `required` list. Enum values of a typed parameter are kept as written.
pub fn object_schema(props: &Map<String, Value>, required: Option<&Value>) -> Value {
    let (p, req) = fix_properties(props);
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("properties".into(), p);
    match required {
        Some(Value::Array(r)) if !r.is_empty() => {
            m.insert("required".into(), Value::Array(r.clone()));
        }
        _ if !req.is_empty() => {
            m.insert("required".into(), json!(req));
        }
        _ => {}
    }
    Value::Object(m)
}

/// Normalise a whole `parameters` object that is already shaped like a JSON
/// schema (`{"type": "dict", "properties": .., "required": ..}`).
pub fn fix_parameters(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("properties") || o.contains_key("type") => {
            let (mut fixed, _) = fix_param(v);
            if let Some(m) = fixed.as_object_mut()
                && !m.contains_key("type")
            {
                m.insert("type".into(), json!("object"));
            }
            fixed
        }
        // A bare `{name: {type, description}}` map.
        Value::Object(o) => object_schema(o, None),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Dialect, Schema, SchemaType};

    #[test]
    fn loose_types() {
        assert_eq!(loose_type("str"), Some(json!({"type": "string"})));
        assert_eq!(
            loose_type("int, optional"),
            Some(json!({"type": "integer"}))
        );
        assert_eq!(
            loose_type("List[int]"),
            Some(json!({"type": "array", "items": {"type": "integer"}}))
        );
        assert_eq!(
            loose_type("List[List[float]]"),
            Some(json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}}))
        );
        assert_eq!(
            loose_type("Tuple[float, float]"),
            Some(json!({"type": "array", "items": {"type": "number"}}))
        );
        assert_eq!(
            loose_type("list(str)"),
            Some(json!({"type": "array", "items": {"type": "string"}}))
        );
        assert_eq!(loose_type("Callable[[float], float]"), None);
    }

    #[test]
    fn fixes_then_parses() {
        let v = json!({"type": "dict", "properties": {
            "a": {"type": "str", "description": "x", "example": "y"},
            "b": {"type": "int, optional", "default": ""},
            "c": {"description": "c", "required": true, "allowed_values": ["1", "2"]},
        }});
        let fixed = fix_parameters(&v);
        let s = Schema::parse(&fixed, Dialect::JsonSchema).expect("parses");
        assert_eq!(s.properties["a"].ty, SchemaType::String);
        assert_eq!(s.properties["b"].ty, SchemaType::Integer);
        assert_eq!(s.properties["b"].default, None);
        assert!(s.is_required("c"));
        assert_eq!(
            s.properties["c"].enum_values,
            Some(vec![json!("1"), json!("2")])
        );
    }

    proptest::proptest! {
        // Whatever the type spelling, normalising never panics and the
        // result is either accepted by the strict parser or a typed error.
        #[test]
        fn never_panics(ty in ".{0,24}", inner in "[a-zA-Z\\[\\], ]{0,20}") {
            let _ = loose_type(&ty);
            let _ = loose_type(&format!("List[{inner}]"));
            let v = json!({"a": {"type": ty, "description": inner}});
            let _ = Schema::parse(&fix_parameters(&v), Dialect::JsonSchema);
        }

        #[test]
        fn python_scalars_map_to_json_types(
            ty in proptest::sample::select(vec!["str", "int", "float", "bool", "list", "dict"]),
            optional in proptest::bool::ANY,
        ) {
            let name = if optional { format!("{ty}, optional") } else { ty.to_string() };
            let fixed = fix_parameters(&json!({"x": {"type": name}}));
            let s = Schema::parse(&fixed, Dialect::JsonSchema).expect("standard schema");
            let want = match ty {
                "str" => SchemaType::String,
                "int" => SchemaType::Integer,
                "float" => SchemaType::Number,
                "bool" => SchemaType::Boolean,
                "list" => SchemaType::Array,
                _ => SchemaType::Object,
            };
            proptest::prop_assert_eq!(s.properties["x"].ty, want);
        }
    }

    #[test]
    fn unknown_stays_unknown() {
        let fixed = fix_parameters(&json!({"x": {"type": "Callable"}}));
        assert!(Schema::parse(&fixed, Dialect::JsonSchema).is_err());
    }
}
