//! tau-bench: `gpt-4o-airline.json`, a list of episodes `{task_id, reward,
//! info, traj}` whose `traj` is an OpenAI chat transcript (`system`, `user`,
//! `assistant` with `tool_calls`, `tool`). Each assistant turn that calls
//! tools becomes one example: the last user message is the query and the
//! conversation before it (system prompt excluded, trimmed) the context.
//!
//! The file carries no tool definitions, so the schemas of its 14 tools are
//! inferred from the teacher's own calls over the whole file: every argument
//! seen becomes a property typed by its values, and the arguments present in
//! every call of a tool are required. The description is the tool name in
//! words. Episodes of every reward are used; the reward is not a per-call
//! judgement.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use retort_core::{Call, Message, Tool};

use super::{Imported, as_array, example, msg, tool_from_parts, trim_context};
use crate::error::DataError;
use crate::io::read_json;

pub const SOURCE: &str = "taubench";
const MODEL: &str = "gpt-4o";
const FILE: &str = "gpt-4o-airline.json";

/// Infer a JSON schema that accepts every one of `values`.
pub fn infer_schema(values: &[&Value]) -> Value {
    let non_null: Vec<&Value> = values.iter().copied().filter(|v| !v.is_null()).collect();
    let nullable = non_null.len() < values.len();
    let kinds: Vec<&str> = non_null
        .iter()
        .map(|v| match v {
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Null => "null",
        })
        .collect();
    let mut ty = match kinds.first() {
        None => return json!({}),
        Some(k) => *k,
    };
    for k in &kinds {
        if *k != ty {
            if (*k == "number" && ty == "integer") || (*k == "integer" && ty == "number") {
                ty = "number";
            } else {
                return json!({});
            }
        }
    }
    let mut s = match ty {
        "array" => {
            let items: Vec<&Value> = non_null
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            if items.is_empty() {
                json!({"type": "array"})
            } else {
                json!({"type": "array", "items": infer_schema(&items)})
            }
        }
        "object" => {
            let objs: Vec<&Map<String, Value>> =
                non_null.iter().filter_map(|v| v.as_object()).collect();
            infer_object(&objs)
        }
        t => json!({"type": t}),
    };
    if nullable && let Some(t) = s.get("type").cloned() {
        s["type"] = json!([t, "null"]);
    }
    s
}

/// Infer an object schema from sample objects.
pub fn infer_object(objs: &[&Map<String, Value>]) -> Value {
    let mut keys: Vec<String> = Vec::new();
    for o in objs {
        for k in o.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut props = Map::new();
    let mut required = Vec::new();
    for k in &keys {
        let vals: Vec<&Value> = objs.iter().filter_map(|o| o.get(k)).collect();
        if vals.len() == objs.len() {
            required.push(k.clone());
        }
        props.insert(k.clone(), infer_schema(&vals));
    }
    let mut s = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

fn parse_tool_calls(m: &Value) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    for tc in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = tc.get("function").unwrap_or(tc);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or("call_without_name")?;
        calls.push(Call::new(name, super::arguments(f.get("arguments"))?));
    }
    Ok(calls)
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let path = super::need(dir, FILE)?;
    let doc = read_json(&path)?;
    let episodes = as_array(&doc, &path)?;
    // Pass 1: collect every call per tool to infer the schemas.
    let mut samples: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    for (e, ep) in episodes.iter().enumerate() {
        let traj = super::arr_field(ep, "traj", &path, e + 1)?;
        for m in traj {
            if let Ok(calls) = parse_tool_calls(m) {
                for c in calls {
                    samples.entry(c.name).or_default().push(c.arguments);
                }
            }
        }
    }
    let mut tools: Vec<Tool> = Vec::new();
    for (name, calls) in &samples {
        let refs: Vec<&Map<String, Value>> = calls.iter().collect();
        let desc = name.replace('_', " ");
        match tool_from_parts(name, &desc, infer_object(&refs)) {
            Ok(t) => tools.push(t),
            Err(r) => out.skipped_tools.add(SOURCE, r),
        }
    }
    // Pass 2: one example per assistant turn with tool calls.
    for (e, ep) in episodes.iter().enumerate() {
        let task = ep
            .get("task_id")
            .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_string))
            .unwrap_or_else(|| e.to_string());
        let traj = super::arr_field(ep, "traj", &path, e + 1)?;
        let mut history: Vec<Message> = Vec::new();
        let mut last_user: Option<usize> = None;
        for (t, m) in traj.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            let content = m.get("content").and_then(Value::as_str).unwrap_or("");
            match role {
                "user" => {
                    last_user = Some(history.len());
                    history.push(msg("user", content));
                }
                "assistant" => {
                    let calls = parse_tool_calls(m);
                    let has_calls = m
                        .get("tool_calls")
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty());
                    if has_calls {
                        match (calls, last_user) {
                            (Ok(calls), Some(u)) => {
                                let mut context = history.clone();
                                let query = context.remove(u).content;
                                out.examples.push(example(
                                    SOURCE,
                                    format!("{SOURCE}-{task}-{}-{t}", e),
                                    &query,
                                    tools.clone(),
                                    calls.clone(),
                                    Some(MODEL),
                                    trim_context(context),
                                ));
                                let shown: Vec<String> = calls
                                    .iter()
                                    .map(|c| {
                                        json!({"name": c.name, "arguments": c.arguments})
                                            .to_string()
                                    })
                                    .collect();
                                history.push(msg("assistant", shown.join("\n")));
                            }
                            (Ok(_), None) => out.drops.add(SOURCE, "no_user_turn"),
                            (Err(r), _) => out.drops.add(SOURCE, r),
                        }
                    } else {
                        history.push(msg("assistant", content));
                    }
                }
                "tool" => history.push(msg("tool", content)),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::validate_all;

    #[test]
    fn infers_schemas_and_builds_examples() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ep = json!([{"task_id": 0, "reward": 1.0, "traj": [
            {"role": "system", "content": "policy"},
            {"role": "user", "content": "Book me a flight"},
            {"role": "assistant", "content": "Your user id?"},
            {"role": "user", "content": "mia_li_3668"},
            {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "id": "c1",
                "function": {"name": "get_user_details", "arguments": "{\"user_id\":\"mia_li_3668\"}"}}]},
            {"role": "tool", "name": "get_user_details", "content": "{}"},
            {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "id": "c2",
                "function": {"name": "search", "arguments": "{\"n\": 1, \"when\": \"2024-05-20\"}"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "id": "c3",
                "function": {"name": "search", "arguments": "{\"n\": 2.5}"}}]}
        ]}]);
        std::fs::write(dir.path().join(FILE), ep.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 3);
        let ex = &out.examples[0];
        assert_eq!(ex.query, "mia_li_3668");
        assert_eq!(ex.context.len(), 2);
        let search = ex.tool("search").expect("inferred");
        assert!(search.parameters.is_required("n"));
        assert!(!search.parameters.is_required("when"));
        for ex in &out.examples {
            assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        }
    }
}
