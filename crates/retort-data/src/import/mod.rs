//! One importer per teacher corpus, each turning its own format into
//! canonical [`Example`]s, plus the pool importers (distractor tools and
//! unlabelled queries).
//!
//! Importers never panic on bad input: a file that does not have the expected
//! shape is a [`DataError`] naming the file and line; a single record whose
//! tools or calls cannot be used is dropped and counted in [`Drops`] under a
//! reason such as `tool_schema/unsupported:$ref`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use retort_core::{Call, Example, Message, SchemaError, TeacherInfo, Tool, ToolError, ToolFormat};

use crate::error::DataError;

pub mod apibank;
pub mod callnavi;
pub mod llamafactory;
pub mod nestful;
pub mod pools;
pub mod seal;
pub mod taubench;
pub mod toolalpaca;
pub mod toolrl;

/// Counts of dropped records: source -> reason -> count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drops(pub BTreeMap<String, BTreeMap<String, usize>>);

impl Drops {
    pub fn add(&mut self, source: &str, reason: impl Into<String>) {
        self.add_n(source, reason, 1);
    }

    pub fn add_n(&mut self, source: &str, reason: impl Into<String>, n: usize) {
        if n == 0 {
            return;
        }
        *self
            .0
            .entry(source.to_string())
            .or_default()
            .entry(reason.into())
            .or_default() += n;
    }

    pub fn merge(&mut self, other: Drops) {
        for (s, m) in other.0 {
            for (r, n) in m {
                self.add_n(&s, r, n);
            }
        }
    }

    /// Total per reason over all sources.
    pub fn by_reason(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for m in self.0.values() {
            for (r, n) in m {
                *out.entry(r.clone()).or_default() += n;
            }
        }
        out
    }

    pub fn count(&self, source: &str, reason: &str) -> usize {
        self.0
            .get(source)
            .and_then(|m| m.get(reason))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.0.values().flat_map(|m| m.values()).sum()
    }
}

/// A query without teacher calls, kept for later labelling by a live teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unlabelled {
    pub id: String,
    pub source: String,
    pub query: String,
    /// Tool names the source associates with the query (selection-only
    /// sources such as MetaTool), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_hint: Vec<String>,
}

/// A tool of the distractor pool, with the source it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolTool {
    pub source: String,
    pub tool: Tool,
}

/// Everything the importers produced.
#[derive(Debug, Default)]
pub struct Imported {
    pub examples: Vec<Example>,
    pub pool: Vec<PoolTool>,
    pub unlabelled: Vec<Unlabelled>,
    /// Records dropped while importing, by source and reason.
    pub drops: Drops,
    /// Tools skipped (not part of any gold call), by source and reason.
    pub skipped_tools: Drops,
    /// Records kept after a repair, by source and what was done.
    pub notes: Drops,
    /// Corpora that were read, and the ones not found.
    pub sources_read: Vec<String>,
    pub sources_missing: Vec<String>,
}

impl Imported {
    pub fn merge(&mut self, other: Imported) {
        self.examples.extend(other.examples);
        self.pool.extend(other.pool);
        self.unlabelled.extend(other.unlabelled);
        self.drops.merge(other.drops);
        self.skipped_tools.merge(other.skipped_tools);
        self.notes.merge(other.notes);
        self.sources_read.extend(other.sources_read);
        self.sources_missing.extend(other.sources_missing);
    }
}

/// A short, stable name for why a schema could not be parsed.
pub fn schema_error_kind(e: &SchemaError) -> String {
    match e {
        SchemaError::NotAnObject { .. } => "schema_not_object".into(),
        SchemaError::UnknownType { ty, .. } => {
            format!("unknown_type:{}", ty.chars().take(24).collect::<String>())
        }
        SchemaError::Unsupported { keyword, .. } => format!("unsupported:{keyword}"),
        SchemaError::InvalidKeyword { keyword, .. } => format!("invalid_keyword:{keyword}"),
        SchemaError::UndeclaredRequired { .. } => "undeclared_required".into(),
        SchemaError::TooDeep { .. } => "too_deep".into(),
    }
}

/// A short, stable name for why a tool definition could not be read.
pub fn tool_error_kind(e: &ToolError) -> String {
    let kind = match e {
        ToolError::NotAnObject(_) => "not_an_object".into(),
        ToolError::MissingName => "missing_name".into(),
        ToolError::InvalidName(..) => "invalid_name".into(),
        ToolError::Schema { source, .. } => schema_error_kind(source),
        ToolError::ParametersNotObject(_) => "parameters_not_object".into(),
        ToolError::Duplicate(_) => "duplicate_name".into(),
    };
    format!("tool_schema/{kind}")
}

/// Parse one tool; the error is the drop reason.
pub fn parse_tool(v: &Value, format: ToolFormat) -> Result<Tool, String> {
    Tool::parse(v, format).map_err(|e| tool_error_kind(&e))
}

/// Build a tool from a name, description and an (already standard) JSON
/// schema for its parameters.
pub fn tool_from_parts(name: &str, description: &str, parameters: Value) -> Result<Tool, String> {
    parse_tool(
        &serde_json::json!({"name": name, "description": description, "parameters": parameters}),
        ToolFormat::OpenAi,
    )
}

/// Construct an example.
pub fn example(
    source: &str,
    id: String,
    query: &str,
    tools: Vec<Tool>,
    calls: Vec<Call>,
    model: Option<&str>,
    context: Vec<Message>,
) -> Example {
    Example {
        id,
        source: source.to_string(),
        query: query.trim().to_string(),
        tools,
        calls,
        teacher: model.map(|m| TeacherInfo {
            model: Some(m.to_string()),
            logprobs: Vec::new(),
        }),
        context,
    }
}

/// Longest context message kept, in characters.
pub const CONTEXT_MESSAGE_CHARS: usize = 400;
/// Most context messages kept (the latest ones).
pub const CONTEXT_MESSAGES: usize = 8;

/// Keep the last [`CONTEXT_MESSAGES`] messages, each cut to
/// [`CONTEXT_MESSAGE_CHARS`] characters.
pub fn trim_context(mut msgs: Vec<Message>) -> Vec<Message> {
    if msgs.len() > CONTEXT_MESSAGES {
        msgs.drain(..msgs.len() - CONTEXT_MESSAGES);
    }
    for m in &mut msgs {
        m.content = truncate_chars(&m.content, CONTEXT_MESSAGE_CHARS);
    }
    msgs
}

/// Cut `s` to at most `n` characters (on a character boundary), marking the
/// cut with an ellipsis.
pub fn truncate_chars(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub fn msg(role: &str, content: impl Into<String>) -> Message {
    Message {
        role: role.to_string(),
        content: content.into(),
    }
}

/// The file `dir/name`, which must exist.
pub fn need(dir: &Path, name: &str) -> Result<std::path::PathBuf, DataError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DataError::Missing {
            path: p,
            what: "expected corpus file".into(),
        })
    }
}

/// A string field of a JSON object, or a format error naming file and line.
pub fn str_field<'a>(
    v: &'a Value,
    key: &str,
    path: &Path,
    line: usize,
) -> Result<&'a str, DataError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| DataError::format(path, line, format!("missing string field {key:?}")))
}

/// An array field of a JSON object, or a format error naming file and line.
pub fn arr_field<'a>(
    v: &'a Value,
    key: &str,
    path: &Path,
    line: usize,
) -> Result<&'a Vec<Value>, DataError> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| DataError::format(path, line, format!("missing array field {key:?}")))
}

/// The top-level JSON array of a file, or a format error.
pub fn as_array<'a>(v: &'a Value, path: &Path) -> Result<&'a Vec<Value>, DataError> {
    v.as_array()
        .ok_or_else(|| DataError::format(path, 1, "expected a JSON array at the top level"))
}

/// Parse call arguments written either as an object or as a JSON string.
pub fn arguments(v: Option<&Value>) -> Result<serde_json::Map<String, Value>, String> {
    match v {
        None | Some(Value::Null) => Ok(serde_json::Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(serde_json::Map::new()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("arguments_not_object".into()),
            Err(_) => Err("unparseable_arguments".into()),
        },
        Some(_) => Err("arguments_not_object".into()),
    }
}

/// Which importers exist, by folder name under the teacher directory.
pub const TEACHER_SOURCES: &[&str] = &[
    "seal",
    "apibank",
    "llamafactory",
    "toolrl",
    "callnavi",
    "nestful",
    "toolalpaca",
    "taubench",
];

/// Pool folders (distractor tools and unlabelled queries).
pub const POOL_SOURCES: &[&str] = &["livemcpbench", "metatool", "taskbench"];

/// Run one importer on `teacher_dir/<name>`; a missing folder is recorded,
/// not an error.
pub fn import_source(teacher_dir: &Path, name: &str) -> Result<Imported, DataError> {
    let dir = teacher_dir.join(name);
    let mut out = Imported::default();
    if !dir.is_dir() {
        out.sources_missing.push(name.to_string());
        return Ok(out);
    }
    match name {
        "seal" => seal::import(&dir, &mut out)?,
        "apibank" => apibank::import(&dir, &mut out)?,
        "llamafactory" => llamafactory::import(&dir, &mut out)?,
        "toolrl" => toolrl::import(&dir, &mut out)?,
        "callnavi" => callnavi::import(&dir, &mut out)?,
        "nestful" => nestful::import(&dir, &mut out)?,
        "toolalpaca" => toolalpaca::import(&dir, &mut out)?,
        "taubench" => taubench::import(&dir, &mut out)?,
        "livemcpbench" => pools::livemcpbench(&dir, &mut out)?,
        "metatool" => pools::metatool(&dir, &mut out)?,
        "taskbench" => pools::taskbench(&dir, &mut out)?,
        other => {
            return Err(DataError::Options(format!("no importer named {other:?}")));
        }
    }
    out.sources_read.push(name.to_string());
    Ok(out)
}
