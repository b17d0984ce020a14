//! Loader for the BFCL v4 data directory.
//!
//! Each `BFCL_v4_<category>.json` holds one JSON object per line (despite
//! the ending): `{"id", "question": [[{role, content}, ..]], "function": [..]}`.
//! Answer keys are in `possible_answer/BFCL_v4_<category>.json`, one
//! `{"id", "ground_truth": [{name: {param: [acceptable values]}}]}` per line.

use std::path::{Path, PathBuf};

use retort_core::{Message, Tool, ToolFormat};
use serde_json::Value;

use crate::category::{Category, Language};

/// One BFCL entry, ready to be asked and scored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub category: Category,
    /// The last user message of the question.
    pub query: String,
    /// Every message before the query (system prompts, earlier turns).
    pub context: Vec<Message>,
    /// The function descriptions exactly as in the data file; the checker
    /// reads its types from these.
    pub functions: Vec<Value>,
    /// The tools as BFCL offers them to function-calling models (language
    /// hint appended; Java/JavaScript parameters turned into strings),
    /// parsed with [`ToolFormat::Bfcl`].
    pub tools: Vec<Tool>,
    /// `ground_truth`: one `{name: {param: [values]}}` per expected call.
    /// `None` for the (ir)relevance categories.
    pub answer: Option<Vec<Value>>,
}

/// Why BFCL data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: no answer for entry {id:?}")]
    MissingAnswer { path: PathBuf, id: String },
}

fn read_lines(path: &Path) -> Result<Vec<(usize, Value)>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| LoadError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// Load every entry of one category from the BFCL data directory `dir`.
pub fn load_category(dir: &Path, category: Category) -> Result<Vec<Entry>, LoadError> {
    let path = dir.join(category.file_name());
    let lines = read_lines(&path)?;
    let answers = if category.has_answers() {
        let apath = dir.join("possible_answer").join(category.file_name());
        let mut map = std::collections::HashMap::new();
        for (line, v) in read_lines(&apath)? {
            let malformed = |reason: &str| LoadError::Malformed {
                path: apath.clone(),
                line,
                reason: reason.to_string(),
            };
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("no \"id\""))?
                .to_string();
            let gt = match v.get("ground_truth") {
                Some(Value::Array(a)) => a.clone(),
                _ => return Err(malformed("\"ground_truth\" is not a list")),
            };
            map.insert(id, gt);
        }
        Some((apath, map))
    } else {
        None
    };
    let mut out = Vec::with_capacity(lines.len());
    for (line, v) in lines {
        let malformed = |reason: String| LoadError::Malformed {
            path: path.clone(),
            line,
            reason,
        };
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no \"id\"".into()))?
            .to_string();
        let (query, context) = read_question(v.get("question")).map_err(malformed)?;
        let functions = match v.get("function") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(malformed("\"function\" is not a list".into())),
        };
        let tools = functions
            .iter()
            .map(|f| {
                let offered = offered_function(f, category.language());
                Tool::parse(&offered, ToolFormat::Bfcl)
                    .or_else(|_| Tool::parse(&repaired(offered), ToolFormat::Bfcl))
                    .map_err(|e| malformed(format!("entry {id}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = match &answers {
            Some((apath, map)) => {
                Some(
                    map.get(&id)
                        .cloned()
                        .ok_or_else(|| LoadError::MissingAnswer {
                            path: apath.clone(),
                            id: id.clone(),
                        })?,
                )
            }
            None => None,
        };
        out.push(Entry {
            id,
            category,
            query,
            context,
            functions,
            tools,
            answer,
        });
    }
    Ok(out)
}

/// Load several categories (in the given order).
pub fn load(dir: &Path, categories: &[Category]) -> Result<Vec<Entry>, LoadError> {
    let mut out = Vec::new();
    for c in categories {
        out.extend(load_category(dir, *c)?);
    }
    Ok(out)
}

/// `question` is a list of turns, each a list of `{role, content}`. The last
/// user message is the query; everything before it is context.
fn read_question(q: Option<&Value>) -> Result<(String, Vec<Message>), String> {
    let turns = q
        .and_then(Value::as_array)
        .ok_or("\"question\" is not a list")?;
    let mut messages = Vec::new();
    for turn in turns {
        let msgs: Vec<&Value> = match turn {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![turn],
            _ => return Err("a question turn is not a list of messages".into()),
        };
        for m in msgs {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or("a message has no \"role\"")?;
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            messages.push(Message {
                role: role.to_string(),
                content,
            });
        }
    }
    let last_user = messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or("the question has no user message")?;
    let query = messages[last_user].content.clone();
    messages.truncate(last_user);
    Ok((query, messages))
}

/// BFCL's `_func_doc_language_specific_pre_processing`: what a
/// function-calling model is shown. A language hint is appended to the
/// description; for Java and JavaScript every parameter becomes a string in
/// that language's syntax, with its real type moved into the description.
pub fn offered_function(f: &Value, language: Language) -> Value {
    let mut f = f.clone();
    let hint = match language {
        Language::Java => " Note that the provided function is in Java 8 SDK syntax.",
        Language::JavaScript => " Note that the provided function is in JavaScript syntax.",
        Language::Python => " Note that the provided function is in Python 3 syntax.",
    };
    if let Some(obj) = f.as_object_mut() {
        let d = obj
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        obj.insert("description".into(), Value::String(format!("{d}{hint}")));
    }
    let lang_name = match language {
        Language::Python => return f,
        Language::Java => "Java",
        Language::JavaScript => "JavaScript",
    };
    let Some(props) = f
        .get_mut("parameters")
        .and_then(|p| p.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return f;
    };
    for value in props.values_mut() {
        let Some(p) = value.as_object_mut() else {
            continue;
        };
        let ty = p
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut desc = p
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if ty == "any" {
            desc.push_str(&format!(
                " This parameter can be of any type of {lang_name} object in string representation."
            ));
        } else {
            desc.push_str(&format!(
                " This is {lang_name} {ty} type parameter in string representation."
            ));
        }
        let is_list = match language {
            Language::Java => ty == "ArrayList" || ty == "Array",
            _ => ty == "array",
        };
        if is_list {
            let item_ty = p
                .get("items")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            desc.push_str(&format!(
                " The list elements are of type {item_ty}; they are not in string representation."
            ));
            p.remove("items");
        }
        if language == Language::JavaScript
            && ty == "dict"
            && let Some(inner) = p.remove("properties")
        {
            let schema = python_json_dumps(&inner);
            desc.push_str(&format!(
                    " The dictionary entries have the following schema; they are not in string representation. {schema}"
                ));
        }
        p.insert("description".into(), Value::String(desc));
        p.insert("type".into(), Value::String("string".into()));
        // Keywords that only make sense for the original type go with it.
        for k in [
            "properties",
            "required",
            "items",
            "minimum",
            "maximum",
            "minItems",
            "maxItems",
            "additionalProperties",
        ] {
            p.remove(k);
        }
        if let Some(Value::Array(e)) = p.get("enum")
            && !e.iter().all(Value::is_string)
        {
            p.remove("enum");
        }
        if p.get("default").is_some_and(|d| !d.is_string()) {
            p.remove("default");
        }
    }
    f
}

/// Some BFCL schemas list `required` names they never declare (e.g. a
/// `dict` with `required` but no `properties`), which retort's schema parser
/// rightly refuses. BFCL's checker never looks inside such a node, so the
/// offered tool drops the undeclared names.
fn repaired(mut f: Value) -> Value {
    fn walk(node: &mut Value, depth: usize) {
        if depth > 64 {
            return;
        }
        let Some(obj) = node.as_object_mut() else {
            return;
        };
        let declared: Option<Vec<String>> = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect());
        if let Some(Value::Array(req)) = obj.get_mut("required") {
            req.retain(|r| {
                r.as_str()
                    .is_some_and(|r| declared.as_ref().is_some_and(|d| d.iter().any(|x| x == r)))
            });
        }
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for v in props.values_mut() {
                walk(v, depth + 1);
            }
        }
        if let Some(items) = obj.get_mut("items") {
            walk(items, depth + 1);
        }
    }
    if let Some(p) = f.get_mut("parameters") {
        walk(p, 0);
    }
    f
}

/// Python's `json.dumps` default separators (`", "` and `": "`).
fn python_json_dumps(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(python_json_dumps)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json_dumps(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn question_splits_query_and_context() {
        let q = json!([[{"role": "system", "content": "be nice"}, {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]]);
        let (query, ctx) = read_question(Some(&q)).expect("valid");
        assert_eq!(query, "c");
        assert_eq!(ctx.len(), 3);
        assert_eq!(ctx[0].role, "system");
        assert!(read_question(Some(&json!([[{"role": "system", "content": "x"}]]))).is_err());
        assert!(read_question(None).is_err());
    }

    #[test]
    fn java_functions_are_offered_as_strings() {
        let f = json!({"name": "A.b", "description": "d", "parameters": {"type": "dict",
            "properties": {"n": {"type": "long", "description": "count"},
                "xs": {"type": "ArrayList", "description": "ids", "items": {"type": "integer"}}},
            "required": ["n"]}});
        let o = offered_function(&f, Language::Java);
        assert_eq!(o["parameters"]["properties"]["n"]["type"], "string");
        assert_eq!(
            o["parameters"]["properties"]["n"]["description"],
            "count This is Java long type parameter in string representation."
        );
        assert!(o["parameters"]["properties"]["xs"].get("items").is_none());
        assert!(
            o["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("Java 8 SDK syntax."))
        );
        let t = Tool::parse(&o, ToolFormat::Bfcl).expect("parses");
        assert_eq!(
            t.parameters.properties["xs"].ty,
            retort_core::SchemaType::String
        );
        // Python functions keep their types.
        let p = offered_function(&f, Language::Python);
        assert_eq!(p["parameters"]["properties"]["n"]["type"], "long");
    }

    #[test]
    fn loads_a_tiny_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("possible_answer")).expect("mkdir");
        std::fs::write(
            d.join("BFCL_v4_simple_python.json"),
            r#"{"id": "simple_python_0", "question": [[{"role": "user", "content": "fact 5"}]], "function": [{"name": "math.factorial", "description": "f", "parameters": {"type": "dict", "properties": {"n": {"type": "integer", "description": "n"}}, "required": ["n"]}}]}
"#,
        )
        .expect("write");
        std::fs::write(
            d.join("possible_answer/BFCL_v4_simple_python.json"),
            r#"{"id": "simple_python_0", "ground_truth": [{"math.factorial": {"n": [5]}}]}
"#,
        )
        .expect("write");
        let e = load_category(d, Category::SimplePython).expect("loads");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].query, "fact 5");
        assert_eq!(e[0].tools[0].name, "math.factorial");
        assert_eq!(e[0].answer.as_ref().map(Vec::len), Some(1));
        // A missing file is an error naming the path.
        let err = load_category(d, Category::Multiple).expect_err("missing");
        assert!(err.to_string().contains("BFCL_v4_multiple.json"));
        // An entry without an answer is an error.
        std::fs::write(d.join("possible_answer/BFCL_v4_simple_python.json"), "").expect("write");
        assert!(matches!(
            load_category(d, Category::SimplePython),
            Err(LoadError::MissingAnswer { .. })
        ));
    }
}
