//! Checks on a client's tool schemas beyond what `retort_core` parses:
//! every accepted schema must be satisfiable, so that a model answering it
//! can always produce a valid call, and an invalid output is always a bug of
//! the server rather than of the request.

use retort_core::{Schema, SchemaType, Tool, validate_value};

/// Largest `minLength` accepted.
pub const MAX_MIN_LENGTH: u64 = 4096;
/// Largest `minItems` accepted.
pub const MAX_MIN_ITEMS: u64 = 256;

/// Why a tool's schema was refused. `path` is a JSON path in its parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tool {tool:?}: {path}: {reason}")]
pub struct SchemaProblem {
    pub tool: String,
    pub path: String,
    pub reason: String,
}

/// Check every node of a tool's parameter schema.
pub fn check_tool(tool: &Tool) -> Result<(), SchemaProblem> {
    check_node(&tool.parameters, "$").map_err(|(path, reason)| SchemaProblem {
        tool: tool.name.clone(),
        path,
        reason,
    })
}

fn check_node(s: &Schema, path: &str) -> Result<(), (String, String)> {
    let fail = |reason: String| Err((path.to_string(), reason));
    if let (Some(lo), Some(hi)) = (s.min_length, s.max_length)
        && lo > hi
    {
        return fail(format!("minLength {lo} is greater than maxLength {hi}"));
    }
    if let (Some(lo), Some(hi)) = (s.min_items, s.max_items)
        && lo > hi
    {
        return fail(format!("minItems {lo} is greater than maxItems {hi}"));
    }
    if s.ty == SchemaType::Object {
        // retort_core checks this for typed objects; an untyped parameters
        // schema (`{"required": [..]}`) becomes an object after that check.
        if let Some(r) = s.required.iter().find(|r| !s.properties.contains_key(*r)) {
            return fail(format!(
                "required property {r:?} is not declared in properties"
            ));
        }
    }
    if s.min_length.is_some_and(|m| m > MAX_MIN_LENGTH) {
        return fail(format!("minLength is larger than {MAX_MIN_LENGTH}"));
    }
    if s.min_items.is_some_and(|m| m > MAX_MIN_ITEMS) {
        return fail(format!("minItems is larger than {MAX_MIN_ITEMS}"));
    }
    if s.ty == SchemaType::Integer {
        let lo = s.minimum.map_or(i64::MIN as f64, f64::ceil);
        let hi = s.maximum.map_or(i64::MAX as f64, f64::floor);
        // Bounds must leave room for a 64-bit integer.
        if lo > i64::MAX as f64 || hi < i64::MIN as f64 {
            return fail("integer bounds lie outside the 64-bit range".to_string());
        }
        if lo > hi {
            return fail("no integer lies between minimum and maximum".to_string());
        }
    }
    if let Some(members) = &s.enum_values {
        let mut plain = s.clone();
        plain.enum_values = None;
        for (i, m) in members.iter().enumerate() {
            if let Err(e) = validate_value(m, &plain, &format!("{path}.enum[{i}]")) {
                return Err((
                    path.to_string(),
                    format!("enum member {m} does not fit the schema ({e})"),
                ));
            }
        }
    }
    for (name, child) in &s.properties {
        check_node(child, &format!("{path}.properties.{name}"))?;
    }
    if let Some(items) = &s.items {
        check_node(items, &format!("{path}.items"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;
    use serde_json::{Value, json};

    fn tool(params: Value) -> Tool {
        Tool::parse(
            &json!({"name": "f", "parameters": params}),
            ToolFormat::Auto,
        )
        .expect("core accepts it")
    }

    #[test]
    fn accepts_ordinary_schemas() {
        let t = tool(json!({"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 80},
            "units": {"type": "string", "enum": ["c", "f"]},
            "n": {"type": "integer", "minimum": 0.5, "maximum": 3, "enum": [1, 2]},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a"]}, "minItems": 1}
        }, "required": ["city"]}));
        assert_eq!(check_tool(&t), Ok(()));
    }

    #[test]
    fn refuses_unsatisfiable_schemas() {
        let cases = [
            (
                json!({"type": "object", "properties": {"u": {"type": "string", "enum": ["a", 3]}}}),
                "tool \"f\": $.properties.u: enum member 3 does not fit the schema",
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0.2, "maximum": 0.8}}}),
                "tool \"f\": $.properties.n: no integer lies between minimum and maximum",
            ),
            (
                json!({"type": "object", "properties": {"s": {"type": "string", "minLength": 5, "maxLength": 2}}}),
                "tool \"f\": $.properties.s: minLength 5 is greater than maxLength 2",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer", "enum": [1.5]}}}}),
                "tool \"f\": $.properties.a.items: enum member 1.5",
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1e300}}}),
                "tool \"f\": $.properties.n: integer bounds lie outside the 64-bit range",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 100000}}}),
                "tool \"f\": $.properties.a: minItems is larger than 256",
            ),
        ];
        for (params, want) in cases {
            let e = check_tool(&tool(params.clone())).expect_err(&params.to_string());
            assert!(e.to_string().starts_with(want), "{e} vs {want}");
        }
        // An untyped schema whose `required` names nothing declared is
        // already refused by retort-core's parser.
        let e = Tool::parse(
            &json!({"name": "f", "parameters": {"required": ["city"]}}),
            ToolFormat::Auto,
        )
        .expect_err("core refuses it");
        assert_eq!(
            e.to_string(),
            "tool \"f\": $: required property \"city\" is not declared in properties"
        );
    }
}
