//! Validation of calls against tool schemas, with typed errors that name the
//! JSON path and the reason.

use serde_json::{Map, Value};

use crate::example::Call;
use crate::schema::{Schema, SchemaType};
use crate::tool::Tool;

/// Why a call is invalid. `path` is a JSON path such as `$.arguments.city`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    pub path: String,
    pub kind: ValidationErrorKind,
}

/// The reason of a [`ValidationError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationErrorKind {
    #[error("unknown function {0:?}")]
    UnknownFunction(String),
    #[error("missing required parameter {0:?}")]
    MissingRequired(String),
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    #[error("wrong type: expected {expected}, got {got}")]
    WrongType { expected: String, got: String },
    #[error("value {value} is not one of {allowed}")]
    NotInEnum { value: String, allowed: String },
    #[error("value {value} is out of range [{min}, {max}]")]
    OutOfRange {
        value: f64,
        min: String,
        max: String,
    },
    #[error("length {len} is out of range [{min}, {max}]")]
    BadLength { len: u64, min: String, max: String },
}

impl ValidationErrorKind {
    /// A short stable name of the reason, for counting.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationErrorKind::UnknownFunction(_) => "unknown_function",
            ValidationErrorKind::MissingRequired(_) => "missing_required",
            ValidationErrorKind::UnknownParameter(_) => "unknown_parameter",
            ValidationErrorKind::WrongType { .. } => "wrong_type",
            ValidationErrorKind::NotInEnum { .. } => "not_in_enum",
            ValidationErrorKind::OutOfRange { .. } => "out_of_range",
            ValidationErrorKind::BadLength { .. } => "bad_length",
        }
    }
}

/// Validate one call against the offered tools.
pub fn validate(call: &Call, tools: &[Tool]) -> Result<(), ValidationError> {
    let tool = tools
        .iter()
        .find(|t| t.name == call.name)
        .ok_or_else(|| ValidationError {
            path: "$.name".to_string(),
            kind: ValidationErrorKind::UnknownFunction(call.name.clone()),
        })?;
    validate_arguments(&call.arguments, &tool.parameters, "$.arguments")
}

/// Validate every call; the error's path is prefixed with the call index.
pub fn validate_all(calls: &[Call], tools: &[Tool]) -> Result<(), ValidationError> {
    for (i, c) in calls.iter().enumerate() {
        validate(c, tools).map_err(|e| ValidationError {
            path: format!("$.calls[{i}]{}", &e.path[1..]),
            kind: e.kind,
        })?;
    }
    Ok(())
}

fn validate_arguments(
    args: &Map<String, Value>,
    schema: &Schema,
    path: &str,
) -> Result<(), ValidationError> {
    for r in &schema.required {
        if !args.contains_key(r) {
            return Err(ValidationError {
                path: path.to_string(),
                kind: ValidationErrorKind::MissingRequired(r.clone()),
            });
        }
    }
    for (k, v) in args {
        let child_path = format!("{path}.{k}");
        match schema.properties.get(k) {
            Some(s) => validate_value(v, s, &child_path)?,
            None => {
                if !(schema.additional_properties && schema.properties.is_empty())
                    || path == "$.arguments"
                {
                    return Err(ValidationError {
                        path: child_path,
                        kind: ValidationErrorKind::UnknownParameter(k.clone()),
                    });
                }
            }
        }
    }
    Ok(())
}

fn got_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validate one value against a schema node.
pub fn validate_value(v: &Value, s: &Schema, path: &str) -> Result<(), ValidationError> {
    let err = |kind| ValidationError {
        path: path.to_string(),
        kind,
    };
    if v.is_null() && s.nullable {
        return Ok(());
    }
    let type_ok = match s.ty {
        SchemaType::Any => true,
        SchemaType::Object => v.is_object(),
        SchemaType::String => v.is_string(),
        SchemaType::Integer => v.is_i64() || v.is_u64(),
        SchemaType::Number => v.is_number(),
        SchemaType::Boolean => v.is_boolean(),
        SchemaType::Array => v.is_array(),
    };
    if !type_ok {
        return Err(err(ValidationErrorKind::WrongType {
            expected: s.ty.to_string(),
            got: got_type(v).to_string(),
        }));
    }
    if let Some(allowed) = &s.enum_values {
        let member = allowed.iter().any(|a| match (a, v) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            _ => a == v,
        });
        if !member {
            return Err(err(ValidationErrorKind::NotInEnum {
                value: v.to_string(),
                allowed: Value::Array(allowed.clone()).to_string(),
            }));
        }
    }
    let bound = |b: Option<f64>| b.map_or_else(|| "-".to_string(), |x| x.to_string());
    if let Some(x) = v.as_f64()
        && (s.minimum.is_some_and(|m| x < m) || s.maximum.is_some_and(|m| x > m))
    {
        return Err(err(ValidationErrorKind::OutOfRange {
            value: x,
            min: bound(s.minimum),
            max: bound(s.maximum),
        }));
    }
    let ubound = |b: Option<u64>| b.map_or_else(|| "-".to_string(), |x| x.to_string());
    let check_len = |len: u64, lo: Option<u64>, hi: Option<u64>| {
        if lo.is_some_and(|m| len < m) || hi.is_some_and(|m| len > m) {
            Err(err(ValidationErrorKind::BadLength {
                len,
                min: ubound(lo),
                max: ubound(hi),
            }))
        } else {
            Ok(())
        }
    };
    match v {
        Value::String(st) => check_len(st.chars().count() as u64, s.min_length, s.max_length)?,
        Value::Array(a) => {
            check_len(a.len() as u64, s.min_items, s.max_items)?;
            if let Some(items) = &s.items {
                for (i, x) in a.iter().enumerate() {
                    validate_value(x, items, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(o) if s.ty == SchemaType::Object => validate_object(o, s, path)?,
        _ => {}
    }
    Ok(())
}

fn validate_object(o: &Map<String, Value>, s: &Schema, path: &str) -> Result<(), ValidationError> {
    for r in &s.required {
        if !o.contains_key(r) {
            return Err(ValidationError {
                path: path.to_string(),
                kind: ValidationErrorKind::MissingRequired(r.clone()),
            });
        }
    }
    for (k, v) in o {
        let child = format!("{path}.{k}");
        match s.properties.get(k) {
            Some(ps) => validate_value(v, ps, &child)?,
            None if s.additional_properties => {}
            None => {
                return Err(ValidationError {
                    path: child,
                    kind: ValidationErrorKind::UnknownParameter(k.clone()),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::ToolFormat;
    use proptest::prelude::*;
    use serde_json::json;

    fn weather() -> Vec<Tool> {
        vec![
            Tool::parse(
                &json!({"name": "get_weather", "description": "w", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}, "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "coords": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "tags": {"type": "array", "items": {"type": "string"}}},
                "required": ["city"]}}),
                ToolFormat::Auto,
            )
            .expect("valid"),
        ]
    }

    fn call(v: Value) -> Call {
        serde_json::from_value(v).expect("call")
    }

    #[test]
    fn accepts_valid() {
        let c = call(
            json!({"name": "get_weather", "arguments": {"city": "Paris", "units": "celsius", "days": 3,
            "coords": {"lat": 48.8}, "tags": ["a"]}}),
        );
        assert_eq!(validate(&c, &weather()), Ok(()));
    }

    #[test]
    fn each_reason_with_path() {
        let t = weather();
        let cases = [
            (
                json!({"name": "nope", "arguments": {}}),
                "$.name: unknown function \"nope\"",
            ),
            (
                json!({"name": "get_weather", "arguments": {}}),
                "$.arguments: missing required parameter \"city\"",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": 3}}),
                "$.arguments.city: wrong type: expected string, got integer",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "days": 2.5}}),
                "$.arguments.days: wrong type: expected integer, got number",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "days": 99}}),
                "$.arguments.days: value 99 is out of range [1, 14]",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "units": "kelvin"}}),
                "$.arguments.units: value \"kelvin\" is not one of [\"celsius\",\"fahrenheit\"]",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "zip": "1"}}),
                "$.arguments.zip: unknown parameter \"zip\"",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "coords": {}}}),
                "$.arguments.coords: missing required parameter \"lat\"",
            ),
            (
                json!({"name": "get_weather", "arguments": {"city": "x", "tags": [1]}}),
                "$.arguments.tags[0]: wrong type: expected string, got integer",
            ),
        ];
        for (c, msg) in cases {
            let e = validate(&call(c.clone()), &t).expect_err(&c.to_string());
            assert_eq!(e.to_string(), msg);
        }
        let e = validate_all(
            &[
                call(json!({"name": "get_weather", "arguments": {"city": "x"}})),
                call(json!({"name": "get_weather", "arguments": {"city": 1}})),
            ],
            &t,
        )
        .expect_err("second is bad");
        assert_eq!(e.path, "$.calls[1].arguments.city");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-zA-Z0-9 ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // The validator never panics, and its verdict on a city string
        // depends only on types.
        #[test]
        fn never_panics(args in prop::collection::btree_map("[a-z]{1,6}", arb_json(), 0..5)) {
            let c = Call::new("get_weather", args.into_iter().collect());
            let _ = validate(&c, &weather());
        }

        #[test]
        fn string_city_always_valid(city in ".{0,30}") {
            let c = call(json!({"name": "get_weather", "arguments": {"city": city}}));
            prop_assert_eq!(validate(&c, &weather()), Ok(()));
        }

        #[test]
        fn integer_in_range_valid(d in 1i64..=14, bad in 15i64..10_000) {
            let ok = call(json!({"name": "get_weather", "arguments": {"city": "x", "days": d}}));
            prop_assert!(validate(&ok, &weather()).is_ok());
            let no = call(json!({"name": "get_weather", "arguments": {"city": "x", "days": bad}}));
            prop_assert!(validate(&no, &weather()).is_err());
        }
    }
}
