//! The JSON-schema subset that retort understands, and its parsers.
//!
//! Supported keywords: `type` (object, string, integer, number, boolean,
//! array, null-free), `properties`, `required`, `items`, `enum`, `default`,
//! `minimum`, `maximum`, `minItems`, `maxItems`, `minLength`, `maxLength`,
//! `description`. Annotation-only keywords (`title`, `examples`, `format`,
//! `$schema`, `additionalProperties`, `nullable`, `optional`) are accepted and
//! kept where they matter. Every other keyword (`$ref`, `oneOf`, `anyOf`,
//! `allOf`, `pattern`, ...) is an [`SchemaError::Unsupported`] error: retort
//! never silently ignores a constraint it cannot enforce.

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Which dialect a schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Standard JSON schema as used by OpenAI tools and MCP `inputSchema`.
    JsonSchema,
    /// Gemini / OpenAPI 3 subset: upper-case type names, `nullable`.
    Gemini,
    /// BFCL's dialect: `dict`, `float`, `tuple`, `any`, plus Java/JavaScript
    /// type names (`String`, `HashMap`, `long`, ...).
    Bfcl,
}

/// The type of a schema node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Object,
    String,
    Integer,
    Number,
    Boolean,
    Array,
    /// Anything at all (BFCL `any`, or a schema with no `type`).
    Any,
}

impl SchemaType {
    /// The JSON-schema name of the type (`any` has none; we use "any").
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Object => "object",
            SchemaType::String => "string",
            SchemaType::Integer => "integer",
            SchemaType::Number => "number",
            SchemaType::Boolean => "boolean",
            SchemaType::Array => "array",
            SchemaType::Any => "any",
        }
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a parsed schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub ty: SchemaType,
    pub description: Option<String>,
    /// Allowed values (`enum`).
    pub enum_values: Option<Vec<Value>>,
    pub default: Option<Value>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// Element schema of an array. `None` means any element.
    pub items: Option<Box<Schema>>,
    /// Properties of an object, in declaration order.
    pub properties: IndexMap<String, Schema>,
    /// Required property names of an object.
    pub required: Vec<String>,
    /// Whether properties not listed are allowed (objects only).
    pub additional_properties: bool,
    /// `null` is accepted as well (Gemini `nullable`, `type: [.., "null"]`).
    pub nullable: bool,
    /// The type name as written in the source dialect when it differs from
    /// the JSON-schema name (e.g. BFCL `float`, `tuple`, Java `HashMap`).
    pub source_type: Option<String>,
}

impl Schema {
    /// A bare node of the given type.
    pub fn of(ty: SchemaType) -> Self {
        Schema {
            ty,
            description: None,
            enum_values: None,
            default: None,
            minimum: None,
            maximum: None,
            min_items: None,
            max_items: None,
            min_length: None,
            max_length: None,
            items: None,
            properties: IndexMap::new(),
            required: Vec::new(),
            additional_properties: true,
            nullable: false,
            source_type: None,
        }
    }

    /// An empty object schema (a function without parameters).
    pub fn empty_object() -> Self {
        Schema::of(SchemaType::Object)
    }

    /// Parse a schema written in `dialect`.
    pub fn parse(value: &Value, dialect: Dialect) -> Result<Self, SchemaError> {
        parse_node(value, dialect, "$", 0)
    }

    /// Render this node as standard JSON schema (the canonical form retort
    /// stores and serves). Parsing the result with [`Dialect::JsonSchema`]
    /// gives back an equal schema, except for `source_type`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.ty != SchemaType::Any {
            if self.nullable {
                m.insert(
                    "type".into(),
                    Value::Array(vec![Value::from(self.ty.as_str()), Value::from("null")]),
                );
            } else {
                m.insert("type".into(), Value::from(self.ty.as_str()));
            }
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::from(d.clone()));
        }
        if self.ty == SchemaType::Object {
            let props: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            m.insert("properties".into(), Value::Object(props));
            if !self.required.is_empty() {
                m.insert(
                    "required".into(),
                    Value::Array(self.required.iter().cloned().map(Value::from).collect()),
                );
            }
            if !self.additional_properties {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
        }
        if let Some(items) = &self.items {
            m.insert("items".into(), items.to_json());
        }
        if let Some(e) = &self.enum_values {
            m.insert("enum".into(), Value::Array(e.clone()));
        }
        if let Some(d) = &self.default {
            m.insert("default".into(), d.clone());
        }
        let num = |x: f64| -> Value {
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                Value::from(x as i64)
            } else {
                serde_json::Number::from_f64(x)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        };
        if let Some(x) = self.minimum {
            m.insert("minimum".into(), num(x));
        }
        if let Some(x) = self.maximum {
            m.insert("maximum".into(), num(x));
        }
        if let Some(x) = self.min_items {
            m.insert("minItems".into(), Value::from(x));
        }
        if let Some(x) = self.max_items {
            m.insert("maxItems".into(), Value::from(x));
        }
        if let Some(x) = self.min_length {
            m.insert("minLength".into(), Value::from(x));
        }
        if let Some(x) = self.max_length {
            m.insert("maxLength".into(), Value::from(x));
        }
        Value::Object(m)
    }

    /// Is `name` a required property of this object?
    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|r| r == name)
    }
}

/// Why a schema could not be parsed. `path` is a JSON path inside the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: schema must be a JSON object, got {got}")]
    NotAnObject { path: String, got: String },
    #[error("{path}: unknown type {ty:?}")]
    UnknownType { path: String, ty: String },
    #[error("{path}: unsupported schema keyword {keyword:?}")]
    Unsupported { path: String, keyword: String },
    #[error("{path}: invalid value for {keyword:?}: {reason}")]
    InvalidKeyword {
        path: String,
        keyword: String,
        reason: String,
    },
    #[error("{path}: required property {name:?} is not declared in properties")]
    UndeclaredRequired { path: String, name: String },
    #[error("{path}: schema nested deeper than {max} levels")]
    TooDeep { path: String, max: usize },
}

/// Deepest nesting accepted; guards the recursion against hostile input.
pub const MAX_DEPTH: usize = 32;

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Map a type name of the given dialect to a schema type. Returns the type and
/// whether the name differs from the JSON-schema spelling.
fn map_type(name: &str, dialect: Dialect) -> Option<SchemaType> {
    let std = match name {
        "object" => Some(SchemaType::Object),
        "string" => Some(SchemaType::String),
        "integer" => Some(SchemaType::Integer),
        "number" => Some(SchemaType::Number),
        "boolean" => Some(SchemaType::Boolean),
        "array" => Some(SchemaType::Array),
        _ => None,
    };
    if std.is_some() {
        return std;
    }
    match dialect {
        Dialect::JsonSchema => None,
        Dialect::Gemini => match name {
            "OBJECT" => Some(SchemaType::Object),
            "STRING" => Some(SchemaType::String),
            "INTEGER" => Some(SchemaType::Integer),
            "NUMBER" => Some(SchemaType::Number),
            "BOOLEAN" => Some(SchemaType::Boolean),
            "ARRAY" => Some(SchemaType::Array),
            _ => None,
        },
        Dialect::Bfcl => match name {
            "dict" | "HashMap" | "Map" => Some(SchemaType::Object),
            "float" | "double" | "Double" | "Float" => Some(SchemaType::Number),
            "tuple" | "Array" | "ArrayList" | "List" | "list" => Some(SchemaType::Array),
            "any" | "" | "Any" => Some(SchemaType::Any),
            "String" | "char" | "str" => Some(SchemaType::String),
            "long" | "int" | "Integer" | "Long" | "short" | "byte" => Some(SchemaType::Integer),
            "Boolean" | "bool" => Some(SchemaType::Boolean),
            _ => None,
        },
    }
}

const ANNOTATIONS: &[&str] = &["title", "examples", "format", "$schema", "$id", "$comment"];

fn parse_node(
    value: &Value,
    dialect: Dialect,
    path: &str,
    depth: usize,
) -> Result<Schema, SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::TooDeep {
            path: path.to_string(),
            max: MAX_DEPTH,
        });
    }
    let obj = value.as_object().ok_or_else(|| SchemaError::NotAnObject {
        path: path.to_string(),
        got: kind_name(value).to_string(),
    })?;
    let invalid = |keyword: &str, reason: &str| SchemaError::InvalidKeyword {
        path: path.to_string(),
        keyword: keyword.to_string(),
        reason: reason.to_string(),
    };

    // type
    let mut nullable = false;
    let mut source_type = None;
    let ty = match obj.get("type") {
        None => {
            if obj.contains_key("properties") {
                SchemaType::Object
            } else if obj.contains_key("items") {
                SchemaType::Array
            } else if let Some(Value::Array(e)) = obj.get("enum") {
                infer_enum_type(e)
            } else {
                SchemaType::Any
            }
        }
        Some(Value::String(t)) => {
            let ty = map_type(t, dialect).ok_or_else(|| SchemaError::UnknownType {
                path: path.to_string(),
                ty: t.clone(),
            })?;
            if ty.as_str() != t && !(dialect == Dialect::Gemini && t.to_lowercase() == ty.as_str())
            {
                source_type = Some(t.clone());
            }
            ty
        }
        Some(Value::Array(ts)) => {
            // ["string", "null"] style unions: one real type plus null.
            let mut real = Vec::new();
            for t in ts {
                match t.as_str() {
                    Some("null") | Some("NULL") => nullable = true,
                    Some(s) => {
                        real.push(
                            map_type(s, dialect).ok_or_else(|| SchemaError::UnknownType {
                                path: path.to_string(),
                                ty: s.to_string(),
                            })?,
                        )
                    }
                    None => return Err(invalid("type", "type list entries must be strings")),
                }
            }
            match real.as_slice() {
                [one] => *one,
                [] => return Err(invalid("type", "a type list needs a non-null type")),
                _ => {
                    return Err(SchemaError::Unsupported {
                        path: path.to_string(),
                        keyword: "type (union of several types)".to_string(),
                    });
                }
            }
        }
        Some(other) => {
            return Err(invalid(
                "type",
                &format!("expected a string, got {}", kind_name(other)),
            ));
        }
    };
    let mut s = Schema::of(ty);
    s.source_type = source_type;
    s.nullable = nullable;

    for (k, v) in obj {
        match k.as_str() {
            "type" => {}
            "description" => match v {
                Value::String(d) => s.description = Some(d.clone()),
                Value::Null => {}
                _ => return Err(invalid("description", "must be a string")),
            },
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| invalid("properties", "must be an object"))?;
                if !matches!(s.ty, SchemaType::Object | SchemaType::Any) {
                    return Err(invalid("properties", "only objects have properties"));
                }
                s.ty = SchemaType::Object;
                for (pk, pv) in props {
                    let child =
                        parse_node(pv, dialect, &format!("{path}.properties.{pk}"), depth + 1)?;
                    s.properties.insert(pk.clone(), child);
                }
            }
            "required" => match v {
                Value::Array(r) => {
                    for item in r {
                        let name = item
                            .as_str()
                            .ok_or_else(|| invalid("required", "entries must be strings"))?;
                        if !s.required.iter().any(|x| x == name) {
                            s.required.push(name.to_string());
                        }
                    }
                }
                // Some corpora write `required: true` on a property; the
                // parent handles that through `optional`/`required` below.
                Value::Bool(_) => {}
                _ => return Err(invalid("required", "must be an array of names")),
            },
            "items" => {
                if !matches!(s.ty, SchemaType::Array | SchemaType::Any) {
                    return Err(invalid("items", "only arrays have items"));
                }
                s.ty = SchemaType::Array;
                match v {
                    Value::Object(_) => {
                        s.items = Some(Box::new(parse_node(
                            v,
                            dialect,
                            &format!("{path}.items"),
                            depth + 1,
                        )?));
                    }
                    // tuple-style `items: [..]`
                    _ => {
                        return Err(SchemaError::Unsupported {
                            path: path.to_string(),
                            keyword: "items (tuple form)".to_string(),
                        });
                    }
                }
            }
            "enum" => {
                let e = v
                    .as_array()
                    .ok_or_else(|| invalid("enum", "must be an array"))?;
                if e.is_empty() {
                    return Err(invalid("enum", "must not be empty"));
                }
                s.enum_values = Some(e.clone());
            }
            "default" => s.default = Some(v.clone()),
            "minimum" => s.minimum = Some(num(v).ok_or_else(|| invalid(k, "must be a number"))?),
            "maximum" => s.maximum = Some(num(v).ok_or_else(|| invalid(k, "must be a number"))?),
            "minItems" => s.min_items = Some(uint(v).ok_or_else(|| invalid(k, "must be >= 0"))?),
            "maxItems" => s.max_items = Some(uint(v).ok_or_else(|| invalid(k, "must be >= 0"))?),
            "minLength" => s.min_length = Some(uint(v).ok_or_else(|| invalid(k, "must be >= 0"))?),
            "maxLength" => s.max_length = Some(uint(v).ok_or_else(|| invalid(k, "must be >= 0"))?),
            "additionalProperties" => match v {
                Value::Bool(b) => s.additional_properties = *b,
                // A schema for extra properties: we accept extra properties
                // but cannot check them against it.
                Value::Object(o) if o.is_empty() => s.additional_properties = true,
                _ => {
                    return Err(SchemaError::Unsupported {
                        path: path.to_string(),
                        keyword: "additionalProperties (schema form)".to_string(),
                    });
                }
            },
            "nullable" => match v {
                Value::Bool(b) => s.nullable = s.nullable || *b,
                _ => return Err(invalid("nullable", "must be a boolean")),
            },
            // BFCL marks some properties `optional: true`; the parent's
            // `required` list is authoritative, so this is an annotation.
            "optional" if dialect != Dialect::JsonSchema => {}
            a if ANNOTATIONS.contains(&a) => {}
            other => {
                return Err(SchemaError::Unsupported {
                    path: path.to_string(),
                    keyword: other.to_string(),
                });
            }
        }
    }
    if s.ty == SchemaType::Any && !s.required.is_empty() {
        // `required` only makes sense on an object.
        s.ty = SchemaType::Object;
    }
    for r in &s.required {
        if s.ty == SchemaType::Object && !s.properties.contains_key(r) {
            return Err(SchemaError::UndeclaredRequired {
                path: path.to_string(),
                name: r.clone(),
            });
        }
    }
    if let (Some(lo), Some(hi)) = (s.minimum, s.maximum)
        && lo > hi
    {
        return Err(invalid("minimum", "minimum is greater than maximum"));
    }
    Ok(s)
}

fn infer_enum_type(e: &[Value]) -> SchemaType {
    if e.iter().all(Value::is_string) {
        SchemaType::String
    } else if e.iter().all(|v| v.is_i64() || v.is_u64()) {
        SchemaType::Integer
    } else if e.iter().all(Value::is_number) {
        SchemaType::Number
    } else if e.iter().all(Value::is_boolean) {
        SchemaType::Boolean
    } else {
        SchemaType::Any
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn uint(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|x| *x >= 0.0 && x.fract() == 0.0)
            .map(|x| x as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_standard_schema() {
        let s = Schema::parse(
            &json!({"type": "object", "properties": {
                "city": {"type": "string", "description": "City"},
                "units": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 10},
                "tags": {"type": "array", "items": {"type": "string"}}
            }, "required": ["city"]}),
            Dialect::JsonSchema,
        )
        .expect("valid");
        assert_eq!(s.ty, SchemaType::Object);
        assert_eq!(s.properties.len(), 4);
        assert_eq!(s.properties["days"].maximum, Some(10.0));
        assert_eq!(
            s.properties["tags"].items.as_ref().map(|i| i.ty),
            Some(SchemaType::String)
        );
        assert!(s.is_required("city"));
    }

    #[test]
    fn bfcl_dialect_maps_types() {
        let s = Schema::parse(
            &json!({"type": "dict", "properties": {
                "x": {"type": "float"}, "t": {"type": "tuple", "items": {"type": "integer"}},
                "a": {"type": "any"}, "m": {"type": "HashMap"}, "s": {"type": "String"}
            }, "required": ["x"]}),
            Dialect::Bfcl,
        )
        .expect("valid");
        assert_eq!(s.source_type.as_deref(), Some("dict"));
        assert_eq!(s.properties["x"].ty, SchemaType::Number);
        assert_eq!(s.properties["t"].ty, SchemaType::Array);
        assert_eq!(s.properties["a"].ty, SchemaType::Any);
        assert_eq!(s.properties["m"].ty, SchemaType::Object);
        assert_eq!(s.properties["s"].ty, SchemaType::String);
        // The standard dialect refuses BFCL's names.
        let err = Schema::parse(&json!({"type": "dict"}), Dialect::JsonSchema).unwrap_err();
        assert!(matches!(err, SchemaError::UnknownType { .. }));
    }

    #[test]
    fn gemini_dialect() {
        let s = Schema::parse(
            &json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "nullable": true}}}),
            Dialect::Gemini,
        )
        .expect("valid");
        assert_eq!(s.properties["n"].ty, SchemaType::Integer);
        assert!(s.properties["n"].nullable);
        assert_eq!(s.source_type, None);
    }

    #[test]
    fn unsupported_features_are_errors_with_paths() {
        let err = Schema::parse(
            &json!({"type": "object", "properties": {"a": {"$ref": "#/defs/x"}}}),
            Dialect::JsonSchema,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.properties.a: unsupported schema keyword \"$ref\""
        );
        let err = Schema::parse(
            &json!({"type": "object", "properties": {"a": {"type": "strnig"}}}),
            Dialect::JsonSchema,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "$.properties.a: unknown type \"strnig\"");
        let err =
            Schema::parse(&json!({"type": "string", "enum": []}), Dialect::JsonSchema).unwrap_err();
        assert!(matches!(err, SchemaError::InvalidKeyword { .. }));
        let err = Schema::parse(
            &json!({"type": "object", "properties": {}, "required": ["x"]}),
            Dialect::JsonSchema,
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::UndeclaredRequired { .. }));
        // Without a type, `required` still implies an object.
        let err = Schema::parse(&json!({"required": ["x"]}), Dialect::JsonSchema).unwrap_err();
        assert!(matches!(err, SchemaError::UndeclaredRequired { .. }));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!({"type": "string"});
        for _ in 0..100 {
            v = json!({"type": "array", "items": v});
        }
        assert!(matches!(
            Schema::parse(&v, Dialect::JsonSchema),
            Err(SchemaError::TooDeep { .. })
        ));
    }

    #[test]
    fn to_json_roundtrips() {
        let src = json!({"type": "object", "properties": {
            "a": {"type": ["integer", "null"], "minimum": 0, "maximum": 5, "default": 1},
            "b": {"type": "array", "items": {"type": "number"}, "minItems": 1},
            "c": {"type": "string", "enum": ["x", "y"], "description": "c"}
        }, "required": ["a"]});
        let s = Schema::parse(&src, Dialect::JsonSchema).expect("valid");
        let back = Schema::parse(&s.to_json(), Dialect::JsonSchema).expect("valid");
        assert_eq!(s, back);
    }
}
