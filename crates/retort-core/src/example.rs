//! Calls and the canonical example (one JSON object per line).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tool::Tool;

/// One function call: a name and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub name: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

impl Call {
    pub fn new(name: impl Into<String>, arguments: Map<String, Value>) -> Self {
        Call {
            name: name.into(),
            arguments,
        }
    }
}

/// A message of earlier conversation, kept as context for multi-turn sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Where an example's calls came from, and what the teacher said about them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeacherInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Per-decision log-probabilities when the teacher API returned them.
    /// Each entry: the decision's label and its top alternatives with logprobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<DecisionLogprobs>,
}

/// Log-probabilities of one decision of the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionLogprobs {
    /// What was decided, e.g. "function", "arg:city".
    pub decision: String,
    /// Alternatives and their log-probabilities (the chosen one included).
    pub top: Vec<(String, f64)>,
}

/// The canonical training/evaluation example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub source: String,
    pub query: String,
    pub tools: Vec<Tool>,
    /// Empty means "no tool fits".
    pub calls: Vec<Call>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<TeacherInfo>,
    /// Earlier turns of the conversation (multi-turn sources), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Message>,
}

/// The shape of an example, for statistics and balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// No call: no tool fits.
    NoCall,
    /// One call with fewer than 3 tools offered.
    Single,
    /// One call with 3 or more tools offered.
    MultipleChoice,
    /// Two or more calls.
    Parallel,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Single,
        Category::MultipleChoice,
        Category::Parallel,
        Category::NoCall,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Category::NoCall => "no_call",
            Category::Single => "single",
            Category::MultipleChoice => "multiple_choice",
            Category::Parallel => "parallel",
        }
    }
}

impl Example {
    pub fn category(&self) -> Category {
        match self.calls.len() {
            0 => Category::NoCall,
            1 if self.tools.len() >= 3 => Category::MultipleChoice,
            1 => Category::Single,
            _ => Category::Parallel,
        }
    }

    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Split a name or text into lower-case words (snake_case, camelCase,
/// spaces, dots): "getWeatherData v2_x" -> ["get", "weather", "data", "v2", "x"].
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            cur.extend(c.to_lowercase());
        } else {
            prev_lower = false;
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Lower-case, turn punctuation into spaces and collapse whitespace: the
/// normalisation of the BFCL contamination rule and of deduplication.
pub fn normalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn example_roundtrip_and_category() {
        let line = r#"{"id": "seal-dev-17", "source": "seal", "query": "dim the kitchen lights to 10%",
 "tools": [{"name": "set_lights", "description": "...", "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "brightness": {"type": "integer"}}, "required": ["room"]}}],
 "calls": [{"name": "set_lights", "arguments": {"room": "kitchen", "brightness": 10}}],
 "teacher": {"model": "gpt-3.5-turbo"}}"#;
        let ex: Example = serde_json::from_str(line).expect("parse");
        assert_eq!(ex.category(), Category::Single);
        assert_eq!(ex.calls[0].arguments["brightness"], json!(10));
        let back: Example =
            serde_json::from_str(&serde_json::to_string(&ex).expect("ser")).expect("de");
        assert_eq!(ex, back);
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_text("  What's the Weather,  in   Paris?? "),
            "what s the weather in paris"
        );
        assert_eq!(normalize_text("?!"), "");
    }
}
