//! Re-validation of every answer (the model's or the fallback teacher's)
//! before it leaves the server: against `retort_core::validate`, against the
//! tool's JSON schema with the `jsonschema` crate, and against the request's
//! options (`tool_choice`, `parallel_tool_calls`).

use retort_core::{Call, CallOptions, Tool, validate_all};
use serde_json::Value;

/// Why an answer is not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutputError {
    #[error("confidence {0} is not a number in [0, 1]")]
    BadConfidence(f64),
    #[error("{0}")]
    Invalid(#[from] retort_core::ValidationError),
    #[error("$.calls[{index}].arguments{path}: {message} (JSON-schema check of {tool:?})")]
    Schema {
        index: usize,
        tool: String,
        path: String,
        message: String,
    },
    #[error("tool_choice requires a call, but none was made")]
    MissingCall,
    #[error("tool_choice forces {forced:?}, but {got:?} was called")]
    WrongFunction { forced: String, got: String },
    #[error("parallel_tool_calls is false, but {0} calls were made")]
    TooManyCalls(usize),
    /// The request's schema itself was refused by the JSON-schema validator:
    /// a problem of the request, not of the answer.
    #[error(
        "tool {tool:?}: the parameters schema is not accepted by the JSON-schema validator: {message}"
    )]
    SchemaCompile { tool: String, message: String },
}

/// Check calls against the offered tools and the request's options.
pub fn check_calls(calls: &[Call], tools: &[Tool], opts: &CallOptions) -> Result<(), OutputError> {
    if opts.require_call && calls.is_empty() {
        return Err(OutputError::MissingCall);
    }
    if opts.single_call_only && calls.len() > 1 {
        return Err(OutputError::TooManyCalls(calls.len()));
    }
    if let Some(forced) = &opts.force_function
        && let Some(c) = calls.iter().find(|c| &c.name != forced)
    {
        return Err(OutputError::WrongFunction {
            forced: forced.clone(),
            got: c.name.clone(),
        });
    }
    validate_all(calls, tools)?;
    for (index, call) in calls.iter().enumerate() {
        // validate_all found the tool already.
        let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
            continue;
        };
        let schema = tool.to_json()["parameters"].clone();
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| OutputError::SchemaCompile {
                tool: tool.name.clone(),
                message: e.to_string(),
            })?;
        let instance = Value::Object(call.arguments.clone());
        if let Some(e) = validator.iter_errors(&instance).next() {
            return Err(OutputError::Schema {
                index,
                tool: tool.name.clone(),
                path: e.instance_path.to_string(),
                message: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Check a confidence value.
pub fn check_confidence(c: f64) -> Result<(), OutputError> {
    if c.is_finite() && (0.0..=1.0).contains(&c) {
        Ok(())
    } else {
        Err(OutputError::BadConfidence(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::ToolFormat;
    use serde_json::json;

    fn tools() -> Vec<Tool> {
        Tool::parse_many(
            &json!([{"name": "get_weather", "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "minLength": 2},
                "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}},
                {"name": "ping"}]),
            ToolFormat::Auto,
        )
        .expect("valid")
    }

    fn call(v: Value) -> Call {
        serde_json::from_value(v).expect("call")
    }

    #[test]
    fn accepts_valid_and_refuses_invalid() {
        let t = tools();
        let ok = call(json!({"name": "get_weather", "arguments": {"city": "Paris"}}));
        assert_eq!(
            check_calls(std::slice::from_ref(&ok), &t, &CallOptions::default()),
            Ok(())
        );
        let bad = call(json!({"name": "get_weather", "arguments": {"city": 3}}));
        assert!(matches!(
            check_calls(&[bad], &t, &CallOptions::default()),
            Err(OutputError::Invalid(_))
        ));
        let unknown = call(json!({"name": "nope", "arguments": {}}));
        assert!(check_calls(&[unknown], &t, &CallOptions::default()).is_err());
        let too_short = call(json!({"name": "get_weather", "arguments": {"city": "P"}}));
        assert!(check_calls(&[too_short], &t, &CallOptions::default()).is_err());
        let ping = call(json!({"name": "ping", "arguments": {}}));
        let opts = CallOptions {
            force_function: Some("get_weather".into()),
            require_call: true,
            ..CallOptions::default()
        };
        assert!(matches!(
            check_calls(std::slice::from_ref(&ping), &t, &opts),
            Err(OutputError::WrongFunction { .. })
        ));
        assert_eq!(check_calls(&[], &t, &opts), Err(OutputError::MissingCall));
        let single = CallOptions {
            single_call_only: true,
            ..CallOptions::default()
        };
        assert_eq!(
            check_calls(&[ok, ping], &t, &single),
            Err(OutputError::TooManyCalls(2))
        );
    }

    #[test]
    fn confidence_range() {
        assert!(check_confidence(0.5).is_ok());
        assert!(check_confidence(1.0).is_ok());
        assert!(check_confidence(f64::NAN).is_err());
        assert!(check_confidence(1.5).is_err());
        assert!(check_confidence(-0.1).is_err());
    }
}
