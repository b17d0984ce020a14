//! Cleaning: drop calls that fail validation, cap the tools offered, cut long
//! descriptions, remove contaminated examples and duplicates. Every drop is
//! counted by source and reason.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use serde_json::Value;

use retort_core::{Example, Schema, SchemaType, Tool, normalize_text, validate_all};

use crate::bfcl::BfclIndex;
use crate::import::Drops;
use crate::rng::example_rng;

/// Limits applied while cleaning.
#[derive(Debug, Clone, Copy)]
pub struct CleanConfig {
    /// Most tools offered by one example; others are removed (never gold ones).
    pub max_tools: usize,
    /// Longest tool or parameter description kept, in characters.
    pub max_description_chars: usize,
    pub seed: u64,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            max_tools: 8,
            max_description_chars: 300,
            seed: 0,
        }
    }
}

/// JSON with object keys sorted, for keys that must not depend on order.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The deduplication key: normalised query, sorted tool names, canonical calls.
pub fn dedupe_key(ex: &Example) -> String {
    let mut names: Vec<&str> = ex.tools.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let calls: Vec<String> = ex
        .calls
        .iter()
        .map(|c| {
            format!(
                "{}({})",
                c.name,
                canonical_json(&Value::Object(c.arguments.clone()))
            )
        })
        .collect();
    format!(
        "{}\u{1}{}\u{1}{}",
        normalize_text(&ex.query),
        names.join("\u{2}"),
        calls.join("\u{2}")
    )
}

fn truncate_schema(s: &mut Schema, n: usize) {
    if let Some(d) = &mut s.description
        && d.chars().count() > n
    {
        *d = crate::import::truncate_chars(d, n);
    }
    if let Some(items) = &mut s.items {
        truncate_schema(items, n);
    }
    for p in s.properties.values_mut() {
        truncate_schema(p, n);
    }
}

/// Cut the tool's and its parameters' descriptions to `n` characters.
pub fn truncate_descriptions(t: &mut Tool, n: usize) {
    if t.description.chars().count() > n {
        t.description = crate::import::truncate_chars(&t.description, n);
    }
    truncate_schema(&mut t.parameters, n);
}

/// Keep at most `max` tools: every gold tool plus a random choice of the
/// others, in their original order. `Err` when the gold tools alone exceed it.
pub fn cap_tools(ex: &mut Example, max: usize, seed: u64) -> Result<(), &'static str> {
    if ex.tools.len() <= max {
        return Ok(());
    }
    let gold: HashSet<&str> = ex.calls.iter().map(|c| c.name.as_str()).collect();
    if gold.len() > max {
        return Err("too_many_gold_tools");
    }
    let mut others: Vec<usize> = (0..ex.tools.len())
        .filter(|&i| !gold.contains(ex.tools[i].name.as_str()))
        .collect();
    let mut rng = example_rng(seed, &ex.id, "cap");
    others.shuffle(&mut rng);
    let keep_others: HashSet<usize> = others.into_iter().take(max - gold.len()).collect();
    let tools = std::mem::take(&mut ex.tools);
    ex.tools = tools
        .into_iter()
        .enumerate()
        .filter(|(i, t)| gold.contains(t.name.as_str()) || keep_others.contains(i))
        .map(|(_, t)| t)
        .collect();
    Ok(())
}

/// Remove arguments whose value is `""` for a parameter that is not required
/// (a corpus habit meaning "not given"). Returns how many were removed.
pub fn drop_empty_optional(ex: &mut Example) -> usize {
    let mut n = 0;
    let tools = &ex.tools;
    for c in &mut ex.calls {
        let Some(t) = tools.iter().find(|t| t.name == c.name) else {
            continue;
        };
        let before = c.arguments.len();
        c.arguments
            .retain(|k, v| v.as_str() != Some("") || t.parameters.is_required(k));
        n += before - c.arguments.len();
    }
    n
}

/// Fix scalar values whose JSON type disagrees with the schema in an
/// unambiguous way: `"10"` for an integer, `"2.5"` for a number, `"true"`
/// for a boolean, `3.0` for an integer. Only exact literals are converted
/// (`"10"` but not `"10 km"` or `"010"`). Returns how many were converted.
pub fn coerce_scalars(ex: &mut Example) -> usize {
    fn coerce(v: &mut Value, s: &Schema) -> usize {
        let new = match (&*v, s.ty) {
            (Value::String(t), SchemaType::Integer) => t
                .parse::<i64>()
                .ok()
                .filter(|i| i.to_string() == *t)
                .map(Value::from),
            (Value::String(t), SchemaType::Number) => t
                .parse::<f64>()
                .ok()
                .filter(|f| {
                    f.is_finite() && !t.starts_with('+') && !t.starts_with('.') && !t.ends_with('.')
                })
                .and_then(|f| {
                    if t.parse::<i64>().is_ok_and(|i| i.to_string() == *t) {
                        t.parse::<i64>().ok().map(Value::from)
                    } else {
                        serde_json::Number::from_f64(f).map(Value::Number)
                    }
                }),
            (Value::String(t), SchemaType::Boolean) => match t.as_str() {
                "true" | "True" => Some(Value::Bool(true)),
                "false" | "False" => Some(Value::Bool(false)),
                _ => None,
            },
            (Value::Number(n), SchemaType::Integer) if !(n.is_i64() || n.is_u64()) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| Value::from(f as i64)),
            _ => None,
        };
        let mut n = 0;
        if let Some(nv) = new {
            *v = nv;
            n += 1;
        }
        match v {
            Value::Array(a) => {
                if let Some(items) = &s.items {
                    for x in a {
                        n += coerce(x, items);
                    }
                }
            }
            Value::Object(o) if s.ty == SchemaType::Object => {
                for (k, x) in o.iter_mut() {
                    if let Some(ps) = s.properties.get(k) {
                        n += coerce(x, ps);
                    }
                }
            }
            _ => {}
        }
        n
    }
    let mut n = 0;
    let tools = &ex.tools;
    for c in &mut ex.calls {
        let Some(t) = tools.iter().find(|t| t.name == c.name) else {
            continue;
        };
        for (k, v) in c.arguments.iter_mut() {
            if let Some(ps) = t.parameters.properties.get(k) {
                n += coerce(v, ps);
            }
        }
    }
    n
}

/// What cleaning did, besides the drops.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CleanReport {
    pub input: usize,
    pub kept: usize,
    pub empty_optional_arguments_removed: usize,
    /// Scalars converted to their schema's type (`"10"` -> `10`).
    pub coerced_values: usize,
    pub examples_with_tools_capped: usize,
    pub descriptions_truncated_examples: usize,
}

/// Clean a list of imported examples.
pub fn clean(
    examples: Vec<Example>,
    bfcl: &BfclIndex,
    cfg: &CleanConfig,
    drops: &mut Drops,
) -> (Vec<Example>, CleanReport) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(examples.len());
    let mut report = CleanReport {
        input: examples.len(),
        ..Default::default()
    };
    for mut ex in examples {
        let src = ex.source.clone();
        if ex.query.trim().is_empty() {
            drops.add(&src, "empty_query");
            continue;
        }
        if ex.tools.is_empty() {
            drops.add(&src, "no_tools");
            continue;
        }
        report.empty_optional_arguments_removed += drop_empty_optional(&mut ex);
        report.coerced_values += coerce_scalars(&mut ex);
        if let Err(e) = validate_all(&ex.calls, &ex.tools) {
            drops.add(&src, format!("invalid_call/{}", e.kind.reason()));
            continue;
        }
        let before = ex.tools.len();
        if let Err(r) = cap_tools(&mut ex, cfg.max_tools, cfg.seed) {
            drops.add(&src, r);
            continue;
        }
        if ex.tools.len() < before {
            report.examples_with_tools_capped += 1;
        }
        let snapshot: Vec<String> = ex.tools.iter().map(|t| t.description.clone()).collect();
        for t in &mut ex.tools {
            truncate_descriptions(t, cfg.max_description_chars);
        }
        if ex
            .tools
            .iter()
            .zip(&snapshot)
            .any(|(t, d)| &t.description != d)
        {
            report.descriptions_truncated_examples += 1;
        }
        if let Some(c) = bfcl.check(&ex) {
            drops.add(&src, c.reason());
            continue;
        }
        if !seen.insert(dedupe_key(&ex)) {
            drops.add(&src, "duplicate");
            continue;
        }
        out.push(ex);
    }
    report.kept = out.len();
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_core::{Call, ToolFormat};
    use serde_json::json;

    fn tool(name: &str) -> Tool {
        Tool::parse(
            &json!({"name": name, "description": "d".repeat(500), "parameters": {"type": "object",
                "properties": {"x": {"type": "integer", "description": "p".repeat(400)}, "o": {"type": "string"}}, "required": ["x"]}}),
            ToolFormat::Auto,
        )
        .expect("tool")
    }

    fn ex(id: &str, query: &str, tools: &[&str], calls: Vec<Call>) -> Example {
        Example {
            id: id.into(),
            source: "s".into(),
            query: query.into(),
            tools: tools.iter().map(|n| tool(n)).collect(),
            calls,
            teacher: None,
            context: Vec::new(),
        }
    }

    fn call(name: &str, args: Value) -> Call {
        Call::new(name, args.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn coercion_is_exact_only() {
        let t = Tool::parse(
            &json!({"name": "f", "parameters": {"type": "object", "properties": {
                "i": {"type": "integer"}, "n": {"type": "number"}, "b": {"type": "boolean"},
                "l": {"type": "array", "items": {"type": "integer"}}, "s": {"type": "string"}}}}),
            ToolFormat::Auto,
        )
        .expect("tool");
        let mut e = ex(
            "c",
            "q",
            &[],
            vec![call(
                "f",
                json!({"i": "10", "n": "2.5", "b": "true", "l": ["1", 2.0], "s": "7"}),
            )],
        );
        e.tools = vec![t.clone()];
        assert_eq!(coerce_scalars(&mut e), 5);
        assert_eq!(
            Value::Object(e.calls[0].arguments.clone()),
            json!({"i": 10, "n": 2.5, "b": true, "l": [1, 2], "s": "7"})
        );
        let mut bad = ex(
            "d",
            "q",
            &[],
            vec![call("f", json!({"i": "010", "n": "2.5 km", "b": "yes"}))],
        );
        bad.tools = vec![t];
        assert_eq!(coerce_scalars(&mut bad), 0);
    }

    #[test]
    fn dedupe_ignores_case_punctuation_order() {
        let a = ex(
            "a",
            "Set x to 3!",
            &["f", "g"],
            vec![call("f", json!({"x": 3, "o": "k"}))],
        );
        let b = ex(
            "b",
            "set X to 3",
            &["g", "f"],
            vec![call("f", json!({"o": "k", "x": 3}))],
        );
        let c = ex(
            "c",
            "set x to 3",
            &["g", "f"],
            vec![call("f", json!({"x": 4}))],
        );
        assert_eq!(dedupe_key(&a), dedupe_key(&b));
        assert_ne!(dedupe_key(&a), dedupe_key(&c));
        let mut drops = Drops::default();
        let (kept, rep) = clean(
            vec![a, b, c],
            &BfclIndex::default(),
            &CleanConfig::default(),
            &mut drops,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(drops.count("s", "duplicate"), 1);
        assert_eq!(rep.kept, 2);
    }

    #[test]
    fn drops_invalid_and_contaminated_and_caps() {
        let mut bfcl = BfclIndex::default();
        bfcl.add_entry(
            &json!({"question": [[{"role": "user", "content": "What is the BFCL question?"}]],
            "function": [{"name": "bf1"}, {"name": "bf2"}]}),
        )
        .expect("entry");
        let many: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let items = vec![
            ex(
                "1",
                "what is the bfcl question",
                &["f"],
                vec![call("f", json!({"x": 1}))],
            ),
            ex(
                "2",
                "other",
                &["bf2", "bf1"],
                vec![call("bf1", json!({"x": 1}))],
            ),
            ex("3", "bad", &["f"], vec![call("f", json!({"x": "one"}))]),
            ex("4", "missing", &["f"], vec![call("f", json!({}))]),
            ex(
                "5",
                "many tools",
                &many,
                vec![call("t7", json!({"x": 1, "o": ""}))],
            ),
        ];
        let mut drops = Drops::default();
        let (kept, rep) = clean(items, &bfcl, &CleanConfig::default(), &mut drops);
        assert_eq!(drops.count("s", "bfcl_question"), 1);
        assert_eq!(drops.count("s", "bfcl_tool_set"), 1);
        assert_eq!(drops.count("s", "invalid_call/wrong_type"), 1);
        assert_eq!(drops.count("s", "invalid_call/missing_required"), 1);
        assert_eq!(kept.len(), 1);
        let k = &kept[0];
        assert_eq!(k.tools.len(), 8);
        assert!(k.tool("t7").is_some(), "gold tool kept");
        assert!(
            !k.calls[0].arguments.contains_key("o"),
            "empty optional removed"
        );
        assert_eq!(rep.empty_optional_arguments_removed, 1);
        assert!(k.tools.iter().all(|t| t.description.chars().count() <= 300));
        assert!(
            k.tools[0].parameters.properties["x"]
                .description
                .as_ref()
                .is_some_and(|d| d.chars().count() <= 300)
        );
    }
}
