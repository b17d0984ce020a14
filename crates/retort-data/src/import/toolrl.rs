//! ToolRL: `rlla_sft.json` (Alpaca records: the tools are listed in
//! `instruction` as `N. Name: ..\nDescription: ..\nParameters: {json}`, the
//! dialogue in `input` as `<user> .. </user>`, `<tool_call>`, `<obs>`,
//! `<response>` blocks, and the answer in `output`) and `test.jsonl` (the same
//! fields under `extra_info`, the answer under `reward_model.ground_truth`).
//!
//! The calls are the JSON lines of the answer's `<tool_call>` block
//! (`{"name", "parameters"}`); an answer without one is a no-call example.

use std::path::Path;

use serde_json::Value;

use retort_core::{Call, Message, Tool};

use super::{Imported, as_array, example, msg, tool_from_parts, trim_context};
use crate::error::DataError;
use crate::io::{read_json, read_jsonl};
use crate::schema_fix::object_schema;

pub const SOURCE: &str = "toolrl";
const MODEL: &str = "ToolACE/xLAM mix";

/// Parse the numbered tool list of a ToolRL instruction.
pub fn parse_tool_list(instruction: &str) -> Result<Vec<Tool>, String> {
    let mut tools: Vec<Tool> = Vec::new();
    let mut name: Option<String> = None;
    let mut desc = String::new();
    for line in instruction.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .split_once(". Name: ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            .map(|(_, r)| r)
        {
            name = Some(rest.trim().to_string());
            desc.clear();
        } else if let Some(d) = t.strip_prefix("Description: ") {
            desc = d.trim().to_string();
        } else if let Some(p) = t.strip_prefix("Parameters: ") {
            let Some(n) = name.take() else { continue };
            let params = match serde_json::from_str::<Value>(p) {
                Ok(Value::Object(m)) => object_schema(&m, None),
                _ => return Err("tool_schema/unparseable_parameters".into()),
            };
            let tool = tool_from_parts(&n, &desc, params)?;
            if tools.iter().any(|x| x.name == tool.name) {
                return Err("tool_schema/duplicate_name".into());
            }
            tools.push(tool);
        }
    }
    Ok(tools)
}

/// The calls of an answer's `<tool_call>` block; no block means no call.
pub fn parse_answer(output: &str) -> Result<Vec<Call>, String> {
    let Some(start) = output.find("<tool_call>") else {
        return Ok(Vec::new());
    };
    let body = &output[start + "<tool_call>".len()..];
    let body = body.split("</tool_call>").next().unwrap_or(body);
    let mut calls = Vec::new();
    for line in body.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|_| "unparseable_call".to_string())?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("call_without_name")?;
        let args = super::arguments(v.get("parameters").or_else(|| v.get("arguments")))?;
        calls.push(Call::new(name, args));
    }
    if calls.is_empty() {
        return Err("empty_tool_call_block".into());
    }
    Ok(calls)
}

/// Split the dialogue history into the last user message and the turns
/// before it.
pub fn parse_dialogue(input: &str) -> Option<(String, Vec<Message>)> {
    let mut turns: Vec<Message> = Vec::new();
    let tags = [
        ("<user>", "</user>", "user"),
        ("<tool_call>", "</tool_call>", "assistant"),
        ("<obs>", "</obs>", "tool"),
        ("<response>", "</response>", "assistant"),
    ];
    let mut rest = input;
    loop {
        let next = tags
            .iter()
            .filter_map(|(o, c, r)| rest.find(o).map(|i| (i, *o, *c, *r)))
            .min_by_key(|x| x.0);
        let Some((i, open, close, role)) = next else {
            break;
        };
        let after = &rest[i + open.len()..];
        let (content, remaining) = match after.find(close) {
            Some(j) => (&after[..j], &after[j + close.len()..]),
            None => (after, ""),
        };
        turns.push(msg(role, content.trim()));
        rest = remaining;
    }
    let last_user = turns.iter().rposition(|m| m.role == "user")?;
    let query = turns.remove(last_user).content;
    turns.truncate(last_user);
    Some((query, turns))
}

fn record(instruction: &str, input: &str, output: &str, id: String, out: &mut Imported) {
    let tools = match parse_tool_list(instruction) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => return out.drops.add(SOURCE, "no_tools"),
        Err(r) => return out.drops.add(SOURCE, r),
    };
    let Some((query, context)) = parse_dialogue(input) else {
        return out.drops.add(SOURCE, "no_user_turn");
    };
    match parse_answer(output) {
        Ok(calls) => out.examples.push(example(
            SOURCE,
            id,
            &query,
            tools,
            calls,
            Some(MODEL),
            trim_context(context),
        )),
        Err(r) => out.drops.add(SOURCE, r),
    }
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let mut any = false;
    let sft = dir.join("rlla_sft.json");
    if sft.is_file() {
        any = true;
        let doc = read_json(&sft)?;
        for (i, v) in as_array(&doc, &sft)?.iter().enumerate() {
            let instruction = super::str_field(v, "instruction", &sft, i + 1)?;
            let input = super::str_field(v, "input", &sft, i + 1)?;
            let output = super::str_field(v, "output", &sft, i + 1)?;
            record(instruction, input, output, format!("{SOURCE}-sft-{i}"), out);
        }
    }
    let test = dir.join("test.jsonl");
    if test.is_file() {
        any = true;
        for (line, v) in read_jsonl(&test)? {
            let extra = v.get("extra_info").cloned().unwrap_or(Value::Null);
            let instruction = super::str_field(&extra, "instruction", &test, line)?;
            let input = super::str_field(&extra, "input", &test, line)?;
            let output = v
                .get("reward_model")
                .and_then(|r| r.get("ground_truth"))
                .and_then(Value::as_str)
                .or_else(|| extra.get("output").and_then(Value::as_str))
                .ok_or_else(|| {
                    DataError::format(&test, line, "missing reward_model.ground_truth")
                })?;
            record(
                instruction,
                input,
                output,
                format!("{SOURCE}-test-{line}"),
                out,
            );
        }
    }
    if !any {
        return Err(DataError::Missing {
            path: sft,
            what: "no ToolRL file found".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Category, validate_all};
    use serde_json::json;

    const INSTR: &str = "You are...\n**Available Tools**\n1. Name: Search Managers\nDescription: Search managers\nParameters: {\"name\": {\"description\": \"n\", \"type\": \"string\", \"default\": \"\"}}\n2. Name: Event Result\nDescription: Result\nParameters: {\"evt\": {\"description\": \"id\", \"type\": \"float\", \"default\": \"\"}, \"ids\": {\"description\": \"x\", \"type\": \"List[int]\"}}\n\n**Steps for Each Turn**\n1. **Think:** ...";

    #[test]
    fn sft_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = json!([
            {"instruction": INSTR, "input": "**Dialogue Records History**\n<user> Find Alex Ferguson </user>",
             "output": "<think> ok </think>\n<tool_call>\n{\"name\": \"Search Managers\", \"parameters\": {\"name\": \"Alex Ferguson\"}}\n{\"name\": \"Event Result\", \"parameters\": {\"evt\": 3}}\n</tool_call>"},
            {"instruction": INSTR, "input": "<user> a </user>\n<response> b </response>\n<user> hello there </user>",
             "output": "<think> no tool </think>\n<response> Hi! </response>"},
            {"instruction": INSTR, "input": "<user> a </user>", "output": "<tool_call>\n{not json}\n</tool_call>"}
        ]);
        std::fs::write(dir.path().join("rlla_sft.json"), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        let ex = &out.examples[0];
        assert_eq!(ex.query, "Find Alex Ferguson");
        assert_eq!(ex.category(), Category::Parallel);
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        let no = &out.examples[1];
        assert_eq!(no.category(), Category::NoCall);
        assert_eq!(no.query, "hello there");
        assert_eq!(no.context.len(), 2);
        assert_eq!(out.drops.count(SOURCE, "unparseable_call"), 1);
    }

    #[test]
    fn test_jsonl_uses_extra_info() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = json!({"prompt": "x", "reward_model": {"ground_truth": "<tool_call>\n{\"name\": \"Event Result\", \"parameters\": {\"evt\": 1.5}}\n</tool_call>"},
            "extra_info": {"instruction": INSTR, "input": "<user> result of event 1.5 </user>"}});
        std::fs::write(
            dir.path().join("test.jsonl"),
            format!("{rec}\n{{\"extra_info\": {{}}}}\n"),
        )
        .expect("write");
        let e = import(dir.path(), &mut Imported::default()).expect_err("line 2 is incomplete");
        assert!(e.to_string().contains("test.jsonl:2:"), "{e}");
    }
}
