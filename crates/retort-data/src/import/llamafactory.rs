//! LLaMA-Factory demos: `glaive_toolcall_{en,zh}_demo.json` (ShareGPT
//! `conversations` with `human` / `gpt` / `function_call` / `observation`
//! turns and a `tools` JSON string) and `reason_tool_use_demo_50.jsonl`
//! (`messages` whose assistant content parts are `reasoning`, `text` and
//! `tool_call`; several `tool_call` parts make a parallel call).
//!
//! Every assistant action that directly answers a user message becomes one
//! example: a function call gives its calls, a plain text answer gives a
//! no-call example (`calls: []`). Earlier turns are the context.

use std::path::Path;

use serde_json::Value;

use retort_core::{Call, Message, Tool, ToolFormat};

use super::{Imported, arguments, as_array, example, msg, parse_tool, trim_context};
use crate::error::DataError;
use crate::io::{read_json, read_jsonl};
use crate::schema_fix::fix_parameters;

pub const SOURCE: &str = "llamafactory";
const GLAIVE: &[(&str, &str)] = &[
    ("glaive_toolcall_en_demo.json", "glaive-en"),
    ("glaive_toolcall_zh_demo.json", "glaive-zh"),
];
const REASON: &str = "reason_tool_use_demo_50.jsonl";

/// Parse a `tools` field (a JSON string or an array) of OpenAI-style tools,
/// normalising Python-style types and a `required` list misplaced beside
/// `parameters`. `Err` is the reason of the first unusable tool.
pub fn parse_tools_field(v: Option<&Value>) -> Result<Vec<Tool>, String> {
    let owned;
    let list = match v {
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            owned =
                serde_json::from_str::<Value>(s).map_err(|_| "unparseable_tools".to_string())?;
            &owned
        }
        Some(v) => v,
        None => return Ok(Vec::new()),
    };
    let Value::Array(items) = list else {
        return Err("tools_not_a_list".into());
    };
    let mut tools: Vec<Tool> = Vec::new();
    for item in items {
        let mut f = match item.get("function") {
            Some(f @ Value::Object(_)) => f.clone(),
            _ => item.clone(),
        };
        if let Some(obj) = f.as_object_mut() {
            let misplaced = obj.remove("required");
            if let Some(p) = obj.get("parameters").cloned() {
                let mut fixed = fix_parameters(&p);
                if let (Some(Value::Array(r)), Some(m)) = (misplaced, fixed.as_object_mut())
                    && !m.contains_key("required")
                    && !r.is_empty()
                {
                    m.insert("required".into(), Value::Array(r));
                }
                obj.insert("parameters".into(), fixed);
            }
        }
        let t = parse_tool(&f, ToolFormat::OpenAi)?;
        if tools.iter().any(|x| x.name == t.name) {
            return Err("tool_schema/duplicate_name".into());
        }
        tools.push(t);
    }
    Ok(tools)
}

fn call_from_json(v: &Value) -> Result<Call, String> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("call_without_name")?;
    let args = arguments(v.get("arguments").or_else(|| v.get("parameters")))?;
    Ok(Call::new(name, args))
}

fn glaive(path: &Path, tag: &str, out: &mut Imported) -> Result<(), DataError> {
    let doc = read_json(path)?;
    for (i, rec) in as_array(&doc, path)?.iter().enumerate() {
        let convo = super::arr_field(rec, "conversations", path, i + 1)?;
        let tools = match parse_tools_field(rec.get("tools")) {
            Ok(t) => t,
            Err(r) => {
                out.drops.add(SOURCE, r);
                continue;
            }
        };
        if tools.is_empty() {
            out.drops.add(SOURCE, "no_tools");
            continue;
        }
        let mut history: Vec<Message> = Vec::new();
        let mut last_user: Option<String> = None;
        for (t, turn) in convo.iter().enumerate() {
            let from = turn.get("from").and_then(Value::as_str).unwrap_or("");
            let value = turn.get("value").and_then(Value::as_str).unwrap_or("");
            match from {
                "human" => {
                    if let Some(u) = last_user.take() {
                        history.push(msg("user", u));
                    }
                    last_user = Some(value.to_string());
                }
                "function_call" | "gpt" => {
                    if let Some(q) = last_user.take() {
                        let calls = if from == "gpt" {
                            Ok(Vec::new())
                        } else {
                            serde_json::from_str::<Value>(value)
                                .map_err(|_| "unparseable_call".to_string())
                                .and_then(|v| match v {
                                    Value::Array(a) => a.iter().map(call_from_json).collect(),
                                    v => call_from_json(&v).map(|c| vec![c]),
                                })
                        };
                        match calls {
                            Ok(calls) => out.examples.push(example(
                                SOURCE,
                                format!("{SOURCE}-{tag}-{i}-{t}"),
                                &q,
                                tools.clone(),
                                calls,
                                Some("glaive"),
                                trim_context(history.clone()),
                            )),
                            Err(r) => out.drops.add(SOURCE, r),
                        }
                        history.push(msg("user", q));
                    }
                    history.push(msg("assistant", value));
                }
                "observation" => history.push(msg("tool", value)),
                _ => {}
            }
        }
    }
    Ok(())
}

fn reason_demo(path: &Path, out: &mut Imported) -> Result<(), DataError> {
    for (line, rec) in read_jsonl(path)? {
        let msgs = super::arr_field(&rec, "messages", path, line)?;
        let tools = match parse_tools_field(rec.get("tools")) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                out.drops.add(SOURCE, "no_tools");
                continue;
            }
            Err(r) => {
                out.drops.add(SOURCE, r);
                continue;
            }
        };
        let mut history: Vec<Message> = Vec::new();
        let mut last_user: Option<String> = None;
        for (t, m) in msgs.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let parts: Vec<(&str, &str)> = match m.get("content") {
                Some(Value::Array(ps)) => ps
                    .iter()
                    .map(|p| {
                        (
                            p.get("type").and_then(Value::as_str).unwrap_or(""),
                            p.get("value").and_then(Value::as_str).unwrap_or(""),
                        )
                    })
                    .collect(),
                Some(Value::String(s)) => vec![("text", s.as_str())],
                _ => Vec::new(),
            };
            let text: String = parts
                .iter()
                .filter(|(k, _)| *k == "text")
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
                .join("\n");
            match role {
                "user" => {
                    if let Some(u) = last_user.take() {
                        history.push(msg("user", u));
                    }
                    last_user = Some(text);
                }
                "assistant" => {
                    let call_parts: Vec<&str> = parts
                        .iter()
                        .filter(|(k, _)| *k == "tool_call")
                        .map(|(_, v)| *v)
                        .collect();
                    let calls: Result<Vec<Call>, String> = call_parts
                        .iter()
                        .map(|v| {
                            serde_json::from_str::<Value>(v)
                                .map_err(|_| "unparseable_call".to_string())
                                .and_then(|v| call_from_json(&v))
                        })
                        .collect();
                    if let Some(q) = last_user.take() {
                        match calls {
                            Ok(calls) => out.examples.push(example(
                                SOURCE,
                                format!("{SOURCE}-reason-{line}-{t}"),
                                &q,
                                tools.clone(),
                                calls,
                                None,
                                trim_context(history.clone()),
                            )),
                            Err(r) => out.drops.add(SOURCE, r),
                        }
                        history.push(msg("user", q));
                    }
                    let shown = if call_parts.is_empty() {
                        text
                    } else {
                        call_parts.join("\n")
                    };
                    history.push(msg("assistant", shown));
                }
                "tool" => history.push(msg("tool", text)),
                _ => {}
            }
        }
    }
    Ok(())
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let mut any = false;
    for (file, tag) in GLAIVE {
        let p = dir.join(file);
        if p.is_file() {
            any = true;
            glaive(&p, tag, out)?;
        }
    }
    let p = dir.join(REASON);
    if p.is_file() {
        any = true;
        reason_demo(&p, out)?;
    }
    if !any {
        return Err(DataError::Missing {
            path: dir.join(GLAIVE[0].0),
            what: "no LLaMA-Factory demo file found".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Category, validate_all};
    use serde_json::json;

    #[test]
    fn glaive_calls_and_no_calls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tools = r#"[{"name": "search_recipes", "description": "d", "parameters": {"type": "object", "properties": {"ingredients": {"type": "array", "items": {"type": "string"}}}, "required": ["ingredients"]}}]"#;
        let data = json!([{"conversations": [
            {"from": "human", "value": "Hi, find a recipe?"},
            {"from": "gpt", "value": "Tell me the ingredients."},
            {"from": "human", "value": "chicken and rice"},
            {"from": "function_call", "value": "{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"rice\"]}}"},
            {"from": "observation", "value": "{}"},
            {"from": "gpt", "value": "Here."}
        ], "tools": tools}]);
        std::fs::write(dir.path().join(GLAIVE[0].0), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        assert_eq!(out.examples[0].category(), Category::NoCall);
        let ex = &out.examples[1];
        assert_eq!(ex.query, "chicken and rice");
        assert_eq!(ex.context.len(), 2);
        assert_eq!(
            ex.calls[0].arguments["ingredients"],
            json!(["chicken", "rice"])
        );
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
    }

    #[test]
    fn reason_demo_parallel_with_python_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tools = r#"[{"type": "function", "function": {"name": "circle_area", "description": "Area.", "parameters": {"type": "dict", "properties": {"radius": {"description": "r", "type": "float"}}}, "required": ["radius"]}}]"#;
        let rec = json!({"messages": [
            {"role": "system", "content": [{"type": "text", "value": "sys"}]},
            {"role": "user", "content": [{"type": "text", "value": "Areas for r=1.5 and 3"}]},
            {"role": "assistant", "content": [
                {"type": "reasoning", "value": "..."},
                {"type": "tool_call", "value": "{\"name\": \"circle_area\", \"arguments\": {\"radius\": 1.5}}"},
                {"type": "tool_call", "value": "{\"name\": \"circle_area\", \"arguments\": {\"radius\": 3}}"}
            ]}
        ], "tools": tools});
        std::fs::write(dir.path().join(REASON), format!("{rec}\n")).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 1);
        let ex = &out.examples[0];
        assert_eq!(ex.category(), Category::Parallel);
        assert!(ex.tools[0].parameters.is_required("radius"));
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
    }
}
