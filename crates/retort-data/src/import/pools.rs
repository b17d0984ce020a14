//! Pools: tools to draw distractors from, and queries without calls kept as
//! unlabelled requests for a live teacher.
//!
//! - LiveMCPBench `tools.json`: servers, each with `tools: {server: {tools:
//!   [MCP tool]}}` (`inputSchema`). Queries: `Question` of
//!   `claude-sonnet-4_trajectories.json`.
//! - MetaTool `plugin_info.json`: plugins (`name_for_model`,
//!   `description_for_model`) become tools without parameters. Queries:
//!   `all_clean_data.csv` (`Query,Tool`) and `multi_tool_query_golden.json`
//!   (`query`, `tool` list), with the tool names as a hint.
//! - TaskBench `data_*_tool_desc.json` (`nodes: [{id, desc, parameters:
//!   [{name, type, desc}]}]`; the Hugging Face graph has no parameters).
//!   Queries: `data_*_user_requests.json` (JSON lines, `user_request`).

use std::path::Path;

use serde_json::{Map, Value, json};

use retort_core::ToolFormat;

use super::{Imported, PoolTool, Unlabelled, as_array, parse_tool, tool_from_parts};
use crate::error::DataError;
use crate::io::{read_json, read_json_or_jsonl};
use crate::schema_fix::loose_type;

fn push_tool(out: &mut Imported, source: &str, r: Result<retort_core::Tool, String>) {
    match r {
        Ok(tool) => out.pool.push(PoolTool {
            source: source.into(),
            tool,
        }),
        Err(reason) => out.skipped_tools.add(source, reason),
    }
}

pub fn livemcpbench(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    const S: &str = "livemcpbench";
    let path = super::need(dir, "tools.json")?;
    let doc = read_json(&path)?;
    for server in as_array(&doc, &path)? {
        let Some(Value::Object(groups)) = server.get("tools") else {
            continue;
        };
        for g in groups.values() {
            for t in g
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push_tool(out, S, parse_tool(t, ToolFormat::Mcp));
            }
        }
    }
    let traj = dir.join("claude-sonnet-4_trajectories.json");
    if traj.is_file() {
        let doc = read_json(&traj)?;
        for (i, t) in as_array(&doc, &traj)?.iter().enumerate() {
            if let Some(q) = t.get("Question").and_then(Value::as_str) {
                out.unlabelled.push(Unlabelled {
                    id: format!("{S}-{i}"),
                    source: S.into(),
                    query: q.trim().to_string(),
                    tool_hint: Vec::new(),
                });
            }
        }
    }
    Ok(())
}

/// Parse CSV text (RFC 4180 quoting) into rows of fields, with the 1-based
/// line each row starts on.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, usize> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    let mut field_started = false;
    // A row made of one quoted empty field is a row, not a blank line.
    let mut row_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                in_quotes = true;
                field_started = true;
                row_quoted = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                field_started = false;
                if row_quoted || !(row.len() == 1 && row[0].is_empty()) {
                    rows.push((row_line, std::mem::take(&mut row)));
                } else {
                    row.clear();
                }
                row_quoted = false;
                line += 1;
                row_line = line;
            }
            _ => {
                field_started = true;
                field.push(c);
            }
        }
    }
    if in_quotes {
        return Err(row_line);
    }
    if field_started || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

pub fn metatool(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    const S: &str = "metatool";
    let plugins = dir.join("plugin_info.json");
    if plugins.is_file() {
        let doc = read_json(&plugins)?;
        for p in as_array(&doc, &plugins)? {
            let name = p
                .get("name_for_model")
                .and_then(Value::as_str)
                .unwrap_or("");
            let desc = p
                .get("description_for_model")
                .or_else(|| p.get("description_for_human"))
                .and_then(Value::as_str)
                .unwrap_or("");
            push_tool(
                out,
                S,
                tool_from_parts(name, desc, json!({"type": "object", "properties": {}})),
            );
        }
    }
    let csv = dir.join("all_clean_data.csv");
    if csv.is_file() {
        let text = std::fs::read_to_string(&csv).map_err(|e| DataError::io(&csv, e))?;
        let rows = parse_csv(&text)
            .map_err(|l| DataError::format(&csv, l, "unterminated quoted field"))?;
        for (line, row) in rows.into_iter().skip(1) {
            let [q, tool] = row.as_slice() else {
                return Err(DataError::format(
                    &csv,
                    line,
                    format!("expected 2 fields (Query,Tool), got {}", row.len()),
                ));
            };
            out.unlabelled.push(Unlabelled {
                id: format!("{S}-csv-{line}"),
                source: S.into(),
                query: q.trim().to_string(),
                tool_hint: vec![tool.clone()],
            });
        }
    }
    let multi = dir.join("multi_tool_query_golden.json");
    if multi.is_file() {
        let doc = read_json(&multi)?;
        for (i, r) in as_array(&doc, &multi)?.iter().enumerate() {
            let Some(q) = r.get("query").and_then(Value::as_str) else {
                continue;
            };
            let hint = r
                .get("tool")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.unlabelled.push(Unlabelled {
                id: format!("{S}-multi-{i}"),
                source: S.into(),
                query: q.trim().to_string(),
                tool_hint: hint,
            });
        }
    }
    Ok(())
}

/// A TaskBench tool node.
pub fn taskbench_tool(node: &Value) -> Result<retort_core::Tool, String> {
    let name = node
        .get("id")
        .and_then(Value::as_str)
        .ok_or("tool_schema/missing_name")?;
    let desc = node.get("desc").and_then(Value::as_str).unwrap_or("");
    let mut props = Map::new();
    for p in node
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pn) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
        let mut s = loose_type(ty).unwrap_or_else(|| json!({"type": ty}));
        if let (Some(d), Some(m)) = (p.get("desc").and_then(Value::as_str), s.as_object_mut()) {
            m.insert("description".into(), json!(d));
        }
        props.insert(pn.to_string(), s);
    }
    tool_from_parts(name, desc, json!({"type": "object", "properties": props}))
}

pub fn taskbench(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    const S: &str = "taskbench";
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with("_tool_desc.json") {
            let doc = read_json(&path)?;
            let nodes = doc
                .get("nodes")
                .and_then(Value::as_array)
                .ok_or_else(|| DataError::format(&path, 1, "missing \"nodes\" list"))?;
            for n in nodes {
                push_tool(out, S, taskbench_tool(n));
            }
        } else if name.ends_with("_user_requests.json") {
            let graph = name
                .trim_start_matches("data_")
                .trim_end_matches("_user_requests.json");
            for (line, r) in read_json_or_jsonl(&path)? {
                let Some(q) = r.get("user_request").and_then(Value::as_str) else {
                    return Err(DataError::format(
                        &path,
                        line,
                        "missing string field \"user_request\"",
                    ));
                };
                let id = r
                    .get("id")
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .unwrap_or_else(|| line.to_string());
                out.unlabelled.push(Unlabelled {
                    id: format!("{S}-{graph}-{id}"),
                    source: S.into(),
                    query: q.trim().to_string(),
                    tool_hint: Vec::new(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_errors() {
        let rows = parse_csv("Query,Tool\n\"a, \"\"b\"\"\",T1\nplain,T2\n").expect("ok");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].1, vec!["a, \"b\"".to_string(), "T1".to_string()]);
        assert_eq!(rows[2].0, 3);
        assert_eq!(parse_csv("a,b\n\"open,x\n"), Err(2));
    }

    fn to_csv(rows: &[Vec<String>]) -> String {
        let mut out = String::new();
        for r in rows {
            let fields: Vec<String> = r
                .iter()
                .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
                .collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn csv_roundtrip(rows in proptest::collection::vec(
            proptest::collection::vec("[^\r]{0,12}", 1..4), 1..6)) {
            let parsed = parse_csv(&to_csv(&rows)).expect("own output parses");
            let got: Vec<Vec<String>> = parsed.into_iter().map(|(_, r)| r).collect();
            proptest::prop_assert_eq!(got, rows);
        }

        #[test]
        fn csv_never_panics(s in "[a-z,\"\n\r ]{0,40}") {
            let _ = parse_csv(&s);
        }
    }

    #[test]
    fn pools_from_inline_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mcp = dir.path().join("mcp");
        std::fs::create_dir_all(&mcp).expect("mkdir");
        std::fs::write(mcp.join("tools.json"), json!([{"name": "srv", "tools": {"s": {"tools": [
            {"name": "read_file", "description": "Read", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
            {"name": "bad", "inputSchema": {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}]}}}}
        ]}}}]).to_string()).expect("write");
        let mut out = Imported::default();
        livemcpbench(&mcp, &mut out).expect("ok");
        assert_eq!(out.pool.len(), 1);
        assert_eq!(
            out.skipped_tools
                .count("livemcpbench", "tool_schema/unsupported:anyOf"),
            1
        );

        let meta = dir.path().join("meta");
        std::fs::create_dir_all(&meta).expect("mkdir");
        std::fs::write(
            meta.join("all_clean_data.csv"),
            "Query,Tool\nFind papers,ResearchHelper\nbroken\n",
        )
        .expect("write");
        let e = metatool(&meta, &mut Imported::default()).expect_err("row 3 has 1 field");
        assert!(
            e.to_string()
                .contains("all_clean_data.csv:3: expected 2 fields"),
            "{e}"
        );

        let tb = dir.path().join("tb");
        std::fs::create_dir_all(&tb).expect("mkdir");
        std::fs::write(
            tb.join("data_x_tool_desc.json"),
            json!({"nodes": [{"id": "get_weather", "desc": "w",
            "parameters": [{"name": "date", "type": "date", "desc": "d"}]}]})
            .to_string(),
        )
        .expect("write");
        std::fs::write(
            tb.join("data_x_user_requests.json"),
            "{\"id\": \"1\", \"user_request\": \"weather today\"}\n",
        )
        .expect("write");
        let mut out = Imported::default();
        taskbench(&tb, &mut out).expect("ok");
        assert_eq!(out.pool.len(), 1);
        assert_eq!(out.unlabelled[0].id, "taskbench-x-1");
    }
}
