//! ToolAlpaca: `eval_real.json` and `eval_simulated.json`, one record per
//! API with `Function_Description` (function name -> `"description\n
//! Parameters: {json}\nOutput: .."`, each parameter written as
//! `"Required. integer. description"`), `Instructions` (the queries) and
//! `Golden_Answers` (per instruction, a list of `{Action, Action_Input}`
//! with the arguments as a JSON string). Lists and dicts stored as Python
//! `repr` strings are read with [`crate::pylit`].

use std::path::Path;

use serde_json::{Map, Value, json};

use retort_core::{Call, Tool};

use super::{Imported, as_array, example, tool_from_parts};
use crate::error::DataError;
use crate::io::read_json;
use crate::pylit::parse_literal;
use crate::schema_fix::loose_type;

pub const SOURCE: &str = "toolalpaca";
const MODEL: &str = "gpt-3.5-turbo";
const FILES: &[(&str, &str)] = &[("eval_real.json", "real"), ("eval_simulated.json", "sim")];

/// Read a field that is either JSON already or a Python literal string.
fn field(v: &Value, key: &str) -> Option<Value> {
    match v.get(key)? {
        Value::String(s) => parse_literal(s).ok(),
        other => Some(other.clone()),
    }
}

/// Parse `"Required. integer. description"` into a schema and a flag.
pub fn parse_param(text: &str) -> (Value, bool) {
    let (required, rest) = match text.strip_prefix("Required.") {
        Some(r) => (true, r.trim_start()),
        None => (false, text),
    };
    let (ty, desc) = match rest.split_once(". ") {
        Some((t, d)) => (t.trim(), d.trim()),
        None => (rest.trim().trim_end_matches('.'), ""),
    };
    let mut schema = match loose_type(ty) {
        Some(s) => s,
        None if ty.to_ascii_lowercase().starts_with("array") => json!({"type": "array"}),
        None => json!({}),
    };
    if !desc.is_empty()
        && let Some(m) = schema.as_object_mut()
    {
        m.insert("description".into(), json!(desc));
    }
    (schema, required)
}

/// Parse one entry of `Function_Description`.
pub fn parse_function(name: &str, text: &str) -> Result<Tool, String> {
    let (desc, rest) = match text.split_once("\nParameters:") {
        Some((d, r)) => (d.trim(), r),
        None => (text.lines().next().unwrap_or("").trim(), ""),
    };
    let params_line = rest.lines().next().unwrap_or("").trim();
    let mut props = Map::new();
    let mut required = Vec::new();
    if !params_line.is_empty() {
        let Ok(Value::Object(ps)) = serde_json::from_str::<Value>(params_line) else {
            return Err("tool_schema/unparseable_parameters".into());
        };
        for (k, v) in ps {
            let (schema, req) = parse_param(v.as_str().unwrap_or(""));
            if req {
                required.push(k.clone());
            }
            props.insert(k, schema);
        }
    }
    let mut schema = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    tool_from_parts(name, desc, schema)
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let mut any = false;
    for (file, tag) in FILES {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        any = true;
        let doc = read_json(&path)?;
        for (a, api) in as_array(&doc, &path)?.iter().enumerate() {
            let line = a + 1;
            let Some(Value::Object(fd)) = field(api, "Function_Description") else {
                return Err(DataError::format(
                    &path,
                    line,
                    format!("record {a}: Function_Description is not a dict"),
                ));
            };
            let mut tools: Vec<Tool> = Vec::new();
            let mut errors: Vec<(String, String)> = Vec::new();
            for (name, text) in &fd {
                // `components` documents output formats; it is not a function.
                let Some(text) = text.as_str().filter(|_| name != "components") else {
                    continue;
                };
                match parse_function(name, text) {
                    Ok(t) => tools.push(t),
                    Err(r) => {
                        out.skipped_tools.add(SOURCE, r.clone());
                        errors.push((name.clone(), r));
                    }
                }
            }
            let (Some(Value::Array(instr)), Some(Value::Array(gold))) =
                (field(api, "Instructions"), field(api, "Golden_Answers"))
            else {
                return Err(DataError::format(
                    &path,
                    line,
                    format!("record {a}: Instructions / Golden_Answers are not lists"),
                ));
            };
            for (i, (q, g)) in instr.iter().zip(gold.iter()).enumerate() {
                let Some(q) = q.as_str() else {
                    out.drops.add(SOURCE, "query_not_string");
                    continue;
                };
                let steps = match g {
                    Value::Array(s) => s.clone(),
                    Value::String(s) => match parse_literal(s) {
                        Ok(Value::Array(s)) => s,
                        _ => {
                            out.drops.add(SOURCE, "unparseable_answer");
                            continue;
                        }
                    },
                    _ => {
                        out.drops.add(SOURCE, "unparseable_answer");
                        continue;
                    }
                };
                let mut calls = Vec::new();
                let mut drop = None;
                for s in &steps {
                    let Some(name) = s.get("Action").and_then(Value::as_str) else {
                        drop = Some("call_without_name".to_string());
                        break;
                    };
                    if !tools.iter().any(|t| t.name == name) {
                        drop = Some(
                            errors
                                .iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, r)| r.clone())
                                .unwrap_or_else(|| "unknown_tool".into()),
                        );
                        break;
                    }
                    match super::arguments(s.get("Action_Input")) {
                        Ok(args) => calls.push(Call::new(name, args)),
                        Err(r) => {
                            drop = Some(r);
                            break;
                        }
                    }
                }
                if calls.is_empty() && drop.is_none() {
                    drop = Some("no_calls".into());
                }
                match drop {
                    Some(r) => out.drops.add(SOURCE, r),
                    None => out.examples.push(example(
                        SOURCE,
                        format!("{SOURCE}-{tag}-{a}-{i}"),
                        q,
                        tools.clone(),
                        calls,
                        Some(MODEL),
                        Vec::new(),
                    )),
                }
            }
        }
    }
    if !any {
        return Err(DataError::Missing {
            path: dir.join(FILES[0].0),
            what: "no ToolAlpaca eval file found".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::validate_all;

    #[test]
    fn params() {
        let (s, r) = parse_param("Required. integer. The year.");
        assert!(r);
        assert_eq!(s, json!({"type": "integer", "description": "The year."}));
        let (s, r) = parse_param("Array[string]. tags");
        assert!(!r);
        assert_eq!(s["type"], "array");
        assert_eq!(parse_param("string.").0, json!({"type": "string"}));
    }

    #[test]
    fn imports_python_repr_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = r#"{'components': 'The detailed output format...', 'LongWeekend': 'Get long weekends\nParameters: {"year": "Required. integer. ", "countryCode": "Required. string. Two letters."}\nOutput: Success.', 'Version': 'Get version\nParameters: {}\nOutput: v'}"#;
        let rec = json!([{
            "Name": "Nager.Date",
            "Function_Description": fd,
            "Instructions": "['Long weekends in the US in 2024?', 'Which version?', 'Bad one']",
            "Golden_Answers": "[[{'Action': 'LongWeekend', 'Action_Input': '{\"year\": 2024, \"countryCode\": \"US\"}'}], [{'Action': 'Version', 'Action_Input': '{}'}], [{'Action': 'Version', 'Action_Input': '{oops'}]]"
        }]);
        std::fs::write(dir.path().join("eval_real.json"), rec.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        let ex = &out.examples[0];
        assert_eq!(ex.calls[0].arguments["year"], 2024);
        assert_eq!(ex.tools.len(), 2);
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        assert_eq!(out.drops.count(SOURCE, "unparseable_arguments"), 1);
    }
}
