//! The BFCL contamination filter (data/README.md): drop every example whose
//! normalised user text equals a BFCL question's, and every example whose set
//! of tool names equals a BFCL entry's set.
//!
//! BFCL is read only to build this index: its questions and tool-name sets,
//! nothing else.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde_json::Value;

use retort_core::{Example, normalize_text};

use crate::error::DataError;
use crate::io::read_jsonl;

/// Normalised BFCL user texts and tool-name sets.
#[derive(Debug, Clone, Default)]
pub struct BfclIndex {
    pub questions: HashSet<String>,
    pub tool_sets: HashSet<BTreeSet<String>>,
    /// Entries read, over all files.
    pub entries: usize,
    pub files: usize,
}

/// Why an example is contaminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contamination {
    Question,
    ToolSet,
}

impl Contamination {
    pub fn reason(self) -> &'static str {
        match self {
            Contamination::Question => "bfcl_question",
            Contamination::ToolSet => "bfcl_tool_set",
        }
    }
}

impl BfclIndex {
    /// Read every `BFCL_v4_*.json` (JSON lines) in `dir`.
    pub fn load(dir: &Path) -> Result<BfclIndex, DataError> {
        let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .map(|n| n.to_string_lossy())
                        .is_some_and(|n| n.starts_with("BFCL_v4_") && n.ends_with(".json"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::Missing {
                path: dir.to_path_buf(),
                what: "no BFCL_v4_*.json file".into(),
            });
        }
        let mut idx = BfclIndex::default();
        for f in &files {
            for (line, v) in read_jsonl(f)? {
                idx.add_entry(&v)
                    .map_err(|m| DataError::format(f, line, m))?;
            }
            idx.files += 1;
        }
        Ok(idx)
    }

    /// Add one BFCL entry (`question`: list of turns of messages, `function`:
    /// list of function docs).
    pub fn add_entry(&mut self, v: &Value) -> Result<(), String> {
        let q = v.get("question").ok_or("entry has no \"question\"")?;
        collect_user_texts(q, &mut |t| {
            let n = normalize_text(t);
            if !n.is_empty() {
                self.questions.insert(n);
            }
        });
        if let Some(Value::Array(fs)) = v.get("function") {
            let names: BTreeSet<String> = fs
                .iter()
                .filter_map(|f| f.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            if !names.is_empty() {
                self.tool_sets.insert(names);
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// Is this query (normalised) a BFCL question?
    pub fn has_question(&self, query: &str) -> bool {
        self.questions.contains(&normalize_text(query))
    }

    /// The contamination of an example, if any.
    pub fn check(&self, ex: &Example) -> Option<Contamination> {
        if self.has_question(&ex.query) {
            return Some(Contamination::Question);
        }
        let names: BTreeSet<String> = ex.tools.iter().map(|t| t.name.clone()).collect();
        if self.tool_sets.contains(&names) {
            return Some(Contamination::ToolSet);
        }
        None
    }
}

/// Call `f` with the content of every user message in a BFCL `question`
/// (a list of turns, each a list of messages; a flat list is accepted too).
fn collect_user_texts(q: &Value, f: &mut dyn FnMut(&str)) {
    match q {
        Value::Array(a) => {
            for x in a {
                collect_user_texts(x, f);
            }
        }
        Value::Object(m) => {
            if m.get("role").and_then(Value::as_str) == Some("user")
                && let Some(c) = m.get("content").and_then(Value::as_str)
            {
                f(c);
            }
        }
        Value::String(s) => f(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, Tool, ToolFormat};
    use serde_json::json;

    fn ex(query: &str, tools: &[&str]) -> Example {
        Example {
            id: "x".into(),
            source: "t".into(),
            query: query.into(),
            tools: tools
                .iter()
                .map(|n| Tool::parse(&json!({"name": n}), ToolFormat::Auto).expect("tool"))
                .collect(),
            calls: vec![Call::new(tools[0], Default::default())],
            teacher: None,
            context: Vec::new(),
        }
    }

    #[test]
    fn filters_questions_and_tool_sets() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("BFCL_v4_simple_python.json"),
            concat!(
                r#"{"id": "s0", "question": [[{"role": "user", "content": "Find the area of a triangle, base 10!"}]], "function": [{"name": "calc_area", "parameters": {}}]}"#,
                "\n",
                r#"{"id": "m0", "question": [[{"role": "system", "content": "sys text"}, {"role": "user", "content": "first"}], [{"role": "user", "content": "Second turn"}]], "function": [{"name": "a"}, {"name": "b"}]}"#,
                "\n"
            ),
        )
        .expect("write");
        std::fs::write(dir.path().join("other.json"), "not json").expect("write");
        let idx = BfclIndex::load(dir.path()).expect("loads");
        assert_eq!(idx.entries, 2);
        assert_eq!(
            idx.check(&ex("find the AREA of a triangle base 10", &["z"])),
            Some(Contamination::Question)
        );
        assert_eq!(
            idx.check(&ex("second  turn?", &["z"])),
            Some(Contamination::Question)
        );
        assert_eq!(
            idx.check(&ex("sys text", &["z"])),
            None,
            "system text is not a user question"
        );
        assert_eq!(
            idx.check(&ex("other", &["b", "a"])),
            Some(Contamination::ToolSet)
        );
        assert_eq!(idx.check(&ex("other", &["a"])), None);
        assert_eq!(idx.check(&ex("other", &["a", "b", "c"])), None);
        assert_eq!(idx.check(&ex("find the area of a triangle", &["z"])), None);
    }

    #[test]
    fn malformed_bfcl_line_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("BFCL_v4_x.json"),
            "{\"question\": []}\n{\"function\": []}\n",
        )
        .expect("write");
        let e = BfclIndex::load(dir.path()).expect_err("line 2 has no question");
        assert!(
            e.to_string()
                .contains("BFCL_v4_x.json:2: entry has no \"question\""),
            "{e}"
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(BfclIndex::load(empty.path()).is_err());
    }
}
