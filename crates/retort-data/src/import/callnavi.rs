//! CallNavi: `Dataset/Questions/<domain>.json` (`question`: chat messages,
//! `ground_truth: {API: [names], parameters: [args]}`) over the JSON-schema
//! tools of `Dataset/APISchema/<domain>.json`. All of a domain's tools are
//! offered (the build later caps them, keeping the gold ones).
//!
//! CallNavi writes `"$$$"` for a value the question leaves open or that an
//! earlier call's output provides. The calls before the first such call are
//! kept (the first steps of the sequence; counted in `import_notes` as
//! `truncated_at_placeholder`); when the first call already has one,
//! the example is dropped (`placeholder_value`). Tools whose generated schema
//! is an array take their parameter names from `APIs/<domain>.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use retort_core::{Call, Tool, ToolFormat};

use super::{Imported, as_array, example, msg, parse_tool, trim_context};
use crate::error::DataError;
use crate::io::read_json;

pub const SOURCE: &str = "callnavi";

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("$$$"),
        Value::Array(a) => a.iter().any(has_placeholder),
        Value::Object(o) => o.values().any(has_placeholder),
        _ => false,
    }
}

/// Parameter names listed as a plain array in `APIs/<domain>.json`
/// (`"parameters": ["phoneNumber"]`), for tools whose generated schema is an
/// array rather than an object.
fn listed_params(apis: Option<&Value>, name: &str) -> Option<Vec<String>> {
    let ports = apis?.get("api_ports")?.as_array()?;
    let entry = ports
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?;
    let list = entry.get("parameters")?.as_array()?;
    list.iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

type DomainTools = BTreeMap<String, Result<Tool, String>>;

fn domain_tools(
    path: &Path,
    apis: Option<&Value>,
    out: &mut Imported,
) -> Result<DomainTools, DataError> {
    let doc = read_json(path)?;
    let mut tools = BTreeMap::new();
    for v in as_array(&doc, path)? {
        let mut v = v.clone();
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let is_array = v
            .get("parameters")
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            == Some("array");
        if is_array && let Some(names) = listed_params(apis, &name) {
            let props: serde_json::Map<String, Value> = names
                .iter()
                .map(|n| (n.clone(), serde_json::json!({"type": "string"})))
                .collect();
            v["parameters"] =
                serde_json::json!({"type": "object", "properties": props, "required": names});
        }
        let v = &v;
        let parsed = parse_tool(v, ToolFormat::OpenAi);
        if let Err(r) = &parsed {
            out.skipped_tools.add(SOURCE, r.clone());
        }
        if let Some(n) = v.get("name").and_then(Value::as_str) {
            tools.entry(n.to_string()).or_insert(parsed);
        }
    }
    Ok(tools)
}

pub fn import(dir: &Path, out: &mut Imported) -> Result<(), DataError> {
    let base = if dir.join("Dataset").is_dir() {
        dir.join("Dataset")
    } else {
        dir.to_path_buf()
    };
    let qdir = base.join("Questions");
    let entries = std::fs::read_dir(&qdir).map_err(|e| DataError::io(&qdir, e))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for qpath in files {
        let domain = qpath
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spath = base.join("APISchema").join(format!("{domain}.json"));
        if !spath.is_file() {
            return Err(DataError::Missing {
                path: spath,
                what: format!("API schema of CallNavi domain {domain:?}"),
            });
        }
        let apath = base.join("APIs").join(format!("{domain}.json"));
        let apis = if apath.is_file() {
            Some(read_json(&apath)?)
        } else {
            None
        };
        let tools = domain_tools(&spath, apis.as_ref(), out)?;
        let usable: Vec<Tool> = tools
            .values()
            .filter_map(|t| t.as_ref().ok().cloned())
            .collect();
        let doc = read_json(&qpath)?;
        for (i, q) in as_array(&doc, &qpath)?.iter().enumerate() {
            let line = i + 1;
            let id = q
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{domain}{i}"));
            let msgs = super::arr_field(q, "question", &qpath, line)?;
            let mut context = Vec::new();
            let mut query = None;
            for m in msgs {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = m.get("content").and_then(Value::as_str).unwrap_or("");
                if role == "user" {
                    if let Some(prev) = query.replace(content.to_string()) {
                        context.push(msg("user", prev));
                    }
                } else {
                    context.push(msg(role, content));
                }
            }
            let Some(query) = query else {
                out.drops.add(SOURCE, "no_user_turn");
                continue;
            };
            let gt = q.get("ground_truth").cloned().unwrap_or(Value::Null);
            let names = gt.get("API").and_then(Value::as_array);
            let params = gt.get("parameters").and_then(Value::as_array);
            let (Some(names), Some(params)) = (names, params) else {
                return Err(DataError::format(
                    &qpath,
                    line,
                    format!("question {id:?}: ground_truth needs API and parameters lists"),
                ));
            };
            if names.len() != params.len() {
                out.drops.add(SOURCE, "api_parameter_count_mismatch");
                continue;
            }
            let mut calls = Vec::new();
            let mut drop = None;
            for (n, p) in names.iter().zip(params) {
                if has_placeholder(p) {
                    // Later calls need an earlier call's output (or a value the
                    // question leaves open): keep the calls before it.
                    if calls.is_empty() {
                        drop = Some("placeholder_value".to_string());
                    } else {
                        out.notes.add(SOURCE, "truncated_at_placeholder");
                    }
                    break;
                }
                let Some(n) = n.as_str() else {
                    drop = Some("call_without_name".to_string());
                    break;
                };
                match tools.get(n) {
                    None => {
                        drop = Some("unknown_tool".into());
                        break;
                    }
                    Some(Err(r)) => {
                        drop = Some(r.clone());
                        break;
                    }
                    Some(Ok(_)) => {}
                }
                match super::arguments(Some(p)) {
                    Ok(a) => calls.push(Call::new(n, a)),
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
                    format!("{SOURCE}-{id}"),
                    &query,
                    usable.clone(),
                    calls,
                    None,
                    trim_context(context),
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
    use serde_json::json;

    #[test]
    fn imports_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("Dataset");
        std::fs::create_dir_all(base.join("Questions")).expect("mkdir");
        std::fs::create_dir_all(base.join("APISchema")).expect("mkdir");
        let schema = json!([
            {"name": "getEmployeeInfo", "description": "Info.", "parameters": {"$schema": "http://json-schema.org/schema#", "type": "object",
              "properties": {"employeeID": {"type": "string"}}, "required": ["employeeID"]}, "returnParameter": {"x": "string"}},
            {"name": "raise", "description": "r", "parameters": {"type": "object", "properties": {"id": {"type": "string"}, "pct": {"type": "integer"}}}}
        ]);
        std::fs::write(base.join("APISchema/hr.json"), schema.to_string()).expect("write");
        let qs = json!([
            {"id": "hr001", "question": [{"role": "user", "content": "Details of employee EMP001?"}],
             "ground_truth": {"API": ["getEmployeeInfo"], "parameters": [{"employeeID": "EMP001"}]}},
            {"id": "hr002", "question": [{"role": "user", "content": "x"}],
             "ground_truth": {"API": ["raise"], "parameters": [{"id": "$$$", "pct": 3}]}},
            {"id": "hr003", "question": [{"role": "user", "content": "Info on EMP7 then raise by 3"}],
             "ground_truth": {"API": ["getEmployeeInfo", "raise"], "parameters": [{"employeeID": "EMP7"}, {"id": "$$$", "pct": 3}]}},
        ]);
        std::fs::write(base.join("Questions/hr.json"), qs.to_string()).expect("write");
        let mut out = Imported::default();
        import(dir.path(), &mut out).expect("imports");
        assert_eq!(out.examples.len(), 2);
        assert_eq!(
            out.examples[1].calls.len(),
            1,
            "cut before the placeholder call"
        );
        assert_eq!(out.notes.count(SOURCE, "truncated_at_placeholder"), 1);
        let ex = &out.examples[0];
        assert_eq!(ex.id, "callnavi-hr001");
        assert_eq!(ex.tools.len(), 2);
        assert_eq!(validate_all(&ex.calls, &ex.tools), Ok(()));
        assert_eq!(out.drops.count(SOURCE, "placeholder_value"), 1);
    }

    #[test]
    fn missing_ground_truth_names_file_and_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("Questions")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("APISchema")).expect("mkdir");
        std::fs::write(dir.path().join("APISchema/a.json"), "[]").expect("write");
        std::fs::write(
            dir.path().join("Questions/a.json"),
            r#"[{"id": "a1", "question": [{"role": "user", "content": "q"}]}]"#,
        )
        .expect("write");
        let e = import(dir.path(), &mut Imported::default()).expect_err("bad");
        assert!(e.to_string().contains("a.json:1: question \"a1\""), "{e}");
    }
}
