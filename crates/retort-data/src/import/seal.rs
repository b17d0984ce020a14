//! Seal-Tools: `Seal-Tools_Dataset_tool.jsonl` (the tool pool: `api_name`,
//! `api_description`, `parameters` with Python type names, `required`) and the
//! query files `Seal-Tools_Dataset_{dev,test_in_domain,test_out_domain}.jsonl`
//! (`query` plus gold `calling: [{api, parameters}]`).
//!
//! Nested calls whose argument is an earlier call's output (`"API_call_0"`)
//! are kept with that reference as a string value; if the parameter is not a
//! string, validation drops the example later (counted).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use retort_core::{Call, Tool};

use super::{Imported, PoolTool, example, str_field, tool_from_parts};
use crate::error::DataError;
use crate::io::read_jsonl;
use crate::schema_fix::object_schema;

pub const SOURCE: &str = "seal";
const MODEL: &str = "gpt-3.5-turbo";
const TOOL_FILE: &str = "Seal-Tools_Dataset_tool.jsonl";
const SPLITS: &[&str] = &["dev", "test_in_domain", "test_out_domain"];

/// Parse one line of the Seal tool file.
pub fn parse_seal_tool(v: &Value) -> Result<Tool, String> {
    let name = v
        .get("api_name")
        .and_then(Value::as_str)
        .ok_or("tool_schema/missing_name")?;
    let desc = v
        .get("api_description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = match v.get("parameters") {
        Some(Value::Object(p)) => object_schema(p, v.get("required")),
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(_) => return Err("tool_schema/parameters_not_object".into()),
    };
    tool_from_parts(name, desc, params)
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let tool_path = super::need(dir, TOOL_FILE)?;
    let mut tools: HashMap<String, Result<Tool, String>> = HashMap::new();
    for (_, v) in read_jsonl(&tool_path)? {
        let parsed = parse_seal_tool(&v);
        match &parsed {
            Ok(t) => out.pool.push(PoolTool {
                source: SOURCE.into(),
                tool: t.clone(),
            }),
            Err(reason) => out.skipped_tools.add(SOURCE, reason.clone()),
        }
        if let Some(name) = v.get("api_name").and_then(Value::as_str) {
            tools.entry(name.to_string()).or_insert(parsed);
        }
    }
    for split in SPLITS {
        let path = dir.join(format!("Seal-Tools_Dataset_{split}.jsonl"));
        if !path.is_file() {
            continue;
        }
        for (line, v) in read_jsonl(&path)? {
            let query = str_field(&v, "query", &path, line)?;
            let id = match v.get("id").and_then(Value::as_str) {
                Some(i) => format!("{SOURCE}-{i}"),
                None => format!("{SOURCE}-{split}-{line}"),
            };
            let calling = super::arr_field(&v, "calling", &path, line)?;
            let mut calls = Vec::new();
            let mut ex_tools: Vec<Tool> = Vec::new();
            let mut drop = None;
            for c in calling {
                let Some(api) = c.get("api").and_then(Value::as_str) else {
                    drop = Some("call_without_name".to_string());
                    break;
                };
                let args = match super::arguments(c.get("parameters")) {
                    Ok(a) => a,
                    Err(r) => {
                        drop = Some(r);
                        break;
                    }
                };
                match tools.get(api) {
                    None => {
                        drop = Some("unknown_tool".into());
                        break;
                    }
                    Some(Err(reason)) => {
                        drop = Some(reason.clone());
                        break;
                    }
                    Some(Ok(t)) => {
                        if !ex_tools.iter().any(|x| x.name == t.name) {
                            ex_tools.push(t.clone());
                        }
                    }
                }
                calls.push(Call::new(api, args));
            }
            if calls.is_empty() && drop.is_none() {
                drop = Some("no_calls".into());
            }
            match drop {
                Some(r) => out.drops.add(SOURCE, r),
                None => out.examples.push(example(
                    SOURCE,
                    id,
                    query,
                    ex_tools,
                    calls,
                    Some(MODEL),
                    Vec::new(),
                )),
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
    fn imports_inline_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(TOOL_FILE),
            concat!(
                r#"{"api_name": "getWaterQuality", "api_description": "Water quality", "parameters": {"location": {"type": "str", "description": "where"}, "depth": {"type": "float", "description": "m"}}, "required": ["location"]}"#,
                "\n",
                r#"{"api_name": "broken", "api_description": "x", "parameters": {"a": {"type": "Callable"}}}"#,
                "\n"
            ),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("Seal-Tools_Dataset_dev.jsonl"),
            concat!(
                r#"{"id": "dev-easy-3", "query": "Tell me the water quality of the lake.", "calling": [{"api": "getWaterQuality", "parameters": {"location": "lake"}, "responses": ["API_call_0"]}]}"#,
                "\n",
                r#"{"id": "dev-easy-4", "query": "q", "calling": [{"api": "broken", "parameters": {}}]}"#,
                "\n",
                r#"{"id": "dev-easy-5", "query": "q", "calling": [{"api": "nope", "parameters": {}}]}"#,
                "\n"
            ),
        )
        .expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 1);
        let ex = &out.examples[0];
        assert_eq!(ex.id, "seal-dev-easy-3");
        assert_eq!(ex.calls[0].arguments["location"], "lake");
        assert!(ex.tools[0].parameters.is_required("location"));
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        assert_eq!(out.drops.count(SOURCE, "unknown_tool"), 1);
        assert_eq!(
            out.drops.count(SOURCE, "tool_schema/unknown_type:Callable"),
            1
        );
        assert_eq!(out.pool.len(), 1);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TOOL_FILE), "").expect("write");
        std::fs::write(
            dir.path().join("Seal-Tools_Dataset_dev.jsonl"),
            "{\"query\": \"q\", \"calling\": []}\n{\"query\": 3, \"calling\": []}\n",
        )
        .expect("write");
        let e = import(dir.path(), &mut Imported::default()).expect_err("line 2 has no query");
        assert!(
            e.to_string()
                .contains("Seal-Tools_Dataset_dev.jsonl:2: missing string field \"query\""),
            "{e}"
        );
    }
}
