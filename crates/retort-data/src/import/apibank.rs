//! API-Bank: `lv3-api-train.json` (the level-3 API-Request turns: ToolSearcher
//! retrieval, then the call) and the `level-1-api.json` / `level-2-api.json`
//! dialogues. Each record is Alpaca-style: `instruction`, `input` (tool
//! descriptions, `User:` / `AI:` turns and earlier `API-Request: [..]->result`
//! lines) and the gold `output` / `expected_output`
//! `API-Request: [Api(key='v')]`, parsed with [`crate::pylit`].
//!
//! `level-3.json` (requirement + the sequence of API calls) is read too, one
//! example per call.
//!
//! The tools of an example are the ones described in the instruction or
//! header plus every tool an earlier ToolSearcher call returned.

use std::path::Path;

use serde_json::Value;

use retort_core::{Message, Tool};

use super::{Imported, as_array, example, msg, str_field, tool_from_parts, trim_context};
use crate::error::DataError;
use crate::io::read_json;
use crate::pylit::{parse_api_request, parse_literal};
use crate::schema_fix::object_schema;

pub const SOURCE: &str = "apibank";
const MODEL: &str = "ChatGPT";
const FILES: &[(&str, &str, &str)] = &[
    ("lv3-api-train.json", "lv3", "output"),
    ("level-1-api.json", "l1", "expected_output"),
    ("level-2-api.json", "l2", "expected_output"),
];

/// A tool described as `{name|apiCode, description, input_parameters|parameters}`.
pub fn parse_apibank_tool(v: &Value) -> Result<Tool, String> {
    let name = v
        .get("name")
        .or_else(|| v.get("apiCode"))
        .and_then(Value::as_str)
        .ok_or("tool_schema/missing_name")?;
    let desc = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = match v.get("input_parameters").or_else(|| v.get("parameters")) {
        Some(Value::Object(p)) => object_schema(p, None),
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(_) => return Err("tool_schema/parameters_not_object".into()),
    };
    tool_from_parts(name, desc, params)
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Header(String),
    User(String),
    Ai(String),
    Request(String),
}

fn segments(text: &str) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("Generate API Request") {
            break;
        }
        if let Some(r) = t.strip_prefix("User:") {
            out.push(Seg::User(r.trim().to_string()));
        } else if let Some(r) = t.strip_prefix("AI:") {
            out.push(Seg::Ai(r.trim().to_string()));
        } else if t.starts_with("API-Request:") {
            out.push(Seg::Request(t.to_string()));
        } else {
            match out.last_mut() {
                Some(Seg::User(s))
                | Some(Seg::Ai(s))
                | Some(Seg::Request(s))
                | Some(Seg::Header(s)) => {
                    s.push('\n');
                    s.push_str(line);
                }
                None => out.push(Seg::Header(line.to_string())),
            }
        }
    }
    out
}

/// Split `API-Request: [..]->result` into the calls and the result text.
fn split_request(s: &str) -> Option<(Vec<retort_core::Call>, Option<&str>)> {
    for (i, _) in s.match_indices("->") {
        if let Ok(calls) = parse_api_request(&s[..i]) {
            return Some((calls, Some(s[i + 2..].trim())));
        }
    }
    parse_api_request(s).ok().map(|c| (c, None))
}

/// Put a space before API-Bank's glued `TIME:` suffix.
fn clean_user(s: &str) -> String {
    match s.find("TIME:") {
        Some(i) if i > 0 && !s[..i].ends_with(' ') => format!("{} {}", &s[..i], &s[i..]),
        _ => s.to_string(),
    }
}

fn add_tool(tools: &mut Vec<Tool>, t: Tool) {
    if !tools.iter().any(|x| x.name == t.name) {
        tools.push(t);
    }
}

/// An imported record: query, tools, calls, context.
type Record = (String, Vec<Tool>, Vec<retort_core::Call>, Vec<Message>);

/// Import one record; the inner `Err` is the drop reason.
fn record(
    v: &Value,
    out_key: &str,
    path: &Path,
    line: usize,
) -> Result<Result<Record, String>, DataError> {
    let input = str_field(v, "input", path, line)?;
    let instruction = v.get("instruction").and_then(Value::as_str).unwrap_or("");
    let output = str_field(v, out_key, path, line)?;
    let mut tools: Vec<Tool> = Vec::new();
    let mut tool_errors: Vec<String> = Vec::new();
    // Tool descriptions after "API descriptions:" in the instruction (one JSON per line).
    if let Some(i) = instruction.find("API descriptions:") {
        for l in instruction[i + "API descriptions:".len()..].lines() {
            let l = l.trim();
            if l.starts_with('{') {
                match serde_json::from_str::<Value>(l) {
                    Ok(tv) => match parse_apibank_tool(&tv) {
                        Ok(t) => add_tool(&mut tools, t),
                        Err(r) => tool_errors.push(r),
                    },
                    Err(_) => tool_errors.push("tool_schema/unparseable_description".into()),
                }
            }
        }
    }
    let segs = segments(input);
    let mut context = Vec::new();
    let mut query: Option<String> = None;
    for s in &segs {
        match s {
            Seg::Header(h) => {
                for l in h.lines() {
                    let l = l.trim();
                    if l.starts_with('{')
                        && let Ok(tv) = serde_json::from_str::<Value>(l)
                    {
                        match parse_apibank_tool(&tv) {
                            Ok(t) => add_tool(&mut tools, t),
                            Err(r) => tool_errors.push(r),
                        }
                    }
                }
            }
            Seg::User(u) => {
                if let Some(q) = query.take() {
                    context.push(msg("user", q));
                }
                query = Some(clean_user(u));
            }
            Seg::Ai(a) => context.push(msg("assistant", a.clone())),
            Seg::Request(r) => {
                let Some((calls, result)) = split_request(r) else {
                    return Ok(Err("unparseable_context_request".into()));
                };
                let call_text = r.split("->").next().unwrap_or(r).trim().to_string();
                context.push(msg("assistant", call_text));
                if let Some(res) = result {
                    context.push(msg("tool", res.to_string()));
                    let is_search = calls.iter().any(|c| c.name == "ToolSearcher");
                    if is_search && let Ok(val) = parse_literal(res) {
                        // One tool description, a list of them, or either
                        // wrapped in `{"output": ..}`.
                        let val = match val.get("output") {
                            Some(o @ (Value::Object(_) | Value::Array(_))) => o.clone(),
                            _ => val,
                        };
                        let found: Vec<&Value> = match &val {
                            Value::Array(a) => a.iter().collect(),
                            v => vec![v],
                        };
                        for tv in found.into_iter().filter(|v| v.get("name").is_some()) {
                            match parse_apibank_tool(tv) {
                                Ok(t) => add_tool(&mut tools, t),
                                Err(r) => tool_errors.push(r),
                            }
                        }
                    }
                }
            }
        }
    }
    let Some(query) = query else {
        return Ok(Err("no_user_turn".into()));
    };
    let calls = match parse_api_request(output) {
        Ok(c) if !c.is_empty() => c,
        _ => return Ok(Err("unparseable_call".into())),
    };
    for c in &calls {
        if !tools.iter().any(|t| t.name == c.name) {
            // The gold tool's description was unusable, or never retrieved.
            return Ok(Err(tool_errors
                .first()
                .cloned()
                .unwrap_or_else(|| "unknown_tool".into())));
        }
    }
    Ok(Ok((query, tools, calls, trim_context(context))))
}

/// `level-3.json`: `{requirement, apis: [{api_name, input, output: {output,
/// exception}}]}`. Each API call becomes an example whose query is the
/// requirement, whose tools are ToolSearcher plus every tool found by an
/// earlier ToolSearcher call, and whose context is the calls before it.
fn level3(path: &Path, out: &mut Imported) -> Result<(), DataError> {
    let searcher = parse_apibank_tool(&serde_json::json!({
        "name": "ToolSearcher",
        "description": "Searches for relevant tools in library based on the keywords.",
        "input_parameters": {"keywords": {"type": "str", "description": "The keyword to search for."}}
    }))
    .map_err(|r| DataError::format(path, 1, r))?;
    let doc = read_json(path)?;
    for (i, rec) in as_array(&doc, path)?.iter().enumerate() {
        let query = str_field(rec, "requirement", path, i + 1)?;
        let apis = super::arr_field(rec, "apis", path, i + 1)?;
        let mut tools = vec![searcher.clone()];
        let mut context: Vec<Message> = Vec::new();
        for (j, a) in apis.iter().enumerate() {
            let Some(name) = a.get("api_name").and_then(Value::as_str) else {
                out.drops.add(SOURCE, "call_without_name");
                break;
            };
            let args = match super::arguments(a.get("input")) {
                Ok(x) => x,
                Err(r) => {
                    out.drops.add(SOURCE, r);
                    break;
                }
            };
            let call = retort_core::Call::new(name, args);
            if tools.iter().any(|t| t.name == name) {
                out.examples.push(example(
                    SOURCE,
                    format!("{SOURCE}-l3-{i}-{j}"),
                    query,
                    tools.clone(),
                    vec![call.clone()],
                    Some(MODEL),
                    trim_context(context.clone()),
                ));
            } else {
                out.drops.add(SOURCE, "unknown_tool");
            }
            let result = a
                .get("output")
                .and_then(|o| o.get("output"))
                .cloned()
                .unwrap_or(Value::Null);
            if name == "ToolSearcher" && result.get("name").is_some() {
                match parse_apibank_tool(&result) {
                    Ok(t) => add_tool(&mut tools, t),
                    Err(r) => out.skipped_tools.add(SOURCE, r),
                }
            }
            context.push(msg(
                "assistant",
                serde_json::json!({"name": call.name, "arguments": call.arguments}).to_string(),
            ));
            context.push(msg("tool", result.to_string()));
        }
    }
    Ok(())
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let mut any = false;
    let l3 = dir.join("level-3.json");
    if l3.is_file() {
        any = true;
        level3(&l3, out)?;
    }
    for (file, tag, out_key) in FILES {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        any = true;
        let doc = read_json(&path)?;
        for (i, v) in as_array(&doc, &path)?.iter().enumerate() {
            match record(v, out_key, &path, i + 1)? {
                Ok((query, tools, calls, context)) => out.examples.push(example(
                    SOURCE,
                    format!("{SOURCE}-{tag}-{i}"),
                    &query,
                    tools,
                    calls,
                    Some(MODEL),
                    context,
                )),
                Err(reason) => out.drops.add(SOURCE, reason),
            }
        }
    }
    if !any {
        return Err(DataError::Missing {
            path: dir.join(FILES[0].0),
            what: "no API-Bank file found".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::validate_all;
    use serde_json::json;

    #[test]
    fn imports_lv3_record_with_retrieved_tool() {
        let input = concat!(
            r#"{"apiCode": "ToolSearcher", "description": "Searches tools.", "parameters": {"keywords": {"type": "str", "description": "kw"}}, "response": {"best_matchs": {"type": "Union[List[dict], dict]", "description": "x"}}}"#,
            "\nUser: Find a cardiologist in Los Angeles.TIME: 2034-04-15 10:00:00\n",
            "API-Request: [ToolSearcher(keywords='appointment checker')]->{'name': 'Checker', 'description': 'Checks.', 'input_parameters': {'specialty': {'type': 'str', 'description': 's'}, 'location': {'type': 'str', 'description': 'l'}}, 'output_parameters': {}}\n",
            "Generate API Request: "
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data = json!([
            {"instruction": "x", "input": input, "output": "API-Request: [Checker(specialty='cardiologist', location='Los Angeles')]"},
            {"instruction": "x", "input": input, "output": "API-Request: [Unknown(a=1)]"},
            {"instruction": "x", "input": input, "output": "API-Request: Checker("},
        ]);
        std::fs::write(dir.path().join("lv3-api-train.json"), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 1);
        let ex = &out.examples[0];
        assert_eq!(
            ex.query,
            "Find a cardiologist in Los Angeles. TIME: 2034-04-15 10:00:00"
        );
        let names: Vec<&str> = ex.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ToolSearcher", "Checker"]);
        assert_eq!(ex.calls[0].arguments["location"], "Los Angeles");
        assert_eq!(ex.context.len(), 2);
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        assert_eq!(out.drops.count(SOURCE, "unknown_tool"), 1);
        assert_eq!(out.drops.count(SOURCE, "unparseable_call"), 1);
    }

    #[test]
    fn level1_dialogue_uses_instruction_tools() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = json!([{
            "instruction": "Generate...\nAPI descriptions:\n{\"name\": \"QueryMeeting\", \"description\": \"d\", \"input_parameters\": {\"user_name\": {\"type\": \"str\", \"description\": \"n\"}}, \"output_parameters\": {}}",
            "input": "User: Hi\nAI: Hello\nUser: Meetings of John?\nGenerate API Request:\n",
            "expected_output": "API-Request: [QueryMeeting(user_name='John')]"
        }]);
        std::fs::write(dir.path().join("level-1-api.json"), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 1);
        assert_eq!(out.examples[0].query, "Meetings of John?");
        assert_eq!(out.examples[0].context.len(), 2);
        assert_eq!(out.examples[0].id, "apibank-l1-0");
    }

    #[test]
    fn level3_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = json!([{"requirement": "Query meeting of John.", "apis": [
            {"api_name": "ToolSearcher", "input": {"keywords": "QueryMeeting"}, "output": {"output": {"name": "QueryMeeting",
                "description": "d", "input_parameters": {"user_name": {"type": "str", "description": "n"}}, "output_parameters": {}}}},
            {"api_name": "QueryMeeting", "input": {"user_name": "John"}, "output": {"output": {"meetings": []}}},
            {"api_name": "SendEmail", "input": {"to": "x"}, "output": {}}
        ]}]);
        std::fs::write(dir.path().join("level-3.json"), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        assert_eq!(out.examples[1].tools.len(), 2);
        assert_eq!(out.examples[1].context.len(), 2);
        assert_eq!(
            validate_all(&out.examples[1].calls, &out.examples[1].tools),
            Ok(())
        );
        assert_eq!(out.drops.count(SOURCE, "unknown_tool"), 1);
    }

    #[test]
    fn not_an_array_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lv3-api-train.json"), "{\"a\": 1}").expect("write");
        let e = import(dir.path(), &mut Imported::default()).expect_err("bad");
        assert!(
            e.to_string()
                .contains("lv3-api-train.json:1: expected a JSON array"),
            "{e}"
        );
    }
}
