//! Tools (function definitions) and the parsers for each tool format.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::schema::{Dialect, Schema, SchemaError, SchemaType};

/// A function the model may call: OpenAI-style, with a JSON-schema
/// `parameters` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// Always an object schema.
    pub parameters: Schema,
}

/// Which format a tool definition is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `{"type": "function", "function": {...}}` or a bare `{name, description, parameters}`.
    OpenAi,
    /// Gemini `functionDeclarations` entry (upper-case types allowed).
    Gemini,
    /// MCP tool: `{name, description, inputSchema}`.
    Mcp,
    /// BFCL function entry (`dict`, `float`, `tuple`, `any`, dotted names).
    Bfcl,
    /// Guess from the keys present.
    Auto,
}

/// Why a tool definition could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("tool definition must be a JSON object, got {0}")]
    NotAnObject(String),
    #[error("tool definition has no \"name\"")]
    MissingName,
    #[error("tool name {0:?} is invalid: {1}")]
    InvalidName(String, &'static str),
    #[error("tool {tool:?}: {source}")]
    Schema {
        tool: String,
        #[source]
        source: SchemaError,
    },
    #[error("tool {0:?}: parameters must be an object schema")]
    ParametersNotObject(String),
    #[error("duplicate tool name {0:?}")]
    Duplicate(String),
}

impl Tool {
    /// Build a tool from parts.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Schema,
    ) -> Self {
        Tool {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }

    /// Parse one tool definition in the given format.
    pub fn parse(value: &Value, format: ToolFormat) -> Result<Tool, ToolError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ToolError::NotAnObject(crate::json_kind(value).to_string()))?;
        let format = match format {
            ToolFormat::Auto => detect_format(obj),
            f => f,
        };
        // Unwrap OpenAI's `{"type": "function", "function": {...}}`.
        let inner = match obj.get("function") {
            Some(Value::Object(f)) if format == ToolFormat::OpenAi || obj.get("type").is_some() => {
                f
            }
            _ => obj,
        };
        let name = inner
            .get("name")
            .and_then(Value::as_str)
            .ok_or(ToolError::MissingName)?
            .to_string();
        check_name(&name)?;
        let description = inner
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (schema_value, dialect) = match format {
            ToolFormat::Mcp => (inner.get("inputSchema"), Dialect::JsonSchema),
            ToolFormat::Gemini => (
                inner
                    .get("parameters")
                    .or_else(|| inner.get("parametersJsonSchema")),
                Dialect::Gemini,
            ),
            ToolFormat::Bfcl => (inner.get("parameters"), Dialect::Bfcl),
            ToolFormat::OpenAi | ToolFormat::Auto => (inner.get("parameters"), Dialect::JsonSchema),
        };
        let parameters = match schema_value {
            None | Some(Value::Null) => Schema::empty_object(),
            Some(v) => Schema::parse(v, dialect).map_err(|source| ToolError::Schema {
                tool: name.clone(),
                source,
            })?,
        };
        let parameters = match parameters.ty {
            SchemaType::Object => parameters,
            // `{}` parses as Any: a function without declared parameters.
            SchemaType::Any if parameters.properties.is_empty() => {
                let mut p = parameters;
                p.ty = SchemaType::Object;
                p
            }
            _ => return Err(ToolError::ParametersNotObject(name)),
        };
        Ok(Tool {
            name,
            description,
            parameters,
        })
    }

    /// Parse a list of tools (or one tool, or a Gemini `{"functionDeclarations": [..]}`
    /// wrapper, or an OpenAI request body with `tools`).
    pub fn parse_many(value: &Value, format: ToolFormat) -> Result<Vec<Tool>, ToolError> {
        let items: Vec<&Value> = match value {
            Value::Array(a) => {
                let mut out = Vec::new();
                for v in a {
                    // Gemini: [{"functionDeclarations": [...]}]
                    if let Some(Value::Array(decls)) = v
                        .get("functionDeclarations")
                        .or_else(|| v.get("function_declarations"))
                    {
                        out.extend(decls.iter());
                    } else {
                        out.push(v);
                    }
                }
                out
            }
            Value::Object(o) => {
                if let Some(Value::Array(a)) = o.get("tools") {
                    return Tool::parse_many(&Value::Array(a.clone()), format);
                }
                if let Some(Value::Array(a)) = o
                    .get("functionDeclarations")
                    .or_else(|| o.get("function_declarations"))
                {
                    let fmt = if format == ToolFormat::Auto {
                        ToolFormat::Gemini
                    } else {
                        format
                    };
                    return Tool::parse_many(&Value::Array(a.clone()), fmt);
                }
                vec![value]
            }
            other => return Err(ToolError::NotAnObject(crate::json_kind(other).to_string())),
        };
        let mut tools: Vec<Tool> = Vec::with_capacity(items.len());
        for v in items {
            let t = Tool::parse(v, format)?;
            if tools.iter().any(|x| x.name == t.name) {
                return Err(ToolError::Duplicate(t.name));
            }
            tools.push(t);
        }
        Ok(tools)
    }

    /// The OpenAI function definition `{name, description, parameters}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters.to_json(),
        })
    }

    /// The OpenAI `tools` entry `{"type": "function", "function": {...}}`.
    pub fn to_openai_tool(&self) -> Value {
        json!({"type": "function", "function": self.to_json()})
    }

    /// The Gemini function declaration (standard JSON-schema types are
    /// accepted by Gemini as `parametersJsonSchema`).
    pub fn to_gemini(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "parametersJsonSchema": self.parameters.to_json(),
        })
    }
}

fn detect_format(obj: &Map<String, Value>) -> ToolFormat {
    if obj.contains_key("inputSchema") {
        return ToolFormat::Mcp;
    }
    if obj.contains_key("function") {
        return ToolFormat::OpenAi;
    }
    if obj.contains_key("parametersJsonSchema") {
        return ToolFormat::Gemini;
    }
    if let Some(p) = obj.get("parameters") {
        match p.get("type").and_then(Value::as_str) {
            Some("dict") => return ToolFormat::Bfcl,
            Some(t) if t.chars().all(|c| c.is_ascii_uppercase()) => return ToolFormat::Gemini,
            _ => {}
        }
    }
    ToolFormat::OpenAi
}

fn check_name(name: &str) -> Result<(), ToolError> {
    if name.trim().is_empty() {
        return Err(ToolError::InvalidName(name.to_string(), "empty"));
    }
    if name.len() > 256 {
        return Err(ToolError::InvalidName(
            name.chars().take(40).collect(),
            "longer than 256 bytes",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ToolError::InvalidName(
            name.to_string(),
            "contains control characters",
        ));
    }
    Ok(())
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Tool::parse(&v, ToolFormat::Auto).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_wrapped_and_bare() {
        let bare = json!({"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}});
        let wrapped = json!({"type": "function", "function": bare.clone()});
        let a = Tool::parse(&bare, ToolFormat::Auto).expect("bare");
        let b = Tool::parse(&wrapped, ToolFormat::Auto).expect("wrapped");
        assert_eq!(a, b);
        assert_eq!(a.name, "get_weather");
        assert!(a.parameters.is_required("city"));
    }

    #[test]
    fn mcp_and_gemini() {
        let mcp = json!({"name": "read_file", "description": "Read",
            "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}});
        let t = Tool::parse(&mcp, ToolFormat::Auto).expect("mcp");
        assert!(t.parameters.is_required("path"));
        let gem = json!({"functionDeclarations": [{"name": "f", "description": "d",
            "parameters": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}}]});
        let ts = Tool::parse_many(&gem, ToolFormat::Auto).expect("gemini");
        assert_eq!(ts[0].parameters.properties["n"].ty, SchemaType::Integer);
    }

    #[test]
    fn bfcl_dotted_name() {
        let b = json!({"name": "math.factorial", "description": "d",
            "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}, "required": ["n"]}});
        let t = Tool::parse(&b, ToolFormat::Auto).expect("bfcl");
        assert_eq!(t.name, "math.factorial");
        assert_eq!(t.parameters.ty, SchemaType::Object);
    }

    #[test]
    fn errors_name_the_tool() {
        let bad = json!({"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "wat"}}}});
        let e = Tool::parse(&bad, ToolFormat::Auto).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tool \"f\": $.properties.x: unknown type \"wat\""
        );
        assert_eq!(
            Tool::parse(&json!({"description": "x"}), ToolFormat::Auto).unwrap_err(),
            ToolError::MissingName
        );
        let dup = json!([{"name": "f"}, {"name": "f"}]);
        assert!(matches!(
            Tool::parse_many(&dup, ToolFormat::Auto),
            Err(ToolError::Duplicate(_))
        ));
    }

    #[test]
    fn serde_roundtrip() {
        let t = Tool::parse(
            &json!({"name": "f", "description": "d", "parameters": {"type": "object",
                "properties": {"a": {"type": "integer", "enum": [1, 2]}}, "required": ["a"]}}),
            ToolFormat::Auto,
        )
        .expect("valid");
        let s = serde_json::to_string(&t).expect("ser");
        let back: Tool = serde_json::from_str(&s).expect("de");
        assert_eq!(t, back);
    }
}
