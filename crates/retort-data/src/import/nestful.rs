//! NESTFUL: three pairs of files, `executable-{data,spec}.json`,
//! `non-executable-glaive-{data,spec}.json` and
//! `non-executable-sgd-{data,spec}.json`. A data record is `{input, output:
//! [{name, arguments, label}]}`; the spec lists the tools with
//! `query_parameters` / `path_parameters` / `parameters` / `arguments`
//! (property-level `required`, `allowed_values`, `default_value`).
//!
//! Nested references to earlier outputs (`"$var1.skyId$"`) are kept as string
//! values when the parameter is a string: the student learns to emit the
//! reference. A reference in a parameter of another type cannot be written,
//! so the sequence is cut before that call (counted in `import_notes` as
//! `truncated_at_non_string_reference`; dropped as
//! `reference_in_non_string_parameter` when it is the first call). The final
//! pseudo-call `var_result` only collects outputs and is removed.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use retort_core::{Call, SchemaType, Tool};

use super::{Imported, as_array, example, tool_from_parts};
use crate::error::DataError;
use crate::io::read_json;
use crate::schema_fix::object_schema;

pub const SOURCE: &str = "nestful";
const PAIRS: &[(&str, &str, &str)] = &[
    ("executable-data.json", "executable-spec.json", "exec"),
    (
        "non-executable-glaive-data.json",
        "non-executable-glaive-spec.json",
        "glaive",
    ),
    (
        "non-executable-sgd-data.json",
        "non-executable-sgd-spec.json",
        "sgd",
    ),
];

/// Parse one NESTFUL spec entry.
pub fn parse_spec_tool(v: &Value) -> Result<Tool, String> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("tool_schema/missing_name")?;
    let desc = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut props = Map::new();
    for key in [
        "path_parameters",
        "query_parameters",
        "parameters",
        "arguments",
    ] {
        if let Some(Value::Object(m)) = v.get(key) {
            for (k, p) in m {
                props.insert(k.clone(), p.clone());
            }
        }
    }
    tool_from_parts(name, desc, object_schema(&props, None))
}

/// `$var1.x$` / `$var2$`: a reference to an earlier call's output.
fn is_reference(s: &str) -> bool {
    s.len() > 2 && s.starts_with("$var") && s.ends_with('$')
}

fn pair(data: &Path, spec: &Path, tag: &str, out: &mut Imported) -> Result<(), DataError> {
    let spec_doc = read_json(spec)?;
    let mut tools: HashMap<String, Result<Tool, String>> = HashMap::new();
    for v in as_array(&spec_doc, spec)? {
        let parsed = parse_spec_tool(v);
        if let Err(r) = &parsed {
            out.skipped_tools.add(SOURCE, r.clone());
        }
        if let Some(n) = v.get("name").and_then(Value::as_str) {
            tools.entry(n.to_string()).or_insert(parsed);
        }
    }
    let doc = read_json(data)?;
    for (i, rec) in as_array(&doc, data)?.iter().enumerate() {
        let query = super::str_field(rec, "input", data, i + 1)?;
        let steps = super::arr_field(rec, "output", data, i + 1)?;
        let mut calls = Vec::new();
        let mut ex_tools: Vec<Tool> = Vec::new();
        let mut drop = None;
        for s in steps {
            let Some(name) = s.get("name").and_then(Value::as_str) else {
                drop = Some("call_without_name".to_string());
                break;
            };
            if name == "var_result" {
                continue;
            }
            match tools.get(name) {
                None => {
                    drop = Some("unknown_tool".into());
                    break;
                }
                Some(Err(r)) => {
                    drop = Some(r.clone());
                    break;
                }
                Some(Ok(t)) => {
                    if !ex_tools.iter().any(|x| x.name == t.name) {
                        ex_tools.push(t.clone());
                    }
                }
            }
            let args = match super::arguments(s.get("arguments")) {
                Ok(a) => a,
                Err(r) => {
                    drop = Some(r);
                    break;
                }
            };
            // A reference where the schema wants a number, boolean, ... can
            // not be written as a value: keep the calls before this one.
            let tool = ex_tools.iter().find(|t| t.name == name);
            let bad_ref = args.iter().any(|(k, v)| {
                v.as_str().is_some_and(is_reference)
                    && tool
                        .and_then(|t| t.parameters.properties.get(k))
                        .is_some_and(|p| !matches!(p.ty, SchemaType::String | SchemaType::Any))
            });
            if bad_ref {
                if calls.is_empty() {
                    drop = Some("reference_in_non_string_parameter".into());
                } else {
                    out.notes.add(SOURCE, "truncated_at_non_string_reference");
                }
                break;
            }
            calls.push(Call::new(name, args));
        }
        if calls.is_empty() && drop.is_none() {
            drop = Some("no_calls".into());
        }
        match drop {
            Some(r) => out.drops.add(SOURCE, r),
            None => out.examples.push(example(
                SOURCE,
                format!("{SOURCE}-{tag}-{i}"),
                query,
                ex_tools,
                calls,
                None,
                Vec::new(),
            )),
        }
    }
    Ok(())
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let mut any = false;
    for (data, spec, tag) in PAIRS {
        let d = dir.join(data);
        if !d.is_file() {
            continue;
        }
        any = true;
        let s = super::need(dir, spec)?;
        pair(&d, &s, tag, out)?;
    }
    if !any {
        return Err(DataError::Missing {
            path: dir.join(PAIRS[0].0),
            what: "no NESTFUL data file found".into(),
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
    fn nested_sequence_keeps_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = json!([
            {"name": "Search", "description": "s", "query_parameters": {"query": {"type": "String", "required": true, "description": "q"}}},
            {"name": "Flights", "description": "f", "query_parameters": {"originSkyId": {"type": "string", "required": true},
                "adults": {"type": "Number", "required": false}, "cabin": {"type": "Enum", "allowed_values": ["economy", "first"]}}},
        ]);
        let data = json!([
            {"input": "Flights from New York", "output": [
                {"name": "Search", "arguments": {"query": "New York"}, "label": "var1"},
                {"name": "Flights", "arguments": {"originSkyId": "$var1.skyId$", "cabin": "economy"}, "label": "var2"},
                {"name": "var_result", "arguments": {"r": "$var2$"}}]},
            {"input": "x", "output": [{"name": "Missing", "arguments": {}}]},
            {"input": "y", "output": [
                {"name": "Search", "arguments": {"query": "Paris"}, "label": "var1"},
                {"name": "Flights", "arguments": {"originSkyId": "a", "adults": "$var1.n$"}, "label": "var2"}]}
        ]);
        std::fs::write(dir.path().join("executable-spec.json"), spec.to_string()).expect("write");
        std::fs::write(dir.path().join("executable-data.json"), data.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        assert_eq!(
            out.examples[1].calls.len(),
            1,
            "cut before the numeric reference"
        );
        assert_eq!(
            out.notes.count(SOURCE, "truncated_at_non_string_reference"),
            1
        );
        let ex = &out.examples[0];
        assert_eq!(ex.category(), Category::Parallel);
        assert_eq!(ex.calls.len(), 2);
        assert_eq!(ex.calls[1].arguments["originSkyId"], "$var1.skyId$");
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        assert_eq!(out.drops.count(SOURCE, "unknown_tool"), 1);
    }

    #[test]
    fn missing_spec_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("executable-data.json"), "[]").expect("write");
        let e = import(dir.path(), &mut Imported::default()).expect_err("no spec");
        assert!(e.to_string().contains("executable-spec.json"), "{e}");
    }
}
