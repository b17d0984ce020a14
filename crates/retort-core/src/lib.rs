//! retort-core: the types every stage of retort shares.
//!
//! - [`Tool`]: an OpenAI-style function definition with a parsed [`Schema`].
//! - [`Schema`]: the JSON-schema subset retort supports, parsed from several
//!   dialects ([`Dialect`]).
//! - [`Call`] and [`Example`]: the canonical JSONL example of the pipeline.
//! - [`validate`]: checks a call against tools with typed, path-naming errors.
//! - [`fsutil`]: atomic file writes.
//! - [`ToolCaller`]: what the server, CLI and evaluation see of a model.

pub mod caller;
pub mod example;
pub mod fsutil;
pub mod schema;
pub mod tool;
pub mod validate;

pub use caller::{CallOptions, CallerError, Prediction, ToolCaller};
pub use example::{
    Call, Category, DecisionLogprobs, Example, Message, TeacherInfo, normalize_text, split_words,
};
pub use schema::{Dialect, Schema, SchemaError, SchemaType};
pub use tool::{Tool, ToolError, ToolFormat};
pub use validate::{ValidationError, ValidationErrorKind, validate, validate_all, validate_value};

/// The JSON kind of a value, for error messages.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
